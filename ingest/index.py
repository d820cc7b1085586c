"""The search index component: one collection of entries, searched by vector and by BM25.

The same class holds the manual chunks and the past incidents. Vectors live in the vector store
(Chroma embedded or over HTTP, or llama-index's in-memory Chroma), written and queried through
llama-index with our own embedder, so no llama-index default (OpenAI) model is ever touched.

The lexical index lives in the same records: the writer stores each entry's analyzed terms in
its metadata (``lexical_terms``), so adding, re-indexing and deleting keep vectors and terms in
step by construction, whatever the store. A reader builds BM25 statistics from those terms in
memory, and rebuilds them when the writers' generation counter moves (``Generation``): the
worker is the only writer, and every process that reads sees its writes.
"""
from __future__ import annotations

import logging
import math
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from ingest.chunk import Chunk
from ingest.lexical import BM25, analyze, best_positions
from ingest.snippets import best_cosine, pack, snippet_spans, snippet_text, unpack

log = logging.getLogger(__name__)

TERMS_KEY = "lexical_terms"
SNIPPETS_KEY = "snippet_vectors"  # the chunk's snippets' vectors (ingest.snippets.pack)
MAX_TITLE_CHARS = 90  # title and heading each; ingest.pipeline.CONTEXT_TOKENS leaves room for both
_READ_BATCH = 2000


@dataclass
class Passage:
    document_id: int
    file_name: str
    page: int
    chunk_index: int
    text: str
    score: float  # cosine similarity of the chunk (with its title and heading) to the query
    boost: float = 0.0  # added for ranking by thumbs-up on similar questions (docs/feedback.md)
    title: str = ""
    heading: str = ""
    lexical: float = 0.0  # BM25 score of the chunk for the query (0: no shared term)
    rank_score: float = 0.0  # the fused score the passages are ordered by
    source: str = "text"  # "ocr": recognised from a scanned page (see ingest.parse.Page.source)

    def as_dict(self) -> dict:
        return {
            "document_id": self.document_id,
            "document": self.file_name,
            "page": self.page,
            "chunk_index": self.chunk_index,
            "text": self.text,
            "score": round(self.score, 4),
            "boost": round(self.boost, 4),
        }


@dataclass
class Entry:
    """One thing to index: what is shown (``text``), what is embedded, and its metadata."""

    node_id: str
    text: str
    metadata: dict
    embed_text: str = ""  # defaults to text
    group: str = ""  # entries deleted together (a document's chunks)
    lexical_text: str = ""  # defaults to embed_text
    snippets: list[str] = field(default_factory=list)  # embedded each on its own (ingest.snippets)
    snippet_spans: list = field(default_factory=list)  # or read in embed_text: each one's character ranges
    snippet_vectors: list | None = None  # their vectors, once embedded (embed_entries)

    def __post_init__(self):
        self.embed_text = self.embed_text or self.text
        self.lexical_text = self.lexical_text or self.embed_text


@dataclass
class Hit:
    node_id: str
    metadata: dict
    text: str
    score: float  # cosine similarity
    lexical: float = 0.0


class Generation(Protocol):
    """A counter shared by every process, moved by each write (see apps.knowledge.generation)."""

    def read(self) -> object: ...

    def bump(self) -> object: ...


class LocalGeneration:
    """A counter for a single process (scripts, benchmarks without Django)."""

    def __init__(self):
        self.value = 0

    def read(self) -> int:
        return self.value

    def bump(self) -> int:
        self.value += 1
        return self.value


@dataclass
class _Lexical:
    """What a reader keeps in memory per generation: BM25 statistics, and every entry's text and
    unit vector so a BM25-only candidate gets its cosine without a round trip to the store."""

    ids: list[str]
    metadatas: list[dict]
    texts: list[str]
    vectors: np.ndarray  # one unit-length row per entry
    bm25: BM25
    snippets: list = field(default_factory=list)  # per entry: its snippets' vectors (SnippetVectors), or None
    position: dict[str, int] = field(default_factory=dict)
    _by_value: dict = field(default_factory=dict)  # {key: {value: rows}}, built on first use per key

    def rows_where(self, where: dict) -> np.ndarray:
        """The rows whose metadata matches ``where`` ({key: value or [values]}), in order."""
        matched = None
        for key, value in where.items():
            by_value = self._by_value.get(key)
            if by_value is None:
                grouped: dict[str, list[int]] = {}
                for row, metadata in enumerate(self.metadatas):
                    grouped.setdefault(str(metadata.get(key)), []).append(row)
                by_value = self._by_value[key] = {v: np.asarray(r, dtype=np.int64) for v, r in grouped.items()}
            values = dict.fromkeys(str(v) for v in (value if isinstance(value, list) else [value]))
            parts = [by_value[v] for v in values if v in by_value]  # disjoint: a row has one value per key
            rows = np.sort(np.concatenate(parts)) if parts else np.zeros(0, dtype=np.int64)
            matched = rows if matched is None else np.intersect1d(matched, rows)
        return matched if matched is not None else np.arange(len(self.ids))


def node_id(document_id: int, chunk_index: int) -> str:
    return f"doc{document_id}-chunk{chunk_index}"


def chunk_entries(
    *, document_id: int, file_name: str, chunks: list[Chunk], title: str = "", snippet_sentences: int = 0
) -> list[Entry]:
    """A document's chunks as entries: embedded and indexed with the title and section heading.

    ``snippet_sentences``: also embed every run of that many consecutive sentences of each chunk,
    with the same title and heading (``ingest.snippets``); 0 for none."""
    title = (title or Path(file_name).stem.replace("_", " "))[:MAX_TITLE_CHARS]
    entries = []
    for chunk in chunks:
        context = " — ".join(filter(None, [title, chunk.heading[:MAX_TITLE_CHARS]]))
        body = len(context) + 1  # where chunk.text starts in embed_text
        spans = snippet_spans(chunk.text, snippet_sentences)
        entries.append(
            Entry(
                node_id=node_id(document_id, chunk.index),
                text=chunk.text,
                embed_text=f"{context}\n{chunk.text}",
                # The heading helps the vector; in BM25 a carried-over heading matches questions
                # about the previous section (3 vs 4 covered questions refused on the library set).
                lexical_text=f"{title}\n{chunk.text}",
                snippets=[f"{context}\n{snippet_text(chunk.text, ranges)}" for ranges in spans],
                # Read off the chunk's pass instead (NANOSENTRI_INGEST_SNIPPET_VECTORS=chunk): the title
                # and heading and the snippet's sentences, as the chunk's pass read them.
                snippet_spans=[[(0, len(context))] + [(body + a, body + b) for a, b in ranges] for ranges in spans],
                group=str(document_id),
                metadata={
                    "document_id": str(document_id),
                    "file_name": file_name,
                    "page": chunk.page,
                    "chunk_index": chunk.index,
                    "title": title,
                    "heading": chunk.heading,
                    # "ocr": recognised from a scan, so a citation can say its words may be misread
                    "source": getattr(chunk, "source", "text"),
                },
            )
        )
    return entries


def embed_entries(entries: list[Entry], embed, embed_spans=None) -> list[list[float]]:
    """The entries' vectors; each entry keeps its snippets' vectors in ``snippet_vectors``.

    With ``embed_spans`` (a function of texts and their spans, as ``Embedder.embed_spans``), a
    snippet's vector is read off its chunk's pass (``snippet_spans``); without it, the snippets are
    embedded alone, in the same call of ``embed`` (a function of a list of texts) as the chunks.
    """
    if embed_spans is not None:
        vectors, parts = embed_spans([e.embed_text for e in entries], [e.snippet_spans for e in entries])
        for entry, snippet_vectors in zip(entries, parts):
            entry.snippet_vectors = snippet_vectors
        return list(vectors)
    texts = [e.embed_text for e in entries] + [s for e in entries for s in e.snippets]
    vectors = embed(texts)
    start = len(entries)
    for entry in entries:
        entry.snippet_vectors = vectors[start:start + len(entry.snippets)]
        start += len(entry.snippets)
    return list(vectors[:len(entries)])


class SearchIndex:
    """Add, delete and search entries of one collection, by vector and by BM25."""

    def __init__(self, vector_store, embedder, *, reopen=None, generation: Generation | None = None):
        self._store = vector_store
        self._embedder = embedder
        self._reopen = reopen
        self._generation = generation or LocalGeneration()
        self._lock = threading.RLock()
        self._built = threading.Condition(self._lock)
        self._seen = self._generation.read()
        self._lexical: _Lexical | None = None  # the BM25 statistics of the entries as they are now
        self._stale: _Lexical | None = None  # the previous ones, served while another thread rebuilds
        self._building = False

    @property
    def store(self):
        return self._store

    @property
    def embedder(self):
        return self._embedder

    # ---------------------------------------------------------------- freshness

    def fresh(self) -> "SearchIndex":
        """Re-open the store and forget the BM25 statistics if another process wrote since."""
        current = self._generation.read()
        if current != self._seen:
            self.refresh(current)
        return self

    def refresh(self, seen=None) -> None:
        with self._lock:  # never while a search is using the old client
            if self._reopen is not None:
                self._store = self._reopen()
            self._outdated()
            self._seen = self._generation.read() if seen is None else seen

    def _written(self) -> None:
        with self._lock:
            self._outdated()
            self._seen = self._generation.bump()

    def _outdated(self) -> None:
        if self._lexical is not None:
            self._stale = self._lexical
        self._lexical = None

    # ---------------------------------------------------------------- writes

    def add_entries(self, entries: list[Entry], embeddings: list[list[float]], *, replace: bool = True) -> None:
        """Write ``entries`` with their vectors. ``replace`` first removes entries of the same ids; an
        ingest that removed its document's entries before its first window passes False, since
        that removal already took them (a third of the write time of the seven shared manuals)."""
        from llama_index.core.schema import NodeRelationship, RelatedNodeInfo, TextNode

        nodes = []
        for entry, embedding in zip(entries, embeddings, strict=True):
            metadata = {**entry.metadata, TERMS_KEY: " ".join(analyze(entry.lexical_text))}
            if entry.snippet_vectors is not None and len(entry.snippet_vectors):
                metadata[SNIPPETS_KEY] = pack(entry.snippet_vectors)
            relationships = {}
            if entry.group:
                relationships[NodeRelationship.SOURCE] = RelatedNodeInfo(node_id=entry.group)
            nodes.append(
                TextNode(
                    id_=entry.node_id,
                    text=entry.text,
                    embedding=embedding,
                    metadata=metadata,
                    excluded_embed_metadata_keys=list(metadata),
                    excluded_llm_metadata_keys=list(metadata),
                    relationships=relationships,
                )
            )
        if not nodes:
            return
        with self._lock:
            if replace:
                self._store.delete_nodes(node_ids=[n.node_id for n in nodes])
            self._store.add(nodes)
        self._written()

    def add(self, *, document_id: int, file_name: str, chunks: list[Chunk], embeddings: list[list[float]],
            title: str = "") -> None:
        """Index a document's chunks with vectors already made (``embeddings``, one per chunk)."""
        self.add_entries(chunk_entries(document_id=document_id, file_name=file_name, chunks=chunks, title=title),
                         embeddings)

    def delete_group(self, group: str) -> None:
        with self._lock:
            self._store.delete(ref_doc_id=group)
        self._written()

    def delete_document(self, document_id: int) -> None:
        self.delete_group(str(document_id))

    def delete_ids(self, ids: list[str]) -> None:
        with self._lock:
            self._store.delete_nodes(node_ids=ids)
        self._written()

    def clear(self) -> None:
        with self._lock:
            ids = self._store.client.get(include=[])["ids"]
            if ids:
                self._store.delete_nodes(node_ids=ids)
        self._written()

    def count(self) -> int:
        return self._store.client.count()

    # ---------------------------------------------------------------- reads

    def vector_search(self, embedding: list[float], *, top_k: int, where: dict | None = None) -> list[Hit]:
        """The ``top_k`` nearest entries; ``where``: {metadata key: value or list of values}.

        Asks the Chroma collection directly (embedded or HTTP alike): llama-index's query wrapper
        rebuilds a node from every hit's serialized copy, 2.5x the time of the query itself. When
        this process holds the current generation's entries in memory (the BM25 statistics keep
        their texts and metadata), Chroma is asked for ids and distances only: reading 30 hits'
        texts and metadata from its store was half the query's time at 100,000 passages.
        """
        lexical = self._lexical  # current: no write since it was built (else None)
        if lexical is not None and where:
            rows = lexical.rows_where(where)
            if len(rows) <= EXACT_SEARCH_MAX_ROWS:
                return _exact_search(lexical, rows, embedding, top_k)
        include = ["distances"] if lexical is not None else ["documents", "metadatas", "distances"]
        with self._lock:
            collection = self._store.client
            result = collection.query(
                query_embeddings=[list(embedding)], n_results=top_k, where=_chroma_where(where), include=include,
            )
        ids, distances = result["ids"][0], result["distances"][0]
        if lexical is not None:
            rows = [lexical.position.get(entry_id) for entry_id in ids]
            if None not in rows:
                return [Hit(entry_id, lexical.metadatas[row], lexical.texts[row], 1.0 - float(distance))
                        for entry_id, row, distance in zip(ids, rows, distances, strict=True)]
            stored = self.fetch(ids)  # written since: read them from the store
            return [Hit(i, stored[i].metadata, stored[i].text, 1.0 - float(d))
                    for i, d in zip(ids, distances, strict=True) if i in stored]
        hits = []
        for entry_id, text, metadata, distance in zip(
            ids, result["documents"][0], result["metadatas"][0], distances, strict=True
        ):
            metadata = _public(dict(metadata or {}))
            hits.append(Hit(entry_id, metadata, text or "", 1.0 - float(distance)))
        return hits

    def lexical_search(self, terms: list[str], *, top_k: int, where: dict | None = None) -> list[Hit]:
        """The ``top_k`` best BM25 matches for ``terms`` (``where`` as in ``vector_search``)."""
        lexical = self._lexical_index()
        rows = lexical.rows_where(where) if where else None
        return [Hit(lexical.ids[hit.position], lexical.metadatas[hit.position], "", 0.0, hit.score)
                for hit in lexical.bm25.top(terms, top_k, rows)]

    def lexical_stats(self) -> BM25:
        return self._lexical_index().bm25

    def fetch(self, ids: list[str], query_vector: list[float] | None = None) -> dict[str, Hit]:
        """Entries by id, with their text and, given ``query_vector``, their cosine to it."""
        if not ids:
            return {}
        lexical = self._lexical
        if lexical is not None and all(i in lexical.position for i in ids):
            return self._fetch_cached(lexical, ids, query_vector)
        include = ["documents", "metadatas"] + (["embeddings"] if query_vector is not None else [])
        with self._lock:
            got = self._store.client.get(ids=list(ids), include=include)
        query = np.asarray(query_vector, dtype=np.float32) if query_vector is not None else None
        found = {}
        embeddings = got.get("embeddings") if query is not None else None
        for i, entry_id in enumerate(got["ids"]):
            metadata = dict(got["metadatas"][i] or {})
            score = 0.0
            if embeddings is not None:
                vector = np.asarray(embeddings[i], dtype=np.float32)
                norm = float(np.linalg.norm(vector) * np.linalg.norm(query)) or 1.0
                score = float(vector @ query) / norm
            found[entry_id] = Hit(entry_id, _public(metadata), got["documents"][i] or "", score)
        return found

    @staticmethod
    def _fetch_cached(lexical: _Lexical, ids: list[str], query_vector) -> dict[str, Hit]:
        rows = [lexical.position[i] for i in ids]
        scores = [0.0] * len(rows)
        if query_vector is not None:
            query = np.asarray(query_vector, dtype=np.float32)
            scores = (lexical.vectors[rows] @ (query / (float(np.linalg.norm(query)) or 1.0))).tolist()
        return {
            i: Hit(i, lexical.metadatas[row], lexical.texts[row], score)
            for i, row, score in zip(ids, rows, scores, strict=True)
        }

    def snippet_cosines(self, ids: list[str], query_vector: list[float]) -> dict[str, float]:
        """{id: the best cosine of ``query_vector`` with the entry's snippets}, for the entries of
        ``ids`` that have snippets (``ingest.snippets``). Read from memory when this process holds
        the current entries, from the store otherwise."""
        if not ids:
            return {}
        query = np.asarray(query_vector, dtype=np.float32)
        query = query / (float(np.linalg.norm(query)) or 1.0)
        lexical = self._lexical
        if lexical is not None and all(i in lexical.position for i in ids):
            stored = {i: lexical.snippets[lexical.position[i]] for i in ids}
        else:
            with self._lock:
                got = self._store.client.get(ids=list(ids), include=["metadatas"])
            stored = {i: unpack((m or {}).get(SNIPPETS_KEY, "")) for i, m in zip(got["ids"], got["metadatas"])}
        best = {i: best_cosine(vectors, query) for i, vectors in stored.items()}
        return {i: score for i, score in best.items() if score is not None}

    def _lexical_index(self) -> _Lexical:
        """The BM25 statistics, built on first use and after every write.

        Building them reads every entry: seconds at 100,000 passages. While one thread rebuilds
        (the web process's index follower, or the first question after a write), the others search
        the previous statistics instead of waiting; their hits are then read from the store, not
        from the previous texts (``fetch``), so a deleted or re-indexed passage is never shown as it
        was. The first build of a process, with nothing to serve meanwhile, is waited for.
        """
        with self._built:
            while self._lexical is None and self._building:
                if self._stale is not None:
                    return self._stale
                self._built.wait()
            if self._lexical is not None:
                return self._lexical
            self._building = True
            store, seen = self._store, self._seen
        lexical = None
        try:
            lexical = self._load_lexical(store)
        finally:
            with self._built:
                self._building = False
                if lexical is not None and seen == self._seen:
                    self._lexical, self._stale = lexical, None
                elif lexical is not None:  # written again meanwhile: newer than the stale ones, not current
                    self._stale = lexical
                self._built.notify_all()
        return lexical

    @staticmethod
    def _load_lexical(store) -> _Lexical:
        """Read every entry's stored terms (in batches) and build the BM25 statistics."""
        collection = store.client
        ids, metadatas, texts, vectors, documents, snippet_vectors = [], [], [], [], [], []
        offset = 0
        while True:
            got = collection.get(include=["metadatas", "documents", "embeddings"], limit=_READ_BATCH, offset=offset)
            if not len(got["ids"]):
                break
            for entry_id, metadata, text, vector in zip(
                got["ids"], got["metadatas"], got["documents"], got["embeddings"], strict=True
            ):
                metadata = dict(metadata or {})
                documents.append(str(metadata.pop(TERMS_KEY, "")).split())
                snippet_vectors.append(unpack(metadata.pop(SNIPPETS_KEY, "")))
                ids.append(entry_id)
                metadatas.append(_public(metadata))
                texts.append(text or "")
                vectors.append(vector)
            offset += len(got["ids"])
            if len(got["ids"]) < _READ_BATCH:
                break
        matrix = np.asarray(vectors, dtype=np.float32) if ids else np.zeros((0, 0), dtype=np.float32)
        norms = np.linalg.norm(matrix, axis=1, keepdims=True)
        return _Lexical(
            ids=ids, metadatas=metadatas, texts=texts, vectors=matrix / np.where(norms == 0, 1.0, norms),
            bm25=BM25(documents), position={entry_id: i for i, entry_id in enumerate(ids)},
            snippets=snippet_vectors,
        )


# A filtered search (an asset's manuals, the manuals a question names) over at most this many entries
# is done exactly in memory: Chroma's metadata pre-filter took 18-55 ms at 100,000 passages.
EXACT_SEARCH_MAX_ROWS = 50_000


def _exact_search(lexical: _Lexical, rows: np.ndarray, embedding: list[float], top_k: int) -> list[Hit]:
    """The ``top_k`` nearest of ``rows`` by cosine, from the unit vectors held in memory."""
    if not len(rows):
        return []
    query = np.asarray(embedding, dtype=np.float32)
    query = query / (float(np.linalg.norm(query)) or 1.0)
    scores = lexical.vectors[rows] @ query
    return [Hit(lexical.ids[rows[i]], lexical.metadatas[rows[i]], lexical.texts[rows[i]], float(scores[i]))
            for i in best_positions(scores, top_k)]


def _public(metadata: dict) -> dict:
    """Our metadata without llama-index's bookkeeping keys and without what only the index reads
    (the BM25 terms, the snippets' vectors)."""
    hidden = ("doc_id", "ref_doc_id", TERMS_KEY, SNIPPETS_KEY)
    return {k: v for k, v in metadata.items() if not k.startswith("_") and k not in hidden}


def _chroma_where(where: dict | None) -> dict | None:
    """{key: value or [values]} as a Chroma filter (metadata values are stored as strings)."""
    if not where:
        return None
    clauses = [
        {key: {"$in": [str(v) for v in value]} if isinstance(value, list) else {"$eq": str(value)}}
        for key, value in where.items()
    ]
    return clauses[0] if len(clauses) == 1 else {"$and": clauses}


def build_vector_store(mode: str, *, path: Path | None = None, host: str = "", port: int = 0, collection: str = "manuals"):
    """Create the llama-index vector store for ``mode``.

    chroma: embedded, persistent under ``path``; chroma-http: a Chroma server;
    memory: Chroma in memory (nothing kept; tests and throwaway runs).
    """
    try:
        import chromadb
        from chromadb.config import Settings as ChromaSettings
        from llama_index.vector_stores.chroma import ChromaVectorStore
    except ImportError as exc:
        raise RuntimeError(f"Chroma support is not installed: {exc}") from exc
    chroma_settings = ChromaSettings(anonymized_telemetry=False, allow_reset=False)
    if mode == "memory":
        client = chromadb.EphemeralClient(settings=chroma_settings)
    elif mode == "chroma-http":
        client = chromadb.HttpClient(host=host, port=port, settings=chroma_settings)
    elif mode == "chroma":
        assert path is not None
        path.mkdir(parents=True, exist_ok=True)
        client = chromadb.PersistentClient(path=str(path), settings=chroma_settings)
    else:
        raise ValueError(f"unknown vector store mode {mode!r}")
    # embedding_function=None: never let Chroma fetch or run its default embedder.
    coll = client.get_or_create_collection(
        name=collection, metadata={"hnsw:space": "cosine"}, embedding_function=None
    )
    return ChromaVectorStore(chroma_collection=coll)
