"""Which model answered, in headless Chromium against ``manage.py runapp``: the badge on the answer.

The app runs as the README says, with the real local model (the bundled GGUF in process) and a
site model server: a stand-in OpenAI-compatible server in this process, so the test decides when it
answers and when it dies mid-answer. (The real ``llama_cpp.server`` as the site server, and the
bytes it receives, are tested in tests/test_integration_routing.py.)

1. A question about a public manual: the site server answers; the badge says "site model", on
   screen and after a reload; the supervisor's review queue shows it too.
2. The site server breaks off after a few tokens: its text disappears, the local model answers
   afresh, the answer ends completed, and the badge with its reason says what happened.
3. "Local only" for the conversation: the site server is not asked.
"""
import json
import re
from http.server import BaseHTTPRequestHandler

import pytest

from tests.browser_support import (
    StandInModel,
    chat_page,
    chromium,
    login,
    manage,
    running_app,
    stand_in_model_server,
)

pytestmark = pytest.mark.browser

QUESTION = "What does ERROR HIGH TEMP mean and when does charging resume?"
SITE_TEXT = "SITEMODEL says: let the module cool below 55ºC [1] and charging starts again."


class _SiteServer(StandInModel, BaseHTTPRequestHandler):
    """Always ``SITE_TEXT``; ``mode["die"]``: three pieces, then the connection closes without the
    end of the answer."""

    mode = {"die": False}
    requests: list[bytes] = []

    def do_POST(self):
        type(self).requests.append(self.read_body())
        if self.mode["die"]:
            self.stream(SITE_TEXT, pieces=3, finish=False)
            self.close_connection = True  # HTTP/1.0: the body ends here, before the answer's end
            return
        self.stream(SITE_TEXT)


def site_server():
    return stand_in_model_server(_SiteServer)


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    from tests.conftest import SMARTEVSE, manual

    pdf = manual(SMARTEVSE)
    with site_server() as url:
        data_dir = tmp_path_factory.mktemp("routing-data")
        extra = {
            "NANOSENTRI_LLM_NARRATIVE": "1", "NANOSENTRI_LLM_MAX_TOKENS": "40",
            "NANOSENTRI_SITE_LLM_URL": url, "NANOSENTRI_SITE_LLM_RETRY_S": "0",
            "NANOSENTRI_DEFAULT_PRIVACY": "public",
        }
        with running_app(data_dir, **extra) as app:
            manage(data_dir, "ingest", str(pdf), "--wait", "--timeout", "180")
            yield app


@pytest.fixture(scope="module")
def browser():
    with chromium() as b:
        yield b


def _ask(page, question=QUESTION):
    from playwright.sync_api import expect

    expect(page.locator("#ask")).to_be_enabled(timeout=15_000)
    page.fill("#question", question)
    page.click("#ask")
    card = page.locator("article.msg-assistant").last
    expect(card).to_have_attribute("data-status", "completed", timeout=180_000)
    return card


def test_the_badge_says_which_model_answered_and_why(app_url, browser):
    from playwright.sync_api import expect

    context = browser.new_context(viewport={"width": 1366, "height": 900})
    page = context.new_page()
    login(page, app_url, "technician")
    page.goto(f"{app_url}/chat/")

    # 1. The site server answers a question about a public manual.
    _SiteServer.mode["die"] = False
    card = _ask(page)
    expect(card.locator(".answer")).to_contain_text("SITEMODEL says")
    route = card.locator("[data-role=route]")
    expect(route).to_have_attribute("data-route", "site")
    expect(route.locator(".route-badge")).to_have_text("site model")
    expect(route.locator(".route-badge")).to_have_attribute("title", re.compile("Answered by the site model server"))
    card.locator(".feedback-down").click()  # for the review queue below
    expect(card.locator(".feedback-down")).to_have_attribute("aria-pressed", "true")
    page.reload()  # rendered from the stored answer: the same badge
    expect(page.locator("article.msg-assistant").last.locator("[data-role=route] .route-badge")).to_have_text(
        "site model"
    )

    # 2. In a new chat (no earlier turn the tiny model could copy), the site server dies
    # mid-answer: its words go, the local model answers afresh.
    page.goto(f"{app_url}/chat/")
    _SiteServer.mode["die"] = True
    card = _ask(page, "When does charging resume after ERROR HIGH TEMP?")
    route = card.locator("[data-role=route]")
    expect(route).to_have_attribute("data-reason", "site_failed")
    expect(route.locator(".route-badge")).to_have_text("this device · site server failed")
    expect(route.locator(".route-detail")).to_contain_text("partial answer was discarded")
    expect(card.locator(".answer")).not_to_contain_text("SITEMODEL")
    assert card.locator(".answer").inner_text().strip()  # the local model's own answer
    page.reload()
    card = page.locator("article.msg-assistant").last
    expect(card.locator("[data-role=route]")).to_have_attribute("data-reason", "site_failed")
    expect(card.locator(".route-detail")).to_contain_text("site model server failed")

    # 3. "Local only": the site server is not asked at all.
    _SiteServer.mode["die"] = False
    asked = len(_SiteServer.requests)
    page.check("#local-only")
    card = _ask(page, "What does ERROR HIGH TEMP mean?")
    expect(card.locator("[data-role=route] .route-badge")).to_have_text("this device · local only")
    assert len(_SiteServer.requests) == asked
    page.reload()
    expect(page.locator("#local-only")).to_be_checked()
    context.close()

    # The supervisor's review queue shows which model wrote the answer under review.
    context = browser.new_context(viewport={"width": 1366, "height": 900})
    page = context.new_page()
    login(page, app_url, "supervisor")
    page.goto(f"{app_url}/chat/review/")
    item = page.locator("article.review-item").first
    expect(item.locator("[data-role=route] .route-badge")).to_have_text("site model")
    context.close()


FAKE_SOCKET = """
window.WebSocket = class {
  static OPEN = 1;
  constructor() { this.readyState = 1; this.listeners = {}; setTimeout(() => this.frame({type: "ready"}), 0); }
  addEventListener(kind, fn) { (this.listeners[kind] = this.listeners[kind] || []).push(fn); }
  frame(obj) { (this.listeners.message || []).forEach((fn) => fn({data: JSON.stringify(obj)})); }
  send(text) {
    const m = 41;
    const frames = [
      {type: "accepted", conversation: 5, message: m},
      {type: "citations", message: m, retrieval_ms: 1, items: []},
      {type: "extract", message: m, items: []},
      {type: "similar_incidents", message: m, items: []},
      {type: "route", message: m, via: "site", reason: "site", restart: false, html: window.__badges[0]},
      {type: "token", message: m, text: "SITEMODEL half an "},
      {type: "route", message: m, via: "local", reason: "site_failed", restart: true, html: window.__badges[1]},
      {type: "token", message: m, text: "Local answer, afresh."},
    ];
    frames.forEach((f, i) => setTimeout(() => this.frame(f), 10 * i));
    window.__sent = JSON.parse(text);
  }
  close() {}
};
"""


@pytest.mark.django_db
def test_a_restart_clears_the_remote_text_and_swaps_the_badge(client, technician, settings):
    """chat.js alone, fed the frames of a site answer cut mid-stream (no ``done`` yet)."""
    from apps.chat.rendering import evidence_html
    from models.llm.routing import Route, route_fallback

    settings.NANOSENTRI_SITE_LLM_URL = "http://site.invalid/v1"
    client.force_login(technician)
    page_html = client.get("/chat/").content.decode()
    badges = [
        evidence_html({"type": "route", **Route("site", "site", "Answered by the site model server.").as_dict()})["html"],
        evidence_html({"type": "route", **route_fallback("site_failed", "after 1 tokens; its partial answer was "
                                                         "discarded <img src=x onerror=alert(1)>").as_dict()})["html"],
    ]
    with chromium() as b:
        page = chat_page(b, page_html, f"window.__badges = {json.dumps(badges)};" + FAKE_SOCKET)
        page.check("#local-only")
        page.fill("#question", "What does E42 mean?")
        page.click("#ask")
        card = page.locator("article.msg-assistant")
        page.wait_for_function("document.querySelector('article.msg-assistant .answer').textContent.includes('afresh')")
        assert card.locator(".answer").inner_text() == "Local answer, afresh."  # the remote half is gone
        route = card.locator("[data-role=route]")
        assert route.count() == 1 and route.get_attribute("data-reason") == "site_failed"
        assert route.locator(".route-badge").inner_text() == "this device · site server failed"
        assert "<img src=x onerror=alert(1)>" in route.locator(".route-detail").inner_text()  # text, not markup
        assert card.locator("img").count() == 0
        assert page.evaluate("window.__sent.local_only") is True
