"""Reads: documents for the pages, passages for the answer pipeline."""
from __future__ import annotations

import time

from django.conf import settings

from apps.knowledge.models import Document
from apps.knowledge.vector_index import get_vector_index
from ingest.index import Passage


def document_list():
    return Document.objects.select_related("uploaded_by").all()


def _index_generation() -> tuple:
    """Changes whenever the worker (another process) finishes indexing a document."""
    from django.db.models import Count, Max

    agg = Document.objects.filter(status=Document.Status.INDEXED).aggregate(n=Count("id"), last=Max("indexed_at"))
    return (agg["n"], agg["last"])


def vector_index_fresh():
    """The vector index, re-opened first if the worker (another process) indexed something since."""
    index = get_vector_index()
    generation = _index_generation()
    if index.generation is not None and generation != index.generation:
        index.refresh()
    index.generation = generation
    return index


def passages_search(
    question: str, *, top_k: int | None = None, min_score: float | None = None, document_ids: set[int] | None = None
) -> tuple[list[Passage], float]:
    """Top passages for ``question`` from indexed documents, and the milliseconds it took.

    Hits below ``min_score`` and chunks of documents that are not (or no longer) indexed are
    dropped, so a failed or half-finished ingest never shows up in an answer.
    """
    top_k = top_k or settings.NANOSENTRI_RETRIEVAL_TOP_K
    min_score = settings.NANOSENTRI_RETRIEVAL_MIN_SCORE if min_score is None else min_score
    started = time.perf_counter()
    index = vector_index_fresh()
    # Ask for a few more than needed: some hits may belong to documents being re-indexed.
    hits = index.search(question, top_k=top_k * (6 if document_ids else 2))
    if document_ids:  # only these manuals (e.g. the ones linked to the asset asked about)
        hits = [h for h in hits if h.document_id in document_ids]
    indexed = set(
        Document.objects.filter(pk__in={h.document_id for h in hits}, status=Document.Status.INDEXED).values_list(
            "pk", flat=True
        )
    )
    passages = [h for h in hits if h.document_id in indexed and h.score >= min_score][:top_k]
    if passages:
        floor = passages[0].score - settings.NANOSENTRI_RETRIEVAL_RELATIVE_CUTOFF
        passages = [p for p in passages if p.score >= floor]
    return passages, (time.perf_counter() - started) * 1000
