"""The whole ingest of one document: parse → chunk → embed → index, with progress callbacks.

Idempotent per document: the document's old vectors are removed before the new ones are
written, and node ids are derived from (document id, chunk index), so a retried or re-run
ingest never leaves duplicates.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol

from ingest.chunk import chunk_pages
from ingest.embed import embed_in_batches
from ingest.index import SearchIndex, chunk_entries
from ingest.parse import ParseError, parse_file


CONTEXT_TOKENS = 56  # two lines of at most ingest.index.MAX_TITLE_CHARS characters


class Progress(Protocol):
    def __call__(self, stage: str, *, pages_done: int, pages_total: int, chunks_done: int, chunks_total: int) -> None: ...


@dataclass
class IngestResult:
    page_count: int
    chunk_count: int
    empty_pages: list[int]
    title: str = ""


def ingest_file(
    path: Path,
    *,
    document_id: int,
    file_name: str,
    index: SearchIndex,
    embedder,
    chunk_tokens: int,
    chunk_overlap: int,
    batch_size: int,
    progress: Progress | Callable[..., None],
) -> IngestResult:
    progress("parsing", pages_done=0, pages_total=0, chunks_done=0, chunks_total=0)
    parsed = parse_file(path, file_name)
    pages_total = parsed.page_count
    progress("parsing", pages_done=pages_total, pages_total=pages_total, chunks_done=0, chunks_total=0)

    # The embedder reads at most max_tokens word pieces, [CLS] and [SEP] included, and the title
    # and heading put before each chunk take up to CONTEXT_TOKENS of them.
    chunk_tokens = min(chunk_tokens, embedder.max_tokens - 2 - CONTEXT_TOKENS)
    chunks = chunk_pages(parsed.pages, tokenize=embedder.tokenize, chunk_tokens=chunk_tokens, overlap=chunk_overlap)
    if not chunks:
        raise ParseError("no text to index")

    total = len(chunks)
    progress("embedding", pages_done=0, pages_total=pages_total, chunks_done=0, chunks_total=total)

    def on_batch(done: int, _total: int) -> None:
        # Pages are done once all their chunks are embedded.
        pages_done = chunks[done - 1].page if done < total else pages_total
        progress("embedding", pages_done=pages_done, pages_total=pages_total, chunks_done=done, chunks_total=total)

    # What is embedded carries the manual's title and the section heading; what is shown stays the page's.
    entries = chunk_entries(document_id=document_id, file_name=file_name, chunks=chunks, title=parsed.title)
    vectors = embed_in_batches([e.embed_text for e in entries], embedder, batch_size=batch_size, on_batch=on_batch)
    index.delete_document(document_id)
    index.add_entries(entries, vectors)
    return IngestResult(page_count=pages_total, chunk_count=total, empty_pages=parsed.empty_pages, title=parsed.title)
