"""Chunking pages for the embedder: page kept on every chunk, sized by the embedder's tokenizer."""
import pytest

from ingest.chunk import chunk_pages
from ingest.parse import Page, parse_file


def words(text: str) -> list[str]:
    return text.split()


def numbered_sentences(count: int, start: int = 0) -> str:
    """Sentences made of unique words, so shared text between chunks is unambiguous."""
    return " ".join(f"Step w{i:04d} checks part p{i:04d} now." for i in range(start, start + count))


def test_it_keeps_the_page_number_of_every_chunk():
    pages = [
        Page(1, numbered_sentences(30, 0)),
        Page(2, numbered_sentences(30, 100)),
        Page(3, numbered_sentences(30, 200)),
    ]

    chunks = chunk_pages(pages, tokenize=words, chunk_tokens=40, overlap=0)

    assert {c.page for c in chunks} == {1, 2, 3}
    for c in chunks:
        first = int(c.text.split()[1][1:])  # "Step wNNNN ..." -> NNNN
        assert c.page == {0: 1, 1: 2, 2: 3}[first // 100], c
    # a chunk never straddles two pages
    assert all(len({int(w[1:]) // 100 for w in c.text.split() if w.startswith("w")}) == 1 for c in chunks)


def test_chunk_indexes_are_sequential_across_pages():
    pages = [Page(1, numbered_sentences(40, 0)), Page(2, numbered_sentences(40, 100))]

    chunks = chunk_pages(pages, tokenize=words, chunk_tokens=30, overlap=5)

    assert len(chunks) > 4
    assert [c.index for c in chunks] == list(range(len(chunks)))
    assert [c.page for c in chunks] == sorted(c.page for c in chunks)


@pytest.mark.parametrize("chunk_tokens", [20, 50, 120])
def test_no_chunk_exceeds_chunk_tokens_measured_by_the_given_tokenizer(chunk_tokens):
    pages = [Page(1, numbered_sentences(120)), Page(2, numbered_sentences(80, 500))]

    chunks = chunk_pages(pages, tokenize=words, chunk_tokens=chunk_tokens, overlap=chunk_tokens // 4)

    assert len(chunks) > 2
    assert max(len(words(c.text)) for c in chunks) <= chunk_tokens


def test_chunk_size_follows_the_tokenizer_not_the_word_count():
    # A tokenizer that counts characters: chunks must be short in characters, not in words.
    def chars(text: str) -> list[str]:
        return list(text)

    chunks = chunk_pages([Page(1, numbered_sentences(40))], tokenize=chars, chunk_tokens=120, overlap=20)

    assert len(chunks) > 10
    assert max(len(c.text) for c in chunks) <= 120


def test_real_manual_chunks_respect_the_limit(smartevse):
    parsed = parse_file(smartevse)

    chunks = chunk_pages(parsed.pages, tokenize=words, chunk_tokens=60, overlap=15)

    assert {c.page for c in chunks} == {1, 2}
    assert max(len(words(c.text)) for c in chunks) <= 60
    assert "Calibrate CT1" in " ".join(c.text for c in chunks if c.page == 1)


def test_overlap_repeats_text_between_consecutive_chunks_of_a_long_page():
    page = Page(1, numbered_sentences(60))

    overlapping = chunk_pages([page], tokenize=words, chunk_tokens=40, overlap=12)
    separate = chunk_pages([page], tokenize=words, chunk_tokens=40, overlap=0)

    assert len(overlapping) >= 3
    for a, b in zip(overlapping, overlapping[1:]):
        shared = set(words(a.text)) & set(words(b.text)) - {"Step", "checks", "part", "now."}
        assert shared, (a.text, b.text)
    for a, b in zip(separate, separate[1:]):
        assert not set(words(a.text)) & set(words(b.text)) - {"Step", "checks", "part", "now."}


def test_overlap_never_spans_two_pages():
    pages = [Page(1, numbered_sentences(20, 0)), Page(2, numbered_sentences(20, 100))]

    chunks = chunk_pages(pages, tokenize=words, chunk_tokens=40, overlap=12)

    first_of_page_2 = next(c for c in chunks if c.page == 2)
    assert "w0019" not in first_of_page_2.text
    assert first_of_page_2.text.startswith("Step w0100")


def test_empty_pages_produce_no_chunks():
    pages = [Page(1, ""), Page(2, "   \n  "), Page(3, "Fault E05: check the earth wire."), Page(4, "")]

    chunks = chunk_pages(pages, tokenize=words, chunk_tokens=50, overlap=10)

    assert [(c.page, c.index, c.text) for c in chunks] == [(3, 0, "Fault E05: check the earth wire.")]


def test_no_pages_no_chunks():
    assert chunk_pages([], tokenize=words, chunk_tokens=50, overlap=10) == []


@pytest.mark.integration
def test_minilm_never_truncates_a_smartevse_chunk(settings, smartevse):
    """With the real MiniLM tokenizer, every chunk the pipeline makes fits in 256 word pieces."""
    from ingest.pipeline import ingest_file
    from models.embedding import SentenceTransformerEmbedder
    from models.paths import embedding_model_path

    settings.NANOSENTRI_EMBEDDING_MODEL = ""
    embedder = SentenceTransformerEmbedder(str(embedding_model_path()))
    assert embedder.max_tokens == 256

    class Recorder:
        entries = []

        def delete_document(self, document_id):
            pass

        def add_entries(self, entries, embeddings, *, replace=True):
            Recorder.entries = entries

    class TokenizeOnly:
        """The real tokenizer and limit; embedding is not what this test is about."""

        max_tokens = embedder.max_tokens
        tokenize = staticmethod(embedder.tokenize)

        def embed(self, texts, batch_size=64):
            return [[0.0] for _ in texts]

    ingest_file(
        smartevse,
        document_id=1,
        file_name=smartevse.name,
        index=Recorder(),
        embedder=TokenizeOnly(),
        chunk_tokens=settings.NANOSENTRI_CHUNK_TOKENS,
        chunk_overlap=settings.NANOSENTRI_CHUNK_OVERLAP,
        batch_size=64,
        progress=lambda *a, **k: None,
    )
    # Even at the largest size a chunk without context may have (max_tokens - 2), nothing is cut.
    pages = parse_file(smartevse).pages
    widest = chunk_pages(pages, tokenize=embedder.tokenize, chunk_tokens=254, overlap=40)

    assert len(Recorder.entries) > 5
    tokenizer = embedder._tokenizer
    # What is embedded is the chunk with its title and heading before it: all of it fits.
    for text in [e.embed_text for e in Recorder.entries] + [c.text for c in widest]:
        assert len(embedder.tokenize(text)) <= 254, text[:80]
        # [CLS] + pieces + [SEP] fit the model without truncation
        assert len(tokenizer(text, truncation=False)["input_ids"]) <= 256
