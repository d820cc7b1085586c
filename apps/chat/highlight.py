"""Pick the lines of a passage that answer the question, so they show before the model speaks.

Lexical and instant: the passage is cut into sentences (PDF line breaks are layout, not
meaning), each scores by the question's content words it contains (lightly stemmed, with
prefix matches such as "temp"/"temperature"), and the best run of consecutive sentences wins.
The tiny bundled model can misread a passage; these lines cannot.
"""
from __future__ import annotations

import re

_WORD = re.compile(r"[a-z0-9]+")
_SENTENCE_END = re.compile(r"(?<=[.!?:])\s+(?=[A-Z0-9\"'(])")
_STOP = frozenset(
    "a an and are as at be been but by can do does did for from has have how i if in is it its "
    "me my no not of on or our should so than that the their then there these this to was were "
    "what when where which who why will with you your".split()
)


def _stem(word: str) -> str:
    for suffix in ("ing", "ed", "es", "s"):
        if len(word) > len(suffix) + 2 and word.endswith(suffix):
            return word[: -len(suffix)]
    return word


def _terms(text: str) -> set[str]:
    return {_stem(w) for w in _WORD.findall(text.lower()) if w not in _STOP and len(w) > 1}


def _matches(wanted: set[str], terms: set[str]) -> set[str]:
    found = wanted & terms
    for w in wanted - found:
        if len(w) >= 4 and any(t.startswith(w) or (len(t) >= 4 and w.startswith(t)) for t in terms):
            found.add(w)
    return found


def sentences(passage: str) -> list[str]:
    text = re.sub(r"\s*\n\s*", " ", passage).strip()
    return [s.strip() for s in _SENTENCE_END.split(text) if s.strip()]


def key_lines(question: str, passage: str, *, limit: int = 3) -> list[str]:
    """The best run of up to ``limit`` consecutive sentences of ``passage``, or [] if none match."""
    wanted = _terms(question)
    parts = sentences(passage)
    if not wanted or not parts:
        return []
    hits = [_matches(wanted, _terms(s)) for s in parts]
    best, best_key = None, (0, 0)
    for start in range(len(parts)):
        window = hits[start : start + limit]
        key = (len(set().union(*window)), sum(len(h) for h in window))
        if key > best_key:
            best, best_key = start, key
    if best is None:
        return []
    window = list(range(best, min(best + limit, len(parts))))
    while window and not hits[window[-1]]:
        window.pop()
    return [parts[i] for i in window]
