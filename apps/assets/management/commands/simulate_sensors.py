"""Publish simulated WXT536 readings (apps/assets/simulator.py) over MQTT or HTTP, with faults.

``--demo`` feeds the demo site's stations instead (apps/assets/demo.py), stored here through the
ingestion service: no broker, no web server. ``runapp`` runs it when NANOSENTRI_DEMO is on.
"""
import logging
import secrets
import signal
import time
from datetime import timedelta

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError, close_old_connections
from django.utils import timezone

from apps.assets.models import Asset, DeviceType
from apps.assets.simulator import (
    DEFAULT_ASSET,
    FAULTS,
    HttpPublisher,
    MqttPublisher,
    SensorSimulator,
    payload_json,
    payload_line,
)


class Command(BaseCommand):
    help = "Publish realistic readings for a demo asset over MQTT (or HTTP), optionally with a fault."

    def add_arguments(self, parser):
        parser.add_argument("--asset", default=DEFAULT_ASSET, help=f"asset id (default {DEFAULT_ASSET})")
        parser.add_argument("--create", action="store_true", help="create the asset (type WXT536) here if it is missing")
        parser.add_argument("--interval", type=float, default=5.0, help="seconds between readings (default 5)")
        parser.add_argument("--count", type=int, default=0, help="how many payloads to send (default: until Ctrl-C)")
        parser.add_argument("--fault", choices=sorted(FAULTS), help="; ".join(f"{k}: {v}" for k, v in FAULTS.items()))
        parser.add_argument("--fault-after", type=int, default=0, help="send this many normal payloads before the fault")
        parser.add_argument("--stuck-sensor", default="TEMP_AMB", help="the sensor that freezes with --fault stuck_sensor")
        parser.add_argument("--backfill", type=float, default=0, metavar="MINUTES",
                            help="first send the last MINUTES of history (past timestamps, no waiting), then go live")
        parser.add_argument("--transport", choices=("mqtt", "http"), default="mqtt")
        parser.add_argument("--url", help="broker URL (default NANOSENTRI_MQTT_URL or mqtt://127.0.0.1:1883) "
                                          "or API URL (default http://127.0.0.1:8000/api/telemetry/)")
        parser.add_argument("--topic", help="MQTT topic (default nanosentri/telemetry/<asset>)")
        parser.add_argument("--token", help="HTTP bearer token (default: the asset's ingest token, else the gateway token)")
        parser.add_argument("--format", choices=("json", "line"), default="json", dest="fmt")
        parser.add_argument("--seed", type=int, default=None, help="random seed (default: a new one each run)")
        parser.add_argument("--demo", action="store_true",
                            help="feed the demo site's stations (healthy, heater failure, supply drop) through the "
                                 "ingestion service, after filling in the last hours; --interval, --count and "
                                 "--seed apply, the other options do not")

    def handle(self, *args, **o):
        if o["demo"]:
            return self._demo(o)
        asset = self._asset(o["asset"], create=o["create"], http=o["transport"] == "http")
        publisher = self._publisher(o, asset)
        simulator = SensorSimulator(o["asset"], seed=o["seed"] if o["seed"] is not None else secrets.randbits(32),
                                    fault=o["fault"], fault_after=o["fault_after"], stuck_sensor=o["stuck_sensor"])
        topic = o["topic"] or f"nanosentri/telemetry/{o['asset']}"
        stop = {"flag": False}
        signal.signal(signal.SIGINT, lambda *_: stop.update(flag=True))
        signal.signal(signal.SIGTERM, lambda *_: stop.update(flag=True))
        interval = timedelta(seconds=o["interval"])
        sent = 0
        try:
            if o["backfill"]:
                ts = timezone.now() - timedelta(minutes=o["backfill"])
                while ts < timezone.now() and not stop["flag"] and (not o["count"] or sent < o["count"]):
                    self._send(publisher, simulator, topic, ts, o["fmt"], quiet=True)
                    sent, ts = sent + 1, ts + interval
                self.stdout.write(f"backfilled {sent} payloads over the last {o['backfill']:g} min")
            while not stop["flag"] and (not o["count"] or sent < o["count"]):
                started = time.monotonic()
                self._send(publisher, simulator, topic, timezone.now(), o["fmt"], quiet=o["verbosity"] < 1)
                sent += 1
                if o["count"] and sent >= o["count"]:
                    break
                while not stop["flag"] and time.monotonic() - started < o["interval"]:
                    time.sleep(min(0.2, o["interval"]))
        finally:
            publisher.close()
        self.stdout.write(self.style.SUCCESS(f"sent {sent} payloads for {o['asset']}"))

    def _asset(self, asset_id, *, create, http):
        asset = Asset.objects.filter(asset_id=asset_id).first()
        if asset is None and create:
            asset = Asset.objects.create(
                asset_id=asset_id, name=f"Demo weather station {asset_id}",
                device_type=DeviceType.objects.filter(key="WXT536").first(),
                ingest_token=secrets.token_urlsafe(32) if http else "",
            )
            self.stdout.write(f"created demo asset {asset_id}")
        elif asset is None:
            self.stderr.write(f"note: asset {asset_id} does not exist in this database (use --create); "
                              "the receiving side rejects its readings unless it knows the asset or autoregisters")
        return asset

    def _publisher(self, o, asset):
        try:
            if o["transport"] == "mqtt":
                url = o["url"] or settings.NANOSENTRI_MQTT_URL or "mqtt://127.0.0.1:1883"
                return MqttPublisher(url, username=settings.NANOSENTRI_MQTT_USERNAME,
                                     password=settings.NANOSENTRI_MQTT_PASSWORD)
            token = o["token"] or (asset.ingest_token if asset else "") or settings.NANOSENTRI_TELEMETRY_GATEWAY_TOKEN
            if not token:
                raise CommandError("no token for HTTP: pass --token, set the asset's ingest token (admin), "
                                   "or set NANOSENTRI_TELEMETRY_GATEWAY_TOKEN")
            return HttpPublisher(o["url"] or "http://127.0.0.1:8000/api/telemetry/", token=token)
        except (OSError, ValueError) as exc:
            raise CommandError(f"cannot connect: {exc}") from None

    def _send(self, publisher, simulator, topic, ts, fmt, *, quiet):
        readings = simulator.sample(ts)
        render = payload_line if fmt == "line" else payload_json
        try:
            outcome = publisher.send(topic, render(simulator.asset_id, ts, readings))
        except OSError as exc:
            raise CommandError(f"sending failed: {exc}") from None
        if not quiet:
            fault = f" [{simulator.fault}]" if simulator.fault and simulator.steps > simulator.fault_after else ""
            shown = " ".join(f"{k}={v}" for k, v in readings.items())
            self.stdout.write(f"{ts:%H:%M:%S}{fault} {shown}" + (f" -> {outcome}" if isinstance(publisher, HttpPublisher) else ""))

    def _demo(self, o):
        """Feed the demo stations until stopped (or ``--count`` rounds); never dies of a busy database."""
        from apps.assets.demo import DemoFeed, demo_assets

        stop = {"flag": False}
        signal.signal(signal.SIGINT, lambda *_: stop.update(flag=True))
        signal.signal(signal.SIGTERM, lambda *_: stop.update(flag=True))
        log = logging.getLogger("apps.assets.demo")
        feed = DemoFeed(start=timezone.now(), seed=o["seed"])
        stations = ", ".join(demo_assets().values_list("asset_id", flat=True)) or "none (no demo assets)"
        try:
            history = f"{feed.backfill(now=timezone.now())} payloads of history filled in"
        except DatabaseError as exc:  # the charts start with less history; the live feed matters more
            log.warning("demo history not filled in: %s", exc)
            close_old_connections()
            history = "no history filled in"
        self.stdout.write(f"Demo sensors: {stations}; {history}, live every {o['interval']:g} s")
        rounds = 0
        while not stop["flag"] and (not o["count"] or rounds < o["count"]):
            started = time.monotonic()
            try:
                undecided = feed.faults_start is None
                opened = feed.step(timezone.now())
                if undecided and feed.faults_start is not None:
                    self.stdout.write(f"Demo faults start at {timezone.localtime(feed.faults_start):%H:%M:%S}")
                for alert in opened:
                    self.stdout.write(f"demo alert: {alert.asset.asset_id} {alert.rule} ({alert.severity})")
            except DatabaseError as exc:  # e.g. SQLite busy under load: the next round tries again
                log.warning("demo readings not stored this round: %s", exc)
                close_old_connections()
            rounds += 1
            if o["count"] and rounds >= o["count"]:
                break
            while not stop["flag"] and time.monotonic() - started < o["interval"]:
                time.sleep(min(0.2, o["interval"]))
        self.stdout.write(f"Demo sensors stopped after {rounds} rounds.")
