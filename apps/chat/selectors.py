"""Reads of the chat: the chat page's conversations and assets, and the feedback on answers.

The writes are in ``apps.chat.services`` (answers), ``apps.chat.ask_request`` (the checks of a
question) and ``apps.chat.feedback_services`` (votes and reviews).
"""
from __future__ import annotations

from django.db.models import F, OuterRef, Prefetch, QuerySet, Subquery

from apps.assets.models import Asset
from apps.chat.models import AnswerFeedback, Conversation, Message

_NAMES = {AnswerFeedback.Rating.UP: "up", AnswerFeedback.Rating.DOWN: "down"}


# ------------------------------------------------------------------ the chat page


def conversations_recent(*, user, limit: int = 50) -> QuerySet[Conversation]:
    """The user's latest conversations, for the chat page's sidebar."""
    return Conversation.objects.filter(user=user)[:limit]


def conversation_with_messages(*, user, pk: int) -> Conversation | None:
    """The user's conversation ``pk`` with its messages, their citations and the user's own votes
    (``message.my_feedback``); None when it is not theirs."""
    return (
        Conversation.objects.filter(pk=pk, user=user)
        .prefetch_related("messages__citations", _own_feedback(user))
        .first()
    )


def _own_feedback(user) -> Prefetch:
    """Each message's ``my_feedback``: the user's own vote on it ([] or [AnswerFeedback])."""
    return Prefetch("messages__feedback", queryset=AnswerFeedback.objects.filter(user=user), to_attr="my_feedback")


def conversation_last_asset(conversation: Conversation | None) -> str:
    """The asset the conversation was last about, so a reloaded chat keeps asking about it."""
    if conversation is None:
        return ""
    for message in reversed(conversation.messages.all()):  # prefetched, oldest first
        if message.live_context and message.live_context.get("asset"):
            return message.live_context["asset"]
    return ""


def chat_assets(*, limit: int = 500) -> QuerySet[Asset]:
    """The assets a question can be about (the chat's asset picker)."""
    return Asset.objects.select_related("device_type").all()[:limit]


# ------------------------------------------------------------------ feedback


def message_with_conversation(*, pk: int) -> Message | None:
    """Message ``pk`` with its conversation (whose it is decides who may rate it), or None."""
    return Message.objects.select_related("conversation").filter(pk=pk).first()


def feedback_can_rate(*, user, message: Message) -> bool:
    if not getattr(user, "is_authenticated", False) or not user.has_perm("chat.add_answerfeedback"):
        return False
    if message.role != Message.Role.ASSISTANT:
        return False
    return message.conversation.user_id == user.pk or user.has_perm("chat.review_feedback")


def feedback_state(*, message: Message, user) -> dict:
    """What the chat shows after a vote: the user's own rating and comment, and the totals."""
    votes = list(AnswerFeedback.objects.filter(message=message).values_list("user_id", "rating", "comment"))
    mine = next(((r, c) for u, r, c in votes if u == user.pk), (None, ""))
    return {
        "message": message.pk,
        "rating": _NAMES.get(mine[0]),
        "comment": mine[1],
        "ups": sum(1 for _, r, _ in votes if r > 0),
        "downs": sum(1 for _, r, _ in votes if r < 0),
    }


def question_for(message: Message) -> str:
    """The technician's question that ``message`` answers: the user message just before it."""
    question = (
        Message.objects.filter(conversation_id=message.conversation_id, role=Message.Role.USER, pk__lt=message.pk)
        .order_by("-pk")
        .values_list("content", flat=True)
        .first()
    )
    return question or ""


def feedback_review_queue(*, reviewed: bool | None = None) -> QuerySet[AnswerFeedback]:
    """Thumbs-down, unreviewed first, newest first; each with ``question`` (annotated) and the
    answer, its citations, the voter and the reviewer loaded. ``reviewed`` filters."""
    question = (
        Message.objects.filter(
            conversation_id=OuterRef("message__conversation_id"), role=Message.Role.USER, pk__lt=OuterRef("message_id")
        )
        .order_by("-pk")
        .values("content")[:1]
    )
    items = (
        AnswerFeedback.objects.filter(rating=AnswerFeedback.Rating.DOWN)
        .select_related("message", "message__conversation", "user", "reviewed_by", "incident")
        .prefetch_related("message__citations")
        .annotate(question=Subquery(question))
        .order_by(F("reviewed_at").desc(nulls_first=True), "-created", "-pk")
    )
    if reviewed is True:
        items = items.filter(reviewed_at__isnull=False)
    elif reviewed is False:
        items = items.filter(reviewed_at__isnull=True)
    return items


def feedback_unreviewed_count() -> int:
    return AnswerFeedback.objects.filter(rating=AnswerFeedback.Rating.DOWN, reviewed_at__isnull=True).count()
