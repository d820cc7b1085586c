"""An answer whose process died mid-answer is marked failed, never left streaming (apps/chat/inflight.py).

The real thing (a web process killed while it streams, then restarted) is in tests/test_topology.py.
"""
import os
import subprocess
import sys
from datetime import timedelta

import threading

import pytest
from django.utils import timezone

from apps.chat import inflight, services
from apps.chat.models import AnswerProcess, Conversation, Message

pytestmark = pytest.mark.django_db


@pytest.fixture
def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _process(key: str, *, host: str | None = None, pid: int | None = None, seen_ago: float = 0.0) -> AnswerProcess:
    return AnswerProcess.objects.create(
        key=key, host=inflight.host_key() if host is None else host, pid=os.getppid() if pid is None else pid,
        seen=timezone.now() - timedelta(seconds=seen_ago),
    )


def _answer(process_key: str, status=Message.Status.STREAMING, *, created_ago: float = 0.0) -> Message:
    conversation = Conversation.objects.create(title="q")
    message = Message.objects.create(
        conversation=conversation, role=Message.Role.ASSISTANT, status=status, process_key=process_key, content="Check"
    )
    if created_ago:
        Message.objects.filter(pk=message.pk).update(created=timezone.now() - timedelta(seconds=created_ago))
    return message


def _status(message: Message) -> str:
    message.refresh_from_db()
    return message.status


def test_it_fails_the_answers_of_a_process_of_this_host_that_is_gone(dead_pid):
    _process("dead", pid=dead_pid)
    streaming, pending = _answer("dead"), _answer("dead", Message.Status.PENDING)

    assert sorted(inflight.answers_orphaned_fail()) == sorted([streaming.pk, pending.pk])

    streaming.refresh_from_db()
    assert streaming.status == Message.Status.FAILED
    assert streaming.error == inflight.ORPHANED_ERROR
    assert streaming.completed is not None
    assert streaming.content == "Check"  # what it had written stays
    assert _status(pending) == Message.Status.FAILED


def test_it_leaves_the_answers_of_live_processes(settings):
    ours = _answer(inflight.answer_process_key())  # (with the heartbeat off: no thread in the tests)
    settings.NANOSENTRI_ANSWER_HEARTBEAT_SECONDS = 10
    _process("parent")  # the pytest runner's parent: alive, on this host
    _process("far", host="another-host", pid=1, seen_ago=5)
    theirs, far = _answer("parent"), _answer("far")

    assert inflight.answers_orphaned_fail() == []

    assert {_status(ours), _status(theirs), _status(far)} == {Message.Status.STREAMING}


def test_a_process_of_another_host_is_gone_once_its_heartbeat_is_older_than_the_lease(settings):
    settings.NANOSENTRI_ANSWER_HEARTBEAT_SECONDS = 10
    assert inflight.lease_seconds() == 40
    _process("silent", host="another-host", pid=1, seen_ago=41)
    _process("beating", host="another-host", pid=2, seen_ago=39)
    silent, beating = _answer("silent"), _answer("beating")

    assert inflight.answers_orphaned_fail() == [silent.pk]
    assert _status(beating) == Message.Status.STREAMING


def test_a_restarted_container_fails_what_its_previous_run_left(settings):
    """Same host, same pid (pid 1 in a container), another run: the earlier run is gone."""
    _process("previous-run", pid=os.getpid())
    left = _answer("previous-run")

    assert inflight.answers_orphaned_fail() == [left.pk]


def test_finished_answers_and_questions_are_not_touched(dead_pid):
    _process("dead", pid=dead_pid)
    done = _answer("dead", Message.Status.COMPLETED)
    stopped = _answer("dead", Message.Status.STOPPED)

    assert inflight.answers_orphaned_fail() == []
    assert (_status(done), _status(stopped)) == (Message.Status.COMPLETED, Message.Status.STOPPED)


def test_answers_of_an_unknown_process_fail_and_old_ones_without_a_process_too(settings):
    settings.NANOSENTRI_ANSWER_HEARTBEAT_SECONDS = 10
    unknown = _answer("never-registered")
    legacy_old, legacy_new = _answer("", created_ago=41), _answer("", created_ago=5)

    assert sorted(inflight.answers_orphaned_fail()) == sorted([unknown.pk, legacy_old.pk])
    assert _status(legacy_new) == Message.Status.STREAMING


def test_the_heartbeat_keeps_this_process_alive_and_long_gone_processes_are_forgotten(settings):
    key = inflight.answer_process_key()  # (with the heartbeat off: no thread in the tests)
    settings.NANOSENTRI_ANSWER_HEARTBEAT_SECONDS = 10
    AnswerProcess.objects.filter(key=key).update(seen=timezone.now() - timedelta(hours=30))
    _process("ancient", host="another-host", pid=1, seen_ago=2 * 86400)
    mine = _answer(key)

    inflight.heartbeat_beat()
    assert inflight.answers_orphaned_fail() == []

    assert _status(mine) == Message.Status.STREAMING
    assert AnswerProcess.objects.get(key=key).seen > timezone.now() - timedelta(seconds=5)
    assert not AnswerProcess.objects.filter(key="ancient").exists()


def test_an_answer_is_stamped_with_the_process_writing_it():
    conversation = services.conversation_for(user=None, title="q")
    events = list(services.answer_stream(question="What does ERROR HIGH TEMP mean?", conversation=conversation))

    answer = Message.objects.get(pk=events[-1]["message"])
    process = AnswerProcess.objects.get(key=answer.process_key)
    assert (process.host, process.pid) == (inflight.host_key(), os.getpid())
    assert answer.status != Message.Status.STREAMING


def test_the_heartbeat_is_off_when_its_setting_is_zero(settings):
    settings.NANOSENTRI_ANSWER_HEARTBEAT_SECONDS = 0
    assert inflight.heartbeat_start() is None


def test_no_heartbeat_thread_ran_behind_these_tests():
    assert not any(t.name == "answer-heartbeat" for t in threading.enumerate())
