"""Serialize generation: one model per process, chats take turns in arrival order.

``GenerationQueue.wait_turn`` is a generator that yields the caller's queue position while
it waits, so a chat can show "2 people ahead of you", and returns once it is at the front.
"""
from __future__ import annotations

import itertools
import threading
from contextlib import contextmanager
from typing import Callable, Iterator


class GenerationQueue:
    def __init__(self):
        self._cond = threading.Condition()
        self._line: list[int] = []
        self._ids = itertools.count(1)

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
        """Yield how many are ahead whenever it changes; return when ``ticket`` is first.

        Returns early (still in line; call ``leave``) if ``cancelled()`` becomes true.
        """
        last = None
        while True:
            with self._cond:
                ahead = self._line.index(ticket)
                if ahead == 0:
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
