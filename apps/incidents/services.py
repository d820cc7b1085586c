"""Writes for incidents: create (also from a chat), update with an audit trail, status moves.

Every change goes through ``incident_update`` so that the audit trail is complete: one
``IncidentEvent`` per save, listing each changed field as [old, new]. Resolved and closed
incidents are (re-)embedded for "similar past incidents" by a Celery task queued on commit
(``incident_index``; the store is ``apps.incidents.similar_index``).
"""
from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from apps.incidents.models import Incident, IncidentEvent
from apps.incidents.similar_index import Identifiers, get_embedder, get_incident_index, incident_entry, node_id

# The fields a person may edit, in the order the audit trail lists them.
EDITABLE_FIELDS = (
    "title",
    "asset",
    "failure_class",
    "symptom",
    "cause",
    "remedy",
    "root_cause",
    "summary",
    "priority",
    "status",
    "assignee",
    "downtime_start",
    "downtime_end",
    "downtime_kind",
    "downtime_reason",
)


def _display(incident: Incident, field: str):
    """A field's value as people read it in the audit trail."""
    value = getattr(incident, field)
    if value is None or value == "":
        return ""
    model_field = Incident._meta.get_field(field)
    if model_field.choices:
        return getattr(incident, f"get_{field}_display")()
    if model_field.is_relation:
        return str(value)
    if hasattr(value, "isoformat"):
        return timezone.localtime(value).strftime("%Y-%m-%d %H:%M") if timezone.is_aware(value) else value.isoformat()
    return value


def incident_validate(incident: Incident) -> None:
    """Rules a saved incident always satisfies; raises ValidationError naming the field."""
    errors = {}
    if not (incident.title or "").strip():
        errors["title"] = "A title is required."
    if not (incident.symptom or "").strip():
        errors["symptom"] = "Describe the symptom (what was observed)."
    if incident.is_done:
        if not (incident.cause or "").strip():
            errors["cause"] = "Resolving an incident needs its cause."
        if not (incident.remedy or "").strip():
            errors["remedy"] = "Resolving an incident needs the remedy (what fixed it)."
    if incident.downtime_start and incident.downtime_end and incident.downtime_end < incident.downtime_start:
        errors["downtime_end"] = "Downtime cannot end before it starts."
    if incident.downtime_end and not incident.downtime_start:
        errors["downtime_start"] = "Give the start of the downtime too."
    if errors:
        raise ValidationError(errors)


def _queue_embedding(incident_id: int) -> None:
    from apps.incidents.tasks import incident_index_task

    transaction.on_commit(lambda: incident_index_task.delay(incident_id))


@transaction.atomic
def incident_create(*, reporter, conversation=None, note: str = "", **fields) -> Incident:
    """A new incident; ``conversation`` links it to a chat (with its citations and live context)."""
    unknown = set(fields) - set(EDITABLE_FIELDS)
    if unknown:
        raise TypeError(f"not incident fields: {', '.join(sorted(unknown))}")
    incident = Incident(reporter=reporter, **fields)
    if incident.status in (Incident.Status.RESOLVED, Incident.Status.CLOSED):
        incident.resolved_at = timezone.now()
        if incident.status == Incident.Status.CLOSED:
            incident.closed_at = incident.resolved_at
    incident_validate(incident)
    incident.save()
    IncidentEvent.objects.create(
        incident=incident,
        actor=reporter,
        kind=IncidentEvent.Kind.CREATED,
        changes={f: ["", _display(incident, f)] for f in EDITABLE_FIELDS if _display(incident, f) != ""},
        note=note,
    )
    if conversation is not None:
        incident_link_conversation(incident=incident, conversation=conversation, actor=reporter, record=False)
    if incident.is_done:
        _queue_embedding(incident.pk)
    return incident


@transaction.atomic
def incident_update(*, incident: Incident, actor, note: str = "", **fields) -> Incident:
    """Change ``fields`` of ``incident``; records who changed what. Returns the saved incident.

    Raises ValidationError for a status move that is not allowed or a resolve without a cause
    and remedy. Editing the summary by hand clears its "draft" mark.
    """
    unknown = set(fields) - set(EDITABLE_FIELDS)
    if unknown:
        raise TypeError(f"not incident fields: {', '.join(sorted(unknown))}")
    incident = Incident.objects.select_for_update().get(pk=incident.pk)
    before = {f: _display(incident, f) for f in EDITABLE_FIELDS}
    old_status = incident.status
    new_status = fields.get("status", old_status)
    if new_status not in Incident.Status.values:
        raise ValidationError({"status": f"Unknown status {new_status!r}."})
    if not incident.can_move_to(new_status):
        raise ValidationError(
            {"status": f"An incident that is {incident.get_status_display().lower()} cannot move to "
                       f"{Incident.Status(new_status).label.lower()}."}
        )
    for name, value in fields.items():
        setattr(incident, name, value)
    if "summary" in fields and before["summary"] != _display(incident, "summary"):
        incident.summary_is_draft = False
    now = timezone.now()
    if new_status != old_status:
        if new_status == Incident.Status.RESOLVED:
            incident.resolved_at = now
            incident.closed_at = None
        elif new_status == Incident.Status.CLOSED:
            incident.resolved_at = incident.resolved_at or now
            incident.closed_at = now
        else:  # reopened
            incident.resolved_at = None
            incident.closed_at = None
    incident_validate(incident)
    changes = {
        f: [before[f], _display(incident, f)] for f in EDITABLE_FIELDS if before[f] != _display(incident, f)
    }
    if not changes and not note:
        return incident
    incident.save()
    kind = IncidentEvent.Kind.STATUS if "status" in changes else IncidentEvent.Kind.UPDATED
    IncidentEvent.objects.create(incident=incident, actor=actor, kind=kind, changes=changes, note=note)
    was_done = old_status in (Incident.Status.RESOLVED, Incident.Status.CLOSED)
    if incident.is_done or was_done:
        # Resolved/closed: (re-)embed. Reopened: the task drops it from the similar-incident index.
        _queue_embedding(incident.pk)
    return incident


def incident_link_conversation(*, incident: Incident, conversation, actor, record: bool = True) -> None:
    """Attach a chat to the incident: its conversation, cited passages and last live context."""
    from apps.chat.models import Citation, Message

    incident.conversations.add(conversation)
    incident.citations.add(*Citation.objects.filter(message__conversation=conversation))
    if incident.live_context is None:
        last = (
            Message.objects.filter(conversation=conversation, live_context__isnull=False)
            .order_by("-created", "-pk")
            .first()
        )
        if last is not None:
            incident.live_context = last.live_context
            incident.save(update_fields=["live_context", "updated"])
    if record:
        IncidentEvent.objects.create(
            incident=incident,
            actor=actor,
            kind=IncidentEvent.Kind.LINKED,
            note=f"Linked conversation “{conversation}”",
        )


@transaction.atomic
def incident_report(
    *, reporter, conversation=None, draft_summary: str = "", feedback=None, note: str = "", **fields
) -> Incident:
    """A person files a new incident from the form, possibly opened from a chat answer.

    ``draft_summary`` is the summary the assistant's answer prefilled: saved unchanged, the
    incident keeps it marked as a draft until someone edits it. ``feedback`` (a rated answer a
    supervisor is turning into this incident) is marked reviewed in the same transaction, so
    either both are saved or neither.
    """
    from apps.incidents.prefill import same_text

    incident = incident_create(reporter=reporter, conversation=conversation, note=note, **fields)
    if draft_summary and (fields.get("summary") or "").strip() and same_text(fields["summary"], draft_summary):
        incident.summary_is_draft = True
        incident.save(update_fields=["summary_is_draft"])
    if feedback is not None:
        feedback_turn_into_incident(feedback=feedback, incident=incident, reviewer=reporter)
    return incident


@transaction.atomic
def feedback_turn_into_incident(*, feedback, incident: Incident, reviewer):
    """Close the review of an answer's feedback by pointing it at the incident it became."""
    from apps.chat.models import AnswerFeedback

    # Locked, so that two supervisors turning the same thumbs-down into incidents cannot both win.
    feedback = AnswerFeedback.objects.select_for_update().get(pk=feedback.pk)
    if feedback.incident_id is not None and feedback.incident_id != incident.pk:
        raise ValidationError(f"This feedback was already turned into incident #{feedback.incident_id}.")
    feedback.incident = incident
    feedback.reviewed_at = timezone.now()
    feedback.reviewed_by = reviewer
    feedback.review_note = f"Turned into incident #{incident.pk}"
    feedback.save(update_fields=["incident", "reviewed_at", "reviewed_by", "review_note", "updated"])
    IncidentEvent.objects.create(
        incident=incident,
        actor=reviewer,
        kind=IncidentEvent.Kind.LINKED,
        note=f"From feedback on answer #{feedback.message_id} ({feedback.get_rating_display().lower()})",
    )
    return feedback


# ------------------------------------------------------------------------------ similar past incidents


def incident_index(*, incident_id: int) -> bool:
    """Embed incident ``incident_id`` if it is resolved or closed, else drop its vector.

    Runs in the Celery worker (``incident_index_task``), the only process writing embedded
    Chroma. Returns True when the incident is now in the index.
    """
    incident = Incident.objects.select_related("asset__device_type").filter(pk=incident_id).first()
    index = get_incident_index()
    if incident is None or not incident.is_done:
        index.delete_ids([node_id(incident_id)])
        return False
    entry = incident_entry(incident, Identifiers())
    index.add_entries([entry], get_embedder().embed([entry.embed_text]))
    return True


def incidents_reindex(*, batch_size: int | None = None) -> int:
    """Rebuild the collection from the database (e.g. after restoring a backup); returns the count."""
    batch_size = batch_size or settings.NANOSENTRI_EMBEDDING_BATCH
    index = get_incident_index()
    index.clear()
    ids = Identifiers()
    embedder = get_embedder()
    done = Incident.objects.filter(status__in=[Incident.Status.RESOLVED, Incident.Status.CLOSED])
    incidents = list(done.select_related("asset__device_type").order_by("pk"))
    for start in range(0, len(incidents), batch_size):
        entries = [incident_entry(incident, ids) for incident in incidents[start:start + batch_size]]
        index.add_entries(entries, embedder.embed([e.embed_text for e in entries], batch_size=batch_size))
    return len(incidents)
