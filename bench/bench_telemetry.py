#!/usr/bin/env python
"""Telemetry at plant scale: readings/s from MQTT (QoS 1) into the database, nothing lost.

    .venv/bin/python bench/bench_telemetry.py --db both --runs 3
    .venv/bin/python bench/bench_telemetry.py --db postgresql --runs 3 --readings 90000
    .venv/bin/python bench/bench_telemetry.py --db sqlite --env NANOSENTRI_MQTT_BATCH_SIZE=1   # one message per batch

What runs, per database and per run:

* **Database**: a fresh database per run, copied from a template that was migrated once and
  holds the catalogue plus ``--sensors`` (500) WXT536 assets with their nine sensors each, made
  with the app's own ``services.sensor_from_spec`` (as the first message of each device would).
  SQLite: a file in a temporary data directory (the app's settings: WAL, IMMEDIATE).
  PostgreSQL: ``--pg-url`` (default ``postgres://postgres@127.0.0.1:5432``), database
  ``nanosentri_bench_telemetry_<pid>`` (dropped and re-created from a template each run).
* **Broker**: by default a private ``mosquitto`` (the system binary, 2.x) on a free port, with
  the system configuration's defaults except ``max_queued_messages 0``: a burst from 500 devices
  is far more than Mosquitto's default queue of 1,000 messages per client, beyond which the
  broker itself drops QoS 1 messages it has already acknowledged to the device (nothing a
  subscriber can do about that). ``--broker-url mqtt://127.0.0.1:1883`` uses an existing
  broker instead (the system one has the default limit: losses are then reported as such).
* **Listener**: ``manage.py telemetry_listen`` as a subprocess, exactly as ``runapp`` starts it
  (its own client id and topic root per run, persistent session, QoS 1, ack after store),
  with the findings engine, alerts and the streaming anomaly detector on (nothing disabled).
  A malformed probe message is published and awaited first, so the subscription is known to be
  active before the clock starts; it is not counted below.
* **Devices**: ``--sensors`` simulated WXT536 stations (``apps.assets.simulator.SensorSimulator``,
  one MQTT client connection each, spread over ``--publishers`` processes), all connected
  before the start, then released at once. Each sends its messages at QoS 1 one after the other
  (the next once the broker acknowledged the previous one, as a device does), JSON for even
  stations and the devices' line format for odd ones, nine readings per message, timestamps
  10 s apart ending now. Every 50th station has a heater failure and every 50th (offset 25) a
  supply drop from the middle of its series on, so findings and alerts open during the run.
  Every ``--invalid-every``-th message is replaced by an extra invalid one (invalid JSON, an
  unknown asset, NUL bytes, a non-finite number, a wrong type, in turn), which the listener
  must reject (a TelemetryRejection row each).

Measured: from the release of the devices to the moment the database holds every reading and
every rejection (polled every 0.1 s; the run fails after 120 s without progress).
readings/s = readings stored / that time. Checked after each run: messages in (acknowledged
by the broker to the devices) = messages stored (distinct asset and timestamp among the
readings) + messages rejected (TelemetryRejection rows), and readings stored = readings sent in
the valid messages (no loss, no duplicate). The load average (1 min) is read at the start and
the end of every run, and the machine's CPU use during the run (all cores, all processes, from
/proc/stat), the listener's CPU seconds and the broker's are reported too.
"""
from __future__ import annotations

import argparse
import getpass
import json
import math
import os
import selectors
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    REPO,
    Children,
    apply_environment,
    bench_environment,
    cpu_seconds,
    exit_on_sigterm,
    fmt,
    load_average,
    machine_lines,
    median,
    package_versions,
    table,
)

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
DEFAULT_PG_URL = "postgres://postgres@127.0.0.1:5432"
PG_DATABASE = "nanosentri_bench_telemetry"
GOAL_POSTGRESQL = 5000.0  # readings/s
INTERVAL_S = 10  # seconds between two messages of one device (their timestamps)
STALL_S = 120.0
INVALID_KINDS = ("invalid JSON", "unknown asset", "NUL bytes", "non-finite number", "wrong type")


def say(message: str) -> None:
    print(f"[bench_telemetry {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def asset_id(index: int) -> str:
    return f"WXT536-P{index:04d}"


# --- the devices (publisher processes; no Django) ----------------------------------------------

def device_messages(index: int, count: int, *, end: datetime, seed: int, invalid_every: int, root: str):
    """The messages of device ``index``: [(topic, payload bytes, readings carried or None if invalid)]."""
    from apps.assets.simulator import SensorSimulator, payload_json, payload_line

    fault = "heater_failure" if index % 50 == 0 else "voltage_drop" if index % 50 == 25 else None
    simulator = SensorSimulator(asset_id(index), seed=seed * 100_003 + index, fault=fault, fault_after=count // 2)
    topic = f"{root}/{asset_id(index)}"
    messages = []
    for i in range(count):
        ts = end - timedelta(seconds=INTERVAL_S * (count - 1 - i))
        readings = simulator.sample(ts)
        render = payload_json if index % 2 == 0 else payload_line
        messages.append((topic, render(asset_id(index), ts, readings).encode(), len(readings)))
        number = index * count + i
        if invalid_every and number % invalid_every == invalid_every - 1:
            messages.append(invalid_message(number // invalid_every, topic, root))
    return messages


def invalid_message(n: int, topic: str, root: str):
    kind = INVALID_KINDS[n % len(INVALID_KINDS)]
    if kind == "invalid JSON":
        return topic, b'{"readings": {"V_IN": 24.0,', None
    if kind == "unknown asset":
        return f"{root}/GHOST-{n:05d}", json.dumps({"readings": {"V_IN": 24.0}}).encode(), None
    if kind == "NUL bytes":
        return topic, b"V_IN: 2\x004.0V", None
    if kind == "non-finite number":
        return topic, b'{"readings": {"V_IN": NaN}}', None
    return topic, json.dumps({"readings": {"V_IN": [24, 25]}}).encode(), None


def publisher_main(spec_json: str) -> int:
    """One publisher process: a client connection per device, driven by one selector loop."""
    import paho.mqtt.client as mqtt

    spec = json.loads(spec_json)
    end = datetime.fromtimestamp(spec["end"], tz=timezone.utc)
    devices = []
    for index in spec["devices"]:
        messages = device_messages(index, spec["count"], end=end, seed=spec["seed"],
                                   invalid_every=spec["invalid_every"], root=spec["root"])
        devices.append({"index": index, "messages": messages, "next": 0, "acked": 0, "connected": False})

    sel = selectors.DefaultSelector()
    dirty: set = set()

    def on_connect(client, device, flags, reason_code, properties):
        device["connected"] = not reason_code.is_failure

    def on_publish(client, device, mid, reason_code, properties):
        if reason_code.is_failure:
            device.setdefault("refused", 0)
            device["refused"] += 1
        else:
            device["acked"] += 1
        send_next(client, device)

    def send_next(client, device):
        if device["next"] < len(device["messages"]):
            topic, payload, _ = device["messages"][device["next"]]
            device["next"] += 1
            client.publish(topic, payload, qos=1)
            dirty.add(client)

    clients = []
    for device in devices:
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"{spec['client_prefix']}-{device['index']}",
                             protocol=mqtt.MQTTv5, userdata=device)
        client.on_connect = on_connect
        client.on_publish = on_publish
        client.connect(spec["host"], spec["port"], keepalive=120)
        sel.register(client.socket(), selectors.EVENT_READ, client)
        clients.append(client)

    def pump(timeout: float) -> None:
        for key, _ in sel.select(timeout):
            key.data.loop_read()
        for client in list(dirty):
            dirty.discard(client)
            client.loop_write()

    deadline = time.monotonic() + 60
    while not all(d["connected"] for d in devices):
        if time.monotonic() > deadline:
            print(json.dumps({"error": "not every device connected"}), flush=True)
            return 1
        pump(0.1)
    print("READY", flush=True)
    if sys.stdin.readline().strip() != "GO":
        return 1
    started = time.monotonic()
    for client, device in zip(clients, devices, strict=True):
        send_next(client, device)
    last_misc = time.monotonic()
    total = sum(len(d["messages"]) for d in devices)
    while sum(d["acked"] + d.get("refused", 0) for d in devices) < total:
        pump(0.5)
        if time.monotonic() - last_misc > 5:
            last_misc = time.monotonic()
            for client in clients:
                client.loop_misc()
        if time.monotonic() - started > 600:
            break
    published_s = time.monotonic() - started
    for client in clients:
        client.disconnect()
        client.loop_write()
    valid = [m for d in devices for m in d["messages"][:d["acked"]] if m[2] is not None]
    print(json.dumps({
        "messages": total,
        "acked": sum(d["acked"] for d in devices),
        "refused": sum(d.get("refused", 0) for d in devices),
        "acked_valid": len(valid),
        "acked_invalid": sum(d["acked"] for d in devices) - len(valid),
        "acked_readings": sum(m[2] for m in valid),
        "published_s": published_s,
    }), flush=True)
    return 0


# --- machine -----------------------------------------------------------------------------------

def _cpu_ticks() -> tuple[int, int]:
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def start_broker(children: Children, directory: Path) -> tuple[str, object]:
    port = _free_port()
    conf = directory / "mosquitto.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\n"
        "allow_anonymous true\n"
        "persistence false\n"
        "max_queued_messages 0\n"  # no limit: a burst from every device at once is queued, never dropped
        "log_type error\nlog_type warning\n"
        f"user {getpass.getuser()}\n"  # as root mosquitto would switch to 'mosquitto', who cannot read the config
    )
    log = open(directory / "mosquitto.log", "ab")
    proc = children.start("mosquitto", [MOSQUITTO, "-c", str(conf)], stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 10
    while not _reachable("127.0.0.1", port):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"mosquitto did not start: {(directory / 'mosquitto.log').read_text()[-2000:]}")
        time.sleep(0.05)
    return f"mqtt://127.0.0.1:{port}", proc


def _paho(client_id: str = ""):
    import paho.mqtt.client as mqtt

    return mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)


def publish_one(url: str, topic: str, payload: bytes) -> None:
    from apps.assets.mqtt import BrokerAddress

    address = BrokerAddress.from_url(url)
    client = _paho()
    client.connect(address.host, address.port)
    client.loop_start()
    try:
        info = client.publish(topic, payload, qos=1)
        info.wait_for_publish(timeout=10)
    finally:
        client.disconnect()
        client.loop_stop()


def end_session(url: str, client_id: str) -> None:
    """Remove the listener's persistent session from the broker (clean start, expiry 0)."""
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    from apps.assets.mqtt import BrokerAddress

    address = BrokerAddress.from_url(url)
    client = _paho(client_id)
    properties = Properties(PacketTypes.CONNECT)
    properties.SessionExpiryInterval = 0
    client.connect(address.host, address.port, clean_start=True, properties=properties)
    client.loop_start()
    time.sleep(0.2)
    client.disconnect()
    client.loop_stop()


# --- the databases -----------------------------------------------------------------------------

class SqliteDatabase:
    kind = "sqlite"

    def __init__(self, data_dir: Path):
        self.path = data_dir / "bench.sqlite3"
        self.template = data_dir / "template.sqlite3"
        self.url = f"sqlite:///{self.path}"

    def create(self) -> None:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{self.path}{suffix}").unlink(missing_ok=True)

    def snapshot(self) -> None:
        import sqlite3

        with sqlite3.connect(self.path) as src, sqlite3.connect(self.template) as dst:
            src.backup(dst)

    def reset(self) -> None:
        import sqlite3

        self.create()
        with sqlite3.connect(self.template) as src, sqlite3.connect(self.path) as dst:
            src.backup(dst)

    def drop(self) -> None:
        pass


class PostgresDatabase:
    kind = "postgresql"

    def __init__(self, server_url: str):
        import dj_database_url

        self.server = dj_database_url.parse(server_url.rstrip("/") + "/postgres")
        # Named after this process: two benches at once never drop each other's database.
        self.name, self.template = f"{PG_DATABASE}_{os.getpid()}", f"{PG_DATABASE}_{os.getpid()}_template"
        self.url = f"{server_url.rstrip('/')}/{self.name}"

    def _admin(self, *statements: str) -> None:
        import psycopg

        s = self.server
        with psycopg.connect(dbname="postgres", host=s.get("HOST") or None, port=s.get("PORT") or None,
                             user=s.get("USER") or None, password=s.get("PASSWORD") or None, autocommit=True) as conn:
            for statement in statements:
                conn.execute(statement)

    def create(self) -> None:
        self._admin(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)',
                    f'DROP DATABASE IF EXISTS "{self.template}" WITH (FORCE)',
                    f'CREATE DATABASE "{self.name}"')

    def snapshot(self) -> None:
        self._admin(f'CREATE DATABASE "{self.template}" TEMPLATE "{self.name}"')

    def reset(self) -> None:
        self._admin(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)',
                    f'CREATE DATABASE "{self.name}" TEMPLATE "{self.template}"')

    def drop(self) -> None:
        self._admin(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)',
                    f'DROP DATABASE IF EXISTS "{self.template}" WITH (FORCE)')

    def server_version(self) -> str:
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute("SHOW server_version")
            return cursor.fetchone()[0]


def populate(sensors: int, history: int) -> int:
    """``sensors`` WXT536 assets with the nine sensors of the catalogue each, and ``history``
    earlier messages per device stored through the app's services; returns the sensor count."""
    from django.core.management import call_command
    from django.db import transaction

    from apps.assets import services
    from apps.assets.models import Asset, DeviceType, Sensor

    call_command("migrate", verbosity=0, interactive=False)
    device_type = DeviceType.objects.get(key="WXT536")
    keys = list(device_type.specs.values_list("key", flat=True))
    with transaction.atomic():
        assets = Asset.objects.bulk_create(
            [Asset(asset_id=asset_id(i), name=f"Plant mast {i}", device_type=device_type) for i in range(sensors)])
        for asset in Asset.objects.filter(pk__in=[a.pk for a in assets]):
            for key in keys:
                services.sensor_from_spec(asset, key)
    if history:
        # Earlier the same day: the detectors have a state and every sensor a history, as on a
        # plant that has been running (the runs' own readings come two hours later).
        end = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(hours=2)
        root = "history/telemetry"
        per_device = [device_messages(i, history, end=end, seed=0, invalid_every=0, root=root) for i in range(sensors)]
        ordered = [messages[n] for n in range(history) for messages in per_device]
        if not hasattr(services, "payloads_receive"):  # the app before batches (to measure it too)
            for topic, payload, _ in ordered:
                services.payload_receive(payload, source="mqtt", topic=topic, asset_hint=topic.rsplit("/", 1)[1])
        for start in range(0, len(ordered), 1000) if hasattr(services, "payloads_receive") else ():
            services.payloads_receive([services.Incoming(payload, topic=topic, asset_hint=topic.rsplit("/", 1)[1])
                                       for topic, payload, _ in ordered[start:start + 1000]], source="mqtt")
    return Sensor.objects.count()


# --- one run -----------------------------------------------------------------------------------

def _counts() -> tuple[int, int]:
    from apps.assets.models import Reading, TelemetryRejection

    return Reading.objects.count(), TelemetryRejection.objects.count()


def _close_db() -> None:
    from django.db import connections

    connections.close_all()


def one_run(number: int, args, db, broker_url: str, data_dir: Path, children: Children) -> dict:
    from django.db.models import Count

    from apps.assets.models import Alert, Reading, TelemetryRejection

    _close_db()
    db.reset()
    base_readings, base_rejections = _counts()  # the template's history
    tag = uuid.uuid4().hex[:8]
    root = f"bench-{tag}/telemetry"
    client_id = f"bench-listener-{tag}"
    env = bench_environment(data_dir, DATABASE_URL=db.url, LOG_LEVEL="INFO", PYTHONUNBUFFERED="1")
    env.update(dict(item.split("=", 1) for item in args.env))
    log_path = data_dir / f"listener-{db.kind}-{number}.log"
    log = open(log_path, "wb")
    listener = children.start(
        "listener", [sys.executable, "manage.py", "telemetry_listen", "--url", broker_url, "--topic", f"{root}/#",
                     "--client-id", client_id, "--stats-every", "0"],
        cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    publishers: list[subprocess.Popen] = []
    try:
        deadline = time.monotonic() + 120
        while b"connected to" not in log_path.read_bytes():
            if listener.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the listener did not connect:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.1)
        # The probe: once it is rejected, the subscription is in place and the listener warm.
        publish_one(broker_url, f"{root}/PROBE", b"bench probe: not telemetry")
        while _counts()[1] < base_rejections + 1:
            if listener.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the probe was not rejected:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.05)

        from apps.assets.mqtt import BrokerAddress

        address = BrokerAddress.from_url(broker_url)
        per_device = max(1, math.ceil(args.readings / (args.sensors * 9)))
        end = datetime.now(timezone.utc).replace(microsecond=0)
        groups = [list(range(args.sensors))[p::args.publishers] for p in range(args.publishers)]
        for p, devices in enumerate(groups):
            spec = {"devices": devices, "count": per_device, "end": end.timestamp(), "seed": args.seed + number,
                    "invalid_every": args.invalid_every, "root": root, "host": address.host, "port": address.port,
                    "client_prefix": f"bench-dev-{tag}-{p}"}
            publishers.append(children.start(
                f"publisher-{p}", [sys.executable, __file__, "--publisher", json.dumps(spec)],
                cwd=REPO, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True))
        for proc in publishers:
            line = proc.stdout.readline().strip()
            if line != "READY":
                raise RuntimeError(f"a publisher did not get ready: {line!r}")

        load_start = os.getloadavg()[0]
        busy0, total0 = _cpu_ticks()
        cpu_listener0 = cpu_seconds(listener.pid)
        cpu_broker0 = cpu_seconds(args.broker_pid) if args.broker_pid else float("nan")
        started = time.perf_counter()
        for proc in publishers:
            proc.stdin.write("GO\n")
            proc.stdin.flush()
        results = []
        for proc in publishers:
            results.append(json.loads(proc.stdout.readline()))
            proc.wait(timeout=60)
        published_s = max(r["published_s"] for r in results)
        sent = {key: sum(r[key] for r in results) for key in ("messages", "acked", "refused", "acked_valid",
                                                              "acked_invalid", "acked_readings")}
        expected_readings = base_readings + sent["acked_readings"]
        expected_rejections = base_rejections + sent["acked_invalid"] + 1  # + the probe

        last_progress, last_seen, complete = time.perf_counter(), None, False
        while True:
            seen = _counts()
            now = time.perf_counter()
            if seen[0] >= expected_readings and seen[1] >= expected_rejections:
                complete = True
                break
            if seen != last_seen:
                last_seen, last_progress = seen, now
            elif now - last_progress > STALL_S:
                break
            time.sleep(0.1)
        elapsed = time.perf_counter() - started
        busy1, total1 = _cpu_ticks()
        load_end = os.getloadavg()[0]
        cpu_listener = cpu_seconds(listener.pid) - cpu_listener0
        cpu_broker = (cpu_seconds(args.broker_pid) - cpu_broker0) if args.broker_pid else float("nan")
        time.sleep(0.5)  # anything late (a duplicate) would show up now
    finally:
        for proc in publishers:
            children.stop(proc)
        children.stop(listener)
        log.close()
        try:
            end_session(broker_url, client_id)
        except OSError:
            pass

    readings, rejections = _counts()
    readings, rejections = readings - base_readings, rejections - base_rejections - 1  # the history, the probe
    first_ts = end - timedelta(seconds=INTERVAL_S * (per_device - 1))
    ours = Reading.objects.filter(ts__gte=first_ts).values("sensor__asset_id", "ts")
    stored_messages = ours.distinct().count()
    per_message = ours.annotate(n=Count("id")).filter(n__gt=9).count()
    reasons = {}
    for reason in TelemetryRejection.objects.exclude(topic__endswith="/PROBE").values_list("reason", flat=True):
        kind = reason.split(":")[0]
        reasons[kind] = reasons.get(kind, 0) + 1
    stopped = [line for line in log_path.read_text().splitlines() if line.startswith("Stopped.")]
    result = {
        "db": db.kind, "run": number, "sent": sent, "published_s": published_s, "elapsed_s": elapsed,
        "complete": complete, "readings_stored": readings, "messages_stored": stored_messages,
        "messages_rejected": rejections, "rejection_reasons": reasons, "messages_over_9_readings": per_message,
        "alerts": Alert.objects.count(), "readings_per_s": readings / elapsed if elapsed else float("nan"),
        "messages_per_s": (stored_messages + rejections) / elapsed if elapsed else float("nan"),
        "load_start": load_start, "load_end": load_end,
        "machine_cpu_pct": 100.0 * (busy1 - busy0) / max(1, total1 - total0) * (os.cpu_count() or 1),
        "listener_cpu_s": cpu_listener, "broker_cpu_s": cpu_broker,
        "listener_stats": stopped[-1] if stopped else "(no stats line)",
    }
    result["balanced"] = (sent["acked"] == stored_messages + rejections and readings == sent["acked_readings"])
    say(f"{db.kind} run {number}: {readings:,} readings in {elapsed:.2f} s = {result['readings_per_s']:,.0f} readings/s; "
        f"in {sent['acked']:,} = stored {stored_messages:,} + rejected {rejections:,}: "
        f"{'OK' if result['balanced'] else 'MISMATCH'}; load {load_start:.2f} -> {load_end:.2f}")
    return result


def db_main(args) -> int:
    """Every run on one database (a process of its own: Django is set up once per database)."""
    exit_on_sigterm()
    children = Children()
    data_dir = Path(tempfile.mkdtemp(prefix=f"bench-telemetry-{args.db}-"))
    db = SqliteDatabase(data_dir) if args.db == "sqlite" else PostgresDatabase(args.pg_url)
    try:
        db.create()
        apply_environment(bench_environment(data_dir, DATABASE_URL=db.url))
        import django

        django.setup()
        started = time.perf_counter()
        sensor_count = populate(args.sensors, args.history)
        _close_db()
        db.snapshot()
        say(f"{args.db}: template with {args.sensors} assets, {sensor_count} sensors and {args.history} messages of "
            f"history per device in {time.perf_counter() - started:.1f} s")
        version = db.server_version() if args.db == "postgresql" else __import__("sqlite3").sqlite_version
        runs = [one_run(n, args, db, args.broker_url, data_dir, children) for n in range(1, args.runs + 1)]
        Path(args.out).write_text(json.dumps({"db": args.db, "version": version, "sensors": sensor_count, "runs": runs}))
        return 0
    finally:
        children.stop_all()
        _close_db()
        db.drop()
        if not args.keep:
            shutil.rmtree(data_dir, ignore_errors=True)
        else:
            say(f"kept {data_dir}")


# --- the report --------------------------------------------------------------------------------

def report(args, results: list[dict], broker: str, machine: list[str]) -> str:
    lines = ["## Telemetry at plant scale", "", "```", "$ .venv/bin/python bench/bench_telemetry.py "
             + " ".join(sys.argv[1:]), "```", ""]
    lines += machine
    lines.append(f"- load average at the end (1, 5, 15 min): {load_average()}")
    lines += [f"- {package_versions('Django', 'paho-mqtt', 'psycopg')}; broker: {broker}"]
    for r in results:
        lines.append(f"- {r['db']} {r['version']}: {args.sensors} assets, {r['sensors']} sensors, "
                     f"{args.history} earlier messages per device already stored")
    lines += [f"- listener environment: {' '.join(args.env) or '(defaults)'}", ""]
    rows = []
    for r in results:
        for run in r["runs"]:
            s = run["sent"]
            rows.append([
                r["db"], run["run"], f"{run['readings_per_s']:,.0f}", f"{run['messages_per_s']:,.0f}",
                f"{run['readings_stored']:,}", f"{run['elapsed_s']:.2f}", f"{run['published_s']:.2f}",
                f"{s['acked']:,} = {run['messages_stored']:,} + {run['messages_rejected']:,}"
                + ("" if run["balanced"] else " **MISMATCH**"),
                f"{run['load_start']:.2f} → {run['load_end']:.2f}", f"{run['machine_cpu_pct']:.0f} %",
                fmt(run["listener_cpu_s"], 1), fmt(run["broker_cpu_s"], 1), run["alerts"],
            ])
    lines.append(table(["db", "run", "readings/s", "messages/s", "readings stored", "time (s)", "devices done (s)",
                        "in = stored + rejected (messages)", "load 1 min (start → end)", f"machine CPU (of {os.cpu_count() * 100} %)",
                        "listener CPU (s)", "broker CPU (s)", "alerts"], rows))
    lines.append("")
    summary = []
    for r in results:
        rates = [run["readings_per_s"] for run in r["runs"]]
        ok = all(run["balanced"] for run in r["runs"])
        goal = f" (goal ≥ {GOAL_POSTGRESQL:,.0f}: {'met' if min(rates) >= GOAL_POSTGRESQL else 'NOT met'} by every run)" \
            if r["db"] == "postgresql" else ""
        summary.append(f"- {r['db']}: median {median(rates):,.0f} readings/s (runs: "
                       f"{', '.join(f'{x:,.0f}' for x in rates)}){goal}; "
                       f"nothing lost: {'yes, every run balanced' if ok else 'NO, see the table'}")
    lines += summary
    lines.append("")
    first = results[0]["runs"][0] if results and results[0]["runs"] else None
    if first:
        lines.append(f"Rejected per reason (run 1 of {results[0]['db']}): "
                     + ", ".join(f"{k}: {v}" for k, v in sorted(first["rejection_reasons"].items())))
        lines.append("")
        for r in results:
            for run in r["runs"]:
                lines.append(f"- listener {r['db']} run {run['run']}: `{run['listener_stats']}`")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--runs", type=int, default=3, help="timed runs per database (default 3)")
    parser.add_argument("--readings", type=int, default=90_000,
                        help="valid readings per run, over all devices (default 90,000: 20 messages of 9 per device)")
    parser.add_argument("--sensors", type=int, default=500, help="simulated devices (assets), all at once (default 500)")
    parser.add_argument("--publishers", type=int, default=2, help="processes the devices are spread over (default 2)")
    parser.add_argument("--invalid-every", type=int, default=50, help="an extra invalid message after every N valid ones")
    parser.add_argument("--history", type=int, default=24,
                        help="earlier messages per device in the database before each run (default 24)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--pg-url", default=os.environ.get("TEST_DATABASE_URL_SERVER", DEFAULT_PG_URL),
                        help=f"PostgreSQL server, without a database name (default {DEFAULT_PG_URL})")
    parser.add_argument("--broker-url", help="use this broker instead of a private mosquitto")
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                        help="extra environment for the listener, e.g. NANOSENTRI_MQTT_BATCH_SIZE=1")
    parser.add_argument("--json", type=Path, help="also write every measurement to this JSON file")
    parser.add_argument("--keep", action="store_true", help="keep the temporary data directories")
    parser.add_argument("--publisher", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--broker-pid", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.publisher:
        return publisher_main(args.publisher)
    if args.out:
        return db_main(args)

    exit_on_sigterm()
    machine = machine_lines()
    children = Children()
    work = Path(tempfile.mkdtemp(prefix="bench-telemetry-"))
    try:
        if args.broker_url:
            broker_url, broker_pid, broker = args.broker_url, 0, f"{args.broker_url} (existing)"
        else:
            broker_url, proc = start_broker(children, work)
            broker_pid, broker = proc.pid, f"private mosquitto ({MOSQUITTO}, max_queued_messages 0) at {broker_url}"
        results = []
        for kind in (("sqlite", "postgresql") if args.db == "both" else (args.db,)):
            out = work / f"{kind}.json"
            command = [sys.executable, __file__, "--db", kind, "--runs", str(args.runs), "--readings", str(args.readings),
                       "--sensors", str(args.sensors), "--publishers", str(args.publishers),
                       "--invalid-every", str(args.invalid_every), "--seed", str(args.seed), "--pg-url", args.pg_url,
                       "--history", str(args.history),
                       "--broker-url", broker_url, "--broker-pid", str(broker_pid), "--out", str(out)]
            command += [f"--env={item}" for item in args.env] + (["--keep"] if args.keep else [])
            say(f"{kind}: {args.runs} run(s) of {args.readings:,} readings from {args.sensors} devices")
            proc = children.start(kind, command, cwd=REPO)
            if proc.wait() != 0:
                say(f"{kind}: the runs failed (exit {proc.returncode})")
                return 1
            results.append(json.loads(out.read_text()))
        text = report(args, results, broker, machine)
        print(text)
        if args.json:
            args.json.write_text(json.dumps(results, indent=2))
        balanced = all(run["balanced"] for r in results for run in r["runs"])
        return 0 if balanced else 2
    finally:
        children.stop_all()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
