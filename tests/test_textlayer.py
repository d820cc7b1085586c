"""Garbage text layers (issue 9): detect them per page, repair glyph names, fall back to pdfium."""

import io
import os
import re
import unicodedata
from pathlib import Path

import pytest

from ingest.parse import clean_text
from ingest.textlayer import (
    BROKEN_WORDS,
    GLYPH_NAMES,
    PRIVATE_USE,
    REPLACEMENT,
    RUN_TOGETHER,
    PageText,
    _fix_pdfium_codes,
    garbage_reasons,
    pdfium_page_text,
    read_page,
    repair_glyph_names,
)
from tests.conftest import SHARED, manual
from tests.factories import make_pdf, write

LIBRESOLAR = SHARED / "library" / "LibreSolar_MPPT-1210-HUS_User_Manual.pdf"
QUICK_START = SHARED / "manuals" / "Creality_Ender-3_Quick_Start_Guide_V1.0.pdf"
PLANTOWER = SHARED / "library" / "Plantower_PMS5003_Data_Manual_v2.3.pdf"
CLEAN_MANUALS = [
    SHARED / "manuals" / "SmartEVSE_v3_Installation_Manual_v1.01_sw3.00.pdf",
    SHARED / "manuals" / "Creality_Ender-3_Trouble_Shootings.pdf",
    QUICK_START,
    SHARED / "library" / "Olimex_ESP32-POE_User_Manual_rev2.6.pdf",
    SHARED / "library" / "Olimex_ESP32-EVB_User_Manual_rev1.0.pdf",
    PLANTOWER,
]
# Pages of those manuals that pypdf really breaks apart, and pdfium reads whole (checked by
# comparing both texts: the same letters and digits, pdfium's in words): the Ender-3 quick
# start guide ("N\nozzle", "H\not B\ned", "S\ntart M\nenu", "O f f i c i a l W\ne b s i t e")
# and the PMS5003 protocol table ("i nd i c a t e s t he n um b e r of").
BROKEN_PAGES = {QUICK_START.name: {2, 4, 5, 8, 11, 12}, PLANTOWER.name: {13}}


def pypdf_texts(path: Path) -> list[str]:
    from pypdf import PdfReader

    return [clean_text(page.extract_text() or "") for page in PdfReader(str(path), strict=False).pages]


def needs_pdfium():
    pytest.importorskip("pypdfium2", reason="pypdfium2 is not installed (requirements add it)")


def glyph_name_pdf(lines: list[str]) -> bytes:
    """A PDF whose font names its digits "zero.pnum" .. "nine.pnum", as the Libre Solar
    manual's does: pypdf extracts "/one.pnum/zero.pnum" for "10", pdfium extracts "10"."""
    from pypdf import PdfWriter
    from pypdf.generic import ArrayObject, DecodedStreamObject, DictionaryObject, NameObject, NumberObject

    digits = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
    writer = PdfWriter()
    encoding = DictionaryObject(
        {
            NameObject("/Type"): NameObject("/Encoding"),
            NameObject("/BaseEncoding"): NameObject("/WinAnsiEncoding"),
            NameObject("/Differences"): ArrayObject(
                [NumberObject(48)] + [NameObject(f"/{d}.pnum") for d in digits]
            ),
        }
    )
    font = writer._add_object(
        DictionaryObject(
            {
                NameObject("/Type"): NameObject("/Font"),
                NameObject("/Subtype"): NameObject("/Type1"),
                NameObject("/BaseFont"): NameObject("/Helvetica"),
                NameObject("/Encoding"): encoding,
            }
        )
    )
    page = writer.add_blank_page(width=612, height=792)
    ops = ["BT", "/F1 11 Tf", "14 TL", "72 740 Td"] + [f"({line}) Tj T*" for line in lines] + ["ET"]
    stream = DecodedStreamObject()
    stream.set_data("\n".join(ops).encode("latin-1"))
    page[NameObject("/Contents")] = writer._add_object(stream)
    page[NameObject("/Resources")] = DictionaryObject(
        {NameObject("/Font"): DictionaryObject({NameObject("/F1"): font})}
    )
    buf = io.BytesIO()
    writer.write(buf)
    return buf.getvalue()


# --- glyph-name repair on synthetic strings --------------------------------------------------


@pytest.mark.parametrize(
    "garbled, repaired",
    [
        ("MPPT /one.pnum/two.pnum/one.pnum/zero.pnum HUS", "MPPT 1210 HUS"),
        ("/one.pnum/two.pnum", "12"),
        ("/two.pnum/zero.pnum/two.pnum/one.pnum-/zero.pnum/five.pnum-/zero.pnum/two.pnum", "2021-05-02"),
        ("/one.pnum./one.pnum Disclaimer", "1.1 Disclaimer"),  # a real "." after a name stays
        ("Nominal system voltage /one.pnum/two.pnum V", "Nominal system voltage 12 V"),
        ("/one.pnum/four.pnum./four.pnum V", "14.4 V"),
        ("of around /four.pnum/zero.pnumV", "of around 40V"),  # the suffix ends before "V"
        ("UEXT I/two.pnumC, SPI", "UEXT I2C, SPI"),
        ("(/three.pnumD files available)", "(3D files available)"),
        ("LiFePO/four.pnum", "LiFePO4"),
        ("-/three.pnum mV/K/cell", "-3 mV/K/cell"),  # "/K" and "/cell" are text, not glyphs
        ("max. /six.pnum mm/two.sups / AWG/one.pnum/zero.pnum", "max. 6 mm² / AWG10"),
        ("A/f_ter a current cuto\ufb00 limit", "After a current cutoff limit"),
        ("a/f_terwards connect", "afterwards connect"),
        ("e\ufb00iciency", "efficiency"),
        ("/zero.tosf/one.tnum/two.onum/three.lf/four.osf/five.tf", "012345"),
        ("/A.sc/b.alt/c.ss01/d.alt2/e.sc.alt", "Abcde"),
        ("/seven/period/five/percent", "7.5%"),
        ("/one/comma/two /hyphen /degree C", "1,2 - ° C"),
        ("/uni00B0C and /uni2126 and /u2264", "°C and \u2126 and ≤"),
        ("H/two.subs O", "H₂ O"),
        ("/f_i/f_f_l", "fiffl"),
    ],
)
def test_glyph_names_become_characters(garbled, repaired):
    assert repair_glyph_names(garbled) == repaired


@pytest.mark.parametrize(
    "text",
    [
        "Temperature compensation -3 mV/K/cell, EN/IEC 62509, and/or AC/DC, I/O, km/h",
        "https://github.com/OLIMEX/ESP32-EVB/tree/master/HARDWARE/one.pnum",
        "sources at github.com/one/two and olimex.com/period, mail me@host.org/one",
        "see ESP32_PoE_PowerReading/ESP32_PoE_PowerReading.ino and docs/a_b.txt",
        "/dev/ttyUSB0 /home/pi /bar /at /space /K /fifteen docs/one.pdf",
        "/g123 (cid:12)",  # glyph ids carry no character: nothing to repair them with
    ],
)
def test_slashes_that_are_not_glyph_names_are_left_alone(text):
    assert repair_glyph_names(text) == text


# --- garbage detection on synthetic strings ---------------------------------------------------

PROSE = (
    "Ensure that the charge controller is configured correctly for the used battery type. "
    "Use lithium ion batteries only if they contain an integrated battery management system.\n"
)


@pytest.mark.parametrize(
    "text, reason",
    [
        (PROSE + "MPPT /one.pnum/two.pnum/one.pnum/zero.pnum HUS", GLYPH_NAMES),
        (PROSE + "Temperature /uni00B0C", GLYPH_NAMES),
        (PROSE + "Fault /g123/g124 (cid:7)", GLYPH_NAMES),
        (
            PROSE + "Data 7 i nd i c a t e s t he n um b e r of\np a r t i c l e s wi t h d i am e t e r",
            BROKEN_WORDS,
        ),
        (PROSE + "Set temperature of the\nN\nozzle\nCurrent temperature of the\nH\not\nB\ned", BROKEN_WORDS),
        (
            PROSE + "Thechargecontrollerprotectsthebattery fromdeepdischargingandovercharging always.",
            RUN_TOGETHER,
        ),
        (("Ensurethatthechargecontroller isconfiguredcorrectly forthe usedbatterytype. " * 6), RUN_TOGETHER),
        (PROSE + "Fault \ufffd\ufffd\ufffd on the relay", REPLACEMENT),
        (PROSE + "Press \ue041\ue042\ue043\ue044 to reset the b\ue045ard", PRIVATE_USE),
    ],
)
def test_synthetic_garbage_is_flagged(text, reason):
    assert reason in garbage_reasons(text)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   \n ",
        PROSE,
        "Module ESP32-WROOM-32E, ESP32-WROVER-IE; MOD-RS485-ISO; UEXT; GPIO0/GPIO2/GPIO12",
        "Start character 1 0x42 (Fixed)\nStart character2 0x4d\nCRC 0xDEADBEEF 0x1A2B3C4D",
        (
            "https://www.olimex.com/Products/IoT/ESP32/ESP32-POE-ISO/open-source-hardware\n"
            "https://github.com/OLIMEX/ESP32-POE/blob/master/SOFTWARE/ARDUINO/ESP32_PoE_PowerReading/"
            "ESP32_PoE_PowerReading.ino"
        ),
        "Temperaturkompensationseinstellung und Überspannungsschutz",  # long German words
        "1. Introduction\n1\n2. SD Slot and USB Port\nX Y Z E axes",
        "Push：OK/Enter Sub Menu Turn：Change Option/Value 温度范围，请参考说明书中的安装步骤和注意事项以及保修条款",
        "\uf075 Zero false alarm rate\n\uf075 Real-time response\n\uf075 Correct data",  # PUA bullets
        "One unknown character: di\ufffderent",
        "He put it in a\nbox, and I\nknow it is a\nsmall one.",
        "Wi-Fi/Bluetooth/Ethernet, Disabled/Enable/SetupWifi",
    ],
)
def test_normal_text_is_not_flagged(text):
    assert garbage_reasons(text) == []


def test_pdfium_control_codes_become_hyphens_or_visible_replacements():
    assert _fix_pdfium_codes("to the best of our knowl\x02edge.") == "to the best of our knowledge."
    assert _fix_pdfium_codes("tools are ESP\x02IDF and Arduino") == "tools are ESP-IDF and Arduino"
    assert _fix_pdfium_codes("including di\x1berent control") == "including di\ufffderent control"
    assert _fix_pdfium_codes("line one\r\nline two\ttab") == "line one\r\nline two\ttab"


# --- read_page on synthetic PDFs -------------------------------------------------------------


def test_a_page_with_glyph_names_is_repaired(tmp_path):
    path = write(
        tmp_path, "specs.pdf", glyph_name_pdf(["Maximum charge current 10 A", "Nominal system voltage 12 V"])
    )
    raw = pypdf_texts(path)[0]
    assert "/one.pnum/zero.pnum A" in raw  # pypdf 7 really produces the glyph names

    page = read_page(raw, path, 0)

    assert page == PageText("Maximum charge current 10 A\nNominal system voltage 12 V", "repaired", [])


def test_a_clean_page_is_returned_as_it_is(tmp_path):
    path = write(tmp_path, "clean.pdf", make_pdf([PROSE.strip()]))
    raw = pypdf_texts(path)[0]

    assert read_page(raw, path, 0) == PageText(raw, "text", [])


def test_broken_words_are_read_again_with_pdfium(tmp_path):
    needs_pdfium()
    path = write(
        tmp_path, "menu.pdf", make_pdf(["Set temperature of the Nozzle\nCurrent temperature of the Hot Bed"])
    )
    broken = "Set temperature of the\nN\nozzle\nCurrent temperature of the\nH\not B\ned"

    page = read_page(broken, path, 0)

    assert page == PageText("Set temperature of the Nozzle\nCurrent temperature of the Hot Bed", "pdfium", [])


def test_garbage_that_pdfium_cannot_fix_keeps_its_reasons(tmp_path):
    needs_pdfium()
    spaced = "O f f i c i a l W e b s i t e : www.example.com\nC o m p a n y A d d r e s s"
    path = write(tmp_path, "spaced.pdf", make_pdf([spaced]))

    page = read_page(spaced, path, 0)

    assert page.text == spaced
    assert page.source == "text"
    assert page.reasons == [BROKEN_WORDS]  # the caller may OCR this page


def test_pdfium_text_that_lost_most_of_the_page_is_not_taken(tmp_path):
    needs_pdfium()
    path = write(tmp_path, "short.pdf", make_pdf(["Nozzle"]))
    broken = PROSE + "Set temperature of the\nN\nozzle\nCurrent temperature of the\nH\not B\ned"

    page = read_page(broken, path, 0)

    assert page.source == "text"
    assert page.text == broken
    assert page.reasons == [BROKEN_WORDS]


def test_an_empty_page_is_not_garbage(tmp_path):
    needs_pdfium()
    path = write(tmp_path, "blank.pdf", make_pdf([PROSE.strip(), None]))

    assert read_page("", path, 1) == PageText("", "text", [])


def test_a_page_pypdf_could_not_read_is_asked_of_pdfium(tmp_path):
    needs_pdfium()
    path = write(tmp_path, "text.pdf", make_pdf([PROSE.strip()]))

    page = read_page("", path, 0)

    assert page.source == "pdfium"
    assert page.text.startswith("Ensure that the charge controller")
    assert page.reasons == []


def test_an_unreadable_file_keeps_the_pypdf_text(tmp_path):
    broken = PROSE + "N\nozzle\nH\not B\ned"

    page = read_page(broken, tmp_path / "missing.pdf", 0)

    assert (page.text, page.source, page.reasons) == (broken, "text", [BROKEN_WORDS])


def test_pdfium_page_text_closes_what_it_opens(tmp_path):
    needs_pdfium()
    if not Path("/proc/self/fd").is_dir():
        pytest.skip("needs /proc/self/fd to count open files")
    path = write(tmp_path, "text.pdf", make_pdf([PROSE.strip(), "second page"]))
    pdfium_page_text(path, 0)  # loads the library once
    before = len(os.listdir("/proc/self/fd"))

    texts = [pdfium_page_text(path, i % 2) for i in range(40)]

    assert len(os.listdir("/proc/self/fd")) == before
    assert texts[1] == "second page"
    with pytest.raises(IndexError):
        pdfium_page_text(path, 2)


# --- the shared manuals ----------------------------------------------------------------------


@pytest.mark.parametrize("path", CLEAN_MANUALS, ids=lambda p: p.stem)
def test_normal_pages_of_the_clean_manuals_are_not_flagged(path):
    texts = pypdf_texts(manual(path))
    broken = BROKEN_PAGES.get(path.name, set())

    flagged = {i + 1: garbage_reasons(text) for i, text in enumerate(texts) if garbage_reasons(text)}

    assert set(flagged) == broken
    assert all(reasons == [BROKEN_WORDS] for reasons in flagged.values())


@pytest.mark.parametrize("path", [QUICK_START, PLANTOWER], ids=lambda p: p.stem)
def test_pages_pypdf_breaks_apart_are_read_whole_by_pdfium(path):
    needs_pdfium()
    texts = pypdf_texts(manual(path))

    pages = [read_page(text, path, i) for i, text in enumerate(texts)]

    assert all(page.reasons == [] for page in pages)
    assert {i + 1 for i, page in enumerate(pages) if page.source == "pdfium"} == BROKEN_PAGES[path.name]
    # the same letters and digits, joined into words
    for number in BROKEN_PAGES[path.name]:
        assert sorted(c for c in pages[number - 1].text if c.isalnum()) == sorted(
            c for c in texts[number - 1] if c.isalnum()
        )
    if path == QUICK_START:
        assert "Set temperature of the\nNozzle" in pages[4].text
        assert "Current temperature of\nthe Hot Bed" in pages[4].text
        assert "2. SD Slot and USB Port" in pages[3].text
        assert "8. Circuit Wiring Diagram" in pages[10].text
    else:
        assert "Data7 indicates the number of\nparticles with diameter beyond 0.3 um" in pages[12].text


def test_every_libresolar_page_has_glyph_names_and_none_after_read_page():
    texts = pypdf_texts(manual(LIBRESOLAR))
    assert len(texts) == 11
    assert all(GLYPH_NAMES in garbage_reasons(text) for text in texts)
    assert sum(text.count(".pnum") for text in texts) > 300

    pages = [read_page(text, LIBRESOLAR, i) for i, text in enumerate(texts)]

    assert [p.source for p in pages] == ["repaired"] * 11
    assert all(p.reasons == [] for p in pages)
    assert not any(re.search(r"/[a-z]+\.(pnum|sups)|/f_t", p.text) for p in pages)


def test_libresolar_numbers_read_as_the_rendered_pages_show_them():
    texts = pypdf_texts(manual(LIBRESOLAR))
    page = {i + 1: read_page(text, LIBRESOLAR, i).text for i, text in enumerate(texts)}

    assert page[1].startswith("MPPT 1210 HUS\nUser Manual")
    assert "3.2 Three-stage battery charging . . ." in page[2]
    # Table 1 (page 9, "Battery"): checked against the page rendered by pypdfium2.
    for line in [
        "Nominal system voltage 12 V",
        "Maximum voltage 16 V",
        "Maximum charge current 10 A",
        "Quiescent current < 10 mA",
        "Maximum open circuit voltage 40 V low temperature to be considered",
        "Number of cells per module 36 to 48",
        "Maximum nominal power 150 W",
        "Conversion efficiency >98% max.",
        "Maximum current 2.0 A total for both ports",
    ]:
        assert line in page[9].split("\n")
    # Page 10: charging setpoints and conditions.
    for line in [
        "Topping / absorption voltage 14.4 V configurable",
        "Trickle charging 13.8 V configurable",
        "Load disconnect voltage 11.7 V configurable, current-compensated",
        "Load reconnect voltage 12.3 V configurable",
        "Temperature compensation -3 mV/K/cell configurable",
        "UEXT I2C, SPI, UART internal, can be used for displays,",
        "of around 40V",
        "-10 °C to +50 °C",
        "Storage temperature -20 °C to +60 °C",
        "Humidity <95%, non-condensing",
        "Screw terminals max. 6 mm² / AWG10",
        "Type of internal fuse 15 A Automotive blade fuse (ATO)",
        "Protection class IP 20 with housing (3D files available)",
    ]:
        assert line in page[10].split("\n")
    assert "Power and function EN/IEC 62509, EN/IEC\n62093" in page[11]
    # ligatures: pypdf knows them, pdfium does not
    assert "including different\ncontrol algorithms" in page[4]
    assert "After a current\ncutoff limit" in page[5]


def test_libresolar_repair_and_pdfium_agree_on_every_number():
    needs_pdfium()
    texts = pypdf_texts(manual(LIBRESOLAR))
    for i, text in enumerate(texts):
        repaired = unicodedata.normalize("NFKC", repair_glyph_names(text))  # "mm²" -> "mm2" as pdfium has it
        assert re.findall(r"\d+(?:\.\d+)?", repaired) == re.findall(
            r"\d+(?:\.\d+)?", pdfium_page_text(LIBRESOLAR, i)
        )
