"""The one small interface every language-model backend implements."""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Callable, Hashable, Iterator


@dataclass(frozen=True)
class ChatMessage:
    role: str  # "system" | "user" | "assistant"
    content: str


ShouldStop = Callable[[], bool]


class LanguageModel(ABC):
    name: str
    context_window: int

    @abstractmethod
    def count_tokens(self, text: str) -> int:
        """Tokens the model would spend on ``text`` (exact where the backend allows)."""

    def prompt_stats(self) -> dict:
        """How the last prompt was evaluated (e.g. tokens reused from a KV cache), when known."""
        return {}

    def count_chat_tokens(self, messages: list[ChatMessage]) -> int:
        # A few tokens per message for the chat template's role markers.
        return sum(self.count_tokens(m.content) + 6 for m in messages) + 4

    @abstractmethod
    def stream_chat(
        self,
        messages: list[ChatMessage],
        *,
        max_tokens: int,
        temperature: float,
        should_stop: ShouldStop,
        session: Hashable | None = None,
    ) -> Iterator[str]:
        """Yield text pieces as they are generated.

        ``should_stop`` is checked between tokens; when it returns True the backend stops
        computing (not only stops yielding) and the iterator ends.

        ``session`` (a conversation id) lets a backend keep what it evaluated for that
        conversation (llama.cpp: the KV cache) for its next, longer prompt; backends without
        such a cache ignore it.
        """
