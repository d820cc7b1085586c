"""Follow-ups pay only for new tokens, through the real bundled model (SmolLM2-135M, llama.cpp).

Counted in tokens, not timed: ``LlamaCppLanguageModel.last_eval`` records, for the last prompt, how
many tokens llama.cpp took from its KV cache and how many it evaluated (the first ``Llama.eval``
call of the generation: its position and length).
"""
import pytest

from apps.chat import services
from apps.chat.conversation import Turn, transcripts
from apps.chat.prompting import build_prompt
from ingest.index import Passage
from models.llm.llamacpp import LlamaCppLanguageModel
from models.llm.state_cache import SessionStateCache

pytestmark = [pytest.mark.integration]

MB = 1024 * 1024
HIGH_TEMP = (
    "ERROR HIGH TEMP: the temperature inside the SmartEVSE module is above 65 C. Charging stops and "
    "resumes automatically when the temperature drops below 55 C. Check that the enclosure is ventilated."
)
SERIAL = (
    "ERROR NO SERIAL COM CHECK WIRING: the SmartEVSE does not receive data from the mains meter over RS485. "
    "Check that A is wired to A and B to B, and that the meter's address and baud rate match the menu."
)
CABLE = (
    "Tethered cable: the cable's current capacity is set by a resistor between PP and PE in the plug. "
    "13 A: 1.5 kOhm, 20 A: 680 Ohm, 32 A: 220 Ohm, 63 A: 100 Ohm. A missing resistor stops charging."
)


def passage(n: int, text: str) -> Passage:
    return Passage(document_id=1, file_name="SmartEVSE.pdf", page=n, chunk_index=n, text=text, score=0.9)


@pytest.fixture(scope="module")
def llm():
    from models.paths import language_model_path

    return LlamaCppLanguageModel(
        # One thread: these tests count tokens, and on a busy 2-core machine OpenMP's spinning
        # threads would only make them slow.
        language_model_path(), context_window=2048, n_threads=1, n_threads_batch=1, state_cache_mb=64
    )


@pytest.fixture(autouse=True)
def _fresh(llm):
    llm.states = SessionStateCache(64 * MB)
    yield


def ask(llm, prompt, session, *, max_tokens=24, stop_after=None) -> str:
    pieces = []
    for piece in llm.stream_chat(prompt.messages, max_tokens=max_tokens, temperature=0.0,
                                 should_stop=lambda: stop_after is not None and len(pieces) >= stop_after,
                                 session=session):
        pieces.append(piece)
    return "".join(pieces)


def answered(prompt, answer: str) -> list[Turn]:
    return [*prompt.history, Turn(question=prompt.question, answer=answer, passages=list(prompt.passages),
                                  live_block=prompt.live_block, incidents=list(prompt.incidents))]


def prompt_length(llm) -> int:
    return llm.last_eval.reused_tokens + llm.last_eval.evaluated_tokens


def conversation_then_interleaved_follow_up(llm):
    """Conversation "A" asks, conversation "B" asks, "A" follows up; the prompts and A's answer."""
    first = build_prompt("What does ERROR HIGH TEMP mean?", [passage(12, HIGH_TEMP), passage(30, CABLE)], llm,
                         max_new_tokens=64)
    answer = ask(llm, first, "A")
    first_length = prompt_length(llm)
    other = build_prompt("What does ERROR NO SERIAL COM mean?", [passage(13, SERIAL)], llm, max_new_tokens=64)
    ask(llm, other, "B")
    follow_up = build_prompt("And when does charging resume?", [passage(12, HIGH_TEMP)], llm, max_new_tokens=64,
                             history=answered(first, answer))
    return first, first_length, answer, follow_up


def test_a_follow_up_after_another_conversation_evaluates_only_its_new_tokens(llm):
    _first, first_length, _answer, follow_up = conversation_then_interleaved_follow_up(llm)

    warm = ask(llm, follow_up, "A")
    reused, evaluated, restored = llm.last_eval.reused_tokens, llm.last_eval.evaluated_tokens, llm.last_eval.restored
    total = reused + evaluated

    # Cold: the very same prompt in a conversation with nothing saved, after another one ran.
    ask(llm, build_prompt("What does ERROR NO SERIAL COM mean?", [passage(13, SERIAL)], llm, max_new_tokens=64), "B")
    cold = ask(llm, follow_up, "cold")
    cold_reused, cold_evaluated = llm.last_eval.reused_tokens, llm.last_eval.evaluated_tokens

    assert restored and not llm.last_eval.restored
    assert reused + evaluated == cold_reused + cold_evaluated == total  # the same prompt
    assert reused >= first_length  # all of A's first prompt (and then some of its answer) came from A's cache
    assert cold_reused < first_length  # cold: only what B's prompt shares (the rules), none of A's
    assert evaluated < 0.5 * cold_evaluated
    # The restored cache is A's own: the answer is the one computed from scratch (greedy decoding).
    assert warm == cold


def test_the_state_put_back_is_the_conversations_own(llm):
    first_a = build_prompt("What does ERROR HIGH TEMP mean?", [passage(12, HIGH_TEMP)], llm, max_new_tokens=64)
    answer_a = ask(llm, first_a, "A")
    length_a = prompt_length(llm)
    first_b = build_prompt("What does ERROR NO SERIAL COM mean?", [passage(13, SERIAL)], llm, max_new_tokens=64)
    answer_b = ask(llm, first_b, "B")
    length_b = prompt_length(llm)

    ask(llm, build_prompt("And when does it resume?", [passage(12, HIGH_TEMP)], llm, max_new_tokens=64,
                          history=answered(first_a, answer_a)), "A")
    assert llm.last_eval.restored and llm.last_eval.reused_tokens >= length_a

    ask(llm, build_prompt("Which pins are those?", [passage(13, SERIAL)], llm, max_new_tokens=64,
                          history=answered(first_b, answer_b)), "B")
    assert llm.last_eval.restored and llm.last_eval.reused_tokens >= length_b
    assert set(llm.states.keys()) == {"A", "B"}


def test_right_after_its_parent_a_follow_up_reuses_the_context_even_with_the_cache_off(llm):
    llm.states = SessionStateCache(0)
    first = build_prompt("What does ERROR HIGH TEMP mean?", [passage(12, HIGH_TEMP)], llm, max_new_tokens=64)
    answer = ask(llm, first, "A")
    length = prompt_length(llm)

    ask(llm, build_prompt("And when does it resume?", [passage(12, HIGH_TEMP)], llm, max_new_tokens=64,
                          history=answered(first, answer)), "A")

    assert not llm.last_eval.restored and len(llm.states) == 0
    assert llm.last_eval.reused_tokens >= length  # the layout alone: llama.cpp's own prefix match


def test_an_evicted_conversation_starts_cold_again(llm):
    first = build_prompt("What does ERROR HIGH TEMP mean?", [passage(12, HIGH_TEMP), passage(30, CABLE)], llm,
                         max_new_tokens=64)
    answer = ask(llm, first, "A")
    one_state = llm.states.size_bytes
    llm.states = SessionStateCache(int(one_state * 1.5))  # room for one conversation only
    ask(llm, first, "A")  # saved again, into the small cache
    other = build_prompt("What does ERROR NO SERIAL COM mean?", [passage(13, SERIAL), passage(30, CABLE)], llm,
                         max_new_tokens=64)
    ask(llm, other, "B")
    assert llm.states.keys() == ["B"] and llm.states.stats.evicted == 1
    assert llm.states.size_bytes <= llm.states.capacity_bytes

    ask(llm, build_prompt("And when does it resume?", [passage(12, HIGH_TEMP)], llm, max_new_tokens=64,
                          history=answered(first, answer)), "A")

    assert not llm.last_eval.restored
    assert llm.last_eval.reused_tokens < llm.last_eval.evaluated_tokens


def test_a_stopped_answer_really_stops_and_its_follow_up_still_reuses_it(llm):
    first = build_prompt("What does ERROR HIGH TEMP mean?", [passage(12, HIGH_TEMP)], llm, max_new_tokens=64)

    partial = ask(llm, first, "A", max_tokens=200, stop_after=3)
    length = prompt_length(llm)
    n_tokens = llm._llm.n_tokens

    assert n_tokens <= length + 4  # the model stopped computing, not only yielding
    assert "A" in llm.states
    other = build_prompt("What does ERROR NO SERIAL COM mean?", [passage(13, SERIAL)], llm, max_new_tokens=64)
    ask(llm, other, "B")
    ask(llm, build_prompt("Go on.", [passage(12, HIGH_TEMP)], llm, max_new_tokens=64,
                          history=answered(first, partial)), "A")
    assert llm.last_eval.restored and llm.last_eval.reused_tokens >= length


def test_closing_the_stream_stops_the_generation_and_keeps_a_usable_context(llm):
    first = build_prompt("What does ERROR HIGH TEMP mean?", [passage(12, HIGH_TEMP)], llm, max_new_tokens=64)
    stream = llm.stream_chat(first.messages, max_tokens=200, temperature=0.0, should_stop=lambda: False, session="A")
    pieces = [next(stream) for _ in range(3)]
    stream.close()  # a disconnect: the consumer stops reading
    length = prompt_length(llm)

    assert llm._llm.n_tokens <= length + 4
    assert "A" in llm.states
    ask(llm, build_prompt("Go on.", [passage(12, HIGH_TEMP)], llm, max_new_tokens=64,
                          history=answered(first, "".join(pieces))), "A")
    assert llm.last_eval.reused_tokens >= length


# --- through the answer pipeline: the conversation id reaches the runtime ---------------------------


@pytest.fixture
def evse_library(settings):
    from apps.knowledge.models import Document
    from apps.knowledge.vector_index import get_vector_index
    from ingest.chunk import Chunk
    from models.embedding import get_embedder

    settings.NANOSENTRI_LLM_BACKEND = "llamacpp"
    settings.NANOSENTRI_LLM_NARRATIVE = True
    settings.NANOSENTRI_LLM_MAX_TOKENS = 48
    settings.NANOSENTRI_LLM_THREADS = settings.NANOSENTRI_LLM_BATCH_THREADS = 1  # counted, not timed
    settings.NANOSENTRI_RETRIEVAL_MIN_SCORE = 0.0  # the hashed mock embedder's cosines are low
    doc = Document.objects.create(original_name="SmartEVSE.pdf", stored_path="SmartEVSE.pdf", extension=".pdf",
                                  content_hash="a" * 64, status=Document.Status.INDEXED)
    lines = [HIGH_TEMP, SERIAL, CABLE]
    get_vector_index().add(document_id=doc.pk, file_name="SmartEVSE.pdf",
                           chunks=[Chunk(page=i + 2, index=i, text=t) for i, t in enumerate(lines)],
                           embeddings=get_embedder().embed(lines))
    transcripts.clear()
    yield doc
    transcripts.clear()


@pytest.mark.django_db
def test_the_pipeline_follow_up_after_another_chat_evaluates_less_than_half_its_prompt(evse_library):
    conversation = services.conversation_for(user=None, title="t")
    other = services.conversation_for(user=None, title="u")

    first = list(services.answer_stream(question="What does ERROR HIGH TEMP mean?", conversation=conversation))
    list(services.answer_stream(question="What does ERROR NO SERIAL COM mean?", conversation=other))
    follow_up = list(services.answer_stream(question="And when does charging resume?", conversation=conversation))

    parent, timings = first[-1]["timings"], follow_up[-1]["timings"]
    assert follow_up[-1]["status"] == "completed"
    assert timings["kv_restored"] is True
    assert timings["prompt_reused_tokens"] >= parent["prompt_reused_tokens"] + parent["prompt_eval_tokens"]
    assert timings["prompt_eval_tokens"] < 0.5 * (timings["prompt_reused_tokens"] + timings["prompt_eval_tokens"])
