"""Fifty chats at once (issue 10, step 3): questions embedded on arrival, evidence gathered a few
chats at a time (apps/chat/services.py), and a wave's embedding pass on all cores (models/embedding.py)."""
from __future__ import annotations

import os
import threading
import time

import pytest

from apps.chat import services
from apps.chat.models import Message
from apps.knowledge.models import Document
from apps.knowledge.vector_index import get_vector_index
from ingest.chunk import Chunk

pytestmark = pytest.mark.django_db(transaction=True)

PASSAGE = "ERROR HIGH TEMP: the charger is too hot. Charging resumes when the temperature drops below 55 C."


def _index_manual():
    doc = Document.objects.create(original_name="charger.pdf", stored_path="x.pdf", extension=".pdf",
                                  content_hash="h" * 64, status=Document.Status.INDEXED)
    index = get_vector_index()
    chunks = [Chunk(page=2, index=0, text=PASSAGE)]
    index.add(document_id=doc.pk, file_name=doc.original_name, chunks=chunks,
              embeddings=index.embedder.embed([c.text for c in chunks]))


def _ask(user, question: str):
    events, done = [], threading.Event()

    def emit(event):
        if event is None:
            done.set()
        else:
            events.append(event)

    phase = services.evidence_phase_start()
    services.run_ask_in_thread(user=user, request={"question": question}, cancel=threading.Event(),
                               emit=emit, evidence_phase=phase)
    return events, done


def _one_lane_and_embeddings_seen(monkeypatch):
    """One evidence lane, and the lists of query texts the embedder is asked for (a list a pass), in order."""
    lanes = threading.BoundedSemaphore(1)
    monkeypatch.setattr(services, "_EVIDENCE_LANES", lanes)
    embedder = get_vector_index().embedder
    embedded = []
    real_embed = embedder.embed_queries
    monkeypatch.setattr(embedder, "embed_queries", lambda texts: embedded.append(list(texts)) or real_embed(texts))
    return lanes, embedded


def test_a_chat_waits_for_an_evidence_lane_with_its_question_already_embedded(technician, monkeypatch, settings):
    settings.NANOSENTRI_LLM_NARRATIVE = False
    _index_manual()
    lanes, embedded = _one_lane_and_embeddings_seen(monkeypatch)

    lanes.acquire()  # another chat gathers its evidence
    events, done = _ask(technician, "What does ERROR HIGH TEMP mean?")
    time.sleep(0.5)
    assert ["What does ERROR HIGH TEMP mean?"] in embedded  # embedded while it waits
    assert events == [] and not Message.objects.exists()  # nothing else done before its turn
    lanes.release()
    assert done.wait(20)
    kinds = [e["type"] for e in events]
    assert kinds[0] == "accepted" and "citations" in kinds and kinds[-1] == "done"
    assert lanes.acquire(timeout=1)  # the lane was given back when the evidence was out
    lanes.release()


def test_the_past_incident_search_text_is_embedded_on_arrival_too(technician, monkeypatch, settings):
    """The incident search embeds the question without device type keys; that text is embedded
    ahead as well, with the question, so the chat's turn in its lane costs no embedding pass."""
    from apps.assets.models import DeviceType

    settings.NANOSENTRI_LLM_NARRATIVE = False
    _index_manual()
    DeviceType.objects.get_or_create(key="SMARTEVSE", defaults={"name": "SmartEVSE"})
    lanes, embedded = _one_lane_and_embeddings_seen(monkeypatch)

    lanes.acquire()
    events, done = _ask(technician, "What does ERROR HIGH TEMP mean on the SMARTEVSE?")
    time.sleep(0.5)
    assert embedded == [["What does ERROR HIGH TEMP mean on the SMARTEVSE?", "What does ERROR HIGH TEMP mean on the ?"]]
    lanes.release()
    assert done.wait(20) and events[-1]["type"] == "done"


def test_a_question_of_two_parts_is_embedded_on_arrival_with_its_second_part(technician, monkeypatch, settings):
    """Retrieval searches the second part on its own words too: that text goes through the embedder
    in the question's pass, not in a pass of its own after the chat's lane is free."""
    settings.NANOSENTRI_LLM_NARRATIVE = False
    _index_manual()
    lanes, embedded = _one_lane_and_embeddings_seen(monkeypatch)

    lanes.acquire()
    events, done = _ask(technician, "What does ERROR HIGH TEMP mean and when does charging resume?")
    time.sleep(0.5)
    assert embedded == [["What does ERROR HIGH TEMP mean and when does charging resume?",
                         "when does charging resume? What does ERROR HIGH TEMP mean"]]
    lanes.release()
    assert done.wait(20) and events[-1]["type"] == "done"


def test_a_refused_question_gives_its_lane_back_and_says_why(technician, monkeypatch):
    lanes = threading.BoundedSemaphore(1)
    monkeypatch.setattr(services, "_EVIDENCE_LANES", lanes)
    events, done = _ask(technician, "   ")
    assert done.wait(10)
    assert events[-1]["type"] == "error" and events[-1]["code"] == "invalid_question"
    assert lanes.acquire(timeout=1)
    lanes.release()


def test_two_lanes_let_two_chats_gather_evidence_while_a_third_waits(technician, monkeypatch, settings):
    settings.NANOSENTRI_LLM_NARRATIVE = False
    _index_manual()
    lanes = threading.BoundedSemaphore(2)
    monkeypatch.setattr(services, "_EVIDENCE_LANES", lanes)
    inside, most, gate = [0], [0], threading.Event()
    real_retrieve = services.passages_retrieve

    def slow_retrieve(*args, **kwargs):
        inside[0] += 1
        most[0] = max(most[0], inside[0])
        gate.wait(2)
        try:
            return real_retrieve(*args, **kwargs)
        finally:
            inside[0] -= 1

    monkeypatch.setattr(services, "passages_retrieve", slow_retrieve)
    chats = [_ask(technician, f"What does ERROR HIGH TEMP mean? ({i})") for i in range(3)]
    time.sleep(0.6)
    assert inside[0] == 2  # two gather their evidence, the third waits for a lane
    gate.set()
    assert all(done.wait(20) for _, done in chats)
    assert most[0] == 2
    assert all(events[-1]["type"] == "done" for events, _ in chats)


@pytest.mark.integration
def test_a_wave_of_questions_runs_on_all_cores_with_the_vectors_of_one_at_a_time(real_stack):
    """Real MiniLM: a pass of several questions asked together takes every core for its duration
    and gives the process's thread count back; each vector is the one the question gets alone."""
    import numpy as np
    import torch

    from models import embedding
    from models.embedding import get_embedder

    embedder = get_embedder()
    questions = [f"What does error E{i} mean on the charger?" for i in range(6)]
    alone = np.array([embedder.embed([q])[0] for q in questions])
    embedder.forget_queries()
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    seen = []
    real_encode = embedder._encode
    embedder._encode = lambda texts, batch_size: seen.append((len(texts), torch.get_num_threads())) or real_encode(texts, batch_size)
    try:
        start = threading.Barrier(len(questions))
        vectors = [None] * len(questions)

        def ask(i):
            start.wait()
            vectors[i] = embedder.embed([questions[i]])[0]

        threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(questions))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert torch.get_num_threads() == 1  # given back
        wide = [threads_used for n, threads_used in seen if n >= embedding.WAVE_QUESTIONS]
        assert wide, seen  # the questions that came during the first pass went together
        assert all(threads_used == (os.cpu_count() or 1) for threads_used in wide)
        assert all(threads_used == 1 for n, threads_used in seen if n < embedding.WAVE_QUESTIONS)
        assert np.allclose(np.array(vectors), alone, atol=1e-5)
    finally:
        del embedder._encode
        embedder.forget_queries()
        torch.set_num_threads(before)


@pytest.mark.integration
def test_a_question_and_its_parts_are_embedded_in_one_pass_with_the_vectors_they_get_alone(real_stack):
    """Real MiniLM: ``embed_queries`` runs its texts through the model together, each vector the one
    its text gets alone; asked again one by one (as retrieval and the incident search do), they come
    from memory and cost no pass."""
    import numpy as np

    from models.embedding import get_embedder

    embedder = get_embedder()
    texts = ["What wire size should I use, and how far apart can they be?",
             "how far apart can they be? What wire size should I use", "What wire size should I use"]
    alone = []
    for text in texts:
        embedder.forget_queries()
        alone.append(embedder.embed([text])[0])
    embedder.forget_queries()
    passes = []
    real_encode = embedder._encode
    embedder._encode = lambda batch, n: passes.append(list(batch)) or real_encode(batch, n)
    try:
        together = embedder.embed_queries(texts + [texts[0]])  # a repeat is embedded once
        again = [embedder.embed([text])[0] for text in texts]
    finally:
        del embedder._encode
        embedder.forget_queries()
    assert passes == [texts]
    assert np.allclose(np.array(together[:3]), np.array(alone), atol=1e-5)
    assert together[3] == together[0]
    assert again == together[:3]
