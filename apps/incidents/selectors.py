"""Reads for incidents: who may see which, the lists built on that, and similar past incidents."""
from __future__ import annotations

import logging

from django.conf import settings
from django.db.models import Q, QuerySet
from django.urls import NoReverseMatch
from django.utils import timezone

from apps.assets.models import Asset
from apps.incidents.models import Incident
from apps.incidents.similar_index import Identifiers, get_embedder, get_incident_index, incident_device_type, nearest

log = logging.getLogger(__name__)


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


# ------------------------------------------------------------------------------ similar past incidents


def _device_type_of(asset, ids: Identifiers) -> str | None:
    if asset is None:
        return None
    if isinstance(asset, str):
        found = Asset.objects.select_related("device_type").filter(asset_id=asset).first()
        if found is None:
            return ids.device_type_in(asset)  # "WXT536-07", not registered (yet)
        asset = found
    return asset.device_type.key if asset.device_type_id else None


def _url(incident) -> str:
    try:
        return incident.get_absolute_url()
    except NoReverseMatch:  # the incident pages are not routed (yet)
        return f"/incidents/{incident.pk}/"


def incident_as_similar(incident, score: float) -> dict:
    done_at = incident.resolved_at or incident.closed_at
    return {
        "id": incident.pk,
        "title": incident.title,
        "cause": incident.cause,
        "remedy": incident.remedy,
        "resolved": timezone.localtime(done_at).date().isoformat() if done_at else "",
        "asset": incident.asset.asset_id if incident.asset else "",
        "score": round(score, 4),
        "url": _url(incident),
    }


def incident_search_text(question: str) -> str:
    """What ``incidents_similar`` embeds for ``question``: the question without device type keys
    and asset ids (an incident is found by what happened, not by which unit it happened to)."""
    return Identifiers().strip(question)


def incidents_similar(
    question: str, *, asset=None, device_type: str | None = None, top_k: int = 3, min_score: float | None = None
) -> list[dict]:
    """The past incidents most like ``question``, same device type first, best first within each.

    ``asset`` (an Asset or an asset id) or ``device_type`` (a key) say which type comes first;
    without either, a device type or asset named in the question is used. When the type is
    known, incidents of other types must score NANOSENTRI_SIMILAR_INCIDENTS_OTHER_TYPE_MIN_SCORE
    (a loosely similar fault of another device misleads more than it helps). Only incidents that
    are resolved or closed *now* are returned (the index may lag behind a reopen).
    """
    min_score = settings.NANOSENTRI_SIMILAR_INCIDENTS_MIN_SCORE if min_score is None else min_score
    ids = Identifiers()
    type_key = device_type or _device_type_of(asset, ids) or ids.device_type_in(question)
    query = ids.strip(question)
    if not query:
        return []
    index = get_incident_index().fresh()
    embedding = get_embedder().embed([query])[0]

    def candidates() -> dict[int, float]:
        hits = nearest(index, embedding, top_k=top_k * 4)
        if type_key:  # the same type's nearest, even when other types crowd the top
            hits.update(nearest(index, embedding, top_k=top_k, device_type=type_key))
        return hits

    try:
        hits = candidates()
    except Exception:
        # A stale embedded reader can fail outright ("Nothing found on disk") if the worker wrote
        # between our freshness check and its mark: re-open once.
        log.info("re-opening the incident index after a failed query", exc_info=True)
        index.refresh()
        hits = candidates()
    done = Incident.objects.filter(pk__in=hits, status__in=[Incident.Status.RESOLVED, Incident.Status.CLOSED])
    incidents = [i for i in done.select_related("asset__device_type") if hits[i.pk] >= min_score]
    same = [i for i in incidents if type_key and incident_device_type(i, ids) == type_key]
    other_min = min_score
    if type_key:
        other_min = max(min_score, settings.NANOSENTRI_SIMILAR_INCIDENTS_OTHER_TYPE_MIN_SCORE)
    others = [i for i in incidents if i not in same and hits[i.pk] >= other_min]
    ranked = sorted(same, key=lambda i: -hits[i.pk]) + sorted(others, key=lambda i: -hits[i.pk])
    return [incident_as_similar(i, hits[i.pk]) for i in ranked[:top_k]]
