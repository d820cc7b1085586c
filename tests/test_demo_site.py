"""The demo site (issue 11): seeded once by ``runapp`` when NANOSENTRI_DEMO is on, fed live by
``simulate_sensors --demo``, marked as demo data on the pages."""
import json
import signal
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.management import call_command
from django.utils import timezone

from apps.accounts.services import demo_users_ensure
from apps.assets.demo import (
    BACKFILL,
    BACKFILL_STEP,
    FAULTS_START_AT_LATEST,
    STATION_IDS,
    DemoFeed,
    demo_assets,
)
from apps.assets.models import Alert, Asset, DeviceType, Reading, Site, TelemetryRejection
from apps.assets.selectors import asset_live_context
from apps.chat.models import AnswerFeedback
from apps.incidents.demo import MARKER, PAST_INCIDENTS, demo_seed
from apps.incidents.models import Incident
from apps.knowledge.models import Document

ROOT = Path(__file__).resolve().parents[1]
HEALTHY, HEATER, SUPPLY = STATION_IDS


@pytest.fixture
def demo_on(settings, tmp_path, db):
    settings.NANOSENTRI_DEMO = True
    settings.DATA_DIR = tmp_path
    demo_users_ensure(password="pw-demo")
    return settings


def _document(name: str) -> Document:
    return Document.objects.create(original_name=name, stored_path=name, extension=".pdf",
                                   content_hash=name.ljust(64, "0")[:64])


def _counts() -> tuple:
    return (Site.objects.count(), Asset.objects.count(), Incident.objects.count(), AnswerFeedback.objects.count())


# --- seeding -----------------------------------------------------------------------------------


class TestSeed:
    def test_it_seeds_three_stations_past_incidents_and_answers_to_review(self, demo_on, tmp_path, monkeypatch,
                                                                         django_capture_on_commit_callbacks):
        queued = []
        monkeypatch.setattr("apps.incidents.tasks.incident_index_task.delay", queued.append)
        now = timezone.now()

        with django_capture_on_commit_callbacks(execute=True):
            result = demo_seed(now=now)

        assert result.seeded and result.assets == list(STATION_IDS)
        stations = list(Asset.objects.filter(is_demo=True).order_by("asset_id"))
        assert [a.asset_id for a in stations] == list(STATION_IDS)
        for asset in stations:
            assert asset.site.name == "Demo site" and asset.device_type.key == "WXT536"
            assert asset.name.startswith("Demo ") and "simulated" in asset.location
            assert set(asset.sensors.values_list("key", flat=True)) >= {"V_IN", "HEAT_CURRENT", "TEMP_AMB", "STATUS"}
            assert list(asset.technicians.values_list("username", flat=True)) == ["technician"]

        incidents = Incident.objects.select_related("asset")
        assert incidents.count() == len(PAST_INCIDENTS) == result.incidents
        assert all(i.title.startswith("Demo: ") and i.asset.is_demo for i in incidents)
        done = [i for i in incidents if i.is_done]
        assert len(done) == 6
        for incident in done:
            assert incident.cause and incident.remedy and incident.downtime > timedelta(0)
            assert now - timedelta(weeks=11) < incident.created < incident.resolved_at < now
            assert incident.events.get().created == incident.created
        assert {i.asset.asset_id for i in done if i.failure_class == "heater"} == {HEATER}
        (still_open,) = [i for i in incidents if not i.is_done]
        assert still_open.status == Incident.Status.IN_PROGRESS and still_open.asset.asset_id == SUPPLY
        # Resolved incidents go to the worker to be embedded for "similar past incidents".
        assert sorted(queued) == sorted(i.pk for i in done)

        feedback = AnswerFeedback.objects.select_related("message__conversation")
        assert feedback.count() == result.answers == 2
        assert all(f.rating == AnswerFeedback.Rating.DOWN and f.user.username == "technician" for f in feedback)
        assert all(f.message.conversation.title.startswith("Demo: ") for f in feedback)
        assert feedback.filter(reviewed_at__isnull=True).count() == 1
        assert json.loads((tmp_path / MARKER).read_text())["assets"] == list(STATION_IDS)

    def test_a_restart_seeds_nothing_again(self, demo_on, tmp_path):
        assert demo_seed().seeded
        before = _counts()

        again = demo_seed()
        (tmp_path / MARKER).unlink()  # even without its marker, the database already has the demo
        without_marker = demo_seed()

        assert not again.seeded and "first start only" in again.reason
        assert not without_marker.seeded and "already there" in without_marker.reason
        assert _counts() == before

    def test_a_site_with_assets_of_its_own_is_never_seeded(self, demo_on, tmp_path):
        real = Asset.objects.create(asset_id="WXT536-01", name="Roof mast", device_type=DeviceType.objects.get(key="WXT536"))

        result = demo_seed()
        real.delete()  # and the first start decided: no demo later either
        later = demo_seed()

        assert not result.seeded and "assets of its own" in result.reason
        assert not later.seeded
        assert not Asset.objects.exists() and not Incident.objects.exists() and not Site.objects.exists()
        assert not AnswerFeedback.objects.exists()

    def test_it_is_off_with_NANOSENTRI_DEMO_0(self, demo_on, tmp_path):
        demo_on.NANOSENTRI_DEMO = False

        result = demo_seed()

        assert not result.seeded and result.reason == "NANOSENTRI_DEMO is off"
        assert _counts() == (0, 0, 0, 0)
        assert not (tmp_path / MARKER).exists()  # turned on later, the demo still comes

    def test_the_wxt530_series_manuals_are_linked_and_no_others(self, demo_on):
        guide = _document("Vaisala_WXT530_Series_User_Guide_M211840EN.pdf")
        titled = _document("m211840en-d.pdf")
        Document.objects.filter(pk=titled.pk).update(title="Vaisala WXT 536 technical reference")
        _document("SmartEVSE_v3_Installation_Manual_v1.01_sw3.00.pdf")

        result = demo_seed()

        assert result.manuals == sorted([guide.original_name, titled.original_name])
        for asset in demo_assets():
            assert set(asset.manuals.all()) == {guide, titled}

    def test_the_setting_is_on_unless_turned_off(self, tmp_path):
        code = "import nanosentri_site.settings as s; print(s.NANOSENTRI_DEMO)"
        env = {"PATH": "/usr/bin:/bin", "NANOSENTRI_DATA_DIR": str(tmp_path), "SECRET_KEY": "x"}
        shown = [
            subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={**env, **extra}, capture_output=True,
                           text=True, check=True).stdout.strip()
            for extra in ({}, {"NANOSENTRI_DEMO": "0"}, {"NANOSENTRI_DEMO": "1"})
        ]
        assert shown == ["True", "False", "True"]


@pytest.mark.integration
def test_the_live_heater_failure_finds_the_demo_heater_incidents(demo_on, real_stack):
    from apps.incidents.selectors import incidents_similar
    from apps.incidents.services import incident_index

    demo_seed()
    for incident in Incident.objects.exclude(status=Incident.Status.IN_PROGRESS):
        incident_index(incident_id=incident.pk)  # what the worker does with the tasks queued on commit

    found = incidents_similar("The heater draws 0 A at -15 °C and ice builds up on the sensor head. What do I check?",
                              asset=HEATER)

    assert {f["title"] for f in found[:2]} == {"Demo: Heater current 0 A again, ice warning",
                                               "Demo: Heater dead during frost, wind readings frozen"}
    assert "fuse F2" in " ".join(f["remedy"] for f in found[:2])


# --- the live feed -------------------------------------------------------------------------------


@pytest.fixture
def stations(demo_on):
    demo_seed()
    return {a.asset_id: a for a in demo_assets()}


def _rules(asset) -> set[str]:
    return {f.rule for f in asset_live_context(asset).findings}


def _latest(asset, key):
    return Reading.objects.filter(sensor__asset=asset, sensor__key=key).order_by("-ts").first()


class TestFeed:
    def test_the_backfill_draws_the_last_hours_once(self, stations):
        now = timezone.now()
        feed = DemoFeed(start=now, seed=1)

        stored = feed.backfill(now=now)
        again = feed.backfill(now=now + BACKFILL_STEP)

        per_station = int(BACKFILL / BACKFILL_STEP)
        assert stored == 3 * per_station
        assert again == 3  # only what is new since the last reading
        for asset in stations.values():
            first = Reading.objects.filter(sensor__asset=asset).order_by("ts").first()
            assert first.ts == now - BACKFILL and first.source == "demo"

    def test_the_heater_fails_15_s_after_the_faults_start_and_the_supply_drops_after_45_s(self, stations):
        start = timezone.now() - timedelta(minutes=10)  # recent: nothing counts as missing
        feed = DemoFeed(start=start, seed=2)
        feed.faults_start_at(start)
        opened = {}
        for seconds in range(0, 65, 5):
            for alert in feed.step(start + timedelta(seconds=seconds)):
                opened.setdefault((alert.asset.asset_id, alert.rule), seconds)
            if seconds == 10:
                assert _latest(stations[HEATER], "HEAT_CURRENT").value > 0.5
                assert _latest(stations[HEATER], "TEMP_AMB").value < -10
                assert _rules(stations[HEATER]) == set() and _latest(stations[SUPPLY], "V_IN").value > 23

        assert opened == {(HEATER, "heater_failure"): 15, (SUPPLY, "low_supply_resets"): 45}
        assert _latest(stations[HEATER], "HEAT_CURRENT").value == 0.0
        assert {"heater_failure", "ice_warning"} <= _rules(stations[HEATER])
        assert _latest(stations[SUPPLY], "V_IN").value == 8.4
        assert _latest(stations[SUPPLY], "EVENT").text == "SYSTEM_RESET"
        assert _rules(stations[HEALTHY]) == set()
        assert not Alert.objects.filter(asset=stations[HEALTHY]).exists()

    def test_the_faults_start_at_the_first_sign_in(self, stations, django_user_model):
        start = timezone.now() - timedelta(minutes=10)
        feed = DemoFeed(start=start, seed=6)
        opened = {}

        def steps(seconds):
            for s in seconds:
                for alert in feed.step(start + timedelta(seconds=s)):
                    opened.setdefault(alert.rule, s)

        steps(range(0, 30, 5))
        assert feed.faults_start is None and opened == {}
        signed_in = start + timedelta(seconds=32)
        django_user_model.objects.filter(username="supervisor").update(last_login=signed_in)
        steps(range(35, 65, 5))

        assert feed.faults_start == signed_in
        assert opened == {"heater_failure": 50}  # the first reading 15 s after the sign-in

    def test_without_a_sign_in_the_faults_start_after_two_minutes(self, stations):
        start = timezone.now() - timedelta(minutes=10)
        feed = DemoFeed(start=start, seed=7)
        opened = {}
        for seconds in range(0, 181, 15):
            for alert in feed.step(start + timedelta(seconds=seconds)):
                opened.setdefault(alert.rule, seconds)

        assert feed.faults_start == start + FAULTS_START_AT_LATEST
        assert opened == {"heater_failure": 135, "low_supply_resets": 165}

    def test_the_heater_comes_back_for_a_minute_each_quarter_hour_and_fails_again(self, stations, settings):
        settings.NANOSENTRI_MISSING_AFTER_MINUTES = 60  # the first readings are 16 min old
        start = timezone.now() - timedelta(minutes=17)
        feed = DemoFeed(start=start, seed=3)
        feed.faults_start_at(start)
        opened = []
        for seconds in range(15, 16 * 60 + 16, 30):
            opened += [a for a in feed.step(start + timedelta(seconds=seconds)) if a.rule == "heater_failure"]

        assert len(opened) == 2  # at 15 s, and at 15 min 15 s after the minute of heating before it
        assert Alert.objects.filter(asset=stations[HEATER], rule="heater_failure", resolved__isnull=False).count() == 1

    def test_a_deleted_station_is_no_longer_fed(self, stations):
        stations[HEALTHY].delete()
        feed = DemoFeed(start=timezone.now(), seed=4)

        feed.step(timezone.now())

        assert Reading.objects.filter(sensor__asset__asset_id=HEATER).exists()
        assert not TelemetryRejection.objects.exists()

    def test_the_command_feeds_the_stations_through_the_ingestion_service(self, stations, capsys):
        handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            call_command("simulate_sensors", "--demo", "--count", "2", "--interval", "0", "--seed", "5")
        finally:
            for sig, handler in handlers.items():
                signal.signal(sig, handler)

        out = capsys.readouterr().out
        assert f"Demo sensors: {', '.join(STATION_IDS)}; {3 * int(BACKFILL / BACKFILL_STEP)} payloads" in out
        assert "stopped after 2 rounds" in out
        for asset in stations.values():
            assert set(Reading.objects.filter(sensor__asset=asset).values_list("source", flat=True)) == {"demo"}


# --- runapp ------------------------------------------------------------------------------------


class _ExitedAtOnce:
    """A child process that has already exited: ``runapp`` stops at its first look."""

    def __init__(self, args, **kwargs):
        self.args, self.returncode = args, 0

    def poll(self):
        return 0

    def wait(self, timeout=None):
        return 0


@pytest.mark.parametrize("on", [True, False])
def test_runapp_seeds_and_feeds_the_demo_only_when_it_is_on(demo_on, monkeypatch, on):
    demo_on.NANOSENTRI_DEMO = on
    monkeypatch.setenv("NANOSENTRI_DEMO_INGEST", "0")
    started = []
    monkeypatch.setattr("apps.core.management.commands.runapp.subprocess.Popen",
                        lambda args, **kw: started.append(args) or _ExitedAtOnce(args))
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with pytest.raises(SystemExit):  # the children "exited": runapp stops
            call_command("runapp", "--port", "0")
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)

    feeds = [args for args in started if "simulate_sensors" in args]
    assert feeds == ([[sys.executable, "manage.py", "simulate_sensors", "--demo"]] if on else [])
    assert demo_assets().count() == (3 if on else 0)


def test_runapp_queues_the_demo_incidents_before_the_manuals_and_links_the_wxt_manual(
        demo_on, monkeypatch, tmp_path, troubleshooting, smartevse, django_capture_on_commit_callbacks):
    manuals = tmp_path / "manuals"
    manuals.mkdir()
    (manuals / "Vaisala_WXT530_Series_User_Guide.pdf").symlink_to(troubleshooting)  # only the name matters here
    (manuals / smartevse.name).symlink_to(smartevse)
    demo_on.NANOSENTRI_DEMO_MANUALS_DIR = str(manuals)
    queued = []
    monkeypatch.setattr("apps.incidents.tasks.incident_index_task.delay", lambda pk: queued.append("incident"))
    monkeypatch.setattr("apps.knowledge.tasks.ingest_document_task.delay", lambda pk: queued.append("manual"))
    monkeypatch.setattr("apps.core.management.commands.runapp.subprocess.Popen", _ExitedAtOnce)
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with django_capture_on_commit_callbacks(execute=True), pytest.raises(SystemExit):
            call_command("runapp", "--port", "0")
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)

    assert queued == ["incident"] * 6 + ["manual"] * 2  # similar incidents are ready before the manuals
    for asset in demo_assets():
        assert list(asset.manuals.values_list("original_name", flat=True)) == ["Vaisala_WXT530_Series_User_Guide.pdf"]


# --- pages -------------------------------------------------------------------------------------


def test_the_pages_mark_the_demo_data(stations, client, technician):
    Asset.objects.create(asset_id="WXT536-01", name="Roof mast", device_type=DeviceType.objects.get(key="WXT536"))
    client.force_login(technician)

    listing = client.get("/assets/").content.decode()
    page = client.get(f"/assets/{HEATER}/").content.decode()
    real = client.get("/assets/WXT536-01/").content.decode()

    assert 'id="demo-banner"' in listing and listing.count('class="demo-badge" title="Simulated: demo data"') == 3
    assert 'title="Simulated readings: demo data">Demo data<' in page
    assert "Simulated readings" not in real  # the banner is there, the asset is not marked


def test_no_banner_without_demo_data(db, client, technician):
    client.force_login(technician)

    assert 'id="demo-banner"' not in client.get("/assets/").content.decode()

