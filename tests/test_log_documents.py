"""An uploaded device log becomes readings of its asset as well as searchable text."""
import pytest

from apps.assets.models import Asset, DeviceType, Reading
from apps.assets.selectors import asset_live_context
from apps.knowledge.services import document_add_path, document_ingest

pytestmark = pytest.mark.django_db

LOG = """[2026-06-12 10:00:00] ID:WXT536-01 >>> HEAT_CURRENT: 0.40A | TEMP_AMB: -3.0C | STATUS: OK
[2026-06-12 10:05:00] ID:WXT536-01 >>> HEAT_CURRENT: 0.00A | TEMP_AMB: -15.2C | STATUS: ICE_WARNING
"""


def test_a_device_log_is_indexed_and_its_readings_stored(tmp_path):
    asset = Asset.objects.create(asset_id="WXT536-01", name="Roof mast", device_type=DeviceType.objects.get(key="WXT536"))
    path = tmp_path / "mast-2026-06-12.log"
    path.write_text(LOG)
    document, _ = document_add_path(path=path)
    document = document_ingest(document_id=document.pk)
    assert document.status == "indexed" and document.chunk_count >= 1
    assert Reading.objects.filter(sensor__asset=asset).count() == 6
    findings = asset_live_context(asset).findings
    assert findings[0].rule == "heater_failure"
    # Indexing again (re-index) stores nothing twice.
    document_ingest(document_id=document.pk)
    assert Reading.objects.filter(sensor__asset=asset).count() == 6


def test_a_log_in_no_known_format_is_only_indexed(tmp_path):
    path = tmp_path / "notes.log"
    path.write_text("Replaced the pump seal on line 3. Pressure back to normal after 10 minutes.\n")
    document, _ = document_add_path(path=path)
    assert document_ingest(document_id=document.pk).status == "indexed"
    assert not Reading.objects.exists()
