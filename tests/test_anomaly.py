"""diagnostics.anomaly: the streaming band-excess CUSUM detector (plain Python, no database)."""
from __future__ import annotations

import csv
import json
import math
import random
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from diagnostics.anomaly import AnomalyResult, DetectorParams, StreamingDetector

NAB = Path(__file__).resolve().parents[2] / "shared" / "data" / "nab"
T0 = datetime(2024, 1, 1)
WARMUP = DetectorParams().warmup_h  # 168 h


def feed(det: StreamingDetector, values, *, start: datetime = T0, step_min: float = 60.0):
    """Stream values at a fixed interval; return the results (None for skipped readings)."""
    return [det.update(start + timedelta(minutes=step_min * i), v) for i, v in enumerate(values)]


def noise(n: int, seed: int, *, level: float = 20.0, sd: float = 1.0, ar: float = 0.0) -> list[float]:
    """Gaussian (optionally AR(1)) noise around a level, stationary standard deviation ``sd``."""
    rng = random.Random(seed)
    e, out = 0.0, []
    innovation = sd * math.sqrt(1.0 - ar * ar)
    for _ in range(n):
        e = ar * e + rng.gauss(0.0, innovation)
        out.append(level + e)
    return out


def alarms(results) -> list[int]:
    return [i for i, r in enumerate(results) if r is not None and r.is_alarm]


def settled_readings(step_min: float) -> int:
    """Readings in the warm-up plus one day, so the baseline has settled."""
    return int((WARMUP + 24) * 60 / step_min)


# ------------------------------------------------------------------------------ step, drift
def test_large_step_is_flagged_within_a_few_samples():
    step_min = 5.0
    n0 = settled_readings(step_min)
    values = noise(n0, seed=1) + [v + 12.0 for v in noise(200, seed=2)]  # +12 sigma
    results = feed(StreamingDetector(), values, step_min=step_min)
    hits = alarms(results)
    assert hits, "a 12-sigma step was not flagged"
    assert n0 <= hits[0] <= n0 + 2  # the gross-step path: 2 consecutive readings beyond 8 sigma
    first = results[hits[0]]
    assert first.direction == "above" and first.z > 8
    assert "above its usual level" in first.reason and "sudden step" in first.reason


def test_moderate_step_is_flagged_after_about_h_over_d_minus_k_hours():
    """A 5-sigma step: CUSUM delay h / (d - k) = 15 / 3.5 = 4.3 h (5-minute readings)."""
    step_min = 5.0
    n0 = settled_readings(step_min)
    values = noise(n0, seed=3) + [v - 5.0 for v in noise(200, seed=4)]
    results = feed(StreamingDetector(), values, step_min=step_min)
    hits = alarms(results)
    assert hits
    delay_h = (hits[0] - n0) * step_min / 60
    assert 3.0 <= delay_h <= 6.0, delay_h
    assert results[hits[0]].direction == "below"
    assert "below its usual level" in results[hits[0]].reason
    reason = results[hits[0]].reason
    assert "abnormal for" in reason and "σ·h outside its ±1.5 σ band" in reason


def test_small_sustained_shift_never_crossing_3_sigma_is_flagged():
    """A sustained shift of 2.8 sigma: no reading crosses a 3-sigma point limit, the CUSUM fires."""
    n0 = settled_readings(60)
    det = StreamingDetector()
    feed(det, noise(n0, seed=5))
    shift = 2.8 * det.sigma  # the detector's own sigma after the warm-up
    shifted = [det.mu + shift + e for e in noise(48, seed=6, level=0.0, sd=0.05)]
    results = feed(det, shifted, start=T0 + timedelta(hours=n0))
    assert max(r.z for r in results) < 3.0
    hits = alarms(results)
    assert hits and hits[0] <= 24, hits


def test_slow_drift_is_flagged_before_it_gets_large():
    """A ramp of 0.05 sigma per hour (1.2 sigma a day) is flagged before it has drifted 5 sigma.

    (Much slower drifts, under about 0.6 sigma a day, are followed by the adaptive baseline and
    never flagged: that is the job of absolute limits, see docs/benchmarks.md.)"""
    n0 = settled_readings(60)
    ramp = [v + 0.05 * i for i, v in enumerate(noise(200, seed=8))]
    results = feed(StreamingDetector(), noise(n0, seed=7) + ramp)
    hits = alarms(results)
    assert hits
    drift_at_alarm = 0.05 * (hits[0] - n0)
    assert drift_at_alarm < 5.0, drift_at_alarm
    assert results[hits[0]].direction == "above"


# ---------------------------------------------------------------------- no false alarms
@pytest.mark.parametrize("ar", [0.0, 0.5])
def test_noise_only_gives_no_alarm(ar):
    """60 days of hourly Gaussian / AR(1) noise, and 20 days of 5-minute noise: no alarm.

    (Longer runs, 6 simulated years each: no alarm for AR(1) coefficients 0 and 0.5 per hour;
    0.01 alarms / week at 0.8, 0.05 at 0.9: docs/benchmarks.md.)"""
    hourly = feed(StreamingDetector(), noise(60 * 24, seed=11, ar=ar))
    fast = feed(StreamingDetector(), noise(20 * 24 * 12, seed=12, ar=0.9), step_min=5)
    assert alarms(hourly) == [] and alarms(fast) == []
    assert not any(r.in_incident for r in hourly + fast)


def test_warmup_produces_no_alarm():
    values = [20.0 + (50.0 if i % 7 == 0 else 0.0) for i in range(int(WARMUP) - 1)]  # wild, hourly
    results = feed(StreamingDetector(), values)
    assert all(r.warming_up for r in results)
    assert alarms(results) == [] and all(r.score == 0.0 for r in results)


# ------------------------------------------------------------------------- suppression
def test_sustained_anomaly_raises_a_single_alarm_then_rearms():
    n0 = settled_readings(60)
    values = (noise(n0, seed=21)
              + [v - 8.0 for v in noise(72, seed=22)]  # 3 days far below
              + noise(48, seed=23)  # back to normal
              + [v - 8.0 for v in noise(24, seed=24)])  # a second incident
    results = feed(StreamingDetector(), values)
    hits = alarms(results)
    first_incident = [i for i in hits if i < n0 + 72 + 48]
    assert len(first_incident) == 1
    assert all(r.in_incident for r in results[first_incident[0]:n0 + 72])
    assert len(hits) == 2 and hits[1] >= n0 + 72 + 48  # re-armed once the series was normal again


def test_both_sides_are_independent():
    n0 = settled_readings(60)
    up, down = [v + 9.0 for v in noise(12, seed=32)], [v - 9.0 for v in noise(12, seed=33)]
    values = noise(n0, seed=31) + up + down
    results = feed(StreamingDetector(), values)
    assert [results[i].direction for i in alarms(results)] == ["above", "below"]


# ---------------------------------------------------------------------------- state
def _fields(r: AnomalyResult | None):
    return None if r is None else (r.timestamp, r.value, r.baseline, r.scale, r.z, r.score, r.is_alarm,
                                   r.in_incident, r.direction, r.warming_up, r.reason)


def test_state_round_trips_through_json_and_continues_identically():
    n0 = settled_readings(60)
    values = noise(n0, seed=41) + [v - 6.0 for v in noise(48, seed=42)] + noise(48, seed=43)
    cut = n0 + 10  # in the middle of the incident: CUSUM and disarmed side in the state
    original = StreamingDetector(label="bearing temperature")
    head = feed(original, values[:cut])
    restored = StreamingDetector.from_dict(json.loads(json.dumps(original.to_dict())))
    assert restored.to_dict() == original.to_dict()

    start = T0 + timedelta(hours=cut)
    tail_a = feed(original, values[cut:], start=start)
    tail_b = feed(restored, values[cut:], start=start)
    assert [_fields(r) for r in tail_a] == [_fields(r) for r in tail_b]
    assert alarms(head + tail_a)  # the scenario did exercise an alarm
    assert restored.label == "bearing temperature"


def test_from_dict_rejects_an_unknown_version():
    data = StreamingDetector().to_dict()
    data["version"] = 999
    with pytest.raises(ValueError):
        StreamingDetector.from_dict(data)


def test_state_is_small_and_constant():
    det = StreamingDetector()
    feed(det, noise(24 * 10, seed=51))
    size = len(json.dumps(det.to_dict()))
    feed(det, noise(24 * 30, seed=52), start=T0 + timedelta(days=10))
    assert len(json.dumps(det.to_dict())) <= size + 64 and size < 2000


# ------------------------------------------------------------------------- robustness
def test_missing_values_are_ignored():
    n0 = settled_readings(60)
    clean = noise(n0, seed=61) + [v - 8.0 for v in noise(24, seed=62)]
    dirty_det, clean_det = StreamingDetector(), StreamingDetector()
    clean_results, dirty_results = [], []
    junk = [None, float("nan"), float("inf"), "n/a", True]
    for i, v in enumerate(clean):
        t = T0 + timedelta(hours=i)
        clean_results.append(clean_det.update(t, v))
        if i % 50 == 0:
            assert dirty_det.update(t, junk[i % len(junk)]) is None
        dirty_results.append(dirty_det.update(t, str(v) if i % 3 == 0 else v))
    assert [_fields(r) for r in dirty_results] == [_fields(r) for r in clean_results]
    assert dirty_det.ignored == len(range(0, len(clean), 50))
    assert alarms(dirty_results)


def test_odd_timestamps_do_not_crash():
    det = StreamingDetector()
    aware = datetime(2024, 1, 1, tzinfo=timezone.utc)
    assert det.update(aware, 1.0) is not None
    assert det.update(aware - timedelta(minutes=55), 1.1) is not None  # clock going backwards
    assert det.time_reversals == 1
    assert det.update(aware + timedelta(days=30), 1.2) is not None  # a month-long gap counts as max_step_h
    seconds = StreamingDetector()
    assert seconds.update(1_700_000_000, 3.0) is not None and seconds.update(1_700_000_060.0, 3.1) is not None
    with pytest.raises(TypeError):
        StreamingDetector().update("yesterday", 1.0)


def test_constant_series_then_any_change_is_flagged_without_division_by_zero():
    n0 = settled_readings(60)
    results = feed(StreamingDetector(), [5.0] * n0 + [5.5] * 5)
    assert alarms(results) and math.isfinite(results[-1].z)


def test_invalid_parameters_are_refused():
    with pytest.raises(ValueError):
        DetectorParams(alarm_sigma_hours=0)
    with pytest.raises(ValueError):
        StreamingDetector(band_sigma=-1)


# ------------------------------------------------------------------ real NAB series
def _nab_ts(text: str) -> datetime:
    return datetime.fromisoformat(text.split(".")[0])


@pytest.mark.integration
def test_nab_machine_temperature_goals():
    """All 4 labelled windows flagged (an alarm inside each, NAB's definition), the precursor
    well before the catastrophic failure, at most one false alarm per week."""
    name = "machine_temperature_system_failure.csv"
    if not (NAB / name).exists():
        pytest.skip(f"NAB data not found at {NAB} (CI always has ../shared/data/nab)")
    with open(NAB / name, newline="") as f:
        rows = [(_nab_ts(r["timestamp"]), float(r["value"])) for r in csv.DictReader(f)]
    key = f"realKnownCause/{name}"
    raw_windows = json.loads((NAB / "combined_windows.json").read_text())[key]
    windows = [(_nab_ts(a), _nab_ts(b)) for a, b in raw_windows]

    det = StreamingDetector(label="temperature")
    alarm_times = [t for t, v in rows if (r := det.update(t, v)) is not None and r.is_alarm]

    flagged = [[t for t in alarm_times if a <= t <= b] for a, b in windows]
    assert all(flagged), flagged
    false_alarms = [t for t in alarm_times if not any(a <= t <= b for a, b in windows)]
    weeks = (rows[-1][0] - rows[0][0] - timedelta(hours=WARMUP)).total_seconds() / (7 * 24 * 3600)
    assert len(false_alarms) / weeks <= 1.0, false_alarms
    precursor, failure = flagged[2][0], windows[3][0]
    assert failure - precursor > timedelta(days=7)  # the precursor is flagged >1 week before the failure
    assert len(alarm_times) <= len(windows) + len(false_alarms)  # one alarm per incident
