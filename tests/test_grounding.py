"""The check of the model's text against its evidence, and how the unsupported parts are marked."""

import re
from html.parser import HTMLParser
from itertools import pairwise

import pytest

from apps.chat.grounding import ALWAYS_GROUNDED, Claim, ungrounded_claims
from apps.chat.rendering import render_answer

SMARTEVSE_ERRORS = """Error Messages
If an error occurs, the SmartEVSE will stop charging, and display one of the
following messages:
ERROR NO SERIAL COM CHECK WIRING No signal from the Sensorbox or
other SmartEVSE (when load balancing is used) has been received for 10
seconds. Please check the wiring to the Sensorbox or other SmartEVSE.
ERROR NO CURRENT There is not enough current available to start charging.
The SmartEVSE will try again in 60 seconds.
ERROR HIGH TEMP The temperature inside the module has reached 65º
Celsius. Charging is stopped.
Once the temperature has dropped below 55ºC charging is started again."""

MANUAL = "SmartEVSE_v3_Installation_Manual_v1.01_sw3.00.pdf"
CITATIONS = [{"n": 1, "document": MANUAL, "page": 2}]


def claims(answer: str, *evidence: str, citations=None) -> list[Claim]:
    return ungrounded_claims(
        answer, evidence=list(evidence), citations=CITATIONS if citations is None else citations
    )


def flagged(answer: str, *evidence: str, citations=None) -> list[tuple[str, str]]:
    return [(c.kind, c.text) for c in claims(answer, *evidence, citations=citations)]


# --- the real examples ---------------------------------------------------------------------------------


def test_an_invented_resume_temperature_is_flagged_where_it_is_written():
    answer = "Charging stops at 65 °C and resumes below 50 ºC [1]."

    [claim] = claims(answer, SMARTEVSE_ERRORS)

    assert claim == Claim("number", "50 ºC", answer.index("50"), answer.index("50") + 5)
    assert answer[claim.start : claim.end] == "50 ºC"


def test_the_temperatures_the_manual_gives_are_grounded():
    answer = "ERROR HIGH TEMP: charging stops at 65 °C and starts again below 55 °C [1]."

    assert claims(answer, SMARTEVSE_ERRORS) == []


def test_an_invented_manual_edition_and_page_are_flagged_but_the_marker_is_not():
    answer = "[1] SmartEVSE_v3_Installation_Manual_v1.02_sw5.pdf, page 4"

    assert flagged(answer, SMARTEVSE_ERRORS) == [
        ("reference", "SmartEVSE_v3_Installation_Manual_v1.02_sw5.pdf"),
        ("reference", "page 4"),
    ]


def test_the_cited_document_and_page_are_not_flagged():
    assert claims(f"[1] {MANUAL}, page 2", SMARTEVSE_ERRORS) == []
    assert claims(f"See {MANUAL} (p. 2).", SMARTEVSE_ERRORS) == []


# --- numbers -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "written",
    [
        "55ºC",
        "55 ºC",
        "55°C",
        "55 °C",
        "55 C",
        "55 degrees",
        "55 degrees C",
        "55 degrees Celsius",
        "55° Celsius",
        "55\u2009°C",
        "55 ℃",
    ],
)
def test_temperatures_are_one_unit_however_written(written):
    assert claims(f"Charging restarts below {written}.", "Charging restarts below 55 °C.") == []
    assert claims("Charging restarts below 55 °C.", f"Charging restarts below {written}.") == []


@pytest.mark.parametrize(
    "written", ["12V", "12 V", "12 v", "12 volts", "12 Volts", "12 VDC", "12\u00a0V", "12-volt"]
)
def test_volts_are_one_unit_however_written(written):
    assert claims(f"Measure {written} at the input.", "The input takes 12 V.") == []
    assert claims("Measure 12 V at the input.", f"The input takes {written}.") == []


def test_a_unit_a_couple_of_words_after_the_number_in_the_evidence_counts():
    assert claims("It reached 65 °C.", "reached 65º\nCelsius.") == []
    assert claims("Supply 12 V.", "supply 12 DC volts") == []


@pytest.mark.parametrize(
    ("answer", "evidence"),
    [
        ("500 mA", "0.5 A"),
        ("1.5 kW", "1500 W"),
        ("2 min", "120 seconds"),
        ("5 µA", "5 uA"),
        ("5 uA", "5 μA"),
        ("25 µg/m³", "25 ug/m3"),
        ("2.5 mm²", "2.5 mm2"),
        ("10 kΩ", "10 kohm"),
        ("115200 baud", "115200 bps"),
    ],
)
def test_the_same_quantity_in_another_spelling_or_prefix_is_grounded(answer, evidence):
    assert claims(f"Use {answer}.", f"Rated {evidence}.") == []


@pytest.mark.parametrize(
    ("answer", "evidence"),
    [("12 V", "12 A"), ("5 m", "5 mm"), ("65 °F", "65 °C"), ("30 s", "30 min"), ("16 A", "max 16")],
)
def test_a_value_the_evidence_gives_with_another_unit_or_none_is_flagged(answer, evidence):
    assert flagged(f"Use {answer}.", f"Rated {evidence}.") == [("number", answer)]


def test_a_bare_number_is_grounded_by_the_value_anywhere_in_the_evidence():
    assert claims("Press the button 3 times, then wait.", "Press 3 times") == []
    assert claims("Use pin 12.", "GPIO12 drives the relay") == []
    assert flagged("Press the button 4 times.", "Press 3 times") == [("number", "4")]


@pytest.mark.parametrize(
    ("answer", "evidence"),
    [
        ("5-12V", "5 to 12 V"),
        ("50 to 60 Hz", "50-60Hz"),
        ("5 - 12 V", "12 V or 5 V"),
        ("55 °C", "between 55 and 65 °C"),
    ],
)
def test_ranges_are_grounded_end_by_end(answer, evidence):
    assert claims(f"Supply {answer}.", f"Supply {evidence}.") == []


def test_a_range_with_an_invented_end_is_flagged_whole():
    assert flagged("Supply 5-24V.", "Supply 5 to 12 V and 24 A.") == [("number", "5-24V")]


@pytest.mark.parametrize("answer", ["3.3V", "0.5 mm", "3.3 V"])
def test_decimals(answer):
    assert claims(f"Use {answer}.", "Logic 3.3 V, wire 0,5 mm.") == []
    assert flagged(f"Use {answer}.", "Logic 3.2 V, wire 0.4 mm.") == [("number", answer)]


def test_an_invented_address_is_flagged_and_a_given_one_is_not():
    assert claims("Browse to 192.168.4.1.", "The access point is at 192.168.4.1") == []
    assert flagged("Browse to 192.168.1.1.", "The access point is at 192.168.4.1") == [
        ("number", "192.168.1.1")
    ]


def test_list_markers_citation_markers_and_ordinals_are_not_numbers():
    answer = "1. Switch off.\n2) Wait [1].\n3. The 2nd relay.\n## 4. Done"

    assert claims(answer, "Switch off and wait.") == []


# --- codes ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "evidence"),
    [
        ("ERROR HIGH TEMP", SMARTEVSE_ERRORS),
        ("NO SERIAL COM", SMARTEVSE_ERRORS),
        ("ERROR HIGH TEMP", "Error_High_Temp"),
        ("Err 3", "ERR3"),
        ("Err 3", "err_3"),
        ("ERR-3", "Err 3"),
        ("E01", "code e01"),
        ("E01", "E-01"),
        ("F-05", "F05"),
        ("0x1F", "status 0x1f"),
    ],
)
def test_a_code_in_the_evidence_is_grounded_whatever_its_case_and_separators(code, evidence):
    assert claims(f"The display shows {code}.", evidence) == []


@pytest.mark.parametrize("code", ["ERROR LOW TEMP", "Err 4", "E02", "F-06", "0x2F", "ERROR 12"])
def test_an_invented_code_is_flagged(code):
    assert flagged(f"The display shows {code}.", SMARTEVSE_ERRORS + "\nErr 3 E01 F-05 0x1F ERROR 11") == [
        ("code", code)
    ]


def test_a_code_is_not_found_inside_other_words():
    assert flagged("Code E01.", "the 01 cable") == [("code", "E01")]
    assert flagged("It says NO SERIAL COM.", "no serial communication") == [("code", "NO SERIAL COM")]


def test_the_technicians_question_is_evidence():
    assert claims("E07 means the relay is stuck.", "What does E07 on the display mean?") == []


# --- parts ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("part", "evidence"),
    [
        ("GPIO12", "GPIO 12"),
        ("IO0", "hold IO0 low"),
        ("J3", "connector J3"),
        ("CN1", "CN1"),
        ("U5", "U5"),
        ("R12", "resistor r12"),
        ("ESP32-WROOM-32", "ESP32 WROOM 32"),
        ("PMS5003", "PMS5003 sensor"),
        ("MPPT-1210", "MPPT 1210"),
        ("GND", "gnd"),
        ("VCC", "VCC"),
        ("3V3", "3V3"),
        ("UEXT", "UEXT connector"),
        ("CAN_H", "CAN-H"),
        ("SET", "press set"),
        ("RXD", "RXD"),
    ],
)
def test_a_part_in_the_evidence_is_grounded(part, evidence):
    assert claims(f"Check {part} first.", evidence) == []


@pytest.mark.parametrize(
    "part",
    [
        "GPIO13",
        "IO2",
        "J4",
        "CN2",
        "U6",
        "R13",
        "ESP32-WROVER",
        "PMS7003",
        "GND",
        "VBAT",
        "3V3",
        "UEXT",
        "CAN_L",
        "RXD",
    ],
)
def test_an_invented_part_is_flagged(part):
    assert flagged(f"Check {part} first.", "Check the fuse first.") == [("part", part)]


def test_a_part_is_not_found_inside_a_longer_name():
    assert flagged("Use a PMS5003.", "Use a PMS5003T.") == [("part", "PMS5003")]


def test_versions_are_parts_and_the_cited_file_name_is_evidence():
    assert claims("This is the v3 board with firmware sw3.00 (manual v1.01).", "text") == []
    assert flagged("Update to v1.02.", "text") == [("part", "v1.02")]


def test_a_pin_spelled_like_a_voltage_is_a_part_not_a_number():
    assert flagged("Measure the 3V3 pin.", "3.3 V rail") == [("part", "3V3")]


def test_a_counted_noun_is_not_a_part():
    assert flagged("Use the 10-pin header.", "the 8-pin header") == [("number", "10")]


def test_a_part_after_a_number_it_is_joined_to_is_still_judged():
    assert flagged("Bridge 5V-GND.", "5 V") == [("part", "GND")]


@pytest.mark.parametrize("word", sorted(ALWAYS_GROUNDED))
def test_the_allow_list_is_never_flagged(word):
    assert claims(f"{word}: check it.", "check it") == []


def test_allowed_words_do_not_make_an_error_phrase():
    assert claims("Unplug the USB, the LED and the AC DC adapter.", "unplug it") == []
    assert flagged("USB NO SERIAL COM", SMARTEVSE_ERRORS) == []
    assert flagged("USB NO LINK", SMARTEVSE_ERRORS) == [("code", "NO LINK")]


def test_ordinary_words_are_not_parts():
    assert claims("Wi-Fi and the SmartEVSE keep working; check the cable.", "nothing") == []


# --- references ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["notes.txt", "README.md", "charger.log", "readings.csv", "Other_Manual.PDF"]
)
def test_an_uncited_document_is_flagged(name):
    assert flagged(f"See {name}.", SMARTEVSE_ERRORS) == [("reference", name)]


def test_a_cited_document_is_recognised_with_spaces_or_other_separators():
    citations = [{"n": 1, "document": "Ender 3 Quick Start.pdf", "page": 5}]

    assert flagged("See Ender 3 Quick Start.pdf, page 5.", "text", citations=citations) == []
    assert flagged("See Ender_3_Quick_Start.pdf, page 5.", "text", citations=citations) == []


def test_a_page_must_belong_to_the_document_named_before_it():
    citations = [{"n": 1, "document": "a.pdf", "page": 2}, {"n": 2, "document": "b.pdf", "page": 7}]

    assert flagged("a.pdf, page 2; b.pdf, page 7", "text", citations=citations) == []
    assert flagged("a.pdf, page 7", "text", citations=citations) == [("reference", "page 7")]
    assert flagged("[2], page 7 and [1] p. 2", "text", citations=citations) == []
    assert flagged("[1], page 7", "text", citations=citations) == [("reference", "page 7")]


def test_a_page_with_no_document_named_on_its_line_may_be_any_cited_page():
    citations = [{"n": 1, "document": "a.pdf", "page": 2}, {"n": 2, "document": "b.pdf", "page": 7}]

    assert flagged("a.pdf is cited.\nSee page 7 and pages 2-7.", "text", citations=citations) == []
    assert flagged("See pages 7-9.", "text", citations=citations) == [("reference", "pages 7-9")]


@pytest.mark.parametrize("marker", ["[2]", "[0]", "[12]"])
def test_a_marker_without_a_citation_is_flagged(marker):
    assert flagged(f"As the manual says {marker}.", SMARTEVSE_ERRORS) == [("reference", marker)]


def test_citation_markers_side_by_side_are_each_checked():
    assert flagged("Reset it [1][3].", SMARTEVSE_ERRORS) == [("reference", "[3]")]


# --- offsets and shape ---------------------------------------------------------------------------------


def test_offsets_index_the_answer_as_written_when_normalising_changes_lengths():
    answer = "Cafe\u0301 ﬁlter ½ turn, then E9 at 50 ºC with 2.5 mm² wire and GPIO7."

    found = claims(answer, "the filter at 55 °C")

    assert [(c.kind, c.text) for c in found] == [
        ("number", "½"),
        ("code", "E9"),
        ("number", "50 ºC"),
        ("number", "2.5 mm²"),
        ("part", "GPIO7"),
    ]
    assert all(answer[c.start : c.end] == c.text for c in found)


def test_claims_are_sorted_and_never_overlap():
    answer = (
        "1. Check GND and VCC on J3 and GPIO12 (ESP32-WROOM-32).\n2) Use 5-12V, 3.3V, 0.5 mm, 50 to 60 Hz.\n"
        "ERROR HIGH TEMP or NO SERIAL COM, Err 3, E01, 0x1F, F-05, 5V-GND, 192.168.4.1,\n"
        "see x_v2.pdf p. 9 [4]."
    )

    found = claims(answer, "nothing relevant")

    assert [c.text for c in found] == [
        "GND",
        "VCC",
        "J3",
        "GPIO12",
        "ESP32-WROOM-32",
        "5-12V",
        "3.3V",
        "0.5 mm",
        "50 to 60 Hz",
        "ERROR HIGH TEMP",
        "NO SERIAL COM",
        "Err 3",
        "E01",
        "0x1F",
        "F-05",
        "5V",
        "GND",
        "192.168.4.1",
        "x_v2.pdf",
        "p. 9",
        "[4]",
    ]
    assert all(a.end <= b.start for a, b in pairwise(found))
    assert all(answer[c.start : c.end] == c.text for c in found)


def test_a_claim_serialises_for_storage():
    assert Claim("part", "J3", 4, 6).as_dict() == {"kind": "part", "text": "J3", "start": 4, "end": 6}


def test_nothing_to_check():
    assert ungrounded_claims("", evidence=[], citations=[]) == []
    assert flagged("Switch it off and on again.", citations=[]) == []


# --- marking in the rendered answer --------------------------------------------------------------------

MARK = '<mark class="ungrounded" title="not in the manuals">'


class _Nesting(HTMLParser):
    """Fails on a closing tag that does not close the innermost open element."""

    def __init__(self):
        super().__init__()
        self.stack: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag not in {"br", "hr"}:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        assert self.stack and self.stack.pop() == tag, f"</{tag}> closes {self.stack}"


def well_nested(html: str) -> bool:
    parser = _Nesting()
    parser.feed(html)
    return not parser.stack


def test_ungrounded_claims_are_marked_in_the_html():
    answer = "Charging resumes below 50 ºC [1]."

    html = render_answer(answer, 1, ungrounded=claims(answer, SMARTEVSE_ERRORS))

    assert f"below {MARK}50 ºC</mark>" in html
    assert '<a class="cite" href="#cite-1">[1]</a>' in html
    assert well_nested(html)


def test_stored_dicts_mark_the_same_spans():
    answer = "Charging resumes below 50 ºC [1]."
    stored = [c.as_dict() for c in claims(answer, SMARTEVSE_ERRORS)]

    assert render_answer(answer, 1, ungrounded=stored) == render_answer(
        answer, 1, ungrounded=claims(answer, SMARTEVSE_ERRORS)
    )


@pytest.mark.parametrize(
    "text",
    [
        "Check the fuse [1].\n\n- a\n- b",
        "**Power off** and `M503`\n\n```\nM104 S200\n```",
        "| E01 | relay |\n|---|---|\n| a | b |",
        "<script>alert(1)</script> \ue000x\ue001",
    ],
)
def test_without_ungrounded_spans_the_html_is_unchanged(text):
    expected = render_answer(text, 1)

    assert render_answer(text, 1, ungrounded=None) == expected
    assert render_answer(text, 1, ungrounded=[]) == expected


def test_an_uncited_marker_is_marked_and_stays_plain_text():
    answer = "See [1] and [3]."

    html = render_answer(answer, 1, ungrounded=claims(answer, SMARTEVSE_ERRORS))

    assert f"{MARK}[3]</mark>" in html
    assert '<a class="cite" href="#cite-1">[1]</a>' in html
    assert "#cite-3" not in html


def test_spans_inside_code_are_marked_and_code_stays_verbatim():
    answer = "Send `M104 S300` or:\n\n```\nM104 S300 ; <hot end>\nbuf[1] = 0;\n```"

    html = render_answer(answer, 1, ungrounded=claims(answer, "M104 S200 buf[1] = 0"))

    assert f"<code>M104 {MARK}S300</mark></code>" in html
    assert f"<pre><code>M104 {MARK}S300</mark> ; &lt;hot end&gt;\nbuf[1] = 0;\n</code></pre>" in html
    assert 'class="cite"' not in html


def test_script_in_a_marked_answer_stays_harmless():
    answer = "Run `<script>alert(1)</script>` then <script>steal()</script> E09 <img src=x onerror=alert(2)>"

    html = render_answer(answer, 1, ungrounded=claims(answer, "step 1, step 2"))

    assert "<script" not in html and "steal" not in html and "onerror" not in html
    assert "<code>&lt;script&gt;alert(1)&lt;/script&gt;</code>" in html
    assert f"{MARK}E09</mark>" in html
    assert well_nested(html)


def test_a_span_covering_markup_cannot_smuggle_it_in():
    answer = 'A <img src=x onerror="alert(1)"> B'

    html = render_answer(answer, ungrounded=[{"start": 0, "end": len(answer)}])

    assert "<img" not in html and "onerror" not in html
    assert well_nested(html)


def test_sentinels_written_by_the_model_cannot_forge_a_mark():
    answer = "\ue000forged\ue001 and E09"

    html = render_answer(answer, ungrounded=claims(answer, "nothing"))

    assert html.count(MARK) == 1 and f"{MARK}E09</mark>" in html
    assert "\ue000" not in html and "\ue001" not in html


def test_a_span_in_a_link_address_leaves_the_address_intact():
    answer = "[the manual](https://example.com/x_v9.pdf)"

    html = render_answer(answer, ungrounded=claims(answer, "nothing"))

    assert '<a href="https://example.com/x_v9.pdf" rel="noopener noreferrer">the manual</a>' in html
    assert "\ue000" not in html and "\ue001" not in html


def test_a_span_across_markup_is_marked_piece_by_piece():
    answer = "Set **both** to [1] now\n\nnext"

    html = render_answer(answer, 1, ungrounded=[{"start": 0, "end": answer.index("now") + 3}])

    assert well_nested(html)
    assert re.sub(r"<[^>]+>", "", html).startswith("Set both to [1] now")
    assert f"{MARK}Set </mark><strong>{MARK}both</mark></strong>" in html
    assert "next" in html and f"{MARK}next" not in html


def test_spans_are_clipped_merged_and_blank_marks_dropped():
    spans = [{"start": 4, "end": 99}, {"start": 5, "end": 6}, {"start": -3, "end": 0}]

    html = render_answer("abc def", ungrounded=spans)

    assert html == f"<p>abc {MARK}def</mark></p>"
