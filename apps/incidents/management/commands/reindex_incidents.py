from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = (
        "Rebuild the similar-incidents index (NANOSENTRI_CHROMA_INCIDENT_COLLECTION) from the database: "
        "every resolved or closed incident, nothing else. Run it after restoring a backup."
    )

    def handle(self, *args, **options):
        from apps.incidents.services import incidents_reindex

        count = incidents_reindex()
        self.stdout.write(f"Indexed {count} resolved or closed incident{'s' if count != 1 else ''}.")
