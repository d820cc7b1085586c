"""/metrics (Prometheus text, scraped with the token or by an admin) and the admin's System page."""
from __future__ import annotations

import mmap
from datetime import timedelta

import pytest
from django.utils import timezone
from prometheus_client.openmetrics.parser import text_string_to_metric_families as openmetrics_families
from prometheus_client.parser import text_string_to_metric_families

from apps.assets.models import Alert, Asset, Reading, Sensor, TelemetryRejection
from apps.chat.models import Conversation, Message
from apps.knowledge.models import Document
from apps.monitoring.selectors import memory_figures

# The figures come from JSON keys of the answers' timings, read differently by SQLite and PostgreSQL.
pytestmark = [pytest.mark.database, pytest.mark.django_db]

TOKEN = "scrape-token-for-tests-0123456789"


@pytest.fixture
def token(settings):
    settings.NANOSENTRI_METRICS_TOKEN = TOKEN
    return TOKEN


def _scrape(client, token=TOKEN) -> dict:
    response = client.get("/metrics", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain; version=0.0.4")
    return {family.name: family for family in text_string_to_metric_families(response.content.decode())}


def _value(families: dict, family: str, sample: str | None = None, **labels) -> float:
    matches = [
        s.value for s in families[family].samples
        if s.name == (sample or family) and all(s.labels.get(k) == v for k, v in labels.items())
    ]
    assert len(matches) == 1, f"{sample or family} {labels}: {matches}"
    return matches[0]


def _answer(conversation, status, **timings):
    return Message.objects.create(conversation=conversation, role=Message.Role.ASSISTANT, content="...",
                                  status=status, timings=timings)


def _document(n: int, status, pages=None, took: float | None = None) -> Document:
    started = timezone.now() - timedelta(hours=1)
    return Document.objects.create(
        original_name=f"manual-{n}.pdf", stored_path=f"manual-{n}.pdf", extension=".pdf", content_hash=f"{n:064d}",
        status=status, page_count=pages, started_at=started if took is not None else None,
        indexed_at=started + timedelta(seconds=took) if took is not None else None,
    )


class TestScrapeAccess:
    def test_it_refuses_an_anonymous_scrape_with_401(self, client, token):
        response = client.get("/metrics")

        assert response.status_code == 401
        assert response["WWW-Authenticate"] == 'Bearer realm="metrics"'
        assert b"nanosentri_" not in response.content

    def test_it_refuses_a_wrong_token(self, client, token):
        response = client.get("/metrics", headers={"Authorization": "Bearer not-the-token"})

        assert response.status_code == 401

    def test_it_refuses_every_bearer_token_when_none_is_set(self, client, settings):
        settings.NANOSENTRI_METRICS_TOKEN = ""

        assert client.get("/metrics", headers={"Authorization": "Bearer "}).status_code == 401
        assert client.get("/metrics", headers={"Authorization": "Bearer x"}).status_code == 401

    def test_it_refuses_a_technician_and_a_supervisor_with_403(self, client, token, technician, supervisor):
        for user in (technician, supervisor):
            client.force_login(user)

            assert client.get("/metrics").status_code == 403

    def test_it_lets_a_logged_in_admin_scrape_without_a_token(self, client, admin_user, settings):
        settings.NANOSENTRI_METRICS_TOKEN = ""
        client.force_login(admin_user)

        response = client.get("/metrics")

        assert response.status_code == 200
        assert b"# TYPE nanosentri_answers gauge" in response.content

    def test_it_is_not_redirected_to_https_so_a_local_scraper_can_reach_it(self, client, token, settings):
        settings.SECURE_SSL_REDIRECT = True

        assert client.get("/metrics", headers={"Authorization": f"Bearer {token}"}).status_code == 200
        assert client.get("/system/").status_code == 301  # the pages still are

    def test_it_only_answers_get(self, client, token):
        response = client.post("/metrics", headers={"Authorization": f"Bearer {token}"})

        assert response.status_code == 405


class TestScrapedFigures:
    def test_it_counts_answers_by_status_and_builds_the_timing_histograms(self, client, token, technician):
        conversation = Conversation.objects.create(user=technician)
        Message.objects.create(conversation=conversation, role=Message.Role.USER, content="Why?")  # not an answer
        _answer(conversation, Message.Status.COMPLETED, ttft_ms=400.0, tokens_per_s=12.0, total_ms=3000.0)
        _answer(conversation, Message.Status.COMPLETED, ttft_ms=2500.0, tokens_per_s=35.5, total_ms=9000.0)
        # Refused before the model: no TTFT nor speed, but a duration.
        _answer(conversation, Message.Status.NOT_COVERED, ttft_ms=None, tokens_per_s=None, total_ms=200.0)

        families = _scrape(client)

        assert _value(families, "nanosentri_answers", status="completed") == 2
        assert _value(families, "nanosentri_answers", status="not_covered") == 1
        assert _value(families, "nanosentri_answers", status="failed") == 0
        ttft = "nanosentri_answer_ttft_seconds"
        assert families[ttft].type == "histogram"
        assert _value(families, ttft, f"{ttft}_bucket", le="0.25") == 0
        assert _value(families, ttft, f"{ttft}_bucket", le="0.5") == 1
        assert _value(families, ttft, f"{ttft}_bucket", le="2.0") == 1
        assert _value(families, ttft, f"{ttft}_bucket", le="3.0") == 2
        assert _value(families, ttft, f"{ttft}_bucket", le="+Inf") == 2
        assert _value(families, ttft, f"{ttft}_count") == 2
        assert _value(families, ttft, f"{ttft}_sum") == pytest.approx(2.9)
        tps = "nanosentri_answer_tokens_per_second"
        assert _value(families, tps, f"{tps}_bucket", le="10.0") == 0
        assert _value(families, tps, f"{tps}_bucket", le="15.0") == 1
        assert _value(families, tps, f"{tps}_bucket", le="40.0") == 2
        assert _value(families, tps, f"{tps}_sum") == pytest.approx(47.5)
        duration = "nanosentri_answer_duration_seconds"
        assert _value(families, duration, f"{duration}_count") == 3
        assert _value(families, duration, f"{duration}_bucket", le="0.25") == 1
        assert _value(families, duration, f"{duration}_sum") == pytest.approx(12.2)

    def test_it_counts_documents_by_status_and_the_ingest_speed(self, client, token):
        _document(1, Document.Status.INDEXED, pages=10, took=5)  # 2 pages/s
        _document(2, Document.Status.SUPERSEDED, pages=30, took=10)  # 3 pages/s, ingested before it was replaced
        _document(3, Document.Status.FAILED, pages=None)
        _document(4, Document.Status.QUEUED)
        # Re-indexing now: started after its last indexed_at, so its last ingest has not finished.
        reindexing = _document(5, Document.Status.EMBEDDING, pages=50, took=60)
        Document.objects.filter(pk=reindexing.pk).update(started_at=timezone.now())

        families = _scrape(client)

        assert _value(families, "nanosentri_documents", status="indexed") == 1
        assert _value(families, "nanosentri_documents", status="superseded") == 1
        assert _value(families, "nanosentri_documents", status="failed") == 1
        assert _value(families, "nanosentri_documents", status="queued") == 1
        assert _value(families, "nanosentri_documents", status="embedding") == 1
        assert _value(families, "nanosentri_documents", status="parsing") == 0
        assert _value(families, "nanosentri_ingested_pages") == 40
        assert _value(families, "nanosentri_ingest_seconds") == pytest.approx(15)
        speed = "nanosentri_ingest_pages_per_second"
        assert _value(families, speed, f"{speed}_bucket", le="1.0") == 0
        assert _value(families, speed, f"{speed}_bucket", le="2.0") == 1
        assert _value(families, speed, f"{speed}_bucket", le="3.0") == 2
        assert _value(families, speed, f"{speed}_count") == 2
        assert _value(families, speed, f"{speed}_sum") == pytest.approx(5)

    def test_it_counts_recent_telemetry_rejections_and_alerts(self, client, token):
        asset = Asset.objects.create(asset_id="WXT536-01", name="Mast 1")
        sensor = Sensor.objects.create(asset=asset, key="V_IN")
        now = timezone.now()
        Reading.objects.bulk_create(
            [Reading(sensor=sensor, ts=now - timedelta(seconds=10 + i), value=24.0, source="mqtt") for i in range(3)]
            + [Reading(sensor=sensor, ts=now - timedelta(seconds=30), value=24.1, source="http")]
            + [Reading(sensor=sensor, ts=now - timedelta(hours=2), value=23.0, source="mqtt")]  # outside the window
        )
        for source in ("mqtt", "mqtt", "http"):
            TelemetryRejection.objects.create(source=source, reason="malformed payload: not JSON")
        old = TelemetryRejection.objects.create(source="mqtt", reason="unknown asset: X")
        TelemetryRejection.objects.filter(pk=old.pk).update(received=now - timedelta(days=1))
        Alert.objects.create(asset=asset, rule="heater_off", severity="high", message="Heater off")
        Alert.objects.create(asset=asset, rule="low_supply", severity="high", message="Low supply", resolved=now)
        Alert.objects.create(asset=asset, rule="no_supply", severity="critical", message="No supply")

        families = _scrape(client)

        assert _value(families, "nanosentri_telemetry_readings_recent", source="mqtt") == 3
        assert _value(families, "nanosentri_telemetry_readings_recent", source="http") == 1
        assert _value(families, "nanosentri_telemetry_readings_recent", source="log") == 0
        assert _value(families, "nanosentri_telemetry_rejected_recent", source="mqtt") == 2
        assert _value(families, "nanosentri_telemetry_rejected_recent", source="http") == 1
        assert _value(families, "nanosentri_telemetry_rejected_kept") == 4
        assert _value(families, "nanosentri_alerts", severity="high", state="open") == 1
        assert _value(families, "nanosentri_alerts", severity="high", state="resolved") == 1
        assert _value(families, "nanosentri_alerts", severity="critical", state="open") == 1
        assert _value(families, "nanosentri_alerts", severity="critical", state="resolved") == 0

    def test_it_reports_the_generation_queue_of_this_process(self, client, token):
        from models.llm import generation_queue

        tickets = [generation_queue.join() for _ in range(3)]
        try:
            families = _scrape(client)
        finally:
            for ticket in tickets:
                generation_queue.leave(ticket)

        assert _value(families, "nanosentri_generation_queue_depth") == 3
        assert _value(_scrape(client), "nanosentri_generation_queue_depth") == 0

    def test_it_reports_memory_of_the_web_process(self, client, token):
        families = _scrape(client)

        assert "nanosentri_model_resident_memory_bytes" in families
        assert _value(families, "process_resident_memory_bytes") > 10 * 1024 * 1024  # Python + Django at least

    def test_it_speaks_openmetrics_to_a_scraper_that_asks(self, client, token):
        response = client.get("/metrics", headers={
            "Authorization": f"Bearer {token}", "Accept": "application/openmetrics-text; version=1.0.0",
        })

        assert response["Content-Type"].startswith("application/openmetrics-text")
        text = response.content.decode()
        assert text.endswith("# EOF\n")
        names = {family.name for family in openmetrics_families(text)}
        assert {"nanosentri_answers", "nanosentri_answer_ttft_seconds", "nanosentri_documents"} <= names


class TestModelMemory:
    def test_it_counts_the_resident_pages_of_mapped_gguf_files(self, tmp_path):
        if not memory_figures().process_resident_bytes:
            pytest.skip("no /proc/self on this platform")
        weights = tmp_path / "tiny-model.Q4_K_M.gguf"
        weights.write_bytes(b"\x01" * (4 * 1024 * 1024))
        with open(weights, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
            before = memory_figures()
            touched = sum(mapped[i] for i in range(0, len(mapped), mmap.PAGESIZE))  # fault every page in
            after = memory_figures()

        assert touched == len(range(0, 4 * 1024 * 1024, mmap.PAGESIZE))
        assert "tiny-model.Q4_K_M.gguf" in after.model_files
        assert after.model_resident_bytes - before.model_resident_bytes >= 4 * 1024 * 1024 - 64 * 1024
        assert after.process_resident_bytes >= after.model_resident_bytes

    def test_it_reads_the_kernel_files(self, tmp_path):
        (tmp_path / "status").write_text("Name:\tdaphne\nVmRSS:\t  204800 kB\nThreads:\t9\n")
        (tmp_path / "smaps").write_text(
            "7f0000000000-7f0000100000 r--p 00000000 08:01 42    /var/models/SmolLM2-135M.gguf\n"
            "Size:               1024 kB\nRss:                 512 kB\nPss:                 512 kB\n"
            "7f0000100000-7f0000200000 rw-p 00000000 00:00 0 \n"
            "Size:               1024 kB\nRss:                1024 kB\n"
            "7f0000200000-7f0000300000 r--p 00100000 08:01 42    /var/models/SmolLM2-135M.gguf\n"
            "Rss:                 256 kB\n"
            "7f0000300000-7f0000400000 r-xp 00000000 08:01 7     /usr/lib/libtorch_cpu.so\n"
            "Rss:                2048 kB\n"
        )

        memory = memory_figures(tmp_path)

        assert memory.process_resident_bytes == 204800 * 1024
        assert memory.model_resident_bytes == (512 + 256) * 1024
        assert memory.model_files == ["SmolLM2-135M.gguf"]


class TestSystemPage:
    def test_it_shows_the_figures_to_an_admin(self, client, admin_user, technician):
        conversation = Conversation.objects.create(user=technician)
        _answer(conversation, Message.Status.COMPLETED, ttft_ms=800.0, tokens_per_s=20.0, total_ms=2000.0)
        _answer(conversation, Message.Status.COMPLETED, ttft_ms=900.0, tokens_per_s=22.0, total_ms=2100.0)
        _answer(conversation, Message.Status.NOT_COVERED, total_ms=150.0)
        _document(1, Document.Status.INDEXED, pages=12, took=4)
        TelemetryRejection.objects.create(source="http", reason="unknown asset: X")
        client.force_login(admin_user)

        response = client.get("/system/")

        assert response.status_code == 200
        html = response.content.decode()
        assert '<tr data-status="completed"><td>Completed</td><td class="num">2</td></tr>' in html
        assert '<tr data-status="not_covered"><td>Not covered by the manuals</td><td class="num">1</td></tr>' in html
        assert '<tr data-status="indexed"><td>Indexed</td><td class="num">1</td></tr>' in html
        assert '<p class="dash-card-value" data-figure="pages-per-second">3.00</p>' in html
        assert '<tr data-source="http"><td>http</td><td class="num">0</td><td class="num">1</td></tr>' in html
        assert '<strong data-figure="rejected-kept">1</strong>' in html
        assert "2 observations, mean 0.85 s" in html  # the TTFT histogram
        assert 'aria-current="page">System</a>' in html

    @pytest.mark.parametrize("user_fixture", ["technician", "supervisor", "outsider"])
    def test_it_is_forbidden_to_everyone_else(self, client, request, user_fixture):
        client.force_login(request.getfixturevalue(user_fixture))

        assert client.get("/system/").status_code == 403

    def test_it_sends_an_anonymous_visitor_to_the_login_page(self, client):
        response = client.get("/system/")

        assert response.status_code == 302
        assert response["Location"].startswith("/login/")
