"""Answers in flight belong to the process that generates them.

An answer is ``pending`` or ``streaming`` only while a process is writing it. When that process
dies (killed, out of memory, restarted by its supervisor mid-answer) nothing will ever finish the
message: without this sweep it stayed ``streaming`` forever, on the page, in the conversation and
in the metrics. So every process that answers registers itself (``AnswerProcess``), stamps the
answers it starts with its key, and, in the web processes, a heartbeat thread keeps the row fresh
and fails the answers of the processes that are gone:

- a process on this host whose pid is no longer running (or whose pid this process now has: a
  container restarted with the same pid 1) is gone at once;
- any other is gone when its heartbeat is older than ``lease_seconds()`` (another host).

``NANOSENTRI_ANSWER_HEARTBEAT_SECONDS`` sets the beat (0: no heartbeat and no sweep, as in the
unit tests, which call the functions here directly).
"""
from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from datetime import datetime, timedelta

from django.conf import settings
from django.db import close_old_connections
from django.utils import timezone

from apps.chat.models import AnswerProcess, Message

log = logging.getLogger(__name__)

IN_FLIGHT = (Message.Status.PENDING, Message.Status.STREAMING)
ORPHANED_ERROR = "the server process writing this answer stopped before it finished; ask again"
FORGET_AFTER = timedelta(days=1)  # rows of processes gone this long are deleted


def host_key() -> str:
    """This host, as far as pids go: the host name and, on Linux, the pid namespace (two
    containers may share a host name, never a pid namespace)."""
    try:
        namespace = f":{os.stat('/proc/self/ns/pid').st_ino}"
    except OSError:
        namespace = ""
    return f"{socket.gethostname()}{namespace}"[:255]


class _ThisProcess:
    """The key of this process run, made again after a fork (a child is another process)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._pid = None
        self._key = ""

    def key(self) -> str:
        with self._lock:
            if self._pid != os.getpid():
                self._pid, self._key = os.getpid(), uuid.uuid4().hex
            return self._key


_this = _ThisProcess()


def answer_process_key() -> str:
    """This process's key, registered (the row exists) before it is put on an answer; its
    heartbeat runs from then on (a web process starts it at startup already)."""
    heartbeat_start()
    key = _this.key()
    AnswerProcess.objects.get_or_create(
        key=key, defaults={"host": host_key(), "pid": os.getpid(), "seen": timezone.now()}
    )
    return key


def heartbeat_beat(*, now: datetime | None = None) -> None:
    """Say this process is alive (and register it if it is not yet)."""
    now = now or timezone.now()
    key = _this.key()
    if not AnswerProcess.objects.filter(key=key).update(seen=now):
        AnswerProcess.objects.get_or_create(key=key, defaults={"host": host_key(), "pid": os.getpid(), "seen": now})


def lease_seconds() -> float:
    """How long a process may stay silent before its answers count as orphaned."""
    return 4 * max(settings.NANOSENTRI_ANSWER_HEARTBEAT_SECONDS, 1)


def _pid_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def _gone(process: AnswerProcess, *, here: str, cutoff: datetime) -> bool:
    if process.key == _this.key():
        return False
    if process.host == here and (process.pid == os.getpid() or not _pid_running(process.pid)):
        return True
    return process.seen < cutoff


def answers_orphaned_fail(*, now: datetime | None = None) -> list[int]:
    """Mark ``failed`` every answer in flight whose process is gone; returns their ids."""
    now = now or timezone.now()
    cutoff = now - timedelta(seconds=lease_seconds())
    in_flight = Message.objects.filter(role=Message.Role.ASSISTANT, status__in=IN_FLIGHT)
    keys = set(in_flight.values_list("process_key", flat=True))
    if not keys:
        return []
    here = host_key()
    processes = {p.key: p for p in AnswerProcess.objects.filter(key__in=keys)}
    gone = {key for key in keys if key not in processes or _gone(processes[key], here=here, cutoff=cutoff)}
    # An answer from before processes were recorded has no key: orphaned once it is older than a lease.
    orphans = in_flight.filter(process_key__in=gone - {""}) | in_flight.filter(process_key="", created__lt=cutoff)
    ids = list(orphans.values_list("pk", flat=True))
    if ids:
        # Conditional on the status: an answer finished meanwhile keeps its own.
        Message.objects.filter(pk__in=ids, status__in=IN_FLIGHT).update(
            status=Message.Status.FAILED, error=ORPHANED_ERROR, completed=now
        )
        log.warning("marked %d answer(s) failed: their process stopped mid-answer (%s)", len(ids), ids)
    AnswerProcess.objects.filter(seen__lt=now - FORGET_AFTER).exclude(key=_this.key()).delete()
    return ids


_heartbeat_started = threading.Lock()
_heartbeat_thread: threading.Thread | None = None


def heartbeat_start() -> threading.Thread | None:
    """Start this process's heartbeat and sweep (once per process; a no-op when the setting is 0).

    The first beat runs at once, so a web process restarted after a crash fails the answers its
    previous run left at startup.
    """
    global _heartbeat_thread
    every = settings.NANOSENTRI_ANSWER_HEARTBEAT_SECONDS
    if every <= 0:
        return None
    with _heartbeat_started:
        if _heartbeat_thread is not None and _heartbeat_thread.is_alive():
            return _heartbeat_thread

        def run():
            while True:
                try:
                    heartbeat_beat()
                    answers_orphaned_fail()
                except Exception as exc:  # a database outage: try again at the next beat
                    log.warning("answer heartbeat failed: %s", exc)
                finally:
                    close_old_connections()
                time.sleep(every)

        _heartbeat_thread = threading.Thread(target=run, name="answer-heartbeat", daemon=True)
        _heartbeat_thread.start()
        return _heartbeat_thread
