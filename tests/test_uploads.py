"""Uploads judged file by file (apps/knowledge/uploads.py): the service, the web form and the API.

The issue: 12 files in one go, one of them an empty PDF, and the whole batch was refused with
"The submitted file is empty."; none of the 11 good files was stored. Now every good file is
stored and queued and every bad one is named with its own reason, wherever it is uploaded from.
"""
import random
from pathlib import Path
from unittest import mock

import pytest
from django.conf import settings as django_settings
from django.contrib.messages import get_messages
from django.test import Client

from apps.api.services import api_token_create
from apps.knowledge import uploads
from apps.knowledge.models import Document
from apps.knowledge.uploads import Outcome
from tests.factories import corrupt_pdf, make_pdf, upload

URL = "/documents/"
GOOD_PDF = make_pdf(["Pump P-101 manual. Error E01 means the relay is stuck; replace relay K1 and restart."])
UNLOCKED_PDF = make_pdf(["Charger manual, print restricted. Error E05: ground fault."], user_password="")
LOCKED_PDF = make_pdf(["Secret service manual with enough words on the page."], user_password="secret")
GOOD_TEXT = b"2026-01-10 08:00 E01 relay stuck\n2026-01-10 08:05 reset, OK\n"
NOT_A_PDF = random.Random(7).randbytes(3000).replace(b"%PDF-", b"xxxxx")

# (file name, content, outcome, what the reason says)
MIXED_BATCH = [
    ("pump-manual.pdf", GOOD_PDF, "queued", "queued for indexing"),
    ("service-notes.txt", GOOD_TEXT, "queued", "queued for indexing"),
    ("empty.pdf", b"", "rejected", "empty file"),
    ("setup.exe", b"MZ\x90\x00\x03 a program", "rejected", "unsupported file type .exe (allowed: CSV, LOG, MD, PDF, TXT)"),
    ("random.pdf", NOT_A_PDF, "rejected", "corrupt PDF: the content is not a PDF"),
    ("broken.pdf", corrupt_pdf(), "rejected", "corrupt PDF: "),
    ("locked.pdf", LOCKED_PDF, "rejected", "encrypted PDF: remove the password and upload it again"),
    ("firmware.txt", b"\x7fELF\x02\x01\x01\x00\x00\x00" + bytes(range(256)), "rejected", "binary content: not a text file"),
    ("blank.md", b"\xef\xbb\xbf \n\t\n   \n", "rejected", "empty file: only blank space"),
    ("pump-manual-copy.pdf", GOOD_PDF, "duplicate", "identical to “pump-manual.pdf” already uploaded (queued)"),
    ("huge.log", b"x" * (1024 * 1024 + 1), "rejected", "1,048,577 bytes is over the 1 MB limit"),
    ("print-restricted.pdf", UNLOCKED_PDF, "queued", "queued for indexing"),
]
GOOD_NAMES = {"pump-manual.pdf", "service-notes.txt", "print-restricted.pdf"}


@pytest.fixture(autouse=True)
def _one_megabyte_limit(settings):
    settings.NANOSENTRI_MAX_UPLOAD_MB = 1


@pytest.fixture
def ingest_delay():
    with mock.patch("apps.knowledge.tasks.ingest_document_task.delay") as delay:
        yield delay


@pytest.fixture
def admin_client(client, admin_user):
    client.force_login(admin_user)
    return client


def batch():
    return [upload(name, content) for name, content, _, _ in MIXED_BATCH]


def stored_files() -> list[Path]:
    root = Path(django_settings.UPLOAD_DIR)
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def assert_only_the_good_files_are_stored(ingest_delay):
    documents = Document.objects.all()
    assert {d.original_name for d in documents} == GOOD_NAMES
    assert all(d.status == Document.Status.QUEUED for d in documents)
    # exactly their files: nothing of a rejected file, no temporary file left behind
    assert stored_files() == sorted(Path(django_settings.UPLOAD_DIR) / d.stored_path for d in documents)
    assert sorted(c.args[0] for c in ingest_delay.call_args_list) == sorted(d.pk for d in documents)


def assert_outcomes(results):
    """``results``: (name, outcome, reason) per file, in the order sent."""
    assert [r[0] for r in results] == [name for name, *_ in MIXED_BATCH]
    for (name, outcome, reason), (_, _, expected_outcome, expected_reason) in zip(results, MIXED_BATCH):
        assert outcome == expected_outcome, (name, reason)
        assert expected_reason in reason, (name, reason)


# --- the service --------------------------------------------------------------------------------


def test_it_judges_each_file_of_a_mixed_batch_alone(admin_user, ingest_delay, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        outcomes = uploads.upload_files(files=batch(), user=admin_user)

    assert_outcomes([(o.name, o.outcome, o.reason) for o in outcomes])
    assert_only_the_good_files_are_stored(ingest_delay)
    by_name = {o.name: o for o in outcomes}
    assert by_name["pump-manual-copy.pdf"].document == by_name["pump-manual.pdf"].document
    assert all(o.document is None for o in outcomes if o.outcome == Outcome.REJECTED)
    assert by_name["pump-manual.pdf"].document.uploaded_by == admin_user


def test_the_outcome_is_one_of_the_known_set(admin_user, ingest_delay):
    outcome = uploads.upload_file(name="notes.md", chunks=[b"# Notes\nfine"], size=12, user=admin_user)

    assert outcome == uploads.UploadOutcome("notes.md", Outcome.QUEUED, "queued for indexing", outcome.document)
    assert outcome.outcome == "queued"  # a str: JSON, sessions and templates take it as is


def test_a_file_uploaded_again_after_it_failed_is_queued_again(admin_user, ingest_delay):
    first = uploads.upload_file(name="pump.pdf", chunks=[GOOD_PDF], size=len(GOOD_PDF), user=admin_user)
    Document.objects.filter(pk=first.document.pk).update(status="failed", error="worker crashed")

    again = uploads.upload_file(name="pump-again.pdf", chunks=[GOOD_PDF], size=len(GOOD_PDF), user=admin_user)

    assert again.outcome == Outcome.QUEUED
    assert again.reason == "identical to “pump.pdf”, which had failed; queued again"
    assert again.document.pk == first.document.pk and again.document.status == "queued"
    assert Document.objects.count() == 1


def test_the_same_file_uploaded_twice_at_the_same_moment_is_stored_once(admin_user, ingest_delay):
    from apps.knowledge import services

    first = uploads.upload_file(name="a.txt", chunks=[b"same bytes"], size=10, user=admin_user)
    real_filter = Document.objects.filter
    looks = []

    def racing_filter(*args, **kwargs):
        looks.append(kwargs)
        if len(looks) == 1:  # the other request had not committed when this one looked
            return Document.objects.none()
        return real_filter(*args, **kwargs)

    with mock.patch.object(Document.objects, "filter", side_effect=racing_filter):
        second = uploads.upload_file(name="b.txt", chunks=[b"same bytes"], size=10, user=admin_user)

    assert second.outcome == Outcome.DUPLICATE and second.document.pk == first.document.pk
    assert Document.objects.count() == 1
    assert services.document_path(first.document).read_bytes() == b"same bytes"  # its file stays
    assert stored_files() == [services.document_path(first.document)]


def test_a_stream_longer_than_announced_is_stopped_at_the_limit(admin_user, ingest_delay):
    piece = b"y" * (512 * 1024)

    outcome = uploads.upload_file(name="endless.log", chunks=iter([piece, piece, b"y"]), size=None, user=admin_user)

    assert (outcome.outcome, outcome.reason) == (Outcome.REJECTED, "over the 1 MB limit")
    assert stored_files() == [] and Document.objects.count() == 0


def test_an_unexpected_error_rejects_that_file_only(admin_user, ingest_delay):
    real = uploads.upload_file

    def flaky(**kwargs):
        if kwargs["name"] == "b.txt":
            raise OSError(28, "No space left on device")
        return real(**kwargs)

    with mock.patch.object(uploads, "upload_file", side_effect=flaky):
        outcomes = uploads.upload_files(files=[upload("a.txt", "one"), upload("b.txt", "two"), upload("c.txt", "three")])

    assert [o.outcome for o in outcomes] == ["queued", "rejected", "queued"]
    assert "No space left on device" in outcomes[1].reason


@pytest.mark.parametrize(
    "name, content, problem",
    [
        ("a.pdf", make_pdf(["fine text on a page"]), None),
        ("scan.pdf", make_pdf([None, None]), None),  # no text layer: the worker's to judge (OCR)
        ("a.pdf", b"%PDF-1.7\n%%EOF\n", "corrupt PDF: "),
        ("a.pdf", b"\n\n  junk before %PDF- is tolerated by readers" + GOOD_PDF, None),
        ("a.log", "Température 21 °C\n".encode("latin-1"), None),  # not UTF-8 is still text
        ("a.csv", b"\xef\xbb\xbfts,value\n1,2\n", None),
        ("a.txt", b" " * 9000 + b"x", None),  # text after the first 8 KB of blank space
        ("a.txt", b"text\n" * 2000 + b"\x00", None),  # only the first 8 KB are sniffed, as the worker does
        ("a.txt", b"\x0c\n\r\n", uploads.BLANK),
    ],
)
def test_content_checks(tmp_path, name, content, problem):
    path = tmp_path / name
    path.write_bytes(content)

    found = uploads.content_problem(path, path.suffix)

    if problem is None:
        assert found is None
    else:
        assert found and found.startswith(problem), found


# --- the web form -------------------------------------------------------------------------------


def test_the_form_stores_every_good_file_and_lists_every_file_with_its_outcome(
    admin_client, ingest_delay, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(URL, {"files": batch()})

    assert response.status_code == 302 and response["Location"] == URL
    assert_only_the_good_files_are_stored(ingest_delay)

    page = admin_client.get(URL)
    results = page.context["upload_results"]
    assert [r["outcome"] for r in results] == [outcome for _, _, outcome, _ in MIXED_BATCH]
    assert_outcomes([(r["text"].split(": ", 1)[0], r["outcome"], r["text"].split(": ", 1)[1]) for r in results])
    html = page.content.decode()
    listing = html[html.index('id="upload-results"'):html.index("</ul>", html.index('id="upload-results"'))]
    assert 'role="status"' in html[html.index('id="upload-results"') - 80:html.index('id="upload-results"') + 200]
    assert "Last upload: 12 files — 3 queued, 8 rejected, 1 duplicate" in listing
    assert listing.count('class="status-item upload-result"') == 12
    for name, _, outcome, reason in MIXED_BATCH:
        assert f'data-outcome="{outcome}"' in listing
        assert name in listing
    assert "encrypted PDF: remove the password and upload it again" in listing
    # the results are the list, not flashes as well
    assert "flash-text" not in html
    # the good files are in the library table
    for document in Document.objects.all():
        assert f'id="doc-{document.pk}"' in html
    # shown once: a reload does not list them again
    assert "upload-results" not in admin_client.get(URL).content.decode()


def test_the_old_failure_an_empty_file_among_good_ones_loses_nothing(
    admin_client, ingest_delay, django_capture_on_commit_callbacks
):
    files = [upload(f"manual-{i}.txt", f"Manual {i}: error E0{i} means check fuse F{i}.") for i in range(11)]
    files.insert(5, upload("empty.pdf", b"", "application/pdf"))

    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(URL, {"files": files}, follow=True)

    assert Document.objects.count() == 11
    assert ingest_delay.call_count == 11
    texts = [r["text"] for r in response.context["upload_results"]]
    assert len(texts) == 12 and texts[5] == "empty.pdf: empty file (0 bytes)"
    assert "The submitted file is empty" not in response.content.decode()


def test_other_messages_stay_flashes(admin_client, ingest_delay, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        admin_client.post(URL, {"files": [upload("a.txt", "text")]})
    document = Document.objects.get()
    admin_client.post(f"{URL}{document.pk}/reindex/")  # adds an ordinary message

    response = admin_client.get(URL)

    assert [r["text"] for r in response.context["upload_results"]] == ["a.txt: queued for indexing"]
    assert [str(m) for m in response.context["messages"]] == ["a.txt: queued for re-indexing"]
    assert response.content.decode().count("a.txt: queued for re-indexing") == 1


def test_a_submission_without_files_asks_for_one(admin_client, ingest_delay):
    response = admin_client.post(URL, {})

    assert response.status_code == 200
    assert response.context["form"].errors["files"] == ["Choose at least one file."]
    assert Document.objects.count() == 0


def test_too_many_files_in_one_request_get_a_clear_error_not_a_bare_400(admin_client, settings, ingest_delay):
    settings.DATA_UPLOAD_MAX_NUMBER_FILES = 3

    response = admin_client.post(URL, {"files": [upload(f"{i}.txt", f"file {i}") for i in range(4)]})

    assert response.status_code == 413
    html = response.content.decode()
    assert "Too many files in one upload: at most 3 at a time. Nothing was stored" in html
    assert 'role="alert"' in html and 'id="documents-table"' in html  # the page, with the error in the form
    assert Document.objects.count() == 0 and stored_files() == []


def test_the_upload_still_needs_the_csrf_token(admin_user, ingest_delay):
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin_user)

    response = client.post(URL, {"files": [upload("a.txt", "text")]})

    assert response.status_code == 403
    assert Document.objects.count() == 0 and stored_files() == []


def test_a_technician_cannot_upload(client, technician, ingest_delay):
    client.force_login(technician)

    assert client.post(URL, {"files": [upload("a.txt", "text")]}).status_code == 403
    assert Document.objects.count() == 0


def test_each_outcome_has_its_message_level(admin_client, ingest_delay):
    admin_client.post(URL, {"files": [upload("a.txt", "text")]}, follow=True)  # follow: shows its line
    response = admin_client.post(URL, {"files": [upload("b.txt", "text"), upload("c.exe", "MZ")]})

    levels = [(m.level_tag, m.extra_tags) for m in get_messages(response.wsgi_request)]
    assert levels == [("info", "upload outcome-duplicate"), ("error", "upload outcome-rejected")]


# --- the API ------------------------------------------------------------------------------------


def _headers(user):
    return {"Authorization": f"Bearer {api_token_create(user=user, name='test')[1]}"}


def test_the_api_judges_each_file_alone(admin_user, ingest_delay, django_capture_on_commit_callbacks):
    client = Client()

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post("/api/v1/documents", {"files": batch()}, headers=_headers(admin_user))

    assert response.status_code == 200, response.content
    results = response.json()["results"]
    assert_outcomes([(r["name"], r["outcome"], r["reason"]) for r in results])
    assert_only_the_good_files_are_stored(ingest_delay)
    first = Document.objects.get(original_name="pump-manual.pdf")
    assert results[0]["document"] == {"id": first.pk, "name": "pump-manual.pdf", "status": "queued"}
    assert results[9]["document"]["id"] == first.pk  # the duplicate names the document it duplicates
    assert all(r["document"] is None for r in results if r["outcome"] == "rejected")
    assert set(results[0]) == {"name", "outcome", "reason", "document"}


def test_the_api_upload_needs_the_admin_role(technician, supervisor, ingest_delay):
    for user in (technician, supervisor):
        response = Client().post("/api/v1/documents", {"files": [upload("a.txt", "text")]}, headers=_headers(user))

        assert response.status_code == 403
        assert response.json() == {
            "detail": "Uploading documents needs the admin role (permission knowledge.add_document)."
        }
    assert Document.objects.count() == 0 and stored_files() == []


def test_the_api_upload_needs_a_token(db, ingest_delay):
    response = Client().post("/api/v1/documents", {"files": [upload("a.txt", "text")]})

    assert response.status_code == 401
    assert Document.objects.count() == 0


def test_the_api_upload_without_files_is_a_422(admin_user):
    response = Client().post("/api/v1/documents", {}, headers=_headers(admin_user))

    assert response.status_code == 422
    assert "files" in response.json()["errors"]


def test_the_api_refuses_too_many_files_with_a_413(admin_user, settings, ingest_delay):
    settings.DATA_UPLOAD_MAX_NUMBER_FILES = 2

    response = Client().post(
        "/api/v1/documents", {"files": [upload(f"{i}.txt", "x") for i in range(3)]}, headers=_headers(admin_user)
    )

    assert response.status_code == 413
    assert response.json()["detail"].startswith("Too many files in one request: at most 2")
    assert Document.objects.count() == 0


def test_the_api_lists_and_reads_documents(technician, admin_user, ingest_delay):
    a = uploads.upload_file(name="a.txt", chunks=[b"first"], size=5, user=admin_user).document
    b = uploads.upload_file(name="b.pdf", chunks=[GOOD_PDF], size=len(GOOD_PDF), user=admin_user).document
    Document.objects.filter(pk=a.pk).update(status="failed", error="no text")
    Document.objects.filter(pk=b.pk).update(status="indexed", page_count=1, chunk_count=3, title="Pump P-101")
    client, headers = Client(), _headers(technician)

    listing = client.get("/api/v1/documents", headers=headers).json()
    assert listing["total"] == 2 and [d["name"] for d in listing["items"]] == ["b.pdf", "a.txt"]
    item = listing["items"][0]
    assert {k: item[k] for k in ("id", "name", "status", "pages", "chunks", "error", "title")} == {
        "id": b.pk, "name": "b.pdf", "status": "indexed", "pages": 1, "chunks": 3, "error": "", "title": "Pump P-101",
    }
    assert item["url"] == f"http://testserver/documents/{b.pk}/file/"

    failed = client.get("/api/v1/documents", {"status": "failed"}, headers=headers).json()
    assert [(d["name"], d["error"]) for d in failed["items"]] == [("a.txt", "no text")]
    assert client.get("/api/v1/documents", {"limit": 1, "offset": 1}, headers=headers).json()["items"][0]["id"] == a.pk

    one = client.get(f"/api/v1/documents/{a.pk}", headers=headers)
    assert one.status_code == 200 and one.json()["status"] == "failed"
    missing = client.get("/api/v1/documents/999999", headers=headers)
    assert missing.status_code == 404 and missing.json() == {"detail": "No document #999999."}


def test_a_user_without_a_role_cannot_list_documents(outsider):
    assert Client().get("/api/v1/documents", headers=_headers(outsider)).status_code == 403
