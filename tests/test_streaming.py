"""Token frames coalesced in the generation thread: fewer wake-ups of the event loop, nothing lost or reordered."""
from apps.chat.streaming import TokenCoalescer


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def _token(text, message=1):
    return {"type": "token", "message": message, "text": text}


def test_the_first_token_goes_at_once_and_the_next_ones_wait_for_the_interval():
    sent, clock = [], Clock()
    emit = TokenCoalescer(sent.append, interval_s=0.05, clock=clock)

    emit(_token("The"))
    assert sent == [{"type": "token", "message": 1, "text": "The", "tokens": 1}]
    for piece in (" fuse", " F2", " is"):
        clock.now += 0.01
        emit(_token(piece))
    assert len(sent) == 1  # held: within 50 ms of the last frame
    clock.now += 0.03
    emit(_token(" blown"))
    assert sent[-1] == {"type": "token", "message": 1, "text": " fuse F2 is blown", "tokens": 4}


def test_any_other_event_first_flushes_the_held_tokens():
    sent, clock = [], Clock()
    emit = TokenCoalescer(sent.append, interval_s=0.05, clock=clock)
    emit(_token("Check"))
    clock.now += 0.001
    emit(_token(" the"))
    emit(_token(" relay"))
    emit({"type": "done", "message": 1, "status": "completed"})
    emit(None)

    assert [e and e["type"] for e in sent] == ["token", "token", "done", None]
    assert "".join(e["text"] for e in sent if e and e["type"] == "token") == "Check the relay"
    assert sent[1]["tokens"] == 2


def test_tokens_of_another_message_are_not_merged():
    sent, clock = [], Clock()
    emit = TokenCoalescer(sent.append, interval_s=0.05, clock=clock)
    emit(_token("a", message=1))
    emit(_token("b", message=1))
    emit(_token("c", message=2))
    emit.flush()
    assert [(e["message"], e["text"]) for e in sent] == [(1, "a"), (1, "b"), (2, "c")]


def test_an_interval_of_zero_sends_every_token():
    sent = []
    emit = TokenCoalescer(sent.append, interval_s=0)
    for piece in "abc":
        emit(_token(piece))
    assert [e["text"] for e in sent] == ["a", "b", "c"]
