from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from apps.maintenance.services import BackupError, backup_create


class Command(BaseCommand):
    help = (
        "Write a backup (one tar.gz) of the database, the uploaded files and the embedded Chroma index, "
        "with a manifest of checksums. Restore it with `manage.py restore`."
    )

    def add_arguments(self, parser):
        parser.add_argument("path", type=Path, help="the archive to write, or a directory to write it in")
        parser.add_argument("--no-index", action="store_true",
                            help="leave the index out (restore then rebuilds it from the uploads)")
        parser.add_argument("--force", action="store_true", help="overwrite an existing archive")

    def handle(self, *args, **options):
        say = self.stdout.write if options["verbosity"] > 0 else (lambda message: None)
        try:
            result = backup_create(
                path=options["path"], include_index=not options["no_index"], overwrite=options["force"], say=say
            )
        except BackupError as exc:
            raise CommandError(str(exc)) from None
        manifest = result.manifest
        for item in manifest["uploads"]["missing"]:
            self.stderr.write(f"warning: document {item['document']} ({item['name']}): its file is missing from the uploads")
        if manifest["index"]["documents_in_progress"]:
            self.stderr.write(
                f"warning: {len(manifest['index']['documents_in_progress'])} document(s) were being ingested; "
                "restore queues them again"
            )
        counts = manifest["database"]["counts"]
        self.stdout.write(self.style.SUCCESS(
            f"Backup written to {result.path}: {counts.get('knowledge.document', 0)} documents, "
            f"{counts.get('auth.user', 0)} users, {manifest['uploads']['count']} uploaded files, "
            f"index {'included' if manifest['index']['included'] else 'not included'}."
        ))
