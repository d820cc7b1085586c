"""/api/v1/documents: upload manuals and logs, list them, read one, as the token's user.

An upload is judged file by file (apps.knowledge.uploads, as the web form): the answer lists
every file with its outcome, so one bad file never costs the others their upload.
"""
from __future__ import annotations

from typing import Literal

from ninja import File, Form, Path, Query, Router, UploadedFile
from ninja.errors import AuthorizationError, HttpError

from apps.api.auth import permission_require
from apps.api.schemas import DocumentOut, DocumentPage, DocumentStatus, Error, UploadResults, ValidationErrorOut
from apps.knowledge import selectors, uploads, versions
from apps.knowledge.models import Document

router = Router(tags=["documents"])

MAX_OFFSET = 1_000_000_000
_READ_ERRORS = {401: Error, 403: Error, 422: ValidationErrorOut}
_WRITE_ERRORS = {400: Error, 413: Error, **_READ_ERRORS}


@router.get(
    "/documents",
    response={200: DocumentPage, **_READ_ERRORS},
    summary="List documents",
    operation_id="listDocuments",
    description="The manuals and logs in the library, newest first (versions replaced by a newer one are not "
    "listed). Any role that may open the manuals may list them.",
)
def document_list(
    request,
    status: list[DocumentStatus] = Query(None, description="only these statuses (repeat for several)"),
    limit: int = Query(50, ge=1, le=200, description="page size"),
    offset: int = Query(0, ge=0, le=MAX_OFFSET, description="documents to skip"),
):
    permission_require(request.auth.user, "knowledge.view_document")
    documents = list(selectors.document_list())
    if status:
        wanted = {s.value for s in status}
        documents = [d for d in documents if d.status in wanted]
    return {"total": len(documents), "limit": limit, "offset": offset, "items": documents[offset : offset + limit]}


@router.get(
    "/documents/{document_id}",
    response={200: DocumentOut, 404: Error, **_READ_ERRORS},
    summary="Get one document",
    operation_id="getDocument",
    description="Poll it after an upload to see the document indexed (status indexed) or why it failed (error).",
)
def document_detail(request, document_id: int = Path(..., ge=1, le=2**63 - 1, description="the document's id")):
    permission_require(request.auth.user, "knowledge.view_document")
    try:
        return selectors.document_with_versions(document_id)
    except Document.DoesNotExist:
        raise HttpError(404, f"No document #{document_id}.") from None


@router.post(
    "/documents",
    response={200: UploadResults, **_WRITE_ERRORS},
    summary="Upload manuals or logs",
    operation_id="uploadDocuments",
    description="multipart/form-data with one or more files in the field `files` (PDF, TXT, MD, LOG, CSV). "
    "Each file is judged on its own: 200 always lists every file, in order, with its outcome (`queued`, "
    "`duplicate` or `rejected`) and a reason; the good files are stored and queued even when others are "
    "rejected. Needs the admin role.",
)
def document_upload(
    request,
    files: list[UploadedFile] = File(..., description="the files (repeat the field)"),
    new_version: Literal["ask", "replace", "keep"] = Form(
        "ask", description="a file that looks like a new version of a current manual (same name without its "
        "revision, or same PDF title): ask = store it awaiting a choice (outcome awaiting); replace = index it, "
        "then retire the old one; keep = index it as a manual of its own"
    ),
    privacy: Literal["public", "internal", "restricted"] | None = Form(
        None, description="the documents' privacy level (default NANOSENTRI_DEFAULT_PRIVACY): restricted ones are "
        "never sent to the site model server; a duplicate's level is raised, never lowered"
    ),
):
    _may_change(request, "knowledge.add_document", "Uploading documents")
    return {"results": uploads.upload_files(files=files, user=request.auth.user, new_version=new_version,
                                            privacy=privacy)}


def _may_change(request, permission: str, what: str) -> None:
    if not request.auth.user.has_perm(permission):
        raise AuthorizationError(message=f"{what} needs the admin role (permission {permission}).")


def _awaiting(document_id: int) -> Document:
    document = Document.objects.filter(pk=document_id).first()
    if document is None:
        raise HttpError(404, f"No document #{document_id}.")
    if document.status != Document.Status.AWAITING:
        raise HttpError(409, f"Document #{document_id} is {document.status}, not awaiting a choice.")
    return document


@router.post(
    "/documents/{document_id}/replace",
    response={200: DocumentOut, 404: Error, 409: Error, **_READ_ERRORS},
    summary="Replace the current version with this upload",
    operation_id="replaceDocumentVersion",
    description="For an upload awaiting a choice: index it, then take the version it matched out of the index.",
)
def document_replace(request, document_id: int = Path(..., ge=1, le=2**63 - 1)):
    _may_change(request, "knowledge.change_document", "Choosing a version")
    document = _awaiting(document_id)
    versions.version_choose(document=document, replace=True)
    return selectors.document_with_versions(document.pk)


@router.post(
    "/documents/{document_id}/keep",
    response={200: DocumentOut, 404: Error, 409: Error, **_READ_ERRORS},
    summary="Keep this upload as a manual of its own",
    operation_id="keepDocumentVersion",
    description="For an upload awaiting a choice: index it beside the manual it matched.",
)
def document_keep(request, document_id: int = Path(..., ge=1, le=2**63 - 1)):
    _may_change(request, "knowledge.change_document", "Choosing a version")
    document = _awaiting(document_id)
    versions.version_choose(document=document, replace=False)
    return selectors.document_with_versions(document.pk)
