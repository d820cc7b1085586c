"""The incident pages: list (with search and CSV export), new (also from a chat), detail, edit, resolve.

Who sees what is the selectors' job (``incidents_visible_to``): an incident a user may not see is
a 404, never a 403, so ids do not leak. Writes go through the services, which keep the audit trail.
"""
from __future__ import annotations

import csv

from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.db.models import Prefetch
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_http_methods, require_POST

from apps.accounts.decorators import perm_required
from apps.chat.models import Citation, Message
from apps.incidents import search
from apps.incidents.forms import IncidentFilterForm, IncidentForm, ResolveForm
from apps.incidents.models import Incident
from apps.incidents.prefill import incident_prefill, incident_sources
from apps.incidents.selectors import incident_editable_by, incident_for, incidents_visible_to
from apps.incidents.services import EDITABLE_FIELDS, incident_report, incident_update

PAGE_SIZE = 25
# Sortable columns of the list: ?sort=<key> or ?sort=-<key>.
COLUMNS = (
    ("created", "Created"),
    ("priority", "Priority"),
    ("status", "Status"),
    ("asset", "Asset"),
    ("downtime", "Downtime"),
)


def duration_text(delta) -> str:
    """A downtime as people say it: "45 min", "3 h 05 min", "2 d 4 h"."""
    if delta is None:
        return ""
    minutes = round(delta.total_seconds() / 60)
    days, minutes = divmod(minutes, 24 * 60)
    hours, minutes = divmod(minutes, 60)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes:02d} min"
    return f"{minutes} min"


def _incident_or_404(user, pk) -> Incident:
    try:
        return incident_for(user, pk)
    except Incident.DoesNotExist:
        raise Http404("no such incident") from None


def _editable_or_404(user, pk) -> Incident:
    incident = _incident_or_404(user, pk)
    if not incident_editable_by(user, incident):
        raise PermissionDenied
    return incident


def _add_service_errors(form, exc: ValidationError) -> None:
    """Show a service's ValidationError on the form: on its field when the form has it."""
    if not hasattr(exc, "error_dict"):
        form.add_error(None, exc)
        return
    for name, errors in exc.error_dict.items():
        form.add_error(name if name in form.fields else None, errors)


# --- list and export -------------------------------------------------------------------------


def _filtered(request):
    """The incidents the list (or the export) shows for this query string, and the filter form."""
    form = IncidentFilterForm(request.GET or None)
    qs = incidents_visible_to(request.user)
    if form.is_bound:
        form.is_valid()  # invalid filters are shown on the form and left out
        qs = search.incidents_filter(qs, **form.filters())
        qs = search.incidents_search(qs, form.cleaned_data.get("q", ""))
    # Only whitelisted keys; without one, search results come best match first, others newest first.
    sort = request.GET.get("sort", "")
    if sort.removeprefix("-") not in dict(COLUMNS):
        sort = ""
    qs = search.incidents_sort(qs, sort or None)
    if not sort and "search_rank" not in qs.query.annotations:
        sort = search.DEFAULT_SORT
    return form, qs, sort


@perm_required("incidents.view_incident")
def incident_list(request):
    form, qs, sort = _filtered(request)
    page = Paginator(qs, PAGE_SIZE).get_page(request.GET.get("page"))
    incidents = list(page.object_list)
    for incident in incidents:
        incident.downtime_display = duration_text(incident.downtime)
    columns = []
    for key, label in COLUMNS:
        current = sort.removeprefix("-") == key
        descending = current and sort.startswith("-")
        columns.append({
            "key": key,
            "label": label,
            "current": current,
            "aria_sort": ("descending" if descending else "ascending") if current else "",
            # Clicking the current column reverses it; another column starts ascending.
            "next": key if descending or not current else f"-{key}",
        })
    context = {
        # Only a sort or a page number in the address is not a filter.
        "filtering": any(value for key, value in request.GET.items() if key not in ("sort", "page")),
        "form": form,
        "page": page,
        "incidents": incidents,
        "columns": columns,
        "sort": sort,
        "searched": bool(form.is_bound and form.cleaned_data.get("q")),
        "can_export": request.user.has_perm("incidents.export_incidents"),
        "can_add": request.user.has_perm("incidents.add_incident"),
    }
    return render(request, "incidents/list.html", context)


# Spreadsheet programs run a cell that starts with one of these as a formula (CSV injection).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
CSV_COLUMNS = (
    ("id", lambda i: i.pk),
    ("created", lambda i: _iso(i.created)),
    ("asset", lambda i: i.asset.asset_id if i.asset else ""),
    ("title", lambda i: i.title),
    ("status", lambda i: i.get_status_display()),
    ("priority", lambda i: i.get_priority_display()),
    ("failure_class", lambda i: i.failure_class),
    ("symptom", lambda i: i.symptom),
    ("cause", lambda i: i.cause),
    ("remedy", lambda i: i.remedy),
    ("root_cause", lambda i: i.root_cause),
    ("reporter", lambda i: i.reporter.get_username() if i.reporter else ""),
    ("assignee", lambda i: i.assignee.get_username() if i.assignee else ""),
    ("downtime_start", lambda i: _iso(i.downtime_start)),
    ("downtime_end", lambda i: _iso(i.downtime_end)),
    ("downtime_minutes", lambda i: round(i.downtime.total_seconds() / 60) if i.downtime is not None else ""),
    ("downtime_kind", lambda i: i.get_downtime_kind_display() if i.downtime_kind else ""),
    ("downtime_reason", lambda i: i.downtime_reason),
    ("resolved_at", lambda i: _iso(i.resolved_at)),
    ("closed_at", lambda i: _iso(i.closed_at)),
)


def _iso(value) -> str:
    return timezone.localtime(value).isoformat(timespec="minutes") if value else ""


def csv_cell(value):
    """A value safe to open in a spreadsheet: text that would start a formula gets a leading quote."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


@perm_required("incidents.view_incident", "incidents.export_incidents")
def incident_export(request):
    _, qs, _ = _filtered(request)
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    stamp = timezone.localtime().strftime("%Y%m%d-%H%M")
    response["Content-Disposition"] = f'attachment; filename="incidents-{stamp}.csv"'
    writer = csv.writer(response)
    writer.writerow([name for name, _ in CSV_COLUMNS])
    for incident in qs.iterator(chunk_size=500):
        writer.writerow([csv_cell(get(incident)) for _, get in CSV_COLUMNS])
    return response


# --- new, edit, resolve ----------------------------------------------------------------------


@perm_required("incidents.add_incident")
@require_http_methods(["GET", "POST"])
def incident_new(request):
    sources = incident_sources(
        user=request.user,
        conversation_id=request.GET.get("conversation"),
        message_id=request.GET.get("message"),
        feedback_id=request.GET.get("feedback"),
    )
    if sources.feedback is not None and sources.feedback.incident_id is not None and request.method == "GET":
        messages.info(request, f"That feedback was already turned into incident #{sources.feedback.incident_id}.")
        return redirect("incidents:detail", sources.feedback.incident_id)
    prefill = incident_prefill(
        user=request.user, conversation=sources.conversation, message=sources.message, feedback=sources.feedback
    )
    form = IncidentForm(request.POST or None, initial=prefill.get("initial"))
    if request.method == "POST" and form.is_valid():
        try:
            incident = incident_report(
                reporter=request.user,
                conversation=sources.conversation,
                draft_summary=prefill.get("draft_summary", ""),
                feedback=sources.feedback,
                note=form.cleaned_data["note"],
                **form.service_fields(),
            )
        except ValidationError as exc:
            _add_service_errors(form, exc)
        else:
            messages.success(request, f"Incident #{incident.pk} opened.")
            return redirect(incident)
    return render(request, "incidents/form.html", {"form": form, "prefill": prefill, "incident": None})


@perm_required("incidents.change_incident")
@require_http_methods(["GET", "POST"])
def incident_edit(request, pk):
    incident = _editable_or_404(request.user, pk)
    form = IncidentForm(request.POST or None, instance=incident)
    if request.method == "POST" and form.is_valid():
        try:
            incident_update(incident=incident, actor=request.user, note=form.cleaned_data["note"], **form.service_fields())
        except ValidationError as exc:
            _add_service_errors(form, exc)
        else:
            messages.success(request, f"Incident #{incident.pk} saved.")
            return redirect(incident)
    # The form changed the instance in memory; the page heading shows the saved one.
    saved = Incident.objects.get(pk=incident.pk)
    return render(request, "incidents/form.html", {"form": form, "prefill": {}, "incident": saved})


@perm_required("incidents.change_incident")
@require_http_methods(["GET", "POST"])
def incident_resolve(request, pk):
    incident = _editable_or_404(request.user, pk)
    if not incident.can_move_to(Incident.Status.RESOLVED) or incident.is_done:
        messages.info(request, f"Incident #{incident.pk} is already {incident.get_status_display().lower()}.")
        return redirect(incident)
    initial = {}
    if incident.downtime_start and not incident.downtime_end:
        # The asset is usually back when the incident is resolved; the technician can change it.
        initial["downtime_end"] = timezone.localtime().replace(second=0, microsecond=0)
    form = ResolveForm(request.POST or None, instance=incident, initial=initial)
    if request.method == "POST" and form.is_valid():
        try:
            incident_update(
                incident=incident,
                actor=request.user,
                note=form.cleaned_data["note"],
                status=Incident.Status.RESOLVED,
                **form.service_fields(),
            )
        except ValidationError as exc:
            _add_service_errors(form, exc)
        else:
            messages.success(request, f"Incident #{incident.pk} resolved.")
            return redirect(incident)
    saved = Incident.objects.get(pk=incident.pk)
    return render(request, "incidents/resolve.html", {"form": form, "incident": saved})


@perm_required("incidents.change_incident")
@require_POST
def incident_status(request, pk):
    """The detail page's one-click moves: start work, close, reopen. Resolving has its own form."""
    incident = _editable_or_404(request.user, pk)
    status = request.POST.get("status", "")
    if status == Incident.Status.RESOLVED:
        return redirect("incidents:resolve", incident.pk)
    try:
        incident_update(incident=incident, actor=request.user, status=status, note=request.POST.get("note", "")[:500])
    except ValidationError as exc:
        for text in exc.messages:
            messages.error(request, text)
    else:
        messages.success(request, f"Incident #{incident.pk} is now {Incident.Status(status).label.lower()}.")
    return redirect(incident)


# --- detail ----------------------------------------------------------------------------------


_FIELD_LABELS = {name: str(Incident._meta.get_field(name).verbose_name).capitalize() for name in EDITABLE_FIELDS}
_FIELD_LABELS.update({"failure_class": "Failure class", "root_cause": "Root cause"})


def _audit_rows(incident: Incident) -> list[dict]:
    rows = []
    for event in incident.events.select_related("actor"):
        changes = [
            {"field": _FIELD_LABELS.get(name, name), "old": pair[0], "new": pair[1]}
            for name, pair in (event.changes or {}).items()
            if isinstance(pair, (list, tuple)) and len(pair) == 2
        ]
        rows.append({"event": event, "changes": changes})
    return rows


def _transcripts(incident: Incident):
    """The linked conversations with their messages, citations and (rendered) answers."""
    conversations = incident.conversations.select_related("user").prefetch_related(
        Prefetch(
            "messages",
            queryset=Message.objects.order_by("created", "pk").prefetch_related(
                Prefetch("citations", queryset=Citation.objects.order_by("rank")), "feedback__user"
            ),
        )
    )
    result = []
    for conversation in conversations:
        items = []
        for m in conversation.messages.all():
            html = ""
            if m.role == Message.Role.ASSISTANT and m.content:
                html = m.answer_html  # sanitized; its [n] link to this answer's #cite-<pk>-n
            items.append({"message": m, "html": html, "citations": list(m.citations.all())})
        result.append({"conversation": conversation, "items": items})
    return result


@perm_required("incidents.view_incident")
def incident_detail(request, pk):
    incident = _incident_or_404(request.user, pk)
    editable = incident_editable_by(request.user, incident)
    moves = []
    if editable:
        for status, label in (
            (Incident.Status.IN_PROGRESS, "Reopen and start work" if incident.is_done else "Start work"),
            (Incident.Status.CLOSED, "Close incident"),
            (Incident.Status.OPEN, "Reopen"),
        ):
            # Closing is offered once resolved (it needs a cause and remedy); reopening once done.
            if status == incident.status or not incident.can_move_to(status):
                continue
            if status == Incident.Status.CLOSED and incident.status != Incident.Status.RESOLVED:
                continue
            if status == Incident.Status.OPEN and not incident.is_done:
                continue
            moves.append({"status": status, "label": label})
    context = {
        "incident": incident,
        "downtime": duration_text(incident.downtime),
        "editable": editable,
        "can_resolve": editable and not incident.is_done,
        "moves": moves,
        "audit": _audit_rows(incident),
        "transcripts": _transcripts(incident),
        "feedback": incident.feedback.select_related("user", "reviewed_by", "message"),
    }
    return render(request, "incidents/detail.html", context)
