"""Telemetry in batches: ``services.payloads_receive``, the batched findings and alerts, and the
MQTT listener storing a batch in one transaction and acknowledging it only after the commit.

The listener tests use the system Mosquitto (127.0.0.1:1883) with their own topic root and
client id, like tests/test_mqtt_listener.py, whose helpers they share.
"""
import importlib
import json
import time
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone

import paho.mqtt.client as mqtt
import pytest
from django.apps import apps as django_apps
from django.db import DataError, OperationalError, connection
from django.utils import timezone

from apps.assets import services
from apps.assets.models import Alert, Asset, DeviceType, Reading, Sensor, TelemetryRejection
from apps.assets.mqtt import TelemetryListener
from apps.assets.selectors import _recent_readings, asset_live_context, assets_findings
from apps.assets.simulator import SensorSimulator, payload_json, payload_line
from tests.test_mqtt_listener import (  # noqa: F401 - fixtures
    make_listener,
    names,
    publish,
    run_until,
    system_broker,
)

HEATER_FAILURE = "HEAT_CURRENT: 0.00A | TEMP_AMB: -15.2C | STATUS: ICE_WARNING"
T0 = datetime(2026, 6, 12, 10, 0, tzinfo=dt_timezone.utc)


def _catalogue():
    # The catalogue comes from a data migration; a transactional test run earlier may have flushed it.
    importlib.import_module("apps.assets.migrations.0002_catalogue").load(django_apps, None)


def _wxt(asset_id: str) -> Asset:
    return Asset.objects.create(asset_id=asset_id, name=asset_id, device_type=DeviceType.objects.get(key="WXT536"))


def incoming(raw, asset_id: str | None = "WXT536-01"):
    topic = f"nanosentri/telemetry/{asset_id}" if asset_id else "nanosentri/telemetry"
    return services.Incoming(raw.encode() if isinstance(raw, str) else raw, topic=topic, asset_hint=asset_id)


@pytest.fixture
def wxt(db):
    _catalogue()
    return _wxt("WXT536-01")


# --- the service: one transaction per batch ------------------------------------------------

@pytest.mark.database  # COPY and an UPDATE from JSON on PostgreSQL, executemany elsewhere
@pytest.mark.django_db
class TestPayloadsReceive:
    def test_it_treats_each_message_as_payload_receive_does(self, wxt, caplog):
        _wxt("WXT536-02")
        results = services.payloads_receive([
            incoming('{"readings": {"V_IN": 24.1, "TEMP_AMB": 3.5}}'),
            incoming(b"\xff\xfe garbage"),
            incoming("[2026-06-12 10:00:00] ID:WXT536-02 >>> V_IN: 8.4V [LOW] | REF_CHK: FAIL", asset_id=None),
            incoming('{"asset": "NOPE-9", "readings": {"V_IN": 1}}'),
            incoming(b"V_IN: 2\x004V"),
            incoming('{"readings": {"V_IN": 24, "HUMIDITY": 50}}'),
            incoming("V_IN: 24V", asset_id=None),
        ], source="mqtt")

        assert [r.stored for r in results] == [2, 0, 2, 0, 0, 1, 0]
        assert [r.asset.asset_id if r.asset else None for r in results] == \
            ["WXT536-01", None, "WXT536-02", None, None, "WXT536-01", None]
        assert results[5].ok and results[5].unknown_sensors == ["HUMIDITY"]
        assert results[1].error.startswith("malformed payload: payload is not UTF-8")
        assert results[4].error == "malformed payload: contains NUL bytes"
        assert results[3].error == "unknown asset: NOPE-9" and "(none given)" in results[6].error
        # The rejections are kept in the order the messages came, with their topic and excerpt.
        reasons = list(TelemetryRejection.objects.order_by("pk").values_list("reason", "excerpt"))
        assert [r[0].split(":")[0] for r in reasons] == [
            "malformed payload", "unknown asset", "malformed payload", "unknown sensor(s) of WXT536-01", "unknown asset"]
        assert reasons[2][1] == "V_IN: 2\\x004V"
        assert caplog.text.count("telemetry rejected (mqtt") == 5
        low = Reading.objects.get(sensor__asset__asset_id="WXT536-02", sensor__key="V_IN")
        assert (low.value, low.text, low.source, low.ts) == (8.4, "LOW", "mqtt", T0)
        assert Reading.objects.filter(sensor__asset=wxt).count() == 3

    def test_the_detector_state_is_what_storing_one_by_one_gives(self, wxt):
        other = _wxt("WXT536-02")
        simulator = SensorSimulator("x", seed=3, fault="voltage_drop", fault_after=30)
        payloads = [payload_json("x", T0 + timedelta(minutes=10 * i), simulator.sample(T0 + timedelta(minutes=10 * i)))
                    for i in range(40)]
        services.payloads_receive([incoming(p.replace('"x"', '"WXT536-01"')) for p in payloads], source="mqtt")
        for p in payloads:
            services.payload_receive(p.replace('"x"', '"WXT536-02"'), source="mqtt")

        batched = {s.key: (s.anomaly_state, s.anomaly_reason) for s in Sensor.objects.filter(asset=wxt)}
        single = {s.key: (s.anomaly_state, s.anomaly_reason) for s in Sensor.objects.filter(asset=other)}
        assert batched == single
        assert batched["V_IN"][0]["state"]["n"] == 40

    def test_a_failure_half_way_keeps_nothing_of_the_batch(self, wxt, monkeypatch):
        def broken(rows):
            raise OperationalError("server closed the connection unexpectedly")

        monkeypatch.setattr(services, "_anomaly_update", broken)  # after the readings were inserted
        with pytest.raises(OperationalError):
            services.payloads_receive([incoming("V_IN: 24V"), incoming("not telemetry"), incoming("V_IN: 23V")],
                                      source="mqtt")
        assert Reading.objects.count() == 0 and TelemetryRejection.objects.count() == 0

    def test_it_registers_unknown_assets_once_when_autoregister_is_on(self, wxt, settings):
        settings.NANOSENTRI_TELEMETRY_AUTOREGISTER = True
        results = services.payloads_receive(
            [incoming('{"readings": {"V_IN": 24, "HUMIDITY": "55 %"}}', asset_id="WXT536-07") for _ in range(3)],
            source="mqtt")
        assert [r.stored for r in results] == [2, 2, 2]
        asset = Asset.objects.get(asset_id="WXT536-07")
        assert asset.sensors.count() == 2 and Reading.objects.filter(sensor__asset=asset).count() == 6


# --- the batched findings and alerts -------------------------------------------------------

@pytest.mark.database  # raw SQL per database (LATERAL on PostgreSQL, a correlated IN on SQLite)
@pytest.mark.django_db
class TestBatchedFindings:
    def test_recent_readings_are_the_latest_of_each_sensor_newest_first(self, wxt):
        for i in range(30):
            services.payload_receive(f'{{"ts": "{(T0 + timedelta(minutes=i)).isoformat()}", '
                                     f'"readings": {{"V_IN": {i}, "STATUS": "S{i}"}}}}', source="mqtt",
                                     asset_hint="WXT536-01")
        sensors = {s.key: s.pk for s in wxt.sensors.all()}
        recent = _recent_readings(list(sensors.values()) + [999_999], limit=24)
        assert set(recent) == set(sensors.values())
        v_in = recent[sensors["V_IN"]]
        assert [value for _, value, _ in v_in] == [float(i) for i in range(29, 5, -1)]
        assert v_in[0][0] == T0 + timedelta(minutes=29) and v_in[0][0].tzinfo is not None
        assert [text for _, _, text in recent[sensors["STATUS"]][:2]] == ["S29", "S28"]

    def test_findings_of_many_assets_are_those_of_each_asset(self, wxt):
        others = [_wxt(f"WXT536-0{i}") for i in (2, 3, 4)]
        now = timezone.now()
        services.payload_receive(HEATER_FAILURE, source="mqtt", asset_hint="WXT536-01")
        services.payload_receive("V_IN: 8.4V [LOW] | REF_CHK: FAIL | EVENT: SYSTEM_RESET", source="mqtt",
                                 asset_hint="WXT536-02")
        old = (now - timedelta(hours=2)).isoformat()
        services.payload_receive(f'{{"ts": "{old}", "readings": {{"WIND_SPEED": 3}}}}', source="mqtt",
                                 asset_hint="WXT536-03")  # missing data by now; WXT536-04 has nothing

        many = assets_findings([wxt, *others], now=now)
        for asset in [wxt, *others]:
            single = [f.as_dict() for f in asset_live_context(asset, now=now).findings]
            assert [f.as_dict() for f in many[asset.pk]] == single
        assert {f.rule for f in many[wxt.pk]} >= {"heater_failure"}
        assert many[others[2].pk] == []

    def test_alerts_of_many_assets_open_and_resolve_as_one_by_one(self, wxt):
        other = _wxt("WXT536-02")
        services.payload_receive(HEATER_FAILURE, source="mqtt", asset_hint="WXT536-01")
        services.payload_receive("V_IN: 8.4V [LOW] | REF_CHK: FAIL", source="mqtt", asset_hint="WXT536-02")
        opened = services.alerts_refresh_many([wxt, other, wxt])
        assert sorted((a.asset.asset_id, a.rule) for a in opened) == [
            ("WXT536-01", "heater_failure"), ("WXT536-02", "low_supply_resets")]
        assert services.alerts_refresh_many([wxt, other]) == []  # still firing: not opened twice

        services.payload_receive("HEAT_CURRENT: 0.8A | TEMP_AMB: -15.2C | STATUS: OK", source="mqtt",
                                 asset_hint="WXT536-01")
        assert services.alerts_refresh_many([wxt, other]) == []
        assert Alert.objects.get(asset=wxt).resolved is not None
        assert Alert.objects.get(asset=other).resolved is None


# --- the listener: acknowledged only after the commit --------------------------------------

def test_the_batch_settings_reach_the_listener(settings):
    settings.NANOSENTRI_MQTT_URL = "mqtt://127.0.0.1:1883"
    settings.NANOSENTRI_MQTT_BATCH_SIZE, settings.NANOSENTRI_MQTT_BATCH_WAIT_MS = 7, 250
    listener = TelemetryListener.from_settings(topics=["a/#"])
    assert (listener.batch_size, listener.batch_wait) == (7, 0.25)
    assert TelemetryListener.from_settings(topics=["a/#"], batch_size=1).batch_size == 1  # the command's option
    for bad in ({"batch_size": 0}, {"batch_wait": -0.1}):
        with pytest.raises(ValueError):
            TelemetryListener.from_settings(topics=["a/#"], **bad)


@pytest.fixture
def plant(transactional_db):
    _catalogue()
    return [_wxt(f"WXT536-{i:02d}") for i in range(1, 9)]


def _spy_acks(monkeypatch) -> list:
    """Record, for each PUBACK the listener sends, whether a transaction was still open and how
    many readings and rejections the database held at that moment (the listener runs in the
    test's thread: outside a transaction, what its connection sees is committed)."""
    acks = []
    real = TelemetryListener._ack

    def ack(self, message):
        acks.append({"mid": message.mid, "in_transaction": connection.in_atomic_block,
                     "readings": Reading.objects.count(), "rejections": TelemetryRejection.objects.count()})
        return real(self, message)

    monkeypatch.setattr(TelemetryListener, "_ack", ack)
    return acks


@pytest.mark.integration
class TestListenerBatches:
    def test_a_backlog_is_stored_in_batches_and_each_message_acknowledged_after_its_commit(
            self, plant, system_broker, names, make_listener, monkeypatch):
        first = make_listener(system_broker)
        assert first.connect()  # the session exists; what is published now is queued for it
        first.shutdown()
        messages, start = [], timezone.now().replace(microsecond=0) - timedelta(minutes=1)
        for i, asset in enumerate(plant):
            simulator = SensorSimulator(asset.asset_id, seed=i)
            for n in range(5):
                ts = start + timedelta(seconds=10 * n)
                render = payload_json if i % 2 else payload_line
                messages.append((f"{names.root}/{asset.asset_id}", render(asset.asset_id, ts, simulator.sample(ts))))
        for topic, payload in messages:
            publish(system_broker, topic, payload)

        batches = []
        real = services.payloads_receive

        def spy(batch, **kwargs):
            batches.append(len(batch))
            return real(batch, **kwargs)

        monkeypatch.setattr(services, "payloads_receive", spy)
        listener = make_listener(system_broker, batch_size=16, batch_wait=0.3)  # wait: batches for sure
        acks = _spy_acks(monkeypatch)
        assert listener.connect() and listener.session_present
        run_until(listener, lambda: len(acks) == 40, what="40 acknowledgements")

        assert Reading.objects.count() == 40 * 9 and listener.stats.readings == 40 * 9
        assert sum(batches) == 40 and max(batches) > 1 and max(batches) <= 16
        assert not any(a["in_transaction"] for a in acks)
        # Every acknowledgement found its whole batch in the database already.
        stored_before = 0
        for size in batches:
            stored_before += size
            assert all(a["readings"] >= 9 * stored_before for a in acks[stored_before - size:stored_before])
        listener.shutdown()
        again = make_listener(system_broker)
        assert again.connect() and again.session_present
        deadline = time.monotonic() + 1
        while time.monotonic() < deadline:
            again.tick(timeout=0.1)
        assert again.stats.received == 0  # all acknowledged: nothing comes again

    def test_a_database_failure_in_the_middle_of_a_batch_loses_nothing(
            self, plant, system_broker, names, make_listener, monkeypatch):
        first = make_listener(system_broker)
        assert first.connect()
        first.shutdown()
        valid = [(f"{names.root}/{a.asset_id}", f"V_IN: {24 + i / 10:.1f}V | TEMP_AMB: 3.5C") for i, a in enumerate(plant)]
        invalid = [(f"{names.root}/WXT536-01", "not telemetry"), (f"{names.root}/GHOST-1", '{"readings": {"V_IN": 1}}')]
        for topic, payload in valid[:4] + invalid + valid[4:]:
            publish(system_broker, topic, payload)

        # The first batch fails after its readings were inserted, as a lost connection would.
        real_update, failures = services._anomaly_update, []

        def flaky(rows):
            if not failures:
                failures.append(len(rows))
                raise OperationalError("server closed the connection unexpectedly")
            return real_update(rows)

        monkeypatch.setattr(services, "_anomaly_update", flaky)
        listener = make_listener(system_broker, batch_wait=0.3)
        acks = _spy_acks(monkeypatch)
        assert listener.connect()
        run_until(listener, lambda: listener.stats.db_errors == 1, what="the failing batch")
        assert failures and failures[0] >= 4  # the readings of several messages were inserted
        assert acks == []  # nothing of the failed batch was acknowledged ...
        assert Reading.objects.count() == 0 and TelemetryRejection.objects.count() == 0  # ... nor kept

        # ... so the broker sends it again, and then everything is there exactly once.
        run_until(listener, lambda: len(acks) == 10, timeout=15, what="the redelivered batch")
        assert listener.stats.connects == 2
        assert Reading.objects.count() == 2 * 8 and TelemetryRejection.objects.count() == 2
        assert sorted(Reading.objects.filter(sensor__key="V_IN").values_list("value", flat=True)) == \
            pytest.approx([24 + i / 10 for i in range(8)])
        assert listener.stats.stored + sum(listener.stats.rejected.values()) == 10  # in = stored + rejected

    def test_a_data_error_in_a_batch_stores_the_others_one_by_one(
            self, plant, system_broker, names, make_listener, monkeypatch):
        first = make_listener(system_broker)
        assert first.connect()
        first.shutdown()
        for asset in plant[:4]:
            publish(system_broker, f"{names.root}/{asset.asset_id}", "V_IN: 24.0V")

        real = services.payloads_receive

        def bad_batch(batch, **kwargs):
            if len(batch) > 1:
                raise DataError("value too long for type character varying(16)")
            return real(batch, **kwargs)

        monkeypatch.setattr(services, "payloads_receive", bad_batch)
        listener = make_listener(system_broker, batch_wait=0.3)
        assert listener.connect()
        run_until(listener, lambda: listener.stats.stored == 4, what="4 messages stored one by one")
        assert listener.stats.db_errors >= 1 and Reading.objects.count() == 4
        assert TelemetryRejection.objects.count() == 0

    def test_many_devices_at_once_in_equals_stored_plus_rejected(self, plant, system_broker, names, make_listener):
        listener = make_listener(system_broker, batch_size=50)
        assert listener.connect()
        sent_valid, sent_invalid, start = 0, 0, timezone.now() - timedelta(minutes=1)
        devices = []
        for asset in plant:
            client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
            client.connect("127.0.0.1", 1883)
            client.loop_start()
            devices.append((asset, client))
        try:
            infos = []
            for n in range(6):
                for i, (asset, client) in enumerate(devices):
                    topic = f"{names.root}/{asset.asset_id}"
                    if (n + i) % 5 == 0:
                        payload, sent_invalid = ('{"readings": {"V_IN": [1]}}' if i % 2 else "??"), sent_invalid + 1
                    else:
                        payload, sent_valid = json.dumps({"ts": (start + timedelta(seconds=n)).isoformat(),
                                                          "readings": {"V_IN": 24.0 + n, "STATUS": "OK"}}), sent_valid + 1
                    infos.append(client.publish(topic, payload, qos=1))
            for info in infos:
                info.wait_for_publish(timeout=10)
                assert info.is_published()
        finally:
            for _, client in devices:
                client.disconnect()
                client.loop_stop()
        total = sent_valid + sent_invalid
        run_until(listener, lambda: listener.stats.stored + sum(listener.stats.rejected.values()) >= total,
                  timeout=20, what=f"{total} messages")
        assert listener.stats.received == total
        assert Reading.objects.count() == 2 * sent_valid
        assert Reading.objects.values("sensor__asset", "ts").distinct().count() == sent_valid
        assert TelemetryRejection.objects.count() == sent_invalid
        assert listener.stats.rejected == {"malformed payload": sent_invalid}

    def test_a_burst_beyond_the_brokers_queue_limit_is_not_dropped(self, plant, system_broker, names, make_listener):
        """Mosquitto queues at most 1,000 messages for a client (max_queued_messages) beyond those
        in flight, and drops the rest although it acknowledged them to the device: the listener
        lets 65,535 be in flight, so a burst it has not read yet is not lost."""
        listener = make_listener(system_broker)
        assert listener.connect()
        publish(system_broker, f"{names.root}/WXT536-01", *[f"V_IN: {20 + n / 1000:.3f}V" for n in range(1500)])
        # Nothing was read while the burst came in; now it is.
        run_until(listener, lambda: listener.stats.received >= 1500 and not listener._pending, timeout=60,
                  what="1,500 messages")
        assert Reading.objects.count() == 1500 and listener.stats.stored == 1500

    def test_a_batch_also_ends_at_its_size_in_bytes(self, plant, system_broker, names, make_listener, monkeypatch):
        monkeypatch.setattr("apps.assets.mqtt.MAX_BATCH_BYTES", 500)
        batches, real = [], services.payloads_receive

        def spy(batch, **kwargs):
            batches.append(sum(len(m.raw) for m in batch))
            return real(batch, **kwargs)

        monkeypatch.setattr(services, "payloads_receive", spy)
        first = make_listener(system_broker)
        assert first.connect()
        first.shutdown()
        payloads = [f"V_IN: 24.{n}V | STATUS: {'X' * 150}" for n in range(10)]
        size = len(payloads[0])  # 172 bytes
        publish(system_broker, f"{names.root}/WXT536-01", *payloads)
        listener = make_listener(system_broker, batch_wait=0.3)
        assert listener.connect()
        run_until(listener, lambda: listener.stats.stored == 10, what="10 messages")
        assert sum(batches) == 10 * size and len(batches) >= 4
        assert max(batches) <= 3 * size  # full from 500 bytes on

