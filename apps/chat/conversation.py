"""Follow-up questions: what the previous turn of a conversation adds to the next one.

"And if that doesn't help?" or "which pin is that on?" mean nothing alone. A question that reads
like a follow-up (it starts by linking to what came before, or points back with "it", "that",
"the second one") is searched together with the question it follows, in the manuals the previous
answer cited.

The model gets the conversation's earlier turns (``conversation_history``), which the prompt
builder drops first, oldest first, when the context window is short. While this process remembers
how they were sent (``remember_turn``: their evidence, question and the model's answer, in a small
in-memory LRU), they are sent again exactly so: the follow-up's prompt then starts with the
previous prompt and answer, and the model runtime evaluates only the new tokens. Otherwise (a
restart, an answer without the model) the previous turn alone goes, as its question and answer.
"""
from __future__ import annotations

import re
import threading
from collections import OrderedDict
from dataclasses import dataclass, field

from apps.chat.rendering import answer_text

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
REMEMBERED_CONVERSATIONS = 256  # transcripts kept in memory (a few KB each)


@dataclass
class Turn:
    question: str
    answer: str
    documents: set[int] = field(default_factory=set)  # the manuals its answer cited
    message: int | None = None  # the answer's Message id
    narrative: str = ""  # the model's part of the answer, as stored
    # How the turn was sent to the model, when known (``remember_turn``); empty otherwise.
    passages: list = field(default_factory=list)  # the passages in its prompt, in [n] order
    live_block: str = ""
    incidents: list[dict] = field(default_factory=list)

    def shortened(self) -> "Turn":
        """The turn as a bare question and (at most PREVIOUS_ANSWER_CHARS of) answer."""
        answer = self.answer if len(self.answer) <= PREVIOUS_ANSWER_CHARS else (
            self.answer[:PREVIOUS_ANSWER_CHARS].rsplit(" ", 1)[0] + " …"
        )
        return Turn(question=self.question, answer=answer, documents=self.documents, message=self.message,
                    narrative=self.narrative)


class _Transcripts:
    """Per conversation, the turns of its last prompt and that prompt's answer, as sent: an LRU."""

    def __init__(self, size: int):
        self.size = size
        self._items: OrderedDict[int, tuple[int, list[Turn]]] = OrderedDict()
        self._lock = threading.Lock()

    def remember(self, conversation_id: int, message_id: int, turns: list[Turn]) -> None:
        with self._lock:
            self._items[conversation_id] = (message_id, list(turns))
            self._items.move_to_end(conversation_id)
            while len(self._items) > self.size:
                self._items.popitem(last=False)

    def recall(self, conversation_id: int, last: Turn) -> list[Turn] | None:
        """The turns ending with ``last`` (the same answer message, question and narrative), or
        None: forgotten, or another answer since."""
        with self._lock:
            item = self._items.get(conversation_id)
            if item is None or item[0] != last.message:
                return None
            turns = item[1]
            if turns[-1].question != last.question or turns[-1].answer.strip() != last.narrative.strip():
                return None
            self._items.move_to_end(conversation_id)
            return list(turns)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


transcripts = _Transcripts(REMEMBERED_CONVERSATIONS)


def remember_turn(conversation_id: int, message_id: int, prompt, answer: str) -> None:
    """After the model answered ``prompt`` (a ``apps.chat.prompting.Prompt``) with ``answer``
    (its text exactly as generated), in answer message ``message_id``."""
    turn = Turn(
        question=prompt.question, answer=answer, message=message_id, narrative=answer,
        passages=list(prompt.passages), live_block=prompt.live_block, incidents=list(prompt.incidents),
    )
    transcripts.remember(conversation_id, message_id, [*prompt.history, turn])


def conversation_history(conversation, previous: Turn | None) -> list[Turn]:
    """The earlier turns for the next prompt of ``conversation``: as sent, when remembered and
    still ending with ``previous`` (the conversation's last answer); else ``previous`` alone,
    shortened; else none."""
    if previous is None:
        return []
    remembered = transcripts.recall(conversation.pk, previous)
    return remembered if remembered is not None else [previous.shortened()]


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
    return Turn(
        question=question.content, answer=text, documents=documents, message=answer.pk, narrative=answer.content
    )


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


def follow_up_retry(question: str, previous: Turn | None, named: set[int]) -> tuple[str, set[int]] | None:
    """The follow-up search for a short question the manuals do not answer on its own, asked right
    after one they did ("The plug looks seated fine though. What then?"), or None.

    ``named``: the manuals the question itself names; a question about another device than the
    previous answer's is not read as its follow-up.
    """
    if previous is None or not previous.documents or len(question.split()) > MAX_FOLLOW_UP_WORDS:
        return None
    if named and not named & previous.documents:
        return None
    return f"{previous.question} {question}", previous.documents
