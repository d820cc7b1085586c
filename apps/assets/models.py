"""Sites, assets, their sensors, the built-in device catalogue, and sensor readings."""
from django.conf import settings
from django.db import models
from django.urls import reverse

from apps.knowledge.privacy import PRIVACY_CHOICES, privacy_default


class DeviceType(models.Model):
    """A kind of device (e.g. the Vaisala WXT536 weather transmitter) with its sensor specs."""

    key = models.CharField(max_length=64, unique=True, help_text="e.g. WXT536")
    name = models.CharField(max_length=200)
    manufacturer = models.CharField(max_length=200, blank=True)
    description = models.TextField(blank=True)

    class Meta:
        ordering = ["key"]

    def __str__(self):
        return f"{self.key} — {self.name}"


class SensorSpec(models.Model):
    """What a sensor of a device type should read: the catalogue, used before any asset exists."""

    class Kind(models.TextChoices):
        NUMERIC = "numeric", "Numeric"
        STATUS = "status", "Status / event text"

    device_type = models.ForeignKey(DeviceType, on_delete=models.CASCADE, related_name="specs")
    key = models.CharField(max_length=64, help_text="e.g. V_IN, HEAT_CURRENT, TEMP_AMB, STATUS")
    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.NUMERIC)
    unit = models.CharField(max_length=16, blank=True)
    min_value = models.FloatField(null=True, blank=True, help_text="operating range, low end")
    max_value = models.FloatField(null=True, blank=True, help_text="operating range, high end")
    warn_low = models.FloatField(null=True, blank=True)
    warn_high = models.FloatField(null=True, blank=True)
    description = models.TextField(blank=True)

    class Meta:
        ordering = ["device_type", "key"]
        constraints = [models.UniqueConstraint(fields=["device_type", "key"], name="unique_spec_key_per_type")]

    def __str__(self):
        return f"{self.device_type.key}.{self.key}"


class Site(models.Model):
    name = models.CharField(max_length=200, unique=True)
    location = models.CharField(max_length=200, blank=True)

    def __str__(self):
        return self.name


class Asset(models.Model):
    asset_id = models.CharField(max_length=64, unique=True, help_text="as devices report it, e.g. WXT536-01")
    name = models.CharField(max_length=200)
    device_type = models.ForeignKey(DeviceType, null=True, blank=True, on_delete=models.SET_NULL, related_name="assets")
    site = models.ForeignKey(Site, null=True, blank=True, on_delete=models.SET_NULL, related_name="assets")
    location = models.CharField(max_length=200, blank=True)
    manuals = models.ManyToManyField("knowledge.Document", blank=True, related_name="assets")
    # The technicians who look after this asset: they see its incidents.
    technicians = models.ManyToManyField(
        settings.AUTH_USER_MODEL, blank=True, related_name="assets", help_text="technicians responsible for this asset"
    )
    ingest_token = models.CharField(max_length=64, blank=True, db_index=True, help_text="bearer token for HTTP telemetry")
    # Whether its readings, findings and incidents may go to the site model server
    # (models/llm/routing.py): restricted ones never leave this device.
    privacy = models.CharField(max_length=12, choices=PRIVACY_CHOICES, default=privacy_default)
    # Made by the demo site (apps/assets/demo.py) and fed by its simulator; the pages mark it.
    is_demo = models.BooleanField(
        "demo data", default=False, help_text="a simulated demo asset: `runapp` feeds it simulated readings"
    )
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["asset_id"]

    def __str__(self):
        return f"{self.asset_id} ({self.name})" if self.name and self.name != self.asset_id else self.asset_id


class Sensor(models.Model):
    asset = models.ForeignKey(Asset, on_delete=models.CASCADE, related_name="sensors")
    key = models.CharField(max_length=64)
    kind = models.CharField(max_length=10, choices=SensorSpec.Kind.choices, default=SensorSpec.Kind.NUMERIC)
    unit = models.CharField(max_length=16, blank=True)
    min_value = models.FloatField(null=True, blank=True)
    max_value = models.FloatField(null=True, blank=True)
    warn_low = models.FloatField(null=True, blank=True)
    warn_high = models.FloatField(null=True, blank=True)
    description = models.TextField(blank=True)
    # The streaming anomaly detector of this sensor (diagnostics.anomaly), updated per reading.
    anomaly_state = models.JSONField(null=True, blank=True, editable=False)
    anomaly_reason = models.CharField(max_length=300, blank=True, editable=False, help_text="set while an anomaly lasts")

    class Meta:
        ordering = ["asset", "key"]
        constraints = [models.UniqueConstraint(fields=["asset", "key"], name="unique_sensor_key_per_asset")]

    def __str__(self):
        return f"{self.asset.asset_id}.{self.key}"


class Reading(models.Model):
    """One value of one sensor at one time. Numeric in ``value``; status/event text in ``text``."""

    sensor = models.ForeignKey(Sensor, on_delete=models.CASCADE, related_name="readings")
    ts = models.DateTimeField()
    value = models.FloatField(null=True, blank=True)
    text = models.CharField(max_length=200, blank=True)
    source = models.CharField(max_length=10, default="mqtt")  # mqtt | http | log | demo

    class Meta:
        indexes = [
            # "latest per sensor" and "last N hours of a sensor"
            models.Index(fields=["sensor", "-ts"], name="reading_sensor_ts"),
            # retention sweeps
            models.Index(fields=["ts"], name="reading_ts"),
        ]


class TelemetryRejection(models.Model):
    """A payload that could not be stored, kept (truncated) with the reason, for the admin."""

    received = models.DateTimeField(auto_now_add=True, db_index=True)
    source = models.CharField(max_length=10)
    topic = models.CharField(max_length=200, blank=True)
    reason = models.CharField(max_length=300)
    excerpt = models.TextField(blank=True)

    class Meta:
        ordering = ["-received"]


class Alert(models.Model):
    """A high-severity finding that appeared on an asset; open until the finding goes away."""

    asset = models.ForeignKey(Asset, on_delete=models.CASCADE, related_name="alerts")
    rule = models.CharField(max_length=64)
    sensor = models.CharField(max_length=64, blank=True)
    severity = models.CharField(max_length=10)
    message = models.TextField()
    created = models.DateTimeField(auto_now_add=True, db_index=True)
    resolved = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created"]
        indexes = [models.Index(fields=["asset", "resolved"], name="alert_open_per_asset")]

    def as_dict(self) -> dict:
        return {
            "id": self.pk, "asset": self.asset.asset_id, "rule": self.rule, "sensor": self.sensor,
            "severity": self.severity, "message": self.message, "created": self.created.isoformat(),
            "url": reverse("assets:detail", args=[self.asset.asset_id]),
        }
