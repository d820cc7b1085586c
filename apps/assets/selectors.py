"""Reads for live context: the latest readings of an asset, diagnosed, or of a pasted log line."""
from __future__ import annotations

import functools
import hmac
import re
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from apps.assets.models import Asset, DeviceType, Reading, SensorSpec
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
    sensors: dict[str, SensorState] = {}
    for sensor in asset.sensors.all():
        recent = list(Reading.objects.filter(sensor=sensor).order_by("-ts")[:HISTORY_READINGS])
        if not recent:
            continue
        latest = recent[0]
        sensors[sensor.key] = SensorState(
            key=sensor.key, value=latest.value, text=latest.text if latest.value is None else "",
            flag=latest.text if latest.value is not None else "", unit=sensor.unit, ts=latest.ts,
            min_value=sensor.min_value, max_value=sensor.max_value, warn_low=sensor.warn_low, warn_high=sensor.warn_high,
            recent=[(r.ts, r.value) for r in reversed(recent) if r.value is not None],
        )
    device_type = asset.device_type.key if asset.device_type_id else None
    findings = evaluate(sensors, rules(), device_type=device_type, now=now,
                        missing_after=timedelta(minutes=settings.NANOSENTRI_MISSING_AFTER_MINUTES))
    # Slow or unusual departures from a sensor's own usual level (streaming detector).
    findings += [
        Finding("anomaly", "medium", f"{s.key}: {s.anomaly_reason}", s.key)
        for s in asset.sensors.all() if s.anomaly_reason and s.key in sensors
    ]
    findings_cite(asset, findings)
    return LiveContext(asset=asset.asset_id, device_type=device_type, sensors=sensors, findings=findings)


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
