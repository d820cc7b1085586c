"""Backup, restore and index rebuilds of a whole install (docs/deploy.md, "Backup and restore").

A backup is one tar.gz (``apps.maintenance.archive``):

- ``manifest.json``: app version, Django version, database engine, applied migrations, row
  counts per model, the uploads, whether the index is included, and the SHA-256 of every file;
- ``database/data.jsonl``: every row of the app's models, as Django's ``dumpdata`` writes them
  (primary keys kept, foreign keys to users, groups and permissions by natural key). The same
  file restores into SQLite or PostgreSQL. It is read from one consistent snapshot: SQLite's
  backup API copy, or one REPEATABLE READ transaction on PostgreSQL;
- ``uploads/``: the uploaded files, as stored (content-addressed);
- ``chroma/``: the embedded Chroma directory (NANOSENTRI_VECTOR_STORE=chroma), its SQLite files
  copied through the backup API as well.

Restore checks the whole archive before it changes anything, then loads the database, puts the
uploads in place and either puts the index files back or rebuilds the indexes from the uploads
through the normal ingest service (``documents_reindex``), as ``manage.py reindex --all`` does.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import tomllib
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Callable, Iterable

import django
from django.apps import apps
from django.conf import settings
from django.core.management import call_command
from django.db import DEFAULT_DB_ALIAS, connections, transaction
from django.db.migrations.loader import MigrationLoader
from django.db.migrations.recorder import MigrationRecorder
from django.db.utils import load_backend
from django.utils import timezone

from apps.maintenance.archive import (
    FORMAT,
    FORMAT_VERSION,
    ArchiveReader,
    BackupError,
    archive_write,
    file_digest,
    sqlite_copy,
)

DUMP = "database/data.jsonl"
UPLOADS = "uploads"
CHROMA = "chroma"
# Not in the dump: written by every migrate (content types, permissions) or short-lived
# (sessions, and django-axes' login failures).
EXCLUDED_APPS = ("contenttypes", "sessions", "axes")
EXCLUDED_MODELS = ("auth.permission",)
# Rows a fresh migrate writes itself: a database holding only these is empty.
SEEDED_MODELS = ("auth.group", "assets.devicetype", "assets.sensorspec")
_INCOMING = ".incoming-"  # an upload still being received (apps.knowledge.services)
_SNAPSHOT_ALIAS = "nanosentri_backup_snapshot"

Say = Callable[[str], None]

__all__ = [
    "BackupError", "BackupResult", "RestoreResult", "backup_create", "backup_restore", "target_contents",
    "documents_reindex", "indexes_rebuild",
]


@dataclass
class BackupResult:
    path: Path
    manifest: dict


@dataclass
class RestoreResult:
    manifest: dict
    index: str  # "restored" (the archive's index files) or "rebuilt" (from the uploads)
    reindexed: list[int] = field(default_factory=list)  # documents ingested again
    queued: list[int] = field(default_factory=list)  # documents handed to the worker
    incidents: int = 0  # incidents indexed again (on a rebuild)
    warnings: list[str] = field(default_factory=list)


def _quiet(message: str) -> None:
    pass


# ------------------------------------------------------------------------------------ backup


def backup_create(
    *, path: Path, include_index: bool = True, overwrite: bool = False, say: Say = _quiet
) -> BackupResult:
    """Write a backup of the database, the uploads and (when embedded) the Chroma index to ``path``.

    ``path`` may be a directory: the archive is then named after the time. The archive appears
    under its name only once complete (mode 0600: it holds password hashes).
    """
    target = Path(path)
    if target.is_dir():
        target = target / f"nanosentri-backup-{timezone.now():%Y%m%d-%H%M%S}.tar.gz"
    if not target.parent.is_dir():
        raise BackupError(f"{target.parent}: no such directory")
    if target.exists() and not overwrite:
        raise BackupError(f"{target} already exists (--force overwrites it)")

    with tempfile.TemporaryDirectory(prefix=".nanosentri-backup-", dir=target.parent) as tmp:
        staging = Path(tmp)
        say("database: taking a consistent snapshot")
        database = _database_dump(staging / DUMP)
        files: list[tuple[str, Path]] = [(DUMP, staging / DUMP)]

        uploads = _upload_files()
        files += uploads
        stored = {name.removeprefix(UPLOADS + "/") for name, _ in uploads}
        missing = [
            {"document": d["id"], "name": d["name"], "stored_path": d["stored_path"]}
            for d in database.pop("documents") if d["stored_path"] not in stored
        ]
        say(f"uploads: {len(uploads)} files")

        index = {
            "vector_store": settings.NANOSENTRI_VECTOR_STORE,
            "embedding_backend": settings.NANOSENTRI_EMBEDDING_BACKEND,
            "collections": _collections(),
            "included": False,
            "documents_in_progress": database.pop("in_progress"),
        }
        chroma_dir = Path(settings.CHROMA_DIR)
        if include_index and settings.NANOSENTRI_VECTOR_STORE == "chroma" and chroma_dir.is_dir():
            index_files = _chroma_stage(chroma_dir, staging / CHROMA)
            files += index_files
            index["included"] = bool(index_files)
            say(f"index: {len(index_files)} files from {chroma_dir}")

        digests = {}
        for name, source in files:
            sha256, size = file_digest(source)
            digests[name] = {"sha256": sha256, "size": size}
        manifest = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "created": timezone.now().isoformat(),
            "app_version": _app_version(),
            "django_version": django.get_version(),
            "database": database,
            "uploads": {
                "count": len(uploads),
                "bytes": sum(digests[name]["size"] for name, _ in uploads),
                "missing": missing,
            },
            "index": index,
            "files": digests,
        }
        partial = target.with_name(f".{target.name}.partial-{os.getpid()}")
        try:
            archive_write(partial, manifest, files)
            partial.chmod(0o600)
            os.replace(partial, target)
        finally:
            partial.unlink(missing_ok=True)
    return BackupResult(path=target, manifest=manifest)


def _database_dump(dump: Path) -> dict:
    connection = connections[DEFAULT_DB_ALIAS]
    dump.parent.mkdir(parents=True, exist_ok=True)
    if connection.vendor == "sqlite":
        name = str(connection.settings_dict["NAME"])
        if not name or name.startswith(":memory:") or "mode=memory" in name or not Path(name).is_file():
            raise BackupError(f"the SQLite database {name!r} is not a file: nothing to back up")
        snapshot = dump.parent / "snapshot.sqlite3"
        sqlite_copy(Path(name), snapshot)
        try:
            with _sqlite_alias(snapshot) as alias:
                return _dump(alias, dump)
        finally:
            snapshot.unlink(missing_ok=True)
    nested = connection.in_atomic_block
    with transaction.atomic():
        if connection.vendor == "postgresql" and not nested:
            # Every query of the dump then sees the same snapshot, and writers are not held up.
            with connection.cursor() as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        return _dump(DEFAULT_DB_ALIAS, dump)


@contextmanager
def _sqlite_alias(path: Path):
    """A temporary database alias for the snapshot file, so ``dumpdata`` can read from it.

    The connection is registered under the alias but not in the DATABASES settings: it is
    this process's own, and nothing else (connections.all(), close_old_connections) sees it.
    """
    config = {**connections.settings[DEFAULT_DB_ALIAS], "NAME": str(path), "OPTIONS": {}}
    wrapper = load_backend(config["ENGINE"]).DatabaseWrapper(config, _SNAPSHOT_ALIAS)
    connections[_SNAPSHOT_ALIAS] = wrapper
    try:
        yield _SNAPSHOT_ALIAS
    finally:
        wrapper.close()
        del connections[_SNAPSHOT_ALIAS]


def _dump(alias: str, dump: Path) -> dict:
    applied = sorted(f"{app}.{name}" for app, name in MigrationRecorder(connections[alias]).applied_migrations())
    call_command(
        "dumpdata",
        database=alias,
        natural_foreign=True,
        use_base_manager=True,
        exclude=[*EXCLUDED_APPS, *EXCLUDED_MODELS],
        format="jsonl",
        output=str(dump),
        verbosity=0,
    )
    counts: Counter = Counter()
    documents = []
    for row in _rows(dump):
        counts[row["model"]] += 1
        if row["model"] == "knowledge.document":
            documents.append(_document(row))
    from apps.knowledge.models import Document

    return {
        "engine": connections[DEFAULT_DB_ALIAS].vendor,
        "dump": DUMP,
        "format": "jsonl",
        "migrations": applied,
        "counts": dict(sorted(counts.items())),
        "documents": documents,
        "in_progress": [d["id"] for d in documents if d["status"] in Document.IN_PROGRESS],
    }


def _rows(dump: Path) -> Iterable[dict]:
    with open(dump, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                yield json.loads(line)


def _document(row: dict) -> dict:
    fields = row["fields"]
    return {
        "id": row["pk"],
        "name": fields["original_name"],
        "stored_path": fields["stored_path"],
        "content_hash": fields["content_hash"],
        "status": fields["status"],
    }


def _upload_files() -> list[tuple[str, Path]]:
    root = Path(settings.UPLOAD_DIR)
    if not root.is_dir():
        return []
    return [
        (f"{UPLOADS}/{path.relative_to(root).as_posix()}", path)
        for path in sorted(root.rglob("*"))
        if path.is_file() and not path.is_symlink() and not path.name.startswith(_INCOMING)
    ]


def _chroma_stage(root: Path, staging: Path) -> list[tuple[str, Path]]:
    """Copy the Chroma directory to ``staging``: SQLite files through the backup API (their
    -wal/-shm companions are folded in), the segment files as they are."""
    files = []
    for path in sorted(root.rglob("*")):
        if not path.is_file() or path.is_symlink() or path.name.endswith(("-wal", "-shm", "-journal")):
            continue
        relative = path.relative_to(root).as_posix()
        copy = staging / relative
        copy.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix == ".sqlite3":
            sqlite_copy(path, copy)
        else:
            shutil.copy2(path, copy)
        files.append((f"{CHROMA}/{relative}", copy))
    return files


def _collections() -> dict:
    return {
        "manuals": settings.NANOSENTRI_CHROMA_COLLECTION,
        "incidents": settings.NANOSENTRI_CHROMA_INCIDENT_COLLECTION,
    }


def _app_version() -> str:
    try:
        return tomllib.loads((Path(settings.BASE_DIR) / "pyproject.toml").read_text())["project"]["version"]
    except (OSError, KeyError, tomllib.TOMLDecodeError):
        return "unknown"


def _dumped_models() -> list:
    return [
        model for model in apps.get_models()
        if model._meta.app_label not in EXCLUDED_APPS
        and model._meta.label_lower not in EXCLUDED_MODELS
        and model._meta.managed and not model._meta.proxy
    ]


# ----------------------------------------------------------------------------------- restore


def target_contents() -> list[str]:
    """What the configured data directory and database already hold (empty: nothing)."""
    found = []
    uploads = len(_upload_files())
    if uploads:
        found.append(f"{uploads} uploaded file{'s' if uploads != 1 else ''} in {settings.UPLOAD_DIR}")
    chroma_dir = Path(settings.CHROMA_DIR)
    if settings.NANOSENTRI_VECTOR_STORE == "chroma" and chroma_dir.is_dir() and any(chroma_dir.iterdir()):
        found.append(f"a vector store in {chroma_dir}")
    tables = set(connections[DEFAULT_DB_ALIAS].introspection.table_names())
    rows = []
    for model in _dumped_models():
        if model._meta.label_lower in SEEDED_MODELS or model._meta.db_table not in tables:
            continue
        count = model._base_manager.count()
        if count:
            rows.append(f"{count} {model._meta.label_lower}")
    if rows:
        more = f" and {len(rows) - 4} more models" if len(rows) > 4 else ""
        found.append(f"rows in the database ({', '.join(rows[:4])}{more})")
    return found


def backup_restore(
    *, path: Path, force: bool = False, reindex: bool = False, say: Say = _quiet
) -> RestoreResult:
    """Restore a backup into the configured data directory and database.

    The target must be empty (``target_contents``) unless ``force``, which replaces what is there.
    Every file of the archive is checked against the manifest, and every document's file against
    the document's own checksum, before anything in the target changes. The index is put back
    from the archive when it holds one for this vector store and these collections; otherwise,
    or with ``reindex``, it is rebuilt from the uploads. Documents that were being ingested when
    the backup was made are queued for the worker again.
    """
    with ArchiveReader(path) as reader:
        manifest = reader.manifest
        _check_migrations(manifest)
        occupied = target_contents()
        if occupied and not force:
            raise BackupError(
                "the target is not empty: " + "; ".join(occupied)
                + ". Restore into an empty data directory and database, or pass --force to replace them."
            )
        data_dir = Path(settings.DATA_DIR)
        data_dir.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".restore-", dir=data_dir))
        try:
            say(f"checking {len(manifest['files'])} files against the manifest")
            reader.extract_to(staging)
            documents = [_document(row) for row in _rows(staging / DUMP) if row["model"] == "knowledge.document"]
            warnings = _check_uploads(documents, manifest, staging)

            say("database: loading")
            _database_load(staging / DUMP, manifest)
            _replace_dir(staging / UPLOADS, Path(settings.UPLOAD_DIR))
            say(f"uploads: {manifest['uploads']['count']} files")

            _drop_index_clients()
            result = RestoreResult(manifest=manifest, index="", warnings=warnings)
            why_rebuild = _why_rebuild(manifest, reindex)
            if why_rebuild is None:
                _replace_dir(staging / CHROMA, Path(settings.CHROMA_DIR))
                result.index = "restored"
                say(f"index: restored into {settings.CHROMA_DIR}")
            else:
                say(f"index: rebuilding from the uploads ({why_rebuild})")
                if settings.NANOSENTRI_VECTOR_STORE == "chroma":
                    _replace_dir(None, Path(settings.CHROMA_DIR))
                reindexed, result.incidents = indexes_rebuild(say=say)
                result.reindexed = [d.pk for d in reindexed]
                result.index = "rebuilt"
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    in_progress = sorted(set(manifest["index"].get("documents_in_progress", [])) & {d["id"] for d in documents})
    if in_progress:
        result.queued = [d.pk for d in documents_reindex(document_ids=in_progress, queue=True)]
        say(f"{len(result.queued)} document(s) were being ingested when the backup was made: "
            "queued for the worker")
    return result


def _check_migrations(manifest: dict) -> None:
    """The dump loads only into the schema it was made from: the same migrations, no more, no less."""
    loader = MigrationLoader(None, ignore_no_migrations=True)
    known = {f"{app}.{name}" for app, name in loader.disk_migrations}
    archived = set(manifest.get("database", {}).get("migrations", []))
    version = manifest.get("app_version", "unknown")
    newer = sorted(archived - known)
    if newer:
        raise BackupError(
            f"the backup was made by a newer NanoSentri (version {version}, migrations this code lacks: "
            f"{', '.join(newer[:3])}{' …' if len(newer) > 3 else ''}). Restore it with that version."
        )
    older = sorted(known - archived)
    if older:
        raise BackupError(
            f"the backup was made by an older NanoSentri (version {version}; it lacks migrations "
            f"{', '.join(older[:3])}{' …' if len(older) > 3 else ''}). Restore it with that version, "
            "then upgrade and run manage.py migrate."
        )


def _check_uploads(documents: list[dict], manifest: dict, staging: Path) -> list[str]:
    files = manifest["files"]
    warnings = []
    for d in documents:
        stored = PurePosixPath(d["stored_path"])
        if stored.is_absolute() or ".." in stored.parts:
            raise BackupError(f"document {d['id']} ({d['name']}): unsafe stored path {d['stored_path']!r}")
        entry = files.get(f"{UPLOADS}/{stored.as_posix()}")
        if entry is None:
            warnings.append(f"document {d['id']} ({d['name']}): its file was not in the backup (upload it again)")
        elif entry["sha256"] != d["content_hash"]:
            raise BackupError(
                f"document {d['id']} ({d['name']}): the file in the backup does not match the document's "
                f"checksum (sha256 {entry['sha256'][:12]}…, the document says {d['content_hash'][:12]}…)"
            )
    return warnings


def _database_load(dump: Path, manifest: dict) -> None:
    call_command("migrate", interactive=False, verbosity=0)
    call_command("flush", interactive=False, verbosity=0)
    # flush runs post_migrate, which writes rows of its own (the role groups): the backup's
    # rows replace them, with their own primary keys.
    with transaction.atomic():
        for model in _dumped_models():
            model._base_manager.all().delete()
    call_command("loaddata", str(dump), verbosity=0)
    for label, expected in manifest["database"].get("counts", {}).items():
        actual = apps.get_model(label)._base_manager.count()
        if actual != expected:
            raise BackupError(f"the restored database has {actual} rows of {label}; the backup has {expected}")


def _replace_dir(source: Path | None, target: Path) -> None:
    """Make ``target`` hold what ``source`` holds (empty when ``source`` is None or missing)."""
    if target.exists():
        shutil.rmtree(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    if source is not None and source.is_dir():
        shutil.move(str(source), str(target))
    else:
        target.mkdir()


def _why_rebuild(manifest: dict, reindex: bool) -> str | None:
    index = manifest.get("index", {})
    if reindex:
        return "asked for"
    if not index.get("included"):
        return "the backup holds no index"
    if settings.NANOSENTRI_VECTOR_STORE != "chroma":
        return f"this install uses the {settings.NANOSENTRI_VECTOR_STORE} vector store"
    if index.get("collections") != _collections():
        return "this install names its collections differently"
    if index.get("embedding_backend") != settings.NANOSENTRI_EMBEDDING_BACKEND:
        return "this install uses another embedder"
    return None


def _drop_index_clients() -> None:
    """Forget this process's open indexes: the files under them are about to change."""
    from apps.knowledge.vector_index import reset_vector_index

    reset_vector_index()
    if settings.NANOSENTRI_VECTOR_STORE == "chroma":
        from chromadb.api.shared_system_client import SharedSystemClient

        SharedSystemClient.clear_system_cache()


# ----------------------------------------------------------------------------------- reindex


def documents_reindex(
    *, document_ids: list[int] | None = None, queue: bool = False, clear: bool = False, say: Say = _quiet
) -> list:
    """Ingest documents again through the normal ingest service; returns them, refreshed.

    ``document_ids``: default every indexed document. Without ``queue`` the ingest runs in this
    process, which is then the index's writer: the worker should not run meanwhile (embedded
    Chroma takes one writing process). ``queue`` hands them to the worker instead. ``clear``
    empties the manuals' collection first, so passages of documents no longer in the database
    go too.
    """
    from apps.knowledge import services as knowledge
    from apps.knowledge.models import Document
    from apps.knowledge.vector_index import get_vector_index

    if document_ids is None:
        documents = list(Document.objects.filter(status=Document.Status.INDEXED).order_by("pk"))
    else:
        documents = list(Document.objects.filter(pk__in=document_ids).order_by("pk"))
        unknown = sorted(set(document_ids) - {d.pk for d in documents})
        if unknown:
            raise BackupError(f"no document with id {', '.join(map(str, unknown))}")
    if clear:
        get_vector_index().clear()
    done = []
    for document in documents:
        if queue:
            knowledge.document_reindex(document=document)
        else:
            knowledge.document_ingest(document_id=document.pk)
        document.refresh_from_db()
        say(f"{document.pk}\t{document.original_name}\t{document.status}"
            + (f"\t{document.error}" if document.error else ""))
        done.append(document)
    return done


def indexes_rebuild(*, say: Say = _quiet) -> tuple[list, int]:
    """Rebuild both search indexes from the database and the uploads, in this process:
    every indexed document is ingested again (into an emptied collection), every resolved or
    closed incident embedded again. Returns (documents, incident count)."""
    from apps.incidents.services import incidents_reindex

    documents = documents_reindex(clear=True, say=say)
    incidents = incidents_reindex()
    say(f"incidents: {incidents} indexed")
    return documents, incidents
