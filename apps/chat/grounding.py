"""Find what the model wrote that its evidence does not say: numbers, codes, part names, references.

The bundled model is tiny and confidently invents values ("resumes below 50 °C" when the manual says
55 °C), error codes, pin names and manual editions. Each such item in the answer is looked up,
literally after normalisation, in the texts the model was given (cited passages, findings, readings,
past incidents, the question) and in the citations it may cite. What is not found is returned as a
:class:`Claim` so the page can mark it. Nothing here is semantic: a value counts as found only if the
same value with the same kind of unit is written in the evidence.

Every item of the answer is claimed by the first kind that recognises it, in this order: list markers
and ordinals (never claims), references, codes, numbers with a unit, parts, bare numbers; so the "12"
of "GPIO12", the "1" of "[1]" or the "1.02" of a file name are never judged as numbers of their own.
"""
from __future__ import annotations

import re
import unicodedata
from bisect import bisect_right
from dataclasses import dataclass
from decimal import Decimal


@dataclass(frozen=True)
class Claim:
    """An item in the model's text that the evidence does not support."""

    kind: str  # "number" | "code" | "part" | "reference"
    text: str  # exactly as written in the answer
    start: int  # offsets into the answer text
    end: int

    def as_dict(self) -> dict:
        return {"kind": self.kind, "text": self.text, "start": self.start, "end": self.end}


# ---------------------------------------------------------------------------------------------------
# Normal form shared by the answer and the evidence
# ---------------------------------------------------------------------------------------------------

# NFKC turns "º" (ordinal indicator, common in PDF text for degrees) into "o": map it to "°" first.
_BEFORE_NFKC = {"º": "°", "˚": "°"}
# NFKC turns "µ" into Greek "μ"; both are written "u" in ASCII units. Dashes and minus join ranges.
_AFTER_NFKC = {"μ": "u", **dict.fromkeys("‐‒–—―−", "-")}


def _substitute(table: dict[str, str], text: str) -> str:
    """One character for another (str.translate looks up every character; this only the rare ones)."""
    return re.sub(f"[{''.join(table)}]", lambda match: table[match.group()], text)


def _normalise(text: str) -> str:
    """NFKC plus the substitutions that make "55ºC" and "55 °C", "5 µA" and "5 uA" spell alike."""
    return _substitute(_AFTER_NFKC, unicodedata.normalize("NFKC", _substitute(_BEFORE_NFKC, text)))


_NON_ASCII_RUN = re.compile(r"[^\x00-\x7f]+")


def _normalise_mapped(text: str) -> tuple[str, list[int], list[int]]:
    """The normal form of ``text`` and, for each of its characters, the span it came from in ``text``.

    Claims point into the answer as the model wrote it, and NFKC can change lengths ("mm²" stays
    three characters, "½" becomes three). ASCII is its own normal form, so only the runs of other
    characters are normalised, each as a whole and mapped to the run's span.
    """
    pieces: list[str] = []
    starts: list[int] = []
    ends: list[int] = []
    done = 0
    for run in _NON_ASCII_RUN.finditer(text):
        start, end = run.span()
        if start > done and unicodedata.combining(text[start]):  # "e" + U+0301 composes to "é"
            start -= 1
        piece = _normalise(text[start:end])
        pieces += [text[done:start], piece]
        starts += [*range(done, start), *[start] * len(piece)]
        ends += [*range(done + 1, start + 1), *[end] * len(piece)]
        done = end
    pieces.append(text[done:])
    starts += range(done, len(text))
    ends += range(done + 1, len(text) + 1)
    return "".join(pieces), starts, ends


# ---------------------------------------------------------------------------------------------------
# Units: spelling -> (family, scale), so "500 mA" and "0.5 A" are the same value of the same family
# ---------------------------------------------------------------------------------------------------

# (family, scale, symbols as written, words in lower case, also matched Capitalised and in CAPITALS).
# A space in a spelling stands for an optional space. Families are never converted into each other.
_UNIT_TABLE: tuple[tuple[str, str, tuple[str, ...], tuple[str, ...]], ...] = (
    ("V", "1", ("V", "v", "VDC", "VAC", "Vdc", "Vac"), ("volt", "volts")),
    ("V", "1e-3", ("mV",), ("millivolt", "millivolts")),
    ("V", "1e3", ("kV",), ("kilovolt", "kilovolts")),
    ("A", "1", ("A",), ("amp", "amps", "ampere", "amperes")),
    ("A", "1e-3", ("mA",), ("milliamp", "milliamps")),
    ("A", "1e-6", ("uA",), ()),
    ("W", "1", ("W",), ("watt", "watts")),
    ("W", "1e3", ("kW",), ("kilowatt", "kilowatts")),
    ("W", "1e-3", ("mW",), ()),
    ("VA", "1", ("VA",), ()),
    ("VA", "1e3", ("kVA",), ()),
    ("Wh", "1", ("Wh",), ()),
    ("Wh", "1e3", ("kWh",), ("kwh",)),
    ("Ah", "1", ("Ah",), ()),
    ("Ah", "1e-3", ("mAh",), ("mah",)),
    ("Hz", "1", (), ("hz", "hertz")),
    ("Hz", "1e3", ("kHz",), ("khz",)),
    ("Hz", "1e6", ("MHz",), ("mhz",)),
    ("Hz", "1e9", ("GHz",), ("ghz",)),
    ("°C", "1", ("°", "C"), ("° c", "° celsius", "celsius", "deg", "deg c", "degree", "degrees",
                            "degree c", "degrees c", "degree celsius", "degrees celsius")),
    ("°F", "1", ("F",), ("° f", "° fahrenheit", "fahrenheit", "deg f", "degree f", "degrees f",
                         "degree fahrenheit", "degrees fahrenheit")),
    ("%", "1", ("%",), ("percent", "per cent")),
    ("m", "1", ("m",), ("meter", "meters", "metre", "metres")),
    ("m", "1e3", ("km",), ()),
    ("m", "1e-2", ("cm",), ("centimeter", "centimeters", "centimetre", "centimetres")),
    ("m", "1e-3", ("mm",), ("millimeter", "millimeters", "millimetre", "millimetres")),
    ("m", "1e-6", ("um",), ()),
    ("m", "1e-9", ("nm",), ()),
    ("in", "1", (), ("inch", "inches")),
    ("ft", "1", ("ft",), ("foot", "feet")),
    ("m2", "1", ("m2",), ()),
    ("m2", "1e-4", ("cm2",), ()),
    ("m2", "1e-6", ("mm2",), ()),
    ("s", "1", ("s",), ("sec", "secs", "second", "seconds")),
    ("s", "1e-3", ("ms",), ("millisecond", "milliseconds")),
    ("s", "1e-6", ("us",), ("microsecond", "microseconds")),
    ("s", "60", (), ("min", "mins", "minute", "minutes")),
    ("s", "3600", ("h",), ("hr", "hrs", "hour", "hours")),
    ("s", "86400", (), ("day", "days")),
    ("B", "1", (), ("byte", "bytes")),
    ("B", "1e3", ("KB", "kB"), ()),
    ("B", "1e6", ("MB",), ()),
    ("B", "1e9", ("GB",), ()),
    ("B", "1e12", ("TB",), ()),
    ("bit/s", "1", (), ("bps", "bit/s", "baud")),
    ("bit/s", "1e3", (), ("kbps", "kbit/s")),
    ("bit/s", "1e6", (), ("mbps", "mbit/s")),
    ("bit/s", "1e9", (), ("gbps",)),
    ("Ω", "1", ("Ω",), ("ohm", "ohms")),
    ("Ω", "1e3", ("kΩ", "KΩ"), ("kohm", "kohms")),
    ("Ω", "1e6", ("MΩ", "Mohm"), ()),
    ("Ω", "1e-3", ("mΩ",), ()),
    ("F", "1e-6", ("uF",), ()),
    ("F", "1e-9", ("nF",), ()),
    ("F", "1e-12", ("pF",), ()),
    ("H", "1e-3", ("mH",), ()),
    ("H", "1e-6", ("uH",), ()),
    ("Pa", "1", ("Pa",), ()),
    ("Pa", "1e2", ("hPa",), ("mbar",)),
    ("Pa", "1e3", ("kPa",), ()),
    ("Pa", "1e5", (), ("bar",)),
    ("Pa", "1e6", ("MPa",), ()),
    ("psi", "1", (), ("psi",)),
    ("rpm", "1", (), ("rpm",)),
    ("Nm", "1", ("Nm", "N m"), ()),
    ("g/m3", "1e-6", ("ug/m3",), ()),
    ("g/m3", "1e-3", ("mg/m3",), ()),
    ("ppm", "1", (), ("ppm",)),
    ("ppm", "1e-3", (), ("ppb",)),
    ("g", "1", ("g",), ("gram", "grams")),
    ("g", "1e3", ("kg",), ()),
    ("g", "1e-3", ("mg",), ()),
    ("L", "1", ("L",), ("liter", "liters", "litre", "litres")),
    ("L", "1e-3", ("mL", "ml"), ()),
    ("m/s", "1", ("m/s",), ()),
    ("m/s", "1e-3", ("mm/s",), ()),
    ("km/h", "1", ("km/h",), ()),
    ("dB", "1", ("dB",), ()),
    ("dBm", "1", ("dBm",), ()),
    ("lx", "1", ("lx",), ("lux",)),
    ("lm", "1", ("lm",), ("lumen", "lumens")),
)

Unit = tuple[str, Decimal]  # (family, scale)


def _case_variants(words: str) -> set[str]:
    """"degrees c" -> "degrees c", "Degrees C", "DEGREES c", ...: each word lower, Capitalised or CAPITALS."""
    variants = {""}
    for word in words.split(" "):
        variants = {f"{v} {w}".lstrip() for v in variants for w in (word, word.capitalize(), word.upper())}
    return variants


def _spellings() -> dict[str, tuple[Unit, str]]:
    """Every accepted spelling, as written with its spaces, -> (its unit, the spelling without spaces)."""
    spellings = {}
    for family, scale, symbols, words in _UNIT_TABLE:
        for spelling in [*symbols, *(v for w in words for v in _case_variants(w))]:
            spellings[spelling] = ((family, Decimal(scale)), spelling.replace(" ", ""))
    return spellings


def _trie_pattern(words: list[str]) -> str:
    """A regex for any of ``words``, preferring the longest, that branches one character at a time.

    It runs after every number of the answer and the evidence: a plain alternation of some 450
    spellings is tried one by one, the trie tries a handful. A space matches an optional space.
    """
    trie: dict = {}
    for word in words:
        node = trie
        for char in word:
            node = node.setdefault(char, {})
        node[""] = {}

    def emit(node: dict) -> str:
        branches = [("[ \t]?" if c == " " else re.escape(c)) + emit(child) for c, child in node.items() if c]
        if not branches:
            return ""
        body = branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"
        return f"(?:{body})?" if "" in node else body

    return emit(trie)


_SPELLINGS = _spellings()
_UNITS: dict[str, Unit] = {bare: unit for unit, bare in _SPELLINGS.values()}
_UNIT = _trie_pattern(list(_SPELLINGS))


def _unit(written: str | None) -> Unit | None:
    """The (family, scale) of a unit as matched by ``_UNIT``, or None when there was none."""
    return _UNITS[re.sub(r"\s", "", written)] if written else None


# ---------------------------------------------------------------------------------------------------
# Patterns
# ---------------------------------------------------------------------------------------------------

# 1,000 (thousands), 3.3 and 3,3 (decimal comma of European manuals).
_NUM_REST = r"[0-9]*(?:,[0-9]{3})*(?:[.,][0-9]+)?"
_NUM = "[0-9]" + _NUM_REST
# A number's first digit, not preceded by a letter, digit or dot, nor by "X-": "GPIO12", "v1.02" and
# "MPPT-1210" are tokens, not numbers. The digit comes first and the look-behinds after it because
# the regex engine skips ahead fast only to where a pattern's first character can match; a leading
# look-behind would stop it at every character of the evidence.
_FIRST_DIGIT = r"[0-9](?<![\w.][0-9])(?<![\w.][-_][0-9])"


def _number_pattern(space: str, joiners: str) -> re.Pattern:
    """A number with its unit, or a range of two ("5-12V", "50 to 60 Hz"); units optional.

    Not followed by a word character: "3V3" is a pin, not 3 V.
    """
    def unit(name: str) -> str:
        return rf"(?:(?:{space}|-)?(?P<{name}>{_UNIT}))?"

    return re.compile(
        rf"(?P<a>{_FIRST_DIGIT}{_NUM_REST}){unit('ua')}"
        rf"(?:{space}*(?:{joiners}){space}*(?P<b>{_NUM}){unit('ub')})?"
        r"(?!\w)(?!\.\d)"
    )


# In the answer a range is joined by a dash, a tilde or "to"; the evidence also says "55 and 65 °C".
_ANSWER_NUMBER = _number_pattern("[ \t]", "-|~|to")
_EVIDENCE_NUMBER = _number_pattern(r"\s", "-|~|to|and|or")
# A unit word a couple of words after a unit-less number in the evidence: "12 DC volts".
_EVIDENCE_LATE_UNIT = re.compile(rf"(?:\s+[^\W\d_]+){{1,2}}?\s*(?P<u>{_UNIT})(?!\w)")
# IP addresses and section numbers: compared as written.
_DOTTED = re.compile(rf"{_FIRST_DIGIT}[0-9]*(?:\.[0-9]+){{2,}}(?!\w)(?!\.\d)")
_DIGITS = re.compile(_NUM)

_ORDINAL = re.compile(rf"{_FIRST_DIGIT}[0-9]*(?:st|nd|rd|th)(?!\w)")
_LIST_MARKER = re.compile(r"^[ \t]*(?:#{1,6}[ \t]+)?\d{1,3}[.)](?=\s)", re.M)
_CITE_MARKERS = re.compile(r"(?<![\w\]])(?:\[\d{1,3}\])+")
_CITE_MARKER = re.compile(r"\[(\d{1,3})\]")
_FILE_EXTENSION = re.compile(r"\.(?:pdf|txt|md|log|csv)(?!\w)", re.I)
_FILE_NAME = re.compile(r"(?<![\w.-])[\w.-]*\w" + _FILE_EXTENSION.pattern, re.I)
_PAGE_REF = re.compile(
    r"(?<!\w)(?:pages?|pp?\.|pg\.?)[ \t]*(?P<a>\d+)(?:[ \t]*(?:-|to|and|&)[ \t]*(?P<b>\d+))?(?!\w)", re.I
)

_HEX_CODE = re.compile(r"(?<!\w)0[xX][0-9A-Fa-f]+(?!\w)")
_ERROR_WORD_CODE = re.compile(r"(?<![\w-])(?:err(?:or)?|fault|alarm)[ \t]*[#:]?[ \t]*\d{1,4}(?!\w)", re.I)
_LETTER_CODE = re.compile(r"(?<![\w-])(?:E|F|ER|ERR|AL)[-_]?\d{1,4}(?!\w)")
_CAPS_RUN = re.compile(r"(?<![\w-])[A-Z]{2,}(?: [A-Z]{2,})+(?![\w-])")
_CAPS_WORD = re.compile(r"[A-Z]{2,}")

# A word with a letter and a capital or digit: "GPIO12", "ESP32-WROOM-32", "v1.02", "CAN_H", "GND".
_TOKEN = re.compile(
    r"(?<![\w.])(?=[\w.-]*[A-Za-z])(?=[\w.-]*[A-Z0-9])[A-Za-z0-9]+(?:[-_.][A-Za-z0-9]+)*(?!\w)"
)
_TOKEN_PIECE = re.compile(r"[A-Za-z0-9]+")
_CAPS_TOKEN = re.compile(r"[A-Z][A-Z0-9]*(?:[-_][A-Z0-9]+)*")
_LETTER_DIGIT = re.compile(r"[A-Za-z]\d|\d[A-Za-z]")
_PUNCTUATION = re.compile(r"[^\w\s-]+")
_LETTER_DIGIT_JOINT = re.compile(r"(?<=[^\W\d_]) ?(?=\d)|(?<=\d) ?(?=[^\W\d_])")

# All-caps words the model uses as plain vocabulary, never as a part, pin or code name: kinds of
# current, common hardware and document nouns, and the labels it puts before advice.
# (Single capitals such as "I" or "A" are never parts: a part needs two characters.)
ALWAYS_GROUNDED = frozenset("OK AC DC LED USB PDF PC EV DIY FAQ NOTE WARNING CAUTION IMPORTANT".split())


# ---------------------------------------------------------------------------------------------------
# Evidence, normalised once per answer
# ---------------------------------------------------------------------------------------------------


def _value(written: str) -> Decimal:
    """The value of a number as written: "1,000" is a thousand, "3,3" is 3.3."""
    if "," not in written:
        return Decimal(written)
    if re.fullmatch(r"\d{1,3}(?:,\d{3})+(?:\.\d+)?", written):
        return Decimal(written.replace(",", ""))
    return Decimal(written.replace(",", "."))


def _measures(match: re.Match, late_unit: Unit | None = None) -> list[tuple[Decimal, Unit | None]]:
    """(value, unit) of each end of a number match; a range end without a unit takes the other's."""
    ua, ub = _unit(match.group("ua")), _unit(match.group("ub"))
    ends = [(match.group("a"), ua or ub or late_unit)]
    if match.group("b"):
        ends.append((match.group("b"), ub or ua or late_unit))
    return [(_value(number), unit) for number, unit in ends]


def _token_key(text: str) -> str:
    """How codes and parts are compared: lower case, runs of spaces, hyphens and underscores as one
    space, other punctuation as "|" ("CAN_H" and "CAN-H" are "can h"; "v1.02" is "v1|02")."""
    return " ".join(_PUNCTUATION.sub("|", text.lower()).replace("_", " ").replace("-", " ").split())


def _spacings(key: str) -> set[str]:
    """A token key with each letter-digit joint spaced and unspaced: "GPIO12" is also "GPIO 12"."""
    pieces = _LETTER_DIGIT_JOINT.split(key)
    if len(pieces) > 5:  # a serial number or a hash: only as written
        return {key}
    spellings = {pieces[0]}
    for piece in pieces[1:]:
        spellings = {spelling + joint + piece for spelling in spellings for joint in ("", " ")}
    return spellings


def _doc_key(name: str) -> str:
    """A document name compared regardless of case, spaces, hyphens and underscores."""
    return re.sub(r"[\s_-]+", "", _normalise(name).lower())


class _Evidence:
    """What the answer may draw on, in the forms it is compared in."""

    def __init__(self, evidence: list[str], citations: list[dict]):
        documents = [str(c.get("document") or "") for c in citations]
        # Cited file names are evidence too: "v3" or "sw3.00" taken from one is not invented.
        text = _normalise("\n".join([*evidence, *documents]))
        self.tokens = f"|{_token_key(text)}|"
        self.measures: set[tuple[str, Decimal]] = set()
        # Every number anywhere, "12" of "GPIO12" included: a bare number needs no more.
        self.values = {_value(m) for m in _DIGITS.findall(text)}
        self.dotted = {m.group() for m in _DOTTED.finditer(text)}
        for match in _EVIDENCE_NUMBER.finditer(text):
            late = None
            if not (match.group("ua") or match.group("ub")):
                after = _EVIDENCE_LATE_UNIT.match(text, match.end())
                late = _unit(after.group("u")) if after else None
            for value, unit in _measures(match, late):
                if unit:
                    self.measures.add((unit[0], value * unit[1]))
        self.pages_of: dict[str, set[int]] = {}  # document -> its cited pages
        self.document_of: dict[int, str] = {}  # each [n] the answer may use -> its document
        for citation, name in zip(citations, documents, strict=True):
            key = _doc_key(name)
            pages = self.pages_of.setdefault(key, set())
            if citation.get("page") is not None:
                pages.add(int(citation["page"]))
            if citation.get("n") is not None:
                self.document_of[int(citation["n"])] = key
        self.all_pages = set().union(*self.pages_of.values())
        self.document_names = sorted({d for d in documents if d}, key=len, reverse=True)
        self._found: dict[str, bool] = {}

    def has_token(self, written: str) -> bool:
        """Whether the evidence writes this code, part or phrase, whatever its case and separators.

        "Err 3" is found as "ERR3", "err_3" or "ERR-3"; "GPIO12" as "GPIO 12"; but never inside a
        longer token: "E01" is not in "THE 01" and "PMS5003" is not in "PMS5003T".
        """
        key = _token_key(written)
        if key not in self._found:
            self._found[key] = any(self._has_bounded(spelling) for spelling in _spacings(key))
        return self._found[key]

    def _has_bounded(self, spelling: str) -> bool:
        """Whether ``spelling`` is in the token key of the evidence with no letter or digit either side."""
        tokens, i = self.tokens, self.tokens.find(spelling)
        while i != -1:
            if tokens[i - 1] in " |" and tokens[i + len(spelling)] in " |":
                return True
            i = tokens.find(spelling, i + 1)
        return False

    def has_measure(self, value: Decimal, unit: Unit | None) -> bool:
        """A value with a unit needs the same quantity in the evidence; a bare value any such number."""
        if unit is None:
            return value in self.values
        return (unit[0], value * unit[1]) in self.measures


# ---------------------------------------------------------------------------------------------------
# The answer, claimed left to right by kind
# ---------------------------------------------------------------------------------------------------


class _Scan:
    """The normalised answer, which of its characters are already accounted for, and the claims."""

    def __init__(self, text: str):
        self.text = text
        self.taken = bytearray(len(text))
        self.claims: list[tuple[int, int, str]] = []

    def free(self, start: int, end: int) -> bool:
        """Whether none of text[start:end] is accounted for yet."""
        return self.taken.find(1, start, end) == -1

    def take(self, start: int, end: int) -> bool:
        """Account for text[start:end] unless some of it already is; True if it was free."""
        if start >= end or not self.free(start, end):
            return False
        self.taken[start:end] = b"\x01" * (end - start)
        return True

    def flag(self, kind: str, start: int, end: int) -> None:
        """Record text[start:end] as a claim the evidence does not support."""
        self.claims.append((start, end, kind))


def _not_claims(scan: _Scan) -> None:
    """Markdown list numbers ("1. ", "2) ") and ordinals ("2nd") count the answer's own steps."""
    for pattern in (_LIST_MARKER, _ORDINAL):
        for match in pattern.finditer(scan.text):
            scan.take(*match.span())


def _references(scan: _Scan, ev: _Evidence) -> None:
    """Document names, "[n]" markers and page numbers, checked against the citations.

    A page must be a cited page of the document named just before it on the same line ("[1]" names
    its citation's document; an uncited file name has no cited pages); with none named, of any.
    """
    text = scan.text
    anchors: list[tuple[int, set[int]]] = []  # (end of a document's mention, its cited pages)
    for name in ev.document_names:  # as cited, spaces and all
        for match in re.finditer(r"(?<![\w.-])" + re.escape(_normalise(name)) + r"(?!\w)", text, re.I):
            if scan.take(*match.span()):
                anchors.append((match.end(), ev.pages_of[_doc_key(name)]))
    # Scanning for a name is slow (it may start at any word); for an extension, fast.
    for match in _FILE_NAME.finditer(text) if _FILE_EXTENSION.search(text) else ():
        key = _doc_key(match.group())
        if scan.take(*match.span()):
            anchors.append((match.end(), ev.pages_of.get(key, set())))
            if key not in ev.pages_of:
                scan.flag("reference", *match.span())
    for run in _CITE_MARKERS.finditer(text):
        for match in _CITE_MARKER.finditer(text, *run.span()):
            n = int(match.group(1))
            if scan.take(*match.span()):
                if n in ev.document_of:
                    anchors.append((match.end(), ev.pages_of[ev.document_of[n]]))
                else:
                    scan.flag("reference", *match.span())
    anchors.sort(key=lambda anchor: anchor[0])
    ends = [end for end, _ in anchors]
    for match in _PAGE_REF.finditer(text):
        i = bisect_right(ends, match.start()) - 1
        named = i >= 0 and text.find("\n", ends[i], match.start()) == -1
        pages = anchors[i][1] if named else ev.all_pages
        if scan.take(*match.span()) and not {int(p) for p in match.group("a", "b") if p} <= pages:
            scan.flag("reference", *match.span())


def _codes(scan: _Scan, ev: _Evidence) -> None:
    """Error and status codes: "ERROR HIGH TEMP", "Err 3", "E01", "F-05", "0x1F"."""
    text = scan.text
    for run in _CAPS_RUN.finditer(text):
        words = [word.span() for word in _CAPS_WORD.finditer(text, *run.span())]
        while words and text[slice(*words[0])] in ALWAYS_GROUNDED:  # "USB NO SERIAL COM"
            words.pop(0)
        while words and text[slice(*words[-1])] in ALWAYS_GROUNDED:
            words.pop()
        if len(words) < 2:
            continue
        start, end = words[0][0], words[-1][1]
        if scan.take(start, end) and not ev.has_token(text[start:end]):
            scan.flag("code", start, end)
    for pattern in (_ERROR_WORD_CODE, _LETTER_CODE, _HEX_CODE):
        for match in pattern.finditer(text):
            if scan.take(*match.span()) and not ev.has_token(match.group()):
                scan.flag("code", *match.span())


def _judge_number(scan: _Scan, ev: _Evidence, match: re.Match) -> None:
    """Flag a number or range unless each of its ends is in the evidence, with its unit if it has one."""
    if scan.take(*match.span()) and not all(ev.has_measure(*measure) for measure in _measures(match)):
        scan.flag("number", *match.span())


def _numbers(scan: _Scan, ev: _Evidence) -> list[re.Match]:
    """Judge numbers that have a unit; return the unit-less ones, judged after parts claim theirs."""
    for match in _DOTTED.finditer(scan.text):
        if scan.take(*match.span()) and match.group() not in ev.dotted:
            scan.flag("number", *match.span())
    bare = []
    for match in _ANSWER_NUMBER.finditer(scan.text):
        if match.group("ua") or match.group("ub"):
            _judge_number(scan, ev, match)
        else:
            bare.append(match)
    return bare


def _is_part(token: str) -> bool:
    """A part, pin, connector or model name: letters with digits ("GPIO12", "v1.02", "3V3"), or all
    capitals ("GND", "CAN_H"). Lower-case words with a counted noun ("10-pin", "3-wire") are not."""
    if any(c.isdigit() for c in token):
        has_letter = any(c.isalpha() for c in token)
        return has_letter and (any(c.isupper() for c in token) or bool(_LETTER_DIGIT.search(token)))
    return bool(_CAPS_TOKEN.fullmatch(token)) and len(token) > 1 and token not in ALWAYS_GROUNDED


def _parts(scan: _Scan, ev: _Evidence) -> None:
    """Part, pin, connector and model names; a token partly taken ("5V-GND") is judged by its pieces."""
    text = scan.text
    for token in _TOKEN.finditer(text):
        if scan.taken.find(0, *token.span()) == -1:  # all taken already ("12V", "[1]")
            continue
        pieces = [token] if scan.free(*token.span()) else _TOKEN_PIECE.finditer(text, *token.span())
        for piece in pieces:
            if _is_part(piece.group()) and scan.take(*piece.span()) and not ev.has_token(piece.group()):
                scan.flag("part", *piece.span())


def ungrounded_claims(answer: str, *, evidence: list[str], citations: list[dict]) -> list[Claim]:
    """The numbers, codes, parts and references of ``answer`` that ``evidence`` and ``citations`` lack.

    ``evidence``: the texts the model was given (cited passages, findings and readings, similar past
    incidents, the question). ``citations``: [{"n", "document", "page"}, ...], what it may cite.
    Claims come sorted by start and never overlap; offsets index ``answer`` as given.
    """
    text, starts, ends = _normalise_mapped(answer)
    ev = _Evidence(evidence, citations)
    scan = _Scan(text)
    _not_claims(scan)
    _references(scan, ev)
    _codes(scan, ev)
    bare = _numbers(scan, ev)
    _parts(scan, ev)
    for match in bare:
        _judge_number(scan, ev, match)
    spans: list[tuple[int, int, str]] = []
    for start, end, kind in sorted(scan.claims):
        first, last = starts[start], ends[end - 1]
        if spans and first < spans[-1][1]:  # both from one character NFKC split: "½" is "1⁄2"
            spans[-1] = (spans[-1][0], max(last, spans[-1][1]), spans[-1][2])
        else:
            spans.append((first, last, kind))
    return [Claim(kind, answer[start:end], start, end) for start, end, kind in spans]
