from django.conf import settings
from django.db import models


class Document(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        PARSING = "parsing", "Parsing"
        EMBEDDING = "embedding", "Embedding"
        INDEXED = "indexed", "Indexed"
        FAILED = "failed", "Failed"

    IN_PROGRESS = (Status.QUEUED, Status.PARSING, Status.EMBEDDING)

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
    # What the manual is (file name words + the PDF's own title), set by the worker; used to
    # tell which manual a question names (apps/knowledge/retrieval.py).
    title = models.CharField(max_length=400, blank=True)
    uploaded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="documents"
    )
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
        if self.status == self.Status.EMBEDDING and self.chunks_total:
            return 10 + int(90 * self.chunks_done / self.chunks_total)
        if self.status == self.Status.PARSING:
            return 5
        return 0

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
