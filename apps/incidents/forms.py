"""Forms of the incident pages. They validate input only; saving goes through the services."""
from __future__ import annotations

from django import forms
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db.models import Q

from apps.accounts.roles import ROLES
from apps.assets.models import Asset
from apps.incidents.models import Incident
from apps.incidents.services import EDITABLE_FIELDS

# What <input type="datetime-local"> sends and expects (local time, minutes).
DATETIME_LOCAL = "%Y-%m-%dT%H:%M"


def _datetime_input():
    return forms.DateTimeInput(attrs={"type": "datetime-local"}, format=DATETIME_LOCAL)


def _people(*, also=None):
    """Users with a role (superusers count as admins), plus ``also`` (e.g. the current assignee)."""
    users = get_user_model().objects.filter(Q(groups__name__in=ROLES) | Q(is_superuser=True), is_active=True)
    if also:
        users = get_user_model().objects.filter(Q(pk__in=users.values("pk")) | Q(pk=also))
    return users.distinct().order_by("username")


class _UserChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, user):
        full = user.get_full_name()
        return f"{full} ({user.get_username()})" if full else user.get_username()


class IncidentForm(forms.ModelForm):
    """Every editable field. Without an instance (a new incident) there is no status to choose."""

    note = forms.CharField(
        required=False, max_length=500, label="Note for the history",
        help_text="Optional: why you changed it. Kept in the audit trail.",
    )

    class Meta:
        model = Incident
        fields = list(EDITABLE_FIELDS)
        field_classes = {"assignee": _UserChoiceField}
        widgets = {
            "symptom": forms.Textarea(attrs={"rows": 5}),
            "cause": forms.Textarea(attrs={"rows": 3}),
            "remedy": forms.Textarea(attrs={"rows": 3}),
            "root_cause": forms.Textarea(attrs={"rows": 3}),
            "summary": forms.Textarea(attrs={"rows": 10}),
            "downtime_start": _datetime_input(),
            "downtime_end": _datetime_input(),
        }
        labels = {
            "failure_class": "Failure class",
            "root_cause": "Root cause",
            "downtime_kind": "Downtime was",
            "downtime_reason": "Reason for the downtime",
        }

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["asset"].queryset = Asset.objects.select_related("device_type").order_by("asset_id")
        self.fields["asset"].empty_label = "— no asset —"
        self.fields["assignee"].queryset = _people(also=self.instance.assignee_id)
        self.fields["assignee"].empty_label = "— nobody yet —"
        self.fields["downtime_kind"].choices = [("", "—")] + list(Incident.DowntimeKind.choices)
        if self.instance.pk is None:
            del self.fields["status"]
        else:
            # Only the moves the workflow allows (the service checks again).
            self.fields["status"].choices = [
                (value, label) for value, label in Incident.Status.choices if self.instance.can_move_to(value)
            ]

    def service_fields(self) -> dict:
        """The cleaned values for incident_create / incident_update."""
        return {name: self.cleaned_data[name] for name in EDITABLE_FIELDS if name in self.fields}


class ResolveForm(forms.ModelForm):
    """Resolving asks for what CMMS reports need: the cause and what fixed it."""

    note = forms.CharField(required=False, max_length=500, label="Note for the history")

    class Meta:
        model = Incident
        fields = ["cause", "remedy", "root_cause", "downtime_end"]
        widgets = {
            "cause": forms.Textarea(attrs={"rows": 4}),
            "remedy": forms.Textarea(attrs={"rows": 4}),
            "root_cause": forms.Textarea(attrs={"rows": 3}),
            "downtime_end": _datetime_input(),
        }
        labels = {"root_cause": "Root cause (if different)", "downtime_end": "Downtime ended"}
        help_texts = {"cause": "Why it happened.", "remedy": "What fixed it."}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["cause"].required = True
        self.fields["remedy"].required = True

    def service_fields(self) -> dict:
        return {name: self.cleaned_data[name] for name in self.Meta.fields}


class IncidentFilterForm(forms.Form):
    """The list's filters, from the query string. Invalid values are reported and ignored."""

    q = forms.CharField(required=False, max_length=200, label="Search")
    asset = forms.ModelChoiceField(
        queryset=Asset.objects.order_by("asset_id"), to_field_name="asset_id", required=False, empty_label="All assets"
    )
    status = forms.ChoiceField(choices=[("", "Any status")] + list(Incident.Status.choices), required=False)
    priority = forms.ChoiceField(choices=[("", "Any priority")] + list(Incident.Priority.choices), required=False)
    reporter = _UserChoiceField(queryset=get_user_model().objects.none(), required=False, empty_label="Anyone")
    created_from = forms.DateField(
        required=False, label="Created from", widget=forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d")
    )
    created_to = forms.DateField(
        required=False, label="Created to", widget=forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d")
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["reporter"].queryset = _people()

    def clean(self):
        data = super().clean()
        start, end = data.get("created_from"), data.get("created_to")
        if start and end and end < start:
            raise ValidationError({"created_to": "The end date is before the start date."})
        return data

    def filters(self) -> dict:
        """The valid filters (for ``search.incidents_filter``); call after is_valid()."""
        data = getattr(self, "cleaned_data", {})
        return {
            name: data.get(name)
            for name in ("asset", "status", "priority", "reporter", "created_from", "created_to")
            if data.get(name) not in (None, "")
        }
