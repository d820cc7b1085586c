"""Pages are read in a thread ahead of the embedder (ingest/read_ahead.py)."""
import re
import time

import pytest

from ingest.index import LocalGeneration, SearchIndex, build_vector_store
from ingest.parse import Page, ParseError
from ingest.pipeline import ingest_file
from ingest.read_ahead import OcrStarts, PagesAhead
from models.embedding import get_embedder
from tests.factories import make_pdf


def _pages(n: int, *, ocr: set[int] = frozenset(), fail_at: int | None = None, read: list | None = None):
    def reader(note_ocr):
        for number in range(1, n + 1):
            if number == fail_at:
                raise ParseError(f"page {number} is broken")
            if number in ocr:
                note_ocr(number)
            if read is not None:
                read.append(number)
            yield Page(number=number, text=f"page {number}")

    return reader


def test_pages_and_ocr_notes_arrive_in_order():
    with PagesAhead(_pages(5, ocr={2, 4}), ahead=2) as pages:
        items = list(pages)
    assert items == [Page(1, "page 1"), OcrStarts(2), Page(2, "page 2"), Page(3, "page 3"), OcrStarts(4),
                     Page(4, "page 4"), Page(5, "page 5")]


def test_a_reader_error_is_raised_where_its_page_would_come():
    seen = []
    with pytest.raises(ParseError, match="page 3 is broken"):
        with PagesAhead(_pages(5, fail_at=3), ahead=4) as pages:
            for page in pages:
                seen.append(page.number)
    assert seen == [1, 2]


def test_the_reader_runs_ahead_while_the_consumer_works_but_no_further_than_allowed():
    read: list[int] = []
    with PagesAhead(_pages(100, read=read), ahead=3) as pages:
        first = next(iter(pages))
        deadline = time.monotonic() + 10
        while len(read) < 4 and time.monotonic() < deadline:  # the consumer is busy with page 1
            time.sleep(0.01)
        time.sleep(0.1)
        assert first.number == 1
        # Read while the consumer worked: 3 waiting in the queue, one more in the reader's hand.
        assert 4 <= len(read) <= 5


def test_closing_stops_the_reader_and_waits_for_it():
    read: list[int] = []
    ahead = PagesAhead(_pages(10_000, read=read), ahead=2)
    with ahead as pages:
        for page in pages:
            if page.number == 3:
                break
    assert not ahead._thread.is_alive()
    assert len(read) <= 3 + 2 + 1


def test_ingest_reads_the_next_window_while_it_embeds_the_first(tmp_path):
    """Parsing overlaps embedding: while window 1 is embedded, the reader thread reads a window ahead."""
    path = tmp_path / "ten.pdf"
    path.write_bytes(make_pdf([
        f"Section {n} Relay board {n}\nRelay K{n} switches the pump {n} contactor. "
        f"Check fuse F{n} rated {n} A before replacing relay K{n}." for n in range(1, 11)
    ]))
    embedder = get_embedder()
    index = SearchIndex(build_vector_store("memory", collection="read-ahead"), embedder, generation=LocalGeneration())
    from ingest import parse

    read_pages: list[int] = []
    real_read = parse.DocumentReader._read_pdf_page

    def counting_read(self, i):
        page = real_read(self, i)
        read_pages.append(page.number)
        return page

    read_during_embedding: list[int] = []
    first_window: list[int] = []

    class WatchingEmbedder:
        name, dimension, max_tokens = embedder.name, embedder.dimension, embedder.max_tokens
        tokenize = staticmethod(embedder.tokenize)

        def embed(self, texts, batch_size=64):
            if not read_during_embedding:
                # The pages read by the time the embedder was free, one chunk each.
                first_window.extend(int(re.search(r"Relay board (\d+)", t).group(1)) for t in texts)
                deadline = time.monotonic() + 10
                while max(read_pages) < max(first_window) + 4 and time.monotonic() < deadline:
                    time.sleep(0.01)  # the reader thread goes on while the first window is embedded
                time.sleep(0.2)
                read_during_embedding.append(max(read_pages))
            return embedder.embed(texts, batch_size=batch_size)

    parse.DocumentReader._read_pdf_page = counting_read
    try:
        result = ingest_file(path, document_id=1, file_name="ten.pdf", index=index, embedder=WatchingEmbedder(),
                             chunk_tokens=200, chunk_overlap=20, batch_size=8, progress=lambda *a, **k: None,
                             window_pages=4, page_reader="thread", snippet_sentences=0)  # chunks only
    finally:
        parse.DocumentReader._read_pdf_page = real_read
    assert result.page_count == 10 and result.chunk_count >= 3
    assert first_window == list(range(1, len(first_window) + 1)) and len(first_window) <= 4
    # A whole window waits in the queue (one more page may be in the reader's hand), no more.
    last = first_window[-1]
    assert last + 4 <= read_during_embedding[0] <= last + 5
