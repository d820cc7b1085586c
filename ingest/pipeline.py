"""The whole ingest of one document: read → chunk → embed → index, a window of pages at a time.

Pages are read one by one (``DocumentReader``) and indexed in windows of at most ``window_pages``,
so a 1,000-page manual costs the memory of two windows, progress moves page by page, and a cancel
is seen between pages. The pages are read up to a window ahead of the embedder, in a process of
their own (``ingest.reader_process``, the default) or a thread (``ingest.read_ahead``), so parsing
and OCR run while the previous window is embedded.

A window is what was read by the time the embedder is free: every page already there (at least
one, at most ``window_pages``). Waiting for a full window would keep the embedder idle while the
first pages are parsed, and most manuals have fewer pages than a window, so nearly all their parse
time would come before any embedding. A chunk never spans pages and the heading carries over
(``chunk_window``), so where windows are cut changes no chunk.

Idempotent per document: the document's old entries are removed before the first window is
written, and node ids are derived from (document id, chunk index), so a retried or re-run ingest
never leaves duplicates. Retrieval only reads documents whose status is "indexed", so the half
written entries of an ingest in progress are never cited.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Protocol

from ingest.chunk import chunk_window
from ingest.embed import embed_in_batches, release_freed_memory
from ingest.index import SearchIndex, chunk_entries, embed_entries
from ingest.parse import PDF_EXTENSIONS, DocumentReader, Page, PageSink, ParseError
from ingest.read_ahead import OcrStarts, PagesAhead
from ingest.reader_process import PagesInProcess
from ingest.snippets import SNIPPET_SENTENCES


CONTEXT_TOKENS = 56  # two lines of at most ingest.index.MAX_TITLE_CHARS characters
WINDOW_PAGES = 16
PAGE_READERS = ("process", "thread")  # where the pages are read (NANOSENTRI_INGEST_READER)
# How a snippet gets its vector (NANOSENTRI_INGEST_SNIPPET_VECTORS): "alone", embedded on its own;
# "chunk", read off its chunk's pass (Embedder.embed_spans): ~3 times faster ingest, ranks a little worse.
SNIPPET_VECTORS = ("alone", "chunk")


class Progress(Protocol):
    def __call__(self, stage: str, *, pages_done: int, pages_total: int, chunks_done: int, chunks_total: int) -> None: ...


class IngestCancelled(Exception):
    """An admin cancelled the ingest; the entries written so far have been removed."""


@dataclass
class IngestResult:
    page_count: int
    chunk_count: int
    empty_pages: list[int]
    title: str = ""
    page_sources: dict[str, list[int]] = field(default_factory=dict)


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
    ocr_engine: str | None = None,
    cancelled: Callable[[], bool] = lambda: False,
    window_pages: int = WINDOW_PAGES,
    page_reader: str = "process",
    snippet_sentences: int = SNIPPET_SENTENCES,
    snippet_vectors: str = "alone",
) -> IngestResult:
    if page_reader not in PAGE_READERS:
        raise ValueError(f"page_reader must be one of {', '.join(PAGE_READERS)}, not {page_reader!r}")
    if snippet_vectors not in SNIPPET_VECTORS:
        raise ValueError(f"snippet_vectors must be one of {', '.join(SNIPPET_VECTORS)}, not {snippet_vectors!r}")
    progress("parsing", pages_done=0, pages_total=0, chunks_done=0, chunks_total=0)
    state = {"pages_done": 0, "chunks": 0}

    reader = DocumentReader(path, file_name, ocr_engine=ocr_engine)
    pages_total = reader.page_count
    progress("parsing", pages_done=0, pages_total=pages_total, chunks_done=0, chunks_total=0)

    # The embedder reads at most max_tokens word pieces, [CLS] and [SEP] included, and the title
    # and heading put before each chunk take up to CONTEXT_TOKENS of them.
    chunk_tokens = min(chunk_tokens, embedder.max_tokens - 2 - CONTEXT_TOKENS)
    heading = ""

    def index_window(window: list[Page]) -> None:
        nonlocal heading
        chunks, heading = chunk_window(window, tokenize=embedder.tokenize, chunk_tokens=chunk_tokens,
                                       overlap=chunk_overlap, first_index=state["chunks"], heading=heading)
        if chunks:
            # What is embedded carries the manual's title and the section heading; what is shown stays the page's.
            entries = chunk_entries(document_id=document_id, file_name=file_name, chunks=chunks, title=reader.title,
                                    snippet_sentences=snippet_sentences)
            vectors = embed_entries(entries, lambda texts: embed_in_batches(texts, embedder, batch_size=batch_size),
                                    embed_spans=(lambda texts, spans: embedder.embed_spans(texts, spans, batch_size))
                                    if snippet_vectors == "chunk" else None)
            index.add_entries(entries, vectors, replace=False)  # the document's entries were removed first
            state["chunks"] += len(chunks)
            del entries, vectors
            release_freed_memory()
        state["pages_done"] = window[-1].number
        progress("embedding", pages_done=state["pages_done"], pages_total=pages_total,
                 chunks_done=state["chunks"], chunks_total=state["chunks"])

    index.delete_document(document_id)
    try:
        window: list[Page] = []
        with _pages_ahead(reader, page_reader, ahead=window_pages) as pages:
            for item in pages:
                if cancelled():
                    raise IngestCancelled()
                if isinstance(item, OcrStarts):
                    if window and not pages.ready():  # the OCR takes seconds: embed what came before it
                        index_window(window)
                        window = []
                    progress("ocr", pages_done=item.page - 1, pages_total=pages_total,
                             chunks_done=state["chunks"], chunks_total=state["chunks"])
                    continue
                window.append(item)
                if len(window) >= window_pages or not pages.ready():
                    index_window(window)
                    window = []
        if window:
            index_window(window)
        if not state["chunks"]:
            raise ParseError("no text to index")
    except BaseException:
        index.delete_document(document_id)  # nothing half-indexed is left behind
        raise
    return IngestResult(page_count=pages_total, chunk_count=state["chunks"], empty_pages=reader.empty_pages,
                        title=reader.title, page_sources=reader.page_sources)


def _pages_ahead(reader: DocumentReader, page_reader: str, *, ahead: int) -> PagesInProcess | PagesAhead:
    """The pages of ``reader``, read ahead in a reader process or a thread. A text file is read
    whole on opening: its pages are already in memory, there is no parse left to hide."""
    if page_reader == "process" and reader.suffix in PDF_EXTENSIONS:
        return PagesInProcess(reader, ahead=ahead)

    def read(note_ocr: Callable[[int], None]):
        # Runs in the reader thread: OCR notes go through the queue, in order with the pages.
        reader.sink = PageSink(on_ocr=note_ocr)
        return reader.pages()

    return PagesAhead(read, ahead=ahead)
