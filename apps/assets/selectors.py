"""Reads for live context: the latest readings of an asset, diagnosed, or of a pasted log line."""
from __future__ import annotations

import functools
import hmac
import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import NamedTuple

from django.conf import settings
from django.db import connections
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from apps.assets.models import Asset, DeviceType, Reading, Sensor, SensorSpec
from apps.assets.payloads import Payload, parse_payload
from diagnostics.findings import Finding, SensorState, evaluate, load_rules

HISTORY_READINGS = 24


@dataclass
class LiveContext:
    """What the answer pipeline shows beside the citations and puts into the prompt."""

    asset: str | None
    device_type: str | None
    sensors: dict[str, SensorState] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)
    source: str = "live"  # live | context

    @property
    def empty(self) -> bool:
        return not self.sensors

    def readings_dict(self) -> dict:
        return {
            key: {
                "value": s.value if s.value is not None else s.text,
                "unit": s.unit,
                "ts": s.ts.isoformat() if s.ts else None,
                "min": s.min_value,
                "max": s.max_value,
                "flag": s.flag,
            }
            for key, s in sorted(self.sensors.items())
        }

    def as_dict(self) -> dict:
        return {
            "asset": self.asset,
            "device_type": self.device_type,
            "source": self.source,
            "readings": self.readings_dict(),
            "findings": [f.as_dict() for f in self.findings],
        }

    def prompt_block(self) -> str:
        """A compact block for the model: readings with units and ranges, then findings."""
        if self.empty:
            return ""
        if self.source == "context":
            title = "Sensor readings from the pasted log" + (f" of {self.asset}" if self.asset else "")
        else:
            title = f"Live sensor readings of {self.asset}"
        lines = [f"{title}{f' ({self.device_type})' if self.device_type else ''}:"]
        for key, s in sorted(self.sensors.items()):
            rng = ""
            if s.min_value is not None and s.max_value is not None:
                rng = f" (range {s.min_value:g}–{s.max_value:g} {s.unit})".rstrip()
                rng = rng if rng.endswith(")") else rng + ")"
            lines.append(f"- {key}: {s.shown()}{rng}")
        if self.findings:
            lines.append("Diagnostic findings:")
            lines += [f"- [{f.severity}] {f.message}" + (f" Check: {f.check}" if f.check else "") for f in self.findings]
        return "\n".join(lines)


@functools.lru_cache(maxsize=4)
def _rules(path: str, mtime: float):
    return load_rules(path)


def rules():
    from pathlib import Path

    path = Path(settings.NANOSENTRI_RULES_FILE)
    return _rules(str(path), path.stat().st_mtime) if path.exists() else []


def _state_from_spec(key, spec) -> SensorState:
    if spec is None:
        return SensorState(key=key)
    return SensorState(key=key, unit=spec.unit, min_value=spec.min_value, max_value=spec.max_value,
                       warn_low=spec.warn_low, warn_high=spec.warn_high)


def asset_live_context(asset: Asset, *, now=None) -> LiveContext:
    """Latest reading and recent history of every sensor of ``asset``, with findings."""
    now = now or timezone.now()
    sensors = _sensor_rows([asset.pk])
    states = _sensor_states(sensors, _recent_readings([s.pk for s in sensors]))
    findings = _findings(asset, sensors, states, now=now)
    findings_cite(asset, findings)
    device_type = asset.device_type.key if asset.device_type_id else None
    return LiveContext(asset=asset.asset_id, device_type=device_type, sensors=states, findings=findings)


def assets_findings(assets: list[Asset], *, now=None) -> dict[int, list[Finding]]:
    """The findings of ``asset_live_context`` for many assets (by pk), with two queries in all.

    Without the citations of manual pages (``findings_cite``): who needs them (the answer, the
    asset page) asks ``asset_live_context`` for one asset.
    """
    now = now or timezone.now()
    by_asset: dict[int, list] = {asset.pk: [] for asset in assets}
    for sensor in _sensor_rows(list(by_asset)):
        by_asset[sensor.asset_id].append(sensor)
    recent = _recent_readings([s.pk for sensors in by_asset.values() for s in sensors])
    return {asset.pk: _findings(asset, by_asset[asset.pk], _sensor_states(by_asset[asset.pk], recent), now=now)
            for asset in assets}


class _SensorRow(NamedTuple):
    """What the findings need of a sensor (its detector state, a sizeable JSON, is not read)."""

    pk: int
    asset_id: int
    key: str
    unit: str
    min_value: float | None
    max_value: float | None
    warn_low: float | None
    warn_high: float | None
    anomaly_reason: str


def _sensor_rows(asset_ids: list[int]) -> list[_SensorRow]:
    """The sensors of these assets, asset by asset and by key (as ``asset.sensors.all()`` orders them)."""
    return [_SensorRow(*row) for row in Sensor.objects.filter(asset__in=asset_ids).order_by("asset_id", "key")
            .values_list("pk", "asset_id", *_SensorRow._fields[2:])]


def _sensor_states(sensors: list[_SensorRow], recent: dict[int, list[tuple]]) -> dict[str, SensorState]:
    """Each sensor's latest reading and recent numeric history, for the findings engine."""
    states: dict[str, SensorState] = {}
    for sensor in sensors:
        rows = recent.get(sensor.pk)  # newest first: (ts, value, text)
        if not rows:
            continue
        ts, value, text = rows[0]
        states[sensor.key] = SensorState(
            key=sensor.key, value=value, text=text if value is None else "",
            flag=text if value is not None else "", unit=sensor.unit, ts=ts,
            min_value=sensor.min_value, max_value=sensor.max_value, warn_low=sensor.warn_low, warn_high=sensor.warn_high,
            recent=[(r[0], r[1]) for r in reversed(rows) if r[1] is not None],
        )
    return states


def _findings(asset: Asset, sensors: list[_SensorRow], states: dict[str, SensorState], *, now) -> list[Finding]:
    device_type = asset.device_type.key if asset.device_type_id else None
    findings = evaluate(states, rules(), device_type=device_type, now=now,
                        missing_after=timedelta(minutes=settings.NANOSENTRI_MISSING_AFTER_MINUTES))
    # Slow or unusual departures from a sensor's own usual level (streaming detector).
    findings += [
        Finding("anomaly", "medium", f"{s.key}: {s.anomaly_reason}", s.key)
        for s in sensors if s.anomaly_reason and s.key in states
    ]
    return findings


def _recent_readings(sensor_ids: list[int], limit: int = HISTORY_READINGS) -> dict[int, list[tuple]]:
    """The ``limit`` latest readings of each sensor, newest first: {sensor pk: [(ts, value, text)]}.

    One query for any number of sensors, each answered from the (sensor, -ts) index, however
    long the history: a LATERAL join on PostgreSQL, a correlated IN on SQLite (which has no
    LATERAL); other databases get a query per sensor.
    """
    if not sensor_ids:
        return {}
    connection = connections[Reading.objects.db]
    qn = connection.ops.quote_name
    table, sensor_col = qn(Reading._meta.db_table), qn(Reading._meta.get_field("sensor").column)
    # The time as text, converted here once per distinct value (the readings of one message share
    # it): the drivers' converters run per row and are the slowest part of a large fetch.
    columns = f"r.{sensor_col}, CAST(r.{qn('ts')} AS TEXT), r.{qn('value')}, r.{qn('text')}"
    if connection.vendor == "postgresql":
        sql = (f"SELECT {columns} FROM unnest(%s::bigint[]) AS s(id) CROSS JOIN LATERAL "
               f"(SELECT * FROM {table} WHERE {sensor_col} = s.id ORDER BY {qn('ts')} DESC LIMIT %s) AS r")
        params = [list(sensor_ids), limit]
    elif connection.vendor == "sqlite":
        sql = (f"SELECT {columns} FROM json_each(%s) AS s JOIN {table} AS r ON r.{qn('id')} IN "
               f"(SELECT {qn('id')} FROM {table} WHERE {sensor_col} = s.value ORDER BY {qn('ts')} DESC LIMIT %s)")
        params = [json.dumps(list(sensor_ids)), limit]
    else:
        return {
            pk: list(Reading.objects.filter(sensor_id=pk).order_by("-ts").values_list("ts", "value", "text")[:limit])
            for pk in sensor_ids
        }
    recent: dict[int, list[tuple]] = {}
    times: dict = {}
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        for sensor_id, ts, value, text in cursor.fetchall():
            aware = times.get(ts)
            if aware is None:
                aware = times[ts] = _aware(ts, connection)
            recent.setdefault(sensor_id, []).append((aware, value, text))
    for rows in recent.values():
        rows.sort(key=lambda r: r[0], reverse=True)
    return recent


def _aware(value, connection) -> datetime:
    """A timestamp column read as text, as the ORM would give it (aware)."""
    if isinstance(value, str):
        value = parse_datetime(value)
    if timezone.is_naive(value):
        value = timezone.make_aware(value, connection.timezone)
    return value


def _device_type_for(payload: Payload, asset: Asset | None) -> DeviceType | None:
    if asset is not None and asset.device_type_id:
        return asset.device_type
    if payload.asset:
        by_id = DeviceType.objects.filter(key__iexact=payload.asset.split("-")[0]).first()
        if by_id:
            return by_id
    # No id: the device type whose catalogue knows most of these sensor keys.
    keys = {r.key for r in payload.readings}
    best, best_hits = None, 0
    for device_type in DeviceType.objects.prefetch_related("specs"):
        hits = len(keys & {s.key for s in device_type.specs.all()})
        if hits > best_hits:
            best, best_hits = device_type, hits
    return best


def context_live_context(text: str, *, asset: Asset | None = None) -> LiveContext:
    """Diagnose pasted log text (parsed like a payload, not stored) against the catalogue."""
    payload = parse_payload(text)
    if asset is None and payload.asset:
        asset = Asset.objects.filter(asset_id=payload.asset).first()
    device_type = _device_type_for(payload, asset)
    specs = {s.key: s for s in SensorSpec.objects.filter(device_type=device_type)} if device_type else {}
    own = {s.key: s for s in asset.sensors.all()} if asset else {}
    sensors = {}
    for r in payload.readings:
        state = _state_from_spec(r.key, own.get(r.key) or specs.get(r.key))
        state.value, state.text, state.flag, state.ts = r.value, r.text, r.flag, payload.ts
        state.unit = state.unit or r.unit
        sensors[r.key] = state
    findings = evaluate(sensors, rules(), device_type=device_type.key if device_type else None)
    findings_cite(asset, findings)
    return LiveContext(asset=asset.asset_id if asset else payload.asset, device_type=device_type.key if device_type else None,
                       sensors=sensors, findings=findings, source="context")


def findings_cite(asset: Asset | None, findings: list[Finding]) -> None:
    """Attach to each finding the page of the asset's own manuals that supports it, if any.

    Only the manuals linked to the asset are searched: a page of another device's manual
    would not support a finding about this one.
    """
    if asset is None or not findings:
        return
    manuals = set(asset.manuals.values_list("pk", flat=True))
    if not manuals:
        return
    from django.urls import reverse

    from apps.knowledge.retrieval import passages_search

    for finding in findings:
        if not finding.manual_query:
            continue
        passages, _ = passages_search(finding.manual_query, top_k=1, document_ids=manuals)
        if passages:
            p = passages[0]
            url = reverse("knowledge:file", args=[p.document_id])
            finding.citation = {
                "document": p.file_name, "page": p.page,
                "url": f"{url}#page={p.page}" if p.file_name.lower().endswith(".pdf") else url,
            }


_TOKEN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]*[A-Za-z0-9]")


def asset_recognise(question: str) -> Asset | None:
    """An asset named in the question by its id, or the only asset of a device type named."""
    tokens = {t.upper() for t in _TOKEN.findall(question)}
    if not tokens:
        return None
    for asset in Asset.objects.select_related("device_type"):
        if asset.asset_id.upper() in tokens:
            return asset
    for device_type in DeviceType.objects.filter(key__in=tokens):
        assets = list(device_type.assets.all()[:2])
        if len(assets) == 1:
            return assets[0]
    return None


# --- HTTP telemetry tokens --------------------------------------------------------------------


@dataclass
class TokenScope:
    """Who a bearer token speaks for: one asset, or (gateway) any asset."""

    asset: Asset | None = None
    gateway: bool = False


def token_scope(token: str) -> TokenScope | None:
    """The scope of ``token``, or None. Every comparison is constant-time and all are made."""
    supplied = token.encode()
    gateway = settings.NANOSENTRI_TELEMETRY_GATEWAY_TOKEN
    is_gateway = bool(gateway) and hmac.compare_digest(supplied, gateway.encode())
    # Compare against every asset token rather than looking the token up: a lookup's timing
    # depends on how much of the token matches an indexed value.
    match = None
    for pk, asset_token in Asset.objects.exclude(ingest_token="").values_list("pk", "ingest_token"):
        if hmac.compare_digest(supplied, asset_token.encode()) and match is None:
            match = pk
    if is_gateway:
        return TokenScope(gateway=True)
    if match is not None:
        return TokenScope(asset=Asset.objects.get(pk=match))
    return None
