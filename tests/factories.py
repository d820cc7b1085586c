"""Small builders shared by the tests: PDFs made on the fly, uploaded files, documents."""
from __future__ import annotations

import io
import random
from pathlib import Path

from django.core.files.uploadedfile import SimpleUploadedFile


def _escape_pdf_text(text: str) -> str:
    return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def make_pdf(
    pages: list[str | None],
    *,
    user_password: str | None = None,
    owner_password: str | None = None,
    algorithm: str | None = None,
) -> bytes:
    """A PDF with one page per item: a string becomes that text (Helvetica, one line per
    ``\\n``), ``None`` or ``""`` a blank page without any text layer.

    ``user_password`` encrypts the file ("" = encrypted with an empty user password, which
    any reader may open); ``algorithm`` is pypdf's ("RC4-128", "AES-128", "AES-256").
    """
    from pypdf import PdfWriter
    from pypdf.generic import DecodedStreamObject, DictionaryObject, NameObject

    writer = PdfWriter()
    font = writer._add_object(
        DictionaryObject(
            {
                NameObject("/Type"): NameObject("/Font"),
                NameObject("/Subtype"): NameObject("/Type1"),
                NameObject("/BaseFont"): NameObject("/Helvetica"),
            }
        )
    )
    for text in pages:
        page = writer.add_blank_page(width=612, height=792)
        if not text:
            continue
        ops = ["BT", "/F1 11 Tf", "14 TL", "72 740 Td"]
        for line in text.split("\n"):
            ops.append(f"({_escape_pdf_text(line)}) Tj T*")
        ops.append("ET")
        stream = DecodedStreamObject()
        stream.set_data("\n".join(ops).encode("latin-1"))
        page[NameObject("/Contents")] = writer._add_object(stream)
        page[NameObject("/Resources")] = DictionaryObject(
            {NameObject("/Font"): DictionaryObject({NameObject("/F1"): font})}
        )
    if user_password is not None:
        writer.encrypt(
            user_password=user_password, owner_password=owner_password or "owner-secret", algorithm=algorithm
        )
    buf = io.BytesIO()
    writer.write(buf)
    return buf.getvalue()


def image_only_pdf(page_count: int = 2) -> bytes:
    """Pages without a text layer, as a scanned manual would be."""
    return make_pdf([None] * page_count)


def corrupt_pdf(size: int = 4000) -> bytes:
    """Starts like a PDF, then deterministic garbage."""
    return b"%PDF-1.4\n" + random.Random(1234).randbytes(size)


def write(tmp_path: Path, name: str, content: bytes | str) -> Path:
    path = Path(tmp_path) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, str):
        content = content.encode()
    path.write_bytes(content)
    return path


def upload(name: str, content: bytes | str, content_type: str = "application/octet-stream"):
    if isinstance(content, str):
        content = content.encode()
    return SimpleUploadedFile(name, content, content_type=content_type)


def pdf_upload(path: Path, name: str | None = None) -> SimpleUploadedFile:
    path = Path(path)
    return SimpleUploadedFile(name or path.name, path.read_bytes(), content_type="application/pdf")


def stored_node_ids(index, document_id: int | None = None) -> list[str]:
    """Ids of the vectors a VectorIndex holds (all, or one document's), read from the store itself.

    Works for the Chroma stores (embedded, in-memory) and llama-index's SimpleVectorStore.
    """
    store = index.store
    collection = getattr(store, "_collection", None)
    if collection is not None:
        where = {"document_id": str(document_id)} if document_id is not None else None
        return sorted(collection.get(where=where, include=[])["ids"])
    data = store.data
    ids = list(data.embedding_dict)
    if document_id is not None:
        ids = [i for i in ids if data.text_id_to_ref_doc_id.get(i) == str(document_id)]
    return sorted(ids)
