"""The model's prompt: rules, numbered passages in rank order, the question — trimmed to fit."""
import re

import pytest

from apps.chat.prompting import SYSTEM_RULES, build_prompt, format_passage
from ingest.index import Passage
from models.llm.mock import MockLanguageModel


def passage(n: int, words: int = 30, *, page: int | None = None, name: str | None = None) -> Passage:
    text = " ".join(f"p{n}w{i}" for i in range(words))
    return Passage(
        document_id=n,
        file_name=name or f"manual-{n}.pdf",
        page=page if page is not None else n + 1,
        chunk_index=n,
        text=text,
        score=1.0 - n / 100,
    )


def user_text(prompt) -> str:
    return prompt.messages[-1].content


def numbered(prompt) -> list[int]:
    return [int(n) for n in re.findall(r"^\[(\d+)\]", user_text(prompt), flags=re.MULTILINE)]


def test_it_numbers_passages_in_rank_order_with_file_and_page():
    passages = [
        passage(0, page=7, name="SmartEVSE.pdf"),
        passage(1, page=2, name="Ender-3 Trouble.pdf"),
        passage(2, page=11, name="Quick Start.pdf"),
    ]

    prompt = build_prompt("What does error E01 mean?", passages, MockLanguageModel(), max_new_tokens=200)

    text = user_text(prompt)
    assert numbered(prompt) == [1, 2, 3]
    assert "[1] SmartEVSE.pdf, page 7:\n" + passages[0].text in text
    assert "[2] Ender-3 Trouble.pdf, page 2:\n" + passages[1].text in text
    assert "[3] Quick Start.pdf, page 11:\n" + passages[2].text in text
    assert text.index("[1] SmartEVSE") < text.index("[2] Ender-3") < text.index("[3] Quick Start")
    assert prompt.passages == passages
    assert prompt.trimmed == 0


def test_it_states_the_rules_in_the_system_message():
    prompt = build_prompt("Why is the bed not heating?", [passage(0)], MockLanguageModel(), max_new_tokens=99)

    system = prompt.messages[0]
    assert system.role == "system"
    assert system.content == SYSTEM_RULES
    assert "ONLY from the numbered manual passages" in system.content
    assert "[1]" in system.content  # how to cite
    assert "do not cover" in system.content  # say so when the manuals don't answer it
    assert [m.role for m in prompt.messages] == ["system", "user"]


def test_it_ends_with_the_question():
    question = "  What does error E01 mean?  \n"

    prompt = build_prompt(question, [passage(0)], MockLanguageModel(), max_new_tokens=100)

    assert user_text(prompt).endswith("Question: What does error E01 mean?")
    assert user_text(prompt).startswith("Manual passages:")


def test_prompt_tokens_are_the_models_count_of_the_messages():
    model = MockLanguageModel()

    prompt = build_prompt("Why?", [passage(0), passage(1)], model, max_new_tokens=100)

    assert prompt.prompt_tokens == model.count_chat_tokens(prompt.messages)


def test_format_passage_strips_surrounding_whitespace():
    p = Passage(1, "a.pdf", 3, 0, "\n  Replace fuse F2.  \n", 0.9)

    assert format_passage(4, p) == "[4] a.pdf, page 3:\nReplace fuse F2."


def test_a_small_context_drops_the_lowest_ranked_passages_first():
    model = MockLanguageModel(context_window=400)
    passages = [passage(n, words=60) for n in range(6)]
    max_new = 100

    prompt = build_prompt("What does error E01 mean?", passages, model, max_new_tokens=max_new)

    kept = len(prompt.passages)
    assert 1 <= kept < 6
    assert prompt.passages == passages[:kept]  # the best ones survive, in order
    assert prompt.trimmed == 6 - kept
    assert numbered(prompt) == list(range(1, kept + 1))
    assert prompt.prompt_tokens <= model.context_window - max_new
    for dropped in passages[kept:]:
        assert dropped.text not in user_text(prompt)
    # ...and nothing more was dropped than needed: one more passage would not have fit
    with_one_more = build_prompt(
        "What does error E01 mean?", passages[: kept + 1], MockLanguageModel(100_000), max_new_tokens=max_new
    )
    assert with_one_more.prompt_tokens > model.context_window - max_new - 16


def test_everything_fits_in_a_large_context():
    passages = [passage(n, words=60) for n in range(6)]

    prompt = build_prompt("Why?", passages, MockLanguageModel(context_window=4096), max_new_tokens=300)

    assert prompt.passages == passages
    assert prompt.trimmed == 0


def test_a_single_huge_passage_is_shortened_to_fit():
    model = MockLanguageModel(context_window=512)
    huge = passage(0, words=2000)
    max_new = 120

    ranked = [huge, passage(1, words=50)]

    prompt = build_prompt("How do I level the bed?", ranked, model, max_new_tokens=max_new)

    assert prompt.prompt_tokens <= model.context_window - max_new
    assert len(prompt.passages) == 1
    kept = prompt.passages[0]
    assert (kept.document_id, kept.file_name, kept.page, kept.chunk_index) == (0, "manual-0.pdf", 1, 0)
    assert kept.text.endswith(" …")
    assert huge.text.startswith(kept.text[: -len(" …")])  # the beginning is kept
    assert 20 <= len(kept.text.split()) < 2000
    assert prompt.trimmed == 2  # one dropped, one shortened
    assert "p0w0 " in user_text(prompt)
    assert "p0w1999" not in user_text(prompt)
    assert user_text(prompt).endswith("Question: How do I level the bed?")


def test_a_question_that_cannot_fit_raises_value_error():
    model = MockLanguageModel(context_window=256)
    question = " ".join(["why"] * 400)

    with pytest.raises(ValueError):
        build_prompt(question, [passage(0)], model, max_new_tokens=64)


def test_a_question_that_cannot_fit_raises_even_without_passages():
    model = MockLanguageModel(context_window=256)

    with pytest.raises(ValueError):
        build_prompt(" ".join(["why"] * 400), [], model, max_new_tokens=64)


def test_the_not_covered_text_names_what_the_named_manual_never_mentions():
    from apps.chat.prompting import NOT_COVERED, not_covered_text

    one = not_covered_text([], ["update", "firmware"], ["SmartEVSE v3 Installation Manual"])
    assert one.startswith("SmartEVSE v3 Installation Manual never mentions “update” or “firmware”, so")
    two = not_covered_text([], ["bluetooth"], ["Olimex ESP32-EVB", "Olimex ESP32-POE"])
    assert two.startswith("Olimex ESP32-EVB and Olimex ESP32-POE never mention “bluetooth”, so")
    # A code no manual has is said first; with nothing named, the plain text.
    assert "F21" in not_covered_text(["F21"], ["firmware"], ["SmartEVSE"])
    assert not_covered_text() == NOT_COVERED == not_covered_text([], ["firmware"], [])
