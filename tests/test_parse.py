"""Parsing uploads into physical, 1-based pages — or a ParseError an admin can act on."""
import pytest

from ingest.parse import ParseError, clean_text, parse_file
from tests.factories import corrupt_pdf, image_only_pdf, make_pdf, write


# --- real manuals ---------------------------------------------------------------------------


def test_it_parses_the_smartevse_manual_into_two_physical_pages(smartevse):
    parsed = parse_file(smartevse)

    assert parsed.page_count == 2
    assert [p.number for p in parsed.pages] == [1, 2]
    assert parsed.empty_pages == []
    # Page 1 of the PDF holds the menu table that starts with the GRID / CAL settings.
    assert "Calibrate CT1" in parsed.pages[0].text
    assert "Calibrate CT1" not in parsed.pages[1].text
    assert all(len(p.text) > 1000 for p in parsed.pages)


def test_it_parses_the_ender3_trouble_shootings_with_page_numbers(troubleshooting):
    parsed = parse_file(troubleshooting)

    assert parsed.page_count == 2
    assert [p.number for p in parsed.pages] == [1, 2]
    assert "Filament not stick on hot bed" in parsed.pages[0].text
    assert parsed.empty_pages == []


def test_it_parses_the_quick_start_guide_with_twelve_physical_pages(quick_start):
    parsed = parse_file(quick_start)

    assert parsed.page_count == 12
    assert [p.number for p in parsed.pages] == list(range(1, 13))
    assert "Quick Start Guide" in parsed.pages[0].text
    assert all(len(parsed.pages[i].text) > 200 for i in range(9))
    # Pages 10 and 11 are drawings (trouble-shooting chart, wiring diagram) whose only text
    # is their section heading: they are reported as pages without searchable text.
    assert parsed.empty_pages == [10, 11]
    assert "Trouble shooting" in parsed.pages[9].text
    assert "iagram" in parsed.pages[10].text  # "D\niagram": the heading is split into glyph runs
    assert 12 in [p.number for p in parsed.text_pages]


LONG_1 = "Error E01: the relay is stuck. Switch off the mains and check the contactor wiring."
LONG_3 = "Fuse F2 protects the control board. Replace it only with a 315 mA slow-blow fuse."


def test_it_lists_pages_without_a_text_layer_as_empty_pages(tmp_path):
    path = write(tmp_path, "mixed.pdf", make_pdf([LONG_1, None, LONG_3, None]))

    parsed = parse_file(path)

    assert parsed.page_count == 4
    assert [p.number for p in parsed.pages] == [1, 2, 3, 4]
    assert parsed.empty_pages == [2, 4]
    assert [p.number for p in parsed.text_pages] == [1, 3]
    assert parsed.pages[2].text == LONG_3


def test_a_page_with_only_a_heading_and_page_number_counts_as_an_image_page(tmp_path):
    path = write(tmp_path, "diagram.pdf", make_pdf([LONG_1, "8. Circuit Wiring Diagram\n8", LONG_3]))

    parsed = parse_file(path)

    assert parsed.empty_pages == [2]
    assert parsed.pages[1].text == "8. Circuit Wiring Diagram\n8"  # the heading is kept


# --- PDFs that cannot be indexed ------------------------------------------------------------


def test_a_corrupt_pdf_is_a_parse_error(tmp_path):
    path = write(tmp_path, "broken.pdf", corrupt_pdf())

    with pytest.raises(ParseError) as exc:
        parse_file(path)

    assert "corrupt or unreadable" in str(exc.value)


def test_a_truncated_real_manual_is_a_parse_error(tmp_path, smartevse):
    data = smartevse.read_bytes()
    path = write(tmp_path, "truncated.pdf", data[: len(data) // 2])

    with pytest.raises(ParseError) as exc:
        parse_file(path)

    assert "corrupt or unreadable" in str(exc.value)


@pytest.mark.parametrize("algorithm", ["RC4-128", "AES-128", "AES-256"])
def test_a_password_protected_pdf_is_rejected_as_encrypted(tmp_path, algorithm):
    pdf = make_pdf(["secret wiring notes"], user_password="secret", algorithm=algorithm)
    path = write(tmp_path, "locked.pdf", pdf)

    with pytest.raises(ParseError) as exc:
        parse_file(path)

    assert "encrypted" in str(exc.value)


@pytest.mark.parametrize("algorithm", ["RC4-128", "AES-256"])
def test_a_pdf_encrypted_with_an_empty_user_password_is_readable(tmp_path, algorithm):
    pdf = make_pdf([LONG_1, LONG_3], user_password="", algorithm=algorithm)
    path = write(tmp_path, "restricted.pdf", pdf)

    parsed = parse_file(path)

    assert parsed.page_count == 2
    assert [p.text for p in parsed.pages] == [LONG_1, LONG_3]
    assert parsed.empty_pages == []


def test_an_image_only_pdf_says_ocr_is_not_supported(tmp_path):
    path = write(tmp_path, "scan.pdf", image_only_pdf(3))

    with pytest.raises(ParseError) as exc:
        parse_file(path)

    assert "no text layer — the PDF holds only images and OCR is turned off" in str(exc.value)


def test_an_empty_file_is_a_parse_error(tmp_path):
    path = write(tmp_path, "empty.pdf", b"")

    with pytest.raises(ParseError) as exc:
        parse_file(path)

    assert "empty" in str(exc.value)


def test_text_named_pdf_is_not_a_pdf(tmp_path):
    path = write(tmp_path, "manual.pdf", "This is plain text pretending to be a PDF.\n" * 5)

    with pytest.raises(ParseError) as exc:
        parse_file(path)

    assert "not a PDF" in str(exc.value)


@pytest.mark.parametrize("name", ["manual.docx", "setup.exe", "README"])
def test_an_unsupported_extension_is_a_parse_error(tmp_path, name):
    path = write(tmp_path, name, b"PK\x03\x04 some zipped word document")

    with pytest.raises(ParseError) as exc:
        parse_file(path)

    assert "unsupported file type" in str(exc.value)


def test_the_given_file_name_decides_the_type_not_the_stored_path(tmp_path):
    # Uploads are stored under their hash; the original name carries the extension.
    stored = write(tmp_path, "ab12cd", "Fault F3 means the door switch is open.")

    parsed = parse_file(stored, "door-faults.txt")

    assert parsed.pages[0].text == "Fault F3 means the door switch is open."
    with pytest.raises(ParseError):
        parse_file(stored, "door-faults.docx")


# --- text files -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["notes.txt", "notes.md", "service.log", "codes.csv", "UPPER.TXT"])
def test_text_files_parse_as_one_page(tmp_path, name):
    path = write(tmp_path, name, "code,meaning\nE01,relay stuck\nE02,overheat\n")

    parsed = parse_file(path)

    assert parsed.page_count == 1
    assert parsed.pages[0].number == 1
    assert parsed.pages[0].text == "code,meaning\nE01,relay stuck\nE02,overheat"
    assert parsed.empty_pages == []


def test_form_feeds_split_a_text_file_into_pages(tmp_path):
    path = write(tmp_path, "manual.txt", "Page one: safety\fPage two: wiring\f\fPage four: faults")

    parsed = parse_file(path)

    assert parsed.page_count == 4
    assert [p.number for p in parsed.pages] == [1, 2, 3, 4]
    assert [p.text for p in parsed.pages] == ["Page one: safety", "Page two: wiring", "", "Page four: faults"]
    assert parsed.empty_pages == [3]


def test_a_text_file_with_a_bom_and_latin1_bytes_is_decoded(tmp_path):
    utf8 = write(tmp_path, "bom.txt", "\ufeffTemperatur 60 °C".encode("utf-8"))
    latin = write(tmp_path, "latin.txt", "Temperatur 60 °C".encode("latin-1"))

    assert parse_file(utf8).pages[0].text == "Temperatur 60 °C"
    assert parse_file(latin).pages[0].text == "Temperatur 60 °C"


def test_binary_content_in_a_text_file_is_an_error(tmp_path):
    path = write(tmp_path, "firmware.txt", b"\x7fELF\x02\x01\x01\x00\x00\x00\x00binary")

    with pytest.raises(ParseError) as exc:
        parse_file(path)

    assert "binary" in str(exc.value)


def test_a_whitespace_only_text_file_is_empty(tmp_path):
    path = write(tmp_path, "blank.md", "  \n\n\t \n")

    with pytest.raises(ParseError) as exc:
        parse_file(path)

    assert "empty" in str(exc.value)


# --- clean_text -----------------------------------------------------------------------------


def test_clean_text_joins_words_hyphenated_across_lines():
    assert clean_text("the thermo-\ncouple is loose") == "the thermocouple is loose"


def test_clean_text_keeps_real_hyphens_and_dashes():
    assert clean_text("a 3-wire grid - see page 2") == "a 3-wire grid - see page 2"


def test_clean_text_squeezes_whitespace_and_blank_lines():
    raw = "  Error\t\tE01   relay\u00a0stuck  \r\n\r\n\r\n\r\nCheck   wiring \n"

    assert clean_text(raw) == "Error E01 relay stuck\n\nCheck wiring"


def test_clean_text_drops_control_characters():
    assert clean_text("Fuse\x00 F2\x07 blown") == "Fuse F2 blown"


def test_ocr_that_reads_only_a_few_callouts_leaves_the_page_without_readable_text(tmp_path, monkeypatch):
    from ingest import ocr

    path = write(tmp_path, "board.pdf", make_pdf(["Relay K1 switches the pump contactor; fuse F1 protects it.", None]))
    monkeypatch.setattr(ocr, "ocr_pdf_page", lambda *a, **k: ocr.OcrText(text="K1 K2\nJP1", confidence=0.4,
                                                                       engine="tesseract"))

    parsed = parse_file(path, ocr_engine="tesseract")

    assert parsed.empty_pages == [2]
    assert parsed.page_sources == {}
    assert [p.source for p in parsed.pages] == ["text", "text"]


def test_ocr_text_replaces_a_page_without_a_text_layer(tmp_path, monkeypatch):
    from ingest import ocr

    path = write(tmp_path, "scan.pdf", make_pdf(["Relay K1 switches the pump contactor; fuse F1 protects it.", None]))
    recognised = "Wiring diagram\nThe heater is fed from terminal X4 through fuse F2 (3.15 A slow)."
    monkeypatch.setattr(ocr, "ocr_pdf_page", lambda *a, **k: ocr.OcrText(text=recognised, confidence=0.9,
                                                                       engine="tesseract"))

    parsed = parse_file(path, ocr_engine="tesseract")

    assert parsed.empty_pages == []
    assert parsed.page_sources == {"ocr": [2]}
    assert parsed.pages[1].source == "ocr" and "fuse F2 (3.15 A slow)" in parsed.pages[1].text
