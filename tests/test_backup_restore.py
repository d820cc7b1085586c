"""manage.py backup / restore / reindex in this process: the manifest, refusals and damaged archives.

The fast fakes (mock embedder, in-memory vector store) stand in for the index here, so every
restore rebuilds it; tests/test_integration_backup_restore.py runs the real stack in other
processes, with the archive's own index and with a rebuild.
"""
import hashlib
import io
import json
import shutil
import tarfile
from io import StringIO
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.db import connection

from apps.knowledge import services as knowledge
from apps.knowledge.models import Document
from apps.knowledge.retrieval import passages_search
from apps.knowledge.vector_index import get_vector_index
from apps.maintenance.archive import ArchiveError
from apps.maintenance.services import BackupError, backup_create, backup_restore, target_contents

pytestmark = [pytest.mark.database, pytest.mark.django_db(transaction=True)]

MANUAL = (
    "Heater fuse F2 protects the 24 V heater supply of the weather station.\n\n"
    "If the heater does not warm the sensor head, check fuse F2 and replace it with a 3 A slow-blow fuse.\n"
)
OTHER = "The wind vane reports direction in degrees from north; recalibrate it with command 0WU,A=1.\n"
QUESTION = "Which fuse protects the heater supply?"


@pytest.fixture
def no_dispatch(monkeypatch):
    """Ingest runs here, as the worker would; nothing is sent to a broker."""
    queued = []
    monkeypatch.setattr("apps.knowledge.tasks.ingest_document_task.delay", lambda pk: queued.append(pk))
    return queued


def _add(tmp_path, name, text) -> Document:
    path = tmp_path / "incoming" / name
    path.parent.mkdir(exist_ok=True)
    path.write_text(text)
    document, _ = knowledge.document_add_path(path=path)
    knowledge.document_ingest(document_id=document.pk)
    document.refresh_from_db()
    assert document.status == Document.Status.INDEXED, document.error
    return document


@pytest.fixture
def library(tmp_path, no_dispatch, settings):
    user = get_user_model().objects.create_user("alice", password="s3cret-pass")
    document = _add(tmp_path, "heater.txt", MANUAL)
    return {"user": user, "document": document}


def _cited(question=QUESTION):
    return [(p.document_id, p.file_name, p.page) for p in passages_search(question, min_score=-1.0)[0]]


def _members(archive: Path) -> list[tuple[tarfile.TarInfo, bytes]]:
    with tarfile.open(archive, "r:gz") as tar:
        return [(m, tar.extractfile(m).read()) for m in tar.getmembers()]


def _rewrite(archive: Path, change) -> None:
    """Write the archive again, each member's bytes passed through ``change(name, data)``."""
    members = _members(archive)
    with tarfile.open(archive, "w:gz") as tar:
        for info, data in members:
            data = change(info.name, data)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def _wipe(settings):
    """An empty target: no rows, no uploads."""
    call_command("flush", interactive=False, verbosity=0)
    shutil.rmtree(settings.UPLOAD_DIR, ignore_errors=True)


def test_it_writes_one_archive_with_a_manifest_and_checksums(tmp_path, library, settings):
    result = backup_create(path=tmp_path)  # a directory: the archive is named after the time

    assert result.path.parent == tmp_path and result.path.name.startswith("nanosentri-backup-")
    assert result.path.stat().st_mode & 0o777 == 0o600
    members = _members(result.path)
    assert members[0][0].name == "manifest.json"
    manifest = json.loads(members[0][1])
    assert manifest == result.manifest
    assert manifest["format"] == "nanosentri-backup" and manifest["app_version"] == "0.1.0"
    assert manifest["database"]["engine"] == connection.vendor
    assert "knowledge.0001_initial" in manifest["database"]["migrations"]
    assert manifest["database"]["counts"]["knowledge.document"] == 1
    assert manifest["database"]["counts"]["auth.user"] == 1
    assert "sessions.session" not in manifest["database"]["counts"]
    document = library["document"]
    upload = f"uploads/{document.stored_path}"
    assert manifest["uploads"] == {"count": 1, "bytes": len(MANUAL.encode()), "missing": []}
    assert manifest["index"]["included"] is False  # the in-memory store has no files
    for info, data in members[1:]:
        assert manifest["files"][info.name] == {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
    assert {info.name for info, _ in members[1:]} == {"database/data.jsonl", upload}
    assert manifest["files"][upload]["sha256"] == document.content_hash


def test_restore_into_an_empty_target_brings_everything_back(tmp_path, library, settings):
    before = _cited()
    assert before and before[0][0] == library["document"].pk
    archive = backup_create(path=tmp_path / "backup.tar.gz").path
    _wipe(settings)
    assert target_contents() == [] and _cited() == []

    result = backup_restore(path=archive)

    assert result.index == "rebuilt" and result.reindexed == [library["document"].pk]
    document = Document.objects.get()
    assert document.pk == library["document"].pk and document.status == Document.Status.INDEXED
    assert hashlib.sha256(knowledge.document_path(document).read_bytes()).hexdigest() == document.content_hash
    user = get_user_model().objects.get()
    assert user.pk == library["user"].pk and user.check_password("s3cret-pass")
    assert _cited() == before
    # The key sequences moved past the restored rows (PostgreSQL): new rows get new keys.
    assert get_user_model().objects.create_user("dave").pk > user.pk
    assert _add(tmp_path, "wind.txt", OTHER).pk > document.pk


def test_a_document_being_ingested_is_queued_again_and_a_lost_file_is_reported(tmp_path, library, settings,
                                                                              no_dispatch):
    pending_path = tmp_path / "incoming" / "wind.txt"
    pending_path.write_text(OTHER)
    pending, _ = knowledge.document_add_path(path=pending_path)  # queued; the worker has not run
    lost_path = tmp_path / "incoming" / "lost.txt"
    lost_path.write_text("A manual whose stored file was deleted by hand.\n")
    lost = _add(tmp_path, "lost.txt", lost_path.read_text())
    knowledge.document_path(lost).unlink()

    backup = backup_create(path=tmp_path / "backup.tar.gz")
    assert backup.manifest["index"]["documents_in_progress"] == [pending.pk]
    assert [m["document"] for m in backup.manifest["uploads"]["missing"]] == [lost.pk]
    _wipe(settings)
    no_dispatch.clear()

    result = backup_restore(path=backup.path)

    assert result.queued == [pending.pk] and no_dispatch == [pending.pk]
    assert Document.objects.get(pk=pending.pk).status == Document.Status.QUEUED
    assert result.warnings == [f"document {lost.pk} (lost.txt): its file was not in the backup (upload it again)"]
    # The rebuild could not read the lost file: that document says so instead of citing nothing.
    lost.refresh_from_db()
    assert lost.status == Document.Status.FAILED and "missing" in lost.error


def test_it_refuses_a_target_that_is_not_empty(tmp_path, library, settings):
    archive = backup_create(path=tmp_path / "backup.tar.gz").path
    later = _add(tmp_path, "wind.txt", OTHER)

    with pytest.raises(CommandError, match="the target is not empty: 2 uploaded files .*--force"):
        call_command("restore", str(archive), stdout=StringIO())

    assert set(Document.objects.values_list("pk", flat=True)) == {library["document"].pk, later.pk}


def test_force_replaces_what_is_there(tmp_path, library, settings):
    archive = backup_create(path=tmp_path / "backup.tar.gz").path
    later = _add(tmp_path, "wind.txt", OTHER)
    later_file = knowledge.document_path(later)

    call_command("restore", str(archive), "--force", stdout=StringIO())

    assert list(Document.objects.values_list("pk", flat=True)) == [library["document"].pk]
    assert not later_file.exists()
    assert {c[0] for c in _cited("wind direction recalibrate")} <= {library["document"].pk}


def test_the_rebuild_path_of_reindex_gives_the_index_back(tmp_path, library):
    before = _cited()
    get_vector_index().clear()
    assert _cited() == []

    out = StringIO()
    call_command("reindex", "--all", stdout=out)

    assert f"{library['document'].pk}\theater.txt\tindexed" in out.getvalue()
    assert _cited() == before


def test_reindex_can_queue_for_the_worker_and_wants_ids_or_all(library, no_dispatch):
    no_dispatch.clear()  # the upload's own queueing
    call_command("reindex", str(library["document"].pk), "--queue", stdout=StringIO())
    assert no_dispatch == [library["document"].pk]
    with pytest.raises(CommandError, match="give document ids or --all"):
        call_command("reindex", stdout=StringIO())
    with pytest.raises(CommandError, match="no document with id 999"):
        call_command("reindex", "999", stdout=StringIO())


def test_a_backup_refuses_to_overwrite_an_archive(tmp_path, library):
    archive = backup_create(path=tmp_path / "backup.tar.gz").path
    with pytest.raises(CommandError, match="already exists"):
        call_command("backup", str(archive), stdout=StringIO())
    call_command("backup", str(archive), "--force", stdout=StringIO())


# ------------------------------------------------------------------ missing and damaged archives


def _unchanged(library):
    assert list(Document.objects.values_list("pk", flat=True)) == [library["document"].pk]
    assert knowledge.document_path(library["document"]).exists()


def test_a_missing_archive_is_a_clear_error(tmp_path, library):
    with pytest.raises(CommandError, match="nowhere.tar.gz: no such file"):
        call_command("restore", str(tmp_path / "nowhere.tar.gz"), "--force", stdout=StringIO())
    _unchanged(library)


def test_a_file_that_is_not_an_archive_is_a_clear_error(tmp_path, library):
    junk = tmp_path / "junk.tar.gz"
    junk.write_bytes(b"this is not a backup\n" * 100)
    with pytest.raises(CommandError, match="not a readable tar.gz archive"):
        call_command("restore", str(junk), "--force", stdout=StringIO())
    _unchanged(library)


def test_a_tar_gz_without_a_manifest_is_not_a_backup(tmp_path, library):
    other = tmp_path / "other.tar.gz"
    with tarfile.open(other, "w:gz") as tar:
        info = tarfile.TarInfo("notes.txt")
        info.size = 5
        tar.addfile(info, io.BytesIO(b"hello"))
    with pytest.raises(ArchiveError, match="no manifest.json at its start"):
        backup_restore(path=other, force=True)
    _unchanged(library)


def test_a_truncated_archive_changes_nothing(tmp_path, library):
    archive = backup_create(path=tmp_path / "backup.tar.gz").path
    data = archive.read_bytes()
    archive.write_bytes(data[: len(data) * 2 // 3])

    with pytest.raises(CommandError, match="damaged or cut short"):
        call_command("restore", str(archive), "--force", stdout=StringIO())
    _unchanged(library)


def test_an_upload_that_does_not_match_its_checksum_changes_nothing(tmp_path, library):
    archive = backup_create(path=tmp_path / "backup.tar.gz").path
    _rewrite(archive, lambda name, data: data.replace(b"3 A", b"5 A") if name.startswith("uploads/") else data)

    with pytest.raises(ArchiveError, match=r"checksum mismatch for uploads/.*\.txt"):
        backup_restore(path=archive, force=True)
    _unchanged(library)


def test_a_document_whose_file_is_not_its_own_changes_nothing(tmp_path, library):
    # Archive and manifest agree (a consistent forgery), but the file is not the document's content.
    archive = backup_create(path=tmp_path / "backup.tar.gz").path
    forged = MANUAL.replace("3 A", "5 A").encode()

    def change(name, data):
        if name.startswith("uploads/"):
            return forged
        if name == "manifest.json":
            manifest = json.loads(data)
            upload = next(n for n in manifest["files"] if n.startswith("uploads/"))
            manifest["files"][upload] = {"sha256": hashlib.sha256(forged).hexdigest(), "size": len(forged)}
            return json.dumps(manifest).encode()
        return data

    _rewrite(archive, change)
    with pytest.raises(BackupError, match="does not match the document's checksum"):
        backup_restore(path=archive, force=True)
    _unchanged(library)


@pytest.mark.parametrize("edit,message", [
    (lambda migrations: migrations + ["knowledge.9999_from_the_future"], "made by a newer NanoSentri"),
    (lambda migrations: [m for m in migrations if m != "knowledge.0003_versions_ocr_cancel"], "made by an older NanoSentri"),
])
def test_a_backup_of_another_schema_is_refused(tmp_path, library, edit, message):
    archive = backup_create(path=tmp_path / "backup.tar.gz").path

    def change(name, data):
        if name != "manifest.json":
            return data
        manifest = json.loads(data)
        manifest["database"]["migrations"] = edit(manifest["database"]["migrations"])
        return json.dumps(manifest).encode()

    _rewrite(archive, change)
    with pytest.raises(BackupError, match=message):
        backup_restore(path=archive, force=True)
    _unchanged(library)
