"""manage.py ask: same pipeline as the chat, JSON shape used by scripts and evaluation."""
import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from apps.chat.models import Message
from apps.knowledge.models import Document
from apps.knowledge.vector_index import get_vector_index
from ingest.chunk import Chunk
from models.embedding import get_embedder

pytestmark = pytest.mark.django_db


def _index(text, page, name="charger.pdf", status=Document.Status.INDEXED):
    doc = Document.objects.create(original_name=name, stored_path=name, extension=".pdf", content_hash=name.ljust(64, "0"), status=status)
    get_vector_index().add(document_id=doc.pk, file_name=name, chunks=[Chunk(page=page, index=0, text=text)],
                           embeddings=get_embedder().embed([text]))
    return doc


def _ask(*args):
    out = StringIO()
    call_command("ask", *args, stdout=out, stderr=StringIO())
    return out.getvalue()


def test_it_prints_one_json_object_with_the_documented_keys():
    _index("ERROR HIGH TEMP: charging resumes when the temperature drops below 55 C.", page=2)
    result = json.loads(_ask("What does ERROR HIGH TEMP mean?", "--json"))
    assert set(result) >= {"answer", "citations", "timings"}
    assert isinstance(result["answer"], str) and result["answer"]
    citation = result["citations"][0]
    assert set(citation) == {"document", "page", "score", "text", "source"}
    assert citation["document"] == "charger.pdf" and citation["page"] == 2
    assert isinstance(citation["score"], float)
    assert set(result["timings"]) == {"retrieval_ms", "ttft_ms", "tokens_per_s"}
    assert all(isinstance(v, float) for v in result["timings"].values())
    assert Message.objects.filter(role="assistant", status="completed").count() == 1


def test_it_says_the_manuals_do_not_cover_unrelated_questions(settings):
    settings.NANOSENTRI_RETRIEVAL_MIN_SCORE = 0.99
    _index("ERROR HIGH TEMP: charging resumes when the temperature drops.", page=2)
    result = json.loads(_ask("Best sourdough recipe?", "--json"))
    assert result["citations"] == []
    assert "do not cover" in result["answer"]


def test_documents_not_indexed_are_never_cited():
    _index("ERROR HIGH TEMP: charging resumes when the temperature drops.", page=2, status=Document.Status.EMBEDDING)
    result = json.loads(_ask("What does ERROR HIGH TEMP mean?", "--json"))
    assert result["citations"] == []


def test_plain_output_lists_citations_then_the_answer():
    _index("ERROR HIGH TEMP: charging resumes when the temperature drops.", page=2)
    out = _ask("What does ERROR HIGH TEMP mean?")
    assert out.index("[1] charger.pdf, page 2") < out.index("According to")


def test_an_empty_question_is_an_error():
    with pytest.raises(CommandError, match="empty"):
        _ask("   ")


def test_a_missing_model_is_reported_clearly(settings):
    settings.NANOSENTRI_LLM_BACKEND = "llamacpp"
    settings.NANOSENTRI_LLM_MODEL = "/nonexistent/model.gguf"
    _index("ERROR HIGH TEMP: charging resumes when the temperature drops.", page=2)
    err = StringIO()
    with pytest.raises(CommandError):
        call_command("ask", "What does ERROR HIGH TEMP mean?", "--json", stdout=StringIO(), stderr=err)
    assert "model file not found" in err.getvalue()
    assert Message.objects.get(role="assistant").status == "failed"


def test_with_the_narrative_off_the_summary_line_has_no_model_timings(settings):
    settings.NANOSENTRI_LLM_NARRATIVE = False
    _index("ERROR HIGH TEMP: charging resumes when the temperature drops below 55 C.", page=2)
    err = StringIO()
    call_command("ask", "What does ERROR HIGH TEMP mean?", stdout=StringIO(), stderr=err)
    line = err.getvalue()
    assert line.startswith("[retrieval ") and "completed" in line
    assert "first token" not in line and "None" not in line
