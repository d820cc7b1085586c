"""The built-in device catalogue, present in every freshly migrated database."""
from django.db import migrations

from apps.assets.catalogue import CATALOGUE, catalogue_load


def load(apps, schema_editor):
    catalogue_load(apps.get_model("assets", "DeviceType"), apps.get_model("assets", "SensorSpec"))


def unload(apps, schema_editor):
    apps.get_model("assets", "DeviceType").objects.filter(key__in=list(CATALOGUE)).delete()


class Migration(migrations.Migration):
    dependencies = [("assets", "0001_initial")]
    operations = [migrations.RunPython(load, unload)]
