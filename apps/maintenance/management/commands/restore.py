from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from apps.maintenance.services import BackupError, backup_restore


class Command(BaseCommand):
    help = (
        "Restore a backup made by `manage.py backup` into the configured data directory and database, "
        "which must be empty (--force replaces them). Stop the web server and the worker first."
    )

    def add_arguments(self, parser):
        parser.add_argument("path", type=Path, help="the archive to restore")
        parser.add_argument("--force", action="store_true",
                            help="replace the database, uploads and index that are there")
        parser.add_argument("--reindex", action="store_true",
                            help="rebuild the indexes from the uploads instead of restoring the archive's index")

    def handle(self, *args, **options):
        say = self.stdout.write if options["verbosity"] > 0 else (lambda message: None)
        try:
            result = backup_restore(path=options["path"], force=options["force"], reindex=options["reindex"], say=say)
        except BackupError as exc:
            raise CommandError(str(exc)) from None
        for warning in result.warnings:
            self.stderr.write(f"warning: {warning}")
        manifest = result.manifest
        counts = manifest["database"]["counts"]
        self.stdout.write(self.style.SUCCESS(
            f"Restored the backup of {manifest['created']} (NanoSentri {manifest['app_version']}, "
            f"{manifest['database']['engine']}): {counts.get('knowledge.document', 0)} documents, "
            f"{counts.get('auth.user', 0)} users, {manifest['uploads']['count']} uploaded files; "
            f"index {result.index}."
        ))
