"""Similar past incidents: resolved and closed incidents, embedded in their own Chroma collection.

Writes (``incident_index``, ``incidents_reindex``) run in the Celery worker or a management
command; reads (``incidents_similar``) run in the web process and re-open the store when a
writer has written since (the search index's generation counter, shared with the manuals).

Device type keys and asset ids are left out of the embedded text and of the query: MiniLM
weighs a shared "WXT536" more than the fault itself, so "WXT536 heater dead" used to rank every
WXT536 incident above a heater incident worded differently. The device type is kept in the
metadata instead and ranks "same type first" explicitly.
"""
from __future__ import annotations

import logging
import re

from django.conf import settings
from django.urls import NoReverseMatch
from django.utils import timezone

from apps.knowledge.vector_index import incident_index as get_incident_index
from models.embedding import get_embedder

log = logging.getLogger(__name__)

# Each field is cut so that title, symptom, cause and remedy fit MiniLM's 256 tokens.
FIELD_CHARS = {"title": 200, "failure_class": 100, "symptom": 500, "cause": 300, "remedy": 300, "root_cause": 300}
_TOKEN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]*[A-Za-z0-9]")


def node_id(incident_id: int) -> str:
    return f"incident-{incident_id}"


# ------------------------------------------------------------------------------ the store
#
# The incidents live in their own collection of the shared search index component
# (apps.knowledge.vector_index.incident_index): one entry per incident, written only by the
# worker, re-opened by readers when the writers' generation counter moved.


def _entry(incident, ids: "_Identifiers"):
    from ingest.index import Entry

    return Entry(node_id=node_id(incident.pk), text=incident_text(incident, ids),
                 metadata={"incident_id": str(incident.pk), **_metadata(incident, ids)})


def _nearest(index, embedding: list[float], *, top_k: int, device_type: str | None = None) -> dict[int, float]:
    """{incident id: cosine similarity} of the ``top_k`` nearest (of ``device_type`` only, if given)."""
    where = {"device_type": device_type} if device_type else None
    hits = {}
    for hit in index.vector_search(embedding, top_k=top_k, where=where):
        try:
            hits[int(hit.metadata["incident_id"])] = hit.score
        except (KeyError, ValueError):
            log.warning("skipping a stored incident vector without its id: %s", hit.node_id)
    return hits


# ------------------------------------------------------------------------------ text


class _Identifiers:
    """Device type keys and asset ids, to leave out of embedded text (see the module docstring)."""

    def __init__(self):
        from apps.assets.models import Asset, DeviceType

        self.types = {k.upper(): k for k in DeviceType.objects.values_list("key", flat=True)}
        self.assets = {a.upper() for a in Asset.objects.values_list("asset_id", flat=True)}

    def device_type_in(self, text: str) -> str | None:
        for token in _TOKEN.findall(text or ""):
            up = token.upper()
            key = self.types.get(up) or self.types.get(up.split("-")[0])
            if key:
                return key
        return None

    def is_identifier(self, token: str) -> bool:
        up = token.upper()
        return up in self.assets or up in self.types or up.split("-")[0] in self.types

    def strip(self, text: str) -> str:
        text = _TOKEN.sub(lambda m: " " if self.is_identifier(m.group()) else m.group(), text or "")
        return re.sub(r"[ \t]+", " ", text).strip()


def _cut(text: str, field: str) -> str:
    text = " ".join((text or "").split())
    limit = FIELD_CHARS[field]
    return text if len(text) <= limit else text[:limit].rsplit(" ", 1)[0] + " …"


def incident_device_type(incident, ids: _Identifiers | None = None) -> str:
    """The incident's device type key: its asset's, else a failure class naming one, else ""."""
    asset = incident.asset
    if asset is not None and asset.device_type_id:
        return asset.device_type.key
    ids = ids or _Identifiers()
    return ids.types.get((incident.failure_class or "").strip().upper(), "")


def incident_text(incident, ids: _Identifiers | None = None) -> str:
    """What is embedded: title, failure class, symptom, cause, remedy, root cause."""
    ids = ids or _Identifiers()
    lines = [_cut(incident.title, "title")]
    labels = (("failure_class", "Failure class"), ("symptom", "Symptom"), ("cause", "Cause"),
              ("remedy", "Remedy"), ("root_cause", "Root cause"))
    for field, label in labels:
        value = _cut(getattr(incident, field), field)
        if field == "failure_class" and value.upper() in ids.types:
            continue  # a device type: kept in the metadata, not in the text
        if value:
            lines.append(f"{label}: {value}")
    return "\n".join(filter(None, (ids.strip(line) for line in lines)))


def _metadata(incident, ids: _Identifiers) -> dict:
    asset = incident.asset.asset_id if incident.asset else ""
    return {"device_type": incident_device_type(incident, ids), "asset": asset}


# ------------------------------------------------------------------------------ writes


def incident_index(*, incident_id: int) -> bool:
    """Embed incident ``incident_id`` if it is resolved or closed, else drop its vector.

    Runs in the Celery worker (``incident_index_task``), the only process writing embedded
    Chroma. Returns True when the incident is now in the index.
    """
    from apps.incidents.models import Incident

    incident = Incident.objects.select_related("asset__device_type").filter(pk=incident_id).first()
    index = get_incident_index()
    if incident is None or not incident.is_done:
        index.delete_ids([node_id(incident_id)])
        return False
    entry = _entry(incident, _Identifiers())
    index.add_entries([entry], get_embedder().embed([entry.embed_text]))
    return True


def incidents_reindex(*, batch_size: int | None = None) -> int:
    """Rebuild the collection from the database (e.g. after restoring a backup); returns the count."""
    from apps.incidents.models import Incident

    batch_size = batch_size or settings.NANOSENTRI_EMBEDDING_BATCH
    index = get_incident_index()
    index.clear()
    ids = _Identifiers()
    embedder = get_embedder()
    done = Incident.objects.filter(status__in=[Incident.Status.RESOLVED, Incident.Status.CLOSED])
    incidents = list(done.select_related("asset__device_type").order_by("pk"))
    for start in range(0, len(incidents), batch_size):
        entries = [_entry(incident, ids) for incident in incidents[start:start + batch_size]]
        index.add_entries(entries, embedder.embed([e.embed_text for e in entries], batch_size=batch_size))
    return len(incidents)


# ------------------------------------------------------------------------------ reads


def _device_type_of(asset, ids: _Identifiers) -> str | None:
    if asset is None:
        return None
    if isinstance(asset, str):
        from apps.assets.models import Asset

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
    from apps.incidents.models import Incident

    min_score = settings.NANOSENTRI_SIMILAR_INCIDENTS_MIN_SCORE if min_score is None else min_score
    ids = _Identifiers()
    type_key = device_type or _device_type_of(asset, ids) or ids.device_type_in(question)
    query = ids.strip(question)
    if not query:
        return []
    index = get_incident_index().fresh()
    embedding = get_embedder().embed([query])[0]

    def nearest() -> dict[int, float]:
        hits = _nearest(index, embedding, top_k=top_k * 4)
        if type_key:  # the same type's nearest, even when other types crowd the top
            hits.update(_nearest(index, embedding, top_k=top_k, device_type=type_key))
        return hits

    try:
        hits = nearest()
    except Exception:
        # A stale embedded reader can fail outright ("Nothing found on disk") if the worker wrote
        # between our freshness check and its mark: re-open once.
        log.info("re-opening the incident index after a failed query", exc_info=True)
        index.refresh()
        hits = nearest()
    done = Incident.objects.filter(pk__in=hits, status__in=[Incident.Status.RESOLVED, Incident.Status.CLOSED])
    incidents = [i for i in done.select_related("asset__device_type") if hits[i.pk] >= min_score]
    same = [i for i in incidents if type_key and incident_device_type(i, ids) == type_key]
    other_min = min_score
    if type_key:
        other_min = max(min_score, settings.NANOSENTRI_SIMILAR_INCIDENTS_OTHER_TYPE_MIN_SCORE)
    others = [i for i in incidents if i not in same and hits[i.pk] >= other_min]
    ranked = sorted(same, key=lambda i: -hits[i.pk]) + sorted(others, key=lambda i: -hits[i.pk])
    return [incident_as_similar(i, hits[i.pk]) for i in ranked[:top_k]]
