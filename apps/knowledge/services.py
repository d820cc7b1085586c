"""Writes for documents: upload, queue, ingest (in the worker), re-index, delete."""
from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Callable

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from apps.knowledge.models import Document
from apps.knowledge.privacy import PRIVACY_LEVELS, privacy_default, privacy_rank
from apps.knowledge.progress import broadcast
from apps.knowledge.signals import log_document_ingesting
from ingest.parse import SUPPORTED_EXTENSIONS, ParseError

log = logging.getLogger(__name__)


class UploadRejected(Exception):
    """The file was not accepted: ``reason`` says why; ``str(exc)`` is "<name>: <reason>"."""

    def __init__(self, name: str, reason: str):
        super().__init__(f"{name}: {reason}")
        self.name, self.reason = name, reason


def _upload_dir() -> Path:
    path = Path(settings.UPLOAD_DIR)
    path.mkdir(parents=True, exist_ok=True)
    return path


def document_path(document: Document) -> Path:
    return Path(settings.UPLOAD_DIR) / document.stored_path


def _megabytes(size: int, limit_mb: int) -> str:
    text = f"{size / 1024 / 1024:.1f} MB"
    # "1.0 MB is over the 1 MB limit" reads like a bug: show the bytes when rounding hides the excess.
    return text if float(text.split()[0]) > limit_mb else f"{size:,} bytes"


def _check_name_and_size(name: str, size: int | None) -> str:
    extension = Path(name).suffix.lower()
    if extension not in SUPPORTED_EXTENSIONS:
        allowed = ", ".join(sorted(e.lstrip(".").upper() for e in SUPPORTED_EXTENSIONS))
        raise UploadRejected(name, f"unsupported file type {extension or '(none)'} (allowed: {allowed})")
    limit_mb = settings.NANOSENTRI_MAX_UPLOAD_MB
    if size is not None and size > limit_mb * 1024 * 1024:
        raise UploadRejected(name, f"{_megabytes(size, limit_mb)} is over the {limit_mb} MB limit")
    if size == 0:
        raise UploadRejected(name, "empty file (0 bytes)")
    return extension


def _clean_name(name: str) -> str:
    # Only the base name, without control characters (NUL cannot be stored in PostgreSQL) or
    # lone surrogates (cannot be encoded).
    name = os.path.basename(name.replace("\\", "/"))
    name = "".join(ch for ch in name if ch >= " " and ch != "\x7f")
    name = name.encode("utf-8", "replace").decode("utf-8").strip()
    return name[:255] or "unnamed"


def document_store(
    *, name: str, chunks, size: int | None = None, user=None, check: Callable[[Path, str], str | None] | None = None,
    new_version: str = "ask", privacy: str | None = None,
) -> tuple[Document, bool]:
    """Store a file (given as an iterable of byte chunks) and queue it for ingestion.

    Returns (document, created). Identical content already stored returns the existing
    document and costs no new embeddings; if that document had failed, it is queued again and
    its ``requeued`` attribute is True.

    ``check(path, extension)`` looks at the received content (still a temporary file) and
    returns why it is refused, or None (see apps.knowledge.uploads). Whatever is refused, by
    name, size or content, leaves no file and no row behind: ``UploadRejected``.

    A file that looks like a new version of a current manual (apps.knowledge.versions) is, by
    ``new_version``: "ask" — stored and left ``awaiting`` the admin's choice; "replace" — queued to
    replace it once indexed; "keep" — queued as a manual of its own.

    ``privacy`` is the new document's level (None: NANOSENTRI_DEFAULT_PRIVACY). Identical content
    already stored keeps its level, unless this upload asks for a stricter one: an upload never
    makes a document less private.
    """
    if privacy is not None and privacy not in PRIVACY_LEVELS:
        raise ValueError(f"unknown privacy level {privacy!r}")
    name = _clean_name(name)
    extension = _check_name_and_size(name, size)
    limit_mb = settings.NANOSENTRI_MAX_UPLOAD_MB
    digest = hashlib.sha256()
    written = 0
    upload_dir = _upload_dir()
    with tempfile.NamedTemporaryFile(dir=upload_dir, prefix=".incoming-", delete=False) as tmp:
        try:
            for piece in chunks:
                written += len(piece)
                if written > limit_mb * 1024 * 1024:
                    raise UploadRejected(name, f"over the {limit_mb} MB limit")
                digest.update(piece)
                tmp.write(piece)
        except BaseException:
            tmp.close()
            os.unlink(tmp.name)
            raise
    try:
        if written == 0:
            raise UploadRejected(name, "empty file (0 bytes)")
        problem = check(Path(tmp.name), extension) if check is not None else None
        if problem:
            raise UploadRejected(name, problem)
    except BaseException:
        os.unlink(tmp.name)
        raise
    content_hash = digest.hexdigest()
    existing = Document.objects.filter(content_hash=content_hash).first()
    if existing:
        os.unlink(tmp.name)
        _privacy_raise(existing, privacy)
        return _existing_again(existing), False
    stored = Path(content_hash[:2]) / f"{content_hash}{extension}"
    (upload_dir / stored).parent.mkdir(parents=True, exist_ok=True)
    shutil.move(tmp.name, upload_dir / stored)
    previous = None
    if new_version != "keep":
        from apps.knowledge.versions import embedded_title, version_candidate

        previous = version_candidate(file_name=name, embedded_title=embedded_title(upload_dir / stored, extension))
    try:
        with transaction.atomic():
            document = Document.objects.create(
                original_name=name,
                stored_path=str(stored),
                extension=extension,
                size_bytes=written,
                content_hash=content_hash,
                uploaded_by=user if getattr(user, "is_authenticated", False) else None,
                previous_version=previous,
                status=Document.Status.AWAITING if previous else Document.Status.QUEUED,
                privacy=privacy or privacy_default(),
            )
            if previous is None or new_version == "replace":
                document_queue(document=document)
    except IntegrityError:
        # The same content, uploaded at the same moment by another request, won: its row owns
        # the stored file (the same bytes, the same path), so the file stays.
        existing = Document.objects.filter(content_hash=content_hash).first()
        if existing is None:
            raise
        return _existing_again(existing), False
    return document, True


def _privacy_raise(document: Document, privacy: str | None) -> None:
    if privacy is not None and privacy_rank(privacy) > privacy_rank(document.privacy):
        document.privacy = privacy
        Document.objects.filter(pk=document.pk).update(privacy=privacy)


def _existing_again(existing: Document) -> Document:
    existing.requeued = existing.status == Document.Status.FAILED
    if existing.requeued:
        # Uploading a failed file again is a request to try again (the cause may be fixed).
        with transaction.atomic():
            document_queue(document=existing)
    return existing


def document_add_path(*, path: Path, user=None, new_version: str = "keep") -> tuple[Document, bool]:
    """A file on disk (the ingest command, the demo manuals); see document_store for ``new_version``."""
    path = Path(path)
    if not path.is_file():
        raise UploadRejected(str(path), "no such file")

    def read():
        with open(path, "rb") as f:
            while piece := f.read(1024 * 1024):
                yield piece

    return document_store(name=path.name, chunks=read(), size=path.stat().st_size, user=user, new_version=new_version)


def document_queue(*, document: Document) -> None:
    """Reset the document to queued and send it to the worker once the transaction commits."""
    from apps.knowledge.tasks import ingest_document_task

    Document.objects.filter(pk=document.pk).update(
        status=Document.Status.QUEUED, error="", pages_done=0, chunks_done=0, chunks_total=0,
        cancel_requested=False, updated=timezone.now()
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
    from apps.knowledge.selectors import document_with_versions
    from apps.knowledge.tasks import delete_vectors_task

    # Its earlier versions go with it: they are only listed under it.
    doomed = [document, *document_with_versions(document.pk).earlier_versions]
    paths = [document_path(d) for d in doomed]
    with transaction.atomic():
        for old in doomed:
            document_id = old.pk
            old.delete()
            transaction.on_commit(lambda document_id=document_id: delete_vectors_task.delay(document_id))
    for path in paths:
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


def document_ingest(*, document_id: int, worker: str = "") -> Document | None:
    """Run in the Celery worker: read, chunk, embed and index one document, a window of pages at a time.

    Safe to run again for the same document (a retry, a redelivery after a killed worker,
    a re-index): old entries are replaced, never duplicated. An admin's cancel is seen between
    pages; a new version, once indexed, takes the previous version's place.

    ``worker`` (the Celery worker's node name) is recorded on the document, and means this call
    is a delivery from the queue: it only takes a document that is queued or was being worked on.
    A late redelivery (the broker gives a killed worker's unacknowledged message to a worker
    again after its visibility timeout, when the document was long since re-queued and indexed)
    then finds it indexed and does nothing, instead of taking it out of the answers to redo it.
    """
    from apps.knowledge.vector_index import get_vector_index
    from ingest.pipeline import IngestCancelled, ingest_file
    from models.embedding import get_embedder

    claim = Document.objects.filter(pk=document_id, cancel_requested=False)
    if worker:
        claim = claim.filter(status__in=Document.IN_PROGRESS)
    claimed = claim.update(
        status=Document.Status.PARSING, started_at=timezone.now(), error="", ingest_worker=worker,
        updated=timezone.now(),
    )
    if not claimed:
        _cancel_if_requested(document_id)
        log.info("document %s is gone, cancelled or no longer queued; nothing to ingest", document_id)
        return None
    document = Document.objects.get(pk=document_id)
    log.info("ingest of document %s (%s) started by %s", document_id, document.original_name, worker or "this process")
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
            ocr_engine=ocr_engine(),
            cancelled=lambda: Document.objects.filter(pk=document_id, cancel_requested=True).exists(),
            window_pages=settings.NANOSENTRI_INGEST_WINDOW_PAGES, page_reader=settings.NANOSENTRI_INGEST_READER,
            snippet_sentences=settings.NANOSENTRI_INGEST_SNIPPET_SENTENCES,
            snippet_vectors=settings.NANOSENTRI_INGEST_SNIPPET_VECTORS,
        )
    except IngestCancelled:
        return _cancel_if_requested(document_id)
    except (ParseError, FileNotFoundError) as exc:
        reason = str(exc) if isinstance(exc, ParseError) else "the uploaded file is missing from storage"
        return _mark_failed(document, reason, index)
    except Exception as exc:
        log.exception("ingest of document %s failed", document_id)
        _mark_failed(document, f"internal error: {exc.__class__.__name__}: {exc}", index)
        raise
    updated = Document.objects.filter(pk=document_id, cancel_requested=False).update(
        status=Document.Status.INDEXED,
        page_count=result.page_count,
        pages_done=result.page_count,
        chunk_count=result.chunk_count,
        chunks_done=result.chunk_count,
        chunks_total=result.chunk_count,
        empty_pages=result.empty_pages,
        page_sources=result.page_sources,
        title=result.title[:400],
        indexed_at=timezone.now(),
        updated=timezone.now(),
    )
    if not updated:  # deleted or cancelled while we worked: take the entries back out
        index.delete_document(document_id)
        return _cancel_if_requested(document_id)
    document.refresh_from_db()
    log.info("document %s (%s) indexed by %s: %s pages, %s chunks", document_id, document.original_name,
             worker or "this process", result.page_count, result.chunk_count)
    if document.previous_version_id:
        from apps.knowledge.versions import previous_version_retire

        previous_version_retire(document=document, index=index)
    broadcast(document)
    return document


def ocr_engine() -> str | None:
    """The OCR engine the worker uses for pages without a usable text layer, or None when off."""
    engine = settings.NANOSENTRI_OCR
    return None if engine in ("", "off", "0", "false", "no", "none") else engine


def document_cancel(*, document: Document) -> None:
    """Ask the worker to stop this document's ingest; a queued one is cancelled at once."""
    Document.objects.filter(pk=document.pk).update(cancel_requested=True, updated=timezone.now())
    if document.status == Document.Status.QUEUED:
        _cancel_if_requested(document.pk)
    document.refresh_from_db()
    broadcast(document)


def _cancel_if_requested(document_id: int) -> Document | None:
    """Mark a document whose cancel was asked for as cancelled (its entries are already out)."""
    marked = Document.objects.filter(pk=document_id, cancel_requested=True).exclude(
        status=Document.Status.CANCELLED
    ).update(status=Document.Status.CANCELLED, error="cancelled by an admin", updated=timezone.now())
    document = Document.objects.filter(pk=document_id).first()
    if marked and document:
        broadcast(document)
    return document


def _readings_from_log(document: Document) -> None:
    """A device log in a known format also becomes readings of its asset (apps.assets listens)."""
    results = log_document_ingesting.send_robust(sender=Document, document=document, path=document_path(document))
    for _receiver, error in results:
        if isinstance(error, Exception):  # the text is still indexed for the chat
            log.error("readings of %s could not be read", document.original_name, exc_info=error)


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


def documents_requeue_interrupted(
    *, worker: str = "", workers_alive: Callable[[set[str]], set[str]] | None = None
) -> list[int]:
    """Queue again every document whose ingest was cut off (its worker killed or restarted).

    A worker runs this as it starts, as ``worker`` (its node name). It takes back what its own
    previous run held, and what a worker that does not answer any more held: ``workers_alive``
    says which of the other holders answer (without it, none counts as alive). With several workers,
    one starting must not take the documents the others are still working on: that ingested
    them twice and, meanwhile, took them out of the answers.

    Safe because ingest is idempotent per document; their partial vectors are replaced and,
    until then, never retrieved (only indexed documents are).
    """
    held = dict(Document.objects.filter(status__in=Document.WORKING).values_list("pk", "ingest_worker"))
    others = {holder for holder in held.values() if holder and holder != worker}
    alive = workers_alive(others) if others and workers_alive is not None else set()
    interrupted = [pk for pk, holder in held.items() if holder not in alive]
    for document in Document.objects.filter(pk__in=interrupted):
        log.warning("re-queueing interrupted ingest of document %s (%s), held by %s", document.pk,
                    document.original_name, document.ingest_worker or "an unknown worker")
        with transaction.atomic():
            document_queue(document=document)
    return interrupted
