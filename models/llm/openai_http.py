"""An OpenAI-compatible chat server (llama-cpp-python's server, vLLM, Ollama), streamed."""
from __future__ import annotations

import json
from typing import Hashable, Iterator

import httpx

from models.errors import ModelUnavailable
from models.llm.base import ChatMessage, LanguageModel, ShouldStop


class OpenAICompatibleLanguageModel(LanguageModel):
    def __init__(self, *, base_url: str, model: str, api_key: str, context_window: int, timeout: float):
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.name = f"{model} @ {self.base_url}"
        self.context_window = context_window
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(headers=headers, timeout=httpx.Timeout(timeout, connect=5.0))

    def count_tokens(self, text: str) -> int:
        # The server's tokenizer is not known here: count conservatively (~3 characters a token).
        return len(text) // 3 + 1

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
        try:
            with self._client.stream("POST", f"{self.base_url}/chat/completions", json=body) as response:
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
                    raise ModelUnavailable(f"Model server at {self.base_url} ended the answer before its end")
        except httpx.HTTPError as exc:
            raise ModelUnavailable(f"Model server at {self.base_url} unreachable: {exc}") from exc
