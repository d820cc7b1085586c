"""Acceptance: a simulated heater failure published to the real Mosquitto shows up on the asset
page and in the next answer's live context within a few seconds.

The listener runs as its own process (`manage.py telemetry_listen`), as `runapp` starts it.
"""
import os
import subprocess
import sys
import time
import uuid
from io import StringIO
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.core.management import call_command

from apps.assets.models import Asset, DeviceType
from apps.chat import services
from tests.test_integration_worker import _database_url

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parents[1]
BROKER = "mqtt://127.0.0.1:1883"


@pytest.fixture
def listener(tmp_path):
    prefix = f"nanosentri-e2e-{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "nanosentri_site.settings",
        "NANOSENTRI_DATA_DIR": str(django_settings.DATA_DIR),
        "DATABASE_URL": _database_url(),
    }
    log = open(tmp_path / "listener.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "telemetry_listen", "--url", BROKER, "--topic", f"{prefix}/telemetry/#",
         "--client-id", prefix, "--stats-every", "0"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    # Connected and subscribed before anything is published (a new session gets nothing sent
    # before its subscription). Starting Django takes more than a few seconds on a busy machine.
    deadline = time.monotonic() + 60
    while b"connected to" not in (tmp_path / "listener.log").read_bytes():
        assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "listener.log").read_text()
        time.sleep(0.1)
    time.sleep(1)  # the SUBACK follows the CONNACK
    assert proc.poll() is None, (tmp_path / "listener.log").read_text()
    yield prefix
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


def test_a_simulated_heater_failure_reaches_the_asset_page_and_the_next_answer(client, technician, listener):
    Asset.objects.create(asset_id="WXT536-07", name="North mast", device_type=DeviceType.objects.get(key="WXT536"))
    client.force_login(technician)
    live = client.get("/assets/WXT536-07/live.json").json()
    assert not any(f["rule"] == "heater_failure" for f in live["findings"])

    started = time.monotonic()
    call_command(
        "simulate_sensors", "--asset", "WXT536-07", "--fault", "heater_failure", "--count", "2", "--interval", "0.2",
        "--url", BROKER, "--topic", f"{listener}/telemetry/WXT536-07", "--seed", "7", stdout=StringIO(),
    )
    findings = []
    while time.monotonic() - started < 10:
        findings = client.get("/assets/WXT536-07/live.json").json()["findings"]
        if any(f["rule"] == "heater_failure" for f in findings):
            break
        time.sleep(0.3)
    seen_after = time.monotonic() - started
    assert any(f["rule"] == "heater_failure" for f in findings), findings
    assert seen_after < 10, f"the finding took {seen_after:.1f} s to appear"
    page = client.get("/assets/WXT536-07/").content.decode()
    assert "Heater current" in page

    # The next answer about this asset carries it in its live context, before the model speaks.
    conversation = services.conversation_for(user=technician, title="q")
    events = list(services.answer_stream(question="Why is WXT536-07 not reporting wind data?", conversation=conversation))
    kinds = [e["type"] for e in events]
    live_event = next(e for e in events if e["type"] == "live_context")
    assert live_event["asset"] == "WXT536-07"
    assert live_event["findings"][0]["rule"] == "heater_failure"
    assert kinds.index("live_context") < kinds.index("token")
    # And an alert was opened for the technicians' pages.
    assert Asset.objects.get(asset_id="WXT536-07").alerts.filter(rule="heater_failure", resolved__isnull=True).exists()
