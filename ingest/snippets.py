"""Snippets: runs of a few consecutive sentences of a chunk, each embedded on its own.

A chunk's vector stands for all of its 150–200 word pieces. A question in a technician's words
("how cold can it get before the sensor is out of range?") often matches one line of it
("Operating temperature range -10~+60 °C") and little else, so the chunk's vector is far from the
question while that line's is close. Each chunk therefore also gets the vectors of its snippets
(two sentences or lines each, overlapping by one, embedded with the chunk's title and heading like
the chunk itself), stored with the chunk; ranking adds the best snippet's cosine to the chunk's.
With NANOSENTRI_INGEST_SNIPPET_VECTORS=chunk a snippet's vector is read off its chunk's own pass
instead (``snippet_spans``, ``Embedder.embed_spans``): no pass of its own, a little worse ranking.

The snippets are only looked at for the chunks the vector search found (``SearchIndex.snippet_cosines``):
they re-rank, they are not an index of their own. Stored in the chunk's metadata (int8, a scale per
snippet), so re-indexing and deleting a document keep them in step with their chunk, in every store.
"""
from __future__ import annotations

import base64
import re
from typing import NamedTuple

import numpy as np

SNIPPET_SENTENCES = 2  # sentences per snippet (NANOSENTRI_INGEST_SNIPPET_SENTENCES; 0: no snippets)
SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
MIN_WORDS = 3  # "Figure 3", "ESP32-EVB" and page numbers are no sentence to match a question on


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """Where the sentences and lines of ``text`` that have at least MIN_WORDS words are: (start,
    end) character offsets, in order.

    Manuals write values one per line ("Operating voltage 4.5~5.5V"), in tables and lists without
    a full stop: a line is a sentence as much as text ending in ". " is.
    """
    found = []
    line_start = 0
    for line in text.splitlines(keepends=True):
        start = 0
        for separator in [*SENTENCE_END.finditer(line), None]:
            end = separator.start() if separator else len(line)
            piece = line[start:end]
            stripped = piece.strip()
            if len(stripped.split()) >= MIN_WORDS:
                first = line_start + start + (len(piece) - len(piece.lstrip()))
                found.append((first, first + len(stripped)))
            if separator:
                start = separator.end()
        line_start += len(line)
    return found


def sentences(text: str) -> list[str]:
    """The sentences and lines of ``text`` that have at least MIN_WORDS words, in order."""
    return [text[start:end] for start, end in sentence_spans(text)]


def snippet_spans(text: str, size: int) -> list[list[tuple[int, int]]]:
    """Where each run of ``size`` consecutive sentences of ``text`` is (all of them when it has
    fewer): the (start, end) offsets of its sentences, as ``snippets`` joins them."""
    if size <= 0:
        return []
    found = sentence_spans(text)
    return [found[start:start + size] for start in range(max(1, len(found) - size + 1))] if found else []


def snippets(text: str, size: int) -> list[str]:
    """Every run of ``size`` consecutive sentences of ``text`` (all of them when it has fewer)."""
    return [snippet_text(text, ranges) for ranges in snippet_spans(text, size)]


def snippet_text(text: str, ranges: list[tuple[int, int]]) -> str:
    """The snippet of ``text`` at ``ranges`` (``snippet_spans``): its sentences joined by a space."""
    return " ".join(text[start:end] for start, end in ranges)


class SnippetVectors(NamedTuple):
    """A chunk's snippet vectors as stored: int8 codes, one scale per row (cosines within ~0.005)."""

    codes: np.ndarray  # int8, one row per snippet
    scales: np.ndarray  # float32, a row's vector = codes × scale

    def __len__(self) -> int:
        return len(self.codes)


def pack(vectors) -> str:
    """Unit vectors as text for a metadata field: int8 with a float16 scale per row, base64
    (~520 characters per 384-d vector; a metadata string is stored several times by Chroma)."""
    rows = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    rows = rows / np.where(norms == 0, 1.0, norms)
    scales = np.abs(rows).max(axis=1) / 127.0
    scales = np.where(scales == 0, 1.0, scales).astype("<f2")
    codes = np.clip(np.rint(rows / scales.astype(np.float32)[:, None]), -127, 127).astype(np.int8)
    return f"{rows.shape[1]}:" + base64.b64encode(scales.tobytes() + codes.tobytes()).decode("ascii")


def unpack(packed: str) -> SnippetVectors | None:
    """The vectors ``pack`` wrote, kept as stored (a reader holds every chunk's in memory, ~3.4 KB
    a chunk), or None for an empty or unreadable field."""
    try:
        dimension, data = packed.split(":", 1)
        raw = base64.b64decode(data, validate=True)
        count, extra = divmod(len(raw), 2 + int(dimension))
        if not count or extra:
            return None
        scales = np.frombuffer(raw[:2 * count], dtype="<f2").astype(np.float32)
        codes = np.frombuffer(raw[2 * count:], dtype=np.int8).reshape(count, int(dimension))
        return SnippetVectors(codes, scales)
    except (ValueError, AttributeError):
        return None


def best_cosine(vectors: SnippetVectors | None, unit_query: np.ndarray) -> float | None:
    """The highest cosine of ``unit_query`` with any of ``vectors`` (None without vectors)."""
    if vectors is None or not len(vectors):
        return None
    return float(((vectors.codes.astype(np.float32) @ unit_query) * vectors.scales).max())
