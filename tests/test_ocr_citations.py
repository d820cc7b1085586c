"""A passage read by OCR is cited as such: in the citations frame, the stored citation, the page and the API."""
import pytest

from apps.chat import services
from apps.chat.models import Citation
from apps.knowledge.models import Document
from apps.knowledge.vector_index import get_vector_index
from ingest.chunk import Chunk
from models.embedding import get_embedder

SCAN = "Wiring diagram: the bed thermistor plugs into the TB header next to the hot bed output."
TEXT = "The hot bed output is fused at 15 A on the mainboard."


@pytest.mark.django_db
def test_an_ocr_passage_is_marked_in_the_citation(settings, client, admin_user):
    settings.NANOSENTRI_LLM_NARRATIVE = False
    settings.NANOSENTRI_RETRIEVAL_MIN_SCORE = 0.0  # the hashed mock embedder's cosines are low
    settings.NANOSENTRI_RETRIEVAL_RELATIVE_CUTOFF = 100.0
    doc = Document.objects.create(original_name="ender.pdf", stored_path="ender.pdf", extension=".pdf",
                                  content_hash="f" * 64, status=Document.Status.INDEXED)
    chunks = [Chunk(page=11, index=0, text=SCAN, source="ocr"), Chunk(page=3, index=1, text=TEXT)]
    get_vector_index().add(document_id=doc.pk, file_name="ender.pdf", chunks=chunks,
                           embeddings=get_embedder().embed([c.text for c in chunks]))
    conversation = services.conversation_for(user=admin_user, title="t")

    result = services.answer_result(question="Where does the bed thermistor plug in on the wiring diagram?",
                                    conversation=conversation)

    sources = {c["page"]: c["source"] for c in result["citations"]}
    assert sources == {11: "ocr", 3: "text"}
    stored = {c.page: c.source for c in Citation.objects.filter(message_id=result["message"])}
    assert stored == {11: "ocr", 3: "text"}
    client.force_login(admin_user)
    page = client.get(f"/chat/{conversation.pk}/").content.decode()
    assert page.count('class="ocr-badge"') == 1
