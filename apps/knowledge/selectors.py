"""Reads for the pages: documents. Passages for answers come from apps/knowledge/retrieval.py."""
from __future__ import annotations

from apps.knowledge.models import Document


def document_list() -> list[Document]:
    """The current documents, newest first, each with ``earlier_versions`` (newest first)."""
    documents = list(
        Document.objects.select_related("uploaded_by").exclude(status=Document.Status.SUPERSEDED)
    )
    superseded = {
        d.pk: d for d in Document.objects.filter(status=Document.Status.SUPERSEDED).select_related("uploaded_by")
    }
    for document in documents:
        document.earlier_versions = _history(document, superseded)
    return documents


def document_with_versions(pk: int) -> Document:
    document = Document.objects.select_related("uploaded_by").get(pk=pk)
    superseded = {
        d.pk: d for d in Document.objects.filter(status=Document.Status.SUPERSEDED).select_related("uploaded_by")
    }
    document.earlier_versions = _history(document, superseded)
    return document


def _history(document: Document, superseded: dict[int, Document]) -> list[Document]:
    history, seen = [], {document.pk}
    previous_pk = document.previous_version_id
    while previous_pk in superseded and previous_pk not in seen:
        previous = superseded[previous_pk]
        history.append(previous)
        seen.add(previous_pk)
        previous_pk = previous.previous_version_id
    return history
