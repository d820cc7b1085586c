"""Live document progress for the admin's documents page."""
from channels.db import database_sync_to_async
from django.utils import timezone

from apps.realtime.consumers import FollowingConsumer
from apps.knowledge.models import Document
from apps.knowledge.progress import GROUP

POLL_SECONDS = 0.5


class DocumentProgressConsumer(FollowingConsumer):
    group = GROUP
    permission = "knowledge.add_document"
    poll_seconds = POLL_SECONDS

    async def ready(self):
        self.last_seen = None

    async def document_progress(self, event):
        await self.send_json({"type": "document", "document": event["document"]})

    async def poll_once(self):
        for payload in await self._changed():
            await self.send_json({"type": "document", "document": payload})

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
            self.last_seen = timezone.now()
        return [d.progress_payload() for d in docs]
