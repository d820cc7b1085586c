"""A real Celery worker process ingests uploads; the web side sees the result and the progress.

Runs on the embedded defaults (filesystem broker, SQLite file) and, in the second pass of
scripts/test.sh, on PostgreSQL + Redis (Redis broker and Redis channel layer).
"""
import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection

from apps.knowledge.models import Document
from apps.knowledge.retrieval import passages_search

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parents[1]


def _database_url() -> str:
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    user = db.get("USER") or "postgres"
    host = db.get("HOST") or "127.0.0.1"
    port = db.get("PORT") or 5432
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    return f"postgres://{user}{password}@{host}:{port}/{db['NAME']}"


@pytest.fixture
def shared_dirs(real_stack):
    """The test process and the worker share the session data directory (uploads, Chroma)."""
    real_stack.UPLOAD_DIR = Path(django_settings.DATA_DIR) / "uploads"
    real_stack.CHROMA_DIR = Path(django_settings.DATA_DIR) / "chroma-worker"
    return real_stack


class Worker:
    def __init__(self, chroma_dir: Path, log_path: Path, extra_env: dict | None = None, pool: str = "solo"):
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "nanosentri_site.settings",
            "NANOSENTRI_DATA_DIR": str(django_settings.DATA_DIR),
            "DATABASE_URL": _database_url(),
            "NANOSENTRI_EMBEDDING_BACKEND": "sentence-transformers",
            "NANOSENTRI_VECTOR_STORE": "chroma",
            "NANOSENTRI_LLM_BACKEND": "mock",
            "NANOSENTRI_CHROMA_COLLECTION": django_settings.NANOSENTRI_CHROMA_COLLECTION,
        }
        self.log = open(log_path, "ab")
        env["NANOSENTRI_CHROMA_DIR"] = str(chroma_dir)
        env.update(extra_env or {})
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "nanosentri_site", "worker", "--pool", pool, "--concurrency", "1",
             "-l", "INFO", "--without-gossip", "--without-mingle", "--without-heartbeat"],
            cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT,
        )

    def kill(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()
        self.log.close()


@pytest.fixture
def worker_factory(shared_dirs, tmp_path):
    workers = []

    def start(pool="solo", **extra_env):
        w = Worker(shared_dirs.CHROMA_DIR, tmp_path / "worker.log", extra_env, pool)
        workers.append(w)
        return w

    yield start
    for w in workers:
        w.stop()
    log = tmp_path / "worker.log"
    if log.exists():
        print(log.read_text(errors="replace")[-3000:])  # shown when a test fails


def _wait_status(pk, statuses, timeout=180):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        doc = Document.objects.filter(pk=pk).first()
        if doc is None or doc.status in statuses:
            return doc
        time.sleep(0.3)
    raise AssertionError(f"document {pk} never reached {statuses}; last status {doc.status}")


def _upload(client, path: Path):
    response = client.post("/documents/", {"files": SimpleUploadedFile(path.name, path.read_bytes())})
    assert response.status_code == 302
    return Document.objects.get(original_name=path.name)


def _vector_count(document_id: int) -> int:
    from apps.knowledge.vector_index import get_vector_index

    index = get_vector_index()
    index.refresh()
    collection = index.store._collection
    return len(collection.get(where={"document_id": str(document_id)})["ids"])


def test_upload_is_ingested_by_a_real_worker_and_cited_by_the_web_process(client, admin_user, smartevse, worker_factory):
    worker_factory()
    client.force_login(admin_user)
    doc = _upload(client, smartevse)
    doc = _wait_status(doc.pk, {"indexed", "failed"})
    assert doc.status == "indexed", doc.error
    assert doc.page_count == 2 and doc.chunk_count > 0

    _cited_then_deleted(client, doc, smartevse.name)


def _reader_processes(worker_pid: int) -> list[int]:
    """The page reader processes (ingest/reader_process.py) of the worker's pool processes."""
    def parent(pid: int) -> int:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return int(stat.rsplit(")", 1)[1].split()[1])

    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and b"ingest.reader_process" in (entry / "cmdline").read_bytes():
                if parent(parent(int(entry.name))) == worker_pid:
                    found.append(int(entry.name))
        except (FileNotFoundError, ProcessLookupError):  # gone meanwhile
            continue
    return sorted(found)


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds the worker's processes in /proc")
def test_a_prefork_worker_reads_the_pages_in_one_kept_reader_process(client, admin_user, quick_start, smartevse,
                                                                     worker_factory):
    """docker-compose's worker: a prefork pool, whose pool process (a daemonic billiard process) starts the
    page reader process (OCR included) and keeps it for the next document."""
    worker = worker_factory(pool="prefork")
    client.force_login(admin_user)
    first = _wait_status(_upload(client, quick_start).pk, {"indexed", "failed"})
    assert first.status == "indexed", first.error
    assert first.page_sources.get("ocr") == [10, 11] and first.empty_pages == []
    readers = _reader_processes(worker.proc.pid)
    assert len(readers) == 1

    second = _wait_status(_upload(client, smartevse).pk, {"indexed", "failed"})
    assert second.status == "indexed", second.error
    assert second.page_count == 2 and second.chunk_count > 0
    assert _reader_processes(worker.proc.pid) == readers
    assert _vector_count(first.pk) == first.chunk_count and _vector_count(second.pk) == second.chunk_count


def _lexical_documents(question: str) -> set[str]:
    from apps.knowledge.vector_index import manual_index_fresh
    from ingest.lexical import query_terms

    return {h.metadata["document_id"] for h in manual_index_fresh().lexical_search(query_terms(question), top_k=20)}


def _cited_then_deleted(client, doc, name: str) -> None:
    """The web process finds the worker's chunks by vector and by BM25; a delete takes both out."""
    question = "What does ERROR HIGH TEMP mean and when does charging resume?"
    passages, _ = passages_search(question)
    assert passages and passages[0].file_name == name and passages[0].page == 2
    assert passages[0].lexical > 0  # the worker wrote the terms, this process read them
    assert str(doc.pk) in _lexical_documents("ERROR HIGH TEMP")

    # Deleting it takes its vectors and terms out (the worker does the index write).
    client.post(f"/documents/{doc.pk}/delete/")
    deadline = time.monotonic() + 60
    while _vector_count(doc.pk) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert _vector_count(doc.pk) == 0
    passages, _ = passages_search(question)
    assert all(p.document_id != doc.pk for p in passages)
    assert str(doc.pk) not in _lexical_documents("ERROR HIGH TEMP")


@pytest.fixture
def chroma_server(tmp_path):
    """A Chroma server process (``chroma run``, from the chromadb package) on a free port."""
    import socket
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = open(tmp_path / "chroma.log", "ab")
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "chroma"), "run", "--path", str(tmp_path / "chroma-server"),
         "--host", "127.0.0.1", "--port", str(port)],
        stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "ANONYMIZED_TELEMETRY": "False"},
    )
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v2/heartbeat", timeout=2)
            break
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                raise AssertionError("the Chroma server did not start: " + (tmp_path / "chroma.log").read_text()[-2000:])
            time.sleep(0.3)
    yield port
    proc.terminate()
    proc.wait(timeout=20)
    log.close()


def test_with_a_chroma_server_the_worker_writes_and_the_web_process_reads_both_halves(
    client, admin_user, smartevse, worker_factory, chroma_server, settings
):
    settings.NANOSENTRI_VECTOR_STORE = "chroma-http"
    settings.NANOSENTRI_CHROMA_HOST = "127.0.0.1"
    settings.NANOSENTRI_CHROMA_PORT = chroma_server
    worker_factory(NANOSENTRI_VECTOR_STORE="chroma-http", NANOSENTRI_CHROMA_HOST="127.0.0.1",
                   NANOSENTRI_CHROMA_PORT=str(chroma_server))
    client.force_login(admin_user)
    doc = _wait_status(_upload(client, smartevse).pk, {"indexed", "failed"})
    assert doc.status == "indexed", doc.error

    _cited_then_deleted(client, doc, smartevse.name)


def test_a_killed_ingest_is_redone_without_duplicates(client, admin_user, quick_start, worker_factory):
    worker = worker_factory()
    client.force_login(admin_user)
    doc = _upload(client, quick_start)
    doc = _wait_status(doc.pk, {"embedding", "indexed", "failed"})
    worker.kill()  # mid-ingest, if the machine was not faster than us
    worker_factory()  # a new worker picks the interrupted document up again
    doc = _wait_status(doc.pk, {"indexed", "failed"})
    assert doc.status == "indexed", doc.error
    assert doc.page_sources.get("ocr") == [10, 11] and doc.empty_pages == []
    assert _vector_count(doc.pk) == doc.chunk_count


def test_progress_reaches_the_channel_layer_when_it_is_shared(client, admin_user, troubleshooting, worker_factory):
    if not django_settings.NANOSENTRI_SHARED_CHANNEL_LAYER:
        pytest.skip("embedded default: no shared channel layer (progress follows the database; see tests/test_documents_progress.py)")
    from asgiref.sync import async_to_sync
    from channels.db import database_sync_to_async
    from channels_redis.core import RedisChannelLayer

    worker_factory()
    client.force_login(admin_user)

    async def listen_while_uploading():
        # One event loop for the whole conversation with Redis (the layer's queues bind to it).
        layer = RedisChannelLayer(**django_settings.CHANNEL_LAYERS["default"]["CONFIG"])  # as the app's
        channel = await layer.new_channel()
        await layer.group_add("documents", channel)
        doc = await database_sync_to_async(_upload)(client, troubleshooting)
        statuses = []
        deadline = time.monotonic() + 180
        while "indexed" not in statuses and time.monotonic() < deadline:
            try:
                message = await asyncio.wait_for(layer.receive(channel), timeout=5)
            except asyncio.TimeoutError:
                continue
            if message["document"]["id"] == doc.pk:
                statuses.append(message["document"]["status"])
        await layer.group_discard("documents", channel)
        return statuses

    statuses = async_to_sync(listen_while_uploading)()
    assert statuses and statuses[-1] == "indexed", statuses
    assert "embedding" in statuses


def _wait_recording(pk, statuses, timeout=300):
    """Like _wait_status, also returning every status seen on the way."""
    seen, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        doc = Document.objects.get(pk=pk)
        if not seen or seen[-1] != doc.status:
            seen.append(doc.status)
        if doc.status in statuses:
            return doc, seen
        time.sleep(0.2)
    raise AssertionError(f"document {pk} never reached {statuses}; seen {seen}")


def test_scanned_pages_are_read_by_ocr_and_cited_as_such(client, admin_user, quick_start, worker_factory):
    worker_factory()
    client.force_login(admin_user)
    doc, seen = _wait_recording(_upload(client, quick_start).pk, {"indexed", "failed"})
    assert doc.status == "indexed", doc.error
    assert "ocr" in seen, seen  # the progress shows the OCR step
    assert doc.page_sources["ocr"] == [10, 11] and doc.empty_pages == []

    # Page 10 is a picture of the troubleshooting flowchart, page 11 of the wiring diagram.
    passages, _ = passages_search("Ender-3 troubleshooting flowchart: the hot bed is not heated, what do I check?")
    assert (passages[0].page, passages[0].source) == (10, "ocr"), [(p.page, p.text[:60]) for p in passages]
    passages, _ = passages_search("Ender-3 circuit wiring diagram: where is the bed thermistor connected?")
    assert 11 in [p.page for p in passages[:3]], [(p.page, p.text[:60]) for p in passages]
    assert "thermistor" in next(p for p in passages if p.page == 11).text.lower()
    page = client.get("/documents/").content.decode()
    assert "Read by OCR: pages 10–11" in page


def test_a_broken_text_layer_is_repaired_and_its_numbers_cited(client, admin_user, worker_factory):
    from tests.conftest import SHARED

    path = SHARED / "library" / "LibreSolar_MPPT-1210-HUS_User_Manual.pdf"
    if not path.exists():
        pytest.skip(f"shared manuals not found under {SHARED} (CI always has them)")
    worker_factory()
    client.force_login(admin_user)
    doc = _wait_status(_upload(client, path).pk, {"indexed", "failed"})
    assert doc.status == "indexed", doc.error
    assert 9 in doc.repaired_pages and not doc.ocr_pages

    passages, _ = passages_search("What is the maximum charge current of the MPPT 1210 HUS?")
    assert passages[0].page == 9 and "Maximum charge current 10 A" in passages[0].text, passages[0]
    passages, _ = passages_search("What is the topping / absorption voltage of the MPPT 1210 HUS?")
    spec = next((p for p in passages[:3] if p.page == 10), None)  # page 5 explains the topping stage
    assert spec and "Topping / absorption voltage 14.4 V" in spec.text, [(p.page, p.text[:80]) for p in passages]
    assert "/one.pnum" not in " ".join(p.text for p in passages)
    page = client.get("/documents/").content.decode()
    assert "Text layer repaired: pages 1–11" in page


def test_an_admin_cancels_a_long_ingest(client, admin_user, worker_factory, tmp_path):
    from tests.factories import make_pdf

    pages = [f"Pump {n} relay K{n} wiring and fuse F{n}. " * 20 for n in range(400)]
    path = tmp_path / "long-manual.pdf"
    path.write_bytes(make_pdf(pages))
    worker_factory(NANOSENTRI_INGEST_WINDOW_PAGES="4")
    client.force_login(admin_user)
    doc = _wait_status(_upload(client, path).pk, {"embedding", "indexed", "failed"})
    assert doc.status == "embedding", doc.error

    assert client.post(f"/documents/{doc.pk}/cancel/").status_code == 302

    doc = _wait_status(doc.pk, {"cancelled", "indexed", "failed"}, timeout=120)
    assert doc.status == "cancelled", doc.error
    assert doc.pages_done < 400
    assert _vector_count(doc.pk) == 0
