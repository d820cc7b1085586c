"""Import sites, assets and sensors from a YAML or CSV file (apps/assets/importing.py)."""
from django.core.management.base import BaseCommand, CommandError

from apps.assets.importing import AssetImportError, assets_import


class Command(BaseCommand):
    help = "Create or update sites, assets and their sensors from a YAML or CSV file (safe to run again)."

    def add_arguments(self, parser):
        parser.add_argument("file", help="a .yaml/.yml or .csv file; see docs/telemetry.md for the formats")
        parser.add_argument("--dry-run", action="store_true", help="check and report, write nothing")

    def handle(self, *args, **options):
        try:
            result = assets_import(options["file"], dry_run=options["dry_run"])
        except AssetImportError as exc:
            raise CommandError(f"{len(exc.errors)} problem(s), nothing imported:\n  " + "\n  ".join(exc.errors)) from None
        for warning in result.warnings:
            self.stderr.write(f"warning: {warning}")
        prefix = "dry run, nothing written: " if options["dry_run"] else ""
        self.stdout.write(self.style.SUCCESS(prefix + result.summary()))
