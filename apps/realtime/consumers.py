"""The shell shared by pages that follow server-side events: documents progress, alerts."""
from __future__ import annotations

import asyncio
import logging

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings

log = logging.getLogger(__name__)


class FollowingConsumer(AsyncJsonWebsocketConsumer):
    """A listen-only socket: joins ``group`` and, when the channel layer is not shared between
    processes (the embedded in-memory default), also polls the database every ``poll_seconds``,
    because the worker or the telemetry listener cannot reach this process's layer.

    Subclasses set ``group``, ``permission`` and ``poll_seconds``, and implement ``poll_once``;
    ``ready`` runs after the socket is accepted and the group joined, before polling starts.
    """

    group: str
    permission: str
    poll_seconds: float = 1.0

    async def connect(self):
        user = self.scope.get("user")
        if not user or not user.is_authenticated or not await database_sync_to_async(user.has_perm)(self.permission):
            await self.close(code=4403)
            return
        self.poller = None
        await self.accept()
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.ready()
        if not settings.NANOSENTRI_SHARED_CHANNEL_LAYER:
            self.poller = asyncio.create_task(self._poll())

    async def disconnect(self, code):
        if getattr(self, "poller", None):
            self.poller.cancel()
        await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive_json(self, content, **kwargs):
        pass  # these pages only listen

    async def ready(self) -> None:
        pass

    async def poll_once(self) -> None:
        """Send what changed in the database since the last poll (subclasses)."""

    async def _poll(self):
        while True:
            try:
                await self.poll_once()
            except Exception as exc:  # a database hiccup must not end the page's updates
                log.warning("%s poll failed: %s", type(self).__name__, exc)
            await asyncio.sleep(self.poll_seconds)
