"""Writes for telemetry: store a parsed payload as readings, reject bad ones (logged and counted)."""
from __future__ import annotations

import json
import logging
import threading
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import NamedTuple

from django.conf import settings
from django.db import DatabaseError, InterfaceError, OperationalError, connections, transaction
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
    _rejection(source=source, reason=reason, raw=raw, topic=topic).save()


def _rejection(*, source: str, reason: str, raw: bytes | str = b"", topic: str = "") -> TelemetryRejection:
    """Count and log a rejection; returns its row, not yet saved."""
    kind = reason.split(":")[0][:60]
    with _counts_lock:
        rejection_counts[kind] += 1
    excerpt = raw[:500].decode("utf-8", errors="replace") if isinstance(raw, bytes) else str(raw)[:500]
    excerpt = excerpt.replace("\x00", "\\x00")  # PostgreSQL text cannot hold NUL
    log.warning("telemetry rejected (%s%s): %s", source, f" {topic}" if topic else "", reason)
    return TelemetryRejection(source=source, topic=topic[:200], reason=reason[:300], excerpt=excerpt)


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
    sensors = {s.key: s for s in asset.sensors.all()}
    rows, unknown = _readings_for(payload, asset, sensors)
    with transaction.atomic():
        _readings_insert(rows, source=source)
        _anomaly_update(rows)
    if unknown:
        payload_reject(source=source, reason=f"unknown sensor(s) of {asset.asset_id}: {', '.join(unknown)}", raw=raw, topic=topic)
    return StoreResult(asset=asset, stored=len(rows), unknown_sensors=unknown)


class _SensorToStore:
    """What storing a reading needs of its sensor: a model instance costs more, and a batch
    loads thousands. ``_readings_for`` and ``_anomaly_update`` take either."""

    __slots__ = ("pk", "key", "anomaly_state", "anomaly_reason")

    def __init__(self, pk: int, key: str, anomaly_state: dict | None):
        self.pk, self.key, self.anomaly_state, self.anomaly_reason = pk, key, anomaly_state, ""


class _Row(NamedTuple):
    """A reading to store (a tuple: thousands are made per batch, a model instance costs more)."""

    sensor: Sensor | _SensorToStore
    ts: datetime
    value: float | None
    text: str


def _readings_for(payload: Payload, asset: Asset, sensors: dict) -> tuple[list[_Row], list[str]]:
    """The readings of ``payload`` to store and the keys of its unknown sensors.

    ``sensors`` (the asset's, by key) gains the sensors made from the catalogue or autoregistered.
    """
    ts = payload.ts or timezone.now()
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
        rows.append(_Row(sensor, ts, reading.value, (reading.flag or reading.text)[:200]))
    return rows, unknown


def _readings_insert(rows: list[_Row], *, source: str) -> None:
    """INSERT the readings: COPY on PostgreSQL, one prepared INSERT run per row elsewhere.

    What ``Reading.objects.bulk_create`` would write (the model has no defaults to compute and
    bulk_create sends no signals), without its per-field work in Python, which cost more than
    the database's own for a batch of thousands of readings.
    """
    if not rows:
        return
    connection = connections[Reading.objects.db]
    qn = connection.ops.quote_name
    columns = ", ".join(qn(Reading._meta.get_field(name).column) for name in ("sensor", "ts", "value", "text", "source"))
    table = qn(Reading._meta.db_table)
    with connection.cursor() as cursor:
        raw_cursor = cursor.cursor
        if connection.vendor == "postgresql" and hasattr(raw_cursor, "copy"):  # psycopg 3
            with raw_cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row((row.sensor.pk, row.ts, row.value, row.text, source))
        else:
            adapt = connection.ops.adapt_datetimefield_value
            cursor.executemany(f"INSERT INTO {table} ({columns}) VALUES (%s, %s, %s, %s, %s)",
                               [(row.sensor.pk, adapt(row.ts), row.value, row.text, source) for row in rows])


def _anomaly_update(rows: list[_Row]) -> None:
    """Feed each numeric reading to its sensor's streaming detector (state kept on the sensor).

    Readings are fed in order; each sensor's state is loaded once and saved once, whatever
    number of its readings ``rows`` holds (the state round-trips exactly, so this is the same
    as saving after every reading).
    """
    from diagnostics.anomaly import StreamingDetector

    detectors: dict[int, list] = {}  # sensor pk -> [sensor, detector, last result]
    for row in rows:
        if row.value is None:
            continue
        sensor = row.sensor
        entry = detectors.get(sensor.pk)
        if entry is None:
            detector = StreamingDetector.from_dict(sensor.anomaly_state) if sensor.anomaly_state else StreamingDetector(label=sensor.key)
            entry = detectors[sensor.pk] = [sensor, detector, None]
        entry[2] = entry[1].update(row.ts, row.value)
    for sensor, detector, result in detectors.values():
        sensor.anomaly_state = detector.to_dict()
        sensor.anomaly_reason = (result.reason[:300] if result is not None and result.in_incident else "")
    _sensor_anomaly_save([entry[0] for entry in detectors.values()])


def _sensor_anomaly_save(sensors: list) -> None:
    """Save the detector fields of many sensors: one UPDATE from a JSON document on PostgreSQL,
    one prepared UPDATE run per sensor elsewhere.

    (``bulk_update`` builds a CASE over every sensor in Python, which costs more than the
    storing itself for a batch of thousands; on PostgreSQL, an UPDATE per sensor is parsed and
    planned per sensor.)
    """
    if not sensors:
        return
    connection = connections[Sensor.objects.db]
    qn = connection.ops.quote_name
    table, pk = qn(Sensor._meta.db_table), qn(Sensor._meta.pk.column)
    state, reason = qn("anomaly_state"), qn("anomaly_reason")
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # The new values as one JSON document: one parameter, escaped once.
            cursor.execute(
                f"UPDATE {table} AS s SET {state} = v.state, {reason} = v.reason FROM "
                f"jsonb_to_recordset(%s::jsonb) AS v(id bigint, state jsonb, reason text) WHERE s.{pk} = v.id",
                [json.dumps([{"id": s.pk, "state": s.anomaly_state, "reason": s.anomaly_reason} for s in sensors])])
        else:
            field = Sensor._meta.get_field("anomaly_state")
            cursor.executemany(f"UPDATE {table} SET {state} = %s, {reason} = %s WHERE {pk} = %s",
                               [(field.get_db_prep_save(s.anomaly_state, connection), s.anomaly_reason, s.pk)
                                for s in sensors])


@dataclass
class Incoming:
    """One telemetry message as it arrived, for ``payloads_receive``."""

    raw: bytes | str
    topic: str = ""
    asset_hint: str | None = None


def payloads_receive(messages: list[Incoming], *, source: str) -> list[StoreResult]:
    """Parse and store many raw payloads in ONE transaction; a result per message, in order.

    Each message is treated as ``payload_receive`` treats it (same readings, same rejections
    with the same reasons, in message order), but the database sees a few statements for the
    whole batch instead of a few dozen per message. Rejections are written in the same
    transaction: when it fails (the error propagates) nothing of the batch is kept, so the
    caller can receive the whole batch again.
    """
    results = [StoreResult() for _ in messages]
    rejections: list[tuple[int, TelemetryRejection]] = []
    parsed: list[tuple[int, Payload]] = []
    for i, message in enumerate(messages):
        raw = message.raw
        if (b"\x00" if isinstance(raw, bytes) else "\x00") in raw:
            # Never telemetry, and PostgreSQL cannot store NUL in text (not even in the rejection).
            reason, raw = "malformed payload: contains NUL bytes", nul_free(raw)
        else:
            try:
                parsed.append((i, parse_payload(raw)))
                continue
            except PayloadError as exc:
                reason = f"malformed payload: {exc}"
        results[i].error = reason
        rejections.append((i, _rejection(source=source, reason=reason, raw=raw, topic=message.topic)))
    with transaction.atomic():
        assets = _assets_for_many([(payload, messages[i].asset_hint) for i, payload in parsed])
        sensors: dict[int, dict[str, Sensor | _SensorToStore]] = {}
        for pk, asset_pk, key, state in Sensor.objects.filter(asset__in={a.pk for a in assets if a is not None}) \
                .order_by().values_list("pk", "asset_id", "key", "anomaly_state"):
            sensors.setdefault(asset_pk, {})[key] = _SensorToStore(pk, key, state)
        rows: list[_Row] = []
        for (i, payload), asset in zip(parsed, assets, strict=True):
            message = messages[i]
            if asset is None:
                reason = f"unknown asset: {payload.asset or message.asset_hint or '(none given)'}"
                results[i].error = reason
                rejections.append((i, _rejection(source=source, reason=reason, raw=message.raw, topic=message.topic)))
                continue
            own, unknown = _readings_for(payload, asset, sensors.setdefault(asset.pk, {}))
            rows += own
            results[i] = StoreResult(asset=asset, stored=len(own), unknown_sensors=unknown)
            if unknown:
                reason = f"unknown sensor(s) of {asset.asset_id}: {', '.join(unknown)}"
                rejections.append((i, _rejection(source=source, reason=reason, raw=message.raw, topic=message.topic)))
        _readings_insert(rows, source=source)
        _anomaly_update(rows)
        rejections.sort(key=lambda item: item[0])  # kept in the order the messages came
        TelemetryRejection.objects.bulk_create([rejection for _, rejection in rejections])
    return results


def _assets_for_many(items: list[tuple[Payload, str | None]]) -> list[Asset | None]:
    """``_asset_for`` of every (payload, hint), with one query for the assets named by id."""
    wanted = {payload.asset or hint for payload, hint in items if payload.asset or hint}
    known = {a.asset_id: a for a in Asset.objects.filter(asset_id__in=wanted).select_related("device_type")}
    found = []
    for payload, hint in items:
        key = payload.asset or hint
        asset = known.get(key) if key else None
        if asset is None:
            # Not an asset id: a device naming its type, an autoregistered asset, or unknown.
            asset = _asset_for(payload, hint)
            if asset is not None and asset.asset_id == key:
                known[key] = asset
        found.append(asset)
    return found


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
    return alerts_refresh_many([asset])


def alerts_refresh_many(assets: list[Asset]) -> list:
    """``alerts_refresh`` for many assets at once (the MQTT listener's batches): a few queries in all.

    Returns the alerts opened now, asset by asset.
    """
    from apps.assets.models import Alert
    from apps.assets.selectors import assets_findings

    assets = list({asset.pk: asset for asset in assets}.values())
    if not assets:
        return []
    findings = assets_findings(assets)
    opened, cleared = [], []
    with transaction.atomic():
        open_alerts: dict[int, dict] = {}
        for alert in Alert.objects.select_for_update().filter(asset__in=assets, resolved__isnull=True):
            open_alerts.setdefault(alert.asset_id, {})[(alert.rule, alert.sensor)] = alert
        for asset in assets:
            firing = {(f.rule, f.sensor): f for f in findings[asset.pk] if f.severity in ALERT_SEVERITIES}
            open_here = open_alerts.get(asset.pk, {})
            cleared += [alert.pk for key, alert in open_here.items() if key not in firing]
            for key, finding in firing.items():
                if key not in open_here:
                    opened.append(Alert.objects.create(asset=asset, rule=finding.rule, sensor=finding.sensor,
                                                       severity=finding.severity, message=finding.message))
        if cleared:
            Alert.objects.filter(pk__in=cleared).update(resolved=timezone.now())
    return opened


def alerts_refresh_notify(asset) -> list:
    """Open alerts for new high findings of ``asset`` and tell ``apps.assets.notify`` about them.

    ``apps/assets/notify.py`` is optional (``alert_opened(alert) -> None``); a failing
    notification is logged and never undoes the stored readings.
    """
    return alerts_refresh_notify_many([asset])


def alerts_refresh_notify_many(assets) -> list:
    """``alerts_refresh_notify`` for many assets at once."""
    opened = alerts_refresh_many(assets)
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
            log.exception("notifying alert %s (%s on %s) failed", alert.pk, alert.rule, alert.asset.asset_id)
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
