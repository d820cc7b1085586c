"""The MQTT telemetry listener (apps/assets/mqtt.py) against a real Mosquitto.

The system broker (127.0.0.1:1883) is shared by every test run on the machine, so each test
uses its own topic root and client id and removes its session afterwards. The broker-restart
test starts its own ``mosquitto`` on a free port, with persistence in a temporary directory.
"""
import getpass
import importlib
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from types import SimpleNamespace

import pytest
from django.apps import apps as django_apps
from django.db import DataError, IntegrityError, OperationalError, connection

from apps.assets import services
from apps.assets.models import Alert, Asset, DeviceType, Reading, TelemetryRejection
from apps.assets.mqtt import Backoff, BrokerAddress, TelemetryListener, asset_hint_from_topic

ROOT = Path(__file__).resolve().parents[1]
MOSQUITTO = "/usr/sbin/mosquitto"
SYSTEM_BROKER = "mqtt://127.0.0.1:1883"


# --- helpers -------------------------------------------------------------------------------

def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def _unavailable(why: str):
    if os.environ.get("CI"):
        pytest.fail(f"{why} (CI must have Mosquitto)")
    pytest.skip(why)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _paho(client_id: str = ""):
    import paho.mqtt.client as mqtt

    return mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)


def publish(url: str, topic: str, *payloads, qos: int = 1) -> None:
    """Publish and wait for every PUBACK, as a device would."""
    address = BrokerAddress.from_url(url)
    client = _paho()
    client.connect(address.host, address.port)
    client.loop_start()
    try:
        for payload in payloads:
            info = client.publish(topic, payload, qos=qos)
            info.wait_for_publish(timeout=5)
            assert info.is_published(), f"broker did not acknowledge {topic}"
    finally:
        client.disconnect()
        client.loop_stop()


def end_session(url: str, client_id: str) -> None:
    """Remove a persistent session from the broker (connect clean with expiry 0)."""
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    address = BrokerAddress.from_url(url)
    if not _reachable(address.host, address.port):
        return
    client = _paho(client_id)
    properties = Properties(PacketTypes.CONNECT)
    properties.SessionExpiryInterval = 0
    client.connect(address.host, address.port, clean_start=True, properties=properties)
    client.loop_start()
    time.sleep(0.2)
    client.disconnect()
    client.loop_stop()


def run_until(listener: TelemetryListener, condition, timeout: float = 10.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        listener.tick(timeout=0.1)
    raise AssertionError(f"timed out waiting for {what}; listener: {listener.stats.line()}")


def readings(asset_id: str = "WXT536-01") -> int:
    return Reading.objects.filter(sensor__asset__asset_id=asset_id).count()


class OwnBroker:
    """A private mosquitto with persistence: safe to kill and restart."""

    def __init__(self, directory: Path):
        self.dir = directory
        self.port = _free_port()
        self.url = f"mqtt://127.0.0.1:{self.port}"
        self.conf = directory / "mosquitto.conf"
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\n"
            "allow_anonymous true\n"
            "persistence true\n"
            f"persistence_location {directory}/\n"
            # as root mosquitto would switch to the 'mosquitto' user, who cannot write here
            f"user {getpass.getuser()}\n"
        )
        self.proc = None

    def start(self) -> None:
        self.log = open(self.dir / "mosquitto.log", "ab")
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)], stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while not _reachable("127.0.0.1", self.port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"mosquitto did not start: {(self.dir / 'mosquitto.log').read_text()[-2000:]}")
            time.sleep(0.05)

    def stop(self, sig=signal.SIGTERM) -> None:
        """SIGTERM: mosquitto writes its persistence file and exits."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=10)
        self.proc = None
        self.log.close()


# --- fixtures ------------------------------------------------------------------------------

@pytest.fixture
def wxt(transactional_db):
    importlib.import_module("apps.assets.migrations.0002_catalogue").load(django_apps, None)
    return Asset.objects.create(asset_id="WXT536-01", name="Mast 1", device_type=DeviceType.objects.get(key="WXT536"))


@pytest.fixture
def names():
    tag = uuid.uuid4().hex[:12]
    return SimpleNamespace(root=f"nanosentri-test/{tag}/telemetry", client_id=f"nanosentri-test-{tag}")


@pytest.fixture
def system_broker():
    if not _reachable("127.0.0.1", 1883):
        _unavailable("no MQTT broker at 127.0.0.1:1883")
    return SYSTEM_BROKER


@pytest.fixture
def own_broker(tmp_path):
    if not (os.path.exists(MOSQUITTO) or shutil.which("mosquitto")):
        _unavailable(f"{MOSQUITTO} not found")
    broker = OwnBroker(tmp_path)
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture
def make_listener(names):
    made = []

    def make(url: str, **kwargs) -> TelemetryListener:
        options = {"topics": [f"{names.root}/#"], "client_id": names.client_id, "session_expiry": 300,
                   "backoff": Backoff(first=0.05, maximum=0.4), "stats_every": 0, "connect_timeout": 5}
        listener = TelemetryListener(url=url, **{**options, **kwargs})
        made.append(listener)
        return listener

    yield make
    for listener in made:
        if listener.connected:
            listener.shutdown()
    for url in {str(listener.address).replace("mqtts", "mqtt") for listener in made}:
        end_session(url, names.client_id)


# --- no broker needed ----------------------------------------------------------------------

class TestTopicsAndUrls:
    def test_the_asset_is_the_first_wildcard_level(self):
        assert asset_hint_from_topic("nanosentri/telemetry/WXT536-01", ["nanosentri/telemetry/#"]) == "WXT536-01"
        assert asset_hint_from_topic("nanosentri/telemetry/WXT536-01/status", ["nanosentri/telemetry/#"]) == "WXT536-01"
        assert asset_hint_from_topic("plant/WXT536-02/telemetry", ["plant/+/telemetry"]) == "WXT536-02"
        assert asset_hint_from_topic("nanosentri/telemetry", ["nanosentri/telemetry/#"]) is None
        assert asset_hint_from_topic("other/WXT536-01", ["nanosentri/telemetry/#"]) is None
        assert asset_hint_from_topic("nanosentri/telemetry/bad id!", ["nanosentri/telemetry/#"]) is None

    def test_broker_urls(self):
        assert BrokerAddress.from_url("mqtt://127.0.0.1") == BrokerAddress("127.0.0.1", 1883)
        assert BrokerAddress.from_url("mqtts://user:p%40ss@broker.local") == BrokerAddress("broker.local", 8883, True, "user", "p@ss")
        assert BrokerAddress.from_url("mqtt://u:p@h:1884", username="s", password="t").username == "s"
        for bad in ("http://host", "mqtt://", "mqtt://host:notaport"):
            with pytest.raises(ValueError):
                BrokerAddress.from_url(bad)

    def test_backoff_doubles_up_to_its_maximum_and_resets(self):
        backoff = Backoff(first=1, maximum=5)
        assert [backoff.next() for _ in range(5)] == [1, 2, 4, 5, 5]
        backoff.reset()
        assert backoff.next() == 1

    def test_settings_are_required(self, settings):
        settings.NANOSENTRI_MQTT_URL = ""
        with pytest.raises(ValueError, match="NANOSENTRI_MQTT_URL"):
            TelemetryListener.from_settings()
        settings.NANOSENTRI_MQTT_URL = "mqtt://127.0.0.1:1883"
        listener = TelemetryListener.from_settings(topics=["a/#"])
        assert listener.topics == ["a/#"] and listener.client_id == settings.NANOSENTRI_MQTT_CLIENT_ID


class TestHandle:
    """One message at a time, without a broker: what is acknowledged and what is not."""

    TOPIC = "nanosentri/telemetry/WXT536-01"

    @pytest.fixture
    def listener(self):
        return TelemetryListener(url="mqtt://127.0.0.1:1", topics=["nanosentri/telemetry/#"], client_id="t")

    def test_it_stores_and_acknowledges(self, wxt, listener):
        assert listener.handle(self.TOPIC, b'{"readings": {"V_IN": 24.1}}') is True
        assert readings() == 1 and listener.stats.stored == 1 and listener.stats.readings == 1

    def test_a_redelivery_of_a_stored_message_is_skipped(self, wxt, listener):
        listener.handle(self.TOPIC, b"V_IN: 24V")
        assert listener.handle(self.TOPIC, b"V_IN: 24V", dup=True) is True
        assert readings() == 1 and listener.stats.duplicates == 1
        listener.handle(self.TOPIC, b"V_IN: 24V")  # not a redelivery: the device sent it again
        assert readings() == 2

    def test_a_lost_database_is_retried_not_acknowledged(self, wxt, listener, monkeypatch, caplog):
        def down(*args, **kwargs):
            raise OperationalError("server closed the connection unexpectedly")

        monkeypatch.setattr(services, "payload_receive", down)
        assert listener.handle(self.TOPIC, b"V_IN: 24V") is False
        assert listener.stats.db_errors == 1
        assert "will be redelivered" in caplog.text

    def test_a_data_error_is_tried_again_then_given_up(self, wxt, listener, monkeypatch):
        calls = []

        def bad(*args, **kwargs):
            calls.append(1)
            raise DataError("value too long for type character varying(16)")

        monkeypatch.setattr(services, "payload_receive", bad)
        assert listener.handle(self.TOPIC, b"V_IN: 24V") is True  # acknowledged: retrying cannot help
        assert len(calls) == 3 and listener.stats.db_errors == 3
        assert listener.stats.rejected["database error"] == 1
        assert TelemetryRejection.objects.get().reason.startswith("database error: DataError")

    def test_a_race_is_cleared_by_trying_again(self, wxt, listener, monkeypatch):
        real, calls = services.payload_receive, []

        def racy(*args, **kwargs):
            calls.append(1)
            if len(calls) == 1:
                raise IntegrityError("duplicate key value violates unique constraint")
            return real(*args, **kwargs)

        monkeypatch.setattr(services, "payload_receive", racy)
        assert listener.handle(self.TOPIC, b"V_IN: 24V") is True
        assert readings() == 1

    def test_nul_bytes_are_rejected_and_the_excerpt_is_storable(self, wxt, listener):
        assert listener.handle(self.TOPIC, b"V_IN: 2\x004V") is True
        rejection = TelemetryRejection.objects.get()
        assert rejection.reason == "malformed payload: contains NUL bytes"
        assert rejection.excerpt == "V_IN: 2\\x004V"

    def test_a_bug_rejects_the_message_instead_of_crashing(self, wxt, listener, monkeypatch, caplog):
        monkeypatch.setattr(services, "payload_receive", lambda *a, **k: 1 / 0)
        assert listener.handle(self.TOPIC, b"V_IN: 24V") is True
        assert listener.stats.rejected["internal error"] == 1
        assert "ZeroDivisionError" in TelemetryRejection.objects.get().reason
        assert "could not be handled" in caplog.text

    def test_new_alerts_are_notified_once(self, wxt, listener, monkeypatch):
        sent = []
        monkeypatch.setattr("apps.assets.notify.alert_opened", sent.append)
        line = b"V_IN: 8.4V [LOW] | REF_CHK: FAIL | EVENT: SYSTEM_RESET"
        listener.handle(self.TOPIC, line)
        listener.handle(self.TOPIC, line)
        assert [a.rule for a in sent] == ["low_supply_resets"]
        assert Alert.objects.get(asset=wxt, resolved__isnull=True).rule == "low_supply_resets"

    def test_a_failing_notification_keeps_the_readings(self, wxt, listener, monkeypatch, caplog):
        def broken(alert):
            raise RuntimeError("push service down")

        monkeypatch.setattr("apps.assets.notify.alert_opened", broken)
        assert listener.handle(self.TOPIC, b"V_IN: 8.4V | REF_CHK: FAIL") is True
        assert readings() == 2 and "notifying alert" in caplog.text

    def test_connecting_to_nothing_backs_off(self, listener):
        listener.backoff = Backoff(first=0.2, maximum=1)
        assert listener.connect() is False
        assert listener.stats.connect_failures == 1
        started = time.monotonic()
        assert listener.tick(timeout=0.05) is False  # still waiting: no second attempt yet
        assert listener.stats.connect_failures == 1 and time.monotonic() - started < 0.2
        time.sleep(0.2)
        listener.tick()
        assert listener.stats.connect_failures == 2


# --- against the system Mosquitto ----------------------------------------------------------

@pytest.mark.integration
class TestWithBroker:
    def test_it_stores_qos1_messages_and_acknowledges_them(self, wxt, system_broker, names, make_listener):
        listener = make_listener(system_broker)
        assert listener.connect()
        publish(system_broker, f"{names.root}/WXT536-01",
                json.dumps({"readings": {"V_IN": 24.1, "TEMP_AMB": 3.5}}),  # asset from the topic
                "[2026-06-12 10:00:00] ID:WXT536-01 >>> HEAT_CURRENT: 0.61A | STATUS: OK",
                json.dumps({"asset": "WXT536-01", "readings": {"WIND_SPEED": {"value": 4.2, "unit": "m/s"}}}))
        run_until(listener, lambda: readings() == 5, what="5 readings")
        assert listener.stats.received == 3 and listener.stats.stored == 3
        assert set(Reading.objects.values_list("source", flat=True)) == {"mqtt"}
        listener.shutdown()
        # Acknowledged: the broker delivers nothing again to the same session.
        again = make_listener(system_broker)
        assert again.connect() and again.session_present
        deadline = time.monotonic() + 1
        while time.monotonic() < deadline:
            again.tick(timeout=0.1)
        assert again.stats.received == 0 and readings() == 5

    def test_a_message_sent_while_the_listener_is_down_arrives_when_it_is_back(self, wxt, system_broker, names, make_listener):
        first = make_listener(system_broker)
        assert first.connect()  # connected and subscribed: the session exists on the broker
        first.shutdown()
        publish(system_broker, f"{names.root}/WXT536-01", "V_IN: 23.9V")  # nobody is connected now
        second = make_listener(system_broker)
        assert second.connect()
        assert second.session_present
        run_until(second, lambda: readings() == 1, what="the queued message")
        assert Reading.objects.get().value == 23.9

    def test_bad_payloads_are_counted_and_logged_and_the_listener_keeps_going(
            self, wxt, system_broker, names, make_listener, caplog):
        caplog.set_level(logging.WARNING)
        listener = make_listener(system_broker)
        assert listener.connect()
        topic = f"{names.root}/WXT536-01"
        publish(system_broker, topic,
                b"\xff\xfe garbage\x81",                                    # not UTF-8
                b"\x00\x01\x02binary",                                       # NUL bytes
                b"V_IN: 1 | " * 10_000,                                    # 100 kB, over the limit
                json.dumps({"readings": {"V_IN": [1, 2]}}),                # wrong type
                '{"readings": {"V_IN": NaN}}',                             # not a finite number
                json.dumps({"asset": "NOPE-9", "readings": {"V_IN": 1}}),  # unknown asset
                json.dumps({"readings": {"V_IN": 24, "HUMIDITY": 50}}),    # one unknown sensor
                "V_IN: 24.2V")                                             # fine
        run_until(listener, lambda: listener.stats.received == 8, what="8 messages")
        assert readings() == 2  # V_IN of the last two
        assert listener.stats.rejected == {"malformed payload": 5, "unknown asset": 1, "unknown sensor": 1}
        reasons = list(TelemetryRejection.objects.order_by("pk").values_list("reason", flat=True))
        assert [r.split(":")[0] for r in reasons] == ["malformed payload"] * 5 + ["unknown asset", "unknown sensor(s) of WXT536-01"]
        assert "not UTF-8" in reasons[0] and "NUL" in reasons[1] and "byte limit" in reasons[2] and "finite" in reasons[4]
        assert all(r.topic == topic for r in TelemetryRejection.objects.all())
        assert caplog.text.count("telemetry rejected (mqtt") == 7
        assert listener.stats.db_errors == 0
        assert listener.connected

    def test_a_message_that_could_not_be_stored_is_redelivered(self, wxt, system_broker, names, make_listener, monkeypatch):
        real = services.payloads_receive  # what the listener stores each batch with
        calls = []

        def flaky(messages, **kwargs):
            calls.extend(m.raw for m in messages)
            if len(calls) == 1:
                raise OperationalError("database is locked")
            return real(messages, **kwargs)

        monkeypatch.setattr(services, "payloads_receive", flaky)
        listener = make_listener(system_broker)
        assert listener.connect()
        publish(system_broker, f"{names.root}/WXT536-01", "V_IN: 24.3V")
        run_until(listener, lambda: readings() == 1, what="the redelivered message")
        assert calls == [b"V_IN: 24.3V", b"V_IN: 24.3V"]
        assert listener.stats.db_errors == 1 and listener.stats.connects == 2
        assert Reading.objects.get().value == 24.3

    def test_the_command_stores_and_stops_cleanly_on_sigterm(self, wxt, system_broker, names, tmp_path):
        db = connection.settings_dict
        if db["ENGINE"].endswith("sqlite3"):
            database_url = f"sqlite:///{db['NAME']}"
        else:
            password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
            database_url = (f"postgres://{db.get('USER') or 'postgres'}{password}@{db.get('HOST') or '127.0.0.1'}:"
                            f"{db.get('PORT') or 5432}/{db['NAME']}")
        env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", "DATABASE_URL": database_url,
               "NANOSENTRI_MQTT_URL": system_broker, "NANOSENTRI_MQTT_TOPICS": f"{names.root}/#",
               "NANOSENTRI_MQTT_CLIENT_ID": names.client_id, "PYTHONUNBUFFERED": "1"}
        log_path = tmp_path / "listen.log"
        with open(log_path, "wb") as log:
            proc = subprocess.Popen([sys.executable, "manage.py", "telemetry_listen", "--session-expiry", "60"],
                                    cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
            try:
                deadline = time.monotonic() + 30
                while b"connected to" not in log_path.read_bytes():
                    assert proc.poll() is None and time.monotonic() < deadline, log_path.read_text()
                    time.sleep(0.1)
                publish(system_broker, f"{names.root}/WXT536-01", "V_IN: 8.4V [LOW] | REF_CHK: FAIL")
                while readings() < 2:
                    assert time.monotonic() < deadline, log_path.read_text()
                    time.sleep(0.1)
                proc.send_signal(signal.SIGTERM)
                assert proc.wait(timeout=10) == 0, log_path.read_text()
            finally:
                if proc.poll() is None:
                    proc.kill()
                end_session(system_broker, names.client_id)
        output = log_path.read_text()
        assert "Stopped. received=1 stored=1 readings=2" in output
        assert "alert opened on WXT536-01" in output


# --- against our own Mosquitto, restarted --------------------------------------------------

@pytest.mark.integration
def test_it_survives_a_broker_restart_and_gets_what_was_queued(wxt, own_broker, names, make_listener):
    listener = make_listener(own_broker.url, session_expiry=600)
    topic = f"{names.root}/WXT536-01"
    assert listener.connect()
    publish(own_broker.url, topic, "V_IN: 24.0V")
    run_until(listener, lambda: readings() == 1, what="the first message")

    own_broker.stop()  # SIGTERM: mosquitto saves sessions and queues, then exits
    run_until(listener, lambda: not listener.connected, what="the disconnect")
    run_until(listener, lambda: listener.stats.connect_failures >= 2, what="failing reconnects")

    own_broker.start()
    # Published before the listener is back: kept in its persistent session by the broker.
    publish(own_broker.url, topic, "V_IN: 23.0V")
    run_until(listener, lambda: listener.connected, what="the reconnect")
    assert listener.session_present
    run_until(listener, lambda: readings() == 2, what="the message queued during the outage")
    publish(own_broker.url, topic, "V_IN: 22.0V")
    run_until(listener, lambda: readings() == 3, what="a message after the reconnect")
    assert sorted(Reading.objects.values_list("value", flat=True)) == [22.0, 23.0, 24.0]
    assert listener.stats.connects == 2 and listener.stats.disconnects == 1
