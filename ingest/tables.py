"""Find the tables in a page's text, so that the chunker keeps each row whole and with its header.

The input is what the chunker gets: ``ingest.parse.clean_text`` of pypdf's default extraction.
pypdf writes a table row by row with the cells of a row on one line, separated by single spaces
(the column gaps are gone), and a cell that wraps in the PDF goes on over the next line(s). So a
table is recognised by the way its rows start, not by its columns:

* **keyed** — every row starts with a key followed by its value or meaning: a code or identifier
  ("PIN3 RX Serial port receiving pin", "E05 ...", "+3.3V ...", "0xe2 ...", "ESP32-POE-EA ..."),
  a name in capitals ("ERROR HIGH TEMP The temperature ...", "MAINS Set to ...", "MDC – 23"), or a
  word with a number ("Data 7 high 8 bits ..."). At least ``MIN_ROWS`` key lines, each at most
  ``MAX_CONTINUATION`` lines after the one before, make a table; the lines between two keys are
  the first one's row (its wrapped cells).
* **columns** — a line of column names ("Parameter Index unit", "Feature Value Comment", "Error
  code Meaning Remedy", "Pin Name Function") followed by rows: a line that starts with a capital
  (or with the first row's kind of key) opens a row, any other line continues it ("standard）",
  "0~500 μg/m³"). The table ends at the first line of running text.
* **symptoms** — a troubleshooting list or FAQ: at least ``MIN_SYMPTOMS`` questions ('The display
  shows "MAX temp"?', "Is my device faulty?") each followed by its cause and remedy, at most
  ``MAX_SYMPTOM_LINES`` lines; a section heading between them ("Stringing or oozing") opens a row
  too. A row is the question (from the start of its sentence) with its answer.

The header of a table is what stands right above it with no blank line between: the column
names, the sentence that introduces the table (it ends with a colon: "...display one of the
following messages:"), and the section heading right above those.

What is not a table: a numbered or bulleted list (no keys: "1.", "•"), a figure's callouts (a key
alone on its line), a paragraph whose lines start with a part name as the subject of a sentence
("ESP32-POE and ESP32-POE-ISO are ...", "GPIO3 is ..."): a key must be followed by its value, not
by a verb or a preposition.

Plain Python, no Django. ``find_tables(text, is_heading)`` returns each table's header and rows
as line ranges and as character spans into ``text``.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable

MIN_ROWS = 3  # key lines that make a keyed table, rows that make a columns table
MIN_SYMPTOMS = 2  # questions that make a troubleshooting table
MAX_CONTINUATION = 4  # lines a keyed row may wrap onto
MAX_SYMPTOM_LINES = 14  # lines a symptom's cause and remedy (an FAQ's answer) may take
MAX_HEADER_LINES = 14  # column names one per line (pypdf splits the cells of a tall header)
MAX_HEADER_WORDS = 45
MAX_QUESTION_CHARS = 200
PROSE_CHARS = 80  # a line this long of mostly lower-case words is running text, not a row


@dataclass
class Table:
    """One table of a page. Line ranges are [start, end) into ``text.split("\\n")``; character
    spans are [start, end) into ``text`` and leave out blank lines at either end."""

    header_lines: tuple[int, int]  # (n, n) when the table has no header
    row_lines: list[tuple[int, int]]
    header_span: tuple[int, int]
    row_spans: list[tuple[int, int]]
    kind: str  # "keyed" | "columns" | "symptoms"
    text: str = field(repr=False, default="")

    @property
    def header(self) -> str:
        return self.text[self.header_span[0]:self.header_span[1]]

    @property
    def rows(self) -> list[str]:
        return [self.text[s:e] for s, e in self.row_spans]

    @property
    def start(self) -> int:
        """Where the table starts in the page text: at its header, or at its first row."""
        return self.header_span[0] if self.header_span[1] > self.header_span[0] else self.row_spans[0][0]

    @property
    def end(self) -> int:
        return self.row_spans[-1][1]


# ------------------------------------------------------------------------------ line shapes

# A code: letters and digits in one token ("PIN3", "GPIO0", "E05", "ESP32-POE", "RJ45", "I2C"),
# a hexadecimal number ("0xe2") or a supply rail ("+5V", "+3.3V", "12V"). Not an enumeration.
_CODE = re.compile(
    r"^(?:[+\-]?[A-Za-z][A-Za-z_\-]*\d[\w./+\-]*|0x[0-9A-Fa-f]+|[+\-]?\d+(?:\.\d+)?V)[,;:]?$"
)
_CAPS = re.compile(r"^[A-Z][A-Z0-9_/+\-]*[A-Z0-9][,;:]?$")  # "ERROR", "MAINS", "RFID", "PHY"
_WORD_NUMBER = re.compile(r"^([A-Z][a-z]{1,11})\s?(\d{1,3})\b(?![.,]\d)")  # "Data 7", "Error 12"
_NOT_A_ROW_WORD = frozenset(
    "figure fig table page section chapter step steps version rev revision appendix note notes".split()
)
# What follows the subject of a sentence: "ESP32-POE and ...", "GPIO3 is ...", "UEXT for ...".
_SENTENCE_WORDS = frozenset(
    """
    and or nor is are was were be been has have had will would can could should shall must may
    might does do did comes come stands uses used needs need gets get goes go of in on at to
    for with from by into the a an this that these those which who when where if as than then
    """.split()
)
_ENUMERATION = re.compile(r"^(?:\d{1,2}[.)]|[a-z][.)]\s|[•◆▪●■\-–*](?:\s|$))")
_SENTENCE_END = re.compile(r"[.!?。！？]$")
_NOTE = re.compile(r"^(?:notes?|remarks?)\b|^\*", re.IGNORECASE)
_CAPTION = re.compile(r"^(?:figure|fig\.|table|image|picture)\s*\d", re.IGNORECASE)

# Words that name the columns of a table.
_COLUMN_WORDS = frozenset(
    """
    no nr item items name names feature features parameter parameters value values unit units
    symbol min max typ typical nominal default range description descriptions comment comments
    remark remarks note notes pin pins pad pads signal signals function functions gpio port ports
    connector type code codes error errors fault faults message messages meaning cause causes
    remedy remedies solution solutions action actions symptom symptoms problem problems condition
    conditions test method characteristics status state led leds display setting settings option
    options mode modes command cmd data bit bits byte bytes voltage current power rating ratings
    specification specifications spec model variant module index menu 说明
    """.split()
)
_LABEL_TOKEN = re.compile(r"^[^\W\d_][\w/().,#%&+-]*$|^[A-Za-z]+\d+[\w-]*$")  # a word, "ESP32"


def _key_words(tokens: list[str]) -> int:
    """How many of the first tokens make up the key: codes and capital words ("ERROR NO CURRENT")."""
    n = 0
    while n < len(tokens) and (_CODE.match(tokens[n]) or (_CAPS.match(tokens[n]) and len(tokens[n]) > 1)):
        n += 1
    return n


def key_of(line: str) -> str | None:
    """The kind of key a table row starts with ("key", or "word:data" for "Data 7 ..."), or None
    when the line opens no row."""
    line = line.strip()
    tokens = line.split()
    if len(tokens) < 2 or line.endswith(":") or _ENUMERATION.match(line) or _CAPTION.match(line):
        return None  # a key alone is a callout on a picture ("PIN1"); "GPIO pads:" introduces a table
    numbered = _WORD_NUMBER.match(line)
    if numbered:
        if numbered.group(1).lower() in _NOT_A_ROW_WORD:
            return None
        kind, rest = "word:" + numbered.group(1).lower(), line[numbered.end():].split()
    else:
        first = tokens[0]
        if not (_CODE.match(first) or (_CAPS.match(first) and sum(ch.isupper() for ch in first) >= 2)):
            return None
        kind, rest = "key", tokens[_key_words(tokens):]
    if rest and rest[0][:1].islower() and rest[0].strip(",;:") in _SENTENCE_WORDS:
        return None  # the subject of a sentence: "ESP32-POE and ESP32-POE-ISO are ..."
    return kind


def is_question(line: str) -> bool:
    """A line that ends a question: a troubleshooting symptom or an FAQ's question."""
    line = line.strip()
    return (line.endswith(("?", "？")) and any(ch.isalpha() for ch in line)
            and len(line) <= MAX_QUESTION_CHARS)


def _is_prose(line: str) -> bool:
    line = line.strip()
    words = line.split()
    return (len(line) >= PROSE_CHARS and len(words) >= 12
            and sum(w[:1].islower() for w in words) * 2 >= len(words))


def is_column_header(line: str) -> bool:
    """A line of column names: 'Parameter Index unit', 'Error code Meaning Remedy', 'Pin Name Function'."""
    line = line.strip()
    if not line or len(line) > 70 or _SENTENCE_END.search(line) or line.endswith((":", ",")):
        return False
    words = line.replace("/", " ").split()
    if not 2 <= len(words) <= 9 or not all(_LABEL_TOKEN.match(w) for w in words):
        return False
    named = sum(w.lower().strip("().,#%") in _COLUMN_WORDS for w in words)
    return named >= 2 and named * 2 >= len(words)


def _is_label(line: str) -> bool:
    """A short line of words with no sentence in it: column names, or a piece of them."""
    line = line.strip()
    words = line.split()
    return (0 < len(words) <= 8 and len(line) <= 60 and not _SENTENCE_END.search(line)
            and not line.endswith(":") and all(_LABEL_TOKEN.match(w) for w in words))


# ------------------------------------------------------------------------------ the finder

Heading = Callable[[str], bool]


def find_tables(text: str, is_heading: Heading | None = None) -> list[Table]:
    """The tables of a page, in order and not overlapping. ``is_heading`` tells a section heading
    (``ingest.chunk.is_heading``): it ends a table, and the one right above a table joins its header."""
    heading = is_heading or (lambda line: False)
    lines = text.split("\n")
    offsets, offset = [], 0
    for line in lines:
        offsets.append(offset)
        offset += len(line) + 1

    candidates = (_symptom_tables(lines, heading) + _column_tables(lines)
                  + _keyed_tables(lines, heading))
    taken = [False] * len(lines)
    found = []
    for top, rows, kind in candidates:  # the first finder to claim a line keeps it
        if any(taken[i] for i in range(top, rows[-1][1])):
            continue
        for i in range(top, rows[-1][1]):
            taken[i] = True
        found.append((top, rows, kind))
    found.sort(key=lambda item: item[0])

    tables, floor = [], 0
    for top, rows, kind in found:
        start = top if kind == "symptoms" else _header_start(lines, top, floor, heading,
                                                             labels=kind == "keyed")
        header = (start, rows[0][0])
        tables.append(Table(
            header_lines=header,
            row_lines=rows,
            header_span=_span(lines, offsets, *header),
            row_spans=[_span(lines, offsets, s, e) for s, e in rows],
            kind=kind,
            text=text,
        ))
        floor = rows[-1][1]
    return tables


def _span(lines: list[str], offsets: list[int], start: int, end: int) -> tuple[int, int]:
    while start < end and not lines[start].strip():
        start += 1
    while end > start and not lines[end - 1].strip():
        end -= 1
    if start == end:
        at = offsets[start] if start < len(offsets) else (offsets[-1] + len(lines[-1]) if lines else 0)
        return at, at
    return offsets[start], offsets[end - 1] + len(lines[end - 1])


def _next_text_line(lines: list[str], index: int) -> int | None:
    return next((k for k in range(index, len(lines)) if lines[k].strip()), None)


def _ends_block(line: str, heading: Heading) -> bool:
    """A line that no table row continues into: a heading, a caption, a note, an introduction."""
    line = line.strip()
    return bool(heading(line) or _CAPTION.match(line) or _NOTE.match(line) or line.endswith(":"))


Found = list[tuple[int, list[tuple[int, int]], str]]  # (first line, rows, kind) of each table


def _keyed_tables(lines: list[str], heading: Heading) -> Found:
    keys = [key_of(line) for line in lines]
    tables = []
    i = 0
    while i < len(lines):
        if keys[i] is None:
            i += 1
            continue
        run, j, gap = [i], i + 1, 0
        while j < len(lines):
            if keys[j] is not None:
                run.append(j)
                gap = 0
            elif not lines[j].strip():
                nxt = _next_text_line(lines, j)
                if nxt is None or keys[nxt] is None:
                    break
            else:
                gap += 1
                if gap > MAX_CONTINUATION or _ends_block(lines[j], heading):
                    break
            j += 1
        counts: dict[str, int] = {}
        for k in run:
            counts[keys[k]] = counts.get(keys[k], 0) + 1
        if max(counts.values()) >= MIN_ROWS and _looks_tabular(lines, run):
            rows = _keyed_rows(lines, run, j, heading)
            tables.append((rows[0][0], rows, "keyed"))
            i = rows[-1][1]
        else:
            i += 1
    return tables


def _looks_tabular(lines: list[str], run: list[int]) -> bool:
    """Key lines that are rows rather than the wrapped lines of a paragraph: at least one line in
    three is a key, and most key lines are not full lines of running text."""
    if len(run) * 3 < run[-1] - run[0] + 1:
        return False
    return sum(_is_prose(lines[k]) for k in run) * 2 < len(run)


def _keyed_rows(lines: list[str], keys: list[int], stop: int, heading: Heading) -> list[tuple[int, int]]:
    """Rows from their first lines; the last row wraps onto no more lines than the others do
    (the median), unless its sentence plainly goes on, so that the paragraph after a table is not
    taken for its last cell."""
    rows = list(zip(keys, keys[1:]))
    wraps = sorted(sum(1 for k in range(a + 1, b) if lines[k].strip()) for a, b in rows)
    limit = wraps[len(wraps) // 2] if wraps else 0
    last = keys[-1]
    end = last + 1
    while (end < stop and lines[end].strip() and not _ends_block(lines[end], heading)
           and (end - last - 1 < limit  # as many lines as the other rows take
                or (end - last - 1 < MAX_CONTINUATION and lines[end].strip()[:1].islower()
                    and not _SENTENCE_END.search(lines[end - 1].strip())))):  # "... which\ncan be"
        end += 1
    return rows + [(last, end)]


def _column_tables(lines: list[str]) -> Found:
    tables = []
    i = 0
    while i < len(lines):
        if not is_column_header(lines[i]):
            i += 1
            continue
        top, first = i, i + 1
        # A tall header comes out one cell per line: "Flash", "size,", "MB", "External", ...
        pieces = first
        while (pieces < len(lines) and lines[pieces].strip() and len(lines[pieces].split()) <= 2
               and len(lines[pieces]) <= 20):
            pieces += 1
        if pieces - first >= 3:
            first = pieces
        first = _next_text_line(lines, first)
        if first is None:
            break
        if lines[first].strip().endswith(":") or _is_prose(lines[first]):
            i += 1  # "Error codes" above the sentence that introduces a table is its heading
            continue
        key = key_of(lines[first])

        def opens_row(line: str) -> bool:
            return key_of(line) == key if key else line[:1].isupper()

        starts, j = [], first
        while j < len(lines):
            line = lines[j].strip()
            if not line:
                nxt = _next_text_line(lines, j)
                if nxt is None or not opens_row(lines[nxt].strip()):
                    break
            elif key and opens_row(line):
                starts.append(j)  # a keyed row, however long its text
            elif _is_prose(line) or _NOTE.match(line) or _CAPTION.match(line) or is_column_header(line):
                break
            elif opens_row(line):
                starts.append(j)
            j += 1
        if len(starts) >= MIN_ROWS:
            rows = list(zip(starts, starts[1:])) + [(starts[-1], j)]
            tables.append((top, rows, "columns"))
            i = j
        else:
            i += 1
    return tables


def _questions(lines: list[str], heading: Heading) -> list[tuple[int, int]]:
    """(first line, last line) of every question, from the start of its sentence."""
    found: list[tuple[int, int]] = []
    for k, line in enumerate(lines):
        if not is_question(line):
            continue
        start = k
        while start - 1 >= 0 and k - (start - 1) <= 2:
            above = lines[start - 1].strip()
            if not above or _SENTENCE_END.search(above) or above.endswith(":") or heading(above):
                break
            start -= 1
        sentence = " ".join(lines[n].strip() for n in range(start, k + 1))
        if 8 <= len(sentence) <= MAX_QUESTION_CHARS and not (found and start <= found[-1][1]):
            found.append((start, k))
    return found


def _symptom_tables(lines: list[str], heading: Heading) -> Found:
    questions = _questions(lines, heading)
    if len(questions) < MIN_SYMPTOMS:
        return []
    asked = dict(questions)  # first line -> last line of the question
    first = questions[0][0]
    inside = {n for s, q in questions for n in range(s, q + 1)}
    starts = sorted(set(asked) | {
        k for k, line in enumerate(lines)
        if k > first and k not in inside and heading(line) and not key_of(line)
    })
    rows = []
    for a, b in zip(starts, starts[1:] + [len(lines)]):
        b = min(b, (asked.get(a, a)) + 1 + MAX_SYMPTOM_LINES)
        while b > a + 1 and not lines[b - 1].strip():
            b -= 1
        rows.append((a, b))

    def answered(row: tuple[int, int]) -> bool:  # a question followed by its cause or answer
        a, b = row
        return a in asked and any(lines[n].strip() for n in range(asked[a] + 1, b))

    # Rows that follow each other make a table; a row cut short (too long) ends it.
    tables, current = [], [rows[0]]
    for row in rows[1:]:
        if all(not lines[n].strip() for n in range(current[-1][1], row[0])):
            current.append(row)
        else:
            tables.append(current)
            current = [row]
    tables.append(current)
    return [(t[0][0], t, "symptoms") for t in tables if sum(map(answered, t)) >= MIN_SYMPTOMS]


def _header_start(lines: list[str], top: int, floor: int, heading: Heading, *, labels: bool) -> int:
    """The first line of the header above line ``top``: column names (``labels``), the sentence
    that introduces the table (ending with a colon), and a heading right above; never across a
    blank line or into the table before (``floor``)."""
    k = top
    if labels:
        words = 0
        while (k - 1 >= floor and top - (k - 1) <= MAX_HEADER_LINES and _is_label(lines[k - 1])
               and not heading(lines[k - 1]) and not key_of(lines[k - 1])):
            words += len(lines[k - 1].split())
            if words > MAX_HEADER_WORDS:
                break
            k -= 1
        names = [lines[n] for n in range(k, top)]
        named = any(w.lower().strip("().,#%") in _COLUMN_WORDS
                    for line in names for w in line.replace("/", " ").split())
        introduced = k - 1 >= floor and lines[k - 1].strip().endswith(":")
        if names and not (named or introduced):
            k = top  # short lines above the rows that name no column: not a header
    if k - 1 >= floor and lines[k - 1].strip().endswith(":") and len(lines[k - 1]) <= 200:
        k -= 1
        for _ in range(3):  # the rest of the sentence that ends with the colon
            above = lines[k - 1].strip() if k - 1 >= floor else ""
            if (len(above.split()) < 3 or _SENTENCE_END.search(above) or above.endswith(":")
                    or heading(above) or key_of(above)):
                break
            k -= 1
    if k - 1 >= floor and lines[k - 1].strip() and heading(lines[k - 1]):
        k -= 1
    return k
