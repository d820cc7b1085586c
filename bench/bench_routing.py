#!/usr/bin/env python
"""Routing: TTFT and tokens/s per route, and the fall back when the site server dies mid-answer.

    .venv/bin/python bench/bench_routing.py --runs 3

What runs (docs/benchmarks.md, "Routing: the local model and a site model server"):

* the answer pipeline (``apps.chat.services.answer_stream``) in this process, on the real stack: a
  temporary data directory, the SmartEVSE manual ingested (MiniLM, embedded Chroma), the bundled
  GGUF in process as the local model, narrative on;
* a site server: ``scripts/model_server.py`` (llama-cpp-python's OpenAI-compatible server) on
  127.0.0.1 with the **same** GGUF and the same thread count, so the two routes differ only by the
  route (an HTTP server in another process vs. the model in process), not by the model;
* arms, alternated per question (the same sequence of prompts reaches each model instance, so
  their KV caches reuse the same prefixes): **local** (a "local only" conversation), **site**
  (a public question, sent to the server), and **fallback** (another question, so that neither
  model has its prompt cached): the server is killed (SIGKILL) at the site answer's first token and
  restarted afterwards, then warmed with one untimed request (its weights paged in, the system
  rules in its cache, as for the local model); measured from the kill to the local model's first
  token (wall clock) and the app's own ``fallback_ms`` (giving up on the server → first local
  token).

TTFT is question received → first token of the answer that stands (``timings.ttft_ms``);
model TTFT is the model asked → its first token; tokens/s is after the first token. Medians over
``--runs`` × the questions. The machine is shared: the load average is printed with the results.
"""
from __future__ import annotations

import argparse
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    REPO,
    Children,
    apply_environment,
    bench_environment,
    exit_on_sigterm,
    fmt,
    load_average,
    machine_lines,
    median,
    package_versions,
    table,
)

MANUAL = REPO.parent / "shared" / "data" / "manuals" / "SmartEVSE_v3_Installation_Manual_v1.01_sw3.00.pdf"
QUESTIONS = [
    "What does ERROR HIGH TEMP mean and when does charging resume?",
    "The SmartEVSE shows ERROR NO SERIAL COM CHECK WIRING. What should I check?",
    "How do I connect the DSIEC-ELB lock to the SmartEVSE?",
]
# The fall back's questions are others: the local model then starts, as it would in use, without
# the same prompt in its KV cache (llama.cpp reuses the longest prefix of the previous prompt).
FALLBACK_QUESTIONS = [
    "What is the maximum charge current I can set on the SmartEVSE?",
    "How do I set the SmartEVSE to smart mode with a mains meter?",
    "What does the LED of the SmartEVSE show while charging?",
]
WARMUP = "Warm-up: how is the SmartEVSE mounted?"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SiteServer:
    def __init__(self, children: Children, threads: int, log_dir: Path):
        self.children, self.threads, self.log_dir = children, threads, log_dir
        self.proc = None
        self.port = free_port()
        self.starts = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def warm(self) -> None:
        """One untimed request with the app's system rules: a fresh server pages its weights in and
        holds a prompt that shares only the rules with the next question, as in steady use."""
        import httpx

        from apps.chat.prompting import SYSTEM_RULES

        body = {"model": "default", "max_tokens": 1, "messages": [
            {"role": "system", "content": SYSTEM_RULES}, {"role": "user", "content": WARMUP}]}
        httpx.post(f"{self.url}/chat/completions", json=body, timeout=300).raise_for_status()

    def start(self) -> float:
        import httpx

        started = time.perf_counter()
        self.starts += 1
        log = open(self.log_dir / f"server-{self.starts}.log", "wb")
        self.proc = self.children.start(
            "site", [sys.executable, str(REPO / "scripts" / "model_server.py"), "--host", "127.0.0.1",
                     "--port", str(self.port), "--n_threads", str(self.threads), "--n_threads_batch",
                     str(self.threads), "--logits_all", "False"],
            stdout=log, stderr=subprocess.STDOUT, cwd=str(REPO),
        )
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"model server exited: see {log.name}")
            try:
                if httpx.get(f"{self.url}/models", timeout=1).status_code == 200:
                    return time.perf_counter() - started
            except httpx.HTTPError:
                time.sleep(0.3)
        raise SystemExit("model server did not start")

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None:
            self.children.stop(self.proc)


def ask(question: str, *, local_only: bool, on_token=None) -> dict:
    from apps.chat import services

    conversation = services.conversation_for(user=None, title="bench")
    if local_only:
        services.conversation_local_only_set(conversation=conversation, local_only=True)
    result = {"routes": [], "tokens_after_restart": None}
    for event in services.answer_stream(question=question, conversation=conversation):
        if event["type"] == "route":
            result["routes"].append((event["via"], event["reason"]))
            result["route_at"] = time.perf_counter()
        elif event["type"] == "token":
            now = time.perf_counter()
            if on_token is not None:
                on_token(now)
            if len(result["routes"]) == 2 and result["tokens_after_restart"] is None:
                result["tokens_after_restart"] = now
        elif event["type"] == "done":
            result["done"] = event
    return result


def progress(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def _brief(t: dict) -> str:
    return f"ttft {t.get('ttft_ms')} ms, model ttft {t.get('model_ttft_ms')} ms, {t.get('tokens_per_s')} tok/s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2, help="llama.cpp threads of each model (both routes)")
    parser.add_argument("--max-tokens", type=int, default=120)
    args = parser.parse_args()
    exit_on_sigterm()
    if not MANUAL.exists():
        raise SystemExit(f"manual not found: {MANUAL}")

    data_dir = Path(tempfile.mkdtemp(prefix="bench-routing-"))
    env = bench_environment(
        data_dir,
        NANOSENTRI_LLM_BACKEND="llamacpp", NANOSENTRI_EMBEDDING_BACKEND="sentence-transformers",
        NANOSENTRI_VECTOR_STORE="chroma", NANOSENTRI_LLM_NARRATIVE="1",
        NANOSENTRI_LLM_THREADS=str(args.threads), NANOSENTRI_LLM_BATCH_THREADS=str(args.threads),
        NANOSENTRI_LLM_MAX_TOKENS=str(args.max_tokens), NANOSENTRI_DEFAULT_PRIVACY="public",
        NANOSENTRI_SITE_LLM_FIRST_TOKEN_TIMEOUT_S="120", NANOSENTRI_SITE_LLM_TIMEOUT_S="60",
        NANOSENTRI_SITE_LLM_RETRY_S="0", NANOSENTRI_DEMO="0",
    )
    children = Children()
    server = SiteServer(children, args.threads, data_dir)
    env["NANOSENTRI_SITE_LLM_URL"] = server.url
    apply_environment(env)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from apps.knowledge.services import document_add_path, document_ingest

    document, _ = document_add_path(path=MANUAL)
    document_ingest(document_id=document.pk)
    from apps.knowledge.retrieval import passages_retrieve

    for question in QUESTIONS + FALLBACK_QUESTIONS:  # each is answered by a model, not "not covered"
        if not passages_retrieve(question).passages:
            raise SystemExit(f"not covered by the manual: {question!r}")
    load_before = load_average()
    rows = {"local": [], "site": [], "fallback": []}
    try:
        server.start()
        ask(WARMUP, local_only=True)  # loads the local model
        ask(WARMUP, local_only=False)
        for run in range(args.runs):
            for question, other in zip(QUESTIONS, FALLBACK_QUESTIONS):
                order = ["local", "site"] if run % 2 == 0 else ["site", "local"]
                for arm in order:
                    result = ask(question, local_only=arm == "local")
                    assert result["routes"][0][0] == arm, result["routes"]
                    rows[arm].append(result["done"]["timings"])
                    progress(f"run {run + 1} {arm}: {_brief(result['done']['timings'])}")
                # The fall back: kill the server at the site answer's first token.
                killed = []

                def on_token(now):
                    if not killed:
                        server.kill()
                        killed.append(time.perf_counter())

                result = ask(other, local_only=False, on_token=on_token)
                done = result["done"]
                assert result["routes"] == [("site", "site"), ("local", "site_failed")], result["routes"]
                assert done["status"] == "completed", done["status"]
                timings = dict(done["timings"])
                timings["kill_to_local_token_ms"] = round((result["tokens_after_restart"] - killed[0]) * 1000, 1)
                rows["fallback"].append(timings)
                progress(f"run {run + 1} fallback: {_brief(timings)} kill→local {timings['kill_to_local_token_ms']}")
                server.start()
                server.warm()
    finally:
        server.stop()
        children.stop_all()
        shutil.rmtree(data_dir, ignore_errors=True)
    load_after = load_average()

    def m(arm, key):
        return median([t.get(key) for t in rows[arm]])

    print("## Routing: the local model and a site model server (issue 12)\n")
    print("`.venv/bin/python bench/bench_routing.py " + " ".join(sys.argv[1:]) + "`\n")
    print("\n".join(machine_lines()))
    print(f"- load average before the timed runs: {load_before}; after: {load_after} (the machine is shared)")
    print(f"- {package_versions('llama_cpp_python', 'Django')}; {args.threads} llama.cpp threads per model;"
          f" max {args.max_tokens} tokens; {args.runs} runs × {len(QUESTIONS)} questions per arm\n")
    headers = ["Route", "n", "TTFT ms (median)", "model TTFT ms", "tokens/s", "tokens"]
    out = []
    for arm in ("local", "site"):
        out.append([arm, len(rows[arm]), fmt(m(arm, "ttft_ms")), fmt(m(arm, "model_ttft_ms")),
                    fmt(m(arm, "tokens_per_s"), 2), fmt(m(arm, "tokens"), 0)])
    print(table(headers, out))
    print()
    # The load of a shared machine moves within a run: the two routes answered each question back to
    # back, so the ratio of each such pair is compared under the same load; their median is reported.
    def paired(key, rows_a="site", rows_b="local"):
        ratios = [a[key] / b[key] for a, b in zip(rows[rows_a], rows[rows_b]) if a.get(key) and b.get(key)]
        return median(ratios), (min(ratios) if ratios else float("nan")), (max(ratios) if ratios else float("nan"))

    for label, key in (("TTFT", "ttft_ms"), ("model TTFT", "model_ttft_ms"), ("tokens/s", "tokens_per_s")):
        mid, low, high = paired(key)
        print(f"- site / local {label}, median of the {len(rows['site'])} same-question pairs: × {mid:.2f} "
              f"(range {low:.2f}–{high:.2f})")
    print(f"- fall back (n = {len(rows['fallback'])}): server killed at the site answer's first token → "
          f"the local model's first token: median {fmt(m('fallback', 'kill_to_local_token_ms'))} ms "
          f"(the app's `fallback_ms`, giving up → first local token: {fmt(m('fallback', 'fallback_ms'))} ms); "
          f"discarded tokens median {fmt(m('fallback', 'discarded_tokens'), 0)}; "
          f"question → first token of the answer that stands {fmt(m('fallback', 'ttft_ms'))} ms")
    detect = [t["kill_to_local_token_ms"] - t["fallback_ms"] for t in rows["fallback"] if t.get("fallback_ms")]
    mid, low, high = paired("model_ttft_ms", "fallback", "local")
    print(f"- the kill seen (kill → giving up on the server): median {fmt(median(detect), 2)} ms; the local "
          f"model's TTFT after a fall back / its TTFT on the local route in the same step: × {mid:.2f} "
          f"(range {low:.2f}–{high:.2f})")
    for arm in ("local", "site", "fallback"):
        print(f"\n<!-- {arm}: " + "; ".join(
            f"ttft {t.get('ttft_ms')} model_ttft {t.get('model_ttft_ms')} tps {t.get('tokens_per_s')} "
            f"fallback {t.get('fallback_ms')} kill {t.get('kill_to_local_token_ms')}" for t in rows[arm]) + " -->")


if __name__ == "__main__":
    main()
