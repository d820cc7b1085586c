"""Pick the lines of a passage that answer the question, so they show before the model speaks.

Lexical and instant: the passage is cut into sentences (PDF line breaks are layout, not
meaning), each scores by the question's content words it contains (lightly stemmed, with
prefix matches such as "temp"/"temperature"), and the best run of consecutive sentences wins.
The tiny bundled model can misread a passage; these lines cannot.
"""
from __future__ import annotations

import re

from apps.chat.extract import matches, terms

_SENTENCE_END = re.compile(r"(?<=[.!?:])\s+(?=[A-Z0-9\"'(])")


def sentences(passage: str) -> list[str]:
    text = re.sub(r"\s*\n\s*", " ", passage).strip()
    return [s.strip() for s in _SENTENCE_END.split(text) if s.strip()]


def key_lines(question: str, passage: str, *, limit: int = 3) -> list[str]:
    """The best run of up to ``limit`` consecutive sentences of ``passage``, or [] if none match."""
    wanted = terms(question)
    parts = sentences(passage)
    if not wanted or not parts:
        return []
    hits = [matches(wanted, terms(s)) for s in parts]
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
