"""Turn an uploaded file into pages of text, or a ParseError whose message a user can act on.

Page numbers are physical and 1-based (a PDF's page index + 1); text files are one page unless
they contain form feeds.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

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


@dataclass
class ParsedDocument:
    pages: list[Page]
    page_count: int
    empty_pages: list[int] = field(default_factory=list)  # pages with (almost) no text layer
    title: str = ""  # what the document is, for retrieval (see ``document_title``)

    @property
    def text_pages(self) -> list[Page]:
        return [p for p in self.pages if p.text.strip()]


def parse_file(path: Path, file_name: str | None = None) -> ParsedDocument:
    name = file_name or path.name
    suffix = Path(name).suffix.lower()
    if suffix not in SUPPORTED_EXTENSIONS:
        raise ParseError(
            f"unsupported file type {suffix or '(none)'}; upload PDF, TXT, MD, LOG or CSV"
        )
    if path.stat().st_size == 0:
        raise ParseError("empty file")
    parsed = parse_pdf(path) if suffix in PDF_EXTENSIONS else parse_text(path)
    parsed.title = document_title(name, parsed.title)
    return parsed


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


def parse_pdf(path: Path) -> ParsedDocument:
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

    pages, empty = [], []
    for index in range(page_count):
        try:
            text = reader.pages[index].extract_text() or ""
        except FileNotDecryptedError as exc:
            raise ParseError("encrypted PDF: remove the password and upload it again") from exc
        except Exception as exc:  # one broken page must not lose the rest of the manual
            log.warning("page %d of %s could not be read: %s", index + 1, path, exc)
            text = ""
        text = clean_text(text)
        if _is_image_only(text):
            empty.append(index + 1)
        pages.append(Page(number=index + 1, text=text))
    if len(empty) == page_count:
        raise ParseError("no text layer — OCR not supported (the PDF holds only images)")
    return ParsedDocument(pages=pages, page_count=page_count, empty_pages=empty, title=_pdf_title(reader))


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


def _is_image_only(text: str) -> bool:
    return sum(ch.isalnum() for ch in text) < MIN_PAGE_CHARACTERS


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
