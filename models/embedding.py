"""The embedding model runtime: sentence-transformers (default) or a mock, chosen by settings.

``get_embedder()`` returns one instance per process. ``as_llama_index(embedder)`` wraps it for
llama-index so no llama-index default (OpenAI) embedder is ever used.
"""
from __future__ import annotations

import contextlib
import hashlib
import math
import os
import re
import threading
from typing import Protocol

from django.conf import settings

from models.errors import ModelUnavailable


class Embedder(Protocol):
    name: str
    dimension: int
    max_tokens: int

    def embed(self, texts: list[str], batch_size: int = 64) -> list[list[float]]: ...

    def embed_queries(self, texts: list[str]) -> list[list[float]]: ...

    def embed_spans(self, texts: list[str], spans: list, batch_size: int = 64) -> tuple[list, list]: ...

    def tokenize(self, text: str) -> list[str]: ...


# Query texts remembered per thread: an answer's thread embeds its question, each further part of
# it and the past-incident search's text ahead, in one pass, and asks for them again one by one.
THREAD_MEMO = 8
WAVE_QUESTIONS = 4  # a pass of this many questions asked together runs on all cores (_threads_for)


class SentenceTransformerEmbedder:
    """all-MiniLM-L6-v2 (or another sentence-transformers folder), on the CPU, normalized."""

    def __init__(self, model_path: str, *, batch_tokens: int = 0, query_memo: int = 64):
        try:
            from sentence_transformers import SentenceTransformer
            from transformers.utils import logging as hf_logging
        except ImportError:
            raise ModelUnavailable("sentence-transformers is not installed") from None
        # The chunker measures whole pages with this tokenizer; "longer than 256" is expected.
        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
        self.name = str(model_path)
        self._model = SentenceTransformer(str(model_path), device="cpu", local_files_only=True)
        get_dimension = getattr(self._model, "get_embedding_dimension", None) or self._model.get_sentence_embedding_dimension
        self.dimension = int(get_dimension())
        self.max_tokens = int(self._model.max_seq_length)
        self._tokenizer = self._model.tokenizer
        # Token positions per forward pass (0: sentence-transformers' own batching; see embed()).
        self.batch_tokens = max(0, int(batch_tokens))
        # torch modules are not safe to call from several threads at once.
        self._lock = threading.Lock()
        self._memo: dict[str, list[float]] = {}  # oldest first
        self._thread_memo = threading.local()
        self._waiting: dict = {}  # question → Future of its vector, for the next pass
        self._callers = 0  # how many callers' questions the next pass holds
        self._waiting_lock = threading.Lock()
        self._embedding_queries = False
        self.query_memo = max(0, int(query_memo))

    def embed(self, texts: list[str], batch_size: int = 64) -> list[list[float]]:
        if not texts:
            return []
        if len(texts) == 1:
            return [self._embed_query(texts[0])]
        with self._lock:
            if self.batch_tokens:
                vectors = self._encode_by_length(list(texts), batch_size)
            else:
                vectors = self._encode(list(texts), batch_size)
        return vectors.tolist()

    def _embed_query(self, text: str) -> list[float]:
        return self.embed_queries([text])[0]

    def embed_queries(self, texts: list[str]) -> list[list[float]]:
        """Query texts, remembered: an answer embeds its question for the manuals and again for the
        past incidents (``query_memo`` texts per process, NANOSENTRI_EMBEDDING_QUERY_MEMO). The texts
        of one call go through the model in one pass: a question and its parts cost little more
        than the question alone (MiniLM's passes over a few short texts cost about the same).

        Questions asked at the same moment are embedded together: while one pass runs, the
        questions that arrive wait for the next, which takes all of them at once. Fifty chats
        asking together cost a few passes instead of fifty (padding is masked out, so each vector
        is the one the question gets alone, up to float rounding).
        """
        mine = getattr(self._thread_memo, "vectors", None)  # this thread's last questions, whatever
        if mine is None:                                     # the other chats ask meanwhile
            mine = self._thread_memo.vectors = {}
        found = {t: mine.get(t) or self._memo.get(t) for t in dict.fromkeys(texts)}
        missing = [t for t, vector in found.items() if vector is None]
        if missing:
            found.update(zip(missing, self._embed_together(missing)))
            if self.query_memo:
                with self._waiting_lock:  # answer threads share the memo
                    for text in missing:
                        self._memo[text] = found[text]
                    while len(self._memo) > self.query_memo:
                        self._memo.pop(next(iter(self._memo)), None)
        for text, vector in found.items():
            mine.pop(text, None)
            mine[text] = vector  # the most recent last
        while len(mine) > THREAD_MEMO:
            mine.pop(next(iter(mine)), None)
        return [list(found[t]) for t in texts]

    def _embed_together(self, texts: list[str]) -> list[list[float]]:
        from concurrent.futures import Future

        with self._waiting_lock:
            futures = []
            for text in texts:
                future = self._waiting.get(text)
                if future is None:
                    future = self._waiting[text] = Future()
                futures.append(future)
            self._callers += 1
            leads = not self._embedding_queries
            if leads:
                self._embedding_queries = True
        while leads:  # the first caller runs passes until nobody waits
            with self._waiting_lock:
                batch = dict(self._waiting)
                callers, self._callers = self._callers, 0
                self._waiting.clear()
                if not batch:
                    self._embedding_queries = False
                    break
            try:
                # A wave of chats takes both cores; one chat's question and its parts, one thread.
                with self._lock, _threads_for(callers):
                    vectors = self._encode(list(batch), len(batch))
            except BaseException as exc:
                for waiting in batch.values():
                    waiting.set_exception(exc)
                continue
            for waiting, row in zip(batch.values(), vectors):
                waiting.set_result(row.tolist())
        return [future.result() for future in futures]

    def _encode(self, texts: list[str], batch_size: int):
        return self._model.encode(
            texts,
            batch_size=batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )

    def embed_spans(self, texts: list[str], spans: list[list[list[tuple[int, int]]]],
                    batch_size: int = 64) -> tuple[list[list[float]], list[list[list[float]]]]:
        """Each text's vector, and a vector for each part of it, from the same pass over the text.

        ``spans[i]`` lists parts of ``texts[i]``, each as the (start, end) character ranges it
        covers. A part's vector is the mean of the model's output for the word pieces in its
        ranges, normalized: the part as the model read it within the whole text ("late chunking";
        MiniLM's own vector is the mean over all of the text's word pieces). It costs no pass of
        its own, where embedding each part alone cost the ingest 2.7 times the word pieces
        (docs/benchmarks.md §2). A part none of whose word pieces the model read (cut at
        max_tokens) gets the text's vector.
        """
        import numpy as np
        import torch

        vectors = np.empty((len(texts), self.dimension), dtype=np.float32)
        parts: list[list[list[float]]] = [[] for _ in texts]
        for batch in self._passes(texts, batch_size):
            encoded = self._tokenizer([texts[i] for i in batch], padding=True, truncation=True,
                                      max_length=self.max_tokens, return_offsets_mapping=True, return_tensors="pt")
            offsets = encoded.pop("offset_mapping").numpy()
            with self._lock, torch.inference_mode():
                output = self._model(dict(encoded))
            tokens = output["token_embeddings"].float().numpy()
            vectors[batch] = output["sentence_embedding"].float().numpy()
            for row, i in enumerate(batch):
                starts, ends = offsets[row, :, 0], offsets[row, :, 1]
                read = ends > starts  # a word piece of the text: not [CLS], [SEP] or padding
                for ranges in spans[i]:
                    inside = np.zeros_like(read)
                    for start, end in ranges:
                        inside |= read & (starts < end) & (ends > start)
                    if inside.any():
                        pooled = tokens[row][inside].mean(axis=0)
                        parts[i].append((pooled / (np.linalg.norm(pooled) or 1.0)).tolist())
                    else:
                        parts[i].append(vectors[i].tolist())
        return vectors.tolist(), parts

    def _passes(self, texts: list[str], batch_size: int) -> list[list[int]]:
        """Indexes of ``texts`` in forward passes: by length when ``batch_tokens`` is set (see
        ``_encode_by_length``), else ``batch_size`` at a time, longest first as sentence-transformers does."""
        if self.batch_tokens:
            return self.length_batches(texts, batch_size)
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        return [order[start:start + batch_size] for start in range(0, len(order), batch_size)]

    def forget_queries(self) -> None:
        """Forget the remembered question vectors (benchmarks time every question's embedding)."""
        with self._waiting_lock:
            self._memo.clear()
        self._thread_memo = threading.local()

    def token_lengths(self, texts: list[str]) -> list[int]:
        """Token positions of each text as the model reads it: [CLS] and [SEP] included, cut at max_tokens."""
        encoded = self._tokenizer(list(texts), add_special_tokens=True, truncation=True, max_length=self.max_tokens,
                                  return_attention_mask=False, return_token_type_ids=False)
        return [len(ids) for ids in encoded["input_ids"]]

    def length_batches(self, texts: list[str], batch_size: int) -> list[list[int]]:
        """Indexes of ``texts`` in forward passes: longest first, each pass padded to its first
        (longest) text and holding at most ``batch_tokens`` positions and ``batch_size`` texts."""
        lengths = self.token_lengths(texts)
        order = sorted(range(len(texts)), key=lambda i: -lengths[i])
        batches: list[list[int]] = []
        for i in order:
            current = batches[-1] if batches else None
            if (current and len(current) < batch_size
                    and (len(current) + 1) * lengths[current[0]] <= self.batch_tokens):
                current.append(i)
            else:
                batches.append([i])
        return batches

    def _encode_by_length(self, texts: list[str], batch_size: int):
        """The same vectors as one encode() call, computed in passes of texts of similar length.

        sentence-transformers sorts a call's texts by characters and pads each batch of
        ``batch_size`` to its longest text; sorting by word pieces wastes fewer padding positions,
        and passes of at most ``batch_tokens`` positions were faster with one torch thread
        (docs/benchmarks.md §2; with several threads on a busy machine, more passes cost more).
        Padding is masked out, so each vector is what the model gives the text alone, up to
        float rounding.
        """
        import numpy as np

        vectors = np.empty((len(texts), self.dimension), dtype=np.float32)
        for batch in self.length_batches(texts, batch_size):
            vectors[batch] = self._encode([texts[i] for i in batch], len(batch))
        return vectors

    def tokenize(self, text: str) -> list[str]:
        return self._tokenizer.tokenize(text)


_WORD = re.compile(r"[a-z0-9]+")


class MockEmbedder:
    """A deterministic hashed bag-of-words embedder for fast unit tests.

    Texts sharing words get similar vectors, so retrieval behaves sensibly without a model.
    """

    name = "mock"
    dimension = 384
    max_tokens = 256

    def tokenize(self, text: str) -> list[str]:
        return text.split()

    def _vector(self, text: str) -> list[float]:
        vec = [0.0] * self.dimension
        for word in _WORD.findall(text.lower()):
            h = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=8).digest(), "big")
            vec[h % self.dimension] += 1.0 if (h >> 32) & 1 else -1.0
        norm = math.sqrt(sum(v * v for v in vec)) or 1.0
        return [v / norm for v in vec]

    def embed(self, texts: list[str], batch_size: int = 64) -> list[list[float]]:
        return [self._vector(t) for t in texts]

    def embed_queries(self, texts: list[str]) -> list[list[float]]:
        return self.embed(texts)

    def embed_spans(self, texts: list[str], spans, batch_size: int = 64):
        """The texts' vectors and, for each part, the vector of its words (no context in a bag of words)."""
        parts = [[self._vector(" ".join(text[start:end] for start, end in ranges)) for ranges in text_spans]
                 for text, text_spans in zip(texts, spans)]
        return [self._vector(t) for t in texts], parts


_instances: dict[tuple, Embedder] = {}
_instance_lock = threading.Lock()


def get_embedder() -> Embedder:
    """The process-wide embedder for the current settings, loaded on first use."""
    key = (settings.NANOSENTRI_EMBEDDING_BACKEND, settings.NANOSENTRI_EMBEDDING_MODEL)
    embedder = _instances.get(key)
    if embedder is None:
        with _instance_lock:
            embedder = _instances.get(key)
            if embedder is None:
                embedder = _instances[key] = _build()
    return embedder


def _build() -> Embedder:
    backend = settings.NANOSENTRI_EMBEDDING_BACKEND
    if backend == "mock":
        return MockEmbedder()
    from models.paths import embedding_model_path

    return SentenceTransformerEmbedder(str(embedding_model_path()),
                                       batch_tokens=settings.NANOSENTRI_EMBEDDING_BATCH_TOKENS,
                                       query_memo=settings.NANOSENTRI_EMBEDDING_QUERY_MEMO)


@contextlib.contextmanager
def _threads_for(questions: int):
    """torch's threads for one pass of questions asked together.

    A lone question is embedded on the threads the process was given (the web process gives torch
    one, so that it never takes a core from the local model: docs/benchmarks.md §1). A pass of
    several questions at once (a wave of chats) is worth both cores: every one of those chats waits
    for it, and the local model gives way meanwhile (``models.llm.queue``). 49 questions took
    340 ms on two threads against 550 ms on one (2-vCPU Xeon).
    """
    wide = settings.NANOSENTRI_EMBEDDING_WAVE_THREADS or os.cpu_count() or 1
    if questions < WAVE_QUESTIONS:
        yield
        return
    try:
        import torch
    except ImportError:
        yield
        return
    before = torch.get_num_threads()
    if wide <= before:
        yield
        return
    torch.set_num_threads(wide)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def set_torch_threads(threads: int) -> int | None:
    """torch's intra-op threads for this process (0 or less: leave torch's default); the count in force, or None without torch."""
    try:
        import torch
    except ImportError:
        return None
    if threads > 0 and torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return torch.get_num_threads()


def reset_embedder() -> None:
    """Forget the loaded embedders."""
    with _instance_lock:
        _instances.clear()


def as_llama_index(embedder: Embedder, batch_size: int | None = None):
    """Wrap an Embedder as a llama-index BaseEmbedding."""
    from llama_index.core.base.embeddings.base import BaseEmbedding
    from pydantic import PrivateAttr

    class _Adapter(BaseEmbedding):
        _embedder: Embedder = PrivateAttr()

        def __init__(self, inner: Embedder, **kwargs):
            super().__init__(model_name=inner.name, **kwargs)
            self._embedder = inner

        def _get_query_embedding(self, query: str) -> list[float]:
            return self._embedder.embed([query])[0]

        def _get_text_embedding(self, text: str) -> list[float]:
            return self._embedder.embed([text])[0]

        def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
            return self._embedder.embed(texts, batch_size=self.embed_batch_size)

        async def _aget_query_embedding(self, query: str) -> list[float]:
            return self._get_query_embedding(query)

        async def _aget_text_embedding(self, text: str) -> list[float]:
            return self._get_text_embedding(text)

    kwargs = {"embed_batch_size": batch_size} if batch_size else {}
    return _Adapter(embedder, **kwargs)


