#!/usr/bin/env python
"""Text layers: pages whose pypdf text is garbage, before and after ``ingest.textlayer.read_page``.

    .venv/bin/python bench/bench_textlayer.py [--details]

For every page of the seven shared manuals (../shared/data/manuals/*.pdf and
../shared/data/library/*.pdf):

* **before**: ``ingest.parse.clean_text(PdfReader(path).pages[i].extract_text())``, exactly what
  parse_pdf indexes today, judged by ``garbage_reasons``;
* **after**: ``read_page(before, path, i)`` (glyph-name repair, then pdfium when still garbage).

It prints a markdown table per manual (pages, garbage pages before/after, the reasons, where the
final text came from), a check of the Libre Solar specification values against what the rendered
page shows (pypdf raw, pypdf repaired, pdfium), and before/after example lines. ``--details``
adds one line per page whose text changed. Nothing is written anywhere.
"""

from __future__ import annotations

import argparse
import collections
import logging
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, package_versions, table  # noqa: E402

from ingest.parse import clean_text  # noqa: E402
from ingest.textlayer import garbage_reasons, pdfium_page_text, read_page, repair_glyph_names  # noqa: E402

SHARED = REPO.parent / "shared" / "data"
LIBRESOLAR = SHARED / "library" / "LibreSolar_MPPT-1210-HUS_User_Manual.pdf"

# What pages 9 and 10 of the Libre Solar manual show when rendered (checked by eye on a
# pypdfium2 rendering): (1-based page, label, the line as it should read).
LIBRESOLAR_TRUTH = [
    (9, "nominal system voltage", "Nominal system voltage 12 V"),
    (9, "maximum battery voltage", "Maximum voltage 16 V"),
    (9, "maximum charge current", "Maximum charge current 10 A"),
    (9, "quiescent current", "Quiescent current < 10 mA"),
    (9, "PV open circuit voltage", "Maximum open circuit voltage 40 V"),
    (9, "cells per module", "Number of cells per module 36 to 48"),
    (9, "PV power", "Maximum nominal power 150 W"),
    (9, "efficiency", "Conversion efficiency >98% max."),
    (9, "USB current", "Maximum current 2.0 A total for both ports"),
    (10, "absorption voltage", "Topping / absorption voltage 14.4 V configurable"),
    (10, "trickle voltage", "Trickle charging 13.8 V configurable"),
    (10, "load disconnect", "Load disconnect voltage 11.7 V"),
    (10, "load reconnect", "Load reconnect voltage 12.3 V configurable"),
    (10, "temperature compensation", "Temperature compensation -3 mV/K/cell"),
    (10, "operating temperature", "-10 °C to +50 °C"),
    (10, "terminals", "max. 6 mm² / AWG10"),
    (10, "internal fuse", "Type of internal fuse 15 A"),
]


def manuals() -> list[Path]:
    return sorted((SHARED / "manuals").glob("*.pdf")) + sorted((SHARED / "library").glob("*.pdf"))


def pypdf_pages(path: Path) -> list[str]:
    from pypdf import PdfReader

    reader = PdfReader(str(path), strict=False)
    return [clean_text(page.extract_text() or "") for page in reader.pages]


def reasons_cell(counter: collections.Counter) -> str:
    return "; ".join(f"{reason} ({n})" for reason, n in counter.most_common()) or "—"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--details", action="store_true", help="one line per page whose text changed")
    args = parser.parse_args()
    logging.getLogger("pypdf").setLevel(logging.ERROR)  # "Multiple definitions in dictionary" noise

    paths = manuals()
    if len(paths) != 7:
        print(f"expected the seven shared manuals under {SHARED}, found {len(paths)}", file=sys.stderr)
        return 2

    rows, details, examples = [], [], []
    totals = collections.Counter()
    before_all, after_all, sources_all = collections.Counter(), collections.Counter(), collections.Counter()
    read_ms = 0.0
    for path in paths:
        texts = pypdf_pages(path)
        before_reasons, after_reasons, sources = (
            collections.Counter(),
            collections.Counter(),
            collections.Counter(),
        )
        bad_before = bad_after = 0
        for index, text in enumerate(texts):
            before = garbage_reasons(text)
            started = time.perf_counter()
            result = read_page(text, path, index)
            read_ms += (time.perf_counter() - started) * 1000
            bad_before += bool(before)
            bad_after += bool(result.reasons)
            before_reasons.update(before)
            after_reasons.update(result.reasons)
            sources[result.source] += 1
            if result.text != text:
                details.append(
                    f"- {path.stem} p{index + 1}: {', '.join(before) or 'clean'} → {result.source}"
                    f" ({', '.join(result.reasons) or 'clean'})"
                )
                examples.append((path, index, text, result))
        before_all.update(before_reasons)
        after_all.update(after_reasons)
        sources_all.update(sources)
        totals.update(pages=len(texts), before=bad_before, after=bad_after)
        rows.append(
            [
                path.stem,
                len(texts),
                bad_before,
                reasons_cell(before_reasons),
                bad_after,
                reasons_cell(after_reasons),
                ", ".join(f"{s} {n}" for s, n in sorted(sources.items())),
            ]
        )
    rows.append(
        [
            "**total**",
            totals["pages"],
            f"**{totals['before']}**",
            reasons_cell(before_all),
            f"**{totals['after']}**",
            reasons_cell(after_all),
            ", ".join(f"{s} {n}" for s, n in sorted(sources_all.items())),
        ]
    )

    print("# Text layers: garbage pages before and after repair\n")
    print(f"{package_versions('pypdf', 'pypdfium2')}; read_page on all pages: {read_ms:,.0f} ms in total\n")
    print(
        table(
            [
                "manual",
                "pages",
                "garbage before",
                "reasons before",
                "garbage after",
                "reasons after",
                "text from",
            ],
            rows,
        )
    )
    print()
    run_together_check(paths)
    print()
    libresolar_check()
    print("\n## Pages whose text changed\n")
    print("\n".join(details) if args.details else f"{len(details)} pages (run with --details to list them)")
    print("\n## Before / after examples (⏎ = line break)\n")
    print_examples({(path, index): (text, result) for path, index, text, result in examples})
    return 0


def longest_run(text: str) -> str:
    """The longest run of letters outside URLs and paths (how words run together would show)."""
    from ingest.textlayer import _LATIN_RUN, _PATHISH

    return max(_LATIN_RUN.findall(_PATHISH.sub(" ", text)), key=len, default="")


def run_together_check(paths: list[Path]) -> None:
    """Words run together? The longest letter run per manual, pypdf against pdfium."""
    rows = []
    for path in paths:
        texts = pypdf_pages(path)
        pypdf_run = max((longest_run(t) for t in texts), key=len)
        pdfium_run = max((longest_run(pdfium_page_text(path, i)) for i in range(len(texts))), key=len)
        rows.append([path.stem, f"{len(pypdf_run)} `{pypdf_run}`", f"{len(pdfium_run)} `{pdfium_run}`"])
    print("## Words run together? Longest run of letters per manual (outside URLs and paths)\n")
    print(table(["manual", "pypdf + clean_text", "pdfium"], rows))


def libresolar_check() -> None:
    """Which reading gets the specification lines right, counted against the rendered page."""
    texts = pypdf_pages(LIBRESOLAR)
    readings = {
        "pypdf + clean_text": lambda i: texts[i],
        "glyph names repaired": lambda i: repair_glyph_names(texts[i]),
        "pdfium": lambda i: pdfium_page_text(LIBRESOLAR, i),
        "read_page": lambda i: read_page(texts[i], LIBRESOLAR, i).text,
    }
    cache = {(name, page): fn(page - 1) for name, fn in readings.items() for page in (9, 10)}
    rows = []
    for page, label, truth in LIBRESOLAR_TRUTH:
        rows.append(
            [page, label, f"`{truth}`"]
            + ["yes" if truth in cache[(name, page)] else "**no**" for name in readings]
        )
    found = {
        name: sum(truth in cache[(name, page)] for page, _, truth in LIBRESOLAR_TRUTH) for name in readings
    }
    rows.append(["", "**found**", ""] + [f"{found[name]}/{len(LIBRESOLAR_TRUTH)}" for name in readings])
    print(f"## {LIBRESOLAR.name}: specification lines (pages 9–10) as the rendered page shows them\n")
    print(table(["page", "value", "line"] + list(readings), rows))
    # Words the whole manual spells with ligatures: where each reading gets them.
    words = ["different", "efficiency", "After", "afterwards", "cutoff", "goes off"]
    whole = {name: "\n".join(fn(i) for i in range(len(texts))) for name, fn in readings.items()}
    print()
    print(
        table(
            ["ligature word (whole manual)"] + list(readings),
            [[w] + [str(whole[n].count(w)) for n in readings] for w in words],
        )
    )


# (manual, 1-based page, (first line of the before excerpt, lines), (same for after))
EXAMPLES = [
    (LIBRESOLAR, 9, ("Maximum charge current", 1), ("Maximum charge current", 1)),
    (LIBRESOLAR, 10, ("Topping / absorption", 2), ("Topping / absorption", 2)),
    (LIBRESOLAR, 5, ("A/f_ter a current", 2), ("After a current", 2)),
    (
        SHARED / "manuals" / "Creality_Ender-3_Quick_Start_Guide_V1.0.pdf",
        5,
        ("Set temperature of the", 6),
        ("Set temperature of the", 4),
    ),
    (
        SHARED / "library" / "Plantower_PMS5003_Data_Manual_v2.3.pdf",
        13,
        ("Data 7 high", 2),
        ("Data7 high", 2),
    ),
]


def excerpt(text: str, needle: str, count: int) -> str:
    lines = text.split("\n")
    for i, line in enumerate(lines):
        if needle in line:
            return " ⏎ ".join(lines[i : i + count])
    return f"({needle!r} not found)"


def print_examples(changed: dict) -> None:
    for path, page, (before_needle, before_lines), (after_needle, after_lines) in EXAMPLES:
        if (path, page - 1) not in changed:
            print(f"- {path.stem} p{page}: unchanged")
            continue
        text, result = changed[(path, page - 1)]
        print(f"- {path.stem} p{page} ({result.source}):")
        print(f"  - before: `{excerpt(text, before_needle, before_lines)}`")
        print(f"  - after: `{excerpt(result.text, after_needle, after_lines)}`")


if __name__ == "__main__":
    raise SystemExit(main())
