"""Each uploaded file judged on its own: a good one is stored and queued, a bad one is refused
with a reason the admin can act on, and no bad file costs the others their upload.

The content is checked here, at upload time, as cheaply as possible (a PDF opens, has pages and
no password; a text file holds text), so the admin learns of a broken or locked file now and not
from a failed row later. What only reading every page can tell (no text layer, a page that does
not extract) is still the worker's to report (ingest.parse).

The web form (apps.knowledge.views.documents) and the API (apps.api.documents) both call
``upload_files``, so a file gets the same verdict, in the same words, wherever it comes from.
"""
from __future__ import annotations

import codecs
import enum
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Protocol

from apps.knowledge import services
from apps.knowledge.models import Document
from ingest.parse import PDF_EXTENSIONS, DependencyError

log = logging.getLogger(__name__)


class Outcome(enum.StrEnum):
    """What became of one file. The set is open: a new outcome goes here, e.g. "awaiting" for a
    file that looks like a new version of a manual (the documents page shows an outcome missing
    from its ``_LEVELS`` as a warning; the API's schema lists the members)."""

    QUEUED = "queued"  # stored and sent to the worker (or, identical to a failed one, sent again)
    DUPLICATE = "duplicate"  # identical content is in the library already: nothing new stored
    REJECTED = "rejected"  # not stored; ``reason`` says why
    AWAITING = "awaiting"  # stored; looks like a new version of a manual: replace it or keep both?


@dataclass(frozen=True)
class UploadOutcome:
    name: str  # the file's name as uploaded
    outcome: Outcome
    reason: str  # a sentence for people: "queued for indexing", "empty file (0 bytes)", …
    document: Document | None = None  # the stored (or the identical, existing) document


class UploadedFileLike(Protocol):
    """What is needed of an upload: Django's UploadedFile has it."""

    name: str
    size: int | None

    def chunks(self) -> Iterable[bytes]: ...


ENCRYPTED = "encrypted PDF: remove the password and upload it again"
BINARY = "binary content: not a text file"
BLANK = "empty file: only blank space, no text"
SNIFF_BYTES = 8192  # as ingest.parse.parse_text: a NUL in the first 8 KB is a binary file
_MAX_DETAIL = 200


def upload_file(
    *, name: str, chunks: Iterable[bytes], size: int | None = None, user=None, new_version: str = "ask",
    privacy: str | None = None,
) -> UploadOutcome:
    """Judge one file: store and queue it, recognise it as a duplicate, or refuse it with a reason.

    ``new_version`` says what to do with a file that looks like a new version of a current manual
    (see services.document_store): "ask" leaves it awaiting the admin's choice. ``privacy`` is the
    document's level (None: NANOSENTRI_DEFAULT_PRIVACY).
    """
    try:
        document, created = services.document_store(
            name=name, chunks=chunks, size=size, user=user, check=content_problem, new_version=new_version,
            privacy=privacy,
        )
    except services.UploadRejected as exc:
        return UploadOutcome(name=exc.name, outcome=Outcome.REJECTED, reason=exc.reason)
    if created and document.previous_version_id:
        previous = document.previous_version.original_name
        if document.status == Document.Status.AWAITING:
            return UploadOutcome(
                document.original_name, Outcome.AWAITING,
                f"looks like a new version of “{previous}”: choose “Replace the current version” or “Keep both”",
                document,
            )
        return UploadOutcome(document.original_name, Outcome.QUEUED, f"queued; replaces “{previous}” once indexed",
                             document)
    if created:
        return UploadOutcome(document.original_name, Outcome.QUEUED, "queued for indexing", document)
    shown = Path(name).name or "unnamed"
    if getattr(document, "requeued", False):
        return UploadOutcome(
            shown, Outcome.QUEUED, f"identical to “{document.original_name}”, which had failed; queued again", document
        )
    return UploadOutcome(
        shown,
        Outcome.DUPLICATE,
        f"identical to “{document.original_name}” already uploaded ({document.get_status_display().lower()}); "
        "nothing new to embed",
        document,
    )


def upload_files(
    *, files: Iterable[UploadedFileLike], user=None, new_version: str = "ask", privacy: str | None = None
) -> list[UploadOutcome]:
    """One outcome per file, in the order given. A file that fails for an unexpected reason (a
    full disk…) is reported as rejected and the next file is still tried: nothing is lost silently."""
    outcomes = []
    for uploaded in files:
        try:
            outcome = upload_file(
                name=uploaded.name, chunks=uploaded.chunks(), size=uploaded.size, user=user, new_version=new_version,
                privacy=privacy,
            )
        except Exception as exc:
            log.exception("upload of %s failed", uploaded.name)
            outcome = UploadOutcome(
                Path(uploaded.name).name, Outcome.REJECTED, f"could not be stored: {exc.__class__.__name__}: {exc}"
            )
        outcomes.append(outcome)
    return outcomes


# --- Content checks -----------------------------------------------------------------------------


def content_problem(path: Path, extension: str) -> str | None:
    """Why the received file cannot be indexed, or None. Cheap: no page's text is extracted."""
    if extension in PDF_EXTENSIONS:
        return _pdf_problem(path)
    return _text_problem(path)


def _pdf_problem(path: Path) -> str | None:
    from pypdf import PdfReader
    from pypdf.errors import FileNotDecryptedError

    with open(path, "rb") as f:
        head = f.read(1024)
    if b"%PDF-" not in head:  # where parse_pdf looks for it
        return "corrupt PDF: the content is not a PDF (no %PDF- header)"
    try:
        reader = PdfReader(str(path), strict=False)
        if reader.is_encrypted:
            # Many PDFs are "encrypted" with an empty user password (print restrictions only):
            # those open, and are fine. The worker decrypts them the same way (parse_pdf).
            try:
                if not reader.decrypt(""):
                    return ENCRYPTED
            except (FileNotDecryptedError, NotImplementedError, DependencyError) as exc:
                return f"{ENCRYPTED} ({_short(exc)})"
        if len(reader.pages) == 0:
            return "corrupt PDF: it has no pages"
    except Exception as exc:  # pypdf raises many kinds on broken files; each means the same here
        return f"corrupt PDF: {_short(exc) or exc.__class__.__name__}"
    return None


def _text_problem(path: Path) -> str | None:
    with open(path, "rb") as f:
        piece = f.read(SNIFF_BYTES)
        if b"\x00" in piece:
            return BINARY
        piece = piece.removeprefix(codecs.BOM_UTF8)
        while not piece.strip():  # read on only while all of it is blank space
            piece = f.read(1024 * 1024)
            if not piece:
                return BLANK
    return None


def _short(exc: Exception) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= _MAX_DETAIL else text[: _MAX_DETAIL - 1] + "…"
