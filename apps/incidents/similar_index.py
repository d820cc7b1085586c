"""The store of similar past incidents: resolved and closed incidents in their own Chroma collection.

This module says what of an incident is embedded and how the collection is searched, like
``apps.knowledge.retrieval`` does for the manuals. The writes (``incident_index``,
``incidents_reindex``) are in ``apps.incidents.services`` and run in the Celery worker or a
management command; the read (``incidents_similar``) is in ``apps.incidents.selectors`` and runs
in the web process, re-opening the store when a writer has written since (the search index's
generation counter, shared with the manuals).

Device type keys and asset ids are left out of the embedded text and of the query: MiniLM
weighs a shared "WXT536" more than the fault itself, so "WXT536 heater dead" used to rank every
WXT536 incident above a heater incident worded differently. The device type is kept in the
metadata instead and ranks "same type first" explicitly.
"""
from __future__ import annotations

import logging
import re

# The collection and the embedder the services (writes) and selectors (reads) use with this store.
from apps.knowledge.vector_index import incident_index as get_incident_index  # noqa: F401
from models.embedding import get_embedder  # noqa: F401

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


def incident_entry(incident, ids: "Identifiers"):
    from ingest.index import Entry

    return Entry(node_id=node_id(incident.pk), text=incident_text(incident, ids),
                 metadata={"incident_id": str(incident.pk), **_metadata(incident, ids)})


def nearest(index, embedding: list[float], *, top_k: int, device_type: str | None = None) -> dict[int, float]:
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


class Identifiers:
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


def incident_device_type(incident, ids: Identifiers | None = None) -> str:
    """The incident's device type key: its asset's, else a failure class naming one, else ""."""
    asset = incident.asset
    if asset is not None and asset.device_type_id:
        return asset.device_type.key
    ids = ids or Identifiers()
    return ids.types.get((incident.failure_class or "").strip().upper(), "")


def incident_text(incident, ids: Identifiers | None = None) -> str:
    """What is embedded: title, failure class, symptom, cause, remedy, root cause."""
    ids = ids or Identifiers()
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


def _metadata(incident, ids: Identifiers) -> dict:
    asset = incident.asset.asset_id if incident.asset else ""
    return {"device_type": incident_device_type(incident, ids), "asset": asset}
