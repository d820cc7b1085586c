"""The sensor simulator (apps/assets/simulator.py) and ``manage.py simulate_sensors``: faults produce findings."""
import importlib
import json
import socket
from datetime import datetime, timedelta, timezone

import pytest
from django.apps import apps as django_apps
from django.core.management import CommandError, call_command

from apps.assets.models import Alert, Asset, DeviceType, Reading
from apps.assets.payloads import parse_payload
from apps.assets.selectors import asset_live_context
from apps.assets.services import payload_receive
from apps.assets.simulator import FAULTS, FaultSchedule, SensorSimulator, payload_json, payload_line

MIDNIGHT = datetime(2026, 1, 15, tzinfo=timezone.utc)


def run(sim: SensorSimulator, n: int, *, start=MIDNIGHT, every=timedelta(minutes=5)):
    return [(start + i * every, sim.sample(start + i * every)) for i in range(n)]


@pytest.fixture
def wxt(db):
    importlib.import_module("apps.assets.migrations.0002_catalogue").load(django_apps, None)
    return Asset.objects.create(asset_id="WXT536-01", name="Demo", device_type=DeviceType.objects.get(key="WXT536"))


def store(sim: SensorSimulator, n: int, fmt: str = "json"):
    """Store n simulated payloads five minutes apart; returns the time of the last one."""
    render = payload_line if fmt == "line" else payload_json
    for ts, values in run(sim, n):
        result = payload_receive(render(sim.asset_id, ts, values), source="demo")
        assert result.ok and not result.unknown_sensors, result
    return ts


def rules_found(asset, now):
    return {f.rule: f for f in asset_live_context(asset, now=now).findings}


class TestSignals:
    def test_the_same_seed_gives_the_same_readings(self):
        assert run(SensorSimulator(seed=7), 20) == run(SensorSimulator(seed=7), 20)
        assert run(SensorSimulator(seed=7), 20) != run(SensorSimulator(seed=8), 20)

    def test_a_normal_day_is_realistic_and_raises_no_finding(self):
        day = run(SensorSimulator(seed=1), 288)  # 24 h, every 5 min
        temps = [v["TEMP_AMB"] for _, v in day]
        coldest = min(day, key=lambda tv: tv[1]["TEMP_AMB"])[0]
        warmest = max(day, key=lambda tv: tv[1]["TEMP_AMB"])[0]
        assert 3 <= coldest.hour <= 7 and 14 <= warmest.hour <= 19
        assert 8 < max(temps) - min(temps) < 16
        for _, v in day:
            assert 23.3 < v["V_IN"] < 24.7 and 23.3 < v["HEAT_V"] < 24.7
            assert (v["HEAT_CURRENT"] > 0.3) == (v["TEMP_AMB"] < 4.0)  # the heater runs when it is cold
            assert 0 <= v["WIND_SPEED"] < 20 and 0 <= v["WIND_DIR"] < 360
            assert (v["STATUS"], v["REF_CHK"], v["EVENT"]) == ("OK", "PASS", "NONE")
        assert len({v["WIND_SPEED"] for _, v in day}) > 20  # noisy, not flat

    def test_heater_failure(self):
        for _, v in run(SensorSimulator(seed=2, fault="heater_failure"), 288):
            assert v["TEMP_AMB"] < 0 and v["HEAT_CURRENT"] == 0.0 and v["STATUS"] == "ICE_WARNING"

    def test_voltage_drop(self):
        for _, v in run(SensorSimulator(seed=3, fault="voltage_drop"), 5):
            assert (v["V_IN"], v["REF_CHK"], v["EVENT"]) == (8.4, "FAIL", "SYSTEM_RESET")

    def test_stuck_sensor_repeats_one_value(self):
        values = run(SensorSimulator(seed=4, fault="stuck_sensor", stuck_sensor="WIND_SPEED"), 20)
        assert len({v["WIND_SPEED"] for _, v in values}) == 1
        assert len({v["TEMP_AMB"] for _, v in values}) > 1

    def test_the_other_faults(self):
        assert all(v["HEAT_V"] < 20 for _, v in run(SensorSimulator(seed=5, fault="heater_supply_low"), 5))
        assert all(v["V_IN"] > 30 for _, v in run(SensorSimulator(seed=5, fault="overvoltage"), 5))
        assert all("WIND_SPEED" not in v for _, v in run(SensorSimulator(seed=5, fault="sensor_dropout"), 5))

    def test_a_fault_can_start_later(self):
        values = [v["V_IN"] for _, v in run(SensorSimulator(seed=6, fault="voltage_drop", fault_after=3), 6)]
        assert all(v > 23 for v in values[:3]) and values[3:] == [8.4, 8.4, 8.4]

    def test_a_scheduled_fault_comes_and_goes_by_the_clock(self):
        schedule = FaultSchedule(first=MIDNIGHT + timedelta(minutes=10), on=timedelta(minutes=5),
                                 every=timedelta(minutes=20))
        sim = SensorSimulator(seed=6, fault="voltage_drop", schedule=schedule)
        dropped = [ts.minute for ts, v in run(sim, 12, every=timedelta(minutes=5)) if v["V_IN"] == 8.4]
        assert dropped == [10, 30, 50]  # on at 10 for 5 min, every 20 min
        assert not schedule.active(MIDNIGHT - timedelta(minutes=10))  # never before the first time

    def test_a_one_off_schedule(self):
        once = FaultSchedule(first=MIDNIGHT, on=timedelta(minutes=10))
        for_good = FaultSchedule(first=MIDNIGHT)
        assert [once.active(MIDNIGHT + timedelta(minutes=m)) for m in (-1, 0, 9, 10)] == [False, True, True, False]
        assert [for_good.active(MIDNIGHT + timedelta(days=d)) for d in (-1, 0, 300)] == [False, True, True]
        with pytest.raises(ValueError, match="0 < on <= every"):
            FaultSchedule(first=MIDNIGHT, every=timedelta(minutes=5))

    def test_unknown_faults_are_refused(self):
        with pytest.raises(ValueError, match="unknown fault"):
            SensorSimulator(fault="meltdown")

    @pytest.mark.parametrize("render", [payload_json, payload_line])
    def test_both_payload_formats_parse_back(self, render):
        ts = datetime(2026, 6, 12, 10, 0, tzinfo=timezone.utc)
        values = SensorSimulator(seed=9, fault="voltage_drop").sample(ts)
        payload = parse_payload(render("WXT536-01", ts, values))
        assert payload.asset == "WXT536-01" and payload.ts == ts
        parsed = {r.key: r for r in payload.readings}
        assert parsed["V_IN"].value == 8.4 and parsed["REF_CHK"].text == "FAIL"
        assert parsed["TEMP_AMB"].unit == "°C" and parsed["WIND_SPEED"].unit == "m/s"
        if render is payload_line:
            assert "V_IN: 8.40V [LOW]" in render("WXT536-01", ts, values)
            assert parsed["V_IN"].flag == "LOW"
        else:
            assert json.loads(render("WXT536-01", ts, values))["ts"] == "2026-06-12T10:00:00Z"


@pytest.mark.django_db
class TestFaultsProduceFindings:
    def test_a_normal_day_raises_nothing(self, wxt):
        last = store(SensorSimulator(seed=1), 24)
        assert rules_found(wxt, last) == {}

    def test_heater_failure(self, wxt):
        last = store(SensorSimulator(seed=2, fault="heater_failure", fault_after=6), 12, fmt="line")
        found = rules_found(wxt, last)
        assert found["heater_failure"].severity == "high" and "24 V heater supply" in found["heater_failure"].message
        assert "ice_warning" in found

    def test_voltage_drop(self, wxt):
        last = store(SensorSimulator(seed=3, fault="voltage_drop", fault_after=6), 12)
        found = rules_found(wxt, last)
        assert "8.4 V is below the 10–30 V operating range" in found["low_supply_resets"].message
        assert {"reference_check_failed", "system_reset"} <= set(found)

    def test_stuck_sensor(self, wxt):
        last = store(SensorSimulator(seed=4, fault="stuck_sensor"), 14)
        found = rules_found(wxt, last)
        assert found["stuck_sensor"].sensor == "TEMP_AMB"

    def test_heater_supply_low(self, wxt):
        last = store(SensorSimulator(seed=5, fault="heater_supply_low"), 2)
        assert "HEAT_V 17.5" in rules_found(wxt, last)["out_of_range"].message

    def test_overvoltage(self, wxt):
        last = store(SensorSimulator(seed=5, fault="overvoltage"), 2)
        assert "above its operating range 10–30 V" in rules_found(wxt, last)["out_of_range"].message

    def test_sensor_dropout(self, wxt):
        sim = SensorSimulator(seed=6, fault="sensor_dropout", fault_after=3)
        last = store(sim, 8)
        missing = [f for f in asset_live_context(wxt, now=last).findings if f.rule == "missing_data"]
        assert {f.sensor for f in missing} == {"WIND_SPEED", "WIND_DIR"}


# --- the command ---------------------------------------------------------------------------

def _broker_up() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 1883), timeout=1):
            return True
    except OSError:
        return False


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_the_command_publishes_a_fault_over_mqtt_and_the_listener_raises_it(wxt, capsys):
    import uuid

    from apps.assets.mqtt import Backoff, TelemetryListener
    from tests.test_mqtt_listener import end_session

    if not _broker_up():
        pytest.skip("no MQTT broker at 127.0.0.1:1883")
    tag = uuid.uuid4().hex[:12]
    listener = TelemetryListener(url="mqtt://127.0.0.1:1883", topics=[f"nanosentri-test/{tag}/#"],
                                 client_id=f"nanosentri-test-{tag}", session_expiry=120, backoff=Backoff(0.05, 0.2))
    try:
        assert listener.connect()
        call_command("simulate_sensors", "--count", "3", "--interval", "0", "--fault", "voltage_drop", "--fault-after", "1",
                     "--seed", "1", "--url", "mqtt://127.0.0.1:1883", "--topic", f"nanosentri-test/{tag}/WXT536-01")
        out = capsys.readouterr().out
        assert "sent 3 payloads for WXT536-01" in out and "[voltage_drop] V_IN=8.4" in out
        for _ in range(100):
            if listener.stats.received == 3:
                break
            listener.tick(timeout=0.1)
        assert listener.stats.stored == 3
        assert Alert.objects.get(asset=wxt, resolved__isnull=True).rule == "low_supply_resets"
    finally:
        listener.shutdown()
        end_session("mqtt://127.0.0.1:1883", f"nanosentri-test-{tag}")


@pytest.mark.integration
def test_the_command_posts_over_http_with_a_created_asset(live_server, capsys):
    importlib.import_module("apps.assets.migrations.0002_catalogue").load(django_apps, None)
    call_command("simulate_sensors", "--create", "--asset", "WXT536-09", "--transport", "http", "--count", "2",
                 "--interval", "0", "--fault", "heater_failure", "--format", "line", "--seed", "2",
                 "--url", f"{live_server.url}/api/telemetry/")
    out = capsys.readouterr().out
    assert "created demo asset WXT536-09" in out and '"stored": 9' in out
    asset = Asset.objects.get(asset_id="WXT536-09")
    assert asset.device_type.key == "WXT536" and len(asset.ingest_token) >= 32
    assert Reading.objects.filter(sensor__asset=asset, source="http").count() == 18
    assert Alert.objects.filter(asset=asset, rule="heater_failure").exists()


@pytest.mark.django_db
def test_http_without_any_token_is_a_clear_error(settings):
    settings.NANOSENTRI_TELEMETRY_GATEWAY_TOKEN = ""
    with pytest.raises(CommandError, match="no token for HTTP"):
        call_command("simulate_sensors", "--transport", "http", "--asset", "NOPE-1", "--count", "1")


def test_every_fault_is_offered_by_the_command():
    from apps.assets.management.commands.simulate_sensors import Command

    parser = Command().create_parser("manage.py", "simulate_sensors")
    fault = next(a for a in parser._actions if a.dest == "fault")
    assert set(fault.choices) == set(FAULTS)
