"""Writes and look-ups for API tokens. The secret itself is never stored."""
from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime, timedelta

from django.utils import timezone

from apps.api.models import ApiToken

TOKEN_PREFIX = "nst_"
PREFIX_CHARS = 12  # "nst_" + 8 random characters: enough to tell tokens apart, useless to guess with
# last_used_at is written at most this often per token: one write per request would be noise.
LAST_USED_RESOLUTION = timedelta(minutes=1)


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


def api_token_new_secret(token: ApiToken) -> str:
    """Give ``token`` a fresh secret (prefix and hash set, not saved); returns the secret."""
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token.prefix = secret[:PREFIX_CHARS]
    token.key_hash = _digest(secret)
    return secret


def api_token_create(*, user, name: str = "", expires_at: datetime | None = None) -> tuple[ApiToken, str]:
    """A new token for ``user``; returns it with its secret (shown once, never stored)."""
    token = ApiToken(user=user, name=name, expires_at=expires_at)
    secret = api_token_new_secret(token)
    token.save()
    return token, secret


def api_token_revoke(*, token: ApiToken) -> None:
    if token.revoked_at is None:
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at"])


def api_token_authenticate(secret: str) -> ApiToken | None:
    """The active token whose secret is ``secret``, or None.

    The look-up is by SHA-256 of the secret: the database compares hashes, so its timing says
    nothing useful about the secret. Revoked and expired tokens, and tokens of inactive users,
    are refused.
    """
    if not secret:
        return None
    digest = _digest(secret)
    token = ApiToken.objects.select_related("user").filter(key_hash=digest).first()
    if token is None or not hmac.compare_digest(token.key_hash, digest):
        return None
    if not token.is_active or not token.user.is_active:
        return None
    now = timezone.now()
    if token.last_used_at is None or now - token.last_used_at >= LAST_USED_RESOLUTION:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        token.last_used_at = now
    return token
