"""Split pages into chunks sized for the embedding model, keeping the page on every chunk.

all-MiniLM-L6-v2 reads at most 256 word pieces; chunks are measured with the embedder's own
tokenizer (not tiktoken) so nothing is silently truncated.

Every chunk also carries the section heading it falls under (the last heading line seen at or
before it, across pages), so that "1.3. PoE standard" still tells the embedder what a chunk of
numbers is about. The text shown to the technician stays the manual's own.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

from ingest.parse import Page

# "1.3. PoE standard", "2 Installation", "A.1 Pinout"
_NUMBERED_HEADING = re.compile(r"^(?:\d{1,2}(?:\.\d{1,2}){0,3}\.?|[A-Z]\.\d{1,2}\.?)\s+[A-Za-z][^.!?]{1,70}$")
_WORD = re.compile(r"[A-Za-z][A-Za-z0-9'/-]*")
_NOT_HEADING = re.compile(r"[:≤≥~%…（→/+=]|\.{3}")
_MINOR = frozenset("a an and as at by for from in of on or the to with vs".split())
MAX_HEADING_CHARS = 80


@dataclass
class Chunk:
    page: int
    index: int  # position in the document, 0-based
    text: str
    heading: str = ""  # the section heading the chunk falls under, if the page has one


def is_heading(line: str) -> bool:
    """A short line that names a section: numbered, or in Title Case / capitals without a full stop."""
    line = line.strip()
    if not (3 <= len(line) <= MAX_HEADING_CHARS) or line.endswith((".", ",", ";", ":", "!", "?")):
        return False
    if _NOT_HEADING.search(line) or line.lower().startswith(("figure", "table", "fig.")):
        return False  # spec rows, menus, wiring lists, contents lines, captions
    numbered = _NUMBERED_HEADING.match(line)
    if numbered and re.match(r"^\d{1,2}\.\d", line):  # "1.3. PoE standard": a section number
        return not re.search(r"\d\s*(?:v|a|ma|w|hz|mm)\b", line.lower())  # "12 V input" is a spec line
    # "3. ESP32-EVB power supply and consumption" is a chapter; "1. Thermistor port of nozzle is not
    # plugged into the" a step.
    words = _WORD.findall(re.sub(r"^\d{1,2}\.?\s+", "", line) if numbered else line)
    if not 1 <= len(words) <= 7 or sum(ch.isdigit() for ch in line) > 6:
        return False
    if numbered:
        return words[0][0].isupper()
    if len(words) < 2:
        return False  # a lone word is a callout on a picture ("UEXT"), rarely a section
    significant = [w for w in words if w.lower() not in _MINOR]
    return bool(significant) and all(w[0].isupper() for w in significant)


def page_headings(text: str) -> list[tuple[int, str]]:
    """(character offset, heading) of every heading line on a page, in order."""
    found, offset = [], 0
    for line in text.split("\n"):
        if is_heading(line):
            found.append((offset, " ".join(line.split())))
        offset += len(line) + 1
    return found


def chunk_pages(
    pages: list[Page],
    *,
    tokenize: Callable[[str], list],
    chunk_tokens: int = 200,
    overlap: int = 40,
) -> list[Chunk]:
    from llama_index.core.node_parser import SentenceSplitter

    splitter = SentenceSplitter(
        chunk_size=chunk_tokens,
        chunk_overlap=min(overlap, chunk_tokens // 2),
        tokenizer=tokenize,
        paragraph_separator="\n\n",
    )
    chunks: list[Chunk] = []
    heading = ""
    for page in pages:
        if not page.text.strip():
            continue
        headings = page_headings(page.text)
        cursor = 0
        for piece in splitter.split_text(page.text):
            piece = piece.strip()
            if not piece:
                continue
            start = page.text.find(piece[:60], max(0, cursor - 400))
            start = cursor if start < 0 else start
            cursor = start + 1
            # The heading of a chunk: the last one starting before its first words end.
            for offset, text in headings:
                if offset <= start + 40:
                    heading = text
            if not is_contents(piece):
                chunks.append(Chunk(page=page.number, index=len(chunks), text=piece, heading=heading))
    return chunks


_LEADER = re.compile(r"(?:\.\s?){5,}|…{2,}|\.{2,}\s*\d+\s*$")


def is_contents(text: str) -> bool:
    """A table of contents: lines of dot leaders. It names every topic and answers none."""
    lines = [line for line in text.split("\n") if line.strip()]
    leaders = sum(bool(_LEADER.search(line)) for line in lines)
    return leaders >= max(1, len(lines) / 2)
