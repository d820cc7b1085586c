from django.contrib import admin, messages
from django.utils import timezone

from apps.api.models import ApiToken
from apps.api.services import api_token_new_secret


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ("prefix", "name", "user", "created", "last_used_at", "expires_at", "revoked_at")
    list_filter = ("revoked_at",)
    search_fields = ("name", "prefix", "user__username")
    fields = ("user", "name", "prefix", "created", "last_used_at", "expires_at", "revoked_at")
    readonly_fields = ("prefix", "created", "last_used_at")
    actions = ["revoke"]

    def save_model(self, request, obj, form, change):
        secret = None if change else api_token_new_secret(obj)
        super().save_model(request, obj, form, change)
        if secret:
            # The only time the secret exists outside the client: it is not stored.
            messages.warning(request, f"Copy the new token now, it is not shown again: {secret}")

    @admin.action(description="Revoke the selected tokens")
    def revoke(self, request, queryset):
        count = queryset.filter(revoked_at__isnull=True).update(revoked_at=timezone.now())
        messages.success(request, f"Revoked {count} token(s).")
