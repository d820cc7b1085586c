import secrets

from django.contrib import admin
from django.utils import timezone

from apps.assets.models import Alert, Asset, DeviceType, Reading, Sensor, SensorSpec, Site, TelemetryRejection

_RANGE_FIELDS = ("key", "kind", "unit", "min_value", "max_value", "warn_low", "warn_high", "description")


class SensorSpecInline(admin.TabularInline):
    model = SensorSpec
    fields = _RANGE_FIELDS
    extra = 0


@admin.register(DeviceType)
class DeviceTypeAdmin(admin.ModelAdmin):
    list_display = ("key", "name", "manufacturer")
    search_fields = ("key", "name", "manufacturer")
    inlines = [SensorSpecInline]


@admin.register(Site)
class SiteAdmin(admin.ModelAdmin):
    list_display = ("name", "location")
    search_fields = ("name", "location")


class SensorInline(admin.TabularInline):
    model = Sensor
    fields = _RANGE_FIELDS
    extra = 0


@admin.register(Asset)
class AssetAdmin(admin.ModelAdmin):
    list_display = ("asset_id", "name", "device_type", "site", "location", "privacy", "has_token", "is_demo", "created")
    list_filter = ("device_type", "site", "privacy", "is_demo")
    search_fields = ("asset_id", "name", "location")
    list_select_related = ("device_type", "site")
    filter_horizontal = ("manuals", "technicians")
    inlines = [SensorInline]
    actions = ["new_ingest_token"]

    @admin.display(boolean=True, description="HTTP token")
    def has_token(self, asset):
        return bool(asset.ingest_token)

    @admin.action(description="Generate a new HTTP ingest token (replaces the old one)")
    def new_ingest_token(self, request, queryset):
        for asset in queryset:
            asset.ingest_token = secrets.token_urlsafe(32)
            asset.save(update_fields=["ingest_token"])
        self.message_user(request, f"New ingest token for {queryset.count()} asset(s); open an asset to copy it.")


class _ReadOnly(admin.ModelAdmin):
    """Rows written by the telemetry path only: view, filter and delete, never edit."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(Reading)
class ReadingAdmin(_ReadOnly):
    list_display = ("ts", "sensor", "value", "text", "source")
    list_filter = ("source", "sensor__asset", "sensor__key")
    date_hierarchy = "ts"
    list_select_related = ("sensor__asset",)
    search_fields = ("sensor__asset__asset_id", "sensor__key")
    show_full_result_count = False  # counting millions of readings on every page is slow
    ordering = ("-ts",)


@admin.register(TelemetryRejection)
class TelemetryRejectionAdmin(_ReadOnly):
    list_display = ("received", "source", "topic", "reason")
    list_filter = ("source",)
    search_fields = ("reason", "topic", "excerpt")
    date_hierarchy = "received"


@admin.register(Alert)
class AlertAdmin(admin.ModelAdmin):
    list_display = ("created", "asset", "severity", "rule", "sensor", "resolved")
    list_filter = ("severity", "rule", ("resolved", admin.EmptyFieldListFilter), "asset")
    search_fields = ("asset__asset_id", "message", "rule")
    list_select_related = ("asset",)
    readonly_fields = ("created",)
    date_hierarchy = "created"
    actions = ["resolve"]

    @admin.action(description="Mark as resolved")
    def resolve(self, request, queryset):
        done = queryset.filter(resolved__isnull=True).update(resolved=timezone.now())
        self.message_user(request, f"{done} alert(s) resolved.")
