"""New versions of a manual: recognise them at upload, replace the current one once indexed.

An upload whose name (or PDF title) matches a current manual but whose content differs waits
(status ``awaiting``) for the admin's choice: *replace the current version* or *keep both*.
Replacing indexes the new version first; only when it is indexed does the previous one leave the
index (status ``superseded``). Its row and file stay, so answers given before still open the
page they cited, and the documents page lists it under the current version.
"""
from __future__ import annotations

import re
from pathlib import Path

from django.db import transaction
from django.utils import timezone

from apps.knowledge.models import Document
from apps.knowledge.progress import broadcast

# Words that say which revision a file is, not which manual: "rev2.6", "v1.01", "sw3.00",
# "2024-05", "final", "copy", "(1)".
_VERSION_WORD = re.compile(
    r"^(?:rev\.?\d[\w.]*|r\d+(?:\.\d+)*|v\d+(?:\.\d+)*[a-z]?|sw\d[\w.]*|fw\d[\w.]*|ver\d*|version|revision|rev"
    r"|(?:19|20)\d{2}(?:-\d{2}){0,2}|\d{8}|final|draft|copy|new|old|latest|updated|\(\d+\))$"
)


def name_key(file_name: str) -> str:
    """What a file name says about the manual, without its revision: the words that stay."""
    stem = Path(file_name).stem.lower()
    # Keep "2.6" and "2024-05" together while splitting on dots and hyphens.
    stem = re.sub(r"(?<=\d)\.(?=\d)", "·", re.sub(r"(?<=\d)-(?=\d)", "¬", stem))
    words = [w.replace("·", ".").replace("¬", "-") for w in re.split(r"[\s_.\-+]+", stem) if w]
    return " ".join(w for w in words if not _VERSION_WORD.match(w))


def version_candidate(*, file_name: str, embedded_title: str = "", exclude_pk: int | None = None) -> Document | None:
    """The current manual an upload looks like a new version of, if any.

    The same name once revision words are dropped, or the same PDF title as the current manual's.
    """
    key = name_key(file_name)
    embedded = " ".join((embedded_title or "").split()).lower()
    current = Document.objects.exclude(status__in=[Document.Status.SUPERSEDED, Document.Status.AWAITING])
    if exclude_pk:
        current = current.exclude(pk=exclude_pk)
    for document in current.only("pk", "original_name", "title").order_by("-created"):
        if key and name_key(document.original_name) == key:
            return document
        if len(embedded) >= 8 and " — " in document.title and document.title.split(" — ", 1)[1].lower() == embedded:
            return document
    return None


def embedded_title(path: Path, extension: str) -> str:
    """The PDF's own title, if it has one (cheap: the info dictionary only)."""
    if extension != ".pdf":
        return ""
    try:
        from pypdf import PdfReader

        return str((PdfReader(str(path), strict=False).metadata or {}).get("/Title") or "")
    except Exception:  # an unreadable info dictionary is no reason to refuse the file
        return ""


def version_choose(*, document: Document, replace: bool) -> str:
    """The admin's choice for an upload awaiting it: replace the manual it matched once indexed, or
    keep both. Queues it either way; returns what happens, in a sentence."""
    from apps.knowledge.services import document_queue

    previous = document.previous_version
    with transaction.atomic():
        if not replace:
            Document.objects.filter(pk=document.pk).update(previous_version=None)
            document.previous_version = None
        document_queue(document=document)
    broadcast(document)
    if replace and previous is not None:
        return f"queued; it replaces “{previous.original_name}” once indexed"
    return "queued as a manual of its own"


def previous_version_retire(*, document: Document, index) -> None:
    """Called by the worker once ``document`` is indexed: its previous version leaves the index."""
    previous = document.previous_version
    if previous is None or previous.status == Document.Status.SUPERSEDED:
        return
    Document.objects.filter(pk=previous.pk).update(
        status=Document.Status.SUPERSEDED, cancel_requested=False, updated=timezone.now()
    )
    index.delete_document(previous.pk)
    previous.refresh_from_db()
    broadcast(previous)
