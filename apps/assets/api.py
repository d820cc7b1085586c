"""HTTP telemetry for sites without MQTT: POST /api/telemetry/ with a bearer token.

The token is either an asset's own ``Asset.ingest_token`` (only that asset's payloads) or the
gateway token ``NANOSENTRI_TELEMETRY_GATEWAY_TOKEN`` (any asset). The body is a payload in
either format of apps/assets/payloads.py (JSON or the line format). See docs/telemetry.md.
"""
from __future__ import annotations

import logging

from django.core.exceptions import RequestDataTooBig
from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from apps.assets.payloads import _KEY, MAX_PAYLOAD_BYTES
from apps.assets.selectors import token_scope
from apps.assets.services import TelemetryRefused, telemetry_http_receive

log = logging.getLogger(__name__)


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
