"""The process-wide VectorIndex for the current settings (NANOSENTRI_VECTOR_STORE)."""
from __future__ import annotations

import threading

from django.conf import settings

from ingest.index import VectorIndex, build_vector_store
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


def _settings_key() -> tuple:
    return store_settings_key(settings.NANOSENTRI_CHROMA_COLLECTION)


def _open_store(fresh: bool = False):
    return open_vector_store(settings.NANOSENTRI_CHROMA_COLLECTION, fresh=fresh)


def get_vector_index() -> VectorIndex:
    return _indexes.get(
        _settings_key(), lambda: VectorIndex(_open_store(), get_embedder(), reopen=lambda: _open_store(fresh=True))
    )


def reset_vector_index() -> None:
    _indexes.clear()
