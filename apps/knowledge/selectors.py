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
    dropped, so a failed or half-finished ingest never shows up in an answer. Thumbs-up on
    similar questions then reorder what is left (``Passage.boost``; docs/feedback.md).
    """
    top_k = top_k or settings.NANOSENTRI_RETRIEVAL_TOP_K
    min_score = settings.NANOSENTRI_RETRIEVAL_MIN_SCORE if min_score is None else min_score
    started = time.perf_counter()
    index = vector_index_fresh()
    query_vector, embedder_name = _query_vector_for_feedback(question, index.embedder)
    # Ask for a few more than needed: some hits may belong to documents being re-indexed.
    search_kwargs = {"embedding": query_vector} if query_vector is not None else {}
    hits = index.search(question, top_k=top_k * (6 if document_ids else 2), **search_kwargs)
    if document_ids:  # only these manuals (e.g. the ones linked to the asset asked about)
        hits = [h for h in hits if h.document_id in document_ids]
    indexed = set(
        Document.objects.filter(pk__in={h.document_id for h in hits}, status=Document.Status.INDEXED).values_list(
            "pk", flat=True
        )
    )
    passages = [h for h in hits if h.document_id in indexed and h.score >= min_score]
    if passages:
        floor = passages[0].score - settings.NANOSENTRI_RETRIEVAL_RELATIVE_CUTOFF
        passages = [p for p in passages if p.score >= floor]
        if query_vector is not None:
            # Eligibility above is by raw similarity: feedback only reorders, it never admits a page.
            from apps.chat.feedback_ranking import passages_rerank

            passages = passages_rerank(passages, query_vector=query_vector, embedder_name=embedder_name)
        passages = passages[:top_k]
    return passages, (time.perf_counter() - started) * 1000


def _query_vector_for_feedback(question: str, embedder) -> tuple[list[float] | None, str]:
    """The question's vector when feedback ranking is on (the search then reuses it)."""
    from apps.chat.feedback_ranking import feedback_boost_enabled

    if not feedback_boost_enabled():
        return None, ""
    return embedder.embed([question])[0], embedder.name
