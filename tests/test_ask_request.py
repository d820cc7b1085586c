"""The checks of an ask request: one service (apps.chat.ask_request) for the websocket, the API and
``manage.py ask``. The entry points' own tests (test_chat_consumer, test_live_context_chat, test_api,
test_ask_command) check each one's codes and messages; these check the rules and that each entry
point goes through them."""
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from apps.assets.models import Asset
from apps.chat.ask_request import (
    MAX_CONTEXT_CHARS,
    MAX_QUESTION_CHARS,
    AskRefused,
    InvalidContext,
    InvalidQuestion,
    UnknownAsset,
    UnknownConversation,
    ask_request_clean,
)
from apps.chat.models import Conversation

pytestmark = pytest.mark.django_db

LOG_LINE = "V_IN: 8.4V [LOW] | REF_CHK: FAIL"


def test_it_returns_the_cleaned_question_and_what_the_request_names(technician):
    asset = Asset.objects.create(asset_id="WXT536-01")
    mine = Conversation.objects.create(user=technician, title="t")
    ask = ask_request_clean(user=technician, question="  heater dead?  ", asset="WXT536-01", context=LOG_LINE,
                            conversation=mine.pk)
    assert ask.question == "heater dead?" and ask.asset == asset and ask.context_text == LOG_LINE
    assert ask.conversation == mine
    fresh = ask_request_clean(user=technician, question="q")
    assert fresh.asset is None and fresh.context_text is None and fresh.conversation is None


@pytest.mark.parametrize("kwargs, kind, code, field", [
    ({"question": None}, InvalidQuestion, "invalid_question", "question"),
    ({"question": 42}, InvalidQuestion, "invalid_question", "question"),
    ({"question": " \n "}, InvalidQuestion, "invalid_question", "question"),
    ({"question": "x" * (MAX_QUESTION_CHARS + 1)}, InvalidQuestion, "invalid_question", "question"),
    ({"question": "q", "asset": 5}, AskRefused, "bad_frame", "asset"),
    ({"question": "q", "asset": "NOPE-1"}, UnknownAsset, "unknown_asset", "asset"),
    ({"question": "q", "context": ["log"]}, AskRefused, "bad_frame", "context"),
    ({"question": "q", "context": "x" * (MAX_CONTEXT_CHARS + 1)}, AskRefused, "bad_frame", "context"),
    ({"question": "q", "context": "\x00\x01 garbage"}, InvalidContext, "bad_context", "context"),
    ({"question": "q", "conversation": "1; drop"}, AskRefused, "bad_frame", "conversation"),
    ({"question": "q", "conversation": 99999}, UnknownConversation, "unknown_conversation", "conversation"),
    ({"question": "q", "local_only": "yes"}, AskRefused, "bad_frame", "local_only"),
])
def test_it_refuses_with_the_field_and_the_socket_code(technician, kwargs, kind, code, field):
    with pytest.raises(kind) as refused:
        ask_request_clean(user=technician, **kwargs)
    assert refused.value.code == code and refused.value.field == field and str(refused.value)
    assert not Conversation.objects.exists()


def test_limits_are_inclusive():
    ask = ask_request_clean(user=None, question="x" * MAX_QUESTION_CHARS, context="V_IN: 1" + " " * (MAX_CONTEXT_CHARS - 7))
    assert len(ask.question) == MAX_QUESTION_CHARS


def test_someone_elses_conversation_is_unknown(technician, supervisor):
    theirs = Conversation.objects.create(user=supervisor, title="t")
    with pytest.raises(UnknownConversation):
        ask_request_clean(user=technician, question="q", conversation=theirs.pk)


def test_the_api_schema_uses_the_same_limits():
    from apps.api.schemas import AskIn

    schema = AskIn.model_json_schema()["properties"]
    assert schema["question"]["maxLength"] == MAX_QUESTION_CHARS
    assert MAX_CONTEXT_CHARS in [s.get("maxLength") for s in schema["context"]["anyOf"]]


@pytest.mark.parametrize("args, message", [
    (["hi", "--asset", "NOPE-1"], "unknown asset 'NOPE-1'"),
    (["hi", "--context", "x" * (MAX_CONTEXT_CHARS + 1)], f"at most {MAX_CONTEXT_CHARS} characters"),
    (["hi", "--context", "\x00\x01 garbage"], "not a readable log line"),
    (["x" * (MAX_QUESTION_CHARS + 1)], "too long"),
])
def test_the_command_refuses_what_the_socket_and_the_api_refuse(args, message):
    with pytest.raises(CommandError, match=message):
        call_command("ask", *args, stdout=StringIO(), stderr=StringIO())
    assert not Conversation.objects.exists()


def test_the_local_only_choice_is_kept_with_the_conversation_it_asks_in(technician):
    from apps.chat.services import ask_conversation

    ask = ask_request_clean(user=technician, question="heater dead?", local_only=True)
    assert ask.local_only is True
    conversation = ask_conversation(user=technician, ask=ask)
    assert conversation.title == "heater dead?" and Conversation.objects.get(pk=conversation.pk).local_only
    # A request that says nothing leaves the choice as it is; one that says false lifts it.
    again = ask_request_clean(user=technician, question="and then?", conversation=conversation.pk)
    assert again.local_only is None and ask_conversation(user=technician, ask=again).pk == conversation.pk
    assert Conversation.objects.get(pk=conversation.pk).local_only
    lifted = ask_request_clean(user=technician, question="and now?", conversation=conversation.pk, local_only=False)
    ask_conversation(user=technician, ask=lifted)
    assert not Conversation.objects.get(pk=conversation.pk).local_only
