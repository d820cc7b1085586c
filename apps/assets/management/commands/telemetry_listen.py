"""Listen to the MQTT broker and store telemetry until SIGTERM or Ctrl-C (apps/assets/mqtt.py)."""
import logging
import signal

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from apps.assets.mqtt import DEFAULT_SESSION_EXPIRY, TelemetryListener


class Command(BaseCommand):
    help = ("Subscribe to the MQTT broker (NANOSENTRI_MQTT_URL, NANOSENTRI_MQTT_TOPICS) and store every reading; "
            "reconnects on its own, stops cleanly on SIGTERM/SIGINT.")

    def add_arguments(self, parser):
        parser.add_argument("--url", help="broker URL, e.g. mqtt://127.0.0.1:1883 (default: NANOSENTRI_MQTT_URL)")
        parser.add_argument("--topic", action="append", dest="topics",
                            help="topic filter to subscribe to; repeat for several (default: NANOSENTRI_MQTT_TOPICS)")
        parser.add_argument("--client-id", help="fixed client id of the persistent session (default: NANOSENTRI_MQTT_CLIENT_ID)")
        parser.add_argument("--session-expiry", type=int, default=DEFAULT_SESSION_EXPIRY,
                            help="seconds the broker keeps the session and queues messages while we are away")
        parser.add_argument("--stats-every", type=float, default=60.0, help="log the counters every N seconds (0: never)")
        parser.add_argument("--batch-size", type=int, help="most messages stored in one transaction (default: NANOSENTRI_MQTT_BATCH_SIZE)")
        parser.add_argument("--batch-wait-ms", type=int,
                            help="how long a batch that is not full waits for more (default: NANOSENTRI_MQTT_BATCH_WAIT_MS)")

    def handle(self, *args, **options):
        if options["verbosity"] > 1:
            logging.getLogger("apps.assets").setLevel(logging.DEBUG)
        try:
            listener = TelemetryListener.from_settings(
                url=options["url"], topics=options["topics"], client_id=options["client_id"],
                session_expiry=options["session_expiry"], stats_every=options["stats_every"],
                batch_size=options["batch_size"],
                batch_wait=options["batch_wait_ms"] / 1000 if options["batch_wait_ms"] is not None else None,
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from None

        def stop(signum, frame):
            listener.stop()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        self.stdout.write(f"Listening on {listener.address} to {', '.join(listener.topics)} as {listener.client_id} "
                          f"(autoregister {'on' if settings.NANOSENTRI_TELEMETRY_AUTOREGISTER else 'off'}); Ctrl-C stops.")
        listener.run()
        self.stdout.write(f"Stopped. {listener.stats.line()}")
