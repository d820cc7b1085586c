"""New versions of a manual: recognised by name, indexed first, then the old one leaves the index."""
from pathlib import Path
from unittest import mock

import pytest

from apps.knowledge import selectors, services
from apps.knowledge.models import Document
from apps.knowledge.retrieval import passages_search
from apps.knowledge.services import document_ingest
from apps.knowledge.vector_index import get_vector_index
from apps.knowledge.versions import name_key, version_candidate, version_choose
from tests.factories import make_pdf, stored_node_ids

OLD = "Relay K1 switches the pump contactor. The coil voltage is 24 V DC. Fuse F1 is rated 2 A."
NEW = "Relay K1 switches the pump contactor. The coil voltage is 12 V DC since revision B. Fuse F1 is rated 3 A."


@pytest.fixture(autouse=True)
def _no_task_dispatch():
    with mock.patch("apps.knowledge.tasks.ingest_document_task.delay"), mock.patch(
        "apps.knowledge.tasks.delete_vectors_task.delay"
    ):
        yield


def _add(tmp_path: Path, name: str, data: bytes) -> Document:
    path = tmp_path / "incoming" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    document, _ = services.document_add_path(path=path)
    return document


@pytest.mark.parametrize(
    "a, b",
    [
        ("Olimex_ESP32-POE_User_Manual_rev2.6.pdf", "Olimex_ESP32-POE_User_Manual_rev2.7.pdf"),
        ("SmartEVSE_v3_Installation_Manual_v1.01_sw3.00.pdf", "SmartEVSE v3 Installation Manual v1.02 sw3.01.pdf"),
        ("pump-manual.pdf", "Pump_Manual (1).pdf"),
        ("pump manual 2023-04.pdf", "pump manual 2024-11.pdf"),
        ("Pump manual final.pdf", "pump manual.pdf"),
    ],
)
def test_revisions_of_a_manual_share_a_name_key(a, b):
    assert name_key(a) == name_key(b)


@pytest.mark.parametrize(
    "a, b",
    [
        ("Olimex_ESP32-POE_User_Manual_rev2.6.pdf", "Olimex_ESP32-EVB_User_Manual_rev1.0.pdf"),
        ("LibreSolar_MPPT-1210-HUS_User_Manual.pdf", "LibreSolar_MPPT-2420-HC_User_Manual.pdf"),
        ("Creality_Ender-3_Trouble_Shootings.pdf", "Creality_Ender-3_Quick_Start_Guide_V1.0.pdf"),
    ],
)
def test_different_manuals_do_not(a, b):
    assert name_key(a) != name_key(b)


def test_a_candidate_is_a_current_manual_with_the_same_name_key(db, tmp_path):
    old = _add(tmp_path, "Pump_Manual_rev1.pdf", make_pdf([OLD]))
    assert version_candidate(file_name="Pump_Manual_rev2.pdf") == old
    assert version_candidate(file_name="Fan_Manual_rev2.pdf") is None
    Document.objects.filter(pk=old.pk).update(status=Document.Status.SUPERSEDED)
    assert version_candidate(file_name="Pump_Manual_rev2.pdf") is None


def test_replace_indexes_the_new_version_first_then_retires_the_old(db, tmp_path, client, admin_user):
    old = _add(tmp_path, "Pump_Manual_rev1.pdf", make_pdf([OLD]))
    document_ingest(document_id=old.pk)
    new = _add(tmp_path, "Pump_Manual_rev2.pdf", make_pdf([NEW]))
    Document.objects.filter(pk=new.pk).update(status=Document.Status.AWAITING, previous_version=old)
    new.refresh_from_db()

    client.force_login(admin_user)
    page = client.get("/documents/").content.decode()
    assert "This looks like a new version of" in page and f"/documents/{new.pk}/replace/" in page

    assert client.post(f"/documents/{new.pk}/replace/").status_code == 302
    new.refresh_from_db()
    assert new.status == Document.Status.QUEUED and new.previous_version == old
    old.refresh_from_db()
    assert old.status == Document.Status.INDEXED  # still answering while the new one is indexed

    document_ingest(document_id=new.pk)

    old.refresh_from_db()
    new.refresh_from_db()
    assert new.status == Document.Status.INDEXED
    assert old.status == Document.Status.SUPERSEDED
    index = get_vector_index()
    assert stored_node_ids(index, old.pk) == []
    assert len(stored_node_ids(index, new.pk)) == new.chunk_count
    passages, _ = passages_search("coil voltage of relay K1", min_score=0.0)
    assert {p.document_id for p in passages} == {new.pk}
    # The old file still opens, for answers that cited it; the library lists it under the new one.
    assert client.get(f"/documents/{old.pk}/file/").status_code == 200
    listed = selectors.document_list()
    assert [d.pk for d in listed] == [new.pk]
    assert [d.pk for d in listed[0].earlier_versions] == [old.pk]
    page = client.get("/documents/").content.decode()
    assert "version 2" in page and "1 earlier version" in page and "Pump_Manual_rev1.pdf" in page


def test_keep_both_makes_it_a_manual_of_its_own(db, tmp_path):
    old = _add(tmp_path, "Pump_Manual_rev1.pdf", make_pdf([OLD]))
    document_ingest(document_id=old.pk)
    new = _add(tmp_path, "Pump_Manual_rev2.pdf", make_pdf([NEW]))
    Document.objects.filter(pk=new.pk).update(status=Document.Status.AWAITING, previous_version=old)
    new.refresh_from_db()

    version_choose(document=new, replace=False)
    document_ingest(document_id=new.pk)

    old.refresh_from_db()
    new.refresh_from_db()
    assert old.status == new.status == Document.Status.INDEXED
    assert new.previous_version is None


def test_deleting_the_current_version_deletes_the_earlier_ones(db, tmp_path):
    old = _add(tmp_path, "Pump_Manual_rev1.pdf", make_pdf([OLD]))
    document_ingest(document_id=old.pk)
    new = _add(tmp_path, "Pump_Manual_rev2.pdf", make_pdf([NEW]))
    Document.objects.filter(pk=new.pk).update(status=Document.Status.AWAITING, previous_version=old)
    new.refresh_from_db()
    version_choose(document=new, replace=True)
    document_ingest(document_id=new.pk)
    old_path = services.document_path(old)

    services.document_delete(document=Document.objects.get(pk=new.pk))

    assert not Document.objects.filter(pk__in=[old.pk, new.pk]).exists()
    assert not old_path.exists()


def test_an_upload_with_the_name_of_a_current_manual_awaits_the_admins_choice(db, tmp_path, client, admin_user):
    from django.core.files.uploadedfile import SimpleUploadedFile

    old = _add(tmp_path, "Pump_Manual_rev1.pdf", make_pdf([OLD]))
    document_ingest(document_id=old.pk)
    client.force_login(admin_user)

    response = client.post("/documents/", {"files": SimpleUploadedFile("Pump_Manual_rev2.pdf", make_pdf([NEW]))},
                           follow=True)

    new = Document.objects.get(original_name="Pump_Manual_rev2.pdf")
    assert new.status == Document.Status.AWAITING and new.previous_version == old
    page = response.content.decode()
    assert "looks like a new version of “Pump_Manual_rev1.pdf”" in page
    assert f"/documents/{new.pk}/replace/" in page and f"/documents/{new.pk}/keep/" in page
    # Nothing was sent to the worker yet, and the current version keeps answering.
    old.refresh_from_db()
    assert old.status == Document.Status.INDEXED


def test_the_api_uploads_a_new_version_that_replaces_the_old_once_indexed(db, tmp_path, admin_user):
    from django.test import Client

    from apps.api.services import api_token_create

    old = _add(tmp_path, "Pump_Manual_rev1.pdf", make_pdf([OLD]))
    document_ingest(document_id=old.pk)
    _, secret = api_token_create(user=admin_user, name="cmms")
    api = Client(headers={"Authorization": f"Bearer {secret}"})

    asked = api.post("/api/v1/documents", {"files": [_upload("Pump_Manual_rev2.pdf", make_pdf([NEW]))]}).json()
    assert asked["results"][0]["outcome"] == "awaiting"
    new_id = asked["results"][0]["document"]["id"]
    chosen = api.post(f"/api/v1/documents/{new_id}/replace").json()
    assert chosen["status"] == "queued" and chosen["previous_version"] == old.pk
    assert api.post(f"/api/v1/documents/{new_id}/keep").status_code == 409  # already chosen

    document_ingest(document_id=new_id)
    detail = api.get(f"/api/v1/documents/{new_id}").json()
    assert detail["status"] == "indexed" and detail["earlier_versions"] == [old.pk]
    assert [d["id"] for d in api.get("/api/v1/documents").json()["items"]] == [new_id]

    # new_version=replace in the upload itself: no question asked.
    third = api.post("/api/v1/documents", {"files": [_upload("Pump_Manual_rev3.pdf", make_pdf([NEW + " Rev C."]))],
                                           "new_version": "replace"}).json()["results"][0]
    assert third["outcome"] == "queued" and "replaces “Pump_Manual_rev2.pdf”" in third["reason"]


def _upload(name: str, data: bytes):
    from django.core.files.uploadedfile import SimpleUploadedFile

    return SimpleUploadedFile(name, data, content_type="application/pdf")


def test_the_ingest_command_can_replace_a_manual(db, tmp_path):
    from io import StringIO

    from django.core.management import call_command

    old = _add(tmp_path, "Pump_Manual_rev1.pdf", make_pdf([OLD]))
    document_ingest(document_id=old.pk)
    path = tmp_path / "Pump_Manual_rev2.pdf"
    path.write_bytes(make_pdf([NEW]))

    call_command("ingest", str(path), "--new-version", "replace", stdout=StringIO())

    new = Document.objects.get(original_name="Pump_Manual_rev2.pdf")
    assert new.status == Document.Status.QUEUED and new.previous_version == old
    document_ingest(document_id=new.pk)
    old.refresh_from_db()
    assert old.status == Document.Status.SUPERSEDED
