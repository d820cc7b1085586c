"""The supervisor dashboard's numbers: plain reads, computed in the database.

Every metric takes a ``Scope``: a period of whole local days (``start``..``end``, both included)
and an optional asset and/or site. The queries use only what SQLite and PostgreSQL both do the
same way: comparisons of datetimes, ``TruncWeek`` (Django converts to the current time zone on
both), datetime subtraction into durations, ``Lower``/``Trim``, ``Case``/``When``.

Which incidents each metric counts:

* per week, top causes: incidents *created* in the period;
* time to repair: incidents resolved or closed, *resolved* in the period (created → resolved_at);
* downtime: downtime that *overlaps* the period, clipped to it;
* open incidents: the backlog *now* (open / in progress), whatever the period, as is the count
  of thumbs-down awaiting review — a backlog does not age out of a date range;
* feedback ratio: thumbs given in the period.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from django.db.models import (
    Avg, Case, Count, DurationField, ExpressionWrapper, F, Min, Q, QuerySet, Sum, Value, When,
)
from django.db.models.functions import Greatest, Least, Lower, Trim, TruncWeek
from django.utils import timezone

from apps.assets.models import Asset, Site
from apps.chat.models import AnswerFeedback
from apps.incidents.models import Incident

DEFAULT_WEEKS = 12
TOP_CAUSES = 8
PRIORITIES = [(p.value, p.label) for p in Incident.Priority]  # most urgent first
OPEN_STATUSES = (Incident.Status.OPEN, Incident.Status.IN_PROGRESS)
DONE_STATUSES = (Incident.Status.RESOLVED, Incident.Status.CLOSED)
DOWNTIME_KINDS = [
    (Incident.DowntimeKind.UNPLANNED.value, "Unplanned"),
    (Incident.DowntimeKind.PLANNED.value, "Planned"),
    ("", "Kind not given"),
]
# (key, label, age from, age to): an open incident's age is now − created.
AGE_BUCKETS = [
    ("day", "< 1 day", timedelta(0), timedelta(days=1)),
    ("week", "1–7 days", timedelta(days=1), timedelta(days=7)),
    ("month", "1–4 weeks", timedelta(days=7), timedelta(weeks=4)),
    ("older", "> 4 weeks", timedelta(weeks=4), None),
]
NO_ASSET = "No asset"


@dataclass(frozen=True)
class Scope:
    start: date
    end: date  # included
    asset: Asset | None = None
    site: Site | None = None

    @property
    def since(self) -> datetime:
        """The first instant of the period: local midnight starting ``start``."""
        return timezone.make_aware(datetime.combine(self.start, time.min))

    @property
    def until(self) -> datetime:
        """The first instant after the period: local midnight ending ``end``."""
        return timezone.make_aware(datetime.combine(self.end + timedelta(days=1), time.min))


def week_start(day: date) -> date:
    """The Monday of ``day``'s week (ISO weeks, as TruncWeek on both databases)."""
    return day - timedelta(days=day.weekday())


def default_scope(*, today: date | None = None, weeks: int = DEFAULT_WEEKS, asset=None, site=None) -> Scope:
    """The last ``weeks`` weeks, this one included: from a Monday up to today."""
    today = today or timezone.localdate()
    return Scope(start=week_start(today) - timedelta(weeks=weeks - 1), end=today, asset=asset, site=site)


def _incidents(scope: Scope) -> QuerySet[Incident]:
    # order_by(): no Meta.ordering columns sneaking into GROUP BY.
    qs = Incident.objects.order_by()
    if scope.asset is not None:
        qs = qs.filter(asset=scope.asset)
    if scope.site is not None:
        qs = qs.filter(asset__site=scope.site)
    return qs


def _created_in(scope: Scope) -> QuerySet[Incident]:
    return _incidents(scope).filter(created__gte=scope.since, created__lt=scope.until)


def _asset_label(asset_id: str | None) -> str:
    return asset_id or NO_ASSET


# --- incidents per week ------------------------------------------------------------------------


def incidents_per_week(scope: Scope) -> dict:
    """Incidents created per week of the period, by priority; weeks without any are included.

    ``{"weeks": [monday, ...], "series": {priority: [count per week]}, "total": n}``.
    """
    weeks = []
    monday = week_start(scope.start)
    while monday <= scope.end:
        weeks.append(monday)
        monday += timedelta(weeks=1)
    index = {w: i for i, w in enumerate(weeks)}
    series = {p: [0] * len(weeks) for p, _ in PRIORITIES}
    rows = (
        _created_in(scope)
        .annotate(week=TruncWeek("created"))  # in the current time zone, on both databases
        .values("week", "priority")
        .annotate(n=Count("pk"))
    )
    total = 0
    for row in rows:
        i = index.get(timezone.localtime(row["week"]).date())
        if i is None or row["priority"] not in series:  # cannot happen with created inside the period
            continue
        series[row["priority"]][i] += row["n"]
        total += row["n"]
    return {"weeks": weeks, "series": series, "total": total}


# --- time to repair and downtime ---------------------------------------------------------------

_REPAIR = ExpressionWrapper(F("resolved_at") - F("created"), output_field=DurationField())


def _resolved_in(scope: Scope) -> QuerySet[Incident]:
    return _incidents(scope).filter(
        status__in=DONE_STATUSES, resolved_at__gte=scope.since, resolved_at__lt=scope.until
    )


def mttr_per_asset(scope: Scope) -> list[dict]:
    """Mean time to repair (created → resolved) of the incidents resolved in the period, per asset.

    ``[{"asset": "WXT536-01", "name": ..., "mttr": timedelta, "count": n}, ...]``, slowest first.
    """
    rows = (
        _resolved_in(scope)
        .values("asset__asset_id", "asset__name")
        .annotate(mttr=Avg(_REPAIR), n=Count("pk"))
    )
    out = [
        {
            "asset": _asset_label(r["asset__asset_id"]),
            "name": r["asset__name"] or "",
            "mttr": _as_timedelta(r["mttr"]),
            "count": r["n"],
        }
        for r in rows
    ]
    out.sort(key=lambda r: (-r["mttr"], r["asset"]))
    return out


def mttr_overall(scope: Scope) -> dict:
    """``{"mttr": timedelta or None, "count": n}`` over every incident resolved in the period."""
    agg = _resolved_in(scope).aggregate(mttr=Avg(_REPAIR), n=Count("pk"))
    return {"mttr": _as_timedelta(agg["mttr"]) if agg["n"] else None, "count": agg["n"]}


def _downtime_rows(scope: Scope) -> QuerySet:
    """Downtime overlapping the period, clipped to it: a stop that began before ``start`` counts
    from ``start``, one still going past ``end`` until ``end``."""
    since, until = Value(scope.since), Value(scope.until)
    clipped = ExpressionWrapper(
        Least(F("downtime_end"), until) - Greatest(F("downtime_start"), since), output_field=DurationField()
    )
    return (
        _incidents(scope)
        .filter(
            downtime_start__isnull=False,
            downtime_end__isnull=False,
            downtime_start__lt=scope.until,
            downtime_end__gt=scope.since,
        )
        .annotate(clipped=clipped)
    )


def downtime_per_asset(scope: Scope) -> list[dict]:
    """Total downtime per asset in the period, split by kind (planned / unplanned / not given).

    ``[{"asset": ..., "name": ..., "total": timedelta, "by_kind": {kind: timedelta}}, ...]``,
    longest first.
    """
    rows = _downtime_rows(scope).values("asset__asset_id", "asset__name", "downtime_kind").annotate(
        total=Sum("clipped")
    )
    assets: dict[str, dict] = {}
    for r in rows:
        label = _asset_label(r["asset__asset_id"])
        entry = assets.setdefault(
            label,
            {"asset": label, "name": r["asset__name"] or "", "total": timedelta(0),
             "by_kind": {k: timedelta(0) for k, _ in DOWNTIME_KINDS}},
        )
        kind = r["downtime_kind"] if r["downtime_kind"] in entry["by_kind"] else ""
        value = _as_timedelta(r["total"])
        entry["by_kind"][kind] += value
        entry["total"] += value
    return sorted(assets.values(), key=lambda a: (-a["total"], a["asset"]))


def downtime_total(scope: Scope) -> dict:
    """``{"total": timedelta, "by_kind": {kind: timedelta}}`` over every asset."""
    rows = _downtime_rows(scope).values("downtime_kind").annotate(total=Sum("clipped"))
    by_kind = {k: timedelta(0) for k, _ in DOWNTIME_KINDS}
    for r in rows:
        kind = r["downtime_kind"] if r["downtime_kind"] in by_kind else ""
        by_kind[kind] += _as_timedelta(r["total"])
    return {"total": sum(by_kind.values(), timedelta(0)), "by_kind": by_kind}


def _as_timedelta(value) -> timedelta:
    """Durations come back as timedelta (PostgreSQL, and SQLite through Django's converter)."""
    if value is None:
        return timedelta(0)
    if isinstance(value, timedelta):
        return value
    return timedelta(microseconds=value)  # a bare number of microseconds, should a backend give one


# --- causes ------------------------------------------------------------------------------------


def _cause_key(text: str) -> str:
    """How two causes are the same: case and runs of whitespace do not matter."""
    return " ".join(text.split()).casefold()


def top_causes(scope: Scope, *, limit: int = TOP_CAUSES) -> dict:
    """The most frequent causes of incidents created in the period.

    The database groups by lower-cased, trimmed text; Python then merges what differs only in
    inner whitespace or non-ASCII case (SQLite's lower() is ASCII-only). Each cause is shown as
    written in its largest group. ``{"causes": [{"cause", "count"}], "other_count", "other_causes"}``.
    """
    rows = (
        _created_in(scope)
        .exclude(cause="")
        .annotate(key=Lower(Trim("cause")))
        .values("key")
        .annotate(n=Count("pk"), label=Min(Trim("cause")))
    )
    merged: dict[str, dict] = {}
    for r in rows:
        key = _cause_key(r["label"] or "")
        if not key:
            continue  # whitespace only
        entry = merged.setdefault(key, {"cause": "", "count": 0, "_best": -1})
        entry["count"] += r["n"]
        if r["n"] > entry["_best"]:
            entry["cause"], entry["_best"] = " ".join(r["label"].split()), r["n"]
    causes = sorted(merged.values(), key=lambda c: (-c["count"], c["cause"].casefold()))
    for c in causes:
        del c["_best"]
    rest = causes[limit:]
    return {
        "causes": causes[:limit],
        "other_causes": len(rest),
        "other_count": sum(c["count"] for c in rest),
    }


# --- open incidents ----------------------------------------------------------------------------


def open_by_age(scope: Scope, *, now: datetime | None = None) -> dict:
    """Incidents open or in progress now, by age bucket and priority (the period does not apply;
    the asset and site do).

    ``{"buckets": [(key, label)], "series": {priority: [count per bucket]}, "total": n}``.
    """
    now = now or timezone.now()
    whens = [
        When(created__gt=now - upper, then=Value(key))
        for key, _, _, upper in AGE_BUCKETS
        if upper is not None
    ]
    bucket = Case(*whens, default=Value(AGE_BUCKETS[-1][0]))
    rows = (
        _incidents(scope)
        .filter(status__in=OPEN_STATUSES)
        .annotate(bucket=bucket)
        .values("bucket", "priority")
        .annotate(n=Count("pk"))
    )
    index = {key: i for i, (key, *_rest) in enumerate(AGE_BUCKETS)}
    series = {p: [0] * len(AGE_BUCKETS) for p, _ in PRIORITIES}
    total = 0
    for r in rows:
        if r["priority"] in series:
            series[r["priority"]][index[r["bucket"]]] += r["n"]
            total += r["n"]
    return {"buckets": [(key, label) for key, label, *_ in AGE_BUCKETS], "series": series, "total": total}


# --- answer feedback ---------------------------------------------------------------------------


def _feedback(scope: Scope) -> QuerySet[AnswerFeedback]:
    """Feedback, narrowed to an asset/site through its incident or its conversation's incidents."""
    qs = AnswerFeedback.objects.order_by()
    if scope.asset is None and scope.site is None:
        return qs
    match = Q()
    if scope.asset is not None:
        match &= Q(incident__asset=scope.asset) | Q(message__conversation__incidents__asset=scope.asset)
    if scope.site is not None:
        match &= Q(incident__asset__site=scope.site) | Q(
            message__conversation__incidents__asset__site=scope.site
        )
    # A subquery rather than joins: one feedback linked to several incidents counts once.
    return qs.filter(pk__in=AnswerFeedback.objects.filter(match).values("pk"))


def feedback_ratio(scope: Scope) -> dict:
    """Thumbs up / down given in the period and the thumbs-down awaiting review (any date).

    ``{"up": n, "down": n, "total": n, "up_share": 0..1 or None, "awaiting_review": n}``.
    """
    qs = _feedback(scope)
    agg = qs.filter(created__gte=scope.since, created__lt=scope.until).aggregate(
        up=Count("pk", filter=Q(rating=AnswerFeedback.Rating.UP)),
        down=Count("pk", filter=Q(rating=AnswerFeedback.Rating.DOWN)),
    )
    awaiting = qs.filter(rating=AnswerFeedback.Rating.DOWN, reviewed_at__isnull=True).count()
    total = agg["up"] + agg["down"]
    return {
        "up": agg["up"],
        "down": agg["down"],
        "total": total,
        "up_share": agg["up"] / total if total else None,
        "awaiting_review": awaiting,
    }


# --- everything --------------------------------------------------------------------------------


def dashboard_metrics(scope: Scope, *, now: datetime | None = None) -> dict:
    """Every metric of the dashboard for ``scope``."""
    open_now = open_by_age(scope, now=now)
    return {
        "per_week": incidents_per_week(scope),
        "mttr": mttr_per_asset(scope),
        "mttr_overall": mttr_overall(scope),
        "downtime": downtime_per_asset(scope),
        "downtime_total": downtime_total(scope),
        "causes": top_causes(scope),
        "open": open_now,
        "feedback": feedback_ratio(scope),
    }
