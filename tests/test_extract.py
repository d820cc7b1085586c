"""The answer in the manual's own words (apps.chat.extract): which lines of the cited passages a
technician reads before the model speaks.

Synthetic passages pin each rule down; the real manuals (read with pypdf, as ingestion does) check
that the rules hold on messy text: two-column leaflets, flattened tables, glyph-named digits.
"""
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

from apps.chat.extract import _with_context, answer_extract, idf_weights, read_question, split_units

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


@dataclass
class Passage:  # what apps.knowledge hands the chat: ingest.index.Passage has these and more
    text: str
    file_name: str = "manual.pdf"
    page: int = 1


def extract(question, *texts, **limits):
    return answer_extract(question, [Passage(t, page=i + 1) for i, t in enumerate(texts)], **limits)


def texts(items):
    return [item["text"] for item in items]


def squeezed(text: str) -> str:
    return " ".join(text.split())


HIGH_TEMP = "ERROR HIGH TEMP The temperature inside the module has reached 65º Celsius. Charging is stopped."
RESUMES = "Once the temperature has dropped below 55ºC charging is started again."
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
Once the temperature has dropped below 55ºC charging is started again.
RESIDUAL FAULT CURRENT DETECTED An optional DC Residual Current
Monitor has detected a fault current, the Contactor is switched off."""


# ------------------------------------------------------------------ units: entries, rows, sentences


def test_an_error_entry_is_one_unit_with_its_label_and_line_breaks_do_not_cut_sentences():
    units = [u.text for u in split_units(SMARTEVSE_ERRORS)]
    assert HIGH_TEMP in units and RESUMES in units
    assert "ERROR NO CURRENT There is not enough current available to start charging." in units


def test_flattened_table_rows_are_units_of_their_own():
    table = (
        "Technical Index\nDC Power Supply Typ:5.0 Max: 5.5 Volt（V）\nActive Current ≤100 Milliampere（mA）\n"
        "Standby Current ≤200 Microampere（μ A）\nWorking Temperature Range -10~+60 ℃"
    )
    units = [u.text for u in split_units(table)]
    assert "Active Current ≤100 Milliampere（mA）" in units
    assert "Standby Current ≤200 Microampere（μ A）" in units


def test_a_value_on_its_own_line_stays_with_its_label():
    label = "CIRCUIT Set the max current the EVSE circuit can handle (load balancing)"
    assert split_units(f"{label}\n10-200A\nMAX Set MAX current")[0].text == f"{label} 10-200A"


def test_figure_callouts_are_not_text():
    callouts = "EXT header\nRelay\nterminals\nCAN\nterminal\nPower jack\nMount hole\nUser\nbutton"
    assert split_units(callouts) == []


# ------------------------------------------------------------------ scoring rules


def test_rare_words_outweigh_common_ones():
    manual = (
        "Check the module fuse before you check the supply.\n"
        "Check the module LED after power-up.\n"
        "Check the module wiring once a year.\n"
        "Relay K3 switches the heater; it clicks when the module starts.\n"
    )
    items = extract("How do I check the module relay K3?", manual)
    assert texts(items)[0].startswith("Relay K3 switches the heater")
    # The weights come from the passages themselves: "check" and "module" are everywhere.
    units = split_units(manual)
    weights = idf_weights(_with_context(units, read_question("check module relay k3")))
    assert weights["relay"] > weights["module"] and weights["k3"] > weights["check"]


def test_a_value_question_prefers_the_line_with_the_number_it_asks_for():
    manual = (
        "The supply voltage of the controller is printed on its label.\n"
        "The supply current is at most 2 A.\n"
        "Use a supply voltage of 24 V DC for the controller.\n"
    )
    assert texts(extract("What supply voltage does the controller need?", manual)) == [
        "Use a supply voltage of 24 V DC for the controller."
    ]
    current = texts(extract("How much supply current does it draw?", manual))
    assert current[0] == "The supply current is at most 2 A."


def test_a_which_pin_question_prefers_the_line_naming_the_pin():
    manual = (
        "The user button can wake the board from deep sleep.\n"
        "GPI34 is connected to the user button and has a 10K pullup.\n"
    )
    assert texts(extract("Which GPIO is the user button connected to?", manual))[0].startswith("GPI34")


def test_a_how_do_i_question_gets_the_run_of_steps():
    manual = (
        "The fuse protects the heater supply.\n"
        "Replacing the fuse\n"
        "1. Switch the unit off and unplug it.\n"
        "2. Open the rear cover with a T10 screwdriver.\n"
        "3. Pull fuse F2 and insert a new 5 A fuse.\n"
        "4. Close the cover and switch the unit on.\n"
        "A blown fuse again means the heater is shorted.\n"
    )
    items = extract("How do I replace fuse F2?", manual)
    assert [t[:2] for t in texts(items)] == ["1.", "2.", "3.", "4."]


def test_a_short_list_of_remedies_comes_whole_whichever_item_matched():
    manual = (
        "Stringing or oozing\n"
        "1.In the software, you can add retraction speed and distance to avoid this phenomenon.\n"
        "2.Lower nozzle temperature (5-10 ℃).\n"
        "3.Change other material may improve.\n"
    )
    # Only the third item says "change"; the remedies asked for are all three.
    items = extract("Thin hairs between the parts of my print: what settings should I change?", manual)
    assert [t[:2] for t in texts(items)] == ["1.", "2.", "3."]


def test_from_a_long_numbered_list_a_question_that_asks_no_procedure_gets_the_item_and_its_neighbours():
    notes = "\n".join(
        f"{n}. {line}" for n, line in enumerate([
            "Do not use the printer in any way other than described herein.",
            "Do not place the printer near flammables or heat sources.",
            "Do not expose the printer to violent vibration.",
            "Use only the power cable supplied with the printer.",
            "Do not touch the nozzle or hot bed during printing.",
            "Use isopropyl alcohol to clean the print surface before every print.",
            "Children under 10 years of age should not use the printer without supervision.",
        ], start=1)
    )
    shown = texts(extract("What should I wipe the print surface with?", notes))
    assert shown[0].startswith("6.") and "isopropyl alcohol" in shown[0]
    assert not any(t.startswith(("1.", "2.", "3.")) for t in shown)


def test_a_what_does_it_mean_question_gets_the_defining_line_and_the_sentence_after_it():
    items = extract("What does ERROR HIGH TEMP mean and when does charging resume?", SMARTEVSE_ERRORS)
    assert texts(items) == [HIGH_TEMP, RESUMES]
    assert [(i["n"], i["document"], i["page"]) for i in items] == [(1, "manual.pdf", 1)] * 2
    assert texts(extract("What does ERROR NO CURRENT mean?", SMARTEVSE_ERRORS)) == [
        "ERROR NO CURRENT There is not enough current available to start charging.",
        "The SmartEVSE will try again in 60 seconds.",
    ]


def test_a_heading_that_matches_brings_the_lines_under_it():
    manual = (
        "Stringing or oozing\n"
        "1.In the software, you can add retraction speed and distance.\n"
        "2.Lower nozzle temperature (5-10 ℃).\n"
        "Holes and Gaps in the Top Layers\n"
        "1.Fill density is too low.\n"
    )
    assert texts(extract("How do I fix stringing or oozing?", manual)) == [
        "1.In the software, you can add retraction speed and distance.",
        "2.Lower nozzle temperature (5-10 ℃).",
    ]


# ------------------------------------------------------------------ passages, duplicates, limits


def test_the_extract_comes_from_the_first_passage_and_others_only_for_a_second_fact():
    first = "The charger output is 24 V.\nThe charger has a green status LED."
    second = "The charger output is 24 V.\nThe charger fan runs when the output is above 40 ℃."
    # The best line of [1] and the line after it; [2] repeats the same fact and adds nothing.
    assert [i["n"] for i in extract("What is the charger output voltage?", first, second)] == [1, 1]
    items = extract("What is the charger output voltage and when does the fan run?", first, second)
    assert [(i["n"], i["text"]) for i in items] == [
        (2, "The charger fan runs when the output is above 40 ℃."),
        (1, "The charger output is 24 V."),
        (1, "The charger has a green status LED."),  # the line after the fact, as in the manual
    ]


def test_overlapping_chunks_do_not_repeat_a_line():
    words = SMARTEVSE_ERRORS.split(" ")
    head, tail = " ".join(words[: len(words) * 2 // 3]), " ".join(words[len(words) // 2 :])
    items = extract("What does ERROR HIGH TEMP mean?", head, tail, SMARTEVSE_ERRORS)
    keys = [re.sub(r"\W", "", t) for t in texts(items)]
    assert not any(a != b and (a in b or b in a) for a in keys for b in keys)
    assert len(keys) == len(set(keys))


def test_items_and_characters_are_limited_and_a_long_line_is_cut_at_a_word():
    manual = "\n".join(f"{i}. Tighten the belt screw number {i} by a quarter turn." for i in range(1, 11))
    assert len(extract("How do I tighten the belt screws?", manual)) == 8  # at most 8 items by default
    assert len(extract("How do I tighten the belt screws?", manual, max_items=2)) == 2
    long_line = "The belt tension is right when " + "the belt gives under a finger " * 20 + "then stop."
    items = extract("When is the belt tension right?", long_line, max_chars=120)
    assert len(items) == 1 and len(items[0]["text"]) <= 120
    assert items[0]["text"].endswith("…") and long_line.startswith(items[0]["text"][:-1].rstrip())
    short = extract("What does ERROR mean?", SMARTEVSE_ERRORS, max_chars=200)
    assert short and sum(len(t) for t in texts(short)) <= 200


def test_nothing_shared_with_the_question_gives_nothing():
    assert extract("sourdough recipe", SMARTEVSE_ERRORS) == []
    assert extract("what is the and of it", SMARTEVSE_ERRORS) == []
    assert extract("ERROR HIGH TEMP", "") == []
    assert answer_extract("ERROR HIGH TEMP", []) == []


def test_the_text_is_the_manuals_own_with_only_whitespace_squeezed():
    for question in ("What does ERROR NO CURRENT mean?", "no signal from the sensorbox", "fault current"):
        for item in extract(question, SMARTEVSE_ERRORS):
            assert item["text"] in squeezed(SMARTEVSE_ERRORS)


# ------------------------------------------------------------------ the real manuals


@cache
def _pages(path: Path) -> dict[int, str]:
    if not path.exists():
        pytest.skip(f"shared manuals not found at {path.parent} (CI always has ../shared/data)")
    from ingest.parse import parse_pdf  # pypdf, with the ingestion's own clean-up

    return {page.number: page.text for page in parse_pdf(path).pages}


def _chunks(text: str, size: int = 200, overlap: int = 40) -> list[str]:
    """~200-word windows overlapping by 40 words, keeping the PDF's line breaks (as ingestion's chunks)."""
    spans = [m.span() for m in re.finditer(r"\S+", text)]
    starts = range(0, max(len(spans) - overlap, 1), size - overlap)
    return [text[spans[i][0] : spans[min(i + size, len(spans)) - 1][1]] for i in starts]


REAL = [
    # (file under shared/data, page, question, what the extract must hold)
    ("manuals/SmartEVSE_v3_Installation_Manual_v1.01_sw3.00.pdf", 2,
     "What does ERROR HIGH TEMP mean and when does charging resume?", ["65º Celsius", "below 55ºC"]),
    ("manuals/SmartEVSE_v3_Installation_Manual_v1.01_sw3.00.pdf", 1,
     "How many RFID cards can be stored?", ["A maximum of 20 RFID cards can be stored."]),
    ("manuals/Creality_Ender-3_Trouble_Shootings.pdf", 2, "How do I fix stringing or oozing?",
     ["retraction", "Lower nozzle temperature"]),
    ("library/Olimex_ESP32-POE_User_Manual_rev2.6.pdf", 11, "Which GPIO is the user button connected to?",
     ["GPI34 is connected to user button"]),
    ("library/Olimex_ESP32-EVB_User_Manual_rev1.0.pdf", 6,
     "How much current can the ESP32-EVB draw from the battery?", ["1200mA"]),
    ("library/Plantower_PMS5003_Data_Manual_v2.3.pdf", 10, "How long after wakeup is the data stable?",
     ["at least 30 seconds"]),
    ("library/LibreSolar_MPPT-1210-HUS_User_Manual.pdf", 7,
     "In what order do I connect the battery, solar panel and loads?",
     ["Connect the battery to the battery port."]),
]


@pytest.mark.parametrize(("pdf", "page", "question", "facts"), REAL, ids=[q for _, _, q, _ in REAL])
def test_real_manual_pages(pdf, page, question, facts):
    text = _pages(SHARED / pdf)[page]
    passages = [Passage(chunk, Path(pdf).name, page) for chunk in _chunks(text)]
    items = answer_extract(question, passages)
    shown = " ".join(texts(items))
    assert all(fact in shown for fact in facts), texts(items)
    assert len(items) <= 6 and len(shown) <= 900
    for item in items:  # verbatim: the manual's own words, whitespace squeezed
        assert item["text"].rstrip("…") in squeezed(passages[item["n"] - 1].text)
        assert (item["document"], item["page"]) == (Path(pdf).name, page)


def test_real_error_entry_is_exactly_the_two_lines():
    text = _pages(SHARED / "manuals/SmartEVSE_v3_Installation_Manual_v1.01_sw3.00.pdf")[2]
    items = answer_extract("What does ERROR HIGH TEMP mean and when does charging resume?", [Passage(text)])
    assert texts(items) == [HIGH_TEMP, RESUMES]


# ------------------------------------------------------------------ coverage of the key facts (issue 8)


def test_a_number_written_with_its_unit_meets_the_bare_number_of_the_question():
    manual = (
        "The board takes power from the network cable.\n"
        "The status LED is green when the link is up.\n"
        "The controller would NOT work with 24V DC. The recommended voltage is 48V DC.\n"
    )
    items = extract("I put 24 volts on the cable and the board is dead. Why?", manual)
    assert "48V" in texts(items)[0]


def test_a_line_ending_with_a_colon_brings_the_rows_it_announces():
    manual = (
        "Run the configuration tool and open the Ethernet settings, then set:\n"
        "MDC – 23\n"
        "MDIO – 18\n"
        "PHY reset – 12\n"
        "PHY address – 0\n"
        "It should look like this:\n"
    )
    items = extract("Which values go into the Ethernet settings of the configuration tool?", manual)
    assert texts(items)[:5] == [
        "Run the configuration tool and open the Ethernet settings, then set:",
        "MDC – 23",
        "MDIO – 18",
        "PHY reset – 12",
        "PHY address – 0",
    ]


def test_a_sentence_that_refers_back_comes_with_the_sentence_before_it():
    manual = (
        "The board is not isolated, so it is not safe to connect it to a grounded computer while it is\n"
        "powered from the network.\n"
        "+ This means YOU SHOULD NOT CONNECT the USB port while powered by the network!!!\n"
    )
    items = extract("May I connect the USB port while powered by the network?", manual)
    assert any("not safe" in t for t in texts(items))


def test_a_capitalised_name_at_the_start_of_a_wrapped_line_does_not_start_an_entry():
    text = (
        "The ISO variant, on the other hand, comes with a galvanic insulation between the Ethernet\n"
        "POE part and the module supply, so there is no problem to connect USB while it is powered.\n"
    )
    assert len(split_units(text)) == 1


def test_running_headers_and_footers_of_the_manual_are_left_out():
    a = Passage("MPPT 1210 HUS 2021-05-02\nThe fuse rating is 15 A.\nLibre Solar / Jäger 7", page=7)
    b = Passage("MPPT 1210 HUS 2021-05-02\nThe fuse sits near the battery.\nLibre Solar / Jäger 8", page=8)
    items = answer_extract("What fuse rating does the MPPT 1210 HUS use?", [a, b])
    assert "The fuse rating is 15 A." in texts(items)
    assert not any("2021-05-02" in t or "Jäger" in t for t in texts(items))


def test_each_bulleted_section_of_the_page_is_shown_with_its_title():
    manual = (
        "• Bulk stage\n"
        "The battery is charged with maximum current until the topping voltage is reached.\n"
        "• Topping stage\n"
        "The battery is charged at the maximum charge voltage until the current drops.\n"
        "• Trickle stage\n"
        "The battery is charged at a lower voltage to keep it full.\n"
    )
    shown = " ".join(texts(extract("What are the charging stages and what does each stage do?", manual)))
    assert all(stage in shown for stage in ("Bulk stage", "Topping stage", "Trickle stage"))


def test_a_table_row_comes_with_the_row_above_it():
    manual = (
        "Technical Index\n"
        "DC Power Supply Typ:5.0 Min:4.5 Max: 5.5 Volt（V）\n"
        "Active Current ≤100 Milliampere（mA）\n"
        "Standby Current ≤200 Microampere（μ A）\n"
    )
    shown = texts(extract("What active current does the sensor draw?", manual))
    assert shown[:2] == [
        "DC Power Supply Typ:5.0 Min:4.5 Max: 5.5 Volt（V）",
        "Active Current ≤100 Milliampere（mA）",
    ]


def test_dot_leaders_inside_a_table_are_content_but_a_contents_line_is_not():
    assert [u.text for u in split_units("Check code …… Start character 1 + Start character 2")]
    assert not split_units("3 Description of Functions ........ 4")


def test_the_second_cited_page_shows_its_best_line_too():
    first = "The nozzle heats to 200 ℃.\nThe nozzle is made of brass."
    second = "Rotate the knob under the platform to adjust the nozzle distance."
    items = extract("How do I get the nozzle distance right?", first, second)
    assert 2 in [i["n"] for i in items]


def test_which_parts_gets_the_part_names_and_not_the_product_name():
    manual = (
        "ESP32-EVB typically consumes between 40mA and 200mA.\n"
        "1) From the PWR jack the regulator SY8089 can output maximum 2000mA\n"
        "2) From the battery the charger MCP73833 can output up to 1200mA\n"
    )
    shown = " ".join(texts(extract("which parts set those limits?", manual)))
    assert "SY8089" in shown and "MCP73833" in shown


def test_the_product_named_in_the_question_does_not_pick_the_line():
    manual = (
        "ESP32-EVB pinout description:\n"
        "The CAN terminating resistor is disconnected by default. Solder jumper CAN_T1 to connect it.\n"
    )
    items = answer_extract(
        "How do I enable the CAN bus terminating resistor on the ESP32-EVB?",
        [Passage(manual, file_name="Olimex_ESP32-EVB_User_Manual.pdf")],
    )
    assert "CAN_T1" in texts(items)[0]


def test_the_default_budget_stays_readable_on_a_phone():
    manual = "\n".join(f"Line {i} says the belt tension is {i} newton and more." for i in range(1, 40))
    items = extract("What is the belt tension?", manual, manual.replace("Line", "Row"))
    assert len(items) <= 8 and sum(len(t) for t in texts(items)) <= 1200


MPPT_MOUNTING_AND_WIRING = """Indirect light and partial shading will reduce the
performance. Make sure to face the module towards the sun.
Read the datasheet of your solar module for more information about the specifications.
4.4 Mounting
Fix the device vertical at non-flammable surface with the power terminals facing downwards.
The charge controller should be mounted as close to the battery as possible, but avoiding any contact
with battery acid or gas emissions.
Never mount the device in a fuel storage compartment, as the fuse can create sparks.
4.5 Wiring and Grounding
The minimum wire cross-section should be 2.5 mm². It is recommended to use 6 mm² wires, which is
the maximum the terminals can handle.
The length between charge controller and battery should be less than 1 m."""


def test_each_part_of_a_question_of_two_parts_gets_its_own_line():
    # As a whole, the question's words ("between", "controller", "battery") all sit in the length
    # line, and the wire size line scores under the share that would add it. Its first part alone
    # ("What wire size …") has a line the extract did not show: it comes right after the best one.
    question = ("What wire size should I use between the solar controller and the battery, "
                "and how far apart can they be?")
    shown = " ".join(texts(extract(question, MPPT_MOUNTING_AND_WIRING)))
    assert "less than 1 m" in shown
    assert "2.5 mm²" in shown and "6 mm²" in shown


def test_a_part_already_answered_adds_nothing():
    question = "What does ERROR HIGH TEMP mean and when does charging resume?"
    items = texts(extract(question, f"{HIGH_TEMP}\n{RESUMES}"))
    assert len(items) == len(set(items))
    assert squeezed(" ".join(items)).count("55ºC") == 1
