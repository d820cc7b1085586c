"""The chat websocket, driven with Channels' WebsocketCommunicator (mock model, mock embedder)."""
import asyncio
import json

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator

from apps.chat.consumers import ChatConsumer
from apps.chat.models import Message
from apps.knowledge.models import Document
from apps.knowledge.vector_index import get_vector_index
from ingest.chunk import Chunk
from models.llm import get_language_model

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]

PASSAGE = "ERROR HIGH TEMP: the charger is too hot. Charging resumes when the temperature drops below 55 C."


def _index_manual():
    from models.embedding import get_embedder

    doc = Document.objects.create(
        original_name="charger.pdf", stored_path="x.pdf", extension=".pdf", content_hash="h" * 64,
        status=Document.Status.INDEXED,
    )
    index = get_vector_index()
    chunks = [Chunk(page=2, index=0, text=PASSAGE), Chunk(page=1, index=1, text="Mounting the unit on a wall.")]
    index.add(document_id=doc.pk, file_name=doc.original_name, chunks=chunks,
              embeddings=get_embedder().embed([c.text for c in chunks]))
    return doc


async def _connect(user):
    communicator = WebsocketCommunicator(ChatConsumer.as_asgi(), "/ws/chat/")
    communicator.scope["user"] = user
    connected, _ = await communicator.connect()
    assert connected
    assert await communicator.receive_json_from() == {"type": "ready"}
    return communicator


async def _until_done(communicator, timeout=10):
    events = []
    while True:
        event = await communicator.receive_json_from(timeout=timeout)
        events.append(event)
        if event["type"] == "done":
            return events


@pytest.fixture
def slow_model(settings):
    model = get_language_model()
    model.token_delay = 0.02
    model.tokens_generated = 0
    yield model
    model.token_delay = 0.0


async def test_it_streams_citations_before_tokens_then_done(technician):
    await database_sync_to_async(_index_manual)()
    communicator = await _connect(technician)
    await communicator.send_json_to({"type": "ask", "question": "What does ERROR HIGH TEMP mean?"})
    events = await _until_done(communicator)
    kinds = [e["type"] for e in events]
    assert kinds[0] == "accepted"
    assert kinds[1] == "citations"
    assert kinds.index("citations") < kinds.index("token")
    citations = events[1]["items"]
    assert citations[0]["document"] == "charger.pdf" and citations[0]["page"] == 2
    assert citations[0]["url"].endswith("#page=2")
    done = events[-1]
    assert done["status"] == "completed"
    assert "[1]" in done["answer"]
    assert '<a class="cite" href="#cite-1">[1]</a>' in done["html"]
    assert done["timings"]["ttft_ms"] is not None and done["timings"]["retrieval_ms"] >= 0
    streamed = "".join(e["text"] for e in events if e["type"] == "token")
    assert streamed.strip() == done["answer"]
    answer = await database_sync_to_async(Message.objects.get)(pk=done["message"])
    assert answer.status == "completed" and answer.content == done["answer"]
    assert await database_sync_to_async(answer.citations.count)() >= 1
    await communicator.disconnect()


async def test_it_says_not_covered_without_asking_the_model(technician, settings):
    settings.NANOSENTRI_RETRIEVAL_MIN_SCORE = 0.99
    await database_sync_to_async(_index_manual)()
    model = get_language_model()
    before = model.tokens_generated
    communicator = await _connect(technician)
    await communicator.send_json_to({"type": "ask", "question": "How do I bake bread?"})
    events = await _until_done(communicator)
    assert events[1] == {**events[1], "type": "citations", "items": []}
    assert events[-1]["status"] == "not_covered"
    assert "do not cover" in events[-1]["answer"]
    assert model.tokens_generated == before
    await communicator.disconnect()


async def test_stop_really_stops_the_model_and_keeps_the_partial_answer(technician, slow_model):
    await database_sync_to_async(_index_manual)()
    communicator = await _connect(technician)
    await communicator.send_json_to({"type": "ask", "question": "What does ERROR HIGH TEMP mean?"})
    while (await communicator.receive_json_from())["type"] != "token":
        pass
    await communicator.send_json_to({"type": "stop"})
    events = await _until_done(communicator)
    done = events[-1]
    assert done["status"] == "stopped"
    generated = slow_model.tokens_generated
    await asyncio.sleep(0.3)
    assert slow_model.tokens_generated == generated, "the model kept generating after stop"
    assert generated < 50  # max_tokens is 320: it stopped early
    answer = await database_sync_to_async(Message.objects.get)(pk=done["message"])
    assert answer.status == "stopped" and answer.content
    await communicator.disconnect()


async def test_disconnect_stops_the_model(technician, slow_model):
    await database_sync_to_async(_index_manual)()
    communicator = await _connect(technician)
    await communicator.send_json_to({"type": "ask", "question": "What does ERROR HIGH TEMP mean?"})
    while (await communicator.receive_json_from())["type"] != "token":
        pass
    await communicator.disconnect()
    await asyncio.sleep(0.3)
    generated = slow_model.tokens_generated
    await asyncio.sleep(0.3)
    assert slow_model.tokens_generated == generated
    message = await database_sync_to_async(lambda: Message.objects.filter(role="assistant").latest("pk"))()
    assert message.status == "stopped"


@pytest.mark.parametrize(
    "frame, code",
    [
        ("not json", "bad_frame"),
        ("[1, 2]", "bad_frame"),
        ('{"no": "type"}', "bad_frame"),
        ('{"type": "launch"}', "bad_frame"),
        ('{"type": "ask"}', "invalid_question"),
        ('{"type": "ask", "question": "   "}', "invalid_question"),
        ('{"type": "ask", "question": 42}', "invalid_question"),
        ('{"type": "ask", "question": "' + "x" * 3000 + '"}', "invalid_question"),
        ('{"type": "ask", "question": "hi", "conversation": "1; drop"}', "bad_frame"),
        ('{"type": "ask", "question": "hi", "conversation": 99999}', "unknown_conversation"),
        ('{"type": "ask", "question": "' + "y" * 20000 + '"}', "bad_frame"),
    ],
)
async def test_malformed_frames_get_an_error_and_the_socket_stays_open(technician, frame, code):
    communicator = await _connect(technician)
    await communicator.send_to(text_data=frame)
    event = await communicator.receive_json_from()
    assert event["type"] == "error" and event["code"] == code, event
    await communicator.send_json_to({"type": "ping"})
    assert await communicator.receive_json_from() == {"type": "pong"}
    await communicator.disconnect()


async def test_binary_frames_are_refused(technician):
    communicator = await _connect(technician)
    await communicator.send_to(bytes_data=b"\x00\x01")
    event = await communicator.receive_json_from()
    assert event["code"] == "bad_frame"
    await communicator.disconnect()


async def test_another_users_conversation_is_unknown(technician, supervisor):
    from apps.chat.models import Conversation

    theirs = await database_sync_to_async(Conversation.objects.create)(user=supervisor, title="private")
    communicator = await _connect(technician)
    await communicator.send_json_to({"type": "ask", "question": "hi", "conversation": theirs.pk})
    event = await communicator.receive_json_from()
    assert event["code"] == "unknown_conversation"
    await communicator.disconnect()


async def test_anonymous_and_roleless_users_are_refused(outsider):
    from django.contrib.auth.models import AnonymousUser

    for user in (AnonymousUser(), outsider):
        communicator = WebsocketCommunicator(ChatConsumer.as_asgi(), "/ws/chat/")
        communicator.scope["user"] = user
        connected, code = await communicator.connect()
        assert not connected and code == 4403


async def test_the_full_asgi_stack_checks_origin_and_session(technician, client):
    from nanosentri_site.asgi import application

    # No session cookie: refused.
    communicator = WebsocketCommunicator(application, "/ws/chat/", headers=[(b"origin", b"http://localhost")])
    connected, code = await communicator.connect()
    assert not connected
    # A logged-in session from a foreign origin: refused.
    await database_sync_to_async(client.force_login)(technician)
    cookie = f"sessionid={client.cookies['sessionid'].value}".encode()
    communicator = WebsocketCommunicator(
        application, "/ws/chat/", headers=[(b"origin", b"http://evil.example"), (b"cookie", cookie), (b"host", b"localhost")]
    )
    connected, _ = await communicator.connect()
    assert not connected
    # The same session from our origin: accepted.
    communicator = WebsocketCommunicator(
        application, "/ws/chat/", headers=[(b"origin", b"http://localhost"), (b"cookie", cookie), (b"host", b"localhost")]
    )
    connected, _ = await communicator.connect()
    assert connected
    assert json.loads(await communicator.receive_from()) == {"type": "ready"}
    await communicator.disconnect()


async def test_a_second_ask_while_streaming_is_busy(technician, slow_model):
    await database_sync_to_async(_index_manual)()
    communicator = await _connect(technician)
    await communicator.send_json_to({"type": "ask", "question": "What does ERROR HIGH TEMP mean?"})
    while (await communicator.receive_json_from())["type"] != "token":
        pass
    await communicator.send_json_to({"type": "ask", "question": "again"})
    while (event := await communicator.receive_json_from())["type"] == "token":
        pass
    assert event["type"] == "error" and event["code"] == "busy"
    await communicator.send_json_to({"type": "stop"})
    await _until_done(communicator)
    await communicator.disconnect()


async def test_a_second_chat_waits_its_turn_and_is_told_its_position(technician, supervisor, slow_model):
    await database_sync_to_async(_index_manual)()
    first = await _connect(technician)
    second = await _connect(supervisor)
    await first.send_json_to({"type": "ask", "question": "What does ERROR HIGH TEMP mean?"})
    while (await first.receive_json_from())["type"] != "token":
        pass
    await second.send_json_to({"type": "ask", "question": "What does ERROR HIGH TEMP mean?"})
    kinds = []
    while (event := await second.receive_json_from())["type"] != "queued":
        kinds.append(event["type"])
    assert event["position"] == 1
    assert "citations" in kinds  # the evidence does not wait for the model
    await first.send_json_to({"type": "stop"})
    await _until_done(first)
    events = await _until_done(second, timeout=30)
    assert any(e["type"] == "token" for e in events)
    assert events[-1]["status"] == "completed"
    await first.disconnect()
    await second.disconnect()


async def test_the_evidence_phase_begins_when_the_question_arrives_and_ends_on_a_refusal(technician, monkeypatch):
    """The local model gives way to a chat from the moment its question is received (not only once
    its answer thread runs), and a refused question leaves no phase behind."""
    from apps.chat import services
    from models.llm import generation_queue

    await database_sync_to_async(_index_manual)()
    seen = []
    real_clean = services.ask_request_clean

    def recording_clean(**kwargs):
        seen.append(generation_queue._gathering)
        return real_clean(**kwargs)

    monkeypatch.setattr(services, "ask_request_clean", recording_clean)
    communicator = await _connect(technician)
    await communicator.send_json_to({"type": "ask", "question": "What does ERROR HIGH TEMP mean?"})
    await _until_done(communicator)
    await communicator.disconnect()
    second = await _connect(technician)
    await second.send_json_to({"type": "ask", "question": "   "})  # refused: empty question
    refused = await second.receive_json_from(timeout=10)
    assert refused["type"] == "error" and refused["code"] != "busy"
    assert seen == [1, 1]  # counted while the question was being checked
    assert generation_queue._gathering == 0
    await second.disconnect()
