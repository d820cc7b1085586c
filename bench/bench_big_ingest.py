#!/usr/bin/env python
"""Peak memory of the worker's ingest on a generated 1,000-page manual: windows of pages vs all at once.

    .venv/bin/python bench/bench_big_ingest.py [--pages 1000] [--runs 2]

A PDF of ``--pages`` text pages is generated from the seven shared manuals' own text (pages
cycled, each with its page number and its numbers varied, so no two pages are identical). Each
arm runs in a fresh child process that loads the real embedder (all-MiniLM-L6-v2) and writes to a
real embedded Chroma store in a temporary folder, through ``ingest.pipeline.ingest_file`` exactly
as the worker calls it, and reports its own peak RSS (``ru_maxrss``), the RSS before the ingest
(model loaded and warmed), the RSS at each progress step (so a plateau shows), seconds, chunks and
progress calls:

* **windowed**: the app's setting (NANOSENTRI_INGEST_WINDOW_PAGES, 16 pages at a time);
* **small**: the same on a generated 50-page PDF (``--small``), the baseline the big file is held
  against: bounded memory means the 1,000-page peak grows about as much as a small file's;
* **one window**: the whole document as one window (``window_pages = pages``), i.e. parse all,
  embed all, write all, as the worker did before issue 9. Since issue 10 a window is what was read
  by the time the embedder is free, so this arm lets the reader run up to the whole document ahead
  and embeds whatever it has read, at most all of it at once.

The figure that matters is the growth of RSS during the ingest (peak − before), as a ratio to the
small file's growth in the same run. The pages are read as NANOSENTRI_INGEST_READER says; with
``process`` (the default) the reading's own memory is the reader process's, not in these figures
(``NANOSENTRI_INGEST_READER=thread`` puts it back in).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, apply_environment, bench_environment, fmt, load_average, machine_lines, table  # noqa: E402

SHARED = REPO.parent / "shared" / "data"


def manual_paths() -> list[Path]:
    return sorted((SHARED / "manuals").glob("*.pdf")) + sorted((SHARED / "library").glob("*.pdf"))


def source_pages() -> list[str]:
    from ingest.parse import parse_file

    texts = []
    for path in manual_paths():
        for page in parse_file(path).pages:
            if len(page.text) > 200:
                texts.append(page.text)
    return texts


def _vary(text: str, rng: random.Random) -> str:
    return re.sub(r"\d+", lambda m: str(int(m.group()) + rng.randint(0, 9)), text)


def generate_pdf(path: Path, pages: int) -> None:
    """``pages`` pages of real manual text, Helvetica 8 pt, two pages' worth at most per page."""
    from pypdf import PdfWriter
    from pypdf.generic import DecodedStreamObject, DictionaryObject, NameObject

    rng = random.Random(9)
    texts = source_pages()
    writer = PdfWriter()
    font = writer._add_object(DictionaryObject({
        NameObject("/Type"): NameObject("/Font"), NameObject("/Subtype"): NameObject("/Type1"),
        NameObject("/BaseFont"): NameObject("/Helvetica"),
    }))
    resources = DictionaryObject({NameObject("/Font"): DictionaryObject({NameObject("/F1"): font})})
    for n in range(pages):
        text = f"Page {n + 1} of the generated service manual\n" + _vary(texts[n % len(texts)], rng)
        lines = [line[:110] for line in text.split("\n")][:80]
        ops = ["BT", "/F1 8 Tf", "9.5 TL", "36 770 Td"]
        for line in lines:
            safe = line.encode("latin-1", "replace").decode("latin-1")
            safe = safe.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
            ops.append(f"({safe}) Tj T*")
        ops.append("ET")
        stream = DecodedStreamObject()
        stream.set_data("\n".join(ops).encode("latin-1"))
        page = writer.add_blank_page(width=612, height=792)
        page[NameObject("/Contents")] = writer._add_object(stream)
        page[NameObject("/Resources")] = resources
    with open(path, "wb") as f:
        writer.write(f)


def child(pdf: str, window: int, store_dir: str) -> None:
    """One arm, in its own process: print a JSON line with the figures."""
    import resource

    import django

    django.setup()
    from django.conf import settings

    from ingest.index import LocalGeneration, SearchIndex, build_vector_store
    from ingest.pipeline import ingest_file
    from models.embedding import get_embedder

    embedder = get_embedder()
    embedder.embed(["warm up the model"] * 8)
    index = SearchIndex(build_vector_store("chroma", path=Path(store_dir), collection="big"), embedder,
                        generation=LocalGeneration())
    index.count()
    before = _rss_mb()
    calls, rss_by_page = [], {}

    def progress(stage, **kw):
        calls.append(kw["pages_done"])
        rss_by_page[kw["pages_done"]] = _rss_mb()

    started = time.perf_counter()
    result = ingest_file(
        Path(pdf), document_id=1, file_name="generated-service-manual.pdf", index=index, embedder=embedder,
        chunk_tokens=settings.NANOSENTRI_CHUNK_TOKENS, chunk_overlap=settings.NANOSENTRI_CHUNK_OVERLAP,
        batch_size=settings.NANOSENTRI_EMBEDDING_BATCH, progress=progress, ocr_engine=None, window_pages=window,
        page_reader=settings.NANOSENTRI_INGEST_READER,
    )
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({
        "pages": result.page_count, "chunks": result.chunk_count, "seconds": seconds, "before_mb": before,
        "peak_mb": peak, "progress_calls": len(calls), "distinct_page_steps": len(set(calls)),
        "stored": index.count(), "rss_by_page": rss_by_page,
    }))


def _along(figures: dict) -> str:
    """RSS when 10 %, 50 % and 100 % of the pages were done (the first progress step at or past each)."""
    steps = sorted((int(page), mb) for page, mb in figures["rss_by_page"].items() if int(page) > 0)
    out = []
    for share in (0.1, 0.5, 1.0):
        mark = next((mb for page, mb in steps if page >= share * figures["pages"]), None)
        out.append("—" if mark is None else f"{mark:.0f}")
    return " / ".join(out)


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def run_arm(pdf: Path, window: int, env: dict) -> dict:
    store = tempfile.mkdtemp(prefix="nanosentri-big-")
    try:
        out = subprocess.run(
            [sys.executable, __file__, "--child", str(pdf), str(window), store],
            env=env, capture_output=True, text=True, check=True, timeout=3600,
        )
    except subprocess.CalledProcessError as exc:
        raise SystemExit(f"arm failed:\n{exc.stderr[-3000:]}") from exc
    finally:
        shutil.rmtree(store, ignore_errors=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], int(sys.argv[3]), sys.argv[4])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pages", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--small", type=int, default=50)
    args = parser.parse_args()
    data_dir = Path(tempfile.mkdtemp(prefix="nanosentri-bench-big-"))
    env = bench_environment(data_dir, NANOSENTRI_EMBEDDING_BACKEND="sentence-transformers",
                            NANOSENTRI_VECTOR_STORE="chroma", HF_HUB_OFFLINE="1")
    apply_environment(env)
    import django

    django.setup()
    from django.conf import settings

    window = settings.NANOSENTRI_INGEST_WINDOW_PAGES
    try:
        pdf, small_pdf = data_dir / "generated.pdf", data_dir / "generated-small.pdf"
        started = time.perf_counter()
        generate_pdf(pdf, args.pages)
        generate_pdf(small_pdf, args.small)
        print(f"generated {args.pages} pages ({pdf.stat().st_size / 1e6:.1f} MB) in {time.perf_counter() - started:.0f} s",
              file=sys.stderr)
        rows, loads = [], []
        for run in range(args.runs):
            loads.append(os.getloadavg()[0])
            arms = [("windowed", pdf, window), ("small", small_pdf, window), ("one window", pdf, args.pages)]
            if run % 2:
                arms.reverse()
            figures = {}
            for name, path, size in arms:
                print(f"run {run + 1}: {name}…", file=sys.stderr)
                figures[name] = run_arm(path, size, env)
            small_growth = max(1.0, figures["small"]["peak_mb"] - figures["small"]["before_mb"])
            for name in ("windowed", "small", "one window"):
                f = figures[name]
                growth = f["peak_mb"] - f["before_mb"]
                rows.append([run + 1, name, f["pages"], f["chunks"], fmt(f["before_mb"], 0), _along(f),
                             fmt(f["peak_mb"], 0), fmt(growth, 0), fmt(growth / small_growth, 2),
                             fmt(f["pages"] / f["seconds"], 1), f["distinct_page_steps"]])
        print("\n".join(machine_lines()))
        print(f"load average at each run's start: {', '.join(f'{x:.2f}' for x in loads)}; now {load_average()}")
        print(f"window: {window} pages (NANOSENTRI_INGEST_WINDOW_PAGES)\n")
        print(table(["run", "arm", "pages", "chunks", "RSS before MB", "RSS at 10/50/100 % of pages MB",
                     "peak RSS MB", "growth MB",
                     "growth / small", "pages/s", "progress steps"], rows))
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
