"""POST /api/telemetry/: tokens per asset and per gateway, both body formats, every error status."""
import importlib
import json

import pytest
from django.apps import apps as django_apps
from django.db import DataError, OperationalError
from django.utils import timezone

from apps.assets.models import Alert, Asset, DeviceType, Reading, TelemetryRejection
from apps.assets.payloads import MAX_PAYLOAD_BYTES

pytestmark = pytest.mark.django_db

URL = "/api/telemetry/"
ASSET_TOKEN = "asset-token-0123456789abcdef"
GATEWAY_TOKEN = "gateway-token-fedcba9876543210"


@pytest.fixture
def wxt(db, settings):
    importlib.import_module("apps.assets.migrations.0002_catalogue").load(django_apps, None)
    settings.NANOSENTRI_TELEMETRY_GATEWAY_TOKEN = GATEWAY_TOKEN
    wxt536 = DeviceType.objects.get(key="WXT536")
    Asset.objects.create(asset_id="WXT536-02", name="Mast 2", device_type=wxt536, ingest_token="other-asset-token-xyz")
    return Asset.objects.create(asset_id="WXT536-01", name="Mast 1", device_type=wxt536, ingest_token=ASSET_TOKEN)


def post(client, body, token=ASSET_TOKEN, content_type="application/json", path=URL, **extra):
    if isinstance(body, dict):
        body = json.dumps(body)
    headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"} if token else {}
    return client.post(path, data=body, content_type=content_type, **headers, **extra)


class TestAccepted:
    def test_it_stores_json_with_the_asset_token(self, client, wxt):
        now = timezone.now().replace(microsecond=0)
        response = post(client, {"asset": "WXT536-01", "ts": now.isoformat(), "readings": {"V_IN": 24.1, "TEMP_AMB": 3}})
        assert response.status_code == 201
        assert response.json() == {"asset": "WXT536-01", "stored": 2, "unknown_sensors": [], "alerts_opened": 0}
        assert list(Reading.objects.filter(sensor__asset=wxt, source="http").values_list("ts", flat=True)) == [now, now]

    def test_the_asset_token_fills_in_a_missing_asset(self, client, wxt):
        response = post(client, "V_IN: 24.0V | STATUS: OK", content_type="text/plain")
        assert response.status_code == 201 and response.json()["asset"] == "WXT536-01"

    def test_a_line_naming_the_device_type_belongs_to_the_token_asset(self, client, wxt):
        # Two WXT536 assets exist: the type alone would be ambiguous, the token is not.
        response = post(client, "[2026-06-12] ID:WXT536 >>> HEAT_CURRENT: 0.00A | TEMP_AMB: -15.2C | STATUS: ICE_WARNING",
                        content_type="text/plain")
        assert response.status_code == 201
        assert response.json()["asset"] == "WXT536-01" and response.json()["stored"] == 3

    def test_the_gateway_token_sends_for_any_asset(self, client, wxt):
        response = post(client, {"asset": "WXT536-02", "readings": {"V_IN": 24}}, token=GATEWAY_TOKEN)
        assert response.status_code == 201 and response.json()["asset"] == "WXT536-02"

    def test_the_gateway_can_name_the_asset_in_the_query(self, client, wxt):
        response = post(client, "ID:WXT536 >>> V_IN: 24V", token=GATEWAY_TOKEN, content_type="text/plain",
                        path=URL + "?asset=WXT536-02")
        assert response.status_code == 201 and response.json()["asset"] == "WXT536-02"

    def test_unknown_sensors_are_reported(self, client, wxt):
        response = post(client, {"readings": {"V_IN": 24, "HUMIDITY": 50}})
        assert response.status_code == 201
        assert response.json()["stored"] == 1 and response.json()["unknown_sensors"] == ["HUMIDITY"]

    def test_a_fault_opens_an_alert_and_notifies(self, client, wxt, monkeypatch):
        sent = []
        monkeypatch.setattr("apps.assets.notify.alert_opened", sent.append)
        response = post(client, "V_IN: 8.4V [LOW] | REF_CHK: FAIL | EVENT: SYSTEM_RESET", content_type="text/plain")
        assert response.status_code == 201 and response.json()["alerts_opened"] == 1
        alert = Alert.objects.get(asset=wxt)
        assert alert.rule == "low_supply_resets" and sent == [alert]


class TestRefused:
    def test_no_token_is_401(self, client, wxt):
        response = post(client, {"readings": {"V_IN": 1}}, token=None)
        assert response.status_code == 401
        assert response["WWW-Authenticate"].startswith("Bearer")
        assert "Authorization: Bearer" in response.json()["error"]

    def test_an_unknown_token_is_401(self, client, wxt):
        response = post(client, {"readings": {"V_IN": 1}}, token=ASSET_TOKEN[:-1])
        assert response.status_code == 401 and response.json() == {"error": "unknown token"}
        assert Reading.objects.count() == 0

    def test_another_scheme_is_401(self, client, wxt):
        response = client.post(URL, data="{}", content_type="application/json", HTTP_AUTHORIZATION=f"Basic {ASSET_TOKEN}")
        assert response.status_code == 401

    def test_an_empty_gateway_setting_is_no_token(self, client, wxt, settings):
        settings.NANOSENTRI_TELEMETRY_GATEWAY_TOKEN = ""
        response = client.post(URL, data="{}", content_type="application/json", HTTP_AUTHORIZATION="Bearer ")
        assert response.status_code == 401

    def test_an_asset_token_for_another_asset_is_403(self, client, wxt):
        response = post(client, {"asset": "WXT536-02", "readings": {"V_IN": 24}})
        assert response.status_code == 403
        assert "only send data for WXT536-01" in response.json()["error"]
        assert Reading.objects.count() == 0
        assert TelemetryRejection.objects.get().reason.startswith("forbidden")

    def test_an_unknown_asset_is_404(self, client, wxt):
        response = post(client, {"asset": "NOPE-1", "readings": {"V_IN": 24}}, token=GATEWAY_TOKEN)
        assert response.status_code == 404 and response.json()["error"] == "unknown asset: NOPE-1"

    def test_a_gateway_payload_without_asset_is_400(self, client, wxt):
        response = post(client, {"readings": {"V_IN": 24}}, token=GATEWAY_TOKEN)
        assert response.status_code == 400 and response.json()["error"].startswith("no asset")

    @pytest.mark.parametrize("body", [
        '{"readings": {"V_IN": NaN}}',
        '{"readings": {"V_IN": [1]}}',
        '{"readings": "V_IN"}',
        "not telemetry",
        b"\xff\xfe\xfa",
    ])
    def test_malformed_payloads_are_400_and_counted(self, client, wxt, body):
        response = post(client, body)
        assert response.status_code == 400
        assert response.json()["error"].startswith("malformed payload: ")
        assert TelemetryRejection.objects.get().source == "http"

    def test_nul_bytes_are_400_and_the_rejection_is_storable(self, client, wxt):
        response = post(client, b"V_IN: 2\x004V", content_type="text/plain")
        assert response.status_code == 400 and "NUL" in response.json()["error"]
        assert TelemetryRejection.objects.get().excerpt == "V_IN: 2\\x004V"

    def test_a_value_the_database_refuses_is_400_not_500(self, client, wxt, monkeypatch):
        def refuse(*args, **kwargs):
            raise DataError("PostgreSQL text fields cannot contain NUL (0x00) bytes")

        monkeypatch.setattr("apps.assets.services.payload_store", refuse)
        response = post(client, {"readings": {"STATUS": "OK"}})
        assert response.status_code == 400 and "could not be stored" in response.json()["error"]

    def test_a_lost_database_is_503(self, client, wxt, monkeypatch):
        def down(*args, **kwargs):
            raise OperationalError("connection refused")

        monkeypatch.setattr("apps.assets.services.payload_store", down)
        response = post(client, {"readings": {"STATUS": "OK"}})
        assert response.status_code == 503 and response["Retry-After"] == "30"

    def test_a_bad_asset_query_is_400(self, client, wxt):
        response = post(client, {"readings": {"V_IN": 1}}, token=GATEWAY_TOKEN, path=URL + "?asset=a%20b")
        assert response.status_code == 400

    def test_over_the_size_limit_is_413(self, client, wxt):
        response = post(client, "V_IN: 1 | " * (MAX_PAYLOAD_BYTES // 8), content_type="text/plain")
        assert response.status_code == 413
        assert Reading.objects.count() == 0

    def test_get_is_405(self, client, wxt):
        assert client.get(URL, HTTP_AUTHORIZATION=f"Bearer {ASSET_TOKEN}").status_code == 405

    def test_it_needs_no_csrf_token(self, wxt):
        from django.test import Client

        response = post(Client(enforce_csrf_checks=True), {"readings": {"V_IN": 24}})
        assert response.status_code == 201
