"""The figures of /metrics and the admin's System page, read when they are asked for.

Most come from the database, so they are right whichever process did the work (the web server
answers questions, the Celery worker ingests manuals, the MQTT listener stores telemetry). Two
exist only in the web process that serves the request: the generation queue and its memory.

- Answers: every assistant message by status; its stored timings (``Message.timings``, written
  by ``apps.chat.services``) give the TTFT, tokens/s and duration histograms. They count every
  answer ever stored (cumulative, as Prometheus histograms are), not a recent window.
- Documents by status, and the ingest speed of every document whose last ingest finished
  (``page_count`` over ``indexed_at - started_at``).
- Telemetry: readings timestamped within the last ``RECENT`` seconds and rejected payloads
  received within them, by source; the rejected payloads kept in all. A window keeps the query
  on the timestamp indexes: counting a reading table of months by source takes seconds.
- Alerts by severity, open or resolved.
"""
from __future__ import annotations

import bisect
import re
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from django.db.models import Count, Q
from django.utils import timezone

RECENT = 300  # seconds: the telemetry window

# Histogram bucket upper bounds (the +Inf bucket is added).
TTFT_BUCKETS = (0.1, 0.25, 0.5, 1, 2, 3, 5, 8, 13, 20, 30, 60)  # seconds
TOKENS_PER_SECOND_BUCKETS = (1, 2, 5, 10, 15, 20, 30, 40, 60, 80, 120, 200)
ANSWER_SECONDS_BUCKETS = (0.25, 0.5, 1, 2, 3, 5, 8, 13, 20, 30, 60, 120)
PAGES_PER_SECOND_BUCKETS = (0.1, 0.25, 0.5, 1, 2, 3, 5, 10, 20, 50, 100)

TELEMETRY_SOURCES = ("mqtt", "http", "log")  # always listed, 0 when quiet


@dataclass(frozen=True)
class Histogram:
    bounds: tuple[float, ...]
    cumulative: tuple[int, ...]  # observations <= each bound, then all of them (+Inf)
    total: float  # sum of the observations

    @property
    def count(self) -> int:
        return self.cumulative[-1]

    @property
    def mean(self) -> float | None:
        return self.total / self.count if self.count else None

    def rows(self) -> list[dict]:
        """One row per bucket for a table: its upper bound, how many fell in it, how many up to it."""
        rows, previous = [], 0
        for bound, upto in zip(list(self.bounds) + [None], self.cumulative):
            rows.append({"le": bound, "in_bucket": upto - previous, "cumulative": upto})
            previous = upto
        return rows


def histogram_from(values, bounds) -> Histogram:
    values = sorted(float(v) for v in values)
    cumulative = tuple(bisect.bisect_right(values, bound) for bound in bounds) + (len(values),)
    return Histogram(bounds=tuple(float(b) for b in bounds), cumulative=cumulative, total=sum(values))


@dataclass(frozen=True)
class Answers:
    by_status: dict[str, int]  # every status of Message.Status, 0 included
    ttft: Histogram  # seconds from the question to the first model token
    tokens_per_second: Histogram
    duration: Histogram  # seconds from the question to the finished answer

    def status_rows(self) -> list[dict]:
        from apps.chat.models import Message

        return _status_rows(self.by_status, dict(Message.Status.choices))


@dataclass(frozen=True)
class Ingest:
    documents: int  # documents whose last ingest finished
    pages: int
    seconds: float
    pages_per_second: Histogram  # one observation per document

    @property
    def overall_pages_per_second(self) -> float | None:
        return self.pages / self.seconds if self.seconds > 0 else None


@dataclass(frozen=True)
class Telemetry:
    window_seconds: int
    readings_recent: dict[str, int]  # by source
    rejected_recent: dict[str, int]  # by source
    rejected_kept: int  # every TelemetryRejection row

    @property
    def readings_per_second(self) -> float:
        return sum(self.readings_recent.values()) / self.window_seconds

    def rows(self) -> list[dict]:
        sources = list(self.readings_recent) + [s for s in self.rejected_recent if s not in self.readings_recent]
        return [
            {"source": s, "readings": self.readings_recent.get(s, 0), "rejected": self.rejected_recent.get(s, 0)}
            for s in sources
        ]


@dataclass(frozen=True)
class Memory:
    process_resident_bytes: int | None  # None where /proc is not there
    model_resident_bytes: int  # resident pages of the mapped GGUF files
    model_files: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class SystemFigures:
    answers: Answers
    generation_queue_depth: int
    documents_by_status: dict[str, int]
    ingest: Ingest
    telemetry: Telemetry
    alerts: dict[tuple[str, str], int]  # (severity, "open" | "resolved") -> count
    memory: Memory

    def document_rows(self) -> list[dict]:
        from apps.knowledge.models import Document

        return _status_rows(self.documents_by_status, dict(Document.Status.choices))

    def alert_rows(self) -> list[dict]:
        rows: dict[str, dict] = {}
        for (severity, state), n in self.alerts.items():
            rows.setdefault(severity, {"severity": severity, "open": 0, "resolved": 0})[state] = n
        return list(rows.values())


def _status_rows(by_status: dict[str, int], labels: dict[str, str]) -> list[dict]:
    return [{"status": s, "label": labels.get(s, s), "count": n} for s, n in by_status.items()]


def system_figures() -> SystemFigures:
    return SystemFigures(
        answers=answer_figures(),
        generation_queue_depth=generation_queue_depth(),
        documents_by_status=documents_by_status(),
        ingest=ingest_figures(),
        telemetry=telemetry_figures(),
        alerts=alert_counts(),
        memory=memory_figures(),
    )


def answer_figures() -> Answers:
    from apps.chat.models import Message

    answers = Message.objects.filter(role=Message.Role.ASSISTANT)
    counted = dict(answers.values_list("status").annotate(n=Count("id")).order_by())
    by_status = {status.value: counted.pop(status.value, 0) for status in Message.Status}
    by_status.update(counted)  # a status the code no longer knows still counts
    ttft, rates, durations = [], [], []
    # Only the three numbers leave the database, not the whole JSON of every answer.
    for ttft_ms, rate, total_ms in answers.values_list(
        "timings__ttft_ms", "timings__tokens_per_s", "timings__total_ms"
    ).iterator():
        if _number(ttft_ms):
            ttft.append(ttft_ms / 1000)
        if _number(rate):
            rates.append(rate)
        if _number(total_ms):
            durations.append(total_ms / 1000)
    return Answers(
        by_status=by_status,
        ttft=histogram_from(ttft, TTFT_BUCKETS),
        tokens_per_second=histogram_from(rates, TOKENS_PER_SECOND_BUCKETS),
        duration=histogram_from(durations, ANSWER_SECONDS_BUCKETS),
    )


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def generation_queue_depth() -> int:
    """Answers waiting for the model or generating, in this process (one generates at a time)."""
    from models.llm import generation_queue

    return len(generation_queue)


def documents_by_status() -> dict[str, int]:
    from apps.knowledge.models import Document

    counted = dict(Document.objects.values_list("status").annotate(n=Count("id")).order_by())
    by_status = {status.value: counted.pop(status.value, 0) for status in Document.Status}
    by_status.update(counted)
    return by_status


def ingest_figures() -> Ingest:
    """Every document whose last ingest finished: a re-index in progress, failed or cancelled
    has a ``started_at`` after its ``indexed_at`` and is left out."""
    from apps.knowledge.models import Document

    rows = Document.objects.filter(
        started_at__isnull=False, indexed_at__isnull=False, page_count__gt=0
    ).values_list("page_count", "started_at", "indexed_at")
    pages, seconds, rates = 0, 0.0, []
    for page_count, started, indexed in rows:
        took = (indexed - started).total_seconds()
        if took <= 0:
            continue
        pages += page_count
        seconds += took
        rates.append(page_count / took)
    return Ingest(
        documents=len(rates), pages=pages, seconds=seconds,
        pages_per_second=histogram_from(rates, PAGES_PER_SECOND_BUCKETS),
    )


def telemetry_figures(*, window: int = RECENT) -> Telemetry:
    from apps.assets.models import Reading, TelemetryRejection

    since = timezone.now() - timedelta(seconds=window)

    def by_source(queryset) -> dict[str, int]:
        counted = dict(queryset.values_list("source").annotate(n=Count("id")).order_by())
        return {source: counted.pop(source, 0) for source in TELEMETRY_SOURCES} | counted

    return Telemetry(
        window_seconds=window,
        readings_recent=by_source(Reading.objects.filter(ts__gte=since, ts__lte=timezone.now())),
        rejected_recent=by_source(TelemetryRejection.objects.filter(received__gte=since)),
        rejected_kept=TelemetryRejection.objects.count(),
    )


def alert_counts() -> dict[tuple[str, str], int]:
    from apps.assets.models import Alert
    from diagnostics.findings import SEVERITY_RANK

    rows = Alert.objects.values("severity").annotate(
        open=Count("id", filter=Q(resolved__isnull=True)), resolved=Count("id", filter=Q(resolved__isnull=False))
    ).order_by()
    counts = {}
    for row in sorted(rows, key=lambda r: (SEVERITY_RANK.get(r["severity"], 9), r["severity"])):
        counts[(row["severity"], "open")] = row["open"]
        counts[(row["severity"], "resolved")] = row["resolved"]
    return counts


_MAPPING = re.compile(r"^[0-9a-f]+-[0-9a-f]+ \S+ \S+ \S+ \S+\s*(?P<path>.*)$")


def memory_figures(proc: Path = Path("/proc/self")) -> Memory:
    """This process's resident memory, and the part of it that is language-model weights.

    llama.cpp maps the GGUF file into memory (its default, which ``models/llm/llamacpp.py``
    keeps): the resident pages of those mappings are the weights in RAM. 0 when no local model
    is loaded here (the ``openai`` backend, the narrative off, or no question asked yet).
    """
    process = None
    try:
        for line in (proc / "status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                process = int(line.split()[1]) * 1024
                break
    except OSError:
        return Memory(process_resident_bytes=None, model_resident_bytes=0)
    model, files, in_model = 0, [], False
    try:
        with open(proc / "smaps", encoding="utf-8", errors="replace") as smaps:
            for line in smaps:
                mapping = _MAPPING.match(line)
                if mapping:
                    path = mapping.group("path").strip()
                    in_model = path.lower().endswith(".gguf")
                    if in_model and Path(path).name not in files:
                        files.append(Path(path).name)
                elif in_model and line.startswith("Rss:"):
                    model += int(line.split()[1]) * 1024
    except OSError:
        pass
    return Memory(process_resident_bytes=process, model_resident_bytes=model, model_files=files)
