"""The built-in device catalogue: device types and their sensor specs.

Loaded by a data migration (so every freshly migrated database has it) and by
``catalogue_ensure()`` (tests that flush tables, the demo).
"""

CATALOGUE = {
    "WXT536": {
        "name": "Vaisala WXT536 multi-parameter weather transmitter",
        "manufacturer": "Vaisala",
        "description": "Ultrasonic wind, temperature, humidity, pressure and precipitation; optional heating of the sensor head.",
        "specs": [
            # key, kind, unit, min, max, warn_low, warn_high, description
            ("V_IN", "numeric", "V", 10.0, 30.0, 10.5, 29.0, "Operating supply voltage"),
            ("HEAT_V", "numeric", "V", 20.0, 28.0, 21.6, 26.4, "Heater supply voltage, 24 V nominal"),
            ("HEAT_CURRENT", "numeric", "A", 0.0, 2.0, None, None, "Heater current; expected above 0 A whenever ambient is below 0 °C"),
            ("TEMP_AMB", "numeric", "°C", -52.0, 60.0, None, None, "Ambient air temperature"),
            ("WIND_SPEED", "numeric", "m/s", 0.0, 60.0, None, None, "Wind speed"),
            ("WIND_DIR", "numeric", "°", 0.0, 360.0, None, None, "Wind direction"),
            ("STATUS", "status", "", None, None, None, None, "Device status (e.g. OK, ICE_WARNING)"),
            ("REF_CHK", "status", "", None, None, None, None, "Internal reference check (PASS/FAIL)"),
            ("EVENT", "status", "", None, None, None, None, "Last device event (e.g. SYSTEM_RESET)"),
        ],
    },
}


def catalogue_load(DeviceType, SensorSpec) -> None:
    """Create or update the catalogue with the given model classes (historical ones in migrations)."""
    for key, entry in CATALOGUE.items():
        device_type, _ = DeviceType.objects.update_or_create(
            key=key, defaults={"name": entry["name"], "manufacturer": entry["manufacturer"], "description": entry["description"]}
        )
        for spec_key, kind, unit, lo, hi, wlo, whi, description in entry["specs"]:
            SensorSpec.objects.update_or_create(
                device_type=device_type, key=spec_key,
                defaults={"kind": kind, "unit": unit, "min_value": lo, "max_value": hi, "warn_low": wlo,
                          "warn_high": whi, "description": description},
            )


def catalogue_ensure() -> None:
    from apps.assets.models import DeviceType, SensorSpec

    catalogue_load(DeviceType, SensorSpec)
