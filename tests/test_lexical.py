"""The lexical analyzer and BM25: codes, part names and units count; phrases beat scattered words."""
from ingest.chunk import Chunk, is_heading, page_headings
from ingest.lexical import BM25, analyze, code_tokens, query_terms
from ingest.parse import document_title


def test_codes_are_kept_whole_and_in_parts():
    terms = analyze("Connect the ESP32-POE to GPIO12 at 3.3V")
    assert {"esp32poe", "esp32", "poe", "gpio12", "gpio", "12", "3.3v"} <= set(terms)


def test_units_and_degrees_are_normalised():
    assert {"55c", "55"} <= set(analyze("below 55ºC")) and {"55c", "55"} <= set(analyze("below 55℃"))
    assert "55c" in analyze("below 55°C") and "65" in analyze("reached 65º Celsius")


def test_stopwords_and_single_letters_are_dropped_and_words_lightly_stemmed():
    terms = analyze("What is the charging current of a relays?")
    assert "what" not in terms and "the" not in terms and "a" not in terms
    assert "charg" in terms and "relay" in terms and "current" in terms


def test_adjacent_words_make_a_phrase_term():
    assert "high_temp" in analyze("ERROR HIGH TEMP")
    assert "high_temp" not in analyze("high voltage and a temp sensor")


def test_query_terms_are_distinct_in_order():
    assert query_terms("relay relay CAN") == ["relay", "relay_relay", "can", "relay_can"]


def test_bm25_prefers_the_rare_exact_code_over_common_words():
    docs = [
        analyze("Check the wiring of the module and check the power supply."),
        analyze("ERROR HIGH TEMP: the module stops charging until it cools below 55ºC."),
        analyze("The module has a power LED and a status LED; check the module."),
    ]
    bm25 = BM25(docs)
    top = bm25.top(query_terms("what does error high temp mean on the module"), 3)
    assert top[0].position == 1
    assert bm25.idf("never-seen") >= max(bm25.idf(t) for t in analyze("module error"))


def test_bm25_returns_nothing_without_shared_terms_and_handles_an_empty_index():
    bm25 = BM25([analyze("relay contacts 10A 250VAC")])
    assert bm25.top(query_terms("bearing grease interval"), 5) == []
    assert BM25([]).top(["relay"], 3) == []


def test_headings_are_numbered_or_title_like_lines():
    assert is_heading("1.3. PoE standard")
    assert is_heading("Error Messages")
    assert is_heading("1. Introduction")
    assert not is_heading("1. Thermistor port of nozzle is not plugged into the")
    assert not is_heading("B: Blue R: White W: Red")
    assert not is_heading("The temperature inside the module has reached 65º Celsius.")
    assert not is_heading("UEXT")
    assert not is_heading("Standby Current ≤200 Microampere（μ A）")
    assert page_headings("intro\nError Messages\nERROR NO CURRENT text.") == [(6, "Error Messages")]


def test_document_titles_come_from_the_file_name_and_add_the_embedded_title():
    assert document_title("Olimex_ESP32-POE_User_Manual_rev2.6.pdf") == "Olimex ESP32-POE User Manual rev2.6"
    assert document_title("manual.pdf", "Pump P-200 Service Manual") == "manual — Pump P-200 Service Manual"
    assert document_title("MPPT_1210_HUS.pdf", "MPPT 1210 HUS") == "MPPT 1210 HUS"


def test_chunks_carry_the_heading_they_fall_under(settings):
    from ingest.chunk import chunk_pages
    from ingest.parse import Page

    pages = [
        Page(1, "Intro text about the board.\n2.5. Power supply\nThe board takes 5V from USB."),
        Page(2, "It can also take 12V on the DC jack."),
    ]
    chunks = chunk_pages(pages, tokenize=str.split, chunk_tokens=200, overlap=10)
    assert [c.heading for c in chunks] == ["2.5. Power supply", "2.5. Power supply"]
    assert isinstance(chunks[0], Chunk) and chunks[0].text.startswith("Intro text")


def test_a_table_of_contents_is_not_indexed():
    from ingest.chunk import chunk_pages, is_contents
    from ingest.parse import Page

    toc = "Table of Contents\n1. What is it....................3\n2. Power supply..........5\n3. Relays..........6"
    assert is_contents(toc)
    assert not is_contents("The relay switches 10A. See page 5.\nThe CAN bus uses GPIO5.")
    chunks = chunk_pages([Page(1, toc), Page(2, "2. Power supply\nThe board takes 5V.")], tokenize=str.split)
    assert [c.page for c in chunks] == [2]


def test_codes_of_a_question_are_found_but_values_with_units_are_not():
    codes = code_tokens("Inverter shows F21; ESP32-POE-ISO on GPIO12 and CH340T, 24V, 3.3V, 10mm, 5.5x2.1mm jack, 3D printer")
    assert codes == {"f21": "F21", "esp32poeiso": "ESP32-POE-ISO", "gpio12": "GPIO12", "ch340t": "CH340T"}
    assert code_tokens("What does ERROR HIGH TEMP mean?") == {}


def test_terms_sharing_a_start_with_a_word():
    from ingest.lexical import BM25

    stats = BM25([["wakeup", "sleep", "wak", "reset"], ["updat", "firmwar", "sleep_mode"]])

    assert sorted(stats.sharing_start("wake")) == ["wakeup"]  # "wak" is too short to count
    assert stats.sharing_start("sleeping") == ["sleep"]  # never a pair ("sleep_mode")
    assert stats.sharing_start("reboot") == [] and stats.sharing_start("res") == []
