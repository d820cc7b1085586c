"""What the answer pipeline takes from an app above chat, handed down when Django starts.

chat sits below incidents in the app layers (tests/test_layering.py): an incident links the chats,
citations and feedback it came from, so incidents imports chat. An answer still shows similar past
incidents, with a link only where the asker may open the incident; incidents registers those two
reads here in ``IncidentsConfig.ready`` instead of chat importing upward. Without incidents
installed, answers have no similar incidents.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class IncidentReads:
    # (question, *, asset, device_type) -> [{"id", "title", "cause", "remedy", "score", "url", ...}], best first
    similar: Callable[..., list[dict]]
    # (user, ids) -> the ids among ``ids`` whose incident page ``user`` may open
    visible_ids: Callable[[object, list[int]], set[int]]
    # (question) -> the text ``similar`` embeds for it, so that it can be embedded ahead (a wave of chats)
    search_text: Callable[[str], str] | None = None


_incident_reads: IncidentReads | None = None


def incident_reads_register(reads: IncidentReads) -> None:
    global _incident_reads
    _incident_reads = reads


def incident_reads() -> IncidentReads | None:
    return _incident_reads
