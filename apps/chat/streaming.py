"""Token frames coalesced in the generation thread, so the event loop wakes per frame, not per token.

Each ``call_soon_threadsafe`` wakes the event loop's thread, which then takes a core from
llama.cpp's threads on a 2-core machine. Tokens that arrive within ``interval_s`` of the last frame
are held back and sent together as one ``token`` frame (``text`` joined, ``tokens`` the count); the
first token of an answer goes at once (the time to first token is unchanged), and any other event
(``done``, an error) first flushes what is held, so nothing is reordered or lost.
"""
from __future__ import annotations

import time
from typing import Callable

TOKEN_FRAME_INTERVAL_S = 0.05


class TokenCoalescer:
    def __init__(self, send: Callable[[dict | None], None], *, interval_s: float = TOKEN_FRAME_INTERVAL_S,
                 clock: Callable[[], float] = time.monotonic):
        self.send = send
        self.interval_s = interval_s
        self.clock = clock
        self.held: dict | None = None
        self.last_sent = float("-inf")

    def __call__(self, event: dict | None) -> None:
        if event is not None and event.get("type") == "token" and self.interval_s > 0:
            self._token(event)
            return
        self.flush()
        self.send(event)

    def _token(self, event: dict) -> None:
        if self.held is not None and self.held.get("message") != event.get("message"):
            self.flush()
        if self.held is None:
            self.held = {**event, "tokens": event.get("tokens", 1)}
        else:
            self.held["text"] += event["text"]
            self.held["tokens"] += event.get("tokens", 1)
        if self.clock() - self.last_sent >= self.interval_s:
            self.flush()

    def flush(self) -> None:
        if self.held is not None:
            held, self.held = self.held, None
            self.last_sent = self.clock()
            self.send(held)
