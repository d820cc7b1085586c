"""Tell whether a page's extracted text is garbage, and repair it or read the page another way.

pypdf reads most manuals well, but some text layers come out broken, and nothing downstream
would notice: the chunks get embedded and indexed, and a technician's question about "12 V"
simply never finds the page. Kinds of garbage seen in real manuals (issue 9):

- glyph names instead of characters: fonts whose encoding names glyphs that pypdf cannot map
  ("one.pnum", "f_t", "two.sups") come out as "/one.pnum/two.pnum" for "12" (the Libre Solar
  MPPT 1210 HUS manual: every digit of it);
- words broken apart: letter-spaced text ("i nd i c a t e s t he n um b e r") or words split
  into a capital and the rest on separate lines ("N\\nozzle", "H\\not B\\ned" in the Ender-3
  quick start guide), where pdfium reads the same page correctly;
- words run together (spaces dropped), replacement characters (U+FFFD), letters mapped into
  the Unicode private-use area.

Public API (plain Python, no Django):

- ``garbage_reasons(text)``: ``[]`` for a clean page, otherwise short human phrases;
- ``repair_glyph_names(text)``: glyph-name tokens → characters, ligature forms → letters;
- ``pdfium_page_text(path, page_index)``: the page read by pypdfium2 (cleaned like pypdf's);
- ``read_page(pypdf_text, path, page_index)`` → ``PageText(text, source, reasons)``, the policy:

  1. the pypdf text (already through ``clean_text``) is clean → ``source="text"``;
  2. otherwise repair glyph names; clean now → ``source="repaired"``;
  3. otherwise read the page with pdfium, and keep whichever of the two is cleaner
     (``source="pdfium"`` or ``"repaired"``/``"text"``), with the reasons that still hold —
     a non-empty ``reasons`` tells the caller the page may need OCR.

  A page without any text from pypdf is asked of pdfium too (pypdf may have failed on it);
  when pdfium has nothing either the result is ``PageText("", "text", [])``: an empty page is
  not garbage, and telling image-only pages apart stays the caller's business (parse.py's
  ``empty_pages``). pdfium's text only replaces a text that it keeps at least 80 % of the letters
  and digits of (``MIN_PDFIUM_CONTENT``); when pypdfium2 is missing or cannot read the file, the
  pypdf text is kept (logged).

Helpers: ``garbage_measures(text)`` (the counts behind the reasons), ``expand_ligatures(text)``.

Why this order: on the Libre Solar manual the repaired pypdf text is the most correct one —
the digits come back exactly, and so do the ligatures ("different", "After", "efficiency") and
the superscript in "6 mm²" — while pdfium reads the digits right but loses those ligatures
(unmapped control codes, "di\\x1berent") and the superscript ("mm2"). On the pages where pypdf
breaks words apart there are no glyph names to repair, and pdfium reads them correctly.
"""

from __future__ import annotations

import logging
import re
import threading
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

from ingest.parse import clean_text

log = logging.getLogger(__name__)

GLYPH_NAMES = "glyph names instead of characters"
BROKEN_WORDS = "words broken apart"
RUN_TOGETHER = "words run together"
REPLACEMENT = "replacement characters"
PRIVATE_USE = "private-use characters in words"

# Thresholds, calibrated on the seven shared manuals (bench/bench_textlayer.py, docs/benchmarks.md).
MIN_GLYPH_NAMES = 1  # none of the clean manuals has a single one
MIN_BROKEN_WORDS = 2  # a page with one letter-spaced heading is not garbage
MIN_REPLACEMENTS = 3  # one or two unknown characters leave a page searchable
MIN_PRIVATE_USE = 3  # symbol-font bullets stand alone; letters in the PUA sit inside words
LONG_RUN = 25  # letters without a break: longer than the long words of technical English
MIN_LONG_RUNS = 2
VERY_LONG_RUN = 40  # one of these is enough
MAX_LETTERS_PER_WORD = 12.0  # average over a page with at least RUN_TOGETHER_MIN_LETTERS letters
RUN_TOGETHER_MIN_LETTERS = 200


@dataclass
class PageText:
    text: str
    source: str  # "text" (pypdf as given), "repaired" (glyph names repaired), "pdfium"
    reasons: list[str] = field(default_factory=list)  # what is still wrong with ``text``


# --- glyph names -----------------------------------------------------------------------------

try:  # pypdf ships the Adobe Glyph List (and more): "/one" -> "1", "/fi" -> "ﬁ", ...
    from pypdf._codecs.adobe_glyphs import adobe_glyphs as _PYPDF_GLYPHS
except Exception:  # pragma: no cover - private module moved: the table below still works
    _PYPDF_GLYPHS = {}

# Names that are safe to replace even without a variant suffix: no one writes "/period" or
# "/seven" in running text. Single letters ("/K" in "mV/K") and words that also occur in paths
# ("/at", "/space", "/bar") are only glyph names when they carry a suffix or join a ligature.
_SAFE_BARE = {
    "zero": "0",
    "one": "1",
    "two": "2",
    "three": "3",
    "four": "4",
    "five": "5",
    "six": "6",
    "seven": "7",
    "eight": "8",
    "nine": "9",
    "period": ".",
    "comma": ",",
    "colon": ":",
    "semicolon": ";",
    "hyphen": "-",
    "endash": "–",
    "emdash": "—",
    "minus": "−",
    "plusminus": "±",
    "multiply": "×",
    "divide": "÷",
    "percent": "%",
    "perthousand": "‰",
    "degree": "°",
    "parenleft": "(",
    "parenright": ")",
    "bracketleft": "[",
    "bracketright": "]",
    "braceleft": "{",
    "braceright": "}",
    "quoteright": "’",
    "quoteleft": "‘",
    "quotedblleft": "“",
    "quotedblright": "”",
    "quotesingle": "'",
    "quotedbl": '"',
    "quotesinglbase": "‚",
    "quotedblbase": "„",
    "guillemotleft": "«",
    "guillemotright": "»",
    "bullet": "•",
    "ellipsis": "…",
    "underscore": "_",
    "ampersand": "&",
    "asterisk": "*",
    "numbersign": "#",
    "dollar": "$",
    "Euro": "€",
    "sterling": "£",
    "yen": "¥",
    "registered": "®",
    "copyright": "©",
    "trademark": "™",
    "section": "§",
    "paragraph": "¶",
    "exclam": "!",
    "question": "?",
    "less": "<",
    "greater": ">",
    "equal": "=",
    "plus": "+",
    "lessequal": "≤",
    "greaterequal": "≥",
    "approxequal": "≈",
    "notequal": "≠",
    "onehalf": "½",
    "onequarter": "¼",
    "threequarters": "¾",
    "periodcentered": "·",
    "onesuperior": "¹",
    "twosuperior": "²",
    "threesuperior": "³",
    "mu": "µ",
    "Omega": "Ω",
    "ohm": "Ω",
    "arrowright": "→",
    "arrowleft": "←",
    "fi": "fi",
    "fl": "fl",
    "ff": "ff",
    "ffi": "ffi",
    "ffl": "ffl",
}

_LIGATURES = {"ﬀ": "ff", "ﬁ": "fi", "ﬂ": "fl", "ﬃ": "ffi", "ﬄ": "ffl", "ﬅ": "st", "ﬆ": "st"}
_SUPERSCRIPT = str.maketrans("0123456789+-=()", "⁰¹²³⁴⁵⁶⁷⁸⁹⁺⁻⁼⁽⁾")
_SUBSCRIPT = str.maketrans("0123456789+-=()", "₀₁₂₃₄₅₆₇₈₉₊₋₌₍₎")

# Variant suffixes after the dot ("one.pnum", "a.sc", "two.sups"): the longest known one wins,
# so "/zero.pnumV" is "0" followed by "V". Unknown lowercase suffixes are accepted too.
_SUFFIXES = sorted(
    """pnum tnum onum lnum lf tf osf tosf plf tlf pcap c2pc sc smcp c2sc sups sup superior
    subs sub inferior sinf numr dnom numerator denominator alt salt swsh swash case init medi
    fina isol liga dlig calt ordn frac zero slash ital cap titl lining oldstyle taboldstyle tab
    prop fitted short narrow wide round cyr var locl""".split(),
    key=len,
    reverse=True,
)
_SUPER_SUFFIXES = {"sups", "sup", "superior"}
_SUB_SUFFIXES = {"subs", "sub", "inferior", "sinf"}
_KNOWN = r"(?:" + "|".join(_SUFFIXES) + r")\d*|(?:ss|cv)\d\d|\d+"
_SUFFIX = re.compile(r"\.(" + _KNOWN + r"|[a-z]+\d*)")
_KNOWN_SUFFIX = re.compile(r"\.(" + _KNOWN + r")")
# "/one.pdf" is a file: an unknown suffix that is a file extension is not a variant.
_FILE_EXTENSIONS = set(
    "pdf txt htm html png jpg jpeg gif svg zip gz ino c h cpp py md csv json xml bin hex".split()
)

_NAME_START = re.compile(r"/([A-Za-z][A-Za-z0-9_]*)")
_UNI = re.compile(r"uni((?:[0-9A-F]{4})+)")
_U = re.compile(r"u([0-9A-F]{4,6})")
# Glyph ids that carry no character at all: "/g123", "/glyph45", "/cid12", "(cid:12)".
_GLYPH_ID = re.compile(r"/(?:g|gid|glyph|cid|index)\d{2,}\b|\(cid:\d+\)")
_LIGATURE_NAME = re.compile(r"[fscTQ](?:_[A-Za-z]){1,2}(?![A-Za-z0-9]*_)")
# URLs, e-mail addresses and bare "host.tld/path" (which never starts with a "/", unlike a run of
# glyph names such as "/one.pnum/two.pnum"): their slashes are the address's own.
_URLISH = re.compile(
    r"\S*(?:://|www\.|@)\S*|(?<!\S)[A-Za-z0-9][A-Za-z0-9-]*(?:\.[A-Za-z0-9-]+)*\.[a-z]{2,6}/\S*"
)


def _component(name: str) -> str | None:
    """The characters of one glyph-name component, or None when it is not a glyph name."""
    m = _UNI.fullmatch(name)
    if m:
        hexes = m.group(1)
        chars = [int(hexes[i : i + 4], 16) for i in range(0, len(hexes), 4)]
        if all(not 0xD800 <= c <= 0xDFFF for c in chars):
            return "".join(map(chr, chars))
        return None
    m = _U.fullmatch(name)
    if m:
        code = int(m.group(1), 16)
        if code <= 0x10FFFF and not 0xD800 <= code <= 0xDFFF:
            return chr(code)
        return None
    if name in _SAFE_BARE:
        return _SAFE_BARE[name]
    return _PYPDF_GLYPHS.get("/" + name)


def _glyph_at(text: str, pos: int) -> tuple[int, str] | None:
    """If a glyph-name token starts at ``text[pos]`` (a "/"), its end and its characters."""
    m = _NAME_START.match(text, pos)
    if not m:
        return None
    run = m.group(1)
    end = m.end()
    # 1. "name.suffix": the whole run is the base name.
    sm = _SUFFIX.match(text, end)
    if sm:
        chars = _base(run)
        if sm.group(1) in _FILE_EXTENSIONS:
            return None  # "/one.pdf", "/a_b.txt": file names
        if not _KNOWN_SUFFIX.fullmatch(sm.group(0)) and not _bare_ok(run):
            chars = None  # unknown suffixes only after the safe names
        if chars is not None:
            suffixes = [sm.group(1)]
            stop = sm.end()
            while True:  # chained variants ("a.sc.alt"): only known suffixes
                more = _KNOWN_SUFFIX.match(text, stop)
                if not more:
                    break
                suffixes.append(more.group(1))
                stop = more.end()
            if any(s in _SUPER_SUFFIXES for s in suffixes):
                chars = chars.translate(_SUPERSCRIPT)
            elif any(s in _SUB_SUFFIXES for s in suffixes):
                chars = chars.translate(_SUBSCRIPT)
            return stop, chars
    # 2. A ligature "f_t" glued to the letters after it ("A/f_terwards"): two or three single
    #    letters joined by "_", starting with f, s, c, T or Q (not "a_b", a file name).
    lig = _LIGATURE_NAME.match(run)
    if lig:
        return m.start(1) + lig.end(), lig.group(0).replace("_", "")
    # 3. A bare name: one of the safe names or "uXXXX", ending at a non-letter; "uniXXXX" may
    #    be glued to the text after it ("/uni00B0C" is "°C").
    if _bare_ok(run):
        return end, _component(run)
    uni = _UNI.match(run)
    if uni and _component(uni.group(0)) is not None:
        return m.start(1) + uni.end(), _component(uni.group(0))
    return None


def _bare_ok(name: str) -> bool:
    return (
        name in _SAFE_BARE
        or bool(_UNI.fullmatch(name) or _U.fullmatch(name))
        and _component(name) is not None
    )


def _base(name: str) -> str | None:
    parts = name.split("_")
    if not all(parts):
        return None
    out = []
    for part in parts:
        chars = _component(part)
        if chars is None:
            return None
        out.append(chars)
    return "".join(out)


def _url_spans(text: str) -> list[tuple[int, int]]:
    return [m.span() for m in _URLISH.finditer(text)]


def _glyph_tokens(text: str) -> list[tuple[int, int, str]]:
    """(start, end, characters) of every repairable glyph-name token outside URLs."""
    if "/" not in text:
        return []
    urls = _url_spans(text)
    tokens, pos = [], 0
    while True:
        pos = text.find("/", pos)
        if pos < 0:
            return tokens
        if any(a <= pos < b for a, b in urls):
            pos += 1
            continue
        found = _glyph_at(text, pos)
        if found is None:
            pos += 1
            continue
        end, chars = found
        tokens.append((pos, end, chars))
        pos = end


def expand_ligatures(text: str) -> str:
    """ "ﬀ" → "ff" and the like: presentation forms that no one types in a question."""
    if not any(ch in _LIGATURES for ch in text):
        return text
    return "".join(_LIGATURES.get(ch, ch) for ch in text)


def repair_glyph_names(text: str) -> str:
    """Replace glyph-name tokens by their characters; expand ligature presentation forms.

    "MPPT /one.pnum/two.pnum/one.pnum/zero.pnum HUS" → "MPPT 1210 HUS"; "A/f_ter" → "After";
    "mm/two.sups" → "mm²"; "/uni00B0C" → "°C". Names come from the Adobe Glyph List (as pypdf
    ships it); variant suffixes (".pnum", ".tnum", ".onum", ".sc", ".lf", ".osf", ...) are
    dropped, ".sups"/".subs" make superscript/subscript digits. The text between tokens is kept
    as it is, so the spacing is pypdf's. Text in URLs is left alone, and so are slashes that
    do not start a glyph name ("mV/K/cell", "and/or", "EN/IEC"). Glyph ids without any
    character ("/g123", "(cid:12)") cannot be repaired and stay.
    """
    tokens = _glyph_tokens(text)
    if tokens:
        out, last = [], 0
        for start, end, chars in tokens:
            out.append(text[last:start])
            out.append(chars)
            last = end
        out.append(text[last:])
        text = "".join(out)
    return expand_ligatures(text)


# --- garbage detection -----------------------------------------------------------------------

_LATIN_RUN = re.compile(r"[A-Za-z\u00C0-\u024F\u0370-\u03FF\u0400-\u04FF]+")
_PATHISH = re.compile(r"\S*(?:://|www\.|@|/|\\|_)\S*")
# A line holding one letter, the next one going on with the rest of the word: "N\nozzle".
# A lone "a" / "I" is a word of its own.
_SPLIT_LINE = re.compile(r"(?m)^([^\W\d_])\n(?=[^\W\d_]*[a-z]{2,})")
_SHORT_TOKEN = re.compile(r"[^\W\d_]{1,2}")


def _broken_word_events(text: str) -> int:
    events = sum(1 for m in _SPLIT_LINE.finditer(text) if m.group(1) not in ("a", "I"))
    for line in text.split("\n"):
        singles = 0
        for token in line.split() + [""]:
            if _SHORT_TOKEN.fullmatch(token):
                singles += len(token) == 1
                continue
            if singles >= 4:  # "O f f i c i a l", "i nd i c a t e s t he"
                events += 1
            singles = 0
    return events


def _private_use_in_words(text: str) -> int:
    count = 0
    for i, ch in enumerate(text):
        if _is_private_use(ch):
            before = text[i - 1] if i else " "
            after = text[i + 1] if i + 1 < len(text) else " "
            if before.isalnum() or after.isalnum() or _is_private_use(before) or _is_private_use(after):
                count += 1
    return count


def _is_private_use(ch: str) -> bool:
    return unicodedata.category(ch) == "Co"


def _run_together(text: str) -> bool:
    stripped = _PATHISH.sub(" ", text)
    runs = _LATIN_RUN.findall(stripped)
    long_runs = [r for r in runs if len(r) > LONG_RUN]
    if len(long_runs) >= MIN_LONG_RUNS or any(len(r) > VERY_LONG_RUN for r in long_runs):
        return True
    letters = sum(len(r) for r in runs)
    words = sum(1 for token in stripped.split() if _LATIN_RUN.search(token))
    return letters >= RUN_TOGETHER_MIN_LETTERS and letters / max(words, 1) > MAX_LETTERS_PER_WORD


def garbage_measures(text: str) -> dict[str, int]:
    """The raw counts behind ``garbage_reasons`` (for benchmarks and for choosing a text)."""
    return {
        "glyph_names": len(_glyph_tokens(text)) + len(_GLYPH_ID.findall(text)),
        "broken_words": _broken_word_events(text),
        "run_together": int(_run_together(text)),
        "replacement": text.count("\ufffd"),
        "private_use": _private_use_in_words(text),
    }


def garbage_reasons(text: str) -> list[str]:
    """Why a page's text is garbage, as short phrases; ``[]`` when it is clean (or empty)."""
    if not text or not text.strip():
        return []
    m = garbage_measures(text)
    reasons = []
    if m["glyph_names"] >= MIN_GLYPH_NAMES:
        reasons.append(GLYPH_NAMES)
    if m["broken_words"] >= MIN_BROKEN_WORDS:
        reasons.append(BROKEN_WORDS)
    if m["run_together"]:
        reasons.append(RUN_TOGETHER)
    if m["replacement"] >= MIN_REPLACEMENTS:
        reasons.append(REPLACEMENT)
    if m["private_use"] >= MIN_PRIVATE_USE:
        reasons.append(PRIVATE_USE)
    return reasons


def _badness(text: str) -> tuple[int, int]:
    """Lower is cleaner: number of reasons, then the number of bad spots."""
    m = garbage_measures(text)
    return len(garbage_reasons(text)), sum(m.values())


def _content(text: str) -> int:
    """Letters and digits, not counting glyph-name tokens (they inflate garbage text)."""
    for start, end, _ in reversed(_glyph_tokens(text)):
        text = text[:start] + " " + text[end:]
    return sum(ch.isalnum() for ch in _GLYPH_ID.sub(" ", text))


# --- pdfium ----------------------------------------------------------------------------------

_PDFIUM_HYPHEN = re.compile(r"[\x02\ufffe](?=(\S?))")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def _fix_pdfium_codes(raw: str) -> str:
    """pdfium marks a hyphen that ended a line with \\x02 and joins the line ("knowl\\x02edge",
    "ESP\\x02IDF"): drop it before a lowercase letter as clean_text does for pypdf's "-\\n", keep
    "-" before a capital or a digit. Other control codes are glyphs pdfium could not map (e.g.
    a TeX font's "ff" ligature): make them visible as U+FFFD instead of letting clean_text drop
    them silently ("dierent")."""
    raw = _PDFIUM_HYPHEN.sub(lambda m: "" if m.group(1)[:1].islower() else "-", raw)
    return _CONTROL.sub("\ufffd", raw)


_PDFIUM_LOCK = threading.Lock()


def pdfium_page_text(path: Path, page_index: int) -> str:
    """The text of one page (0-based index) as pypdfium2 reads it, through ``clean_text``.

    Raises ImportError when pypdfium2 is not installed and pypdfium2's PdfiumError (or
    IndexError) when the file or page cannot be read.
    """
    import pypdfium2 as pdfium

    with _PDFIUM_LOCK:  # pdfium is not thread-safe
        pdf = pdfium.PdfDocument(str(path))
        try:
            if not 0 <= page_index < len(pdf):
                raise IndexError(f"page index {page_index} out of range (0..{len(pdf) - 1})")
            page = pdf[page_index]
            try:
                textpage = page.get_textpage()
                try:
                    raw = textpage.get_text_bounded()
                finally:
                    textpage.close()
            finally:
                page.close()
        finally:
            pdf.close()
    return clean_text(expand_ligatures(_fix_pdfium_codes(raw)))


def _try_pdfium(path: Path, page_index: int) -> str | None:
    try:
        return pdfium_page_text(path, page_index)
    except ImportError:
        log.warning("pypdfium2 is not installed: page %d of %s keeps its pypdf text", page_index + 1, path)
    except Exception as exc:  # a page pdfium cannot read keeps pypdf's text
        log.warning("pdfium could not read page %d of %s: %s", page_index + 1, path, exc)
    return None


# A pdfium text must keep this share of the letters and digits of the text it replaces: a
# reader that drops half a page is not "cleaner".
MIN_PDFIUM_CONTENT = 0.8


def read_page(pypdf_text: str, path: Path, page_index: int) -> PageText:
    """The best text for one page (0-based ``page_index``) — see the module docstring."""
    text = pypdf_text or ""
    if not text.strip():
        other = _try_pdfium(path, page_index)
        if other and other.strip() and not garbage_reasons(other):
            return PageText(other, "pdfium", [])
        return PageText(text, "text", [])

    reasons = garbage_reasons(text)
    if not reasons:
        return PageText(text, "text", [])

    best, source = text, "text"
    repaired = repair_glyph_names(text)
    if repaired != text:
        repaired_reasons = garbage_reasons(repaired)
        if not repaired_reasons:
            return PageText(repaired, "repaired", [])
        if _badness(repaired) <= _badness(text):
            best, source = repaired, "repaired"

    other = _try_pdfium(path, page_index)
    if (
        other
        and other.strip()
        and _content(other) >= MIN_PDFIUM_CONTENT * _content(best)
        and _badness(other) < _badness(best)
    ):
        best, source = other, "pdfium"
    return PageText(best, source, garbage_reasons(best))
