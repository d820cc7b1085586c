"""Storing telemetry (apps/assets/services.py): known assets, catalogue sensors, unknowns, autoregister, purge."""
import importlib
from datetime import timedelta

import pytest
from django.apps import apps as django_apps
from django.core.management import call_command
from django.utils import timezone

from apps.assets import services
from apps.assets.models import Asset, DeviceType, Reading, Sensor, TelemetryRejection

pytestmark = pytest.mark.django_db


@pytest.fixture
def wxt(db):
    # The catalogue comes from a data migration; a transactional test run earlier may have flushed it.
    importlib.import_module("apps.assets.migrations.0002_catalogue").load(django_apps, None)
    return Asset.objects.create(asset_id="WXT536-01", name="Mast 1", device_type=DeviceType.objects.get(key="WXT536"))


class TestPayloadReceive:
    def test_it_stores_readings_of_a_known_asset_with_sensors_from_the_catalogue(self, wxt):
        result = services.payload_receive(
            '{"asset": "WXT536-01", "ts": "2026-06-12T10:00:00Z", "readings": {"V_IN": 8.4, "REF_CHK": "FAIL"}}',
            source="http")
        assert result.ok and result.stored == 2 and result.asset == wxt
        v_in = Sensor.objects.get(asset=wxt, key="V_IN")
        assert (v_in.unit, v_in.min_value, v_in.max_value, v_in.kind) == ("V", 10.0, 30.0, "numeric")
        assert Sensor.objects.get(asset=wxt, key="REF_CHK").kind == "status"
        reading = Reading.objects.get(sensor=v_in)
        assert reading.value == 8.4 and reading.source == "http"
        assert reading.ts.isoformat() == "2026-06-12T10:00:00+00:00"
        assert Reading.objects.get(sensor__key="REF_CHK").text == "FAIL"

    def test_it_keeps_the_flag_of_a_numeric_reading(self, wxt):
        services.payload_receive("V_IN: 8.4V [LOW]", source="mqtt", asset_hint="WXT536-01")
        assert Reading.objects.get(sensor__key="V_IN").text == "LOW"

    def test_the_topic_hint_names_the_asset_when_the_payload_does_not(self, wxt):
        result = services.payload_receive('{"readings": {"TEMP_AMB": -3}}', source="mqtt", asset_hint="WXT536-01")
        assert result.stored == 1

    def test_a_device_naming_its_type_is_the_only_asset_of_that_type(self, wxt):
        result = services.payload_receive("[2026-06-12] ID:WXT536 >>> HEAT_CURRENT: 0.00A", source="mqtt")
        assert result.asset == wxt and result.stored == 1

    def test_it_uses_now_when_the_payload_has_no_time(self, wxt):
        before = timezone.now()
        services.payload_receive("V_IN: 24V", source="mqtt", asset_hint="WXT536-01")
        assert Reading.objects.get().ts >= before

    def test_an_unknown_asset_is_rejected_counted_and_kept(self, wxt, caplog):
        before = services.rejection_counts["unknown asset"]
        result = services.payload_receive('{"asset": "NOPE-9", "readings": {"V_IN": 1}}', source="mqtt", topic="t/NOPE-9")
        assert not result.ok and "unknown asset: NOPE-9" in result.error
        assert services.rejection_counts["unknown asset"] == before + 1
        rejection = TelemetryRejection.objects.get()
        assert (rejection.source, rejection.topic) == ("mqtt", "t/NOPE-9")
        assert "NOPE-9" in rejection.excerpt
        assert "unknown asset: NOPE-9" in caplog.text
        assert not Asset.objects.filter(asset_id="NOPE-9").exists()
        assert Reading.objects.count() == 0

    def test_no_asset_at_all_is_rejected(self, wxt):
        result = services.payload_receive("V_IN: 24V", source="mqtt")
        assert "(none given)" in result.error

    def test_an_unknown_sensor_is_reported_while_the_others_are_stored(self, wxt):
        result = services.payload_receive('{"asset": "WXT536-01", "readings": {"V_IN": 24, "HUMIDITY": 55}}', source="http")
        assert result.ok and result.stored == 1 and result.unknown_sensors == ["HUMIDITY"]
        assert not Sensor.objects.filter(key="HUMIDITY").exists()
        assert "unknown sensor(s) of WXT536-01: HUMIDITY" in TelemetryRejection.objects.get().reason

    def test_a_malformed_payload_is_rejected_with_its_reason(self, wxt):
        before = services.rejection_counts["malformed payload"]
        result = services.payload_receive(b"\xff\xfe garbage", source="mqtt")
        assert result.error.startswith("malformed payload: payload is not UTF-8")
        assert services.rejection_counts["malformed payload"] == before + 1
        assert TelemetryRejection.objects.get().reason.startswith("malformed payload")

    def test_an_asset_sensor_overrides_the_catalogue(self, wxt):
        Sensor.objects.create(asset=wxt, key="V_IN", unit="V", min_value=12, max_value=28)
        services.payload_receive("V_IN: 11V", source="mqtt", asset_hint="WXT536-01")
        assert Sensor.objects.get(asset=wxt, key="V_IN").min_value == 12


class TestAutoregister:
    def test_it_registers_unknown_assets_and_sensors_when_enabled(self, wxt, settings):
        settings.NANOSENTRI_TELEMETRY_AUTOREGISTER = True
        result = services.payload_receive('{"asset": "WXT536-07", "readings": {"V_IN": 24, "HUMIDITY": "55 %"}}',
                                          source="mqtt")
        assert result.ok and result.stored == 2 and result.unknown_sensors == []
        asset = Asset.objects.get(asset_id="WXT536-07")
        assert asset.device_type.key == "WXT536"
        humidity = Sensor.objects.get(asset=asset, key="HUMIDITY")
        assert (humidity.unit, humidity.kind) == ("%", "numeric")
        assert Sensor.objects.get(asset=asset, key="V_IN").max_value == 30.0  # still from the catalogue

    def test_it_registers_nothing_when_disabled(self, wxt, settings):
        settings.NANOSENTRI_TELEMETRY_AUTOREGISTER = False
        services.payload_receive('{"asset": "WXT536-07", "readings": {"V_IN": 24}}', source="mqtt")
        assert not Asset.objects.filter(asset_id="WXT536-07").exists()


class TestPurge:
    def test_it_deletes_readings_older_than_the_retention(self, wxt, settings):
        settings.NANOSENTRI_READING_RETENTION_DAYS = 30
        services.payload_receive("V_IN: 24V", source="mqtt", asset_hint="WXT536-01")
        old = timezone.now() - timedelta(days=31)
        services.payload_receive(f'{{"ts": "{old.isoformat()}", "readings": {{"V_IN": 23}}}}', source="mqtt",
                                 asset_hint="WXT536-01")
        assert services.readings_purge() == 1
        assert list(Reading.objects.values_list("value", flat=True)) == [24.0]

    def test_the_command_prints_the_count(self, wxt, settings, capsys):
        settings.NANOSENTRI_READING_RETENTION_DAYS = 7
        old = timezone.now() - timedelta(days=8)
        for value in (1, 2):
            services.payload_receive(f'{{"ts": "{old.isoformat()}", "readings": {{"V_IN": {value}}}}}', source="mqtt",
                                     asset_hint="WXT536-01")
        call_command("purge_readings")
        assert "Deleted 2 reading(s) older than 7 days." in capsys.readouterr().out
        assert Reading.objects.count() == 0


@pytest.mark.django_db
def test_a_sensor_that_leaves_its_usual_level_gets_an_anomaly_finding():
    from datetime import datetime, timedelta, timezone

    from apps.assets.models import Asset, DeviceType, Sensor
    from apps.assets.payloads import Payload, ParsedReading
    from apps.assets.selectors import asset_live_context
    from apps.assets.services import payload_store

    asset = Asset.objects.create(asset_id="PUMP-9", name="Pump", device_type=DeviceType.objects.get(key="WXT536"))
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    # Ten days of a steady supply around 24 V, then it sags to 18 V (still inside 10–30 V).
    for i in range(10 * 24):
        value = 24.0 + (0.1 if i % 2 else -0.1)
        payload_store(Payload(asset="PUMP-9", ts=start + timedelta(hours=i), readings=[ParsedReading("V_IN", value, unit="V")]), source="test")
    assert not Sensor.objects.get(asset=asset, key="V_IN").anomaly_reason
    for i in range(10 * 24, 10 * 24 + 12):
        payload_store(Payload(asset="PUMP-9", ts=start + timedelta(hours=i), readings=[ParsedReading("V_IN", 18.0, unit="V")]), source="test")
    sensor = Sensor.objects.get(asset=asset, key="V_IN")
    assert "below its usual level" in sensor.anomaly_reason
    findings = asset_live_context(asset, now=start + timedelta(hours=252)).findings
    assert any(f.rule == "anomaly" and f.sensor == "V_IN" for f in findings)
    assert not any(f.rule == "out_of_range" for f in findings)  # 18 V is in range: only the detector sees it
