#!/usr/bin/env python
"""Streaming anomaly detection on the real NAB series: diagnostics.anomaly vs two naive baselines.

    .venv/bin/python bench/bench_anomaly.py                      # both series
    .venv/bin/python bench/bench_anomaly.py --series machine     # machine_temperature only
    .venv/bin/python bench/bench_anomaly.py --sensitivity        # + k / h / half-life grid
    .venv/bin/python bench/bench_anomaly.py --nab-repo ~/NAB     # + re-check the NAB scorer port

Data: ``../shared/data/nab`` (NAB @ ea702d75, MIT): machine_temperature_system_failure.csv
(5-minute samples, 4 labelled windows: a planned shutdown, a shutdown/outage, the hard-to-see
precursor and the catastrophic failure it led to) and ambient_temperature_system_failure.csv
(hourly, 2 windows), windows from combined_windows.json, label points from combined_labels.json.

Every reading is streamed, in file order, through a fresh detector per series and per
detector (causal: each detector only ever sees the past):

* **cusum**: ``diagnostics.anomaly.StreamingDetector`` with its defaults (the method and its
  parameters are described in that module; the same defaults for both series).
* **rolling-3σ** (baseline): z-score against the mean / standard deviation of the previous
  24 h of readings, alarm when |z| > 3.
* **static-3σ** (baseline): Shewhart limits, mean ± 3 standard deviations of the warm-up week,
  then fixed.

The baselines get the SAME warm-up (168 h) and the same one-alarm-per-incident suppression as
the detector (an alarm disarms its side until the series is back inside the limit and 6 h have
passed), so the comparison isolates the statistic, not the alarm handling.

Reported per labelled window: flagged (an alarm inside the window: NAB's definition), first
alarm, lead time vs the window start, the label point and the window end, and the largest
CUSUM value inside the window (the margin over the alarm threshold). An alarm raised before a
window on an incident that is still open when the window starts is shown as "early": NAB counts
it as a false positive. False alarms = alarms outside every window, in total and per week of
scored time (after the warm-up).

NAB score: a port of NAB's ``Sweeper`` (nab/sweeper.py, standard / reward-low-FP / reward-low-FN
cost matrices from config/profiles.json, 15 % / 750-row probation), applied to the alarms as a
binary anomaly score, normalised per file: 100 x (raw - null) / (perfect - null) with
null = -fnWeight x windows and perfect = tpWeight x windows. NAB's published scoreboard is
normalised over the whole 58-file corpus with a threshold optimised per detector on that corpus,
so a single-file score is indicative only. For a like-for-like reference the report also lists
the published detectors' per-file raw scores for the same file, from NAB's own
results/<detector>/<detector>_standard_scores.csv @ ea702d75, normalised the same way;
``--nab-repo`` re-scores NAB's per-row results files with this port and checks it reproduces
those numbers.
"""
from __future__ import annotations

import argparse
import csv
import itertools
import json
import math
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from diagnostics.anomaly import DetectorParams, StreamingDetector  # noqa: E402

DEFAULT_DATA = REPO.parent / "shared" / "data" / "nab"
SERIES = {
    "machine": "machine_temperature_system_failure.csv",
    "ambient": "ambient_temperature_system_failure.csv",
}
WINDOW_NOTES = {  # our reading of DATA_README.md, which describes 3 anomalies for the 4 machine windows
    "machine": ["planned shutdown", "not described (2nd shutdown?)", "precursor (hard to see)",
                "catastrophic failure"],
    "ambient": ["failure 1", "failure 2"],
}
PROFILES = {  # NAB config/profiles.json
    "standard": {"tp": 1.0, "fp": 0.11, "fn": 1.0},
    "reward_low_FP": {"tp": 1.0, "fp": 0.22, "fn": 1.0},
    "reward_low_FN": {"tp": 1.0, "fp": 0.11, "fn": 2.0},
}
BASELINE_Z = 3.0
BASELINE_WINDOW_H = 24.0

# NAB @ ea702d75: results/<detector>/<detector>_standard_scores.csv, rows for these two files
# (raw per-file score at the detector's corpus-optimised threshold), and the scoreboard entry.
NAB_PUBLISHED = {
    # detector: (threshold, raw machine, raw ambient, scoreboard name, corpus standard score)
    "ARTime": (0.317486, 2.5563301921824606, 1.6577326504395065, "ARTime", "74.9"),
    "numenta": (0.542187690735, 1.36013273774, -0.758599859273, "Numenta HTM", "70.5-69.7"),
    "contextOSE": (0.76552734375, -0.164969541073, -0.318599859273, "CAD OSE", "69.9"),
    "numentaTM": (0.5126953125, 1.58440215352, 1.10977284159, "NumentaTM HTM", "64.6"),
    "earthgeckoSkyline": (0.5, 1.39988522238, 1.73112026714, "earthgecko Skyline", "58.2"),
    "knncad": (1.0, -2.8564112107743633, -0.7676052952277256, "KNN CAD", "58.0"),
    "htmjava": (0.5126953125, 0.508085891515, 1.33702652595, "HTM Java", "56.8"),
    "relativeEntropy": (0.5, -0.916101489945, -1.39979253026, "Relative Entropy", "54.6"),
    "randomCutForest": (0.453918457031, -2.1185689822, 1.76216856994, "Random Cut Forest", "51.7"),
    "twitterADVec": (0.5, -0.237213145268, -2.0, "Twitter ADVec v1.0.0", "47.1"),
    "windowedGaussian": (1.0, -4.0, -2.0, "Windowed Gaussian", "39.6"),
    "skyline": (0.803125, -2.13308229438, -2.0, "Etsy Skyline", "35.7"),
    "bayesChangePt": (0.984596252441, -3.3198993642, -2.0, "Bayesian Changepoint", "17.7"),
    "expose": (0.994787597656, -3.10731481414, -2.0, "EXPoSE", "16.4"),
}


# ------------------------------------------------------------------------------------- data
@dataclass
class Series:
    key: str
    file: str
    times: list[datetime]
    values: list[float]
    windows: list[tuple[datetime, datetime]]
    labels: list[datetime]


def _ts(text: str) -> datetime:
    return datetime.fromisoformat(text.strip().split(".")[0])


def load_series(data_dir: Path, key: str) -> Series:
    name = SERIES[key]
    with open(data_dir / name, newline="") as f:
        rows = list(csv.DictReader(f))
    windows = json.loads((data_dir / "combined_windows.json").read_text())[f"realKnownCause/{name}"]
    labels = json.loads((data_dir / "combined_labels.json").read_text())[f"realKnownCause/{name}"]
    return Series(
        key=key, file=name,
        times=[_ts(r["timestamp"]) for r in rows], values=[float(r["value"]) for r in rows],
        windows=[(_ts(a), _ts(b)) for a, b in windows], labels=[_ts(x) for x in labels],
    )


# -------------------------------------------------------------------------------- detectors
class _Suppressed:
    """Baseline alarm handling identical to the detector's: warm-up, one alarm per incident."""

    def __init__(self, warmup_h: float, refractory_h: float):
        self.warmup_h, self.refractory_h = warmup_h, refractory_h
        self.t0: datetime | None = None
        self.armed = {"low": True, "high": True}
        self.last: dict[str, datetime | None] = {"low": None, "high": None}

    def warming(self, t: datetime) -> bool:
        if self.t0 is None:
            self.t0 = t
        return (t - self.t0).total_seconds() / 3600 < self.warmup_h

    def step(self, t: datetime, z: float) -> tuple[bool, bool]:
        """-> (alarm now, in incident)."""
        alarm = False
        for side, outside in (("low", z < -BASELINE_Z), ("high", z > BASELINE_Z)):
            last = self.last[side]
            since = math.inf if last is None else (t - last).total_seconds() / 3600
            if not self.armed[side] and not outside and since >= self.refractory_h:
                self.armed[side] = True
            if self.armed[side] and outside and not alarm:
                self.armed[side], self.last[side], alarm = False, t, True
        return alarm, not all(self.armed.values())


class RollingZ:
    """|z| > 3 against mean / std of the previous 24 h (bounded deque, running sums)."""

    name = "rolling-3σ"

    def __init__(self, params: DetectorParams):
        self.win = deque()
        self.s = self.s2 = 0.0
        self.sup = _Suppressed(params.warmup_h, params.refractory_h)

    def update(self, t: datetime, x: float) -> tuple[bool, bool, float]:
        warming = self.sup.warming(t)
        while self.win and (t - self.win[0][0]).total_seconds() / 3600 > BASELINE_WINDOW_H:
            _, old = self.win.popleft()
            self.s -= old
            self.s2 -= old * old
        n = len(self.win)
        alarm = in_incident = False
        z = 0.0
        if n >= 2 and not warming:
            mean = self.s / n
            var = max(self.s2 / n - mean * mean, 0.0) * n / (n - 1)
            z = (x - mean) / max(math.sqrt(var), 1e-9)
            alarm, in_incident = self.sup.step(t, z)
        self.win.append((t, x))
        self.s += x
        self.s2 += x * x
        return alarm, in_incident, z


class StaticZ:
    """Shewhart chart: limits = mean ± 3 std of the warm-up readings, then fixed."""

    name = "static-3σ"

    def __init__(self, params: DetectorParams):
        self.n = 0
        self.s = self.s2 = 0.0
        self.sup = _Suppressed(params.warmup_h, params.refractory_h)

    def update(self, t: datetime, x: float) -> tuple[bool, bool, float]:
        if self.sup.warming(t):
            self.n += 1
            self.s += x
            self.s2 += x * x
            return False, False, 0.0
        mean = self.s / self.n
        sd = math.sqrt(max(self.s2 / self.n - mean * mean, 0.0) * self.n / max(self.n - 1, 1))
        z = (x - mean) / max(sd, 1e-9)
        alarm, in_incident = self.sup.step(t, z)
        return alarm, in_incident, z


class Cusum:
    name = "cusum"

    def __init__(self, params: DetectorParams):
        self.det = StreamingDetector(params, label="temperature")
        self.reasons: dict[datetime, str] = {}

    def update(self, t: datetime, x: float) -> tuple[bool, bool, float]:
        r = self.det.update(t, x)
        if r is None:
            return False, False, 0.0
        if r.is_alarm:
            self.reasons[t] = r.reason
        return r.is_alarm, r.in_incident, r.z


@dataclass
class Run:
    detector: str
    alarms: list[int] = field(default_factory=list)  # row indices
    incident_end: dict[int, int | None] = field(default_factory=dict)  # alarm row -> first row back to normal
    z_at_alarm: dict[int, float] = field(default_factory=dict)
    reasons: dict[datetime, str] = field(default_factory=dict)
    seconds: float = 0.0
    time_reversals: int = 0


def stream(series: Series, factory, params: DetectorParams) -> Run:
    det = factory(params)
    run = Run(det.name)
    open_alarms: list[int] = []
    start = time.perf_counter()
    for i, (t, x) in enumerate(zip(series.times, series.values)):
        alarm, in_incident, z = det.update(t, x)
        if alarm:
            run.alarms.append(i)
            run.z_at_alarm[i] = z
            run.incident_end[i] = None
            open_alarms.append(i)
        elif not in_incident and open_alarms:
            for a in open_alarms:
                run.incident_end[a] = i
            open_alarms = []
    run.seconds = time.perf_counter() - start
    if isinstance(det, Cusum):
        run.reasons = det.reasons
        run.time_reversals = det.det.time_reversals
    return run


# ------------------------------------------------------------------------------- NAB scoring
def _scaled_sigmoid(position: float) -> float:
    """nab/sweeper.py scaledSigmoid."""
    if position > 3.0:
        return -1.0
    return 2.0 / (1.0 + math.exp(5.0 * position)) - 1.0


def nab_score(times: list[datetime], detections: list[int], windows, profile: str) -> dict:
    """NAB's Sweeper.calcSweepScore + calcScoreByThreshold for one file and binary detections."""
    w = PROFILES[profile]
    index = {}
    for i, t in enumerate(times):
        index.setdefault(t, i)  # NAB uses list.index(): the first occurrence
    bounds = [(index[a], index[b]) for a, b in windows]
    probation = min(math.floor(0.15 * len(times)), 0.15 * 5000)
    max_tp = _scaled_sigmoid(-1.0)
    per_window = [-w["fn"]] * len(bounds)
    fp_total, fp_count = 0.0, 0
    for i in sorted(set(detections)):
        if i < probation:
            continue
        inside = [k for k, (a, b) in enumerate(bounds) if a <= i <= b]
        if inside:
            k = inside[0]
            a, b = bounds[k]
            width = b - a + 1
            per_window[k] = max(per_window[k], _scaled_sigmoid(-(b - i + 1) / width) * w["tp"] / max_tp)
            continue
        before = [(a, b) for a, b in bounds if b < i]
        if not before:
            unweighted = -1.0
        else:
            a, b = before[-1]
            unweighted = _scaled_sigmoid(abs(b - i) / (b - a))  # NAB: /(width - 1)
        fp_total += unweighted * w["fp"]
        fp_count += 1
    raw = sum(per_window) + fp_total
    null, perfect = -w["fn"] * len(bounds), w["tp"] * len(bounds)
    return {"raw": raw, "normalized": 100.0 * (raw - null) / (perfect - null), "fp_rows": fp_count}


def normalized(raw: float, n_windows: int) -> float:
    return 100.0 * (raw + n_windows) / (2.0 * n_windows)  # standard profile: null = -n, perfect = +n


def verify_scorer(nab_repo: Path, data_dir: Path) -> list[str]:
    """Re-score NAB's published per-row results with this port; compare with NAB's own numbers."""
    lines = ["| NAB detector | file | published raw | this port | match |", "|---|---|---:|---:|---|"]
    ok = True
    for key in SERIES:
        series = load_series(data_dir, key)
        for det, (thr, raw_m, raw_a, *_rest) in NAB_PUBLISHED.items():
            path = nab_repo / "results" / det / "realKnownCause" / f"{det}_{series.file}"
            if not path.exists():
                lines.append(f"| {det} | {key} | - | missing {path} | - |")
                ok = False
                continue
            with open(path, newline="") as f:
                scores = [float(r["anomaly_score"]) for r in csv.DictReader(f)]
            hits = [i for i, s in enumerate(scores) if s >= thr]
            got = nab_score(series.times, hits, series.windows, "standard")["raw"]
            want = raw_m if key == "machine" else raw_a
            match = abs(got - want) < 1e-6
            ok &= match
            lines.append(f"| {det} | {key} | {want:.6f} | {got:.6f} | {'yes' if match else 'NO'} |")
    lines.append("")
    lines.append("Scorer port reproduces every published per-file score." if ok else "MISMATCH: see above.")
    return lines


# ------------------------------------------------------------------------------- reporting
def _hours(delta: timedelta) -> float:
    return delta.total_seconds() / 3600.0


def _fmt_h(h: float) -> str:
    return f"{h:+.1f} h" if abs(h) < 72 else f"{h:+.1f} h ({h / 24:+.1f} d)"


def summarize(series: Series, run: Run, params: DetectorParams) -> dict:
    times = series.times
    in_window = [
        [i for i in run.alarms if a <= times[i] <= b] for a, b in series.windows
    ]
    false_alarms = [i for i in run.alarms if not any(a <= times[i] <= b for a, b in series.windows)]
    scored_from = times[0] + timedelta(hours=params.warmup_h)
    weeks = _hours(max(times) - scored_from) / (24 * 7)
    early = []
    for a, _b in series.windows:
        before = [i for i in run.alarms if times[i] < a
                  and (run.incident_end[i] is None or times[run.incident_end[i]] >= a)]
        early.append(before[-1] if before else None)
    return {
        "in_window": in_window, "false_alarms": false_alarms, "weeks": weeks, "early": early,
        "flagged": sum(1 for hits in in_window if hits),
        "nab": {p: nab_score(times, run.alarms, series.windows, p) for p in PROFILES},
    }


def window_table(series: Series, run: Run, summary: dict) -> list[str]:
    times = series.times
    out = [
        "| # | window (NAB) | label point | what | flagged | first alarm in window | after window start"
        " | before label | before window end | z at alarm |",
        "|---|---|---|---|---|---|---:|---:|---:|---:|",
    ]
    notes = WINDOW_NOTES.get(series.key, [])
    for k, ((a, b), label) in enumerate(zip(series.windows, series.labels)):
        hits = summary["in_window"][k]
        what = notes[k] if k < len(notes) else ""
        early = summary["early"][k]
        if hits:
            t = times[hits[0]]
            cells = ["yes", f"{t:%Y-%m-%d %H:%M}", _fmt_h(_hours(t - a)), _fmt_h(_hours(label - t)),
                     _fmt_h(_hours(b - t)), f"{run.z_at_alarm[hits[0]]:+.1f}"]
        else:
            cells = ["**no**", "-", "-", "-", "-", "-"]
        if early is not None:
            te = times[early]
            cells[1] += (f" (early alarm {te:%m-%d %H:%M}, {_hours(a - te):.1f} h before the window:"
                         " an FP for NAB)")
        out.append(
            f"| {k + 1} | {a:%Y-%m-%d %H:%M} → {b:%Y-%m-%d %H:%M} | {label:%Y-%m-%d %H:%M} | {what} | "
            + " | ".join(cells) + " |"
        )
    return out


def comparison_table(series: Series, runs: list[Run], summaries: list[dict]) -> list[str]:
    out = [
        "| detector | windows flagged | false alarms | per week | NAB standard | reward low FP"
        " | reward low FN | µs / reading |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for run, s in zip(runs, summaries):
        nab = s["nab"]
        out.append(
            f"| {run.detector} | {s['flagged']}/{len(series.windows)} | {len(s['false_alarms'])} | "
            f"{len(s['false_alarms']) / s['weeks']:.2f} | {nab['standard']['normalized']:.1f} | "
            f"{nab['reward_low_FP']['normalized']:.1f} | {nab['reward_low_FN']['normalized']:.1f} | "
            f"{1e6 * run.seconds / len(series.times):.1f} |"
        )
    ours = summaries[0]
    for run, s in zip(runs[1:], summaries[1:]):
        fa_ours, fa_base = len(ours["false_alarms"]), len(s["false_alarms"])
        ratio = f"{fa_base / fa_ours:.1f}x" if fa_ours else ("∞" if fa_base else "-")
        out.append(
            f"\ncusum vs {run.detector}: windows flagged {ours['flagged']} vs {s['flagged']}; false alarms "
            f"{fa_ours} vs {fa_base} ({ratio} fewer); NAB standard "
            f"{ours['nab']['standard']['normalized'] - s['nab']['standard']['normalized']:+.1f} points."
        )
    return out


def published_table(series: Series, ours: dict) -> list[str]:
    n = len(series.windows)
    rows = [("**cusum (this run, fixed defaults)**", ours["nab"]["standard"]["raw"], "-")]
    for det, (_thr, raw_m, raw_a, board, corpus) in NAB_PUBLISHED.items():
        rows.append((f"{board} (`{det}`)", raw_m if series.key == "machine" else raw_a, corpus))
    rows.sort(key=lambda r: -r[1])
    out = [
        "| detector | raw score, this file | normalised, this file only | NAB corpus score (58 files) |",
        "|---|---:|---:|---:|",
    ]
    for name, raw, corpus in rows:
        out.append(f"| {name} | {raw:+.3f} | {normalized(raw, n):.1f} | {corpus} |")
    return out


def false_alarm_lines(series: Series, run: Run, summary: dict) -> list[str]:
    out = []
    for i in summary["false_alarms"]:
        reason = run.reasons.get(series.times[i], "")
        out.append(f"- {series.times[i]:%Y-%m-%d %H:%M}: {reason or f'value {series.values[i]:.1f}'}")
    return out or ["- none"]


def sensitivity(series: Series, base: DetectorParams) -> list[str]:
    out = [
        f"Sensitivity on {series.file} (everything else at its default; default marked *):",
        "",
        "| k (band σ) | h (σ·h) | windows flagged | false alarms | NAB standard |",
        "|---:|---:|---:|---:|---:|",
    ]
    for k, h in itertools.product((1.0, 1.5, 2.0, 2.5, 3.0), (7.5, 10.0, 15.0, 20.0, 30.0)):
        params = DetectorParams(**{**base.__dict__, "band_sigma": k, "alarm_sigma_hours": h})
        s = summarize(series, stream(series, Cusum, params), params)
        star = "*" if (k, h) == (base.band_sigma, base.alarm_sigma_hours) else ""
        out.append(f"| {k:g}{star} | {h:g}{star} | {s['flagged']}/{len(series.windows)} | "
                   f"{len(s['false_alarms'])} | {s['nab']['standard']['normalized']:.1f} |")
    out += ["", "| baseline half-life | scale half-life | warm-up | windows flagged | false alarms"
            " | NAB standard |", "|---:|---:|---:|---:|---:|---:|"]
    for hb, hs, wu in ((36, 168, 168), (144, 168, 168), (72, 84, 168), (72, 336, 168), (72, 168, 72)):
        params = DetectorParams(**{**base.__dict__, "baseline_half_life_h": hb, "scale_half_life_h": hs,
                                   "warmup_h": wu})
        s = summarize(series, stream(series, Cusum, params), params)
        out.append(f"| {hb} h | {hs} h | {wu} h | {s['flagged']}/{len(series.windows)} | "
                   f"{len(s['false_alarms'])} | {s['nab']['standard']['normalized']:.1f} |")
    return out


def report_series(series: Series, params: DetectorParams, with_sensitivity: bool) -> dict:
    runs = [stream(series, factory, params) for factory in (Cusum, RollingZ, StaticZ)]
    summaries = [summarize(series, run, params) for run in runs]
    span = _hours(max(series.times) - series.times[0]) / 24
    lines = [
        f"### {series.file}",
        "",
        f"{len(series.times):,} readings over {span:.1f} days ({summaries[0]['weeks']:.2f} scored weeks "
        f"after the {params.warmup_h:g} h warm-up); {len(series.windows)} labelled windows. "
        f"Timestamps going backwards (handled as 0 h steps): {runs[0].time_reversals}.",
        "",
        "**cusum, per labelled window** (lead times: + = the alarm came that long before the reference):",
        "",
        *window_table(series, runs[0], summaries[0]),
        "",
        "**cusum false alarms** (alarms outside every window):",
        "",
        *false_alarm_lines(series, runs[0], summaries[0]),
        "",
        "**Detector vs baselines, same run** (NAB scores normalised for this file only):",
        "",
        *comparison_table(series, runs, summaries),
        "",
        "**Next to NAB's published detectors on this file** (their per-file raw standard-profile score from "
        "NAB's results files, normalised like ours; their thresholds were optimised on the whole corpus, "
        "ours is fixed):",
        "",
        *published_table(series, summaries[0]),
        "",
    ]
    if with_sensitivity:
        lines += sensitivity(series, params) + [""]
    print("\n".join(lines), flush=True)
    return {"series": series.key, "summary": summaries[0]}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--series", choices=[*SERIES, "all"], default="all")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--sensitivity", action="store_true", help="also run the k / h / half-life grid")
    parser.add_argument("--nab-repo", type=Path,
                        help="a NAB checkout: re-check the scorer port on its results files")
    args = parser.parse_args(argv)
    if not (args.data_dir / "combined_windows.json").exists():
        print(f"NAB data not found in {args.data_dir}", file=sys.stderr)
        return 2
    params = DetectorParams()
    print("## Streaming anomaly detection on NAB\n")
    print("Detector parameters (defaults, identical for every series): "
          + ", ".join(f"{k}={v:g}" for k, v in params.__dict__.items()) + "\n")
    keys = list(SERIES) if args.series == "all" else [args.series]
    results = [report_series(load_series(args.data_dir, key), params, args.sensitivity) for key in keys]
    for r in results:
        s = r["summary"]
        print(f"- {r['series']}: {s['flagged']} windows flagged, {len(s['false_alarms'])} false alarms "
              f"({len(s['false_alarms']) / s['weeks']:.2f} / week), NAB standard (this file) "
              f"{s['nab']['standard']['normalized']:.1f}")
    if args.nab_repo:
        print("\n### Scorer check against NAB's published results\n")
        print("\n".join(verify_scorer(args.nab_repo, args.data_dir)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
