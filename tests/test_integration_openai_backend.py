"""The OpenAI-compatible backend against a real `python -m llama_cpp.server` on 127.0.0.1."""
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from apps.chat import services
from apps.knowledge.services import document_add_path, document_ingest
from models.errors import ModelUnavailable
from models.llm import ChatMessage, get_language_model
from models.llm.openai_http import OpenAICompatibleLanguageModel
from models.paths import language_model_path

pytestmark = pytest.mark.integration


REPO = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory):
    port = _free_port()
    log = open(tmp_path_factory.mktemp("server") / "server.log", "wb")
    # scripts/model_server.py: the app's GGUF served as docker-compose.yml's llm service serves it.
    proc = subprocess.Popen(
        [sys.executable, str(REPO / "scripts" / "model_server.py"), "--host", "127.0.0.1", "--port", str(port),
         "--logits_all", "False", "--n_threads", "2"],
        stdout=log, stderr=subprocess.STDOUT, cwd=str(REPO),
    )
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"llama_cpp.server exited with {proc.returncode}")
        try:
            if httpx.get(f"{url}/models", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail("llama_cpp.server did not start in 120 s")
    yield url
    proc.terminate()
    proc.wait(timeout=20)
    log.close()


def _model_path():
    from django.conf import settings  # noqa: F401  (settings must be configured)

    return language_model_path()


def _model(url):
    return OpenAICompatibleLanguageModel(base_url=url, model="default", api_key="", context_window=4096, timeout=60)


MESSAGES = [ChatMessage("system", "You are a helpful assistant."), ChatMessage("user", "Name three tools a technician carries.")]


def test_it_streams_tokens_from_the_server(llama_server):
    pieces = list(_model(llama_server).stream_chat(MESSAGES, max_tokens=40, temperature=0.2, should_stop=lambda: False))
    assert len(pieces) > 5
    assert "".join(pieces).strip()


def test_stop_ends_the_stream_and_the_server_stays_usable(llama_server):
    model = _model(llama_server)
    received = []
    for piece in model.stream_chat(MESSAGES, max_tokens=200, temperature=0.2, should_stop=lambda: len(received) >= 3):
        received.append(piece)
    assert len(received) == 3
    # The connection was closed; the server serves the next request at once.
    started = time.perf_counter()
    again = list(model.stream_chat(MESSAGES, max_tokens=5, temperature=0.2, should_stop=lambda: False))
    assert again and time.perf_counter() - started < 30


def test_an_unreachable_server_is_a_clear_error():
    model = _model(f"http://127.0.0.1:{_free_port()}/v1")
    with pytest.raises(ModelUnavailable, match="unreachable"):
        list(model.stream_chat(MESSAGES, max_tokens=5, temperature=0.2, should_stop=lambda: False))


@pytest.mark.django_db
def test_the_whole_pipeline_answers_through_the_server(llama_server, real_stack, smartevse):
    real_stack.NANOSENTRI_LLM_BACKEND = "openai"
    real_stack.NANOSENTRI_LLM_SERVER_URL = llama_server
    assert isinstance(get_language_model(), OpenAICompatibleLanguageModel)
    document, _ = document_add_path(path=smartevse)
    document_ingest(document_id=document.pk)
    conversation = services.conversation_for(user=None, title="q")
    events = list(services.answer_stream(question="What does ERROR HIGH TEMP mean?", conversation=conversation))
    assert next(e for e in events if e["type"] == "citations")["items"][0]["page"] == 2
    assert sum(e["type"] == "token" for e in events) > 3
    assert events[-1]["status"] == "completed"
