"""Similar past incidents: resolved and closed incidents, embedded in their own Chroma collection.

Writes (``incident_index``, ``incidents_reindex``) run in the Celery worker or a management
command; reads (``incidents_similar``) run in the web process and re-open the store when a
writer has written since (see ``_written_key``).

Device type keys and asset ids are left out of the embedded text and of the query: MiniLM
weighs a shared "WXT536" more than the fault itself, so "WXT536 heater dead" used to rank every
WXT536 incident above a heater incident worded differently. The device type is kept in the
metadata instead and ranks "same type first" explicitly.
"""
from __future__ import annotations

import logging
import re
import threading
from pathlib import Path

from django.conf import settings
from django.urls import NoReverseMatch
from django.utils import timezone

from apps.knowledge.vector_index import PerSettings, open_vector_store, store_settings_key
from ingest.index import cosine_from_chroma
from models.embedding import get_embedder

log = logging.getLogger(__name__)

# Each field is cut so that title, symptom, cause and remedy fit MiniLM's 256 tokens.
FIELD_CHARS = {"title": 200, "failure_class": 100, "symptom": 500, "cause": 300, "remedy": 300, "root_cause": 300}
_TOKEN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]*[A-Za-z0-9]")


def node_id(incident_id: int) -> str:
    return f"incident-{incident_id}"


# ------------------------------------------------------------------------------ the store


class IncidentIndex:
    """Upsert, delete and query incident vectors (one per incident) through llama-index."""

    def __init__(self, vector_store, *, reopen=None):
        self._store = vector_store
        self._reopen = reopen
        self._lock = threading.Lock()
        self.generation = None  # the writers' mark this store has seen

    @property
    def store(self):
        return self._store

    def refresh(self) -> None:
        if self._reopen is not None:
            with self._lock:
                self._store = self._reopen()

    def upsert(self, *, incident_id: int, text: str, embedding: list[float], metadata: dict) -> None:
        from llama_index.core.schema import TextNode

        node = TextNode(
            id_=node_id(incident_id),
            text=text,
            embedding=embedding,
            metadata={"incident_id": str(incident_id), **metadata},
            excluded_embed_metadata_keys=["incident_id", *metadata],
            excluded_llm_metadata_keys=["incident_id", *metadata],
        )
        with self._lock:
            self._store.delete_nodes(node_ids=[node.node_id])
            self._store.add([node])

    def delete(self, incident_id: int) -> None:
        with self._lock:
            self._store.delete_nodes(node_ids=[node_id(incident_id)])

    def clear(self) -> None:
        with self._lock:
            ids = self._store.client.get(include=[])["ids"]
            if ids:
                self._store.delete_nodes(node_ids=ids)

    def count(self) -> int:
        return self._store.client.count()

    def query(self, embedding: list[float], *, top_k: int, device_type: str | None = None) -> dict[int, float]:
        """{incident id: cosine similarity} of the ``top_k`` nearest (of ``device_type`` only, if given)."""
        from llama_index.core.vector_stores.types import MetadataFilter, MetadataFilters, VectorStoreQuery

        filters = None
        if device_type:
            filters = MetadataFilters(filters=[MetadataFilter(key="device_type", value=device_type)])
        query = VectorStoreQuery(query_embedding=embedding, similarity_top_k=top_k, filters=filters)
        with self._lock:
            if self._store.client.count() == 0:
                return {}
            result = self._store.query(query)
        hits = {}
        for node, score in zip(result.nodes or [], result.similarities or [], strict=False):
            try:
                hits[int(node.metadata["incident_id"])] = cosine_from_chroma(score)
            except (KeyError, ValueError):
                log.warning("skipping a stored incident vector without its id: %s", node.node_id)
        return hits


_indexes = PerSettings()


def _settings_key() -> tuple:
    return store_settings_key(settings.NANOSENTRI_CHROMA_INCIDENT_COLLECTION)


def _open_store(fresh: bool = False):
    return open_vector_store(settings.NANOSENTRI_CHROMA_INCIDENT_COLLECTION, fresh=fresh)


def get_incident_index() -> IncidentIndex:
    def build():
        generation = _written_key()  # before opening: a write in between is then seen as new
        index = IncidentIndex(_open_store(), reopen=lambda: _open_store(fresh=True))
        index.generation = generation
        return index

    return _indexes.get(_settings_key(), build)


def reset_incident_index() -> None:
    _indexes.clear()


# ------------------------------------------------------------------------------ freshness
#
# Only embedded Chroma needs this: its readers cache the index per process. A key computed from
# the incidents table would change at commit, before the worker has embedded anything, and the
# web process would re-open too early and then keep the stale copy. So the writer itself leaves
# a mark next to the store once the vector is written; a reader re-opens when the mark moved
# (one stat() per question).


def _mark_path() -> Path:
    return Path(settings.CHROMA_DIR) / f".{settings.NANOSENTRI_CHROMA_INCIDENT_COLLECTION}.written"


def _written_key():
    if settings.NANOSENTRI_VECTOR_STORE != "chroma":
        return None  # in memory: this process; chroma-http: the server is always current
    try:
        st = _mark_path().stat()
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


def _mark_written(index: IncidentIndex) -> None:
    if settings.NANOSENTRI_VECTOR_STORE != "chroma":
        return
    path = _mark_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".{threading.get_ident()}.tmp")
    tmp.write_text(str(timezone.now().timestamp()))
    tmp.replace(path)  # a new inode: the key changes even within one mtime tick
    index.generation = _written_key()  # this process's store already has the write


def incident_index_fresh() -> IncidentIndex:
    """The incident index, re-opened first if a writer (the worker) wrote since."""
    index = get_incident_index()
    key = _written_key()
    if key != index.generation:
        index.refresh()
        index.generation = key
    return index


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
        index.delete(incident_id)
        indexed = False
    else:
        ids = _Identifiers()
        text = incident_text(incident, ids)
        embedding = get_embedder().embed([text])[0]
        index.upsert(incident_id=incident.pk, text=text, embedding=embedding, metadata=_metadata(incident, ids))
        indexed = True
    _mark_written(index)
    return indexed


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
        batch = incidents[start:start + batch_size]
        texts = [incident_text(i, ids) for i in batch]
        embeddings = embedder.embed(texts, batch_size=batch_size)
        for incident, text, embedding in zip(batch, texts, embeddings, strict=True):
            index.upsert(incident_id=incident.pk, text=text, embedding=embedding, metadata=_metadata(incident, ids))
    _mark_written(index)
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
    index = incident_index_fresh()
    embedding = get_embedder().embed([query])[0]

    def nearest() -> dict[int, float]:
        hits = index.query(embedding, top_k=top_k * 4)
        if type_key:  # the same type's nearest, even when other types crowd the top
            hits.update(index.query(embedding, top_k=top_k, device_type=type_key))
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
