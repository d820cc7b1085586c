"""HTTP telemetry for sites without MQTT: POST /api/telemetry/ with a bearer token.

The token is either an asset's own ``Asset.ingest_token`` (only that asset's payloads) or the
gateway token ``NANOSENTRI_TELEMETRY_GATEWAY_TOKEN`` (any asset). The body is a payload in
either format of apps/assets/payloads.py (JSON or the line format). See docs/telemetry.md.
"""
from __future__ import annotations

import hmac
import logging
from dataclasses import dataclass

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.db import DatabaseError, InterfaceError, OperationalError
from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from apps.assets.models import Asset
from apps.assets.mqtt import alerts_refresh_notify, nul_free
from apps.assets.payloads import _KEY, MAX_PAYLOAD_BYTES, PayloadError, parse_payload
from apps.assets.services import payload_reject, payload_store

log = logging.getLogger(__name__)


@dataclass
class TokenScope:
    """Who a bearer token speaks for: one asset, or (gateway) any asset."""

    asset: Asset | None = None
    gateway: bool = False


class TelemetryRefused(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


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


def telemetry_http_receive(*, body: bytes, scope: TokenScope, asset_hint: str | None = None) -> dict:
    """Parse and store one payload posted over HTTP; raises TelemetryRefused with the status."""
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


def _error(status: int, message: str, **headers) -> JsonResponse:
    response = JsonResponse({"error": message}, status=status)
    for name, value in headers.items():
        response[name.replace("_", "-")] = value
    return response


def _bearer(request) -> str | None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


@csrf_exempt
@require_POST
def telemetry_post(request):
    token = _bearer(request)
    if token is None:
        return _error(401, "send 'Authorization: Bearer <token>' (the asset's ingest token or the gateway token)",
                      WWW_Authenticate='Bearer realm="telemetry"')
    scope = token_scope(token)
    if scope is None:
        log.warning("telemetry POST with an unknown token from %s", request.META.get("REMOTE_ADDR", "?"))
        return _error(401, "unknown token", WWW_Authenticate='Bearer realm="telemetry", error="invalid_token"')
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        declared = 0
    too_big = f"payload over the {MAX_PAYLOAD_BYTES} byte limit"
    if declared > MAX_PAYLOAD_BYTES:
        return _error(413, too_big)
    try:
        body = request.body
    except RequestDataTooBig:
        return _error(413, too_big)
    if len(body) > MAX_PAYLOAD_BYTES:
        return _error(413, too_big)
    hint = request.GET.get("asset") or None
    if hint is not None and not _KEY.match(hint):
        return _error(400, "'asset' must be an identifier")
    try:
        result = telemetry_http_receive(body=body, scope=scope, asset_hint=hint)
    except TelemetryRefused as exc:
        return _error(exc.status, str(exc), **({"Retry_After": "30"} if exc.status == 503 else {}))
    return JsonResponse(result, status=201)
