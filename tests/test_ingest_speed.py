"""Ingest speed options that must not change what is embedded: the worker's torch threads and the
embedder's passes of similar length (NANOSENTRI_WORKER_EMBEDDING_THREADS, _EMBEDDING_BATCH_TOKENS)."""
import copy
import threading
import time
import weakref

import numpy as np
import pytest
import torch

from apps.knowledge import tasks
from ingest.index import LocalGeneration, SearchIndex, build_vector_store
from ingest.pipeline import ingest_file
from models.embedding import SentenceTransformerEmbedder, get_embedder, reset_embedder, set_torch_threads
from tests.conftest import QUICK_START, SMARTEVSE, manual

# Different lengths on purpose (a few words to more than the 256 word pieces the model reads),
# including texts of equal length in characters but not in word pieces.
TEXTS = [
    "ERROR HIGH TEMP",
    "Charging resumes when the temperature drops below 55 °C.",
    "Hold both buttons to reset the current transformer calibration to default settings. " * 3,
    "CT1 CT2 CT3 6A 16A 32A 13A 20A 63A 70A PP PE CP 230V 400V 50Hz" * 2,
    "The thermistor of the nozzle is not plugged into the mainboard. Check the wiring. " * 12,
    "Level the bed: move the nozzle to each corner and adjust the knob until a sheet of paper drags.",
    "MAX temp",
    "abcdefghij klmnopqrst uvwxyz0123 " * 20,
]


@pytest.fixture(scope="module")
def minilm():
    from models.paths import embedding_model_path

    try:
        path = embedding_model_path()
    except Exception as exc:  # pragma: no cover - the bundled model is a dependency
        pytest.skip(f"embedding model not available: {exc}")
    return SentenceTransformerEmbedder(str(path))


def with_budget(embedder, tokens):
    other = copy.copy(embedder)
    other.batch_tokens = tokens
    return other


@pytest.fixture
def torch_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


# --- passes of similar length --------------------------------------------------------------------


@pytest.mark.parametrize("tokens, batch_size", [(256, 64), (512, 3), (2048, 64), (10**6, 2)])
def test_length_batches_hold_every_text_once_within_the_budget(minilm, tokens, batch_size):
    embedder = with_budget(minilm, tokens)
    lengths = embedder.token_lengths(TEXTS)
    batches = embedder.length_batches(TEXTS, batch_size)

    assert sorted(i for batch in batches for i in batch) == list(range(len(TEXTS)))
    flat = [lengths[i] for batch in batches for i in batch]
    assert flat == sorted(flat, reverse=True)  # longest first, so each pass is padded to its first text
    for batch in batches:
        assert len(batch) <= batch_size
        assert len(batch) == 1 or len(batch) * lengths[batch[0]] <= tokens


def test_token_lengths_count_what_the_model_reads(minilm):
    lengths = minilm.token_lengths(TEXTS)
    assert lengths[0] == len(minilm.tokenize(TEXTS[0])) + 2  # [CLS] and [SEP]
    assert max(lengths) == minilm.max_tokens  # the longest text is cut where the model cuts it


@pytest.mark.parametrize("tokens", [128, 512, 2048])
def test_passes_by_length_give_the_vectors_of_one_encode_call_in_order(minilm, tokens):
    plain = np.array(minilm.embed(TEXTS, batch_size=64))
    by_length = np.array(with_budget(minilm, tokens).embed(TEXTS, batch_size=64))

    assert by_length.shape == plain.shape
    assert np.abs(by_length - plain).max() < 1e-5  # float rounding only
    # and each vector is its own text's, not a neighbour's
    alone = np.array([minilm.embed([t])[0] for t in TEXTS])
    assert np.abs(by_length - alone).max() < 1e-5


def test_one_text_and_no_text(minilm):
    embedder = with_budget(minilm, 2048)
    assert embedder.embed([]) == []
    assert np.abs(np.array(embedder.embed(["MAX temp"])) - np.array(minilm.embed(["MAX temp"]))).max() == 0


def test_the_embedder_is_built_with_the_setting(settings):
    settings.NANOSENTRI_EMBEDDING_BACKEND = "sentence-transformers"
    settings.NANOSENTRI_EMBEDDING_BATCH_TOKENS = 1536
    reset_embedder()
    try:
        assert get_embedder().batch_tokens == 1536
    finally:
        reset_embedder()


class Recording:
    """The embedder, recording every text it is given."""

    def __init__(self, inner):
        self.inner, self.texts = inner, []
        self.name, self.dimension, self.max_tokens = inner.name, inner.dimension, inner.max_tokens

    def tokenize(self, text):
        return self.inner.tokenize(text)

    def embed(self, texts, batch_size=64):
        self.texts.extend(texts)
        return self.inner.embed(texts, batch_size=batch_size)


def _ingest(path, embedder, collection):
    index = SearchIndex(build_vector_store("memory", collection=collection), embedder, generation=LocalGeneration())
    ingest_file(path, document_id=1, file_name=path.name, index=index, embedder=embedder, chunk_tokens=200,
                chunk_overlap=40, batch_size=64, progress=lambda *a, **k: None, window_pages=4)
    ids = [f"doc1-chunk{i}" for i in range(len(embedder.texts))]
    return index.store.client.get(ids=ids, include=["embeddings", "documents"])


@pytest.mark.parametrize("pdf", [SMARTEVSE, QUICK_START])
def test_an_ingest_embeds_the_same_chunks_and_vectors_either_way(minilm, pdf):
    path = manual(pdf)
    before, after = Recording(with_budget(minilm, 0)), Recording(with_budget(minilm, 2048))

    old = _ingest(path, before, f"speed-before-{path.stem[:20]}")
    new = _ingest(path, after, f"speed-after-{path.stem[:20]}")

    assert after.texts == before.texts and len(after.texts) > 3  # the same chunks, embedded with the same text
    assert new["ids"] == old["ids"] and new["documents"] == old["documents"]
    assert np.abs(np.array(new["embeddings"]) - np.array(old["embeddings"])).max() < 1e-5


# --- the worker's torch threads ------------------------------------------------------------------


def test_set_torch_threads(torch_threads):
    assert set_torch_threads(1) == 1 and torch.get_num_threads() == 1
    assert set_torch_threads(0) == 1  # 0: left as it is
    assert set_torch_threads(-1) == 1


def test_a_prefork_pool_process_takes_the_setting(settings, torch_threads):
    from celery.signals import worker_process_init

    settings.NANOSENTRI_WORKER_EMBEDDING_THREADS = 1
    worker_process_init.send(sender=None)  # what a prefork child sends when it starts
    assert torch.get_num_threads() == 1


class _Worker:
    def __init__(self, pool_cls):
        self.pool_cls = pool_cls


def _pool(name):
    from celery import concurrency

    return concurrency.get_implementation(name)


@pytest.mark.parametrize("pool", ["solo", "threads"])
def test_a_worker_that_runs_tasks_itself_takes_the_setting(settings, torch_threads, pool):
    settings.NANOSENTRI_WORKER_EMBEDDING_THREADS = 1
    tasks.embedding_threads_in_worker(sender=_Worker(_pool(pool)))  # worker_init, as `celery worker --pool solo`
    assert torch.get_num_threads() == 1
    torch.set_num_threads(2)
    tasks.embedding_threads_in_worker(sender=_Worker(pool))  # the pool given by name in the configuration
    assert torch.get_num_threads() == 1


@pytest.mark.parametrize("pool", ["prefork", _pool("prefork"), None])
def test_a_prefork_parent_leaves_torch_alone(settings, torch_threads, pool):
    settings.NANOSENTRI_WORKER_EMBEDDING_THREADS = 1
    tasks.embedding_threads_in_worker(sender=_Worker(pool))  # its children set their own
    assert torch.get_num_threads() == 2


def test_zero_keeps_torch_default(settings, torch_threads):
    settings.NANOSENTRI_WORKER_EMBEDDING_THREADS = 0
    tasks.embedding_threads_in_worker(sender=_Worker(_pool("solo")))
    tasks.embedding_threads_in_pool_process()
    assert torch.get_num_threads() == 2


def test_the_handlers_are_connected():
    from celery.signals import worker_init, worker_process_init

    def connected(signal, handler):
        return any((ref() if isinstance(ref, weakref.ReferenceType) else ref) is handler
                   for _key, ref in signal.receivers)

    assert connected(worker_init, tasks.embedding_threads_in_worker)
    assert connected(worker_process_init, tasks.embedding_threads_in_pool_process)


def test_the_thread_count_holds_in_other_threads(minilm, torch_threads):
    """The embedder may run in another thread than the one that set the count."""
    set_torch_threads(1)
    seen = []

    def embed():
        minilm.embed(["MAX temp"])
        seen.append(torch.get_num_threads())

    thread = threading.Thread(target=embed)
    thread.start()
    thread.join()
    assert seen == [1]


def test_a_question_embedded_twice_is_computed_once(minilm):
    """The answer pipeline embeds its question for the manuals and again for the past incidents."""
    embedder = copy.copy(minilm)
    embedder._memo = {}
    embedder._thread_memo = threading.local()
    calls = []
    real_encode = embedder._encode

    def counting(texts, batch_size):
        calls.append(list(texts))
        return real_encode(texts, batch_size)

    question = "What does ERROR HIGH TEMP mean? (memo test)"
    embedder._encode = counting
    try:
        first = embedder.embed([question])
        first[0][0] = 99.0  # a caller changing its copy changes nothing remembered
        second = embedder.embed([question])
        other = embedder.embed(["Something else entirely (memo test)"])
    finally:
        embedder._encode = real_encode
    assert calls == [[question], ["Something else entirely (memo test)"]]
    assert second[0][0] != 99.0 and len(second[0]) == embedder.dimension
    assert other[0] != second[0]
    reference = SentenceTransformerEmbedder(embedder.name).embed([question])
    assert max(abs(a - b) for a, b in zip(second[0], reference[0])) < 1e-6


def test_questions_asked_together_are_embedded_in_one_pass(minilm):
    """Fifty chats asking at once: the questions that arrive while a pass runs share the next one."""
    embedder = copy.copy(minilm)
    embedder._memo = {}
    embedder._thread_memo = threading.local()
    embedder._waiting = {}
    embedder._waiting_lock = threading.Lock()
    passes = []
    real_encode = embedder._encode
    first_pass_running = threading.Event()
    release = threading.Event()

    def recording(texts, batch_size):
        passes.append(list(texts))
        if len(passes) == 1:
            first_pass_running.set()
            release.wait(10)  # the others arrive while the first pass runs
        return real_encode(texts, batch_size)

    embedder._encode = recording
    questions = [f"Relay K{n} does not switch the pump {n}: what do I check? (together)" for n in range(12)]
    results: dict[str, list[float]] = {}

    def ask(question):
        results[question] = embedder.embed([question])[0]

    first = threading.Thread(target=ask, args=(questions[0],))
    first.start()
    assert first_pass_running.wait(10)
    others = [threading.Thread(target=ask, args=(q,)) for q in questions[1:]]
    for t in others:
        t.start()
    deadline = time.monotonic() + 10
    while len(embedder._waiting) < len(others) and time.monotonic() < deadline:
        time.sleep(0.01)
    release.set()
    for t in [first, *others]:
        t.join(20)
    assert [len(p) for p in passes] == [1, len(others)]  # two passes for twelve questions
    alone = SentenceTransformerEmbedder(embedder.name).embed
    for question in (questions[0], questions[5]):
        reference = alone([question])[0]
        assert max(abs(a - b) for a, b in zip(results[question], reference)) < 1e-5


def test_an_answer_thread_reuses_its_question_vector_while_other_chats_ask(minilm):
    """With room for one question in the process memo, a thread still gets its own question back."""
    embedder = copy.copy(minilm)
    embedder._memo, embedder._thread_memo, embedder.query_memo = {}, threading.local(), 1
    calls = []
    real_encode = embedder._encode
    embedder._encode = lambda texts, batch_size: calls.append(list(texts)) or real_encode(texts, batch_size)
    mine = "Fuse F3 blows when the pump starts (thread memo)"
    embedder.embed([mine])
    other = threading.Thread(target=lambda: embedder.embed(["Another chat's question (thread memo)"]))
    other.start()
    other.join(10)
    embedder.embed([mine])  # the process memo now holds the other question
    assert calls == [[mine], ["Another chat's question (thread memo)"]]
