"""Pages are read in a reader process ahead of the embedder (ingest/reader_process.py)."""
import os
import signal
import time

import numpy as np
import pytest

from ingest import reader_process
from ingest.index import LocalGeneration, SearchIndex, build_vector_store
from ingest.ocr import ocr_available
from ingest.parse import DocumentReader, Page, PageSink, ParseError
from ingest.pipeline import IngestCancelled, ingest_file
from ingest.read_ahead import OcrStarts
from ingest.reader_process import PagesInProcess
from models.embedding import get_embedder
from tests.conftest import QUICK_START, manual
from tests.factories import make_pdf

RELAY = "Relay K{n} switches the pump contactor; fuse F{n} protects it and is rated {n} A."


@pytest.fixture
def tesseract():
    # A page without a text layer is OCR'd: a real reader step that takes ~0.3 s.
    assert ocr_available("tesseract"), "tesseract is not installed: run scripts/install.sh"
    return "tesseract"


def _pdf(tmp_path, name, pages):
    path = tmp_path / name
    path.write_bytes(make_pdf(pages))
    return path


def _in_process(path, *, ocr_engine=None, ahead=16):
    return PagesInProcess(DocumentReader(path, ocr_engine=ocr_engine), ahead=ahead)


def _idle_pids() -> list[int]:
    return [p.proc.pid for p in reader_process._idle]


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_pages_and_ocr_notes_arrive_in_order_with_the_readers_end_state(tmp_path, tesseract):
    path = _pdf(tmp_path, "scan.pdf", [RELAY.format(n=1), None, RELAY.format(n=3), None])
    notes: list[int] = []
    here = DocumentReader(path, ocr_engine=tesseract, sink=PageSink(on_ocr=notes.append))
    expected_pages = list(here.pages())

    reader = DocumentReader(path, ocr_engine=tesseract)
    with PagesInProcess(reader, ahead=2) as pages:
        items = list(pages)

    assert items == [expected_pages[0], OcrStarts(2), expected_pages[1], expected_pages[2], OcrStarts(4),
                     expected_pages[3]]
    assert notes == [2, 4]
    assert (reader.empty_pages, reader.page_sources, reader.page_reasons) == (
        here.empty_pages, here.page_sources, here.page_reasons) == ([2, 4], {}, {})


def test_a_reader_error_is_raised_where_its_page_would_come(tmp_path):
    # Page 3 has no text layer and the OCR engine does not exist: the reader raises at page 3.
    path = _pdf(tmp_path, "broken.pdf", [RELAY.format(n=1), RELAY.format(n=2), None, RELAY.format(n=4)])
    seen = []
    with pytest.raises(ParseError, match="page 3 needs OCR, which is not available here"):
        with _in_process(path, ocr_engine="abbyy", ahead=4) as pages:
            for item in pages:
                seen.append(item)
    assert [type(i).__name__ for i in seen] == ["Page", "Page", "OcrStarts"] and seen[2] == OcrStarts(3)
    # The document ended (with an error) in the reader: it waits for the next one.
    pid = _idle_pids()[-1]
    with _in_process(_pdf(tmp_path, "next.pdf", [RELAY.format(n=5)])) as pages:
        assert [p.number for p in pages] == [1]
    assert _idle_pids()[-1] == pid


def test_the_reader_process_is_kept_for_the_next_documents(tmp_path):
    first = _pdf(tmp_path, "first.pdf", [RELAY.format(n=1), RELAY.format(n=2)])
    second = _pdf(tmp_path, "second.pdf", [RELAY.format(n=3)])
    with _in_process(first) as pages:
        assert [p.text for p in pages] == [RELAY.format(n=1), RELAY.format(n=2)]
    pid = _idle_pids()[-1]
    with _in_process(second) as pages:
        assert [p.text for p in pages] == [RELAY.format(n=3)]
    assert _idle_pids()[-1] == pid and not _gone(pid)


def test_the_reader_runs_ahead_while_the_consumer_works_but_no_further_than_allowed(tmp_path, tesseract):
    # Ten pages to OCR, each an "ocr" note and a page (~0.3 s), then a page of text: 21 items.
    path = _pdf(tmp_path, "scans.pdf", [None] * 10 + [RELAY.format(n=11)])
    with _in_process(path, ocr_engine=tesseract, ahead=3) as pages:
        items = iter(pages)
        assert next(items) == OcrStarts(1)
        time.sleep(4)  # the consumer is busy (embedding); the reader reads on, up to 3 items ahead
        ready = 0
        while pages.ready():
            next(items)
            ready += 1
        # 3 waited in the pipe; one more was in the reader's hand and may have come while we took
        # them; the next needs another OCR.
        assert 3 <= ready <= 4
        rest = list(items)
    assert len(rest) == 21 - 1 - ready and rest[-1].text == RELAY.format(n=11)


def test_closing_early_kills_the_reader_and_the_next_document_gets_a_fresh_one(tmp_path, tesseract):
    path = _pdf(tmp_path, "long-scan.pdf", [None] * 40)
    ahead = _in_process(path, ocr_engine=tesseract, ahead=2)
    with ahead as pages:
        for item in pages:
            if item == OcrStarts(2):
                pid = ahead._process.proc.pid
                break
    assert _gone(pid) and pid not in _idle_pids()  # not reading the file any more, nor kept

    with _in_process(_pdf(tmp_path, "next.pdf", [RELAY.format(n=1)])) as pages:
        assert [p.number for p in pages] == [1]
    assert _idle_pids()[-1] != pid


def test_a_killed_reader_is_a_parse_error_and_the_next_ingest_works(tmp_path, tesseract):
    path = _pdf(tmp_path, "scans.pdf", [RELAY.format(n=1)] + [None] * 10)
    ahead = _in_process(path, ocr_engine=tesseract, ahead=2)
    pid = None
    with pytest.raises(ParseError, match=r"the page reader stopped unexpectedly \(killed by SIGKILL\)"):
        with ahead as pages:
            for item in pages:
                if isinstance(item, Page) and pid is None:
                    pid = ahead._process.proc.pid
                    os.kill(pid, signal.SIGKILL)  # the OOM killer, say
    assert _gone(pid) and pid not in _idle_pids()

    embedder = get_embedder()
    index = SearchIndex(build_vector_store("memory", collection="after-kill"), embedder, generation=LocalGeneration())
    result = ingest_file(_pdf(tmp_path, "next.pdf", [RELAY.format(n=2), RELAY.format(n=3)]), document_id=1,
                         file_name="next.pdf", index=index, embedder=embedder, chunk_tokens=200, chunk_overlap=20,
                         batch_size=8, progress=lambda *a, **k: None)
    assert (result.page_count, result.chunk_count) == (2, 2) and index.count() == 2


def test_a_cancelled_ingest_kills_the_reader(tmp_path, tesseract):
    with _in_process(_pdf(tmp_path, "warm.pdf", [RELAY.format(n=1)])) as pages:
        list(pages)
    pid = _idle_pids()[-1]  # the one the next ingest takes
    embedder = get_embedder()
    index = SearchIndex(build_vector_store("memory", collection="cancel-kill"), embedder, generation=LocalGeneration())
    taken = []

    def cancelled():
        taken.append(1)
        return len(taken) > 1  # the admin cancels after the first page

    with pytest.raises(IngestCancelled):
        ingest_file(_pdf(tmp_path, "scans.pdf", [RELAY.format(n=1)] + [None] * 20), document_id=1,
                    file_name="scans.pdf", index=index, embedder=embedder, chunk_tokens=200, chunk_overlap=20,
                    batch_size=8, progress=lambda *a, **k: None, ocr_engine=tesseract, cancelled=cancelled)
    assert _gone(pid) and pid not in _idle_pids()
    assert index.count() == 0


def _ingest(path, reader, collection, ocr_engine):
    embedder = get_embedder()
    index = SearchIndex(build_vector_store("memory", collection=collection), embedder, generation=LocalGeneration())
    result = ingest_file(path, document_id=1, file_name=path.name, index=index, embedder=embedder, chunk_tokens=200,
                         chunk_overlap=40, batch_size=64, progress=lambda *a, **k: None, ocr_engine=ocr_engine,
                         page_reader=reader)
    stored = index.store.client.get(ids=[f"doc1-chunk{i}" for i in range(result.chunk_count)],
                                    include=["embeddings", "documents", "metadatas"])
    return result, stored


def test_an_ingest_through_the_reader_process_gives_the_entries_of_the_thread(tesseract):
    """The Ender-3 quick start guide: text pages, repaired pages, and two scans read by OCR."""
    path = manual(QUICK_START)
    by_thread, thread_entries = _ingest(path, "thread", "reader-thread", tesseract)
    by_process, process_entries = _ingest(path, "process", "reader-process", tesseract)

    assert by_process == by_thread and by_process.page_sources.get("ocr") == [10, 11]
    assert process_entries["ids"] == thread_entries["ids"] and len(process_entries["ids"]) > 10
    assert process_entries["documents"] == thread_entries["documents"]
    assert process_entries["metadatas"] == thread_entries["metadatas"]
    assert np.abs(np.array(process_entries["embeddings"]) - np.array(thread_entries["embeddings"])).max() < 1e-5
