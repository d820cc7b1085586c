"""Build the model's prompt: rules, numbered passages, the question — trimmed to fit the context."""
from __future__ import annotations

from dataclasses import dataclass

from ingest.index import Passage
from models.llm.base import ChatMessage

SYSTEM_RULES = (
    "You are NanoSentri, a maintenance assistant for field technicians. "
    "Answer ONLY from the numbered manual passages and the live sensor readings given with the question. "
    "Cite the passages you use as [1], [2]. "
    "When diagnostic findings are given, start from the most severe one: say what is wrong and what to check. "
    "If neither the passages nor the readings answer the question, say plainly that the manuals do not cover it. "
    "Be short and practical: what it means, what to check, what to do."
)

NOT_COVERED = (
    "The uploaded manuals do not cover this question: no passage was relevant enough to answer "
    "from. Try rephrasing with the exact error text or component name, or upload the manual for "
    "this equipment."
)


@dataclass
class Prompt:
    messages: list[ChatMessage]
    passages: list[Passage]  # the passages actually included, in [n] order
    prompt_tokens: int
    trimmed: int  # passages dropped or shortened to fit


def format_passage(n: int, passage: Passage) -> str:
    return f"[{n}] {passage.file_name}, page {passage.page}:\n{passage.text.strip()}"


def _user_content(question: str, blocks: list[str], live_block: str = "") -> str:
    parts = []
    if live_block:
        parts.append(live_block)
    if blocks:
        parts.append("Manual passages:\n\n" + "\n\n".join(blocks))
    parts.append(f"Question: {question.strip()}")
    return "\n\n".join(parts)


def build_prompt(question: str, passages: list[Passage], model, *, max_new_tokens: int, live_block: str = "") -> Prompt:
    """The chat messages for ``question``, keeping as many passages as the context window allows.

    Passages are in rank order; when the prompt would not leave room for ``max_new_tokens``,
    the lowest-ranked passages go first, then the last one kept is shortened.
    """
    budget = model.context_window - max_new_tokens - 16
    system = ChatMessage("system", SYSTEM_RULES)
    kept = list(passages)
    trimmed = 0

    def render(ps: list[Passage]) -> list[ChatMessage]:
        blocks = [format_passage(i + 1, p) for i, p in enumerate(ps)]
        return [system, ChatMessage("user", _user_content(question, blocks, live_block))]

    messages = render(kept)
    tokens = model.count_chat_tokens(messages)
    while tokens > budget and len(kept) > (0 if live_block else 1):
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
    return Prompt(messages=messages, passages=kept, prompt_tokens=tokens, trimmed=trimmed)
