"""Streaming anomaly detection for one numeric series: robust baseline + band-excess CUSUM.

Plain Python (no Django, no numpy needed). One :class:`StreamingDetector` per sensor; feed it
readings in time order with :meth:`StreamingDetector.update`; persist it between readings with
:meth:`~StreamingDetector.to_dict` / :meth:`~StreamingDetector.from_dict` (a JSON-able dict of
about 20 numbers: memory is O(1) per series, whatever its length).

Method
======

For every reading ``x`` at time ``t`` (judged with the statistics learnt *before* it: the
detector never looks at the present or the future to decide about the present):

1. **Robust slow baseline.** ``mu`` is an exponentially weighted mean with a half-life of
   ``baseline_half_life_h`` (72 h); ``sigma`` = 1.2533 x an exponentially weighted mean
   absolute deviation with a half-life of ``scale_half_life_h`` (168 h). Both learn from the
   *winsorised* residual ``clip(x - mu, +-clip_sigma * sigma)`` (Huber-style, ``clip_sigma`` 2),
   so one reading moves the baseline by a bounded amount: a fault lasting hours is not learnt
   as the new normal while it happens (that takes days), while seasonal drift over weeks is
   followed.
2. **Score.** ``z = (x - mu) / sigma``.
3. **Band-excess CUSUM** (Page's one-sided CUSUM, one per side, weighted by elapsed time)::

       S_low  = min(h, max(0, S_low  + (-z - k) * dt_h))
       S_high = min(h, max(0, S_high + ( z - k) * dt_h))

   ``k = band_sigma`` (1.5): inside the +-1.5 sigma band the sums drain, outside it they
   accumulate the excess, so ``S`` reads as "sigma-hours spent outside the normal band". An
   alarm is raised when ``S`` reaches ``h = alarm_sigma_hours`` (15 sigma-hours). A sustained
   shift of ``d`` sigma is flagged after about ``h / (d - k)`` hours: 10 h at 3 sigma, 6 h at
   4 sigma, 3.3 h at 6 sigma; a ramp as soon as its accumulated excess reaches ``h``.
   ``S`` is capped at ``h`` so that an incident ends about ``h / k`` (10) hours after the
   series is back in its band, however long the incident lasted.
4. **Gross-step fast path.** ``extreme_samples`` (2) consecutive readings beyond
   ``extreme_sigma`` (8) raise the alarm at once (one wild reading alone is more often a
   transmission glitch than a fault).
5. **One incident, one alarm** (hysteresis). An alarm disarms its side until that side's
   CUSUM has drained back to 0 and at least ``refractory_h`` (6 h) have passed; the other side
   stays armed.
6. **Warm-up.** For the first ``warmup_h`` (168 h: one weekly cycle) and ``warmup_samples``
   (20) readings the baseline learns with equal weights (running mean / mean absolute
   deviation; the exponential weights take over as soon as they are the larger) and nothing
   is scored.

Time is measured in hours from the timestamps; a gap counts as at most ``max_step_h`` (1 h)
and a timestamp going backwards as 0 h, so a dead sensor does not fill the CUSUM and a clock
glitch does not crash anything. NaN / None / inf / non-numeric readings are ignored.

Why this method
===============

* **Explainable.** Every alarm is a technician's sentence ("temperature 51.7 is 25.2 below
  its usual level 76.9 (2.7 σ); abnormal for 12.9 h (15 σ·h outside its ±1.5 σ band)": the
  planned-shutdown alarm on the NAB machine), and every number in it can be recomputed by hand
  from the state.
* **Cheap.** About 20 numbers of state and a few dozen arithmetic operations per reading
  (~20 µs in CPython): fine on a field device with thousands of sensors, no model file, no
  training set. NAB's best detectors (ARTime, Numenta HTM, CAD OSE) learn a model per series.
* **Suited to machine faults.** Industrial equipment often makes large but *short* excursions
  in normal operation (load changes, cleaning cycles: the NAB machine-temperature series drops
  by 20-35 degrees for a few hours about twenty times in 11 weeks, mostly unlabelled). What
  separates a fault is depth *and* duration. A point z-score alarms on those normal excursions
  (the rolling 3σ baseline in bench/bench_anomaly.py: 41 false alarms in 10 weeks); the
  band-excess CUSUM integrates depth x time, so a shallow-but-long departure (a precursor)
  and a deep fall are caught while a normal brief dip is not. The CUSUM is the classical
  sequential test for a sustained shift (Page 1954), which is what a developing fault is;
  ``k`` = 1.5 is the textbook ``k = delta / 2`` for shifts of delta = 3 sigma.
* **Few parameters, in sigma and hours** (not samples), so the same defaults serve a
  5-minute and an hourly series: k = 1.5, h = 15 σ·h, half-lives 72 h / 168 h, clip 2 σ,
  warm-up 168 h, refractory 6 h, fast path 8 σ x 2 readings. k and h were taken from the middle
  of the region of a (k, h) grid on the NAB machine-temperature file where all its windows are
  flagged, not at its best point, and then used unchanged on the ambient-temperature file;
  ``bench/bench_anomaly.py --sensitivity`` prints that grid (docs/benchmarks.md).

Known limits: drifts slower than about 0.6 sigma a day are followed by the baseline and never
flagged (absolute limits from the sensor spec catch those: diagnostics/findings.py); a long
incident widens ``sigma`` for a while afterwards (the detector is then less sensitive);
daily / weekly seasonality is not modelled (it widens ``sigma`` instead); multi-sensor context
is the findings engine's job.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, datetime, timezone
from typing import Any

STATE_VERSION = 1

_EPOCH_NAIVE = datetime(1970, 1, 1)
_EPOCH_AWARE = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MAD_TO_SIGMA = math.sqrt(math.pi / 2.0)  # E|X - mu| = sigma * sqrt(2/pi) for a Gaussian


@dataclass(frozen=True)
class DetectorParams:
    """The detector's parameters (see the module docstring for what each one does)."""

    band_sigma: float = 1.5  # k: the CUSUM drains inside +-k sigma, accumulates beyond
    alarm_sigma_hours: float = 15.0  # h: alarm when the excess outside the band reaches h sigma-hours
    baseline_half_life_h: float = 72.0
    scale_half_life_h: float = 168.0
    clip_sigma: float = 2.0  # winsorise residuals at +-clip sigma before learning them
    extreme_sigma: float = 8.0  # fast path: |z| beyond this ...
    extreme_samples: int = 2  # ... on this many consecutive readings
    refractory_h: float = 6.0  # minimum time between two alarms on the same side
    warmup_h: float = 168.0
    warmup_samples: int = 20
    max_step_h: float = 1.0  # a gap counts as at most this much time
    min_scale: float = 1e-9  # floor for sigma (absolute; a relative floor of 1e-6*|mu| also applies)

    def __post_init__(self) -> None:
        positive = ("alarm_sigma_hours", "baseline_half_life_h", "scale_half_life_h", "clip_sigma",
                    "extreme_sigma", "max_step_h", "min_scale")
        for name in positive:
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0")
        for name in ("band_sigma", "refractory_h", "warmup_h"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0")
        if self.extreme_samples < 1 or self.warmup_samples < 1:
            raise ValueError("extreme_samples and warmup_samples must be >= 1")


@dataclass(frozen=True)
class AnomalyResult:
    """What the detector says about one reading."""

    timestamp: Any  # as given to update()
    value: float
    baseline: float  # the usual level (before this reading)
    scale: float  # sigma (before this reading)
    z: float  # (value - baseline) / scale
    score: float  # max(S_low, S_high) / h: reaches 1.0 at the CUSUM alarm threshold
    is_alarm: bool  # True only on the reading that raises a new alarm
    in_incident: bool  # an alarm was raised and the series has not yet come back to normal
    direction: str | None  # "below" / "above" for the side that alarmed or is the larger
    warming_up: bool
    reason: str  # plain-language explanation ('' when nothing notable)


def _seconds(ts: Any) -> float:
    """Timestamp -> seconds. Accepts datetime (naive or aware), date, int/float seconds."""
    if isinstance(ts, datetime):
        return (ts - (_EPOCH_AWARE if ts.tzinfo is not None else _EPOCH_NAIVE)).total_seconds()
    if isinstance(ts, date):
        return (datetime(ts.year, ts.month, ts.day) - _EPOCH_NAIVE).total_seconds()
    if isinstance(ts, (int, float)) and not isinstance(ts, bool) and math.isfinite(ts):
        return float(ts)
    raise TypeError(f"unsupported timestamp {ts!r}: use datetime or seconds")


def _number(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def _fmt(x: float) -> str:
    a = abs(x)
    if a >= 100:
        return f"{x:.0f}"
    if a >= 1:
        return f"{x:.1f}"
    return f"{x:.3g}"


class StreamingDetector:
    """Robust-baseline, band-excess CUSUM anomaly detector for one numeric series.

    >>> det = StreamingDetector(label="temperature")
    >>> result = det.update(datetime(2024, 1, 1, 12, 0), 85.2)   # AnomalyResult or None
    """

    _STATE_FIELDS = (
        "n", "ignored", "t_first", "t_last", "warm_weight", "mu", "mad",
        "s_low", "s_high", "excursion_low", "excursion_high", "armed_low", "armed_high",
        "last_alarm_low", "last_alarm_high", "extreme_run_low", "extreme_run_high", "alarms",
        "time_reversals",
    )

    def __init__(self, params: DetectorParams | None = None, *, label: str = "value", **overrides: Any):
        base = params or DetectorParams()
        if overrides:
            base = DetectorParams(**{**base.__dict__, **overrides})
        self.params = base
        self.label = label
        self.n = 0  # readings used
        self.ignored = 0  # NaN / None / inf readings skipped
        self.t_first: float | None = None
        self.t_last: float | None = None
        self.warm_weight = 0.0  # total weight learnt with equal weights during warm-up
        self.mu = 0.0
        self.mad = 0.0
        self.s_low = 0.0  # CUSUM, sigma-hours below the band
        self.s_high = 0.0  # CUSUM, sigma-hours above the band
        self.excursion_low: float | None = None  # when S_low last left 0
        self.excursion_high: float | None = None
        self.armed_low = True
        self.armed_high = True
        self.last_alarm_low: float | None = None
        self.last_alarm_high: float | None = None
        self.extreme_run_low = 0
        self.extreme_run_high = 0
        self.alarms = 0
        self.time_reversals = 0

    # ------------------------------------------------------------------ state
    @property
    def sigma(self) -> float:
        p = self.params
        return max(_MAD_TO_SIGMA * self.mad, p.min_scale, 1e-6 * abs(self.mu))

    @property
    def warming_up(self) -> bool:
        p = self.params
        if self.t_first is None or self.t_last is None:
            return True
        return self.n < p.warmup_samples or (self.t_last - self.t_first) / 3600.0 < p.warmup_h

    def to_dict(self) -> dict[str, Any]:
        """JSON-able snapshot: parameters + state. ``from_dict`` continues exactly from here."""
        return {
            "version": STATE_VERSION,
            "label": self.label,
            "params": dict(self.params.__dict__),
            "state": {name: getattr(self, name) for name in self._STATE_FIELDS},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StreamingDetector:
        if data.get("version") != STATE_VERSION:
            raise ValueError(f"unsupported detector state version {data.get('version')!r}")
        det = cls(DetectorParams(**data["params"]), label=data.get("label", "value"))
        for name in cls._STATE_FIELDS:
            setattr(det, name, data["state"][name])
        return det

    # ----------------------------------------------------------------- update
    def update(self, timestamp: Any, value: Any) -> AnomalyResult | None:
        """Score one reading, then learn from it. Returns None for a missing value."""
        x = _number(value)
        if x is None:
            self.ignored += 1
            return None
        t = _seconds(timestamp)
        p = self.params

        if self.t_last is None:
            dt_h = 0.0
            self.t_first = t
        else:
            dt_h = (t - self.t_last) / 3600.0
            if dt_h < 0:
                self.time_reversals += 1
                dt_h = 0.0
            dt_h = min(dt_h, p.max_step_h)
        self.t_last = t

        if self.n == 0:
            self.mu, self.mad = x, 0.0

        mu, sigma = self.mu, self.sigma
        z = (x - mu) / sigma if self.n > 0 else 0.0
        warming = self.warming_up  # includes this reading's time
        is_alarm = False
        reason = ""
        direction: str | None = None

        if not warming:
            # capped at h: an incident ends about h / k hours after the series is back in the band
            cap = p.alarm_sigma_hours
            self.s_low = min(cap, max(0.0, self.s_low + (-z - p.band_sigma) * dt_h))
            self.s_high = min(cap, max(0.0, self.s_high + (z - p.band_sigma) * dt_h))
            self.excursion_low = None if self.s_low == 0.0 else (self.excursion_low or t)
            self.excursion_high = None if self.s_high == 0.0 else (self.excursion_high or t)
            self.extreme_run_low = self.extreme_run_low + 1 if z <= -p.extreme_sigma else 0
            self.extreme_run_high = self.extreme_run_high + 1 if z >= p.extreme_sigma else 0
            # re-arm a side once its incident is over (CUSUM drained) and the refractory time passed
            if not self.armed_low and self.s_low == 0.0:
                self.armed_low = self._since(self.last_alarm_low, t) >= p.refractory_h
            if not self.armed_high and self.s_high == 0.0:
                self.armed_high = self._since(self.last_alarm_high, t) >= p.refractory_h

            for side in ("low", "high"):
                s = self.s_low if side == "low" else self.s_high
                since = self.excursion_low if side == "low" else self.excursion_high
                run = self.extreme_run_low if side == "low" else self.extreme_run_high
                armed = self.armed_low if side == "low" else self.armed_high
                last = self.last_alarm_low if side == "low" else self.last_alarm_high
                if not armed or is_alarm or self._since(last, t) < p.refractory_h:
                    continue
                cusum = s >= p.alarm_sigma_hours
                extreme = run >= p.extreme_samples
                if cusum or extreme:
                    is_alarm = True
                    direction = "below" if side == "low" else "above"
                    self.alarms += 1
                    if side == "low":
                        self.armed_low, self.last_alarm_low = False, t
                    else:
                        self.armed_high, self.last_alarm_high = False, t
                    if cusum:
                        reason = (f"{self._head(x, mu, z)}; abnormal for {self._since(since, t):.1f} h "
                                  f"({s:.0f} σ·h outside its ±{p.band_sigma:g} σ band)")
                    else:
                        reason = (f"{self._head(x, mu, z)}: sudden step, {p.extreme_samples} readings "
                                  f"beyond {p.extreme_sigma:g} σ")

        score = max(self.s_low, self.s_high) / p.alarm_sigma_hours
        in_incident = not (self.armed_low and self.armed_high)
        if direction is None and (self.s_low > 0 or self.s_high > 0):
            direction = "below" if self.s_low >= self.s_high else "above"
        if not reason and in_incident:
            last = max((a for a in (self.last_alarm_low, self.last_alarm_high) if a is not None), default=t)
            reason = f"{self._head(x, mu, z)}; incident open for {self._since(last, t):.1f} h"

        self._learn(x, dt_h, warming)
        return AnomalyResult(
            timestamp=timestamp, value=x, baseline=mu, scale=sigma, z=z, score=score,
            is_alarm=is_alarm, in_incident=in_incident, direction=direction,
            warming_up=warming, reason=reason,
        )

    # ---------------------------------------------------------------- helpers
    @staticmethod
    def _since(last: float | None, t: float) -> float:
        return math.inf if last is None else (t - last) / 3600.0

    def _learn(self, x: float, dt_h: float, warming: bool) -> None:
        p = self.params
        self.n += 1
        if self.n == 1:
            return
        a_mu = 1.0 - 0.5 ** (dt_h / p.baseline_half_life_h)
        a_sd = 1.0 - 0.5 ** (dt_h / p.scale_half_life_h)
        r = x - self.mu
        if warming:
            # equal weights while warming up (running mean / mean absolute deviation of the
            # readings so far), never slower than the exponential weights
            self.warm_weight += 1.0  # number of residuals seen; the mean has one more reading
            self.mu += max(1.0 / (self.warm_weight + 1.0), a_mu) * r
            self.mad += max(1.0 / self.warm_weight, a_sd) * (abs(r) - self.mad)
            return
        c = p.clip_sigma * self.sigma
        rc = min(max(r, -c), c)
        self.mu += a_mu * rc
        self.mad += a_sd * (abs(rc) - self.mad)

    def _head(self, x: float, mu: float, z: float) -> str:
        side = "below" if x < mu else "above"
        return (f"{self.label} {_fmt(x)} is {_fmt(abs(x - mu))} {side} its usual level {_fmt(mu)} "
                f"({abs(z):.1f} σ)")
