from collections import Counter

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent
from django.http import FileResponse, Http404
from django.http.multipartparser import MultiPartParserError
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from django.views.decorators.http import require_POST

from apps.accounts.decorators import perm_required
from apps.knowledge import selectors, services, uploads, versions
from apps.knowledge.forms import UploadForm
from apps.knowledge.models import Document


# Each file's outcome is one Django message tagged "upload"; the documents page lists them in its
# upload card, one line per file, and leaves the other messages to the usual flashes.
_UPLOAD_TAG = "upload"
_LEVELS = {
    uploads.Outcome.QUEUED: messages.SUCCESS,
    uploads.Outcome.DUPLICATE: messages.INFO,
    uploads.Outcome.REJECTED: messages.ERROR,
    uploads.Outcome.AWAITING: messages.WARNING,
}
_BADGES = {"success": "badge-ok", "info": "badge-info", "warning": "badge-warn", "error": "badge-bad"}


@csrf_exempt  # checked in _upload, once the body is known to be readable (see _unreadable_upload)
@perm_required("knowledge.add_document")
def documents(request):
    if request.method == "POST":
        problem, status = _unreadable_upload(request)
        if problem is None:
            return _upload(request)
        return _documents_page(request, UploadForm(), upload_error=problem, status=status)
    return _documents_page(request, UploadForm())


@csrf_protect
def _upload(request):
    form = UploadForm(request.POST, request.FILES)
    if not form.is_valid():
        return _documents_page(request, form)
    outcomes = uploads.upload_files(
        files=form.cleaned_data["files"], user=request.user, privacy=form.cleaned_data["privacy"]
    )
    for outcome in outcomes:
        messages.add_message(
            request,
            _LEVELS.get(outcome.outcome, messages.WARNING),
            f"{outcome.name}: {outcome.reason}",
            extra_tags=f"{_UPLOAD_TAG} outcome-{outcome.outcome}",
        )
    return redirect("knowledge:documents")


def _unreadable_upload(request) -> tuple[str | None, int]:
    """Why the upload cannot be read at all, or None. Django refuses a body with more than
    DATA_UPLOAD_MAX_NUMBER_FILES files (or form fields over DATA_UPLOAD_MAX_MEMORY_SIZE) before any
    file can be judged; the CSRF check would have read it first and answered a bare "Bad Request"."""
    try:
        request.POST, request.FILES  # noqa: B018 - parse the body here, where its errors are caught
    except TooManyFilesSent:
        limit = settings.DATA_UPLOAD_MAX_NUMBER_FILES
        return (f"Too many files in one upload: at most {limit} at a time. Nothing was stored; "
                "upload them in smaller batches."), 413
    except (RequestDataTooBig, TooManyFieldsSent):
        return "The upload's form data is too large. Nothing was stored; upload the files in smaller batches.", 413
    except MultiPartParserError:
        return "The upload could not be read (cut off or malformed). Nothing was stored; try again.", 400
    return None, 200


def _documents_page(request, form, *, upload_error="", status=200):
    results, others = _upload_results(request)
    context = {
        "form": form,
        "upload_error": upload_error,
        "documents": selectors.document_list(),
        "max_upload_mb": settings.NANOSENTRI_MAX_UPLOAD_MB,
        "max_files": settings.DATA_UPLOAD_MAX_NUMBER_FILES,
        "upload_results": results,
        "upload_summary": ", ".join(f"{n} {outcome}" for outcome, n in Counter(r["outcome"] for r in results).items()),
        "messages": others,  # shown as flashes by base.html; the upload results are listed in the page
    }
    return render(request, "knowledge/documents.html", context, status=status)


def _upload_results(request) -> tuple[list[dict], list]:
    results, others = [], []
    for message in messages.get_messages(request):
        tags = (message.extra_tags or "").split()
        if _UPLOAD_TAG not in tags:
            others.append(message)
            continue
        outcome = next((t.removeprefix("outcome-") for t in tags if t.startswith("outcome-")), "")
        results.append({
            "outcome": outcome,
            "label": outcome.capitalize(),
            "badge": _BADGES.get(message.level_tag, "badge-info"),
            "text": message.message,
        })
    return results, others


@perm_required("knowledge.add_document")
def document_row(request, pk):
    try:
        document = selectors.document_with_versions(pk)
    except Document.DoesNotExist:
        raise Http404("no such document") from None
    return render(request, "knowledge/_document_row.html", {"d": document})


@require_POST
@perm_required("knowledge.change_document")
def cancel(request, pk):
    document = get_object_or_404(Document, pk=pk)
    if not document.in_progress:
        messages.info(request, f"{document.original_name}: not being indexed; nothing to cancel")
    else:
        services.document_cancel(document=document)
        messages.success(request, f"{document.original_name}: cancelling; its passages are removed")
    return redirect("knowledge:documents")


@require_POST
@perm_required("knowledge.change_document")
def replace(request, pk):
    return _version_choice(request, pk, replace=True)


@require_POST
@perm_required("knowledge.change_document")
def keep(request, pk):
    return _version_choice(request, pk, replace=False)


def _version_choice(request, pk: int, *, replace: bool):
    document = get_object_or_404(Document, pk=pk)
    if document.status != Document.Status.AWAITING:
        messages.info(request, f"{document.original_name}: not awaiting a choice")
    else:
        messages.success(request, f"{document.original_name}: {versions.version_choose(document=document, replace=replace)}")
    return redirect("knowledge:documents")


@require_POST
@perm_required("knowledge.change_document")
def reindex(request, pk):
    document = get_object_or_404(Document, pk=pk)
    services.document_reindex(document=document)
    messages.success(request, f"{document.original_name}: queued for re-indexing")
    return redirect("knowledge:documents")


@require_POST
@perm_required("knowledge.delete_document")
def delete(request, pk):
    document = get_object_or_404(Document, pk=pk)
    name = document.original_name
    services.document_delete(document=document)
    messages.success(request, f"{name}: deleted, with its vectors")
    return redirect("knowledge:documents")


@perm_required("knowledge.view_document")
def document_file(request, pk):
    """The original file, inline, so a citation link can open a PDF at #page=N."""
    document = get_object_or_404(Document, pk=pk)
    path = services.document_path(document)
    if not path.is_file():
        raise Http404("file missing from storage")
    content_type = "application/pdf" if document.is_pdf else "text/plain; charset=utf-8"
    response = FileResponse(open(path, "rb"), content_type=content_type)
    response["Content-Disposition"] = f'inline; filename="{document.original_name.replace(chr(34), "")}"'
    response["X-Content-Type-Options"] = "nosniff"
    if not document.is_pdf:
        # Text is shown as text; nothing in an uploaded log may run in our origin.
        response["Content-Security-Policy"] = "sandbox"
    return response
