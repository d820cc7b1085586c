"""Thumbs-up raise the passages they cited, for questions like theirs (docs/feedback.md).

For each retrieved passage p:

    boost(p) = min(CAP, sum over rated answers a that cited p of WEIGHT * s_a * min(net_a, MAX_VOTES))
    s_a      = (cos(question, question_a) - THRESHOLD) / (1 - THRESHOLD), only when cos >= THRESHOLD
    net_a    = thumbs-up minus thumbs-down on a; only answers with net_a > 0 count

"Cited p" means: a citation of the same document and chunk with the same text (a page that was
re-chunked differently is not boosted) that the answer refers to as [n] in its text; an answer
that refers to none of its citations counts them all. Retrieval still decides which passages are eligible
(the minimum score and the relative cut-off use the raw similarity): the boost only reorders
them, so it never lets an unrelated page in. Votes are read on every question, so taking a
thumbs-up back removes its effect at once.
"""
from __future__ import annotations

import re
import threading
from dataclasses import replace

import numpy as np
from django.conf import settings
from django.db.models import Count, Max, Q

from apps.chat.models import AnswerFeedback, Citation, Message
from ingest.index import Passage

MAX_VOTES = 3  # more votes than this on one answer add nothing
_MARKER = re.compile(r"\[(\d{1,2})\]")

# The stored question vectors, parsed once per process: a question never changes.
_vectors: dict[tuple[str, int, str], np.ndarray] = {}  # (embedder, vote pk, vote created)
_vectors_lock = threading.Lock()
_MAX_CACHED = 50_000

# The passages thumbs-up answers cited, per state of the votes (their count and last change):
# most questions retrieve none of them and then need no further query (issue 10, fifty chats).
_upvoted: dict[tuple, frozenset[tuple[int, int]]] = {}
_upvoted_lock = threading.Lock()


def feedback_boost_enabled() -> bool:
    return bool(getattr(settings, "NANOSENTRI_FEEDBACK_BOOST", True))


# A boost is in cosine points; retrieval orders by fused rank score (reciprocal rank fusion).
# The full cap (0.08) is worth 0.02 of fused score: about as much as coming first rather than
# tenth in one of the two rankings.
FUSED_PER_COSINE = 0.25


def feedback_rerank(passages: list[Passage], query_vector) -> list[Passage]:
    """The answer pipeline's feedback step: ``passages`` with ``boost`` set, reordered by it."""
    if not feedback_boost_enabled() or not passages or query_vector is None:
        return passages
    from models.embedding import get_embedder

    return passages_rerank(passages, query_vector=query_vector, embedder_name=get_embedder().name)


def passages_rerank(passages: list[Passage], *, query_vector, embedder_name: str) -> list[Passage]:
    """``passages`` with ``boost`` set, best (fused score + boost) first; unchanged when nothing applies."""
    if not passages or query_vector is None:
        return passages
    boosts = passage_boosts(passages, query_vector=query_vector, embedder_name=embedder_name)
    if not boosts:
        return passages
    boosted = [replace(p, boost=boosts.get((p.document_id, p.chunk_index), 0.0)) for p in passages]
    # Stable: ties keep the retrieval order.
    boosted.sort(key=lambda p: p.rank_score + FUSED_PER_COSINE * p.boost, reverse=True)
    return boosted


def upvoted_chunks() -> frozenset[tuple[int, int]]:
    """{(document_id, chunk_index)} cited by an answer with a thumbs-up, read again whenever a vote
    is added, changed or removed (any process: the state is read from the database each time)."""
    state = tuple(AnswerFeedback.objects.aggregate(n=Count("pk"), last=Max("updated")).values())
    with _upvoted_lock:
        chunks = _upvoted.get(state)
    if chunks is None:
        chunks = frozenset(
            Citation.objects.filter(message__feedback__rating=AnswerFeedback.Rating.UP)
            .values_list("document_id", "chunk_index")
            .distinct()
        )
        with _upvoted_lock:
            _upvoted.clear()
            _upvoted[state] = chunks
    return chunks


def passage_boosts(passages: list[Passage], *, query_vector, embedder_name: str) -> dict[tuple[int, int], float]:
    """{(document_id, chunk_index): boost} for the passages that similar thumbs-up answers cited."""
    texts = {(p.document_id, p.chunk_index): p.text for p in passages}
    if not texts.keys() & upvoted_chunks():
        return {}
    match = Q()
    for document_id, chunk_index in texts:
        match |= Q(document_id=document_id, chunk_index=chunk_index)
    rows = [
        (message_id, rank, (document_id, chunk_index))
        for message_id, rank, document_id, chunk_index, text in Citation.objects.filter(
            match, message__feedback__rating=AnswerFeedback.Rating.UP
        )
        .values_list("message_id", "rank", "document_id", "chunk_index", "text")
        .distinct()
        if texts.get((document_id, chunk_index)) == text  # not a page re-chunked since
    ]
    if not rows:
        return {}
    used = _used_ranks({m for m, _, _ in rows})
    cited = [(m, key) for m, rank, key in rows if used[m] is None or rank in used[m]]

    net: dict[int, int] = {}
    source: dict[int, tuple] = {}  # message id -> the vote whose stored vector is used
    for pk, message_id, rating, model, created in AnswerFeedback.objects.filter(
        message_id__in={m for m, _ in cited}
    ).values_list("pk", "message_id", "rating", "embedding_model", "created"):
        net[message_id] = net.get(message_id, 0) + rating
        if model == embedder_name and message_id not in source:
            source[message_id] = (pk, created.isoformat())
    vectors = _question_vectors({m: key for m, key in source.items() if net[m] > 0}, embedder_name)
    if not vectors:
        return {}

    threshold = settings.NANOSENTRI_FEEDBACK_BOOST_THRESHOLD
    weight = settings.NANOSENTRI_FEEDBACK_BOOST_WEIGHT
    cap = settings.NANOSENTRI_FEEDBACK_BOOST_CAP
    query = np.asarray(query_vector, dtype=np.float32)
    query_norm = float(np.linalg.norm(query)) or 1.0
    strength = {}
    for message_id, vector in vectors.items():
        if vector.shape != query.shape:
            continue
        similarity = float(vector @ query) / query_norm  # stored vectors are unit length
        if similarity >= threshold:
            strength[message_id] = (similarity - threshold) / (1.0 - threshold) if threshold < 1 else 1.0
    boosts: dict[tuple[int, int], float] = {}
    for message_id, key in cited:
        if message_id in strength:
            boosts[key] = boosts.get(key, 0.0) + weight * strength[message_id] * min(net[message_id], MAX_VOTES)
    return {key: round(min(cap, value), 4) for key, value in boosts.items() if value > 0}


def _used_ranks(message_ids: set[int]) -> dict[int, set[int] | None]:
    """The [n] each answer refers to in its text; None when it refers to none (then all count)."""
    used = {}
    for message_id, content, count in (
        Message.objects.filter(pk__in=message_ids).annotate(n=Count("citations")).values_list("pk", "content", "n")
    ):
        ranks = {int(n) for n in _MARKER.findall(content or "") if 1 <= int(n) <= count}
        used[message_id] = ranks or None
    return used


def _question_vectors(sources: dict[int, tuple], embedder_name: str) -> dict[int, np.ndarray]:
    """{message id: its question's unit vector} from the votes in ``sources`` ({message id: (vote pk, created)})."""
    found = {}
    missing = {}
    for message_id, (pk, created) in sources.items():
        cached = _vectors.get((embedder_name, pk, created))
        if cached is not None:
            found[message_id] = cached
        else:
            missing[pk] = (message_id, created)
    if missing:
        loaded = {}
        for pk, raw in AnswerFeedback.objects.filter(pk__in=missing).values_list("pk", "question_embedding"):
            if not isinstance(raw, list) or not raw:
                continue
            vector = np.asarray(raw, dtype=np.float32)
            norm = float(np.linalg.norm(vector))
            if norm:
                loaded[pk] = vector / norm
        with _vectors_lock:
            if len(_vectors) > _MAX_CACHED:
                _vectors.clear()
            for pk, vector in loaded.items():
                message_id, created = missing[pk]
                _vectors[(embedder_name, pk, created)] = vector
                found[message_id] = vector
    return found
