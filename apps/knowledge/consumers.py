"""Live document progress for the admin's documents page."""
import asyncio

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings

from apps.knowledge.models import Document
from apps.knowledge.progress import GROUP

POLL_SECONDS = 0.5


class DocumentProgressConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self):
        user = self.scope.get("user")
        if not user or not user.is_authenticated or not await database_sync_to_async(user.has_perm)("knowledge.add_document"):
            await self.close(code=4403)
            return
        await self.accept()
        await self.channel_layer.group_add(GROUP, self.channel_name)
        self.last_seen = None
        self.poller = None
        if not settings.NANOSENTRI_SHARED_CHANNEL_LAYER:
            # The worker cannot reach this process's in-memory layer: follow the database.
            self.poller = asyncio.create_task(self._poll())

    async def disconnect(self, code):
        if getattr(self, "poller", None):
            self.poller.cancel()
        await self.channel_layer.group_discard(GROUP, self.channel_name)

    async def receive_json(self, content, **kwargs):
        pass  # the page only listens

    async def document_progress(self, event):
        await self.send_json({"type": "document", "document": event["document"]})

    async def _poll(self):
        while True:
            for payload in await self._changed():
                await self.send_json({"type": "document", "document": payload})
            await asyncio.sleep(POLL_SECONDS)

    @database_sync_to_async
    def _changed(self):
        qs = Document.objects.order_by("updated")
        if self.last_seen is not None:
            qs = qs.filter(updated__gt=self.last_seen)
        else:
            qs = qs.filter(status__in=Document.IN_PROGRESS)
        docs = list(qs[:200])
        if docs:
            self.last_seen = docs[-1].updated
        elif self.last_seen is None:
            from django.utils import timezone

            self.last_seen = timezone.now()
        return [d.progress_payload() for d in docs]
