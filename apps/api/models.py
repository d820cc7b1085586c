"""API tokens: a CMMS or script acts as one user through ``Authorization: Bearer <token>``.

Only a SHA-256 hash of the secret is stored (the secret is shown once, when created), with a
short prefix so people can tell tokens apart in the admin.
"""
from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone


class ApiToken(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100, blank=True, help_text="what uses it, e.g. 'Maximo sync'")
    prefix = models.CharField(max_length=16, editable=False, help_text="the first characters of the token")
    key_hash = models.CharField(max_length=64, unique=True, editable=False, help_text="SHA-256 of the token (hex)")
    created = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    expires_at = models.DateTimeField(null=True, blank=True, help_text="empty: never expires")
    revoked_at = models.DateTimeField(null=True, blank=True, help_text="set: the token no longer works")

    class Meta:
        ordering = ["-created", "-pk"]
        verbose_name = "API token"

    def __str__(self):
        return f"{self.prefix}… ({self.name or 'unnamed'}, {self.user})"

    @property
    def is_active(self) -> bool:
        now = timezone.now()
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > now)
