"""Running the real app (``manage.py runapp``) and headless Chromium for the browser tests."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
PASSWORD = "e2e-Passw0rd!"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def app_env(data_dir: Path, **extra: str) -> dict:
    """The README's run command: embedded defaults (no DATABASE_URL / REDIS_URL), demo users
    without the demo manuals and site; ``extra`` settings on top (e.g. NANOSENTRI_LLM_NARRATIVE="1"
    to see the model stream, NANOSENTRI_DEMO="1" for the demo site)."""
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("NANOSENTRI_")},
        "DJANGO_SETTINGS_MODULE": "nanosentri_site.settings",
        "NANOSENTRI_DATA_DIR": str(data_dir),
        "NANOSENTRI_DEMO_PASSWORD": PASSWORD,
        "NANOSENTRI_DEMO_INGEST": "0",
        "NANOSENTRI_DEMO": "0",
    }
    env.pop("DATABASE_URL", None)
    env.pop("REDIS_URL", None)
    env.update(extra)
    return env


def manage(data_dir: Path, *args: str, stdin: str | None = None) -> str:
    """Run a management command against the app's data directory (before or beside runapp)."""
    done = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=app_env(data_dir), input=stdin,
        capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return done.stdout


@contextmanager
def running_app(data_dir: Path, *, wait_for_models: bool = True, **extra: str):
    """``manage.py runapp`` on a free port, ready when /healthz/ says the models are loaded
    (``wait_for_models=False``: as soon as it answers, for pages that need no model)."""
    port = free_port()
    log_path = data_dir / "runapp.log"
    log = open(log_path, "wb")
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "runapp", "--port", str(port)], cwd=ROOT, env=app_env(data_dir, **extra),
        stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 240
    while True:
        assert proc.poll() is None, log_path.read_text()[-3000:]
        assert time.monotonic() < deadline, "the app did not get ready: " + log_path.read_text()[-3000:]
        try:
            health = httpx.get(f"{url}/healthz/", timeout=2).json()
            if health["models"] == "ready" or (not wait_for_models and health["status"] == "ok"):
                break
        except (httpx.HTTPError, ValueError):
            pass
        time.sleep(0.5)
    try:
        yield url
    finally:
        proc.send_signal(2)  # Ctrl-C stops everything it started
        try:
            assert proc.wait(timeout=30) == 0, log_path.read_text()[-3000:]
        finally:
            if proc.poll() is None:
                proc.kill()
            log.close()
    assert "Stopped." in log_path.read_text()


@contextmanager
def chromium():
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed (scripts/install.sh --dev installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"],
        )
        try:
            yield browser
        finally:
            browser.close()


def login(page, url: str, username: str, password: str = PASSWORD) -> None:
    page.goto(f"{url}/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("button[type=submit]")
    page.wait_for_load_state()


def chat_page(browser, page_html: str, init_script: str, scripts=("socket.js", "chat.js")):
    """The chat page's own code against the fake socket ``init_script`` sets up, without a server:
    ``page_html`` at .../chat/ and, from static/js/, only ``scripts`` (other requests get an empty
    body). Returned once the page is ready to ask."""
    js = Path(__file__).resolve().parents[1] / "static" / "js"

    def fulfill(route):
        url = route.request.url
        if url.endswith("/chat/"):
            return route.fulfill(status=200, content_type="text/html", body=page_html)
        name = url.split("?")[0].rsplit("/", 1)[-1]
        body = (js / name).read_text(encoding="utf-8") if name in scripts else ""
        route.fulfill(status=200, content_type="application/javascript", body=body)

    page = browser.new_page()
    page.add_init_script(init_script)
    page.route("**/*", fulfill)
    page.goto("http://testserver/chat/")
    page.wait_for_function("!document.getElementById('ask').disabled")
    return page


class StandInModel:
    """Parts of a stand-in OpenAI-compatible model server (``POST /v1/chat/completions``, streamed
    as llama-cpp's server streams): mix into a ``BaseHTTPRequestHandler`` whose ``do_POST`` reads
    the body and calls ``stream``."""

    def read_body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def stream(self, text: str, *, pieces: int | None = None, finish: bool = True) -> None:
        """``text`` word by word (only its first ``pieces`` words when given); with ``finish``,
        the end of the answer and ``[DONE]``."""
        import json
        import re

        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        for piece in re.findall(r"\S+\s*", text)[:pieces]:
            chunk = {"choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]}
            self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
            self.wfile.flush()
        if finish:
            self.wfile.write(b'data: {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}\n\n')
            self.wfile.write(b"data: [DONE]\n\n")

    def log_message(self, *args):
        pass


@contextmanager
def stand_in_model_server(handler, *, on_close=None):
    """Serve ``handler`` on a free loopback port; yields the base URL (``.../v1``)."""
    import threading
    from http.server import ThreadingHTTPServer

    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/v1"
    finally:
        if on_close:
            on_close()
        server.shutdown()
        server.server_close()
