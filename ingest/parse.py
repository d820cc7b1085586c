"""Turn an uploaded file into pages of text, or a ParseError whose message a user can act on.

Page numbers are physical and 1-based (a PDF's page index + 1); text files are one page unless
they contain form feeds.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

log = logging.getLogger(__name__)

try:  # pypdf raises this for AES PDFs when the cryptography package is missing
    from pypdf.errors import DependencyError
except ImportError:  # pragma: no cover - older pypdf
    class DependencyError(Exception):
        pass

PDF_EXTENSIONS = {".pdf"}
TEXT_EXTENSIONS = {".txt", ".md", ".log", ".csv"}
SUPPORTED_EXTENSIONS = PDF_EXTENSIONS | TEXT_EXTENSIONS


class ParseError(Exception):
    """The file cannot be indexed; ``str(exc)`` is shown to the admin as the reason."""


@dataclass
class Page:
    number: int  # physical, 1-based
    text: str
    # How the text was read: "text" (the PDF's text layer as is), "repaired" (glyph names mapped
    # back to characters), "pdfium" (extracted again by pdfium), "ocr" (recognised from the image).
    source: str = "text"


@dataclass
class ParsedDocument:
    pages: list[Page]
    page_count: int
    empty_pages: list[int] = field(default_factory=list)  # pages with (almost) no text layer
    title: str = ""  # what the document is, for retrieval (see ``document_title``)
    page_sources: dict[str, list[int]] = field(default_factory=dict)  # {"ocr": [10, 11], ...}

    @property
    def text_pages(self) -> list[Page]:
        return [p for p in self.pages if p.text.strip()]


@dataclass
class PageSink:
    """What a reader reports as it goes: a page about to be OCR'd (progress shows the step)."""

    on_ocr: Callable[[int], None] | None = None


class DocumentReader:
    """A document read one page at a time, so a 1,000-page manual never sits in memory whole.

    ``page_count`` and ``title`` are known on opening; ``pages()`` yields each page once, in
    order, after its text layer was checked (and repaired, or recognised by OCR when the layer is
    missing or garbage and ``ocr_engine`` is set). ``empty_pages`` and ``page_sources`` fill in as
    the pages go by.
    """

    def __init__(self, path: Path, file_name: str | None = None, *, ocr_engine: str | None = None,
                 sink: PageSink | None = None):
        self.path = Path(path)
        self.name = file_name or self.path.name
        self.suffix = Path(self.name).suffix.lower()
        self.ocr_engine = ocr_engine or None
        self.sink = sink or PageSink()
        self.empty_pages: list[int] = []
        self.page_sources: dict[str, list[int]] = {}
        self.page_reasons: dict[int, list[str]] = {}  # garbage the page still has after repair
        if self.suffix not in SUPPORTED_EXTENSIONS:
            raise ParseError(f"unsupported file type {self.suffix or '(none)'}; upload PDF, TXT, MD, LOG or CSV")
        if self.path.stat().st_size == 0:
            raise ParseError("empty file")
        if self.suffix in PDF_EXTENSIONS:
            self._reader = open_pdf(self.path)
            self.page_count = len(self._reader.pages)
            embedded = _pdf_title(self._reader)
            self._text = None
        else:
            self._reader = None
            self._text = parse_text(self.path)
            self.page_count = self._text.page_count
            embedded = ""
        self.title = document_title(self.name, embedded)

    def pages(self) -> Iterator[Page]:
        if self._text is not None:
            self.empty_pages = list(self._text.empty_pages)
            yield from self._text.pages
            return
        for index in range(self.page_count):
            page = self._read_pdf_page(index)
            if page.source != "text":
                self.page_sources.setdefault(page.source, []).append(page.number)
            if _is_image_only(page.text):
                self.empty_pages.append(page.number)
            yield page
            if index % PAGES_PER_READER == PAGES_PER_READER - 1:
                # pypdf keeps every object it resolved; a fresh reader keeps memory flat.
                self._reader = open_pdf(self.path)
        if len(self.empty_pages) == self.page_count:
            if self.ocr_engine:
                raise ParseError("no text found: the PDF holds only images and OCR recognised no text in them")
            raise ParseError("no text layer — the PDF holds only images and OCR is turned off (NANOSENTRI_OCR)")

    def _read_pdf_page(self, index: int) -> Page:
        from ingest.textlayer import read_page

        number = index + 1
        layer = clean_text(_pypdf_page_text(self._reader, index, self.path))
        read = read_page(layer, self.path, index)
        text, source = read.text, read.source
        if self.ocr_engine and (_is_image_only(text) or read.reasons):
            recognised = self._ocr(index)
            # A picture with a few callouts stays a page without readable text, whoever reads it.
            if recognised and not _is_image_only(recognised) and _alnum(recognised) > _alnum(text) * (
                0.5 if read.reasons else 1
            ):
                return Page(number=number, text=recognised, source="ocr")
        if read.reasons:
            self.page_reasons[number] = list(read.reasons)
        return Page(number=number, text=text, source=source)

    def _ocr(self, index: int) -> str | None:
        from ingest.ocr import OcrUnavailable, ocr_pdf_page

        if self.sink.on_ocr:
            self.sink.on_ocr(index + 1)
        try:
            return clean_text(ocr_pdf_page(self.path, index, engine=self.ocr_engine).text)
        except OcrUnavailable as exc:
            raise ParseError(f"page {index + 1} needs OCR, which is not available here: {exc}") from exc
        except Exception as exc:  # one unreadable image must not lose the rest of the manual
            log.warning("OCR of page %d of %s failed: %s", index + 1, self.path, exc)
            return None


PAGES_PER_READER = 100


def parse_file(path: Path, file_name: str | None = None, *, ocr_engine: str | None = None) -> ParsedDocument:
    """The whole document at once (small files, tests, benchmarks); the worker streams instead."""
    reader = DocumentReader(path, file_name, ocr_engine=ocr_engine)
    pages = list(reader.pages())
    return ParsedDocument(
        pages=pages, page_count=reader.page_count, empty_pages=reader.empty_pages, title=reader.title,
        page_sources=reader.page_sources,
    )


def document_title(file_name: str, embedded_title: str = "") -> str:
    """A readable title: the file name's words, plus the PDF's own title when it adds words.

    Manuals are usually named after the device ("Olimex_ESP32-POE_User_Manual_rev2.6.pdf"); the
    embedded title is often empty or a tool's placeholder, so it only ever adds to the name.
    """
    stem = Path(file_name).stem
    title = " ".join(re.sub(r"[_]+|(?<=[a-z])-(?=[A-Z])", " ", stem).split())
    embedded = " ".join((embedded_title or "").split())[:200]
    known = {w.lower() for w in re.findall(r"\w+", title)}
    if embedded and len(embedded) >= 4 and {w.lower() for w in re.findall(r"\w+", embedded)} - known:
        title = f"{title} — {embedded}"
    return title


def open_pdf(path: Path):
    """A pypdf reader for the file, or a ParseError that says why it cannot be read."""
    from pypdf import PdfReader
    from pypdf.errors import FileNotDecryptedError, PdfReadError, PdfStreamError

    with open(path, "rb") as f:
        head = f.read(1024)
    if b"%PDF-" not in head:
        raise ParseError("not a PDF: the file content does not match the .pdf extension")
    try:
        reader = PdfReader(str(path), strict=False)
        if reader.is_encrypted:
            # Many PDFs are "encrypted" with an empty user password (print restrictions only).
            try:
                if not reader.decrypt(""):
                    raise ParseError("encrypted PDF: remove the password and upload it again")
            except (FileNotDecryptedError, NotImplementedError, DependencyError) as exc:
                raise ParseError(f"encrypted PDF: remove the password and upload it again ({exc})") from exc
        page_count = len(reader.pages)
    except ParseError:
        raise
    except (PdfReadError, PdfStreamError, ValueError, KeyError, TypeError, OSError) as exc:
        raise ParseError(f"corrupt or unreadable PDF: {exc}") from exc
    if page_count == 0:
        raise ParseError("the PDF has no pages")
    return reader


def _pypdf_page_text(reader, index: int, path: Path) -> str:
    from pypdf.errors import FileNotDecryptedError

    try:
        return reader.pages[index].extract_text() or ""
    except FileNotDecryptedError as exc:
        raise ParseError("encrypted PDF: remove the password and upload it again") from exc
    except Exception as exc:  # one broken page must not lose the rest of the manual
        log.warning("page %d of %s could not be read: %s", index + 1, path, exc)
        return ""


def parse_pdf(path: Path, *, ocr_engine: str | None = None) -> ParsedDocument:
    return parse_file(path, Path(path).name if Path(path).suffix.lower() == ".pdf" else "document.pdf",
                      ocr_engine=ocr_engine)


def _pdf_title(reader) -> str:
    try:
        return str((reader.metadata or {}).get("/Title") or "")
    except Exception:  # a broken info dictionary is no reason to lose the manual
        return ""


def parse_text(path: Path) -> ParsedDocument:
    raw = path.read_bytes()
    if b"\x00" in raw[:8192]:
        raise ParseError("binary content: not a text file")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    if not text.strip():
        raise ParseError("empty file: no text to index")
    parts = text.split("\f")
    pages = [Page(number=i + 1, text=clean_text(part)) for i, part in enumerate(parts)]
    empty = [p.number for p in pages if not p.text.strip()]
    return ParsedDocument(pages=pages, page_count=len(pages), empty_pages=empty)


# A page whose text layer is a heading or a page number at most is a picture (a scan, a
# wiring diagram): report it, since its content cannot be searched without OCR.
MIN_PAGE_CHARACTERS = 40


def _alnum(text: str) -> int:
    return sum(ch.isalnum() for ch in text)


def _is_image_only(text: str) -> bool:
    return _alnum(text) < MIN_PAGE_CHARACTERS


_HYPHEN_BREAK = re.compile(r"(\w)-\n(\w)")
_SPACES = re.compile(r"[ \t\u00a0]+")
_MANY_NEWLINES = re.compile(r"\n{3,}")


def clean_text(text: str) -> str:
    """Join words hyphenated across lines, drop control characters, squeeze blank space."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = "".join(ch for ch in text if ch in "\n\t" or ch >= " ")
    text = _HYPHEN_BREAK.sub(r"\1\2", text)
    text = _SPACES.sub(" ", text)
    text = "\n".join(line.strip() for line in text.split("\n"))
    return _MANY_NEWLINES.sub("\n\n", text).strip()
