"""An OpenAI-compatible chat server (llama-cpp-python's server, vLLM, Ollama), streamed.

``base_url`` may name several servers, comma-separated: model processes of the same model (each
``scripts/model_server.py`` on its own port, for machines with cores to spare). Each answer takes
a free one and ``parallel`` answers stream at once; the generation queue lets that many through.
"""
from __future__ import annotations

import json
import threading
from contextlib import contextmanager
from typing import Hashable, Iterator

import httpx

from models.errors import ModelUnavailable
from models.llm.base import ChatMessage, LanguageModel, ShouldStop


class OpenAICompatibleLanguageModel(LanguageModel):
    def __init__(self, *, base_url: str, model: str, api_key: str, context_window: int, timeout: float):
        self.base_urls = [url.strip().rstrip("/") for url in base_url.split(",") if url.strip()] or [""]
        self.base_url = self.base_urls[0]
        self.parallel = len(self.base_urls)
        self._free = list(self.base_urls)
        self._free_changed = threading.Condition()
        self.model = model
        more = f" (+{self.parallel - 1} more)" if self.parallel > 1 else ""
        self.name = f"{model} @ {self.base_url}{more}"
        self.context_window = context_window
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(headers=headers, timeout=httpx.Timeout(timeout, connect=5.0))

    def count_tokens(self, text: str) -> int:
        # The server's tokenizer is not known here: count conservatively (~3 characters a token).
        return len(text) // 3 + 1

    @contextmanager
    def _server(self) -> Iterator[str]:
        """A server no other answer of this process is using (waits while all are busy)."""
        with self._free_changed:
            while not self._free:
                self._free_changed.wait()
            url = self._free.pop(0)
        try:
            yield url
        finally:
            with self._free_changed:
                self._free.append(url)
                self._free_changed.notify()

    def stream_chat(
        self,
        messages: list[ChatMessage],
        *,
        max_tokens: int,
        temperature: float,
        should_stop: ShouldStop,
        session: Hashable | None = None,  # no cache of its own to keep per conversation
    ) -> Iterator[str]:
        body = {
            "model": self.model,
            "messages": [{"role": m.role, "content": m.content} for m in messages],
            "max_tokens": max_tokens,
            "temperature": temperature,
            "stream": True,
        }
        with self._server() as base_url:
            yield from self._stream(base_url, body, should_stop)

    def _stream(self, base_url: str, body: dict, should_stop: ShouldStop) -> Iterator[str]:
        try:
            with self._client.stream("POST", f"{base_url}/chat/completions", json=body) as response:
                if response.status_code != 200:
                    response.read()
                    raise ModelUnavailable(
                        f"Model server answered {response.status_code}: {response.text[:300]}"
                    )
                finished = False
                for line in response.iter_lines():
                    if should_stop():
                        # Leaving the block closes the connection; the server cancels the job.
                        return
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        return
                    try:
                        choice = json.loads(data)["choices"][0]
                    except (ValueError, KeyError, IndexError):
                        continue
                    piece = (choice.get("delta") or {}).get("content")
                    if piece:
                        yield piece
                    finished = finished or bool(choice.get("finish_reason"))
                if not finished:
                    # The body ended cleanly but the answer did not (a proxy or the server gave up).
                    raise ModelUnavailable(f"Model server at {base_url} ended the answer before its end")
        except httpx.HTTPError as exc:
            raise ModelUnavailable(f"Model server at {base_url} unreachable: {exc}") from exc
