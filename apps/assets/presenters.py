"""What the asset pages show: assets, latest readings with their range bars, chart series and
findings, shaped for the templates and for ``live.json``. Reads only; no HTTP in here.

The range bar's geometry (percent positions) and each reading's state are computed here, once,
so the template and ``static/js/asset.js`` draw the same thing without knowing the thresholds.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone as dt_timezone

from django.db.models import Count, OuterRef, Q, Subquery
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from apps.assets.models import Asset, Reading, Sensor, SensorSpec
from apps.assets.selectors import LiveContext, asset_live_context
from diagnostics.findings import SEVERITY_RANK, SensorState

HOURS_DEFAULT = 6
HOURS_MAX = 7 * 24
HOUR_CHOICES = (1, 6, 24, 72)
# A chart is a few hundred pixels wide: more points than this are reduced to each bucket's
# lowest and highest reading, so a short spike out of range still shows.
CHART_MAX_POINTS = 600
LIVE_MAX_READINGS = 500  # per sensor and poll; a client that was away longer re-reads the page
BAR_PAD = 0.15  # the bar extends this share of the range beyond min and max, for out-of-range values
OK_TEXTS = {"OK", "PASS", "NORMAL", "GOOD", "ON"}


# --- query parameters ------------------------------------------------------------------------

def hours_param(raw: str | None) -> int:
    """``?hours=`` as a whole number of hours, 1 to a week; anything else means the default."""
    try:
        hours = int(raw)
    except (TypeError, ValueError):
        return HOURS_DEFAULT
    return min(max(hours, 1), HOURS_MAX)


def since_param(raw: str | None) -> datetime | None:
    """``?since=`` as an aware datetime (naive means UTC); ValueError when it is not ISO 8601."""
    if raw is None or raw == "":
        return None
    # An unencoded "+00:00" arrives as " 00:00".
    text = raw.strip().replace(" ", "+").replace("Z", "+00:00")
    parsed = parse_datetime(text)
    if parsed is None:
        raise ValueError(f"since is not an ISO 8601 time: {raw[:40]!r}")
    return parsed if timezone.is_aware(parsed) else parsed.replace(tzinfo=dt_timezone.utc)


# --- formatting --------------------------------------------------------------------------------

def _num(value: float) -> str:
    text = f"{value:.3f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def _pct(value: float) -> str:
    return f"{value:.2f}"


def _ts_display(ts: datetime | None) -> str:
    return timezone.localtime(ts).strftime("%Y-%m-%d %H:%M:%S") if ts else ""


def _ms(ts: datetime) -> int:
    return int(ts.timestamp() * 1000)


# --- readings ------------------------------------------------------------------------------

@dataclass
class SensorRow:
    key: str
    kind: str
    unit: str
    description: str
    min_value: float | None
    max_value: float | None
    warn_low: float | None
    warn_high: float | None
    value: float | None = None
    text: str = ""
    flag: str = ""
    ts: datetime | None = None
    state: str = "none"  # none | ok | warn | out (numeric); none | ok | info | warn | bad (status)
    finding: str = ""  # severity of the most severe finding about this sensor
    bar: dict | None = None

    @property
    def numeric(self) -> bool:
        return self.kind == SensorSpec.Kind.NUMERIC

    @property
    def has_data(self) -> bool:
        return self.ts is not None

    @property
    def shown(self) -> str:
        if self.value is not None:
            return f"{_num(self.value)}{(' ' + self.unit) if self.unit else ''}"
        return self.text or "—"

    @property
    def range_text(self) -> str:
        unit = f" {self.unit}" if self.unit else ""
        if self.min_value is not None and self.max_value is not None:
            return f"{_num(self.min_value)}–{_num(self.max_value)}{unit}"
        if self.min_value is not None:
            return f"≥ {_num(self.min_value)}{unit}"
        if self.max_value is not None:
            return f"≤ {_num(self.max_value)}{unit}"
        return ""

    @property
    def ts_display(self) -> str:
        return _ts_display(self.ts)

    @property
    def summary(self) -> str:
        """The range bar in words, for screen readers."""
        words = {"ok": "in range", "warn": "in the warning band", "out": "out of range", "none": "no data"}
        parts = [self.key, self.shown if self.has_data else "no data"]
        if self.range_text:
            parts.append(f"range {self.range_text}")
        if self.has_data:
            parts.append(words.get(self.state, ""))
        return ", ".join(p for p in parts if p)

    def as_dict(self) -> dict:
        return {
            "key": self.key, "kind": self.kind, "value": self.value, "text": self.text, "flag": self.flag,
            "unit": self.unit, "shown": self.shown if self.has_data else "—",
            "ts": self.ts.isoformat() if self.ts else None, "ts_display": self.ts_display,
            "state": self.state, "finding": self.finding, "pos": self.bar["pos"] if self.bar else None,
            "summary": self.summary,
        }


def _numeric_state(row: SensorRow) -> str:
    v = row.value
    if v is None:
        return "none"
    if (row.min_value is not None and v < row.min_value) or (row.max_value is not None and v > row.max_value):
        return "out"
    if (row.warn_low is not None and v < row.warn_low) or (row.warn_high is not None and v > row.warn_high):
        return "warn"
    return "ok"


def _status_state(row: SensorRow) -> str:
    if not row.has_data:
        return "none"
    if row.finding in ("critical", "high"):
        return "bad"
    if row.finding:
        return "warn"
    return "ok" if row.text.upper() in OK_TEXTS else "info"


def range_bar(row: SensorRow) -> dict | None:
    """Percent positions of the operating range, the warning bands and the value marker.

    The bar spans the range plus a margin each side, so a value out of range sits visibly
    beyond the range's edge; values further out are pinned to the bar's end.
    """
    lo_range, hi_range = row.min_value, row.max_value
    if lo_range is None or hi_range is None or hi_range <= lo_range:
        return None
    pad = (hi_range - lo_range) * BAR_PAD
    lo, hi = lo_range - pad, hi_range + pad

    def pct(v: float) -> float:
        return (min(max(v, lo), hi) - lo) / (hi - lo) * 100

    def span(a: float, b: float) -> dict:
        return {"left": _pct(pct(a)), "width": _pct(pct(b) - pct(a))}

    warn = []
    if row.warn_low is not None and row.warn_low > lo_range:
        warn.append(span(lo_range, min(row.warn_low, hi_range)))
    if row.warn_high is not None and row.warn_high < hi_range:
        warn.append(span(max(row.warn_high, lo_range), hi_range))
    return {
        "ok_left": _pct(pct(lo_range)),
        "ok_width": _pct(pct(hi_range) - pct(lo_range)),
        "max_left": _pct(pct(hi_range)),
        "warn": warn,
        "pos": _pct(pct(row.value)) if row.value is not None else None,
        "min": _num(lo_range),
        "max": _num(hi_range),
    }


def sensor_rows(asset: Asset, live: LiveContext) -> list[SensorRow]:
    """Every sensor of ``asset`` (those without data too), with its latest reading and state."""
    worst: dict[str, str] = {}
    for f in live.findings:
        if f.sensor and (f.sensor not in worst or SEVERITY_RANK[f.severity] < SEVERITY_RANK[worst[f.sensor]]):
            worst[f.sensor] = f.severity
    rows = []
    for sensor in asset.sensors.all():
        state: SensorState | None = live.sensors.get(sensor.key)
        row = SensorRow(
            key=sensor.key, kind=sensor.kind, unit=sensor.unit, description=sensor.description,
            min_value=sensor.min_value, max_value=sensor.max_value,
            warn_low=sensor.warn_low, warn_high=sensor.warn_high,
            finding=worst.get(sensor.key, ""),
        )
        if state is not None:
            row.value, row.text, row.flag, row.ts = state.value, state.text, state.flag, state.ts
        if row.numeric:
            row.state = _numeric_state(row)
            row.bar = range_bar(row)
        else:
            row.state = _status_state(row)
        rows.append(row)
    return rows


# --- charts --------------------------------------------------------------------------------

def _reduce(points: list[tuple[datetime, float]], limit: int) -> list[tuple[datetime, float]]:
    """At most about ``limit`` points: each bucket's lowest and highest, in time order."""
    if len(points) <= limit:
        return points
    buckets = max(limit // 2, 1)
    size = len(points) / buckets
    out = []
    for b in range(buckets):
        chunk = points[int(b * size):int((b + 1) * size)]
        if not chunk:
            continue
        low = min(chunk, key=lambda p: p[1])
        high = max(chunk, key=lambda p: p[1])
        out += sorted({low, high}, key=lambda p: p[0])
    if out[-1] != points[-1]:
        out.append(points[-1])  # the chart ends on the latest value
    return out


def _numeric_points(sensor_ids: list[int], *, after: datetime, limit: int | None = None) -> dict[int, list]:
    qs = (Reading.objects.filter(sensor_id__in=sensor_ids, ts__gt=after, value__isnull=False)
          .order_by("sensor_id", "ts").values_list("sensor_id", "ts", "value"))
    points: dict[int, list] = {sid: [] for sid in sensor_ids}
    for sensor_id, ts, value in qs.iterator():
        points[sensor_id].append((ts, value))
    if limit is not None:
        points = {sid: p[-limit:] for sid, p in points.items()}
    return points


def _cursor(points: dict[int, list], *, since: datetime) -> datetime:
    """The time of the newest reading read: where the next poll starts."""
    return max((p[-1][0] for p in points.values() if p), default=since)


def chart_series(sensors: list[Sensor], *, since: datetime) -> tuple[list[dict], datetime]:
    """One series per numeric sensor, its range and its readings after ``since`` (epoch ms);
    and the cursor for the live poll."""
    numeric = [s for s in sensors if s.kind == SensorSpec.Kind.NUMERIC]
    points = _numeric_points([s.pk for s in numeric], after=since)
    series = [
        {
            "key": s.key, "unit": s.unit, "min": s.min_value, "max": s.max_value,
            "warn_low": s.warn_low, "warn_high": s.warn_high,
            "points": [[_ms(ts), value] for ts, value in _reduce(points[s.pk], CHART_MAX_POINTS)],
        }
        for s in numeric
    ]
    return series, _cursor(points, since=since)


# --- pages -----------------------------------------------------------------------------------

def asset_list():
    """Assets with their count of open alerts and the time of their last reading."""
    last_reading = Reading.objects.filter(sensor__asset=OuterRef("pk")).order_by("-ts").values("ts")[:1]
    return (
        Asset.objects.select_related("device_type", "site")
        .annotate(open_alerts=Count("alerts", filter=Q(alerts__resolved__isnull=True), distinct=True),
                  last_reading=Subquery(last_reading))
        .order_by("asset_id")
    )


def _findings(live: LiveContext) -> list[dict]:
    return [f.as_dict() for f in live.findings]


def asset_page(asset: Asset, *, hours: int, now: datetime | None = None) -> dict:
    """Everything the asset page renders; the live poll continues from ``cursor``."""
    now = now or timezone.now()
    since = now - timedelta(hours=hours)
    live = asset_live_context(asset, now=now)
    rows = sensor_rows(asset, live)
    charts, cursor = chart_series(list(asset.sensors.all()), since=since)
    return {
        "asset": asset,
        "hours": hours,
        "hour_choices": HOUR_CHOICES,
        "numeric_rows": [r for r in rows if r.numeric],
        "status_rows": [r for r in rows if not r.numeric],
        "findings": _findings(live),
        "manuals": list(asset.manuals.order_by("original_name")),
        "open_alerts": asset.alerts.filter(resolved__isnull=True).count(),
        "charts": charts,
        "cursor": cursor.isoformat(),
        "now_ms": _ms(now),
        "time_zone": timezone.get_current_timezone_name(),
    }


def asset_live(
    asset: Asset, *, since: datetime | None, hours: int = HOURS_DEFAULT, now: datetime | None = None
) -> dict:
    """The live poll: numeric readings newer than ``since``, every sensor's latest, the findings."""
    now = now or timezone.now()
    # A client back from a long sleep gets at most the longest window the page can show.
    since = max(since or now - timedelta(hours=hours), now - timedelta(hours=HOURS_MAX))
    live = asset_live_context(asset, now=now)
    sensors = {s.pk: s for s in asset.sensors.all()}
    numeric_ids = [pk for pk, s in sensors.items() if s.kind == SensorSpec.Kind.NUMERIC]
    points = _numeric_points(numeric_ids, after=since, limit=LIVE_MAX_READINGS)
    readings = {sensors[pk].key: [[_ms(ts), v] for ts, v in p] for pk, p in points.items() if p}
    return {
        "asset": asset.asset_id,
        "now": now.isoformat(),
        "now_ms": _ms(now),
        "cursor": _cursor(points, since=since).isoformat(),
        "readings": readings,
        "latest": {r.key: r.as_dict() for r in sensor_rows(asset, live)},
        "findings": _findings(live),
        "open_alerts": asset.alerts.filter(resolved__isnull=True).count(),
    }
