"""Tell technicians with an open page that a high-severity alert was opened.

The event goes to the channel-layer group ``alerts``; every ``AlertsConsumer`` forwards it.
With the embedded in-memory layer an event sent by another process (the telemetry listener,
a worker) never arrives, so the consumers also follow the Alert table (see consumers.py).
"""
import logging

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

log = logging.getLogger(__name__)

GROUP = "alerts"


def alert_opened(alert) -> None:
    """Broadcast ``alert``; never raises (a lost push is not worth failing the ingest for).

    Call it from synchronous code, after the alert's transaction committed; from async code
    wrap it in ``database_sync_to_async``.
    """
    try:
        layer = get_channel_layer()
        if layer is None:
            return
        async_to_sync(layer.group_send)(GROUP, {"type": "alert.opened", "alert": alert.as_dict()})
    except Exception as exc:  # the database poll of the consumers still delivers it
        log.warning("could not broadcast alert %s: %s", getattr(alert, "pk", None), exc)
