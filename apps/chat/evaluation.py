"""Evaluate answers against a question set: is the right page first, are the facts in the extract?

A question set is JSON (bench/questions/library.json is the project's own):

    {"questions": [{"id", "question", "covered": true, "document": "<file name>", "pages": [2],
                    "key_facts": ["65", "55"], "style": "plain" | "manual_terms",
                    "follow_up_of": "<id>"  (optional: asked right after that one, same conversation)},
                   {"id", "question", "covered": false}, ...]}

Every question goes through the real answer pipeline (``answer_result``), as the chat asks it.
"""
from __future__ import annotations

import json
import re
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path


class QuestionSetError(ValueError):
    pass


@dataclass
class Question:
    id: str
    question: str
    covered: bool
    document: str = ""
    pages: list[int] = field(default_factory=list)
    key_facts: list[str] = field(default_factory=list)
    style: str = ""
    follow_up_of: str = ""


@dataclass
class Outcome:
    id: str
    question: str
    covered: bool
    answered: bool  # cited something
    style: str
    follow_up: bool
    citations: list[tuple[str, int]]
    document_rank: int | None  # 1-based rank of the first citation of the right manual
    page_rank: int | None  # ... of the right manual and page
    facts: int
    facts_in_extract: int
    facts_in_answer: int
    ungrounded: int
    retrieval_ms: float | None
    status: str


def questions_load(path: Path) -> list[Question]:
    try:
        raw = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise QuestionSetError(f"{path}: {exc}") from exc
    items = raw.get("questions") if isinstance(raw, dict) else raw
    if not isinstance(items, list) or not items:
        raise QuestionSetError(f"{path}: no questions")
    known = {f.name for f in Question.__dataclass_fields__.values()}
    questions = []
    for item in items:
        if not isinstance(item, dict) or not item.get("id") or not item.get("question"):
            raise QuestionSetError(f"{path}: every question needs an id and a question: {item!r:.120}")
        questions.append(Question(**{k: v for k, v in item.items() if k in known}))
    ids = {q.id for q in questions}
    for q in questions:
        if q.follow_up_of and q.follow_up_of not in ids:
            raise QuestionSetError(f"{path}: {q.id} follows unknown question {q.follow_up_of}")
        if q.covered and not (q.document and q.pages):
            raise QuestionSetError(f"{path}: covered question {q.id} needs a document and pages")
    return questions


def _normal(text: str) -> str:
    return " ".join((text or "").lower().replace("º", "°").split())


def _facts_found(facts: list[str], text: str) -> int:
    haystack = _normal(text)
    return sum(_normal(f) in haystack for f in facts)


def _rank(citations: list[tuple[str, int]], document: str, pages: list[int] | None) -> int | None:
    for rank, (name, page) in enumerate(citations, 1):
        if name == document and (pages is None or page in pages):
            return rank
    return None


def evaluate(questions: list[Question], *, user, on_outcome=None) -> list[Outcome]:
    """Ask every question (follow-ups right after their parent, in its conversation)."""
    from apps.chat.services import answer_result, conversation_for

    order = _asking_order(questions)
    conversations: dict[str, object] = {}
    outcomes = []
    for q in order:
        if q.follow_up_of and q.follow_up_of in conversations:
            conversation = conversations[q.follow_up_of]
        else:
            conversation = conversation_for(user=user, title=q.question)
        conversations[q.id] = conversation
        result = answer_result(question=q.question, conversation=conversation)
        citations = [(c["document"], c["page"]) for c in result["citations"]]
        extract_text = " ".join(item["text"] for item in result.get("extract", []))
        outcome = Outcome(
            id=q.id,
            question=q.question,
            covered=q.covered,
            answered=bool(citations),
            style=q.style,
            follow_up=bool(q.follow_up_of),
            citations=citations,
            document_rank=_rank(citations, q.document, None) if q.covered else None,
            page_rank=_rank(citations, q.document, q.pages) if q.covered else None,
            facts=len(q.key_facts),
            facts_in_extract=_facts_found(q.key_facts, extract_text),
            facts_in_answer=_facts_found(q.key_facts, result.get("narrative", "")),
            ungrounded=len(result.get("ungrounded", [])),
            retrieval_ms=result["timings"].get("retrieval_ms"),
            status=result["status"],
        )
        outcomes.append(outcome)
        if on_outcome is not None:
            on_outcome(outcome)
    return outcomes


def _asking_order(questions: list[Question]) -> list[Question]:
    """Each follow-up right after the question it follows (its parent's answer is its context)."""
    children: dict[str, list[Question]] = {}
    for q in questions:
        if q.follow_up_of:
            children.setdefault(q.follow_up_of, []).append(q)
    order: list[Question] = []

    def visit(q: Question) -> None:
        order.append(q)
        for child in children.get(q.id, []):
            visit(child)

    for q in questions:
        if not q.follow_up_of:
            visit(q)
    return order


def _share(part: int, whole: int) -> float | None:
    return round(part / whole, 3) if whole else None


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    index = min(len(values) - 1, max(0, round(q * (len(values) - 1))))
    return round(values[index], 1)


def summarize(outcomes: list[Outcome]) -> dict:
    """The figures of issue #8: page at 1 and 3, MRR, not-covered precision/recall, facts, grounding, speed."""
    covered = [o for o in outcomes if o.covered]
    uncovered = [o for o in outcomes if not o.covered]
    refused = [o for o in outcomes if not o.answered]
    with_facts = [o for o in covered if o.facts]
    answered_by_model = [o for o in outcomes if o.answered and o.status == "completed"]
    times = [o.retrieval_ms for o in outcomes if o.retrieval_ms is not None]
    summary = {
        "questions": len(outcomes),
        "covered": len(covered),
        "uncovered": len(uncovered),
        "document_at_1": _share(sum(o.document_rank == 1 for o in covered), len(covered)),
        "page_at_1": _share(sum(o.page_rank == 1 for o in covered), len(covered)),
        "page_at_3": _share(sum(o.page_rank is not None and o.page_rank <= 3 for o in covered), len(covered)),
        "page_mrr": round(sum(1 / o.page_rank for o in covered if o.page_rank) / len(covered), 3) if covered else None,
        "not_covered_precision": _share(sum(not o.covered for o in refused), len(refused)),
        "not_covered_recall": _share(sum(not o.answered for o in uncovered), len(uncovered)),
        "covered_wrongly_refused": _share(sum(not o.answered for o in covered), len(covered)),
        "facts_all_in_extract": _share(sum(o.facts_in_extract == o.facts for o in with_facts), len(with_facts)),
        "facts_in_extract": _share(sum(o.facts_in_extract for o in with_facts), sum(o.facts for o in with_facts)),
        "facts_all_in_answer": _share(sum(o.facts_in_answer == o.facts for o in with_facts), len(with_facts)),
        "facts_in_answer": _share(sum(o.facts_in_answer for o in with_facts), sum(o.facts for o in with_facts)),
        "ungrounded_per_answer": round(statistics.mean(o.ungrounded for o in answered_by_model), 2)
        if answered_by_model else None,
        "answers_with_ungrounded": _share(sum(o.ungrounded > 0 for o in answered_by_model), len(answered_by_model)),
        "retrieval_ms_p50": _percentile(times, 0.5),
        "retrieval_ms_p95": _percentile(times, 0.95),
    }
    for style in sorted({o.style for o in covered if o.style}):
        group = [o for o in covered if o.style == style]
        summary[f"page_at_1[{style}]"] = _share(sum(o.page_rank == 1 for o in group), len(group))
        summary[f"page_at_3[{style}]"] = _share(
            sum(o.page_rank is not None and o.page_rank <= 3 for o in group), len(group)
        )
    follow_ups = [o for o in covered if o.follow_up]
    if follow_ups:
        summary["page_at_3[follow_up]"] = _share(
            sum(o.page_rank is not None and o.page_rank <= 3 for o in follow_ups), len(follow_ups)
        )
    return summary


def outcome_dict(outcome: Outcome) -> dict:
    return asdict(outcome)


def outcome_line(o: Outcome) -> str:
    if not o.covered:
        verdict = "ok (not covered)" if not o.answered else "WRONG: answered"
    elif not o.answered:
        verdict = "WRONG: refused"
    else:
        verdict = f"page@{o.page_rank}" if o.page_rank else f"MISS (doc@{o.document_rank})"
    facts = f"facts {o.facts_in_extract}/{o.facts} extract, {o.facts_in_answer}/{o.facts} answer" if o.facts else ""
    top = f"{o.citations[0][0][:30]} p{o.citations[0][1]}" if o.citations else "-"
    question = re.sub(r"\s+", " ", o.question)[:60]
    return f"{o.id:<14} {verdict:<18} {top:<36} {facts:<34} ungrounded {o.ungrounded}  {question}"
