"""The documents page's progress socket: follows the database on the embedded default."""
import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.utils import timezone

from apps.knowledge.consumers import DocumentProgressConsumer
from apps.knowledge.models import Document

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]


async def _connect(user):
    communicator = WebsocketCommunicator(DocumentProgressConsumer.as_asgi(), "/ws/documents/")
    communicator.scope["user"] = user
    connected, code = await communicator.connect()
    return communicator, connected, code


def _document(**fields):
    return Document.objects.create(original_name="m.pdf", stored_path="m.pdf", extension=".pdf", content_hash="a" * 64, **fields)


async def test_it_sends_progress_written_by_another_process_to_the_database(admin_user, settings):
    settings.NANOSENTRI_SHARED_CHANNEL_LAYER = False
    communicator, connected, _ = await _connect(admin_user)
    assert connected
    doc = await database_sync_to_async(_document)()
    # What the worker does: an UPDATE, no channel-layer message reaches this process.
    await database_sync_to_async(
        lambda: Document.objects.filter(pk=doc.pk).update(status="embedding", chunks_done=5, chunks_total=5, pages_done=5, page_count=10, updated=timezone.now())
    )()
    frame = await communicator.receive_json_from(timeout=3)
    while frame["document"]["status"] != "embedding":
        frame = await communicator.receive_json_from(timeout=3)
    assert frame["type"] == "document"
    assert frame["document"]["id"] == doc.pk
    assert frame["document"]["pages_done"] == 5 and frame["document"]["percent"] == 52
    await database_sync_to_async(
        lambda: Document.objects.filter(pk=doc.pk).update(status="indexed", page_count=2, chunk_count=10, updated=timezone.now())
    )()
    frame = await communicator.receive_json_from(timeout=3)
    assert frame["document"]["status"] == "indexed" and frame["document"]["percent"] == 100
    await communicator.disconnect()


async def test_it_forwards_channel_layer_progress(admin_user, settings):
    from channels.layers import get_channel_layer

    settings.NANOSENTRI_SHARED_CHANNEL_LAYER = True  # no database polling: only the group
    communicator, connected, _ = await _connect(admin_user)
    assert connected
    payload = {"id": 7, "status": "parsing"}
    await get_channel_layer().group_send("documents", {"type": "document.progress", "document": payload})
    assert await communicator.receive_json_from(timeout=3) == {"type": "document", "document": payload}
    await communicator.disconnect()


async def test_only_admins_may_watch(technician, supervisor):
    from django.contrib.auth.models import AnonymousUser

    for user in (technician, supervisor, AnonymousUser()):
        _, connected, code = await _connect(user)
        assert not connected and code == 4403
