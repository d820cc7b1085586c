"""Incidents, recorded the way a CMMS does (Maximo's failure class → problem → cause → remedy).

An incident moves open → in progress → resolved → closed (and may be reopened). Every change
is kept as an ``IncidentEvent`` row — who, when, which fields, from what to what — written by
the services in ``apps.incidents.services``, never by ``save()`` itself.
"""
from __future__ import annotations

from django.conf import settings
from django.db import models
from django.urls import reverse


class Incident(models.Model):
    class Priority(models.TextChoices):
        CRITICAL = "critical", "Critical"
        HIGH = "high", "High"
        NORMAL = "normal", "Normal"
        LOW = "low", "Low"

    class Status(models.TextChoices):
        OPEN = "open", "Open"
        IN_PROGRESS = "in_progress", "In progress"
        RESOLVED = "resolved", "Resolved"
        CLOSED = "closed", "Closed"

    class DowntimeKind(models.TextChoices):
        UNPLANNED = "unplanned", "Unplanned"
        PLANNED = "planned", "Planned"

    # Which status may follow which. Resolving needs a cause and a remedy (see services).
    TRANSITIONS = {
        Status.OPEN: {Status.IN_PROGRESS, Status.RESOLVED, Status.CLOSED},
        Status.IN_PROGRESS: {Status.OPEN, Status.RESOLVED, Status.CLOSED},
        Status.RESOLVED: {Status.CLOSED, Status.IN_PROGRESS, Status.OPEN},
        Status.CLOSED: {Status.IN_PROGRESS, Status.OPEN},
    }
    PRIORITY_ORDER = {Priority.CRITICAL: 0, Priority.HIGH: 1, Priority.NORMAL: 2, Priority.LOW: 3}

    asset = models.ForeignKey(
        "assets.Asset", null=True, blank=True, on_delete=models.SET_NULL, related_name="incidents"
    )
    title = models.CharField(max_length=200)
    failure_class = models.CharField(
        max_length=100, blank=True, help_text="CMMS failure class, e.g. the device type (WXT536) or 'heater'"
    )
    symptom = models.TextField(help_text="the problem as observed: what the technician saw")
    cause = models.TextField(blank=True, help_text="why it happened (needed to resolve)")
    remedy = models.TextField(blank=True, help_text="what fixed it (needed to resolve)")
    root_cause = models.TextField(blank=True, help_text="the underlying reason, if different from the cause")
    summary = models.TextField(blank=True)
    summary_is_draft = models.BooleanField(
        default=False, help_text="the summary was drafted by the assistant and not yet edited by a person"
    )
    priority = models.CharField(max_length=10, choices=Priority.choices, default=Priority.NORMAL, db_index=True)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.OPEN, db_index=True)
    downtime_start = models.DateTimeField(null=True, blank=True)
    downtime_end = models.DateTimeField(null=True, blank=True)
    downtime_kind = models.CharField(max_length=10, choices=DowntimeKind.choices, blank=True)
    downtime_reason = models.CharField(max_length=300, blank=True)
    reporter = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="incidents_reported"
    )
    assignee = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="incidents_assigned"
    )
    # What was on the technician's screen: the conversation(s), the cited manual passages, and
    # the sensor readings and findings (a snapshot, as the message stored it).
    conversations = models.ManyToManyField("chat.Conversation", blank=True, related_name="incidents")
    citations = models.ManyToManyField("chat.Citation", blank=True, related_name="incidents")
    live_context = models.JSONField(null=True, blank=True)
    created = models.DateTimeField(auto_now_add=True, db_index=True)
    updated = models.DateTimeField(auto_now=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    closed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created", "-pk"]
        permissions = [
            ("view_all_incidents", "Can see every incident, not only their own and their assets'"),
            ("export_incidents", "Can export incidents as CSV"),
            ("view_dashboard", "Can see the supervisor dashboard"),
        ]
        indexes = [models.Index(fields=["asset", "-created"], name="incident_asset_created")]

    def __str__(self):
        return f"#{self.pk} {self.title}"

    def get_absolute_url(self):
        return reverse("incidents:detail", args=[self.pk])

    @property
    def is_done(self) -> bool:
        return self.status in (self.Status.RESOLVED, self.Status.CLOSED)

    @property
    def downtime(self):
        """The downtime as a timedelta, when both ends are known."""
        if self.downtime_start and self.downtime_end and self.downtime_end >= self.downtime_start:
            return self.downtime_end - self.downtime_start
        return None

    def can_move_to(self, status: str) -> bool:
        return status == self.status or status in self.TRANSITIONS.get(self.Status(self.status), set())


class IncidentEvent(models.Model):
    """One entry of an incident's audit trail."""

    class Kind(models.TextChoices):
        CREATED = "created", "Created"
        UPDATED = "updated", "Updated"
        STATUS = "status", "Status changed"
        LINKED = "linked", "Conversation linked"

    incident = models.ForeignKey(Incident, on_delete=models.CASCADE, related_name="events")
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    kind = models.CharField(max_length=10, choices=Kind.choices)
    # {"field": [old, new], ...} with values as displayed (labels, not raw choice keys).
    changes = models.JSONField(default=dict, blank=True)
    note = models.TextField(blank=True)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created", "pk"]

    def __str__(self):
        return f"{self.get_kind_display()} #{self.incident_id} by {self.actor or 'system'}"
