"""Live sensor context in answers: chosen asset, recognised asset, pasted log line."""
import json
from io import StringIO

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.core.management import call_command

from apps.assets.models import Asset, DeviceType
from apps.assets.services import payload_receive
from apps.chat.consumers import ChatConsumer
from apps.chat.models import Message

HEATER_LINE = "[2026-06-12] ID:WXT536-01 >>> HEAT_CURRENT: 0.00A | TEMP_AMB: -15.2C | STATUS: ICE_WARNING"
VOLTAGE_LINE = "V_IN: 8.4V [LOW] | REF_CHK: FAIL | EVENT: SYSTEM_RESET"


def _mast():
    return Asset.objects.create(asset_id="WXT536-01", name="Roof mast", device_type=DeviceType.objects.get(key="WXT536"))


def _ask(*args):
    out = StringIO()
    call_command("ask", *args, "--json", stdout=out, stderr=StringIO())
    return json.loads(out.getvalue())


@pytest.mark.django_db
def test_a_pasted_heater_line_gives_the_heating_finding_even_without_assets():
    result = _ask("Why is the wind sensor not reporting data?", "--context", HEATER_LINE.replace("WXT536-01", "WXT536"))
    top = result["findings"][0]
    assert top["rule"] == "heater_failure" and top["severity"] == "high" and top["sensor"] == "HEAT_CURRENT"
    assert "24 V heater supply" in top["message"]
    assert result["readings"]["TEMP_AMB"]["value"] == -15.2
    assert not Asset.objects.exists()  # context is parsed, not stored


@pytest.mark.django_db
def test_a_pasted_voltage_line_names_the_low_supply_as_root_cause():
    result = _ask("Diagnose the intermittent resets.", "--context", VOLTAGE_LINE)
    top = result["findings"][0]
    assert top["rule"] == "low_supply_resets"
    assert "8.4 V is below the 10–30 V operating range" in top["message"]
    assert "root cause" in top["message"] and "reset" in top["message"]
    assert result["answer"]  # the model still answers: the findings are evidence


@pytest.mark.django_db
def test_the_assets_live_readings_are_used_and_stored_with_the_answer():
    asset = _mast()
    assert payload_receive(HEATER_LINE, source="test").stored == 3
    result = _ask("Why is the wind sensor not reporting data?", "--asset", asset.asset_id)
    assert result["findings"][0]["rule"] == "heater_failure"
    message = Message.objects.get(role="assistant")
    assert message.live_context["asset"] == "WXT536-01"
    assert message.live_context["findings"][0]["rule"] == "heater_failure"


@pytest.mark.django_db
def test_an_asset_named_in_the_question_is_recognised():
    _mast()
    payload_receive(VOLTAGE_LINE.replace("V_IN", "ID:WXT536-01 >>> V_IN"), source="test")
    result = _ask("Why does WXT536-01 keep resetting?")
    assert result["findings"][0]["rule"] == "low_supply_resets"


@pytest.mark.django_db
def test_no_asset_and_no_context_means_no_findings():
    result = _ask("What does ERROR HIGH TEMP mean?")
    assert result["findings"] == [] and result["readings"] == {}


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_the_websocket_sends_live_context_before_the_first_token(technician):
    await database_sync_to_async(_mast)()
    await database_sync_to_async(payload_receive)(HEATER_LINE, source="test")
    communicator = WebsocketCommunicator(ChatConsumer.as_asgi(), "/ws/chat/")
    communicator.scope["user"] = technician
    assert (await communicator.connect())[0]
    await communicator.receive_json_from()
    await communicator.send_json_to({"type": "ask", "question": "Why no wind data?", "asset": "WXT536-01"})
    kinds, live = [], None
    while True:
        event = await communicator.receive_json_from(timeout=10)
        kinds.append(event["type"])
        if event["type"] == "live_context":
            live = event
        if event["type"] == "done":
            break
    assert kinds.index("live_context") < kinds.index("token")
    assert live["findings"][0]["rule"] == "heater_failure"
    assert live["readings"]["HEAT_CURRENT"]["value"] == 0.0
    # The page's own partial, rendered by the server: chat.js only places it.
    assert live["html"].startswith('<section class="live-context"') and "<dt>HEAT_CURRENT</dt>" in live["html"]
    assert 'class="finding severity-' in live["html"]
    await communicator.disconnect()


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
@pytest.mark.parametrize(
    "frame, code",
    [
        ({"type": "ask", "question": "hi", "asset": "NOPE-1"}, "unknown_asset"),
        ({"type": "ask", "question": "hi", "asset": 5}, "bad_frame"),
        ({"type": "ask", "question": "hi", "context": "\x00\x01 garbage"}, "bad_context"),
        ({"type": "ask", "question": "hi", "context": "x" * 5000}, "bad_frame"),
    ],
)
async def test_bad_asset_or_context_is_a_clear_error(technician, frame, code):
    communicator = WebsocketCommunicator(ChatConsumer.as_asgi(), "/ws/chat/")
    communicator.scope["user"] = technician
    assert (await communicator.connect())[0]
    await communicator.receive_json_from()
    await communicator.send_json_to(frame)
    event = await communicator.receive_json_from(timeout=5)
    assert event["type"] == "error" and event["code"] == code, event
    await communicator.disconnect()


@pytest.mark.django_db
def test_a_finding_cites_the_page_of_the_assets_own_manual_that_supports_it():
    from apps.knowledge.models import Document
    from apps.knowledge.vector_index import get_vector_index
    from ingest.chunk import Chunk
    from models.embedding import get_embedder

    asset = _mast()
    manual = Document.objects.create(original_name="wxt536-manual.pdf", stored_path="w.pdf", extension=".pdf",
                                     content_hash="w" * 64, status=Document.Status.INDEXED)
    other = Document.objects.create(original_name="charger.pdf", stored_path="c.pdf", extension=".pdf",
                                    content_hash="c" * 64, status=Document.Status.INDEXED)
    texts = {manual: "Heater supply voltage 24 V. The heating element keeps ice off the transducers.",
             other: "Heater supply voltage heating element ice charger wall box."}
    for doc, text in texts.items():
        get_vector_index().add(document_id=doc.pk, file_name=doc.original_name, chunks=[Chunk(page=7, index=0, text=text)],
                               embeddings=get_embedder().embed([text]))
    asset.manuals.add(manual)
    payload_receive(HEATER_LINE, source="test")
    result = _ask("Why is the wind sensor not reporting data?", "--asset", "WXT536-01")
    heater = next(f for f in Message.objects.get(role="assistant").live_context["findings"] if f["rule"] == "heater_failure")
    assert heater["citation"]["document"] == "wxt536-manual.pdf" and heater["citation"]["page"] == 7
    assert heater["citation"]["url"].endswith("#page=7")
    assert result["citations"] and all(c["document"] == "wxt536-manual.pdf" for c in result["citations"])
