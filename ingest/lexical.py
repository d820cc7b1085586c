"""The lexical half of retrieval: an analyzer that keeps codes and part names, and BM25 over it.

Vectors of a small embedder blur exactly what a technician types most precisely: "GPIO12",
"ERROR HIGH TEMP", "DSIEC-ELB", "3.3V". The analyzer keeps such tokens whole *and* in their
parts ("esp32-poe" → esp32poe, esp32, poe), splits letters from digits ("gpio12" → gpio, 12),
lightly stems plain words and adds adjacent-word pairs, so a phrase ("high temp") outweighs
its words scattered over a page.

The terms of every chunk are computed once, by the writer (the worker), and stored beside the
chunk's vector (see ``ingest.index``); a reader builds the BM25 statistics from them in memory.

A question is read here too: its terms (``query_terms``) and the questions it asks
(``question_parts``), which retrieval searches and the extract answers one by one.
"""
from __future__ import annotations

import math
import re
import unicodedata
from itertools import chain
from dataclasses import dataclass

import numpy as np

_TOKEN = re.compile(r"[a-z0-9µ]+(?:[._/\-][a-z0-9µ]+)*")
_ALNUM_SPLIT = re.compile(r"[a-z]+|[0-9]+")
_SEPARATORS = re.compile(r"[._/\-]")
_DECIMAL_POINT = re.compile(r"(?<=\d)\.(?=\d)")

STOPWORDS = frozenset(
    """a about above after again all also am an and any are as at be because been before being below
    between both but by could did do does doing done down during each either else etc every few for
    from further get gets got had has have having he her here hers him his how however i if in into is
    it its itself just let like may me might more most much must my need needs no nor not now of off on
    once one only or other our out over own please same shall she should so some such than that the their
    them then there these they this those through to too under until up upon us use used using very via
    was we were what when where whether which while who whom whose why will with within without would
    yet you your yours""".split()
)


def normalize(text: str) -> str:
    """NFKC, lower case, no degree signs: PDF text layers mix º, ° and ℃ ("55ºC" → "55c")."""
    text = (text or "").replace("º", "°")  # NFKC would make the ordinal indicator an "o"
    text = unicodedata.normalize("NFKC", text).lower()
    return text.replace("°", "").replace("\u00b5", "µ").replace("μ", "µ")


def _stem(word: str) -> str:
    """A light stem for plain words: plurals and -ing/-ed, nothing that merges unrelated words."""
    if len(word) <= 3 or not word.isalpha():
        return word
    for suffix, keep in (("ies", "y"), ("sses", "ss"), ("ing", ""), ("ed", ""), ("es", ""), ("s", "")):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            if suffix == "s" and word.endswith(("ss", "us", "is")):
                return word
            return word[: -len(suffix)] + keep
    return word


def _token_terms(token: str, *, runs: bool = True) -> list[str]:
    """The terms of one raw token: the whole (separators dropped), its parts, its letter/digit runs."""
    whole = _DECIMAL_POINT.sub("\x00", token)
    whole = _SEPARATORS.sub("", whole).replace("\x00", ".")  # "esp32-poe" → esp32poe, "3.3v" stays
    terms = [_stem(whole) if whole.isalpha() else whole]
    parts = [p for p in _SEPARATORS.split(token) if p]
    if len(parts) > 1:
        terms.extend(_stem(p) if p.isalpha() else p for p in parts)
    for part in parts if runs else []:
        pieces = _ALNUM_SPLIT.findall(part)
        if 1 < len(pieces) <= 4:
            terms.extend(pieces)
    return terms


def analyze(text: str) -> list[str]:
    """Terms of ``text`` for BM25: content words, codes whole and split, and adjacent-word pairs."""
    terms: list[str] = []
    previous = None
    for match in _TOKEN.finditer(normalize(text)):
        token = match.group()
        if token in STOPWORDS or (len(token) == 1 and token.isalpha()):
            previous = None
            continue
        token_terms = _token_terms(token)
        terms.extend(token_terms)
        head = token_terms[0]
        if previous is not None:
            terms.append(f"{previous}_{head}")
        previous = head
    return terms


def name_terms(text: str) -> set[str]:
    """Terms of a name ("Olimex ESP32-POE"): tokens whole and split at separators, never "esp" of "esp32"."""
    terms = set()
    for match in _TOKEN.finditer(normalize(text)):
        if match.group() not in STOPWORDS:
            terms.update(_token_terms(match.group(), runs=False))
    return terms


# Letters that follow a number as its unit or a dimension: "24v", "3.3v", "115200bps", "5.5x2.1mm".
_UNITS = frozenset(
    """v vac vdc a ma mah ah w kw mw mm cm m km s ms us h min c f k hz khz mhz ghz kb mb gb bit bits bps
    kbps nm um µm µg ug pcs x st nd rd th d""".split()
)


def code_tokens(text: str) -> dict[str, str]:
    """The codes and part numbers ``text`` names: tokens of letters and digits ("F21", "GPIO12",
    "ESP32-POE", "CH340T"), as {index term: as written}, the term with separators dropped as in the
    index ("esp32poe"). A number with its unit ("24V", "10mm", "5.5x2.1mm") is a value, not a code."""
    codes: dict[str, str] = {}
    for match in re.finditer(_TOKEN.pattern, unicodedata.normalize("NFKC", text or ""), re.IGNORECASE):
        written = match.group()
        token = normalize(written)
        letters = re.findall(r"[a-zµ]+", token)
        if not letters or not re.search(r"\d", token):
            continue
        if token[0].isdigit() and all(run in _UNITS for run in letters):
            continue
        codes.setdefault(_token_terms(token)[0], written)
    return codes


def query_terms(text: str) -> list[str]:
    """The distinct terms of a question, in order."""
    return list(dict.fromkeys(analyze(text)))


# "What baud rate does it use, and which bytes start a frame?": a second question after a comma or
# "and", starting with a question word. Each part may be answered on another page.
_PART_BREAK = re.compile(
    r"(?:[?;]\s+|,\s*(?:and\s+|but\s+)?|\s+and\s+)(?=(?:how|what|which|when|where|why|who|is|are|can|could|"
    r"do|does|should|must|will)\b)",
    re.I,
)
PART_MIN_TERMS = 1  # a part without a content word of its own ("and why?") is not searched alone


def question_parts(question: str) -> list[str]:
    """The questions a question asks ("What UART baud rate does the PMS5003 use, and which two
    start bytes begin each frame?" asks two); one part for a single question."""
    parts = [p.strip(" ,;?.") for p in _PART_BREAK.split(question)]
    parts = [p for p in parts if p]
    if len(parts) < 2 or any(len(query_terms(p)) < PART_MIN_TERMS for p in parts):
        return [question]
    return parts


@dataclass
class LexicalHit:
    position: int  # index of the entry in the order the index was built
    score: float


def best_positions(scores: np.ndarray, k: int) -> np.ndarray:
    """The positions of the ``k`` highest ``scores``, highest first (ties in position order)."""
    k = min(k, len(scores))
    if k <= 0:
        return np.zeros(0, dtype=np.int64)
    best = np.argpartition(-scores, k - 1)[:k]
    return best[np.argsort(-scores[best], kind="stable")]


class BM25:
    """Okapi BM25 over term lists, with postings in flat numpy arrays.

    Built in one pass over the terms and a few array operations (not per-term arrays): at 100,000
    passages a reader rebuilds it in seconds, not minutes. Each posting's weight has the term's IDF
    folded in, so scoring a question is a few slices and one scatter-add per term.
    """

    def __init__(self, documents: list[list[str]], *, k1: float = 1.2, b: float = 0.75):
        self.size = len(documents)
        vocabulary: dict[str, int] = {}
        ids = [[vocabulary.setdefault(term, len(vocabulary)) for term in terms] for terms in documents]
        lengths = np.fromiter((len(t) for t in ids), dtype=np.int64, count=self.size)
        flat = np.fromiter(chain.from_iterable(ids), dtype=np.int64, count=int(lengths.sum()))
        owner = np.repeat(np.arange(self.size, dtype=np.int64), lengths)
        width = max(1, len(vocabulary))
        pairs, tf = np.unique(owner * width + flat, return_counts=True)  # sorted by document, then term
        where, term = pairs // width, pairs % width
        order = np.argsort(term, kind="stable")  # postings grouped by term, documents ascending
        where, term, tf = where[order], term[order], tf[order].astype(np.float32)
        df = np.bincount(term, minlength=len(vocabulary))
        self._idf_of = np.log(1 + (self.size - df + 0.5) / (df + 0.5)).astype(np.float32)
        average = float(lengths.mean()) if self.size else 0.0
        norm = k1 * (1 - b + b * lengths / average) if average else np.zeros(self.size)
        self._weights = self._idf_of[term] * tf * (k1 + 1) / (tf + norm[where].astype(np.float32))
        self._documents = where
        self._starts = np.concatenate(([0], np.cumsum(df)))
        self._vocabulary = vocabulary

    def idf(self, term: str) -> float:
        """How telling ``term`` is; a term found nowhere is as telling as the rarest one."""
        column = self._vocabulary.get(term)
        if column is None:
            return math.log(1 + (self.size + 0.5) / 0.5)
        return float(self._idf_of[column])

    def known(self, term: str) -> bool:
        return term in self._vocabulary

    def sharing_start(self, word: str, min_chars: int = 4) -> list[str]:
        """The single-word terms that begin with ``word`` or that ``word`` begins with, both at least
        ``min_chars`` long ("wake": "wakeup"). A scan of the vocabulary: for rare checks only."""
        if len(word) < min_chars:
            return []
        return [t for t in self._vocabulary if len(t) >= min_chars and "_" not in t and t != word
                and (t.startswith(word) or word.startswith(t))]

    def scores(self, terms: list[str]) -> np.ndarray:
        total = np.zeros(self.size, dtype=np.float32)
        for term in dict.fromkeys(terms):
            column = self._vocabulary.get(term)
            if column is not None:
                start, end = self._starts[column], self._starts[column + 1]
                total[self._documents[start:end]] += self._weights[start:end]
        return total

    def top(self, terms: list[str], k: int, rows: np.ndarray | None = None) -> list[LexicalHit]:
        """The ``k`` best documents for ``terms``; ``rows``: only among these positions."""
        if not self.size:
            return []
        scores = self.scores(terms)
        candidates = np.arange(self.size) if rows is None else np.asarray(rows, dtype=np.int64)
        if not len(candidates):
            return []
        among = scores[candidates]
        return [LexicalHit(int(candidates[i]), float(among[i])) for i in best_positions(among, k) if among[i] > 0]
