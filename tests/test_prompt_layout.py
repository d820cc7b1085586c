"""Follow-ups pay only for new tokens: the prompt's stable parts come first.

A follow-up's prompt must start with the previous turn's prompt and answer, message for message,
so the model runtime can reuse the KV cache of everything already evaluated (tests/test_kv_reuse.py
proves the token counts with the real model).
"""
import re

import pytest

from apps.chat import services
from apps.chat.conversation import Turn, conversation_history, previous_turn, remember_turn, transcripts
from apps.chat.prompting import SYSTEM_RULES, build_prompt, format_passage
from ingest.index import Passage
from models.llm.base import ChatMessage
from models.llm.mock import MockLanguageModel


def passage(n: int, words: int = 40, *, name: str = "SmartEVSE.pdf") -> Passage:
    return Passage(
        document_id=1, file_name=name, page=n + 1, chunk_index=n,
        text=" ".join(f"p{n}w{i}" for i in range(words)), score=1.0 - n / 100,
    )


def answered(prompt, answer: str) -> list[Turn]:
    """The history the next turn gets once ``prompt`` was answered with ``answer``."""
    return [*prompt.history, Turn(question=prompt.question, answer=answer, passages=list(prompt.passages),
                                  live_block=prompt.live_block, incidents=list(prompt.incidents))]


def test_a_follow_up_starts_with_the_previous_prompt_and_its_answer_message_for_message():
    model = MockLanguageModel()
    first = build_prompt("What does ERROR HIGH TEMP mean?", [passage(0), passage(1)], model, max_new_tokens=100,
                         live_block="Live sensor readings of EVSE-1:\n- temp: 70 C",
                         incidents=[{"title": "Overheat", "cause": "dust", "remedy": "cleaned the fan"}])
    second = build_prompt("And when does it resume?", [passage(1), passage(2)], model, max_new_tokens=100,
                          history=answered(first, " It means the module is too hot [1]."))
    third = build_prompt("What if it does not?", [passage(3)], model, max_new_tokens=100,
                         history=answered(second, "Below 55 C [1]."))

    assert second.messages[: len(first.messages)] == first.messages
    assert second.messages[len(first.messages)] == ChatMessage("assistant", " It means the module is too hot [1].")
    assert third.messages[: len(second.messages)] == second.messages
    assert third.messages[len(second.messages)] == ChatMessage("assistant", "Below 55 C [1].")
    assert [m.role for m in third.messages] == ["system", "user", "assistant", "user", "assistant", "user"]
    assert third.messages[0].content == SYSTEM_RULES
    # The new evidence and the new question come last.
    assert third.messages[-1].content.endswith("Question: What if it does not?")
    assert format_passage(1, passage(3)) in third.messages[-1].content


def test_a_passage_already_given_keeps_its_number_but_is_not_sent_again():
    model = MockLanguageModel()
    first = build_prompt("What does E1 mean?", [passage(0), passage(1)], model, max_new_tokens=100)
    second = build_prompt("And E2?", [passage(1), passage(2)], model, max_new_tokens=100,
                          history=answered(first, "A fault [1]."))

    new = second.messages[-1].content
    assert passage(1).text not in new  # given in full above
    assert "[1] SmartEVSE.pdf, page 2: the same text as given above." in new
    assert format_passage(2, passage(2)) in new  # new evidence in full
    assert [int(n) for n in re.findall(r"^\[(\d+)\]", new, flags=re.MULTILINE)] == [1, 2]
    assert second.passages == [passage(1), passage(2)]  # the answer's [1], [2] are these
    # Only the new part costs tokens: the follow-up's own message is much shorter than the first.
    assert model.count_tokens(new) < model.count_tokens(first.messages[-1].content) * 0.8


def test_a_turn_not_remembered_goes_as_its_bare_question_and_answer():
    history = [Turn(question="What does E1 mean?", answer="A fault.")]

    prompt = build_prompt("And E2?", [passage(0)], MockLanguageModel(), max_new_tokens=100, history=history)

    assert prompt.messages[1:3] == [ChatMessage("user", "What does E1 mean?"), ChatMessage("assistant", "A fault.")]
    assert format_passage(1, passage(0)) in prompt.messages[-1].content


def test_a_short_window_drops_the_oldest_turns_first_down_to_half_the_room():
    model = MockLanguageModel(context_window=1200)
    max_new = 100
    budget = model.context_window - max_new - 16
    history: list[Turn] = []
    prompts = []
    for i in range(8):  # each turn: 2 new passages of 80 words + an answer
        prompt = build_prompt(f"Question {i}?", [passage(2 * i, 80), passage(2 * i + 1, 80)], model,
                              max_new_tokens=max_new, history=history)
        prompts.append(prompt)
        assert prompt.prompt_tokens <= budget
        history = answered(prompt, f"Answer {i}.")

    dropping = [i for i, p in enumerate(prompts) if p.trimmed]
    assert dropping == [5]  # turns 0-4 grew to ~1,050 tokens; the sixth would not fit
    assert prompts[5].prompt_tokens <= budget // 2  # room left for the turns after it
    assert [t.question for t in prompts[5].history] == ["Question 4?"]  # the most recent turn stays
    assert prompts[5].passages == [passage(10, 80), passage(11, 80)]  # this turn's evidence is whole
    # The turns after the drop grow on the same start again: each prompt starts with the one before.
    for before, after in ((prompts[5], prompts[6]), (prompts[6], prompts[7])):
        assert after.messages[: len(before.messages)] == before.messages
    for before, after in zip(prompts[:5], prompts[1:5]):
        assert after.messages[: len(before.messages)] == before.messages


def test_a_dropped_turns_passage_is_given_in_full_again_by_the_first_turn_kept():
    model = MockLanguageModel(context_window=780)  # room for 664 prompt tokens
    shared = passage(0, 60)
    first = build_prompt("Q1?", [passage(5, 400), shared], model, max_new_tokens=100)  # ~600 tokens
    second = build_prompt("Q2?", [shared, passage(1, 20)], model, max_new_tokens=100,
                          history=answered(first, "A1."))
    assert shared.text not in second.messages[-1].content
    assert second.trimmed == 0

    third = build_prompt("Q3?", [passage(2, 10)], model, max_new_tokens=100, history=answered(second, "A2."))

    assert third.trimmed == 1
    assert [t.question for t in third.history] == ["Q2?"]
    assert third.messages[1].content.startswith("Manual passages:")
    assert format_passage(1, shared) in third.messages[1].content  # in full: its first sending is gone


def test_without_history_the_prompt_is_what_it_always_was():
    prompt = build_prompt("Why?", [passage(0)], MockLanguageModel(), max_new_tokens=100, history=[])

    assert [m.role for m in prompt.messages] == ["system", "user"]
    assert prompt.messages[1].content == "Manual passages:\n\n" + format_passage(1, passage(0)) + "\n\nQuestion: Why?"


# --- the conversation's transcript: what the next prompt's history is --------------------------------


@pytest.fixture(autouse=True)
def _forget_transcripts():
    transcripts.clear()
    yield
    transcripts.clear()


class RecordingModel(MockLanguageModel):
    def __init__(self):
        super().__init__()
        self.calls = []

    def stream_chat(self, messages, *, max_tokens, temperature, should_stop, session=None):
        self.calls.append((list(messages), session))
        yield from super().stream_chat(messages, max_tokens=6, temperature=temperature, should_stop=should_stop)


@pytest.fixture
def library(settings):
    from apps.knowledge.models import Document
    from apps.knowledge.vector_index import get_vector_index
    from ingest.chunk import Chunk
    from models.embedding import get_embedder

    settings.NANOSENTRI_RETRIEVAL_MIN_SCORE = 0.0  # the hashed mock embedder's cosines are low
    doc = Document.objects.create(original_name="evse.pdf", stored_path="evse.pdf", extension=".pdf",
                                  content_hash="f" * 64, status=Document.Status.INDEXED)
    lines = ["ERROR HIGH TEMP: the module reached 65 C. Charging resumes below 55 C.",
             "ERROR NO SERIAL COM: check the RS485 wiring of the mains meter, A to A and B to B."]
    get_vector_index().add(document_id=doc.pk, file_name="evse.pdf",
                           chunks=[Chunk(page=i + 2, index=i, text=t) for i, t in enumerate(lines)],
                           embeddings=get_embedder().embed(lines))
    return doc


@pytest.mark.django_db
def test_the_pipeline_sends_a_follow_up_after_its_previous_prompt_and_names_the_conversation(library, monkeypatch):
    model = RecordingModel()
    monkeypatch.setattr("models.llm.get_language_model", lambda: model)
    conversation = services.conversation_for(user=None, title="t")
    other = services.conversation_for(user=None, title="u")

    first = services.answer_result(question="What does ERROR HIGH TEMP mean?", conversation=conversation)
    services.answer_result(question="What does ERROR NO SERIAL COM mean?", conversation=other)
    services.answer_result(question="And when does it resume?", conversation=conversation)

    (m1, s1), (_m2, s2), (m3, s3) = model.calls
    assert (s1, s2, s3) == (conversation.pk, other.pk, conversation.pk)
    assert m3[: len(m1)] == m1  # the first prompt, as it was sent
    assert m3[len(m1)].role == "assistant" and m3[len(m1)].content.strip() == first["narrative"]
    assert m3[-1].content.endswith("Question: And when does it resume?")
    assert len(m3) == len(m1) + 2


@pytest.mark.django_db
def test_a_forgotten_transcript_falls_back_to_the_previous_turn_alone(library, monkeypatch):
    model = RecordingModel()
    monkeypatch.setattr("models.llm.get_language_model", lambda: model)
    conversation = services.conversation_for(user=None, title="t")
    first = services.answer_result(question="What does ERROR HIGH TEMP mean?", conversation=conversation)
    transcripts.clear()  # a restart, or evicted

    services.answer_result(question="And when does it resume?", conversation=conversation)

    messages = model.calls[-1][0]
    assert messages[1] == ChatMessage("user", "What does ERROR HIGH TEMP mean?")
    assert messages[2].role == "assistant" and first["narrative"] in messages[2].content
    assert len(messages) == 4


@pytest.mark.django_db
def test_a_transcript_is_used_only_while_it_ends_with_the_conversations_last_answer(library):
    conversation = services.conversation_for(user=None, title="t")
    model = MockLanguageModel()
    prompt = build_prompt("What does ERROR HIGH TEMP mean?", [passage(0)], model, max_new_tokens=50)
    from apps.chat.models import Message

    Message.objects.create(conversation=conversation, role=Message.Role.USER, content=prompt.question)
    answer = Message.objects.create(conversation=conversation, role=Message.Role.ASSISTANT, content="Too hot [1].")
    remember_turn(conversation.pk, answer.pk, prompt, " Too hot [1].")

    history = conversation_history(conversation, previous_turn(conversation))
    assert [t.passages for t in history] == [[passage(0)]] and history[0].answer == " Too hot [1]."

    # Another answer since (say, asked from another process): the transcript no longer applies.
    Message.objects.create(conversation=conversation, role=Message.Role.USER, content="Why?")
    Message.objects.create(conversation=conversation, role=Message.Role.ASSISTANT, content="Because.")
    history = conversation_history(conversation, previous_turn(conversation))
    assert [(t.question, t.answer, t.passages) for t in history] == [("Why?", "Because.", [])]
