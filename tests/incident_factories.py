"""Builders for the incident tests: an asset, a chat answer with evidence, feedback on it."""
from __future__ import annotations

from apps.assets.models import Asset, DeviceType
from apps.chat.models import AnswerFeedback, Citation, Conversation, Message
from apps.knowledge.models import Document

QUESTION = "The WXT536-01 heater does not work, ice on the sensor. What should I check?"
ANSWER = "Check the **heater fuse** F2 first [1], then measure the heater supply voltage."
LIVE = {
    "asset": "WXT536-01",
    "device_type": "WXT536",
    "source": "live",
    "readings": {
        "HEAT_CURRENT": {"value": 0.0, "unit": "A", "ts": None, "min": 0.0, "max": 2.0, "flag": ""},
        "TEMP_AMB": {"value": -15.2, "unit": "C", "ts": None, "min": -52.0, "max": 60.0, "flag": ""},
    },
    "findings": [
        {"rule": "heater_off_in_frost", "severity": "high", "sensor": "HEAT_CURRENT",
         "message": "Heater current 0 A while the ambient temperature is -15.2 °C", "check": "heater fuse"},
        {"rule": "low_supply", "severity": "medium", "sensor": "V_IN", "message": "Supply voltage low", "check": ""},
    ],
}


def asset(asset_id="WXT536-01", *, technicians=()):
    a = Asset.objects.create(asset_id=asset_id, name="Roof mast", device_type=DeviceType.objects.get(key="WXT536"))
    if technicians:
        a.technicians.add(*technicians)
    return a


def document(name="WXT530_User_Guide.pdf"):
    doc, _ = Document.objects.get_or_create(
        content_hash=name.ljust(64, "0")[:64],
        defaults={"original_name": name, "stored_path": name, "extension": ".pdf", "status": Document.Status.INDEXED},
    )
    return doc


def chat_answer(user, *, question=QUESTION, answer=ANSWER, live=LIVE, conversation=None, cited=True):
    """A conversation of ``user`` with one question and its answer (citation + live context)."""
    conversation = conversation or Conversation.objects.create(user=user, title=question[:200])
    Message.objects.create(conversation=conversation, role=Message.Role.USER, content=question)
    message = Message.objects.create(conversation=conversation, role=Message.Role.ASSISTANT, content=answer,
                                     status=Message.Status.COMPLETED, live_context=live)
    if cited:
        Citation.objects.create(message=message, rank=1, document=document(), file_name="WXT530_User_Guide.pdf",
                                page=42, score=0.71, text="Heater fuse F2 protects the 24 V heater supply.",
                                highlights=["Heater fuse F2 protects the 24 V heater supply."])
    return message


def thumbs_down(message, user, comment="Did not mention the heater relay."):
    return AnswerFeedback.objects.create(message=message, user=user, rating=AnswerFeedback.Rating.DOWN, comment=comment)
