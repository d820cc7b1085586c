"""Several workers: who holds an ingest, what a starting worker takes back, and late redeliveries.

The processes themselves (two real workers, one killed mid-ingest) are in tests/test_topology.py.
"""
from pathlib import Path
from unittest import mock

import pytest

from apps.knowledge import services
from apps.knowledge.models import Document
from apps.knowledge.services import document_ingest, documents_requeue_interrupted
from apps.knowledge.vector_index import get_vector_index
from tests.factories import stored_node_ids

pytestmark = pytest.mark.django_db

NOTES = "Error NO COMM: the sensorbox does not respond. Check the RS485 wiring.\fHold both buttons to reset."


@pytest.fixture
def delay():
    with mock.patch("apps.knowledge.tasks.ingest_document_task.delay") as delay:
        yield delay


def _document(tmp_path: Path, name: str, *, status: str = Document.Status.QUEUED, worker: str = "") -> Document:
    path = tmp_path / "incoming" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{name}\n{NOTES}")
    document, _ = services.document_add_path(path=path)
    Document.objects.filter(pk=document.pk).update(status=status, ingest_worker=worker)
    document.refresh_from_db()
    return document


def _queued(delay, django_capture_on_commit_callbacks, run) -> list[int]:
    with django_capture_on_commit_callbacks(execute=True):
        result = run()
    assert sorted(call.args[0] for call in delay.call_args_list) == sorted(result)
    return result


def test_it_takes_back_what_its_own_previous_run_held(tmp_path, delay, django_capture_on_commit_callbacks):
    mine = _document(tmp_path, "mine.txt", status=Document.Status.EMBEDDING, worker="w1@host")
    asked = []

    def alive(names):
        asked.append(names)
        return names

    requeued = _queued(delay, django_capture_on_commit_callbacks,
                       lambda: documents_requeue_interrupted(worker="w1@host", workers_alive=alive))

    assert requeued == [mine.pk]
    mine.refresh_from_db()
    assert mine.status == Document.Status.QUEUED
    assert asked == []  # its own name needs no asking


def test_it_leaves_the_documents_of_a_worker_that_answers(tmp_path, delay, django_capture_on_commit_callbacks):
    mine = _document(tmp_path, "mine.txt", status=Document.Status.OCR, worker="w1@host")
    theirs = _document(tmp_path, "theirs.txt", status=Document.Status.EMBEDDING, worker="w2@host")
    asked = []

    def alive(names):
        asked.append(set(names))
        return {"w2@host"}

    requeued = _queued(delay, django_capture_on_commit_callbacks,
                       lambda: documents_requeue_interrupted(worker="w1@host", workers_alive=alive))

    assert requeued == [mine.pk]
    assert asked == [{"w2@host"}]
    theirs.refresh_from_db()
    assert (theirs.status, theirs.ingest_worker) == (Document.Status.EMBEDDING, "w2@host")


def test_it_takes_the_documents_of_a_worker_that_does_not_answer(tmp_path, delay, django_capture_on_commit_callbacks):
    dead = _document(tmp_path, "dead.txt", status=Document.Status.PARSING, worker="w2@host")
    unknown = _document(tmp_path, "legacy.txt", status=Document.Status.EMBEDDING, worker="")
    done = _document(tmp_path, "done.txt", status=Document.Status.INDEXED, worker="w2@host")
    waiting = _document(tmp_path, "waiting.txt", status=Document.Status.QUEUED)

    requeued = _queued(delay, django_capture_on_commit_callbacks,
                       lambda: documents_requeue_interrupted(worker="w1@host", workers_alive=lambda names: set()))

    assert sorted(requeued) == sorted([dead.pk, unknown.pk])
    assert Document.objects.get(pk=done.pk).status == Document.Status.INDEXED
    assert Document.objects.get(pk=waiting.pk).status == Document.Status.QUEUED


def test_a_delivery_records_the_worker_that_took_it(tmp_path):
    document = _document(tmp_path, "notes.txt")

    document_ingest(document_id=document.pk, worker="w2@host")

    document.refresh_from_db()
    assert (document.status, document.ingest_worker) == (Document.Status.INDEXED, "w2@host")


def test_a_late_redelivery_of_an_indexed_document_does_nothing(tmp_path):
    document = _document(tmp_path, "notes.txt")
    document_ingest(document_id=document.pk, worker="w1@host")
    before = Document.objects.get(pk=document.pk)
    ids = stored_node_ids(get_vector_index(), document.pk)

    with mock.patch("ingest.pipeline.ingest_file") as ingest_file:
        assert document_ingest(document_id=document.pk, worker="w2@host") is None

    ingest_file.assert_not_called()
    after = Document.objects.get(pk=document.pk)
    assert (after.status, after.ingest_worker, after.started_at) == ("indexed", "w1@host", before.started_at)
    assert stored_node_ids(get_vector_index(), document.pk) == ids


def test_a_redelivery_of_an_interrupted_ingest_is_taken(tmp_path):
    """A pool process lost mid-ingest: Celery puts the message back (reject_on_worker_lost)."""
    document = _document(tmp_path, "notes.txt", status=Document.Status.EMBEDDING, worker="w1@host")

    document_ingest(document_id=document.pk, worker="w1@host")

    assert Document.objects.get(pk=document.pk).status == Document.Status.INDEXED


def test_the_task_names_its_worker(tmp_path):
    from apps.knowledge.tasks import ingest_document_task

    document = _document(tmp_path, "notes.txt")
    ingest_document_task.push_request(hostname="w9@host")  # as the worker w9@host runs it
    try:
        with mock.patch("apps.knowledge.services.document_ingest") as ingest:
            ingest_document_task.run(document.pk)
    finally:
        ingest_document_task.pop_request()

    ingest.assert_called_once_with(document_id=document.pk, worker="w9@host")


def test_the_starting_worker_passes_its_name_and_pings_the_others(tmp_path):
    from apps.knowledge import tasks

    class Consumer:
        hostname = "w1@host"

    with mock.patch("apps.knowledge.services.documents_requeue_interrupted") as requeue:
        tasks.requeue_interrupted_ingests(sender=Consumer())

    requeue.assert_called_once_with(worker="w1@host", workers_alive=tasks.workers_answering)
