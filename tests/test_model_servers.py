"""The local model served by several model server processes (NANOSENTRI_LLM_SERVER_URL with
several URLs): each answer takes a free server, as many answers stream at once as there are
servers, and the generation queue lets that many through."""
import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import httpx
import pytest

from models.llm import generation_queue, get_language_model, reset_language_model
from models.llm.base import ChatMessage
from models.llm.openai_http import OpenAICompatibleLanguageModel
from tests.browser_support import StandInModel, free_port, stand_in_model_server

REPO = Path(__file__).resolve().parent.parent
MESSAGES = [ChatMessage("user", "Say hello.")]


class _Slow(StandInModel, BaseHTTPRequestHandler):
    """Answers after a pause, recording how many requests it is serving at once."""

    serving = {}
    lock = threading.Lock()

    def do_POST(self):
        self.read_body()
        port = self.server.server_port
        with self.lock:
            self.serving[port] = self.serving.get(port, 0) + 1
            _Slow.peaks.append(self.serving[port])
        time.sleep(0.3)
        self.stream(f"served by {port}")
        with self.lock:
            self.serving[port] -= 1

    peaks: list[int] = []


def _answer(model, out: list):
    out.append("".join(model.stream_chat(MESSAGES, max_tokens=8, temperature=0, should_stop=lambda: False)))


def test_each_answer_takes_a_free_server_and_never_two_share_one():
    _Slow.peaks.clear()
    with stand_in_model_server(_Slow) as first, stand_in_model_server(_Slow) as second:
        model = OpenAICompatibleLanguageModel(base_url=f"{first}, {second}", model="m", api_key="", context_window=2048,
                                              timeout=10)
        assert model.parallel == 2 and model.base_urls == [first, second]
        answers: list[str] = []
        threads = [threading.Thread(target=_answer, args=(model, answers)) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
    assert len(answers) == 4
    ports = {a.split()[-1] for a in answers}
    assert ports == {first.split(":")[-1].split("/")[0], second.split(":")[-1].split("/")[0]}  # both served
    assert max(_Slow.peaks) == 1  # a server never had two answers at once


def test_a_stopped_answer_frees_its_server():
    with stand_in_model_server(_Slow) as only:
        model = OpenAICompatibleLanguageModel(base_url=only, model="m", api_key="", context_window=2048, timeout=10)
        stream = model.stream_chat(MESSAGES, max_tokens=8, temperature=0, should_stop=lambda: False)
        next(stream)
        stream.close()  # the chat went away
        answers: list[str] = []
        _answer(model, answers)  # would wait forever if the server were still leased
    assert answers and answers[0].startswith("served by")


def test_the_queue_takes_as_many_answers_at_once_as_there_are_servers(settings):
    settings.NANOSENTRI_LLM_BACKEND = "openai"
    settings.NANOSENTRI_LLM_SERVER_URL = "http://127.0.0.1:1/v1,http://127.0.0.1:2/v1"
    reset_language_model()
    try:
        get_language_model()
        assert generation_queue.slots == 2
        settings.NANOSENTRI_LLM_SERVER_URL = "http://127.0.0.1:1/v1"
        get_language_model()
        assert generation_queue.slots == 1
    finally:
        reset_language_model()
        generation_queue.slots = 1


@pytest.mark.integration
def test_two_real_model_server_processes_answer_two_chats_at_once(tmp_path):
    """The bundled GGUF in two scripts/model_server.py processes: two answers stream at the same time."""
    ports = [free_port(), free_port()]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "NANOSENTRI_LLM_THREADS": "1", "NANOSENTRI_LLM_BATCH_THREADS": "1"}
    servers = [
        subprocess.Popen([sys.executable, str(REPO / "scripts" / "model_server.py"), "--port", str(port)], cwd=REPO,
                         env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        for port in ports
    ]
    try:
        urls = [f"http://127.0.0.1:{port}/v1" for port in ports]
        deadline = time.monotonic() + 120
        for url in urls:
            while True:
                try:
                    if httpx.get(f"{url}/models", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline, "model servers did not start"
                time.sleep(0.5)
        model = OpenAICompatibleLanguageModel(base_url=",".join(urls), model="default", api_key="",
                                              context_window=2048, timeout=60)
        texts: dict[int, str] = {}
        # Each chat, once its first piece has come, waits for the other's first piece before it
        # reads on. Two answers at once pass; answers one after the other break the barrier (the
        # second would start only when the first, held here, had finished).
        both_streaming = threading.Barrier(2, timeout=90)

        def chat(n: int):
            pieces = []
            for piece in model.stream_chat([ChatMessage("user", f"Name {n + 2} colours of a pump housing.")],
                                           max_tokens=48, temperature=0, should_stop=lambda: False):
                if not pieces:
                    both_streaming.wait()
                pieces.append(piece)
            texts[n] = "".join(pieces)

        threads = [threading.Thread(target=chat, args=(n,)) for n in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert not both_streaming.broken, "the second answer did not stream while the first was open"
        assert all(texts.get(n, "").strip() for n in range(2))
    finally:
        for server in servers:
            server.terminate()
        for server in servers:
            try:
                server.wait(10)
            except subprocess.TimeoutExpired:
                server.kill()
