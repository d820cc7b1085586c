"""Reads for the pages: documents. Passages for answers come from apps/knowledge/retrieval.py."""
from __future__ import annotations

from apps.knowledge.models import Document


def document_list():
    return Document.objects.select_related("uploaded_by").all()
