"""Serialize generation: chats take turns for the local model in arrival order.

``GenerationQueue.wait_turn`` is a generator that yields the caller's queue position while
it waits, so a chat can show "2 people ahead of you", and returns once it may generate. The
queue has ``slots`` places at the front: one for a model in this process, one per model server
process when the local model is served by several (NANOSENTRI_LLM_SERVER_URL with several URLs).
"""
from __future__ import annotations

import itertools
import threading
from contextlib import contextmanager
from typing import Callable, Iterator


class GenerationQueue:
    def __init__(self, slots: int = 1):
        self._cond = threading.Condition()
        self._line: list[int] = []
        self._ids = itertools.count(1)
        self._slots = max(1, slots)

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

    def is_first(self, ticket: int) -> bool:
        with self._cond:
            return bool(self._line) and self._line[0] == ticket
