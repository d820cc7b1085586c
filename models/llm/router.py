"""Stream one answer on its route, falling back to the local model (the policy: ``routing.py``).

The site server's stream is read in a helper thread, so the wall clock decides: no first token
within ``first_token_timeout`` (connecting and the server's prompt evaluation included), or no
next piece within ``stall_timeout``, and the local model answers instead, as it does when the
server cannot be reached or breaks off. The remote stream is then abandoned: its thread stops
reading at the next piece that arrives (or at the HTTP read timeout), which closes the connection,
and an OpenAI-compatible server cancels a request whose client is gone.

**A remote answer cut mid-stream is discarded, not continued**: the local model answers afresh,
from the same evidence, and the technician is told (a ``route`` event with ``restart``: the client
clears the text shown so far). Continuing another model's half sentence would make one answer of
two models' styles and facts, and the tiny local model would repeat or contradict it; a fresh
answer is whole and checked against the evidence like any other.

A stop (``should_stop``) ends either route at once; the answer keeps what it had.
"""
from __future__ import annotations

import logging
import queue as queue_module
import threading
import time
from typing import Any, Callable, Hashable, Iterator

from models.llm.base import LanguageModel, ShouldStop
from models.llm.queue import GenerationQueue
from models.llm.routing import (
    SITE,
    SITE_FAILED,
    SITE_SLOW,
    SITE_UNREACHABLE,
    Route,
    SiteHealth,
    route_fallback,
)

log = logging.getLogger(__name__)

POLL_S = 0.05  # how often a wait for the site server looks at the stop flag


class RoutedAnswer:
    """One answer's generation. Iterate ``events()``; afterwards the attributes say what happened.

    Events: ``("route", Route, restart)`` when a model is about to be asked (``restart``: the text
    streamed so far is void), ``("queued", ahead)`` while waiting for the local model,
    ``("token", text)``. Errors of the local model propagate (ModelUnavailable, …).
    """

    def __init__(
        self,
        route: Route,
        *,
        local: Callable[[], LanguageModel],
        site: LanguageModel | None,
        prompt_for: Callable[[LanguageModel], Any],
        max_tokens: int,
        temperature: float,
        should_stop: ShouldStop,
        session: Hashable | None = None,
        queue: GenerationQueue,
        first_token_timeout: float,
        stall_timeout: float,
        health: SiteHealth | None = None,
        clock: Callable[[], float] = time.perf_counter,
        evidence_wait_s: float = 0.0,
    ):
        self.route = route
        # The local model gives way to chats gathering their evidence, at most this long each time.
        self._evidence_wait_s = evidence_wait_s
        self._local, self._site, self._prompt_for = local, site, prompt_for
        self._max_tokens, self._temperature, self._should_stop = max_tokens, temperature, should_stop
        self._session, self._queue, self._health, self._clock = session, queue, health, clock
        self._first_token_timeout, self._stall_timeout = first_token_timeout, stall_timeout
        # What happened, for the caller's record:
        self.model: LanguageModel | None = None  # the model of the answer that stands
        self.prompt: Any = None  # its prompt
        self.pieces: list[str] = []  # its text
        self.generation_started: float | None = None  # when it was asked
        self.first_token_at: float | None = None  # its first token
        self.last_token_at: float | None = None  # its last token
        self.queue_ms: float | None = None  # waited for the local model
        self.stopped_before_model = False  # stopped while waiting in the queue
        self.site_failed_at: float | None = None  # when the site route was given up
        self.site_ttft_ms: float | None = None
        self.discarded_tokens = 0  # pieces of a remote answer cut mid-stream

    def events(self) -> Iterator[tuple]:
        if self.route.via == SITE and self._site is not None:
            fallback = yield from self._site_events()
            if fallback is None:
                return
            restart = bool(self.pieces)
            self.discarded_tokens = len(self.pieces)
            self.route = fallback
            self.model, self.prompt, self.pieces, self.first_token_at, self.last_token_at = None, None, [], None, None
            yield from self._local_events(restart=restart)
        else:
            yield from self._local_events(restart=False)

    # --- the site server ------------------------------------------------------------------

    def _site_events(self) -> Iterator[tuple]:
        """Stream from the site server; return None when it answered (or a stop ended it), else
        the fallback Route."""
        model = self._site
        prompt = self._prompt_for(model)
        self.model, self.prompt = model, prompt
        started = self.generation_started = self._clock()
        yield ("route", self.route.with_model(model.name), False)

        abandon = threading.Event()
        inbox: queue_module.Queue = queue_module.Queue()

        def pump():
            stream = model.stream_chat(
                prompt.messages, max_tokens=self._max_tokens, temperature=self._temperature,
                should_stop=lambda: abandon.is_set() or self._should_stop(),
            )
            try:
                for piece in stream:
                    inbox.put(("piece", piece))
                    if abandon.is_set():
                        break
                inbox.put(("end", None))
            except BaseException as exc:  # reported to the reading side, which decides
                inbox.put(("error", exc))
            finally:
                stream.close()  # closes the connection: the server cancels the generation

        threading.Thread(target=pump, name="site-llm", daemon=True).start()
        last = started
        while True:
            if self._should_stop():
                abandon.set()
                return None
            now = self._clock()
            if self.first_token_at is None:
                left = started + self._first_token_timeout - now
                if left <= 0:
                    return self._give_up(abandon, SITE_SLOW, f"no first token within {self._first_token_timeout:g} s")
            else:
                left = last + self._stall_timeout - now
                if left <= 0:
                    return self._give_up(
                        abandon, SITE_FAILED,
                        f"no token for {self._stall_timeout:g} s after {len(self.pieces)}; restarted here",
                    )
            try:
                kind, value = inbox.get(timeout=max(0.001, min(POLL_S, left)))
            except queue_module.Empty:
                continue
            if kind == "piece":
                last = self._clock()
                if self.first_token_at is None:
                    self.first_token_at = last
                    self.site_ttft_ms = round((last - started) * 1000, 1)
                self.pieces.append(value)
                self.last_token_at = last
                yield ("token", value)
            elif kind == "end":
                if not self._should_stop() and self._health is not None:
                    self._health.ok()
                return None
            else:
                log.warning("site model server failed: %s", value)
                if self.pieces:
                    return self._give_up(
                        abandon, SITE_FAILED, f"after {len(self.pieces)} tokens; its partial answer was discarded"
                    )
                return self._give_up(abandon, SITE_UNREACHABLE, "")

    def _give_up(self, abandon: threading.Event, reason: str, detail: str) -> Route:
        abandon.set()
        self.site_failed_at = self._clock()
        if self._health is not None:
            self._health.failed()
        return route_fallback(reason, detail)

    # --- the local model ------------------------------------------------------------------

    def _local_events(self, *, restart: bool) -> Iterator[tuple]:
        ticket = self._queue.join()
        try:
            waited = self._clock()
            for ahead in self._queue.wait_turn(ticket, cancelled=self._should_stop):
                yield ("queued", ahead)
            self._queue.give_way(self._evidence_wait_s, self._should_stop)
            self.queue_ms = round((self._clock() - waited) * 1000, 1)
            if self._should_stop():
                self.stopped_before_model = True
                return
            model = self._local()
            prompt = self._prompt_for(model)
            self.model, self.prompt = model, prompt
            self.generation_started = self._clock()
            yield ("route", self.route.with_model(model.name), restart)
            for piece in model.stream_chat(
                prompt.messages, max_tokens=self._max_tokens, temperature=self._temperature,
                should_stop=self._should_stop, session=self._session,
            ):
                self.last_token_at = self._clock()
                if self.first_token_at is None:
                    self.first_token_at = self.last_token_at
                self.pieces.append(piece)
                yield ("token", piece)
                # The next token is computed only when asked for: a pause here pauses the model.
                self._queue.give_way(self._evidence_wait_s, self._should_stop)
        finally:
            self._queue.leave(ticket)

    @property
    def route_taken(self) -> Route:
        """The route of the answer that stands, with its model's name (empty: none was reached)."""
        return self.route.with_model(self.model.name if self.model is not None else "")
