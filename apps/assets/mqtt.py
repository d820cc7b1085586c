"""The MQTT telemetry listener: subscribe, store every reading, acknowledge only once it is stored.

Delivery semantics (see docs/telemetry.md):

- MQTT v5 with a fixed client id, ``clean_start=False`` and a session expiry interval, and every
  subscription at QoS 1: the broker keeps the session (subscriptions and queued messages) while
  the listener is down or reconnecting, and delivers what it queued when the listener is back.
- ``manual_ack=True``: the PUBACK for a message is sent only after the message was stored (or
  rejected for good, e.g. malformed). A crash or a database outage before that leaves the
  message un-acknowledged and the broker delivers it again on the next connection. So delivery
  is *at least once*: a message stored just before a crash may be stored twice. Redeliveries the
  listener itself has stored already (DUP flag, same topic and bytes) are skipped.
- Batches: what has arrived is stored together, in ONE transaction of at most ``batch_size``
  messages (``NANOSENTRI_MQTT_BATCH_SIZE``) and 8 MB, and each of its messages is acknowledged
  only once that transaction has committed. A batch is stored as soon as the socket holds nothing more
  (or after waiting up to ``batch_wait`` for more, ``NANOSENTRI_MQTT_BATCH_WAIT_MS``), so a quiet
  feed is stored message by message and a busy one in batches as large as the backlog. The
  broker may send up to 65,535 messages before we acknowledge any (the MQTT v5 Receive
  Maximum), so the next batch arrives while one is being stored and a burst waits in flight
  rather than in the broker's queue, which Mosquitto limits (``max_queued_messages``, 1,000 by
  default) and beyond which it drops messages it has already acknowledged to the device. Findings
  and alerts are refreshed once per batch for each asset it touched.
- A lost database (connection refused or dropped) leaves the message un-acknowledged; the
  listener drops the MQTT connection and reconnects with back-off, so the broker redelivers it
  once the database may be back. A message failing with a data error (the connection is fine)
  is tried again at once, then rejected, so one bad message cannot block the feed. A batch
  failing with a data error is stored again message by message, so that only the bad message
  is tried again and rejected.

The shape follows our long-running loops (healthchecks' ``sendalerts``): ``tick()`` does one unit of
work and returns True if more may be waiting, ``run()`` loops until ``stop()`` (wired to SIGTERM and
SIGINT by the ``telemetry_listen`` command). Tests call ``connect()``, ``step()`` and ``tick()``
directly against a real broker.
"""
from __future__ import annotations

import hashlib
import logging
import ssl
import threading
import time
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

from django.db import DatabaseError, InterfaceError, OperationalError, close_old_connections

log = logging.getLogger(__name__)

DEFAULT_SESSION_EXPIRY = 7 * 24 * 3600  # the broker keeps our queue for a week of downtime
DEFAULT_KEEPALIVE = 30
POISON_TRIES = 3  # tries of a message failing with a data error before it is rejected
_RECENT_DIGESTS = 2000  # how many stored messages are remembered to skip their redeliveries (at least)
DEFAULT_BATCH_SIZE = 4000  # messages stored in one transaction, at most (NANOSENTRI_MQTT_BATCH_SIZE)
MAX_BATCH_BYTES = 8 * 1024 * 1024  # and at most this much payload (messages may be up to 64 KB each)
DEFAULT_BATCH_WAIT = 0.0  # seconds a batch that is not full waits for more (NANOSENTRI_MQTT_BATCH_WAIT_MS)
MAX_RECEIVE_MAXIMUM = 65535  # the largest MQTT v5 Receive Maximum


# --- configuration ---------------------------------------------------------------------------

@dataclass(frozen=True)
class BrokerAddress:
    host: str
    port: int
    tls: bool = False
    username: str = ""
    password: str = ""

    @classmethod
    def from_url(cls, url: str, *, username: str = "", password: str = "") -> BrokerAddress:
        """``mqtt://[user:pass@]host[:1883]`` or ``mqtts://host[:8883]`` (TLS, system CAs).

        Explicit ``username``/``password`` (the settings) win over those in the URL.
        """
        parts = urlsplit(url.strip())
        scheme = parts.scheme.lower()
        if scheme in ("mqtt", "tcp"):
            tls, default_port = False, 1883
        elif scheme in ("mqtts", "ssl", "tls"):
            tls, default_port = True, 8883
        else:
            raise ValueError(f"MQTT URL must start with mqtt:// or mqtts://, got {url!r}")
        if not parts.hostname:
            raise ValueError(f"MQTT URL has no host: {url!r}")
        try:
            port = parts.port or default_port
        except ValueError:
            raise ValueError(f"MQTT URL has a bad port: {url!r}") from None
        return cls(
            host=parts.hostname, port=port, tls=tls,
            username=username or unquote(parts.username or ""),
            password=password or unquote(parts.password or ""),
        )

    def __str__(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"


def asset_hint_from_topic(topic: str, filters: list[str] | tuple[str, ...]) -> str | None:
    """The asset id a topic names: the first level matched by a wildcard of the subscription.

    ``nanosentri/telemetry/WXT536-01`` under ``nanosentri/telemetry/#`` gives ``WXT536-01``,
    ``plant/WXT536-02/telemetry`` under ``plant/+/telemetry`` gives ``WXT536-02``.
    """
    from apps.assets.payloads import _KEY

    levels = topic.split("/")
    for pattern in filters:
        hint = _wildcard_level(levels, pattern.split("/"))
        if hint is not None:
            return hint if _KEY.match(hint) else None
    return None


def _wildcard_level(levels: list[str], pattern: list[str]) -> str | None:
    for i, part in enumerate(pattern):
        if part == "#":
            return levels[i] if i < len(levels) and levels[i] else None
        if i >= len(levels):
            return None
        if part == "+":
            return levels[i] or None
        if part != levels[i]:
            return None
    return None


# --- bookkeeping ---------------------------------------------------------------------------

@dataclass
class ListenerStats:
    received: int = 0
    stored: int = 0  # messages with at least one reading stored
    readings: int = 0
    rejected: Counter = field(default_factory=Counter)  # reason kind -> messages
    duplicates: int = 0
    db_errors: int = 0
    connects: int = 0
    connect_failures: int = 0
    disconnects: int = 0

    def line(self) -> str:
        rejected = sum(self.rejected.values())
        reasons = ", ".join(f"{kind}: {n}" for kind, n in self.rejected.most_common()) or "none"
        return (f"received={self.received} stored={self.stored} readings={self.readings} rejected={rejected} "
                f"({reasons}) duplicates={self.duplicates} db_errors={self.db_errors} connects={self.connects} "
                f"connect_failures={self.connect_failures} disconnects={self.disconnects}")


class Backoff:
    """Exponential back-off for reconnects: first, first*factor, ... up to maximum."""

    def __init__(self, first: float = 1.0, maximum: float = 60.0, factor: float = 2.0):
        self.first, self.maximum, self.factor = first, maximum, factor
        self._next = first

    def next(self) -> float:
        delay = self._next
        self._next = min(self.maximum, self._next * self.factor)
        return delay

    def reset(self) -> None:
        self._next = self.first


class _Retry(Exception):
    """Storing failed in a way a later try may fix: leave the message un-acknowledged."""


@dataclass
class _Pending:
    """A message received and not yet acknowledged."""

    topic: str
    payload: bytes
    dup: bool
    mid: int
    qos: int
    digest: str = ""


def _digest(topic: str, payload: bytes) -> str:
    return hashlib.sha256(topic.encode("utf-8", "replace") + b"\0" + payload).hexdigest()


# --- the listener --------------------------------------------------------------------------

class TelemetryListener:
    """One MQTT connection that stores telemetry; reconnects with back-off until stopped."""

    def __init__(
        self,
        *,
        url: str,
        topics: list[str] | tuple[str, ...],
        client_id: str,
        username: str = "",
        password: str = "",
        session_expiry: int = DEFAULT_SESSION_EXPIRY,
        keepalive: int = DEFAULT_KEEPALIVE,
        backoff: Backoff | None = None,
        stats_every: float = 60.0,
        connect_timeout: float = 10.0,
        refresh_alerts: bool = True,
        batch_size: int = DEFAULT_BATCH_SIZE,
        batch_wait: float = DEFAULT_BATCH_WAIT,
    ):
        if not topics:
            raise ValueError("no MQTT topics to subscribe to")
        if not client_id:
            raise ValueError("a fixed MQTT client id is needed for a persistent session")
        if batch_size < 1:
            raise ValueError(f"the batch size must be at least 1, got {batch_size}")
        if batch_wait < 0:
            raise ValueError(f"the batch wait cannot be negative, got {batch_wait}")
        self.address = BrokerAddress.from_url(url, username=username, password=password)
        self.topics = list(topics)
        self.client_id = client_id
        self.session_expiry = session_expiry
        self.keepalive = keepalive
        self.backoff = backoff or Backoff()
        # Separate back-off for a database outage: reconnecting to the broker works and would
        # reset the broker back-off, but the redelivered message fails again until the database
        # is back.
        self.db_backoff = Backoff(self.backoff.first, self.backoff.maximum, self.backoff.factor)
        self.stats_every = stats_every
        self.connect_timeout = connect_timeout
        self.refresh_alerts = refresh_alerts
        self.batch_size = batch_size
        self.batch_wait = batch_wait
        # Unacknowledged messages the broker may send us: as many as MQTT allows. A burst then
        # waits in flight (in the broker's memory and our socket) rather than in the broker's
        # queue for us, which Mosquitto caps at 1,000 messages by default and then drops
        # (max_queued_messages). We read at most a batch at a time, so our memory stays bounded.
        self.receive_maximum = MAX_RECEIVE_MAXIMUM
        self.stats = ListenerStats()
        self.connected = False
        self.session_present = False  # did the broker still have our session at the last connect?
        self._stopping = threading.Event()
        self._client = None
        self._connack: bool | None = None  # None: waiting; True: accepted; False: refused
        self._subscribed = False
        self._retry_needed = False  # a message failed: stop handling, reconnect, get it redelivered
        self._next_attempt = 0.0
        self._last_stats = time.monotonic()
        self._recent: OrderedDict[str, None] = OrderedDict()
        # Stored but perhaps not acknowledged when a connection drops: the last batch or two.
        self._recent_size = max(_RECENT_DIGESTS, 2 * batch_size)
        self._pending: list[_Pending] = []  # received, not yet stored nor acknowledged
        self._pending_bytes = 0
        self._pending_since = 0.0

    @classmethod
    def from_settings(cls, **overrides) -> TelemetryListener:
        from django.conf import settings

        options = {
            "url": settings.NANOSENTRI_MQTT_URL,
            "topics": settings.NANOSENTRI_MQTT_TOPICS,
            "client_id": settings.NANOSENTRI_MQTT_CLIENT_ID,
            "username": settings.NANOSENTRI_MQTT_USERNAME,
            "password": settings.NANOSENTRI_MQTT_PASSWORD,
            "batch_size": settings.NANOSENTRI_MQTT_BATCH_SIZE,
            "batch_wait": settings.NANOSENTRI_MQTT_BATCH_WAIT_MS / 1000,
        }
        options.update({k: v for k, v in overrides.items() if v is not None})
        if not options["url"]:
            raise ValueError("NANOSENTRI_MQTT_URL is empty: no broker to listen to")
        return cls(**options)

    # -- the paho client --------------------------------------------------------------------

    def _make_client(self):
        import paho.mqtt.client as mqtt

        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=mqtt.MQTTv5,
            manual_ack=True,  # PUBACK only after the reading is stored
            reconnect_on_failure=False,  # tick() reconnects, with our back-off
        )
        if self.address.username:
            client.username_pw_set(self.address.username, self.address.password or None)
        if self.address.tls:
            client.tls_set(cert_reqs=ssl.CERT_REQUIRED)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        return client

    def connect(self) -> bool:
        """One connection attempt: TCP, CONNECT, wait for CONNACK. True if connected."""
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        if self._client is None:
            self._client = self._make_client()
        properties = Properties(PacketTypes.CONNECT)
        properties.SessionExpiryInterval = self.session_expiry
        properties.ReceiveMaximum = self.receive_maximum
        self._connack = None
        self._subscribed = False
        self._retry_needed = False
        self._pending, self._pending_bytes = [], 0  # not acknowledged on the old connection: sent again
        try:
            # clean_start=False on *every* connect, the first one included: the session the
            # broker kept from the previous run of the listener holds messages for us.
            self._client.connect(self.address.host, self.address.port, keepalive=self.keepalive,
                                 clean_start=False, properties=properties)
        except (OSError, ValueError) as exc:
            return self._connect_failed(f"cannot reach the broker at {self.address}: {exc}")
        deadline = time.monotonic() + self.connect_timeout
        # Wait for CONNACK, then SUBACK: only then can a brand-new session receive messages.
        while (self._connack is None or (self._connack and not self._subscribed)) \
                and time.monotonic() < deadline and not self._stopping.is_set():
            rc = self._client.loop(timeout=0.2)
            if rc != 0 or not (self.connected or self._connack is None):  # MQTT_ERR_SUCCESS is 0
                break
        if self._connack and self.connected:
            if not self._subscribed:
                log.warning("no SUBACK from %s yet; carrying on", self.address)
            return True
        reason = "broker refused the connection" if self._connack is False else "no CONNACK from the broker"
        self._drop_socket()
        return self._connect_failed(f"{reason} ({self.address})")

    def _connect_failed(self, message: str) -> bool:
        self.connected = False
        self.stats.connect_failures += 1
        delay = self.backoff.next()
        self._next_attempt = time.monotonic() + delay
        log.warning("%s; retrying in %.1f s", message, delay)
        return False

    def _drop_socket(self) -> None:
        self._mark_disconnected()
        try:
            self._client.disconnect()
        except Exception:  # already gone
            pass

    def _mark_disconnected(self, why: str = "") -> None:
        if self.connected:
            self.connected = False
            self.stats.disconnects += 1
            if why and not self._stopping.is_set():
                log.warning("%s; reconnecting", why)

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        if reason_code.is_failure:
            log.error("MQTT broker %s refused the connection: %s", self.address, reason_code)
            self._connack = False
            return
        from paho.mqtt.subscribeoptions import SubscribeOptions

        self._connack = True
        self.connected = True
        self.session_present = bool(flags.session_present)
        self.stats.connects += 1
        self.backoff.reset()
        log.info("connected to %s as %s (session %s)", self.address, self.client_id,
                 "resumed" if flags.session_present else "new")
        # Subscribe every time: harmless for a resumed session, needed if the broker lost it.
        # retainHandling=1: a retained message is sent only for a new subscription, not again on
        # every reconnect (it would be stored again).
        options = SubscribeOptions(qos=1, retainHandling=SubscribeOptions.RETAIN_SEND_IF_NEW_SUB)
        client.subscribe([(topic, options) for topic in self.topics])

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties):
        self._subscribed = True
        for topic, code in zip(self.topics, reason_codes, strict=False):
            if code.is_failure:
                log.error("subscription to %s refused by the broker: %s", topic, code)
            elif code.value < 1:
                log.warning("subscription to %s granted at QoS 0 only: messages may be lost", topic)

    def _on_disconnect(self, client, userdata, flags, reason_code, properties):
        self._mark_disconnected(f"disconnected from {self.address} ({reason_code})")

    def _on_message(self, client, userdata, message):
        if self._retry_needed:
            # An earlier message of this connection is waiting for redelivery: leave this one
            # un-acknowledged too, so the broker redelivers both in their original order.
            return
        try:
            topic = message.topic
        except UnicodeDecodeError:
            topic = "(topic is not UTF-8)"
        self.stats.received += 1
        if not self._pending:
            self._pending_since = time.monotonic()
        # Stored with the rest of its batch once the network round is over (``step``).
        payload = bytes(message.payload)
        self._pending.append(_Pending(topic, payload, bool(message.dup), message.mid, message.qos))
        self._pending_bytes += len(payload)

    # -- a batch of messages ----------------------------------------------------------------

    def _flush(self) -> None:
        """Store the pending messages a batch at a time (what arrived while connecting can be
        more than one)."""
        while self._pending and not self._retry_needed:
            taken, size = 0, 0
            for message in self._pending:
                if taken == self.batch_size or size >= MAX_BATCH_BYTES:
                    break
                taken, size = taken + 1, size + len(message.payload)
            batch, self._pending = self._pending[:taken], self._pending[taken:]
            self._store_batch(batch)
        if self._retry_needed:
            self._pending = []  # not acknowledged: they come again, after the batch that failed
        self._pending_bytes = sum(len(m.payload) for m in self._pending)

    def _batch_full(self) -> bool:
        return len(self._pending) >= self.batch_size or self._pending_bytes >= MAX_BATCH_BYTES

    def _store_batch(self, batch: list[_Pending]) -> None:
        """Store a batch in one transaction, then acknowledge each of its messages.

        If the database is unreachable nothing is acknowledged: ``step`` reconnects and the
        broker sends the whole batch again. A data error (one bad message spoils the batch's
        transaction) stores the batch again message by message (``handle``), so only the bad
        message is tried again, then rejected.
        """
        todo = []
        for message in batch:
            message.digest = _digest(message.topic, message.payload)
            if message.dup and message.digest in self._recent:
                self.stats.duplicates += 1
                log.info("skipping redelivered message on %s: stored already", message.topic)
                self._ack(message)
            else:
                todo.append(message)
        if not todo:
            return
        from apps.assets import services

        close_old_connections()  # like a request: never reuse a connection the server dropped
        try:
            results = services.payloads_receive(
                [services.Incoming(m.payload, topic=m.topic, asset_hint=asset_hint_from_topic(m.topic, self.topics))
                 for m in todo], source="mqtt")
        except (OperationalError, InterfaceError) as exc:
            # The database is down or the connection broke: nothing of the batch was kept.
            self.stats.db_errors += 1
            log.error("database error storing a batch of %d message(s) (will be redelivered): %s", len(todo), exc)
            close_old_connections()
            self._retry_needed = True
            return
        except Exception as exc:
            if isinstance(exc, DatabaseError):
                self.stats.db_errors += 1
                log.error("database error storing a batch of %d message(s); storing them one by one: %s", len(todo), exc)
            else:
                log.exception("a batch of %d message(s) could not be handled; handling them one by one", len(todo))
            close_old_connections()
            self._handle_one_by_one(todo)
            return
        self.db_backoff.reset()
        touched = {}
        for message, result in zip(todo, results, strict=True):
            self._remember(message.digest)
            self._count(result)
            if result.stored:
                touched[result.asset.pk] = result.asset
            self._ack(message)
        if touched and self.refresh_alerts:
            self._alerts_many(list(touched.values()))

    def _handle_one_by_one(self, messages: list[_Pending]) -> None:
        for message in messages:
            if not self.handle(message.topic, message.payload, dup=message.dup):
                self._retry_needed = True  # this one and the rest come again, in order
                return
            self._ack(message)

    def _ack(self, message: _Pending) -> None:
        if message.qos > 0 and self._client is not None:
            self._client.ack(message.mid, message.qos)

    def _count(self, result) -> None:
        if result.error:
            self.stats.rejected[result.error.split(":")[0]] += 1
            return
        if result.unknown_sensors:
            self.stats.rejected["unknown sensor"] += 1
        if result.stored:
            self.stats.stored += 1
            self.stats.readings += result.stored

    # -- one message ------------------------------------------------------------------------

    def handle(self, topic: str, payload: bytes, *, dup: bool = False) -> bool:
        """Store one message. True when done with it (stored or rejected for good): acknowledge.

        False when a later try may succeed (the database is unreachable): do not acknowledge.
        Never raises.
        """
        payload = bytes(payload)
        digest = _digest(topic, payload)
        if dup and digest in self._recent:
            self.stats.duplicates += 1
            log.info("skipping redelivered message on %s: stored already", topic)
            return True
        if b"\x00" in payload:
            # Never telemetry, and PostgreSQL cannot store NUL in text (not even in the rejection).
            return self._reject_for_good(topic, payload, "malformed payload: contains NUL bytes")
        for attempt in range(1, POISON_TRIES + 1):
            close_old_connections()  # like a request: never reuse a connection the server dropped
            try:
                result = self._store(topic, payload)
                self.db_backoff.reset()
                break
            except _Retry:
                return False
            except DatabaseError as exc:
                # DataError, IntegrityError...: the connection is fine, this message is not (or
                # it lost a race, e.g. two processes registering the same sensor): try again now,
                # then give up on it so it cannot block the feed.
                self.stats.db_errors += 1
                log.error("database error storing the message on %s (try %d of %d): %s",
                          topic, attempt, POISON_TRIES, exc)
                close_old_connections()
                if attempt == POISON_TRIES:
                    return self._reject_for_good(topic, payload, f"database error: {exc.__class__.__name__}: {exc}")
            except Exception as exc:
                # A bug (parsing or storing): retrying cannot help, so reject it and carry on.
                log.exception("telemetry message on %s could not be handled", topic)
                return self._reject_for_good(topic, payload, f"internal error: {exc.__class__.__name__}: {exc}")
        self._remember(digest)
        self._count(result)
        if result.stored and self.refresh_alerts:
            self._alerts(result.asset)
        return True

    def _store(self, topic: str, payload: bytes):
        from apps.assets.services import payload_receive

        try:
            return payload_receive(payload, source="mqtt", topic=topic,
                                   asset_hint=asset_hint_from_topic(topic, self.topics))
        except (OperationalError, InterfaceError) as exc:
            # The database is down or the connection broke: retry once it is back.
            self.stats.db_errors += 1
            log.error("database error storing the message on %s (will be redelivered): %s", topic, exc)
            close_old_connections()
            raise _Retry from exc

    def _reject_for_good(self, topic: str, payload: bytes, reason: str) -> bool:
        from apps.assets.payloads import nul_free
        from apps.assets.services import payload_reject

        self.stats.rejected[reason.split(":")[0]] += 1
        try:
            payload_reject(source="mqtt", reason=reason, raw=nul_free(payload), topic=topic)
        except Exception:
            log.exception("could not record the rejected message on %s", topic)
            close_old_connections()
        return True

    def _alerts(self, asset) -> None:
        self._alerts_many([asset])

    def _alerts_many(self, assets) -> None:
        from apps.assets.services import alerts_refresh_notify_many

        try:
            opened = alerts_refresh_notify_many(assets)
        except Exception:
            # The readings are stored; alerts are refreshed again with the next message.
            log.exception("refreshing alerts of %s failed", ", ".join(a.asset_id for a in assets[:5])
                          + (f" and {len(assets) - 5} more" if len(assets) > 5 else ""))
            close_old_connections()
            return
        for alert in opened:
            log.warning("alert opened on %s: [%s] %s", alert.asset.asset_id, alert.severity, alert.message)

    def _remember(self, digest: str) -> None:
        self._recent[digest] = None
        self._recent.move_to_end(digest)
        while len(self._recent) > self._recent_size:
            self._recent.popitem(last=False)

    # -- the loop ---------------------------------------------------------------------------

    def step(self, timeout: float = 1.0) -> bool:
        """One round of network I/O, then store what arrived if it is time. True if a message came."""
        before = self.stats.received
        if self._pending:  # waiting for a batch to fill: only until its time is up
            timeout = max(0.0, min(timeout, self._pending_since + self.batch_wait - time.monotonic()))
        rc = self._client.loop(timeout=timeout)
        # loop() reads one packet: take what the socket holds already, up to a batch, without waiting.
        while rc == 0 and self._pending and not self._batch_full() and not self._retry_needed:
            received = self.stats.received
            rc = self._client.loop_read()
            if self.stats.received == received:
                break
        if self._pending and not self._retry_needed and (
                self._batch_full() or rc != 0 or self._stopping.is_set()
                or time.monotonic() - self._pending_since >= self.batch_wait):
            # Also when the connection was lost: stored now, acknowledged never; the broker sends
            # them again and they are skipped as stored already.
            self._flush()
        if self._retry_needed:
            # Storing failed: drop the connection; the broker redelivers un-acknowledged
            # messages when we are back (after the back-off gives the database time).
            self._drop_socket()
            delay = self.db_backoff.next()
            self._next_attempt = time.monotonic() + delay
            log.warning("reconnecting in %.1f s to get un-stored messages redelivered", delay)
        elif rc != 0:
            self._mark_disconnected(f"connection to {self.address} lost ({rc})")
        return self.stats.received > before

    def tick(self, timeout: float = 1.0) -> bool:
        """Connect if needed (respecting the back-off), else one step. True if more may be waiting."""
        self._log_stats_if_due()
        if self.connected:
            return self.step(timeout)
        wait = self._next_attempt - time.monotonic()
        if wait > 0:
            self._stopping.wait(min(wait, timeout))
            return False
        return self.connect()

    def run(self) -> None:
        """Until stop(): keep connected and store what arrives."""
        log.info("telemetry listener for %s on %s, client id %s", ", ".join(self.topics), self.address, self.client_id)
        try:
            while not self._stopping.is_set():
                try:
                    self.tick()
                except Exception:
                    # Not expected (handle() catches everything): start over with a new connection
                    # rather than end the process; un-acknowledged messages come back.
                    log.exception("telemetry listener error; reconnecting")
                    self._drop_socket()
                    self._next_attempt = time.monotonic() + self.backoff.next()
        finally:
            self.shutdown()

    def stop(self) -> None:
        """Ask run() to finish; safe to call from a signal handler."""
        self._stopping.set()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def shutdown(self) -> None:
        """Disconnect cleanly. The session stays on the broker, which queues messages meanwhile."""
        if self._client is not None and self.connected:
            if self._pending and not self._retry_needed:
                self._flush()  # the messages in hand are stored and acknowledged first
            self._mark_disconnected()
            self._client.disconnect()
            for _ in range(5):  # flush the DISCONNECT
                if self._client.loop(timeout=0.1) != 0:
                    break
        log.info("telemetry listener stopped: %s", self.stats.line())

    def _log_stats_if_due(self) -> None:
        now = time.monotonic()
        if self.stats_every and now - self._last_stats >= self.stats_every:
            self._last_stats = now
            log.info("telemetry: %s", self.stats.line())
