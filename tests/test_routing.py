"""Routing between the local model and a site model server: the policy, the router's fallbacks,
and the pipeline's record of the route (fake models; the real server: test_integration_routing.py)."""
import asyncio
import threading
import time

import pytest

from apps.assets.models import Asset
from apps.chat import services
from apps.chat.models import Conversation, Message
from apps.knowledge.models import Document
from apps.knowledge.vector_index import get_vector_index
from ingest.chunk import Chunk
from models.errors import ModelUnavailable
from models.llm import generation_queue, get_language_model
from models.llm.base import LanguageModel
from models.llm.queue import GenerationQueue
from models.llm.router import RoutedAnswer
from models.llm.routing import (
    INTERNAL,
    LOCAL,
    PUBLIC,
    RESTRICTED,
    SITE,
    Evidence,
    Route,
    SiteHealth,
    privacy_max,
    route_choose,
)

PASSAGE = "ERROR HIGH TEMP: the charger is too hot. Charging resumes when the temperature drops below 55 C."


# --- the policy ---------------------------------------------------------------------------------


def _choose(levels=(PUBLIC,), local_only=False, configured=True, healthy=True):
    evidence = [Evidence(level, f"manual “{i}.pdf”") for i, level in enumerate(levels)]
    return route_choose(evidence=evidence, local_only=local_only, site_configured=configured, site_healthy=healthy)


def test_it_sends_public_and_internal_evidence_to_the_site_server():
    assert _choose([PUBLIC]).via == SITE
    assert _choose([PUBLIC, INTERNAL]).reason == "site"


def test_restricted_evidence_stays_local_and_the_reason_names_it():
    route = _choose([PUBLIC, RESTRICTED])
    assert (route.via, route.reason) == (LOCAL, "restricted")
    assert "“1.pdf”" in route.detail and "“0.pdf”" not in route.detail


def test_an_unknown_level_counts_as_restricted():
    assert _choose(["secret"]).reason == "restricted"
    assert privacy_max(["public", "bogus"]) == "bogus"


def test_the_order_of_the_rules():
    assert _choose([RESTRICTED], local_only=True, configured=False).reason == "no_site_server"
    assert _choose([RESTRICTED], local_only=True).reason == "local_only"
    assert _choose([RESTRICTED], healthy=False).reason == "restricted"
    assert _choose([PUBLIC], healthy=False).reason == "site_down"
    assert _choose([]).via == SITE  # nothing private in the prompt


def test_a_failed_site_server_is_skipped_for_the_retry_time():
    now = [0.0]
    health = SiteHealth(retry_s=30, clock=lambda: now[0])
    assert health.healthy()
    health.failed()
    now[0] = 29.9
    assert not health.healthy()
    now[0] = 30.0
    assert health.healthy()


# --- the router, with fake models -------------------------------------------------------------


class FakeModel(LanguageModel):
    """Yields ``words``; waits ``first_delay`` before the first, raises ``fail`` after ``fail_after``."""

    context_window = 4096

    def __init__(self, name, words, *, first_delay=0.0, delay=0.0, fail_after=None, fail=None):
        self.name, self.words = name, words
        self.first_delay, self.delay, self.fail_after, self.fail = first_delay, delay, fail_after, fail
        self.calls, self.generated, self.sessions = [], 0, []

    def count_tokens(self, text):
        return len(text.split())

    def stream_chat(self, messages, *, max_tokens, temperature, should_stop, session=None):
        self.calls.append(messages)
        self.sessions.append(session)
        if self.fail is not None and self.fail_after == 0:
            raise self.fail
        deadline = time.monotonic() + self.first_delay
        while time.monotonic() < deadline:
            if should_stop():
                return
            time.sleep(0.005)
        for i, word in enumerate(self.words[:max_tokens]):
            if should_stop():
                return
            if self.fail is not None and self.fail_after == i:
                raise self.fail
            if self.delay:
                time.sleep(self.delay)
            self.generated += 1
            yield word


class FakePrompt:
    def __init__(self, model):
        self.messages = [f"prompt for {model.name}"]
        self.prompt_tokens = 3


def _router(route, local, site, *, should_stop=lambda: False, first_token_timeout=2.0, stall_timeout=2.0, health=None):
    return RoutedAnswer(
        route, local=lambda: local, site=site, prompt_for=FakePrompt, max_tokens=50, temperature=0.0,
        should_stop=should_stop, session=7, queue=GenerationQueue(), first_token_timeout=first_token_timeout,
        stall_timeout=stall_timeout, health=health,
    )


SITE_ROUTE = Route(SITE, "site", "Answered by the site model server.")
WORDS = ["Check", " the", " fuse", " F2", "."]


def test_the_site_server_answers_when_the_route_says_so():
    local, site = FakeModel("tiny", WORDS), FakeModel("big", ["Replace", " fuse", " F2", "."])
    router = _router(SITE_ROUTE, local, site)
    events = list(router.events())
    assert events[0][0] == "route" and events[0][1].model == "big" and events[0][2] is False
    assert "".join(e[1] for e in events if e[0] == "token") == "Replace fuse F2."
    assert local.calls == [] and router.route_taken.reason == "site"


def test_an_unreachable_server_falls_back_to_the_local_model():
    health = SiteHealth(retry_s=60)
    site = FakeModel("big", [], fail_after=0, fail=ModelUnavailable("connection refused"))
    router = _router(SITE_ROUTE, FakeModel("tiny", WORDS), site, health=health)
    events = list(router.events())
    routes = [e for e in events if e[0] == "route"]
    assert [(r[1].via, r[1].reason, r[2]) for r in routes] == [(SITE, "site", False), (LOCAL, "site_unreachable", False)]
    assert "".join(router.pieces) == "Check the fuse F2."
    assert router.route_taken.model == "tiny"
    assert not health.healthy()  # the next questions do not wait for it again


def test_a_slow_first_token_falls_back_after_the_timeout():
    site = FakeModel("big", ["late"], first_delay=5.0)
    router = _router(SITE_ROUTE, FakeModel("tiny", WORDS), site, first_token_timeout=0.2)
    started = time.monotonic()
    list(router.events())
    assert time.monotonic() - started < 2.0
    assert router.route.reason == "site_slow" and "0.2 s" in router.route.detail
    assert "".join(router.pieces) == "Check the fuse F2."


def test_a_failure_mid_stream_restarts_the_answer_locally_and_discards_the_partial_text():
    site = FakeModel("big", ["Replace", " the", " relay", " K1"], fail_after=2, fail=ModelUnavailable("reset"))
    router = _router(SITE_ROUTE, FakeModel("tiny", WORDS), site)
    events = list(router.events())
    kinds = [e[0] if e[0] != "route" else ("route", e[1].reason, e[2]) for e in events]
    assert kinds == [("route", "site", False), "token", "token", ("route", "site_failed", True)] + ["token"] * 5
    assert "".join(router.pieces) == "Check the fuse F2."  # only the local answer stands
    assert router.discarded_tokens == 2 and "after 2 tokens" in router.route.detail


def test_a_stalled_stream_counts_as_a_failure():
    slow = FakeModel("big", ["Replace", " the"], delay=0.8)  # a token, then 0.8 s of silence
    router = _router(SITE_ROUTE, FakeModel("tiny", WORDS), slow, first_token_timeout=5, stall_timeout=0.3)
    list(router.events())
    assert router.route.reason == "site_failed" and "no token for 0.3 s after 1" in router.route.detail
    assert "".join(router.pieces) == "Check the fuse F2."


def test_a_stop_ends_the_site_route_at_once_and_the_remote_generation_too():
    stop = threading.Event()
    site = FakeModel("big", ["word "] * 200, delay=0.02)
    local = FakeModel("tiny", WORDS)
    router = _router(SITE_ROUTE, local, site, should_stop=stop.is_set)
    for kind, *rest in router.events():
        if kind == "token" and len(router.pieces) == 3:
            stop.set()
    time.sleep(0.2)  # the remote side sees the stop at its next token
    assert len(router.pieces) == 3 and local.calls == []
    assert site.generated < 10


def test_the_local_route_keeps_the_conversation_session_for_the_kv_cache():
    local = FakeModel("tiny", WORDS)
    router = _router(Route(LOCAL, "no_site_server", "x"), local, None)
    list(router.events())
    assert local.sessions == [7]


# --- the pipeline ---------------------------------------------------------------------------------


def _index(privacy=PUBLIC, name="charger.pdf", text=PASSAGE, digest="h"):
    from models.embedding import get_embedder

    doc = Document.objects.create(
        original_name=name, stored_path="x.pdf", extension=".pdf", content_hash=digest * 64,
        status=Document.Status.INDEXED, privacy=privacy,
    )
    chunks = [Chunk(page=2, index=0, text=text)]
    get_vector_index().add(document_id=doc.pk, file_name=name, chunks=chunks,
                           embeddings=get_embedder().embed([c.text for c in chunks]))
    return doc


@pytest.fixture
def site(monkeypatch, settings):
    """A fake site server, configured; records what it was sent."""
    settings.NANOSENTRI_SITE_LLM_URL = "http://site.invalid/v1"
    model = FakeModel("big @ site", ["The", " site", " says", " [1]", "."])
    monkeypatch.setattr("models.llm.get_site_model", lambda: model)
    from models.llm import site_health

    site_health().ok()
    yield model
    site_health().ok()


def _ask(question="What does ERROR HIGH TEMP mean?", conversation=None, **kwargs):
    conversation = conversation or services.conversation_for(user=None, title="q")
    events = list(services.answer_stream(question=question, conversation=conversation, **kwargs))
    return conversation, events


@pytest.mark.django_db
def test_without_a_site_server_the_local_model_answers_and_says_so(settings):
    settings.NANOSENTRI_SITE_LLM_URL = ""
    _index()
    _, events = _ask()
    route = next(e for e in events if e["type"] == "route")
    assert (route["via"], route["reason"], route["model"]) == ("local", "no_site_server", "mock")
    done = events[-1]
    assert done["status"] == "completed" and done["route"]["reason"] == "no_site_server"
    message = Message.objects.get(pk=done["message"])
    assert (message.route, message.route_reason, message.model_name) == ("local", "no_site_server", "mock")
    assert message.route_info["detail"].startswith("Answered on this device")


@pytest.mark.django_db
def test_public_evidence_goes_to_the_site_server(site):
    _index(PUBLIC)
    _, events = _ask()
    assert [e["reason"] for e in events if e["type"] == "route"] == ["site"]
    assert "ERROR HIGH TEMP" in site.calls[0][-1].content
    done = events[-1]
    assert done["answer"] == "The site says [1]." and done["route"]["model"] == "big @ site"
    assert Message.objects.get(pk=done["message"]).privacy == PUBLIC


@pytest.mark.django_db
def test_restricted_evidence_never_reaches_the_site_server(site):
    _index(RESTRICTED, name="secret-wiring.pdf")
    _, events = _ask()
    assert site.calls == []
    done = events[-1]
    assert done["status"] == "completed" and done["route"]["reason"] == "restricted"
    assert "secret-wiring.pdf" in done["route"]["detail"]
    assert Message.objects.get(pk=done["message"]).privacy == RESTRICTED


@pytest.mark.django_db
def test_restricted_readings_stay_local_too(site):
    _index(PUBLIC)
    asset = Asset.objects.create(asset_id="PUMP-7", name="Pump 7", privacy=RESTRICTED)
    _, events = _ask(asset=asset)
    assert site.calls == []
    assert events[-1]["route"]["reason"] == "restricted" and "PUMP-7" in events[-1]["route"]["detail"]


@pytest.mark.django_db
def test_a_follow_up_of_a_restricted_answer_stays_local(site):
    _index(RESTRICTED, name="secret.pdf", digest="a")
    conversation, _ = _ask()
    Document.objects.update(privacy=PUBLIC)  # even when the next evidence is public...
    _index(PUBLIC, name="public.pdf", text="Mounting the charger on a wall needs four screws.", digest="b")
    Message.objects.filter(conversation=conversation).update(privacy=RESTRICTED)
    _, events = _ask("How is the charger mounted on a wall?", conversation=conversation)
    # ...the earlier restricted turn goes into the follow-up's prompt: it stays on the device.
    assert site.calls == [] and events[-1]["route"]["reason"] == "restricted"
    assert "earlier answer" in events[-1]["route"]["detail"]


@pytest.mark.django_db
def test_local_only_conversations_never_use_the_site_server(site):
    _index(PUBLIC)
    conversation = services.conversation_for(user=None, title="q")
    services.conversation_local_only_set(conversation=conversation, local_only=True)
    conversation.refresh_from_db()
    _, events = _ask(conversation=conversation)
    assert site.calls == [] and events[-1]["route"]["reason"] == "local_only"


@pytest.mark.django_db
def test_a_failing_site_server_falls_back_and_the_answer_completes(site):
    site.fail, site.fail_after = ModelUnavailable("peer closed connection"), 2
    _index(PUBLIC)
    _, events = _ask()
    routes = [(e["via"], e["reason"], e["restart"]) for e in events if e["type"] == "route"]
    assert routes == [("site", "site", False), ("local", "site_failed", True)]
    done = events[-1]
    assert done["status"] == "completed"
    assert done["answer"].startswith("According to the manual passages")  # the mock local model, afresh
    assert done["route"]["model"] == "mock" and done["timings"]["discarded_tokens"] == 2
    assert done["timings"]["fallback_ms"] is not None
    message = Message.objects.get(pk=done["message"])
    assert message.route_reason == "site_failed" and message.content == done["answer"]


@pytest.mark.django_db
def test_the_ask_result_carries_the_route(settings):
    settings.NANOSENTRI_SITE_LLM_URL = ""
    _index()
    conversation = services.conversation_for(user=None, title="q")
    result = services.answer_result(question="What does ERROR HIGH TEMP mean?", conversation=conversation)
    assert result["route"]["model"] == "mock" and result["route"]["reason"] == "no_site_server"


@pytest.mark.django_db
def test_answers_without_a_model_say_why(settings):
    settings.NANOSENTRI_SITE_LLM_URL = ""
    _, events = _ask("Completely unrelated question about bananas?")
    assert events[-1]["status"] == "not_covered"
    route = events[-1]["route"]
    assert (route["via"], route["reason"], route["model"], route["label"]) == ("none", "not_covered", "", "")
    assert route["detail"].startswith("No model was asked")
    _index()
    settings.NANOSENTRI_LLM_NARRATIVE = False
    _, events = _ask()
    assert events[-1]["route"]["reason"] == "extract_only"


@pytest.mark.django_db
def test_a_stop_in_the_queue_is_recorded_without_a_model(settings):
    settings.NANOSENTRI_SITE_LLM_URL = ""
    _index()
    cancel = threading.Event()
    ticket = generation_queue.join()  # someone else is generating
    try:
        conversation = services.conversation_for(user=None, title="q")
        events = []
        for event in services.answer_stream(question="What does ERROR HIGH TEMP mean?", conversation=conversation,
                                            cancel=cancel):
            events.append(event)
            if event["type"] == "queued":
                cancel.set()
    finally:
        generation_queue.leave(ticket)
    assert events[-1]["status"] == "stopped"
    assert get_language_model().name == "mock"


# --- privacy at upload --------------------------------------------------------------------------


class _Upload:
    def __init__(self, name, data):
        self.name, self.size, self._data = name, len(data), data

    def chunks(self):
        yield self._data


@pytest.mark.django_db
def test_privacy_is_set_at_upload_and_a_duplicate_never_lowers_it(settings):
    from apps.knowledge import uploads

    settings.NANOSENTRI_DEFAULT_PRIVACY = INTERNAL
    data = b"Fault E7: replace the pump seal.\n"
    [outcome] = uploads.upload_files(files=[_Upload("pump.txt", data)])
    assert outcome.document.privacy == INTERNAL  # the default
    uploads.upload_files(files=[_Upload("pump-again.txt", data)], privacy=RESTRICTED)
    assert Document.objects.get().privacy == RESTRICTED
    uploads.upload_files(files=[_Upload("pump-3.txt", data)], privacy=PUBLIC)
    assert Document.objects.get().privacy == RESTRICTED
    [other] = uploads.upload_files(files=[_Upload("fan.txt", b"Fan noise: check the bearing.\n")], privacy=PUBLIC)
    assert other.document.privacy == PUBLIC


@pytest.mark.django_db
def test_the_upload_form_sets_the_privacy(admin_user, client, settings):
    client.force_login(admin_user)
    from django.core.files.uploadedfile import SimpleUploadedFile

    upload = SimpleUploadedFile("valve.txt", b"Valve V3 sticks: clean the seat.\n", content_type="text/plain")
    response = client.post("/documents/", {"files": [upload], "privacy": RESTRICTED})
    assert response.status_code == 302
    assert Document.objects.get(original_name="valve.txt").privacy == RESTRICTED
    page = client.get("/documents/").content.decode()
    assert 'name="privacy"' in page and "restricted" in page


# --- ask --json and the API ---------------------------------------------------------------------


@pytest.mark.django_db
def test_ask_json_returns_the_route_and_local_only_keeps_it_on_the_device(site):
    import json
    from io import StringIO

    from django.core.management import call_command

    _index(PUBLIC)
    out, err = StringIO(), StringIO()
    call_command("ask", "What does ERROR HIGH TEMP mean?", "--json", stdout=out, stderr=err)
    result = json.loads(out.getvalue())
    assert result["route"]["via"] == "site" and result["route"]["model"] == "big @ site"
    assert result["route"]["reason"] == "site" and result["route"]["label"] == "site model"
    calls = len(site.calls)
    out = StringIO()
    call_command("ask", "What does ERROR HIGH TEMP mean?", "--json", "--local-only", stdout=out, stderr=StringIO())
    result = json.loads(out.getvalue())
    assert result["route"]["reason"] == "local_only" and result["route"]["model"] == "mock"
    assert len(site.calls) == calls
    # Without --json the route is shown (on stderr, next to the timings).
    err = StringIO()
    call_command("ask", "What does ERROR HIGH TEMP mean?", stdout=StringIO(), stderr=err)
    assert "[site model: Answered by the site model server.]" in err.getvalue()


@pytest.mark.django_db(transaction=True)  # the API answers in a pool thread: another connection
def test_the_api_returns_the_route(site, technician):
    import json

    from django.test import Client

    from apps.api.services import api_token_create

    _index(RESTRICTED, name="confidential.pdf")
    _, secret = api_token_create(user=technician, name="test")
    client = Client()

    def ask(body):
        response = client.post("/api/v1/ask", json.dumps(body), content_type="application/json",
                               headers={"Authorization": f"Bearer {secret}"})
        assert response.status_code == 200, response.content
        return response.json()

    result = ask({"question": "What does ERROR HIGH TEMP mean?"})
    assert result["route"]["via"] == "local" and result["route"]["reason"] == "restricted"
    assert "confidential.pdf" in result["route"]["detail"] and site.calls == []
    Document.objects.update(privacy=PUBLIC)
    assert ask({"question": "What does ERROR HIGH TEMP mean?"})["route"]["reason"] == "site"
    result = ask({"question": "What does ERROR HIGH TEMP mean?", "local_only": True})
    assert result["route"]["reason"] == "local_only"
    assert Conversation.objects.get(pk=result["conversation"]).local_only


# --- the chat websocket and the pages -------------------------------------------------------------


def test_the_route_badge_escapes_what_it_shows():
    from apps.chat.rendering import evidence_html

    route = Route(LOCAL, "restricted", "Answered on this device (manual “<img src=x onerror=alert(1)>.pdf”).", "tiny")
    event = evidence_html({"type": "route", "message": 1, **route.as_dict(), "restart": False})
    assert "<img" not in event["html"] and "&lt;img src=x onerror=alert(1)&gt;" in event["html"]
    assert 'data-reason="restricted"' in event["html"] and "this device · restricted data" in event["html"]


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_the_socket_sends_the_route_and_keeps_local_only_with_the_conversation(technician, site):
    from channels.db import database_sync_to_async
    from channels.testing import WebsocketCommunicator

    from apps.chat.consumers import ChatConsumer

    await database_sync_to_async(_index)(PUBLIC)
    communicator = WebsocketCommunicator(ChatConsumer.as_asgi(), "/ws/chat/")
    communicator.scope["user"] = technician
    assert (await communicator.connect())[0]
    assert (await communicator.receive_json_from())["type"] == "ready"

    async def ask(**frame):
        events = []
        while not events or events[-1]["type"] != "done":
            if not events:
                await communicator.send_json_to({"type": "ask", "question": "What does ERROR HIGH TEMP mean?", **frame})
            events.append(await communicator.receive_json_from(timeout=30))
            if events[-1].get("code") == "busy":  # the previous answer's thread is still finishing
                events = []
                await asyncio.sleep(0.05)
        return events

    events = await ask()
    route = next(e for e in events if e["type"] == "route")
    assert route["via"] == "site" and 'data-route="site"' in route["html"]
    conversation = events[0]["conversation"]
    events = await ask(conversation=conversation, local_only=True)
    assert [e["reason"] for e in events if e["type"] == "route"] == ["local_only"]
    assert (await database_sync_to_async(Conversation.objects.get)(pk=conversation)).local_only
    events = await ask(conversation=conversation)  # the choice stays with the conversation
    assert events[-1]["route"]["reason"] == "local_only"
    code = "busy"
    while code == "busy":
        await communicator.send_json_to({"type": "ask", "question": "x", "local_only": "yes"})
        code = (await communicator.receive_json_from())["code"]
    assert code == "bad_frame"
    await communicator.disconnect()


@pytest.mark.django_db
def test_the_chat_page_and_the_review_queue_show_the_route(client, technician, supervisor, settings):
    from apps.chat.models import AnswerFeedback

    settings.NANOSENTRI_SITE_LLM_URL = "http://site.invalid/v1"
    conversation = services.conversation_for(user=technician, title="q")
    services.conversation_local_only_set(conversation=conversation, local_only=True)
    Message.objects.create(conversation=conversation, role="user", content="Why <b>E7</b>?")
    answer = Message.objects.create(
        conversation=conversation, role="assistant", content="Replace the seal.", model_name="big @ site",
        route="local", route_reason="site_slow",
        route_detail="Answered on this device: the site model server was too slow to start (<script>x</script>).",
    )
    client.force_login(technician)
    page = client.get(f"/chat/{conversation.pk}/").content.decode()
    assert 'data-reason="site_slow"' in page and "this device · site server too slow" in page
    assert "<script>x</script>" not in page and "&lt;script&gt;x&lt;/script&gt;" in page
    assert 'id="local-only" name="local_only" checked' in page
    AnswerFeedback.objects.create(message=answer, user=technician, rating=-1)
    client.force_login(supervisor)
    review = client.get("/chat/review/").content.decode()
    assert 'data-reason="site_slow"' in review and "this device · site server too slow" in review


@pytest.mark.django_db
def test_the_api_upload_sets_the_privacy(admin_user):
    from django.core.files.uploadedfile import SimpleUploadedFile
    from django.test import Client

    from apps.api.services import api_token_create

    _, secret = api_token_create(user=admin_user, name="test")
    headers = {"Authorization": f"Bearer {secret}"}
    upload = SimpleUploadedFile("relay.txt", b"Relay K1 chatters: check the coil supply.\n", content_type="text/plain")
    response = Client().post("/api/v1/documents", {"files": [upload], "privacy": "restricted"}, headers=headers)
    assert response.status_code == 200, response.content
    [result] = response.json()["results"]
    assert result["outcome"] == "queued"
    document = Client().get(f"/api/v1/documents/{result['document']['id']}", headers=headers).json()
    assert document["privacy"] == "restricted"
    response = Client().post("/api/v1/documents", {"files": [upload], "privacy": "secret"}, headers=headers)
    assert response.status_code == 422


@pytest.mark.django_db
def test_import_assets_sets_the_privacy(tmp_path):
    from apps.assets.importing import assets_import

    path = tmp_path / "assets.yaml"
    path.write_text("assets:\n  - {asset_id: PUMP-9, name: Pump 9, privacy: restricted}\n  - {asset_id: FAN-1}\n")
    assert assets_import(path).created["assets"] == 2
    assert Asset.objects.get(asset_id="PUMP-9").privacy == RESTRICTED
    assert Asset.objects.get(asset_id="FAN-1").privacy == INTERNAL  # the default
    path.write_text("assets:\n  - {asset_id: PUMP-9, privacy: secret}\n")
    from apps.assets.importing import AssetImportError

    with pytest.raises(AssetImportError, match="privacy must be one of"):
        assets_import(path)
