"""The process-wide search indexes for the current settings: manuals and past incidents.

Both are ``ingest.index.SearchIndex`` objects over a collection of the configured vector store
(NANOSENTRI_VECTOR_STORE), with one freshness check: the writers' generation counter in the
database (``apps.knowledge.generation``).
"""
from __future__ import annotations

import threading

from django.conf import settings

from ingest.index import SearchIndex, build_vector_store
from models.embedding import get_embedder


class PerSettings:
    """One object per settings key, built at most once per process (first use, thread-safe)."""

    def __init__(self):
        self._items: dict[tuple, object] = {}
        self._lock = threading.Lock()

    def get(self, key: tuple, build):
        item = self._items.get(key)
        if item is None:
            with self._lock:
                item = self._items.get(key)
                if item is None:
                    item = self._items[key] = build()
        return item

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


_indexes = PerSettings()


def store_settings_key(collection: str) -> tuple:
    """What decides which store a collection lives in: a new store when any of it changes."""
    return (
        settings.NANOSENTRI_VECTOR_STORE,
        str(settings.CHROMA_DIR),
        settings.NANOSENTRI_CHROMA_HOST,
        settings.NANOSENTRI_CHROMA_PORT,
        collection,
        settings.NANOSENTRI_EMBEDDING_BACKEND,
    )


def open_vector_store(collection: str, *, fresh: bool = False):
    """The configured vector store (NANOSENTRI_VECTOR_STORE) for ``collection``.

    ``fresh``: embedded Chroma keeps its HNSW index in memory per process; drop the cached
    client so the new one reads what the worker process wrote since.
    """
    if fresh and settings.NANOSENTRI_VECTOR_STORE == "chroma":
        from chromadb.api.shared_system_client import SharedSystemClient

        SharedSystemClient.clear_system_cache()
    return build_vector_store(
        settings.NANOSENTRI_VECTOR_STORE,
        path=settings.CHROMA_DIR,
        host=settings.NANOSENTRI_CHROMA_HOST,
        port=settings.NANOSENTRI_CHROMA_PORT,
        collection=collection,
    )


def search_index(collection: str) -> SearchIndex:
    """The index of ``collection`` for the current settings (built on first use)."""
    return _indexes.get(store_settings_key(collection), lambda: open_search_index(collection))


def open_search_index(collection: str, *, fresh: bool = False) -> SearchIndex:
    """A new index object over ``collection`` (``search_index`` keeps one per process)."""
    from apps.knowledge.generation import DatabaseGeneration

    key = store_settings_key(collection)
    return SearchIndex(
        open_vector_store(collection, fresh=fresh),
        get_embedder(),
        reopen=lambda: open_vector_store(collection, fresh=True),
        generation=DatabaseGeneration("|".join(str(part) for part in key)),
    )


def get_vector_index() -> SearchIndex:
    """The manuals' index (as written; readers use ``manual_index_fresh``)."""
    return search_index(settings.NANOSENTRI_CHROMA_COLLECTION)


def manual_index_fresh() -> SearchIndex:
    """The manuals' index, re-opened first if the worker (another process) wrote since."""
    return get_vector_index().fresh()


def reset_vector_index() -> None:
    _indexes.clear()


def incident_index() -> SearchIndex:
    """The past incidents' index (apps/incidents/similar_index.py)."""
    return search_index(settings.NANOSENTRI_CHROMA_INCIDENT_COLLECTION)
