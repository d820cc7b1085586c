from django.conf import settings
from django.db import models

from apps.knowledge.privacy import PRIVACY_CHOICES, privacy_default


class Document(models.Model):
    class Status(models.TextChoices):
        AWAITING = "awaiting", "Awaiting your choice"  # looks like a new version of a manual: replace or keep both?
        QUEUED = "queued", "Queued"
        PARSING = "parsing", "Parsing"
        OCR = "ocr", "Reading scans (OCR)"
        EMBEDDING = "embedding", "Embedding"
        INDEXED = "indexed", "Indexed"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"
        SUPERSEDED = "superseded", "Replaced by a newer version"

    IN_PROGRESS = (Status.QUEUED, Status.PARSING, Status.OCR, Status.EMBEDDING)
    WORKING = (Status.PARSING, Status.OCR, Status.EMBEDDING)  # a worker holds it

    original_name = models.CharField(max_length=255)
    stored_path = models.CharField(max_length=500, help_text="Relative to the upload directory")
    extension = models.CharField(max_length=10)
    size_bytes = models.BigIntegerField(default=0)
    content_hash = models.CharField(max_length=64, unique=True)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.QUEUED, db_index=True)
    error = models.TextField(blank=True)
    page_count = models.PositiveIntegerField(null=True, blank=True)
    pages_done = models.PositiveIntegerField(default=0)
    chunk_count = models.PositiveIntegerField(null=True, blank=True)
    chunks_done = models.PositiveIntegerField(default=0)
    chunks_total = models.PositiveIntegerField(default=0)
    empty_pages = models.JSONField(default=list, blank=True)
    # How each page's text was read when not straight from the text layer: {"ocr": [10, 11],
    # "repaired": [1, 2], "pdfium": [4]} (physical page numbers), set by the worker.
    page_sources = models.JSONField(default=dict, blank=True)
    # The manual this one replaces (status AWAITING until the admin chooses; once this version
    # is indexed the previous one is SUPERSEDED and its passages leave the index).
    previous_version = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="next_versions"
    )
    cancel_requested = models.BooleanField(default=False)
    # The Celery worker (its node name, e.g. celery@host) that took the last ingest. A worker
    # starting under the same name re-queues what its previous run held when it died; one held
    # by a worker that no longer answers is re-queued too (services.documents_requeue_interrupted).
    ingest_worker = models.CharField(max_length=200, blank=True)
    # What the manual is (file name words + the PDF's own title), set by the worker; used to
    # tell which manual a question names (apps/knowledge/retrieval.py).
    title = models.CharField(max_length=400, blank=True)
    uploaded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="documents"
    )
    # Whether its passages may go to the site model server (models/llm/routing.py): restricted
    # ones never leave this device.
    privacy = models.CharField(max_length=12, choices=PRIVACY_CHOICES, default=privacy_default)
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    indexed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created"]

    def __str__(self):
        return self.original_name

    @property
    def is_pdf(self) -> bool:
        return self.extension == ".pdf"

    @property
    def in_progress(self) -> bool:
        return self.status in self.IN_PROGRESS

    @property
    def percent(self) -> int:
        if self.status == self.Status.INDEXED:
            return 100
        if self.status in self.WORKING and self.page_count:
            return 5 + int(95 * min(self.pages_done, self.page_count) / self.page_count)
        if self.status in self.WORKING:
            return 5
        return 0

    @property
    def ocr_pages(self) -> list[int]:
        return list((self.page_sources or {}).get("ocr", []))

    @property
    def repaired_pages(self) -> list[int]:
        sources = self.page_sources or {}
        return sorted(set(sources.get("repaired", [])) | set(sources.get("pdfium", [])))

    def progress_payload(self) -> dict:
        return {
            "id": self.pk,
            "name": self.original_name,
            "status": self.status,
            "status_label": self.get_status_display(),
            "error": self.error,
            "pages": self.page_count,
            "pages_done": self.pages_done,
            "chunks": self.chunk_count,
            "chunks_done": self.chunks_done,
            "chunks_total": self.chunks_total,
            "percent": self.percent,
            "cancel_requested": self.cancel_requested,
            "updated": self.updated.isoformat() if self.updated else None,
        }


class IndexGeneration(models.Model):
    """How many writes a search index (a vector store collection) has had.

    The worker moves it after every write; a reading process (web, API) compares it with the
    value it last saw and re-opens the store and its BM25 statistics when it moved. It lives in
    the database every process shares, so it works for embedded Chroma and a Chroma server alike.
    """

    key = models.CharField(max_length=400, unique=True)
    value = models.PositiveBigIntegerField(default=0)
    updated = models.DateTimeField(auto_now=True)

    def __str__(self):
        return f"{self.key}: {self.value}"
