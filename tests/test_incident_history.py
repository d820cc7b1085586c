"""What broke before, where a technician looks: the asset page and the chat an incident came from."""
import pytest

from apps.assets.models import Asset, DeviceType
from apps.chat.models import Conversation
from apps.incidents.services import incident_create

pytestmark = pytest.mark.database


@pytest.fixture
def assets(db, technician):
    wxt = DeviceType.objects.get(key="WXT536")
    mine = Asset.objects.create(asset_id="WXT536-01", name="Mast 1", device_type=wxt)
    mine.technicians.add(technician)
    other = Asset.objects.create(asset_id="WXT536-02", name="Mast 2", device_type=wxt)
    return mine, other


def test_the_asset_page_lists_its_incidents_with_what_fixed_them(client, technician, assets):
    mine, other = assets
    fixed = incident_create(reporter=technician, asset=mine, title="Heater <dead>", symptom="ice",
                            status="resolved", cause="fuse", remedy="Replaced fuse F2")
    incident_create(reporter=technician, asset=other, title="Other mast's problem", symptom="noise")
    client.force_login(technician)

    page = client.get(f"/assets/{mine.asset_id}/").content.decode()

    assert f'href="/incidents/{fixed.pk}/"' in page
    assert "Heater &lt;dead&gt;" in page  # escaped
    assert "Fixed by: Replaced fuse F2" in page
    assert "Other mast" not in page


def test_the_asset_page_shows_only_incidents_the_user_may_see(client, technician, supervisor, assets):
    _, other = assets
    incident_create(reporter=supervisor, asset=other, title="Supervisor's incident", symptom="x")

    client.force_login(technician)
    assert "Supervisor&#x27;s incident" not in client.get(f"/assets/{other.asset_id}/").content.decode()
    client.force_login(supervisor)
    assert "Supervisor&#x27;s incident" in client.get(f"/assets/{other.asset_id}/").content.decode()


def test_a_chat_shows_the_incidents_already_opened_from_it(client, technician, assets):
    conversation = Conversation.objects.create(user=technician, title="heater")
    incident = incident_create(reporter=technician, asset=assets[0], title="Heater dead", symptom="ice",
                               conversation=conversation)
    client.force_login(technician)

    page = client.get(f"/chat/{conversation.pk}/").content.decode()

    assert f'href="/incidents/{incident.pk}/"' in page
    assert f"Incident #{incident.pk}: Heater dead" in page
    fresh = Conversation.objects.create(user=technician, title="other")
    assert "Incident #" not in client.get(f"/chat/{fresh.pk}/").content.decode()


def test_a_reloaded_chat_keeps_the_asset_it_was_about(client, technician, assets):
    from apps.chat.models import Message

    conversation = Conversation.objects.create(user=technician, title="heater")
    Message.objects.create(conversation=conversation, role="assistant", content="...",
                           live_context={"asset": "WXT536-01", "readings": {}, "findings": []})
    client.force_login(technician)

    page = client.get(f"/chat/{conversation.pk}/").content.decode()

    assert '<option value="WXT536-01" selected>' in page
    assert '<option value="WXT536-02" selected>' not in page
