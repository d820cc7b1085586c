"""Parse telemetry payloads into readings. Pure functions: no database, no Django.

Two formats arrive from the field:

- JSON: ``{"asset": "WXT536-01", "ts": "2026-06-12T10:00:00Z", "readings": {"V_IN": 8.4}}``,
  a reading may also be ``{"value": 8.4, "unit": "V"}`` or a status string.
- The line format devices print:
  ``[2026-06-12] ID:WXT536 >>> HEAT_CURRENT: 0.00A | TEMP_AMB: -15.2C | STATUS: ICE_WARNING``
  ``V_IN: 8.4V [LOW] | REF_CHK: FAIL | EVENT: SYSTEM_RESET`` (no asset, no time).
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone

MAX_PAYLOAD_BYTES = 64 * 1024
MAX_READINGS = 200
_KEY = re.compile(r"^[A-Za-z][A-Za-z0-9_.\-]{0,63}$")
_NUMBER_WITH_UNIT = re.compile(r"^\s*([-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)\s*([A-Za-z°%/µ]*)\s*(?:\[([A-Za-z_ ]+)\])?\s*$")
_LINE_HEAD = re.compile(r"^\s*(?:\[(?P<ts>[^\]]+)\])?\s*(?:ID:\s*(?P<asset>[A-Za-z0-9_.\-]+))?\s*(?:>>>|:)?\s*(?P<body>.*)$")
_UNIT_ALIASES = {"C": "°C", "°C": "°C", "degC": "°C", "F": "°F"}


class PayloadError(ValueError):
    """The payload is malformed; the message says why (logged and counted, never raised to a loop)."""


@dataclass
class ParsedReading:
    key: str
    value: float | None = None
    text: str = ""
    unit: str = ""
    flag: str = ""  # e.g. LOW, HIGH as the device marked it


@dataclass
class Payload:
    asset: str | None
    ts: datetime | None
    readings: list[ParsedReading] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {r.key: (r.value if r.value is not None else r.text) for r in self.readings}


def parse_payload(data: bytes | str) -> Payload:
    """JSON or line format, whichever it is."""
    if isinstance(data, bytes):
        if len(data) > MAX_PAYLOAD_BYTES:
            raise PayloadError(f"payload of {len(data)} bytes is over the {MAX_PAYLOAD_BYTES} byte limit")
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError:
            raise PayloadError("payload is not UTF-8 text") from None
    if len(data) > MAX_PAYLOAD_BYTES:
        raise PayloadError(f"payload is over the {MAX_PAYLOAD_BYTES} byte limit")
    text = data.strip()
    if not text:
        raise PayloadError("empty payload")
    if text[0] == "{":
        return parse_json_payload(text)
    return parse_line(text)  # "[2026-06-12] ID:..." starts with a bracket too


def parse_json_payload(text: str) -> Payload:
    try:
        obj = json.loads(text)
    except ValueError as exc:
        raise PayloadError(f"invalid JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise PayloadError("JSON payload must be an object")
    asset = obj.get("asset")
    if asset is not None and (not isinstance(asset, str) or not _KEY.match(asset)):
        raise PayloadError("'asset' must be an identifier string")
    readings_obj = obj.get("readings")
    if not isinstance(readings_obj, dict) or not readings_obj:
        raise PayloadError("'readings' must be a non-empty object")
    if len(readings_obj) > MAX_READINGS:
        raise PayloadError(f"more than {MAX_READINGS} readings in one payload")
    units = obj.get("units") if isinstance(obj.get("units"), dict) else {}
    readings = []
    for key, raw in readings_obj.items():
        if not _KEY.match(str(key)):
            raise PayloadError(f"bad sensor key {str(key)[:40]!r}")
        unit = units.get(key, "")
        if isinstance(raw, dict):
            unit = raw.get("unit", unit) or ""
            raw = raw.get("value")
        readings.append(_reading_from_value(key, raw, unit))
    return Payload(asset=asset, ts=parse_timestamp(obj.get("ts")), readings=readings)


def _reading_from_value(key: str, raw, unit: str = "") -> ParsedReading:
    if isinstance(raw, bool):
        return ParsedReading(key=key, text="TRUE" if raw else "FALSE")
    if isinstance(raw, (int, float)):
        try:
            value = float(raw)
        except OverflowError:
            raise PayloadError(f"{key}: number out of range") from None
        if not math.isfinite(value):
            raise PayloadError(f"{key}: value is not a finite number")
        return ParsedReading(key=key, value=value, unit=_unit(str(unit)))
    if isinstance(raw, str):
        return _reading_from_text(key, raw)
    raise PayloadError(f"{key}: value must be a number or text, got {type(raw).__name__}")


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
MAX_UNIT_CHARS = 16


def _reading_from_text(key: str, raw: str) -> ParsedReading:
    raw = raw.strip()
    if len(raw) > 200:
        raise PayloadError(f"{key}: text value longer than 200 characters")
    if _CONTROL.search(raw):
        raise PayloadError(f"{key}: text value contains control characters")
    m = _NUMBER_WITH_UNIT.match(raw)
    if m:
        value = float(m.group(1))
        if not math.isfinite(value):
            raise PayloadError(f"{key}: value is not a finite number")
        return ParsedReading(key=key, value=value, unit=_unit(m.group(2)), flag=(m.group(3) or "").strip().upper())
    return ParsedReading(key=key, text=raw.upper() if raw.isupper() or "_" in raw else raw)


def _unit(unit: str) -> str:
    if len(unit) > MAX_UNIT_CHARS or _CONTROL.search(unit):
        raise PayloadError(f"unit {unit[:20]!r} is not a unit")
    return _UNIT_ALIASES.get(unit, unit)


def parse_line(text: str) -> Payload:
    """The field line format; several lines are allowed, the last asset/time seen applies."""
    lines = [line for line in text.splitlines() if line.strip()]
    if len(lines) > 1:
        merged = Payload(asset=None, ts=None)
        for line in lines:
            part = parse_line(line)
            merged.asset = part.asset or merged.asset
            merged.ts = part.ts or merged.ts
            merged.readings.extend(part.readings)
        return merged
    m = _LINE_HEAD.match(text)
    if not m:
        raise PayloadError("not a recognised line format")
    body = m.group("body")
    readings = []
    for field_text in body.split("|"):
        if not field_text.strip():
            continue
        if ":" not in field_text:
            raise PayloadError(f"field without 'KEY: value': {field_text.strip()[:40]!r}")
        key, _, raw = field_text.partition(":")
        key = key.strip()
        if not _KEY.match(key):
            raise PayloadError(f"bad sensor key {key[:40]!r}")
        readings.append(_reading_from_text(key, raw))
    if not readings:
        raise PayloadError("no 'KEY: value' fields found")
    if len(readings) > MAX_READINGS:
        raise PayloadError(f"more than {MAX_READINGS} readings in one payload")
    return Payload(asset=m.group("asset"), ts=parse_timestamp(m.group("ts")), readings=readings)


def parse_timestamp(value) -> datetime | None:
    """ISO 8601 text or epoch seconds; a date alone means midnight UTC; None stays None."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise PayloadError("'ts' must be a time")
    if isinstance(value, (int, float)):
        try:
            return datetime.fromtimestamp(float(value), tz=timezone.utc)
        except (OverflowError, OSError, ValueError):
            raise PayloadError("'ts' epoch seconds out of range") from None
    if not isinstance(value, str):
        raise PayloadError("'ts' must be ISO 8601 text or epoch seconds")
    text = value.strip().replace("Z", "+00:00")
    try:
        ts = datetime.fromisoformat(text)
    except ValueError:
        raise PayloadError(f"'ts' is not an ISO 8601 time: {value[:40]!r}") from None
    return ts if ts.tzinfo else ts.replace(tzinfo=timezone.utc)


def nul_free(raw: bytes | str) -> bytes | str:
    """``raw`` with NUL shown as ``\\x00``: PostgreSQL text columns cannot hold NUL."""
    return raw.replace(b"\x00", b"\\x00") if isinstance(raw, bytes) else raw.replace("\x00", "\\x00")

