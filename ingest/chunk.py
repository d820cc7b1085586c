"""Split pages into chunks sized for the embedding model, keeping the page on every chunk.

all-MiniLM-L6-v2 reads at most 256 word pieces; chunks are measured with the embedder's own
tokenizer (not tiktoken) so nothing is silently truncated.

Every chunk also carries the section heading it falls under (the last heading line seen at or
before it, across pages), so that "1.3. PoE standard" still tells the embedder what a chunk of
numbers is about. The text shown to the technician stays the manual's own.

Tables (``ingest.tables``: spec, pin and error-code tables, troubleshooting lists) are split only
between rows, so "ERROR HIGH TEMP" stays with its meaning; a table that fits is one chunk, and
every further part of a longer one starts with the table's header again.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

from ingest.parse import Page
from ingest.tables import Table, find_tables, is_column_header

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
    source: str = "text"  # how the page's text was read (ingest.parse.Page.source)


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


def chunk_pages(pages: list[Page], **options) -> list[Chunk]:
    """The chunks of ``pages`` alone (``chunk_window``'s options), for pages that come at once."""
    return chunk_window(pages, **options)[0]


def chunk_window(
    pages: list[Page],
    *,
    tokenize: Callable[[str], list],
    chunk_tokens: int = 200,
    overlap: int = 40,
    first_index: int = 0,
    heading: str = "",
) -> tuple[list[Chunk], str]:
    """Chunks of ``pages`` numbered from ``first_index``, and the heading in force after the last
    page, to pass as ``heading`` (the one in force before the first page) with the next window.

    A page that fits is one chunk. A longer page is split by sentences with ``overlap`` tokens
    repeated between chunks, except its tables (``ingest.tables``): a table is split only between
    rows, and every part of it after the first starts with the table's header again.

    A chunk never spans pages, so where the windows are cut changes no chunk, provided the
    heading carries over exactly: the last chunk's heading would not do, since a heading on a
    page whose every piece is dropped (a table of contents) still names the chunks after it.
    """
    from llama_index.core.node_parser import SentenceSplitter

    overlap = min(overlap, chunk_tokens // 2)
    splitter = SentenceSplitter(
        chunk_size=chunk_tokens, chunk_overlap=overlap, tokenizer=tokenize, paragraph_separator="\n\n"
    )
    chunks: list[Chunk] = []
    for page in pages:
        if not page.text.strip():
            continue
        tables = find_tables(page.text, is_heading)
        # A table's rows are not section headings ("ESP32-POE-ISO ESP32-WROOM-32E-N4 4 - - - Y"),
        # except in a troubleshooting list, where each symptom is one.
        # Nor are a table's column names ("Feature Value Comment").
        rows = [span for t in tables if t.kind != "symptoms" for span in t.row_spans]
        names = [t.header_span for t in tables if t.kind == "columns"]
        headings = [(offset, text) for offset, text in page_headings(page.text)
                    if not any(s <= offset < e for s, e in rows)
                    and not (is_column_header(text) and any(s <= offset < e for s, e in names))]
        if len(tokenize(page.text)) <= chunk_tokens:
            tables = []  # a page that fits is one chunk, tables and all
        for piece in _page_pieces(page.text, tables, splitter, tokenize, chunk_tokens, overlap):
            # The heading of a chunk: the last one starting before its first words end.
            for offset, text in headings:
                if offset <= piece.start + 40:
                    heading = text
            if not is_contents(piece.text, numbered_only=piece.table):
                chunks.append(Chunk(page=page.number, index=first_index + len(chunks), text=piece.text,
                                    heading=heading, source=getattr(page, "source", "text")))
    return chunks, heading


@dataclass
class _Piece:
    text: str
    start: int  # where its own words start in the page text (after a repeated header)
    end: int  # where they end
    table: bool = False
    repeated_header: bool = False


def _prose_pieces(text: str, base: int, splitter) -> list[_Piece]:
    pieces, cursor = [], 0
    for piece in splitter.split_text(text):
        piece = piece.strip()
        if not piece:
            continue
        start = text.find(piece[:60], max(0, cursor - 400))
        start = cursor if start < 0 else start
        cursor = start + 1
        end = start + len(piece) if text.startswith(piece, start) else start + 1
        pieces.append(_Piece(piece, base + start, base + end))
    return pieces


def _page_pieces(
    text: str, tables: list[Table], splitter, tokenize, chunk_tokens: int, overlap: int
) -> list[_Piece]:
    """The pieces of one page, in order: prose split by sentences, tables split between rows."""
    if not tables:
        return _prose_pieces(text, 0, splitter)

    def count(t: str) -> int:
        return len(tokenize(t))

    pieces: list[_Piece] = []
    position = 0
    for table in tables:
        lead = table.start
        if text[position:table.start].strip():
            before = _prose_pieces(text[position:table.start], position, splitter)
            # A few words right above the table (a running header, a caption) go with its first part.
            last = before[-1]
            if (count(last.text) <= chunk_tokens // 4 and not text[last.end:table.start].strip()
                    and count(text[last.start:table.row_spans[0][1]]) <= chunk_tokens):
                lead = last.start
                before.pop()
            pieces += before
        pieces += _table_pieces(table, text, lead, count, chunk_tokens, overlap, tokenize)
        position = table.end
    if text[position:].strip():
        pieces += _prose_pieces(text[position:], position, splitter)
    return _merge_around_tables(pieces, text, count, chunk_tokens)


def _table_pieces(
    table: Table, text: str, lead: int, count, chunk_tokens: int, overlap: int, tokenize
) -> list[_Piece]:
    """The table's rows in parts of at most ``chunk_tokens``: a part never ends inside a row, and
    every part after the first starts with the header (the first has it where the page has it,
    after the ``lead`` text). Parts are filled in order, then evened out so that the last is not
    a stub. A row longer than a chunk is split by sentences, each piece under the header."""
    header = table.header
    rows = list(table.row_spans)
    if header and count(header) > chunk_tokens // 3:
        header = ""  # too long to repeat: it stays once, at the start of the first part
    prefix = header + "\n" if header else ""

    def span(group: list[int]) -> tuple[int, int]:
        return (lead if group[0] == 0 else rows[group[0]][0]), rows[group[-1]][1]

    sizes: dict[tuple[int, int], int] = {}

    def size(group: list[int]) -> int:
        key = (group[0], group[-1])
        if key not in sizes:
            start, end = span(group)
            sizes[key] = count(text[start:end] if start == lead else prefix + text[start:end])
        return sizes[key]

    # Fill parts in order; a row that does not fit in a chunk even alone is a group of its own.
    groups: list[list[int]] = []
    long: set[int] = set()
    for index in range(len(rows)):
        if groups and groups[-1][-1] not in long and size(groups[-1] + [index]) <= chunk_tokens:
            groups[-1].append(index)
        else:
            groups.append([index])
            if size([index]) > chunk_tokens:
                long.add(index)
    # Even out neighbours: move a row on to the next part while that makes the larger one smaller.
    for _ in range(len(rows)):
        moved = False
        for i in range(len(groups) - 1, 0, -1):
            before, after = groups[i - 1], groups[i]
            if len(before) < 2 or long & {before[-1], after[0]}:
                continue
            if max(size(before[:-1]), size([before[-1]] + after)) < max(size(before), size(after)):
                groups[i - 1:i + 1] = [before[:-1], [before[-1]] + after]
                moved = True
        if not moved:
            break

    parts: list[_Piece] = []
    for group in groups:
        start, end = span(group)
        if group[0] in long:
            row_start = rows[group[0]][0]
            parts += _long_row(text, start, row_start, end, prefix, count, chunk_tokens, overlap, tokenize)
        elif start == lead:
            parts.append(_Piece(text[start:end], start, end, table=True))
        else:
            parts.append(_Piece(prefix + text[start:end], start, end, table=True,
                                repeated_header=bool(prefix)))
    return parts


def _long_row(text: str, start: int, row_start: int, row_end: int, prefix: str, count,
              chunk_tokens: int, overlap: int, tokenize) -> list[_Piece]:
    """A row longer than a chunk, split by sentences; every piece under the header."""
    from llama_index.core.node_parser import SentenceSplitter

    budget = max(8, chunk_tokens - count(prefix))
    splitter = SentenceSplitter(chunk_size=budget, chunk_overlap=min(overlap, budget // 4),
                                tokenizer=tokenize, paragraph_separator="\n\n")
    lead = text[start:row_start]  # on the table's first row: the header (and lead) as on the page
    pieces = []
    for n, piece in enumerate(_prose_pieces(text[row_start:row_end], row_start, splitter)):
        if n == 0 and lead.strip() and count(lead + piece.text) <= chunk_tokens:
            pieces.append(_Piece(lead + piece.text, start, piece.end, table=True))
            continue
        if n == 0 and lead.strip():  # a header too long to share a chunk with the row is not lost
            pieces += [_Piece(p.text, p.start, p.end, table=True)
                       for p in _prose_pieces(lead, start, splitter)]
        pieces.append(_Piece(prefix + piece.text, piece.start, piece.end, table=True,
                             repeated_header=bool(prefix)))
    return pieces


def _merge_around_tables(pieces: list[_Piece], text: str, count, chunk_tokens: int) -> list[_Piece]:
    """A piece of prose right before or after a table part joins it when both fit in one chunk
    (the heading and sentence above a table; a note under its last row)."""
    merged: list[_Piece] = []
    for piece in pieces:
        if merged:
            last = merged[-1]
            gap = text[last.end:piece.start] if last.end <= piece.start else None
            if (gap is not None and not gap.strip() and (last.table or piece.table)
                    and not piece.repeated_header):
                joined = last.text + gap + piece.text
                if count(joined) <= chunk_tokens:
                    merged[-1] = _Piece(joined, last.start, piece.end, table=last.table or piece.table,
                                        repeated_header=last.repeated_header)
                    continue
        merged.append(piece)
    return merged


_LEADER = re.compile(r"(?:\.\s?){5,}|…{2,}|\.{2,}\s*\d+\s*$")
# A leader that ends in a page number: in a table, "Data 1 low 8 bits ……" is an empty cell.
_NUMBERED_LEADER = re.compile(r"(?:(?:\.\s?){3,}|…{2,}[.…]*)\s*(?:\d{1,4}|[ivxlc]{1,6})\s*$")


def is_contents(text: str, *, numbered_only: bool = False) -> bool:
    """A table of contents: lines of dot leaders. It names every topic and answers none.

    ``numbered_only`` (for table rows) counts only leaders followed by a page number."""
    lines = [line for line in text.split("\n") if line.strip()]
    leader = _NUMBERED_LEADER if numbered_only else _LEADER
    leaders = sum(bool(leader.search(line)) for line in lines)
    return leaders >= max(1, len(lines) / 2)
