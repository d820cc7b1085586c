import json

from django.core.management.base import BaseCommand, CommandError

from apps.chat import services


class Command(BaseCommand):
    help = "Answer a question through the same pipeline as the chat (retrieval, prompt, model)."

    def add_arguments(self, parser):
        parser.add_argument("question")
        parser.add_argument("--json", action="store_true", help="print one JSON object")
        parser.add_argument("--asset", help="the asset id whose live readings to use (e.g. WXT536-01)")
        parser.add_argument("--context", help="raw log text, parsed like a telemetry payload (not stored)")

    def handle(self, *args, **options):
        from apps.assets.models import Asset

        asset = None
        if options["asset"]:
            asset = Asset.objects.filter(asset_id=options["asset"]).first()
            if asset is None:
                raise CommandError(f"unknown asset {options['asset']!r}")
        self._load_models()
        live = {}
        try:
            conversation = services.conversation_for(user=None, title=options["question"])
            events = services.answer_stream(
                question=options["question"], conversation=conversation, asset=asset, context_text=options["context"]
            )
            citations, pieces, done, errors = [], [], None, []
            for event in events:
                kind = event["type"]
                if kind == "live_context":
                    live = event
                    if not options["json"]:
                        self._print_live(event)
                if kind == "citations":
                    citations = event["items"]
                    if not options["json"]:
                        self._print_citations(citations)
                elif kind == "token":
                    pieces.append(event["text"])
                    if not options["json"]:
                        self.stdout.write(event["text"], ending="")
                        self.stdout.flush()
                elif kind == "error":
                    errors.append(event)
                elif kind == "done":
                    done = event
        except (services.InvalidQuestion, services.InvalidContext) as exc:
            raise CommandError(str(exc)) from exc
        timings = done["timings"] if done else {}
        if options["json"]:
            result = {
                "answer": done["answer"] if done else "".join(pieces),
                "citations": [
                    {"document": c["document"], "page": c["page"], "score": c["score"], "text": c["text"]}
                    for c in citations
                ],
                "timings": {
                    "retrieval_ms": timings.get("retrieval_ms"),
                    "ttft_ms": timings.get("ttft_ms"),
                    "tokens_per_s": timings.get("tokens_per_s"),
                },
                "status": done["status"] if done else "failed",
                "findings": [
                    {"rule": f["rule"], "severity": f["severity"], "message": f["message"], "sensor": f["sensor"]}
                    for f in live.get("findings", [])
                ],
                "readings": live.get("readings", {}),
            }
            if errors:
                result["error"] = errors[-1]["detail"]
            self.stdout.write(json.dumps(result, ensure_ascii=False))
        else:
            self.stdout.write("")
            if timings:
                self.stderr.write(
                    f"[retrieval {timings.get('retrieval_ms')} ms · first token {timings.get('ttft_ms')} ms · "
                    f"{timings.get('tokens_per_s')} tok/s · {done['status']}]"
                )
        if errors:
            for e in errors:
                self.stderr.write(f"error: {e['code']}: {e['detail']}")
            raise CommandError("the answer failed")

    def _load_models(self):
        """Load models before the clock starts, so timings describe answering, as in the app."""
        from apps.knowledge.vector_index import get_vector_index
        from models.errors import ModelUnavailable
        from models.llm import get_language_model

        get_vector_index()
        try:
            get_language_model()
        except ModelUnavailable:
            pass  # reported by the pipeline, with the citations still shown

    def _print_live(self, live):
        readings = ", ".join(f"{k}={v['value']}{v['unit']}" for k, v in live["readings"].items())
        self.stdout.write(f"Live context ({live.get('asset') or 'pasted log'}): {readings}")
        for f in live["findings"]:
            self.stdout.write(f"  [{f['severity']}] {f['message']}")
        self.stdout.write("")

    def _print_citations(self, citations):
        if not citations:
            self.stdout.write("(no relevant passage in the manuals)\n")
            return
        for c in citations:
            self.stdout.write(f"[{c['n']}] {c['document']}, page {c['page']} (score {c['score']:.2f})")
        self.stdout.write("")
