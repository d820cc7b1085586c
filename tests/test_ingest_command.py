"""`manage.py ingest`: queue files, optionally wait, one line per document, non-zero on failure."""
from io import StringIO
from unittest import mock

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from apps.knowledge.models import Document
from apps.knowledge.vector_index import get_vector_index
from tests.factories import corrupt_pdf, stored_node_ids, write


@pytest.fixture
def eager(settings):
    """Run Celery tasks in-process, as NANOSENTRI_CELERY_EAGER=1 does."""
    from nanosentri_site.celery import app

    # Read first: the app loads its conf from Django settings lazily, on first access.
    saved = (app.conf.task_always_eager, app.conf.task_eager_propagates)
    settings.CELERY_TASK_ALWAYS_EAGER = True
    app.conf.task_always_eager = True
    app.conf.task_eager_propagates = True
    yield app
    app.conf.task_always_eager, app.conf.task_eager_propagates = saved


@pytest.fixture
def on_commit(django_capture_on_commit_callbacks):
    return django_capture_on_commit_callbacks


@pytest.fixture
def ingest_delay():
    with mock.patch("apps.knowledge.tasks.ingest_document_task.delay") as delay:
        yield delay


def run(*args) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("ingest", *[str(a) for a in args], stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def lines(text: str) -> list[list[str]]:
    return [line.split("\t") for line in text.splitlines() if line.strip()]


def test_it_prints_one_line_per_queued_document(db, smartevse, troubleshooting, ingest_delay):
    out, err = run(smartevse, troubleshooting)

    documents = list(Document.objects.order_by("pk"))
    assert [d.original_name for d in documents] == [smartevse.name, troubleshooting.name]
    assert lines(out) == [
        [str(d.pk), d.original_name, "queued", "pages=-", "chunks=-"] for d in documents
    ]
    assert err == ""


def test_wait_indexes_and_reports_pages_and_chunks(transactional_db, eager, smartevse, troubleshooting):
    out, err = run("--wait", "--timeout", "60", smartevse, troubleshooting)

    documents = list(Document.objects.order_by("pk"))
    assert [d.status for d in documents] == ["indexed", "indexed"]
    assert all(d.chunk_count > 0 for d in documents)
    assert lines(out) == [
        [str(d.pk), d.original_name, "indexed", f"pages={d.page_count}", f"chunks={d.chunk_count}"]
        for d in documents
    ]
    assert lines(out)[0][3] == "pages=2"
    assert err == ""
    for d in documents:
        assert len(stored_node_ids(get_vector_index(), d.pk)) == d.chunk_count


def test_wait_with_a_corrupt_file_fails_the_command(transactional_db, eager, tmp_path, troubleshooting):
    broken = write(tmp_path, "broken.pdf", corrupt_pdf())
    out, err = StringIO(), StringIO()

    with pytest.raises(CommandError) as exc:
        call_command("ingest", "--wait", str(troubleshooting), str(broken), stdout=out, stderr=err)

    assert exc.value.returncode == 1
    assert "1 file(s) failed" in str(exc.value)
    failed = Document.objects.get(original_name="broken.pdf")
    assert failed.status == "failed"
    assert Document.objects.get(original_name=troubleshooting.name).status == "indexed"
    # the lines are printed before the command fails, the failure with its reason
    rows = {row[1]: row for row in lines(out.getvalue())}
    assert rows["broken.pdf"][2] == "failed"
    assert rows["broken.pdf"][5].startswith("corrupt or unreadable PDF")
    assert rows[troubleshooting.name][2] == "indexed"


def test_an_unsupported_file_is_rejected_on_stderr(db, tmp_path, ingest_delay):
    docx = write(tmp_path, "manual.docx", b"PK\x03\x04 word document")

    out, err = run(docx)

    assert out == ""
    assert err.startswith("rejected\t")
    assert "manual.docx" in err and "unsupported file type .docx" in err
    assert Document.objects.count() == 0
    ingest_delay.assert_not_called()


def test_a_missing_path_is_rejected(db, tmp_path, ingest_delay):
    out, err = run(tmp_path / "nope.pdf")

    assert err.startswith("rejected\t") and "no such file" in err
    assert Document.objects.count() == 0


def test_a_rejected_file_with_wait_exits_non_zero(transactional_db, eager, tmp_path, troubleshooting):
    docx = write(tmp_path, "manual.docx", b"PK\x03\x04 word document")
    out, err = StringIO(), StringIO()

    with pytest.raises(CommandError) as exc:
        call_command("ingest", "--wait", str(troubleshooting), str(docx), stdout=out, stderr=err)

    assert exc.value.returncode == 1
    assert "rejected" in err.getvalue()
    assert lines(out.getvalue())[0][2] == "indexed"


def test_the_same_file_twice_is_one_document(db, smartevse, ingest_delay):
    run(smartevse)
    first = Document.objects.get()

    out, _ = run(smartevse)

    assert Document.objects.count() == 1
    assert lines(out) == [[str(first.pk), smartevse.name, "queued", "pages=-", "chunks=-"]]


def test_a_failed_document_is_retried_when_ingested_again(transactional_db, eager, tmp_path):
    path = write(tmp_path, "notes.txt", "Error E01 means the relay is stuck; check the contactor wiring.")
    run("--wait", path)
    document = Document.objects.get()
    Document.objects.filter(pk=document.pk).update(status="failed", error="worker crashed")

    out, _ = run("--wait", path)

    document.refresh_from_db()
    assert document.status == "indexed" and document.error == ""
    assert lines(out)[0][2] == "indexed"


def test_reindex_requeues_an_indexed_document(db, smartevse, ingest_delay, on_commit):
    with on_commit(execute=True):
        run(smartevse)
    document = Document.objects.get()
    Document.objects.filter(pk=document.pk).update(status="indexed", chunk_count=5, page_count=2)
    ingest_delay.reset_mock()

    with on_commit(execute=True):
        run("--reindex", smartevse)

    document.refresh_from_db()
    assert document.status == "queued"
    ingest_delay.assert_called_once_with(document.pk)


def test_without_reindex_an_indexed_document_is_left_alone(db, smartevse, ingest_delay, on_commit):
    with on_commit(execute=True):
        run(smartevse)
    document = Document.objects.get()
    Document.objects.filter(pk=document.pk).update(status="indexed", chunk_count=5, page_count=2)
    ingest_delay.reset_mock()

    with on_commit(execute=True):
        out, _ = run(smartevse)

    assert lines(out) == [[str(document.pk), smartevse.name, "indexed", "pages=2", "chunks=5"]]
    ingest_delay.assert_not_called()


def test_wait_times_out_when_no_worker_runs(db, smartevse, ingest_delay):
    with pytest.raises(CommandError) as exc:
        run("--wait", "--timeout", "0", smartevse)

    assert "timed out" in str(exc.value)
    assert "is the worker running?" in str(exc.value)


def test_the_eager_fixture_restores_the_celery_app():
    from nanosentri_site.celery import app

    # Guard for the tests above: eager mode must not leak into other test files.
    assert not app.conf.task_always_eager


def test_paths_are_required(db):
    with pytest.raises(CommandError):
        call_command("ingest", stdout=StringIO(), stderr=StringIO())


def test_a_text_file_is_ingested_with_wait(transactional_db, eager, tmp_path):
    path = write(tmp_path, "service.log", "2024-01-01 ERROR E05 earth fault\f2024-01-02 INFO restart ok")

    out, _ = run("--wait", path)

    [row] = lines(out)
    assert row[1:] == ["service.log", "indexed", "pages=2", "chunks=2"]
    assert row[0] == str(Document.objects.get().pk)
