from django.apps import AppConfig


class MaintenanceConfig(AppConfig):
    """Operations on a whole install: backup, restore and rebuilding the search indexes.

    It sits above the other apps (it imports knowledge and incidents); nothing imports it.
    """

    name = "apps.maintenance"
    label = "maintenance"
