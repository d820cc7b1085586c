"""The incident pages: list (filters, search, sort, pages, CSV), detail, new from a chat, edit, resolve."""
import csv
import io
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from apps.incidents.models import Incident, IncidentEvent
from apps.incidents.services import incident_create, incident_update
from tests import incident_factories as f

pytestmark = pytest.mark.database

LIST_URL = "/incidents/"
EXPORT_URL = "/incidents/export.csv"
NEW_URL = "/incidents/new/"


def _open(reporter, title="Heater dead", **fields):
    return incident_create(reporter=reporter, title=title, symptom=fields.pop("symptom", "No heater current"), **fields)


def _ids(response):
    return [i.pk for i in response.context["incidents"]]


@pytest.fixture
def tech_client(client, technician):
    client.force_login(technician)
    return client


@pytest.fixture
def sup_client(client, supervisor):
    client.force_login(supervisor)
    return client


# --- access and visibility --------------------------------------------------------------------


@pytest.mark.parametrize("url", [LIST_URL, EXPORT_URL, NEW_URL])
def test_anonymous_users_are_sent_to_the_login_page(client, db, url):
    response = client.get(url)

    assert response.status_code == 302 and response["Location"].startswith("/login/?next=")


def test_users_without_a_role_are_forbidden(client, outsider, technician):
    incident = _open(technician)
    client.force_login(outsider)

    for url in (LIST_URL, NEW_URL, incident.get_absolute_url(), f"/incidents/{incident.pk}/edit/"):
        assert client.get(url).status_code == 403


def test_a_technician_sees_their_own_and_their_assets_incidents(tech_client, technician, supervisor, admin_user):
    mine = _open(technician, title="Mine")
    on_my_asset = _open(supervisor, title="On my asset", asset=f.asset("WXT536-01", technicians=[technician]))
    assigned = _open(supervisor, title="Assigned to me", assignee=technician)
    other = _open(supervisor, title="Elsewhere", asset=f.asset("WXT536-02", technicians=[admin_user]))

    response = tech_client.get(LIST_URL)

    assert sorted(_ids(response)) == sorted([mine.pk, on_my_asset.pk, assigned.pk])
    for incident in (mine, on_my_asset, assigned):
        assert tech_client.get(incident.get_absolute_url()).status_code == 200
    for url in ("", "edit/", "resolve/"):
        assert tech_client.get(f"{other.get_absolute_url()}{url}").status_code == 404
    assert tech_client.post(f"/incidents/{other.pk}/status/", {"status": "closed"}).status_code == 404


def test_a_supervisor_sees_every_incident(sup_client, technician, admin_user):
    a = _open(technician)
    b = _open(admin_user, asset=f.asset("WXT536-02"))

    assert sorted(_ids(sup_client.get(LIST_URL))) == sorted([a.pk, b.pk])


def test_an_unknown_incident_is_404(sup_client):
    assert sup_client.get("/incidents/12345/").status_code == 404


# --- filters, search, sort, pages ---------------------------------------------------------------


def test_it_filters_by_asset_status_priority_reporter_and_dates(sup_client, technician, supervisor):
    mast = f.asset("WXT536-01")
    a = _open(technician, title="A", asset=mast, priority="high")
    b = _open(supervisor, title="B", priority="high")
    c = _open(technician, title="C", asset=mast)
    incident_update(incident=c, actor=technician, status="in_progress")
    Incident.objects.filter(pk=a.pk).update(created=timezone.now() - timedelta(days=10))

    def ids(**params):
        return sorted(_ids(sup_client.get(LIST_URL, params)))

    assert ids(asset="WXT536-01") == sorted([a.pk, c.pk])
    assert ids(status="in_progress") == [c.pk]
    assert ids(priority="high") == sorted([a.pk, b.pk])
    assert ids(reporter=supervisor.pk) == [b.pk]
    today = timezone.localdate()
    assert ids(created_from=(today - timedelta(days=2)).isoformat()) == sorted([b.pk, c.pk])
    assert ids(created_to=(today - timedelta(days=5)).isoformat()) == [a.pk]
    assert ids(asset="WXT536-01", priority="high") == [a.pk]


def test_invalid_filters_are_reported_and_ignored(sup_client, technician):
    a = _open(technician)

    response = sup_client.get(LIST_URL, {"status": "bogus", "created_from": "yesterday", "asset": "NOPE"})

    assert response.status_code == 200 and _ids(response) == [a.pk]
    assert set(response.context["form"].errors) == {"status", "created_from", "asset"}


def test_search_finds_words_by_their_stem(sup_client, technician):
    heater = _open(technician, title="Heater fuse blown", symptom="Ice on the sensor head")
    _open(technician, title="Wind sensor noisy", symptom="Gusts read 80 m/s")
    by_remedy = _open(technician, title="No data", symptom="Silent")
    incident_update(incident=by_remedy, actor=technician, status="resolved", cause="Cable cut",
                    remedy="Replaced the heaters' supply cable")

    assert sorted(_ids(sup_client.get(LIST_URL, {"q": "heaters"}))) == sorted([heater.pk, by_remedy.pk])
    assert _ids(sup_client.get(LIST_URL, {"q": "heaters fuses"})) == [heater.pk]
    assert _ids(sup_client.get(LIST_URL, {"q": "replacing cables"})) == [by_remedy.pk]
    assert _ids(sup_client.get(LIST_URL, {"q": "pump"})) == []


def test_search_keeps_up_with_edits(sup_client, technician):
    incident = _open(technician, title="Pump seal leaking")
    incident_update(incident=incident, actor=technician, title="Heater dead")

    assert _ids(sup_client.get(LIST_URL, {"q": "heater"})) == [incident.pk]
    assert _ids(sup_client.get(LIST_URL, {"q": "pump"})) == []
    incident.delete()
    assert _ids(sup_client.get(LIST_URL, {"q": "heater"})) == []


def test_search_ranks_title_matches_first(sup_client, technician):
    in_symptom = _open(technician, title="Data gap", symptom="the heater relay clicks")
    in_title = _open(technician, title="Heater relay stuck", symptom="no current")
    Incident.objects.filter(pk=in_title.pk).update(created=timezone.now() - timedelta(days=3))

    response = sup_client.get(LIST_URL, {"q": "heater relay"})

    assert _ids(response) == [in_title.pk, in_symptom.pk]
    assert response.context["sort"] == ""


@pytest.mark.parametrize(
    "text", ['heater"', "AND (", "heater AND", "NEAR(heater", "*", '"', "title:heater", "-", "OR OR", "a\x00b",
             "'; DROP TABLE incidents_incident; --", "héater ünïcode", "x" * 500],
)
def test_hostile_search_text_never_errors(sup_client, technician, text):
    incident = _open(technician, title="Heater dead")

    response = sup_client.get(LIST_URL, {"q": text})

    assert response.status_code == 200
    if text == 'heater"':
        assert _ids(response) == [incident.pk]
    assert Incident.objects.filter(pk=incident.pk).exists()


def test_it_sorts_by_whitelisted_columns(sup_client, technician):
    now = timezone.now()
    low = _open(technician, title="low", priority="low", asset=f.asset("B-1"),
                downtime_start=now - timedelta(hours=5), downtime_end=now)
    crit = _open(technician, title="crit", priority="critical", asset=f.asset("A-1"),
                 downtime_start=now - timedelta(hours=1), downtime_end=now)
    normal = _open(technician, title="normal")
    incident_update(incident=normal, actor=technician, status="in_progress")

    def ids(sort):
        return _ids(sup_client.get(LIST_URL, {"sort": sort}))

    assert ids("priority") == [crit.pk, normal.pk, low.pk]
    assert ids("-priority") == [low.pk, normal.pk, crit.pk]
    assert ids("asset") == [crit.pk, low.pk, normal.pk]  # no asset last
    assert ids("-downtime") == [low.pk, crit.pk, normal.pk]
    assert ids("status") == [crit.pk, low.pk, normal.pk]  # open (newest first), then in progress
    assert ids("created") == [low.pk, crit.pk, normal.pk]
    assert ids("title; DROP") == ids("-created") == [normal.pk, crit.pk, low.pk]

    page = sup_client.get(LIST_URL, {"sort": "-priority"}).content.decode()
    assert 'aria-sort="descending"' in page and "sort=priority" in page  # click again: ascending


def test_it_pages_25_at_a_time_and_keeps_the_filters(sup_client, technician):
    for n in range(30):
        _open(technician, title=f"Incident {n}", priority="high")
    _open(technician, title="Other", priority="low")

    first = sup_client.get(LIST_URL, {"priority": "high", "sort": "created"})
    second = sup_client.get(LIST_URL, {"priority": "high", "sort": "created", "page": 2})

    assert len(_ids(first)) == 25 and len(_ids(second)) == 5
    assert set(_ids(first)).isdisjoint(_ids(second))
    page = first.content.decode()
    assert "?priority=high&amp;sort=created&amp;page=2" in page
    assert 'aria-current="page"' in page


# --- CSV export -------------------------------------------------------------------------------


def _rows(response):
    return list(csv.reader(io.StringIO(response.content.decode("utf-8"))))


def test_it_exports_the_filtered_list_as_csv(sup_client, technician):
    now = timezone.now()
    wanted = _open(technician, title="Heater dead", priority="high", asset=f.asset(),
                   downtime_start=now - timedelta(minutes=90), downtime_end=now, downtime_kind="unplanned")
    _open(technician, title="Other", priority="low")

    response = sup_client.get(EXPORT_URL, {"priority": "high", "page": 3})

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert response["Content-Disposition"].startswith('attachment; filename="incidents-')
    header, *rows = _rows(response)
    assert header[:4] == ["id", "created", "asset", "title"]
    assert len(rows) == 1
    row = dict(zip(header, rows[0]))
    assert row["id"] == str(wanted.pk) and row["asset"] == "WXT536-01" and row["priority"] == "High"
    assert row["downtime_minutes"] == "90" and row["downtime_kind"] == "Unplanned" and row["reporter"] == "bob"


def test_csv_cells_cannot_start_a_formula(sup_client, technician):
    _open(technician, title='=HYPERLINK("http://evil","x")', symptom="+1+cmd|' /C calc'!A0",
          failure_class="@SUM(A1)", downtime_reason="-2+3")

    header, row = _rows(sup_client.get(EXPORT_URL))
    row = dict(zip(header, row))

    assert row["title"] == "'=HYPERLINK(\"http://evil\",\"x\")"
    assert row["symptom"].startswith("'+1") and row["failure_class"] == "'@SUM(A1)"
    assert row["downtime_reason"] == "'-2+3"


def test_technicians_cannot_export(tech_client):
    assert tech_client.get(EXPORT_URL).status_code == 403
    assert "Export CSV" not in tech_client.get(LIST_URL).content.decode()


# --- detail -----------------------------------------------------------------------------------


def test_the_detail_shows_transcript_citations_live_context_and_history(tech_client, technician, supervisor):
    message = f.chat_answer(technician, question="Heater <script>alert(1)</script> dead?")
    incident = _open(technician, conversation=message.conversation, asset=f.asset(),
                     downtime_start=timezone.now() - timedelta(hours=2, minutes=5), downtime_end=timezone.now())
    incident_update(incident=incident, actor=supervisor, priority="critical", note="customer site")

    page = tech_client.get(incident.get_absolute_url()).content.decode()

    assert "Heater &lt;script&gt;alert(1)&lt;/script&gt; dead?" in page and "<script>alert(1)" not in page
    assert "<strong>heater fuse</strong>" in page  # the answer's markdown, rendered and sanitized
    assert f'href="#cite-{message.pk}-1"' in page and f'id="cite-{message.pk}-1"' in page
    citation = message.citations.get()
    assert f'href="{citation.url}"' in page and "page=42" in citation.url
    assert "Heater fuse F2 protects the 24 V heater supply." in page  # key lines
    assert "Heater current 0 A while the ambient temperature is -15.2 °C" in page  # live findings
    assert "HEAT_CURRENT" in page  # readings
    assert "2 h 05 min" in page  # downtime duration
    assert "Normal</del>" in page and "Critical</ins>" in page and "customer site" in page
    assert "carol" in page  # who changed it


def test_the_detail_shows_linked_feedback(sup_client, technician, supervisor):
    feedback = f.thumbs_down(f.chat_answer(technician), technician)
    incident = _open(supervisor)
    feedback.incident = incident
    feedback.save()

    page = sup_client.get(incident.get_absolute_url()).content.decode()

    assert "Answer feedback" in page and "Did not mention the heater relay." in page


# --- new, from a chat -------------------------------------------------------------------------


def test_the_chat_links_to_a_new_incident(tech_client, technician):
    message = f.chat_answer(technician)

    page = tech_client.get(f"/chat/{message.conversation_id}/").content.decode()

    assert f"{NEW_URL}?conversation={message.conversation_id}" in page
    assert f"{NEW_URL}?message={message.pk}" in page


def test_it_prefills_the_form_from_an_answer(tech_client, technician):
    f.asset()
    message = f.chat_answer(technician)

    response = tech_client.get(NEW_URL, {"message": message.pk})

    assert response.status_code == 200
    form = response.context["form"]
    assert form["title"].value() == f.QUESTION
    assert form["failure_class"].value() == "WXT536" and form["priority"].value() == "high"
    page = response.content.decode()
    assert "Draft — written from the assistant's answer. Edit it before saving" in page  # the note
    assert "WXT530_User_Guide.pdf — page 42" in page


def test_it_saves_an_incident_from_a_chat(tech_client, technician):
    asset = f.asset()
    message = f.chat_answer(technician)
    form = tech_client.get(NEW_URL, {"conversation": message.conversation_id}).context["form"]
    data = {name: form[name].value() or "" for name in form.fields}

    response = tech_client.post(f"{NEW_URL}?conversation={message.conversation_id}", data)

    incident = Incident.objects.get()
    assert response.status_code == 302 and response["Location"] == incident.get_absolute_url()
    assert incident.reporter == technician and incident.asset == asset
    assert list(incident.conversations.all()) == [message.conversation]
    assert incident.citations.count() == 1 and incident.live_context == f.LIVE
    assert incident.summary_is_draft is True


def test_someone_elses_chat_is_404(tech_client, supervisor):
    theirs = f.chat_answer(supervisor)

    assert tech_client.get(NEW_URL, {"conversation": theirs.conversation_id}).status_code == 404
    assert tech_client.get(NEW_URL, {"message": theirs.pk}).status_code == 404
    assert tech_client.post(f"{NEW_URL}?message={theirs.pk}", {"title": "x", "symptom": "y"}).status_code == 404
    assert tech_client.get(NEW_URL, {"message": "abc"}).status_code == 404
    assert not Incident.objects.exists()


def test_an_invalid_form_keeps_what_was_typed(tech_client):
    response = tech_client.post(NEW_URL, {"title": "", "symptom": "Ice everywhere", "priority": "normal"})

    assert response.status_code == 200 and not Incident.objects.exists()
    assert "Ice everywhere" in response.content.decode()
    assert response.context["form"].errors["title"]


def test_a_supervisor_turns_a_thumbs_down_into_an_incident(sup_client, technician, supervisor):
    feedback = f.thumbs_down(f.chat_answer(technician), technician)
    url = f"{NEW_URL}?feedback={feedback.pk}"
    form = sup_client.get(url).context["form"]
    data = {name: form[name].value() or "" for name in form.fields}

    response = sup_client.post(url, data)

    incident = Incident.objects.get()
    assert response.status_code == 302
    feedback.refresh_from_db()
    assert feedback.incident == incident and feedback.reviewed_by == supervisor
    assert feedback.review_note == f"Turned into incident #{incident.pk}"
    assert list(incident.conversations.all()) == [feedback.message.conversation]
    # Asking again leads to the incident it already became.
    again = sup_client.get(url)
    assert again.status_code == 302 and again["Location"] == incident.get_absolute_url()


def test_technicians_cannot_use_someone_elses_feedback(tech_client, supervisor):
    feedback = f.thumbs_down(f.chat_answer(supervisor), supervisor)

    assert tech_client.get(NEW_URL, {"feedback": feedback.pk}).status_code == 404


# --- edit, resolve, status --------------------------------------------------------------------


def test_a_technician_edits_an_incident_of_their_asset(tech_client, technician, supervisor):
    incident = _open(supervisor, asset=f.asset(technicians=[technician]))
    start = timezone.localtime().replace(second=0, microsecond=0) - timedelta(hours=1)
    form = tech_client.get(f"/incidents/{incident.pk}/edit/").context["form"]
    data = {name: form[name].value() or "" for name in form.fields}
    data.update(priority="high", assignee=technician.pk, downtime_start=start.strftime("%Y-%m-%dT%H:%M"),
                downtime_kind="unplanned", downtime_reason="heater off", note="on my way")

    response = tech_client.post(f"/incidents/{incident.pk}/edit/", data)

    assert response.status_code == 302
    incident.refresh_from_db()
    assert incident.priority == "high" and incident.assignee == technician and incident.downtime_start == start
    event = incident.events.last()
    assert event.actor == technician and event.note == "on my way"
    assert event.changes["priority"] == ["Normal", "High"]


def test_the_edit_form_shows_service_errors_and_loses_nothing(tech_client, technician):
    incident = _open(technician)
    form = tech_client.get(f"/incidents/{incident.pk}/edit/").context["form"]
    data = {name: form[name].value() or "" for name in form.fields}
    data.update(status="resolved", remedy="Replaced fuse F2")  # no cause

    response = tech_client.post(f"/incidents/{incident.pk}/edit/", data)

    assert response.status_code == 200
    assert "Resolving an incident needs its cause." in response.content.decode()
    assert "Replaced fuse F2" in response.content.decode()
    incident.refresh_from_db()
    assert incident.status == "open" and incident.remedy == ""


def test_the_assignee_must_have_a_role(tech_client, technician, outsider):
    incident = _open(technician)
    form = tech_client.get(f"/incidents/{incident.pk}/edit/").context["form"]

    assert outsider not in form.fields["assignee"].queryset
    assert technician in form.fields["assignee"].queryset


def test_resolving_asks_for_cause_and_remedy(tech_client, technician):
    incident = _open(technician, downtime_start=timezone.now() - timedelta(hours=3))
    url = f"/incidents/{incident.pk}/resolve/"
    assert tech_client.get(url).context["form"]["downtime_end"].value() is not None  # proposed: now

    response = tech_client.post(url, {"cause": "", "remedy": "Replaced fuse F2"})
    assert response.status_code == 200 and response.context["form"].errors["cause"]
    assert "Replaced fuse F2" in response.content.decode()

    end = timezone.localtime().replace(second=0, microsecond=0)
    response = tech_client.post(url, {"cause": "Blown fuse F2", "remedy": "Replaced fuse F2",
                                      "root_cause": "Water in the connector",
                                      "downtime_end": end.strftime("%Y-%m-%dT%H:%M")})

    assert response.status_code == 302
    incident.refresh_from_db()
    assert incident.status == "resolved" and incident.resolved_at and incident.downtime_end == end
    assert incident.events.last().kind == IncidentEvent.Kind.STATUS
    # Resolved already: the form sends you back to the incident.
    assert tech_client.get(url).status_code == 302


def test_status_buttons_close_and_reopen(tech_client, technician):
    incident = _open(technician)
    url = f"/incidents/{incident.pk}/status/"

    response = tech_client.post(url, {"status": "closed"}, follow=True)
    assert "Resolving an incident needs its cause." in response.content.decode()
    incident.refresh_from_db()
    assert incident.status == "open"

    incident_update(incident=incident, actor=technician, status="resolved", cause="c", remedy="r")
    tech_client.post(url, {"status": "closed"})
    incident.refresh_from_db()
    assert incident.status == "closed"
    page = tech_client.get(incident.get_absolute_url()).content.decode()
    assert "Reopen" in page and "Resolve…" not in page

    tech_client.post(url, {"status": "open"})
    incident.refresh_from_db()
    assert incident.status == "open" and incident.closed_at is None
    assert tech_client.get(url).status_code == 405


# --- the search index itself ------------------------------------------------------------------


@pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL GIN index")
def test_postgres_search_uses_the_gin_index(technician):
    from apps.incidents.search import incidents_search

    _open(technician, title="Heater dead")
    qs = incidents_search(Incident.objects.all(), "heaters")
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        plan = qs.explain()

    assert "incident_search_gin" in plan


def test_an_empty_list_sorted_but_not_filtered_says_there_are_no_incidents_yet(client, supervisor):
    client.force_login(supervisor)

    page = client.get(LIST_URL + "?sort=-priority").content.decode()

    assert "No incidents yet." in page
    assert "No incident matches these filters" not in page
    assert "No incident matches these filters" in client.get(LIST_URL + "?q=fuse").content.decode()
