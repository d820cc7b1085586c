#!/usr/bin/env python
"""Hybrid retrieval at 100,000 passages: latency in a warm web process, against the real library.

    .venv/bin/python bench/bench_retrieval_scale.py --passages 100000 --runs 3

1. Ingests the seven shared manuals (``../shared/data/manuals`` and ``library``) into a fresh
   temporary data directory (embedded Chroma, MiniLM) — the **baseline** library (~150 passages).
2. Times ``apps.knowledge.retrieval.passages_retrieve`` (what the answer pipeline calls: query
   embedding, vector and BM25 candidates, fusion, named manuals, coverage) for every question of
   ``bench/questions/library.json``, after one warm-up pass.
3. Grows the same index to ``--passages`` entries with a generated library, then times the same
   questions again, in the same process; the two are alternated per run only in the sense that
   both are measured in every invocation (the growth cannot be undone cheaply).

The generated passages are built from the manuals' own text, varied: each takes the sentences of
one real chunk, splices in one or two sentences of another, renumbers its values ("12 V" → "17 V")
and re-labels its codes ("GPIO12" → "GPIO47"), under one of 1,000 generated manual titles. Their
vectors are **not** re-embedded (100,000 MiniLM passes take hours on two cores): each is the
unit-length mix 0.7·a + 0.3·b + noise of its two source chunks' real vectors, which spreads them
over the same region of the space as the real chunks (the hard case for an HNSW index and for
fusion). The lexical terms are computed from the generated text by the app's own writer path
(``SearchIndex.add_entries``), so BM25 sees a vocabulary and postings of realistic size. Each
generated passage also carries snippet vectors (``ingest.snippets``), mixed the same way from its
source chunks' snippets, so the snippet step of the ranking works on as many as a real library.

Reports per run: p50, p95 and max per question at the baseline and at scale, the ratio of the
p95s, the stages at scale (embed, vector search, BM25, fetch, database filter), the right page at
1 and 3 on the covered questions with the distractors in place, and the process RSS.
"""
from __future__ import annotations

import argparse
import random
import re
import resource
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import load_average  # noqa: E402
from bench_retrieval import forget_queries, page_rank, percentile, queries, setup  # noqa: E402

GENERATED_DOCUMENTS = 1000
_SENTENCE = re.compile(r"(?<=[.!?:])\s+|\n+")
_NUMBER = re.compile(r"(?<![A-Za-z])\d+(?:\.\d+)?")
_CODE = re.compile(r"\b([A-Z]{2,6})(\d{1,4})\b")


def vary(text: str, other: str, rng: random.Random) -> str:
    """The sentences of ``text`` with one or two of ``other`` spliced in, values and codes changed."""
    mine = [s for s in _SENTENCE.split(text) if s.strip()]
    theirs = [s for s in _SENTENCE.split(other) if s.strip()]
    for sentence in rng.sample(theirs, min(len(theirs), rng.choice((1, 2)))):
        mine.insert(rng.randrange(len(mine) + 1), sentence)
    out = " ".join(mine)
    out = _NUMBER.sub(lambda m: str(max(1, round(float(m.group()) * rng.uniform(0.5, 1.8)))), out)
    return _CODE.sub(lambda m: f"{m.group(1)}{rng.randrange(1, 999)}", out)


def grow(target: int, seed: int = 7) -> float:
    """Add generated passages until the manuals' index holds ``target`` entries; seconds taken."""
    from apps.knowledge.models import Document
    from apps.knowledge.vector_index import get_vector_index
    from ingest.index import Entry, node_id

    started = time.perf_counter()
    rng = random.Random(seed)
    index = get_vector_index()
    real = index._lexical_index()  # the seven manuals' entries: text, metadata, unit vectors
    sources = list(range(len(real.ids)))
    titles = sorted({m.get("title", "") for m in real.metadatas})
    documents = Document.objects.bulk_create(
        Document(
            original_name=f"generated-{i:04d}.pdf", stored_path=f"generated-{i:04d}.pdf", extension=".pdf",
            content_hash=f"generated-{i:04d}", status=Document.Status.INDEXED,
            title=f"Generated volume {i:04d} ({rng.choice(titles)})",
        )
        for i in range(GENERATED_DOCUMENTS)
    )
    missing = target - index.count()
    per_document = max(1, -(-missing // GENERATED_DOCUMENTS))
    noise = np.random.default_rng(seed)
    batch_entries, batch_vectors, made = [], [], 0
    for document in documents:
        for chunk in range(per_document):
            if made >= missing:
                break
            a, b = rng.sample(sources, 2)
            vector = 0.7 * real.vectors[a] + 0.3 * real.vectors[b] + noise.normal(0, 0.02, real.vectors.shape[1])
            vector /= np.linalg.norm(vector)
            text = vary(real.texts[a], real.texts[b], rng)
            snippet_vectors = _snippet_mix(real, a, b, rng, noise)
            page = chunk // 3 + 1
            batch_entries.append(
                Entry(
                    node_id=node_id(document.pk, chunk), text=text, group=str(document.pk),
                    lexical_text=f"{document.title}\n{text}",
                    metadata={
                        "document_id": str(document.pk), "file_name": document.original_name, "page": page,
                        "chunk_index": chunk, "title": document.title, "heading": "", "source": "text",
                    },
                    snippet_vectors=snippet_vectors,
                )
            )
            batch_vectors.append(vector.astype(np.float32).tolist())
            made += 1
            if len(batch_entries) == 2000:
                index.add_entries(batch_entries, batch_vectors)
                batch_entries, batch_vectors = [], []
                print(f"  … {index.count():,} passages", flush=True)
    if batch_entries:
        index.add_entries(batch_entries, batch_vectors)
    return time.perf_counter() - started


def _snippet_mix(real, a: int, b: int, rng: random.Random, noise) -> np.ndarray | None:
    """Snippet vectors for a passage made of chunk ``a`` with sentences of ``b`` spliced in: ``a``'s
    snippets and one or two of ``b``'s, each with a little noise (as the passage's own vector is made)."""
    def rows(i):
        held = real.snippets[i] if i < len(real.snippets) else None
        return None if held is None else held.codes.astype(np.float32) * held.scales[:, None]

    mine, theirs = rows(a), rows(b)
    if mine is None:
        return None
    if theirs is not None:
        picked = rng.sample(range(len(theirs)), min(len(theirs), rng.choice((1, 2))))
        mine = np.vstack([mine, theirs[picked]])
    mine = mine + noise.normal(0, 0.02, mine.shape)
    return mine / np.linalg.norm(mine, axis=1, keepdims=True)


def timed_pass(questions: list[dict]) -> tuple[list[float], list[int | None]]:
    from apps.knowledge.retrieval import passages_retrieve

    times, ranks = [], []
    for q in questions:
        forget_queries()
        started = time.perf_counter()
        found = passages_retrieve(q["query"])
        times.append((time.perf_counter() - started) * 1000)
        cited = [(p.file_name, p.page) for p in found.passages]
        ranks.append(page_rank(q, cited) if q["covered"] else None)
    return times, ranks


def stages(questions: list[dict]) -> dict[str, float]:
    """Median milliseconds of each step of retrieval at the current size (one pass)."""
    from django.conf import settings

    from apps.knowledge import retrieval
    from apps.knowledge.vector_index import manual_index_fresh
    from ingest.lexical import query_terms

    spent: dict[str, list[float]] = {k: [] for k in ("embed", "vector search", "BM25", "fetch + fuse", "database")}
    n = settings.NANOSENTRI_RETRIEVAL_CANDIDATES
    for q in questions:
        index = manual_index_fresh()
        forget_queries()
        t0 = time.perf_counter()
        vector = index.embedder.embed([q["query"]])[0]
        t1 = time.perf_counter()
        index.vector_search(vector, top_k=n)
        t2 = time.perf_counter()
        index.lexical_search(query_terms(q["query"]), top_k=n)
        t3 = time.perf_counter()
        candidates = retrieval._candidates(index, vector, query_terms(q["query"]), None)
        t4 = time.perf_counter()
        retrieval._only_indexed(candidates)
        t5 = time.perf_counter()
        spent["embed"].append((t1 - t0) * 1000)
        spent["vector search"].append((t2 - t1) * 1000)
        spent["BM25"].append((t3 - t2) * 1000)
        spent["fetch + fuse"].append(max(0.0, (t4 - t3) - (t3 - t1)) * 1000)
        spent["database"].append((t5 - t4) * 1000)
    return {k: statistics.median(v) for k, v in spent.items()}


def quality(ranks: list[int | None], questions: list[dict]) -> tuple[float, float]:
    got = [r for r, q in zip(ranks, questions, strict=True) if q["covered"]]
    return sum(r == 1 for r in got) / len(got), sum(r is not None and r <= 3 for r in got) / len(got)


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--passages", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--keep", type=Path, help="build the data directory here and keep it (profiling)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="nanosentri-bench-scale-") as tmp:
        setup(args.keep or Path(tmp))
        import nanosentri_site.asgi  # noqa: F401  (as the web process runs: torch on one thread)
        from apps.knowledge.vector_index import get_vector_index

        questions = queries()
        timed_pass(questions)  # warm-up: model, BM25 statistics, caches
        small_size = get_vector_index().count()
        small = [timed_pass(questions) for _ in range(args.runs)]
        print(f"baseline library: {small_size} passages; growing to {args.passages:,} …", flush=True)
        seconds = grow(args.passages)
        big_size = get_vector_index().count()
        print(f"grown to {big_size:,} passages in {seconds:.0f} s", flush=True)
        # As in the web process: its index follower (apps/chat/warmup.py) rebuilds the BM25
        # statistics after the worker's writes while questions go on with the previous ones.
        started = time.perf_counter()
        follower = threading.Thread(target=lambda: get_vector_index().lexical_stats())
        follower.start()
        during = []
        while follower.is_alive():
            during += timed_pass(questions[:10])[0]
        rebuilt = time.perf_counter() - started
        print(f"BM25 rebuilt by the follower thread in {rebuilt:.0f} s; {len(during)} questions asked meanwhile: "
              f"p50 {statistics.median(during) if during else float('nan'):.0f} ms, "
              f"p95 {percentile(during, 0.95) if during else float('nan'):.0f} ms, max {max(during, default=float('nan')):.0f} ms")
        timed_pass(questions)  # warm-up at scale
        big = [timed_pass(questions) for _ in range(args.runs)]
        print(f"\n{len(questions)} questions per pass; load average {load_average()}; RSS {rss_mb():.0f} MB\n")
        print("run  passages   p50 ms  p95 ms  max ms   page@1  page@3   p95 ratio (scale / baseline)")
        for run, ((st, sr), (bt, br)) in enumerate(zip(small, big, strict=True), 1):
            for size, times, ranks in ((small_size, st, sr), (big_size, bt, br)):
                at1, at3 = quality(ranks, questions)
                print(f"{run:<4} {size:>8,} {statistics.median(times):8.1f} {percentile(times, 0.95):7.1f} "
                      f"{max(times):7.1f}  {at1:7.3f} {at3:7.3f}")
            print(f"{'':>62}{percentile(bt, 0.95) / percentile(st, 0.95):.2f}")
        print("\nstages at scale (median ms):")
        for name, ms in stages(questions).items():
            print(f"  {name:<14} {ms:7.2f}")


if __name__ == "__main__":
    main()
