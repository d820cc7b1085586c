"""Follow-up questions: what the previous turn of a conversation adds to the next one.

"And if that doesn't help?" or "which pin is that on?" mean nothing alone. A question that reads
like a follow-up (it starts by linking to what came before, or points back with "it", "that",
"the second one") is searched together with the question it follows, in the manuals the previous
answer cited; the model also gets the previous turn (``Turn.as_messages``), which the prompt
builder drops first when the context window is short.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from apps.chat.rendering import answer_text
from models.llm.base import ChatMessage

# Starts that link a question to the one before it.
_LINKING_START = re.compile(
    r"^(?:and|but|or|so|then|also|otherwise|what about|how about|what if|and if|if (?:that|this|it|not)|"
    r"same for|else|still)\b",
    re.I,
)
# Words that point back at something said before.
_POINTING_BACK = re.compile(
    r"\b(?:it|its|it's|that|this|these|those|they|them|their|there|one|ones|same|second|first|third|"
    r"other|another|former|latter|else|again)\b",
    re.I,
)
MAX_FOLLOW_UP_WORDS = 14
PREVIOUS_ANSWER_CHARS = 600


@dataclass
class Turn:
    question: str
    answer: str
    documents: set[int] = field(default_factory=set)  # the manuals its answer cited

    def as_messages(self) -> list[ChatMessage]:
        answer = self.answer if len(self.answer) <= PREVIOUS_ANSWER_CHARS else (
            self.answer[:PREVIOUS_ANSWER_CHARS].rsplit(" ", 1)[0] + " …"
        )
        return [ChatMessage("user", self.question), ChatMessage("assistant", answer)]


def previous_turn(conversation) -> Turn | None:
    """The conversation's last answered question, with what was answered and the manuals cited."""
    from apps.chat.models import Message

    answer = (
        conversation.messages.filter(role=Message.Role.ASSISTANT)
        .exclude(status__in=[Message.Status.PENDING, Message.Status.STREAMING, Message.Status.FAILED])
        .order_by("-created", "-pk")
        .first()
    )
    if answer is None:
        return None
    question = (
        conversation.messages.filter(role=Message.Role.USER, pk__lt=answer.pk).order_by("-created", "-pk").first()
    )
    if question is None:
        return None
    text = answer_text(answer.extract or [], answer.content)
    documents = set(answer.citations.exclude(document=None).values_list("document_id", flat=True))
    return Turn(question=question.content, answer=text, documents=documents)


def is_follow_up(question: str) -> bool:
    """Short, and linking to or pointing back at what was said before."""
    words = question.split()
    if len(words) > MAX_FOLLOW_UP_WORDS:
        return False
    return bool(_LINKING_START.search(question.strip()) or _POINTING_BACK.search(question))


def follow_up_query(question: str, previous: Turn | None) -> tuple[str, set[int] | None]:
    """(what to search for, the manuals to prefer) for ``question`` after ``previous``."""
    if previous is None or not is_follow_up(question):
        return question, None
    return f"{previous.question} {question}", previous.documents or None
