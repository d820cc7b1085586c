"""The demo site on first start (``runapp`` with NANOSENTRI_DEMO on, the default of ``make run``).

``demo_seed`` creates, once:

- the site and its three simulated WXT536 stations (``apps.assets.demo``; live readings come
  from ``simulate_sensors --demo``, a process of ``runapp``);
- past incidents of those stations, resolved and closed with cause, remedy and downtime (and
  one still in progress), so the dashboard has numbers and a technician asking about the live
  heater failure is shown how it was fixed before (the worker embeds them, as any resolved
  incident);
- two answers a technician marked as not helpful, for the supervisors' review queue;
- links from the stations to the uploaded manuals of the WXT530 series, if there are any.

Everything is marked: the assets are flagged ``is_demo`` (the pages show a "Demo data" badge),
incident and conversation titles start with "Demo:".

It seeds at most once per data directory (a marker file) and never a database that has assets of
its own or already holds the demo stations, so a restart changes nothing.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from apps.assets.demo import demo_site_ensure
from apps.assets.models import Asset
from apps.incidents.models import Incident, IncidentEvent
from apps.incidents.services import incident_create

MARKER = ".demo-site-seeded"
TITLE_PREFIX = "Demo: "
# The manuals that fit the stations: the WXT530 series (WXT531 ... WXT536), by file name or title.
MANUAL_MATCH = "wxt53"
TECHNICIAN, SUPERVISOR = "technician", "supervisor"  # the demo users (apps.accounts.services)


@dataclass(frozen=True)
class PastIncident:
    station: int  # index into apps.assets.demo.STATIONS: 0 healthy, 1 heater failure, 2 supply drop
    title: str
    failure_class: str
    symptom: str
    cause: str
    remedy: str
    priority: str
    status: str
    days_ago: float  # when it was reported
    repair_hours: float | None  # reported → resolved
    downtime_hours: float | None  # from the report on
    downtime_kind: str = ""
    downtime_reason: str = ""


_HIGH, _NORMAL, _LOW = Incident.Priority.HIGH, Incident.Priority.NORMAL, Incident.Priority.LOW
_RESOLVED, _CLOSED = Incident.Status.RESOLVED, Incident.Status.CLOSED
_UNPLANNED, _PLANNED = Incident.DowntimeKind.UNPLANNED, Incident.DowntimeKind.PLANNED

PAST_INCIDENTS = (
    PastIncident(
        1, "Heater dead during frost, wind readings frozen", "heater",
        "HEAT_CURRENT 0.00 A at −12 °C with STATUS ICE_WARNING; wind speed stuck at 0 m/s: "
        "ice on the transducers.",
        "Blown heater fuse F2 on the terminal board",
        "Replaced fuse F2, measured 24 V at the heater terminals, cleared the ice from the transducers.",
        _HIGH, _CLOSED, days_ago=58, repair_hours=7, downtime_hours=9, downtime_kind=_UNPLANNED,
        downtime_reason="No wind data: sensor head iced up"),
    PastIncident(
        1, "Heater current 0 A again, ice warning", "heater",
        "Heater drawing 0 A at −15 °C, STATUS ICE_WARNING, wind readings dropping out.",
        "Corroded heater supply connector (water ingress)",
        "Cleaned and re-crimped the heater supply connector, sealed it with dielectric grease "
        "and a new cable gland.",
        _HIGH, _RESOLVED, days_ago=19, repair_hours=5, downtime_hours=6, downtime_kind=_UNPLANNED,
        downtime_reason="No wind data: sensor head iced up"),
    PastIncident(
        2, "Station resets several times a night, REF_CHK FAIL", "power supply",
        "EVENT SYSTEM_RESET several times a night and REF_CHK FAIL; V_IN dips to 8–9 V when the "
        "heater switches on.",
        "Undersized supply cable: 40 m of 0.5 mm² drops the voltage under heater load",
        "Pulled a 1.5 mm² supply cable; V_IN is 23.6 V under full heater load.",
        _NORMAL, _CLOSED, days_ago=40, repair_hours=72, downtime_hours=2, downtime_kind=_PLANNED,
        downtime_reason="Supply cable replaced"),
    PastIncident(
        2, "Supply voltage sags to 8 V, station resets", "power supply",
        "V_IN 8.4 V with REF_CHK FAIL and SYSTEM_RESET events, a few minutes at a time.",
        "Failing 24 V power supply unit: its output collapses under load",
        "Replaced the power supply unit; 24.1 V at the station terminals under load.",
        _HIGH, _RESOLVED, days_ago=9, repair_hours=26, downtime_hours=4, downtime_kind=_UNPLANNED,
        downtime_reason="Readings unreliable during the resets"),
    PastIncident(
        0, "Wind direction offset after mast work", "wind sensor",
        "WIND_DIR about 30° off the neighbouring masts since the mast maintenance.",
        "Sensor head turned during mast maintenance: north mark misaligned",
        "Re-aligned the north mark and checked the direction against a compass bearing.",
        _LOW, _CLOSED, days_ago=30, repair_hours=48, downtime_hours=1, downtime_kind=_PLANNED,
        downtime_reason="Realignment"),
    PastIncident(
        0, "Wind readings missing after a storm", "wind sensor",
        "WIND_SPEED and WIND_DIR stopped reporting after the storm; temperature still reported.",
        "Bird nest fouling the transducer area",
        "Removed the nest, cleaned the transducers and fitted a bird spike kit.",
        _NORMAL, _CLOSED, days_ago=72, repair_hours=30, downtime_hours=20, downtime_kind=_UNPLANNED,
        downtime_reason="No wind data"),
    PastIncident(
        2, "Supply drops and resets are back", "power supply",
        "V_IN down to 8.4 V with REF_CHK FAIL and SYSTEM_RESET, a few minutes in every quarter of an hour.",
        "", "", _HIGH, Incident.Status.IN_PROGRESS, days_ago=2, repair_hours=None, downtime_hours=None),
)

# Answers a technician found unhelpful: no manual of the station is uploaded, so the app said so.
# (question, comment, days ago, reviewed with this note or not yet)
UNHELPFUL_ANSWERS = (
    ("Which terminals of the WXT536 take the 24 V supply, and what cable cross-section do I need for 40 m?",
     "There is no WXT536 manual in the library: please upload the Vaisala WXT530 series user guide.", 3, ""),
    ("Where is the heater fuse on the WXT536 terminal board?",
     "I needed the fuse location, got nothing.", 20,
     "Asked the admin to upload the WXT530 series user guide; fuse F2 is in the incident of the "
     "heater failure."),
)


@dataclass
class DemoSeedResult:
    seeded: bool
    reason: str = ""  # why nothing was seeded
    assets: list[str] = field(default_factory=list)
    incidents: int = 0
    answers: int = 0
    manuals: list[str] = field(default_factory=list)


def demo_seed(*, now: datetime | None = None) -> DemoSeedResult:
    """Seed the demo site if this is the first start of a data directory without assets of its own.

    Off (nothing done) when NANOSENTRI_DEMO is false. Returns what was seeded, or why not.
    """
    if not settings.NANOSENTRI_DEMO:
        return DemoSeedResult(False, "NANOSENTRI_DEMO is off")
    marker = Path(settings.DATA_DIR) / MARKER
    if marker.exists():
        return DemoSeedResult(False, "seeded before (first start only)")
    if Asset.objects.filter(is_demo=False).exists():
        _mark(marker, {"skipped": "the site has assets of its own"})
        return DemoSeedResult(False, "this database has assets of its own")
    if Asset.objects.filter(is_demo=True).exists():
        _mark(marker, {"skipped": "demo assets already there"})
        return DemoSeedResult(False, "the demo assets are already there")
    now = now or timezone.now()
    with transaction.atomic():
        result = _seed(now)
    _mark(marker, {"seeded": now.isoformat(), "assets": result.assets})
    return result


def _mark(marker: Path, what: dict) -> None:
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps(what) + "\n")


def _seed(now: datetime) -> DemoSeedResult:
    users = {u.username: u for u in get_user_model().objects.filter(username__in=(TECHNICIAN, SUPERVISOR))}
    technician, supervisor = users.get(TECHNICIAN), users.get(SUPERVISOR)
    assets = demo_site_ensure(technicians=[technician] if technician else [])
    manuals = demo_manuals_link()
    incidents = [_incident(assets[p.station], p, now=now, technician=technician) for p in PAST_INCIDENTS]
    answers = [
        _unhelpful_answer(question, comment, now - timedelta(days=days), technician=technician,
                          reviewer=supervisor, note=note)
        for question, comment, days, note in UNHELPFUL_ANSWERS
    ] if technician else []
    return DemoSeedResult(True, assets=[a.asset_id for a in assets], incidents=len(incidents),
                          answers=len(answers), manuals=manuals)


def demo_manuals_link() -> list[str]:
    """Link the uploaded manuals of the WXT530 series (by file name or title) to every demo station;
    returns their names. ``runapp`` calls it again once the demo manuals of a first start are queued."""
    from apps.assets.demo import demo_assets
    from apps.knowledge.models import Document

    def key(text: str) -> str:
        return re.sub(r"[^a-z0-9]", "", (text or "").lower())

    documents = [d for d in Document.objects.all()
                 if MANUAL_MATCH in key(d.original_name) or MANUAL_MATCH in key(d.title)]
    for asset in demo_assets():
        asset.manuals.add(*documents)
    return sorted(d.original_name for d in documents)


def _incident(asset: Asset, past: PastIncident, *, now: datetime, technician) -> Incident:
    """One past incident, dated as it happened; resolved ones are embedded by the worker on commit."""
    reported = now - timedelta(days=past.days_ago)
    downtime = {}
    if past.downtime_hours is not None:
        downtime = {"downtime_start": reported, "downtime_end": reported + timedelta(hours=past.downtime_hours),
                    "downtime_kind": past.downtime_kind, "downtime_reason": past.downtime_reason}
    incident = incident_create(
        reporter=technician, asset=asset, title=TITLE_PREFIX + past.title, failure_class=past.failure_class,
        symptom=past.symptom, cause=past.cause, remedy=past.remedy, priority=past.priority, status=past.status,
        assignee=technician, note="Demo data", **downtime,
    )
    dates = {"created": reported, "updated": reported}
    if past.repair_hours is not None:
        resolved = reported + timedelta(hours=past.repair_hours)
        closed = resolved if past.status == _CLOSED else None
        dates.update(resolved_at=resolved, updated=resolved, closed_at=closed)
    # created/updated are automatic on save: the past dates are written with update().
    Incident.objects.filter(pk=incident.pk).update(**dates)
    IncidentEvent.objects.filter(incident=incident).update(created=reported)
    return incident


def _unhelpful_answer(question: str, comment: str, when: datetime, *, technician, reviewer, note: str):
    """A chat where the manuals did not cover the question, and the technician's thumbs-down."""
    from apps.chat.models import AnswerFeedback, Conversation, Message
    from apps.chat.prompting import NOT_COVERED

    conversation = Conversation.objects.create(user=technician, title=TITLE_PREFIX + question[:150])
    asked = Message.objects.create(conversation=conversation, role=Message.Role.USER, content=question)
    answer = Message.objects.create(conversation=conversation, role=Message.Role.ASSISTANT, content=NOT_COVERED,
                                    status=Message.Status.NOT_COVERED, completed=when)
    feedback = AnswerFeedback.objects.create(message=answer, user=technician, rating=AnswerFeedback.Rating.DOWN,
                                             comment=comment)
    Conversation.objects.filter(pk=conversation.pk).update(created=when, updated=when)
    Message.objects.filter(pk__in=[asked.pk, answer.pk]).update(created=when)
    reviewed = {"reviewed_at": when + timedelta(days=1), "reviewed_by": reviewer, "review_note": note} \
        if note and reviewer else {}
    AnswerFeedback.objects.filter(pk=feedback.pk).update(created=when, updated=when, **reviewed)
    return feedback
