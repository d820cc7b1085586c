"""Feedback on answers, the writes: a thumbs up or down with an optional comment, and the supervisors' review.

``feedback_set`` (vote, change, remove) and ``feedback_review``. The reads (``feedback_state``, the
review queue, who may rate) are in ``apps.chat.selectors``. Thumbs-up also nudge retrieval for
similar questions; that part lives in ``apps.chat.feedback_ranking`` (see docs/feedback.md).

Who may rate an answer: the person who asked (their own conversation) and users who review
feedback (supervisors, admins). Each has one vote per answer; voting again replaces it and
``rating="none"`` takes it back.
"""
from __future__ import annotations

import logging

from django.db import transaction
from django.db import IntegrityError
from django.utils import timezone

from apps.chat.models import AnswerFeedback, Message
from apps.chat.selectors import feedback_can_rate, question_for

log = logging.getLogger(__name__)

MAX_COMMENT_CHARS = 2000
MAX_NOTE_CHARS = 2000
# Answers that are finished: only these can be rated.
RATEABLE_STATUSES = (Message.Status.COMPLETED, Message.Status.NOT_COVERED, Message.Status.STOPPED)
_RATINGS = {"up": AnswerFeedback.Rating.UP, "down": AnswerFeedback.Rating.DOWN, "none": None}


class InvalidFeedback(ValueError):
    """The vote or note was refused; nothing was changed. ``field`` names the bad input."""

    def __init__(self, message: str, field: str = ""):
        super().__init__(message)
        self.field = field


class FeedbackNotAllowed(PermissionError):
    """This user may not rate this answer (someone else's conversation, or not an answer)."""


def rating_parse(value) -> int | None:
    """"up" / "down" / "none" (or 1 / -1 / 0 / None) as a stored rating; None means no vote."""
    if isinstance(value, bool):
        raise InvalidFeedback('rating must be "up", "down" or "none"', field="rating")
    if value is None or value == "" or value == 0:
        return None
    if isinstance(value, str) and value.strip().lower() in _RATINGS:
        return _RATINGS[value.strip().lower()]
    if value in (1, -1) and not isinstance(value, bool):
        return int(value)
    raise InvalidFeedback('rating must be "up", "down" or "none"', field="rating")


def _text_clean(value, *, limit: int, field: str, what: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InvalidFeedback(f"the {what} must be text", field=field)
    value = value.strip()
    if len(value) > limit:
        raise InvalidFeedback(f"the {what} is too long ({len(value)} characters, at most {limit})", field=field)
    return value


def feedback_set(*, user, message: Message, rating, comment: str | None = "") -> AnswerFeedback | None:
    """Set ``user``'s vote on the answer ``message``; return it, or None when it was taken back.

    ``rating``: "up", "down" or "none" (see ``rating_parse``). Voting the same way again keeps
    the vote and updates the comment. A thumbs-down whose rating or comment changes goes back
    to the review queue. Raises InvalidFeedback (nothing changed) or FeedbackNotAllowed.
    """
    value = rating_parse(rating)
    comment = _text_clean(comment, limit=MAX_COMMENT_CHARS, field="comment", what="comment")
    if not feedback_can_rate(user=user, message=message):
        raise FeedbackNotAllowed("you cannot rate this answer")
    if message.status not in RATEABLE_STATUSES:
        raise InvalidFeedback("this answer is not finished yet", field="message")

    try:
        return _vote_save(user=user, message=message, value=value, comment=comment)
    except IntegrityError:  # the same user's other request created the vote first: apply this one over it
        return _vote_save(user=user, message=message, value=value, comment=comment)


def _vote_save(*, user, message: Message, value: int | None, comment: str) -> AnswerFeedback | None:
    with transaction.atomic():
        existing = AnswerFeedback.objects.select_for_update().filter(message=message, user=user).first()
        if value is None:
            if existing is not None:
                existing.delete()
            return None
        feedback = existing or AnswerFeedback(message=message, user=user)
        if value == AnswerFeedback.Rating.DOWN and existing is not None and (
            existing.rating != value or existing.comment != comment
        ):
            # A new complaint (or a changed one) needs a fresh look; the old note stays visible.
            feedback.reviewed_at = None
            feedback.reviewed_by = None
        feedback.rating = value
        feedback.comment = comment
        if not feedback.question_embedding or feedback.embedding_model != _embedder_name():
            feedback.question_embedding, feedback.embedding_model = _question_embedding(message)
        feedback.save()
    return feedback


def feedback_review(*, feedback: AnswerFeedback, reviewer, note: str | None = "") -> AnswerFeedback:
    """Mark a feedback reviewed by ``reviewer`` with ``note`` (again: the note is replaced)."""
    if not getattr(reviewer, "is_authenticated", False) or not reviewer.has_perm("chat.review_feedback"):
        raise FeedbackNotAllowed("you cannot review feedback")
    note = _text_clean(note, limit=MAX_NOTE_CHARS, field="note", what="note")
    feedback.reviewed_at = timezone.now()
    feedback.reviewed_by = reviewer
    feedback.review_note = note
    feedback.save(update_fields=["reviewed_at", "reviewed_by", "review_note", "updated"])
    return feedback


# ------------------------------------------------------------------ embeddings for ranking


def _embedder_name() -> str:
    from models.embedding import get_embedder

    try:
        return get_embedder().name
    except Exception:  # the model is missing: the vote still counts, ranking ignores it
        return ""


def _question_embedding(message: Message) -> tuple[list[float] | None, str]:
    """The question's vector for feedback ranking, or (None, "") when it cannot be made now."""
    from models.embedding import get_embedder

    question = question_for(message)
    if not question:
        return None, ""
    try:
        embedder = get_embedder()
        return [round(float(x), 6) for x in embedder.embed([question])[0]], embedder.name
    except Exception:
        log.warning("could not embed the question of message %s for feedback ranking", message.pk, exc_info=True)
        return None, ""
