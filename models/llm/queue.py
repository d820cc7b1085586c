"""Serialize generation: chats take turns for the local model in arrival order.

``GenerationQueue.wait_turn`` is a generator that yields the caller's queue position while
it waits, so a chat can show "2 people ahead of you", and returns once it may generate. The
queue has ``slots`` places at the front: one for a model in this process, one per model server
process when the local model is served by several (NANOSENTRI_LLM_SERVER_URL with several URLs).

Evidence goes first: while any chat of the process is gathering its evidence (passages, findings,
past incidents), the local model waits before its prompt and between tokens (at most
``evidence_wait_s`` each time), so fifty chats asking at once see their evidence within a second
instead of sharing the two cores with a generation.
"""
from __future__ import annotations

import itertools
import threading
import time
from contextlib import contextmanager
from typing import Callable, Iterator


class GenerationQueue:
    def __init__(self, slots: int = 1):
        self._cond = threading.Condition()
        self._line: list[int] = []
        self._ids = itertools.count(1)
        self._slots = max(1, slots)
        self._gathering = 0  # chats gathering their evidence now

    @property
    def slots(self) -> int:
        return self._slots

    @slots.setter
    def slots(self, value: int) -> None:
        with self._cond:
            self._slots = max(1, int(value))
            self._cond.notify_all()

    def __len__(self) -> int:
        with self._cond:
            return len(self._line)

    def join(self) -> int:
        with self._cond:
            ticket = next(self._ids)
            self._line.append(ticket)
            return ticket

    def leave(self, ticket: int) -> None:
        with self._cond:
            if ticket in self._line:
                self._line.remove(ticket)
            self._cond.notify_all()

    def wait_turn(self, ticket: int, cancelled: Callable[[], bool], poll: float = 0.2) -> Iterator[int]:
        """Yield how many are ahead whenever it changes; return when ``ticket`` holds a slot.

        Returns early (still in line; call ``leave``) if ``cancelled()`` becomes true.
        """
        last = None
        while True:
            with self._cond:
                ahead = self._line.index(ticket) - (self._slots - 1)
                if ahead <= 0:
                    return
                if ahead != last:
                    last = ahead
                    notify = True
                else:
                    notify = False
                    self._cond.wait(poll)
            if cancelled():
                return
            if notify:
                yield ahead

    @contextmanager
    def turn(self, cancelled: Callable[[], bool] = lambda: False):
        """Simple blocking form: wait (ignoring positions), hold the turn, leave."""
        ticket = self.join()
        try:
            for _ in self.wait_turn(ticket, cancelled):
                pass
            yield ticket
        finally:
            self.leave(ticket)

    @contextmanager
    def gathering_evidence(self):
        """Mark a chat's evidence phase: the local model gives way to it (``give_way``)."""
        with self._cond:
            self._gathering += 1
        try:
            yield
        finally:
            with self._cond:
                self._gathering -= 1
                self._cond.notify_all()

    def give_way(self, max_s: float, cancelled: Callable[[], bool] = lambda: False) -> float:
        """Wait while other chats gather their evidence, at most ``max_s``; the seconds waited."""
        if max_s <= 0:
            return 0.0
        started = time.monotonic()
        deadline = started + max_s
        with self._cond:
            while self._gathering and not cancelled():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(min(remaining, 0.1))
        return time.monotonic() - started

    def is_first(self, ticket: int) -> bool:
        with self._cond:
            return bool(self._line) and self._line[0] == ticket
