"""The asset pages: list, detail and the JSON the detail page polls, for anyone with a role."""
import json
from datetime import timedelta

import pytest
from django.utils import timezone

from apps.assets import presenters
from apps.assets.models import Alert, Asset, DeviceType, Reading
from apps.assets.services import payload_receive, sensor_from_spec
from apps.knowledge.models import Document

LIST_URL = "/assets/"
DETAIL_URL = "/assets/WXT536-01/"
LIVE_URL = "/assets/WXT536-01/live.json"
HEATER_FAILURE = "ID:WXT536-01 >>> HEAT_CURRENT: 0.00A | TEMP_AMB: -15.2C | STATUS: ICE_WARNING"
HEATER_MESSAGE = "Heater current 0 A while the ambient temperature is -15.2 °C"


@pytest.fixture
def asset(db):
    wxt536 = DeviceType.objects.get(key="WXT536")
    return Asset.objects.create(asset_id="WXT536-01", name="Roof mast", device_type=wxt536)


@pytest.fixture
def tech_client(client, technician):
    client.force_login(technician)
    return client


def store(asset, ts, **readings):
    payload = {"asset": asset.asset_id, "ts": ts.isoformat(), "readings": readings}
    result = payload_receive(json.dumps(payload), source="http")
    assert result.ok and not result.unknown_sensors, result
    return result


def manual(name="WXT530_User_Guide.pdf"):
    return Document.objects.create(original_name=name, stored_path=name, extension=".pdf",
                                   content_hash=name.ljust(64, "0")[:64], status=Document.Status.INDEXED)


# --- access ---------------------------------------------------------------------------------


@pytest.mark.parametrize("url", [LIST_URL, DETAIL_URL, LIVE_URL])
def test_anonymous_users_are_sent_to_the_login_page(client, asset, url):
    response = client.get(url)

    assert response.status_code == 302
    assert response["Location"].startswith("/login/?next=")


@pytest.mark.parametrize("url", [LIST_URL, DETAIL_URL, LIVE_URL])
def test_users_without_a_role_are_forbidden(client, outsider, asset, url):
    client.force_login(outsider)

    assert client.get(url).status_code == 403


@pytest.mark.parametrize("user_fixture", ["technician", "supervisor", "admin_user"])
def test_every_role_may_look(client, request, asset, user_fixture):
    client.force_login(request.getfixturevalue(user_fixture))

    assert client.get(DETAIL_URL).status_code == 200


@pytest.mark.parametrize("url", ["/assets/NOPE-1/", "/assets/NOPE-1/live.json"])
def test_an_unknown_asset_is_404(tech_client, asset, url):
    assert tech_client.get(url).status_code == 404


# --- list ------------------------------------------------------------------------------------


def test_it_lists_assets_with_open_alerts_and_last_reading(tech_client, asset):
    last = timezone.now() - timedelta(minutes=3)
    store(asset, last - timedelta(minutes=10), V_IN=24.0)
    store(asset, last, V_IN=24.1, TEMP_AMB=4.0)
    Alert.objects.create(asset=asset, rule="heater_failure", severity="high", message="m")
    Alert.objects.create(asset=asset, rule="old", severity="high", message="m", resolved=timezone.now())
    other = Asset.objects.create(asset_id="PUMP-7", name="Pump", location="Basement")

    response = tech_client.get(LIST_URL)

    assert response.status_code == 200
    rows = {a.asset_id: a for a in response.context["assets"]}
    assert rows["WXT536-01"].open_alerts == 1
    assert rows["WXT536-01"].last_reading == last
    assert rows["PUMP-7"].open_alerts == 0 and rows["PUMP-7"].last_reading is None
    html = response.content.decode()
    assert 'href="/assets/WXT536-01/"' in html and "Roof mast" in html and "WXT536" in html
    assert "Basement" in html and "no data yet" in html
    assert other.asset_id in html


def test_the_list_says_when_there_are_no_assets(tech_client):
    response = tech_client.get(LIST_URL)

    assert response.status_code == 200
    assert b"No assets yet" in response.content


def test_the_nav_links_to_assets_and_loads_the_alerts_script(tech_client):
    html = tech_client.get(LIST_URL).content.decode()

    assert 'href="/assets/" aria-current="page"' in html
    assert 'id="alert-toasts"' in html and "js/alerts.js" in html


def test_the_login_page_does_not_load_the_alerts_script(client):
    html = client.get("/login/").content.decode()

    assert "js/alerts.js" not in html and "alert-toasts" not in html


# --- detail ----------------------------------------------------------------------------------


def test_the_page_shows_readings_findings_and_manuals(tech_client, asset):
    doc = manual()
    asset.manuals.add(doc)
    store(asset, timezone.now() - timedelta(minutes=30), HEAT_CURRENT=0.6, TEMP_AMB=2.0, V_IN=24.0)
    assert payload_receive(HEATER_FAILURE, source="mqtt").ok

    response = tech_client.get(DETAIL_URL)

    assert response.status_code == 200
    html = response.content.decode()
    # Numeric sensors with value, range bar and time; status sensors as badges.
    rows = {r.key: r for r in response.context["numeric_rows"]}
    assert rows["HEAT_CURRENT"].shown == "0 A" and rows["HEAT_CURRENT"].state == "ok"
    assert rows["HEAT_CURRENT"].finding == "high"
    assert rows["TEMP_AMB"].shown == "-15.2 °C"
    assert 'data-sensor="HEAT_CURRENT" data-state="ok" data-finding="high"' in html
    assert 'class="range-bar"' in html and 'class="rb-marker"' in html
    statuses = {r.key: r for r in response.context["status_rows"]}
    assert statuses["STATUS"].text == "ICE_WARNING" and statuses["STATUS"].state == "warn"
    assert 'class="badge badge-warn"' in html
    # The heater-failure rule's finding, with what to check.
    assert HEATER_MESSAGE in html
    assert "Check the 24 V heater supply" in html
    assert 'class="sev sev-high"' in html
    # Linked manual and one chart per numeric sensor, with both readings of HEAT_CURRENT.
    assert f'href="/documents/{doc.pk}/file/"' in html and "WXT530_User_Guide.pdf" in html
    charts = {c["key"]: c for c in response.context["charts"]}
    assert set(charts) == {"HEAT_CURRENT", "TEMP_AMB", "V_IN"}
    assert [v for _, v in charts["HEAT_CURRENT"]["points"]] == [0.6, 0.0]
    assert charts["HEAT_CURRENT"]["min"] == 0.0 and charts["HEAT_CURRENT"]["max"] == 2.0
    assert 'id="asset-charts"' in html and "js/asset.js" in html


def test_an_out_of_range_value_is_marked(tech_client, asset):
    store(asset, timezone.now(), V_IN=8.4)

    response = tech_client.get(DETAIL_URL)

    row = next(r for r in response.context["numeric_rows"] if r.key == "V_IN")
    assert row.state == "out"
    assert 0 < float(row.bar["pos"]) < float(row.bar["ok_left"])  # left of the range, on the bar's margin
    assert 'data-sensor="V_IN" data-state="out"' in response.content.decode()
    assert "V_IN 8.4 V is below its operating range 10–30 V" in response.content.decode()


def test_sensors_without_data_are_listed_as_such(tech_client, asset):
    store(asset, timezone.now(), V_IN=24.0)
    sensor_from_spec(asset, "WIND_SPEED")

    response = tech_client.get(DETAIL_URL)

    row = next(r for r in response.context["numeric_rows"] if r.key == "WIND_SPEED")
    assert not row.has_data and row.state == "none" and row.bar["pos"] is None
    assert 'data-sensor="WIND_SPEED" data-state="none"' in response.content.decode()
    assert response.context["findings"] == []
    assert "No findings" in response.content.decode()


def test_the_chart_period_follows_hours(tech_client, asset):
    now = timezone.now()
    store(asset, now - timedelta(hours=2), V_IN=23.0)
    store(asset, now - timedelta(minutes=5), V_IN=24.0)

    one_hour = tech_client.get(DETAIL_URL, {"hours": "1"}).context
    default = tech_client.get(DETAIL_URL, {"hours": "nonsense"}).context

    assert one_hour["hours"] == 1
    assert [v for _, v in one_hour["charts"][0]["points"]] == [24.0]
    assert default["hours"] == 6
    assert [v for _, v in default["charts"][0]["points"]] == [23.0, 24.0]
    assert tech_client.get(DETAIL_URL, {"hours": "100000"}).context["hours"] == presenters.HOURS_MAX


# --- live.json -------------------------------------------------------------------------------


def test_live_json_returns_readings_since_the_cursor(tech_client, asset):
    now = timezone.now()
    t1, t2, t3 = now - timedelta(minutes=3), now - timedelta(minutes=2), now - timedelta(minutes=1)
    store(asset, t1, V_IN=24.0, HEAT_CURRENT=0.5, TEMP_AMB=-3.0)
    store(asset, t2, V_IN=24.2)
    store(asset, t3, V_IN=24.4)

    response = tech_client.get(LIVE_URL, {"since": t1.isoformat()})

    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert "no-cache" in response["Cache-Control"] or "no-store" in response["Cache-Control"]
    data = response.json()
    assert data["asset"] == "WXT536-01"
    ms = [int(t.timestamp() * 1000) for t in (t2, t3)]
    assert data["readings"] == {"V_IN": [[ms[0], 24.2], [ms[1], 24.4]]}
    assert data["cursor"] == t3.isoformat()
    assert data["latest"]["V_IN"]["shown"] == "24.4 V" and data["latest"]["V_IN"]["state"] == "ok"
    assert data["latest"]["HEAT_CURRENT"]["value"] == 0.5
    # Nothing new: nothing sent, the cursor stays.
    again = tech_client.get(LIVE_URL, {"since": data["cursor"]}).json()
    assert again["readings"] == {} and again["cursor"] == t3.isoformat()


def test_live_json_has_the_findings_after_a_heater_failure_line(tech_client, asset):
    before = timezone.now() - timedelta(seconds=1)
    result = payload_receive(HEATER_FAILURE, source="mqtt")
    assert result.ok and result.asset == asset and result.stored == 3

    data = tech_client.get(LIVE_URL, {"since": before.isoformat()}).json()

    assert set(data["readings"]) == {"HEAT_CURRENT", "TEMP_AMB"}
    assert data["latest"]["STATUS"]["text"] == "ICE_WARNING"
    rules = {f["rule"]: f for f in data["findings"]}
    assert rules["heater_failure"]["severity"] == "high"
    assert rules["heater_failure"]["message"].startswith(HEATER_MESSAGE)
    assert rules["heater_failure"]["check"]
    assert "ice_warning" in rules
    assert data["findings"][0]["rule"] == "heater_failure"  # most severe first
    assert data["latest"]["HEAT_CURRENT"]["finding"] == "high"


def test_live_json_without_since_covers_the_chart_period(tech_client, asset):
    now = timezone.now()
    store(asset, now - timedelta(hours=8), V_IN=22.0)
    store(asset, now - timedelta(hours=1), V_IN=23.0)

    data = tech_client.get(LIVE_URL).json()

    assert [v for _, v in data["readings"]["V_IN"]] == [23.0]


def test_live_json_accepts_an_unencoded_plus_and_z(tech_client, asset):
    now = timezone.now()
    store(asset, now - timedelta(minutes=2), V_IN=24.0)
    since = (now - timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%S")

    assert tech_client.get(f"{LIVE_URL}?since={since}+00:00").json()["readings"]["V_IN"]
    assert tech_client.get(f"{LIVE_URL}?since={since}Z").json()["readings"]["V_IN"]


def test_live_json_rejects_a_bad_since(tech_client, asset):
    response = tech_client.get(LIVE_URL, {"since": "yesterday"})

    assert response.status_code == 400
    assert "since" in response.json()["error"]


def test_live_json_sends_status_readings_as_latest_only(tech_client, asset):
    now = timezone.now()
    store(asset, now, STATUS="OK", V_IN=24.0)

    data = tech_client.get(LIVE_URL, {"since": (now - timedelta(seconds=5)).isoformat()}).json()

    assert "STATUS" not in data["readings"]
    assert data["latest"]["STATUS"]["text"] == "OK" and data["latest"]["STATUS"]["state"] == "ok"
    assert Reading.objects.filter(sensor__key="STATUS").count() == 1


# --- presenters ------------------------------------------------------------------------------


def test_range_bar_geometry():
    row = presenters.SensorRow(key="V_IN", kind="numeric", unit="V", description="",
                               min_value=10, max_value=30, warn_low=10.5, warn_high=29, value=20)

    bar = presenters.range_bar(row)

    # 10–30 V plus 15 % each side: the bar spans 7–33 V.
    assert bar["ok_left"] == "11.54" and bar["ok_width"] == "76.92" and bar["max_left"] == "88.46"
    assert bar["pos"] == "50.00"
    assert [w["left"] for w in bar["warn"]] == ["11.54", "84.62"]
    row.value = 1000
    assert presenters.range_bar(row)["pos"] == "100.00"
    row.max_value = None
    assert presenters.range_bar(row) is None


def test_long_series_are_reduced_keeping_spikes():
    start = timezone.now()
    points = [(start + timedelta(seconds=i), 20.0) for i in range(5000)]
    points[2345] = (points[2345][0], 99.0)

    reduced = presenters._reduce(points, 600)

    assert len(reduced) <= 601
    assert max(v for _, v in reduced) == 99.0
    assert reduced[-1] == points[-1]
    assert [t for t, _ in reduced] == sorted(t for t, _ in reduced)
