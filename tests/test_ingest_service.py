"""The worker's ingest of one document (mock embedder, in-memory store): status, progress, vectors."""
from pathlib import Path
from unittest import mock

import pytest

from apps.knowledge import services
from apps.knowledge.models import Document
from apps.knowledge.retrieval import passages_search
from apps.knowledge.services import document_ingest, document_vectors_delete
from apps.knowledge.vector_index import get_vector_index
from tests.factories import corrupt_pdf, image_only_pdf, make_pdf, stored_node_ids

QUESTION = "Why does the display show Min temp? thermistor nozzle"
EVSE_QUESTION = "Calibrate CT1 current transformer cal value"

# A small second manual as a text file (two pages): fast to parse, distinct vocabulary.
EVSE_NOTES = (
    "CAL Calibrate CT1. CT2 and CT3 will use the same cal value. A minimum of 6A is required.\n"
    "Hold both buttons to reset the current transformer calibration to default settings.\f"
    "Error LESS 6A: the available current is below 6A. Check the mains current limit.\n"
    "Error NO COMM: the sensorbox does not respond. Check the RS485 wiring."
)


@pytest.fixture(autouse=True)
def _no_task_dispatch():
    # on_commit never fires inside a test transaction; this guards against any other path.
    with mock.patch("apps.knowledge.tasks.ingest_document_task.delay"), mock.patch(
        "apps.knowledge.tasks.delete_vectors_task.delay"
    ):
        yield


@pytest.fixture
def broadcasts():
    """Every progress payload broadcast during the test, as the browser would receive it."""
    payloads: list[dict] = []
    def record(document):
        payloads.append(document.progress_payload())

    with mock.patch("apps.knowledge.services.broadcast", side_effect=record):
        yield payloads


def add(path: Path) -> Document:
    document, created = services.document_add_path(path=path)
    assert created
    return document


def add_bytes(tmp_path: Path, name: str, data: bytes) -> Document:
    path = tmp_path / "incoming" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return add(path)


def add_notes(tmp_path: Path) -> Document:
    return add_bytes(tmp_path, "evse-notes.txt", EVSE_NOTES.encode())


def small_chunks(settings) -> None:
    """More chunks from the short Ender-3 sheet (the mock tokenizer counts words)."""
    settings.NANOSENTRI_CHUNK_TOKENS = 40
    settings.NANOSENTRI_CHUNK_OVERLAP = 8


@pytest.fixture
def no_relative_cutoff(settings):
    """Look at the absolute ``min_score`` filter alone (no "close to the best hit" cut)."""
    settings.NANOSENTRI_RETRIEVAL_RELATIVE_CUTOFF = 100.0


def all_passages(query: str = QUESTION):
    """Every stored chunk, nearest to ``query`` first (straight from the vector half of the index)."""
    from apps.knowledge.retrieval import _passage

    index = get_vector_index()
    hits = index.vector_search(index.embedder.embed([query])[0], top_k=1000)
    return [_passage(h) for h in hits]


def test_it_indexes_a_real_manual(db, smartevse, broadcasts):
    document = add(smartevse)

    result = document_ingest(document_id=document.pk)

    document.refresh_from_db()
    assert result == document
    assert document.status == Document.Status.INDEXED
    assert document.error == ""
    assert document.page_count == 2
    assert document.pages_done == 2
    assert document.chunk_count > 0
    assert document.chunks_total == document.chunk_count == document.chunks_done
    assert document.empty_pages == []
    assert document.indexed_at is not None and document.started_at is not None
    assert document.started_at <= document.indexed_at
    assert document.percent == 100

    assert len(stored_node_ids(get_vector_index(), document.pk)) == document.chunk_count
    hits = [p for p in all_passages(EVSE_QUESTION) if p.document_id == document.pk]
    assert len(hits) == document.chunk_count
    assert {p.page for p in hits} == {1, 2}
    assert {p.file_name for p in hits} == {smartevse.name}
    assert sorted(p.chunk_index for p in hits) == list(range(document.chunk_count))
    passages, _ = passages_search("Calibrate CT1 CT2 CT3 cal value", min_score=0.0)
    assert passages[0].document_id == document.pk
    assert "Calibrate CT1" in passages[0].text
    assert passages[0].page == 1


def test_the_right_manual_is_found_by_search(db, troubleshooting, tmp_path):
    printer, notes = add(troubleshooting), add_notes(tmp_path)
    document_ingest(document_id=printer.pk)
    document_ingest(document_id=notes.pk)

    passages, elapsed_ms = passages_search(EVSE_QUESTION, min_score=0.0)

    assert passages[0].document_id == notes.pk
    assert passages[0].page == 1
    assert "Calibrate CT1" in passages[0].text
    assert elapsed_ms >= 0
    passages, _ = passages_search("the display shows Min temp thermistor of nozzle", min_score=0.0)
    assert passages[0].document_id == printer.pk
    assert passages[0].file_name == troubleshooting.name
    assert passages[0].page == 1
    passages, _ = passages_search("sensorbox RS485 wiring does not respond", min_score=0.0)
    assert (passages[0].document_id, passages[0].page) == (notes.pk, 2)  # form feed = page 2


def test_progress_goes_parsing_then_embedding_then_indexed(db, troubleshooting, broadcasts):
    document = add(troubleshooting)

    document_ingest(document_id=document.pk)

    stages = [p["status"] for p in broadcasts]
    assert stages[0] == "parsing"
    assert stages[-1] == "indexed"
    assert "embedding" in stages
    # in order, never going back
    order = {"parsing": 0, "embedding": 1, "indexed": 2}
    assert [order[s] for s in stages] == sorted(order[s] for s in stages)
    percents = [p["percent"] for p in broadcasts]
    assert percents == sorted(percents)
    assert percents[-1] == 100
    assert all(p["id"] == document.pk for p in broadcasts)
    final = broadcasts[-1]
    assert final["chunks"] == final["chunks_total"] == final["chunks_done"] > 0
    assert final["pages"] == final["pages_done"] == 2


def test_progress_is_written_to_the_row_while_embedding(db, troubleshooting, settings):
    small_chunks(settings)
    settings.NANOSENTRI_EMBEDDING_BATCH = 2
    document = add(troubleshooting)
    seen: list[tuple] = []

    settings.NANOSENTRI_INGEST_WINDOW_PAGES = 1

    def spy(d):
        row = Document.objects.get(pk=d.pk)
        seen.append((row.status, row.chunks_done, row.pages_done, row.page_count))

    with mock.patch("apps.knowledge.services.broadcast", side_effect=spy):
        document_ingest(document_id=document.pk)

    embedding = [s for s in seen if s[0] == "embedding"]
    assert embedding, seen
    assert [s[2] for s in embedding] == [1, 2]  # page by page (a window of one page here)
    assert all(s[3] == 2 for s in embedding)  # the row knows the page count up front
    assert 0 < embedding[0][1] < embedding[-1][1]  # chunks written so far
    assert seen[-1][0] == "indexed"


def test_running_ingest_twice_leaves_no_duplicate_vectors(db, troubleshooting, settings):
    small_chunks(settings)
    document = add(troubleshooting)

    document_ingest(document_id=document.pk)
    first = stored_node_ids(get_vector_index(), document.pk)
    document_ingest(document_id=document.pk)

    document.refresh_from_db()
    assert document.status == Document.Status.INDEXED
    assert document.chunk_count > 2
    again = stored_node_ids(get_vector_index(), document.pk)
    assert len(again) == document.chunk_count
    assert again == first
    assert len([p for p in all_passages() if p.document_id == document.pk]) == document.chunk_count


def test_reingest_with_fewer_chunks_removes_the_old_extra_vectors(db, troubleshooting, settings):
    small_chunks(settings)
    document = add(troubleshooting)
    document_ingest(document_id=document.pk)
    many = Document.objects.get(pk=document.pk).chunk_count

    settings.NANOSENTRI_CHUNK_TOKENS = 200
    document_ingest(document_id=document.pk)

    document.refresh_from_db()
    assert document.chunk_count < many
    assert len(stored_node_ids(get_vector_index(), document.pk)) == document.chunk_count


def test_ingest_only_touches_its_own_document(db, troubleshooting, tmp_path):
    printer, notes = add(troubleshooting), add_notes(tmp_path)
    document_ingest(document_id=notes.pk)
    notes_ids = stored_node_ids(get_vector_index(), notes.pk)

    document_ingest(document_id=printer.pk)
    document_ingest(document_id=printer.pk)

    assert stored_node_ids(get_vector_index(), notes.pk) == notes_ids
    notes.refresh_from_db()
    assert len(notes_ids) == notes.chunk_count


def test_a_corrupt_pdf_fails_with_a_readable_reason(db, tmp_path, broadcasts):
    document = add_bytes(tmp_path, "broken.pdf", corrupt_pdf())

    result = document_ingest(document_id=document.pk)

    document.refresh_from_db()
    assert result == document
    assert document.status == Document.Status.FAILED
    assert document.error.startswith("corrupt or unreadable PDF")
    assert document.indexed_at is None
    assert stored_node_ids(get_vector_index(), document.pk) == []
    assert broadcasts[-1]["status"] == "failed"
    assert broadcasts[-1]["error"] == document.error


def test_a_failed_reingest_removes_the_vectors_of_the_previous_run(db, troubleshooting):
    document = add(troubleshooting)
    document_ingest(document_id=document.pk)
    assert stored_node_ids(get_vector_index(), document.pk)

    # The stored file turns out broken (disk error, replaced by hand, ...).
    services.document_path(document).write_bytes(corrupt_pdf())
    document_ingest(document_id=document.pk)

    document.refresh_from_db()
    assert document.status == Document.Status.FAILED
    assert stored_node_ids(get_vector_index(), document.pk) == []


def test_an_image_only_pdf_fails_with_no_text_layer(db, tmp_path, settings):
    settings.NANOSENTRI_OCR = "off"
    document = add_bytes(tmp_path, "scan.pdf", image_only_pdf(3))

    document_ingest(document_id=document.pk)

    document.refresh_from_db()
    assert document.status == Document.Status.FAILED
    assert "no text layer — the PDF holds only images and OCR is turned off" in document.error
    assert stored_node_ids(get_vector_index(), document.pk) == []


def test_blank_pages_fail_even_with_ocr(db, tmp_path):
    document = add_bytes(tmp_path, "blank.pdf", image_only_pdf(2))

    document_ingest(document_id=document.pk)

    document.refresh_from_db()
    assert document.status == Document.Status.FAILED
    assert document.error == "no text found: the PDF holds only images and OCR recognised no text in them"


def test_an_encrypted_pdf_fails_asking_to_remove_the_password(db, tmp_path):
    document = add_bytes(tmp_path, "locked.pdf", make_pdf(["wiring"], user_password="secret"))

    document_ingest(document_id=document.pk)

    document.refresh_from_db()
    assert document.status == Document.Status.FAILED
    assert "encrypted" in document.error


def test_empty_pages_are_recorded(db, tmp_path):
    pdf = make_pdf(
        [
            "Error E01 means the relay is stuck. Switch off the mains and check the contactor.",
            None,
            "Fuse F2 protects the control board. Replace it with a 315 mA slow-blow fuse.",
        ]
    )
    document = add_bytes(tmp_path, "mixed.pdf", pdf)

    document_ingest(document_id=document.pk)

    document.refresh_from_db()
    assert document.status == Document.Status.INDEXED
    assert document.page_count == 3
    assert document.empty_pages == [2]
    assert {p.page for p in all_passages("relay fuse") if p.document_id == document.pk} == {1, 3}


def test_a_missing_stored_file_fails(db, troubleshooting):
    document = add(troubleshooting)
    services.document_path(document).unlink()

    document_ingest(document_id=document.pk)

    document.refresh_from_db()
    assert document.status == Document.Status.FAILED
    assert document.error == "the uploaded file is missing from storage"


def test_a_deleted_document_is_skipped(db, troubleshooting, broadcasts):
    document = add(troubleshooting)
    pk = document.pk
    Document.objects.filter(pk=pk).delete()

    assert document_ingest(document_id=pk) is None
    assert stored_node_ids(get_vector_index(), pk) == []
    assert broadcasts == []


def test_a_document_deleted_while_ingesting_takes_its_vectors_back_out(db, troubleshooting):
    from ingest import pipeline

    document = add(troubleshooting)
    real = pipeline.ingest_file

    def ingest_then_delete(*args, **kwargs):
        result = real(*args, **kwargs)
        assert stored_node_ids(get_vector_index(), document.pk)  # written...
        Document.objects.filter(pk=document.pk).delete()  # ...when the admin deletes it
        return result

    with mock.patch("ingest.pipeline.ingest_file", side_effect=ingest_then_delete):
        assert document_ingest(document_id=document.pk) is None

    assert stored_node_ids(get_vector_index(), document.pk) == []


def test_an_unexpected_error_marks_the_document_failed_and_reraises(db, troubleshooting):
    document = add(troubleshooting)

    with mock.patch("models.embedding.MockEmbedder.embed", side_effect=RuntimeError("out of memory")):
        with pytest.raises(RuntimeError):
            document_ingest(document_id=document.pk)

    document.refresh_from_db()
    assert document.status == Document.Status.FAILED
    assert document.error == "internal error: RuntimeError: out of memory"


def test_document_vectors_delete_removes_only_that_documents_vectors(db, troubleshooting, tmp_path):
    printer, notes = add(troubleshooting), add_notes(tmp_path)
    document_ingest(document_id=printer.pk)
    document_ingest(document_id=notes.pk)
    notes_ids = stored_node_ids(get_vector_index(), notes.pk)

    document_vectors_delete(document_id=printer.pk)

    assert stored_node_ids(get_vector_index(), printer.pk) == []
    assert stored_node_ids(get_vector_index(), notes.pk) == notes_ids
    assert {p.document_id for p in all_passages()} == {notes.pk}


def test_delete_then_the_task_removes_the_vectors(db, troubleshooting, django_capture_on_commit_callbacks):
    from apps.knowledge.tasks import delete_vectors_task

    document = add(troubleshooting)
    document_ingest(document_id=document.pk)
    pk = document.pk

    run_now = mock.patch("apps.knowledge.tasks.delete_vectors_task.delay", side_effect=delete_vectors_task)
    with run_now as delay:
        with django_capture_on_commit_callbacks(execute=True):
            services.document_delete(document=document)

    delay.assert_called_once_with(pk)
    assert stored_node_ids(get_vector_index(), pk) == []


# --- retrieval filters ------------------------------------------------------------------------


@pytest.mark.parametrize("status", ["queued", "parsing", "embedding", "failed"])
def test_search_ignores_chunks_of_documents_that_are_not_indexed(db, troubleshooting, tmp_path, status):
    printer, notes = add(troubleshooting), add_notes(tmp_path)
    document_ingest(document_id=printer.pk)
    document_ingest(document_id=notes.pk)
    Document.objects.filter(pk=notes.pk).update(status=status)

    passages, _ = passages_search(EVSE_QUESTION, top_k=10, min_score=0.0)

    assert passages, "the other manual still answers"
    assert {p.document_id for p in passages} == {printer.pk}


def test_search_ignores_chunks_of_deleted_documents(db, tmp_path):
    notes = add_notes(tmp_path)
    document_ingest(document_id=notes.pk)
    assert passages_search(EVSE_QUESTION, min_score=0.0)[0]
    Document.objects.filter(pk=notes.pk).delete()  # the worker has not removed the vectors yet

    passages, _ = passages_search(EVSE_QUESTION, min_score=0.0)

    assert passages == []


def test_search_drops_hits_below_the_min_score(db, troubleshooting, settings, no_relative_cutoff):
    small_chunks(settings)
    document = add(troubleshooting)
    document_ingest(document_id=document.pk)
    everything, _ = passages_search(QUESTION, top_k=6, min_score=-1.0)
    assert len(everything) >= 3
    scores = sorted((p.score for p in everything), reverse=True)
    cut = (scores[0] + scores[-1]) / 2
    assert scores[0] > cut > scores[-1]

    kept, _ = passages_search(QUESTION, top_k=6, min_score=cut)

    # The order is the fused one (vectors and BM25); the floor is on cosine, after the first passage.
    assert kept[0] == everything[0]
    assert all(p.score >= cut for p in kept[1:])
    assert 0 < len(kept) < len(everything)


def test_search_uses_the_configured_min_score_by_default(db, tmp_path, settings, no_relative_cutoff):
    notes = add_notes(tmp_path)
    document_ingest(document_id=notes.pk)

    settings.NANOSENTRI_RETRIEVAL_MIN_SCORE = 1.01  # nothing can be that similar
    assert passages_search(EVSE_QUESTION)[0] == []

    settings.NANOSENTRI_RETRIEVAL_MIN_SCORE = -1.0
    assert passages_search(EVSE_QUESTION)[0]


def test_search_returns_at_most_top_k(db, troubleshooting, settings, no_relative_cutoff):
    small_chunks(settings)
    document = add(troubleshooting)
    document_ingest(document_id=document.pk)

    passages, _ = passages_search(QUESTION, top_k=2, min_score=-1.0)

    assert len(passages) == 2


def test_storing_a_streamed_file_over_the_limit_leaves_nothing_behind(db, settings):
    settings.NANOSENTRI_MAX_UPLOAD_MB = 1
    piece = b"x" * (512 * 1024)

    with pytest.raises(services.UploadRejected):
        services.document_store(name="big.log", chunks=[piece, piece, b"y"], size=None)

    assert Document.objects.count() == 0
    upload_dir = Path(settings.UPLOAD_DIR)
    assert [p for p in upload_dir.rglob("*") if p.is_file()] == []


def test_these_tests_use_the_fast_fakes(settings):
    # Guard: never a real model or Chroma on disk here.
    assert settings.NANOSENTRI_EMBEDDING_BACKEND == "mock"
    assert settings.NANOSENTRI_VECTOR_STORE == "memory"
