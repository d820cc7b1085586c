"""Alert notifications: ``alert_opened`` pushes to the "alerts" group; on the embedded
(unshared) layer every page also follows the Alert table, since the listener is another process."""
from unittest import mock

import pytest
from channels.db import database_sync_to_async
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import AnonymousUser
from django.utils import timezone

from apps.assets import notify
from apps.assets.consumers import AlertsConsumer
from apps.assets.models import Alert, Asset, DeviceType
from apps.assets.routing import websocket_urlpatterns
from apps.assets.services import alerts_refresh, payload_receive

HEATER_FAILURE = "ID:WXT536-01 >>> HEAT_CURRENT: 0.00A | TEMP_AMB: -15.2C | STATUS: ICE_WARNING"


async def _connect(user, path="/ws/alerts/", app=None):
    communicator = WebsocketCommunicator(app or AlertsConsumer.as_asgi(), path)
    communicator.scope["user"] = user
    connected, code = await communicator.connect()
    return communicator, connected, code


async def _ready(communicator) -> dict:
    frame = await communicator.receive_json_from(timeout=3)
    assert frame["type"] == "ready"
    return frame


def _asset():
    wxt536 = DeviceType.objects.get(key="WXT536")
    defaults = {"name": "Roof mast", "device_type": wxt536}
    asset, _ = Asset.objects.get_or_create(asset_id="WXT536-01", defaults=defaults)
    return asset


def _alert(**fields):
    fields = {"rule": "heater_failure", "sensor": "HEAT_CURRENT", "severity": "high",
              "message": "Heater current 0 A while the ambient temperature is -15.2 °C", **fields}
    return Alert.objects.create(asset=_asset(), **fields)


create_alert = database_sync_to_async(_alert)
alert_opened = database_sync_to_async(notify.alert_opened)


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_it_forwards_alert_opened_from_the_group(technician, settings):
    settings.NANOSENTRI_SHARED_CHANNEL_LAYER = True  # no database polling: only the group
    communicator, connected, _ = await _connect(technician)
    assert connected
    await _ready(communicator)
    alert = await create_alert()

    await alert_opened(alert)

    frame = await communicator.receive_json_from(timeout=3)
    assert frame == {"type": "alert", "alert": alert.as_dict()}
    assert frame["alert"]["url"] == "/assets/WXT536-01/" and frame["alert"]["severity"] == "high"
    # On a shared layer nothing follows the table: an alert nobody announced stays unsent.
    await create_alert(rule="other")
    assert await communicator.receive_nothing(timeout=1.5)
    await communicator.disconnect()


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_it_delivers_an_alert_written_to_the_database_by_another_process(technician, settings):
    settings.NANOSENTRI_SHARED_CHANNEL_LAYER = False
    communicator, connected, _ = await _connect(technician)
    assert connected
    await _ready(communicator)

    # What the telemetry listener does: a row, and a group_send this process never sees.
    alert = await create_alert()

    frame = await communicator.receive_json_from(timeout=4)
    assert frame == {"type": "alert", "alert": alert.as_dict()}
    await communicator.disconnect()


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_it_sends_each_alert_once(technician, settings):
    settings.NANOSENTRI_SHARED_CHANNEL_LAYER = False  # both the poll and the group see it
    communicator, connected, _ = await _connect(technician)
    assert connected
    await _ready(communicator)

    first = await create_alert()
    await alert_opened(first)  # before the poll found it
    assert (await communicator.receive_json_from(timeout=4))["alert"]["id"] == first.pk
    second = await create_alert(rule="low_supply_resets", sensor="V_IN")
    assert (await communicator.receive_json_from(timeout=4))["alert"]["id"] == second.pk
    await alert_opened(second)  # after the poll sent it
    await alert_opened(first)

    assert await communicator.receive_nothing(timeout=2.5)  # two more polls, nothing new
    await communicator.disconnect()


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_alerts_from_before_the_page_opened_are_not_sent(technician, settings):
    settings.NANOSENTRI_SHARED_CHANNEL_LAYER = False
    old = await create_alert()

    communicator, connected, _ = await _connect(technician)
    assert connected
    assert (await _ready(communicator))["last_alert"] == old.pk
    assert await communicator.receive_nothing(timeout=1.5)
    await communicator.disconnect()


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_a_page_catches_up_on_alerts_opened_while_it_was_loading(technician, settings):
    settings.NANOSENTRI_SHARED_CHANNEL_LAYER = True
    seen = await create_alert(rule="seen")
    missed = await create_alert(rule="missed")
    await create_alert(rule="cleared", resolved=timezone.now())

    communicator, connected, _ = await _connect(technician, f"/ws/alerts/?after={seen.pk}")
    assert connected
    assert (await _ready(communicator))["last_alert"] == missed.pk + 1
    assert (await communicator.receive_json_from(timeout=3))["alert"]["id"] == missed.pk
    await alert_opened(missed)  # announced late: still only once
    assert await communicator.receive_nothing(timeout=1)
    await communicator.disconnect()


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_a_heater_failure_reaches_open_pages(technician, supervisor, settings):
    settings.NANOSENTRI_SHARED_CHANNEL_LAYER = True
    await database_sync_to_async(_asset)()
    pages = []
    for user in (technician, supervisor):
        communicator, connected, _ = await _connect(user, app=URLRouter(websocket_urlpatterns))
        assert connected
        await _ready(communicator)
        pages.append(communicator)

    def ingest_and_notify():
        result = payload_receive(HEATER_FAILURE, source="mqtt")
        opened = alerts_refresh(result.asset)
        for alert in opened:
            notify.alert_opened(alert)
        return opened

    opened = await database_sync_to_async(ingest_and_notify)()

    assert [a.rule for a in opened] == ["heater_failure"]
    for communicator in pages:
        frame = await communicator.receive_json_from(timeout=3)
        assert frame["alert"]["rule"] == "heater_failure" and frame["alert"]["asset"] == "WXT536-01"
        assert frame["alert"]["message"].startswith("Heater current 0 A while the ambient temperature")
        await communicator.disconnect()


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_only_users_with_a_role_may_listen(outsider):
    for user in (AnonymousUser(), outsider):
        _, connected, code = await _connect(user)
        assert not connected and code == 4403


@pytest.mark.django_db
def test_alert_opened_never_raises(caplog):
    alert = _alert()

    with mock.patch("apps.assets.notify.get_channel_layer", side_effect=RuntimeError("no layer configured")):
        notify.alert_opened(alert)
    layer = mock.Mock()
    layer.group_send = mock.AsyncMock(side_effect=ConnectionError("redis is down"))
    with mock.patch("apps.assets.notify.get_channel_layer", return_value=layer):
        notify.alert_opened(alert)
    with mock.patch("apps.assets.notify.get_channel_layer", return_value=None):
        notify.alert_opened(alert)

    assert layer.group_send.await_count == 1
    assert "redis is down" in caplog.text and "no layer configured" in caplog.text
