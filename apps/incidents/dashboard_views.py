"""The supervisor dashboard: incident and answer-feedback metrics for a period, as inline SVG charts.

The numbers come from ``apps.incidents.dashboard`` (plain reads), the SVG from
``apps.incidents.charts``; this module only reads the filter and puts the two together.
"""
from __future__ import annotations

from datetime import timedelta

from django import forms
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET

from apps.accounts.decorators import perm_required
from apps.assets.models import Asset, Site
from apps.incidents import charts
from apps.incidents import dashboard as metrics
from apps.incidents.models import Incident

MAX_PERIOD = timedelta(days=2 * 366)  # a column per week: two years is already ~105 columns
MAX_ASSETS = 12  # bars per asset chart; the rest are counted in the caption


class DashboardFilterForm(forms.Form):
    """?from=YYYY-MM-DD&to=YYYY-MM-DD&asset=<asset id>&site=<site pk>; every part optional."""

    asset = forms.ModelChoiceField(
        Asset.objects.order_by("asset_id"), to_field_name="asset_id", required=False, empty_label="All assets"
    )
    site = forms.ModelChoiceField(Site.objects.order_by("name"), required=False, empty_label="All sites")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # "from" is a Python keyword: the date fields are added here, in the order shown.
        date_fields = {
            name: forms.DateField(required=False, label=label, widget=forms.DateInput(attrs={"type": "date"}))
            for name, label in (("from", "From"), ("to", "To"))
        }
        self.fields = {**date_fields, **self.fields}

    def clean(self):
        data = super().clean()
        start, end = data.get("from"), data.get("to")
        if start and end:
            if start > end:
                self.add_error("to", "The end of the period is before its start.")
            elif end - start > MAX_PERIOD:
                self.add_error("from", "Choose a period of at most two years.")
        return data

    def scope(self, *, today) -> metrics.Scope:
        """The period and asset/site asked for; the default (last 12 weeks) for what is invalid."""
        errors = self.errors  # validates the form, once
        data = getattr(self, "cleaned_data", {})  # none on an unbound form
        if errors.keys() & {"from", "to"}:
            start = end = None
        else:
            start, end = data.get("from"), data.get("to")
        end = end or today
        start = start or metrics.default_scope(today=end).start
        return metrics.Scope(start=start, end=end, asset=data.get("asset"), site=data.get("site"))


def _asset_label(row: dict) -> str:
    # The asset id alone: it is what technicians call the asset, and the label column is narrow.
    return row["asset"]


def _more(rows: list, noun: str) -> str:
    extra = len(rows) - MAX_ASSETS
    return f" The first {MAX_ASSETS} of {len(rows)} {noun} are shown." if extra > 0 else ""


def _by_priority(counts: dict[str, list[int]]) -> list[charts.Series]:
    return [charts.Series(p, label, counts[p], charts.PRIORITY_COLORS[p]) for p, label in metrics.PRIORITIES]


def _charts(m: dict) -> dict[str, str]:
    per_week = m["per_week"]
    weeks = per_week["weeks"]
    open_now = m["open"]
    mttr = m["mttr"][:MAX_ASSETS]
    downtime = m["downtime"][:MAX_ASSETS]
    causes = m["causes"]
    feedback = m["feedback"]

    other = ""
    if causes["other_causes"]:
        other = (f" {causes['other_causes']} other cause{'s' if causes['other_causes'] != 1 else ''}"
                 f" ({causes['other_count']} incident{'s' if causes['other_count'] != 1 else ''}) not shown.")
    return {
        "per_week": charts.column_chart(
            chart_id="chart-per-week",
            title="Incidents per week by priority",
            caption="Incidents reported each week (weeks start on Monday), stacked by priority.",
            category_header="Week",
            categories=[f"Week of {w.day} {w:%b %Y}" for w in weeks],
            short_labels=[f"{w.day} {w:%b}" for w in weeks],
            width=960,  # the full-width card
            series=_by_priority(per_week["series"]),
        ),
        "mttr": charts.bar_chart(
            chart_id="chart-mttr",
            title="Mean time to repair per asset",
            caption="Mean time from report to resolution (created → resolved), over the incidents resolved "
                    "or closed in this period; slowest first." + _more(m["mttr"], "assets"),
            category_header="Asset",
            categories=[_asset_label(r) for r in mttr],
            series=[charts.Series("mttr", "Mean time to repair", [charts.hours(r["mttr"]) for r in mttr])],
            fmt=charts.fmt_hours, tick_fmt=charts.fmt_hours_tick, integer=False,
            empty="No incidents resolved in this period.",
        ),
        "downtime": charts.bar_chart(
            chart_id="chart-downtime",
            title="Downtime per asset, planned and unplanned",
            caption="Total downtime (end − start) within this period, per asset, planned vs unplanned."
                    + _more(m["downtime"], "assets"),
            category_header="Asset",
            categories=[_asset_label(r) for r in downtime],
            series=[
                charts.Series(
                    kind or "unspecified", label,
                    [charts.hours(r["by_kind"][kind]) for r in downtime], charts.DOWNTIME_COLORS[kind],
                )
                for kind, label in metrics.DOWNTIME_KINDS
            ],
            fmt=charts.fmt_hours, tick_fmt=charts.fmt_hours_tick, integer=False,
            empty="No downtime recorded in this period.",
        ),
        "causes": charts.bar_chart(
            chart_id="chart-causes",
            title="Top causes",
            caption=f"The {metrics.TOP_CAUSES} most frequent causes of the incidents reported in this "
                    "period; the same cause written with other capitals or spacing counts once." + other,
            category_header="Cause",
            categories=[c["cause"] for c in causes["causes"]],
            series=[charts.Series("incidents", "Incidents", [c["count"] for c in causes["causes"]])],
            empty="No incidents with a cause in this period.",
        ),
        "open": charts.bar_chart(
            chart_id="chart-open",
            title="Open incidents by age and priority",
            caption="Incidents open or in progress now, by time since they were reported "
                    "(the backlog today, whatever the period).",
            category_header="Age",
            categories=[label for _, label in open_now["buckets"]],
            series=_by_priority(open_now["series"]),
            empty="No open incidents.",
        ),
        "feedback": charts.bar_chart(
            chart_id="chart-feedback",
            title="Answer feedback",
            caption="Thumbs up and down given to the assistant's answers in this period.",
            category_header="Answers",
            categories=["Rated answers"],
            series=[
                charts.Series("up", "Helpful", [feedback["up"]], charts.FEEDBACK_COLORS["up"]),
                charts.Series("down", "Not helpful", [feedback["down"]], charts.FEEDBACK_COLORS["down"]),
            ],
            empty="No answer feedback in this period.",
        ),
    }


def _cards(m: dict) -> list[dict]:
    open_now, mttr, downtime, feedback = m["open"], m["mttr_overall"], m["downtime_total"], m["feedback"]
    urgent = sum(sum(open_now["series"][p]) for p in (Incident.Priority.CRITICAL, Incident.Priority.HIGH))
    by_kind = downtime["by_kind"]
    share = feedback["up_share"]
    return [
        {"label": "Open incidents", "value": open_now["total"],
         "detail": f"{urgent} critical or high" if open_now["total"] else "none open or in progress"},
        {"label": "Mean time to repair", "value": charts.duration_text(mttr["mttr"]),
         "detail": f"over {mttr['count']} resolved incident{'s' if mttr['count'] != 1 else ''}"
                   if mttr["count"] else "no incident resolved in this period"},
        {"label": "Total downtime", "value": charts.duration_text(downtime["total"]),
         "detail": f"{charts.duration_text(by_kind['unplanned'])} unplanned · "
                   f"{charts.duration_text(by_kind['planned'])} planned"
                   + (f" · {charts.duration_text(by_kind[''])} kind not given" if by_kind[""] else "")},
        {"label": "Helpful answers", "value": "—" if share is None else f"{round(share * 100)} %",
         "detail": f"{feedback['up']} up · {feedback['down']} down · "
                   f"{feedback['awaiting_review']} thumbs-down awaiting review",
         "warn": feedback["awaiting_review"] > 0},
    ]


@require_GET
@perm_required("incidents.view_dashboard")
def dashboard(request):
    today = timezone.localdate()
    form = DashboardFilterForm(request.GET)
    scope = form.scope(today=today)
    if not form.errors:
        # Show the period actually used in the date inputs, defaults included.
        data = request.GET.copy()
        data["from"], data["to"] = scope.start.isoformat(), scope.end.isoformat()
        form = DashboardFilterForm(data)
        form.is_valid()
    m = metrics.dashboard_metrics(scope)
    return render(request, "incidents/dashboard.html", {
        "form": form,
        "scope": scope,
        "cards": _cards(m),
        "charts": _charts(m),
        "filtered": bool(request.GET),
    })
