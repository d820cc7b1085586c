"""Find the page: hybrid retrieval over the manuals' index, with a "not covered" decision.

The steps, each a small function:

1. candidates from both halves of the index: the nearest chunk vectors (chunks are embedded
   with their manual's title and section heading), ranked again with their best snippet's
   cosine (a snippet: two consecutive sentences of the chunk, embedded on its own), and the best
   BM25 matches (codes, part and pin names, units count);
2. only chunks of documents indexed now (a half-finished or deleted manual is never cited);
3. reciprocal rank fusion of the two rankings;
4. a question that names a manual ("on the ESP32-EVB …") is searched in that manual only, by what
   it asks of it (the name's own words leave the BM25 query), and its passages come first;
5. coverage: the question is answered only when one of the first passages is close enough in
   meaning (NANOSENTRI_RETRIEVAL_MIN_SCORE), every code or part number it names ("F21",
   "GPIO12") occurs somewhere in the library, and, when it names a manual, that manual has at least
   one of the words it asks of it ("firmware" or "update" for "How do I update the firmware on
   the SmartEVSE?"); otherwise nothing is cited;
6. a question of several parts ("…, and which bytes start a frame?"): each further part's best
   page, searched within the same manuals, joins the first passages;
7. optional re-ranking steps given by the caller (the answer pipeline's feedback boost);
8. a passage whose section ends in a few lines at the top of the next page ("Disconnection should
   be done in opposite order." after a connection procedure) is followed by those lines, cited on
   their own page.
"""
from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass, field, replace
from typing import Callable

from django.conf import settings

from apps.knowledge.models import Document
from apps.knowledge.vector_index import manual_index_fresh
from ingest.chunk import page_headings
from ingest.index import Hit, Passage, node_id
from ingest.lexical import code_tokens, name_terms, query_terms, question_parts

# Words of a manual's title that say what kind of document it is, not which device it covers.
GENERIC_TITLE_WORDS = frozenset(
    """manual user guide quick start installation install instruction data datasheet sheet rev
    revision version edition series document doc handbook reference operating operation owner
    service maintenance troubleshooting trouble shooting specification spec technical product
    english en""".split()
)

Rerank = Callable[[list[Passage], list[float]], list[Passage]]


@dataclass
class Retrieval:
    passages: list[Passage]
    covered: bool
    ms: float
    query_vector: list[float] | None = None
    named_documents: set[int] = field(default_factory=set)
    best_score: float = 0.0  # the best cosine among the first three candidates
    unknown_codes: list[str] = field(default_factory=list)  # codes the question names that no manual has
    unmentioned: list[str] = field(default_factory=list)  # words asked of the named manuals that none of them has
    unmentioned_in: list[str] = field(default_factory=list)  # those manuals' titles


def passages_retrieve(
    question: str,
    *,
    top_k: int | None = None,
    document_ids: set[int] | None = None,
    min_score: float | None = None,
    prefer: set[int] | None = None,
    rerank: list[Rerank] | None = None,
) -> Retrieval:
    """The passages that answer ``question`` (best first), or none when the manuals do not cover it.

    ``document_ids``: search only these manuals (an asset's own). ``min_score``: the lowest
    cosine a passage may have to count as covering the question (default
    NANOSENTRI_RETRIEVAL_MIN_SCORE). ``prefer``: manuals to put first when the question names none
    (a follow-up's previous answer). ``rerank``: steps applied, in order, to the covered passages.
    """
    started = time.perf_counter()
    top_k = top_k or settings.NANOSENTRI_RETRIEVAL_TOP_K
    min_score = settings.NANOSENTRI_RETRIEVAL_MIN_SCORE if min_score is None else min_score
    index = manual_index_fresh()
    terms = query_terms(question)
    # The question and its further parts (``_with_parts``) in one pass of the embedder.
    query_vector = index.embedder.embed_queries([question, *part_search_texts(question)])[0]
    named = _named_documents(terms) if not document_ids else set()
    unmentioned: list[str] = []
    if named:  # "on the ESP32-EVB …": the page is looked for in that manual, by what is asked of it
        asked = _without_names(terms, named)
        candidates = _candidates(index, query_vector, asked, named)
        unmentioned = _unmentioned(index, question, asked, named)
    else:
        candidates = _candidates(index, query_vector, terms, document_ids)
    candidates = _only_indexed(candidates)
    ranked = _fuse(candidates, named or (prefer or set()))
    result = Retrieval([], False, 0.0, query_vector, named or (prefer or set()),
                       unknown_codes=_unknown_codes(index, question), unmentioned=unmentioned,
                       unmentioned_in=_titles(named) if unmentioned else [])
    if ranked:
        result.best_score = max(p.score for p in ranked[:3])
        result.covered = result.best_score >= min_score and not result.unknown_codes and not unmentioned
    if result.covered:
        passages = _relevant(ranked, min_score)
        passages = _with_parts(index, question, passages, min_score, document_ids)
        for step in rerank or []:
            passages = step(passages, query_vector)
        result.passages = _with_continuations(index, passages, top_k)[:top_k]
    result.ms = (time.perf_counter() - started) * 1000
    return result


def passages_search(
    question: str, *, top_k: int | None = None, min_score: float | None = None, document_ids: set[int] | None = None
) -> tuple[list[Passage], float]:
    """The passages for ``question`` and the milliseconds it took (no re-ranking steps)."""
    found = passages_retrieve(question, top_k=top_k, min_score=min_score, document_ids=document_ids)
    return found.passages, found.ms


# ------------------------------------------------------------------------------ steps


def _candidates(index, query_vector, terms: list[str], document_ids: set[int] | None) -> list[Passage]:
    """Vector and BM25 candidates, each with its cosine, BM25 score and rank in both lists."""
    n = settings.NANOSENTRI_RETRIEVAL_CANDIDATES
    where = {"document_id": [str(d) for d in document_ids]} if document_ids else None
    vector_hits = _with_snippets(index, index.vector_search(query_vector, top_k=n, where=where), query_vector)
    lexical_hits = index.lexical_search(terms, top_k=n, where=where) if terms else []
    found: dict[str, Hit] = {h.node_id: h for h in vector_hits}
    missing = [h.node_id for h in lexical_hits if h.node_id not in found]
    found.update(index.fetch(missing, query_vector))
    for hit in lexical_hits:
        if hit.node_id in found:
            found[hit.node_id].lexical = hit.lexical
    vector_rank = {h.node_id: r for r, h in enumerate(vector_hits, 1)}
    lexical_rank = {h.node_id: r for r, h in enumerate(lexical_hits, 1)}
    k = settings.NANOSENTRI_RETRIEVAL_RRF_K
    weight = settings.NANOSENTRI_RETRIEVAL_LEXICAL_WEIGHT
    passages = []
    for node_id, hit in found.items():
        passage = _passage(hit)
        if passage is None:
            continue
        fused = 1.0 / (k + vector_rank[node_id]) if node_id in vector_rank else 0.0
        if node_id in lexical_rank:
            fused += weight / (k + lexical_rank[node_id])
        passage.rank_score = fused
        passages.append(passage)
    return passages


def _with_snippets(index, vector_hits: list[Hit], query_vector) -> list[Hit]:
    """The vector hits ranked by their cosine plus NANOSENTRI_RETRIEVAL_SNIPPET_WEIGHT × their best
    snippet's (``ingest.snippets``): a chunk one line of which answers the question comes before
    chunks that are only about the same thing. A hit without snippets counts its own cosine."""
    weight = settings.NANOSENTRI_RETRIEVAL_SNIPPET_WEIGHT
    if not weight or not vector_hits:
        return vector_hits
    best = index.snippet_cosines([h.node_id for h in vector_hits], query_vector)
    return sorted(vector_hits, key=lambda h: h.score + weight * best.get(h.node_id, h.score), reverse=True)


def _passage(hit: Hit) -> Passage | None:
    meta = hit.metadata
    try:
        return Passage(
            document_id=int(meta["document_id"]),
            file_name=str(meta.get("file_name", "")),
            page=int(meta.get("page", 0)),
            chunk_index=int(meta.get("chunk_index", 0)),
            text=hit.text,
            score=hit.score,
            title=str(meta.get("title", "")),
            heading=str(meta.get("heading", "")),
            lexical=hit.lexical,
            source=str(meta.get("source", "text")),
        )
    except (KeyError, ValueError):
        return None


def _unknown_codes(index, question: str) -> list[str]:
    """The codes and part numbers of the question that no passage of the library contains.

    Asked about fault "F21" of an inverter no manual covers, the nearest page of another device is
    close in meaning ("fault", "inverter") but cannot answer: a code the library never mentions means
    the question is not covered.
    """
    codes = code_tokens(question)
    if not codes:
        return []
    vocabulary = index.lexical_stats()
    return [written for term, written in codes.items() if not vocabulary.known(term)]


def _unmentioned(index, question: str, asked: list[str], named: set[int]) -> list[str]:
    """The question's words for what it asks of the manuals it names (``asked``: its terms without
    the names), when none of those manuals has any of them; [] otherwise.

    "How do I update the firmware on the SmartEVSE?": the SmartEVSE manual never says "update" or
    "firmware", so its nearest page (the safety notes) cannot answer, however close in meaning. A
    question in other words than the manual's still shares one of them with it: over the project's
    three question sets (116 covered questions) this holds for every covered question that names a
    manual. A word counts as said when the manual has a word that begins with it or that it begins
    with ("wake", "wakeup"). A technician's synonym the manual does not use ("reboot" for "reset")
    is refused too, and the answer names the word, so the next question can use the manual's.
    """
    titles = Document.objects.filter(pk__in=named).values_list("title", "original_name")
    names = set(query_terms(" ".join(f"{title} {name}" for title, name in titles)))
    # Single words (a pair has its words' hits), and not the manuals' own title words ("esp32" of
    # "ESP32-EVB", which another manual's title shares): those say which manual, not what is asked.
    words = [t for t in asked if "_" not in t and t not in names]
    if not words:
        return []
    where = {"document_id": [str(d) for d in named]}
    if index.lexical_search(words, top_k=1, where=where):
        return []
    vocabulary = index.lexical_stats()  # "wake" is mentioned where the manual says "wakeup"
    if index.lexical_search([t for w in words for t in vocabulary.sharing_start(w)], top_k=1, where=where):
        return []
    wanted = set(words)
    shown = [w for w in re.findall(r"[^\W_][\w'-]*", question) if wanted & set(query_terms(w))]
    return list(dict.fromkeys(shown))


def _titles(document_ids: set[int]) -> list[str]:
    found = Document.objects.filter(pk__in=document_ids).values_list("title", "original_name")
    return sorted(title or name for title, name in found)


def _without_names(terms: list[str], named: set[int]) -> list[str]:
    """The question's BM25 terms without the words that name the manuals it names ("esp32evb", "evb"
    and the pairs holding them): every page of the manual has them, they say which manual, not
    which page. A question made only of the name keeps its terms."""
    names = _document_names()
    drop = set().union(*(names.get(d, set()) for d in named))
    return [t for t in terms if not drop.intersection(t.split("_"))] or terms


def _only_indexed(passages: list[Passage]) -> list[Passage]:
    ids = {p.document_id for p in passages}
    indexed = set(
        Document.objects.filter(pk__in=ids, status=Document.Status.INDEXED).values_list("pk", flat=True)
    )
    return [p for p in passages if p.document_id in indexed]


# A question of several parts (``ingest.lexical.question_parts``): each part's own page.
PART_PLACE = 1  # a part's best page joins the question's first passages at the latest at this place (0-based)
PART_MANUALS_FROM = 2  # a part is searched within the manuals of the whole question's first this many passages


def _with_parts(index, question: str, passages: list[Passage], min_score: float,
                document_ids: set[int] | None) -> list[Passage]:
    """Each further part of a question of several parts gets its best page among the first
    passages: searched on its own words within the manuals the whole question's first passages
    come from (a question of two parts is about one device), and kept only when it clears the
    cosine bar. The whole question's best passage stays first."""
    parts = question_parts(question)
    if len(parts) < 2 or not passages:
        return passages
    manuals = {p.document_id for p in passages[:PART_MANUALS_FROM]}
    if document_ids:
        manuals &= set(document_ids)
    chosen = list(passages)
    for part, text in zip(parts[1:], part_search_texts(question)):
        vector = index.embedder.embed_queries([text])[0]
        found = _fuse(_only_indexed(_candidates(index, vector, query_terms(part), manuals)), set())
        best = next((p for p in found if p.score >= min_score), None)
        if best is None:
            continue
        key = (best.document_id, best.chunk_index)
        at = next((i for i, p in enumerate(chosen) if (p.document_id, p.chunk_index) == key), None)
        if at is not None and at <= PART_PLACE:
            continue
        if at is not None:
            best = chosen.pop(at)
        chosen.insert(min(PART_PLACE, len(chosen)), best)
    return chosen


def part_search_texts(question: str) -> list[str]:
    """What each further part of ``question`` is searched with: the part first, with the first part
    after it for what "they" and "it" refer to. [] for a question of one part."""
    parts = question_parts(question)
    return [f"{part}? {parts[0]}" for part in parts[1:]]


def _fuse(passages: list[Passage], named: set[int]) -> list[Passage]:
    """Best fused score first; the manuals the question names before all others."""
    return sorted(passages, key=lambda p: (p.document_id not in named, -p.rank_score, -p.score))


def _relevant(ranked: list[Passage], min_score: float) -> list[Passage]:
    """In fused order, the passages close enough on their own (the minimum score) and not far below
    the best one: a BM25 match that means something else is never cited on its words alone."""
    best = max(p.score for p in ranked[:3])
    floor = max(min_score, best - settings.NANOSENTRI_RETRIEVAL_RELATIVE_CUTOFF)
    return [p for p in ranked if p.score >= floor]


# ------------------------------------------------------------------------------ page breaks

CONTINUATION_CHARS = 300  # a section's last lines spilled onto the next page are this short at most
CONTINUATION_SENTENCE = re.compile(r"[.!?]\s*$")


def _with_continuations(index, passages: list[Passage], top_k: int) -> list[Passage]:
    """The first ``top_k`` passages, each followed by the end of its section when that spills a few
    lines onto the next page (``_continuation``) and that page is not among them already."""
    first = passages[:top_k]
    following = index.fetch([node_id(p.document_id, p.chunk_index + 1) for p in first])  # one read
    shown = {(p.document_id, p.page) for p in first}
    chosen: list[Passage] = []
    for passage in first:
        chosen.append(passage)
        tail = _continuation(passage, following.get(node_id(passage.document_id, passage.chunk_index + 1)))
        if tail is not None and (tail.document_id, tail.page) not in shown:
            chosen.append(tail)
            shown.add((tail.document_id, tail.page))
    return chosen + passages[top_k:]


def _continuation(passage: Passage, following: Hit | None) -> Passage | None:
    """The lines at the top of the next page that end ``passage``'s section, as a passage of that
    page, or None. ``following``: the chunk after ``passage`` in its document.

    Only when ``passage`` is the last chunk of its page, the next page's first chunk has a heading
    of its own after those lines (the section ends there), and they are a short sentence or two
    (CONTINUATION_CHARS), not a running header alone. A section that fills the next page is a
    passage of its own, found on its own merit.
    """
    if following is None or _int(following.metadata.get("page")) != passage.page + 1:
        return None
    headings = page_headings(following.text)
    if not headings or headings[0][0] == 0:
        return None
    tail = following.text[: headings[0][0]].strip()
    if len(tail) > CONTINUATION_CHARS or not any(
        CONTINUATION_SENTENCE.search(line) for line in tail.split("\n") if len(line.split()) >= 4
    ):
        return None
    return replace(passage, page=passage.page + 1, chunk_index=passage.chunk_index + 1, text=tail,
                   lexical=0.0, boost=0.0, source=str(following.metadata.get("source", "text")))


def _int(value) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


# ------------------------------------------------------------------------------ named manuals

_catalogue: dict[tuple, dict[int, set[str]]] = {}


def _named_documents(terms: list[str]) -> set[int]:
    """The indexed manuals the question names most specifically.

    "ESP32-EVB" names the EVB manual by "evb" (one manual has it), not the ESP32-POE manual by
    "esp32" (two have it): only the manuals matched by the rarest title word count.
    """
    asked = set(terms)
    names = _document_names()
    shared: dict[str, int] = {}
    for words in names.values():
        for word in words:
            shared[word] = shared.get(word, 0) + 1
    matched = {doc: min(shared[w] for w in words & asked) for doc, words in names.items() if words & asked}
    if not matched:
        return set()
    rarest = min(matched.values())
    return {doc for doc, count in matched.items() if count == rarest}


def _document_names() -> dict[int, set[str]]:
    """{document id: the words of its title that tell it from the others}, cached per library state."""
    from django.db.models import Count, Max

    indexed = Document.objects.filter(status=Document.Status.INDEXED)
    state = tuple(indexed.aggregate(n=Count("id"), last=Max("indexed_at")).values())
    names = _catalogue.get(state)
    if names is None:
        titles = {pk: title or name for pk, title, name in indexed.values_list("pk", "title", "original_name")}
        names = distinctive_title_words(titles)
        _catalogue.clear()
        _catalogue[state] = names
    return names


def distinctive_title_words(titles: dict[int, str]) -> dict[int, set[str]]:
    """Words of each title that name a device or model and are shared by at most half the library.

    "Olimex ESP32-POE User Manual rev2.6" → {olimex, esp32poe, esp32, poe}; "manual", "user" and
    version numbers say nothing about which device a question is about.
    """
    words = {}
    for pk, title in titles.items():
        title = re.sub(r"\.[a-z0-9]{2,4}$", "", title.split(" — ")[0], flags=re.I)
        words[pk] = {t for t in name_terms(title) if t not in GENERIC_TITLE_WORDS and not _is_version(t) and len(t) >= 3}
    if len(words) < 2:
        return words
    limit = max(1, math.floor(len(words) / 2))
    counts: dict[str, int] = {}
    for found in words.values():
        for term in found:
            counts[term] = counts.get(term, 0) + 1
    return {pk: {t for t in found if counts[t] <= limit} for pk, found in words.items()}


def _is_version(term: str) -> bool:
    """"v2.3", "rev1.0", "sw3.00", "3": a version, not a model number such as "5003" or "1210"."""
    return bool(re.fullmatch(r"(?:v|rev|sw|r)?\d+(?:\.\d+)*[a-z]?", term)) and not re.fullmatch(r"\d{4,}", term)
