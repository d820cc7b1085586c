"""``manage.py import_assets``: YAML and CSV, idempotent, errors with line numbers."""
import importlib
from io import StringIO

import pytest
from django.apps import apps as django_apps
from django.core.management import CommandError, call_command

from apps.assets.importing import AssetImportError, assets_import
from apps.assets.models import Asset, Sensor, Site
from apps.knowledge.models import Document

pytestmark = pytest.mark.django_db

YAML = """\
sites:
  - name: North Field
    location: Row A
assets:
  - asset_id: WXT536-01
    name: Mast 1 weather station
    device_type: WXT536
    site: North Field
    location: Mast 1, 10 m
    manuals: [WXT530_User_Guide.pdf, Missing_Manual.pdf]
    sensors:
      V_IN: {min: 12, max: 28}
      HUMIDITY: {unit: "%", min: 0, max: 100}
  - asset_id: WXT536-02
    device_type: WXT536
    site: South Field
    sensors:
      - {key: TEMP_AMB, warn_low: -40}
"""


@pytest.fixture(autouse=True)
def catalogue(db):
    importlib.import_module("apps.assets.migrations.0002_catalogue").load(django_apps, None)


@pytest.fixture
def manual(db):
    return Document.objects.create(original_name="WXT530_User_Guide.pdf", stored_path="x/y.pdf", extension=".pdf",
                                   content_hash="a" * 64)


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


def run(path, *args):
    out, err = StringIO(), StringIO()
    call_command("import_assets", str(path), *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


class TestYaml:
    def test_it_imports_sites_assets_sensors_and_manuals(self, tmp_path, manual):
        out, err = run(write(tmp_path, "assets.yaml", YAML))
        assert "sites: 2 created, 0 updated; assets: 2 created, 0 updated; sensors: 3 created, 0 updated; manuals linked: 1" in out
        assert "Missing_Manual.pdf" in err and "line 5" in err

        mast1 = Asset.objects.get(asset_id="WXT536-01")
        assert (mast1.name, mast1.device_type.key, mast1.site.name, mast1.location) == (
            "Mast 1 weather station", "WXT536", "North Field", "Mast 1, 10 m")
        assert Site.objects.get(name="North Field").location == "Row A"
        assert list(mast1.manuals.all()) == [manual]
        v_in = Sensor.objects.get(asset=mast1, key="V_IN")
        # the file overrides the range; the rest comes from the catalogue spec
        assert (v_in.min_value, v_in.max_value, v_in.unit, v_in.warn_low, v_in.kind) == (12, 28, "V", 10.5, "numeric")
        humidity = Sensor.objects.get(asset=mast1, key="HUMIDITY")
        assert (humidity.unit, humidity.max_value) == ("%", 100)

        mast2 = Asset.objects.get(asset_id="WXT536-02")
        assert mast2.name == "WXT536-02" and mast2.site.name == "South Field"  # site made on the way
        temp = Sensor.objects.get(asset=mast2, key="TEMP_AMB")
        assert (temp.warn_low, temp.min_value, temp.unit) == (-40, -52, "°C")

    def test_running_it_again_changes_nothing(self, tmp_path, manual):
        path = write(tmp_path, "assets.yaml", YAML)
        run(path)
        def snapshot():
            return [list(model.objects.order_by("pk").values()) for model in (Asset, Sensor, Site)]

        before = snapshot()
        out, _ = run(path)
        assert "sites: 0 created, 2 updated; assets: 0 created, 2 updated; sensors: 0 created, 3 updated; manuals linked: 0" in out
        assert snapshot() == before

    def test_it_only_writes_what_the_file_says(self, tmp_path):
        run(write(tmp_path, "a.yaml", YAML))
        Asset.objects.filter(asset_id="WXT536-01").update(ingest_token="kept-token")
        Sensor.objects.filter(key="V_IN").update(warn_high=27.5)
        run(write(tmp_path, "b.yaml", "assets:\n  - asset_id: WXT536-01\n    location: Mast 1, 12 m\n"
                                     "    sensors:\n      V_IN: {max: 29}\n"))
        mast1 = Asset.objects.get(asset_id="WXT536-01")
        assert (mast1.name, mast1.location, mast1.ingest_token) == ("Mast 1 weather station", "Mast 1, 12 m", "kept-token")
        v_in = Sensor.objects.get(asset=mast1, key="V_IN")
        assert (v_in.min_value, v_in.max_value, v_in.warn_high) == (12, 29, 27.5)

    def test_dry_run_writes_nothing(self, tmp_path):
        out, _ = run(write(tmp_path, "assets.yaml", YAML), "--dry-run")
        assert out.startswith("dry run, nothing written: ") and "assets: 2 created" in out
        assert not Asset.objects.exists() and not Site.objects.exists()

    def test_errors_name_their_lines_and_nothing_is_written(self, tmp_path):
        text = """\
assets:
  - asset_id: WXT536-01
    device_type: WXT999
  - asset_id: "bad id!"
  - asset_id: WXT536-03
    devicetype: WXT536
    sensors:
      V_IN: {min: high, max: 5}
      TEMP_AMB: {min: 10, max: 0}
  - asset_id: WXT536-01
"""
        with pytest.raises(CommandError) as exc:
            run(write(tmp_path, "bad.yaml", text))
        message = str(exc.value)
        assert "nothing imported" in message
        assert "bad.yaml line 2: unknown device type 'WXT999' (known: WXT536)" in message
        assert "bad.yaml line 4: asset_id must be an identifier" in message
        assert "bad.yaml line 5: unknown field 'devicetype'" in message
        assert "bad.yaml line 8: sensor V_IN: min must be a number, got 'high'" in message
        assert "bad.yaml line 9: sensor TEMP_AMB: min 10 is above max 0" in message
        assert "bad.yaml line 10: asset WXT536-01 is already listed on line 2" in message
        assert not Asset.objects.exists()

    @pytest.mark.parametrize("text, why", [
        ("assets:\n  - asset_id: X\n\tname: tab\n", "line 3: not valid YAML"),
        ("", "the file is empty"),
        ("- a\n- b\n", "expected a mapping"),
        ("things: []\n", "unknown section(s) things"),
        ("assets: {asset_id: X}\n", "'assets' must be a list"),
        ("assets:\n  - asset_id: X\n    sensors: 5\n", "'sensors' must be a mapping or a list"),
        ("assets:\n  - asset_id: X\n    manuals: {a: 1}\n", "manuals must be a list of file names"),
        ("assets:\n  - asset_id: X\n    sensors:\n      V_IN: {kind: analog}\n", "kind must be one of numeric, status"),
        ("sites:\n  - location: somewhere\n", "line 2: a site needs a name"),
    ])
    def test_malformed_files(self, tmp_path, text, why):
        with pytest.raises(AssetImportError) as exc:
            assets_import(write(tmp_path, "f.yaml", text))
        assert why in str(exc.value)


class TestCsv:
    def test_one_row_per_asset(self, tmp_path, manual):
        text = ("asset_id,name,device_type,site,location,manuals,ingest_token\n"
                "WXT536-01,Mast 1,WXT536,North Field,Mast 1,WXT530_User_Guide.pdf,tok-1\n"
                "WXT536-02,Mast 2,WXT536,North Field,,,\n")
        out, _ = run(write(tmp_path, "assets.csv", text))
        assert "assets: 2 created" in out and "sites: 1 created" in out
        mast1 = Asset.objects.get(asset_id="WXT536-01")
        assert (mast1.ingest_token, mast1.site.name, list(mast1.manuals.all())) == ("tok-1", "North Field", [manual])
        assert Asset.objects.get(asset_id="WXT536-02").location == ""
        out, _ = run(write(tmp_path, "assets.csv", text))
        assert "assets: 0 created, 2 updated" in out

    def test_one_row_per_sensor(self, tmp_path):
        text = ("asset_id,device_type,sensor,min,max,unit\n"
                "WXT536-01,WXT536,V_IN,12,28,\n"
                "WXT536-01,,TEMP_AMB,-40,50,\n"
                "PUMP-7,,PRESSURE,0,10,bar\n")
        out, _ = run(write(tmp_path, "sensors.csv", text))
        assert "assets: 2 created" in out and "sensors: 3 created" in out
        v_in = Sensor.objects.get(asset__asset_id="WXT536-01", key="V_IN")
        assert (v_in.min_value, v_in.max_value, v_in.unit) == (12, 28, "V")
        pressure = Sensor.objects.get(asset__asset_id="PUMP-7", key="PRESSURE")
        assert (pressure.unit, pressure.max_value, pressure.asset.device_type) == ("bar", 10, None)

    def test_errors_name_their_lines(self, tmp_path):
        text = ("asset_id,device_type,sensor,min,colour\n"
                "WXT536-01,WXT536,V_IN,low,red\n")
        with pytest.raises(AssetImportError) as exc:
            assets_import(write(tmp_path, "s.csv", text))
        assert "s.csv line 1: unknown column 'colour'" in str(exc.value)
        text = ("asset_id,device_type,sensor,min\n"
                "WXT536-01,WXT536,V_IN,low\n"
                "WXT536-01,WXT999,TEMP_AMB,1\n"
                ",WXT536,TEMP_AMB,1\n"
                "WXT536-01,WXT536,V_IN,1,2,3\n")
        with pytest.raises(AssetImportError) as exc:
            assets_import(write(tmp_path, "s.csv", text))
        errors = exc.value.errors
        assert "s.csv line 2: sensor V_IN: min must be a number, got 'low'" in errors
        assert "s.csv line 3: device_type of WXT536-01 is 'WXT999' here but 'WXT536' on line 2" in errors
        assert "s.csv line 4: no asset_id" in errors
        assert "s.csv line 5: more cells than columns" in errors

    def test_a_duplicate_asset_row(self, tmp_path):
        with pytest.raises(AssetImportError, match="line 3: asset A-1 already on line 2"):
            assets_import(write(tmp_path, "a.csv", "asset_id,name\nA-1,x\nA-1,y\n"))

    def test_no_asset_id_column(self, tmp_path):
        with pytest.raises(AssetImportError, match="an 'asset_id' column is needed"):
            assets_import(write(tmp_path, "a.csv", "name,location\nx,y\n"))


def test_other_file_types_are_refused(tmp_path):
    with pytest.raises(CommandError, match="use a .yaml, .yml or .csv file"):
        run(write(tmp_path, "assets.json", "{}"))


def test_a_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(CommandError, match="cannot read the file"):
        run(tmp_path / "nope.yaml")


def test_it_assigns_technicians_by_username_and_rejects_unknown_ones(db, technician, tmp_path):
    good = tmp_path / "assets.yaml"
    good.write_text("assets:\n  - {asset_id: WXT536-07, device_type: WXT536, technicians: [bob]}\n")
    assets_import(good)
    assert list(Asset.objects.get(asset_id="WXT536-07").technicians.values_list("username", flat=True)) == ["bob"]

    bad = tmp_path / "bad.csv"
    bad.write_text("asset_id,device_type,technicians\nWXT536-08,WXT536,bob;nobody\n")
    with pytest.raises(AssetImportError) as excinfo:
        assets_import(bad)
    assert "unknown user(s) nobody in technicians" in str(excinfo.value)
    assert not Asset.objects.filter(asset_id="WXT536-08").exists()
