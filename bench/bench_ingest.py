#!/usr/bin/env python
"""Ingest throughput at equal coverage: the app's pipeline vs llama-index's default pipeline with
its chunk size set so that the embedder truncates nothing, same manuals, same embedder.

    .venv/bin/python bench/bench_ingest.py --runs 5

* **app**: ``ingest.pipeline.ingest_file`` for every manual, one after the other as the worker
  takes them, with the app's embedder (``models.embedding.get_embedder()``: all-MiniLM-L6-v2 on
  the CPU, NANOSENTRI_EMBEDDING_BATCH_TOKENS), torch's threads as the worker sets them
  (``apps.knowledge.tasks.embedding_threads_apply``: NANOSENTRI_WORKER_EMBEDDING_THREADS), a real
  persistent Chroma store in a fresh temporary folder per run, and the app's settings
  (NANOSENTRI_CHUNK_TOKENS, _CHUNK_OVERLAP, _EMBEDDING_BATCH, _INGEST_WINDOW_PAGES,
  _INGEST_READER). No OCR (the llama-index reader has none either). The progress callback is a
  no-op.
* **app, reader thread** (or **app, reader process** when NANOSENTRI_INGEST_READER is
  ``thread``): the app with its pages read by the other reader (``ingest_file(page_reader=...)``),
  so the reader process and the reader thread are compared in the same runs. The reader process
  is started by the warm-up and kept, as in the worker.
* **app, no snippets**: the app with NANOSENTRI_INGEST_SNIPPET_SENTENCES=0, its chunks' vectors
  only (what the snippets cost at ingest; ``ingest/snippets.py``).
* **app, snippets off the chunk** (or **app, snippets alone** when NANOSENTRI_INGEST_SNIPPET_VECTORS
  is ``chunk``): the app with its snippets' vectors made the other way (``ingest_file(snippet_vectors=...)``).
* **llama-index**: ``SimpleDirectoryReader(input_files=...).load_data()`` then
  ``VectorStoreIndex.from_documents(docs, embed_model=as_llama_index(<the same model>),
  transformations=[SentenceSplitter(chunk_size=C, chunk_overlap=O, tokenizer=T)])``, everything
  else default (embed batch 10, in-memory SimpleVectorStore, ``Settings.llm = None``). C is the
  largest chunk size at which no text llama-index embeds on these manuals (its metadata
  included, as it embeds them) is longer than the 254 word pieces MiniLM reads; O keeps the
  default's share of overlap (200 of 1024). T is MiniLM's tokenizer (``--tokenizer minilm``,
  the default), so C is in word pieces: in llama-index's own units (tiktoken, ``--tokenizer
  tiktoken``) the table-of-contents pages' dot leaders are ~7 word pieces per tiktoken token,
  and only a chunk size of a few dozen tokens (most of it the metadata, thousands of chunks)
  truncates nothing; the report gives that calibration too. Its embedder is the same loaded
  model called as sentence-transformers does by default (batches sorted by characters), with
  torch's default threads: llama-index sets neither. A second arm runs it with the app's torch
  threads, so the reader sees how much of the ratio is the thread count.
  SimpleDirectoryReader reads PDFs with llama-index-readers-file's ``PDFReader`` when installed;
  it is not a dependency of this project (and pins pypdf<7), so the bench passes an equivalent
  reader (same pypdf calls, same metadata) as ``file_extractor`` and says so.
* **app options**: the app with one ingest option at a time turned back (torch's default threads;
  sentence-transformers' own batching; both, i.e. the app before these options), so each option
  is measured in the same run as the rest.

Everything runs in this process with the model loaded and warmed before timing, one untimed
warm-up of each arm, then every arm once per run in a rotated order, medians. The wrapper
around the embedder records every text each arm embeds, so the report states the chunks and word
pieces each one embedded and checks that neither truncates any. The ratio is given per run with
the load average at the start of that run.
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import io
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    apply_environment,
    bench_environment,
    exit_on_sigterm,
    fmt,
    load_average,
    machine_lines,
    median,
    package_versions,
    table,
)

GOAL_RATIO = 1.5
MANUAL_ORDER = ("SmartEVSE", "Creality_Ender-3_Trouble", "Creality_Ender-3_Quick")
# llama-index's default SentenceSplitter: 1024 tokens, 200 of them overlap.
DEFAULT_CHUNK_SIZE, DEFAULT_CHUNK_OVERLAP = 1024, 200

# Questions for the retrieval-quality check of the int8 experiments (answers are in the manuals).
QUALITY_QUESTIONS = [
    "What does ERROR HIGH TEMP mean and when does charging resume?",
    "The Ender-3 display shows MAX temp. What causes it and how do I fix it?",
    "The SmartEVSE shows ERROR NO SERIAL COM CHECK WIRING. What should I check?",
    "Filament does not stick to the hot bed of the Ender-3. What should I do?",
    "How do I connect the DSIEC-ELB lock to the SmartEVSE?",
    "How many SmartEVSE modules can share one mains supply?",
    "Which resistor between PP and PE means a 32A cable?",
    "Stringing or oozing: what should I change in the slicer?",
    "How do I level the print bed?",
    "What does ERROR NO CURRENT mean?",
]


def say(message: str) -> None:
    print(f"[bench_ingest {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


class CountingEmbedder:
    """Passes everything to an embedder; records each text embedded, each call and the model time."""

    def __init__(self, inner):
        self.inner = inner
        self.name = inner.name
        self.dimension = inner.dimension
        self.max_tokens = inner.max_tokens
        self.reset()

    def reset(self) -> None:
        self.texts: list[str] = []
        self.calls: list[tuple[list[str], int]] = []
        self.seconds = 0.0

    def embed(self, texts, batch_size: int = 64):
        started = time.perf_counter()
        vectors = self.inner.embed(texts, batch_size=batch_size)
        self.seconds += time.perf_counter() - started
        self.calls.append((list(texts), batch_size))
        self.texts.extend(texts)
        return vectors

    def embed_spans(self, texts, spans, batch_size: int = 64):
        started = time.perf_counter()
        result = self.inner.embed_spans(texts, spans, batch_size=batch_size)
        self.seconds += time.perf_counter() - started
        self.calls.append((list(texts), batch_size, spans))
        self.texts.extend(texts)
        return result

    def tokenize(self, text: str):
        return self.inner.tokenize(text)


class StageClock:
    """Times the stages of ingest.pipeline.ingest_file by wrapping the names it calls.

    The wrappers only read a clock around the real functions (microseconds per call), and are
    installed in this bench process only. "parse" is reading in this process: the opening of
    every document, and with the reader thread every page (overlapped with the rest); the pages
    the reader process reads are not in it. "wait" is the time the ingest waited for its next
    page: the part of the reading that did not hide behind the embedding.
    """

    STAGES = ("parse", "wait", "chunk", "embed", "store")

    def __init__(self):
        self.seconds = dict.fromkeys(self.STAGES, 0.0)
        self._saved = {}

    def _wrap(self, stage, fn):
        def wrapper(*args, **kwargs):
            started = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds[stage] += time.perf_counter() - started

        return wrapper

    def _wrap_iter(self, stage, iterate):
        def wrapper(pages):
            items = iterate(pages)
            while True:
                started = time.perf_counter()
                try:
                    item = next(items)
                except StopIteration:
                    return
                finally:
                    self.seconds[stage] += time.perf_counter() - started
                yield item

        return wrapper

    def install(self):
        import ingest.pipeline as pipeline
        from ingest.index import SearchIndex
        from ingest.parse import DocumentReader
        from ingest.read_ahead import PagesAhead
        from ingest.reader_process import PagesInProcess

        for name, stage in (("chunk_window", "chunk"), ("embed_entries", "embed")):
            self._saved[(pipeline, name)] = getattr(pipeline, name)
            setattr(pipeline, name, self._wrap(stage, getattr(pipeline, name)))
        # Reading: opening the document (title, page count) and reading each page.
        for name in ("__init__", "_read_pdf_page"):
            self._saved[(DocumentReader, name)] = getattr(DocumentReader, name)
            setattr(DocumentReader, name, self._wrap("parse", getattr(DocumentReader, name)))
        for reader in (PagesAhead, PagesInProcess):
            self._saved[(reader, "__iter__")] = reader.__iter__
            reader.__iter__ = self._wrap_iter("wait", reader.__iter__)
        for name in ("delete_document", "add_entries"):
            self._saved[(SearchIndex, name)] = getattr(SearchIndex, name)
            setattr(SearchIndex, name, self._wrap("store", getattr(SearchIndex, name)))
        return self

    def uninstall(self):
        for (owner, name), fn in self._saved.items():
            setattr(owner, name, fn)
        self._saved.clear()

    def reset(self):
        self.seconds = dict.fromkeys(self.STAGES, 0.0)


def page_pdf_reader():
    """llama-index-readers-file's PDFReader if installed, else an equivalent (same pypdf calls/metadata)."""
    try:
        from llama_index.readers.file import PDFReader  # noqa: F401

        return None, "llama-index-readers-file PDFReader (SimpleDirectoryReader's default for .pdf)"
    except ImportError:
        pass
    from llama_index.core.readers.base import BaseReader
    from llama_index.core.schema import Document

    class PagePDFReader(BaseReader):
        """Equivalent of llama-index-readers-file 0.7.0 ``PDFReader()`` (default: one Document per page)."""

        def load_data(self, file, extra_info=None, fs=None):
            import pypdf

            file = Path(file)
            with open(file, "rb") as fp:
                pdf = pypdf.PdfReader(fp)
                docs = []
                for page in range(len(pdf.pages)):
                    metadata = {"page_label": pdf.page_labels[page], "file_name": file.name}
                    if extra_info is not None:
                        metadata.update(extra_info)
                    docs.append(Document(text=pdf.pages[page].extract_text(), metadata=metadata))
            return docs

    return {".pdf": PagePDFReader()}, (
        "an equivalent of llama-index-readers-file's PDFReader passed as file_extractor "
        "(that package is not installed: it is no dependency of the app and pins pypdf<7)"
    )


def manual_paths(folders: list[Path] | None) -> list[Path]:
    if not folders:
        from django.conf import settings

        demo = Path(settings.NANOSENTRI_DEMO_MANUALS_DIR)
        folders = [demo, demo.parent / "library"]  # the three demo manuals and the four of the library
    paths = sorted(p for folder in folders for p in folder.glob("*.pdf"))
    if not paths:
        raise SystemExit(f"no PDF manuals in {', '.join(map(str, folders))}")

    def rank(p: Path):
        for i, prefix in enumerate(MANUAL_ORDER):
            if p.name.startswith(prefix):
                return (i, p.name)
        return (len(MANUAL_ORDER), p.name)

    return sorted(paths, key=rank)


# --- the pipelines -------------------------------------------------------------------------------


class Arm:
    """One configuration timed in every run: a pipeline, its embedder and torch's thread count."""

    def __init__(self, name: str, kind: str, embedder: CountingEmbedder, threads: int, note: str = "",
                 reader: str = "", snippets: int | None = None, snippet_vectors: str = ""):
        self.name, self.kind, self.embedder, self.threads, self.note = name, kind, embedder, threads, note
        self.reader = reader  # where an app arm reads the pages (NANOSENTRI_INGEST_READER)
        self.snippets = snippets  # an app arm's sentences per snippet (None: the setting's)
        self.snippet_vectors = snippet_vectors  # how its snippets get their vectors ("": the setting's)
        self.results: list[dict] = []


def run_app(manuals, embedder, settings, store_dir: Path, clock: StageClock, reader: str,
            snippets: int | None = None, snippet_vectors: str = "") -> dict:
    from ingest.index import SearchIndex, build_vector_store
    from ingest.pipeline import ingest_file

    index = SearchIndex(build_vector_store("chroma", path=store_dir, collection="manuals"), embedder)
    embedder.reset()
    clock.reset()
    pages = chunks = 0
    started = time.perf_counter()
    for document_id, path in enumerate(manuals, start=1):
        result = ingest_file(
            path,
            document_id=document_id,
            file_name=path.name,
            index=index,
            embedder=embedder,
            chunk_tokens=settings.NANOSENTRI_CHUNK_TOKENS,
            chunk_overlap=settings.NANOSENTRI_CHUNK_OVERLAP,
            batch_size=settings.NANOSENTRI_EMBEDDING_BATCH,
            progress=lambda *a, **k: None,
            window_pages=settings.NANOSENTRI_INGEST_WINDOW_PAGES,
            page_reader=reader,
            snippet_sentences=settings.NANOSENTRI_INGEST_SNIPPET_SENTENCES if snippets is None else snippets,
            snippet_vectors=snippet_vectors or settings.NANOSENTRI_INGEST_SNIPPET_VECTORS,
        )
        pages += result.page_count
        chunks += result.chunk_count
    seconds = time.perf_counter() - started
    stored = index.store.client.count()
    if stored != chunks:
        raise RuntimeError(f"Chroma holds {stored} vectors, expected {chunks}")
    return {
        "seconds": seconds, "pages": pages, "chunks": chunks, "texts": list(embedder.texts),
        "calls": list(embedder.calls), "model_seconds": embedder.seconds, "stages": dict(clock.seconds),
    }


def llama_splitter(chunk_size: int, tokenizer=None):
    """llama-index's SentenceSplitter with this chunk size and the default's share of overlap
    (200 of 1024); ``tokenizer`` None is llama-index's own (tiktoken)."""
    from llama_index.core.node_parser import SentenceSplitter

    overlap = round(chunk_size * DEFAULT_CHUNK_OVERLAP / DEFAULT_CHUNK_SIZE)
    return SentenceSplitter(chunk_size=chunk_size, chunk_overlap=overlap, tokenizer=tokenizer)


def load_llama_documents(manuals, file_extractor):
    from llama_index.core import SimpleDirectoryReader

    return SimpleDirectoryReader(input_files=[str(p) for p in manuals], file_extractor=file_extractor).load_data()


def run_llama_index(manuals, embedder, file_extractor, splitter) -> dict:
    from llama_index.core import VectorStoreIndex

    from models.embedding import as_llama_index

    embedder.reset()
    started = time.perf_counter()
    docs = load_llama_documents(manuals, file_extractor)
    loaded = time.perf_counter()
    # At small chunk sizes the splitter prints "Metadata length (34) is close to chunk size" per
    # document; stdout is the report.
    with contextlib.redirect_stdout(io.StringIO()):
        index = VectorStoreIndex.from_documents(docs, embed_model=as_llama_index(embedder), transformations=[splitter])
    seconds = time.perf_counter() - started
    nodes = len(index.index_struct.nodes_dict)
    if nodes != len(embedder.texts):
        raise RuntimeError(f"{nodes} nodes indexed but {len(embedder.texts)} texts embedded")
    return {
        "seconds": seconds, "pages": len(docs), "chunks": nodes, "texts": list(embedder.texts),
        "calls": list(embedder.calls), "model_seconds": embedder.seconds,
        "stages": {"parse": loaded - started, "embed": embedder.seconds,
                   "chunk + store": seconds - (loaded - started) - embedder.seconds},
    }


def llama_embed_texts(docs, splitter) -> list[str]:
    """What llama-index would embed with this splitter (no model run): each node's text with
    its metadata, as VectorStoreIndex embeds it."""
    from llama_index.core.schema import MetadataMode

    nodes = splitter.get_nodes_from_documents(docs)
    return [node.get_content(metadata_mode=MetadataMode.EMBED) for node in nodes]


def calibrate_chunk_size(docs, word_pieces, limit: int, *, tokenizer=None, start: int = 256):
    """The largest chunk size (in the splitter's tokenizer units: tiktoken when ``tokenizer`` is
    None) at which no text llama-index embeds on these documents (metadata included, as it embeds
    them) is longer than ``limit`` word pieces: down from ``start`` in steps of 8 to the first
    size that truncates nothing, then up one at a time while that holds.

    Returns (size or None when no size works, [(size, texts, texts too long), ...]); a size
    below the metadata's length is refused by llama-index and ends the search."""
    tried: list[tuple[int, int, int]] = []

    def too_long(size: int) -> int | None:
        try:
            with contextlib.redirect_stdout(io.StringIO()):  # "Metadata length (34) is close to chunk size (40)"
                texts = llama_embed_texts(docs, llama_splitter(size, tokenizer))
        except ValueError:  # "Metadata length (34) is longer than chunk size (32)"
            return None
        over = sum(word_pieces(t) > limit for t in texts)
        tried.append((size, len(texts), over))
        return over

    size = start
    while True:
        over = too_long(size)
        if over is None:
            return None, tried
        if not over:
            break
        size -= 8
    while size + 1 <= start and too_long(size + 1) == 0:
        size += 1
    return size, tried


def padded_positions(calls, embedder) -> int:
    """Token positions the model computes, padding included, for the calls as the embedder makes them.

    With ``batch_tokens`` the embedder passes texts of similar word-piece length together
    (``length_batches``); otherwise sentence-transformers sorts each call's texts by characters
    (longest first), cuts them into batches of ``batch_size`` and pads each to its longest text.
    """
    total = 0
    for texts, batch_size, *_ in calls:
        lengths = embedder.token_lengths(texts)
        if getattr(embedder, "batch_tokens", 0) and len(texts) > 1:
            batches = embedder.length_batches(texts, batch_size)
        else:
            order = sorted(range(len(texts)), key=lambda i: len(texts[i]), reverse=True)
            batches = [order[s : s + batch_size] for s in range(0, len(order), batch_size)]
        total += sum(max(lengths[i] for i in batch) * len(batch) for batch in batches)
    return total


def token_counts(result: dict, counting: CountingEmbedder) -> dict:
    """Word pieces per text (MiniLM tokenizer) and how many the model actually reads (≤ max_tokens − 2)."""
    embedder = counting.inner
    limit = embedder.max_tokens - 2  # [CLS] and [SEP]
    lengths = [len(embedder.tokenize(t)) for t in result["texts"]]
    read = [min(n, limit) for n in lengths]
    return {
        "padded": padded_positions(result["calls"], embedder),
        "chunks": len(lengths),
        "tokens": sum(lengths),
        "embedded": sum(read),
        "truncated_chunks": sum(n > limit for n in lengths),
        "dropped": sum(lengths) - sum(read),
        "max": max(lengths) if lengths else 0,
    }


# --- experiments (bench process only) ----------------------------------------------------------


def experiments(app_result, plain, configured, settings, default_threads: int, repeats: int) -> str:
    """EXPERIMENTS on the embed stage (bench process only, app code untouched).

    Every variant embeds the texts of the app's own encode calls (one per window, as ingest_file
    makes them); the variants are interleaved in every repetition in a rotated order (so a burst of
    load on the machine hits them alike) and summarised by medians.
    """
    import numpy as np
    import torch

    calls = [texts for texts, *_ in app_result["calls"]]
    chunks = [t for texts in calls for t in texts]
    batch = settings.NANOSENTRI_EMBEDDING_BATCH
    model = plain._model

    def with_budget(tokens):
        e = copy.copy(plain)
        e.batch_tokens = tokens
        return e

    def run_calls(embedder, batch_size=batch):
        def run():
            started = time.perf_counter()
            for texts in calls:
                embedder.embed(texts, batch_size=batch_size)
            return time.perf_counter() - started

        return run

    def threads_then(n, fn):
        def run():
            torch.set_num_threads(n)
            try:
                return fn()
            finally:
                torch.set_num_threads(default_threads)

        return run

    def quantized(skip_ffn_down: bool):
        names = {name for name, mod in model.named_modules() if isinstance(mod, torch.nn.Linear)}
        if skip_ffn_down:  # BERT's FFN down-projection is "layer.N.output.dense" (not "attention.output.dense")
            names = {n for n in names if not (n.endswith(".output.dense") and ".attention." not in n)}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            q = copy.copy(plain)
            q._model = torch.ao.quantization.quantize_dynamic(copy.deepcopy(model), names, dtype=torch.qint8)
        q._memo, q._waiting, q._waiting_lock = {}, {}, threading.Lock()  # its own question vectors
        q._thread_memo = threading.local()
        q.batch_tokens = 0
        q.embed(["warm up"])
        return q

    variants, embedders = {}, {}
    for n in sorted({default_threads, 1}, reverse=True):
        label = f"{n} torch thread{'s' if n > 1 else ''}"
        for tokens in (0, 1024, 2048, 4096):
            e = with_budget(tokens)
            name = (f"{label}, sentence-transformers batching (batch {batch})" if not tokens
                    else f"{label}, passes of ≤ {tokens} token positions by length")
            variants[name] = threads_then(n, run_calls(e))
            embedders[name] = (n, e)
    int8_all, int8_most = quantized(skip_ffn_down=False), quantized(skip_ffn_down=True)
    variants[f"{default_threads} torch threads, int8 dynamic quantization, all Linear layers"] = (
        threads_then(default_threads, run_calls(int8_all)))
    variants[f"{default_threads} torch threads, int8 dynamic quantization, all Linear but the FFN down-projections"] = (
        threads_then(default_threads, run_calls(int8_most)))

    def positions(name):
        return padded_positions([(t, batch) for t in calls], embedders.get(name, (0, plain))[1])

    times = {name: [] for name in variants}
    names = list(variants)
    for i in range(repeats):
        for name in names[i % len(names):] + names[: i % len(names)]:  # rotated order every repetition
            times[name].append(variants[name]())
    base_name = names[0]
    base = statistics.median(times[base_name])

    k = settings.NANOSENTRI_RETRIEVAL_TOP_K
    torch.set_num_threads(default_threads)
    # The reference: the app before these options (one sentence-transformers call per window).
    v32 = np.array([vec for texts in calls for vec in plain.embed(texts, batch_size=batch)])
    q32 = np.array(plain.embed(QUALITY_QUESTIONS))
    top32 = np.argsort(-(q32 @ v32.T), axis=1)[:, :k]

    def effect(name) -> str:
        if name.endswith(("all Linear layers", "FFN down-projections")):
            e = int8_all if name.endswith("all Linear layers") else int8_most
            v, q = np.array(e.embed(chunks)), np.array(e.embed(QUALITY_QUESTIONS))
            cos = (v32 * v).sum(axis=1)
            top = np.argsort(-(q @ v.T), axis=1)[:, :k]
            overlap = statistics.mean(len(set(a) & set(b)) / k for a, b in zip(top32, top))
            first = statistics.mean(int(a[0] == b[0]) for a, b in zip(top32, top))
            return (f"cos(fp32, int8) of the chunk vectors mean {cos.mean():.3f}, min {cos.min():.3f}; "
                    f"top-{k} overlap {overlap:.0%}, same top-1 {first:.0%} ({len(QUALITY_QUESTIONS)} questions)")
        n, e = embedders[name]
        torch.set_num_threads(n)
        try:
            v = np.array([vec for texts in calls for vec in e.embed(texts, batch_size=batch)])
        finally:
            torch.set_num_threads(default_threads)
        return (f"max abs difference from the app before ({default_threads} threads, one sentence-transformers "
                f"call per window): {np.abs(v - v32).max():.1e}")

    rows = [[name, f"{positions(name):,}" if "int8" not in name else "", fmt(statistics.median(t), 2),
             fmt(base / statistics.median(t), 2), effect(name)] for name, t in times.items()]
    return table([f"EXPERIMENT (embed stage only, the app's {len(chunks)} texts in its {len(calls)} encode calls, "
                  f"{repeats} interleaved repetitions)",
                  "token positions (padding incl.)", "seconds (median)", "speed-up", "effect on vectors / retrieval"],
                 rows)


# --- main -----------------------------------------------------------------------------------------


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="timed runs of every arm (default 5)")
    parser.add_argument("--manuals", type=Path, nargs="+", default=None,
                        help="folders of PDF manuals (default: settings.NANOSENTRI_DEMO_MANUALS_DIR and the "
                             "library/ folder beside it: the seven shared manuals)")
    parser.add_argument("--tokenizer", choices=("minilm", "tiktoken"), default="minilm",
                        help="what llama-index's splitter counts chunk sizes in: MiniLM's word pieces (default; "
                             "set as SentenceSplitter's tokenizer) or its own default, tiktoken")
    parser.add_argument("--chunk-size", type=int, default=0,
                        help="llama-index chunk size in those units; default: the largest at which nothing is truncated")
    parser.add_argument("--options", choices=("on", "off"), default="on",
                        help="also time the app with each ingest option turned back (default on)")
    parser.add_argument("--experiments", choices=("auto", "always", "never"), default="auto",
                        help="run the embed-stage experiments: when the goal fails (auto), always, never")
    parser.add_argument("--keep", action="store_true", help="keep the temporary data directory")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    exit_on_sigterm()
    data_dir = Path(tempfile.mkdtemp(prefix="nanosentri-bench-ingest-"))
    apply_environment(
        bench_environment(
            data_dir, NANOSENTRI_EMBEDDING_BACKEND="sentence-transformers", NANOSENTRI_VECTOR_STORE="chroma"
        )
    )
    try:
        return run(args, data_dir)
    finally:
        if args.keep:
            print(f"\n(kept {data_dir})", file=sys.stderr)
        else:
            shutil.rmtree(data_dir, ignore_errors=True)


def _threads_label(n: int) -> str:
    return f"{n} torch thread{'s' if n != 1 else ''}"


def run(args, data_dir: Path) -> int:
    header = machine_lines()
    import torch

    default_threads = torch.get_num_threads()  # before anything sets it
    import django

    django.setup()
    from django.conf import settings
    from llama_index.core import Settings as LlamaSettings

    from apps.knowledge.tasks import embedding_threads_apply
    from models.embedding import get_embedder

    with contextlib.redirect_stdout(io.StringIO()):  # "LLM is explicitly disabled. Using MockLLM."
        LlamaSettings.llm = None
    import logging

    # Said once in the report instead of on every load_data() call.
    logging.getLogger("llama_index.core.readers.file.base").setLevel(logging.ERROR)
    manuals = manual_paths(args.manuals)
    file_extractor, reader_note = page_pdf_reader()
    say(f"loading the embedder; manuals: {', '.join(p.name for p in manuals)}")
    app_embedder = get_embedder()  # as the worker builds it (NANOSENTRI_EMBEDDING_BATCH_TOKENS)
    worker_threads = embedding_threads_apply()  # as the worker sets it (NANOSENTRI_WORKER_EMBEDDING_THREADS)
    torch.set_num_threads(default_threads)
    plain = copy.copy(app_embedder)  # the same loaded model, called as sentence-transformers does by default
    plain.batch_tokens = 0
    app_embedder.embed(["warm up"])
    budget = app_embedder.batch_tokens

    limit = app_embedder.max_tokens - 2
    say("calibrating llama-index's chunk size (no model run)")
    docs = load_llama_documents(manuals, file_extractor)

    def word_pieces(text: str) -> int:
        return len(plain.tokenize(text))

    # In llama-index's own units (tiktoken), as asked first: reported, and used with --tokenizer tiktoken.
    tiktoken_size, tiktoken_tried = calibrate_chunk_size(docs, word_pieces, limit)
    tiktoken_chunks = next((n for size, n, _ in tiktoken_tried if size == tiktoken_size), 0)
    minilm_size, minilm_tried = calibrate_chunk_size(docs, word_pieces, limit, tokenizer=plain.tokenize,
                                                     start=limit)
    tokenizer = plain.tokenize if args.tokenizer == "minilm" else None
    if args.chunk_size:
        chunk_size = args.chunk_size
    else:
        chunk_size = minilm_size if args.tokenizer == "minilm" else tiktoken_size
    if not chunk_size:
        raise SystemExit(f"no chunk size in {args.tokenizer} units keeps llama-index's texts within {limit} word pieces")
    splitter = llama_splitter(chunk_size, tokenizer)
    del docs

    reader = settings.NANOSENTRI_INGEST_READER
    other_reader = "thread" if reader == "process" else "process"
    app_batching = f"passes of ≤ {budget} token positions" if budget else "sentence-transformers batching"
    arms = [
        Arm("app", "app", CountingEmbedder(app_embedder), worker_threads,
            f"{_threads_label(worker_threads)}, {app_batching}, reader {reader}", reader),
        Arm("llama-index", "llama-index", CountingEmbedder(plain), default_threads,
            f"{_threads_label(default_threads)} (torch default), sentence-transformers batching"),
    ]
    if worker_threads != default_threads:
        arms.append(Arm("llama-index, app's threads", "llama-index", CountingEmbedder(plain), worker_threads,
                        f"{_threads_label(worker_threads)}, sentence-transformers batching"))
    arms.append(Arm(f"app, reader {other_reader}", "app", CountingEmbedder(app_embedder), worker_threads,
                    f"{_threads_label(worker_threads)}, {app_batching}, reader {other_reader}", other_reader))
    if settings.NANOSENTRI_INGEST_SNIPPET_SENTENCES:
        arms.append(Arm("app, no snippets", "app", CountingEmbedder(app_embedder), worker_threads,
                        f"{_threads_label(worker_threads)}, {app_batching}, reader {reader}, "
                        "NANOSENTRI_INGEST_SNIPPET_SENTENCES=0 (chunk vectors only)", reader, snippets=0))
        other_vectors = "chunk" if settings.NANOSENTRI_INGEST_SNIPPET_VECTORS == "alone" else "alone"
        arms.append(Arm("app, snippets off the chunk" if other_vectors == "chunk" else "app, snippets alone", "app",
                        CountingEmbedder(app_embedder), worker_threads,
                        f"{_threads_label(worker_threads)}, {app_batching}, reader {reader}, "
                        f"NANOSENTRI_INGEST_SNIPPET_VECTORS={other_vectors}", reader, snippet_vectors=other_vectors))
    if args.options == "on":
        options = []
        if worker_threads != default_threads:
            options.append(("app, torch default threads", app_embedder, default_threads))
        if worker_threads != 1:
            options.append(("app, one torch thread", app_embedder, 1))
        if budget:
            options.append(("app, sentence-transformers batching", plain, worker_threads))
        if worker_threads != default_threads and budget:
            options.append(("app before (torch default threads, sentence-transformers batching)", plain,
                            default_threads))
        for name, embedder, threads in options:
            batching = (f"passes of ≤ {embedder.batch_tokens} token positions" if embedder.batch_tokens
                        else "sentence-transformers batching")
            arms.append(Arm(name, "app", CountingEmbedder(embedder), threads,
                            f"{_threads_label(threads)}, {batching}, reader {reader}", reader))

    clock = StageClock().install()

    def run_arm(arm: Arm, store: Path) -> dict:
        torch.set_num_threads(arm.threads)
        cpu = time.process_time()  # every thread of this process: work done, whatever the machine's load
        try:
            if arm.kind == "app":
                result = run_app(manuals, arm.embedder, settings, store, clock, arm.reader, arm.snippets,
                                 arm.snippet_vectors)
                cpu_app = time.process_time() - cpu
                # The pure embedding time of the same chunks: the same calls, alone (step 4: wall ≤ 1.10 × it).
                started = time.perf_counter()
                for texts, batch_size, *spans in result["calls"]:
                    if spans:
                        arm.embedder.inner.embed_spans(texts, spans[0], batch_size=batch_size)
                    else:
                        arm.embedder.inner.embed(texts, batch_size=batch_size)
                result["pure_embed"] = time.perf_counter() - started
                result["cpu"] = cpu_app
                return result
            else:
                result = run_llama_index(manuals, arm.embedder, file_extractor, splitter)
        finally:
            torch.set_num_threads(default_threads)
        result["cpu"] = time.process_time() - cpu
        return result

    loads: list[tuple[float, float]] = []
    try:
        say(f"warm-up (untimed): one run of each of {len(arms)} arms")
        for n, arm in enumerate(arms):
            run_arm(arm, data_dir / f"chroma-warmup-{n}")
        for i in range(args.runs):
            start_load = os.getloadavg()[0]
            order = arms[i % len(arms):] + arms[: i % len(arms)]  # rotated every run
            for n, arm in enumerate(order):
                arm.results.append(run_arm(arm, data_dir / f"chroma-{i}-{n}"))
            loads.append((start_load, os.getloadavg()[0]))
            say(f"run {i + 1}/{args.runs} (load {start_load:.2f}): "
                + ", ".join(f"{a.name} {a.results[-1]['seconds']:.2f} s" for a in arms))
    finally:
        clock.uninstall()
        torch.set_num_threads(default_threads)
    load_end = load_average()

    app, li = arms[0], arms[1]
    pages = app.results[0]["pages"]
    li_pages = li.results[0]["pages"]

    def pps(arm: Arm, i: int) -> float:
        return arm.results[i]["pages"] / arm.results[i]["seconds"]

    seconds = {a.name: median([r["seconds"] for r in a.results]) for a in arms}
    ratios = [pps(app, i) / pps(li, i) for i in range(args.runs)]
    ratio = median(ratios)
    app_tok = token_counts(app.results[-1], app.embedder)
    li_tok = token_counts(li.results[-1], li.embedder)
    for arm in arms:
        tok = token_counts(arm.results[-1], arm.embedder)
        if tok["truncated_chunks"]:
            say(f"WARNING: {arm.name} truncated {tok['truncated_chunks']} chunks")
    same_app_texts = all(sorted(a.results[-1]["texts"]) == sorted(app.results[-1]["texts"])
                         for a in arms if a.kind == "app" and a.snippets is None and not a.snippet_vectors)

    lines = ["## Ingest at equal coverage: app pipeline vs llama-index (chunk size for MiniLM)", ""]
    lines += header
    lines += [
        f"- load average at end: {load_end}",
        f"- {package_versions('llama-index-core', 'sentence-transformers', 'torch', 'chromadb', 'pypdf')}",
        f"- embedder: all-MiniLM-L6-v2 (max {app_embedder.max_tokens} word pieces), CPU; torch default "
        f"{_threads_label(default_threads)}",
        f"- manuals: {', '.join(p.name for p in manuals)} ({pages} pages)",
        f"- app settings: chunk {settings.NANOSENTRI_CHUNK_TOKENS} word pieces (title and heading added; the "
        f"whole ≤ {limit}), overlap {settings.NANOSENTRI_CHUNK_OVERLAP}, embed batch "
        f"{settings.NANOSENTRI_EMBEDDING_BATCH}, NANOSENTRI_EMBEDDING_BATCH_TOKENS {budget}, "
        f"NANOSENTRI_WORKER_EMBEDDING_THREADS {settings.NANOSENTRI_WORKER_EMBEDDING_THREADS} "
        f"(→ {_threads_label(worker_threads)}), window {settings.NANOSENTRI_INGEST_WINDOW_PAGES} pages, "
        f"NANOSENTRI_INGEST_READER {reader}, persistent Chroma in a temp folder, no OCR",
        f"- llama-index: SentenceSplitter(chunk_size={splitter.chunk_size}, chunk_overlap={splitter.chunk_overlap}, "
        f"tokenizer={'MiniLM word pieces' if tokenizer else 'tiktoken (default)'}) "
        f"({'given with --chunk-size' if args.chunk_size else 'the largest size at which no text it embeds exceeds ' + str(limit) + ' word pieces'}; "
        f"default 1024/200 tiktoken), embed batch {as_batch_size()}, SimpleVectorStore in memory; "
        f"PDFs read with {reader_note}",
        f"- runs: {args.runs} of every arm after one untimed warm-up each, order rotated every run; medians",
        f"- the app arms embedded the same texts (but the ones without snippets or with them made the other way): "
        f"{'yes' if same_app_texts else 'NO'}",
        f"- app: {app.results[-1]['chunks']} chunks and their snippets "
        f"(NANOSENTRI_INGEST_SNIPPET_SENTENCES {settings.NANOSENTRI_INGEST_SNIPPET_SENTENCES}) are the texts embedded",
        "",
        "Chunk sizes at which llama-index truncates nothing (size: texts it would embed / of them longer than "
        f"{limit} word pieces):",
        "",
        f"- in tiktoken tokens (llama-index's default tokenizer): "
        + (f"largest {tiktoken_size} ({tiktoken_chunks:,} texts)" if tiktoken_size else "none")
        + "; tried " + ", ".join(f"{s}: {n:,}/{o}" for s, n, o in tiktoken_tried),
        f"- in MiniLM word pieces (SentenceSplitter(tokenizer=<MiniLM's>)): largest {minilm_size}; tried "
        + ", ".join(f"{s}: {n:,}/{o}" for s, n, o in minilm_tried),
        "",
    ]
    lines.append(
        table(
            ["metric", "app", "llama-index", "ratio (app / llama-index)", "goal", "result"],
            [
                ["pages/s (median of runs)", fmt(pages / seconds[app.name], 2), fmt(li_pages / seconds[li.name], 2),
                 fmt(ratio, 2) + " (median of per-run ratios)", f"≥ {GOAL_RATIO:.1f}×",
                 "PASS" if ratio >= GOAL_RATIO else "FAIL"],
                ["seconds for all manuals (median)", fmt(seconds[app.name], 2), fmt(seconds[li.name], 2), "", "", ""],
                ["texts embedded (the app: chunks and snippets)", app_tok["chunks"], li_tok["chunks"], "", "", ""],
                ["word pieces in the texts embedded", f"{app_tok['tokens']:,}", f"{li_tok['tokens']:,}", "", "", ""],
                [f"word pieces the model read (coverage; ≤ {limit} per text)", f"{app_tok['embedded']:,}",
                 f"{li_tok['embedded']:,}", "", "", ""],
                ["texts truncated / word pieces never embedded",
                 f"{app_tok['truncated_chunks']} / {app_tok['dropped']:,}",
                 f"{li_tok['truncated_chunks']} / {li_tok['dropped']:,}", "", "", ""],
                ["longest text embedded (word pieces)", app_tok["max"], li_tok["max"], "", "", ""],
                ["token positions computed, padding included", f"{app_tok['padded']:,}", f"{li_tok['padded']:,}",
                 "", "", ""],
                ["embedding throughput (word pieces read / model second, median)",
                 fmt(app_tok["embedded"] / median([r["model_seconds"] for r in app.results]), 0),
                 fmt(li_tok["embedded"] / median([r["model_seconds"] for r in li.results]), 0), "", "", ""],
            ],
        )
    )
    lines += ["", "Every arm (seconds for all manuals and pages/s, medians; ratio = median of the per-run ratios "
                  "of the arm's pages/s to llama-index's; CPU seconds of the process, spin-waiting included):", ""]
    lines.append(table(
        ["arm", "configuration", "seconds", "pages/s", "ratio to llama-index", "CPU seconds (all threads)"],
        [[a.name, a.note, fmt(seconds[a.name], 2), fmt(a.results[0]["pages"] / seconds[a.name], 2),
          fmt(median([pps(a, i) / pps(li, i) for i in range(args.runs)]), 2),
          fmt(median([r["cpu"] for r in a.results]), 2)] for a in arms],
    ))
    lines += ["", "Where the time goes (seconds, medians over runs; parse: reading in this process, i.e. opening "
                  "the documents, and with the reader thread every page, overlapped with the rest; wait: the ingest "
                  "waiting for its next page, the reading that did not hide behind the embedding; embed calls: "
                  "one per window of the pages read by the time the embedder was free):", ""]
    lines.append(table(
        ["arm", *StageClock.STAGES, "total", "embed calls"],
        [[a.name, *[fmt(median([r["stages"][k] for r in a.results]), 2) for k in StageClock.STAGES],
          fmt(seconds[a.name], 2), median([len(r["calls"]) for r in a.results])] for a in arms if a.kind == "app"],
    ))
    lines += ["", "Ingest wall time against the pure embedding time of the same chunks (the same embed calls "
                  "replayed alone, same embedder and threads, right after each run; goal ≤ 1.10):", ""]
    app_arms = [a for a in arms if a.kind == "app"]
    lines.append(table(
        ["run", *[f"{a.name}: wall / pure embedding (s)" for a in app_arms]],
        [[i + 1, *[f"{a.results[i]['seconds'] / a.results[i]['pure_embed']:.2f} "
                   f"({a.results[i]['seconds']:.2f} / {a.results[i]['pure_embed']:.2f})" for a in app_arms]]
         for i in range(args.runs)]
        + [["median", *[fmt(median([r["seconds"] / r["pure_embed"] for r in a.results]), 2) for a in app_arms]]],
    ))
    lines += ["", table(
        ["arm", "parse (load_data)", "embed (model)", "chunk + store", "total"],
        [[a.name, *[fmt(median([r["stages"][k] for r in a.results]), 2) for k in ("parse", "embed", "chunk + store")],
          fmt(seconds[a.name], 2)] for a in arms if a.kind == "llama-index"],
    )]
    lines += ["", "Per run (seconds; load average over 1 min at the start and the end of the run):", ""]
    lines.append(table(
        ["run", "load (start → end)", *[a.name for a in arms]],
        [[i + 1, f"{loads[i][0]:.2f} → {loads[i][1]:.2f}", *[fmt(a.results[i]["seconds"], 2) for a in arms]]
         for i in range(args.runs)],
    ))
    others = arms[1:]
    lines += ["", "Per-run ratios: the app's pages/s over each other arm's in the same run (the first column is "
                  "the comparison; the option arms show what each option gives):", ""]
    lines.append(table(
        ["run", "load (start)", *[f"app / {a.name}" for a in others]],
        [[i + 1, f"{loads[i][0]:.2f}", *[fmt(pps(app, i) / pps(a, i), 2) for a in others]] for i in range(args.runs)]
        + [["median", "", *[fmt(median([pps(app, i) / pps(a, i) for i in range(args.runs)]), 2) for a in others]]],
    ))
    if args.experiments == "always" or (args.experiments == "auto" and ratio < GOAL_RATIO):
        say("running the embed-stage experiments")
        note = experiments(app.results[-1], plain, app_embedder, settings, default_threads, repeats=max(3, args.runs))
        lines += ["", note]
    print("\n".join(lines))
    return 0


def as_batch_size() -> int:
    from models.embedding import as_llama_index

    class _Dummy:
        name = "dummy"

    return as_llama_index(_Dummy()).embed_batch_size


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        sys.exit(130)
