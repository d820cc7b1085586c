"""The answer pipeline through the real model, real embeddings and real Chroma."""
import asyncio
import json
import threading
import time
from io import StringIO

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.core.management import call_command

from apps.chat import services
from apps.chat.consumers import ChatConsumer
from apps.chat.models import Message
from apps.knowledge.services import document_add_path, document_ingest
from models.llm import get_language_model

pytestmark = [pytest.mark.integration]

QUESTION = "What does ERROR HIGH TEMP mean and when does charging resume?"


def _ingest(*paths):
    docs = []
    for path in paths:
        document, _ = document_add_path(path=path)
        document = document_ingest(document_id=document.pk)
        assert document.status == "indexed", document.error
        docs.append(document)
    return docs


@pytest.mark.django_db
def test_ingest_then_ask_cites_the_right_page_and_streams_an_answer(real_stack, smartevse, troubleshooting):
    _ingest(smartevse, troubleshooting)
    conversation = services.conversation_for(user=None, title=QUESTION)
    events = list(services.answer_stream(question=QUESTION, conversation=conversation))
    kinds = [e["type"] for e in events]
    assert kinds.index("citations") < kinds.index("token")
    citations = next(e for e in events if e["type"] == "citations")["items"]
    assert citations[0]["document"] == smartevse.name
    assert citations[0]["page"] == 2
    assert "55" in citations[0]["text"]  # the passage says when charging resumes
    tokens = [e["text"] for e in events if e["type"] == "token"]
    assert len(tokens) > 5
    done = events[-1]
    assert done["type"] == "done" and done["status"] == "completed"
    assert done["answer"] == "".join(tokens).strip()
    assert done["timings"]["tokens_per_s"] > 0 and done["timings"]["ttft_ms"] > 0
    assert "<script" not in done["html"]


@pytest.mark.django_db
def test_ask_json_through_the_real_model(real_stack, smartevse):
    _ingest(smartevse)
    out = StringIO()
    call_command("ask", QUESTION, "--json", stdout=out)
    result = json.loads(out.getvalue())
    assert result["citations"][0]["page"] == 2
    assert result["citations"][0]["document"] == smartevse.name
    assert len(result["answer"]) > 20
    assert result["timings"]["ttft_ms"] > 0 and result["timings"]["tokens_per_s"] > 0


@pytest.mark.django_db
def test_an_unrelated_question_is_not_covered(real_stack, smartevse):
    _ingest(smartevse)
    conversation = services.conversation_for(user=None, title="x")
    events = list(services.answer_stream(question="What is the capital of Mongolia?", conversation=conversation))
    assert next(e for e in events if e["type"] == "citations")["items"] == []
    assert events[-1]["status"] == "not_covered"


@pytest.mark.django_db
def test_stop_really_stops_the_real_model(real_stack, smartevse):
    _ingest(smartevse)
    model = get_language_model()
    cancel = threading.Event()
    conversation = services.conversation_for(user=None, title=QUESTION)
    stream = services.answer_stream(question=QUESTION, conversation=conversation, cancel=cancel)
    tokens = 0
    for event in stream:
        if event["type"] == "token":
            tokens += 1
            if tokens == 3:
                stopped_at = time.perf_counter()
                cancel.set()
        if event["type"] == "done":
            done = event
    assert done["status"] == "stopped"
    assert time.perf_counter() - stopped_at < 1.0
    assert tokens <= 4  # at most the token already being computed
    # The model is free at once: nothing is still generating in the background.
    assert model._lock.acquire(timeout=0.5)
    model._lock.release()
    message = Message.objects.get(pk=done["message"])
    assert message.status == "stopped" and message.content


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_websocket_streams_the_real_model_and_stop_stops_it(real_stack, technician, smartevse):
    await database_sync_to_async(_ingest)(smartevse)
    await database_sync_to_async(get_language_model)()  # loaded before the clock starts
    communicator = WebsocketCommunicator(ChatConsumer.as_asgi(), "/ws/chat/")
    communicator.scope["user"] = technician
    assert (await communicator.connect())[0]
    assert (await communicator.receive_json_from())["type"] == "ready"
    sent = time.perf_counter()
    await communicator.send_json_to({"type": "ask", "question": QUESTION})
    kinds = []
    while True:
        event = await communicator.receive_json_from(timeout=60)
        kinds.append(event["type"])
        if event["type"] == "citations":
            citations_after = time.perf_counter() - sent
            assert event["items"][0]["page"] == 2
        if kinds.count("token") == 3:
            await communicator.send_json_to({"type": "stop"})
        if event["type"] == "done":
            break
    assert citations_after < 1.0, f"citations took {citations_after:.2f} s"
    assert kinds.index("citations") < kinds.index("token")
    assert event["status"] == "stopped"
    assert kinds.count("token") < 10
    await asyncio.sleep(0.2)
    await communicator.disconnect()


@pytest.mark.django_db
def test_a_chat_template_file_overrides_the_one_in_the_gguf(real_stack, tmp_path):
    from models.llm import ChatMessage

    messages = [ChatMessage("user", "Say hello.")]

    def prompt_tokens(model):
        list(model.stream_chat(messages, max_tokens=1, temperature=0.0, should_stop=lambda: False))
        return model._llm.n_tokens  # tokens evaluated: the formatted prompt plus one

    default = prompt_tokens(get_language_model())
    preamble = "maintenance " * 200
    template = tmp_path / "template.jinja"
    template.write_text(
        preamble + "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
        "<|im_start|>assistant\n"
    )
    real_stack.NANOSENTRI_LLM_CHAT_TEMPLATE = str(template)
    overridden = prompt_tokens(get_language_model())
    assert overridden - default >= 150, (default, overridden)


@pytest.mark.django_db
@pytest.mark.parametrize(
    "question, context, rule, phrases",
    [
        ("Why is the wind sensor not reporting data?",
         "[2026-06-12] ID:WXT536 >>> HEAT_CURRENT: 0.00A | TEMP_AMB: -15.2C | STATUS: ICE_WARNING",
         "heater_failure", ["heat", "24 V heater supply"]),
        ("Diagnose the intermittent resets.", "V_IN: 8.4V [LOW] | REF_CHK: FAIL | EVENT: SYSTEM_RESET",
         "low_supply_resets", ["8.4 V is below the 10–30 V operating range", "root cause"]),
    ],
)
def test_sensor_findings_reach_the_answer_through_the_real_model(real_stack, smartevse, question, context, rule, phrases):
    _ingest(smartevse)  # an unrelated manual: it must not be cited for this device
    out = StringIO()
    call_command("ask", question, "--context", context, "--json", stdout=out)
    result = json.loads(out.getvalue())
    top = result["findings"][0]
    assert top["rule"] == rule and top["severity"] == "high"
    for phrase in phrases:
        assert phrase in top["message"]
    assert result["citations"] == []
    assert result["status"] == "completed" and len(result["answer"]) > 20
    message = Message.objects.get(role="assistant")
    assert message.live_context["findings"][0]["rule"] == rule
    # The findings were in the prompt the model saw.
    assert message.timings["prompt_tokens"] > 100


@pytest.mark.django_db
def test_the_evidence_phase_holds_the_model_back_until_the_evidence_is_out(real_stack, smartevse, settings):
    """Real model: while a chat gathers its evidence the queue counts it, the model gives way to it,
    and the count ends when the evidence is out (also for a refusal, which never reaches the model)."""
    from models.llm import generation_queue

    settings.NANOSENTRI_LLM_NARRATIVE = True
    _ingest(smartevse)
    conversation = services.conversation_for(user=None, title=QUESTION)
    seen = {}
    for event in services.answer_stream(question=QUESTION, conversation=conversation):
        seen.setdefault(event["type"], generation_queue._gathering)
    assert seen["citations"] == 1 and seen["extract"] == 1  # still gathering when the evidence is sent
    assert seen["token"] == 0 and seen["done"] == 0
    assert generation_queue._gathering == 0
    refused = services.conversation_for(user=None, title="x")
    list(services.answer_stream(question="What is the capital of Mongolia?", conversation=refused))
    assert generation_queue._gathering == 0
