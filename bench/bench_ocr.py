#!/usr/bin/env python
"""OCR engines for pages without a text layer: tesseract vs rapidocr, same pages, same code path.

    .venv/bin/python bench/bench_ocr.py [--engines tesseract,rapidocr] [--dpi 200] [--dump DIR]
                                        [--tesseract-threads N]

Both engines run through ``ingest.ocr.ocr_pdf_page`` (pdfium renders the page in grayscale at
``--dpi``, the engine reads it) on two sets of pages:

* **Creality image pages**: pages 10 and 11 (1-based) of the Ender-3 Quick Start Guide, a
  trouble-shooting flow chart and a photographed board with callouts; nothing but their
  headings is in the text layer. Ground truth: ``bench/ocr_truth/creality_quick_start_p1{0,1}.txt``,
  transcribed by eye from a 200 dpi rendering (every box and label; the Y / N labels on the
  connector arrows and the component markings printed on the board are left out; the Chinese
  labels of page 11 are in the file but, like all non-ASCII text, not scored).
* **Synthetic scans**: 8 text pages of the shared manuals rendered to an image (150 or 200 dpi)
  and wrapped into an image-only PDF with Pillow, twice: **clean** (the rendering in grayscale,
  stored losslessly) and **photocopied** (grayscale, 0.5° rotation, slight blur, Gaussian noise
  σ = 10, toner not quite black on paper not quite white; stored as a JPEG at Pillow's default
  quality, as scanners do; seeded, so every run sees the same images).
  Ground truth: pypdf's text of the original page.

Metrics per page and engine, over lowercased ASCII alphanumeric tokens (NFKC first):
**word recall** (share of the ground-truth tokens found, multiset overlap), **word precision**
(share of the OCR tokens that are in the truth: noise read from drawings lowers it),
**CER** (Levenshtein distance between the token streams joined by spaces, divided by the
truth's length; it depends on reading order, so on a flow chart it mostly measures order) and
**CER without spaces** (the same with the spaces taken out: what was recognised, whether or not
the words were kept apart).
Time is wall-clock per page, rendering included; each engine reads one untimed page first
(rapidocr loads its models then). The engines alternate order page by page.
Set totals: recall / precision / CER are pooled over the set's tokens / characters.

rapidocr is not a dependency of the app; for this bench install it with
``.venv/bin/pip install rapidocr-onnxruntime==1.4.4 -c requirements/base.lock``. An engine that is
not installed is left out of the run.
"""
from __future__ import annotations

import argparse
import collections
import os
import re
import sys
import tempfile
import time
import unicodedata
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, fmt, load_average, machine_lines, package_versions, table  # noqa: E402

from ingest.ocr import ENGINES, ocr_available, ocr_pdf_page  # noqa: E402

SHARED = REPO.parent / "shared" / "data"
QUICK_START = SHARED / "manuals" / "Creality_Ender-3_Quick_Start_Guide_V1.0.pdf"
TRUTH_DIR = REPO / "bench" / "ocr_truth"
CREALITY_PAGES = [(10, TRUTH_DIR / "creality_quick_start_p10.txt"), (11, TRUTH_DIR / "creality_quick_start_p11.txt")]

# (file, 1-based page, scan dpi): dense 3-column A4 landscape, Q&A prose, numbered notes,
# prose with a bullet list, a power table, a connector table, a datasheet overview, attentions.
SCAN_PAGES = [
    ("manuals/SmartEVSE_v3_Installation_Manual_v1.01_sw3.00.pdf", 1, 200),
    ("manuals/Creality_Ender-3_Trouble_Shootings.pdf", 1, 150),
    ("manuals/Creality_Ender-3_Quick_Start_Guide_V1.0.pdf", 2, 200),
    ("library/Olimex_ESP32-EVB_User_Manual_rev1.0.pdf", 3, 150),
    ("library/Olimex_ESP32-EVB_User_Manual_rev1.0.pdf", 6, 200),
    ("library/Olimex_ESP32-POE_User_Manual_rev2.6.pdf", 17, 150),
    ("library/Plantower_PMS5003_Data_Manual_v2.3.pdf", 2, 200),
    ("library/Plantower_PMS5003_Data_Manual_v2.3.pdf", 10, 150),
]
SHORT_NAMES = {
    "SmartEVSE_v3_Installation_Manual_v1.01_sw3.00.pdf": "SmartEVSE",
    "Creality_Ender-3_Trouble_Shootings.pdf": "Creality troubleshooting",
    "Creality_Ender-3_Quick_Start_Guide_V1.0.pdf": "Creality quick start",
    "Olimex_ESP32-EVB_User_Manual_rev1.0.pdf": "Olimex ESP32-EVB",
    "Olimex_ESP32-POE_User_Manual_rev2.6.pdf": "Olimex ESP32-POE",
    "Plantower_PMS5003_Data_Manual_v2.3.pdf": "PMS5003",
}


# --- metrics -------------------------------------------------------------------------------------


def tokens(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", unicodedata.normalize("NFKC", text).lower())


def levenshtein(a: str, b: str) -> int:
    """Edit distance, one numpy row per character of ``a`` (insertions by a running minimum)."""
    import numpy as np

    if not a or not b:
        return max(len(a), len(b))
    av = np.frombuffer(a.encode("utf-32-le"), dtype=np.uint32)
    bv = np.frombuffer(b.encode("utf-32-le"), dtype=np.uint32)
    cols = np.arange(len(b) + 1)
    row = cols.copy()
    for i, ch in enumerate(av, start=1):
        sub = row[:-1] + (bv != ch)
        dele = row[1:] + 1
        best = np.empty_like(row)
        best[0] = i
        best[1:] = np.minimum(sub, dele)
        # insertion: best[j] = min_k<=j (best[k] + j - k)
        row = np.minimum.accumulate(best - cols) + cols
    return int(row[-1])


def score(truth: str, ocr: str) -> dict:
    t, o = tokens(truth), tokens(ocr)
    matched = sum((collections.Counter(t) & collections.Counter(o)).values())
    t_text, o_text = " ".join(t), " ".join(o)
    return {
        "truth_words": len(t), "ocr_words": len(o), "matched": matched,
        "truth_chars": len(t_text), "edits": levenshtein(o_text, t_text),
        "truth_chars_ns": len("".join(t)), "edits_ns": levenshtein("".join(o), "".join(t)),
    }


# --- pages ---------------------------------------------------------------------------------------


def photocopy(image, seed: int):
    """Grayscale, rotated 0.5°, slightly blurred, noisy, on grey-ish paper."""
    import numpy as np
    from PIL import Image, ImageFilter

    rng = np.random.default_rng(seed)
    gray = image.convert("L")
    angle = 0.5 if seed % 2 else -0.5
    gray = gray.rotate(angle, resample=Image.BICUBIC, expand=False, fillcolor=255)
    gray = gray.filter(ImageFilter.GaussianBlur(radius=0.6))
    pixels = np.asarray(gray, dtype=np.float32)
    pixels = 18 + pixels * (232 / 255)  # toner not quite black, paper not quite white
    pixels += rng.normal(0, 10, pixels.shape)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), mode="L")


def lossless(image):
    """The image in grayscale as a palette image: Pillow writes those into a PDF uncompressed
    (ASCIIHex), where "L" and "RGB" images become JPEGs."""
    from PIL import Image

    gray = image.convert("L")
    out = Image.frombytes("P", gray.size, gray.tobytes())
    out.putpalette([v for i in range(256) for v in (i, i, i)])
    gray.close()
    return out


def make_scans(folder: Path) -> list[dict]:
    import pypdfium2 as pdfium
    from pypdf import PdfReader

    scans = []
    for n, (rel, number, dpi) in enumerate(SCAN_PAGES):
        source = SHARED / rel
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            truth = PdfReader(source).pages[number - 1].extract_text() or ""
        pdf = pdfium.PdfDocument(str(source))
        page = pdf[number - 1]
        bitmap = page.render(scale=dpi / 72)
        clean = bitmap.to_pil().convert("RGB")  # a copy: the bitmap's buffer is freed below
        bitmap.close()
        page.close()
        pdf.close()
        label = f"{SHORT_NAMES[source.name]} p{number}, {dpi} dpi"
        for kind, image in (("clean", lossless(clean)), ("photocopied", photocopy(clean, seed=n))):
            out = folder / f"scan_{n}_{kind}.pdf"
            image.save(out, format="PDF", resolution=dpi)
            image.close()
            scans.append({"set": f"{kind} scans", "label": f"{label}, {kind}", "path": out, "index": 0,
                          "truth": truth})
    return scans


def creality_pages() -> list[dict]:
    return [
        {"set": "Creality image pages", "label": f"Creality quick start p{number}", "path": QUICK_START,
         "index": number - 1, "truth": truth.read_text(encoding="utf-8")}
        for number, truth in CREALITY_PAGES
    ]


# --- run -----------------------------------------------------------------------------------------


def run(engines: list[str], pages: list[dict], dpi: int) -> dict:
    results = {(e, i): None for e in engines for i in range(len(pages))}
    warmup = {}
    for engine in engines:
        started = time.perf_counter()
        ocr_pdf_page(pages[0]["path"], pages[0]["index"], dpi=dpi, engine=engine)
        warmup[engine] = time.perf_counter() - started
    for i, page in enumerate(pages):
        order = engines if i % 2 == 0 else list(reversed(engines))
        for engine in order:
            started = time.perf_counter()
            out = ocr_pdf_page(page["path"], page["index"], dpi=dpi, engine=engine)
            seconds = time.perf_counter() - started
            results[(engine, i)] = {**score(page["truth"], out.text), "seconds": seconds,
                                    "confidence": out.confidence, "text": out.text}
            print(f"  {engine:9s} {page['label']:45s} {seconds:6.2f} s", file=sys.stderr, flush=True)
    return {"results": results, "warmup": warmup}


def pooled(rows: list[dict]) -> dict:
    truth = sum(r["truth_words"] for r in rows)
    ocr = sum(r["ocr_words"] for r in rows)
    matched = sum(r["matched"] for r in rows)
    return {
        "recall": matched / truth if truth else float("nan"),
        "precision": matched / ocr if ocr else float("nan"),
        "cer": sum(r["edits"] for r in rows) / max(1, sum(r["truth_chars"] for r in rows)),
        "cer_ns": sum(r["edits_ns"] for r in rows) / max(1, sum(r["truth_chars_ns"] for r in rows)),
        "s_per_page": sum(r["seconds"] for r in rows) / len(rows),
        "pages": len(rows), "truth_words": truth,
    }


def pct(x: float) -> str:
    return fmt(100 * x, 1) + " %"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--engines", default=",".join(ENGINES))
    parser.add_argument("--dpi", type=int, default=200, help="rendering resolution for OCR (default 200)")
    parser.add_argument("--dump", type=Path, help="write each engine's text per page into this folder")
    parser.add_argument("--tesseract-threads", type=int,
                        help="OMP_THREAD_LIMIT for tesseract (default: ingest.ocr's, 1)")
    args = parser.parse_args()
    if args.tesseract_threads:
        os.environ["OMP_THREAD_LIMIT"] = str(args.tesseract_threads)
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    missing = [e for e in engines if not ocr_available(e)]
    if missing:
        print(f"not installed, left out: {', '.join(missing)} (tesseract: apt-get install tesseract-ocr "
              "tesseract-ocr-eng; rapidocr: .venv/bin/pip install rapidocr-onnxruntime==1.4.4 "
              "-c requirements/base.lock)", file=sys.stderr)
        engines = [e for e in engines if e not in missing]
    if not engines:
        return 1
    if not QUICK_START.exists():
        print(f"shared manuals not found at {SHARED}", file=sys.stderr)
        return 1

    load_start = load_average()
    with tempfile.TemporaryDirectory(prefix="bench-ocr-") as tmp:
        pages = creality_pages() + make_scans(Path(tmp))
        started = time.perf_counter()
        out = run(engines, pages, args.dpi)
        wall = time.perf_counter() - started
    load_end = load_average()
    results = out["results"]

    if args.dump:
        args.dump.mkdir(parents=True, exist_ok=True)
        for (engine, i), r in results.items():
            (args.dump / f"{i:02d}_{engine}.txt").write_text(f"# {pages[i]['label']}\n{r['text']}\n")

    print("# OCR engines: tesseract vs rapidocr\n")
    print("\n".join(line for line in machine_lines() if "load average" not in line))
    print(f"- load average (1, 5, 15 min) at start: {load_start}; at end: {load_end}; bench wall time {wall:.0f} s")
    print(f"- command: `.venv/bin/python {' '.join(['bench/bench_ocr.py'] + sys.argv[1:])}`")
    versions = package_versions("pypdfium2", "rapidocr-onnxruntime", "onnxruntime", "opencv-python")
    tess = _tesseract_version() if "tesseract" in engines else "not run"
    print(f"- {versions}; tesseract {tess} (OMP_THREAD_LIMIT={os.environ.get('OMP_THREAD_LIMIT', '1 (ingest.ocr default)')})")
    print("- first page per engine, untimed: " + ", ".join(f"{e} {s:.2f} s" for e, s in out["warmup"].items()))
    print()

    sets = ("Creality image pages", "clean scans", "photocopied scans")
    headers = ["set", "engine", "pages", "truth words", "word recall", "word precision", "CER",
               "CER w/o spaces", "s / page"]
    rows = []
    summary = {}
    for set_name in sets:
        idx = [i for i, p in enumerate(pages) if p["set"] == set_name]
        for engine in engines:
            s = pooled([results[(engine, i)] for i in idx])
            summary[(set_name, engine)] = s
            rows.append([set_name, engine, s["pages"], s["truth_words"], pct(s["recall"]), pct(s["precision"]),
                         pct(s["cer"]), pct(s["cer_ns"]), fmt(s["s_per_page"], 2)])
    print(table(headers, rows))
    if len(engines) == 2:
        a, b = engines
        print()
        for set_name in sets:
            ratio = summary[(set_name, b)]["s_per_page"] / summary[(set_name, a)]["s_per_page"]
            print(f"- {set_name}: {b} takes {ratio:.2f}x the time of {a} per page")

    print("\nPer page:\n")
    headers = ["page", "truth words"] + [f"{e} {m}" for e in engines for m in ("recall", "CER", "s")]
    rows = []
    for i, page in enumerate(pages):
        row = [page["label"], results[(engines[0], i)]["truth_words"]]
        for engine in engines:
            r = results[(engine, i)]
            row += [pct(r["matched"] / max(1, r["truth_words"])), pct(r["edits"] / max(1, r["truth_chars"])),
                    fmt(r["seconds"], 2)]
        rows.append(row)
    print(table(headers, rows))
    return 0


def _tesseract_version() -> str:
    import subprocess

    done = subprocess.run(["tesseract", "--version"], capture_output=True, text=True, check=False)
    first = (done.stdout or done.stderr).splitlines()
    return first[0].split()[-1] if first else "?"


if __name__ == "__main__":
    sys.exit(main())
