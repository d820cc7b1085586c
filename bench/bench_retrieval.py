#!/usr/bin/env python
"""Retrieval on the seven-manual library: the app's hybrid retrieval vs vectors alone, same index.

    .venv/bin/python bench/bench_retrieval.py --runs 5

Ingests ../shared/data/manuals/*.pdf and ../shared/data/library/*.pdf into a fresh temporary data
directory (embedded Chroma, MiniLM), then asks every question of bench/questions/library.json
(follow-ups together with the question they follow, as the chat searches them) through two arms,
alternating, after one untimed warm-up pass each:

* **hybrid**: ``apps.knowledge.retrieval.passages_retrieve`` — query embedding, vector and BM25
  candidates, fusion, named manuals, coverage; what the answer pipeline calls;
* **vectors only**: the query embedding and ``SearchIndex.vector_search`` over the same index
  (the chunks embedded with their title and heading), top 4 — the baseline.

Reports, per arm: right page at 1 and 3 on the covered questions, and per-question latency p50 and
p95 in every run, with the hybrid/vectors-only ratio of the medians in the same run.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, apply_environment, bench_environment  # noqa: E402

SHARED = REPO.parent / "shared" / "data"
QUESTIONS = REPO / "bench" / "questions" / "library.json"


def setup(data_dir: Path) -> None:
    apply_environment(bench_environment(data_dir, HF_HUB_OFFLINE="1", NANOSENTRI_CELERY_EAGER="0"))
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from apps.knowledge import services

    for path in sorted((SHARED / "manuals").glob("*.pdf")) + sorted((SHARED / "library").glob("*.pdf")):
        document, _ = services.document_store(name=path.name, chunks=[path.read_bytes()], size=path.stat().st_size)
        services.document_ingest(document_id=document.pk)


def queries() -> list[dict]:
    from apps.chat.conversation import is_follow_up

    questions = json.loads(QUESTIONS.read_text())["questions"]
    by_id = {q["id"]: q for q in questions}
    for q in questions:
        q["query"] = q["question"]
        if q.get("follow_up_of") and is_follow_up(q["question"]):
            q["query"] = f"{by_id[q['follow_up_of']]['question']} {q['question']}"
    return questions


def hybrid(query: str) -> list[tuple[str, int]]:
    from apps.knowledge.retrieval import passages_retrieve

    return [(p.file_name, p.page) for p in passages_retrieve(query).passages]


def vectors_only(query: str) -> list[tuple[str, int]]:
    from apps.knowledge.vector_index import manual_index_fresh

    index = manual_index_fresh()
    hits = index.vector_search(index.embedder.embed([query])[0], top_k=4)
    return [(str(h.metadata["file_name"]), int(h.metadata["page"])) for h in hits]


def page_rank(q: dict, cited: list[tuple[str, int]]) -> int | None:
    for rank, (name, page) in enumerate(cited, 1):
        if name == q["document"] and page in q["pages"]:
            return rank
    return None


def forget_queries() -> None:
    """Every timed question pays for its embedding: the embedder remembers the vectors of questions
    it saw (an answer embeds its question twice), and the benches ask the same questions again."""
    from models.embedding import get_embedder

    forget = getattr(get_embedder(), "forget_queries", None)
    if forget:
        forget()


def run_arm(arm, questions: list[dict]) -> tuple[list[float], list[int | None]]:
    times, ranks = [], []
    for q in questions:
        forget_queries()
        started = time.perf_counter()
        cited = arm(q["query"])
        times.append((time.perf_counter() - started) * 1000)
        ranks.append(page_rank(q, cited) if q["covered"] else None)
    return times, ranks


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="nanosentri-bench-retrieval-") as tmp:
        setup(Path(tmp))
        questions = queries()
        arms = {"hybrid": hybrid, "vectors only": vectors_only}
        for arm in arms.values():
            run_arm(arm, questions)  # warm-up: models, BM25 statistics, caches
        covered = [i for i, q in enumerate(questions) if q["covered"]]
        quality = {}
        print(f"{len(questions)} questions ({len(covered)} covered), {args.runs} runs, arms alternate\n")
        print("run  arm            p50 ms  p95 ms   ratio p50 (hybrid / vectors only)")
        for run in range(args.runs):
            order = list(arms.items()) if run % 2 == 0 else list(reversed(arms.items()))
            medians = {}
            for name, arm in order:
                times, ranks = run_arm(arm, questions)
                medians[name] = statistics.median(times)
                quality[name] = ranks
                print(f"{run + 1:<4} {name:<13} {medians[name]:7.1f} {percentile(times, 0.95):7.1f}")
            print(f"     ratio         {medians['hybrid'] / medians['vectors only']:.2f}")
        print("\narm            page@1  page@3")
        for name, ranks in quality.items():
            got = [ranks[i] for i in covered]
            at1 = sum(r == 1 for r in got) / len(got)
            at3 = sum(r is not None and r <= 3 for r in got) / len(got)
            print(f"{name:<13} {at1:7.3f} {at3:7.3f}")


if __name__ == "__main__":
    main()
