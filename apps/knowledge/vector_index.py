"""The process-wide VectorIndex, built from settings (NANOSENTRI_VECTOR_STORE)."""
from __future__ import annotations

import threading

from django.conf import settings

from ingest.index import VectorIndex, build_vector_store
from models.embedding import get_embedder

_index: VectorIndex | None = None
_lock = threading.Lock()


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
    global _index
    if _index is None:
        with _lock:
            if _index is None:
                _index = VectorIndex(_open_store(), get_embedder(), reopen=lambda: _open_store(fresh=True))
    return _index


def reset_vector_index() -> None:
    global _index
    with _lock:
        _index = None
