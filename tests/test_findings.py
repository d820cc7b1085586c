"""The findings engine (diagnostics/findings.py) and the built-in rules (diagnostics/rules/default.yaml)."""
import importlib
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from django.apps import apps as django_apps
from django.conf import settings

from apps.assets.selectors import context_live_context
from diagnostics.findings import (
    RuleError,
    SensorState,
    evaluate,
    load_rules,
    missing_findings,
    stuck_findings,
)

RULES_FILE = Path(settings.BASE_DIR) / "diagnostics" / "rules" / "default.yaml"
T0 = datetime(2026, 6, 12, 10, 0, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def rules():
    return load_rules(RULES_FILE)


@pytest.fixture
def catalogue(db):
    importlib.import_module("apps.assets.migrations.0002_catalogue").load(django_apps, None)


def v_in(value, **kw):
    return SensorState(key="V_IN", value=value, unit="V", min_value=10, max_value=30, warn_low=10.5, warn_high=29, **kw)


def status(key, text):
    return SensorState(key=key, text=text)


def by_rule(findings):
    return {f.rule: f for f in findings}


class TestAcceptanceCases:
    """The two log lines of the issue, as a technician would paste them."""

    def test_heater_failure(self, catalogue):
        context = context_live_context("[2026-06-12] ID:WXT536 >>> HEAT_CURRENT: 0.00A | TEMP_AMB: -15.2C | STATUS: ICE_WARNING")
        assert context.device_type == "WXT536"
        top = context.findings[0]
        assert (top.rule, top.severity, top.sensor) == ("heater_failure", "high", "HEAT_CURRENT")
        assert "heating is not working" in top.message
        assert "24 V heater supply" in top.message
        assert "0 A" in top.message and "-15.2 °C" in top.message
        assert "24 V heater supply" in top.check
        assert "ice_warning" in by_rule(context.findings)
        assert "Diagnostic findings:" in context.prompt_block()

    def test_low_supply_explains_the_reference_failure_and_resets(self, catalogue):
        context = context_live_context("V_IN: 8.4V [LOW] | REF_CHK: FAIL | EVENT: SYSTEM_RESET")
        assert context.device_type == "WXT536"  # recognised from its sensor keys
        top = context.findings[0]
        assert (top.rule, top.severity, top.sensor) == ("low_supply_resets", "high", "V_IN")
        assert "8.4 V is below the 10–30 V operating range" in top.message
        assert "likely root cause of the reference check failure and the system resets" in top.message
        assert context.sensors["V_IN"].flag == "LOW"
        # The rule already says V_IN is out of range: no second, generic finding about it.
        assert "out_of_range" not in by_rule(context.findings)
        assert {"reference_check_failed", "system_reset"} <= set(by_rule(context.findings))


class TestBuiltInChecks:
    def test_out_of_range_below_and_above(self):
        found = evaluate({"V_IN": v_in(8.4)}, [])
        assert [(f.rule, f.severity) for f in found] == [("out_of_range", "high")]
        assert found[0].message == "V_IN 8.4 V is below its operating range 10–30 V"
        assert "above its operating range" in evaluate({"V_IN": v_in(31.5)}, [])[0].message

    def test_warning_band(self):
        low = evaluate({"V_IN": v_in(10.2)}, [])
        assert [(f.rule, f.severity) for f in low] == [("warning_band", "medium")]
        assert "low warning band (< 10.5)" in low[0].message
        assert "high warning band (> 29)" in evaluate({"V_IN": v_in(29.5)}, [])[0].message
        assert evaluate({"V_IN": v_in(24.0)}, []) == []

    def test_stuck_sensor_needs_enough_identical_readings_over_enough_time(self):
        flat = [(T0 + timedelta(minutes=5 * i), -3.1) for i in range(12)]
        temp = SensorState(key="TEMP_AMB", value=-3.1, unit="°C", recent=flat)
        found = stuck_findings({"TEMP_AMB": temp})
        assert found and found[0].rule == "stuck_sensor" and "12 readings over 55 min" in found[0].message
        # too short a stretch
        quick = SensorState(key="TEMP_AMB", value=-3.1, recent=[(T0 + timedelta(seconds=5 * i), -3.1) for i in range(12)])
        assert stuck_findings({"TEMP_AMB": quick}) == []
        # not flat
        wobbly = SensorState(key="TEMP_AMB", value=-3.1, recent=flat[:-1] + [(flat[-1][0], -3.0)])
        assert stuck_findings({"TEMP_AMB": wobbly}) == []
        # too few readings
        assert stuck_findings({"TEMP_AMB": SensorState(key="TEMP_AMB", value=1, recent=flat[:5])}) == []

    def test_missing_data(self):
        s = v_in(24.0, ts=T0)
        found = missing_findings({"V_IN": s}, now=T0 + timedelta(minutes=20), after=timedelta(minutes=15))
        assert [(f.rule, f.severity) for f in found] == [("missing_data", "high")]
        assert "No data from V_IN for 20 min" in found[0].message
        assert missing_findings({"V_IN": s}, now=T0 + timedelta(minutes=10), after=timedelta(minutes=15)) == []
        # evaluate() only checks it when told the time
        assert evaluate({"V_IN": s}, []) == []
        assert evaluate({"V_IN": s}, [], now=T0 + timedelta(hours=1), missing_after=timedelta(minutes=15))

    def test_findings_are_sorted_most_severe_first(self, rules):
        found = evaluate({"V_IN": v_in(10.2), "REF_CHK": status("REF_CHK", "FAIL"),
                          "HEAT_CURRENT": SensorState(key="HEAT_CURRENT", value=0.0, unit="A", min_value=0, max_value=2),
                          "TEMP_AMB": SensorState(key="TEMP_AMB", value=-15.2, unit="°C")}, rules)
        assert [f.severity for f in found] == sorted((f.severity for f in found), key=["critical", "high", "medium", "low"].index)
        assert found[0].rule == "heater_failure"


class TestDefaultRules:
    def test_the_file_loads(self, rules):
        assert {r.id for r in rules} >= {"heater_failure", "ice_warning", "low_supply_resets", "reference_check_failed", "system_reset"}

    def test_heater_rule_needs_the_cold(self, rules):
        warm = {"TEMP_AMB": SensorState(key="TEMP_AMB", value=12.0), "HEAT_CURRENT": SensorState(key="HEAT_CURRENT", value=0.0)}
        assert "heater_failure" not in by_rule(evaluate(warm, rules))
        working = {"TEMP_AMB": SensorState(key="TEMP_AMB", value=-12.0), "HEAT_CURRENT": SensorState(key="HEAT_CURRENT", value=0.8)}
        assert "heater_failure" not in by_rule(evaluate(working, rules))

    def test_a_fail_with_a_good_supply_is_not_blamed_on_the_supply(self, rules):
        found = by_rule(evaluate({"V_IN": v_in(24.0), "REF_CHK": status("REF_CHK", "FAIL")}, rules))
        assert "low_supply_resets" not in found and "reference_check_failed" in found

    def test_status_text_matches_case_insensitively(self, rules):
        assert "ice_warning" in by_rule(evaluate({"STATUS": status("STATUS", "ice_warning")}, rules))

    def test_device_types_limit_a_rule(self, tmp_path):
        path = tmp_path / "rules.yaml"
        path.write_text("rules:\n  - id: only_wxt\n    device_types: [WXT536]\n    when: {sensor: X, gt: 1}\n    message: X {X}\n")
        rules = load_rules(path)
        x = {"X": SensorState(key="X", value=2)}
        assert evaluate(x, rules, device_type="WXT536")[0].message == "X 2"
        assert evaluate(x, rules, device_type="OTHER") == []

    def test_placeholders(self, tmp_path):
        path = tmp_path / "rules.yaml"
        path.write_text("rules:\n  - id: r\n    when: {sensor: V_IN, present: true}\n"
                        "    message: '{V_IN} {V_IN.unit} in {V_IN.min}-{V_IN.max}, {MISSING}'\n")
        assert by_rule(evaluate({"V_IN": v_in(24.5)}, load_rules(path)))["r"].message == "24.5 V in 10-30, ?"


class TestRuleFileErrors:
    @pytest.mark.parametrize("body, why", [
        ("rules:\n  - severity: high\n    when: {sensor: X, gt: 1}\n    message: m\n", "rule #1 is missing 'id'"),
        ("rules:\n  - id: r\n    message: m\n", "rule #1 is missing 'when'"),
        ("rules:\n  - id: r\n    when: {sensor: X, gt: 1}\n", "rule #1 is missing 'message'"),
        ("rules:\n  - id: r\n    severity: urgent\n    when: {sensor: X, gt: 1}\n    message: m\n", "severity must be one of"),
        ("rules:\n  - id: r\n    when: {sensor: X, bigger: 1}\n    message: m\n", "bad condition"),
        ("rules:\n  - id: r\n    when: {gt: 1}\n    message: m\n", "bad condition"),
        ("rules:\n  - id: r\n    when: {sensor: X}\n    message: m\n", "bad condition"),
        ("rules:\n  - id: r\n    when: [1, 2]\n    message: m\n", "must be a mapping"),
        ("rules:\n  - id: r\n    when: {all: [{sensor: X, gt: 1}, {sensor: Y}]}\n    message: m\n", "bad condition"),
        ("rules:\n  - id: r\n    when: {not: {sensor: X, between: 1}}\n    message: m\n", "bad condition"),
    ])
    def test_it_names_the_problem(self, tmp_path, body, why):
        path = tmp_path / "rules.yaml"
        path.write_text(body)
        with pytest.raises(RuleError, match=why):
            load_rules(path)

    def test_an_empty_file_has_no_rules(self, tmp_path):
        path = tmp_path / "rules.yaml"
        path.write_text("")
        assert load_rules(path) == []

    def test_all_must_be_a_list(self, tmp_path):
        path = tmp_path / "rules.yaml"
        path.write_text("rules:\n  - id: r\n    when: {all: {sensor: X, gt: 1}}\n    message: m\n")
        with pytest.raises(RuleError):
            load_rules(path)

    def test_a_threshold_must_be_a_number(self, tmp_path):
        path = tmp_path / "rules.yaml"
        path.write_text("rules:\n  - id: r\n    when: {sensor: X, gt: high}\n    message: m\n")
        with pytest.raises(RuleError):
            load_rules(path)

    def test_a_single_device_type_string_is_one_type(self, tmp_path):
        path = tmp_path / "rules.yaml"
        path.write_text("rules:\n  - id: r\n    device_types: WXT536\n    when: {sensor: X, gt: 1}\n    message: m\n")
        assert load_rules(path)[0].device_types == ("WXT536",)
