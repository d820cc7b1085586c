"""Publish simulated WXT536 readings (apps/assets/simulator.py) over MQTT or HTTP, with faults."""
import secrets
import signal
import time
from datetime import timedelta

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
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

    def handle(self, *args, **o):
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
