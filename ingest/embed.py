"""Embed chunk texts in batches, reporting progress after each batch."""
from __future__ import annotations

from typing import Callable


def embed_in_batches(
    texts: list[str],
    embedder,
    *,
    batch_size: int = 64,
    on_batch: Callable[[int, int], None] | None = None,
) -> list[list[float]]:
    """Return one vector per text; ``on_batch(done, total)`` is called after every batch."""
    vectors: list[list[float]] = []
    total = len(texts)
    for start in range(0, total, batch_size):
        vectors.extend(embedder.embed(texts[start : start + batch_size], batch_size=batch_size))
        if on_batch:
            on_batch(len(vectors), total)
    return vectors


def _malloc_trim():
    try:
        import ctypes

        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to trim
        return None


_TRIM = _malloc_trim()


def release_freed_memory() -> None:
    """Hand the memory the embedder freed back to the OS.

    Each batch of a different shape leaves torch's freed buffers in glibc's arenas; over a
    1,000-page manual the worker's RSS crept up by 250 MB without this and by 50 MB with it
    (bench/bench_big_ingest.py, docs/benchmarks.md "Big files").
    """
    if _TRIM is not None:
        _TRIM(0)
