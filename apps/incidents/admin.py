"""Incidents in the admin: look, filter, fix a field. Changes still go through ``incident_update``,
so the admin leaves the same audit trail as the incident pages; the trail itself is read-only.
New incidents are opened on the incident pages (from a chat or the form), not here.
"""
from django import forms
from django.contrib import admin
from django.core.exceptions import ValidationError

from apps.incidents.models import Incident, IncidentEvent
from apps.incidents.services import EDITABLE_FIELDS, incident_update, incident_validate


class IncidentEventInline(admin.TabularInline):
    model = IncidentEvent
    extra = 0
    fields = ("created", "actor", "kind", "changes", "note")
    readonly_fields = fields
    can_delete = False
    ordering = ("created", "pk")

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


class IncidentAdminForm(forms.ModelForm):
    class Meta:
        model = Incident
        fields = list(EDITABLE_FIELDS)

    def _post_clean(self):
        super()._post_clean()
        # The rules the services enforce, shown on the form instead of failing on save.
        saved = Incident.objects.get(pk=self.instance.pk)
        if not saved.can_move_to(self.instance.status):
            self.add_error("status", f"An incident that is {saved.get_status_display().lower()} cannot move there.")
        try:
            incident_validate(self.instance)
        except ValidationError as exc:
            self._update_errors(exc)


@admin.register(Incident)
class IncidentAdmin(admin.ModelAdmin):
    form = IncidentAdminForm
    list_display = ("id", "title", "asset", "status", "priority", "reporter", "assignee", "created")
    list_filter = ("status", "priority", "downtime_kind", "asset")
    list_select_related = ("asset", "reporter", "assignee")
    search_fields = ("title", "symptom", "cause", "remedy", "failure_class", "asset__asset_id")
    date_hierarchy = "created"
    raw_id_fields = ("asset", "assignee")
    readonly_fields = (
        "reporter", "summary_is_draft", "conversations", "citations", "live_context",
        "created", "updated", "resolved_at", "closed_at",
    )
    inlines = [IncidentEventInline]

    def has_add_permission(self, request):
        return False

    def save_model(self, request, obj, form, change):
        fields = {name: form.cleaned_data[name] for name in form.changed_data if name in EDITABLE_FIELDS}
        if fields:
            incident_update(incident=obj, actor=request.user, note="Changed in the admin", **fields)

    def save_related(self, request, form, formsets, change):
        # Nothing related is editable here (conversations and citations are read-only).
        pass
