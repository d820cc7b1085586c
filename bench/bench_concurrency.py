#!/usr/bin/env python
"""Many technicians at once: N websocket chats ask at the same moment, against one web process.

    .venv/bin/python bench/bench_concurrency.py --chats 50 --runs 2

Starts the app as ``make run`` serves it (Daphne, models loaded at start, embedded defaults, the
seven shared manuals indexed) in a fresh temporary data directory, with the model's narrative on
(``NANOSENTRI_LLM_NARRATIVE=1``: one generation at a time per process, so later chats wait in the
queue) and ``NANOSENTRI_LLM_MAX_TOKENS`` kept short (``--max-tokens``, default 48) so a run of 50
answers ends in minutes. Then, per run, opens N websocket connections (each logged in as the
technician), waits until all are ``ready`` and sends every question at once.

Reports, per run: errors (frames of type ``error`` and connections that failed), the time from
sending to the ``citations`` and ``extract`` frames (the evidence) at p50/p95/max, the queue
positions the chats were shown, the time to the first token and to ``done`` at p50/p95, and the
web process's resident memory (VmRSS, VmHWM) before and after: one copy of the model (its GGUF is
~90 MB) whatever the number of chats. The baseline in the same run is one chat asking alone.

``--model-servers N`` (N ≥ 2) serves the model from N ``scripts/model_server.py`` processes
instead (``NANOSENTRI_LLM_BACKEND=openai``, ``NANOSENTRI_LLM_SERVER_URL`` listing them, each on
``--server-threads`` llama.cpp threads): N answers generate at once, at the cost of N copies of
the model; their RSS is reported too.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, Children, apply_environment, bench_environment, exit_on_sigterm, load_average  # noqa: E402
from bench_chat import free_port, login, prepare_app_data, start_server  # noqa: E402

SHARED = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
QUESTIONS = [
    "What does ERROR HIGH TEMP mean and when does charging resume?",
    "How do I put the PMS5003 into sleep mode with the SET pin?",
    "What are the relay contact ratings on the ESP32-EVB?",
    "What order do I connect the battery, panel and loads on the MPPT 1210 HUS?",
    "Ender-3 screen shows Min temp. What's causing it?",
]


def memory_kb(pid: int) -> dict[str, int]:
    fields = {"VmRSS": 0, "VmHWM": 0}  # 0: the process is gone
    status = Path(f"/proc/{pid}/status")
    for line in (status.read_text() if status.exists() else "").splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0])
    return fields


async def one_chat(port: int, cookie: str, question: str, start: asyncio.Event, ready: list, timeout: float) -> dict:
    from websockets.asyncio.client import connect

    result = {"errors": [], "positions": []}
    try:
        async with connect(
            f"ws://127.0.0.1:{port}/ws/chat/", origin=f"http://127.0.0.1:{port}",
            additional_headers={"Cookie": cookie}, proxy=None, max_size=None, open_timeout=timeout,
        ) as ws:
            frame = json.loads(await asyncio.wait_for(ws.recv(), timeout))
            if frame.get("type") != "ready":
                raise RuntimeError(f"expected ready, got {frame}")
            ready.append(1)
            await start.wait()
            sent = time.perf_counter()
            await ws.send(json.dumps({"type": "ask", "question": question}))
            while True:
                event = json.loads(await asyncio.wait_for(ws.recv(), timeout))
                ms = (time.perf_counter() - sent) * 1000
                kind = event["type"]
                if kind in ("citations", "extract") and f"{kind}_ms" not in result:
                    result[f"{kind}_ms"] = ms
                elif kind == "queued":
                    result["positions"].append(event.get("position"))
                elif kind == "token" and "ttft_ms" not in result:
                    result["ttft_ms"] = ms
                elif kind == "error":
                    result["errors"].append(f"{event.get('code')}: {event.get('detail')}")
                    if event.get("code") not in ("model_unavailable", "generation_failed"):
                        break
                elif kind == "done":
                    result["done_ms"], result["status"] = ms, event["status"]
                    break
    except Exception as exc:  # a refused or dropped connection is an error of the run, not of the bench
        result["errors"].append(f"{type(exc).__name__}: {exc}")
    return result


async def wave(port: int, cookie: str, chats: int, timeout: float) -> tuple[list[dict], float]:
    start, ready = asyncio.Event(), []
    tasks = [
        asyncio.create_task(one_chat(port, cookie, QUESTIONS[i % len(QUESTIONS)], start, ready, timeout))
        for i in range(chats)
    ]
    deadline = time.monotonic() + timeout
    while len(ready) < chats and time.monotonic() < deadline and not all(t.done() for t in tasks):
        await asyncio.sleep(0.05)
    started = time.perf_counter()
    start.set()
    results = await asyncio.gather(*tasks)
    return results, time.perf_counter() - started


def pct(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))] if ordered else float("nan")


def summary(results: list[dict]) -> dict:
    def col(key):
        return [r[key] for r in results if r.get(key) is not None]

    positions = sorted({p for r in results for p in r["positions"] if p is not None})
    return {
        "errors": sum(len(r["errors"]) for r in results),
        "completed": sum(r.get("status") == "completed" for r in results),
        "citations": (statistics.median(col("citations_ms") or [0]), pct(col("citations_ms"), 0.95), max(col("citations_ms") or [0])),
        "extract": (statistics.median(col("extract_ms") or [0]), pct(col("extract_ms"), 0.95), max(col("extract_ms") or [0])),
        "ttft": (statistics.median(col("ttft_ms") or [0]), pct(col("ttft_ms"), 0.95)),
        "done": (statistics.median(col("done_ms") or [0]), pct(col("done_ms"), 0.95)),
        "queued": sum(bool(r["positions"]) for r in results),
        "positions": f"{positions[0]}–{positions[-1]}" if positions else "none",
        "first_errors": [e for r in results for e in r["errors"]][:3],
    }


def start_model_servers(children: Children, env: dict, count: int, threads: int, timeout: float) -> list:
    """``count`` model server processes (scripts/model_server.py), each on a free port; [] for 0 or 1."""
    import httpx

    if count < 2:
        return []
    servers = []
    for _ in range(count):
        port = free_port()
        server_env = {**env, "NANOSENTRI_LLM_THREADS": str(threads), "NANOSENTRI_LLM_BATCH_THREADS": str(threads)}
        proc = children.start("model-server", [sys.executable, "scripts/model_server.py", "--port", str(port)],
                              env=server_env, cwd=str(REPO), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        servers.append((f"http://127.0.0.1:{port}/v1", proc))
    deadline = time.monotonic() + timeout
    for url, proc in servers:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"model server {url} exited with code {proc.returncode}")
            try:
                if httpx.get(f"{url}/models", timeout=2, trust_env=False).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"model server {url} did not start")
            time.sleep(0.5)
    return servers


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chats", type=int, default=50)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--timeout", type=float, default=900)
    parser.add_argument("--model-servers", type=int, default=0,
                        help="serve the model from this many model server processes (0: in the web process)")
    parser.add_argument("--server-threads", type=int, default=1, help="llama.cpp threads of each model server")
    args = parser.parse_args()
    exit_on_sigterm()
    data_dir = Path(tempfile.mkdtemp(prefix="nanosentri-bench-concurrency-"))
    env = bench_environment(
        data_dir, HF_HUB_OFFLINE="1", NANOSENTRI_LLM_BACKEND="llamacpp", NANOSENTRI_LLM_NARRATIVE="1",
        NANOSENTRI_LLM_MAX_TOKENS=str(args.max_tokens),
    )
    apply_environment(env)
    children = Children()
    try:
        import django

        django.setup()
        manuals = sorted((SHARED / "manuals").glob("*.pdf")) + sorted((SHARED / "library").glob("*.pdf"))
        password, _passages, _ingested = prepare_app_data(manuals, QUESTIONS)
        model_servers = start_model_servers(children, env, args.model_servers, args.server_threads, args.timeout)
        if model_servers:
            env.update(NANOSENTRI_LLM_BACKEND="openai",
                       NANOSENTRI_LLM_SERVER_URL=",".join(url for url, _proc in model_servers))
            print(f"{len(model_servers)} model server processes, {args.server_threads} llama.cpp thread(s) each")
        port, server, _log = start_server(children, env, data_dir, args.timeout)
        cookie = login(port, "technician", password)
        idle = memory_kb(server.pid)
        print(f"web process ready, RSS {idle['VmRSS'] / 1024:.0f} MB; {args.chats} chats per run; load {load_average()}")
        print("run  chats  errors  completed  citations p50/p95/max ms   extract p95   queued  positions"
              "  TTFT p50/p95 s  done p50/p95 s  wall s")
        for run in range(1, args.runs + 1):
            for chats in (1, args.chats):  # the baseline: one chat alone, in the same run
                results, wall = asyncio.run(wave(port, cookie, chats, args.timeout))
                s = summary(results)
                c = s["citations"]
                print(f"{run:<4} {chats:>5} {s['errors']:>7} {s['completed']:>10}   {c[0]:7.0f} {c[1]:7.0f} {c[2]:7.0f}"
                      f"   {s['extract'][1]:10.0f}  {s['queued']:>6}  {s['positions']:>9}"
                      f"  {s['ttft'][0] / 1000:6.1f} {s['ttft'][1] / 1000:6.1f}  {s['done'][0] / 1000:6.1f} {s['done'][1] / 1000:6.1f}"
                      f"  {wall:6.1f}", flush=True)
                if s["first_errors"]:
                    print(f"     errors: {s['first_errors']}")
        after = memory_kb(server.pid)
        if server.poll() is not None:
            print(f"the web process died (exit code {server.returncode}); its log: {_log}")
            shutil.copy(_log, Path(tempfile.gettempdir()) / "bench_concurrency_daphne.log")
        print(f"\nweb process memory: RSS idle {idle['VmRSS'] / 1024:.0f} MB, after {after['VmRSS'] / 1024:.0f} MB, "
              f"peak (VmHWM) {after['VmHWM'] / 1024:.0f} MB; load {load_average()}")
        for url, proc in model_servers:
            mem = memory_kb(proc.pid)
            print(f"model server {url}: RSS {mem['VmRSS'] / 1024:.0f} MB, peak {mem['VmHWM'] / 1024:.0f} MB")
        return 0
    finally:
        children.stop_all()
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
