"""Writes for documents: upload, queue, ingest (in the worker), re-index, delete."""
from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from apps.knowledge.models import Document
from apps.knowledge.progress import broadcast
from ingest.parse import SUPPORTED_EXTENSIONS, ParseError

log = logging.getLogger(__name__)


class UploadRejected(Exception):
    """The file was not accepted; the message says why."""


def _upload_dir() -> Path:
    path = Path(settings.UPLOAD_DIR)
    path.mkdir(parents=True, exist_ok=True)
    return path


def document_path(document: Document) -> Path:
    return Path(settings.UPLOAD_DIR) / document.stored_path


def _check_name_and_size(name: str, size: int | None) -> str:
    extension = Path(name).suffix.lower()
    if extension not in SUPPORTED_EXTENSIONS:
        allowed = ", ".join(sorted(e.lstrip(".").upper() for e in SUPPORTED_EXTENSIONS))
        raise UploadRejected(f"{name}: unsupported file type {extension or '(none)'} (allowed: {allowed})")
    limit = settings.NANOSENTRI_MAX_UPLOAD_MB * 1024 * 1024
    if size is not None and size > limit:
        raise UploadRejected(
            f"{name}: {size / 1024 / 1024:.1f} MB is over the {settings.NANOSENTRI_MAX_UPLOAD_MB} MB limit"
        )
    if size == 0:
        raise UploadRejected(f"{name}: the file is empty")
    return extension


def document_store(*, name: str, chunks, size: int | None = None, user=None) -> tuple[Document, bool]:
    """Store a file (given as an iterable of byte chunks) and queue it for ingestion.

    Returns (document, created). Identical content already stored returns the existing
    document and costs no new embeddings.
    """
    name = os.path.basename(name)[:255] or "unnamed"
    extension = _check_name_and_size(name, size)
    limit = settings.NANOSENTRI_MAX_UPLOAD_MB * 1024 * 1024
    digest = hashlib.sha256()
    written = 0
    upload_dir = _upload_dir()
    with tempfile.NamedTemporaryFile(dir=upload_dir, prefix=".incoming-", delete=False) as tmp:
        try:
            for piece in chunks:
                written += len(piece)
                if written > limit:
                    raise UploadRejected(f"{name}: over the {settings.NANOSENTRI_MAX_UPLOAD_MB} MB limit")
                digest.update(piece)
                tmp.write(piece)
        except BaseException:
            tmp.close()
            os.unlink(tmp.name)
            raise
    if written == 0:
        os.unlink(tmp.name)
        raise UploadRejected(f"{name}: the file is empty")
    content_hash = digest.hexdigest()
    existing = Document.objects.filter(content_hash=content_hash).first()
    if existing:
        os.unlink(tmp.name)
        if existing.status == Document.Status.FAILED:
            # Uploading a failed file again is a request to try again (the cause may be fixed).
            with transaction.atomic():
                document_queue(document=existing)
        return existing, False
    stored = Path(content_hash[:2]) / f"{content_hash}{extension}"
    (upload_dir / stored).parent.mkdir(parents=True, exist_ok=True)
    shutil.move(tmp.name, upload_dir / stored)
    with transaction.atomic():
        document = Document.objects.create(
            original_name=name,
            stored_path=str(stored),
            extension=extension,
            size_bytes=written,
            content_hash=content_hash,
            uploaded_by=user if getattr(user, "is_authenticated", False) else None,
        )
        document_queue(document=document)
    return document, True


def document_upload(*, uploaded_file, user) -> tuple[Document, bool]:
    """A file from a Django upload form."""
    return document_store(name=uploaded_file.name, chunks=uploaded_file.chunks(), size=uploaded_file.size, user=user)


def document_add_path(*, path: Path, user=None) -> tuple[Document, bool]:
    """A file on disk (the ingest command, the demo manuals)."""
    path = Path(path)
    if not path.is_file():
        raise UploadRejected(f"{path}: no such file")

    def read():
        with open(path, "rb") as f:
            while piece := f.read(1024 * 1024):
                yield piece

    return document_store(name=path.name, chunks=read(), size=path.stat().st_size, user=user)


def document_queue(*, document: Document) -> None:
    """Reset the document to queued and send it to the worker once the transaction commits."""
    from apps.knowledge.tasks import ingest_document_task

    Document.objects.filter(pk=document.pk).update(
        status=Document.Status.QUEUED, error="", pages_done=0, chunks_done=0, chunks_total=0, updated=timezone.now()
    )
    document.refresh_from_db()
    transaction.on_commit(lambda: ingest_document_task.delay(document.pk))


def document_reindex(*, document: Document) -> None:
    with transaction.atomic():
        document_queue(document=document)
    broadcast(document)


def document_delete(*, document: Document) -> None:
    """Delete the document now; its vectors are removed by the worker.

    Only the worker process writes to the vector store (embedded Chroma is not safe with two
    writing processes). Retrieval ignores chunks of documents that are not in the database,
    so the deleted manual stops being cited at once.
    """
    from apps.knowledge.tasks import delete_vectors_task

    document_id = document.pk
    path = document_path(document)
    with transaction.atomic():
        document.delete()
        transaction.on_commit(lambda: delete_vectors_task.delay(document_id))
    path.unlink(missing_ok=True)


def document_vectors_delete(*, document_id: int) -> None:
    """Take a deleted document's chunks out of the index: its vectors and its BM25 terms together."""
    from apps.knowledge.vector_index import get_vector_index

    get_vector_index().delete_document(document_id)


class _ProgressWriter:
    """Write progress to the row (at most every 0.3 s, always on a stage change) and broadcast."""

    def __init__(self, document: Document):
        self.document = document
        self.last_write = 0.0
        self.last_stage = None

    def __call__(self, stage: str, *, pages_done: int, pages_total: int, chunks_done: int, chunks_total: int) -> None:
        now = time.monotonic()
        finished_batch = chunks_total and chunks_done == chunks_total
        if stage == self.last_stage and now - self.last_write < 0.3 and not finished_batch:
            return
        self.last_stage, self.last_write = stage, now
        fields = {
            "status": stage,
            "pages_done": pages_done,
            "chunks_done": chunks_done,
            "chunks_total": chunks_total,
            "updated": timezone.now(),
        }
        if pages_total:
            fields["page_count"] = pages_total
        Document.objects.filter(pk=self.document.pk).update(**fields)
        for key, value in fields.items():
            setattr(self.document, key, value)
        broadcast(self.document)


def document_ingest(*, document_id: int) -> Document | None:
    """Run in the Celery worker: parse, chunk, embed and index one document.

    Safe to run again for the same document (a retry, a redelivery after a killed worker,
    a re-index): old vectors are replaced, never duplicated.
    """
    from apps.knowledge.vector_index import get_vector_index
    from ingest.pipeline import ingest_file
    from models.embedding import get_embedder

    claimed = Document.objects.filter(pk=document_id).update(
        status=Document.Status.PARSING, started_at=timezone.now(), error="", updated=timezone.now()
    )
    if not claimed:
        log.info("document %s is gone; nothing to ingest", document_id)
        return None
    document = Document.objects.get(pk=document_id)
    broadcast(document)
    if document.extension in (".log", ".csv"):
        _readings_from_log(document)
    index = get_vector_index()
    try:
        result = ingest_file(
            document_path(document),
            document_id=document.pk,
            file_name=document.original_name,
            index=index,
            embedder=get_embedder(),
            chunk_tokens=settings.NANOSENTRI_CHUNK_TOKENS,
            chunk_overlap=settings.NANOSENTRI_CHUNK_OVERLAP,
            batch_size=settings.NANOSENTRI_EMBEDDING_BATCH,
            progress=_ProgressWriter(document),
        )
    except (ParseError, FileNotFoundError) as exc:
        reason = str(exc) if isinstance(exc, ParseError) else "the uploaded file is missing from storage"
        return _mark_failed(document, reason, index)
    except Exception as exc:
        log.exception("ingest of document %s failed", document_id)
        _mark_failed(document, f"internal error: {exc.__class__.__name__}: {exc}", index)
        raise
    updated = Document.objects.filter(pk=document_id).update(
        status=Document.Status.INDEXED,
        page_count=result.page_count,
        pages_done=result.page_count,
        chunk_count=result.chunk_count,
        chunks_done=result.chunk_count,
        chunks_total=result.chunk_count,
        empty_pages=result.empty_pages,
        title=result.title[:400],
        indexed_at=timezone.now(),
        updated=timezone.now(),
    )
    if not updated:  # deleted while we worked: take the vectors back out
        index.delete_document(document_id)
        return None
    document.refresh_from_db()
    broadcast(document)
    return document


def _readings_from_log(document: Document) -> None:
    """A device log in a known format also becomes readings of its asset (safe to repeat)."""
    from apps.assets.logfiles import readings_from_logfile

    linked = list(document.assets.values_list("asset_id", flat=True)[:2])
    try:
        readings_from_logfile(
            document_path(document), name=document.original_name, asset_hint=linked[0] if len(linked) == 1 else None
        )
    except Exception:  # the text is still indexed for the chat
        log.exception("readings of %s could not be read", document.original_name)


def _mark_failed(document: Document, reason: str, index) -> Document:
    try:
        index.delete_document(document.pk)
    except Exception:  # the reason shown must be the original one
        log.exception("could not remove vectors of failed document %s", document.pk)
    Document.objects.filter(pk=document.pk).update(
        status=Document.Status.FAILED, error=reason, updated=timezone.now()
    )
    document.refresh_from_db()
    broadcast(document)
    return document


def documents_requeue_interrupted() -> list[int]:
    """Queue again every document whose ingest was cut off (worker killed or restarted).

    Safe because ingest is idempotent per document; their partial vectors are replaced and,
    until then, never retrieved (only indexed documents are).
    """
    interrupted = list(
        Document.objects.filter(status__in=[Document.Status.PARSING, Document.Status.EMBEDDING]).values_list("pk", flat=True)
    )
    for document in Document.objects.filter(pk__in=interrupted):
        log.warning("re-queueing interrupted ingest of document %s (%s)", document.pk, document.original_name)
        with transaction.atomic():
            document_queue(document=document)
    return interrupted
