"""Token frames coalesced in the generation thread: fewer wake-ups of the event loop, nothing lost or reordered."""
import pytest

from apps.chat.streaming import TokenCoalescer


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def _token(text, message=1):
    return {"type": "token", "message": message, "text": text}


def test_the_first_token_goes_at_once_and_the_next_ones_wait_for_the_interval():
    sent, clock = [], Clock()
    emit = TokenCoalescer(sent.append, interval_s=0.05, clock=clock)

    emit(_token("The"))
    assert sent == [{"type": "token", "message": 1, "text": "The", "tokens": 1}]
    for piece in (" fuse", " F2", " is"):
        clock.now += 0.01
        emit(_token(piece))
    assert len(sent) == 1  # held: within 50 ms of the last frame
    clock.now += 0.03
    emit(_token(" blown"))
    assert sent[-1] == {"type": "token", "message": 1, "text": " fuse F2 is blown", "tokens": 4}


def test_any_other_event_first_flushes_the_held_tokens():
    sent, clock = [], Clock()
    emit = TokenCoalescer(sent.append, interval_s=0.05, clock=clock)
    emit(_token("Check"))
    clock.now += 0.001
    emit(_token(" the"))
    emit(_token(" relay"))
    emit({"type": "done", "message": 1, "status": "completed"})
    emit(None)

    assert [e and e["type"] for e in sent] == ["token", "token", "done", None]
    assert "".join(e["text"] for e in sent if e and e["type"] == "token") == "Check the relay"
    assert sent[1]["tokens"] == 2


def test_tokens_of_another_message_are_not_merged():
    sent, clock = [], Clock()
    emit = TokenCoalescer(sent.append, interval_s=0.05, clock=clock)
    emit(_token("a", message=1))
    emit(_token("b", message=1))
    emit(_token("c", message=2))
    emit.flush()
    assert [(e["message"], e["text"]) for e in sent] == [(1, "a"), (1, "b"), (2, "c")]


def test_an_interval_of_zero_sends_every_token():
    sent = []
    emit = TokenCoalescer(sent.append, interval_s=0)
    for piece in "abc":
        emit(_token(piece))
    assert [e["text"] for e in sent] == ["a", "b", "c"]


# --- through the answer pipeline ------------------------------------------------------------------


def _indexed_passage():
    from apps.knowledge.models import Document
    from apps.knowledge.vector_index import get_vector_index
    from ingest.chunk import Chunk
    from models.embedding import get_embedder

    text = "ERROR HIGH TEMP: the charger is too hot. Charging resumes when the temperature drops below 55 C."
    doc = Document.objects.create(
        original_name="charger.pdf", stored_path="x.pdf", extension=".pdf", content_hash="s" * 64,
        status=Document.Status.INDEXED,
    )
    get_vector_index().add(document_id=doc.pk, file_name="charger.pdf", chunks=[Chunk(page=2, index=0, text=text)],
                           embeddings=get_embedder().embed([text]))


@pytest.mark.django_db
def test_the_last_tokens_reach_the_client_before_the_answer_is_checked_and_stored(monkeypatch, settings):
    """Tokens held back by the coalescer go out when the model ends, not after the check of the text
    against the evidence and the database write that make up ``done``."""
    from apps.chat import services

    settings.NANOSENTRI_SITE_LLM_URL = ""
    _indexed_passage()
    sent = []
    emit = TokenCoalescer(sent.append, interval_s=60)  # every token after the first is held
    seen_at_check = []
    real_check = services.ungrounded_claims

    def check(text, **kwargs):
        seen_at_check.append("".join(e["text"] for e in sent if e and e["type"] == "token"))
        return real_check(text, **kwargs)

    monkeypatch.setattr(services, "ungrounded_claims", check)
    conversation = services.conversation_for(user=None, title="q")
    for event in services.answer_stream(question="What does ERROR HIGH TEMP mean?", conversation=conversation):
        emit(event)

    kinds = [e["type"] for e in sent]
    assert kinds[-2:] == ["generated", "done"] and kinds[-3] == "token"
    done = sent[-1]
    assert done["status"] == "completed" and done["answer"]
    assert sent[-2]["tokens"] == done["timings"]["tokens"] > 1
    # When the check ran, the client already had the whole text the model wrote.
    assert seen_at_check == ["".join(e["text"] for e in sent if e["type"] == "token")]
    assert seen_at_check[0].strip() == done["answer"]
