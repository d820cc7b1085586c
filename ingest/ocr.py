"""OCR of one PDF page that has no usable text layer (a scan, a photographed diagram).

The page is rendered with pdfium (``pypdfium2``) at ``dpi`` in grayscale, one page at a time,
and handed to an OCR engine that runs fully offline:

* ``"tesseract"`` (the default): Debian's ``tesseract-ocr`` 5 with ``tesseract-ocr-eng``,
  run as a subprocess (no Python binding needed). Chosen by measurement
  (``bench/bench_ocr.py``; docs/benchmarks.md, "OCR engine: tesseract vs rapidocr"): on 8
  text pages of the shared manuals turned into image-only PDFs it found 99 % of the words,
  clean or photocopied, against 56 % (clean) and 33 % (photocopied) for rapidocr, whose
  recogniser runs English words together ("TheESP32-EVBboard"); on the two drawings of the
  Ender-3 guide both found ~77 %. It took 1.4-2.4 s a page against 8-15 s on 2 busy cores,
  and its layout analysis keeps columns and paragraphs apart.
* ``"rapidocr"``: ``rapidocr-onnxruntime`` (PP-OCR models shipped inside the wheel, run by
  onnxruntime; not in the lock files, install it to use it). It also reads the Chinese labels
  of bilingual drawings. It returns text lines without an order; they are put back into lines
  and blocks here by their positions.

The text keeps reading order: the lines of a block are joined with "\\n", blocks (paragraphs)
are separated by a blank line, so a chunker splitting on "\\n\\n" and sentences works.

Plain Python (no Django): callers pass the engine name, e.g. from the NANOSENTRI_OCR setting.
"""
from __future__ import annotations

import functools
import io
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

ENGINES = ("tesseract", "rapidocr")
DEFAULT_ENGINE = "tesseract"
TESSERACT_LANGUAGE = "eng"
TESSERACT_TIMEOUT_S = 300
# A page is rendered at ``dpi`` unless that exceeds this many pixels (posters, A0 drawings):
# then at the largest resolution below it, so memory stays bounded.
MAX_PIXELS = 40_000_000


class OcrUnavailable(Exception):
    """The OCR engine is not installed here; ``str(exc)`` tells an admin what to install."""


@dataclass
class OcrText:
    text: str
    confidence: float | None  # mean word (tesseract) / line (rapidocr) confidence, 0..1
    engine: str


def ocr_available(engine: str | None = None) -> bool:
    """Whether ``engine`` (default: ``DEFAULT_ENGINE``) can run here."""
    try:
        _check(_engine_name(engine))
    except OcrUnavailable:
        return False
    return True


def ocr_pdf_page(path: Path, page_index: int, *, dpi: int = 200, engine: str | None = None) -> OcrText:
    """The text OCR reads on page ``page_index`` (0-based) of the PDF at ``path``."""
    name = _engine_name(engine)
    _check(name)
    image = render_page(Path(path), page_index, dpi=dpi)
    try:
        if name == "tesseract":
            return _tesseract(image, round(image.info["dpi"][0]))
        return _rapidocr(image)
    finally:
        image.close()


def render_page(path: Path, page_index: int, *, dpi: int = 200):
    """Page ``page_index`` of the PDF as a grayscale PIL image (only that page is loaded);
    ``image.info["dpi"]`` is the resolution it was rendered at."""
    import pypdfium2 as pdfium

    pdf = pdfium.PdfDocument(str(path))
    try:
        if not 0 <= page_index < len(pdf):
            raise IndexError(f"page index {page_index} out of range: {path.name} has {len(pdf)} pages")
        page = pdf[page_index]
        try:
            width, height = page.get_size()  # points, 1/72 inch
            scale = dpi / 72
            if width * height * scale * scale > MAX_PIXELS:
                scale = (MAX_PIXELS / (width * height)) ** 0.5
            bitmap = page.render(scale=scale, grayscale=True)
            try:
                image = bitmap.to_pil().copy()  # to_pil() shares the bitmap's buffer
                image.info["dpi"] = (scale * 72, scale * 72)
                return image
            finally:
                bitmap.close()
        finally:
            page.close()
    finally:
        pdf.close()


# --- engines -------------------------------------------------------------------------------------


def _engine_name(engine: str | None) -> str:
    name = (engine or DEFAULT_ENGINE).strip().lower()
    if name not in ENGINES:
        raise OcrUnavailable(f"unknown OCR engine {engine!r}: choose one of {', '.join(ENGINES)}")
    return name


def _check(name: str) -> None:
    if name == "tesseract":
        if shutil.which("tesseract") is None:
            raise OcrUnavailable(
                "the tesseract program is not installed: install the Debian packages tesseract-ocr "
                "and tesseract-ocr-eng (scripts/install.sh does), or turn OCR off (NANOSENTRI_OCR=off)"
            )
    elif not _rapidocr_importable():
        raise OcrUnavailable(
            "rapidocr is not installed in this Python environment: pip install rapidocr-onnxruntime, "
            "or use NANOSENTRI_OCR=tesseract"
        )


def _tesseract(image, dpi: int) -> OcrText:
    png = io.BytesIO()
    image.save(png, format="PNG")
    env = dict(os.environ)
    # OpenMP threads spin-wait: on 2 cores with other work running, 2 threads were never faster
    # than 1 and up to 13x slower (docs/benchmarks.md), so one thread unless the site says otherwise.
    env.setdefault("OMP_THREAD_LIMIT", "1")
    command = ["tesseract", "stdin", "stdout", "-l", TESSERACT_LANGUAGE, "--dpi", str(dpi), "tsv"]
    try:
        done = subprocess.run(command, input=png.getvalue(), capture_output=True, env=env,
                              timeout=TESSERACT_TIMEOUT_S, check=False)
    except FileNotFoundError as exc:
        raise OcrUnavailable("the tesseract program is not installed: install tesseract-ocr and "
                             "tesseract-ocr-eng") from exc
    stderr = done.stderr.decode(errors="replace").strip()
    if done.returncode != 0:
        if "Failed loading language" in stderr or "Error opening data file" in stderr:
            raise OcrUnavailable(f"tesseract has no '{TESSERACT_LANGUAGE}' language data: install the "
                                 f"Debian package tesseract-ocr-{TESSERACT_LANGUAGE}")
        raise RuntimeError(f"tesseract failed (exit {done.returncode}): {stderr[-500:]}")
    return _from_tsv(done.stdout.decode("utf-8", errors="replace"))


def _from_tsv(tsv: str) -> OcrText:
    """Tesseract's TSV (one row per word with block / paragraph / line numbers) as text."""
    blocks: list[list[list[str]]] = []  # paragraphs > lines > words
    confidences: list[float] = []
    last_paragraph = last_line = None
    for row in tsv.splitlines()[1:]:
        cols = row.split("\t")
        if len(cols) < 12 or cols[0] != "5":  # level 5 = word
            continue
        word = cols[11].strip()
        if not word:
            continue
        paragraph, line = (cols[1], cols[2], cols[3]), cols[4]
        if paragraph != last_paragraph:
            blocks.append([])
            last_paragraph, last_line = paragraph, None
        if line != last_line:
            blocks[-1].append([])
            last_line = line
        blocks[-1][-1].append(word)
        conf = float(cols[10])
        if conf >= 0:
            confidences.append(conf / 100)
    text = "\n\n".join("\n".join(" ".join(words) for words in lines) for lines in blocks)
    confidence = sum(confidences) / len(confidences) if confidences else None
    return OcrText(text=text, confidence=confidence, engine="tesseract")


@functools.cache
def _rapidocr_importable() -> bool:
    try:
        import rapidocr_onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


@functools.cache
def _rapidocr_engine():
    from rapidocr_onnxruntime import RapidOCR

    return RapidOCR()  # loads its three ONNX models once per process (0.6 s here)


def _rapidocr(image) -> OcrText:
    import numpy as np

    result, _ = _rapidocr_engine()(np.asarray(image.convert("RGB")))
    boxes = []
    for points, text, score in result or []:
        xs, ys = [p[0] for p in points], [p[1] for p in points]
        if text.strip():
            boxes.append((min(xs), min(ys), max(xs), max(ys), text.strip(), float(score)))
    text = _layout(boxes)
    confidence = sum(b[5] for b in boxes) / len(boxes) if boxes else None
    return OcrText(text=text, confidence=confidence, engine="rapidocr")


def _layout(boxes: list[tuple]) -> str:
    """Text lines (x0, y0, x1, y1, text, score) as lines and blocks in reading order.

    Boxes that overlap vertically and sit close side by side form a line; a line starts a new
    block when it is far below the previous one or does not overlap it horizontally (another
    column, another label), and blocks are ordered by their top edge, then left edge.
    """
    if not boxes:
        return ""
    heights = sorted(b[3] - b[1] for b in boxes)
    height = heights[len(heights) // 2] or 1
    lines: list[list[tuple]] = []
    for box in sorted(boxes, key=lambda b: (b[1] + b[3]) / 2):
        for line in lines:
            last = line[-1]
            overlap = min(box[3], last[3]) - max(box[1], last[1])
            near = any(abs(box[0] - other[2]) < 2 * height or abs(other[0] - box[2]) < 2 * height
                       for other in line)
            if overlap > 0.5 * min(box[3] - box[1], last[3] - last[1]) and near:
                line.append(box)
                break
        else:
            lines.append([box])
    spans = []
    for line in lines:
        line.sort(key=lambda b: b[0])
        spans.append((min(b[0] for b in line), min(b[1] for b in line), max(b[2] for b in line),
                      max(b[3] for b in line), " ".join(b[4] for b in line)))
    blocks: list[list[tuple]] = []
    for span in sorted(spans, key=lambda s: (s[1], s[0])):
        for block in blocks:
            last = block[-1]
            gap = span[1] - last[3]
            if -0.5 * height < gap < 0.8 * height and min(span[2], last[2]) > max(span[0], last[0]):
                block.append(span)
                break
        else:
            blocks.append([span])
    blocks.sort(key=lambda b: (b[0][1], b[0][0]))
    return "\n\n".join("\n".join(s[4] for s in block) for block in blocks)
