from django.core.management.base import BaseCommand, CommandError

from apps.maintenance.services import BackupError, documents_reindex, indexes_rebuild


class Command(BaseCommand):
    help = (
        "Ingest documents again through the normal ingest pipeline. --all rebuilds both indexes (every "
        "indexed manual, every resolved incident) in this process: stop the worker first, or use --queue."
    )

    def add_arguments(self, parser):
        parser.add_argument("ids", nargs="*", type=int, help="document ids")
        parser.add_argument("--all", action="store_true",
                            help="every indexed document, into an emptied collection, and the incidents index")
        parser.add_argument("--queue", action="store_true",
                            help="hand the documents to the worker instead of ingesting them here")

    def handle(self, *args, **options):
        if options["all"] == bool(options["ids"]):
            raise CommandError("give document ids or --all (not both)")
        say = self.stdout.write
        try:
            if options["all"] and not options["queue"]:
                documents, _ = indexes_rebuild(say=say)
            else:
                documents = documents_reindex(document_ids=options["ids"] or None, queue=options["queue"], say=say)
        except BackupError as exc:
            raise CommandError(str(exc)) from None
        if options["all"] and options["queue"]:
            self.stdout.write("The incidents index was not touched: run `manage.py reindex_incidents` "
                              "when the worker is idle.")
        failed = [d for d in documents if d.status == d.Status.FAILED]
        if failed:
            raise CommandError(f"{len(failed)} document(s) failed")
