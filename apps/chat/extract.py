"""The answer in the manual's own words: the lines of the cited passages that answer the question.

A technician reads these before the tiny local model speaks, so they must carry the page's facts
(values, limits, steps, what a code means) verbatim; only whitespace is normalised.

Manual text from PDFs is messy: two-column leaflets, tables flattened into lines, headings glued
to sentences. A PDF line break is usually layout, but sometimes it ends a table row, an error
entry or a list item, so passages are first cut into *units*: runs of lines joined until a line
starts a new entry (a label such as ``ERROR HIGH TEMP``, a bullet, a step number) or the previous
line ended a sentence or was a short title. Long paragraphs are then cut into sentences.

Units score by the question's content words they contain, each weighted by how rare it is among
the units of all given passages (IDF), so a code shared with the question outweighs "check" or
"module". What the question asks for shifts the score: a value question prefers units with a
number in the unit asked for, a "how do I" question prefers numbered steps (and takes their run),
a "what does X mean" question prefers the line that starts with X and takes the sentence after it.
A title or a FAQ question answers nothing itself; its words count for the lines under it.

What is shown (issue 8: the question's key facts must be in it): the best unit with its neighbours (the
sentence before it when it goes on from it, the next two, the rows a colon announces, its bulleted title
or FAQ question), further units that add a fact or sit under another heading, and the best unit of each
of the first two cited pages. Running headers and footers are left out; at most 8 items / 1200 chars.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

from ingest.lexical import question_parts

# ------------------------------------------------------------- lexical helpers (shared with highlight.py)

WORD = re.compile(r"[a-z0-9]+")
STOP_WORDS = frozenset(
    "a an and are as at be been but by can do does did for from has have how i if in is it its "
    "me my no not of on or our should so than that the their then there these this to was were "
    "what when where which who why will with you your".split()
)


def stem(word: str) -> str:
    """Strip the commonest English suffixes so "charging" and "charges" meet "charg"."""
    for suffix in ("ing", "ed", "es", "s"):
        if len(word) > len(suffix) + 2 and word.endswith(suffix):
            return word[: -len(suffix)]
    return word


_NUMBER_WITH_UNIT = re.compile(r"(\d+)[a-z]+")


def terms(text: str) -> set[str]:
    """The stemmed content words of ``text``; a number written with its unit ("24v", "100mbps") is
    also the bare number, so "24 volts" in a question meets "24V" in the manual."""
    words = [w for w in WORD.findall(text.lower()) if w not in STOP_WORDS and len(w) > 1]
    found = {stem(w) for w in words}
    found |= {m.group(1) for w in words if (m := _NUMBER_WITH_UNIT.fullmatch(w)) and len(m.group(1)) > 1}
    return found


def matches(wanted: set[str], found: set[str]) -> set[str]:
    """The wanted terms present in ``found``, allowing prefixes ("temp" ~ "temperature")."""
    hits = wanted & found
    for w in wanted - hits:
        if len(w) >= 4 and any(t.startswith(w) or (len(t) >= 4 and w.startswith(t)) for t in found):
            hits.add(w)
    return hits


# ------------------------------------------------------------------ numbers

# Some PDF fonts name their digits ("/one.pnum") and pypdf passes the names through. The text is
# left as it is, but layout and value detection read them as the digits they are.
_DIGIT_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
_GLYPH_DIGIT = re.compile(rf"/({'|'.join(_DIGIT_NAMES)})\.[a-z]+")


def plain(text: str) -> str:
    """``text`` with glyph-named digits as digits, for detection only (never shown)."""
    return _GLYPH_DIGIT.sub(lambda m: str(_DIGIT_NAMES.index(m.group(1))), text)


# (what the question says, the numbers that answer it) per kind of quantity.
_QUANTITY_KINDS = {
    "length": (
        r"\bhow (?:far|long|high)\b|\b(?:length|distance|far|diameter|dimensions?|thick\w*|width|height|"
        r"pitch)\b",
        r"\d\)?\s*(?:mm|cm|km|m\b|(?i:(?:milli|centi)?met(?:er|re)s?|inch(?:es)?)\b)",
    ),
    "time": (
        r"\bhow (?:long|often)\b|\b(?:when|time|until|delay|wait|interval|duration|last)\b",
        r"\d\s*(?:ms|s|h)\b|\d\s*(?i:sec(?:ond)?s?|min(?:ute)?s?|hours?|days?|years?)\b",
    ),
    "voltage": (r"\bvolt\w*", r"\d\s*[mk]?V|\d\s*(?i:(?:milli)?volts?)\b"),
    "current": (
        r"\b(?:current|amps?|amperage)\b",
        r"\d\s*[mµμu]?A(?![a-z])|\d\s*(?i:(?:milli|micro)?amp(?:ere)?s?)\b",
    ),
    "power": (r"\b(?:power|watts?|wattage)\b", r"\d\s*[mk]?W\b"),
    "temperature": (r"\b(?:temperature|temp|hot|cold|heat\w*|when)\b", r"\d\s*(?:°|º|℃)|\d+C\b"),
    "resistance": (r"\b(?:resist\w*|ohms?)\b", r"\d\s*(?:[kKM]?Ω|(?i:k?ohms?)\b)|\d+K\b"),
    "rate": (r"\b(?:frequency|baud|speed|rate|bps)\b", r"\d\s*(?:[kMG]?Hz|[kMG]?bps)\b"),
    "count": (r"\bhow many\b|\bnumber of\b", r"\d"),
}
_KIND_CUES = {kind: re.compile(cue) for kind, (cue, _) in _QUANTITY_KINDS.items()}
_KIND_NUMBERS = {kind: re.compile(number) for kind, (_, number) in _QUANTITY_KINDS.items()}
_QUANTITY = re.compile(
    "|".join(number for kind, (_, number) in _QUANTITY_KINDS.items() if kind != "count")
    + r"|\d\s*(?:%|[kKMG]?B\b|L\b|μ\s?g|(?i:bits?|bytes?|kg|g)\b)"
)


# ------------------------------------------------------------------ cutting passages into units

_BULLET = re.compile(r"^[•◆◇▪▫■□●○◦►▶➢✓✔*+\-–—\uf000-\uf8ff](?=\s|$)")
_NUMBERED = re.compile(r"^(?:\d{1,2}|[a-z])\s*[.)、．](?!\d)|^\d{1,2}$|^step\s+\d+", re.IGNORECASE)
_FIRST_STEP = re.compile(r"^(?:1|a)\s*[.)、．](?!\d)", re.IGNORECASE)
_LABEL = re.compile(r"^[A-Z][A-Z0-9]+(?:[-/_+.][A-Z0-9]+)*\s+\S")  # "ERROR HIGH TEMP The …", "PIN3 SET …"
_CONNECTORS = frozenset(
    "a an the to of and or with for in on by at from is are be as that than then which via into if "
    "when while this these its their your not can will should must per between both".split()
)
# A line with a number and none of these is a table row ("Active Current ≤100 Milliampere（mA）").
_SENTENCE_WORDS = frozenset(
    "the a an is are was were be been will can could should must may it this that these you your we has "
    "have had if when which do does not".split()
)
_LOWER_WORD = re.compile(r"\b[a-z]+\b")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(“‘•/])")
_ABBREVIATION = re.compile(
    r"(?:\b(?:e\.g|i\.e|etc|approx|no|fig|vs|max|min|typ|rev|ca)\.|^[\d.\s]+)$", re.IGNORECASE
)
_LETTERS = re.compile(r"[A-Za-z]{2,}")
_NUMBER = re.compile(r"(?<![A-Za-z\d])\d")  # a value or a figure number, not the digits of a code like ESP32
# Dot leaders up to a page number: a table of contents line ("3 Description of Functions ...... 4"); leaders
# inside a table ("Data 10 high 8 bits …… Data 10 indicates …") are content.
_LEADERS = re.compile(r"(?:\.{5,}|…{2,}|(?:\. ){4,})\s*\d{1,3}\b(?![.,]?\d)")
_SECTION_NUMBER = re.compile(r"^\d+(?:\s*\.\s*\d+)*\s*\.?\s+")

LONG_BLOCK_CHARS = 240  # a run of lines longer than this is a paragraph: cut it into sentences
SHORT_SENTENCE_WORDS = 4  # a sentence shorter than this ("Charging is stopped.") stays with the one before
HEADING_WORDS = 8  # a title is a few words; a longer unpunctuated line is a table row or a fragment
CALLOUT_LINES = 4  # this many lines of at most CALLOUT_WORDS words, and nothing else, are a figure's labels
CALLOUT_WORDS = 4
PROSE_LINE_CHARS = 40  # below this typical line length the page is fragments, not prose: no title rule
WRAPPED_LINE_SHARE = 0.8  # a prose line this close to the page's typical length was wrapped, not ended


@dataclass
class Unit:
    """One sentence, table row, list item or heading of a passage, with what its layout says."""

    text: str
    n: int  # the passage's citation number
    first: bool  # the first sentence of its run of lines (a paragraph, entry or row)
    entry: bool  # starts a new entry (label, bullet, number): not a continuation of the unit before
    step: bool  # a numbered item
    heading: bool  # a title or a FAQ question: its words describe the units under it


def _words(text: str) -> int:
    """How many words ``text`` has, not counting numbers, markers and glyph names."""
    return len(_LETTERS.findall(plain(text)))


def _numbered(line: str) -> bool:
    """The line starts with a list number ("3.", "2)", "4 、", a bare "5")."""
    return bool(_NUMBERED.match(plain(line)))


def _first_step(line: str) -> bool:
    """The line starts a list ("1.", "a)"): a run of steps never continues past one."""
    return bool(_FIRST_STEP.match(plain(line)))


def _starts_entry(line: str) -> bool:
    """The line starts a bullet, a numbered item or a labelled entry ("ERROR HIGH TEMP …")."""
    return bool(_BULLET.match(line) or _numbered(line) or _LABEL.match(line))


def _has_sentence_words(text: str) -> bool:
    """Lower-case function words: prose, not a row or a label ("CAN terminal" is not "can")."""
    return bool(_SENTENCE_WORDS & set(_LOWER_WORD.findall(text)))


def _is_row(line: str) -> bool:
    """A table row flattened into a line: a number and no sentence words."""
    return bool(_NUMBER.search(plain(line))) and not _has_sentence_words(line)


def _line_blocks(text: str) -> list[list[str]]:
    """Group the passage's lines into entries: a line continues the one before unless it starts
    an entry or a table row, or the one before ended a sentence or a row, or was a short title line
    on a prose page."""
    lines = [" ".join(line.split()) for line in text.split("\n")]
    lengths = sorted(len(line) for line in lines if line)
    typical = lengths[int(0.9 * (len(lengths) - 1))] if lengths else 0
    short = typical / 2 if typical >= PROSE_LINE_CHARS else 0
    blocks: list[list[str]] = []
    after_blank = False
    for line in lines:
        if not line:
            after_blank = True
            continue
        if not blocks or _breaks(blocks[-1], line, short=short, after_blank=after_blank):
            blocks.append([line])
        else:
            blocks[-1].append(line)
        after_blank = False
    return blocks


def _breaks(block: list[str], line: str, *, short: float, after_blank: bool) -> bool:
    """Whether ``line`` starts a new unit instead of continuing ``block``."""
    if _BULLET.match(line) or _numbered(line):
        return True
    words = _words(" ".join(block))
    if not words:  # a bare "2" or "." waits for its words
        return False
    previous = block[-1]
    if previous.endswith((".", "!", "?", ";")):
        return True
    if previous.endswith((",", "-", "–", "/")) or previous.rsplit(None, 1)[-1].lower() in _CONNECTORS:
        return False
    if _LABEL.match(line) and not _wrapped(previous, short):
        return True
    if _is_row(previous) and not line[0].islower():
        return True
    return line[0].isupper() and (_is_row(line) or after_blank or (len(previous) < short and words >= 2))


def _wrapped(previous: str, short: float) -> bool:
    """On a prose page, a full-width sentence line with no end goes on in the next line, even when
    that starts with a capitalised name ("… between the Ethernet" / "POE part and …")."""
    return bool(short) and len(previous) >= WRAPPED_LINE_SHARE * 2 * short and _has_sentence_words(previous)


def _is_callouts(block: list[str]) -> bool:
    """A figure's callouts or a table's header, one label a line ("EXT header / Relay / terminals"):
    words, but no sentence, value or sentence end."""
    text = " ".join(block)
    return (
        sum(1 for line in block if _words(line)) >= CALLOUT_LINES
        and all(len(line.split()) <= CALLOUT_WORDS for line in block)
        and not _has_sentence_words(text)
        and not _QUANTITY.search(plain(text))
        and not text.endswith((".", "!", "?"))
    )


def _sentences(text: str) -> list[str]:
    """Cut a long block at sentence ends, keeping list numbers, abbreviations and very short
    sentences with the sentence they belong to."""
    pieces: list[str] = []
    for piece in _SENTENCE_END.split(text):
        if pieces and (_ABBREVIATION.search(plain(pieces[-1])) or _words(piece) < SHORT_SENTENCE_WORDS):
            pieces[-1] = f"{pieces[-1]} {piece}"
        else:
            pieces.append(piece)
    return pieces


def _is_title(text: str) -> bool:
    """One short line with no sentence end or value. A numbered section title may start with a
    product code ("1.1 ESP32-EVB variants"); an unnumbered line that does is a table row."""
    text = plain(text)
    body = _SECTION_NUMBER.sub("", text)
    return (
        not _BULLET.match(body)
        and ": " not in body
        and 0 < _words(body) <= HEADING_WORDS
        and not body.endswith((".", ";", ":"))
        and not _NUMBER.search(body)
        and (body != text or not _LABEL.match(body))
    )


def split_units(text: str, n: int = 1) -> list[Unit]:
    """The units of one passage, in reading order, without figure labels and callout numbers."""
    units: list[Unit] = []
    for block in _line_blocks(text):
        joined = " ".join(block)
        if not _words(joined) or _is_callouts(block):
            continue
        whole = len(joined) <= LONG_BLOCK_CHARS or joined.endswith("?")  # a FAQ question stays one heading
        parts = [joined] if whole else _sentences(joined)
        title = len(block) == 1 and whole and _is_title(joined)
        for i, part in enumerate(parts):
            if _LEADERS.search(part):  # a table of contents line: where a section is, not what it says
                continue
            units.append(
                Unit(
                    text=part,
                    n=n,
                    first=i == 0,
                    entry=i == 0 and _starts_entry(block[0]),
                    step=i == 0 and _numbered(block[0]),
                    heading=title or part.endswith("?"),
                )
            )
    _mark_titles(units)
    return units


def _mark_titles(units: list[Unit]) -> None:
    """Titles that look like list items: a short numbered line followed by a list starting at 1
    ("4 . Bed Leveling" above "1. Prepare"), and a short bullet line alone between paragraphs
    ("• Trickle stage" above what that stage does)."""
    for i, unit in enumerate(units[:-1]):
        before, after = units[i - 1] if i else None, units[i + 1]
        if unit.step and _first_step(after.text) and _is_title(unit.text):
            unit.step, unit.heading = False, True
        bullet = _BULLET.match(unit.text)
        lone = not (before and _BULLET.match(before.text)) and not _BULLET.match(after.text)
        if bullet and lone and not after.heading and _is_title(unit.text[bullet.end() :].strip()):
            unit.heading = True


# ------------------------------------------------------------------ what the question asks for

_VALUE_QUESTION = re.compile(
    r"\bhow (?:much|big|large|high|low|fast|heavy)\b|\b(?:max|maximum|min|minimum|limits?|values?|range|"
    r"ratings?|rated|size|capacity|consumption)\b"
)
# A pin ("GPIO12", "PIN3", "pin 17", "PHY reset – 12") for "which pin"; any part name (C1, R54,
# SY8089, BAT_SENS_E1) for "which terminal / resistor / chip".
_PIN = r"\b(?:GPIO?|PIN|IO|P)\d+\b|\b(?i:pin|gpio)\s?#?\d+\b|\s[–-]\s\d{1,2}\b"
# Not a product code either ("ESP32" of "ESP32-EVB").
_PART = rf"(?<!-)\b(?:[A-Z]{{1,6}}_?\d+[A-Z0-9_]*|[A-Z]+_[A-Z0-9_]+)\b(?!-\w)|{_PIN}"
_PART_QUESTIONS = (
    (re.compile(r"\b(?:what|which) (?:\w+ )?(?:pins?|gpios?|gpis?)\b"), re.compile(_PIN)),
    (
        re.compile(
            r"\b(?:what|which) (?:\w+ )?"
            r"(?:ports?|terminals?|connectors?|jumpers?|resistors?|chips?|wires?|parts?|components?)\b"
        ),
        re.compile(_PART),
    ),
)
_STEPS_QUESTION = re.compile(
    r"\bhow (?:do|can|should|would|to)\b|\bsteps?\b|\bprocedure\b|\border\b|\bshould i do\b"
)
_MEANING_QUESTION = re.compile(r"\bmean(?:s|ing)?\b|\bstands? for\b|\bindicat\w*|\bwhat does\b.*\bdo\b")
# A product or part code written with hyphens or underscores ("ESP32-EVB-EA", "DSIEC-EL", "CAN_T1").
_CODE = re.compile(r"(?<![\w-])(?=[\w-]*[A-Z0-9])[A-Za-z0-9]+(?:[-_][A-Za-z0-9]+)+(?![\w-])")
# Words that frame the question or only relate its parts rather than name its subject must not pick lines.
_FRAME_PHRASE = re.compile(r"\bhow (?:much|many|long|far|often)\b")
_FRAME_WORDS = frozenset(
    "mean means meaning stand indicate indicates happen happens tell explain please fix solve problem issue "
    "wrong cause causes after before upon up down about over during only also just any some get use used "
    "using".split()
)


@dataclass(frozen=True)
class Question:
    """The question's content terms and what kind of answer it wants."""

    wanted: frozenset[str]
    value: bool  # a number: "how much", "what voltage", "maximum", "when"
    # The numbers that answer it (volts for "what voltage"; () for any), each with the question terms it
    # stands for: "1200mA" says "current" even where the sentence does not.
    kinds: tuple[tuple[re.Pattern, frozenset[str]], ...]
    codes: frozenset[str]  # whole codes such as "esp32-evb-ea", more telling than their parts
    part: re.Pattern | None  # the pin or part names that answer "which GPIO", "what resistor"
    part_said: frozenset[str]  # the word that asks for them ("part" in "which parts …")
    acronyms: frozenset[str]  # capitalised names that are stop words in lower case ("CAN")
    steps: bool  # a procedure: "how do I", "steps", "in what order"
    meaning: bool  # what a code or label means: "what does X mean"


def read_question(question: str) -> Question:
    """What the question is about (its content words and codes) and what kind of answer it wants."""
    lowered = question.lower()
    words = [w for w in WORD.findall(_FRAME_PHRASE.sub(" ", lowered)) if w not in STOP_WORDS | _FRAME_WORDS]
    kinds = tuple(
        (_KIND_NUMBERS[kind], frozenset(stem(w) for w in words if cue.fullmatch(w)))
        for kind, cue in _KIND_CUES.items()
        if cue.search(lowered)
    )
    return Question(
        wanted=frozenset(stem(w) for w in words if len(w) > 1),
        value=bool(kinds or _VALUE_QUESTION.search(lowered)),
        kinds=kinds,
        codes=frozenset(code.lower() for code in _CODE.findall(question)),
        part=next((names for asks, names in _PART_QUESTIONS if asks.search(lowered)), None),
        acronyms=frozenset(w for w in re.findall(r"\b[A-Z]{2,}\b", question) if w.lower() in STOP_WORDS),
        part_said=frozenset(
            stem(m.group().split()[-1]) for asks, _ in _PART_QUESTIONS if (m := asks.search(lowered))
        ),
        steps=bool(_STEPS_QUESTION.search(lowered)),
        meaning=bool(_MEANING_QUESTION.search(lowered)),
    )


def answers_value(text: str, q: Question) -> bool:
    """The unit holds a number of the kind asked for (any number with a unit when no kind is named)."""
    text = plain(text)
    if q.kinds:
        return any(number.search(text) for number, _ in q.kinds)
    return bool(_QUANTITY.search(text))


def _hits(text: str, q: Question) -> set[str]:
    """The question terms in ``text``: its words (stemmed, prefixes allowed), its whole codes (exactly:
    "DSIEC-EL" is not "DSIEC-ELB"), and a number of a kind asked for as the word that asks for it."""
    hits = matches(set(q.wanted), terms(text))
    hits |= {code for code in q.codes if code in (c.lower() for c in _CODE.findall(text))}
    for number, said in q.kinds:
        if said and number.search(plain(text)):
            hits |= said
    # "the CAN bus": the name is matched in capitals only, where it is not the verb "can".
    hits |= {a.lower() for a in q.acronyms if re.search(rf"(?<![A-Za-z]){a}(?![A-Za-z])", text)}
    if q.part and q.part.search(text):  # "SY8089" answers "which parts", as a value answers "what voltage"
        hits |= q.part_said
    return hits


# ------------------------------------------------------------------ scoring

VALUE_BONUS = 2.0  # a unit holding the number a value question asks for (or the part it asks for)
LABEL_BONUS = 1.5  # a unit starting with the code or label a "what does X mean" question asks about
STEP_BONUS = 1.3  # a numbered step, for a "how do I" question
RANK_PENALTY = 0.2  # passage [n] counts 1 / (1 + 0.2 (n - 1)): the extract comes mostly from [1]
NEIGHBOUR_SHARE = 0.5  # a sentence continuing the one before shares this much of its subject
LABEL_TOKENS = 3  # "what does X mean" prefers the unit whose first few words are X
LONG_UNIT_WORDS = 35  # longer units hold more words by chance; their score shrinks past this
PRODUCT_WEIGHT = 0.3  # a question term naming the manual's product (in its file name) weighs this much


@dataclass
class Scored:
    """A unit with the question terms it, its heading and the unit before it hold, and its score."""

    unit: Unit
    hits: set[str]  # question terms in the unit itself
    context: set[str]  # question terms of the heading the unit sits under
    previous: set[str]  # question terms of the unit it continues
    section: "Scored | None" = None  # the heading the unit sits under, if any
    own: float = 0.0  # the weight of its own hits
    inherited: float = 0.0  # the weight its heading adds
    score: float = 0.0


def _key(text: str) -> str:
    """The text's words run together: the same line from two overlapping chunks has the same key."""
    return "".join(WORD.findall(text.lower()))


def _with_context(units: list[Unit], q: Question) -> list[Scored]:
    """Each unit with its own matches, its heading's, and those of the unit it continues."""
    scored: list[Scored] = []
    for unit in units:
        hits = _hits(unit.text, q)
        before = scored[-1] if scored and scored[-1].unit.n == unit.n else None
        context, previous, section = set(), set(), None
        if before and not unit.heading:
            context = before.hits if before.unit.heading else before.context
            section = before if before.unit.heading else before.section
            if not unit.entry and not before.unit.heading:
                previous = before.hits
        scored.append(Scored(unit, hits, context, previous, section))
    return scored


def idf_weights(scored: list[Scored]) -> dict[str, float]:
    """log(1 + N / df) over the distinct units of all passages (overlapping chunks counted once)."""
    distinct = {_key(s.unit.text): s.hits for s in scored}
    df: dict[str, int] = {}
    for hits in distinct.values():
        for term in hits:
            df[term] = df.get(term, 0) + 1
    return {term: math.log(1 + len(distinct) / count) for term, count in df.items()}


def _product_weighted(weights: dict[str, float], passages: list, q: Question) -> dict[str, float]:
    """The product the question names is the manual's own ("ESP32-EVB" in Olimex_ESP32-EVB_User_Manual):
    it chose the manual, it does not choose a line of it, so its terms weigh less."""
    names = " ".join(str(getattr(p, "file_name", "") or "").replace("_", " ") for p in passages)
    named = _hits(names, q) if names.strip() else set()
    return {t: w * (PRODUCT_WEIGHT if t in named else 1) for t, w in weights.items()}


def _score(s: Scored, weights: dict[str, float], q: Question) -> None:
    """Weighted matches, raised for the kind of unit the question asks for, lowered for long units
    (they match by chance) and for later passages (the extract comes mostly from [1])."""
    s.own = sum(weights[t] for t in sorted(s.hits))
    s.inherited = sum(weights[t] for t in sorted(s.context - s.hits))
    carried = NEIGHBOUR_SHARE * sum(weights[t] for t in sorted(s.previous - s.hits - s.context))
    score = s.own + s.inherited + carried
    text = s.unit.text
    if (q.value and answers_value(text, q)) or (q.part and q.part.search(text)):
        score *= VALUE_BONUS
    if q.meaning and matches(s.hits, terms(" ".join(text.split()[:LABEL_TOKENS]))):
        score *= LABEL_BONUS
    if q.steps and s.unit.step:
        score *= STEP_BONUS
    score /= 1 + max(0, _words(text) - LONG_UNIT_WORDS) / LONG_UNIT_WORDS
    s.score = score / (1 + RANK_PENALTY * (s.unit.n - 1))


# ------------------------------------------------------------------ choosing and limiting

SAME_PASSAGE_SHARE = 0.6  # a unit of [1] or of the best unit's passage joins at this share of the best score
OTHER_PASSAGE_SHARE = 0.5  # a unit of another passage must score at least half as well as the best
NEW_FACT_SHARE = 0.0  # a further unit must add a question term nothing chosen so far holds
NEXT_UNITS = 2  # the units after the best one that come with it (a condition, a consequence, a second row)
LIST_UNITS = 6  # at most this many rows or items follow a line that announces them with a colon
FURNITURE_CHARS = 60  # a running header or footer is one short line
TITLE_CHARS = 100  # a title or FAQ question shown above its lines is short; a longer one is left out
FIRST_PASSAGES = 2  # each of the first cited passages may show its best unit, even with no new term …
NEW_PAGE_SHARE = 0.2  # … if it scores at least this share of the best unit
SHORT_LIST_STEPS = 4  # a numbered list this short comes whole with any of its items
MIN_CUT_CHARS = 60  # a unit is cut with "…" to fit the budget only if this much of it still fits


def answer_extract(question: str, passages: list, *, max_items: int = 8, max_chars: int = 1200) -> list[dict]:
    """[{"text": ..., "n": 1, "document": file_name, "page": page}, ...] in reading order of relevance;
    [] when nothing answers. Passage i of ``passages`` (objects with .text, .file_name, .page) is [i + 1]."""
    furniture = _page_furniture(passages)
    units = [u for i, p in enumerate(passages) for u in split_units(_without(p.text or "", furniture), i + 1)]
    q, scored, weights, ranked = _ranked(question, units, passages)
    if not ranked:
        return []
    first = _completed(ranked[0], scored, q, max_items)
    chosen = _chosen(first, ranked, scored, q, weights, max_items)
    parts = question_parts(question)
    if len(parts) > 1:
        chosen = _with_parts_answered(chosen, len(first), parts, units, passages, max_items)
    items: list[dict] = []
    budget = max_chars
    for s in chosen:
        if len(items) == max_items or budget < min(MIN_CUT_CHARS, max_chars):
            break
        if any(_duplicates(s.unit.text, item["text"]) for item in items):
            continue
        text = cut(s.unit.text, budget)
        budget -= len(text)
        passage = passages[s.unit.n - 1]
        items.append({"text": text, "n": s.unit.n, "document": passage.file_name, "page": passage.page})
    return items


def _ranked(
    question: str, units: list[Unit], passages: list
) -> tuple[Question, list[Scored], dict[str, float], list[Scored]]:
    """The units scored for ``question``, and those that answer something of it, best first."""
    q = read_question(question)
    scored = _with_context(units, q)
    weights = _product_weighted(idf_weights(scored), passages, q)
    for s in scored:
        _score(s, weights, q)
    candidates = (s for s in scored if s.score > 0 and not s.unit.heading)
    return q, scored, weights, sorted(candidates, key=lambda s: (-s.score, -s.own))  # on a tie, what it says


PART_UNITS = 3  # a part of the question left unanswered adds at most its best unit and the two after it


def _with_parts_answered(chosen: list[Scored], lead: int, parts: list[str], units: list[Unit],
                         passages: list, max_items: int) -> list[Scored]:
    """A question of several parts ("What wire size should I use …, and how far apart can they be?")
    is scored as a whole, and its best lines may all answer one part. Each part whose own best line
    is not shown yet gets it, with what completes it, right after the whole question's best lines:
    the answer to every part fits in the budget before the further lines that only add to one.
    ``lead``: how many of ``chosen`` are the whole question's best line and what completes it."""
    added: list[Scored] = []
    for part in parts:
        q, scored, _, ranked = _ranked(part, units, passages)
        if not ranked:
            continue
        shown = chosen[:max_items] + added
        # The part's best line that says something of it no line shown says.
        said = set().union(*(_hits(s.unit.text, q) for s in shown))
        best = next((s for s in ranked if s.hits - said), None)
        if best is None or best.score < NEW_PAGE_SHARE * ranked[0].score:
            continue  # this part is answered already
        more = _completed(best, scored, q, max_items)[:PART_UNITS]
        before = chosen[:lead] + added
        added += [m for m in more if not any(_duplicates(m.unit.text, s.unit.text) for s in before)]
    return chosen[:lead] + added + chosen[lead:]


_DIGITS = re.compile(r"\d+")


def _line_key(line: str) -> str:
    """A line with its numbers blanked: a running footer is the same line on every page but its number."""
    return _DIGITS.sub("#", " ".join(line.split()))


def _page_furniture(passages: list) -> set[str]:
    """Running headers and footers ("MPPT 1210 HUS 2021-05-02", "Libre Solar / Martin Jäger 7"): short
    lines, not sentences, found on two or more different pages of the same manual among the passages."""
    pages: dict[tuple, set] = {}
    for p in passages:
        for line in {_line_key(line) for line in (p.text or "").split("\n")}:
            if (
                _LETTERS.search(line)
                and len(line) <= FURNITURE_CHARS
                and not line.endswith((".", "!", "?", ":"))
                and not _has_sentence_words(line)
            ):
                pages.setdefault((getattr(p, "file_name", None), line), set()).add(getattr(p, "page", None))
    return {line for (_, line), seen in pages.items() if len(seen) > 1}


def _without(text: str, furniture: set[str]) -> str:
    """``text`` without its running header and footer lines."""
    if not furniture:
        return text
    return "\n".join(line for line in text.split("\n") if _line_key(line) not in furniture)


def _chosen(
    first: list[Scored], ranked: list[Scored], scored: list[Scored], q: Question, weights: dict[str, float],
    max_items: int,
) -> list[Scored]:
    """The best unit with what completes it (``first``), then units that score nearly as well and
    answer a part of the question nothing chosen so far answers (a second fact) or sit under another
    heading of a page already shown, and the best unit of each of the first cited pages nothing is
    shown from yet."""
    best = ranked[0]
    chosen = list(first)
    covered = set().union(*(_says(s) for s in chosen))
    page_best: dict[int, Scored] = {}
    for s in ranked:
        page_best.setdefault(s.unit.n, s)
    for s in ranked[1:]:
        if s in chosen or s.score < NEW_PAGE_SHARE * best.score:
            continue
        same_page = [c for c in chosen if c.unit.n == s.unit.n]
        # The best unit of one of the first cited pages nothing is shown from yet: retrieval (which also
        # compares meanings) ranked the page high, so it may say in other words what the question asks.
        new_page = (
            s.unit.n <= FIRST_PASSAGES
            and s is page_best[s.unit.n]
            and not same_page
            and not any(_duplicates(s.unit.text, c.unit.text) for c in chosen)
        )
        share = SAME_PASSAGE_SHARE if s.unit.n in (1, best.unit.n) else OTHER_PASSAGE_SHARE
        if s.score < share * best.score and not new_page:
            continue
        news = sum(weights[t] for t in sorted(s.hits - covered))
        # Under another heading of a page already shown, the same words tell another fact ("each stage").
        other_section = (
            s.section is not None and bool(same_page) and all(c.section is not s.section for c in same_page)
        )
        if (news and news >= NEW_FACT_SHARE * best.own) or other_section or new_page:
            more = _completed(s, scored, q, max_items)
            chosen += [m for m in more if m not in chosen]
            covered |= set().union(*(_says(m) for m in more))
    return chosen


def _titled(units: list[Scored]) -> list[Scored]:
    """The units with the bulleted title or FAQ question they sit under ("• Bulk stage", "• I power the
    board from the battery connector. The LEDs remain off. Is it broken?") first: it names what the lines
    are about, often in the very terms asked for. A plain section title is left out."""
    title = units[0].section
    if title is None or title in units or len(title.unit.text) > TITLE_CHARS:
        return units
    if not (title.unit.entry or title.unit.text.endswith("?")):  # a plain section title is only navigation
        return units
    return [title, *units]


def _says(s: Scored) -> set[str]:
    """The question terms a shown unit answers: its own, and its heading's when it is shown for them."""
    return s.hits | s.context if s.context and s.hits <= s.context else s.hits


def _completed(s: Scored, scored: list[Scored], q: Question, max_items: int) -> list[Scored]:
    """A unit and the units that complete its answer: the run of numbered steps for a procedure, or,
    under the title they sit under, the body of its section when the unit says nothing of the question
    its heading does not, else the unit and its neighbours."""
    passage = [t for t in scored if t.unit.n == s.unit.n]
    at = passage.index(s)
    if s.context and s.hits <= s.context:
        return _titled(_section(passage, at))
    if s.unit.step:
        run = _step_run(passage, at, max_items)
        # A short numbered list (a fault's remedies) is one answer; from a long one (safety notes) a
        # question that asks no procedure wants the item and its neighbours.
        if q.steps or len([u for u in run if u.unit.step]) <= SHORT_LIST_STEPS:
            return run
    return _titled(_around(passage, at))


def _around(passage: list[Scored], at: int) -> list[Scored]:
    """The unit and its neighbours: a fact's condition or consequence is often in the next line
    ("… reached 65º Celsius." / "Once … below 55ºC …"), so the next two units come too (the second
    unless it is another labelled entry, such as the next error code), up to a heading; the list or
    rows a line ends by announcing ("… and set:"); and the unit before when the unit goes on from it
    (a sentence in mid-paragraph, "This means …", a table row under another row).
    Measured on bench/questions/library.json: all key facts in the extract for 49 % of the covered
    questions with the unit alone, 58 % with the next one too (docs/benchmarks.md)."""
    end = at + 1
    while end < len(passage) and end - at <= NEXT_UNITS and not passage[end].unit.heading:
        end += 1
        following = passage[end].unit if end < len(passage) else None
        if following and following.entry and _LABEL.match(following.text):  # past the next line, another code
            break
    unit = passage[at].unit
    refers_back = not unit.first or _REFERS_BACK.match(unit.text)
    # A table row is read with the rows around it: the one above is as likely asked as the one below.
    in_table = at and _is_row(unit.text) and _is_row(passage[at - 1].unit.text)
    start = at - 1 if at and (refers_back or in_table) and not passage[at - 1].unit.heading else at
    # In the middle of a paragraph, the paragraph's sentence before that too (its subject is often there).
    if start < at and not passage[start].unit.first and start and not passage[start - 1].unit.heading:
        start -= 1
    return passage[start:_announced(passage, at, end)]


# A sentence starting "This means …", "So …", "Therefore …" says what the sentence before it is about.
_REFERS_BACK = re.compile(
    r"^(?:[^\w\s]\s*)?(?:this|that|these|those|it|they|so|therefore|thus|hence|otherwise|however)\b"
    r"(?!\s*(?:\w+\s+)?:)",
    re.IGNORECASE,
)


def _announced(passage: list[Scored], at: int, end: int) -> int:
    """A line ending with a colon ("… and set:") announces the list or rows after it: they go with it."""
    colon = [i for i in range(at, end) if passage[i].unit.text.rstrip().endswith(":")]
    if colon:
        end, last = colon[-1] + 1, min(len(passage), colon[-1] + 1 + LIST_UNITS)
        while end < last and not passage[end].unit.heading and (
            passage[end].unit.entry or _is_row(passage[end].unit.text)
        ):
            end += 1
    return max(end, at + 1)


def _section(passage: list[Scored], at: int) -> list[Scored]:
    """The units between the heading above ``passage[at]`` and the next heading; after a list, the
    first new paragraph is something else (a page footer, the next topic) and ends the section."""
    start = at
    while start > 0 and not passage[start - 1].unit.heading:
        start -= 1
    end, listed = start, False
    while end < len(passage) and not passage[end].unit.heading:
        unit = passage[end].unit
        if listed and unit.first and not unit.entry:
            break
        listed = listed or unit.entry
        end += 1
    return passage[start:end]


def _step_run(passage: list[Scored], at: int, max_items: int) -> list[Scored]:
    """The numbered list around ``passage[at]`` from its first step (or as close to it as ``max_items``
    allows): the steps and the sentences continuing them, up to anything else or a step numbered 1."""

    def in_steps(s: Scored) -> bool:
        return s.unit.step or not (s.unit.first or s.unit.heading)

    earliest, start = max(0, at - max_items + 1), at
    while start > earliest and not _first_step(passage[start].unit.text) and in_steps(passage[start - 1]):
        start -= 1
    while not passage[start].unit.step:
        start += 1
    end = at + 1
    while end < len(passage) and in_steps(passage[end]) and not _first_step(passage[end].unit.text):
        end += 1
    return passage[start:end]


def _duplicates(a: str, b: str) -> bool:
    """Overlapping chunks repeat text, sometimes cut at the chunk's edge: one contains the other."""
    ka, kb = _key(a), _key(b)
    return ka in kb or kb in ka


def cut(text: str, limit: int) -> str:
    """``text`` if it fits in ``limit`` characters, else its longest prefix ending at a word boundary
    that fits with "…"."""
    if len(text) <= limit:
        return text
    head = text[: limit - 1]
    if not text[limit - 1].isspace() and " " in head:
        head = head.rsplit(" ", 1)[0]
    return head.rstrip(" ,;:") + "…"
