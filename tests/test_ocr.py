"""OCR of pages without a text layer (ingest.ocr): the real engine on real pages, and its errors.

Tesseract is installed by scripts/install.sh, so its tests do not skip when it is missing: a
missing install step must fail here. rapidocr is optional and its test skips without it.
"""
import collections
import re

import pytest

from ingest import ocr
from ingest.ocr import OcrText, OcrUnavailable, ocr_available, ocr_pdf_page
from tests.factories import make_pdf, write


def words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


def recall(truth: str, found: str) -> float:
    t = collections.Counter(words(truth))
    return sum((t & collections.Counter(words(found))).values()) / sum(t.values())


@pytest.fixture
def tesseract():
    assert ocr_available("tesseract"), "tesseract is not installed: run scripts/install.sh"
    return "tesseract"


def scan_of(pdf, page_index, tmp_path, dpi=150):
    """An image-only PDF of one page: rendered, grayscale, tilted 0.5°, stored as a JPEG."""
    from PIL import Image

    image = ocr.render_page(pdf, page_index, dpi=dpi).rotate(0.5, resample=Image.BICUBIC, fillcolor=255)
    path = tmp_path / "scan.pdf"
    image.save(path, format="PDF", resolution=dpi)
    return path


# --- the real engine on real pages ----------------------------------------------------------------


def test_the_default_engine_reads_the_trouble_shooting_flow_chart(quick_start, tesseract):
    result = ocr_pdf_page(quick_start, 9)  # page 10: an image, only "7. Trouble shooting" is text

    assert isinstance(result, OcrText) and result.engine == "tesseract"
    assert 0 < result.confidence <= 1
    found = set(words(result.text))
    assert {"thermistor", "reconnect", "cables", "replacement", "coupling", "filament", "slicing",
            "resolved"} <= found
    assert "Reconnect the cables" in result.text
    assert "\n\n" in result.text  # blocks stay apart for the chunker


def test_the_default_engine_reads_the_wiring_diagram_labels(quick_start, tesseract):
    result = ocr_pdf_page(quick_start, 10)  # page 11: a photo of the board with callouts

    found = set(words(result.text))
    assert {"extruder", "motor", "controlable", "supply", "limit", "switch", "nozzle", "thermistor"} <= found


def test_a_scan_of_a_text_page_recovers_its_words(smartevse, tesseract, tmp_path):
    from pypdf import PdfReader

    truth = PdfReader(smartevse).pages[0].extract_text()
    scan = scan_of(smartevse, 0, tmp_path)
    assert not PdfReader(scan).pages[0].extract_text().strip()  # nothing but the image

    result = ocr_pdf_page(scan, 0, dpi=200)

    assert recall(truth, result.text) >= 0.8
    assert "Calibrate CT1" in result.text


def test_rapidocr_reads_the_flow_chart_when_installed(quick_start):
    if not ocr_available("rapidocr"):
        pytest.skip("rapidocr-onnxruntime is not installed (optional engine)")

    result = ocr_pdf_page(quick_start, 9, engine="rapidocr")

    assert result.engine == "rapidocr" and 0 < result.confidence <= 1
    assert {"thermistor", "coupling", "resolved"} <= set(words(result.text))


def test_a_blank_page_gives_empty_text(tmp_path, tesseract):
    path = write(tmp_path, "blank.pdf", make_pdf([None]))

    result = ocr_pdf_page(path, 0)

    assert result.text == "" and result.confidence is None


def test_a_page_index_past_the_end_is_an_index_error(tmp_path, tesseract):
    path = write(tmp_path, "one.pdf", make_pdf([None]))

    with pytest.raises(IndexError, match="has 1 pages"):
        ocr_pdf_page(path, 1)


# --- engines that are not there -------------------------------------------------------------------


def test_an_unknown_engine_is_unavailable_with_the_choices(tmp_path):
    path = write(tmp_path, "one.pdf", make_pdf([None]))

    assert not ocr_available("abbyy")
    with pytest.raises(OcrUnavailable, match="unknown OCR engine 'abbyy': choose one of tesseract, rapidocr"):
        ocr_pdf_page(path, 0, engine="abbyy")


def test_a_missing_tesseract_says_what_to_install(tmp_path, monkeypatch):
    path = write(tmp_path, "one.pdf", make_pdf([None]))
    monkeypatch.setattr(ocr.shutil, "which", lambda name: None)

    assert not ocr_available("tesseract")
    with pytest.raises(OcrUnavailable) as exc:
        ocr_pdf_page(path, 0, engine="tesseract")
    assert "tesseract-ocr and tesseract-ocr-eng" in str(exc.value)
    assert "NANOSENTRI_OCR=off" in str(exc.value)


def test_missing_tesseract_language_data_says_what_to_install(tmp_path, monkeypatch, tesseract):
    path = write(tmp_path, "one.pdf", make_pdf([None]))
    monkeypatch.setattr(ocr, "TESSERACT_LANGUAGE", "xqz")  # no such traineddata

    with pytest.raises(OcrUnavailable, match="install the Debian package tesseract-ocr-xqz"):
        ocr_pdf_page(path, 0)


def test_a_missing_rapidocr_says_what_to_install(tmp_path, monkeypatch):
    path = write(tmp_path, "one.pdf", make_pdf([None]))
    monkeypatch.setattr(ocr, "_rapidocr_importable", lambda: False)

    assert not ocr_available("rapidocr")
    with pytest.raises(OcrUnavailable, match="pip install rapidocr-onnxruntime"):
        ocr_pdf_page(path, 0, engine="rapidocr")


# --- reading order ---------------------------------------------------------------------------------


def test_tesseract_lines_and_paragraphs_become_lines_and_blank_lines():
    header = "level\tpage_num\tblock_num\tpar_num\tline_num\tword_num\tleft\ttop\twidth\theight\tconf\ttext"
    rows = [
        (1, 1, 1, 1, "Error", 96), (1, 1, 1, 2, "E01", 90), (1, 1, 2, 1, "check", 80),
        (1, 2, 1, 1, "Fuse", 70), (2, 1, 1, 1, "F2", 60),
    ]
    tsv = "\n".join([header, "4\t1\t1\t1\t1\t0\t0\t0\t0\t0\t-1\t"] + [
        f"5\t1\t{b}\t{p}\t{l}\t{w}\t0\t0\t10\t10\t{c}\t{t}" for b, p, l, w, t, c in rows
    ])

    result = ocr._from_tsv(tsv)

    assert result.text == "Error E01\ncheck\n\nFuse\n\nF2"
    assert result.confidence == pytest.approx(0.792)


def test_rapidocr_boxes_are_put_in_lines_and_blocks():
    # (x0, y0, x1, y1, text, score): two lines of one paragraph, split into two boxes on one line,
    # then a label far below.
    boxes = [
        (300, 100, 500, 120, "the relay.", 0.9), (10, 100, 280, 120, "Switch off and check", 0.9),
        (10, 125, 400, 145, "the contactor wiring.", 0.9),
        (10, 400, 100, 420, "Fuse F2", 0.9),
    ]

    assert ocr._layout(boxes) == "Switch off and check the relay.\nthe contactor wiring.\n\nFuse F2"
