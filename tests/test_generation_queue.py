"""One generation at a time, chats served in arrival order, with their place in line."""
import threading
import time

import pytest

from models.llm.queue import GenerationQueue

POLL = 0.01
TIMEOUT = 5


def never() -> bool:
    return False


def run(target, *args) -> threading.Thread:
    thread = threading.Thread(target=target, args=args, daemon=True)
    thread.start()
    return thread


def wait_until(condition, timeout=TIMEOUT):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail("timed out waiting for the queue")
        time.sleep(0.005)


def test_tickets_are_handed_out_in_arrival_order():
    queue = GenerationQueue()

    a, b, c = queue.join(), queue.join(), queue.join()

    assert a < b < c
    assert len(queue) == 3
    assert queue.is_first(a) and not queue.is_first(b)
    queue.leave(a)
    assert queue.is_first(b)
    assert len(queue) == 2


def test_leaving_twice_or_with_an_unknown_ticket_is_harmless():
    queue = GenerationQueue()
    a = queue.join()

    queue.leave(a)
    queue.leave(a)
    queue.leave(999)

    assert len(queue) == 0
    assert not queue.is_first(a)


def test_the_first_in_line_does_not_wait():
    queue = GenerationQueue()
    ticket = queue.join()

    assert list(queue.wait_turn(ticket, never, poll=POLL)) == []


def test_wait_turn_yields_how_many_are_ahead_as_earlier_tickets_leave():
    queue = GenerationQueue()
    first, second, third = queue.join(), queue.join(), queue.join()
    positions: list[int] = []
    done = threading.Event()

    def waiter():
        for ahead in queue.wait_turn(third, never, poll=POLL):
            positions.append(ahead)
        done.set()

    thread = run(waiter)
    wait_until(lambda: positions == [2])
    assert not done.is_set()

    queue.leave(first)
    wait_until(lambda: positions == [2, 1])
    assert not done.is_set()

    queue.leave(second)
    assert done.wait(TIMEOUT)
    thread.join(TIMEOUT)
    assert positions == [2, 1]
    assert queue.is_first(third)


def test_a_later_ticket_leaving_does_not_change_the_position():
    queue = GenerationQueue()
    first, mine, later = queue.join(), queue.join(), queue.join()
    positions: list[int] = []
    done = threading.Event()

    def waiter():
        for ahead in queue.wait_turn(mine, never, poll=POLL):
            positions.append(ahead)
        done.set()

    run(waiter)
    wait_until(lambda: positions == [1])
    queue.leave(later)
    time.sleep(0.1)
    assert not done.is_set()

    queue.leave(first)
    assert done.wait(TIMEOUT)
    assert positions == [1]


def test_tickets_are_served_in_arrival_order():
    queue = GenerationQueue()
    tickets = [queue.join() for _ in range(4)]
    served: list[int] = []
    lock = threading.Lock()

    def chat(ticket):
        for _ in queue.wait_turn(ticket, never, poll=POLL):
            pass
        with lock:
            served.append(ticket)
        time.sleep(0.02)
        queue.leave(ticket)

    # Threads start in reverse order; the queue, not the scheduler, decides who goes first.
    threads = [run(chat, t) for t in reversed(tickets)]
    for thread in threads:
        thread.join(TIMEOUT)

    assert served == tickets
    assert len(queue) == 0


def test_cancelled_waiting_returns_early_and_stays_in_line():
    queue = GenerationQueue()
    holder, mine = queue.join(), queue.join()
    cancel = threading.Event()
    positions: list[int] = []
    finished = threading.Event()

    def waiter():
        for ahead in queue.wait_turn(mine, cancel.is_set, poll=POLL):
            positions.append(ahead)
        finished.set()

    run(waiter)
    wait_until(lambda: positions == [1])
    assert not finished.is_set()

    cancel.set()

    assert finished.wait(TIMEOUT)
    assert queue.is_first(holder)  # the holder was never released
    assert len(queue) == 2  # the caller must still leave
    queue.leave(mine)
    assert len(queue) == 1


def test_cancelled_before_waiting_returns_without_a_position():
    queue = GenerationQueue()
    queue.join()
    mine = queue.join()

    assert list(queue.wait_turn(mine, lambda: True, poll=POLL)) == []


def test_turn_serializes_two_threads():
    queue = GenerationQueue()
    events: list[str] = []
    lock = threading.Lock()
    inside = []
    overlap = []
    a_in = threading.Event()

    def chat(name, hold):
        with queue.turn():
            with lock:
                inside.append(name)
                if len(inside) > 1:
                    overlap.append(tuple(inside))
                events.append(f"{name}-in")
            if name == "A":
                a_in.set()
            time.sleep(hold)
            with lock:
                events.append(f"{name}-out")
                inside.remove(name)

    first = run(chat, "A", 0.2)
    assert a_in.wait(TIMEOUT)
    second = run(chat, "B", 0.0)
    first.join(TIMEOUT)
    second.join(TIMEOUT)

    assert overlap == []
    assert events == ["A-in", "A-out", "B-in", "B-out"]
    assert len(queue) == 0


def test_turn_leaves_the_line_when_the_body_raises():
    queue = GenerationQueue()

    with pytest.raises(RuntimeError):
        with queue.turn():
            raise RuntimeError("model crashed")

    assert len(queue) == 0
    with queue.turn() as ticket:  # the next chat is not blocked
        assert queue.is_first(ticket)


def test_with_two_slots_two_generate_at_once_and_the_third_waits_first_in_line():
    queue = GenerationQueue(slots=2)
    a, b, c = queue.join(), queue.join(), queue.join()

    assert list(queue.wait_turn(a, never, poll=POLL)) == []
    assert list(queue.wait_turn(b, never, poll=POLL)) == []  # the second slot: no wait
    positions = []
    waiter = run(lambda: positions.extend(queue.wait_turn(c, never, poll=POLL)))
    wait_until(lambda: positions == [1])
    assert waiter.is_alive()
    queue.leave(b)  # either slot freeing lets the next one in
    waiter.join(TIMEOUT)
    assert not waiter.is_alive() and positions == [1]


def test_raising_the_slots_lets_waiting_chats_in():
    queue = GenerationQueue()
    a, b = queue.join(), queue.join()
    assert list(queue.wait_turn(a, never, poll=POLL)) == []
    done = threading.Event()
    waiter = run(lambda: (list(queue.wait_turn(b, never, poll=1.0)), done.set()))
    time.sleep(0.05)
    assert not done.is_set()
    queue.slots = 2
    assert done.wait(TIMEOUT)
    waiter.join(TIMEOUT)


def test_the_model_gives_way_while_a_chat_gathers_its_evidence():
    queue = GenerationQueue()
    phase = queue.gathering_evidence()
    phase.__enter__()
    waited = []
    giver = run(lambda: waited.append(queue.give_way(5.0)))
    time.sleep(0.2)
    assert giver.is_alive()  # the model is held while the evidence is gathered
    phase.__exit__(None, None, None)
    giver.join(TIMEOUT)
    assert not giver.is_alive() and 0.15 < waited[0] < 2


def test_giving_way_is_bounded_and_ends_on_stop():
    queue = GenerationQueue()
    with queue.gathering_evidence():
        started = time.monotonic()
        assert queue.give_way(0.2) >= 0.19
        assert time.monotonic() - started < 2
        assert queue.give_way(5.0, cancelled=lambda: True) < 0.5
        assert queue.give_way(0) == 0.0  # turned off
    assert queue.give_way(5.0) < 0.05  # nobody gathering: no wait


def test_a_streaming_answer_pauses_between_tokens_for_a_new_chats_evidence():
    from models.llm.router import RoutedAnswer
    from models.llm.routing import Route

    class Model:
        name = "fake"

        def stream_chat(self, messages, **kwargs):
            for piece in ("one ", "two ", "three"):
                yield piece

    class Prompt:
        messages = []
        prompt_tokens = 1

    queue = GenerationQueue()
    answer = RoutedAnswer(Route("local", "no_site_server", ""), local=Model, site=None, prompt_for=lambda m: Prompt(),
                          max_tokens=8, temperature=0, should_stop=never, queue=queue, first_token_timeout=5,
                          stall_timeout=5, evidence_wait_s=5.0)
    events = answer.events()
    while next(events)[0] != "token":
        pass
    phase = queue.gathering_evidence()
    phase.__enter__()  # another chat asks now
    got = []
    pump = run(lambda: got.extend(e for e in events))
    time.sleep(0.3)
    assert got == []  # no second token while the other chat gathers its evidence
    phase.__exit__(None, None, None)
    pump.join(TIMEOUT)
    assert [e[1] for e in got if e[0] == "token"] == ["two ", "three"]
