"""Alerts for every open page: a high-severity finding appeared on an asset.

Frames sent: ``{"type": "ready", "last_alert": <newest alert id or null>}`` once, then
``{"type": "alert", "alert": Alert.as_dict()}`` for each alert opened while the page is open.

Alerts come from the channel-layer group (``notify.alert_opened``). When the layer is not shared
between processes (the embedded in-memory default) what the telemetry listener sends never
reaches this process, so the consumer also follows the Alert table, like the documents page
does. Both paths may see the same alert: each is sent once.

A page passes ``?after=<id>`` (the newest alert it knows of), so an alert opened while the
browser was going from one page to the next is caught up on connect.
"""
from __future__ import annotations

from datetime import datetime, timedelta
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from django.db.models import Max
from django.utils import timezone

from apps.assets.models import Alert
from apps.assets.notify import GROUP
from apps.realtime.consumers import FollowingConsumer

POLL_SECONDS = 1.0
# Another process stamps ``created`` before it commits: look this far back behind the newest
# alert seen, so a row that became visible late is not skipped.
LOOKBACK = timedelta(seconds=10)
CATCH_UP = timedelta(minutes=10)
CATCH_UP_MAX = 10
POLL_MAX = 50


def _after(scope) -> int | None:
    values = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("after")
    try:
        after = int(values[0]) if values else None
    except ValueError:
        return None
    return after if after is not None and after >= 0 else None


def _created(alert: dict) -> datetime:
    try:
        return datetime.fromisoformat(alert["created"])
    except (KeyError, TypeError, ValueError):
        return timezone.now()


class AlertsConsumer(FollowingConsumer):
    group = GROUP
    permission = "assets.view_asset"
    poll_seconds = POLL_SECONDS

    async def ready(self):
        self.sent: dict[int, datetime] = {}  # alert id -> created, to send each once
        self.connected_at = timezone.now()  # the poll reports alerts created after this
        last_id, missed = await self._catch_up(_after(self.scope))
        await self.send_json({"type": "ready", "last_alert": last_id})
        for alert in missed:
            await self._forward(alert)

    async def alert_opened(self, event):
        alert = event.get("alert")
        if isinstance(alert, dict):
            await self._forward(alert)

    async def _forward(self, alert: dict):
        alert_id = alert.get("id")
        if alert_id in self.sent:
            return
        self.sent[alert_id] = _created(alert)
        await self.send_json({"type": "alert", "alert": alert})

    def _poll_floor(self) -> datetime:
        newest = max(self.sent.values(), default=None)
        return max(self.connected_at, newest - LOOKBACK) if newest else self.connected_at

    async def poll_once(self):
        floor = self._poll_floor()
        # Forget what the poll can no longer return; keeps the set small on a long-open page.
        self.sent = {pk: created for pk, created in self.sent.items() if created >= floor - LOOKBACK}
        for alert in await self._created_after(floor, exclude=list(self.sent)):
            await self._forward(alert)

    @database_sync_to_async
    def _created_after(self, floor: datetime, *, exclude: list[int]) -> list[dict]:
        qs = Alert.objects.filter(created__gt=floor).exclude(pk__in=exclude).select_related("asset")
        return [a.as_dict() for a in qs.order_by("created", "pk")[:POLL_MAX]]

    @database_sync_to_async
    def _catch_up(self, after: int | None) -> tuple[int | None, list[dict]]:
        last_id = Alert.objects.aggregate(last=Max("pk"))["last"]
        if after is None:
            return last_id, []
        recent = timezone.now() - CATCH_UP
        qs = (Alert.objects.filter(pk__gt=after, resolved__isnull=True, created__gte=recent)
              .select_related("asset").order_by("pk")[:CATCH_UP_MAX])
        return last_id, [a.as_dict() for a in qs]
