"""Import sites, assets and their sensors from a YAML or CSV file (``manage.py import_assets``).

Idempotent: sites are matched by name, assets by ``asset_id``, sensors by (asset, key); running
the same file again changes nothing. Only the fields the file gives are written, so a short file
does not blank what the admin filled in. The whole file is checked first and every problem is
reported with its line number; nothing is written unless the file is clean.

YAML::

    sites:
      - {name: North Field, location: "Mast row A"}
    assets:
      - asset_id: WXT536-01
        name: Mast 1 weather station
        device_type: WXT536          # a catalogue key
        site: North Field            # created if not listed under sites
        location: Mast 1, 10 m
        ingest_token: ...            # optional, for HTTP telemetry
        manuals: [WXT530_User_Guide.pdf]   # uploaded documents, by file name
        technicians: [bob]           # usernames of the technicians who look after it
        privacy: restricted          # public, internal or restricted (default NANOSENTRI_DEFAULT_PRIVACY)
        sensors:                     # optional: override the catalogue spec of the type
          V_IN: {min: 12, max: 28}
          # or a list: - {key: V_IN, min: 12, max: 28, unit: V}

CSV, one row per asset: ``asset_id,name,device_type,site,location,manuals,ingest_token,technicians``
(and optionally ``privacy``)
(manuals and technicians separated by ``;``), or one row per sensor: the same asset columns plus
``sensor,kind,unit,min,max,warn_low,warn_high,description``.
"""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path

from django.db import transaction

from apps.assets.models import Asset, DeviceType, Sensor, SensorSpec, Site
from apps.assets.payloads import _KEY
from apps.knowledge.privacy import PRIVACY_LEVELS

ASSET_FIELDS = ("asset_id", "name", "device_type", "site", "location", "ingest_token", "manuals", "technicians",
                "sensors", "privacy")
SITE_FIELDS = ("name", "location")
SENSOR_FIELDS = ("key", "kind", "unit", "min", "max", "warn_low", "warn_high", "description")
_ALIASES = {"asset": "asset_id", "id": "asset_id", "type": "device_type", "min_value": "min", "max_value": "max",
            "sensor": "key", "manual": "manuals", "technician": "technicians", "token": "ingest_token", "site_name": "site"}
_SENSOR_MODEL_FIELDS = {"min": "min_value", "max": "max_value"}
_LIMITS = {"asset_id": 64, "name": 200, "location": 200, "ingest_token": 64, "site": 200, "key": 64, "unit": 16}


class AssetImportError(ValueError):
    """The file has problems; ``errors`` lists each with its line number."""

    def __init__(self, errors: list[str]):
        super().__init__("\n".join(errors))
        self.errors = errors


@dataclass
class ImportResult:
    created: dict = field(default_factory=lambda: {"sites": 0, "assets": 0, "sensors": 0})
    updated: dict = field(default_factory=lambda: {"sites": 0, "assets": 0, "sensors": 0})
    manuals_linked: int = 0
    warnings: list[str] = field(default_factory=list)

    def summary(self) -> str:
        parts = [f"{kind}: {self.created[kind]} created, {self.updated[kind]} updated" for kind in ("sites", "assets", "sensors")]
        return "; ".join(parts) + f"; manuals linked: {self.manuals_linked}"


@dataclass
class _Record:
    line: int
    data: dict


@dataclass
class _Plan:
    sites: list[_Record] = field(default_factory=list)
    assets: list[_Record] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


# --- reading -------------------------------------------------------------------------------

def assets_import(path: Path | str, *, dry_run: bool = False) -> ImportResult:
    """Import ``path`` (.yaml/.yml or .csv). Raises AssetImportError listing every problem."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise AssetImportError([f"{path}: cannot read the file: {exc}"]) from None
    suffix = path.suffix.lower()
    if suffix in (".yaml", ".yml"):
        plan = plan_from_yaml(text, path.name)
    elif suffix == ".csv":
        plan = plan_from_csv(text, path.name)
    else:
        raise AssetImportError([f"{path.name}: use a .yaml, .yml or .csv file"])
    _check(plan, path.name)
    if plan.errors:
        raise AssetImportError(plan.errors)
    result = ImportResult()
    with transaction.atomic():
        _write(plan, result, path.name)
        if dry_run:
            transaction.set_rollback(True)
    return result


class _LineDict(dict):
    line = 0


def _yaml_loader():
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    def construct_map(loader, node):
        data = _LineDict()
        data.line = node.start_mark.line + 1
        yield data
        data.update(loader.construct_mapping(node))

    Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, construct_map)
    return Loader


def plan_from_yaml(text: str, name: str) -> _Plan:
    import yaml

    plan = _Plan()
    try:
        doc = yaml.load(text, Loader=_yaml_loader())  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        plan.errors.append(f"{name}{where}: not valid YAML: {getattr(exc, 'problem', None) or exc}")
        return plan
    if doc is None:
        plan.errors.append(f"{name}: the file is empty")
        return plan
    if not isinstance(doc, dict):
        plan.errors.append(f"{name}: expected a mapping with 'sites' and/or 'assets' at the top")
        return plan
    unknown = set(doc) - {"sites", "assets"}
    if unknown:
        plan.errors.append(f"{name} line {doc.line}: unknown section(s) {', '.join(sorted(map(str, unknown)))} "
                           "(expected: sites, assets)")
    for section, fields, target in (("sites", SITE_FIELDS, plan.sites), ("assets", ASSET_FIELDS, plan.assets)):
        items = doc.get(section) or []
        if not isinstance(items, list):
            plan.errors.append(f"{name} line {doc.line}: '{section}' must be a list")
            continue
        for item in items:
            line = getattr(item, "line", doc.line)
            if not isinstance(item, dict):
                plan.errors.append(f"{name} line {line}: each entry of '{section}' must be a mapping")
                continue
            data = _normalise(item, fields, f"{name} line {line}", plan.errors)
            if section == "assets" and "sensors" in data:
                data["sensors"] = _yaml_sensors(data["sensors"], f"{name} line {line}", plan.errors)
            target.append(_Record(line, data))
    if not plan.sites and not plan.assets and not plan.errors:
        plan.errors.append(f"{name}: no sites or assets in the file")
    return plan


def _yaml_sensors(raw, where: str, errors: list[str]) -> list[_Record]:
    records = []
    if isinstance(raw, dict):  # {V_IN: {min: 12}} or {V_IN: null}
        items = []
        for key, spec in raw.items():
            spec = spec if spec is not None else {}
            if not isinstance(spec, dict):
                errors.append(f"{where}: sensor {key}: expected a mapping of fields")
                continue
            line = getattr(spec, "line", None) or getattr(raw, "line", 0)
            items.append((line, {**spec, "key": key}))
    elif isinstance(raw, list):
        items = [(getattr(s, "line", 0), s) for s in raw]
    else:
        errors.append(f"{where}: 'sensors' must be a mapping or a list")
        return records
    for line, spec in items:
        sensor_where = f"{where.rsplit(' line ', 1)[0]} line {line}" if line else where
        if not isinstance(spec, dict):
            errors.append(f"{sensor_where}: each sensor must be a mapping")
            continue
        records.append(_Record(line, _normalise(spec, SENSOR_FIELDS, sensor_where, errors)))
    return records


def _normalise(item: dict, fields: tuple[str, ...], where: str, errors: list[str]) -> dict:
    data = {}
    for raw_key, value in item.items():
        key = _ALIASES.get(str(raw_key).strip().lower(), str(raw_key).strip().lower())
        if key not in fields:
            errors.append(f"{where}: unknown field {raw_key!r} (known: {', '.join(fields)})")
            continue
        data[key] = value
    return data


def plan_from_csv(text: str, name: str) -> _Plan:
    plan = _Plan()
    reader = csv.DictReader(io.StringIO(text))
    if not reader.fieldnames:
        plan.errors.append(f"{name}: the file is empty")
        return plan
    columns = {}
    for raw in reader.fieldnames:
        key = _ALIASES.get((raw or "").strip().lower(), (raw or "").strip().lower())
        if key not in ASSET_FIELDS + SENSOR_FIELDS or key == "sensors":
            plan.errors.append(f"{name} line 1: unknown column {raw!r} "
                               f"(known: {', '.join(f for f in ASSET_FIELDS + SENSOR_FIELDS if f != 'sensors')})")
            continue
        columns[raw] = key
    if "asset_id" not in columns.values():
        plan.errors.append(f"{name} line 1: an 'asset_id' column is needed")
        return plan
    per_sensor = "key" in columns.values()
    assets: dict[str, _Record] = {}
    for row in reader:
        line = reader.line_num
        values = {columns[c]: (v or "").strip() for c, v in row.items() if c in columns and (v or "").strip()}
        if None in row:
            plan.errors.append(f"{name} line {line}: more cells than columns")
            continue
        if not values:
            continue
        asset_values = {k: v for k, v in values.items() if k in ASSET_FIELDS}
        if "manuals" in asset_values:
            asset_values["manuals"] = [m.strip() for m in asset_values["manuals"].split(";") if m.strip()]
        if "technicians" in asset_values:
            asset_values["technicians"] = [t.strip() for t in asset_values["technicians"].split(";") if t.strip()]
        asset_id = asset_values.get("asset_id", "")
        if not asset_id:
            plan.errors.append(f"{name} line {line}: no asset_id")
            continue
        record = assets.get(asset_id)
        if record is None:
            record = assets[asset_id] = _Record(line, {**asset_values, "sensors": []} if per_sensor else asset_values)
            plan.assets.append(record)
        elif not per_sensor:
            plan.errors.append(f"{name} line {line}: asset {asset_id} already on line {record.line}")
            continue
        else:
            for k, v in asset_values.items():
                if k in record.data and record.data[k] != v:
                    plan.errors.append(f"{name} line {line}: {k} of {asset_id} is {v!r} here but "
                                       f"{record.data[k]!r} on line {record.line}")
                record.data.setdefault(k, v)
        if per_sensor:
            sensor = {k: v for k, v in values.items() if k in SENSOR_FIELDS}
            if "key" in sensor:
                record.data["sensors"].append(_Record(line, sensor))
            elif len(sensor):
                plan.errors.append(f"{name} line {line}: sensor fields without a sensor key")
    if not plan.assets and not plan.errors:
        plan.errors.append(f"{name}: no assets in the file")
    return plan


# --- checking ------------------------------------------------------------------------------

def _check(plan: _Plan, name: str) -> None:
    errors = plan.errors
    device_types = set(DeviceType.objects.values_list("key", flat=True))
    from django.contrib.auth import get_user_model

    usernames = set(get_user_model().objects.values_list("username", flat=True))
    seen_sites: dict[str, int] = {}
    for record in plan.sites:
        where = f"{name} line {record.line}"
        site = record.data.get("name")
        if not isinstance(site, str) or not site.strip():
            errors.append(f"{where}: a site needs a name")
            continue
        record.data["name"] = site.strip()
        if site.strip() in seen_sites:
            errors.append(f"{where}: site {site!r} is already listed on line {seen_sites[site.strip()]}")
        seen_sites[site.strip()] = record.line
        _check_text(record.data, ("name", "location"), where, errors)
    seen_assets: dict[str, int] = {}
    for record in plan.assets:
        data, where = record.data, f"{name} line {record.line}"
        asset_id = data.get("asset_id")
        if not isinstance(asset_id, str) or not _KEY.match(asset_id):
            errors.append(f"{where}: asset_id must be an identifier like WXT536-01 (letters, digits, - _ .), got {asset_id!r}")
            continue
        if asset_id in seen_assets:
            errors.append(f"{where}: asset {asset_id} is already listed on line {seen_assets[asset_id]}")
        seen_assets[asset_id] = record.line
        _check_text(data, ("name", "device_type", "site", "location", "ingest_token"), where, errors)
        if "privacy" in data and data["privacy"] not in PRIVACY_LEVELS:
            errors.append(f"{where}: privacy must be one of {', '.join(PRIVACY_LEVELS)}, got {data['privacy']!r}")
        if data.get("device_type") and data["device_type"] not in device_types:
            known = ", ".join(sorted(device_types)) or "none"
            errors.append(f"{where}: unknown device type {data['device_type']!r} (known: {known})")
        _check_names(data, "manuals", "file names", where, errors)
        technicians = _check_names(data, "technicians", "usernames", where, errors)
        missing = sorted(set(technicians or ()) - usernames)
        if missing:
            errors.append(f"{where}: unknown user(s) {', '.join(missing)} in technicians")
        for sensor in data.get("sensors", []) or []:
            _check_sensor(sensor, f"{name} line {sensor.line or record.line}", errors)


def _check_names(data: dict, key: str, what: str, where: str, errors: list[str]) -> list[str] | None:
    """``data[key]`` as a list of names (one name is a list of one); None if absent or not names."""
    names = data.get(key)
    if names is None:
        return None
    if isinstance(names, str):
        data[key] = names = [names]
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        errors.append(f"{where}: {key} must be a list of {what}")
        return None
    return names


def _check_text(data: dict, keys: tuple[str, ...], where: str, errors: list[str]) -> None:
    for key in keys:
        if key not in data or data[key] is None:
            data.pop(key, None)
            continue
        if isinstance(data[key], (int, float)) and not isinstance(data[key], bool):
            data[key] = str(data[key])
        if not isinstance(data[key], str):
            errors.append(f"{where}: {key} must be text")
        elif len(data[key]) > _LIMITS.get(key, 200):
            errors.append(f"{where}: {key} is longer than {_LIMITS.get(key, 200)} characters")


def _check_sensor(sensor: _Record, where: str, errors: list[str]) -> None:
    data = sensor.data
    key = data.get("key")
    if not isinstance(key, str) or not _KEY.match(key):
        errors.append(f"{where}: sensor key must be an identifier like V_IN, got {key!r}")
        return
    where = f"{where}: sensor {key}"
    _check_text(data, ("unit", "description"), where, errors)
    if "kind" in data and data["kind"] not in SensorSpec.Kind.values:
        errors.append(f"{where}: kind must be one of {', '.join(SensorSpec.Kind.values)}, got {data['kind']!r}")
    for bound in ("min", "max", "warn_low", "warn_high"):
        if bound not in data or data[bound] in (None, ""):
            data.pop(bound, None)
            continue
        try:
            if isinstance(data[bound], bool):
                raise ValueError
            data[bound] = float(data[bound])
        except (TypeError, ValueError):
            errors.append(f"{where}: {bound} must be a number, got {data[bound]!r}")
            data.pop(bound)
    for low, high in (("min", "max"), ("warn_low", "warn_high")):
        if low in data and high in data and data[low] > data[high]:
            errors.append(f"{where}: {low} {data[low]:g} is above {high} {data[high]:g}")


# --- writing -------------------------------------------------------------------------------

def _write(plan: _Plan, result: ImportResult, name: str) -> None:
    from apps.knowledge.models import Document

    sites: dict[str, Site] = {}
    for record in plan.sites:
        fields = {k: v for k, v in record.data.items() if k != "name"}
        site, created = Site.objects.update_or_create(name=record.data["name"], defaults=fields)
        _count(result, "sites", created)
        sites[site.name] = site
    device_types = {d.key: d for d in DeviceType.objects.all()}
    for record in plan.assets:
        data = dict(record.data)
        asset_id = data.pop("asset_id")
        manuals = data.pop("manuals", None)
        technicians = data.pop("technicians", None)
        sensors = data.pop("sensors", None) or []
        if "device_type" in data:
            data["device_type"] = device_types[data["device_type"]]
        if "site" in data:
            site_name = data["site"].strip()
            if site_name not in sites:
                sites[site_name], created = Site.objects.get_or_create(name=site_name)
                _count(result, "sites", created)
            data["site"] = sites[site_name]
        asset, created = Asset.objects.update_or_create(
            asset_id=asset_id, defaults=data, create_defaults={"name": asset_id, **data})
        _count(result, "assets", created)
        for sensor in sensors:
            _write_sensor(asset, sensor.data, result)
        if technicians:
            from django.contrib.auth import get_user_model

            asset.technicians.add(*get_user_model().objects.filter(username__in=technicians))
        for manual in manuals or []:
            documents = list(Document.objects.filter(original_name__iexact=manual))
            if not documents:
                result.warnings.append(f"{name} line {record.line}: manual {manual!r} of {asset_id} is not uploaded yet; "
                                       "upload it and import again to link it")
                continue
            before = asset.manuals.count()
            asset.manuals.add(*documents)
            result.manuals_linked += asset.manuals.count() - before


def _write_sensor(asset: Asset, data: dict, result: ImportResult) -> None:
    fields = {_SENSOR_MODEL_FIELDS.get(k, k): v for k, v in data.items() if k != "key"}
    spec = None
    if asset.device_type_id:
        spec = SensorSpec.objects.filter(device_type_id=asset.device_type_id, key=data["key"]).first()
    from_spec = {}
    if spec is not None:
        from_spec = {"kind": spec.kind, "unit": spec.unit, "min_value": spec.min_value, "max_value": spec.max_value,
                     "warn_low": spec.warn_low, "warn_high": spec.warn_high, "description": spec.description}
    # Created: the catalogue spec with the file's overrides. Updated: only what the file says.
    _, created = Sensor.objects.update_or_create(
        asset=asset, key=data["key"], defaults=fields, create_defaults={**from_spec, **fields})
    _count(result, "sensors", created)


def _count(result: ImportResult, kind: str, created: bool) -> None:
    (result.created if created else result.updated)[kind] += 1
