#!/usr/bin/env python
"""Ingest throughput: the app's pipeline vs llama-index's default pipeline, same manuals, same embedder.

    .venv/bin/python bench/bench_ingest.py --runs 5

* **app**: ``ingest.pipeline.ingest_file`` for every manual, with the app's embedder
  (``models.embedding.get_embedder()``: all-MiniLM-L6-v2 on the CPU), a real persistent Chroma
  store in a fresh temporary folder per run (``ingest.index.build_vector_store("chroma")``), and
  the app's settings: NANOSENTRI_CHUNK_TOKENS, NANOSENTRI_CHUNK_OVERLAP, NANOSENTRI_EMBEDDING_BATCH.
  The progress callback is a no-op (the app's writes one database row every 0.3 s at most).
* **llama-index default**: ``SimpleDirectoryReader(input_files=...).load_data()`` then
  ``VectorStoreIndex.from_documents(docs, embed_model=as_llama_index(<the same embedder>))`` with
  every other setting left at its default: the default node parser (SentenceSplitter, 1024
  tiktoken tokens, 200 overlap), the default embed batch size (10), the default in-memory
  vector store. ``Settings.llm = None`` so nothing ever reaches for OpenAI.
  SimpleDirectoryReader reads PDFs with llama-index-readers-file's ``PDFReader`` (pypdf, one
  Document per page) when that package is installed; it is not a dependency of this project
  (and it pins pypdf<7), so otherwise the bench passes an equivalent reader (same pypdf calls,
  same metadata) as ``file_extractor`` and says so in the report.

Both run in this process with the model loaded and warmed before timing, alternate (order
swapped every run) after one untimed warm-up each, and are summarised by medians. The same
wrapper around the embedder records every text each pipeline embeds, so the report also says
how many chunks and word pieces each one actually embedded.

When the app's pipeline is not at least 2x the default, the report breaks its time down by
stage and runs clearly labelled EXPERIMENTS (in this process only; no app code is changed).
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import io
import shutil
import statistics
import sys
import tempfile
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

GOAL_RATIO = 2.0
MANUAL_ORDER = ("SmartEVSE", "Creality_Ender-3_Trouble", "Creality_Ender-3_Quick")

# Questions for the retrieval-quality check of the experiments (answers are in the manuals).
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
    """Passes everything to the app's embedder; records each text embedded and the model time."""

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

    def tokenize(self, text: str):
        return self.inner.tokenize(text)


class StageClock:
    """Times the stages of ingest.pipeline.ingest_file by wrapping the names it calls.

    The wrappers only read a clock around the real functions (microseconds per call), and are
    installed in this bench process only.
    """

    STAGES = ("parse", "chunk", "embed", "store")

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

    def install(self):
        import ingest.pipeline as pipeline
        from ingest.index import SearchIndex

        for name, stage in (("parse_file", "parse"), ("chunk_pages", "chunk"), ("embed_in_batches", "embed")):
            self._saved[(pipeline, name)] = getattr(pipeline, name)
            setattr(pipeline, name, self._wrap(stage, getattr(pipeline, name)))
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


def manual_paths(folder: Path | None) -> list[Path]:
    if folder is None:
        from django.conf import settings

        folder = Path(settings.NANOSENTRI_DEMO_MANUALS_DIR)
    paths = sorted(folder.glob("*.pdf"))
    if not paths:
        raise SystemExit(f"no PDF manuals in {folder}")

    def rank(p: Path):
        for i, prefix in enumerate(MANUAL_ORDER):
            if p.name.startswith(prefix):
                return (i, p.name)
        return (len(MANUAL_ORDER), p.name)

    return sorted(paths, key=rank)


# --- the two pipelines -------------------------------------------------------------------------


def run_app(manuals, embedder, settings, store_dir: Path, clock: StageClock) -> dict:
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


def run_llama_index(manuals, embedder, file_extractor) -> dict:
    from llama_index.core import SimpleDirectoryReader, VectorStoreIndex

    from models.embedding import as_llama_index

    embedder.reset()
    started = time.perf_counter()
    docs = SimpleDirectoryReader(input_files=[str(p) for p in manuals], file_extractor=file_extractor).load_data()
    loaded = time.perf_counter()
    index = VectorStoreIndex.from_documents(docs, embed_model=as_llama_index(embedder))
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


def padded_positions(calls, embedder) -> int:
    """Token positions the model computes, padding included.

    sentence-transformers sorts each encode() call's texts by length (characters, longest first),
    cuts them into batches of ``batch_size`` and pads every batch to its longest text (+[CLS], [SEP]).
    """
    limit = embedder.max_tokens - 2
    total = 0
    for texts, batch_size in calls:
        ordered = sorted(texts, key=len, reverse=True)
        for start in range(0, len(ordered), batch_size):
            batch = ordered[start : start + batch_size]
            longest = max(min(len(embedder.tokenize(t)), limit) for t in batch) + 2
            total += longest * len(batch)
    return total


def token_counts(texts: list[str], embedder, calls=()) -> dict:
    """Word pieces per text (MiniLM tokenizer) and how many the model actually reads (≤ max_tokens − 2)."""
    limit = embedder.max_tokens - 2  # [CLS] and [SEP]
    lengths = [len(embedder.tokenize(t)) for t in texts]
    read = [min(n, limit) for n in lengths]
    return {
        "padded": padded_positions(calls, embedder),
        "chunks": len(texts),
        "tokens": sum(lengths),
        "embedded": sum(read),
        "truncated_chunks": sum(n > limit for n in lengths),
        "dropped": sum(lengths) - sum(read),
        "max": max(lengths) if lengths else 0,
    }


# --- experiments (bench process only) ----------------------------------------------------------


def _embed_docs(model_embed, docs_texts, batch_size) -> float:
    """Seconds to embed every document's chunks in batches, one document after the other (as the app)."""
    started = time.perf_counter()
    for texts in docs_texts:
        for start in range(0, len(texts), batch_size):
            model_embed(texts[start : start + batch_size], batch_size)
    return time.perf_counter() - started


def experiments(app_result, embedder, manuals, settings, repeats: int) -> str:
    """EXPERIMENTS on the embed stage (bench process only, app code untouched).

    Every variant embeds the app's own chunks of all manuals; the variants are interleaved in
    every repetition in a rotated order (so a burst of load on the machine hits them alike) and
    summarised by medians.
    """
    import numpy as np
    import torch

    from ingest.chunk import chunk_pages
    from ingest.parse import parse_file

    inner = embedder.inner
    model = inner._model  # the SentenceTransformer the app loaded
    limit = min(settings.NANOSENTRI_CHUNK_TOKENS, inner.max_tokens - 2)
    parsed = [parse_file(path) for path in manuals]

    def chunks_for(overlap):
        return [[c.text for c in chunk_pages(p.pages, tokenize=inner.tokenize, chunk_tokens=limit, overlap=overlap)]
                for p in parsed]

    docs_texts = chunks_for(settings.NANOSENTRI_CHUNK_OVERLAP)
    chunks = sum(docs_texts, [])
    assert chunks == app_result["texts"], "re-chunking did not give the app's chunks"

    def encode_with(m):
        def run(texts, batch_size):
            return m.encode(texts, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True,
                            show_progress_bar=False)

        return run

    def quantized(skip_ffn_down: bool):
        names = {name for name, mod in model.named_modules() if isinstance(mod, torch.nn.Linear)}
        if skip_ffn_down:  # BERT's FFN down-projection is "layer.N.output.dense" (not "attention.output.dense")
            names = {n for n in names if not (n.endswith(".output.dense") and ".attention." not in n)}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            q = torch.ao.quantization.quantize_dynamic(copy.deepcopy(model), names, dtype=torch.qint8)
        run = encode_with(q)
        run(["warm up"], 1)
        return run

    fp32 = encode_with(model)
    batch = settings.NANOSENTRI_EMBEDDING_BATCH
    threads = torch.get_num_threads()
    int8_all = quantized(skip_ffn_down=False)
    int8_most = quantized(skip_ffn_down=True)
    no_overlap = chunks_for(0)

    def with_threads(n, fn):
        def run():
            torch.set_num_threads(n)
            try:
                return fn()
            finally:
                torch.set_num_threads(threads)

        return run

    variants = {
        f"app as is: batch {batch}, {threads} torch threads, fp32": lambda: _embed_docs(fp32, docs_texts, batch),
        "batch size 1 (no padding)": lambda: _embed_docs(fp32, docs_texts, 1),
        "batch size 4": lambda: _embed_docs(fp32, docs_texts, 4),
        "batch size 8": lambda: _embed_docs(fp32, docs_texts, 8),
        "batch size 16": lambda: _embed_docs(fp32, docs_texts, 16),
        "batch size 32": lambda: _embed_docs(fp32, docs_texts, 32),
        "all manuals' chunks in one encode call (sorted by length across documents)":
            lambda: _embed_docs(fp32, [chunks], batch),
    }
    if threads > 1:
        variants["torch.set_num_threads(1)"] = with_threads(1, lambda: _embed_docs(fp32, docs_texts, batch))
        variants["torch.set_num_threads(1), batch size 16"] = with_threads(1, lambda: _embed_docs(fp32, docs_texts, 16))
    variants["int8 dynamic quantization, all Linear layers"] = lambda: _embed_docs(int8_all, docs_texts, batch)
    variants["int8 dynamic quantization, all Linear layers but the FFN down-projections"] = (
        lambda: _embed_docs(int8_most, docs_texts, batch))
    variants[f"chunk overlap 0 instead of {settings.NANOSENTRI_CHUNK_OVERLAP} ({len(sum(no_overlap, []))} chunks)"] = (
        lambda: _embed_docs(fp32, no_overlap, batch))

    def calls_for(docs, bs):
        return [(texts[start : start + bs], bs) for texts in docs for start in range(0, len(texts), bs)]

    positions = {name: padded_positions(calls_for(docs_texts, batch), inner) for name in variants}
    for bs in (4, 8, 16, 32):
        positions[f"batch size {bs}"] = padded_positions(calls_for(docs_texts, bs), inner)
    positions["batch size 1 (no padding)"] = padded_positions(calls_for(docs_texts, 1), inner)
    positions["torch.set_num_threads(1), batch size 16"] = positions["batch size 16"]
    for name in variants:
        if name.startswith("all manuals"):
            positions[name] = padded_positions(calls_for([chunks], batch), inner)
        if name.startswith("chunk overlap 0"):
            positions[name] = padded_positions(calls_for(no_overlap, batch), inner)

    times = {name: [] for name in variants}
    names = list(variants)
    for i in range(repeats):
        for name in names[i % len(names):] + names[: i % len(names)]:  # rotated order every repetition
            times[name].append(variants[name]())
    base_name = next(iter(variants))
    base = statistics.median(times[base_name])

    k = settings.NANOSENTRI_RETRIEVAL_TOP_K
    v32, q32 = fp32(chunks, 64), fp32(QUALITY_QUESTIONS, 64)
    top32 = np.argsort(-(q32 @ v32.T), axis=1)[:, :k]

    def quality(run) -> str:
        v, q = run(chunks, 64), run(QUALITY_QUESTIONS, 64)
        cos = (v32 * v).sum(axis=1)
        top = np.argsort(-(q @ v.T), axis=1)[:, :k]
        overlap = statistics.mean(len(set(a) & set(b)) / k for a, b in zip(top32, top))
        first = statistics.mean(int(a[0] == b[0]) for a, b in zip(top32, top))
        return (f"cos(fp32, int8) of the chunk vectors mean {cos.mean():.3f}, min {cos.min():.3f}; "
                f"top-{k} overlap {overlap:.0%}, same top-1 {first:.0%} ({len(QUALITY_QUESTIONS)} questions)")

    effects = {name: "same vectors" for name in variants}
    effects[base_name] = "—"
    effects["int8 dynamic quantization, all Linear layers"] = quality(int8_all)
    effects["int8 dynamic quantization, all Linear layers but the FFN down-projections"] = quality(int8_most)
    for name in variants:
        if name.startswith("chunk overlap 0"):
            effects[name] = "fewer, different chunks: fewer word pieces to embed; retrieval not checked"
    rows = [[name, f"{positions[name]:,}", fmt(statistics.median(t), 2), fmt(base / statistics.median(t), 2),
             effects[name]] for name, t in times.items()]
    return table([f"EXPERIMENT (embed stage only, app chunks, {repeats} interleaved repetitions)",
                  "token positions (padding incl.)", "seconds (median)", "speed-up", "effect on vectors / retrieval"],
                 rows)


# --- main -----------------------------------------------------------------------------------------


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="timed runs per pipeline (default 5)")
    parser.add_argument("--manuals", type=Path, default=None,
                        help="folder of PDF manuals (default: settings.NANOSENTRI_DEMO_MANUALS_DIR)")
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


def run(args, data_dir: Path) -> int:
    header = machine_lines()
    import django

    django.setup()
    from django.conf import settings
    from llama_index.core import Settings as LlamaSettings

    from models.embedding import get_embedder

    with contextlib.redirect_stdout(io.StringIO()):  # "LLM is explicitly disabled. Using MockLLM."
        LlamaSettings.llm = None
    import logging

    # Said once in the report instead of on every load_data() call.
    logging.getLogger("llama_index.core.readers.file.base").setLevel(logging.ERROR)
    manuals = manual_paths(args.manuals)
    file_extractor, reader_note = page_pdf_reader()
    node_parser = LlamaSettings.node_parser
    say(f"loading the embedder; manuals: {', '.join(p.name for p in manuals)}")
    embedder = CountingEmbedder(get_embedder())
    embedder.embed(["warm up"])
    clock = StageClock().install()
    try:
        say("warm-up (untimed): one run of each pipeline")
        run_app(manuals, embedder, settings, data_dir / "chroma-warmup", clock)
        run_llama_index(manuals, embedder, file_extractor)
        results = {"app": [], "llama-index": []}
        loads = []
        for i in range(args.runs):
            loads.append(__import__("os").getloadavg()[0])
            order = ["app", "llama-index"] if i % 2 == 0 else ["llama-index", "app"]
            for arm in order:
                if arm == "app":
                    results[arm].append(run_app(manuals, embedder, settings, data_dir / f"chroma-{i}", clock))
                else:
                    results[arm].append(run_llama_index(manuals, embedder, file_extractor))
            say(f"run {i + 1}/{args.runs} ({' → '.join(order)}): app {results['app'][-1]['seconds']:.2f} s, "
                f"llama-index {results['llama-index'][-1]['seconds']:.2f} s")
    finally:
        clock.uninstall()
    load_end = load_average()

    app_s = median([r["seconds"] for r in results["app"]])
    li_s = median([r["seconds"] for r in results["llama-index"]])
    pages = results["app"][0]["pages"]
    li_pages = results["llama-index"][0]["pages"]
    app_pps, li_pps = pages / app_s, li_pages / li_s
    ratio = app_pps / li_pps
    app_tok = token_counts(results["app"][-1]["texts"], embedder, results["app"][-1]["calls"])
    li_tok = token_counts(results["llama-index"][-1]["texts"], embedder, results["llama-index"][-1]["calls"])

    lines = ["## Ingest: app pipeline vs llama-index default", ""]
    lines += header
    lines += [
        f"- load average at end: {load_end}",
        f"- {package_versions('llama-index-core', 'sentence-transformers', 'torch', 'chromadb', 'pypdf')}",
        f"- embedder: all-MiniLM-L6-v2 (max {embedder.max_tokens} word pieces), CPU, "
        f"{__import__('torch').get_num_threads()} torch threads",
        f"- manuals: {', '.join(p.name for p in manuals)} ({pages} pages)",
        f"- app settings: chunk {settings.NANOSENTRI_CHUNK_TOKENS} word pieces (capped at {embedder.max_tokens - 2}), "
        f"overlap {settings.NANOSENTRI_CHUNK_OVERLAP}, embed batch {settings.NANOSENTRI_EMBEDDING_BATCH}, "
        f"persistent Chroma in a temp folder",
        f"- llama-index default: {type(node_parser).__name__}(chunk_size={getattr(node_parser, 'chunk_size', '?')}, "
        f"chunk_overlap={getattr(node_parser, 'chunk_overlap', '?')}, tiktoken), embed batch "
        f"{as_batch_size()}, SimpleVectorStore in memory; PDFs read with {reader_note}",
        f"- runs: {args.runs} per pipeline after one untimed warm-up each, alternating; medians",
        "",
        table(
            ["metric", "app", "llama-index default", "ratio (app / default)", "goal", "result"],
            [
                ["pages/s (median)", fmt(app_pps, 2), fmt(li_pps, 2), fmt(ratio, 2), f"≥ {GOAL_RATIO:.1f}×",
                 "PASS" if ratio >= GOAL_RATIO else "FAIL"],
                ["seconds for all manuals (median)", fmt(app_s, 2), fmt(li_s, 2), "", "", ""],
                ["chunks embedded", app_tok["chunks"], li_tok["chunks"], "", "", ""],
                ["word pieces in the chunks", f"{app_tok['tokens']:,}", f"{li_tok['tokens']:,}", "", "", ""],
                ["word pieces the model read (≤ 254 per chunk)", f"{app_tok['embedded']:,}", f"{li_tok['embedded']:,}",
                 "", "", ""],
                ["chunks truncated / word pieces never embedded",
                 f"{app_tok['truncated_chunks']} / {app_tok['dropped']:,}",
                 f"{li_tok['truncated_chunks']} / {li_tok['dropped']:,}", "", "", ""],
                ["token positions computed, padding included (ST pads each batch to its longest text)",
                 f"{app_tok['padded']:,}", f"{li_tok['padded']:,}", "", "", ""],
                ["embedding throughput (word pieces read / model second, median)",
                 fmt(app_tok["embedded"] / median([r["model_seconds"] for r in results["app"]]), 0),
                 fmt(li_tok["embedded"] / median([r["model_seconds"] for r in results["llama-index"]]), 0), "", "", ""],
            ],
        ),
        "",
        "Where the time goes (seconds, median over runs):",
        "",
    ]
    app_stages = {k: median([r["stages"][k] for r in results["app"]]) for k in StageClock.STAGES}
    li_stages = {k: median([r["stages"][k] for r in results["llama-index"]]) for k in results["llama-index"][0]["stages"]}
    lines.append(
        table(
            ["pipeline", *[f"{k}" for k in StageClock.STAGES], "total"],
            [["app (ingest_file)", *[fmt(app_stages[k], 2) for k in StageClock.STAGES], fmt(app_s, 2)]],
        )
    )
    lines += [
        "",
        table(
            ["pipeline", "parse (load_data)", "embed (model)", "chunk + store", "total"],
            [["llama-index default", fmt(li_stages["parse"], 2), fmt(li_stages["embed"], 2),
              fmt(li_stages["chunk + store"], 2), fmt(li_s, 2)]],
        ),
        "",
        "Per run (seconds):",
        "",
        table(
            ["run", "load (1 min)", "app", "llama-index default", "ratio (pages/s app / default)"],
            [[i + 1, fmt(loads[i], 2), fmt(a["seconds"], 2), fmt(b["seconds"], 2), fmt(b["seconds"] / a["seconds"], 2)]
             for i, (a, b) in enumerate(zip(results["app"], results["llama-index"]))],
        ),
    ]
    if args.experiments == "always" or (args.experiments == "auto" and ratio < GOAL_RATIO):
        say("running the embed-stage experiments")
        note = experiments(results["app"][-1], embedder, manuals, settings, repeats=max(3, args.runs))
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
