"""The supervisor dashboard: its metrics with known data, its SVG charts, the page and who sees it.

Incidents are made through the services and then placed in time with a queryset ``update()``
(``created`` is auto_now_add). The time zone is Pacific/Auckland (UTC+13 in summer), so a
week that starts at local midnight on Monday starts on Sunday in UTC: the week and period
boundaries are tested away from UTC, on SQLite and on PostgreSQL alike.
"""
from __future__ import annotations

import re
from datetime import date, datetime, timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from apps.assets.models import Asset, Site
from apps.chat.models import AnswerFeedback, Conversation, Message
from apps.incidents import charts
from apps.incidents import dashboard as dash
from apps.incidents.models import Incident
from apps.incidents.services import incident_create

pytestmark = pytest.mark.database

HOSTILE = "<script>alert(1)</script>"
TZ = "Pacific/Auckland"
# 12 weeks: Monday 6 January to Sunday 30 March 2025 (New Zealand summer time, UTC+13).
PERIOD = dash.Scope(start=date(2025, 1, 6), end=date(2025, 3, 30))


@pytest.fixture(autouse=True)
def _tz(settings):
    settings.TIME_ZONE = TZ


def at(*args) -> datetime:
    """A local (Auckland) time."""
    return timezone.make_aware(datetime(*args))


def make(reporter, *, created, priority="normal", asset=None, status="open", resolved_at=None, cause="",
         downtime=None, kind=""):
    fields = {"title": "Heater fault", "symptom": "Reads -40 °C", "priority": priority, "asset": asset,
              "status": status}
    if status in ("resolved", "closed") or cause:
        fields.update(cause=cause or "Loose connector", remedy="Reseated it")
    if downtime:
        fields.update(downtime_start=downtime[0], downtime_end=downtime[1], downtime_kind=kind)
    incident = incident_create(reporter=reporter, **fields)
    Incident.objects.filter(pk=incident.pk).update(created=created, resolved_at=resolved_at)
    incident.refresh_from_db()
    return incident


@pytest.fixture
def site(db):
    return Site.objects.create(name="North yard")


@pytest.fixture
def station(db, site):
    return Asset.objects.create(asset_id="WXT536-01", name="Roof station", site=site)


@pytest.fixture
def charger(db):
    return Asset.objects.create(asset_id="EVSE-02", name="Charger")


def feedback(user, rating, *, created, reviewed=False, conversation=None, incident=None):
    conversation = conversation or Conversation.objects.create(user=user)
    message = Message.objects.create(conversation=conversation, role=Message.Role.ASSISTANT, content="Check")
    fb = AnswerFeedback.objects.create(message=message, user=user, rating=rating, incident=incident,
                                       reviewed_at=timezone.now() if reviewed else None)
    AnswerFeedback.objects.filter(pk=fb.pk).update(created=created)
    return fb


# --- metrics -----------------------------------------------------------------------------------


class TestScope:
    def test_it_defaults_to_twelve_weeks_from_a_monday(self):
        scope = dash.default_scope(today=date(2025, 3, 27))  # a Thursday
        assert scope.start == date(2025, 1, 6) and scope.start.weekday() == 0
        assert scope.end == date(2025, 3, 27)

    def test_it_spans_whole_local_days(self, settings):
        assert PERIOD.since == at(2025, 1, 6)
        assert PERIOD.until == at(2025, 3, 31)
        assert PERIOD.since.utcoffset() == timedelta(hours=13)


class TestPerWeek:
    def test_it_counts_by_week_and_priority_with_empty_weeks(self, technician, station):
        make(technician, created=at(2025, 1, 6, 0, 30), priority="critical")  # Sunday 11:30 UTC
        make(technician, created=at(2025, 1, 12, 23, 59), priority="critical")
        make(technician, created=at(2025, 1, 13, 0, 1), priority="low")  # the next week
        make(technician, created=at(2025, 3, 30, 22, 0), priority="high")  # last evening of the period
        make(technician, created=at(2025, 1, 5, 23, 0))  # before the period
        make(technician, created=at(2025, 3, 31, 0, 0))  # after it

        result = dash.incidents_per_week(PERIOD)

        assert len(result["weeks"]) == 12
        assert result["weeks"][0] == date(2025, 1, 6) and result["weeks"][-1] == date(2025, 3, 24)
        assert result["series"]["critical"] == [2] + [0] * 11
        assert result["series"]["low"] == [0, 1] + [0] * 10
        assert result["series"]["high"] == [0] * 11 + [1]
        assert result["series"]["normal"] == [0] * 12
        assert result["total"] == 4

    def test_it_applies_asset_and_site(self, technician, station, charger, site):
        make(technician, created=at(2025, 2, 3, 9), asset=station)
        make(technician, created=at(2025, 2, 3, 9), asset=charger)
        make(technician, created=at(2025, 2, 3, 9))
        assert dash.incidents_per_week(dash.Scope(PERIOD.start, PERIOD.end, asset=charger))["total"] == 1
        assert dash.incidents_per_week(dash.Scope(PERIOD.start, PERIOD.end, site=site))["total"] == 1
        assert dash.incidents_per_week(PERIOD)["total"] == 3

    def test_a_period_not_starting_on_monday_still_has_its_first_week(self, technician):
        make(technician, created=at(2025, 1, 9, 9))
        result = dash.incidents_per_week(dash.Scope(date(2025, 1, 8), date(2025, 1, 20)))
        assert result["weeks"] == [date(2025, 1, 6), date(2025, 1, 13), date(2025, 1, 20)]
        assert result["series"]["normal"] == [1, 0, 0]


class TestRepairAndDowntime:
    def test_it_averages_time_to_repair_per_asset(self, technician, station, charger):
        done = {"status": "resolved"}
        make(technician, created=at(2025, 2, 1, 8), resolved_at=at(2025, 2, 1, 10), asset=station, **done)
        closed = {"status": "closed", "asset": station}
        make(technician, created=at(2025, 2, 2, 8), resolved_at=at(2025, 2, 2, 14), **closed)
        make(technician, created=at(2025, 2, 3, 8), resolved_at=at(2025, 2, 5, 8), asset=charger, **done)
        # Resolved outside the period, or still open: not counted.
        make(technician, created=at(2024, 12, 1), resolved_at=at(2025, 1, 2), asset=station, **done)
        make(technician, created=at(2025, 2, 3, 8), asset=station)
        # Created before the period but resolved in it: counted, with its whole repair time.
        make(technician, created=at(2024, 12, 31, 12), status="resolved", resolved_at=at(2025, 1, 6, 12))

        rows = dash.mttr_per_asset(PERIOD)

        assert [(r["asset"], r["mttr"], r["count"]) for r in rows] == [
            ("No asset", timedelta(days=6), 1),
            ("EVSE-02", timedelta(days=2), 1),
            ("WXT536-01", timedelta(hours=4), 2),
        ]
        overall = dash.mttr_overall(PERIOD)
        assert overall["count"] == 4
        assert overall["mttr"] == (timedelta(hours=2 + 6) + timedelta(days=2 + 6)) / 4

    def test_no_resolved_incident_means_no_mttr(self, technician):
        make(technician, created=at(2025, 2, 3, 8))
        assert dash.mttr_per_asset(PERIOD) == []
        assert dash.mttr_overall(PERIOD) == {"mttr": None, "count": 0}

    def test_it_sums_downtime_by_kind_clipped_to_the_period(self, technician, station, charger):
        make(technician, created=at(2025, 2, 1), asset=station, kind="unplanned",
             downtime=(at(2025, 2, 1, 8), at(2025, 2, 1, 11)))
        make(technician, created=at(2025, 2, 2), asset=station, kind="planned",
             downtime=(at(2025, 2, 2, 8), at(2025, 2, 2, 9, 30)))
        make(technician, created=at(2025, 2, 3), asset=charger, kind="unplanned",
             downtime=(at(2025, 2, 3, 8), at(2025, 2, 3, 8, 45)))
        # Started the evening before the period: only the part inside it counts (2 h).
        make(technician, created=at(2025, 1, 5), asset=charger,
             downtime=(at(2025, 1, 5, 22), at(2025, 1, 6, 2)))
        # Entirely outside, or open-ended: not counted.
        make(technician, created=at(2025, 4, 2), asset=station, kind="unplanned",
             downtime=(at(2025, 4, 2, 8), at(2025, 4, 2, 9)))
        make(technician, created=at(2025, 2, 4), asset=station, kind="unplanned",
             downtime=(at(2025, 2, 4, 8), None))

        rows = dash.downtime_per_asset(PERIOD)

        assert [r["asset"] for r in rows] == ["WXT536-01", "EVSE-02"]
        assert rows[0]["total"] == timedelta(hours=4, minutes=30)
        assert rows[0]["by_kind"] == {
            "unplanned": timedelta(hours=3), "planned": timedelta(hours=1, minutes=30), "": timedelta(0),
        }
        assert rows[1]["by_kind"] == {"unplanned": timedelta(minutes=45), "planned": timedelta(0),
                                      "": timedelta(hours=2)}
        total = dash.downtime_total(PERIOD)
        assert total["total"] == timedelta(hours=7, minutes=15)
        assert total["by_kind"]["unplanned"] == timedelta(hours=3, minutes=45)


class TestCauses:
    def test_it_groups_the_same_cause_written_differently(self, technician):
        for text in ["Loose connector", "loose connector ", "  LOOSE   connector", "Loose\tconnector"]:
            make(technician, created=at(2025, 2, 1), cause=text)
        make(technician, created=at(2025, 2, 1), cause="Water ingress")
        make(technician, created=at(2025, 2, 1), cause="water ingress")
        make(technician, created=at(2025, 2, 1), cause="Firmware bug")
        make(technician, created=at(2024, 2, 1), cause="Firmware bug")  # outside the period
        make(technician, created=at(2025, 2, 1))  # no cause yet

        result = dash.top_causes(PERIOD)

        assert [(c["cause"].casefold(), c["count"]) for c in result["causes"]] == [
            ("loose connector", 4), ("water ingress", 2), ("firmware bug", 1),
        ]
        assert result["other_causes"] == 0

    def test_it_keeps_the_top_eight(self, technician):
        for i in range(10):
            for _ in range(10 - i):
                make(technician, created=at(2025, 2, 1), cause=f"Cause {i}")
        result = dash.top_causes(PERIOD)
        assert [c["cause"] for c in result["causes"]] == [f"Cause {i}" for i in range(8)]
        assert (result["other_causes"], result["other_count"]) == (2, 2 + 1)


class TestOpenByAge:
    def test_it_buckets_open_incidents_by_age_and_priority(self, technician, station):
        now = at(2025, 3, 1, 12)
        make(technician, created=now - timedelta(hours=2), priority="critical")
        make(technician, created=now - timedelta(days=3), priority="high", status="in_progress")
        make(technician, created=now - timedelta(days=10), priority="normal")
        # Older than the period: the backlog is shown whatever the period.
        make(technician, created=now - timedelta(days=60), priority="low", asset=station)
        make(technician, created=now - timedelta(days=3), status="resolved", resolved_at=now)  # not open

        result = dash.open_by_age(PERIOD, now=now)

        assert [label for _, label in result["buckets"]] == ["< 1 day", "1–7 days", "1–4 weeks", "> 4 weeks"]
        assert result["series"]["critical"] == [1, 0, 0, 0]
        assert result["series"]["high"] == [0, 1, 0, 0]
        assert result["series"]["normal"] == [0, 0, 1, 0]
        assert result["series"]["low"] == [0, 0, 0, 1]
        assert result["total"] == 4
        assert dash.open_by_age(dash.Scope(PERIOD.start, PERIOD.end, asset=station), now=now)["total"] == 1


class TestFeedback:
    def test_it_counts_thumbs_in_the_period_and_the_review_backlog(self, technician, supervisor):
        feedback(technician, 1, created=at(2025, 2, 1))
        feedback(technician, 1, created=at(2025, 2, 2))
        feedback(supervisor, 1, created=at(2025, 2, 3))
        feedback(technician, -1, created=at(2025, 2, 4))
        feedback(technician, -1, created=at(2025, 2, 5), reviewed=True)
        feedback(technician, -1, created=at(2024, 2, 5))  # before the period: awaiting review all the same
        feedback(technician, 1, created=at(2024, 2, 5))

        result = dash.feedback_ratio(PERIOD)

        assert result == {"up": 3, "down": 2, "total": 5, "up_share": 0.6, "awaiting_review": 2}

    def test_an_asset_narrows_feedback_to_its_incidents_conversations(self, technician, station, charger):
        linked = Conversation.objects.create(user=technician)
        incident = make(technician, created=at(2025, 2, 1), asset=station)
        incident.conversations.add(linked)
        other = make(technician, created=at(2025, 2, 1), asset=station)
        other.conversations.add(linked)  # linked twice: still counted once
        feedback(technician, -1, created=at(2025, 2, 1), conversation=linked)
        feedback(technician, 1, created=at(2025, 2, 1), incident=incident)
        feedback(technician, 1, created=at(2025, 2, 1))  # unrelated

        result = dash.feedback_ratio(dash.Scope(PERIOD.start, PERIOD.end, asset=station))
        assert (result["up"], result["down"], result["awaiting_review"]) == (1, 1, 1)
        assert dash.feedback_ratio(dash.Scope(PERIOD.start, PERIOD.end, asset=charger))["total"] == 0

    def test_no_feedback_has_no_ratio(self, db):
        assert dash.feedback_ratio(PERIOD)["up_share"] is None


# --- charts ------------------------------------------------------------------------------------


def svg_of(html: str) -> str:
    match = re.search(r"<svg class=\"dash-svg\".*?</svg>", html, re.S)
    assert match, html
    return match.group(0)


class TestCharts:
    def test_it_draws_a_bar_per_category_with_labels_tooltips_and_a_table(self):
        html = charts.bar_chart(
            chart_id="c", title="Top causes", category_header="Cause",
            categories=["Loose connector", "Water ingress"],
            series=[charts.Series("n", "Incidents", [4, 2])],
        )
        svg = svg_of(html)
        assert 'role="img"' in svg
        assert 'aria-label="Top causes: bar chart, 2 bars; highest: Loose connector, 4.' in svg
        assert len(re.findall(r"<rect [^>]*fill=", svg)) == 2
        assert "<title>Loose connector: 4</title>" in svg
        assert ">Water ingress</text>" in svg
        assert "<details class=\"dash-data\">" in html and "<th scope=\"row\">Water ingress</th>" in html
        assert "dash-legend" not in html  # one series: no legend

    def test_stacked_series_get_a_legend_and_skip_empty_series(self):
        html = charts.column_chart(
            chart_id="w", title="Per week", category_header="Week", categories=["W1", "W2", "W3"],
            series=[charts.Series("critical", "Critical", [1, 0, 2], "#7a1a12"),
                    charts.Series("low", "Low", [0, 0, 0], "#8fb3d9"),
                    charts.Series("high", "High", [3, 0, 0], "#d1432f")],
        )
        svg = svg_of(html)
        assert len(re.findall(r"<rect [^>]*fill=", svg)) == 3  # W2 is empty: a gap
        assert "<title>W1 — High: 3</title>" in svg and "<title>W2: 0</title>" in svg
        legend = re.search(r'<ul class="dash-legend".*?</ul>', html, re.S).group(0)
        assert "Critical" in legend and "High" in legend and "Low" not in legend

    def test_bars_are_scaled_to_round_ticks(self):
        svg = svg_of(charts.bar_chart(chart_id="c", title="t", categories=["a", "b"],
                                      series=[charts.Series("n", "n", [10, 5])]))
        widths = [float(w) for w in re.findall(r'<rect [^>]*width="([\d.]+)"', svg)]
        assert widths[0] == pytest.approx(2 * widths[1])
        ticks = re.findall(r'text-anchor="middle">(\d+)</text>', svg)
        assert ticks == ["0", "2", "4", "6", "8", "10"]

    def test_user_text_is_escaped_everywhere(self):
        html = charts.bar_chart(chart_id="c", title="Causes", categories=[HOSTILE, 'a "quoted" & cause'],
                                series=[charts.Series("n", "n", [2, 1])])
        assert "<script" not in html
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
        assert "&quot;quoted&quot; &amp; cause" in html

    def test_no_data_says_so(self):
        for values in ([], [0, 0]):
            html = charts.bar_chart(chart_id="c", title="t", categories=["a", "b"][: len(values)],
                                    series=[charts.Series("n", "n", values)])
            assert "No incidents in this period." in html and "<svg" not in html

    def test_nice_ticks_and_formats(self):
        assert charts.nice_ticks(7, integer=True) == [0, 2, 4, 6, 8]
        assert charts.nice_ticks(1, integer=True) == [0, 1]
        assert charts.nice_ticks(0.9) == [0, 0.2, 0.4, 0.6, 0.8, 1.0]
        assert charts.nice_ticks(130) == [0, 50, 100, 150]
        assert charts.fmt_hours(0.5) == "30 min" and charts.fmt_hours(3.25) == "3.2 h"
        assert charts.fmt_hours(72) == "3 d"
        assert charts.duration_text(timedelta(hours=26, minutes=10)) == "1 d 2 h"
        assert charts.duration_text(timedelta(hours=3, minutes=20)) == "3 h 20 min"
        assert charts.duration_text(None) == "—"


# --- the page ----------------------------------------------------------------------------------

URL = "/incidents/dashboard/"


class TestDashboardPage:
    def test_the_url_is_named(self):
        assert reverse("incidents:dashboard") == URL

    def test_anonymous_goes_to_login(self, client, db):
        response = client.get(URL)
        assert response.status_code == 302 and response["Location"].startswith(reverse("login"))

    def test_a_technician_is_refused(self, client, technician):
        client.force_login(technician)
        assert client.get(URL).status_code == 403

    def test_someone_without_a_role_is_refused(self, client, outsider):
        client.force_login(outsider)
        assert client.get(URL).status_code == 403

    @pytest.mark.parametrize("who", ["supervisor", "admin_user"])
    def test_supervisors_and_admins_see_it(self, client, request, who):
        client.force_login(request.getfixturevalue(who))
        response = client.get(URL)
        assert response.status_code == 200
        assert "incidents/dashboard.html" in [t.name for t in response.templates]

    def test_an_empty_dashboard_is_friendly(self, client, supervisor):
        client.force_login(supervisor)
        html = client.get(URL).content.decode()
        assert "No incidents in this period." in html
        assert "No open incidents." in html and "No answer feedback in this period." in html
        assert "<svg class=\"dash-svg\"" not in html

    def test_it_shows_cards_and_charts_and_escapes_hostile_names(self, client, supervisor, technician):
        now = timezone.now()
        evil = Asset.objects.create(asset_id="EVIL-1", name=HOSTILE)
        make(technician, created=now - timedelta(days=2), asset=evil, priority="critical", cause=HOSTILE,
             status="resolved", resolved_at=now - timedelta(days=1), kind="unplanned",
             downtime=(now - timedelta(days=2), now - timedelta(days=2) + timedelta(hours=3)))
        make(technician, created=now - timedelta(hours=3), asset=evil, priority="high")
        feedback(technician, -1, created=now - timedelta(days=1))
        client.force_login(supervisor)

        html = client.get(URL).content.decode()

        assert "<script>alert(1)</script>" not in html
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
        for chart_id in ("chart-per-week", "chart-open", "chart-causes", "chart-mttr", "chart-downtime",
                         "chart-feedback"):
            assert f'id="{chart_id}"' in html
        assert html.count('<svg class="dash-svg"') == 6
        assert "EVIL-1 (&lt;script&gt;alert(1)&lt;/script&gt;)" in html
        assert "1 thumbs-down awaiting review" in html
        assert ">0 %<" in html  # one thumbs-down, nothing helpful
        assert "over 1 resolved incident" in html and "created → resolved" in html

    def test_the_date_filter_narrows_every_chart(self, client, supervisor, technician):
        make(technician, created=at(2025, 2, 3, 9), priority="critical", cause="Old cause")
        make(technician, created=at(2025, 3, 10, 9), priority="low", cause="New cause")
        client.force_login(supervisor)

        html = client.get(URL, {"from": "2025-03-01", "to": "2025-03-31"}).content.decode()
        assert "New cause" in html and "Old cause" not in html
        assert 'value="2025-03-01"' in html and 'value="2025-03-31"' in html
        per_week = re.search(r'id="chart-per-week".*?</figure>', html, re.S).group(0)
        assert per_week.count('scope="row"') == 6  # 24 Feb … 31 Mar: every week, empty ones too

        html = client.get(URL, {"from": "2025-02-01", "to": "2025-02-28"}).content.decode()
        assert "Old cause" in html and "New cause" not in html

    def test_the_default_period_is_the_last_twelve_weeks(self, client, supervisor, technician):
        make(technician, created=timezone.now() - timedelta(weeks=13), cause="Too old")
        make(technician, created=timezone.now() - timedelta(weeks=10), cause="Recent enough")
        client.force_login(supervisor)
        response = client.get(URL)
        scope = response.context["scope"]
        assert scope.end == timezone.localdate() and scope.start == dash.default_scope().start
        html = response.content.decode()
        assert "Recent enough" in html and "Too old" not in html

    def test_the_asset_and_site_filters_apply(self, client, supervisor, technician, station, charger, site):
        make(technician, created=timezone.now(), asset=station, cause="Station cause")
        make(technician, created=timezone.now(), asset=charger, cause="Charger cause")
        client.force_login(supervisor)
        html = client.get(URL, {"asset": "EVSE-02"}).content.decode()
        assert "Charger cause" in html and "Station cause" not in html
        html = client.get(URL, {"site": site.pk}).content.decode()
        assert "Station cause" in html and "Charger cause" not in html

    def test_a_bad_filter_shows_the_error_and_the_default_period(self, client, supervisor):
        client.force_login(supervisor)
        response = client.get(URL, {"from": "2025-03-01", "to": "2025-01-01"})
        assert response.status_code == 200
        assert "The end of the period is before its start." in response.content.decode()
        assert response.context["scope"].start == dash.default_scope().start
        response = client.get(URL, {"from": "not a date", "asset": "NO-SUCH"})
        assert response.status_code == 200
        assert response.context["scope"].asset is None
