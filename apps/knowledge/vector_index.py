"""The process-wide VectorIndex for the current settings (NANOSENTRI_VECTOR_STORE)."""
from __future__ import annotations

import threading

from django.conf import settings

from ingest.index import VectorIndex, build_vector_store
from models.embedding import get_embedder

_indexes: dict[tuple, VectorIndex] = {}
_lock = threading.Lock()


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
    key = _settings_key()
    index = _indexes.get(key)
    if index is None:
        with _lock:
            index = _indexes.get(key)
            if index is None:
                index = _indexes[key] = VectorIndex(_open_store(), get_embedder(), reopen=lambda: _open_store(fresh=True))
    return index


def reset_vector_index() -> None:
    with _lock:
        _indexes.clear()
