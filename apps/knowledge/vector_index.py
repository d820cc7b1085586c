"""The process-wide VectorIndex for the current settings (NANOSENTRI_VECTOR_STORE)."""
from __future__ import annotations

import threading

from django.conf import settings

from ingest.index import VectorIndex, build_vector_store
from models.embedding import get_embedder

_indexes: dict[tuple, VectorIndex] = {}
_lock = threading.Lock()


def _settings_key() -> tuple:
    return (
        settings.NANOSENTRI_VECTOR_STORE,
        str(settings.CHROMA_DIR),
        settings.NANOSENTRI_CHROMA_HOST,
        settings.NANOSENTRI_CHROMA_PORT,
        settings.NANOSENTRI_CHROMA_COLLECTION,
        settings.NANOSENTRI_EMBEDDING_BACKEND,
    )


def _open_store(fresh: bool = False):
    if fresh and settings.NANOSENTRI_VECTOR_STORE == "chroma":
        # Embedded Chroma keeps its HNSW index in memory per process: drop the cached client
        # so the next one reads what the worker process wrote since.
        from chromadb.api.shared_system_client import SharedSystemClient

        SharedSystemClient.clear_system_cache()
    return build_vector_store(
        settings.NANOSENTRI_VECTOR_STORE,
        path=settings.CHROMA_DIR,
        host=settings.NANOSENTRI_CHROMA_HOST,
        port=settings.NANOSENTRI_CHROMA_PORT,
        collection=settings.NANOSENTRI_CHROMA_COLLECTION,
    )


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
