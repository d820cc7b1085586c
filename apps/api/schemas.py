"""Request and response bodies of the API, as they appear in /api/v1/openapi.json."""
from datetime import datetime
from datetime import timezone as dt_timezone
from typing import Annotated, Any

from django.urls import NoReverseMatch
from django.utils import timezone
from ninja import Field, Schema
from pydantic import AfterValidator, ConfigDict, StringConstraints

from apps.chat.ask_request import MAX_CONTEXT_CHARS, MAX_QUESTION_CHARS
from apps.incidents.models import Incident

# --- Input types -----------------------------------------------------------------------------


def _clean_text(value: str) -> str:
    # PostgreSQL cannot store NUL, and lone surrogates cannot be encoded: refuse both up front.
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode text") from None
    return value


def _clean_datetime(value: datetime) -> datetime:
    """Aware and in UTC; a time without an offset is read in the server's time zone."""
    if not 1900 <= value.year <= 9998:
        # Far-off years overflow when converted between time zones (and mean nothing here).
        raise ValueError("must be between the years 1900 and 9998")
    if timezone.is_naive(value):
        value = timezone.make_aware(value)
    return value.astimezone(dt_timezone.utc)


def Text(description: str, *, max_length: int | None = None, min_length: int | None = None, default: Any = ...,
         nullable: bool = False):
    """A text field: no NUL, valid Unicode, optional length limits (the database's)."""
    text = Annotated[str, StringConstraints(max_length=max_length, min_length=min_length), AfterValidator(_clean_text)]
    return Annotated[text | None if nullable else text, Field(default, description=description)]


Timestamp = Annotated[datetime, AfterValidator(_clean_datetime)]
AssetId = Annotated[str, StringConstraints(max_length=64), AfterValidator(_clean_text)]
Username = Annotated[str, StringConstraints(max_length=150), AfterValidator(_clean_text)]

_FIELD_DOCS = {
    "asset": "the asset's id as devices report it (e.g. WXT536-01)",
    "title": "a short title",
    "failure_class": "CMMS failure class, e.g. the device type (WXT536) or 'heater'",
    "symptom": "the problem as observed: what the technician saw",
    "cause": "why it happened (needed to resolve or close)",
    "remedy": "what fixed it (needed to resolve or close)",
    "root_cause": "the underlying reason, if different from the cause",
    "summary": "a summary for the record",
    "priority": "critical, high, normal or low",
    "status": "open, in_progress, resolved or closed; see the allowed transitions in docs/api.md",
    "assignee": "username of the person working on it",
    "downtime_start": "when the asset stopped working (ISO 8601; without an offset: server time zone)",
    "downtime_end": "when it worked again (not before downtime_start)",
    "downtime_kind": "unplanned or planned",
    "downtime_reason": "why it was down",
    "note": "a note for the audit trail entry of this change",
}


class _Input(Schema):
    # Unknown fields are an error, not silently dropped: a typo ("staus") must not look like success.
    model_config = ConfigDict(extra="forbid")


class IncidentCreate(_Input):
    asset: AssetId | None = Field(None, description=_FIELD_DOCS["asset"])
    title: Text(_FIELD_DOCS["title"], max_length=200, min_length=1)
    symptom: Text(_FIELD_DOCS["symptom"], min_length=1)
    failure_class: Text(_FIELD_DOCS["failure_class"], max_length=100, default="")
    cause: Text(_FIELD_DOCS["cause"], default="")
    remedy: Text(_FIELD_DOCS["remedy"], default="")
    root_cause: Text(_FIELD_DOCS["root_cause"], default="")
    summary: Text(_FIELD_DOCS["summary"], default="")
    priority: Incident.Priority = Field(Incident.Priority.NORMAL, description=_FIELD_DOCS["priority"])
    status: Incident.Status = Field(Incident.Status.OPEN, description=_FIELD_DOCS["status"])
    assignee: Username | None = Field(None, description=_FIELD_DOCS["assignee"])
    downtime_start: Timestamp | None = Field(None, description=_FIELD_DOCS["downtime_start"])
    downtime_end: Timestamp | None = Field(None, description=_FIELD_DOCS["downtime_end"])
    downtime_kind: Incident.DowntimeKind | None = Field(None, description=_FIELD_DOCS["downtime_kind"])
    downtime_reason: Text(_FIELD_DOCS["downtime_reason"], max_length=300, default="")
    note: Text(_FIELD_DOCS["note"], max_length=2000, default="")


class IncidentPatch(_Input):
    """Only the fields sent are changed; null clears a field (text fields become empty)."""

    asset: AssetId | None = Field(None, description=_FIELD_DOCS["asset"] + "; null unlinks the asset")
    title: Text(_FIELD_DOCS["title"], max_length=200, default=None, nullable=True)
    symptom: Text(_FIELD_DOCS["symptom"], default=None, nullable=True)
    failure_class: Text(_FIELD_DOCS["failure_class"], max_length=100, default=None, nullable=True)
    cause: Text(_FIELD_DOCS["cause"], default=None, nullable=True)
    remedy: Text(_FIELD_DOCS["remedy"], default=None, nullable=True)
    root_cause: Text(_FIELD_DOCS["root_cause"], default=None, nullable=True)
    summary: Text(_FIELD_DOCS["summary"], default=None, nullable=True)
    # Not nullable: every incident has a priority and a status (omitted = unchanged).
    priority: Incident.Priority = Field(None, description=_FIELD_DOCS["priority"])
    status: Incident.Status = Field(None, description=_FIELD_DOCS["status"])
    assignee: Username | None = Field(None, description=_FIELD_DOCS["assignee"] + "; null unassigns")
    downtime_start: Timestamp | None = Field(None, description=_FIELD_DOCS["downtime_start"])
    downtime_end: Timestamp | None = Field(None, description=_FIELD_DOCS["downtime_end"])
    downtime_kind: Incident.DowntimeKind | None = Field(None, description=_FIELD_DOCS["downtime_kind"])
    downtime_reason: Text(_FIELD_DOCS["downtime_reason"], max_length=300, default=None, nullable=True)
    note: Text(_FIELD_DOCS["note"], max_length=2000, default=None, nullable=True)


class AskIn(_Input):
    question: Text("the technician's question", min_length=1, max_length=MAX_QUESTION_CHARS)
    asset: AssetId | None = Field(None, description="use this asset's live readings and findings (asset id)")
    context: Text("a pasted log line, parsed like a telemetry payload (not stored)",
                  max_length=MAX_CONTEXT_CHARS,
                  default=None, nullable=True)
    local_only: bool | None = Field(
        None, description="only the local model answers, never the site model server (docs/answers.md §5)"
    )


# --- Output ----------------------------------------------------------------------------------


class Error(Schema):
    detail: str = Field(description="what went wrong, for people")


class ValidationErrorOut(Schema):
    detail: str = Field(description="what went wrong, for people")
    errors: dict[str, list[str]] = Field(description="field name → messages ('__all__' for the request as a whole)")


class IncidentOut(Schema):
    id: int
    asset: str | None = Field(description="asset id, or null")
    title: str
    failure_class: str
    symptom: str
    cause: str
    remedy: str
    root_cause: str
    summary: str
    priority: Incident.Priority
    status: Incident.Status
    downtime_start: datetime | None
    downtime_end: datetime | None
    downtime_kind: Incident.DowntimeKind | None
    downtime_reason: str
    downtime_minutes: int | None = Field(description="whole minutes between downtime_start and downtime_end")
    reporter: str | None = Field(description="username")
    assignee: str | None = Field(description="username")
    created: datetime
    updated: datetime
    resolved_at: datetime | None
    closed_at: datetime | None
    url: str | None = Field(description="the incident's page in the web app")

    @staticmethod
    def resolve_asset(obj: Incident) -> str | None:
        return obj.asset.asset_id if obj.asset_id else None

    @staticmethod
    def resolve_downtime_kind(obj: Incident) -> str | None:
        return obj.downtime_kind or None

    @staticmethod
    def resolve_downtime_minutes(obj: Incident) -> int | None:
        downtime = obj.downtime
        return int(downtime.total_seconds() // 60) if downtime is not None else None

    @staticmethod
    def resolve_reporter(obj: Incident) -> str | None:
        return obj.reporter.get_username() if obj.reporter_id else None

    @staticmethod
    def resolve_assignee(obj: Incident) -> str | None:
        return obj.assignee.get_username() if obj.assignee_id else None

    @staticmethod
    def resolve_url(obj: Incident, context) -> str | None:
        try:
            path = obj.get_absolute_url()
        except NoReverseMatch:  # the web pages of incidents are not installed
            return None
        request = context.get("request") if context else None
        return request.build_absolute_uri(path) if request is not None else path


class IncidentPage(Schema):
    total: int = Field(description="incidents matching the filters (all pages)")
    limit: int
    offset: int
    items: list[IncidentOut]


class AskCitation(Schema):
    document: str = Field(description="file name of the manual or log")
    page: int | None
    score: float = Field(description="retrieval similarity, 0–1")
    text: str
    source: str = Field("text", description="how the page was read: text, repaired, pdfium or ocr (a scan: words may be misread)")


class AskSimilarIncident(Schema):
    id: int
    title: str
    cause: str
    remedy: str
    score: float


class AskTimings(Schema):
    retrieval_ms: float | None
    ttft_ms: float | None = Field(description="time to the first token of the answer")
    tokens_per_s: float | None


class AskFinding(Schema):
    rule: str
    severity: str
    message: str
    sensor: str


class AskReading(Schema):
    value: float | str | None
    unit: str
    ts: str | None = Field(description="ISO 8601 time of the reading")
    min: float | None
    max: float | None
    flag: str


class AskExtractItem(Schema):
    text: str = Field(description="a sentence or table row of the cited passage, in the manual's words")
    n: int = Field(description="the citation it comes from ([n])")
    document: str
    page: int


class AskUngrounded(Schema):
    kind: str = Field(description="number, code, part or reference")
    text: str = Field(description="as the model wrote it")
    start: int = Field(description="offset in narrative")
    end: int


class AskRoute(Schema):
    via: str = Field(description="local (this device), site (the site model server) or none (no model was asked)")
    model: str = Field(description="the answering model's name (empty when none was asked)")
    reason: str = Field(description="why: no_site_server, local_only, restricted, site_down, site, site_unreachable, "
                        "site_slow, site_failed, not_covered or extract_only")
    detail: str = Field(description="the reason as a sentence for people")
    label: str = Field(description="the badge's short text")


class AskOut(Schema):
    """The JSON of ``manage.py ask --json``."""

    answer: str = Field(description="what the technician reads: the extract lines (each with [n]), then the narrative")
    extract: list[AskExtractItem] = Field(description="the manual's own lines that answer the question")
    narrative: str = Field(description="the model's text (empty when NANOSENTRI_LLM_NARRATIVE is off)")
    ungrounded: list[AskUngrounded] = Field(description="what the narrative states that the evidence does not hold")
    citations: list[AskCitation]
    similar_incidents: list[AskSimilarIncident]
    timings: AskTimings
    status: str = Field(description="completed, not_covered, stopped or failed")
    findings: list[AskFinding] = Field(description="diagnostic findings from the live readings or the pasted log")
    readings: dict[str, AskReading] = Field(description="sensor key → its latest reading")
    conversation: int = Field(description="id of the conversation the question and answer were stored in")
    message: int | None = Field(description="id of the answer message")
    route: AskRoute | None = Field(None, description="which model answered and why")
    error: str | None = Field(None, description="only when the answer failed")
    error_code: str | None = Field(None, description="only when the answer failed, e.g. model_unavailable")


# --- Documents (apps/api/documents.py) -------------------------------------------------------
# Imported here, not at the top, so this section stays one block appended to the file.
import enum  # noqa: E402

from apps.knowledge.models import Document  # noqa: E402
from apps.knowledge.uploads import Outcome  # noqa: E402

# Document.Status under its own name: the schema's "Status" is the incident's.
DocumentStatus = enum.StrEnum("DocumentStatus", {s.name: s.value for s in Document.Status})


class DocumentRef(Schema):
    id: int
    name: str = Field(description="the file name as uploaded")
    status: DocumentStatus

    @staticmethod
    def resolve_name(obj: Document) -> str:
        return obj.original_name


class DocumentOut(Schema):
    id: int
    name: str = Field(description="the file name as uploaded")
    title: str = Field(description="what the manual is (file name words and the PDF's title), set once indexed")
    status: DocumentStatus
    error: str = Field(description="why indexing failed or stopped; empty otherwise")
    pages: int | None = Field(description="pages read (null until parsed)")
    chunks: int | None = Field(description="passages indexed (null until indexed)")
    size_bytes: int
    created: datetime = Field(description="when it was uploaded")
    updated: datetime
    indexed_at: datetime | None
    url: str = Field(description="the original file (needs a session login in the web app)")
    privacy: str = Field(description="public, internal or restricted (never sent to the site model server)")
    previous_version: int | None = Field(
        description="the manual this one replaces (status awaiting: waiting for replace or keep; once this one is "
        "indexed the previous one is superseded)"
    )
    earlier_versions: list[int] = Field(description="ids of the versions this one replaced, newest first")
    ocr_pages: list[int] = Field(description="pages read by OCR (scans): their passages are marked as such")
    repaired_pages: list[int] = Field(description="pages whose broken text layer was repaired or read again")
    empty_pages: list[int] = Field(description="pages without readable text")

    @staticmethod
    def resolve_name(obj: Document) -> str:
        return obj.original_name

    @staticmethod
    def resolve_pages(obj: Document) -> int | None:
        return obj.page_count

    @staticmethod
    def resolve_chunks(obj: Document) -> int | None:
        return obj.chunk_count

    @staticmethod
    def resolve_previous_version(obj: Document) -> int | None:
        return obj.previous_version_id

    @staticmethod
    def resolve_earlier_versions(obj: Document) -> list[int]:
        return [d.pk for d in getattr(obj, "earlier_versions", [])]

    @staticmethod
    def resolve_url(obj: Document, context) -> str:
        from django.urls import reverse

        path = reverse("knowledge:file", args=[obj.pk])
        request = context.get("request") if context else None
        return request.build_absolute_uri(path) if request is not None else path


class DocumentPage(Schema):
    total: int = Field(description="documents matching the filters (all pages)")
    limit: int
    offset: int
    items: list[DocumentOut]


class UploadResult(Schema):
    name: str = Field(description="the file name as uploaded")
    outcome: Outcome = Field(
        description="queued: stored and sent to the worker; duplicate: identical content is already in the "
        "library (nothing new stored); rejected: not stored, see reason; awaiting: stored, looks like a new "
        "version of a current manual — POST /documents/{id}/replace or /keep (or upload with new_version). "
        "The set may grow."
    )
    reason: str = Field(description="a sentence for people, e.g. 'queued for indexing', 'empty file (0 bytes)'")
    document: DocumentRef | None = Field(description="the stored document, or the identical one already there")


class UploadResults(Schema):
    results: list[UploadResult] = Field(description="one per file, in the order sent")
