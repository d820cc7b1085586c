"""Ingest a window of pages at a time: per-page progress, cancel between pages, nothing half-indexed."""
from pathlib import Path
from unittest import mock

import pytest

from apps.knowledge import services
from apps.knowledge.models import Document
from apps.knowledge.services import document_ingest
from apps.knowledge.vector_index import get_vector_index
from ingest.index import LocalGeneration, SearchIndex, build_vector_store
from ingest.parse import Page
from ingest.pipeline import IngestCancelled, ingest_file
from models.embedding import get_embedder
from tests.factories import make_pdf, stored_node_ids


def _pages(count: int) -> list[str]:
    return [
        f"Section {n} Relay board {n}\nRelay K{n} switches the pump {n} contactor. "
        f"Check fuse F{n} rated {n} A before replacing relay K{n}."
        for n in range(1, count + 1)
    ]


@pytest.fixture(autouse=True)
def _no_task_dispatch():
    with mock.patch("apps.knowledge.tasks.ingest_document_task.delay"), mock.patch(
        "apps.knowledge.tasks.delete_vectors_task.delay"
    ):
        yield


@pytest.fixture
def broadcasts():
    payloads: list[dict] = []
    with mock.patch("apps.knowledge.services.broadcast", side_effect=lambda d: payloads.append(d.progress_payload())):
        yield payloads


def _add(tmp_path: Path, name: str, data: bytes) -> Document:
    path = tmp_path / "incoming" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    document, created = services.document_add_path(path=path)
    assert created
    return document


def test_pages_are_indexed_at_most_a_window_at_a_time_with_per_page_progress(db, tmp_path, settings, broadcasts):
    settings.NANOSENTRI_INGEST_WINDOW_PAGES = 4
    document = _add(tmp_path, "relays.pdf", make_pdf(_pages(10)))

    document_ingest(document_id=document.pk)

    document.refresh_from_db()
    assert document.status == Document.Status.INDEXED
    assert document.page_count == document.pages_done == 10
    embedding = [p["pages_done"] for p in broadcasts if p["status"] == "embedding"]
    # One step per window, by page: the pages read by the time the embedder was free, at most 4.
    assert embedding[-1] == 10 and all(0 < b - a <= 4 for a, b in zip([0] + embedding, embedding)), embedding
    assert [p["percent"] for p in broadcasts if p["status"] == "embedding"] == sorted(
        p["percent"] for p in broadcasts if p["status"] == "embedding"
    )
    ids = stored_node_ids(get_vector_index(), document.pk)
    assert sorted(ids) == sorted(f"doc{document.pk}-chunk{i}" for i in range(document.chunk_count))


def test_a_heading_carries_across_windows(tmp_path):
    pages = ["3. Relay outputs\nThe relays are rated for mains voltage.", "Relay K1 drives the pump contactor coil."]
    path = tmp_path / "two.pdf"
    path.write_bytes(make_pdf(pages))
    index = SearchIndex(build_vector_store("memory", collection="windows-heading"), get_embedder(),
                        generation=LocalGeneration())
    ingest_file(path, document_id=1, file_name="two.pdf", index=index, embedder=index.embedder, chunk_tokens=200,
                chunk_overlap=20, batch_size=8, progress=lambda *a, **k: None, window_pages=1)
    hits = index.lexical_search(["k1"], top_k=5)
    assert hits and hits[0].metadata["page"] == 2
    assert hits[0].metadata["heading"] == "3. Relay outputs"


def test_windows_are_written_without_a_delete_each_and_a_rerun_leaves_no_duplicates(tmp_path):
    """The document's entries are removed once, before its first window; removing each window's ids
    again before writing them cost a third of the write time (docs/benchmarks.md)."""
    path = tmp_path / "ten.pdf"
    path.write_bytes(make_pdf(_pages(10)))
    index = SearchIndex(build_vector_store("chroma", path=tmp_path / "chroma", collection="windows-writes"),
                        get_embedder(), generation=LocalGeneration())
    deletes: list = []
    store_delete = type(index.store).delete_nodes

    def counted(store, *args, **kwargs):
        deletes.append(kwargs)
        return store_delete(store, *args, **kwargs)

    with mock.patch.object(type(index.store), "delete_nodes", counted):
        for _ in range(2):  # a re-index of the same document
            result = ingest_file(path, document_id=3, file_name="ten.pdf", index=index, embedder=index.embedder,
                                 chunk_tokens=200, chunk_overlap=20, batch_size=8, progress=lambda *a, **k: None,
                                 window_pages=2)
    assert deletes == []
    assert sorted(stored_node_ids(index, 3)) == sorted(f"doc3-chunk{i}" for i in range(result.chunk_count))


def test_a_contents_page_heading_carries_over_wherever_the_windows_are_cut():
    from ingest.chunk import chunk_pages, chunk_window

    tokenize = get_embedder().tokenize
    pages = [Page(1, "3. Relay outputs\nThe relays are rated for mains voltage."),
             Page(2, "Safety Instructions\n1 Introduction ........ 3\n2 Setup ........ 5\n3 Wiring ........ 7"),
             Page(3, "Relay K1 drives the pump contactor coil.")]
    whole = chunk_pages(pages, tokenize=tokenize)
    assert [(c.page, c.heading) for c in whole] == [(1, "3. Relay outputs"), (3, "Safety Instructions")]
    for cut in ([1, 1, 1], [2, 1], [1, 2]):  # the contents page is dropped, its heading is not
        chunks, heading, start = [], "", 0
        for size in cut:
            window, heading = chunk_window(pages[start:start + size], tokenize=tokenize, first_index=len(chunks),
                                           heading=heading)
            chunks += window
            start += size
        assert chunks == whole, cut


@pytest.mark.parametrize("reader", ["process", "thread"])
def test_the_first_page_is_embedded_while_the_next_is_still_read(tmp_path, reader):
    """The embedder does not wait for a whole window: page 1 goes while page 2 is OCR'd (~0.3 s)."""
    from ingest.ocr import ocr_available

    assert ocr_available("tesseract"), "tesseract is not installed: run scripts/install.sh"
    pages = _pages(3)
    pages[1] = None  # no text layer: read by OCR
    path = tmp_path / "scan.pdf"
    path.write_bytes(make_pdf(pages))
    embedder = get_embedder()
    calls, steps = [], []

    class Recording:
        name, dimension, max_tokens = embedder.name, embedder.dimension, embedder.max_tokens
        tokenize = staticmethod(embedder.tokenize)

        def embed(self, texts, batch_size=64):
            calls.append([t.split("\n")[1] for t in texts])  # the chunk's first line, after the title
            return embedder.embed(texts, batch_size=batch_size)

    index = SearchIndex(build_vector_store("memory", collection=f"first-page-{reader}"), embedder,
                        generation=LocalGeneration())
    result = ingest_file(path, document_id=1, file_name="scan.pdf", index=index, embedder=Recording(),
                         chunk_tokens=200, chunk_overlap=20, batch_size=8, window_pages=16, ocr_engine="tesseract",
                         progress=lambda stage, **k: steps.append((stage, k["pages_done"])), page_reader=reader,
                         snippet_sentences=0)  # the chunks only: snippets are tests/test_snippets.py's

    assert calls == [["Section 1 Relay board 1"], ["Section 3 Relay board 3"]]
    assert steps.index(("embedding", 1)) < steps.index(("ocr", 1))  # page 1 is in before the OCR of page 2
    assert result.empty_pages == [2] and result.chunk_count == 2


@pytest.mark.parametrize("reader", ["process", "thread"])
def test_the_worker_reads_the_pages_where_the_setting_says(db, tmp_path, settings, reader):
    from ingest import pipeline

    settings.NANOSENTRI_INGEST_READER = reader
    document = _add(tmp_path, "relays.pdf", make_pdf(_pages(3)))
    with mock.patch("ingest.pipeline.ingest_file", wraps=pipeline.ingest_file) as ingest:
        document_ingest(document_id=document.pk)
    assert ingest.call_args.kwargs["page_reader"] == reader
    document.refresh_from_db()
    assert document.status == Document.Status.INDEXED and document.chunk_count == 3


@pytest.mark.parametrize("option, value, message", [
    ("page_reader", "fork", "page_reader must be one of process, thread, not 'fork'"),
    ("snippet_vectors", "late", "snippet_vectors must be one of alone, chunk, not 'late'"),
])
def test_an_unknown_ingest_option_is_refused(tmp_path, option, value, message):
    path = tmp_path / "p.pdf"
    path.write_bytes(make_pdf(_pages(1)))
    with pytest.raises(ValueError, match=message):
        ingest_file(path, document_id=1, file_name="p.pdf", index=None, embedder=None, chunk_tokens=200,
                    chunk_overlap=20, batch_size=8, progress=lambda *a, **k: None, **{option: value})


@pytest.mark.parametrize("snippet_vectors", ["alone", "chunk"])
def test_the_worker_makes_snippet_vectors_as_the_setting_says(db, tmp_path, settings, snippet_vectors):
    """Mock embedder: "chunk" embeds the chunks only and takes each snippet's vector from their pass;
    "alone" embeds each snippet too. Either way every chunk with sentences stores its snippets."""
    from apps.knowledge.vector_index import get_vector_index
    from models.embedding import get_embedder

    settings.NANOSENTRI_INGEST_SNIPPET_VECTORS = snippet_vectors
    document = _add(tmp_path, "relays.pdf", make_pdf(_pages(3)))
    embedder = get_embedder()
    calls = {"embed": [], "embed_spans": []}
    with mock.patch.object(embedder, "embed", side_effect=lambda texts, batch_size=64: calls["embed"].extend(texts)
                           or type(embedder).embed(embedder, texts)), \
         mock.patch.object(embedder, "embed_spans", side_effect=lambda texts, spans, batch_size=64:
                           calls["embed_spans"].extend(texts) or type(embedder).embed_spans(embedder, texts, spans)):
        document_ingest(document_id=document.pk)
    document.refresh_from_db()
    assert document.status == Document.Status.INDEXED and document.chunk_count == 3
    chunks_and_snippets = len(calls["embed"]) + len(calls["embed_spans"])
    if snippet_vectors == "chunk":
        assert calls["embed"] == [] and len(calls["embed_spans"]) == 3
    else:
        assert calls["embed_spans"] == [] and chunks_and_snippets > 3
    index = get_vector_index()
    index.lexical_stats()
    assert all(v is not None and len(v) for v in index._lexical.snippets)


def test_cancel_stops_between_windows_and_leaves_nothing_indexed(db, tmp_path, settings, broadcasts):
    settings.NANOSENTRI_INGEST_WINDOW_PAGES = 2
    document = _add(tmp_path, "long.pdf", make_pdf(_pages(12)))
    index = get_vector_index()
    real_add = index.add_entries
    written = []

    def add_then_cancel(entries, vectors, **kwargs):
        real_add(entries, vectors, **kwargs)
        written.append(len(entries))
        if len(written) == 2:  # the admin presses Cancel while page 4 is being embedded
            services.document_cancel(document=Document.objects.get(pk=document.pk))

    with mock.patch.object(index, "add_entries", side_effect=add_then_cancel):
        result = document_ingest(document_id=document.pk)

    assert result.status == Document.Status.CANCELLED
    assert len(written) == 2  # no window after the cancel
    assert stored_node_ids(index, document.pk) == []
    assert broadcasts[-1]["status"] == "cancelled"
    # Re-index starts it again from scratch.
    services.document_reindex(document=result)
    result.refresh_from_db()
    assert result.status == Document.Status.QUEUED and not result.cancel_requested
    document_ingest(document_id=document.pk)
    result.refresh_from_db()
    assert result.status == Document.Status.INDEXED
    assert len(stored_node_ids(index, document.pk)) == result.chunk_count


def test_a_queued_document_is_cancelled_at_once_and_the_worker_skips_it(db, tmp_path, broadcasts):
    document = _add(tmp_path, "queued.pdf", make_pdf(_pages(2)))

    services.document_cancel(document=document)

    document.refresh_from_db()
    assert document.status == Document.Status.CANCELLED
    assert document_ingest(document_id=document.pk) is None  # the worker does not claim it
    document.refresh_from_db()
    assert document.status == Document.Status.CANCELLED
    assert stored_node_ids(get_vector_index(), document.pk) == []


def test_cancel_raises_inside_the_pipeline_before_any_write(tmp_path):
    path = tmp_path / "p.pdf"
    path.write_bytes(make_pdf(_pages(3)))
    index = SearchIndex(build_vector_store("memory", collection="windows-cancel"), get_embedder(),
                        generation=LocalGeneration())
    with pytest.raises(IngestCancelled):
        ingest_file(path, document_id=7, file_name="p.pdf", index=index, embedder=index.embedder, chunk_tokens=200,
                    chunk_overlap=20, batch_size=8, progress=lambda *a, **k: None, cancelled=lambda: True)
    assert index.count() == 0


def test_the_cancel_button_and_view(db, client, admin_user, tmp_path):
    document = _add(tmp_path, "queued.pdf", make_pdf(_pages(2)))
    Document.objects.filter(pk=document.pk).update(status=Document.Status.EMBEDDING, page_count=2, pages_done=1)
    client.force_login(admin_user)

    row = client.get(f"/documents/{document.pk}/row/").content.decode()
    assert f"/documents/{document.pk}/cancel/" in row and "page 1 of 2" in row

    response = client.post(f"/documents/{document.pk}/cancel/")
    assert response.status_code == 302
    document.refresh_from_db()
    assert document.cancel_requested and document.status == Document.Status.EMBEDDING  # the worker finishes it
    assert "cancelling" in client.get(f"/documents/{document.pk}/row/").content.decode()
