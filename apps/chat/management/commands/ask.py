import json

from django.core.management.base import BaseCommand, CommandError

from apps.chat import services
from apps.chat.ask_request import AskRefused, UnknownAsset, ask_request_clean


class Command(BaseCommand):
    help = "Answer a question through the same pipeline as the chat (retrieval, prompt, model)."

    def add_arguments(self, parser):
        parser.add_argument("question")
        parser.add_argument("--json", action="store_true", help="print one JSON object")
        parser.add_argument("--asset", help="the asset id whose live readings to use (e.g. WXT536-01)")
        parser.add_argument("--context", help="raw log text, parsed like a telemetry payload (not stored)")
        parser.add_argument("--local-only", action="store_true",
                            help="only the local model answers, never the site model server")

    def handle(self, *args, **options):
        try:
            ask = ask_request_clean(user=None, question=options["question"], asset=options["asset"],
                                    context=options["context"], local_only=options["local_only"] or None)
        except UnknownAsset as exc:
            raise CommandError(f"unknown asset {exc.value!r}") from exc
        except AskRefused as exc:
            raise CommandError(str(exc)) from exc
        self._load_models()
        printing = not options["json"]

        def show(event):
            kind = event["type"]
            if kind == "live_context":
                self._print_live(event)
            elif kind == "citations":
                self._print_citations(event["items"])
            elif kind == "similar_incidents":
                self._print_similar(event["items"])
            elif kind == "extract":
                self._print_extract(event["items"])
            elif kind == "route":  # which model answers, and why; a restart voids the text so far
                prefix = "\n[restarted] " if event["restart"] else ""
                self.stderr.write(f"{prefix}[{event['label']}: {event['detail']}]")
            elif kind == "token":
                self.stdout.write(event["text"], ending="")
                self.stdout.flush()

        conversation = services.ask_conversation(user=None, ask=ask)
        result = services.answer_result(
            question=ask.question,
            conversation=conversation,
            asset=ask.asset,
            context_text=ask.context_text,
            on_event=show if printing else None,
        )
        timings = result["timings"]
        if options["json"]:
            self.stdout.write(json.dumps(result, ensure_ascii=False))
        else:
            self.stdout.write("")
            parts = [f"retrieval {timings.get('retrieval_ms')} ms"]
            if timings.get("ttft_ms") is not None:  # no model ran when the narrative is off
                parts += [f"first token {timings['ttft_ms']} ms", f"{timings.get('tokens_per_s')} tok/s"]
            self.stderr.write(f"[{' · '.join([*parts, result['status']])}]")
        if "error" in result:
            self.stderr.write(f"error: {result.get('error_code')}: {result['error']}")
            raise CommandError("the answer failed")

    def _load_models(self):
        """Load models before the clock starts, so timings describe answering, as in the app."""
        from apps.knowledge.vector_index import get_vector_index
        from models.errors import ModelUnavailable
        from models.llm import get_language_model

        get_vector_index().fresh().lexical_stats()
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

    def _print_extract(self, items):
        if not items:
            return
        self.stdout.write("From the manuals:")
        for item in items:
            self.stdout.write(f"  {item['text']} [{item['n']}]")
        self.stdout.write("")

    def _print_similar(self, items):
        if not items:
            return
        self.stdout.write("Similar past incidents:")
        for s in items:
            self.stdout.write(f"  #{s['id']} {s['title']} (score {s['score']:.2f}) — cause: {s['cause']}; remedy: {s['remedy']}")
        self.stdout.write("")
