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
