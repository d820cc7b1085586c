"""The demo site's weather stations and their live simulated telemetry (``runapp`` with NANOSENTRI_DEMO).

Three WXT536 on one site, each flagged ``Asset.is_demo``:

1. healthy;
2. heater failure: a cold snap (about −15 °C) and, 15 s after the faults start, a heater drawing
   0.00 A. It stays failed but for one minute in every fifteen (a loose connector), so each
   failure opens a new alert and whoever has a page open sees the alert toast;
3. supply drop: V_IN sags to 8.4 V for three minutes in every fifteen (the first live drop 45 s
   after the faults start, earlier ones in the history), with REF_CHK FAIL and SYSTEM_RESET.

The faults start when someone first signs in after the feed started (so the alert arrives while
they look), or two minutes after the start if nobody does. Before that the stations are healthy.

``DemoFeed`` feeds them through the app's own ingestion service (``payload_receive`` and
``alerts_refresh_notify``, what the HTTP API does for one payload), so it needs neither a broker
nor the web server. ``manage.py simulate_sensors --demo`` runs it; ``runapp`` starts that command
as one of its processes. The incidents and answers of the demo live in ``apps.incidents.demo``.
"""
from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import Max, Min

from apps.assets.models import Asset, DeviceType, Reading, Site
from apps.assets.simulator import COLD_SNAP, Climate, FaultSchedule, SensorSimulator, payload_json

log = logging.getLogger(__name__)

DEMO_SITE = "Demo site"
DEMO_SITE_LOCATION = "Simulated weather masts (demo data)"
DEVICE_TYPE = "WXT536"
# History filled in when the feed starts: the chart's default window, a reading every 5 minutes
# (a few hundred payloads: seconds, not minutes, on a busy machine).
BACKFILL = timedelta(hours=6)
BACKFILL_STEP = timedelta(minutes=5)
# The faults start at the first sign-in after the feed started, or this long after it at the latest.
FAULTS_START_AT_LATEST = timedelta(minutes=2)
HEATER_FAILS_AFTER = timedelta(seconds=15)
SUPPLY_DROPS_AFTER = timedelta(seconds=45)
CYCLE = timedelta(minutes=15)


@dataclass(frozen=True)
class Station:
    asset_id: str
    name: str
    location: str
    fault: str | None = None
    climate: Climate | None = None

    def schedule(self, faults_start: datetime) -> FaultSchedule | None:
        """When this station's fault is on, for faults starting at ``faults_start``."""
        if self.fault == "heater_failure":  # healthy until then
            return FaultSchedule(first=faults_start + HEATER_FAILS_AFTER, on=CYCLE - timedelta(minutes=1),
                                 every=CYCLE)
        if self.fault == "voltage_drop":  # the same rhythm back through the history (a day is 96 cycles)
            return FaultSchedule(first=faults_start + SUPPLY_DROPS_AFTER - 96 * CYCLE, on=timedelta(minutes=3),
                                 every=CYCLE)
        return None


STATIONS = (
    Station("DEMO-WXT536-01", "Demo weather station 1", "Mast 1 (simulated: healthy)"),
    Station("DEMO-WXT536-02", "Demo weather station 2", "Mast 2 (simulated: heater failure)",
            fault="heater_failure", climate=COLD_SNAP),
    Station("DEMO-WXT536-03", "Demo weather station 3", "Mast 3 (simulated: supply drop)",
            fault="voltage_drop"),
)
STATION_IDS = tuple(s.asset_id for s in STATIONS)


def demo_assets():
    """The demo stations that exist (an admin may have deleted some), in ``STATIONS`` order."""
    return Asset.objects.filter(is_demo=True, asset_id__in=STATION_IDS).order_by("asset_id")


@transaction.atomic
def demo_site_ensure(*, technicians=()) -> list[Asset]:
    """The demo site and its three stations with their sensors; creates what is missing.

    ``technicians`` (users) are made responsible for every station, so they see its incidents.
    """
    from apps.assets.services import sensor_from_spec

    device_type = DeviceType.objects.get(key=DEVICE_TYPE)
    site, _ = Site.objects.get_or_create(name=DEMO_SITE, defaults={"location": DEMO_SITE_LOCATION})
    assets = []
    for station in STATIONS:
        asset, _ = Asset.objects.get_or_create(
            asset_id=station.asset_id,
            defaults={"name": station.name, "device_type": device_type, "site": site,
                      "location": station.location, "is_demo": True},
        )
        for spec_key in device_type.specs.values_list("key", flat=True):
            sensor_from_spec(asset, spec_key)
        asset.technicians.add(*technicians)
        assets.append(asset)
    return assets


class DemoFeed:
    """Simulated readings for the demo stations, stored as telemetry arriving now.

    ``start`` is when the feed started: the faults start at the first sign-in after it (or
    ``FAULTS_START_AT_LATEST`` after it); ``seed`` makes the readings repeatable.
    """

    def __init__(self, *, start: datetime, seed: int | None = None):
        rng = random.Random(seed)
        self.start = start
        self.simulators = {
            s.asset_id: SensorSimulator(s.asset_id, seed=rng.getrandbits(32), fault=s.fault, climate=s.climate)
            for s in STATIONS
        }
        self.faults_start: datetime | None = None  # None: not decided yet
        self._plan(start + FAULTS_START_AT_LATEST)

    def faults_start_at(self, when: datetime) -> None:
        """Start the faults at ``when`` (their schedules count from it)."""
        self._plan(when)
        self.faults_start = when

    def _plan(self, faults_start: datetime) -> None:
        for station in STATIONS:
            self.simulators[station.asset_id].schedule = station.schedule(faults_start)

    def _faults_start_if_due(self, now: datetime) -> None:
        from django.contrib.auth import get_user_model

        users = get_user_model().objects.filter(last_login__gte=self.start)
        signed_in = users.aggregate(first=Min("last_login"))["first"]
        if signed_in is not None:
            self.faults_start_at(signed_in)
        elif now >= self.start + FAULTS_START_AT_LATEST:
            self.faults_start_at(self.start + FAULTS_START_AT_LATEST)

    def backfill(self, *, now: datetime, span: timedelta = BACKFILL, step: timedelta = BACKFILL_STEP) -> int:
        """Fill in the last ``span`` (since each station's last reading, if newer), a reading every
        ``step``, so the charts have history; returns how many payloads were stored."""
        stored = 0
        for asset in demo_assets():
            last = Reading.objects.filter(sensor__asset=asset).aggregate(last=Max("ts"))["last"]
            ts = max(now - span, last + step) if last else now - span
            while ts < now:
                stored += self._store(asset, ts)
                ts += step
            self._alerts(asset)  # once, for where the history ends
        return stored

    def step(self, now: datetime) -> list:
        """One reading of every demo station at ``now``; returns the alerts it opened."""
        if self.faults_start is None:
            self._faults_start_if_due(now)
        opened = []
        for asset in demo_assets():
            if self._store(asset, now):
                opened += self._alerts(asset)
        return opened

    def _store(self, asset: Asset, ts: datetime) -> int:
        from apps.assets.services import payload_receive

        simulator = self.simulators[asset.asset_id]
        result = payload_receive(payload_json(asset.asset_id, ts, simulator.sample(ts)), source="demo")
        if not result.ok:  # cannot happen with the catalogue's sensors; say so if it does
            log.warning("demo reading of %s not stored: %s", asset.asset_id, result.error)
        return 1 if result.stored else 0

    def _alerts(self, asset: Asset) -> list:
        from apps.assets.services import alerts_refresh_notify

        return alerts_refresh_notify(asset)
