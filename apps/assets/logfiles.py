"""Readings from uploaded log files (LOG/CSV from the spine), so a log can be asked about offline.

Known formats (anything else is left alone and returns (0, 0)):

- The device line format, one payload per line; the asset and the time may be on the line or not
  (a line without them continues the last line above it that had them)::

      [2026-06-12 10:00:00] ID:WXT536 >>> HEAT_CURRENT: 0.00A | TEMP_AMB: -15.2C | STATUS: ICE_WARNING

  Other lines (boot messages, prose) are skipped; a line that looks like telemetry but cannot be
  parsed is rejected.
- CSV, wide: ``timestamp,asset,V_IN,TEMP_AMB,...`` (one row per time, one column per sensor; the
  asset column is optional) or long: ``timestamp,asset,sensor,value[,unit]`` (one row per reading).

Readings are stored with source ``log``. Rejections are recorded like any telemetry rejection
(TelemetryRejection, "topic" holding ``file:line``), but at most ``MAX_REJECTION_ROWS`` rows per
file, and unknown assets and sensors once per file rather than once per line.
"""
from __future__ import annotations

import csv
import logging
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from django.conf import settings
from django.db import transaction

from apps.assets.models import Asset, Reading, Sensor, SensorSpec
from apps.assets.payloads import _KEY, Payload, PayloadError, _reading_from_text, parse_line, parse_timestamp

log = logging.getLogger(__name__)

SOURCE = "log"
MAX_REJECTION_ROWS = 20
BATCH_LINES = 500  # lines per transaction: fast on SQLite without holding its write lock for long
_SNIFF_LINES = 200

_TIME_COLUMNS = ("timestamp", "ts", "time", "datetime", "date")
_ASSET_COLUMNS = ("asset", "asset_id", "id", "device")
_SENSOR_COLUMNS = ("sensor", "key", "channel")
_FIELD = r"[A-Za-z][A-Za-z0-9_.\-]{0,63}\s*:\s*\S"
# A telemetry line: "[ts] ID:..." or "... >>> ..." or at least two "KEY: value" fields split by "|".
_TELEMETRY_LINE = re.compile(
    rf"^\s*(?:\[[^\]]+\]\s*ID:|.*>>>\s*{_FIELD}|(?:\[[^\]]+\]\s*)?{_FIELD}[^|]*(?:\|\s*{_FIELD}[^|]*)+$)"
)


class _HeaderProblem(PayloadError):
    """A CSV header problem: reported once, the rest of the file is still read."""


@dataclass
class _Tally:
    name: str
    stored: int = 0
    rejected: int = 0
    skipped: int = 0  # stored already by an earlier reading of the same file
    rejection_rows: int = 0
    unknown_assets: dict = field(default_factory=dict)  # asset id -> (first line, count)
    unknown_sensors: dict = field(default_factory=lambda: defaultdict(Counter))  # asset id -> key -> count


def logfile_format(path: Path | str) -> str | None:
    """``line``, ``csv-wide``, ``csv-long`` or None (not a format we read)."""
    head = _head(Path(path))
    if not head:
        return None
    first = head[0]
    if "," in first:
        columns = [c.strip().lower() for c in next(csv.reader([first]))]
        if any(c in _TIME_COLUMNS for c in columns):
            if any(c in _SENSOR_COLUMNS for c in columns) and "value" in columns:
                return "csv-long"
            if len([c for c in columns if c not in _TIME_COLUMNS + _ASSET_COLUMNS]) >= 1:
                return "csv-wide"
    if any(_TELEMETRY_LINE.match(line) for line in head):
        return "line"
    return None


def readings_from_logfile(path: Path | str, *, asset_hint: str | None = None, name: str | None = None) -> tuple[int, int]:
    """Store the readings of a log file; returns (readings stored, lines or rows rejected).

    ``asset_hint`` is the asset of lines that name none (or name only the device type, as
    ``ID:WXT536`` does); ``name`` is the file name shown in rejections (default: the path's).
    A file in no known format returns (0, 0) and stores nothing. Reading the same file again
    stores nothing new: a sensor's log reading at a time already stored is skipped.
    """
    path = Path(path)
    kind = logfile_format(path)
    if kind is None:
        return 0, 0
    tally = _Tally(name=name or path.name)
    resolver = _AssetResolver(asset_hint)
    records = _line_records(path) if kind == "line" else _csv_records(path, long=kind == "csv-long")
    batch = []
    for record in records:
        batch.append(record)
        if len(batch) >= BATCH_LINES:
            _store_batch(batch, resolver, tally)
            batch = []
    if batch:
        _store_batch(batch, resolver, tally)
    _report_unknown(tally)
    log.info("%s: %d readings stored, %d already stored, %d lines rejected (%s format)",
             tally.name, tally.stored, tally.skipped, tally.rejected, kind)
    return tally.stored, tally.rejected


# --- reading the file ----------------------------------------------------------------------

def _open(path: Path):
    return open(path, encoding="utf-8-sig", errors="replace", newline="")


def _head(path: Path) -> list[str]:
    lines = []
    with _open(path) as f:
        for line in f:
            if line.strip() and not line.lstrip().startswith("#"):
                lines.append(line.rstrip("\r\n"))
            if len(lines) >= _SNIFF_LINES:
                break
    return lines


def _line_records(path: Path):
    """(line number, raw line, Payload or PayloadError) for each telemetry line."""
    last_ts = last_asset = None
    with _open(path) as f:
        for lineno, line in enumerate(f, start=1):
            line = line.rstrip("\r\n")
            if not line.strip() or not _TELEMETRY_LINE.match(line):
                continue
            try:
                payload = parse_line(line)
            except PayloadError as exc:
                yield lineno, line, exc
                continue
            # A line without a time or an asset continues the one above it.
            payload.ts = payload.ts or last_ts
            payload.asset = payload.asset or last_asset
            last_ts, last_asset = payload.ts, payload.asset
            yield lineno, line, payload


def _csv_records(path: Path, *, long: bool):
    with _open(path) as f:
        lines = (line for line in f if line.strip() and not line.lstrip().startswith("#"))
        reader = csv.reader(lines)
        header = [c.strip() for c in next(reader)]
        lower = [c.lower() for c in header]
        t_col = next(i for i, c in enumerate(lower) if c in _TIME_COLUMNS)
        a_col = next((i for i, c in enumerate(lower) if c in _ASSET_COLUMNS), None)
        if long:
            s_col = next(i for i, c in enumerate(lower) if c in _SENSOR_COLUMNS)
            v_col = lower.index("value")
            u_col = lower.index("unit") if "unit" in lower else None
            yield from _long_rows(reader, t_col, a_col, s_col, v_col, u_col)
            return
        sensor_cols = [(i, header[i]) for i in range(len(header)) if i not in (t_col, a_col)]
        bad = [key for _, key in sensor_cols if not _KEY.match(key)]
        if bad:
            # Not counted as a rejected row: the other columns are still read.
            yield 1, ",".join(header), _HeaderProblem(f"column(s) ignored, not sensor keys: {', '.join(k[:40] for k in bad)}")
            sensor_cols = [(i, key) for i, key in sensor_cols if _KEY.match(key)]
        for row in reader:
            lineno, raw = reader.line_num, ",".join(row)
            try:
                ts = _csv_time(_cell(row, t_col))
                readings = [_reading_from_text(key, _cell(row, i)) for i, key in sensor_cols if _cell(row, i)]
                if not readings:
                    raise PayloadError("no values in this row")
            except PayloadError as exc:
                yield lineno, raw, exc
                continue
            yield lineno, raw, Payload(asset=_cell(row, a_col) or None, ts=ts, readings=readings)


def _long_rows(reader, t_col, a_col, s_col, v_col, u_col):
    """Rows of one asset and one time make one payload."""
    current, first_line, raws = None, 0, []
    for row in reader:
        lineno, raw = reader.line_num, ",".join(row)
        try:
            ts = _csv_time(_cell(row, t_col))
            key = _cell(row, s_col)
            if not _KEY.match(key):
                raise PayloadError(f"bad sensor key {key[:40]!r}")
            value = _cell(row, v_col)
            if not value:
                raise PayloadError(f"{key}: no value")
            reading = _reading_from_text(key, value)
            if u_col is not None and _cell(row, u_col) and reading.value is not None:
                from apps.assets.payloads import _unit

                reading.unit = _unit(_cell(row, u_col))
        except PayloadError as exc:
            yield lineno, raw, exc
            continue
        asset = _cell(row, a_col) or None
        if current is not None and (current.asset, current.ts) == (asset, ts):
            current.readings.append(reading)
            raws.append(raw)
            continue
        if current is not None:
            yield first_line, "\n".join(raws), current
        current, first_line, raws = Payload(asset=asset, ts=ts, readings=[reading]), lineno, [raw]
    if current is not None:
        yield first_line, "\n".join(raws), current


def _cell(row: list[str], index: int | None) -> str:
    return row[index].strip() if index is not None and index < len(row) else ""


def _csv_time(text: str) -> datetime:
    if not text:
        raise PayloadError("no timestamp")
    if re.fullmatch(r"\d+(?:\.\d+)?", text):
        return parse_timestamp(float(text))
    return parse_timestamp(text)


# --- storing -------------------------------------------------------------------------------

class _AssetResolver:
    """The asset of a record, cached per name; honours asset_hint for lines naming a type."""

    def __init__(self, hint: str | None):
        self.hint = Asset.objects.filter(asset_id=hint).select_related("device_type").first() if hint else None
        self.hint_id = hint
        self._cache: dict[str | None, Asset | None] = {}
        self._known: dict[int, set[str] | None] = {}
        self._sensors: dict[int, dict[str, Sensor]] = {}

    def asset(self, named: str | None) -> Asset | None:
        if named not in self._cache:
            self._cache[named] = self._resolve(named)
        return self._cache[named]

    def _resolve(self, named: str | None) -> Asset | None:
        from apps.assets.services import _asset_for

        if named is None:
            return self.hint or (_asset_for(Payload(asset=None, ts=None), self.hint_id) if self.hint_id else None)
        exact = Asset.objects.filter(asset_id=named).first()
        if exact is not None:
            return exact
        if self.hint is not None and self.hint.device_type_id and self.hint.device_type.key.upper() == named.upper():
            return self.hint  # "ID:WXT536" in the log of WXT536-02
        return _asset_for(Payload(asset=named, ts=None), None)

    def sensor(self, asset: Asset, reading) -> Sensor:
        """The asset's sensor for a reading of a known key (see known_keys), created if needed."""
        from apps.assets.services import sensor_from_spec

        if asset.pk not in self._sensors:
            self._sensors[asset.pk] = {s.key: s for s in asset.sensors.all()}
        sensors = self._sensors[asset.pk]
        sensor = sensors.get(reading.key) or sensor_from_spec(asset, reading.key)
        if sensor is None:  # autoregistering: as services.payload_store does
            sensor, _ = Sensor.objects.get_or_create(asset=asset, key=reading.key, defaults={
                "unit": reading.unit[:16],
                "kind": SensorSpec.Kind.NUMERIC if reading.value is not None else SensorSpec.Kind.STATUS})
        sensors[reading.key] = sensor
        return sensor

    def known_keys(self, asset: Asset) -> set[str] | None:
        """Sensor keys the asset accepts (None: any, when autoregistering)."""
        if settings.NANOSENTRI_TELEMETRY_AUTOREGISTER:
            return None
        if asset.pk not in self._known:
            keys = set(asset.sensors.values_list("key", flat=True))
            if asset.device_type_id:
                keys |= set(SensorSpec.objects.filter(device_type_id=asset.device_type_id).values_list("key", flat=True))
            self._known[asset.pk] = keys
        return self._known[asset.pk]


def _store_batch(batch, resolver: _AssetResolver, tally: _Tally) -> None:
    """Store a batch of records in one transaction with one bulk insert.

    Same outcome as ``services.payload_store`` per line (sensors from the catalogue spec, or
    autoregistered), but a log has thousands of lines: per-line storing costs ~5 ms a line.
    """
    from django.utils import timezone

    now = timezone.now()
    wanted = []  # (asset, ts, reading)
    for lineno, raw, item in batch:
        if isinstance(item, PayloadError):
            _reject(tally, lineno, raw, f"malformed payload: {item}", count=not isinstance(item, _HeaderProblem))
            continue
        asset = resolver.asset(item.asset)
        if asset is None:
            named = item.asset or resolver.hint_id or "(none given)"
            first, count = tally.unknown_assets.get(named, (lineno, 0))
            tally.unknown_assets[named] = (first, count + 1)
            tally.rejected += 1
            continue
        known = resolver.known_keys(asset)
        readings = item.readings if known is None else [r for r in item.readings if r.key in known]
        for reading in item.readings:
            if known is not None and reading.key not in known:
                tally.unknown_sensors[asset.asset_id][reading.key] += 1
        if not readings:
            tally.rejected += 1
            continue
        wanted += [(asset, item.ts or now, reading) for reading in readings]
    if not wanted:
        return
    with transaction.atomic():
        # Reading the same file again (a re-index) must not store its readings twice.
        stamps = [ts for _, ts, _ in wanted]
        done = set(Reading.objects.filter(sensor__asset__in={a.pk for a, _, _ in wanted}, source=SOURCE,
                                          ts__range=(min(stamps), max(stamps))).values_list("sensor_id", "ts"))
        rows = []
        for asset, ts, reading in wanted:
            sensor = resolver.sensor(asset, reading)
            if (sensor.pk, ts) in done:
                tally.skipped += 1
                continue
            done.add((sensor.pk, ts))
            rows.append(Reading(sensor=sensor, ts=ts, value=reading.value, text=(reading.flag or reading.text)[:200],
                                source=SOURCE))
        Reading.objects.bulk_create(rows, batch_size=BATCH_LINES)
    tally.stored += len(rows)


def _reject(tally: _Tally, lineno: int, raw: str, reason: str, *, count: bool = True) -> None:
    from apps.assets.services import payload_reject

    tally.rejected += 1 if count else 0
    tally.rejection_rows += 1
    if tally.rejection_rows <= MAX_REJECTION_ROWS:
        payload_reject(source=SOURCE, reason=reason, raw=raw, topic=f"{tally.name}:{lineno}"[:200])
    elif tally.rejection_rows == MAX_REJECTION_ROWS + 1:
        log.warning("%s: more than %d rejected lines; only counting the rest", tally.name, MAX_REJECTION_ROWS)


def _report_unknown(tally: _Tally) -> None:
    from apps.assets.services import payload_reject

    for named, (first, count) in tally.unknown_assets.items():
        payload_reject(source=SOURCE, reason=f"unknown asset: {named} ({count} lines)", raw="",
                       topic=f"{tally.name}:{first}"[:200])
    for asset_id, keys in tally.unknown_sensors.items():
        listed = ", ".join(f"{k} ({n}x)" for k, n in sorted(keys.items()))
        payload_reject(source=SOURCE, reason=f"unknown sensor(s) of {asset_id}: {listed}", raw="", topic=tally.name[:200])


def readings_from_log_document(sender, *, document, path, **kwargs) -> None:
    """A device log uploaded as a document also becomes readings of its asset (safe to repeat).

    Connected to apps.knowledge.signals.log_document_ingesting in AssetsConfig.ready. The asset
    is the one the document is linked to, when it is linked to exactly one.
    """
    linked = list(document.assets.values_list("asset_id", flat=True)[:2])
    readings_from_logfile(path, name=document.original_name, asset_hint=linked[0] if len(linked) == 1 else None)
