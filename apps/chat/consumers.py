"""The chat websocket: one JSON protocol (docs/protocol.md) for ask, evidence, tokens, stop.

The consumer only translates frames; the answer pipeline (apps.chat.services) runs in a
worker thread so the event loop is never blocked, and a stop or a disconnect sets the
cancel flag the model checks between tokens.
"""
from __future__ import annotations

import asyncio
import json
import threading

from channels.db import database_sync_to_async
from django.conf import settings
from channels.generic.websocket import AsyncWebsocketConsumer

from apps.chat import services
from apps.chat.rendering import evidence_html
from apps.chat.streaming import TokenCoalescer

MAX_FRAME_BYTES = 16 * 1024


class ChatConsumer(AsyncWebsocketConsumer):
    async def connect(self):
        user = self.scope.get("user")
        if not user or not user.is_authenticated or not await database_sync_to_async(user.has_perm)("chat.add_conversation"):
            await self.close(code=4403)
            return
        self.user = user
        self.cancel: threading.Event | None = None
        self.pump: asyncio.Task | None = None
        await self.accept()
        await self._send({"type": "ready"})

    async def disconnect(self, code):
        # Leaving the page stops the generation; the partial answer is kept as stopped.
        if getattr(self, "cancel", None):
            self.cancel.set()

    async def receive(self, text_data=None, bytes_data=None):
        if bytes_data is not None or text_data is None:
            return await self._error("bad_frame", "frames must be JSON text")
        if len(text_data.encode("utf-8")) > MAX_FRAME_BYTES:
            return await self._error("bad_frame", f"frame larger than {MAX_FRAME_BYTES} bytes")
        try:
            frame = json.loads(text_data)
        except ValueError:
            return await self._error("bad_frame", "frame is not valid JSON")
        if not isinstance(frame, dict) or not isinstance(frame.get("type"), str):
            return await self._error("bad_frame", 'frame must be a JSON object with a "type"')
        kind = frame["type"]
        if kind == "ask":
            await self._ask(frame)
        elif kind == "stop":
            if self.cancel:
                self.cancel.set()
        elif kind == "ping":
            await self._send({"type": "pong"})
        else:
            await self._error("bad_frame", f"unknown frame type {kind!r}")

    async def _ask(self, frame: dict):
        if self.pump and not self.pump.done():
            return await self._error("busy", "an answer is still streaming; stop it or wait")
        # From now until its evidence is out, the local model gives way to this chat.
        evidence_phase = services.evidence_phase_start()
        try:
            await self._start_answer(frame, evidence_phase)
        except BaseException:
            evidence_phase.close()
            raise

    async def _start_answer(self, frame: dict, evidence_phase):
        loop = asyncio.get_running_loop()
        events: asyncio.Queue = asyncio.Queue()
        self.cancel = threading.Event()
        cancel = self.cancel

        def to_loop(event):  # in the answer thread
            if event is not None:
                event = evidence_html(event)  # rendered here, off the event loop
            try:
                loop.call_soon_threadsafe(events.put_nowait, event)
            except RuntimeError:  # the event loop is gone (server shutting down): stop the model
                cancel.set()

        # The request is checked and its conversation opened in the answer's own thread, not in
        # the event loop's one database thread, where fifty chats asking at once would queue.
        services.run_ask_in_thread(
            user=self.user,
            request={key: frame.get(key) for key in ("question", "asset", "context", "conversation", "local_only")},
            cancel=cancel,
            emit=TokenCoalescer(to_loop, interval_s=settings.NANOSENTRI_TOKEN_FRAME_MS / 1000),
            evidence_phase=evidence_phase,
        )
        self.pump = asyncio.create_task(self._forward(events))

    async def _forward(self, events: asyncio.Queue):
        while (event := await events.get()) is not None:
            try:
                await self._send(event)
            except Exception:  # the socket is gone: stop the model
                self.cancel.set()

    async def _send(self, payload: dict):
        await self.send(text_data=json.dumps(payload))

    async def _error(self, code: str, detail: str):
        await self._send({"type": "error", "code": code, "detail": detail})
