"""Realistic WXT536 telemetry for demos and tests, with faults that can be switched on.

``SensorSimulator`` is pure (no Django, no network): a seeded RNG and a clock you pass in, so a
test gets the same readings every time. The publishers at the bottom send its payloads over MQTT
or HTTP for ``manage.py simulate_sensors``.

What the signals do:

- TEMP_AMB follows a daily cycle (coldest around 05:00 UTC, warmest around 15:00) with noise.
- HEAT_CURRENT is above 0 A while it is cold (the sensor-head heating), 0 A otherwise; HEAT_V
  and V_IN sit around their 24 V nominal.
- WIND_SPEED gusts around a mean, WIND_DIR wanders.
- STATUS OK, REF_CHK PASS, EVENT NONE.

A fault is on from the ``fault_after``-th sample, or, with a ``FaultSchedule``, at the times
the schedule says (an intermittent fault: on for a while, then off, again and again).
"""
from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

DEFAULT_ASSET = "WXT536-01"

FAULTS = {
    "heater_failure": "cold snap (about −15 °C) with the heater at 0 A; STATUS ICE_WARNING",
    "voltage_drop": "supply V_IN sags to 8.4 V; REF_CHK FAIL and EVENT SYSTEM_RESET",
    "stuck_sensor": "one sensor (TEMP_AMB unless told otherwise) repeats the same value",
    "heater_supply_low": "heater supply HEAT_V at 17.5 V, below its 20–28 V range",
    "overvoltage": "supply V_IN at 31.5 V, above its 10–30 V range",
    "sensor_dropout": "WIND_SPEED and WIND_DIR stop reporting",
}

UNITS = {"V_IN": "V", "HEAT_V": "V", "HEAT_CURRENT": "A", "TEMP_AMB": "°C", "WIND_SPEED": "m/s", "WIND_DIR": "°"}
_LINE_UNITS = {"°C": "C"}  # devices print -15.2C
_DECIMALS = {"V_IN": 2, "HEAT_V": 2, "HEAT_CURRENT": 2, "TEMP_AMB": 1, "WIND_SPEED": 1, "WIND_DIR": 0}
HEATER_ON_BELOW = 4.0  # °C: the WXT536 heats its sensor head below a few degrees


@dataclass
class Climate:
    mean: float = 6.0  # °C, daily mean
    amplitude: float = 6.0  # °C, half the day-night swing
    wind_mean: float = 4.5  # m/s


COLD_SNAP = Climate(mean=-14.5, amplitude=2.0, wind_mean=6.0)


@dataclass(frozen=True)
class FaultSchedule:
    """When a fault is on, by the clock of the samples: off before ``first``; from then on for
    ``on`` (None: for good), and again every ``every`` (None: once)."""

    first: datetime
    on: timedelta | None = None
    every: timedelta | None = None

    def __post_init__(self):
        if self.every is not None and (self.on is None or not timedelta(0) < self.on <= self.every):
            raise ValueError("a repeating fault needs 0 < on <= every")

    def active(self, ts: datetime) -> bool:
        since = ts - self.first
        if since < timedelta(0):
            return False
        if self.every is not None:
            since %= self.every
        return self.on is None or since < self.on


class SensorSimulator:
    """One WXT536. Call ``sample(ts)`` for successive times; each call advances the simulation."""

    def __init__(self, asset_id: str = DEFAULT_ASSET, *, seed: int = 0, fault: str | None = None,
                 fault_after: int = 0, stuck_sensor: str = "TEMP_AMB", climate: Climate | None = None,
                 schedule: FaultSchedule | None = None):
        if fault is not None and fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r} (known: {', '.join(FAULTS)})")
        self.asset_id = asset_id
        self.fault = fault
        self.fault_after = fault_after
        self.schedule = schedule
        self.stuck_sensor = stuck_sensor
        self.climate = climate or Climate()
        self.rng = random.Random(seed)
        self.steps = 0
        self._wind_dir = self.rng.uniform(0, 360)
        self._stuck_value = None

    @property
    def fault_active(self) -> bool:
        """Whether the next sample is past ``fault_after`` (a schedule may still keep it off)."""
        return self.fault is not None and self.steps >= self.fault_after

    def fault_at(self, ts: datetime) -> str | None:
        """The fault the next sample, taken at ``ts``, shows (None: healthy)."""
        if not self.fault_active or (self.schedule is not None and not self.schedule.active(ts)):
            return None
        return self.fault

    def sample(self, ts: datetime) -> dict[str, float | str]:
        """The readings at ``ts``: numbers for measurements, text for STATUS/REF_CHK/EVENT."""
        fault = self.fault_at(ts)
        climate = COLD_SNAP if fault == "heater_failure" else self.climate
        rng = self.rng
        hours = ts.hour + ts.minute / 60 + ts.second / 3600
        # coldest at 05:00, warmest at 17:00 on a cosine; noise on top
        temp = climate.mean - climate.amplitude * math.cos((hours - 5) / 24 * 2 * math.pi) + rng.gauss(0, 0.15)
        temp = round(temp, _DECIMALS["TEMP_AMB"])  # decide on the heater from what is reported
        heating = temp < HEATER_ON_BELOW
        heat_current = (min(1.2, 0.55 + 0.03 * (HEATER_ON_BELOW - temp)) + rng.gauss(0, 0.015)) if heating else 0.0
        gust = rng.random() < 0.1
        wind = max(0.0, rng.gauss(climate.wind_mean, 1.0) + (rng.uniform(2, 6) if gust else 0.0))
        self._wind_dir = (self._wind_dir + rng.gauss(0, 8)) % 360
        readings: dict[str, float | str] = {
            "V_IN": 24.0 + rng.gauss(0, 0.12),
            "HEAT_V": 24.0 + rng.gauss(0, 0.1),
            "HEAT_CURRENT": max(0.0, heat_current),
            "TEMP_AMB": temp,
            "WIND_SPEED": wind,
            "WIND_DIR": self._wind_dir,
            "STATUS": "OK",
            "REF_CHK": "PASS",
            "EVENT": "NONE",
        }
        if fault == "heater_failure":
            readings["HEAT_CURRENT"] = 0.0
            readings["STATUS"] = "ICE_WARNING"
        elif fault == "voltage_drop":
            readings["V_IN"] = 8.4
            readings["REF_CHK"] = "FAIL"
            readings["EVENT"] = "SYSTEM_RESET"
        elif fault == "heater_supply_low":
            readings["HEAT_V"] = 17.5 + rng.gauss(0, 0.05)
            readings["HEAT_CURRENT"] = readings["HEAT_CURRENT"] * 0.6
        elif fault == "overvoltage":
            readings["V_IN"] = 31.5 + rng.gauss(0, 0.05)
        elif fault == "sensor_dropout":
            del readings["WIND_SPEED"], readings["WIND_DIR"]
        readings = {k: (round(v, _DECIMALS[k]) if isinstance(v, float) else v) for k, v in readings.items()}
        if fault == "stuck_sensor" and self.stuck_sensor in readings:
            if self._stuck_value is None:
                self._stuck_value = readings[self.stuck_sensor]
            readings[self.stuck_sensor] = self._stuck_value
        self.steps += 1
        return readings

    def payload(self, ts: datetime, *, fmt: str = "json") -> str:
        readings = self.sample(ts)
        return payload_line(self.asset_id, ts, readings) if fmt == "line" else payload_json(self.asset_id, ts, readings)


def payload_json(asset_id: str, ts: datetime, readings: dict) -> str:
    units = {k: UNITS[k] for k in readings if k in UNITS}
    return json.dumps({"asset": asset_id, "ts": _iso(ts), "readings": readings, "units": units})


def payload_line(asset_id: str, ts: datetime, readings: dict) -> str:
    """``[2026-06-12 10:00:00] ID:WXT536-01 >>> V_IN: 8.40V [LOW] | ...`` as the devices print it."""
    fields = []
    for key, value in readings.items():
        if isinstance(value, str):
            fields.append(f"{key}: {value}")
            continue
        unit = UNITS.get(key, "")
        text = f"{value:.{_DECIMALS.get(key, 2)}f}{_LINE_UNITS.get(unit, unit)}"
        if key == "V_IN" and value < 10:
            text += " [LOW]"
        fields.append(f"{key}: {text}")
    return f"[{ts.astimezone(timezone.utc):%Y-%m-%d %H:%M:%S}] ID:{asset_id} >>> " + " | ".join(fields)


def _iso(ts: datetime) -> str:
    return ts.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


# --- transports (used by manage.py simulate_sensors) ---------------------------------------

class MqttPublisher:
    """Publishes at QoS 1 and waits for the broker's PUBACK."""

    def __init__(self, url: str, *, username: str = "", password: str = "", client_id: str = ""):
        import paho.mqtt.client as mqtt

        from apps.assets.mqtt import BrokerAddress

        self.address = BrokerAddress.from_url(url, username=username, password=password)
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        if self.address.username:
            self.client.username_pw_set(self.address.username, self.address.password or None)
        if self.address.tls:
            self.client.tls_set()
        self.client.connect(self.address.host, self.address.port, keepalive=30)
        self.client.loop_start()

    def send(self, topic: str, payload: str, *, timeout: float = 10.0) -> str:
        info = self.client.publish(topic, payload, qos=1)
        info.wait_for_publish(timeout=timeout)
        if not info.is_published():
            raise OSError(f"broker did not acknowledge the message on {topic} within {timeout:g} s")
        return f"published to {topic}"

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class HttpPublisher:
    """POSTs each payload to the telemetry API with a bearer token."""

    def __init__(self, url: str, *, token: str):
        self.url = url
        self.token = token

    def send(self, topic: str, payload: str, *, timeout: float = 10.0) -> str:
        import urllib.error
        import urllib.request

        content_type = "application/json" if payload.startswith("{") else "text/plain"
        request = urllib.request.Request(self.url, data=payload.encode(), method="POST", headers={
            "Authorization": f"Bearer {self.token}", "Content-Type": f"{content_type}; charset=utf-8"})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.read().decode()
        except urllib.error.HTTPError as exc:
            raise OSError(f"HTTP {exc.code}: {exc.read().decode(errors='replace')[:300]}") from None

    def close(self) -> None:
        pass
