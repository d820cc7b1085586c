"""Routing with a real site server: ``scripts/model_server.py`` (llama-cpp-python's OpenAI-compatible
server with the app's GGUF) on loopback, the real local model in process, real embeddings and Chroma.

The server is reached through a TCP relay that keeps every byte it forwards to the server: what
the server received, exactly (llama_cpp.server does not log request bodies). So "restricted
evidence never reaches the site server" is checked on the bytes themselves.
"""
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from apps.chat import services
from apps.chat.models import Message
from apps.knowledge.services import document_add_path, document_ingest
from models.llm import site_health

pytestmark = [pytest.mark.integration, pytest.mark.django_db]

REPO = Path(__file__).resolve().parent.parent
QUESTION = "What does ERROR HIGH TEMP mean?"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RecordingRelay:
    """Listens on a loopback port and relays every connection to ``upstream``; ``received`` holds
    every byte sent on to the server, in order."""

    def __init__(self, upstream_port: int):
        self.upstream_port = upstream_port
        self.received = bytearray()
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def bytes(self) -> bytes:
        with self._lock:
            return bytes(self.received)

    def requests(self) -> int:
        return self.bytes().count(b"POST /v1/chat/completions")

    def _accept(self):
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=5)
                server.settimeout(None)
            except OSError:
                client.close()  # the server is gone: so is the connection, as without the relay
                continue
            threading.Thread(target=self._pipe, args=(client, server, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(server, client, False), daemon=True).start()

    def _pipe(self, source, target, record):
        try:
            while data := source.recv(65536):
                if record:
                    with self._lock:
                        self.received += data
                target.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, target):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()

    def close(self):
        self._closed = True
        self._listener.close()


def _start_server(log_path: Path) -> tuple[subprocess.Popen, int]:
    port = _free_port()
    log = open(log_path, "wb")
    proc = subprocess.Popen(
        [sys.executable, str(REPO / "scripts" / "model_server.py"), "--host", "127.0.0.1", "--port", str(port),
         "--logits_all", "False", "--n_threads", "2"],
        stdout=log, stderr=subprocess.STDOUT, cwd=str(REPO),
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"llama_cpp.server exited with {proc.returncode}: {log_path.read_text()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=1).status_code == 200:
                return proc, port
        except httpx.HTTPError:
            time.sleep(0.5)
    proc.kill()
    pytest.fail("llama_cpp.server did not start in 120 s")


def _stop_server(proc):
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="module")
def site_server(tmp_path_factory):
    proc, port = _start_server(tmp_path_factory.mktemp("site") / "server.log")
    relay = RecordingRelay(port)
    yield relay
    relay.close()
    _stop_server(proc)


@pytest.fixture
def routed(real_stack, smartevse):
    """The real stack with the SmartEVSE manual indexed; the site server's settings are the test's."""
    real_stack.NANOSENTRI_SITE_LLM_FIRST_TOKEN_TIMEOUT_S = 120.0  # a loaded machine: only the slow test is strict
    real_stack.NANOSENTRI_SITE_LLM_TIMEOUT_S = 60.0
    real_stack.NANOSENTRI_LLM_MAX_TOKENS = 120
    document, _ = document_add_path(path=smartevse)
    document_ingest(document_id=document.pk)
    site_health().ok()
    yield document
    site_health().ok()


def _ask(question=QUESTION, on_event=None, cancel=None):
    conversation = services.conversation_for(user=None, title="q")
    events = []
    for event in services.answer_stream(question=question, conversation=conversation, cancel=cancel):
        events.append(event)
        if on_event is not None:
            on_event(event)
    return events


def _routes(events):
    return [(e["via"], e["reason"], e["restart"]) for e in events if e["type"] == "route"]


def test_a_public_question_goes_to_the_site_server(site_server, routed, settings):
    settings.NANOSENTRI_SITE_LLM_URL = site_server.url
    routed.privacy = "public"
    routed.save(update_fields=["privacy"])
    before = site_server.requests()
    events = _ask()
    assert _routes(events) == [("site", "site", False)]
    done = events[-1]
    assert done["status"] == "completed" and done["answer"]
    assert done["route"]["reason"] == "site" and "127.0.0.1" in done["route"]["model"]
    assert done["timings"]["site_ttft_ms"] > 0
    # The server received the question and the manual's passage.
    assert site_server.requests() == before + 1
    sent = site_server.bytes()
    assert QUESTION.encode() in sent and b"ERROR HIGH TEMP" in sent
    message = Message.objects.get(pk=done["message"])
    assert (message.route, message.route_reason) == ("site", "site")


def test_a_question_with_restricted_evidence_never_reaches_the_site_server(site_server, routed, settings):
    settings.NANOSENTRI_SITE_LLM_URL = site_server.url
    routed.privacy = "restricted"
    routed.save(update_fields=["privacy"])
    question = "Which temperature stops charging? (restricted probe 7f3a)"
    before = len(site_server.bytes())
    events = _ask(question)
    assert _routes(events) == [("local", "restricted", False)]
    done = events[-1]
    assert done["status"] == "completed" and done["answer"]
    assert done["route"]["model"].endswith(".gguf")  # the in-process model
    assert "SmartEVSE" in done["route"]["detail"]
    # Not one byte went to the server while this question was answered, and never its words.
    assert len(site_server.bytes()) == before
    assert b"7f3a" not in site_server.bytes()


def test_a_slow_first_token_falls_back_to_the_local_model(site_server, routed, settings):
    settings.NANOSENTRI_SITE_LLM_URL = site_server.url
    settings.NANOSENTRI_SITE_LLM_FIRST_TOKEN_TIMEOUT_S = 0.01  # the server's prompt evaluation alone is longer
    settings.NANOSENTRI_SITE_LLM_RETRY_S = 3600  # the local answer may take longer than the default 30 s here
    routed.privacy = "internal"
    routed.save(update_fields=["privacy"])
    events = _ask()
    assert _routes(events) == [("site", "site", False), ("local", "site_slow", False)]
    assert events[-1]["status"] == "completed" and events[-1]["answer"]
    assert events[-1]["route"]["reason"] == "site_slow"
    # The next question does not wait for the server again: it is skipped for the retry time.
    assert _routes(_ask())[0][1] == "site_down"


def test_stop_on_the_site_route_stops_the_server(site_server, routed, settings):
    settings.NANOSENTRI_SITE_LLM_URL = site_server.url
    settings.NANOSENTRI_LLM_MAX_TOKENS = 400
    routed.privacy = "public"
    routed.save(update_fields=["privacy"])
    import threading as _t

    cancel = _t.Event()
    tokens = []

    def on_event(event):
        if event["type"] == "token":
            tokens.append(event)
            if len(tokens) == 3:
                cancel.set()

    events = _ask(on_event=on_event, cancel=cancel)
    assert events[-1]["status"] == "stopped" and events[-1]["route"]["reason"] == "site"
    assert len(tokens) == 3
    # The server is free at once: a 400-token answer still being generated would hold it.
    started = time.perf_counter()
    body = {"model": "default", "messages": [{"role": "user", "content": "Say OK."}], "max_tokens": 3}
    assert httpx.post(f"{site_server.url}/chat/completions", json=body, timeout=60).status_code == 200
    assert time.perf_counter() - started < 20


def test_killing_the_server_mid_stream_falls_back_and_the_answer_completes(routed, settings, tmp_path):
    proc, port = _start_server(tmp_path / "server.log")
    relay = RecordingRelay(port)
    try:
        settings.NANOSENTRI_SITE_LLM_URL = relay.url
        routed.privacy = "public"
        routed.save(update_fields=["privacy"])
        killed = []

        def on_event(event):
            if event["type"] == "token" and not killed:
                proc.kill()  # the site server dies after its first token
                proc.wait()
                killed.append(time.perf_counter())

        events = _ask(on_event=on_event)
    finally:
        relay.close()
        _stop_server(proc)
    assert killed
    assert _routes(events) == [("site", "site", False), ("local", "site_failed", True)]
    done = events[-1]
    assert done["status"] == "completed" and done["answer"]
    assert done["route"]["reason"] == "site_failed" and done["route"]["model"].endswith(".gguf")
    assert "discarded" in done["route"]["detail"]
    assert done["timings"]["discarded_tokens"] >= 1 and done["timings"]["fallback_ms"] > 0
    message = Message.objects.get(pk=done["message"])
    assert message.status == "completed" and message.route_reason == "site_failed"
    # The answer that stands is the local one: it is what the tokens after the restart said.
    restart = next(i for i, e in enumerate(events) if e["type"] == "route" and e["restart"])
    after = "".join(e["text"] for e in events[restart:] if e["type"] == "token")
    assert after.strip() == done["answer"]
