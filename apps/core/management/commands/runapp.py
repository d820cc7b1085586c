"""Start everything NanoSentri needs on one machine: migrate, demo users, worker, web server.

With NANOSENTRI_DEMO on (the default) the first start of a data directory without assets also
seeds the demo site (apps/incidents/demo.py), and every start feeds its simulated stations from
one more process (``simulate_sensors --demo``).

Ctrl-C (or SIGTERM) stops every process this command started.
"""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand

from apps.accounts.services import demo_users_ensure
from nanosentri_site.env import envbool


class Command(BaseCommand):
    help = ("Run the whole app: migrations, demo users, manuals and site, a Celery worker, the ASGI server "
            "and the demo site's simulated sensors.")

    def add_arguments(self, parser):
        parser.add_argument("--host", default=os.environ.get("NANOSENTRI_HOST", "127.0.0.1"))
        parser.add_argument("--port", type=int, default=int(os.environ.get("NANOSENTRI_PORT", "8000")))
        parser.add_argument("--no-demo", action="store_true",
                            help="skip the demo users, manuals and site (NANOSENTRI_DEMO=0 skips only the site)")

    def handle(self, *args, **options):
        data_dir = Path(settings.DATA_DIR)
        data_dir.mkdir(parents=True, exist_ok=True)
        self.stdout.write(f"Data directory: {data_dir}")
        call_command("migrate", interactive=False, verbosity=0)

        if not options["no_demo"]:
            passwords = demo_users_ensure(password=os.environ.get("NANOSENTRI_DEMO_PASSWORD") or None)
            self.stdout.write("Demo users (stored in data dir/demo-passwords.json):")
            for username, password in passwords.items():
                self.stdout.write(f"  {username:<11} {password}")
            # The demo site first: the worker then embeds its incidents before it reads the manuals.
            seeded = settings.NANOSENTRI_DEMO and self._seed_demo_site()
            if envbool("NANOSENTRI_DEMO_INGEST", True):
                self._queue_demo_manuals(data_dir)
                if seeded:
                    from apps.incidents.demo import demo_manuals_link

                    linked = ", ".join(demo_manuals_link()) or "none (no manual of the WXT530 series)"
                    self.stdout.write(f"  manuals linked to the demo stations: {linked}")

        env = {**os.environ, "NANOSENTRI_WARMUP": "1", "PYTHONUNBUFFERED": "1"}
        worker = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "nanosentri_site", "worker", "--loglevel", "INFO",
             "--pool", "solo", "--hostname", "nanosentri@%h"],
            env=env,
        )
        web = subprocess.Popen(
            [sys.executable, "-m", "daphne", "-b", options["host"], "-p", str(options["port"]),
             "nanosentri_site.asgi:application"],
            env=env,
        )
        children = {"worker": worker, "web": web}
        if settings.NANOSENTRI_MQTT_URL:
            # Telemetry from the site's MQTT broker: readings, findings and alerts stay live.
            children["telemetry"] = subprocess.Popen(
                [sys.executable, "manage.py", "telemetry_listen"], cwd=settings.BASE_DIR, env=env
            )
            self.stdout.write(f"Telemetry listener: {settings.NANOSENTRI_MQTT_URL} {' '.join(settings.NANOSENTRI_MQTT_TOPICS)}")
        if settings.NANOSENTRI_DEMO and not options["no_demo"] and self._demo_stations():
            # The demo site's live telemetry, stored through the ingestion service: no broker needed.
            children["demo-sensors"] = subprocess.Popen(
                [sys.executable, "manage.py", "simulate_sensors", "--demo"], cwd=settings.BASE_DIR, env=env
            )
        self.stdout.write(self.style.SUCCESS(f"NanoSentri is starting on http://{options['host']}:{options['port']}/ — Ctrl-C stops it."))

        stopping = {"flag": False}

        def stop(signum, frame):
            stopping["flag"] = True

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        exit_code = 0
        while not stopping["flag"]:
            for name, proc in children.items():
                if proc.poll() is not None:
                    self.stderr.write(f"{name} exited with code {proc.returncode}; stopping everything")
                    stopping["flag"] = True
                    exit_code = 1
            time.sleep(0.5)
        self._terminate(children)
        sys.exit(exit_code)

    def _terminate(self, children):
        for proc in children.values():
            if proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + 15
        for name, proc in children.items():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.stderr.write(f"{name} did not stop in time; killing it")
                proc.kill()
                proc.wait()
        self.stdout.write("Stopped.")

    def _queue_demo_manuals(self, data_dir: Path):
        marker = data_dir / ".demo-manuals-queued"
        manuals = Path(settings.NANOSENTRI_DEMO_MANUALS_DIR)
        if marker.exists():
            return
        if not manuals.is_dir():
            self.stdout.write(f"No demo manuals at {manuals}; upload your own on the Documents page.")
            return
        from apps.knowledge.services import UploadRejected, document_add_path

        for path in sorted(manuals.glob("*.pdf")):
            try:
                document, created = document_add_path(path=path)
            except UploadRejected as exc:
                self.stderr.write(f"demo manual skipped: {exc}")
                continue
            self.stdout.write(f"  demo manual queued: {document.original_name}")
        marker.write_text("yes\n")

    def _seed_demo_site(self) -> bool:
        from apps.incidents.demo import demo_seed

        result = demo_seed()
        if result.seeded:
            self.stdout.write(f"Demo site seeded (NANOSENTRI_DEMO=0 turns it off): {', '.join(result.assets)}; "
                              f"{result.incidents} past incidents, {result.answers} answers to review")
        return result.seeded

    def _demo_stations(self) -> list[str]:
        from apps.assets.demo import HEATER_FAILS_AFTER, STATIONS, demo_assets

        stations = list(demo_assets().values_list("asset_id", flat=True))
        heater = next(s.asset_id for s in STATIONS if s.fault == "heater_failure")
        if stations:
            self.stdout.write(f"Demo sensors: simulated readings for {', '.join(stations)}"
                              + (f"; the heater of {heater} fails {HEATER_FAILS_AFTER.seconds} s after the first "
                                 "sign-in" if heater in stations else ""))
        return stations
