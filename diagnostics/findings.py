"""The findings engine: deterministic diagnostics over a snapshot of sensor readings.

Plain Python (no Django). Built-in checks cover every sensor with a spec — out of range,
in the warning band, stuck (flat-lined), missing — and rules loaded from a YAML file add the
knowledge that needs several sensors at once ("heater current 0 A while ambient is −15 °C").

A rule file looks like::

    rules:
      - id: heater_failure
        severity: high            # critical | high | medium | low
        device_types: [WXT536]    # optional: only for these device types
        sensor: HEAT_CURRENT      # the sensor the finding is about
        when:
          all:
            - {sensor: TEMP_AMB, lt: 0}
            - {sensor: HEAT_CURRENT, lte: 0.05}
        message: "Heater current {HEAT_CURRENT} A while ambient is {TEMP_AMB} °C ..."
        check: "Measure the 24 V heater supply ..."
        manual_query: "heater supply 24 V heating element"   # optional: cite a manual passage

Conditions: ``lt, lte, gt, gte, eq, ne`` (numbers, or text for ``eq``/``ne``), ``below_range``,
``above_range``, ``out_of_range`` (against the sensor's spec), ``present``; combined with
``all`` / ``any`` / ``not``. Message placeholders: ``{KEY}`` (value), ``{KEY.min}``,
``{KEY.max}``, ``{KEY.unit}``.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

SEVERITIES = ("critical", "high", "medium", "low")
SEVERITY_RANK = {s: i for i, s in enumerate(SEVERITIES)}


@dataclass
class SensorState:
    key: str
    value: float | None = None
    text: str = ""
    unit: str = ""
    ts: datetime | None = None
    min_value: float | None = None
    max_value: float | None = None
    warn_low: float | None = None
    warn_high: float | None = None
    flag: str = ""
    recent: list[tuple[datetime, float]] = field(default_factory=list)  # oldest first, numeric only

    def shown(self) -> str:
        if self.value is not None:
            return f"{_num(self.value)}{(' ' + self.unit) if self.unit else ''}"
        return self.text


@dataclass
class Finding:
    rule: str
    severity: str
    message: str
    sensor: str = ""
    check: str = ""
    manual_query: str = ""
    citation: dict | None = None  # {document, page, url}: the manual page that supports it

    def as_dict(self) -> dict:
        data = {"rule": self.rule, "severity": self.severity, "message": self.message, "sensor": self.sensor, "check": self.check}
        if self.citation:
            data["citation"] = self.citation
        return data


@dataclass
class Rule:
    id: str
    severity: str
    when: dict
    message: str
    sensor: str = ""
    check: str = ""
    device_types: tuple[str, ...] = ()
    manual_query: str = ""


class RuleError(ValueError):
    pass


def _num(value: float) -> str:
    return f"{value:.2f}".rstrip("0").rstrip(".") if value != int(value) else str(int(value))


def _range_text(s: SensorState) -> str:
    unit = f" {s.unit}" if s.unit else ""
    if s.min_value is not None and s.max_value is not None:
        return f"{_num(s.min_value)}–{_num(s.max_value)}{unit}"
    if s.min_value is not None:
        return f"≥ {_num(s.min_value)}{unit}"
    return f"≤ {_num(s.max_value)}{unit}"


# --- built-in checks -----------------------------------------------------------------------

def range_findings(sensors: dict[str, SensorState]) -> list[Finding]:
    found = []
    for s in sensors.values():
        if s.value is None:
            continue
        if s.min_value is not None and s.value < s.min_value:
            found.append(Finding("out_of_range", "high", f"{s.key} {s.shown()} is below its operating range {_range_text(s)}", s.key))
        elif s.max_value is not None and s.value > s.max_value:
            found.append(Finding("out_of_range", "high", f"{s.key} {s.shown()} is above its operating range {_range_text(s)}", s.key))
        elif s.warn_low is not None and s.value < s.warn_low:
            found.append(Finding("warning_band", "medium", f"{s.key} {s.shown()} is in the low warning band (< {_num(s.warn_low)})", s.key))
        elif s.warn_high is not None and s.value > s.warn_high:
            found.append(Finding("warning_band", "medium", f"{s.key} {s.shown()} is in the high warning band (> {_num(s.warn_high)})", s.key))
    return found


def stuck_findings(sensors: dict[str, SensorState], *, min_readings: int = 12, min_span: timedelta = timedelta(minutes=30)) -> list[Finding]:
    """A sensor repeating exactly the same value for a long stretch has probably frozen."""
    found = []
    for s in sensors.values():
        recent = s.recent[-min_readings:]
        if len(recent) < min_readings:
            continue
        values = {v for _, v in recent}
        span = recent[-1][0] - recent[0][0]
        if len(values) == 1 and span >= min_span:
            minutes = int(span.total_seconds() // 60)
            found.append(Finding("stuck_sensor", "medium",
                                 f"{s.key} has read exactly {s.shown()} for {len(recent)} readings over {minutes} min: the sensor may be frozen or disconnected", s.key))
    return found


def missing_findings(sensors: dict[str, SensorState], *, now: datetime, after: timedelta) -> list[Finding]:
    found = []
    for s in sensors.values():
        if s.ts is not None and now - s.ts > after:
            minutes = int((now - s.ts).total_seconds() // 60)
            found.append(Finding("missing_data", "high", f"No data from {s.key} for {minutes} min (last {s.shown()} at {s.ts:%Y-%m-%d %H:%M} UTC)", s.key))
    return found


# --- rules from a file ---------------------------------------------------------------------

def load_rules(path: Path | str) -> list[Rule]:
    import yaml

    data = yaml.safe_load(Path(path).read_text()) or {}
    if not isinstance(data, dict) or not isinstance(data.get("rules", []), list):
        raise RuleError(f"{path}: expected a mapping with a 'rules' list")
    rules = []
    for i, raw in enumerate(data.get("rules", [])):
        if not isinstance(raw, dict):
            raise RuleError(f"{path}: rule #{i + 1} must be a mapping")
        device_types = raw.get("device_types", ()) or ()
        if isinstance(device_types, str):
            device_types = [device_types]
        try:
            rule = Rule(
                id=str(raw["id"]),
                severity=str(raw.get("severity", "medium")),
                when=raw["when"],
                message=str(raw["message"]),
                sensor=str(raw.get("sensor", "")),
                check=str(raw.get("check", "")),
                device_types=tuple(str(d) for d in device_types),
                manual_query=str(raw.get("manual_query", "")),
            )
        except (KeyError, TypeError) as exc:
            raise RuleError(f"{path}: rule #{i + 1} is missing {exc}") from None
        if rule.severity not in SEVERITIES:
            raise RuleError(f"{path}: rule {rule.id}: severity must be one of {', '.join(SEVERITIES)}")
        _validate(rule.when, rule.id)
        rules.append(rule)
    return rules


_OPS = {"lt", "lte", "gt", "gte", "eq", "ne", "below_range", "above_range", "out_of_range", "present"}


def _validate(cond, rule_id):
    if not isinstance(cond, dict):
        raise RuleError(f"rule {rule_id}: a condition must be a mapping")
    if "all" in cond or "any" in cond:
        for group in ("all", "any"):
            subs = cond.get(group, [])
            if not isinstance(subs, list):
                raise RuleError(f"rule {rule_id}: '{group}' must be a list of conditions")
            for sub in subs:
                _validate(sub, rule_id)
        return
    if "not" in cond:
        return _validate(cond["not"], rule_id)
    if "sensor" not in cond or not (set(cond) - {"sensor"}) <= _OPS or len(cond) < 2:
        raise RuleError(f"rule {rule_id}: bad condition {cond!r}")
    for op in ("lt", "lte", "gt", "gte"):
        if op in cond and (isinstance(cond[op], bool) or not isinstance(cond[op], (int, float))):
            raise RuleError(f"rule {rule_id}: '{op}' needs a number, got {cond[op]!r}")
    for op in ("eq", "ne"):
        if op in cond and not isinstance(cond[op], (int, float, str)):
            raise RuleError(f"rule {rule_id}: '{op}' needs a number or text, got {cond[op]!r}")


def _holds(cond: dict, sensors: dict[str, SensorState]) -> bool:
    if "all" in cond:
        return all(_holds(c, sensors) for c in cond["all"])
    if "any" in cond:
        return any(_holds(c, sensors) for c in cond["any"])
    if "not" in cond:
        return not _holds(cond["not"], sensors)
    s = sensors.get(cond["sensor"])
    if s is None:
        return False
    for op, want in cond.items():
        if op == "sensor":
            continue
        if op == "present":
            ok = bool(want)
        elif op in ("eq", "ne") and isinstance(want, str):
            ok = (s.text.upper() == want.upper()) == (op == "eq")
        elif op in ("below_range", "above_range", "out_of_range"):
            below = s.value is not None and s.min_value is not None and s.value < s.min_value
            above = s.value is not None and s.max_value is not None and s.value > s.max_value
            ok = {"below_range": below, "above_range": above, "out_of_range": below or above}[op] == bool(want)
        else:
            if s.value is None:
                return False
            v, w = s.value, float(want)
            ok = {"lt": v < w, "lte": v <= w, "gt": v > w, "gte": v >= w, "eq": v == w, "ne": v != w}[op]
        if not ok:
            return False
    return True


_PLACEHOLDER = re.compile(r"\{([A-Za-z][A-Za-z0-9_.\-]*?)(?:\.(min|max|unit))?\}")


def _render(template: str, sensors: dict[str, SensorState]) -> str:
    def sub(m: re.Match) -> str:
        s = sensors.get(m.group(1))
        if s is None:
            return "?"
        part = m.group(2)
        if part == "min":
            return _num(s.min_value) if s.min_value is not None else "?"
        if part == "max":
            return _num(s.max_value) if s.max_value is not None else "?"
        if part == "unit":
            return s.unit
        return _num(s.value) if s.value is not None else s.text

    return _PLACEHOLDER.sub(sub, template)


def rule_findings(rules: list[Rule], sensors: dict[str, SensorState], device_type: str | None) -> list[Finding]:
    found = []
    for rule in rules:
        if rule.device_types and device_type and device_type not in rule.device_types:
            continue
        if _holds(rule.when, sensors):
            found.append(Finding(rule.id, rule.severity, _render(rule.message, sensors), rule.sensor,
                                 _render(rule.check, sensors), rule.manual_query))
    return found


def evaluate(
    sensors: dict[str, SensorState],
    rules: list[Rule],
    *,
    device_type: str | None = None,
    now: datetime | None = None,
    missing_after: timedelta | None = None,
) -> list[Finding]:
    """Every finding for this snapshot, most severe first; rule findings before generic ones."""
    found = rule_findings(rules, sensors, device_type)
    found += range_findings(sensors)
    found += stuck_findings(sensors)
    if now is not None and missing_after is not None:
        found += missing_findings(sensors, now=now, after=missing_after)
    # A rule that explains a sensor's problem already says it is out of range: keep one.
    explained = {(f.sensor, "out_of_range") for f in found if f.rule not in ("out_of_range", "warning_band")}
    found = [f for f in found if (f.sensor, f.rule) not in explained]
    return sorted(found, key=lambda f: SEVERITY_RANK.get(f.severity, 9))
