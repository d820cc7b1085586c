"""Incident writes (create, update, audit trail, status moves, feedback) and the prefill from a chat."""
from unittest import mock

import pytest
from django.core.exceptions import ValidationError
from django.http import Http404

from apps.chat.models import Conversation, Message
from apps.incidents.models import Incident, IncidentEvent
from apps.incidents.prefill import incident_prefill, incident_sources
from apps.incidents.search import fts_match_expression
from apps.incidents.services import (
    feedback_turn_into_incident,
    incident_create,
    incident_report,
    incident_update,
)
from tests import incident_factories as f

pytestmark = pytest.mark.database


def _open(reporter, **fields):
    fields = {"title": "Heater dead", "symptom": "No heater current at -15 °C", **fields}
    return incident_create(reporter=reporter, **fields)


# --- create and audit trail -------------------------------------------------------------------


def test_it_creates_with_a_created_event(technician):
    asset = f.asset()
    incident = _open(technician, asset=asset, priority=Incident.Priority.HIGH)

    event = incident.events.get()
    assert event.kind == IncidentEvent.Kind.CREATED and event.actor == technician
    assert event.changes["title"] == ["", "Heater dead"]
    assert event.changes["priority"] == ["", "High"]  # labels, not choice keys
    assert event.changes["asset"] == ["", str(asset)]
    assert incident.reporter == technician and incident.status == Incident.Status.OPEN


def test_it_refuses_unknown_fields(technician):
    with pytest.raises(TypeError):
        _open(technician, summary_is_draft=True)


def test_it_needs_a_title_and_symptom(technician):
    with pytest.raises(ValidationError) as exc:
        incident_create(reporter=technician, title=" ", symptom="")

    assert set(exc.value.message_dict) == {"title", "symptom"}
    assert not Incident.objects.exists()


def test_it_links_the_conversation_citations_and_live_context(technician):
    message = f.chat_answer(technician)

    incident = _open(technician, conversation=message.conversation)

    assert list(incident.conversations.all()) == [message.conversation]
    assert list(incident.citations.all()) == list(message.citations.all())
    assert incident.live_context == f.LIVE


def test_it_records_each_change_old_to_new(technician, supervisor):
    incident = _open(technician)

    incident_update(incident=incident, actor=supervisor, priority="critical", assignee=technician,
                    title="Heater dead", note="escalated")

    event = incident.events.last()
    assert event.kind == IncidentEvent.Kind.UPDATED and event.actor == supervisor
    assert event.changes == {"priority": ["Normal", "Critical"], "assignee": ["", "bob"]}
    assert event.note == "escalated"


def test_an_update_without_changes_writes_no_event(technician):
    incident = _open(technician)

    incident_update(incident=incident, actor=technician, title="Heater dead")

    assert incident.events.count() == 1


def test_downtime_cannot_end_before_it_starts(technician):
    from django.utils import timezone

    now = timezone.now()
    incident = _open(technician)
    with pytest.raises(ValidationError) as exc:
        incident_update(incident=incident, actor=technician, downtime_start=now, downtime_end=now.replace(year=2000))

    assert "downtime_end" in exc.value.message_dict


# --- status moves -----------------------------------------------------------------------------


def test_resolving_needs_cause_and_remedy(technician):
    incident = _open(technician)

    with pytest.raises(ValidationError) as exc:
        incident_update(incident=incident, actor=technician, status=Incident.Status.RESOLVED)

    assert set(exc.value.message_dict) == {"cause", "remedy"}
    incident.refresh_from_db()
    assert incident.status == Incident.Status.OPEN and incident.events.count() == 1


def test_it_resolves_closes_and_reopens(technician, django_capture_on_commit_callbacks):
    incident = _open(technician)
    with mock.patch("apps.incidents.tasks.incident_index_task.delay") as delay:
        with django_capture_on_commit_callbacks(execute=True):
            incident = incident_update(incident=incident, actor=technician, status="resolved",
                                       cause="Blown fuse F2", remedy="Replaced fuse F2")
    delay.assert_called_once_with(incident.pk)  # resolved incidents are embedded for "similar incidents"
    assert incident.resolved_at is not None and incident.closed_at is None
    event = incident.events.last()
    assert event.kind == IncidentEvent.Kind.STATUS
    assert event.changes["status"] == ["Open", "Resolved"]

    incident = incident_update(incident=incident, actor=technician, status="closed")
    assert incident.closed_at is not None

    with pytest.raises(ValidationError):
        incident_update(incident=incident, actor=technician, status="resolved")  # closed → resolved is no move

    incident = incident_update(incident=incident, actor=technician, status="open", note="came back")
    assert incident.resolved_at is None and incident.closed_at is None
    assert incident.events.last().changes["status"] == ["Closed", "Open"]


def test_an_unknown_status_is_refused(technician):
    with pytest.raises(ValidationError):
        incident_update(incident=_open(technician), actor=technician, status="exploded")


# --- reporting from a chat, feedback ---------------------------------------------------------


def test_an_unedited_draft_summary_stays_marked_as_draft(technician):
    message = f.chat_answer(technician)
    prefill = incident_prefill(user=technician, message=message)

    incident = incident_report(reporter=technician, conversation=message.conversation,
                               draft_summary=prefill["draft_summary"],
                               **{**prefill["initial"], "summary": prefill["draft_summary"].replace("\n", "\r\n")})

    assert incident.summary_is_draft is True
    incident_update(incident=incident, actor=technician, summary="Fuse F2 blew; replaced.")
    incident.refresh_from_db()
    assert incident.summary_is_draft is False


def test_an_edited_summary_is_not_a_draft(technician):
    message = f.chat_answer(technician)
    prefill = incident_prefill(user=technician, message=message)

    incident = incident_report(reporter=technician, conversation=message.conversation,
                               draft_summary=prefill["draft_summary"],
                               **{**prefill["initial"], "summary": "My own words."})

    assert incident.summary_is_draft is False


def test_it_turns_feedback_into_an_incident(technician, supervisor):
    feedback = f.thumbs_down(f.chat_answer(technician), technician)

    incident = incident_report(reporter=supervisor, conversation=feedback.message.conversation, feedback=feedback,
                               title="Answer missed the relay", symptom="Heater dead")

    feedback.refresh_from_db()
    assert feedback.incident == incident
    assert feedback.reviewed_by == supervisor and feedback.reviewed_at is not None
    assert feedback.review_note == f"Turned into incident #{incident.pk}"
    assert incident.events.filter(kind=IncidentEvent.Kind.LINKED).exists()


def test_feedback_becomes_one_incident_only(technician, supervisor):
    feedback = f.thumbs_down(f.chat_answer(technician), technician)
    first = incident_report(reporter=supervisor, feedback=feedback, title="One", symptom="x")

    with pytest.raises(ValidationError):
        incident_report(reporter=supervisor, feedback=feedback, title="Two", symptom="x")

    # The second incident was rolled back with the refused review.
    assert list(Incident.objects.values_list("title", flat=True)) == ["One"]
    with pytest.raises(ValidationError):
        feedback_turn_into_incident(feedback=feedback, incident=_open(supervisor), reviewer=supervisor)
    feedback.refresh_from_db()
    assert feedback.incident == first


# --- prefill ----------------------------------------------------------------------------------


def test_it_prefills_from_an_answer(technician):
    f.asset()
    message = f.chat_answer(technician)

    prefill = incident_prefill(user=technician, message=message)

    initial = prefill["initial"]
    assert initial["title"] == f.QUESTION
    assert initial["symptom"].startswith(f.QUESTION)
    assert "- [high] Heater current 0 A while the ambient temperature is -15.2 °C" in initial["symptom"]
    assert initial["asset"] == Incident._meta.get_field("asset").related_model.objects.get(asset_id="WXT536-01").pk
    assert initial["failure_class"] == "WXT536"
    assert initial["priority"] == "high"  # the worst finding
    summary = initial["summary"]
    assert summary.startswith(f"Question: {f.QUESTION}")
    assert "Draft" not in summary  # the page marks it as a draft; the text does not carry it
    assert "WXT530_User_Guide.pdf, page 42" in summary and f.ANSWER in summary
    assert prefill["findings"] == f.LIVE["findings"]
    assert prefill["conversation"] == message.conversation


def test_it_prefills_from_a_conversation_with_its_last_answer(technician):
    first = f.chat_answer(technician, question="First question?", live=None, cited=False)
    later = f.chat_answer(technician, question="Heater still dead after the reset?" + " really" * 30,
                          conversation=first.conversation)

    prefill = incident_prefill(user=technician, conversation=first.conversation)

    assert prefill["message"] == later
    assert prefill["question"].startswith("Heater still dead")
    assert len(prefill["initial"]["title"]) <= 120 and prefill["initial"]["title"].endswith("…")
    # No asset registered: the device type from the snapshot is still the failure class.
    assert prefill["initial"]["asset"] is None and prefill["initial"]["failure_class"] == "WXT536"


def test_an_answer_without_live_context_uses_the_conversations_last_snapshot(technician):
    first = f.chat_answer(technician)
    later = f.chat_answer(technician, question="And now?", live=None, conversation=first.conversation)

    prefill = incident_prefill(user=technician, message=later)

    assert prefill["findings"] == f.LIVE["findings"] and prefill["question"] == "And now?"


def test_prefill_refuses_someone_elses_conversation(technician, supervisor):
    message = f.chat_answer(supervisor)

    with pytest.raises(PermissionError):
        incident_prefill(user=technician, message=message)


def test_sources_are_only_your_own_conversations(technician, supervisor):
    mine = f.chat_answer(technician)
    theirs = f.chat_answer(supervisor)

    assert incident_sources(user=technician, message_id=str(mine.pk)).conversation == mine.conversation
    for kwargs in (
        {"conversation_id": theirs.conversation_id},
        {"message_id": theirs.pk},
        {"message_id": Message.objects.get(conversation=mine.conversation, role="user").pk},  # a question
        {"message_id": mine.pk, "conversation_id": theirs.conversation_id},
        {"conversation_id": "1 OR 1=1"},
        {"conversation_id": 999999},
    ):
        with pytest.raises(Http404):
            incident_sources(user=technician, **kwargs)
    assert Conversation.objects.count() == 2


def test_a_reviewer_reaches_a_conversation_through_its_feedback(technician, supervisor):
    feedback = f.thumbs_down(f.chat_answer(technician), technician)

    with pytest.raises(Http404):
        incident_sources(user=technician, feedback_id=feedback.pk)  # no review permission
    sources = incident_sources(user=supervisor, feedback_id=feedback.pk)
    assert sources.message == feedback.message and sources.feedback == feedback

    prefill = incident_prefill(user=supervisor, message=sources.message, feedback=sources.feedback)
    assert "Did not mention the heater relay." in prefill["initial"]["summary"]


# --- search input -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text,expected",
    [
        ("heaters", '"heaters"'),
        ('heater"', '"heater"'),
        ("AND (", '"AND"'),
        ("WXT536-01 fuse", '"WXT536 01" "fuse"'),
        ('NEAR(a b) title:x *', '"NEAR a" "b" "title x"'),
        ('"" () ^ -', ""),
    ],
)
def test_fts_queries_are_built_only_from_quoted_words(text, expected):
    assert fts_match_expression(text) == expected
