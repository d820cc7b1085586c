"""Reads for incidents: who may see which, and the lists built on that."""
from __future__ import annotations

from django.db.models import Q, QuerySet

from apps.incidents.models import Incident


def incidents_visible_to(user) -> QuerySet[Incident]:
    """Every incident for supervisors and admins; a technician's own and their assets' otherwise."""
    qs = Incident.objects.select_related("asset", "reporter", "assignee")
    if not getattr(user, "is_authenticated", False) or not user.has_perm("incidents.view_incident"):
        return qs.none()
    if user.has_perm("incidents.view_all_incidents"):
        return qs
    return qs.filter(Q(reporter=user) | Q(assignee=user) | Q(asset__technicians=user)).distinct()


def incident_for(user, pk: int) -> Incident:
    """Incident ``pk`` if ``user`` may see it; Incident.DoesNotExist otherwise (a 404, not a 403)."""
    return incidents_visible_to(user).get(pk=pk)


def incident_editable_by(user, incident: Incident) -> bool:
    if not user.has_perm("incidents.change_incident"):
        return False
    if user.has_perm("incidents.view_all_incidents"):
        return True
    return incidents_visible_to(user).filter(pk=incident.pk).exists()


def asset_incident_history(user, asset, *, limit: int = 10) -> list[Incident]:
    """The asset's latest incidents that ``user`` may see (its page shows what broke before)."""
    return list(incidents_visible_to(user).filter(asset=asset).order_by("-created", "-pk")[:limit])


def conversation_incidents(user, conversation) -> list[Incident]:
    """Incidents already opened from this chat, so a second click does not open a duplicate."""
    if conversation is None:
        return []
    return list(incidents_visible_to(user).filter(conversations=conversation).order_by("created"))
