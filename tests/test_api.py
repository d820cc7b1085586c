"""The JSON API (/api/v1/): tokens, roles, incidents with their audit trail, ask."""
import json
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.test import Client
from django.utils import timezone

from apps.api.models import ApiToken
from apps.api.services import api_token_create, api_token_revoke
from apps.assets.models import Asset
from apps.chat.models import Conversation
from apps.incidents.models import Incident, IncidentEvent
from apps.incidents.services import incident_create
from apps.knowledge.models import Document
from apps.knowledge.vector_index import get_vector_index
from ingest.chunk import Chunk
from models.embedding import get_embedder

pytestmark = [pytest.mark.django_db, pytest.mark.database]

INCIDENT_KEYS = {
    "id", "asset", "title", "failure_class", "symptom", "cause", "remedy", "root_cause", "summary", "priority",
    "status", "downtime_start", "downtime_end", "downtime_kind", "downtime_reason", "downtime_minutes", "reporter",
    "assignee", "created", "updated", "resolved_at", "closed_at", "url",
}


class Api:
    """A test client speaking for one token."""

    def __init__(self, secret=None, client=None):
        self.client = client or Client()
        self.headers = {"Authorization": f"Bearer {secret}"} if secret else {}

    def get(self, path, **params):
        return self.client.get(f"/api/v1{path}", params, headers=self.headers)

    def post(self, path, body):
        return self.client.post(f"/api/v1{path}", json.dumps(body), content_type="application/json", headers=self.headers)

    def patch(self, path, body):
        return self.client.patch(f"/api/v1{path}", json.dumps(body), content_type="application/json", headers=self.headers)


def _api(user, **kwargs):
    _, secret = api_token_create(user=user, name="test")
    return Api(secret, **kwargs)


@pytest.fixture
def asset(technician):
    a = Asset.objects.create(asset_id="WXT536-01", name="Weather mast")
    a.technicians.add(technician)
    return a


@pytest.fixture
def other_asset(db):
    return Asset.objects.create(asset_id="EVSE-07", name="Charger")


@pytest.fixture
def incidents(asset, other_asset, technician, supervisor):
    """Bob's asset's incident, one on an asset that is not his, and one he reported elsewhere."""
    return {
        "on_his_asset": incident_create(reporter=supervisor, asset=asset, title="Heater fault", symptom="no heat",
                                        priority="high"),
        "elsewhere": incident_create(reporter=supervisor, asset=other_asset, title="Charger offline",
                                     symptom="no LED", priority="critical"),
        "his_report": incident_create(reporter=technician, asset=other_asset, title="Cable worn", symptom="frayed",
                                      priority="low"),
    }


# --- Tokens and authentication -----------------------------------------------------------------


def test_it_stores_a_hash_and_a_prefix_never_the_secret(technician):
    token, secret = api_token_create(user=technician, name="Maximo")
    assert secret.startswith("nst_") and len(secret) > 40
    token.refresh_from_db()
    assert token.prefix == secret[:12]
    assert secret not in {token.key_hash, token.prefix, token.name}
    assert len(token.key_hash) == 64


@pytest.mark.parametrize("header", [None, "Bearer", "Bearer nst_wrong", "Token {secret}", "Basic {secret}"])
def test_it_refuses_missing_or_invalid_tokens(technician, incidents, header):
    _, secret = api_token_create(user=technician)
    headers = {"Authorization": header.format(secret=secret)} if header else {}
    response = Client().get("/api/v1/incidents", headers=headers)
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert "Bearer" in response.json()["detail"]


def test_revoked_expired_and_inactive_users_tokens_are_refused(technician, supervisor, outsider):
    revoked, revoked_secret = api_token_create(user=technician)
    api_token_revoke(token=revoked)
    _, expired_secret = api_token_create(user=technician, expires_at=timezone.now() - timedelta(seconds=1))
    _, inactive_secret = api_token_create(user=supervisor)
    supervisor.is_active = False
    supervisor.save()
    for secret in (revoked_secret, expired_secret, inactive_secret):
        assert Api(secret).get("/incidents").status_code == 401


def test_a_valid_token_works_and_records_its_last_use(technician):
    token, secret = api_token_create(user=technician, expires_at=timezone.now() + timedelta(days=1))
    assert Api(secret).get("/incidents").status_code == 200
    token.refresh_from_db()
    assert token.last_used_at is not None


def test_create_api_token_prints_the_secret_once(technician):
    out, err = StringIO(), StringIO()
    call_command("create_api_token", "bob", "--name", "Maximo sync", stdout=out, stderr=err)
    secret = out.getvalue().strip()
    token = ApiToken.objects.get()
    assert token.user == technician and token.name == "Maximo sync" and token.expires_at is None
    assert token.prefix in err.getvalue() and secret not in err.getvalue()
    assert Api(secret).get("/incidents").status_code == 200


def test_create_api_token_refuses_unknown_users(db):
    with pytest.raises(CommandError, match="unknown user"):
        call_command("create_api_token", "nobody", stdout=StringIO(), stderr=StringIO())


def test_the_admin_lists_tokens_without_secrets(client, django_user_model, technician):
    client.force_login(django_user_model.objects.create_superuser("root", password="pw-root"))
    _, secret = api_token_create(user=technician, name="Maximo")
    response = client.get("/admin/api/apitoken/")
    assert response.status_code == 200
    page = response.content.decode()
    assert "Maximo" in page and secret[:12] in page
    assert secret not in page and ApiToken.objects.get().key_hash not in page


def test_an_admin_creates_a_token_and_sees_it_once(client, django_user_model, technician):
    client.force_login(django_user_model.objects.create_superuser("root", password="pw-root"))
    response = client.post("/admin/api/apitoken/add/", {"user": technician.pk, "name": "tablet"}, follow=True)
    assert response.status_code == 200
    token = ApiToken.objects.get()
    secret = next(str(m).rsplit(" ", 1)[-1] for m in response.context["messages"] if "not shown again" in str(m))
    assert secret.startswith(token.prefix)
    assert Api(secret).get("/incidents").status_code == 200
    assert secret not in client.get(f"/admin/api/apitoken/{token.pk}/change/").content.decode()


def test_create_api_token_can_set_an_expiry(technician):
    call_command("create_api_token", "bob", "--expires-days", "30", stdout=StringIO(), stderr=StringIO())
    expires = ApiToken.objects.get().expires_at
    assert timedelta(days=29) < expires - timezone.now() <= timedelta(days=30)


def test_api_calls_need_no_csrf_token(supervisor, asset):
    api = _api(supervisor, client=Client(enforce_csrf_checks=True))
    response = api.post("/incidents", {"title": "Mast down", "symptom": "no data"})
    assert response.status_code == 201, response.content


# --- Roles ---------------------------------------------------------------------------------------


def _calls(incident_id):
    return [
        ("get", "/incidents", None),
        ("get", f"/incidents/{incident_id}", None),
        ("post", "/incidents", {"title": "t", "symptom": "s"}),
        ("patch", f"/incidents/{incident_id}", {"priority": "low"}),
        ("post", "/ask", {"question": "What does ERROR HIGH TEMP mean?"}),
    ]


def test_a_user_without_a_role_is_forbidden_everything(outsider, incidents):
    api = _api(outsider)
    for method, path, body in _calls(incidents["elsewhere"].pk):
        response = getattr(api, method)(path, body) if body is not None else api.get(path)
        assert response.status_code == 403, (method, path)
        assert response.json() == {"detail": "Your role does not allow this."}
    assert not Incident.objects.filter(title="t").exists()
    assert not Conversation.objects.exists()


def test_a_technician_sees_their_own_and_their_assets_incidents(technician, incidents):
    api = _api(technician)
    listed = api.get("/incidents").json()
    assert {i["id"] for i in listed["items"]} == {incidents["on_his_asset"].pk, incidents["his_report"].pk}
    assert listed["total"] == 2
    assert api.get(f"/incidents/{incidents['on_his_asset'].pk}").status_code == 200
    hidden = incidents["elsewhere"].pk
    response = api.get(f"/incidents/{hidden}")
    assert response.status_code == 404
    assert response.json()["detail"] == f"No incident #{hidden}, or it is not visible to you."
    assert api.patch(f"/incidents/{hidden}", {"priority": "low"}).status_code == 404
    assert Incident.objects.get(pk=hidden).priority == "critical"
    assert api.patch(f"/incidents/{incidents['his_report'].pk}", {"priority": "high"}).status_code == 200
    assert api.post("/incidents", {"title": "t", "symptom": "s"}).status_code == 201


@pytest.mark.parametrize("role", ["supervisor", "admin_user"])
def test_supervisors_and_admins_see_and_change_every_incident(request, role, incidents):
    api = _api(request.getfixturevalue(role))
    assert api.get("/incidents").json()["total"] == 3
    for incident in incidents.values():
        assert api.get(f"/incidents/{incident.pk}").status_code == 200
        assert api.patch(f"/incidents/{incident.pk}", {"priority": "normal"}).status_code == 200
    assert api.post("/incidents", {"title": "t", "symptom": "s"}).status_code == 201


def test_an_unknown_incident_is_a_404(supervisor):
    response = _api(supervisor).get("/incidents/999999")
    assert response.status_code == 404
    assert "#999999" in response.json()["detail"]


# --- Listing ---------------------------------------------------------------------------------


def test_the_incident_json_has_every_documented_field(supervisor, incidents):
    item = _api(supervisor).get(f"/incidents/{incidents['on_his_asset'].pk}").json()
    assert set(item) == INCIDENT_KEYS
    assert item["asset"] == "WXT536-01" and item["reporter"] == "carol" and item["assignee"] is None
    assert item["priority"] == "high" and item["status"] == "open" and item["downtime_kind"] is None
    created = timezone.datetime.fromisoformat(item["created"].replace("Z", "+00:00"))
    assert abs(created - incidents["on_his_asset"].created) < timedelta(seconds=1)


def test_it_filters_by_status_priority_asset_and_update_time(supervisor, incidents):
    api = _api(supervisor)
    ids = {k: v.pk for k, v in incidents.items()}

    def listed(**params):
        return {i["id"] for i in api.get("/incidents", **params).json()["items"]}

    assert listed(priority="critical") == {ids["elsewhere"]}
    assert listed(priority=["critical", "low"]) == {ids["elsewhere"], ids["his_report"]}
    assert listed(asset="EVSE-07") == {ids["elsewhere"], ids["his_report"]}
    assert listed(asset="NOPE-1") == set()
    Incident.objects.filter(pk=ids["elsewhere"]).update(status="in_progress")
    assert listed(status="in_progress") == {ids["elsewhere"]}
    assert listed(status=["open", "in_progress"]) == set(ids.values())
    Incident.objects.exclude(pk=ids["his_report"]).update(updated=timezone.now() - timedelta(days=2))
    since = (timezone.now() - timedelta(days=1)).isoformat()
    assert listed(updated_since=since) == {ids["his_report"]}


def test_it_paginates_with_the_total(supervisor, asset):
    for n in range(5):
        incident_create(reporter=supervisor, asset=asset, title=f"#{n}", symptom="s")
    api = _api(supervisor)
    page = api.get("/incidents", limit=2, offset=1).json()
    assert page["total"] == 5 and page["limit"] == 2 and page["offset"] == 1
    assert [i["title"] for i in page["items"]] == ["#3", "#2"]  # newest first
    assert api.get("/incidents", limit=2, offset=4).json()["items"][0]["title"] == "#0"
    assert api.get("/incidents", offset=10).json()["items"] == []


@pytest.mark.parametrize("params, field", [
    ({"status": "broken"}, "status.0"),
    ({"limit": 0}, "limit"),
    ({"limit": 201}, "limit"),
    ({"offset": -1}, "offset"),
    ({"updated_since": "yesterday"}, "updated_since"),
])
def test_bad_filters_are_422_naming_the_parameter(supervisor, params, field):
    response = _api(supervisor).get("/incidents", **params)
    assert response.status_code == 422
    body = response.json()
    assert field in body["errors"] and field in body["detail"]


# --- Creating and updating -------------------------------------------------------------------


def test_it_creates_an_incident_with_an_audit_trail_entry_by_the_tokens_user(technician, asset):
    response = _api(technician).post("/incidents", {
        "asset": "WXT536-01", "title": "Heater dead", "symptom": "Ice on the sensor", "priority": "critical",
        "failure_class": "heater", "assignee": "bob", "note": "reported by the CMMS",
        "downtime_start": "2026-01-10T08:00:00Z", "downtime_end": "2026-01-10T09:30:00+00:00",
        "downtime_kind": "unplanned",
    })
    assert response.status_code == 201, response.content
    body = response.json()
    incident = Incident.objects.get(pk=body["id"])
    assert incident.reporter == technician and incident.asset == asset and incident.assignee == technician
    assert body["downtime_minutes"] == 90 and body["reporter"] == "bob" and body["assignee"] == "bob"
    assert body["status"] == "open" and body["priority"] == "critical"
    event = IncidentEvent.objects.get(incident=incident)
    assert event.kind == "created" and event.actor == technician and event.note == "reported by the CMMS"
    assert event.changes["title"] == ["", "Heater dead"]


def test_creating_needs_a_known_asset_and_the_required_fields(supervisor, asset):
    api = _api(supervisor)
    response = api.post("/incidents", {"asset": "NOPE-9", "title": "t", "symptom": "s"})
    assert response.status_code == 422
    assert response.json() == {"detail": "Unknown asset 'NOPE-9'.", "errors": {"asset": ["Unknown asset 'NOPE-9'."]}}
    response = api.post("/incidents", {"title": "t"})
    assert response.status_code == 422 and "symptom" in response.json()["errors"]
    response = api.post("/incidents", {"title": "t", "symptom": "s", "staus": "open"})
    assert response.status_code == 422 and "staus" in response.json()["errors"]
    response = api.post("/incidents", {"title": "   ", "symptom": "s"})
    assert response.status_code == 422 and response.json()["errors"] == {"title": ["A title is required."]}
    response = api.post("/incidents", {"title": "t", "symptom": "s", "assignee": "nobody"})
    assert response.status_code == 422 and "assignee" in response.json()["errors"]
    assert not Incident.objects.exists()


def test_creating_resolved_needs_cause_and_remedy(supervisor):
    api = _api(supervisor)
    response = api.post("/incidents", {"title": "t", "symptom": "s", "status": "resolved"})
    assert response.status_code == 422
    assert set(response.json()["errors"]) == {"cause", "remedy"}
    response = api.post("/incidents", {"title": "t", "symptom": "s", "status": "resolved", "cause": "c", "remedy": "r"})
    assert response.status_code == 201 and response.json()["resolved_at"] is not None


@pytest.mark.parametrize("body", [
    {"title": "t\x00", "symptom": "s"},
    {"title": "x" * 201, "symptom": "s"},
    {"title": "t", "symptom": "s", "downtime_start": "0001-01-01T00:00:00+14:00"},
    {"title": "t", "symptom": "s", "priority": "urgent"},
    [],
])
def test_odd_input_is_a_422_not_a_500(supervisor, body):
    assert _api(supervisor).post("/incidents", body).status_code == 422


def test_an_unreadable_body_is_a_400(supervisor):
    api = _api(supervisor)
    response = api.client.post("/api/v1/incidents", "{not json", content_type="application/json", headers=api.headers)
    assert response.status_code == 400 and "detail" in response.json()


def test_a_body_over_the_upload_limit_is_a_413(settings, supervisor):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    response = _api(supervisor).post("/incidents", {"title": "t", "symptom": "x" * 2000})
    assert response.status_code == 413 and response.json() == {"detail": "The request body is too large."}


def test_it_moves_an_incident_through_its_statuses_recording_each_change(technician, incidents):
    incident = incidents["on_his_asset"]
    api = _api(technician)
    path = f"/incidents/{incident.pk}"
    response = api.patch(path, {"status": "in_progress", "assignee": "bob", "note": "on my way"})
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "in_progress" and response.json()["assignee"] == "bob"
    event = incident.events.latest("pk")
    assert event.kind == "status" and event.actor == technician and event.note == "on my way"
    assert event.changes["status"] == ["Open", "In progress"]

    response = api.patch(path, {"status": "resolved"})
    assert response.status_code == 422
    assert set(response.json()["errors"]) == {"cause", "remedy"}

    response = api.patch(path, {"status": "resolved", "cause": "blown fuse", "remedy": "replaced fuse"})
    assert response.status_code == 200 and response.json()["resolved_at"] is not None
    response = api.patch(path, {"status": "closed"})
    assert response.json()["closed_at"] is not None
    response = api.patch(path, {"status": "resolved"})  # closed → resolved is not a move the CMMS allows
    assert response.status_code == 422
    assert response.json()["errors"] == {"status": ["An incident that is closed cannot move to resolved."]}
    response = api.patch(path, {"status": "open"})
    assert response.json()["status"] == "open" and response.json()["closed_at"] is None
    assert list(incident.events.values_list("kind", flat=True)) == ["created", "status", "status", "status", "status"]
    assert set(incident.events.values_list("actor", flat=True)[1:]) == {technician.pk}


def test_patch_changes_only_what_is_sent_and_null_clears(supervisor, incidents):
    incident = incidents["on_his_asset"]
    api = _api(supervisor)
    path = f"/incidents/{incident.pk}"
    api.patch(path, {"cause": "ice", "downtime_kind": "planned", "assignee": "bob"})
    body = api.patch(path, {"cause": None, "asset": None, "downtime_kind": None, "assignee": None}).json()
    assert body["cause"] == "" and body["asset"] is None and body["downtime_kind"] is None and body["assignee"] is None
    assert body["title"] == "Heater fault" and body["priority"] == "high"
    events_before = incident.events.count()
    assert api.patch(path, {}).status_code == 200
    assert incident.events.count() == events_before  # nothing changed, nothing recorded


@pytest.mark.parametrize("body, field", [
    ({"priority": None}, "priority"),
    ({"status": None}, "status"),
    ({"title": None}, "title"),
    ({"asset": "NOPE-1"}, "asset"),
    ({"downtime_start": "2026-01-10T10:00:00Z", "downtime_end": "2026-01-10T09:00:00Z"}, "downtime_end"),
    ({"downtime_end": "2026-01-10T09:00:00Z"}, "downtime_start"),
    ({"id": 5}, "id"),
])
def test_invalid_changes_are_422_with_the_field(supervisor, incidents, body, field):
    incident = incidents["on_his_asset"]
    response = _api(supervisor).patch(f"/incidents/{incident.pk}", body)
    assert response.status_code == 422, response.content
    assert field in response.json()["errors"]
    incident.refresh_from_db()
    assert incident.priority == "high" and incident.title == "Heater fault" and incident.asset is not None


# --- Ask -------------------------------------------------------------------------------------


def _index(text, page, name="charger.pdf"):
    doc = Document.objects.create(original_name=name, stored_path=name, extension=".pdf",
                                  content_hash=name.ljust(64, "0"), status=Document.Status.INDEXED)
    get_vector_index().add(document_id=doc.pk, file_name=name, chunks=[Chunk(page=page, index=0, text=text)],
                           embeddings=get_embedder().embed([text]))
    return doc


def _shape(value):
    """The keys of a JSON value, recursively (lists by their first item)."""
    if isinstance(value, dict):
        return {k: _shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_shape(value[0])] if value else []
    return None


QUESTION = "What does ERROR HIGH TEMP mean?"


# The ask view runs the pipeline in a pool thread, with its own database connection: the
# test's data must be committed for it to see.
@pytest.mark.django_db(transaction=True)
def test_ask_returns_the_json_of_manage_py_ask(technician):
    _index("ERROR HIGH TEMP: charging resumes when the temperature drops below 55 C.", page=2)
    out = StringIO()
    call_command("ask", QUESTION, "--json", stdout=out, stderr=StringIO())
    expected = json.loads(out.getvalue())

    response = _api(technician).post("/ask", {"question": QUESTION})
    assert response.status_code == 200, response.content
    body = response.json()
    assert _shape(body) == _shape(expected)
    assert set(body) == {"answer", "extract", "narrative", "ungrounded", "citations", "similar_incidents", "timings",
                         "status", "findings", "readings", "conversation", "message", "route"}
    assert body["route"]["reason"] == "no_site_server" and body["route"]["model"] == "mock"
    assert body["answer"] == expected["answer"] and body["status"] == "completed"
    assert body["citations"][0]["document"] == "charger.pdf" and body["citations"][0]["page"] == 2
    # The manual's own line comes first, in the answer too.
    assert body["extract"][0] == {"text": "ERROR HIGH TEMP: charging resumes when the temperature drops below 55 C.",
                                  "n": 1, "document": "charger.pdf", "page": 2}
    assert body["answer"].startswith(body["extract"][0]["text"] + " [1]")
    conversation = Conversation.objects.get(pk=body["conversation"])
    assert conversation.user == technician and conversation.messages.count() == 2


@pytest.mark.django_db(transaction=True)
def test_ask_uses_the_assets_live_context(technician, asset):
    response = _api(technician).post("/ask", {"question": QUESTION, "asset": "WXT536-01"})
    assert response.status_code == 200, response.content
    out = StringIO()
    call_command("ask", QUESTION, "--json", "--asset", "WXT536-01", stdout=out, stderr=StringIO())
    assert set(response.json()) == set(json.loads(out.getvalue()))


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("body, field", [
    ({"question": QUESTION, "asset": "NOPE-1"}, "asset"),
    ({"question": "   "}, "question"),
    ({"question": ""}, "question"),
    ({"question": "x" * 2001}, "question"),
    ({"question": QUESTION, "context": "{not a log line"}, "context"),
    ({}, "question"),
])
def test_ask_refuses_bad_input_with_422(technician, body, field):
    response = _api(technician).post("/ask", body)
    assert response.status_code == 422, response.content
    assert field in response.json()["errors"]
    assert not Conversation.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_ask_reports_a_missing_model_as_503_with_the_same_shape(settings, technician):
    settings.NANOSENTRI_LLM_BACKEND = "llamacpp"
    settings.NANOSENTRI_LLM_MODEL = "/nonexistent/model.gguf"
    _index("ERROR HIGH TEMP: charging resumes when the temperature drops.", page=2)
    response = _api(technician).post("/ask", {"question": QUESTION})
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "failed" and body["error_code"] == "model_unavailable"
    assert body["citations"]  # the evidence found before the model was needed


# --- Schema and docs ---------------------------------------------------------------------------


def test_the_openapi_schema_documents_every_operation(client):
    schema = client.get("/api/v1/openapi.json").json()
    operations = {(m, p) for p, ops in schema["paths"].items() for m in ops}
    assert operations == {
        ("get", "/api/v1/incidents"), ("post", "/api/v1/incidents"), ("get", "/api/v1/incidents/{incident_id}"),
        ("patch", "/api/v1/incidents/{incident_id}"), ("post", "/api/v1/ask"),
        ("get", "/api/v1/documents"), ("post", "/api/v1/documents"), ("get", "/api/v1/documents/{document_id}"),
        ("post", "/api/v1/documents/{document_id}/replace"), ("post", "/api/v1/documents/{document_id}/keep"),
    }
    assert schema["components"]["securitySchemes"] == {"ApiTokenAuth": {"type": "http", "scheme": "bearer"}}


def test_the_docs_page_loads_nothing_from_the_internet(client):
    page = client.get("/api/v1/docs").content.decode()
    assert "/static/ninja/swagger-ui-bundle.js" in page
    assert "cdn" not in page.lower() and "https://" not in page
    assert '"validatorUrl": null' in page
