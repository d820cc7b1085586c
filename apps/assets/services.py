"""Writes for telemetry: store a parsed payload as readings, reject bad ones (logged and counted)."""
from __future__ import annotations

import logging
import threading
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.db import DatabaseError, InterfaceError, OperationalError, transaction
from django.utils import timezone

from apps.assets.models import Asset, DeviceType, Reading, Sensor, SensorSpec, TelemetryRejection
from apps.assets.payloads import Payload, PayloadError, nul_free, parse_payload

log = logging.getLogger(__name__)

# Rejections counted per reason kind in this process (the listener logs these periodically);
# every rejection is also kept in TelemetryRejection for the admin.
rejection_counts: Counter = Counter()
_counts_lock = threading.Lock()


@dataclass
class StoreResult:
    asset: Asset | None = None
    stored: int = 0
    unknown_sensors: list[str] = field(default_factory=list)
    error: str = ""

    @property
    def ok(self) -> bool:
        return not self.error


def payload_reject(*, source: str, reason: str, raw: bytes | str = b"", topic: str = "") -> None:
    kind = reason.split(":")[0][:60]
    with _counts_lock:
        rejection_counts[kind] += 1
    excerpt = raw[:500].decode("utf-8", errors="replace") if isinstance(raw, bytes) else str(raw)[:500]
    excerpt = excerpt.replace("\x00", "\\x00")  # PostgreSQL text cannot hold NUL
    log.warning("telemetry rejected (%s%s): %s", source, f" {topic}" if topic else "", reason)
    TelemetryRejection.objects.create(source=source, topic=topic[:200], reason=reason[:300], excerpt=excerpt)


def sensor_from_spec(asset: Asset, key: str) -> Sensor | None:
    """A sensor for ``key`` created from the asset type's catalogue spec, if it has one."""
    if asset.device_type_id is None:
        return None
    spec = SensorSpec.objects.filter(device_type_id=asset.device_type_id, key=key).first()
    if spec is None:
        return None
    sensor, _ = Sensor.objects.get_or_create(
        asset=asset, key=key,
        defaults={"kind": spec.kind, "unit": spec.unit, "min_value": spec.min_value, "max_value": spec.max_value,
                  "warn_low": spec.warn_low, "warn_high": spec.warn_high, "description": spec.description},
    )
    return sensor


def _asset_for(payload: Payload, asset_hint: str | None) -> Asset | None:
    """The asset a payload is about.

    A payload naming an asset is about that asset (never another one). Devices often print
    their type as their id (``ID:WXT536``): then the topic/URL hint decides, or the only asset
    of that type. A payload naming nothing is about the hinted asset.
    """
    named = payload.asset
    if named:
        asset = Asset.objects.filter(asset_id=named).first()
        if asset is not None:
            return asset
        if DeviceType.objects.filter(key=named).exists():
            if asset_hint:
                hinted = Asset.objects.filter(asset_id=asset_hint, device_type__key=named).first()
                if hinted is not None:
                    return hinted
            of_type = list(Asset.objects.filter(device_type__key=named)[:2])
            return of_type[0] if len(of_type) == 1 else None
    elif asset_hint:
        asset = Asset.objects.filter(asset_id=asset_hint).first()
        if asset is not None:
            return asset
    asset_id = named or asset_hint
    if asset_id and settings.NANOSENTRI_TELEMETRY_AUTOREGISTER:
        device_type = DeviceType.objects.filter(key=asset_id.split("-")[0]).first()
        asset = Asset.objects.create(asset_id=asset_id, name=asset_id, device_type=device_type)
        log.info("auto-registered asset %s", asset_id)
        return asset
    return None


def payload_store(payload: Payload, *, source: str, asset_hint: str | None = None, raw: bytes | str = b"", topic: str = "") -> StoreResult:
    """Store every reading of ``payload``. Unknown assets and sensors are reported, not fatal."""
    asset = _asset_for(payload, asset_hint)
    if asset is None:
        reason = f"unknown asset: {payload.asset or asset_hint or '(none given)'}"
        payload_reject(source=source, reason=reason, raw=raw, topic=topic)
        return StoreResult(error=reason)
    ts = payload.ts or timezone.now()
    sensors = {s.key: s for s in asset.sensors.all()}
    rows, unknown = [], []
    for reading in payload.readings:
        sensor = sensors.get(reading.key) or sensor_from_spec(asset, reading.key)
        if sensor is None and settings.NANOSENTRI_TELEMETRY_AUTOREGISTER:
            sensor = Sensor.objects.create(
                asset=asset, key=reading.key, unit=reading.unit,
                kind=SensorSpec.Kind.NUMERIC if reading.value is not None else SensorSpec.Kind.STATUS,
            )
        if sensor is None:
            unknown.append(reading.key)
            continue
        sensors[reading.key] = sensor
        rows.append(Reading(sensor=sensor, ts=ts, value=reading.value, text=(reading.flag or reading.text)[:200], source=source))
    with transaction.atomic():
        Reading.objects.bulk_create(rows)
        _anomaly_update(rows)
    if unknown:
        payload_reject(source=source, reason=f"unknown sensor(s) of {asset.asset_id}: {', '.join(unknown)}", raw=raw, topic=topic)
    return StoreResult(asset=asset, stored=len(rows), unknown_sensors=unknown)


def _anomaly_update(rows: list[Reading]) -> None:
    """Feed each numeric reading to its sensor's streaming detector (state kept on the sensor)."""
    from diagnostics.anomaly import StreamingDetector

    for row in rows:
        if row.value is None:
            continue
        sensor = row.sensor
        detector = StreamingDetector.from_dict(sensor.anomaly_state) if sensor.anomaly_state else StreamingDetector(label=sensor.key)
        result = detector.update(row.ts, row.value)
        sensor.anomaly_state = detector.to_dict()
        sensor.anomaly_reason = (result.reason[:300] if result is not None and result.in_incident else "")
        sensor.save(update_fields=["anomaly_state", "anomaly_reason"])


def payload_receive(raw: bytes | str, *, source: str, asset_hint: str | None = None, topic: str = "") -> StoreResult:
    """Parse and store one raw payload; a malformed one is rejected with a logged, counted reason."""
    try:
        payload = parse_payload(raw)
    except PayloadError as exc:
        reason = f"malformed payload: {exc}"
        payload_reject(source=source, reason=reason, raw=raw, topic=topic)
        return StoreResult(error=reason)
    return payload_store(payload, source=source, asset_hint=asset_hint, raw=raw, topic=topic)


def readings_purge(*, now=None) -> int:
    """Delete readings older than NANOSENTRI_READING_RETENTION_DAYS; returns how many."""
    now = now or timezone.now()
    cutoff = now - timedelta(days=settings.NANOSENTRI_READING_RETENTION_DAYS)
    deleted, _ = Reading.objects.filter(ts__lt=cutoff).delete()
    return deleted


ALERT_SEVERITIES = ("critical", "high")


def alerts_refresh(asset: Asset) -> list:
    """Open an Alert for each new high-severity finding of ``asset``; resolve those that cleared.

    Returns the alerts opened now (callers notify technicians about these).
    """
    from apps.assets.models import Alert
    from apps.assets.selectors import asset_live_context

    findings = [f for f in asset_live_context(asset).findings if f.severity in ALERT_SEVERITIES]
    firing = {(f.rule, f.sensor): f for f in findings}
    opened = []
    with transaction.atomic():
        open_alerts = {(a.rule, a.sensor): a for a in Alert.objects.select_for_update().filter(asset=asset, resolved__isnull=True)}
        for key, alert in open_alerts.items():
            if key not in firing:
                alert.resolved = timezone.now()
                alert.save(update_fields=["resolved"])
        for key, finding in firing.items():
            if key not in open_alerts:
                opened.append(Alert.objects.create(asset=asset, rule=finding.rule, sensor=finding.sensor,
                                                   severity=finding.severity, message=finding.message))
    return opened


def alerts_refresh_notify(asset) -> list:
    """Open alerts for new high findings of ``asset`` and tell ``apps.assets.notify`` about them.

    ``apps/assets/notify.py`` is optional (``alert_opened(alert) -> None``); a failing
    notification is logged and never undoes the stored readings.
    """
    opened = alerts_refresh(asset)
    if not opened:
        return opened
    try:
        from apps.assets import notify
    except ImportError as exc:
        if getattr(exc, "name", None) != "apps.assets.notify":
            log.exception("apps.assets.notify failed to import; alerts are not sent")
        return opened
    for alert in opened:
        try:
            notify.alert_opened(alert)
        except Exception:
            log.exception("notifying alert %s (%s on %s) failed", alert.pk, alert.rule, asset.asset_id)
    return opened


# --- HTTP telemetry --------------------------------------------------------------------------


class TelemetryRefused(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def telemetry_http_receive(*, body: bytes, scope, asset_hint: str | None = None) -> dict:
    """Parse and store one payload posted over HTTP for a token's ``scope`` (selectors.TokenScope).

    Raises TelemetryRefused with the HTTP status and the reason.
    """
    raw = nul_free(body)  # what rejections keep: PostgreSQL cannot store NUL
    try:
        if b"\x00" in body:
            raise PayloadError("contains NUL bytes")
        payload = parse_payload(body)
    except PayloadError as exc:
        reason = f"malformed payload: {exc}"
        payload_reject(source="http", reason=reason, raw=raw)
        raise TelemetryRefused(400, reason) from None
    if scope.asset is not None:
        asset = scope.asset
        named = payload.asset or asset_hint
        # A device often names its type rather than its id (ID:WXT536): that is still this asset.
        allowed = {asset.asset_id.upper()} | ({asset.device_type.key.upper()} if asset.device_type_id else set())
        if named and named.upper() not in allowed:
            reason = f"forbidden: this token may only send data for {asset.asset_id}, not {named}"
            payload_reject(source="http", reason=reason, raw=raw)
            raise TelemetryRefused(403, reason)
        payload.asset = asset.asset_id  # the token decides the asset
    elif not (payload.asset or asset_hint):
        reason = "no asset: name it in the payload ('asset' or ID:...) or as ?asset=..."
        payload_reject(source="http", reason=reason, raw=raw)
        raise TelemetryRefused(400, reason)
    elif payload.asset and asset_hint and Asset.objects.filter(asset_id=asset_hint, device_type__key=payload.asset).exists():
        payload.asset = asset_hint  # ID:WXT536 posted ?asset=WXT536-02: the device named its type
    try:
        result = payload_store(payload, source="http", asset_hint=asset_hint, raw=raw)
    except (OperationalError, InterfaceError):
        log.exception("database unavailable for HTTP telemetry")
        raise TelemetryRefused(503, "the database is unavailable; send again later") from None
    except DatabaseError as exc:  # e.g. a value the database refuses: the payload's fault
        reason = f"payload could not be stored: {exc.__class__.__name__}: {exc}"
        payload_reject(source="http", reason=reason[:300], raw=raw)
        raise TelemetryRefused(400, reason) from None
    if result.error:
        raise TelemetryRefused(404 if result.error.startswith("unknown asset") else 400, result.error)
    opened = []
    if result.stored:
        try:
            opened = alerts_refresh_notify(result.asset)
        except Exception:  # the readings are stored; alerts follow with the next payload
            log.exception("refreshing alerts of %s failed", result.asset.asset_id)
    return {"asset": result.asset.asset_id, "stored": result.stored, "unknown_sensors": result.unknown_sensors,
            "alerts_opened": len(opened)}
