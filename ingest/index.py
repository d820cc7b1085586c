"""The vector store component: Chroma (embedded or HTTP) or llama-index's in-memory store.

Every write and query goes through llama-index (TextNode, VectorStoreIndex retriever) with our
own embedder, so no llama-index default (OpenAI) model is ever touched.
"""
from __future__ import annotations

import logging
import math
import threading
from dataclasses import dataclass
from pathlib import Path

from ingest.chunk import Chunk

log = logging.getLogger(__name__)


@dataclass
class Passage:
    document_id: int
    file_name: str
    page: int
    chunk_index: int
    text: str
    score: float  # cosine similarity to the query
    boost: float = 0.0  # added for ranking by thumbs-up on similar questions (docs/feedback.md)

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


def node_id(document_id: int, chunk_index: int) -> str:
    return f"doc{document_id}-chunk{chunk_index}"


class VectorIndex:
    """Add, delete and search the chunks of documents, keyed by document id."""

    def __init__(self, vector_store, embedder, *, reopen=None):
        self._store = vector_store
        self._embedder = embedder
        self._reopen = reopen
        self._lock = threading.Lock()
        self.generation = None  # set by the caller to notice writes made elsewhere

    @property
    def store(self):
        return self._store

    @property
    def embedder(self):
        return self._embedder

    def refresh(self) -> None:
        """Re-open the store so writes made by another process (the worker) are seen."""
        if self._reopen is not None:
            with self._lock:  # never while a search is using the old client
                self._store = self._reopen()

    def add(self, *, document_id: int, file_name: str, chunks: list[Chunk], embeddings: list[list[float]]) -> None:
        from llama_index.core.schema import NodeRelationship, RelatedNodeInfo, TextNode

        nodes = []
        for chunk, embedding in zip(chunks, embeddings, strict=True):
            nodes.append(
                TextNode(
                    id_=node_id(document_id, chunk.index),
                    text=chunk.text,
                    embedding=embedding,
                    metadata={
                        "document_id": str(document_id),
                        "file_name": file_name,
                        "page": chunk.page,
                        "chunk_index": chunk.index,
                    },
                    excluded_embed_metadata_keys=["document_id", "file_name", "page", "chunk_index"],
                    excluded_llm_metadata_keys=["document_id", "chunk_index"],
                    relationships={NodeRelationship.SOURCE: RelatedNodeInfo(node_id=str(document_id))},
                )
            )
        if nodes:
            self._store.add(nodes)

    def delete_document(self, document_id: int) -> None:
        self._store.delete(ref_doc_id=str(document_id))

    def search(self, query: str, top_k: int, *, embedding: list[float] | None = None) -> list[Passage]:
        """The ``top_k`` nearest chunks. ``embedding``: the query's vector when the caller already
        made it with this index's embedder (it is then not embedded again)."""
        from llama_index.core import VectorStoreIndex
        from llama_index.core.schema import QueryBundle

        from models.embedding import as_llama_index

        with self._lock:
            index = VectorStoreIndex.from_vector_store(self._store, embed_model=as_llama_index(self._embedder))
            retriever = index.as_retriever(similarity_top_k=top_k)
            results = retriever.retrieve(QueryBundle(query_str=query, embedding=embedding))
        passages = []
        for hit in results:
            meta = hit.node.metadata
            try:
                passages.append(
                    Passage(
                        document_id=int(meta["document_id"]),
                        file_name=str(meta.get("file_name", "")),
                        page=int(meta.get("page", 0)),
                        chunk_index=int(meta.get("chunk_index", 0)),
                        text=hit.node.get_content(),
                        score=cosine_from_chroma(hit.score),
                    )
                )
            except (KeyError, ValueError):
                log.warning("skipping a stored chunk without document metadata: %s", hit.node.node_id)
        return passages


def cosine_from_chroma(score: float | None) -> float:
    """llama-index reports Chroma hits as exp(-cosine distance); give back cosine similarity.

    Cosine similarity is what thresholds are set in (1 same direction, 0 unrelated).
    """
    if not score or score <= 0:
        return -1.0
    return 1.0 + math.log(score)


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
