"""Parsing telemetry payloads (apps/assets/payloads.py): both formats, units, flags, bad input."""
import json
from datetime import datetime, timezone

import pytest

from apps.assets.payloads import MAX_PAYLOAD_BYTES, MAX_READINGS, PayloadError, parse_payload, parse_timestamp


def _by_key(payload):
    return {r.key: r for r in payload.readings}


class TestLineFormat:
    def test_it_parses_the_heater_line(self):
        p = parse_payload("[2026-06-12] ID:WXT536 >>> HEAT_CURRENT: 0.00A | TEMP_AMB: -15.2C | STATUS: ICE_WARNING")
        assert p.asset == "WXT536"
        assert p.ts == datetime(2026, 6, 12, tzinfo=timezone.utc)
        r = _by_key(p)
        assert (r["HEAT_CURRENT"].value, r["HEAT_CURRENT"].unit) == (0.0, "A")
        assert (r["TEMP_AMB"].value, r["TEMP_AMB"].unit) == (-15.2, "°C")
        assert r["STATUS"].value is None and r["STATUS"].text == "ICE_WARNING"

    def test_it_parses_flags_and_status_words_without_asset_or_time(self):
        p = parse_payload("V_IN: 8.4V [LOW] | REF_CHK: FAIL | EVENT: SYSTEM_RESET")
        assert p.asset is None and p.ts is None
        r = _by_key(p)
        assert (r["V_IN"].value, r["V_IN"].unit, r["V_IN"].flag) == (8.4, "V", "LOW")
        assert r["REF_CHK"].text == "FAIL"
        assert r["EVENT"].text == "SYSTEM_RESET"

    def test_it_reads_full_timestamps_and_units_with_slashes(self):
        p = parse_payload("[2026-06-12 10:30:00] ID:WXT536-01 >>> WIND_SPEED: 12.5m/s | WIND_DIR: 270°")
        assert p.asset == "WXT536-01"
        assert p.ts == datetime(2026, 6, 12, 10, 30, tzinfo=timezone.utc)
        r = _by_key(p)
        assert (r["WIND_SPEED"].value, r["WIND_SPEED"].unit) == (12.5, "m/s")
        assert (r["WIND_DIR"].value, r["WIND_DIR"].unit) == (270.0, "°")

    def test_it_merges_several_lines(self):
        p = parse_payload("[2026-06-12 10:00:00] ID:WXT536 >>> V_IN: 24.1V\nTEMP_AMB: 3.5C\n")
        assert p.asset == "WXT536"
        assert set(_by_key(p)) == {"V_IN", "TEMP_AMB"}

    def test_it_accepts_bytes_and_scientific_numbers(self):
        p = parse_payload(b"V_IN: 2.41e1V")
        assert _by_key(p)["V_IN"].value == pytest.approx(24.1)

    @pytest.mark.parametrize("text, why", [
        ("garbage", "without 'KEY: value'"),
        ("V IN: 8.4V", "bad sensor key"),
        ("[2026-13-45] ID:WXT536 >>> V_IN: 8.4V", "ISO 8601"),
        ("   \n  ", "empty"),
        ("9KEY: 1", "bad sensor key"),
        ("V_IN: " + "x" * 300, "longer than 200"),
    ])
    def test_it_rejects_bad_lines(self, text, why):
        with pytest.raises(PayloadError, match=why):
            parse_payload(text)

    def test_it_rejects_too_many_fields(self):
        line = " | ".join(f"K{i}: {i}" for i in range(MAX_READINGS + 1))
        with pytest.raises(PayloadError, match="more than"):
            parse_payload(line)


class TestJsonFormat:
    def test_it_parses_plain_numbers_and_units_map(self):
        p = parse_payload(json.dumps({"asset": "WXT536-01", "ts": "2026-06-12T10:00:00Z",
                                      "readings": {"V_IN": 8.4, "STATUS": "OK"}, "units": {"V_IN": "V"}}))
        assert p.asset == "WXT536-01"
        assert p.ts == datetime(2026, 6, 12, 10, tzinfo=timezone.utc)
        r = _by_key(p)
        assert (r["V_IN"].value, r["V_IN"].unit) == (8.4, "V")
        assert r["STATUS"].text == "OK"

    def test_it_parses_value_objects_and_text_with_units(self):
        p = parse_payload('{"readings": {"TEMP_AMB": {"value": -15.2, "unit": "C"}, "V_IN": "8.4 V [LOW]"}}')
        r = _by_key(p)
        assert (r["TEMP_AMB"].value, r["TEMP_AMB"].unit) == (-15.2, "°C")
        assert (r["V_IN"].value, r["V_IN"].flag) == (8.4, "LOW")

    def test_it_reads_epoch_seconds_and_offsets(self):
        assert parse_payload('{"ts": 1781258400, "readings": {"V_IN": 1}}').ts == datetime(2026, 6, 12, 10, tzinfo=timezone.utc)
        p = parse_payload('{"ts": "2026-06-12T12:00:00+02:00", "readings": {"V_IN": 1}}')
        assert p.ts == datetime(2026, 6, 12, 10, tzinfo=timezone.utc)

    def test_booleans_become_text(self):
        assert _by_key(parse_payload('{"readings": {"DOOR": true}}'))["DOOR"].text == "TRUE"

    @pytest.mark.parametrize("raw, why", [
        ('{"readings": {"V_IN": NaN}}', "finite"),
        ('{"readings": {"V_IN": Infinity}}', "finite"),
        ('{"readings": {"V_IN": 1e999}}', "finite"),
        ('{"readings": {"V_IN": [1, 2]}}', "number or text"),
        ('{"readings": {"V_IN": {"value": {"deep": 1}}}}', "number or text"),
        ('{"readings": {"V_IN": null}}', "number or text"),
        ('{"readings": []}', "non-empty object"),
        ('{"readings": {}}', "non-empty object"),
        ('{"asset": 42, "readings": {"V_IN": 1}}', "'asset'"),
        ('{"asset": "bad id!", "readings": {"V_IN": 1}}', "'asset'"),
        ('{"ts": true, "readings": {"V_IN": 1}}', "'ts'"),
        ('{"ts": [1], "readings": {"V_IN": 1}}', "'ts'"),
        ('{"ts": 1e300, "readings": {"V_IN": 1}}', "out of range"),
        ('{"ts": "yesterday", "readings": {"V_IN": 1}}', "ISO 8601"),
        ('{"readings": {"bad key": 1}}', "bad sensor key"),
        ('{"readings": {"V_IN": 1}', "invalid JSON"),
        ("[1, 2]", "KEY: value"),
    ])
    def test_it_rejects_wrong_types_and_values(self, raw, why):
        with pytest.raises(PayloadError, match=why):
            parse_payload(raw)

    def test_it_rejects_a_json_array(self):
        with pytest.raises(PayloadError):
            parse_payload('[{"readings": {"V_IN": 1}}]')

    def test_it_rejects_too_many_readings(self):
        raw = json.dumps({"readings": {f"K{i}": i for i in range(MAX_READINGS + 1)}})
        with pytest.raises(PayloadError, match="more than"):
            parse_payload(raw)


def test_a_huge_integer_is_a_payload_error():
    with pytest.raises(PayloadError):
        parse_payload('{"readings": {"V_IN": 1' + "0" * 400 + "}}")


class TestBadBytes:
    def test_it_rejects_garbage_bytes(self):
        with pytest.raises(PayloadError, match="not UTF-8"):
            parse_payload(b"\xff\xfe\x00\x81garbage")

    def test_it_rejects_huge_messages(self):
        with pytest.raises(PayloadError, match="byte limit"):
            parse_payload(b"V_IN: 1 | " * (MAX_PAYLOAD_BYTES // 8))
        with pytest.raises(PayloadError, match="byte limit"):
            parse_payload("x" * (MAX_PAYLOAD_BYTES + 1))

    def test_it_rejects_empty_payloads(self):
        with pytest.raises(PayloadError, match="empty"):
            parse_payload(b"")


def test_parse_timestamp_leaves_none_alone():
    assert parse_timestamp(None) is None and parse_timestamp("") is None
