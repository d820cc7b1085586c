"""The whole access matrix: anonymous, no role, technician, supervisor, admin × every route.

Every named URL of the project (and every websocket and API route) must appear in ROUTES
below; a new route without a row fails ``test_every_route_is_in_the_matrix``, so nobody adds a
page without deciding who may open it.

Outcomes: "ok" (allowed), "login" (sent to the login page), "403", "404" (the object exists but
is not theirs to see), "401" (an API that wants a token).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import pytest
from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from apps.accounts.roles import ADMIN, SUPERVISOR, TECHNICIAN
from apps.incidents.services import incident_create

pytestmark = pytest.mark.database

WHO = ("anonymous", "outsider", "technician", "supervisor", "admin")


def _expect(anonymous="login", outsider="403", technician="403", supervisor="403", admin="403"):
    return dict(anonymous=anonymous, outsider=outsider, technician=technician, supervisor=supervisor, admin=admin)


STAFF = _expect(technician="ok", supervisor="ok", admin="ok")  # every role
SUPERVISORS = _expect(supervisor="ok", admin="ok")
ADMINS = _expect(admin="ok")
PUBLIC = _expect(anonymous="ok", outsider="ok", technician="ok", supervisor="ok", admin="ok")


@dataclass
class Route:
    name: str
    args: Callable[[dict], list] = lambda w: []
    method: str = "get"
    data: Callable[[dict], dict] = lambda w: {}
    expect: dict = field(default_factory=lambda: STAFF)
    query: str = ""
    token: bool = False  # the JSON API: a bearer token per user instead of a session
    json: bool = False


# The technician owns the world's conversation and reported its incident; the supervisor and
# admin see everything; the outsider is logged in with no role.
ROUTES = [
    Route("home", expect=_expect(technician="ok", supervisor="ok", admin="ok")),
    Route("healthz", expect=PUBLIC),
    # Prometheus: a bearer token (NANOSENTRI_METRICS_TOKEN, tests/test_metrics.py) or an admin's session.
    Route("metrics", expect=_expect(anonymous="401", admin="ok")),
    Route("monitoring:system", expect=ADMINS),
    Route("login", expect=PUBLIC),
    # Logging out always lands on the login page.
    Route("logout", method="post", expect=_expect(outsider="login", technician="login", supervisor="login", admin="login")),
    Route("knowledge:documents", expect=ADMINS),
    Route("knowledge:row", args=lambda w: [w["document"].pk], expect=ADMINS),
    Route("knowledge:reindex", args=lambda w: [w["document"].pk], method="post", expect=ADMINS),
    Route("knowledge:delete", args=lambda w: [w["document"].pk], method="post", expect=ADMINS),
    Route("knowledge:cancel", args=lambda w: [w["document"].pk], method="post", expect=ADMINS),
    Route("knowledge:replace", args=lambda w: [w["awaiting"].pk], method="post", expect=ADMINS),
    Route("knowledge:keep", args=lambda w: [w["awaiting"].pk], method="post", expect=ADMINS),
    Route("knowledge:file", args=lambda w: [w["document"].pk]),
    Route("chat:chat"),
    # Conversations are private: even a supervisor gets a 404 for someone else's.
    Route("chat:conversation", args=lambda w: [w["conversation"].pk],
          expect=_expect(technician="ok", supervisor="404", admin="404")),
    # Rating: the asker (and reviewers); the review queue: supervisors and admins.
    Route("chat:feedback", args=lambda w: [w["answer"].pk], method="post", data=lambda w: {"rating": "up"},
          expect=_expect(anonymous="401", technician="ok", supervisor="ok", admin="ok")),
    Route("chat:review", expect=SUPERVISORS),
    Route("chat:review_item", args=lambda w: [w["feedback"].pk], expect=SUPERVISORS),
    Route("assets:list"),
    Route("assets:detail", args=lambda w: [w["asset"].asset_id]),
    Route("assets:live", args=lambda w: [w["asset"].asset_id]),
    Route("incidents:list"),
    Route("incidents:new"),
    Route("incidents:new", query="?conversation={conversation}",
          expect=_expect(technician="ok", supervisor="404", admin="404")),  # only one's own chat
    Route("incidents:detail", args=lambda w: [w["incident"].pk]),
    Route("incidents:edit", args=lambda w: [w["incident"].pk]),
    Route("incidents:resolve", args=lambda w: [w["incident"].pk]),
    Route("incidents:status", args=lambda w: [w["incident"].pk], method="post", data=lambda w: {"status": "in_progress"}),
    # Another asset's incident, reported by someone else: not the technician's to see.
    Route("incidents:detail", args=lambda w: [w["other_incident"].pk], expect=SUPERVISORS | {"technician": "404"}),
    Route("incidents:edit", args=lambda w: [w["other_incident"].pk], expect=SUPERVISORS | {"technician": "404"}),
    Route("incidents:export", expect=SUPERVISORS),
    Route("incidents:dashboard", expect=SUPERVISORS),
    # Devices authenticate with their own bearer token, never with a session.
    Route("telemetry_api:post", method="post",
          expect=_expect(anonymous="401", outsider="401", technician="401", supervisor="401", admin="401")),
]

API_STAFF = _expect(anonymous="401", technician="ok", supervisor="ok", admin="ok")
API_PUBLIC = PUBLIC
ROUTES += [
    Route("api-v1:api-root", token=True, expect=_expect(**{w: "404" for w in WHO})),  # no index page
    Route("api-v1:openapi-json", token=True, expect=API_PUBLIC),
    Route("api-v1:openapi-view", token=True, expect=API_PUBLIC),
    Route("api-v1:incident_list", token=True, expect=API_STAFF),
    Route("api-v1:incident_detail", token=True, args=lambda w: [w["incident"].pk], expect=API_STAFF),
    Route("api-v1:incident_detail", token=True, args=lambda w: [w["other_incident"].pk],
          expect=API_STAFF | {"technician": "404"}),
    Route("api-v1:incident_add", token=True, method="post", json=True,
          data=lambda w: {"title": "Wind sensor noisy", "symptom": "gusts", "asset": "WXT536-01"}, expect=API_STAFF),
    Route("api-v1:incident_change", token=True, method="patch", json=True, args=lambda w: [w["incident"].pk],
          data=lambda w: {"priority": "high"}, expect=API_STAFF),
    Route("api-v1:incident_change", token=True, method="patch", json=True, args=lambda w: [w["other_incident"].pk],
          data=lambda w: {"priority": "high"}, expect=API_STAFF | {"technician": "404"}),
    Route("api-v1:ask", token=True, method="post", json=True, data=lambda w: {"question": "Why is the heater off?"},
          expect=API_STAFF),
    Route("api-v1:document_list", token=True, expect=API_STAFF),
    Route("api-v1:document_detail", token=True, args=lambda w: [w["document"].pk], expect=API_STAFF),
    Route("api-v1:document_upload", token=True, method="post", expect=_expect(anonymous="401", admin="ok"),
          data=lambda w: {"files": SimpleUploadedFile("notes.txt", b"Fuse F2 protects the heater.")}),
    Route("api-v1:document_replace", token=True, method="post", args=lambda w: [w["awaiting"].pk],
          expect=_expect(anonymous="401", admin="ok")),
    Route("api-v1:document_keep", token=True, method="post", args=lambda w: [w["awaiting"].pk],
          expect=_expect(anonymous="401", admin="ok")),
]

WEBSOCKETS = {
    "/ws/chat/": STAFF,
    "/ws/alerts/": STAFF,
    "/ws/documents/": ADMINS,
}

# Django's admin site has its own staff check; it is covered as a whole by this row.
EXCLUDED_NAMESPACES = {"admin"}


def _route_names(patterns=None, prefix=""):
    for p in patterns if patterns is not None else get_resolver().url_patterns:
        if isinstance(p, URLResolver):
            ns = f"{prefix}{p.namespace}:" if p.namespace else prefix
            yield from _route_names(p.url_patterns, ns)
        elif isinstance(p, URLPattern) and p.name:
            yield prefix + p.name


def test_every_route_is_in_the_matrix():
    named = {n for n in _route_names() if n.split(":")[0] not in EXCLUDED_NAMESPACES}
    in_matrix = {r.name for r in ROUTES}
    assert named - in_matrix == set(), "routes without a row in the access matrix"
    assert in_matrix - named == set(), "rows for routes that no longer exist"


def _world(django_user_model, settings, tmp_path):
    from apps.assets.models import Asset, DeviceType
    from apps.chat.models import AnswerFeedback, Conversation, Message
    from apps.knowledge.models import Document

    users = {"anonymous": None, "outsider": django_user_model.objects.create_user("outsider-u", password="pw")}
    for role, name in ((TECHNICIAN, "technician"), (SUPERVISOR, "supervisor"), (ADMIN, "admin")):
        user = django_user_model.objects.create_user(f"{name}-u", password="pw")
        user.groups.add(Group.objects.get(name=role))
        users[name] = user
    asset = Asset.objects.create(asset_id="WXT536-01", name="Mast 1", device_type=DeviceType.objects.get(key="WXT536"))
    asset.technicians.add(users["technician"])
    settings.UPLOAD_DIR = tmp_path
    (tmp_path / "manual.txt").write_text("Heater fuse F2 protects the 24 V heater supply.")
    document = Document.objects.create(original_name="manual.txt", stored_path="manual.txt", extension="txt",
                                       size_bytes=47, content_hash="0" * 64, status=Document.Status.INDEXED)
    (tmp_path / "manual-v2.txt").write_text("Heater fuse F2 protects the 24 V heater supply. Rev B: 3 A.")
    awaiting = Document.objects.create(original_name="manual-v2.txt", stored_path="manual-v2.txt", extension="txt",
                                       size_bytes=58, content_hash="1" * 64, status=Document.Status.AWAITING,
                                       previous_version=document)
    conversation = Conversation.objects.create(user=users["technician"], title="heater")
    Message.objects.create(conversation=conversation, role=Message.Role.USER, content="Why is the heater off?")
    answer = Message.objects.create(conversation=conversation, role=Message.Role.ASSISTANT, content="Check fuse F2.",
                                    status=Message.Status.COMPLETED)
    feedback = AnswerFeedback.objects.create(message=answer, user=users["technician"], rating=-1, comment="vague")
    other_asset = Asset.objects.create(asset_id="WXT536-09", name="Mast 9", device_type=asset.device_type)
    incident = incident_create(reporter=users["technician"], asset=asset, title="Heater dead", symptom="ice")
    other = incident_create(reporter=users["supervisor"], asset=other_asset, title="Wind noise", symptom="gusts")
    return {"users": users, "asset": asset, "document": document, "awaiting": awaiting, "conversation": conversation,
            "incident": incident, "other_incident": other, "answer": answer, "feedback": feedback}


def _outcome(response) -> str:
    code = response.status_code
    if code in (301, 302) and "/login/" in response.get("Location", ""):
        return "login"
    if code in (401, 403, 404):
        return str(code)
    assert code < 400, f"unexpected status {code}"
    return "ok"


# The API's ask answers in a worker thread, which only sees committed rows.
THREADED = {"api-v1:ask"}
CASES = [(r, who) for r in ROUTES for who in WHO if r.name not in THREADED]
THREADED_CASES = [(r, who) for r in ROUTES for who in WHO if r.name in THREADED]


@pytest.mark.django_db
@pytest.mark.parametrize("route,who", CASES, ids=[f"{r.name}-{who}" for r, who in CASES])
def test_http_route(client, django_user_model, settings, tmp_path, route, who):
    _check_route(client, _world(django_user_model, settings, tmp_path), route, who)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("route,who", THREADED_CASES, ids=[f"{r.name}-{who}" for r, who in THREADED_CASES])
def test_threaded_http_route(client, django_user_model, settings, tmp_path, route, who):
    _check_route(client, _world(django_user_model, settings, tmp_path), route, who)


def _check_route(client, world, route, who):
    user = world["users"][who]
    headers = {}
    if user is not None and route.token:
        from apps.api.services import api_token_create

        headers["Authorization"] = f"Bearer {api_token_create(user=user)[1]}"
    elif user is not None:
        client.force_login(user)
    url = reverse(route.name, args=route.args(world)) + route.query.format(conversation=world["conversation"].pk)
    if route.json:
        response = getattr(client, route.method)(
            url, route.data(world), content_type="application/json", headers=headers)
    else:
        response = getattr(client, route.method)(url, route.data(world), headers=headers)

    assert _outcome(response) == route.expect[who], response.content[:300]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("path", list(WEBSOCKETS))
@pytest.mark.parametrize("who", WHO)
def test_websocket_route(client, path, who, django_user_model):
    from nanosentri_site.asgi import application

    role = {"technician": TECHNICIAN, "supervisor": SUPERVISOR, "admin": ADMIN}.get(who)
    headers = [(b"origin", b"http://testserver"), (b"host", b"testserver")]
    if who != "anonymous":
        user = get_user_model().objects.create_user(f"ws-{who}", password="pw")
        if role:
            user.groups.add(Group.objects.get(name=role))
        client.force_login(user)
        headers.append((b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode()))

    async def connect():
        communicator = WebsocketCommunicator(application, path, headers=headers)
        connected, _ = await communicator.connect(timeout=5)
        await communicator.disconnect()
        return connected

    allowed = WEBSOCKETS[path][who] == "ok"
    assert async_to_sync(connect)() is allowed
