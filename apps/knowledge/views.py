from django.conf import settings
from django.contrib import messages
from django.http import FileResponse, Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from apps.accounts.decorators import perm_required
from apps.knowledge import selectors, services
from apps.knowledge.forms import UploadForm
from apps.knowledge.models import Document


@perm_required("knowledge.add_document")
def documents(request):
    if request.method == "POST":
        form = UploadForm(request.POST, request.FILES)
        if form.is_valid():
            for uploaded in form.cleaned_data["files"]:
                try:
                    document, created = services.document_upload(uploaded_file=uploaded, user=request.user)
                except services.UploadRejected as exc:
                    messages.error(request, str(exc))
                    continue
                if created:
                    messages.success(request, f"{document.original_name}: queued for indexing")
                elif document.status == document.Status.QUEUED:
                    messages.info(request, f"{uploaded.name}: identical to “{document.original_name}”; queued again")
                else:
                    messages.info(
                        request,
                        f"{uploaded.name}: identical to “{document.original_name}” already uploaded "
                        f"({document.get_status_display().lower()}); nothing new to embed",
                    )
            return redirect("knowledge:documents")
    else:
        form = UploadForm()
    context = {"form": form, "documents": selectors.document_list(), "max_upload_mb": settings.NANOSENTRI_MAX_UPLOAD_MB}
    return render(request, "knowledge/documents.html", context)


@perm_required("knowledge.add_document")
def document_row(request, pk):
    document = get_object_or_404(Document, pk=pk)
    return render(request, "knowledge/_document_row.html", {"d": document})


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
