import time
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from apps.knowledge import services
from apps.knowledge.models import Document


def _line(d: Document) -> str:
    pages = d.page_count if d.page_count is not None else "-"
    chunks = d.chunk_count if d.chunk_count is not None else "-"
    line = f"{d.pk}\t{d.original_name}\t{d.status}\tpages={pages}\tchunks={chunks}"
    return f"{line}\t{d.error}" if d.error else line


class Command(BaseCommand):
    help = "Queue files for ingestion; with --wait, block until each is indexed or failed."

    def add_arguments(self, parser):
        parser.add_argument("paths", nargs="+", type=Path)
        parser.add_argument("--wait", action="store_true", help="wait for the worker; exit 1 if any failed")
        parser.add_argument("--timeout", type=float, default=1800, help="seconds to wait at most (with --wait)")
        parser.add_argument("--reindex", action="store_true", help="re-index files already uploaded")
        parser.add_argument(
            "--new-version", choices=["keep", "replace", "ask"], default="keep",
            help="a file that looks like a new version of a current manual: keep both (default), replace the "
            "current one once indexed, or ask (leave it awaiting a choice on the documents page)",
        )

    def handle(self, *args, **options):
        documents, rejected = [], 0
        for path in options["paths"]:
            try:
                document, created = services.document_add_path(path=path, new_version=options["new_version"])
            except services.UploadRejected as exc:
                self.stderr.write(f"rejected\t{exc}")
                rejected += 1
                continue
            if not created and (options["reindex"] or document.status == Document.Status.FAILED):
                services.document_reindex(document=document)
                document.refresh_from_db()
            documents.append(document)
        if options["wait"]:
            documents = self._wait(documents, options["timeout"])
        for d in documents:
            self.stdout.write(_line(d))
        failed = sum(d.status == Document.Status.FAILED for d in documents)
        if options["wait"] and (failed or rejected):
            raise CommandError(f"{failed + rejected} file(s) failed")

    def _wait(self, documents, timeout):
        deadline = time.monotonic() + timeout
        pending = {d.pk for d in documents}
        while pending:
            done = Document.objects.filter(pk__in=pending).exclude(status__in=Document.IN_PROGRESS)
            pending -= set(done.values_list("pk", flat=True))
            if not pending:
                break
            if time.monotonic() > deadline:
                raise CommandError(f"timed out waiting for documents {sorted(pending)}; is the worker running?")
            time.sleep(0.5)
        return list(Document.objects.filter(pk__in=[d.pk for d in documents]).order_by("pk"))
