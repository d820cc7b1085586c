"""Delete readings older than NANOSENTRI_READING_RETENTION_DAYS (run it daily, e.g. from cron)."""
from django.conf import settings
from django.core.management.base import BaseCommand

from apps.assets.services import readings_purge


class Command(BaseCommand):
    help = "Delete sensor readings older than the retention period (NANOSENTRI_READING_RETENTION_DAYS)."

    def handle(self, *args, **options):
        deleted = readings_purge()
        self.stdout.write(f"Deleted {deleted} reading(s) older than {settings.NANOSENTRI_READING_RETENTION_DAYS} days.")
