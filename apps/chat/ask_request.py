"""The rules of an ask request, in one place for every entry point.

The chat websocket (``apps.chat.consumers``), the API (``POST /api/v1/ask``) and ``manage.py ask``
all hand what they received to ``ask_request_clean``; it returns an ``AskRequest`` with the
question, the asset and the existing conversation looked up, or raises an ``AskRefused`` that says
which field is wrong, the websocket error code for it (docs/protocol.md) and why.
"""
from __future__ import annotations

from dataclasses import dataclass

from apps.assets.models import Asset
from apps.chat.models import Conversation

MAX_QUESTION_CHARS = 2000
MAX_CONTEXT_CHARS = 4000  # a pasted log line or two, not a whole file (files are uploaded as documents)


class AskRefused(ValueError):
    """An ask request that is not answered. ``str()`` is the detail sent to the client."""

    code = "bad_frame"  # the websocket error code
    field = ""  # the request field at fault

    def __init__(self, detail: str, *, field: str = "", value=None):
        super().__init__(detail)
        self.field = field or self.field
        self.value = value


class InvalidQuestion(AskRefused):
    code, field = "invalid_question", "question"


class InvalidContext(AskRefused):
    """The pasted context cannot be read as a log line."""

    code, field = "bad_context", "context"

    @classmethod
    def unreadable(cls, error: Exception) -> "InvalidContext":
        return cls(f"the pasted context is not a readable log line: {error}")


class UnknownAsset(AskRefused):
    code, field = "unknown_asset", "asset"


class UnknownConversation(AskRefused):
    code, field = "unknown_conversation", "conversation"


@dataclass(frozen=True)
class AskRequest:
    question: str
    asset: Asset | None = None
    context_text: str | None = None
    conversation: Conversation | None = None  # the user's conversation to continue; None: a new one
    local_only: bool | None = None  # the technician's route choice for the conversation; None: unchanged


def question_clean(question) -> str:
    if not isinstance(question, str):
        raise InvalidQuestion("the question must be text")
    question = question.strip()
    if not question:
        raise InvalidQuestion("the question is empty")
    if len(question) > MAX_QUESTION_CHARS:
        raise InvalidQuestion(f"the question is too long (over {MAX_QUESTION_CHARS} characters)")
    return question


def context_check(context_text: str) -> None:
    """Raise InvalidContext unless ``context_text`` parses as a telemetry payload (it is not stored)."""
    from apps.assets.payloads import PayloadError, parse_payload

    try:
        parse_payload(context_text)
    except PayloadError as exc:
        raise InvalidContext.unreadable(exc) from exc


def ask_request_clean(*, user, question, asset=None, context=None, conversation=None, local_only=None) -> AskRequest:
    """Check an ask request as received (JSON values or command-line strings) and look up what it names.

    ``asset`` is an asset id, ``context`` pasted log text (at most MAX_CONTEXT_CHARS), ``conversation``
    the id of one of ``user``'s conversations, ``local_only`` true or false (answer with the local
    model only, kept with the conversation) or None. Raises AskRefused (a subclass per kind of fault).
    """
    question = question_clean(question)
    if asset is not None and not isinstance(asset, str):
        raise AskRefused("asset must be an asset id string", field="asset")
    if context is not None and (not isinstance(context, str) or len(context) > MAX_CONTEXT_CHARS):
        raise AskRefused(f"context must be log text of at most {MAX_CONTEXT_CHARS} characters", field="context")
    found = None
    if asset:
        found = Asset.objects.filter(asset_id=asset).first()
        if found is None:
            raise UnknownAsset(f"no asset {asset[:64]!r}", value=asset)
    if conversation is not None and not isinstance(conversation, int):
        raise AskRefused("conversation must be an integer id", field="conversation")
    existing = None
    if conversation:
        existing = Conversation.objects.filter(pk=conversation, user=user).first()
        if existing is None:
            raise UnknownConversation("no such conversation", value=conversation)
    if local_only is not None and not isinstance(local_only, bool):
        raise AskRefused("local_only must be true or false", field="local_only")
    if context:
        context_check(context)
    return AskRequest(question=question, asset=found, context_text=context, conversation=existing,
                      local_only=local_only)
