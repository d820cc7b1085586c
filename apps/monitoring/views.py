"""/metrics (a scraper with the bearer token, or a logged-in admin) and the admin's System page."""
from __future__ import annotations

import hmac

from django.conf import settings
from django.http import HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from apps.accounts.decorators import role_required
from apps.accounts.roles import ADMIN, is_admin
from apps.monitoring.metrics import metrics_exposition
from apps.monitoring.selectors import system_figures


@require_GET
def metrics(request):
    refused = _scrape_refused(request)
    if refused is not None:
        return refused
    body, content_type = metrics_exposition(request.headers.get("Accept", ""))
    return HttpResponse(body, content_type=content_type)


def _scrape_refused(request) -> HttpResponse | None:
    """None when allowed: the right bearer token, or (no Authorization header) an admin's session."""
    header = request.headers.get("Authorization", "")
    if header:
        scheme, _, given = header.partition(" ")
        token = settings.NANOSENTRI_METRICS_TOKEN
        if scheme.lower() == "bearer" and token and hmac.compare_digest(given.strip().encode(), token.encode()):
            return None
        return _unauthorized("invalid metrics token")
    if request.user.is_authenticated:
        return None if is_admin(request.user) else HttpResponse("admins only\n", status=403, content_type="text/plain")
    return _unauthorized("a bearer token (NANOSENTRI_METRICS_TOKEN) or an admin's login is required")


def _unauthorized(reason: str) -> HttpResponse:
    response = HttpResponse(reason + "\n", status=401, content_type="text/plain")
    response["WWW-Authenticate"] = 'Bearer realm="metrics"'
    return response


@role_required(ADMIN)
@require_GET
def system(request):
    return render(request, "monitoring/system.html", {
        "figures": system_figures(),
        "metrics_token_set": bool(settings.NANOSENTRI_METRICS_TOKEN),
    })
