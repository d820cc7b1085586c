"""Build the model's prompt: rules, numbered passages, past incidents, the question — trimmed to fit.

Layout, stable parts first: the rules; then the conversation's earlier turns, each as it was sent
(its evidence and question) and answered; then this turn's new evidence and its question. So a
follow-up's prompt starts with the previous turn's prompt and answer, token for token, and the
model runtime evaluates only what is new (llama.cpp reuses the KV cache of the shared prefix; the
runtime keeps it per conversation, see ``models/llm/llamacpp.py``). A passage an earlier turn gave
in full is not sent again: it keeps its number in the new turn, with a pointer to the text above.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ingest.index import Passage
from models.llm.base import ChatMessage

SYSTEM_RULES = (
    "You are NanoSentri, a maintenance assistant for field technicians. "
    "Answer ONLY from the numbered manual passages, the live sensor readings and the similar past incidents "
    "given with the question. "
    "Cite the passages you use as [1], [2]. "
    "When diagnostic findings are given, start from the most severe one: say what is wrong and what to check. "
    "A similar past incident tells what fixed the same kind of fault before: suggest checking that cause first "
    "and say it comes from a past incident. "
    "If neither the passages nor the readings answer the question, say plainly that the manuals do not cover it. "
    "Be short and practical: what it means, what to check, what to do."
)

NOT_COVERED = (
    "The uploaded manuals do not cover this question: no passage was relevant enough to answer "
    "from. Try rephrasing with the exact error text or component name, or upload the manual for "
    "this equipment."
)


def not_covered_text(unknown_codes: list[str] | None = None, unmentioned: list[str] | None = None,
                     manuals: list[str] | None = None) -> str:
    """What the technician reads when nothing is cited; names the codes no manual mentions, or the
    words the manual the question names does not have (``unmentioned``, in ``manuals``)."""
    if unknown_codes:
        named = ", ".join(unknown_codes[:5])
        return (
            f"No uploaded manual mentions {named}, so the manuals do not cover this question and nothing "
            "is cited. Check the spelling of the code, or upload the manual of the equipment that shows it."
        )
    if unmentioned and manuals:
        words = _either(f"\u201c{w}\u201d" for w in unmentioned[:5])
        return (
            f"{_either(manuals, 'and')} never mention{'s' if len(manuals) == 1 else ''} {words}, so "
            "the manuals do not cover this question and nothing is cited. Try the words the manual would "
            "use, or upload the document that covers it."
        )
    return NOT_COVERED


def _either(items, joiner: str = "or") -> str:
    items = list(items)
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} {joiner} {items[-1]}"


@dataclass
class Prompt:
    messages: list[ChatMessage]
    passages: list[Passage]  # the passages actually included, in [n] order
    prompt_tokens: int
    trimmed: int  # passages or incidents dropped, or a passage shortened, to fit
    incidents: list[dict] = field(default_factory=list)  # the similar incidents actually included
    history: list = field(default_factory=list)  # the earlier turns (Turn) actually included, oldest first
    live_block: str = ""
    question: str = ""


# Past incidents are short in the prompt: what it was, why, what fixed it.
INCIDENT_FIELD_CHARS = {"title": 120, "cause": 200, "remedy": 200}


def format_passage(n: int, passage: Passage) -> str:
    return f"[{n}] {passage.file_name}, page {passage.page}:\n{passage.text.strip()}"


def _short(text: str, limit: int) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= limit else text[:limit].rsplit(" ", 1)[0] + " …"


def format_incidents(incidents: list[dict]) -> str:
    """The similar past incidents block: one sentence each, title, cause, remedy.

    Whole sentences: the 135M model repeated the cause and fix of a one-line "title — cause: …;
    remedy: …" list in 2 of 12 answers, of these sentences in 6 of 12.
    """
    lines = []
    for item in incidents:
        title, cause, remedy = (_short(item.get(k, ""), n).rstrip(".") for k, n in INCIDENT_FIELD_CHARS.items())
        lines.append(
            f'Similar past incident (resolved): "{title}". The cause was: {cause}. It was fixed by: {remedy}.'
        )
    return "\n".join(lines)


def format_passage_given(n: int, passage: Passage) -> str:
    """A passage an earlier turn of the conversation gave in full: its number here, no text again."""
    return f"[{n}] {passage.file_name}, page {passage.page}: the same text as given above."


def _passage_key(passage: Passage) -> tuple:
    return (passage.file_name, passage.page, passage.chunk_index, passage.text.strip())


def _evidence_blocks(passages: list[Passage], given: set[tuple]) -> list[str]:
    """The numbered passage blocks; those in ``given`` (sent in full above) by reference."""
    return [
        format_passage_given(i + 1, p) if _passage_key(p) in given else format_passage(i + 1, p)
        for i, p in enumerate(passages)
    ]


def _history_messages(turns: list) -> tuple[list[ChatMessage], set[tuple]]:
    """The earlier turns as they were sent: the same function of the same turns, so the same text.

    A turn without evidence (one this process did not see sent: only its question and answer are
    known) is its bare question. Returns the messages and the passages they give in full.
    """
    messages: list[ChatMessage] = []
    given: set[tuple] = set()
    for turn in turns:
        passages = list(turn.passages or [])
        incident_block = format_incidents(list(turn.incidents or []))
        if passages or turn.live_block or incident_block:
            blocks = _evidence_blocks(passages, given)
            content = _user_content(turn.question, blocks, turn.live_block, incident_block)
            given |= {_passage_key(p) for p in passages}
        else:
            content = turn.question
        messages += [ChatMessage("user", content), ChatMessage("assistant", turn.answer)]
    return messages, given


def _user_content(question: str, blocks: list[str], live_block: str = "", incident_block: str = "") -> str:
    parts = []
    if live_block:
        parts.append(live_block)
    if blocks:
        parts.append("Manual passages:\n\n" + "\n\n".join(blocks))
    if incident_block:
        parts.append(incident_block)
    parts.append(f"Question: {question.strip()}")
    return "\n\n".join(parts)


def build_prompt(
    question: str,
    passages: list[Passage],
    model,
    *,
    max_new_tokens: int,
    live_block: str = "",
    incidents: list[dict] | None = None,
    history: list | None = None,
) -> Prompt:
    """The chat messages for ``question``, keeping as much evidence as the context window allows.

    Passages are in rank order, ``incidents`` (similar past incidents: title, cause, remedy) too.
    When the prompt would not leave room for ``max_new_tokens``, the lowest-ranked passages go
    first (down to one), then the lowest-ranked incidents, then the last passage if other
    evidence (readings, an incident) remains; failing that the passage kept is shortened.
    ``history`` (the conversation's earlier turns, oldest first: ``apps.chat.conversation.Turn``,
    see ``conversation_history``) goes between the rules and the new evidence, each turn as it
    was sent; a passage it gave in full is referred to, not repeated. Its oldest turns are the
    first thing dropped when the window is short.
    """
    budget = model.context_window - max_new_tokens - 16
    system = ChatMessage("system", SYSTEM_RULES)
    kept = list(passages)
    kept_incidents = list(incidents or [])
    trimmed = 0

    earlier = list(history or [])
    earlier_messages, given = _history_messages(earlier)

    def render(ps: list[Passage]) -> list[ChatMessage]:
        blocks = _evidence_blocks(ps, given)
        content = _user_content(question, blocks, live_block, format_incidents(kept_incidents))
        return [system, *earlier_messages, ChatMessage("user", content)]

    messages = render(kept)
    tokens = model.count_chat_tokens(messages)
    if tokens > budget and earlier:
        # The oldest turns go first, down to half the room: the turns after this one then grow on
        # the same start again (and reuse its KV cache), instead of each dropping one more turn
        # and so changing the prompt's start every time.
        while earlier and tokens > budget // 2:
            earlier = earlier[1:]
            trimmed += 1
            earlier_messages, given = _history_messages(earlier)
            messages = render(kept)
            tokens = model.count_chat_tokens(messages)
    while tokens > budget and len(kept) > 1:
        kept.pop()
        trimmed += 1
        messages = render(kept)
        tokens = model.count_chat_tokens(messages)
    # Keep one piece of evidence: the last incident goes only if a passage or readings remain.
    while tokens > budget and kept_incidents and (len(kept_incidents) > 1 or kept or live_block):
        kept_incidents.pop()
        trimmed += 1
        messages = render(kept)
        tokens = model.count_chat_tokens(messages)
    while tokens > budget and len(kept) > (0 if live_block or kept_incidents else 1):
        kept.pop()
        trimmed += 1
        messages = render(kept)
        tokens = model.count_chat_tokens(messages)
    if tokens > budget and kept:
        # One passage still too long: cut its text down to what fits.
        p = kept[0]
        words = p.text.split()
        over = tokens - budget
        keep_words = max(20, len(words) - int(over * 1.3) - 10)
        kept[0] = Passage(p.document_id, p.file_name, p.page, p.chunk_index, " ".join(words[:keep_words]) + " …", p.score)
        trimmed += 1
        messages = render(kept)
        tokens = model.count_chat_tokens(messages)
    if tokens > budget:
        raise ValueError("the question alone does not fit in the model's context window")
    return Prompt(
        messages=messages, passages=kept, prompt_tokens=tokens, trimmed=trimmed, incidents=kept_incidents,
        history=earlier, live_block=live_block, question=question,
    )
