"""Similar past incidents: embedded when resolved, found for a new question, shown before the answer."""
import json
from io import StringIO
from unittest import mock

import pytest
from django.core.management import call_command

from apps.assets.models import Asset, DeviceType
from apps.chat import services
from apps.chat.models import Message
from apps.chat.prompting import build_prompt, format_incidents
from apps.incidents import selectors as incident_selectors
from apps.incidents import services as incident_services
from apps.incidents import similar_index
from apps.incidents.models import Incident
from apps.incidents.services import incident_create, incident_update
from apps.knowledge.vector_index import open_search_index, reset_vector_index
from models.llm.mock import MockLanguageModel
from tests.test_integration_worker import shared_dirs, worker_factory  # noqa: F401  (fixtures: a real worker)

HEATER = dict(
    title="WXT536 heater not working",
    failure_class="WXT536",
    symptom="Heater current 0 A in freezing weather, ice on the wind transducers, wind readings missing",
    cause="blown heater fuse F2",
    remedy="replaced fuse F2",
)
REBOOTS = dict(
    title="WXT536-03 keeps rebooting",
    failure_class="WXT536",
    symptom="Intermittent resets every few minutes, SYSTEM_RESET events in the log",
    cause="supply voltage dropped to 8 V under load because of a corroded terminal",
    remedy="cleaned and re-crimped the supply terminal, supply back to 24 V",
)
CHARGER_HOT = dict(
    title="Charger stops with ERROR HIGH TEMP",
    failure_class="SmartEVSE",
    symptom="Charging stops in the afternoon, the display shows ERROR HIGH TEMP",
    cause="enclosure in direct sun, internal temperature above 65 C",
    remedy="installed a sun shade over the enclosure",
)


@pytest.fixture
def assets(db):
    wxt = DeviceType.objects.get(key="WXT536")
    evse = DeviceType.objects.create(key="SmartEVSE", name="SmartEVSE v3 charger")
    return {
        "WXT536-01": Asset.objects.create(asset_id="WXT536-01", name="Roof mast", device_type=wxt),
        "WXT536-02": Asset.objects.create(asset_id="WXT536-02", name="Field mast", device_type=wxt),
        "WXT536-03": Asset.objects.create(asset_id="WXT536-03", name="Pier mast", device_type=wxt),
        "EVSE-01": Asset.objects.create(asset_id="EVSE-01", name="Car park charger", device_type=evse),
    }


def _resolved(reporter, asset=None, status=Incident.Status.RESOLVED, index=True, **fields) -> Incident:
    incident = incident_create(reporter=reporter, asset=asset, status=status, **fields)
    if index:
        incident_services.incident_index(incident_id=incident.pk)  # what the worker's task does
    return incident


def _stored_ids() -> list[str]:
    return similar_index.get_incident_index().store.client.get(include=[])["ids"]


def _ids(items) -> list[int]:
    return [i["id"] for i in items]


# ------------------------------------------------------------------------------ index and search


def test_it_indexes_a_resolved_incident_and_finds_it_with_its_details(technician, assets):
    incident = _resolved(technician, assets["WXT536-01"], **HEATER)

    items = incident_selectors.incidents_similar("heater not working, fuse blown?", asset=assets["WXT536-02"])

    assert _stored_ids() == [f"incident-{incident.pk}"]
    assert len(items) == 1
    item = items[0]
    assert set(item) == {"id", "title", "cause", "remedy", "resolved", "asset", "score", "url"}
    assert item["id"] == incident.pk and item["title"] == HEATER["title"]
    assert item["cause"] == "blown heater fuse F2" and item["remedy"] == "replaced fuse F2"
    assert item["asset"] == "WXT536-01"
    assert item["resolved"] == incident.resolved_at.date().isoformat()
    assert item["url"] == f"/incidents/{incident.pk}/"
    assert 0 < item["score"] <= 1


def test_the_embedded_text_leaves_device_names_and_asset_ids_to_the_metadata(technician, assets):
    incident = _resolved(technician, assets["WXT536-03"], **REBOOTS)

    text = similar_index.incident_text(incident)
    stored = similar_index.get_incident_index().store.client.get(ids=[f"incident-{incident.pk}"])

    assert text.splitlines()[0] == "keeps rebooting"
    assert "WXT536" not in text and "Failure class" not in text  # the class is the device type
    assert "Cause: supply voltage dropped" in text and "Remedy: cleaned and re-crimped" in text
    assert stored["metadatas"][0]["device_type"] == "WXT536" and stored["metadatas"][0]["asset"] == "WXT536-03"


def test_a_failure_class_that_is_not_a_device_type_stays_in_the_text(technician, db):
    incident = _resolved(technician, None, **{**HEATER, "failure_class": "heater"})

    assert "Failure class: heater" in similar_index.incident_text(incident)
    assert similar_index.incident_device_type(incident) == ""


def test_an_open_incident_is_not_indexed(technician, assets):
    incident = _resolved(technician, assets["WXT536-01"], status=Incident.Status.OPEN, **HEATER)

    assert incident_services.incident_index(incident_id=incident.pk) is False
    assert _stored_ids() == []
    assert incident_selectors.incidents_similar("heater not working", asset="WXT536-02") == []


def test_an_edit_replaces_the_vector_and_a_reopen_removes_it(technician, assets):
    incident = _resolved(technician, assets["WXT536-01"], **HEATER)
    incident = incident_update(incident=incident, actor=technician, remedy="replaced fuse F2 and the heater element")
    incident_services.incident_index(incident_id=incident.pk)

    stored = similar_index.get_incident_index().store.client.get(include=["documents"])
    assert stored["ids"] == [f"incident-{incident.pk}"]  # one vector per incident, updated in place
    assert "heater element" in stored["documents"][0]

    incident_update(incident=incident, actor=technician, status=Incident.Status.OPEN)
    assert incident_services.incident_index(incident_id=incident.pk) is False
    assert _stored_ids() == []


def test_a_deleted_incident_is_removed(technician, assets):
    incident = _resolved(technician, assets["WXT536-01"], **HEATER)
    pk = incident.pk
    incident.delete()

    incident_services.incident_index(incident_id=pk)

    assert _stored_ids() == []


def test_an_incident_reopened_since_indexing_is_not_offered(technician, assets):
    incident = _resolved(technician, assets["WXT536-01"], **HEATER)
    Incident.objects.filter(pk=incident.pk).update(status=Incident.Status.IN_PROGRESS)  # the worker has not run yet

    assert incident_selectors.incidents_similar("heater not working", asset="WXT536-02") == []


def test_closed_incidents_are_offered_too(technician, assets):
    incident = _resolved(technician, assets["WXT536-01"], status=Incident.Status.CLOSED, **HEATER)

    assert _ids(incident_selectors.incidents_similar("heater not working", asset="WXT536-02")) == [incident.pk]


def test_the_same_device_type_comes_first(technician, assets, settings):
    settings.NANOSENTRI_SIMILAR_INCIDENTS_MIN_SCORE = 0.05
    settings.NANOSENTRI_SIMILAR_INCIDENTS_OTHER_TYPE_MIN_SCORE = 0.05
    # The charger incident shares more words with the question than the weather station's.
    charger = _resolved(technician, assets["EVSE-01"], **{**CHARGER_HOT, "symptom": "stops in the afternoon, hot"})
    heater = _resolved(technician, assets["WXT536-01"], **HEATER)
    question = "stops in the afternoon, hot, heater"

    by_score = incident_selectors.incidents_similar(question)
    same_type_first = incident_selectors.incidents_similar(question, asset=assets["WXT536-02"])

    assert _ids(by_score) == [charger.pk, heater.pk]
    assert by_score[0]["score"] > by_score[1]["score"]
    assert _ids(same_type_first) == [heater.pk, charger.pk]
    # An asset id string (live.asset) or a device type named in the question does the same.
    assert _ids(incident_selectors.incidents_similar(question, asset="WXT536-02")) == [heater.pk, charger.pk]
    assert _ids(incident_selectors.incidents_similar("WXT536-09 " + question)) == [heater.pk, charger.pk]


def test_with_a_known_device_type_other_types_must_score_higher(technician, assets, settings):
    charger = _resolved(technician, assets["EVSE-01"], **CHARGER_HOT)
    heater = _resolved(technician, assets["WXT536-01"], **HEATER)
    question = "heater stops in the afternoon"
    scores = {i["id"]: i["score"] for i in incident_selectors.incidents_similar(question, min_score=-1)}
    settings.NANOSENTRI_SIMILAR_INCIDENTS_MIN_SCORE = min(scores.values()) - 0.01
    settings.NANOSENTRI_SIMILAR_INCIDENTS_OTHER_TYPE_MIN_SCORE = scores[charger.pk] + 0.01

    assert sorted(_ids(incident_selectors.incidents_similar(question))) == sorted([heater.pk, charger.pk])  # type unknown
    assert _ids(incident_selectors.incidents_similar(question, asset="WXT536-02")) == [heater.pk]
    assert _ids(incident_selectors.incidents_similar(question, asset="EVSE-01")) == [charger.pk]  # its own type: min score


def test_below_the_minimum_score_nothing_is_offered(technician, assets, settings):
    _resolved(technician, assets["WXT536-01"], **HEATER)

    assert incident_selectors.incidents_similar("How do I change the admin password?", asset="WXT536-02") == []
    settings.NANOSENTRI_SIMILAR_INCIDENTS_MIN_SCORE = 0.99
    assert incident_selectors.incidents_similar("heater not working", asset="WXT536-02") == []


def test_top_k_limits_the_list(technician, assets, settings):
    settings.NANOSENTRI_SIMILAR_INCIDENTS_MIN_SCORE = 0.05
    for n in range(5):
        _resolved(technician, assets["WXT536-01"], **{**HEATER, "title": f"heater not working ({n})"})

    assert len(incident_selectors.incidents_similar("heater not working", asset="WXT536-02")) == 3
    assert len(incident_selectors.incidents_similar("heater not working", asset="WXT536-02", top_k=2)) == 2


def test_an_empty_index_and_a_question_of_only_ids_find_nothing(assets):
    assert incident_selectors.incidents_similar("heater not working") == []
    assert incident_selectors.incidents_similar("WXT536-02") == []


def test_resolving_queues_the_embedding_and_reopening_drops_it(technician, assets, django_capture_on_commit_callbacks):
    from apps.incidents.tasks import incident_index_task

    with mock.patch.object(incident_index_task, "delay", side_effect=lambda pk: incident_index_task.apply(args=[pk])):
        with django_capture_on_commit_callbacks(execute=True):
            incident = incident_create(reporter=technician, asset=assets["WXT536-01"], **HEATER)
        assert _stored_ids() == []  # open: nothing queued
        with django_capture_on_commit_callbacks(execute=True):
            incident_update(incident=incident, actor=technician, status=Incident.Status.RESOLVED)
        assert _stored_ids() == [f"incident-{incident.pk}"]
        with django_capture_on_commit_callbacks(execute=True):
            incident_update(incident=incident, actor=technician, status=Incident.Status.OPEN)
        assert _stored_ids() == []


def test_reindex_incidents_rebuilds_the_collection_from_the_database(technician, assets):
    resolved = _resolved(technician, assets["WXT536-01"], index=False, **HEATER)
    closed = _resolved(technician, assets["EVSE-01"], status=Incident.Status.CLOSED, index=False, **CHARGER_HOT)
    _resolved(technician, assets["WXT536-03"], status=Incident.Status.OPEN, index=False, **REBOOTS)
    stale = _resolved(technician, assets["WXT536-03"], **{**REBOOTS, "title": "stale"})
    Incident.objects.filter(pk=stale.pk).update(status=Incident.Status.OPEN)  # reopened, never re-indexed

    out = StringIO()
    call_command("reindex_incidents", stdout=out)

    assert "Indexed 2 resolved or closed incidents." in out.getvalue()
    assert sorted(_stored_ids()) == sorted([f"incident-{resolved.pk}", f"incident-{closed.pk}"])


def test_the_web_process_reopens_embedded_chroma_when_the_worker_wrote(technician, assets, settings, tmp_path):
    """A separate index object stands for the worker process; only the generation counter tells the reader."""
    from chromadb.api.shared_system_client import SharedSystemClient

    settings.NANOSENTRI_VECTOR_STORE = "chroma"
    settings.CHROMA_DIR = tmp_path / "chroma"
    try:
        assert incident_selectors.incidents_similar("heater not working", asset="WXT536-02") == []  # the reader is open
        reader = similar_index.get_incident_index()
        incident = _resolved(technician, assets["WXT536-01"], index=False, **HEATER)
        worker = open_search_index(settings.NANOSENTRI_CHROMA_INCIDENT_COLLECTION, fresh=True)
        entry = similar_index.incident_entry(incident, similar_index.Identifiers())
        worker.add_entries([entry], similar_index.get_embedder().embed([entry.embed_text]))

        with mock.patch.object(reader, "refresh", wraps=reader.refresh) as refresh:
            assert _ids(incident_selectors.incidents_similar("heater not working", asset="WXT536-02")) == [incident.pk]
            assert refresh.call_count == 1
            incident_selectors.incidents_similar("heater not working", asset="WXT536-02")
            assert refresh.call_count == 1  # nothing written since: no re-open
    finally:
        reset_vector_index()
        SharedSystemClient.clear_system_cache()


# ------------------------------------------------------------------------------ the answer


def _events(question, **kwargs):
    conversation = services.conversation_for(user=None, title=question)
    return list(services.answer_stream(question=question, conversation=conversation, **kwargs))


def test_the_incidents_come_before_the_first_token_and_are_stored(technician, assets):
    incident = _resolved(technician, assets["WXT536-01"], **HEATER)

    events = _events("heater not working on WXT536-02, fuse?")

    kinds = [e["type"] for e in events]
    assert kinds[:4] == ["accepted", "citations", "extract", "similar_incidents"]
    assert kinds.index("similar_incidents") < kinds.index("token")
    frame = events[3]
    assert frame["message"] == events[0]["message"] and _ids(frame["items"]) == [incident.pk]
    answer = Message.objects.get(pk=frame["message"])
    assert answer.similar_incidents == frame["items"]
    assert events[-1]["status"] == "completed"  # no manual, but the past incident is evidence
    assert "similar_ms" in events[-1]["timings"]


def test_without_similar_incidents_the_frame_is_empty_and_the_answer_not_covered(technician, assets):
    events = _events("heater not working on WXT536-02?")

    frame = next(e for e in events if e["type"] == "similar_incidents")
    assert frame["items"] == []
    assert events[-1]["status"] == "not_covered"
    assert Message.objects.get(pk=frame["message"]).similar_incidents == []


@pytest.mark.parametrize("in_prompt", [1, 2])
def test_the_model_gets_the_top_incidents_in_its_prompt(technician, assets, settings, in_prompt):
    settings.NANOSENTRI_SIMILAR_INCIDENTS_MIN_SCORE = 0.05
    settings.NANOSENTRI_SIMILAR_INCIDENTS_IN_PROMPT = in_prompt
    for n in range(3):
        _resolved(technician, assets["WXT536-01"], **{**HEATER, "title": f"heater not working ({n})"})

    with mock.patch("apps.chat.services.build_prompt", wraps=build_prompt) as spy:
        events = _events("heater not working on WXT536-02")

    shown = next(e for e in events if e["type"] == "similar_incidents")["items"]
    assert len(shown) == 3
    assert spy.call_args.kwargs["incidents"] == shown[:in_prompt]
    prompt = build_prompt(*spy.call_args.args, **spy.call_args.kwargs)  # the same (deterministic) prompt
    user = prompt.messages[-1].content
    assert (
        f'Similar past incident (resolved): "{shown[0]["title"]}". The cause was: blown heater fuse F2. '
        "It was fixed by: replaced fuse F2." in user
    )
    assert (f'"{shown[1]["title"]}"' in user) is (in_prompt == 2)
    assert f'"{shown[2]["title"]}"' not in user
    assert user.index("Similar past incident") < user.index("Question:")


def test_an_unreadable_incident_index_does_not_cost_the_answer(technician, assets):
    with mock.patch("apps.incidents.selectors.incidents_similar", side_effect=RuntimeError("chroma is gone")):
        events = _events("heater not working on WXT536-02?")

    frame = next(e for e in events if e["type"] == "similar_incidents")
    assert frame["items"] == [] and events[-1]["type"] == "done"


def test_ask_json_and_text_show_the_similar_incidents(technician, assets):
    incident = _resolved(technician, assets["WXT536-01"], **HEATER)

    out = StringIO()
    call_command("ask", "heater not working on WXT536-02, fuse?", "--json", stdout=out, stderr=StringIO())
    result = json.loads(out.getvalue())
    assert result["similar_incidents"][0]["id"] == incident.pk
    assert set(result["similar_incidents"][0]) == {"id", "title", "cause", "remedy", "score"}

    out = StringIO()
    call_command("ask", "heater not working on WXT536-02, fuse?", stdout=out, stderr=StringIO())
    assert "Similar past incidents:" in out.getvalue()
    assert f"#{incident.pk} {HEATER['title']}" in out.getvalue()


def test_the_chat_page_shows_stored_incidents_escaped(client, technician, assets):
    incident = _resolved(technician, assets["WXT536-01"], **{**HEATER, "title": "<script>alert(1)</script> heater"})
    conversation = services.conversation_for(user=technician, title="heater")
    list(services.answer_stream(question="heater not working on WXT536-02, fuse?", conversation=conversation))
    client.force_login(technician)

    html = client.get(f"/chat/{conversation.pk}/").content.decode()

    assert "Similar past incidents" in html
    assert f'href="/incidents/{incident.pk}/"' in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt; heater" in html and "<script>alert(1)" not in html
    assert "blown heater fuse F2" in html


# ------------------------------------------------------------------------------ the prompt


def test_the_incident_block_is_short_title_cause_remedy():
    block = format_incidents([
        {"title": "T", "cause": "c " * 300, "remedy": "r.", "id": 1, "score": 0.9},
        {"title": "U", "cause": "d", "remedy": "s"},
    ])

    lines = block.splitlines()
    assert lines[0].startswith('Similar past incident (resolved): "T". The cause was: c c')
    assert lines[0].endswith(" …. It was fixed by: r.") and len(lines[0]) < 300
    assert lines[1] == 'Similar past incident (resolved): "U". The cause was: d. It was fixed by: s.'
    assert format_incidents([]) == ""


def test_incidents_are_dropped_after_passages_to_fit_the_budget():
    from ingest.index import Passage

    passages = [Passage(n, f"m{n}.pdf", 1, 0, " ".join(f"p{n}w{i}" for i in range(60)), 0.9) for n in range(3)]
    incidents = [{"title": f"incident {n}", "cause": "x " * 40, "remedy": "y " * 40} for n in range(2)]
    roomy = build_prompt("Why?", passages, MockLanguageModel(4096), max_new_tokens=100, incidents=incidents)
    assert roomy.incidents == incidents and roomy.trimmed == 0

    tight = build_prompt("Why?", passages, MockLanguageModel(330), max_new_tokens=100, incidents=incidents)

    assert len(tight.passages) == 1 and len(tight.incidents) < 2  # passages go first, then incidents
    assert tight.prompt_tokens <= 330 - 100


def test_an_incident_alone_is_kept_as_the_evidence():
    incidents = [{"title": "heater dead", "cause": "fuse", "remedy": "new fuse"}]

    prompt = build_prompt("Why?", [], MockLanguageModel(400), max_new_tokens=100, incidents=incidents)

    assert prompt.incidents == incidents
    assert '"heater dead". The cause was: fuse. It was fixed by: new fuse.' in prompt.messages[-1].content


# ------------------------------------------------------------------------------ real stack

SIBLING_QUESTION = "the heating on WXT536-02 seems dead, ice on the sensor"
REAL_HEATER = dict(
    title="WXT536 heater not working",
    failure_class="WXT536",
    symptom="Heater current 0 A in freezing weather, wind and rain readings missing",
    cause="blown heater fuse F2",
    remedy="replaced fuse",
)


@pytest.fixture
def fresh_incident_index():
    yield
    reset_vector_index()


@pytest.mark.integration
@pytest.mark.django_db
def test_a_past_fix_on_a_sibling_asset_reaches_the_model_before_its_first_token(
    real_stack, fresh_incident_index, technician, assets
):
    heater = _resolved(technician, assets["WXT536-01"], **REAL_HEATER)
    reboots = _resolved(technician, assets["WXT536-03"], **REBOOTS)  # same type, another fault
    charger = _resolved(technician, assets["EVSE-01"], **CHARGER_HOT)  # another type

    # Plain similarity, no device type: the heater fault wins on the wording alone.
    scores = {i["id"]: i["score"] for i in incident_selectors.incidents_similar(SIBLING_QUESTION.replace("WXT536-02 ", ""),
                                                                     min_score=-1)}
    print("MiniLM scores:", {"heater": scores[heater.pk], "reboots": scores[reboots.pk], "charger": scores[charger.pk]})
    assert scores[heater.pk] >= real_stack.NANOSENTRI_SIMILAR_INCIDENTS_MIN_SCORE
    assert scores[heater.pk] > scores[reboots.pk] + 0.1 and scores[heater.pk] > scores[charger.pk]

    with mock.patch("apps.chat.services.build_prompt", wraps=build_prompt) as spy:
        events = _events(SIBLING_QUESTION)  # WXT536-02 is recognised in the question

    kinds = [e["type"] for e in events]
    frame = events[kinds.index("similar_incidents")]
    assert kinds.index("similar_incidents") < kinds.index("token")
    found = _ids(frame["items"])
    assert found[0] == heater.pk
    assert reboots.pk not in found  # same type, below the minimum score
    assert charger.pk not in found  # another type: 0.42 is under the higher bar for those
    assert frame["items"][0]["cause"] == "blown heater fuse F2" and frame["items"][0]["asset"] == "WXT536-01"
    prompt = build_prompt(*spy.call_args.args, **spy.call_args.kwargs)
    assert (
        '"WXT536 heater not working". The cause was: blown heater fuse F2. It was fixed by: replaced fuse.'
        in prompt.messages[-1].content
    )
    done = events[-1]
    assert done["status"] == "completed" and done["answer"]
    print("answer:", done["answer"])
    assert Message.objects.get(pk=done["message"]).similar_incidents == frame["items"]


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_a_real_worker_embeds_a_resolved_incident_and_the_web_process_sees_it(
    worker_factory, fresh_incident_index, monkeypatch, technician, assets
):
    import time

    from django.conf import settings

    # The worker writes the same (per-test) collection the test process reads.
    monkeypatch.setenv("NANOSENTRI_CHROMA_INCIDENT_COLLECTION", settings.NANOSENTRI_CHROMA_INCIDENT_COLLECTION)
    incident = incident_create(reporter=technician, asset=assets["WXT536-01"], **REAL_HEATER)
    assert incident_selectors.incidents_similar(SIBLING_QUESTION) == []  # the web process's reader is open (and empty)
    worker_factory()

    def wait(condition, what, timeout=120):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition():
                return
            time.sleep(0.5)
        raise AssertionError(f"the worker never {what}")

    incident_update(incident=incident, actor=technician, status=Incident.Status.RESOLVED)  # queued on commit
    wait(lambda: _ids(incident_selectors.incidents_similar(SIBLING_QUESTION)) == [incident.pk], "embedded the incident")

    incident_update(incident=Incident.objects.get(pk=incident.pk), actor=technician, status=Incident.Status.OPEN)
    assert incident_selectors.incidents_similar(SIBLING_QUESTION) == []  # at once: the database says it is open
    wait(lambda: similar_index.get_incident_index().fresh().count() == 0, "dropped the reopened incident")


# The similar_incidents frame as the consumer sends it (items and the server-rendered html).
SIMILAR_FRAME = {"type": "similar_incidents", "message": 41, "items": [
    {"id": 7, "title": "<img src=x onerror=alert(1)> heater not working", "cause": "blown heater fuse F2",
     "remedy": "replaced fuse", "resolved": "2026-01-12", "asset": "WXT536-01", "score": 0.6123, "url": "/incidents/7/"}]}

FAKE_SOCKET = """
window.__sent = [];
window.WebSocket = class {
  static CONNECTING = 0;
  static OPEN = 1;
  constructor(url) {
    this.readyState = 0; this.listeners = {};
    setTimeout(() => { this.readyState = 1; this.emit("open", {}); this.frame({type: "ready"}); }, 0);
  }
  addEventListener(kind, fn) { (this.listeners[kind] = this.listeners[kind] || []).push(fn); }
  emit(kind, event) { (this.listeners[kind] || []).forEach((fn) => fn(event)); }
  frame(obj) { this.emit("message", {data: JSON.stringify(obj)}); }
  send(text) {
    window.__sent.push(JSON.parse(text));
    const m = 41;
    const frames = [
      {type: "accepted", conversation: 5, message: m},
      {type: "citations", message: m, items: [], retrieval_ms: 1},
      window.__similar,
    ];
    frames.forEach((f, i) => setTimeout(() => this.frame(f), 10 * i));
    window.__finish = () => {
      this.frame({type: "token", message: m, text: "Check fuse F2."});
      this.frame({type: "done", message: m, status: "completed", answer: "Check fuse F2.", html: "<p>Check fuse F2.</p>",
                  timings: {}});
    };
  }
  close() {}
};
"""


@pytest.mark.browser
@pytest.mark.django_db
def test_the_browser_shows_the_incidents_frame_before_the_answer_as_text(client, technician):
    from apps.chat.rendering import evidence_html
    from tests.browser_support import chat_page, chromium

    client.force_login(technician)
    page_html = client.get("/chat/").content.decode()
    with chromium() as browser:
        page = chat_page(browser, page_html, f"window.__similar = {json.dumps(evidence_html(SIMILAR_FRAME))};" + FAKE_SOCKET)
        page.fill("#question", "the heating on WXT536-02 seems dead")
        page.click("#ask")
        page.wait_for_selector(".similar-incidents .similar-incident")

        item = page.locator(".similar-incident").first
        assert page.locator(".msg-assistant .answer").first.inner_text() == ""  # before the first token
        assert item.locator("a.similar-link").get_attribute("href") == "/incidents/7/"
        assert item.locator("a.similar-link").inner_text() == "#7 <img src=x onerror=alert(1)> heater not working"
        assert page.locator(".similar-incidents img").count() == 0  # text, not markup
        assert "Cause: blown heater fuse F2" in item.inner_text() and "Remedy: replaced fuse" in item.inner_text()
        assert "resolved 2026-01-12" in item.inner_text() and "score 0.61" in item.inner_text()
        # After the citations, before the answer.
        order = page.evaluate("""() => [...document.querySelector('article.msg-assistant').children]
                                   .map((e) => e.className.split(' ')[0])""")
        assert order.index("citations") < order.index("similar-incidents") < order.index("answer")
        page.evaluate("window.__finish()")
        page.wait_for_selector("article.msg-assistant[data-status=completed]")
        assert page.locator(".similar-incident").count() == 1


def test_the_link_is_kept_only_where_the_asker_may_open_the_incident(technician, supervisor, assets, django_user_model):
    from django.contrib.auth.models import Group

    incident = _resolved(technician, assets["WXT536-01"], **HEATER)
    sibling_tech = django_user_model.objects.create_user("dave", password="pw")
    sibling_tech.groups.add(Group.objects.get(name="technician"))
    assets["WXT536-02"].technicians.add(sibling_tech)

    def shown_to(user):
        conversation = services.conversation_for(user=user, title="heater")
        events = services.answer_stream(question="heater not working on WXT536-02", conversation=conversation)
        return next(e for e in events if e["type"] == "similar_incidents")["items"]

    for user in (technician, supervisor):  # the reporter, and someone who sees every incident
        (item,) = shown_to(user)
        assert item["url"] == f"/incidents/{incident.pk}/"
    (item,) = shown_to(sibling_tech)  # another asset's incident: the fix, but not the page
    assert item["url"] is None
    assert (item["cause"], item["remedy"]) == ("blown heater fuse F2", "replaced fuse F2")
