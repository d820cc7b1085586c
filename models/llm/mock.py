"""A fake language model for fast unit tests: deterministic, no weights."""
from __future__ import annotations

import re
import time
from typing import Hashable, Iterator

from models.llm.base import ChatMessage, LanguageModel, ShouldStop


class MockLanguageModel(LanguageModel):
    name = "mock"

    def __init__(self, context_window: int = 4096, token_delay: float = 0.0):
        self.context_window = context_window
        self.token_delay = token_delay
        self.tokens_generated = 0  # lets tests prove a stop really stopped the generation

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def stream_chat(
        self,
        messages: list[ChatMessage],
        *,
        max_tokens: int,
        temperature: float,
        should_stop: ShouldStop,
        session: Hashable | None = None,  # no cache of its own to keep per conversation
    ) -> Iterator[str]:
        prompt = messages[-1].content
        cited = sorted(set(re.findall(r"^\[(\d+)\]", prompt, flags=re.MULTILINE)))
        refs = " ".join(f"[{n}]" for n in cited) or "(no passages)"
        words = f"According to the manual passages {refs} the answer is in the cited pages.".split(" ")
        words += ["More detail."] * max_tokens
        for i, word in enumerate(words[:max_tokens]):
            if should_stop():
                return
            if self.token_delay:
                time.sleep(self.token_delay)
            self.tokens_generated += 1
            yield word if i == 0 else " " + word
