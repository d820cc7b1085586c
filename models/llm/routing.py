"""Which model answers: the routing policy, in one place, as plain functions (no Django).

Two routes: the **local** model (in process, or whatever ``NANOSENTRI_LLM_BACKEND`` chose: always
there) and an optional **site** model server (an OpenAI-compatible server on the plant's network,
``NANOSENTRI_SITE_LLM_URL``). Every piece of evidence has a privacy level, from the document or
asset it comes from: ``public``, ``internal`` or ``restricted``. Public and internal evidence may
go to the site server (it is the plant's own machine); restricted evidence never leaves the
process.

The policy, first match wins (``route_choose``):

1. no site server configured → local (``no_site_server``);
2. the technician chose "local only" for the conversation → local (``local_only``);
3. any evidence, reading or earlier turn of the conversation is restricted → local
   (``restricted``): the whole question is answered on the device, with all its evidence; the
   site server receives nothing of it, not even the question;
4. the site server failed less than ``NANOSENTRI_SITE_LLM_RETRY_S`` ago → local (``site_down``);
5. otherwise → the site server (``site``).

While it answers, the site route can still fall back to the local model (``models/llm/router.py``):
``site_unreachable`` (no connection or an error status), ``site_slow`` (no first token within
``NANOSENTRI_SITE_LLM_FIRST_TOKEN_TIMEOUT_S``), ``site_failed`` (the stream broke or stalled after
it started; the partial remote text is discarded and the local model answers afresh).
"""
from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass
from typing import Iterable

PUBLIC, INTERNAL, RESTRICTED = "public", "internal", "restricted"
PRIVACY_LEVELS = (PUBLIC, INTERNAL, RESTRICTED)
PRIVACY_CHOICES = [
    (PUBLIC, "Public: may go to the site model server"),
    (INTERNAL, "Internal: may go to the site model server (the plant's own)"),
    (RESTRICTED, "Restricted: never leaves this device"),
]
_RANK = {level: i for i, level in enumerate(PRIVACY_LEVELS)}

LOCAL, SITE, NONE = "local", "site", "none"

# Reason codes, recorded on every answer (Message.route_reason) and returned by the API.
NO_SITE_SERVER = "no_site_server"
LOCAL_ONLY = "local_only"
RESTRICTED_EVIDENCE = "restricted"
SITE_DOWN = "site_down"
SITE_OK = "site"
SITE_UNREACHABLE = "site_unreachable"
SITE_SLOW = "site_slow"
SITE_FAILED = "site_failed"
NOT_COVERED = "not_covered"  # no model was asked: the manuals do not cover the question
EXTRACT_ONLY = "extract_only"  # no model was asked: NANOSENTRI_LLM_NARRATIVE is off

REASONS = {
    NO_SITE_SERVER: "Answered on this device (no site model server is configured).",
    LOCAL_ONLY: "Answered on this device: you chose “local only” for this conversation.",
    RESTRICTED_EVIDENCE: "Answered on this device: restricted data never leaves it",
    SITE_DOWN: "Answered on this device: the site model server failed a moment ago.",
    SITE_OK: "Answered by the site model server.",
    SITE_UNREACHABLE: "Answered on this device: the site model server could not be reached.",
    SITE_SLOW: "Answered on this device: the site model server was too slow to start",
    SITE_FAILED: "Answered on this device: the site model server failed during the answer",
    NOT_COVERED: "No model was asked: the manuals do not cover the question.",
    EXTRACT_ONLY: "No model was asked: the answer is the manual's own lines.",
}
FALLBACKS = (SITE_UNREACHABLE, SITE_SLOW, SITE_FAILED)
# The badge on an answer: short; ``detail`` (its title) says the rest.
BADGES = {
    NO_SITE_SERVER: "this device",
    LOCAL_ONLY: "this device · local only",
    RESTRICTED_EVIDENCE: "this device · restricted data",
    SITE_DOWN: "this device · site server down",
    SITE_OK: "site model",
    SITE_UNREACHABLE: "this device · site server unreachable",
    SITE_SLOW: "this device · site server too slow",
    SITE_FAILED: "this device · site server failed",
}


def privacy_rank(level: str) -> int:
    """0 public, 1 internal, 2 restricted; anything unknown counts as restricted (fail closed)."""
    return _RANK.get(level, _RANK[RESTRICTED])


def privacy_max(levels: Iterable[str], default: str = PUBLIC) -> str:
    levels = list(levels)
    return max(levels, key=privacy_rank) if levels else default


@dataclass(frozen=True)
class Evidence:
    """One piece of what the prompt would carry: its privacy level and what it is, for people."""

    level: str
    label: str  # e.g. "manual “WXT530.pdf”", "readings of WXT536-01"


@dataclass(frozen=True)
class Route:
    via: str  # "local", "site" or "none" (no model asked)
    reason: str  # a reason code above
    detail: str  # the sentence shown to the technician
    model: str = ""  # the answering model's name, once known

    @property
    def label(self) -> str:
        """The badge's text ("" when no model answered)."""
        return BADGES.get(self.reason, "")

    def as_dict(self) -> dict:
        return {**asdict(self), "label": self.label}

    def with_model(self, model: str) -> "Route":
        return Route(self.via, self.reason, self.detail, model)

    @property
    def is_fallback(self) -> bool:
        return self.reason in FALLBACKS


def route_choose(
    *, evidence: Iterable[Evidence], local_only: bool, site_configured: bool, site_healthy: bool
) -> Route:
    """The route for one question (see the module's docstring for the order of the rules)."""
    if not site_configured:
        return Route(LOCAL, NO_SITE_SERVER, REASONS[NO_SITE_SERVER])
    if local_only:
        return Route(LOCAL, LOCAL_ONLY, REASONS[LOCAL_ONLY])
    restricted = _unique(e.label for e in evidence if privacy_rank(e.level) >= _RANK[RESTRICTED])
    if restricted:
        shown = ", ".join(restricted[:3]) + (f" and {len(restricted) - 3} more" if len(restricted) > 3 else "")
        return Route(LOCAL, RESTRICTED_EVIDENCE, f"{REASONS[RESTRICTED_EVIDENCE]} ({shown}).")
    if not site_healthy:
        return Route(LOCAL, SITE_DOWN, REASONS[SITE_DOWN])
    return Route(SITE, SITE_OK, REASONS[SITE_OK])


def route_fallback(reason: str, detail: str = "") -> Route:
    """The local route after the site server failed; ``detail`` adds what happened."""
    text = REASONS[reason]
    if detail:
        text = f"{text} ({detail})."
    elif not text.endswith("."):
        text += "."
    return Route(LOCAL, reason, text)


def route_without_model(reason: str) -> Route:
    return Route(NONE, reason, REASONS[reason])


def _unique(items: Iterable[str]) -> list[str]:
    seen: dict[str, None] = {}
    for item in items:
        seen.setdefault(item, None)
    return list(seen)


class SiteHealth:
    """Whether the site server may be tried now: not within ``retry_s`` of its last failure.

    Process-wide and in memory: each web process learns of a failure on its own, by paying one
    timeout at most, and tries the server again ``retry_s`` later.
    """

    def __init__(self, retry_s: float, clock=time.monotonic):
        self.retry_s = retry_s
        self._clock = clock
        self._failed_at: float | None = None
        self._lock = threading.Lock()

    def healthy(self) -> bool:
        with self._lock:
            return self._failed_at is None or self._clock() - self._failed_at >= self.retry_s

    def failed(self) -> None:
        with self._lock:
            self._failed_at = self._clock()

    def ok(self) -> None:
        with self._lock:
            self._failed_at = None
