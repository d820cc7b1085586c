#!/usr/bin/env python
"""Chat latency: the real app over its websocket vs plain llama-cpp-python, on the same prompt.

    .venv/bin/python bench/bench_chat.py --runs 5

What runs (see docs/benchmarks.md for the reading of the results):

* **app**: the real ASGI app (daphne subprocess on 127.0.0.1, a free port, a temporary
  NANOSENTRI_DATA_DIR, llama.cpp + sentence-transformers + embedded Chroma, NANOSENTRI_WARMUP=1).
  The manuals are ingested first through ``apps.knowledge.services`` (in this process,
  before the server starts); a technician logs in with a real login POST; each question is
  sent as ``{"type": "ask"}`` on /ws/chat/ and the frames are timed on arrival:
  send → ``citations``, send → first ``token`` (TTFT), tokens/s between first and last token.
* **raw**: ``llama_cpp.Llama`` with the same GGUF, n_ctx, n_threads, n_threads_batch,
  temperature, repeat_penalty and max_tokens as ``models/llm/llamacpp.py`` + settings, streamed
  with ``create_chat_completion(stream=True)`` on the SAME chat messages: they are built with
  ``apps.chat.prompting.build_prompt`` over the passages ``apps.knowledge.retrieval.passages_search``
  returns, and after every app answer the bench checks that the citations the app stored
  (Citation rows) are those passages and that the app's ``prompt_tokens`` is the same count.
  TTFT = call → first content chunk.
* **wrapper** (diagnostic, not a goal): the app's own ``LlamaCppLanguageModel.stream_chat``
  in process, without server, database or websocket: it separates the model wrapper's cost
  (its logits processor) from the server's.

Fairness:
* The raw and wrapper models live in ONE helper subprocess that sits idle (blocked on a pipe)
  while the app answers, and the app server sits idle while they run: never two generations
  at once on the 2 cores. The CPU time each idle side used meanwhile is reported.
* llama.cpp reuses the KV cache for the longest common prefix with the previous prompt of the
  same Llama instance. Each arm has its own persistent instance (as the app does) and every arm
  gets the same sequence of prompts: one untimed warm-up question, then the questions in the
  same order, never the same question twice in a row. So before question i every instance holds
  question i-1's prompt and reuses exactly the same prefix (the system rules and whatever
  passages the two prompts share); the reused token count is reported.
* Arms alternate, with the order rotated every repetition; medians over ``--runs``.
"""
from __future__ import annotations

import argparse
import ast
import asyncio
import dataclasses
import json
import os
import re
import secrets
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
    cpu_seconds,
    exit_on_sigterm,
    fmt,
    load_average,
    machine_lines,
    median,
    package_versions,
    table,
)

WARMUP_QUESTION = "How do I connect the DSIEC-ELB lock to the SmartEVSE?"
QUESTIONS = [
    "What does ERROR HIGH TEMP mean and when does charging resume?",
    "The Ender-3 display shows MAX temp. What causes it and how do I fix it?",
    "The SmartEVSE shows ERROR NO SERIAL COM CHECK WIRING. What should I check?",
    "Filament does not stick to the hot bed of the Ender-3. What should I do?",
]
MANUAL_ORDER = ("SmartEVSE", "Creality_Ender-3_Trouble", "Creality_Ender-3_Quick")

GOAL_TTFT_RATIO = 1.10
GOAL_TPS_RATIO = 0.95
GOAL_CITATIONS_MS = 1000.0


# =============================================================================================
# The helper subprocess: raw llama_cpp.Llama (and the app's wrapper, for diagnosis)
# =============================================================================================


def _app_llama_call_arguments() -> dict:
    """Keyword arguments models/llm/llamacpp.py passes to Llama(...) and create_chat_completion(...).

    Read from the source (AST), so the baseline follows the app if someone changes them; any
    argument the baseline does not mirror is reported.
    """
    source = (REPO / "models" / "llm" / "llamacpp.py").read_text()
    found: dict[str, dict] = {"Llama": {}, "create_chat_completion": {}}
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in found:
            for kw in node.keywords:
                if kw.arg is None:
                    continue
                found[node.func.attr][kw.arg] = kw.value.value if isinstance(kw.value, ast.Constant) else ast.unparse(kw.value)
    return found


def _common_prefix(a, b) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def raw_worker() -> None:
    """JSON lines on stdin → JSON lines on the original stdout (fd 1 goes to stderr meanwhile)."""
    out = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # anything llama.cpp or a library prints must not corrupt the protocol

    import django

    django.setup()
    import llama_cpp
    from django.conf import settings

    from apps.chat.prompting import build_prompt
    from ingest.index import Passage
    from models.llm.base import ChatMessage
    from models.llm.llamacpp import LlamaCppLanguageModel, _handler_from_template
    from models.paths import language_model_path

    app_args = _app_llama_call_arguments()
    completion_args = app_args["create_chat_completion"]
    repeat_penalty = completion_args.get("repeat_penalty")
    if not isinstance(repeat_penalty, (int, float)):
        repeat_penalty = getattr(settings, "NANOSENTRI_LLM_REPEAT_PENALTY", None)
    if not isinstance(repeat_penalty, (int, float)):
        raise SystemExit(f"cannot read the app's repeat_penalty from models/llm/llamacpp.py: {completion_args}")
    mirrored = {"messages", "max_tokens", "temperature", "repeat_penalty", "stream", "logits_processor"}
    not_mirrored = sorted(set(completion_args) - mirrored)
    llama_mirrored = {"model_path", "n_ctx", "n_threads", "n_threads_batch", "logits_all", "verbose"}
    not_mirrored += sorted(f"Llama({k})" for k in set(app_args["Llama"]) - llama_mirrored)

    path = language_model_path()
    config = {
        "model_path": str(path),
        "n_ctx": settings.NANOSENTRI_LLM_CONTEXT,
        "n_threads": settings.NANOSENTRI_LLM_THREADS,
        "n_threads_batch": settings.NANOSENTRI_LLM_BATCH_THREADS,
        "temperature": settings.NANOSENTRI_LLM_TEMPERATURE,
        "max_tokens": settings.NANOSENTRI_LLM_MAX_TOKENS,
        "repeat_penalty": repeat_penalty,
        "chat_format": settings.NANOSENTRI_LLM_CHAT_FORMAT or "(from the GGUF)",
        "chat_template": settings.NANOSENTRI_LLM_CHAT_TEMPLATE or "(from the GGUF)",
        "app_arguments_not_mirrored": not_mirrored,
        "llama_cpp_python": llama_cpp.__version__,
    }
    kwargs = {"chat_format": settings.NANOSENTRI_LLM_CHAT_FORMAT} if settings.NANOSENTRI_LLM_CHAT_FORMAT else {}
    raw = llama_cpp.Llama(
        model_path=str(path),
        n_ctx=config["n_ctx"],
        n_threads=config["n_threads"],
        n_threads_batch=config["n_threads_batch"],
        logits_all=False,
        verbose=False,
        **kwargs,
    )
    if settings.NANOSENTRI_LLM_CHAT_TEMPLATE:
        raw.chat_handler = _handler_from_template(raw, settings.NANOSENTRI_LLM_CHAT_TEMPLATE)
    # The app's own wrapper, built exactly as models.llm._build does: it counts prompt tokens for
    # build_prompt (as in the app) and is the "wrapper" diagnostic arm.
    wrapper = LlamaCppLanguageModel(
        path,
        context_window=settings.NANOSENTRI_LLM_CONTEXT,
        n_threads=settings.NANOSENTRI_LLM_THREADS,
        n_threads_batch=settings.NANOSENTRI_LLM_BATCH_THREADS,
        chat_format=settings.NANOSENTRI_LLM_CHAT_FORMAT,
        chat_template_file=settings.NANOSENTRI_LLM_CHAT_TEMPLATE,
    )

    def reply(obj) -> None:
        out.write(json.dumps(obj) + "\n")

    def timed(stream_pieces, llm) -> dict:
        before = llm._input_ids[: llm.n_tokens].tolist()
        started = time.perf_counter()
        first = last = None
        count = 0
        pieces = []
        max_gap = 0.0
        for piece in stream_pieces():
            now = time.perf_counter()
            if first is None:
                first = now
            else:
                max_gap = max(max_gap, now - last)
            last = now
            count += 1
            pieces.append(piece)
        ended = time.perf_counter()
        after = llm._input_ids[: llm.n_tokens].tolist()
        return {
            "ttft_ms": (first - started) * 1000 if first is not None else None,
            "tokens": count,
            "tokens_per_s": (count - 1) / (last - first) if count > 1 and last > first else None,
            "total_ms": (ended - started) * 1000,
            "max_gap_ms": max_gap * 1000,
            "reused_prefix": _common_prefix(before, after),
            "text": "".join(pieces),
        }

    reply({"type": "ready", "config": config})
    for line in sys.stdin:
        request = json.loads(line)
        cmd = request["cmd"]
        if cmd == "quit":
            break
        if cmd == "prompt":
            passages = [Passage(**p) for p in request["passages"]]
            prompt = build_prompt(request["question"], passages, wrapper, max_new_tokens=config["max_tokens"])
            reply(
                {
                    "messages": [{"role": m.role, "content": m.content} for m in prompt.messages],
                    "prompt_tokens": prompt.prompt_tokens,
                    "trimmed": prompt.trimmed,
                }
            )
        elif cmd == "run" and request["arm"] == "raw":
            messages = request["messages"]

            def raw_pieces():
                stream = raw.create_chat_completion(
                    messages=messages,
                    max_tokens=config["max_tokens"],
                    temperature=config["temperature"],
                    repeat_penalty=config["repeat_penalty"],
                    stream=True,
                )
                for chunk in stream:
                    piece = chunk["choices"][0]["delta"].get("content")
                    if piece:
                        yield piece

            reply(timed(raw_pieces, raw))
        elif cmd == "run" and request["arm"] == "wrapper":
            messages = [ChatMessage(m["role"], m["content"]) for m in request["messages"]]

            def wrapper_pieces():
                yield from wrapper.stream_chat(
                    messages,
                    max_tokens=config["max_tokens"],
                    temperature=config["temperature"],
                    should_stop=lambda: False,
                )

            reply(timed(wrapper_pieces, wrapper._llm))
        else:
            reply({"error": f"unknown request {request!r}"})


class RawWorker:
    def __init__(self, children: Children, env: dict, log_path: Path):
        self._log = open(log_path, "w")
        self.proc = children.start(
            "raw-worker",
            [sys.executable, str(Path(__file__).resolve()), "--raw-worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            env=env,
            cwd=str(REPO),
            text=True,
            bufsize=1,
        )
        ready = self._read()
        self.config = ready["config"]

    def _read(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the raw-model helper exited (code {self.proc.poll()}); see {self._log.name}")
        return json.loads(line)

    def call(self, **request) -> dict:
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        answer = self._read()
        if "error" in answer:
            raise RuntimeError(answer["error"])
        return answer


# =============================================================================================
# The app
# =============================================================================================


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def prepare_app_data(manuals: list[Path], questions: list[str]) -> tuple[str, dict, list[dict]]:
    """Migrate, create the demo users, ingest the manuals, and retrieve each question's passages."""
    import django

    django.setup()
    from django.core.management import call_command

    from apps.accounts.services import demo_users_ensure
    from apps.knowledge.models import Document
    from apps.knowledge.retrieval import passages_search
    from apps.knowledge.services import document_add_path, document_ingest

    call_command("migrate", interactive=False, verbosity=0)
    password = secrets.token_urlsafe(12)
    demo_users_ensure(password=password)
    ingested = []
    for path in manuals:
        started = time.perf_counter()
        document, _created = document_add_path(path=path)
        document = document_ingest(document_id=document.pk)
        if document is None or document.status != Document.Status.INDEXED:
            raise SystemExit(f"ingest of {path.name} failed: {getattr(document, 'error', 'gone')}")
        ingested.append(
            {"name": path.name, "pages": document.page_count, "chunks": document.chunk_count,
             "seconds": time.perf_counter() - started}
        )
    passages = {}
    for question in questions:
        try:  # an asset named in a question would add live sensor context to the app's prompt
            from apps.chat.services import live_context_for
        except ImportError:
            live_context_for = None
        if live_context_for is not None and live_context_for(question=question) is not None:
            raise SystemExit(f"{question!r} names an asset: the app would add live context; pick another question")
        found, _ms = passages_search(question)
        if not found:
            raise SystemExit(f"no passage retrieved for {question!r}: the app would answer without the model")
        passages[question] = [dataclasses.asdict(p) for p in found]
    return password, passages, ingested


def start_server(children: Children, env: dict, data_dir: Path, timeout: float) -> tuple[int, object, Path]:
    import httpx

    # Migrate again from a fresh process just before the server starts: the code may have moved
    # on (new migrations) since this process imported it.
    subprocess.run([sys.executable, "manage.py", "migrate", "--no-input", "-v", "0"], cwd=str(REPO), env=env, check=True)
    port = free_port()
    log_path = data_dir / "daphne.log"
    log = open(log_path, "w")
    server_env = {**env, "NANOSENTRI_WARMUP": "1", "PYTHONUNBUFFERED": "1", "LOG_LEVEL": "INFO"}
    proc = children.start(
        "daphne",
        [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "nanosentri_site.asgi:application"],
        stdout=log,
        stderr=log,
        env=server_env,
        cwd=str(REPO),
    )
    deadline = time.monotonic() + timeout
    healthy = False
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"daphne exited with code {proc.returncode}; see {log_path}")
        if not healthy:
            try:
                healthy = httpx.get(f"http://127.0.0.1:{port}/healthz/", timeout=2, trust_env=False).status_code == 200
            except httpx.HTTPError:
                pass
        text = log_path.read_text(errors="replace")
        if "model warm-up failed" in text:
            raise RuntimeError(f"the app could not load its models; see {log_path}")
        if healthy and "models ready" in text:
            return port, proc, log_path
        time.sleep(0.3)
    raise RuntimeError(f"the app was not ready within {timeout:.0f} s; see {log_path}")


def login(port: int, username: str, password: str) -> str:
    """A real login POST (CSRF token from the form); returns the Cookie header for the websocket."""
    import httpx

    base = f"http://127.0.0.1:{port}"
    with httpx.Client(base_url=base, follow_redirects=False, trust_env=False, timeout=30) as client:
        page = client.get("/login/")
        match = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
        if not match:
            raise RuntimeError("no CSRF token in the login form")
        response = client.post(
            "/login/",
            data={"username": username, "password": password, "csrfmiddlewaretoken": match.group(1)},
            headers={"Referer": f"{base}/login/"},
        )
        if response.status_code != 302 or "sessionid" not in client.cookies:
            raise RuntimeError(f"login failed: HTTP {response.status_code}")
        return "; ".join(f"{name}={value}" for name, value in client.cookies.items())


async def _ask(port: int, cookie: str, question: str, timeout: float, conversation: int | None = None) -> dict:
    """One question over /ws/chat/ (in ``conversation``, else a new one), its frames timed on arrival."""
    from websockets.asyncio.client import connect

    async with connect(
        f"ws://127.0.0.1:{port}/ws/chat/",
        origin=f"http://127.0.0.1:{port}",
        additional_headers={"Cookie": cookie},
        proxy=None,
        max_size=None,
    ) as ws:
        frame = json.loads(await asyncio.wait_for(ws.recv(), timeout))
        if frame.get("type") != "ready":
            raise RuntimeError(f"expected ready, got {frame}")
        result = {"citations_ms": None, "ttft_ms": None, "tokens": 0, "queued": 0, "errors": []}
        first = last = None
        sent = time.perf_counter()
        ask = {"type": "ask", "question": question}
        if conversation is not None:
            ask["conversation"] = conversation
        await ws.send(json.dumps(ask))
        while True:
            raw = await asyncio.wait_for(ws.recv(), timeout)
            now = time.perf_counter()
            event = json.loads(raw)
            kind = event["type"]
            if kind == "accepted":
                result["conversation"] = event["conversation"]
            elif kind == "citations":
                result["citations_ms"] = (now - sent) * 1000
                result["citations"] = len(event["items"])
            elif kind == "token":
                if first is None:
                    first = now
                    result["ttft_ms"] = (now - sent) * 1000
                else:  # a stall in the stream shows as one long pause (frames come every 50 ms)
                    result["max_gap_ms"] = max(result.get("max_gap_ms", 0.0), (now - last) * 1000)
                last = now
                result["tokens"] += event.get("tokens", 1)  # a frame may carry several (apps/chat/streaming.py)
            elif kind == "queued":
                result["queued"] += 1
            elif kind == "error":
                result["errors"].append(f"{event.get('code')}: {event.get('detail')}")
                if event.get("code") not in ("model_unavailable", "generation_failed"):  # no `done` follows
                    raise RuntimeError(f"the app answered with an error: {result['errors'][-1]}")
            elif kind == "done":
                result["total_ms"] = (now - sent) * 1000
                result["status"] = event["status"]
                result["message"] = event["message"]
                result["server"] = event["timings"]
                result["text"] = event["answer"]
                break
        n = result["tokens"]
        result["tokens_per_s"] = (n - 1) / (last - first) if n > 1 and last > first else None
        return result


def app_ask(port: int, cookie: str, question: str, timeout: float, conversation: int | None = None) -> dict:
    return asyncio.run(_ask(port, cookie, question, timeout, conversation))


def check_same_prompt(app_result: dict, passages: list[dict], prompt: dict) -> str:
    """'ok' when the app cited exactly the passages the raw prompt was built from, with the same count."""
    from apps.chat.models import Citation

    rows = list(
        Citation.objects.filter(message_id=app_result["message"])
        .order_by("rank")
        .values_list("file_name", "page", "chunk_index", "text")
    )
    expected = [(p["file_name"], p["page"], p["chunk_index"], p["text"]) for p in passages]
    problems = []
    if rows != expected:
        problems.append("different passages")
    app_tokens = (app_result.get("server") or {}).get("prompt_tokens")
    if app_tokens != prompt["prompt_tokens"]:
        problems.append(f"prompt_tokens {app_tokens} vs {prompt['prompt_tokens']}")
    if app_result.get("status") != "completed" or app_result["errors"]:
        problems.append(f"status {app_result.get('status')} {app_result['errors']}")
    return "ok" if not problems else "MISMATCH: " + "; ".join(problems)


# =============================================================================================
# Main
# =============================================================================================


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="timed repetitions per arm (default 5)")
    parser.add_argument("--question", action="append", dest="questions",
                        help="a question to ask (repeat; at least 2, asked in turn). Default: 4 manual questions")
    parser.add_argument("--manuals", type=Path, default=None,
                        help="folder of PDF manuals (default: settings.NANOSENTRI_DEMO_MANUALS_DIR)")
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                        help="extra environment for BOTH arms (server and raw helper), e.g. "
                             "NANOSENTRI_LLM_THREADS=1 or OMP_WAIT_POLICY=PASSIVE (repeat)")
    parser.add_argument("--busy-cores", type=int, default=0, metavar="N",
                        help="run N CPU-burning subprocesses during the timed runs (both arms alike): "
                             "simulates a neighbour, e.g. the Celery worker embedding a manual")
    parser.add_argument("--no-wrapper", action="store_true", help="skip the diagnostic wrapper arm")
    parser.add_argument("--timeout", type=float, default=600, help="seconds to wait for the server / one answer")
    parser.add_argument("--json", type=Path, help="also write all measurements to this JSON file")
    parser.add_argument("--keep", action="store_true", help="keep the temporary data directory")
    parser.add_argument("--raw-worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    args.questions = args.questions or QUESTIONS
    for item in args.env:
        if "=" not in item:
            parser.error(f"--env takes KEY=VALUE, not {item!r}")
    if len(args.questions) < 2:
        parser.error("give at least 2 questions: the same prompt twice in a row would be served from the KV cache")
    return args


def manual_paths(folder: Path | None) -> list[Path]:
    if folder is None:
        from django.conf import settings

        folder = Path(settings.NANOSENTRI_DEMO_MANUALS_DIR)
    paths = sorted(folder.glob("*.pdf"))
    if not paths:
        raise SystemExit(f"no PDF manuals in {folder}")

    def rank(p: Path):
        for i, prefix in enumerate(MANUAL_ORDER):
            if p.name.startswith(prefix):
                return (i, p.name)
        return (len(MANUAL_ORDER), p.name)

    return sorted(paths, key=rank)  # the SmartEVSE manual first


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.raw_worker:
        raw_worker()
        return 0
    exit_on_sigterm()
    data_dir = Path(tempfile.mkdtemp(prefix="nanosentri-bench-chat-"))
    env = bench_environment(
        data_dir,
        NANOSENTRI_LLM_BACKEND="llamacpp",
        NANOSENTRI_EMBEDDING_BACKEND="sentence-transformers",
        NANOSENTRI_VECTOR_STORE="chroma",
        NANOSENTRI_LLM_NARRATIVE="1",  # the model's stream is what is measured (off by default in the app)
    )
    env.pop("NANOSENTRI_WARMUP", None)
    env.update(dict(item.split("=", 1) for item in args.env))
    apply_environment(env)
    children = Children()
    try:
        return run(args, env, data_dir, children)
    finally:
        children.stop_all()
        if args.keep:
            print(f"\n(kept {data_dir})", file=sys.stderr)
        else:
            shutil.rmtree(data_dir, ignore_errors=True)


def say(message: str) -> None:
    print(f"[bench_chat {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def run(args, env: dict, data_dir: Path, children: Children) -> int:
    header = machine_lines()
    loads = [load_average()]
    import django

    django.setup()
    manuals = manual_paths(args.manuals)
    all_questions = [WARMUP_QUESTION, *args.questions]
    say(f"data dir {data_dir}; ingesting {', '.join(p.name for p in manuals)}")
    password, passages, ingested = prepare_app_data(manuals, all_questions)

    say("starting the raw-model helper")
    worker = RawWorker(children, env, data_dir / "raw-worker.log")
    config = worker.config
    prompts = {q: worker.call(cmd="prompt", question=q, passages=passages[q]) for q in all_questions}

    say("starting the app (daphne, models loaded at start)")
    started = time.perf_counter()
    port, server, server_log = start_server(children, env, data_dir, args.timeout)
    say(f"app ready on port {port} after {time.perf_counter() - started:.1f} s")
    cookie = login(port, "technician", password)

    arms = ["app", "raw"] + ([] if args.no_wrapper else ["wrapper"])
    idle_cpu = {arm: 0.0 for arm in arms}  # CPU s the idle sides used while this arm ran

    def measure(arm: str, question: str) -> dict:
        idle_pid = worker.proc.pid if arm == "app" else server.pid
        busy_pid = server.pid if arm == "app" else worker.proc.pid
        idle_before, busy_before = cpu_seconds(idle_pid), cpu_seconds(busy_pid)
        if arm == "app":
            client_before = time.process_time()
            result = app_ask(port, cookie, question, args.timeout)
            result["client_cpu_s"] = time.process_time() - client_before  # the websocket client (this process)
            result["check"] = check_same_prompt(result, passages[question], prompts[question])
        else:
            result = worker.call(cmd="run", arm=arm, messages=prompts[question]["messages"])
        idle_cpu[arm] += cpu_seconds(idle_pid) - idle_before
        result["cpu_s"] = cpu_seconds(busy_pid) - busy_before  # CPU the answering process used
        return result

    say("warm-up (untimed): one answer per arm")
    warm = {arm: measure(arm, WARMUP_QUESTION) for arm in arms}
    if warm["app"]["check"] != "ok":
        say(f"warm-up prompt check: {warm['app']['check']}")
    for arm in arms:
        idle_cpu[arm] = 0.0

    burners = [
        children.start("burner", [sys.executable, "-c", "while True: pass"], stdin=subprocess.DEVNULL)
        for _ in range(args.busy_cores)
    ]
    runs = []
    for i in range(args.runs):
        question = args.questions[i % len(args.questions)]
        order = arms[i % len(arms):] + arms[: i % len(arms)]
        row = {"run": i + 1, "question": question, "order": order, "load1": os.getloadavg()[0]}
        for arm in order:
            row[arm] = measure(arm, question)
        runs.append(row)
        app, raw = row["app"], row["raw"]
        say(
            f"run {i + 1}/{args.runs} ({' → '.join(order)}): TTFT app {fmt(app['ttft_ms'], 0)} ms / raw "
            f"{fmt(raw['ttft_ms'], 0)} ms; tok/s app {fmt(app['tokens_per_s'])} / raw {fmt(raw['tokens_per_s'])}; "
            f"citations {fmt(app['citations_ms'], 0)} ms; prompt check {app['check']}"
        )
    for burner in burners:
        children.stop(burner)
    loads.append(load_average())

    report = render(args, header, loads, config, ingested, prompts, runs, arms, idle_cpu, port)
    print(report)
    if args.json:
        args.json.write_text(
            json.dumps(
                {"config": config, "ingested": ingested, "loads": loads, "runs": runs, "idle_cpu_s": idle_cpu,
                 "prompts": {q: {"prompt_tokens": p["prompt_tokens"]} for q, p in prompts.items()}},
                indent=2, default=str,
            )
        )
    checks_ok = all(r["app"]["check"] == "ok" for r in runs)
    return 0 if checks_ok else 1


def render(args, header, loads, config, ingested, prompts, runs, arms, idle_cpu, port) -> str:
    def col(arm, key):
        return [r[arm][key] for r in runs]

    app_ttft, raw_ttft = median(col("app", "ttft_ms")), median(col("raw", "ttft_ms"))
    app_tps, raw_tps = median(col("app", "tokens_per_s")), median(col("raw", "tokens_per_s"))
    cit = col("app", "citations_ms")
    cit_med, cit_max = median(cit), max(c for c in cit if c is not None)
    ttft_ratio, tps_ratio = app_ttft / raw_ttft, app_tps / raw_tps

    def paired(key):
        ratios = [r["app"][key] / r["raw"][key] for r in runs if r["app"][key] and r["raw"][key]]
        return (min(ratios), max(ratios)) if ratios else (float("nan"), float("nan"))

    ttft_range, tps_range = paired("ttft_ms"), paired("tokens_per_s")

    def verdict(ok: bool, spread=None, goal=None) -> str:
        text = "PASS" if ok else "FAIL"
        if spread is not None and spread[0] <= goal <= spread[1]:
            text += " (noisy: per-run ratios span the goal)"
        return text

    lines = ["## Chat: app vs raw llama-cpp-python", ""]
    lines += header
    lines += [
        f"- load average at end: {loads[-1]}",
        f"- {package_versions('llama_cpp_python', 'Django', 'channels', 'daphne', 'websockets')}",
        f"- model: `{Path(config['model_path']).name}`, n_ctx {config['n_ctx']}, n_threads {config['n_threads']}, "
        f"n_threads_batch {config['n_threads_batch']}, temperature {config['temperature']}, "
        f"repeat_penalty {config['repeat_penalty']}, max_tokens {config['max_tokens']}, "
        f"chat format {config['chat_format']}",
        f"- manuals: " + ", ".join(f"{m['name']} ({m['pages']} p., {m['chunks']} chunks)" for m in ingested),
        f"- extra environment for both arms: {' '.join(args.env) or '(none)'}; "
        f"CPU-burning neighbours during the timed runs: {args.busy_cores}",
        f"- runs: {len(runs)} per arm after one untimed warm-up each, arms alternating "
        f"({', '.join(arms)}, order rotated every run); medians",
    ]
    if config["app_arguments_not_mirrored"]:
        lines.append(f"- WARNING: app arguments the raw baseline does not mirror: {config['app_arguments_not_mirrored']}")
    lines += [
        "",
        table(
            ["metric", "app", "raw", "ratio (app/raw)", "per-run ratios", "goal", "result"],
            [
                ["TTFT: send → first `token` / call → first chunk (ms, median)", fmt(app_ttft, 0), fmt(raw_ttft, 0),
                 fmt(ttft_ratio, 2), f"{fmt(ttft_range[0], 2)}–{fmt(ttft_range[1], 2)}", f"≤ {GOAL_TTFT_RATIO:.2f} × raw",
                 verdict(ttft_ratio <= GOAL_TTFT_RATIO, ttft_range, GOAL_TTFT_RATIO)],
                ["tokens/s over the stream (median)", fmt(app_tps), fmt(raw_tps), fmt(tps_ratio, 2),
                 f"{fmt(tps_range[0], 2)}–{fmt(tps_range[1], 2)}", f"≥ {GOAL_TPS_RATIO:.2f} × raw",
                 verdict(tps_ratio >= GOAL_TPS_RATIO, tps_range, GOAL_TPS_RATIO)],
                ["citations on screen: send → `citations` (ms, median / max)", f"{fmt(cit_med, 0)} / {fmt(cit_max, 0)}",
                 "—", "—", "—", f"< {GOAL_CITATIONS_MS:.0f} ms", verdict(cit_med < GOAL_CITATIONS_MS and cit_max < GOAL_CITATIONS_MS)],
            ],
        ),
        "",
        "Per run (ms; tok/s; `reused` = prompt tokens llama.cpp took from the KV cache of the previous prompt):",
        "",
    ]
    rows = []
    for r in runs:
        app, raw = r["app"], r["raw"]
        rows.append(
            [
                r["run"], r["question"][:48] + ("…" if len(r["question"]) > 48 else ""), " → ".join(r["order"]),
                fmt(r.get("load1"), 2),
                prompts[r["question"]]["prompt_tokens"], raw["reused_prefix"],
                fmt(app["citations_ms"], 0), fmt(app["ttft_ms"], 0), fmt(raw["ttft_ms"], 0),
                fmt(app["tokens_per_s"]), fmt(raw["tokens_per_s"]), f"{app['tokens']} / {raw['tokens']}",
                "yes" if app.get("text", "").strip() == raw["text"].strip() else "no",
                app["check"],
            ]
        )
    lines.append(
        table(
            ["run", "question", "order", "load (1 min)", "prompt tok", "reused", "citations", "TTFT app", "TTFT raw",
             "tok/s app", "tok/s raw", "tokens app / raw", "same answer", "same prompt"],
            rows,
        )
    )
    # Diagnostics: where the app's extra time goes.
    server = [r["app"].get("server") or {} for r in runs]
    model_ttft = median([s.get("model_ttft_ms") for s in server])
    retrieval = median([s.get("retrieval_ms") for s in server])
    diag = [
        ["app: server-side retrieval (`retrieval_ms`)", fmt(retrieval, 1)],
        ["app: server-side model TTFT (`model_ttft_ms`, prompt built → first token)", fmt(model_ttft, 0)],
        ["app: client TTFT − server model TTFT, per run (retrieval, DB, prompt build, transport)",
         fmt(median([r["app"]["ttft_ms"] - s["model_ttft_ms"] for r, s in zip(runs, server)
                     if r["app"]["ttft_ms"] is not None and s.get("model_ttft_ms") is not None]), 0)],
        ["app: server-side tokens/s (`done.timings.tokens_per_s`)", fmt(median([s.get("tokens_per_s") for s in server]))],
    ]
    if "wrapper" in arms:
        w_ttft, w_tps = median(col("wrapper", "ttft_ms")), median(col("wrapper", "tokens_per_s"))
        diag += [
            ["wrapper (app's LlamaCppLanguageModel, no server): TTFT ms / ratio to raw",
             f"{fmt(w_ttft, 0)} / {fmt(w_ttft / raw_ttft, 2)}"],
            ["wrapper: tokens/s / ratio to raw", f"{fmt(w_tps)} / {fmt(w_tps / raw_tps, 2)}"],
        ]
    diag += [[f"CPU s per answer of the answering process, `{arm}` (median)", fmt(median(col(arm, "cpu_s")), 2)]
             for arm in arms]
    diag.append(["CPU s per answer of the bench's websocket client (median)", fmt(median(col("app", "client_cpu_s")), 3)])
    diag.append(["app: longest pause between two token frames, per run (ms; frames come every "
                 "`NANOSENTRI_TOKEN_FRAME_MS`)", ", ".join(fmt(r["app"].get("max_gap_ms"), 0) for r in runs)])
    diag.append(["raw: longest pause between two tokens, per run (ms)",
                 ", ".join(fmt(r["raw"].get("max_gap_ms"), 0) for r in runs)])
    diag += [[f"CPU s used by the idle side while `{arm}` ran (all runs)", fmt(idle_cpu[arm], 2)] for arm in arms]
    lines += ["", "Diagnostics (medians):", "", table(["what", "value"], diag)]
    return "\n".join(lines)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("\ninterrupted; subprocesses stopped", file=sys.stderr)
        sys.exit(130)
