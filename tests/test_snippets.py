"""Snippets: runs of consecutive sentences of a chunk, embedded each and used to rank the chunks the
vector search found (ingest/snippets.py, SearchIndex.snippet_cosines, apps/knowledge/retrieval.py)."""
import numpy as np
import pytest

from apps.knowledge import services
from apps.knowledge.models import Document
from apps.knowledge.retrieval import passages_retrieve
from apps.knowledge.vector_index import get_vector_index, open_search_index
from ingest.chunk import Chunk
from ingest.index import SNIPPETS_KEY, chunk_entries, embed_entries
from ingest.snippets import best_cosine, pack, sentence_spans, sentences, snippet_spans, snippets, unpack
from models.embedding import get_embedder
from tests.conftest import SHARED

CHUNK = (
    "Relay outputs\n"
    "Each relay can switch up to 10A at 250VAC. The coil is driven by GPIO32.\n"
    "Figure 3\n"
    "Do not exceed the rating: the contacts weld. Replace a welded relay as a whole"
)


def test_sentences_are_lines_and_full_stops_and_fragments_are_left_out():
    assert sentences(CHUNK) == [
        "Each relay can switch up to 10A at 250VAC.",
        "The coil is driven by GPIO32.",
        "Do not exceed the rating: the contacts weld.",
        "Replace a welded relay as a whole",
    ]  # "Relay outputs" and "Figure 3" are too short to be matched on their own


def test_snippets_are_overlapping_runs_of_consecutive_sentences():
    assert snippets(CHUNK, 2) == [
        "Each relay can switch up to 10A at 250VAC. The coil is driven by GPIO32.",
        "The coil is driven by GPIO32. Do not exceed the rating: the contacts weld.",
        "Do not exceed the rating: the contacts weld. Replace a welded relay as a whole",
    ]
    assert snippets("Only one sentence here.", 2) == ["Only one sentence here."]
    assert snippets(CHUNK, 0) == [] and snippets("Figure 3", 2) == []


def test_packed_vectors_give_the_cosines_of_the_unit_vectors():
    rng = np.random.default_rng(0)
    rows = rng.normal(size=(3, 384))
    packed = unpack(pack(rows))
    assert len(packed) == 3 and packed.codes.dtype == np.int8  # kept as stored
    unit = rows / np.linalg.norm(rows, axis=1, keepdims=True)
    for _ in range(20):
        query = rng.normal(size=384)
        query /= np.linalg.norm(query)
        assert best_cosine(packed, query) == pytest.approx(float((unit @ query).max()), abs=5e-3)
    assert len(pack(rows)) < 3 * 530  # int8: ~520 characters a vector
    assert unpack("") is None and unpack("384:not base64!") is None and unpack("384:AAAA") is None
    assert best_cosine(None, query) is None


def test_embed_entries_gives_each_entry_its_own_snippets_vectors():
    embedder = get_embedder()
    chunks = [Chunk(page=1, index=0, text=CHUNK), Chunk(page=2, index=1, text="Figure 4"),
              Chunk(page=3, index=2, text="Fuse F1 is rated 1 A. Fuse F2 is rated 2 A.")]
    entries = chunk_entries(document_id=1, file_name="board.pdf", chunks=chunks, title="Relay board",
                            snippet_sentences=2)
    assert [len(e.snippets) for e in entries] == [3, 0, 1]
    assert entries[0].snippets[0] == "Relay board\nEach relay can switch up to 10A at 250VAC. The coil is driven by GPIO32."
    calls = []
    vectors = embed_entries(entries, lambda texts: calls.append(len(texts)) or embedder.embed(texts))
    assert calls == [3 + 4]  # one pass for chunks and snippets
    assert vectors == embedder.embed([e.embed_text for e in entries])
    assert entries[0].snippet_vectors == embedder.embed(entries[0].snippets)
    assert entries[1].snippet_vectors == [] and len(entries[2].snippet_vectors) == 1


@pytest.mark.django_db
def test_snippet_cosines_are_read_from_memory_and_from_the_store_alike(settings):
    embedder = get_embedder()
    entries = chunk_entries(document_id=7, file_name="board.pdf", title="Relay board", snippet_sentences=2,
                            chunks=[Chunk(page=1, index=0, text=CHUNK), Chunk(page=2, index=1, text="Figure 4")])
    index = get_vector_index()
    index.add_entries(entries, embed_entries(entries, embedder.embed))
    query = embedder.embed(["what current can the relay switch"])[0]
    ids = [e.node_id for e in entries]

    from_store = index.snippet_cosines(ids, query)  # nothing in memory yet
    index.lexical_stats()  # the current entries are now in memory
    from_memory = index.snippet_cosines(ids, query)

    expected = max(float(np.dot(v, query) / np.linalg.norm(v) / np.linalg.norm(query))
                   for v in entries[0].snippet_vectors)
    assert set(from_store) == set(from_memory) == {ids[0]}  # a chunk without snippets has no entry
    assert from_store[ids[0]] == pytest.approx(expected, abs=5e-3)
    assert from_memory[ids[0]] == pytest.approx(from_store[ids[0]], abs=1e-6)
    # What the index keeps for itself is never part of a hit's metadata.
    hit = index.vector_search(query, top_k=1)[0]
    assert SNIPPETS_KEY not in hit.metadata and "lexical_terms" not in hit.metadata
    # Re-indexed by another process without snippets: the stored entry has none any more.
    writer = open_search_index(settings.NANOSENTRI_CHROMA_COLLECTION)
    again = chunk_entries(document_id=7, file_name="board.pdf", title="Relay board", snippet_sentences=0,
                          chunks=[Chunk(page=1, index=0, text=CHUNK)])
    writer.add_entries(again, embed_entries(again, embedder.embed))
    assert index.fresh().snippet_cosines(ids, query) == {}


@pytest.mark.django_db
def test_a_chunk_one_line_of_which_answers_comes_first(settings):
    """The vector ranking alone (no BM25): a chunk about the subject in general against a chunk with
    the one line that answers, among lines about other things."""
    settings.NANOSENTRI_RETRIEVAL_LEXICAL_WEIGHT = 0
    settings.NANOSENTRI_RETRIEVAL_MIN_SCORE = 0.0
    embedder = get_embedder()
    document = Document.objects.create(original_name="pump.pdf", stored_path="pump.pdf", extension=".pdf",
                                       content_hash="pump", status=Document.Status.INDEXED, title="Pump manual")
    # The question's words all over one chunk, one to a line; all of them in one line of the other.
    general = ("Seal parts listed below. Kit contents vary. Bolts sold separately. Torque tool included. "
               "Seal grease included. Kit box labelled. Bolts are steel. Torque chart on page 9.")
    answering = ("Paint the housing every year. Store the spare impeller dry. Tighten the seal kit bolts to 12 Nm "
                 "torque. Label the valves. Clean the strainer weekly. Log every start of the pump motor. Keep the "
                 "manual near the pump. Check the oil level monthly. Replace worn belts.")
    entries = chunk_entries(document_id=document.pk, file_name="pump.pdf", title="Pump manual", snippet_sentences=2,
                            chunks=[Chunk(page=1, index=0, text=general), Chunk(page=2, index=1, text=answering)])
    get_vector_index().add_entries(entries, embed_entries(entries, embedder.embed))
    question = "what torque for the seal kit bolts"

    settings.NANOSENTRI_RETRIEVAL_SNIPPET_WEIGHT = 0
    assert [p.page for p in passages_retrieve(question).passages][0] == 1
    settings.NANOSENTRI_RETRIEVAL_SNIPPET_WEIGHT = 2.0
    assert [p.page for p in passages_retrieve(question).passages][0] == 2


@pytest.mark.integration
@pytest.mark.django_db
def test_real_manuals_put_the_page_with_the_answering_line_first(real_stack, monkeypatch):
    """MiniLM, Chroma, two real manuals: the ESP32-POE's button GPIO (page 11) and the MPPT 1210 HUS's
    reverse polarity row (page 10) come first; ranked by chunk vectors alone, the layout drawing
    (page 9) and a charging page (page 7) win."""
    monkeypatch.setattr("apps.knowledge.tasks.ingest_document_task.delay", lambda *a, **k: None)
    paths = sorted((SHARED / "library").glob("Olimex_ESP32-POE*.pdf")) + sorted(
        (SHARED / "library").glob("LibreSolar_MPPT-1210*.pdf"))
    if len(paths) != 2:
        pytest.skip(f"shared manuals not found under {SHARED} (CI always has them)")
    for path in paths:
        document, _ = services.document_add_path(path=path)
        services.document_ingest(document_id=document.pk)
        document.refresh_from_db()
        assert document.status == Document.Status.INDEXED, document.error
    questions = {
        "Which GPIO is the user button on the ESP32-POE connected to?": 11,
        "What happens if the battery is connected with reverse polarity to the MPPT 1210 HUS?": 10,
    }
    index = get_vector_index()
    index.lexical_stats()
    assert sum(v is not None for v in index._lexical.snippets) > 60  # the chunks' snippets were stored

    def first_pages():
        return {q: passages_retrieve(q).passages[0].page for q in questions}

    assert first_pages() == questions
    real_stack.NANOSENTRI_RETRIEVAL_SNIPPET_WEIGHT = 0
    assert first_pages() == {q: page for q, page in zip(questions, [9, 7])}


@pytest.fixture(scope="module")
def minilm():
    """The bundled MiniLM (the tests' settings give the mock embedder)."""
    from models.embedding import SentenceTransformerEmbedder
    from models.paths import embedding_model_path

    return SentenceTransformerEmbedder(str(embedding_model_path()))


def test_snippet_spans_are_where_the_snippets_are():
    text = "  Intro\nEach relay can switch up to 10A at 250VAC.  The coil is driven by GPIO32!\r\nFigure 3\nLast line has words"
    for size in (1, 2, 3):
        assert [" ".join(text[a:b] for a, b in ranges) for ranges in snippet_spans(text, size)] == snippets(text, size)
    assert [text[a:b] for a, b in sentence_spans(text)] == sentences(text)
    assert snippet_spans(text, 0) == [] and snippet_spans("Figure 3", 2) == []


def test_a_snippets_vector_read_off_its_chunk_is_the_mean_of_its_word_pieces(minilm):
    """Real MiniLM: one pass gives the chunk's vector (as embed() does) and each part's, the mean of
    the model's output over the part's word pieces, normalized."""
    embedder = minilm
    text = "Relay board\nEach relay can switch up to 10A at 250VAC. The coil is driven by GPIO32."
    first, second = (12, 54), (55, 84)
    assert text[slice(*first)] == "Each relay can switch up to 10A at 250VAC."
    vectors, parts = embedder.embed_spans([text, "Fuse F1 is rated 1 A."], [[[first], [second], [first, second]], []])
    np.testing.assert_allclose(vectors, embedder.embed([text, "Fuse F1 is rated 1 A."]), atol=1e-5)
    assert [len(p) for p in parts] == [3, 0]

    tokens = embedder._model.encode([text], output_value="token_embeddings", convert_to_numpy=False)[0].numpy()
    pieces = embedder._tokenizer(text, return_offsets_mapping=True)["offset_mapping"]
    def mean_of(*ranges):
        rows = [i for i, (s, e) in enumerate(pieces) if e > s and any(s < b and e > a for a, b in ranges)]
        pooled = tokens[rows].mean(axis=0)
        return pooled / np.linalg.norm(pooled)
    np.testing.assert_allclose(parts[0][0], mean_of(first), atol=1e-5)
    np.testing.assert_allclose(parts[0][1], mean_of(second), atol=1e-5)
    np.testing.assert_allclose(parts[0][2], mean_of(first, second), atol=1e-5)
    # Each part is closest to a question about what it says.
    current, coil = embedder.embed(["what current can the relay switch", "which GPIO drives the coil"])
    assert np.dot(parts[0][0], current) > np.dot(parts[0][1], current)
    assert np.dot(parts[0][1], coil) > np.dot(parts[0][0], coil)


def test_a_part_the_model_never_read_gets_its_texts_vector(minilm):
    embedder = minilm
    text = "word " * 400  # cut at 256 word pieces
    vectors, parts = embedder.embed_spans([text], [[[(1900, 1990)]]])
    np.testing.assert_allclose(parts[0][0], vectors[0], atol=1e-6)


def test_embed_entries_reads_the_snippets_off_their_chunks_pass(minilm):
    embedder = minilm
    chunks = [Chunk(page=1, index=0, text=CHUNK), Chunk(page=2, index=1, text="Figure 4")]
    entries = chunk_entries(document_id=1, file_name="board.pdf", chunks=chunks, title="Relay board",
                            snippet_sentences=2)
    texts_embedded = []

    def embed_spans(texts, spans):
        texts_embedded.extend(texts)
        return embedder.embed_spans(texts, spans)

    vectors = embed_entries(entries, embed=None, embed_spans=embed_spans)
    assert texts_embedded == [e.embed_text for e in entries]  # the chunks only: no pass of a snippet's own
    np.testing.assert_allclose(vectors, embedder.embed(texts_embedded), atol=1e-5)
    assert [len(e.snippet_vectors) for e in entries] == [3, 0]
    _, parts = embedder.embed_spans([entries[0].embed_text], [entries[0].snippet_spans])
    np.testing.assert_allclose(entries[0].snippet_vectors, parts[0], atol=1e-6)


@pytest.mark.integration
@pytest.mark.django_db
def test_snippets_read_off_the_chunks_pass_rank_a_real_manual(real_stack, monkeypatch):
    """NANOSENTRI_INGEST_SNIPPET_VECTORS=chunk through the worker's ingest (MiniLM, Chroma): the
    embedder reads each chunk once and no snippet text, every chunk with sentences gets its snippets'
    vectors, and they still put the ESP32-POE's button line (page 11) before the layout drawing."""
    monkeypatch.setattr("apps.knowledge.tasks.ingest_document_task.delay", lambda *a, **k: None)
    real_stack.NANOSENTRI_INGEST_SNIPPET_VECTORS = "chunk"
    paths = sorted((SHARED / "library").glob("Olimex_ESP32-POE*.pdf"))
    if len(paths) != 1:
        pytest.skip(f"shared manuals not found under {SHARED} (CI always has them)")
    embedder = get_embedder()
    read = {"spans": 0, "alone": 0}
    real_spans, real_embed = embedder.embed_spans, embedder.embed
    monkeypatch.setattr(embedder, "embed_spans",
                        lambda texts, spans, batch_size=64: read.__setitem__("spans", read["spans"] + len(texts))
                        or real_spans(texts, spans, batch_size))
    monkeypatch.setattr(embedder, "embed", lambda texts, batch_size=64: read.__setitem__(
        "alone", read["alone"] + len(texts)) or real_embed(texts, batch_size))
    document, _ = services.document_add_path(path=paths[0])
    services.document_ingest(document_id=document.pk)
    document.refresh_from_db()
    assert document.status == Document.Status.INDEXED, document.error
    assert read == {"spans": document.chunk_count, "alone": 0}

    index = get_vector_index()
    index.lexical_stats()
    stored = [v for v in index._lexical.snippets if v is not None]
    assert len(stored) > 40 and sum(len(v) for v in stored) > 300
    question = "Which GPIO is the user button on the ESP32-POE connected to?"
    assert passages_retrieve(question).passages[0].page == 11
    real_stack.NANOSENTRI_RETRIEVAL_SNIPPET_WEIGHT = 0
    assert passages_retrieve(question).passages[0].page == 9
