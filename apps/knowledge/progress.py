"""Push document progress to browsers.

The Celery worker writes progress to the database and also sends it to the channel layer
group. With Redis (a shared layer) the browsers get it from there; with the embedded
in-memory layer the web process follows the database instead (see consumers.py).
"""
import logging

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

log = logging.getLogger(__name__)

GROUP = "documents"


def broadcast(document) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(GROUP, {"type": "document.progress", "document": document.progress_payload()})
    except Exception as exc:  # the browser falls back to the database; ingest must go on
        log.warning("could not broadcast progress of document %s: %s", document.pk, exc)
