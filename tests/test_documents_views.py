"""The documents page: admins upload, re-index and delete; everyone logged in may open a file."""
import hashlib
from pathlib import Path
from unittest import mock

import pytest
from django.contrib.messages import get_messages
from django.urls import reverse

from apps.knowledge import services
from apps.knowledge.models import Document
from tests.factories import make_pdf, pdf_upload, upload

URL = "/documents/"


@pytest.fixture
def ingest_delay():
    with mock.patch("apps.knowledge.tasks.ingest_document_task.delay") as delay:
        yield delay


@pytest.fixture
def delete_delay():
    with mock.patch("apps.knowledge.tasks.delete_vectors_task.delay") as delay:
        yield delay


@pytest.fixture
def on_commit(django_capture_on_commit_callbacks):
    return django_capture_on_commit_callbacks


@pytest.fixture
def admin_client(client, admin_user):
    client.force_login(admin_user)
    return client


@pytest.fixture
def document(smartevse, admin_user, ingest_delay, on_commit):
    with on_commit(execute=True):
        doc, created = services.document_add_path(path=smartevse, user=admin_user)
    assert created
    ingest_delay.reset_mock()
    return doc


def stored_files() -> list[Path]:
    from django.conf import settings

    root = Path(settings.UPLOAD_DIR)
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


def messages_of(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


# --- access -----------------------------------------------------------------------------------


def test_admin_sees_the_documents_page(admin_client):
    response = admin_client.get(URL)

    assert response.status_code == 200
    assert b"Upload" in response.content
    assert b'id="documents-table"' in response.content


def test_documents_page_lists_uploaded_documents(admin_client, document):
    response = admin_client.get(URL)

    assert response.status_code == 200
    assert f'id="doc-{document.pk}"'.encode() in response.content
    assert document.original_name.encode() in response.content


@pytest.mark.parametrize("user_fixture", ["technician", "supervisor", "outsider"])
def test_non_admins_are_forbidden(client, request, user_fixture):
    client.force_login(request.getfixturevalue(user_fixture))

    response = client.get(URL)

    assert response.status_code == 403


def test_non_admins_cannot_upload(client, technician, ingest_delay, smartevse, on_commit):
    client.force_login(technician)

    with on_commit(execute=True):
        response = client.post(URL, {"files": [pdf_upload(smartevse)]})

    assert response.status_code == 403
    assert Document.objects.count() == 0
    assert stored_files() == []
    ingest_delay.assert_not_called()


def test_anonymous_is_sent_to_login(client, db):
    response = client.get(URL)

    assert response.status_code == 302
    assert response["Location"] == f"{reverse('login')}?next={URL}"


# --- upload -----------------------------------------------------------------------------------


def test_admin_uploads_a_manual_and_it_is_queued(
    admin_client, admin_user, smartevse, ingest_delay, on_commit, settings
):
    data = smartevse.read_bytes()

    with on_commit(execute=True) as callbacks:
        response = admin_client.post(URL, {"files": [pdf_upload(smartevse)]})

    assert response.status_code == 302
    assert response["Location"] == URL
    document = Document.objects.get()
    document.refresh_from_db()
    assert document.status == Document.Status.QUEUED
    assert document.original_name == smartevse.name
    assert document.extension == ".pdf"
    assert document.size_bytes == len(data)
    assert document.content_hash == hashlib.sha256(data).hexdigest()
    assert document.uploaded_by == admin_user
    stored = Path(settings.UPLOAD_DIR) / document.stored_path
    assert stored.is_file()
    assert stored.read_bytes() == data
    assert stored_files() == [stored]  # no temporary file left behind
    assert len(callbacks) == 1
    ingest_delay.assert_called_once_with(document.pk)
    assert messages_of(response) == [f"{smartevse.name}: queued for indexing"]


def test_the_task_is_queued_only_when_the_transaction_commits(
    admin_client, smartevse, ingest_delay, on_commit
):
    with on_commit(execute=False) as callbacks:
        admin_client.post(URL, {"files": [pdf_upload(smartevse)]})

    ingest_delay.assert_not_called()  # not before the commit
    assert len(callbacks) == 1
    callbacks[0]()
    ingest_delay.assert_called_once_with(Document.objects.get().pk)


def test_uploading_identical_content_again_creates_nothing_new(
    admin_client, smartevse, ingest_delay, on_commit
):
    with on_commit(execute=True):
        admin_client.post(URL, {"files": [pdf_upload(smartevse)]}, follow=True)  # follow: shows its message
    first = Document.objects.get()
    ingest_delay.reset_mock()

    with on_commit(execute=True) as callbacks:
        response = admin_client.post(URL, {"files": [pdf_upload(smartevse, name="copy-of-manual.pdf")]})

    assert response.status_code == 302
    assert Document.objects.count() == 1
    first.refresh_from_db()
    assert first.original_name == smartevse.name
    assert callbacks == []
    ingest_delay.assert_not_called()
    assert len(stored_files()) == 1
    [message] = messages_of(response)
    assert "copy-of-manual.pdf" in message and "identical" in message


def test_several_files_in_one_post(
    admin_client, smartevse, troubleshooting, ingest_delay, on_commit
):
    with on_commit(execute=True):
        response = admin_client.post(
            URL,
            {"files": [pdf_upload(smartevse), pdf_upload(troubleshooting), upload("codes.csv", "E01,relay")]},
        )

    assert response.status_code == 302
    names = set(Document.objects.values_list("original_name", flat=True))
    assert names == {smartevse.name, troubleshooting.name, "codes.csv"}
    assert Document.objects.filter(status=Document.Status.QUEUED).count() == 3
    queued = sorted(c.args[0] for c in ingest_delay.call_args_list)
    assert queued == sorted(Document.objects.values_list("pk", flat=True))
    assert len(stored_files()) == 3
    assert len(messages_of(response)) == 3


@pytest.mark.parametrize("name", ["setup.exe", "manual.docx", "noextension"])
def test_a_wrong_file_type_is_rejected_and_nothing_stored(
    admin_client, ingest_delay, on_commit, name
):
    with on_commit(execute=True):
        response = admin_client.post(URL, {"files": [upload(name, b"MZ\x90\x00 not a manual")]})

    assert response.status_code == 302
    assert Document.objects.count() == 0
    assert stored_files() == []
    ingest_delay.assert_not_called()
    [message] = messages_of(response)
    assert name in message and "unsupported file type" in message


def test_a_rejected_file_does_not_stop_the_others(
    admin_client, smartevse, ingest_delay, on_commit
):
    with on_commit(execute=True):
        response = admin_client.post(URL, {"files": [upload("virus.exe", b"MZ..."), pdf_upload(smartevse)]})

    assert response.status_code == 302
    assert list(Document.objects.values_list("original_name", flat=True)) == [smartevse.name]
    ingest_delay.assert_called_once()
    assert len(messages_of(response)) == 2


def test_a_file_over_the_size_limit_is_rejected(
    admin_client, settings, ingest_delay, on_commit
):
    settings.NANOSENTRI_MAX_UPLOAD_MB = 1
    big = upload("huge.log", b"x" * (1024 * 1024 + 1))

    with on_commit(execute=True):
        response = admin_client.post(URL, {"files": [big]})

    assert response.status_code == 302
    assert Document.objects.count() == 0
    assert stored_files() == []
    ingest_delay.assert_not_called()
    [message] = messages_of(response)
    assert "huge.log" in message and "1 MB limit" in message


def test_a_file_at_the_size_limit_is_accepted(admin_client, settings, ingest_delay, on_commit):
    settings.NANOSENTRI_MAX_UPLOAD_MB = 1

    with on_commit(execute=True):
        admin_client.post(URL, {"files": [upload("big.log", b"x" * (1024 * 1024))]})

    assert Document.objects.get().size_bytes == 1024 * 1024


def test_an_empty_file_is_rejected(admin_client, ingest_delay, on_commit):
    with on_commit(execute=True):
        response = admin_client.post(URL, {"files": [upload("empty.txt", b"")]})

    assert response.status_code in (200, 302)
    assert Document.objects.count() == 0
    assert stored_files() == []
    ingest_delay.assert_not_called()
    shown = response.content.decode() + " ".join(messages_of(response))
    assert "empty" in shown


def test_a_post_without_files_tells_the_admin(admin_client, ingest_delay):
    response = admin_client.post(URL, {})

    assert Document.objects.count() == 0
    ingest_delay.assert_not_called()
    # Either the form comes back with "This field is required." or a message says so;
    # a silent redirect leaves the admin wondering whether anything was uploaded.
    form_errors = response.context["form"].errors.get("files") if response.status_code == 200 else None
    assert form_errors or messages_of(response), f"silent {response.status_code} with no feedback"


# --- re-index and delete ----------------------------------------------------------------------


def test_reindex_requeues_the_document(admin_client, document, ingest_delay, on_commit):
    Document.objects.filter(pk=document.pk).update(
        status=Document.Status.FAILED, error="corrupt", chunks_done=7, chunks_total=9, pages_done=2
    )

    with on_commit(execute=True):
        response = admin_client.post(f"{URL}{document.pk}/reindex/")

    assert response.status_code == 302
    assert response["Location"] == URL
    document.refresh_from_db()
    assert document.status == Document.Status.QUEUED
    assert (document.error, document.chunks_done, document.chunks_total, document.pages_done) == ("", 0, 0, 0)
    ingest_delay.assert_called_once_with(document.pk)


def test_delete_removes_the_row_the_file_and_queues_vector_removal(
    admin_client, document, delete_delay, on_commit
):
    path = services.document_path(document)
    assert path.is_file()

    with on_commit(execute=True):
        response = admin_client.post(f"{URL}{document.pk}/delete/")

    assert response.status_code == 302
    assert not Document.objects.filter(pk=document.pk).exists()
    assert not path.exists()
    delete_delay.assert_called_once_with(document.pk)
    assert messages_of(response) == [f"{document.original_name}: deleted, with its vectors"]


@pytest.mark.parametrize("action", ["reindex", "delete"])
def test_get_on_actions_is_not_allowed(admin_client, document, action, ingest_delay, delete_delay):
    response = admin_client.get(f"{URL}{document.pk}/{action}/")

    assert response.status_code == 405
    document.refresh_from_db()
    assert document.status == Document.Status.QUEUED
    ingest_delay.assert_not_called()
    delete_delay.assert_not_called()


@pytest.mark.parametrize("action", ["reindex", "delete"])
def test_technicians_cannot_reindex_or_delete(
    client, technician, document, action, ingest_delay, delete_delay
):
    client.force_login(technician)

    response = client.post(f"{URL}{document.pk}/{action}/")

    assert response.status_code == 403
    assert Document.objects.filter(pk=document.pk).exists()
    assert services.document_path(document).is_file()
    ingest_delay.assert_not_called()
    delete_delay.assert_not_called()


@pytest.mark.parametrize("action", ["reindex", "delete"])
def test_actions_on_unknown_documents_are_404(admin_client, db, action):
    assert admin_client.post(f"{URL}9999/{action}/").status_code == 404


# --- the file and the row ---------------------------------------------------------------------


@pytest.mark.parametrize("user_fixture", ["technician", "supervisor", "admin_user"])
def test_every_role_can_open_the_pdf_inline(client, request, document, smartevse, user_fixture):
    client.force_login(request.getfixturevalue(user_fixture))

    response = client.get(f"{URL}{document.pk}/file/")

    assert response.status_code == 200
    assert response["Content-Type"] == "application/pdf"
    assert response["Content-Disposition"] == f'inline; filename="{smartevse.name}"'
    assert response["X-Content-Type-Options"] == "nosniff"
    assert b"".join(response.streaming_content) == smartevse.read_bytes()
    response.close()


def test_a_user_without_a_role_cannot_open_a_manual(client, document, outsider):
    client.force_login(outsider)

    assert client.get(f"{URL}{document.pk}/file/").status_code == 403


def test_a_text_file_is_served_as_sandboxed_plain_text(
    client, technician, admin_user, ingest_delay, on_commit
):
    with on_commit(execute=True):
        doc, _ = services.document_store(
            name="service.log", chunks=[b"<script>alert(1)</script>"], size=25, user=admin_user
        )
    client.force_login(technician)

    response = client.get(f"{URL}{doc.pk}/file/")

    assert response.status_code == 200
    assert response["Content-Type"] == "text/plain; charset=utf-8"
    assert response["Content-Security-Policy"] == "sandbox"
    response.close()


def test_anonymous_cannot_open_a_file(client, document):
    response = client.get(f"{URL}{document.pk}/file/")

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


def test_an_unknown_file_is_404(client, technician):
    client.force_login(technician)

    assert client.get(f"{URL}9999/file/").status_code == 404


def test_a_file_missing_from_storage_is_404(client, technician, document):
    services.document_path(document).unlink()
    client.force_login(technician)

    assert client.get(f"{URL}{document.pk}/file/").status_code == 404


def test_the_row_partial_is_rendered_for_admins(admin_client, document):
    Document.objects.filter(pk=document.pk).update(status="indexed", page_count=2, chunk_count=13)

    response = admin_client.get(f"{URL}{document.pk}/row/")

    assert response.status_code == 200
    html = response.content.decode()
    assert html.lstrip().startswith(f'<tr id="doc-{document.pk}"')
    assert 'data-status="indexed"' in html
    assert document.original_name in html
    assert "<html" not in html  # a partial, not the whole page


def test_the_row_partial_is_admin_only(client, technician, document):
    client.force_login(technician)

    assert client.get(f"{URL}{document.pk}/row/").status_code == 403


def test_the_row_of_an_unknown_document_is_404(admin_client):
    assert admin_client.get(f"{URL}9999/row/").status_code == 404


def test_an_encrypted_pdf_upload_is_rejected_at_once(admin_client, ingest_delay, on_commit):
    # The admin learns it at upload time, not from a failed row later (tests/test_uploads.py).
    data = make_pdf(["secret"], user_password="secret")

    with on_commit(execute=True):
        response = admin_client.post(URL, {"files": [upload("locked.pdf", data, "application/pdf")]})

    assert Document.objects.count() == 0
    assert stored_files() == []
    ingest_delay.assert_not_called()
    assert messages_of(response) == ["locked.pdf: encrypted PDF: remove the password and upload it again"]


def test_uploading_a_failed_file_again_tries_again(client, admin_user, tmp_path, django_capture_on_commit_callbacks):
    from django.core.files.uploadedfile import SimpleUploadedFile

    from apps.knowledge.models import Document
    from tests.factories import make_pdf

    client.force_login(admin_user)
    data = make_pdf(["Pump manual page one with enough words to index properly."])
    upload = SimpleUploadedFile("pump.pdf", data, content_type="application/pdf")
    with mock.patch("apps.knowledge.tasks.ingest_document_task.delay"):
        with django_capture_on_commit_callbacks(execute=True):
            client.post("/documents/", {"files": upload})
    document = Document.objects.get()
    Document.objects.filter(pk=document.pk).update(status="failed", error="worker crashed")
    with mock.patch("apps.knowledge.tasks.ingest_document_task.delay") as delay:
        with django_capture_on_commit_callbacks(execute=True):
            response = client.post("/documents/", {"files": SimpleUploadedFile("pump-again.pdf", data)}, follow=True)
    document.refresh_from_db()
    assert document.status == "queued" and document.error == ""
    delay.assert_called_once_with(document.pk)
    assert Document.objects.count() == 1
    assert "queued again" in response.content.decode()
