"""/api/v1/ask: one question through the chat's answer pipeline, answered as one JSON object.

The body is exactly what ``manage.py ask --json`` prints (apps.chat.services.answer_result).
"""
from __future__ import annotations

from asgiref.sync import sync_to_async
from django.db import close_old_connections
from ninja import Router, Status

from apps.api.auth import permission_require
from apps.api.schemas import AskIn, AskOut, Error, ValidationErrorOut
from apps.chat import services as chat
from apps.chat.ask_request import ask_request_clean

router = Router(tags=["ask"])


def _ask(*, user, payload: AskIn) -> Status:
    try:
        permission_require(user, "chat.add_conversation")
        ask = ask_request_clean(user=user, question=payload.question, asset=payload.asset, context=payload.context,
                                 local_only=payload.local_only)
        conversation = chat.ask_conversation(user=user, ask=ask)
        result = chat.answer_result(
            question=ask.question, conversation=conversation, asset=ask.asset, context_text=ask.context_text
        )
        return Status(503 if "error" in result else 200, result)
    finally:
        close_old_connections()  # this ran in a pool thread: do not leave its connection open


@router.post(
    "/ask",
    response={200: AskOut, 400: Error, 401: Error, 403: Error, 413: Error, 422: ValidationErrorOut, 503: AskOut},
    exclude_unset=True,
    summary="Ask a troubleshooting question",
    operation_id="ask",
    description="Answers from the manuals, the asset's live readings (or a pasted log line) and the local model, "
    "like the chat; the question and answer are kept as a conversation of the token's user. The body is the JSON "
    "of `manage.py ask --json`. 503: the answer failed (e.g. the model is unavailable); the body then carries "
    "`error` and `error_code`, and the citations found so far.",
)
async def ask(request, payload: AskIn):
    # The model blocks for seconds. Django runs sync views one at a time on a single shared thread
    # under ASGI, so a sync view would stall every other page; a pool thread does not.
    return await sync_to_async(_ask, thread_sensitive=False)(user=request.auth.user, payload=payload)
