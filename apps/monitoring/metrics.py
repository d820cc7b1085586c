"""The Prometheus exposition of ``apps.monitoring.selectors``: a collector run at every scrape.

Nothing is counted in memory between scrapes (the worker and the telemetry listener are other
processes); each scrape reads the figures and turns them into metric families. The standard
``process_*`` metrics of the web process come from prometheus_client's ProcessCollector.
"""
from __future__ import annotations

from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.exposition import choose_encoder
from prometheus_client.utils import floatToGoString

from apps.monitoring.selectors import Histogram, SystemFigures, system_figures


class NanoSentriCollector:
    def __init__(self, figures=system_figures):
        self._figures = figures

    def collect(self):
        yield from families(self._figures())


def families(f: SystemFigures):
    answers = GaugeMetricFamily(
        "nanosentri_answers", "Answers stored, by status (pending and streaming are in flight)", labels=["status"]
    )
    for status, n in f.answers.by_status.items():
        answers.add_metric([status], n)
    yield answers
    yield _histogram(
        "nanosentri_answer_ttft_seconds",
        "Time from the question to the first model token, over every stored answer that generated one",
        f.answers.ttft,
    )
    yield _histogram(
        "nanosentri_answer_tokens_per_second",
        "Generation speed after the first token, over every stored answer of two or more tokens",
        f.answers.tokens_per_second,
    )
    yield _histogram(
        "nanosentri_answer_duration_seconds",
        "Time from the question to the finished answer, over every stored answer",
        f.answers.duration,
    )
    yield GaugeMetricFamily(
        "nanosentri_generation_queue_depth",
        "Answers waiting for the language model or generating, in the web process serving this scrape",
        value=f.generation_queue_depth,
    )

    documents = GaugeMetricFamily("nanosentri_documents", "Uploaded documents, by status", labels=["status"])
    for status, n in f.documents_by_status.items():
        documents.add_metric([status], n)
    yield documents
    yield GaugeMetricFamily(
        "nanosentri_ingested_pages",
        "Pages of the documents whose last ingest finished", value=f.ingest.pages,
    )
    yield GaugeMetricFamily(
        "nanosentri_ingest_seconds",
        "Time the worker took to ingest those documents (started to indexed)", value=f.ingest.seconds,
    )
    yield _histogram(
        "nanosentri_ingest_pages_per_second",
        "Ingest speed of each document whose last ingest finished (pages over started-to-indexed time)",
        f.ingest.pages_per_second,
    )

    window = f.telemetry.window_seconds
    readings = GaugeMetricFamily(
        "nanosentri_telemetry_readings_recent",
        f"Readings stored with a timestamp within the last {window} s, by source", labels=["source"],
    )
    for source, n in f.telemetry.readings_recent.items():
        readings.add_metric([source], n)
    yield readings
    rejected = GaugeMetricFamily(
        "nanosentri_telemetry_rejected_recent",
        f"Telemetry payloads rejected within the last {window} s, by source", labels=["source"],
    )
    for source, n in f.telemetry.rejected_recent.items():
        rejected.add_metric([source], n)
    yield rejected
    yield GaugeMetricFamily(
        "nanosentri_telemetry_rejected_kept",
        "Rejected telemetry payloads kept for the admin (all time, unless deleted)",
        value=f.telemetry.rejected_kept,
    )

    alerts = GaugeMetricFamily("nanosentri_alerts", "Alerts, by severity and state", labels=["severity", "state"])
    for (severity, state), n in f.alerts.items():
        alerts.add_metric([severity, state], n)
    yield alerts

    yield GaugeMetricFamily(
        "nanosentri_model_resident_memory_bytes",
        "Resident memory of the language-model weights (mapped GGUF files) in the web process",
        value=f.memory.model_resident_bytes,
    )


def _histogram(name: str, documentation: str, h: Histogram) -> HistogramMetricFamily:
    buckets = [(floatToGoString(bound), n) for bound, n in zip(h.bounds, h.cumulative)]
    buckets.append(("+Inf", h.count))
    return HistogramMetricFamily(name, documentation, buckets=buckets, sum_value=h.total)


registry = CollectorRegistry(auto_describe=False)  # nothing is read until a scrape
registry.register(NanoSentriCollector())
ProcessCollector(registry=registry)


def metrics_exposition(accept: str = "") -> tuple[bytes, str]:
    """The text of a scrape and its content type (OpenMetrics when the scraper asks for it)."""
    encoder, content_type = choose_encoder(accept)
    return encoder(registry), content_type
