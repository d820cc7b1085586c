"""NANOSENTRI_LLM_NARRATIVE: off by default (the extract is the answer), on for a bigger model."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from apps.chat import services
from apps.chat.models import Message
from apps.knowledge.models import Document
from apps.knowledge.vector_index import get_vector_index
from ingest.chunk import Chunk
from models.embedding import get_embedder

ROOT = Path(__file__).resolve().parents[1]
LINE = "ERROR HIGH TEMP: the module reached 65 C. Charging resumes below 55 C."


def test_the_product_default_is_extract_only(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "NANOSENTRI_LLM_NARRATIVE"}
    env.update(DJANGO_SETTINGS_MODULE="nanosentri_site.settings", NANOSENTRI_DATA_DIR=str(tmp_path))
    out = subprocess.run(
        [sys.executable, "-c", "import django; django.setup(); from django.conf import settings; "
                               "print(settings.NANOSENTRI_LLM_NARRATIVE)"],
        cwd=ROOT, env=env, capture_output=True, text=True, check=True,
    )
    assert out.stdout.strip() == "False"


@pytest.mark.django_db
def test_with_the_narrative_off_the_extract_is_the_whole_answer_and_no_model_runs(settings, monkeypatch):
    settings.NANOSENTRI_LLM_NARRATIVE = False
    settings.NANOSENTRI_RETRIEVAL_MIN_SCORE = 0.1  # the hashed mock embedder's cosines are low
    doc = Document.objects.create(original_name="evse.pdf", stored_path="evse.pdf", extension=".pdf",
                                  content_hash="e" * 64, status=Document.Status.INDEXED)
    get_vector_index().add(document_id=doc.pk, file_name="evse.pdf", chunks=[Chunk(page=2, index=0, text=LINE)],
                           embeddings=get_embedder().embed([LINE]))
    monkeypatch.setattr("models.llm.get_language_model", lambda: pytest.fail("the model was asked"))

    conversation = services.conversation_for(user=None, title="t")
    result = services.answer_result(question="What does ERROR HIGH TEMP mean?", conversation=conversation)

    assert result["status"] == "completed" and result["narrative"] == "" and result["ungrounded"] == []
    assert result["extract"][0]["text"] == LINE
    assert result["answer"] == f"{LINE} [1]"
    stored = Message.objects.get(pk=result["message"])
    assert stored.extract == result["extract"] and stored.content == ""
