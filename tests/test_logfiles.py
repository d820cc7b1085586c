"""Readings from uploaded LOG/CSV files (apps/assets/logfiles.py)."""
import importlib
from datetime import datetime, timezone

import pytest
from django.apps import apps as django_apps

from apps.assets import logfiles
from apps.assets.logfiles import logfile_format, readings_from_logfile
from apps.assets.models import Asset, DeviceType, Reading, TelemetryRejection
from apps.assets.selectors import asset_live_context

pytestmark = pytest.mark.django_db

SPINE_LOG = """\
=== spine controller boot 2026-06-12 ===
[2026-06-12 09:58:00] link up, polling WXT536
[2026-06-12 10:00:00] ID:WXT536 >>> HEAT_CURRENT: 0.62A | TEMP_AMB: 1.2C | STATUS: OK
[2026-06-12 10:05:00] ID:WXT536 >>> HEAT_CURRENT: 0.00A | TEMP_AMB: -15.2C | STATUS: ICE_WARNING
V_IN: 24.1V | HEAT_V: 23.9V
[2026-06-12 10:06:00] operator note: heater fuse checked
"""


def at(hour, minute):
    return datetime(2026, 6, 12, hour, minute, tzinfo=timezone.utc)


@pytest.fixture
def wxt(db):
    importlib.import_module("apps.assets.migrations.0002_catalogue").load(django_apps, None)
    wxt536 = DeviceType.objects.get(key="WXT536")
    Asset.objects.create(asset_id="WXT536-02", name="Mast 2", device_type=wxt536)
    return Asset.objects.create(asset_id="WXT536-01", name="Mast 1", device_type=wxt536)


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


def values(asset, key):
    return list(Reading.objects.filter(sensor__asset=asset, sensor__key=key).order_by("ts").values_list("ts", "value", "text"))


class TestLineFormat:
    def test_it_stores_the_telemetry_lines_and_skips_the_rest(self, wxt, tmp_path):
        stored, rejected = readings_from_logfile(write(tmp_path, "spine.log", SPINE_LOG), asset_hint="WXT536-01")
        assert (stored, rejected) == (8, 0)
        assert values(wxt, "TEMP_AMB") == [(at(10, 0), 1.2, ""), (at(10, 5), -15.2, "")]
        assert values(wxt, "STATUS") == [(at(10, 0), None, "OK"), (at(10, 5), None, "ICE_WARNING")]
        # a line without a time or an asset continues the line above it
        assert values(wxt, "V_IN") == [(at(10, 5), 24.1, "")]
        assert set(Reading.objects.values_list("source", flat=True)) == {"log"}
        assert not TelemetryRejection.objects.exists()

    def test_a_technician_can_ask_about_the_log(self, wxt, tmp_path):
        readings_from_logfile(write(tmp_path, "spine.log", SPINE_LOG), asset_hint="WXT536-01")
        findings = {f.rule: f for f in asset_live_context(wxt, now=at(10, 6)).findings}
        assert findings["heater_failure"].severity == "high"
        assert "24 V heater supply" in findings["heater_failure"].message

    def test_without_a_hint_the_device_type_must_name_one_asset(self, wxt, tmp_path):
        stored, rejected = readings_from_logfile(write(tmp_path, "spine.log", SPINE_LOG))
        # two WXT536 assets: ID:WXT536 is ambiguous; the lines are rejected, once per file
        assert stored == 0 and rejected == 3
        rejection = TelemetryRejection.objects.get()
        assert rejection.reason == "unknown asset: WXT536 (3 lines)" and rejection.topic == "spine.log:3"
        assert rejection.source == "log"

    def test_reading_the_file_again_stores_nothing_twice(self, wxt, tmp_path):
        path = write(tmp_path, "spine.log", SPINE_LOG)
        readings_from_logfile(path, asset_hint="WXT536-01")
        assert readings_from_logfile(path, asset_hint="WXT536-01") == (0, 0)
        assert Reading.objects.count() == 8

    def test_bad_telemetry_lines_are_rejected_with_their_line_number(self, wxt, tmp_path):
        text = ("[2026-06-12 10:00:00] ID:WXT536-01 >>> V_IN: 24.1V\n"
                "[2026-06-12 10:01:00] ID:WXT536-01 >>> V IN: 24.1V | TEMP_AMB: 3C\n"
                "[2026-06-12 10:02:00] ID:WXT536-01 >>> V_IN: 24.0V | HUMIDITY: 55% | DEW: 1C\n"
                "[2026-06-12 10:03:00] ID:WXT536-01 >>> HUMIDITY: 56%\n")
        stored, rejected = readings_from_logfile(write(tmp_path, "spine.log", text))
        assert (stored, rejected) == (2, 2)
        reasons = dict(TelemetryRejection.objects.values_list("topic", "reason"))
        assert reasons["spine.log:2"].startswith("malformed payload: bad sensor key 'V IN'")
        # unknown sensors are reported once for the whole file
        assert reasons["spine.log"] == "unknown sensor(s) of WXT536-01: DEW (1x), HUMIDITY (2x)"

    def test_rejection_rows_are_capped(self, wxt, tmp_path):
        text = "".join(f"[2026-06-12 10:{i % 60:02d}:00] ID:WXT536-01 >>> V_IN: {i}V | BAD KEY: 1\n" for i in range(50))
        stored, rejected = readings_from_logfile(write(tmp_path, "many.log", text))
        assert (stored, rejected) == (0, 50)
        assert TelemetryRejection.objects.count() == logfiles.MAX_REJECTION_ROWS

    def test_autoregister_takes_unknown_sensors(self, wxt, tmp_path, settings):
        settings.NANOSENTRI_TELEMETRY_AUTOREGISTER = True
        text = "[2026-06-12 10:02:00] ID:WXT536-01 >>> V_IN: 24.0V | HUMIDITY: 55%\n"
        assert readings_from_logfile(write(tmp_path, "a.log", text)) == (2, 0)


class TestCsv:
    def test_wide(self, wxt, tmp_path):
        text = ("timestamp,asset,V_IN,TEMP_AMB,STATUS\n"
                "2026-06-12 10:00:00,WXT536-01,24.1,1.5,OK\n"
                "2026-06-12T10:05:00Z,WXT536-01,8.4V [LOW],,FAIL\n"
                "1781258700,WXT536-02,23.9,2,OK\n"
                "not a time,WXT536-01,1,2,OK\n")
        stored, rejected = readings_from_logfile(write(tmp_path, "export.csv", text))
        assert (stored, rejected) == (8, 1)
        assert values(wxt, "V_IN") == [(at(10, 0), 24.1, ""), (at(10, 5), 8.4, "LOW")]
        assert values(wxt, "TEMP_AMB") == [(at(10, 0), 1.5, "")]  # the empty cell is no reading
        assert values(Asset.objects.get(asset_id="WXT536-02"), "V_IN") == [(at(10, 5), 23.9, "")]
        assert TelemetryRejection.objects.get().topic == "export.csv:5"

    def test_wide_without_asset_column_uses_the_hint(self, wxt, tmp_path):
        text = "time,V_IN,HEAT_CURRENT\n2026-06-12 10:00:00,24.1,0.5\n"
        assert readings_from_logfile(write(tmp_path, "e.csv", text), asset_hint="WXT536-01") == (2, 0)

    def test_wide_with_a_bad_column_reads_the_others(self, wxt, tmp_path):
        text = "timestamp,asset,V_IN,Humidity %\n2026-06-12 10:00:00,WXT536-01,24.1,50\n"
        assert readings_from_logfile(write(tmp_path, "e.csv", text)) == (1, 0)
        assert "column(s) ignored, not sensor keys: Humidity %" in TelemetryRejection.objects.get().reason

    def test_long(self, wxt, tmp_path):
        text = ("timestamp,asset,sensor,value,unit\n"
                "2026-06-12 10:00:00,WXT536-01,V_IN,24.1,V\n"
                "2026-06-12 10:00:00,WXT536-01,REF_CHK,PASS,\n"
                "2026-06-12 10:05:00,WXT536-01,V_IN,8.4,V\n"
                "2026-06-12 10:05:00,WXT536-01,REF_CHK,FAIL,\n"
                "2026-06-12 10:05:00,WXT536-01,EVENT,SYSTEM_RESET,\n"
                "2026-06-12 10:06:00,WXT536-01,V_IN,,V\n")
        stored, rejected = readings_from_logfile(write(tmp_path, "long.csv", text))
        assert (stored, rejected) == (5, 1)
        assert values(wxt, "REF_CHK") == [(at(10, 0), None, "PASS"), (at(10, 5), None, "FAIL")]
        findings = {f.rule for f in asset_live_context(wxt, now=at(10, 6)).findings}
        assert "low_supply_resets" in findings


class TestFormats:
    @pytest.mark.parametrize("name, text, kind", [
        ("a.log", SPINE_LOG, "line"),
        ("a.log", "V_IN: 8.4V [LOW] | REF_CHK: FAIL | EVENT: SYSTEM_RESET\n", "line"),
        ("a.csv", "timestamp,asset,V_IN\n2026-06-12,X,1\n", "csv-wide"),
        ("a.csv", "ts,sensor,value\n2026-06-12,V_IN,1\n", "csv-long"),
        ("a.log", "2026-06-12 boot ok\nall systems nominal: yes\n", None),
        ("a.csv", "name,price\nbolt,1\n", None),
        ("a.log", "", None),
    ])
    def test_it_recognises_what_it_can_read(self, tmp_path, name, text, kind):
        assert logfile_format(write(tmp_path, name, text)) == kind

    def test_an_unknown_format_is_left_alone(self, wxt, tmp_path):
        path = write(tmp_path, "notes.log", "Replaced the heater fuse.\nStatus: fine\nNext visit: June\n")
        assert readings_from_logfile(path) == (0, 0)
        assert not TelemetryRejection.objects.exists() and not Reading.objects.exists()

    def test_undecodable_bytes_do_not_stop_it(self, wxt, tmp_path):
        path = tmp_path / "bin.log"
        path.write_bytes(b"\xff\xfe junk\n[2026-06-12 10:00:00] ID:WXT536-01 >>> V_IN: 24.1V\n")
        assert readings_from_logfile(path) == (1, 0)
