"""Snippets: runs of a few consecutive sentences of a chunk, each embedded on its own.

A chunk's vector stands for all of its 150–200 word pieces. A question in a technician's words
("how cold can it get before the sensor is out of range?") often matches one line of it
("Operating temperature range -10~+60 °C") and little else, so the chunk's vector is far from the
question while that line's is close. Each chunk therefore also gets the vectors of its snippets
(two sentences or lines each, overlapping by one, embedded with the chunk's title and heading like
the chunk itself), stored with the chunk; ranking adds the best snippet's cosine to the chunk's.

The snippets are only looked at for the chunks the vector search found (``SearchIndex.snippet_cosines``):
they re-rank, they are not an index of their own. Stored as float16 in the chunk's metadata, so
re-indexing and deleting a document keep them in step with their chunk, in every store.
"""
from __future__ import annotations

import base64
import re

import numpy as np

SNIPPET_SENTENCES = 2  # sentences per snippet (NANOSENTRI_INGEST_SNIPPET_SENTENCES; 0: no snippets)
SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
MIN_WORDS = 3  # "Figure 3", "ESP32-EVB" and page numbers are no sentence to match a question on


def sentences(text: str) -> list[str]:
    """The sentences and lines of ``text`` that have at least MIN_WORDS words, in order.

    Manuals write values one per line ("Operating voltage 4.5~5.5V"), in tables and lists without
    a full stop: a line is a sentence as much as text ending in ". " is.
    """
    found = []
    for line in text.splitlines():
        for sentence in SENTENCE_END.split(line):
            sentence = sentence.strip()
            if len(sentence.split()) >= MIN_WORDS:
                found.append(sentence)
    return found


def snippets(text: str, size: int) -> list[str]:
    """Every run of ``size`` consecutive sentences of ``text`` (all of them when it has fewer)."""
    if size <= 0:
        return []
    found = sentences(text)
    if not found:
        return []
    return [" ".join(found[start:start + size]) for start in range(max(1, len(found) - size + 1))]


def pack(vectors: np.ndarray) -> str:
    """Unit vectors as text for a metadata field (float16, base64: 1 KB per 384-d vector)."""
    rows = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    rows = rows / np.where(norms == 0, 1.0, norms)
    return f"{rows.shape[1]}:" + base64.b64encode(rows.astype("<f2").tobytes()).decode("ascii")


def unpack(packed: str) -> np.ndarray | None:
    """The vectors ``pack`` wrote (float16 rows, as stored: a reader keeps every chunk's in memory,
    ~7 KB a chunk), or None for an empty or unreadable field."""
    try:
        dimension, data = packed.split(":", 1)
        rows = np.frombuffer(base64.b64decode(data), dtype="<f2")
        return rows.reshape(-1, int(dimension)) if rows.size else None
    except (ValueError, AttributeError):
        return None


def best_cosine(vectors: np.ndarray | None, unit_query: np.ndarray) -> float | None:
    """The highest cosine of ``unit_query`` with any of ``vectors`` (None without vectors)."""
    if vectors is None or not len(vectors):
        return None
    return float((vectors.astype(np.float32) @ unit_query).max())
