import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from apps.chat import evaluation


class Command(BaseCommand):
    help = (
        "Ask every question of a question set through the answer pipeline and report right page at 1 "
        "and 3, MRR, not-covered precision/recall, key facts in the extract and the answer, ungrounded "
        "items and retrieval time. The manuals must be indexed first (manage.py ingest … --wait)."
    )

    def add_arguments(self, parser):
        parser.add_argument("questions", type=Path, help="a question set (see bench/questions/library.json)")
        parser.add_argument("--json", action="store_true", help="print one JSON object: summary and outcomes")
        parser.add_argument("--quiet", action="store_true", help="only the summary")

    def handle(self, *args, **options):
        try:
            questions = evaluation.questions_load(options["questions"])
        except evaluation.QuestionSetError as exc:
            raise CommandError(str(exc)) from exc
        from apps.knowledge.models import Document

        if not Document.objects.filter(status=Document.Status.INDEXED).exists():
            raise CommandError("no manual is indexed: run manage.py ingest <files> --wait first")
        self._warm_up()
        show = None
        if not options["json"] and not options["quiet"]:
            show = lambda outcome: self.stdout.write(evaluation.outcome_line(outcome))  # noqa: E731
        outcomes = evaluation.evaluate(questions, user=None, on_outcome=show)
        summary = evaluation.summarize(outcomes)
        if options["json"]:
            payload = {"summary": summary, "outcomes": [evaluation.outcome_dict(o) for o in outcomes]}
            self.stdout.write(json.dumps(payload, ensure_ascii=False))
            return
        width = max(len(k) for k in summary)
        self.stdout.write("")
        for key, value in summary.items():
            self.stdout.write(f"{key:<{width}}  {value}")

    def _warm_up(self):
        """Load the models and the index first, so retrieval times are those of a warm web process."""
        from apps.knowledge.vector_index import get_vector_index
        from models.errors import ModelUnavailable
        from models.llm import get_language_model

        get_vector_index().fresh().lexical_stats()
        get_vector_index().embedder.embed(["warm up"])
        try:
            get_language_model()
        except ModelUnavailable:
            pass  # every answer then reports it; retrieval is still measured
