"""The answer in the manual's own words, in headless Chromium against ``manage.py runapp``.

A technician asks about an error code: the manual's sentences (the ``extract`` frame) appear first
in the answer card, above the model's text, each with its [n]; a number the model made up is
marked as not in the manuals; a reload of the conversation shows the same.

The model is a stand-in OpenAI-compatible server in this process (``NANOSENTRI_LLM_BACKEND=openai``)
that always writes ``NARRATIVE``, so what is grounded and what is not is known in advance; the rest
(worker, MiniLM embeddings, Chroma, daphne, the websocket) is the real app. The real model is
tested elsewhere. The second test feeds chat.js frames directly: narrative off, hostile text.
"""
import json
import re
import threading
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
MANUAL_SENTENCE = "Once the temperature has dropped below 55ºC charging is started again."
INVENTED = "47"  # in no manual: the model's own
NARRATIVE = f"Let the module cool below 55ºC [1], then wait {INVENTED} minutes before you restart charging."
SPEAK = threading.Event()  # the stand-in model writes nothing until the test has seen the extract


class _FakeModel(StandInModel, BaseHTTPRequestHandler):
    """Always ``NARRATIVE``, once the test lets it speak."""

    def do_POST(self):
        self.read_body()
        SPEAK.wait(60)
        self.stream(NARRATIVE)


def fake_model_server():
    # on_close: a test that failed early leaves no request waiting
    return stand_in_model_server(_FakeModel, on_close=SPEAK.set)


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    from tests.conftest import SMARTEVSE, manual

    pdf = manual(SMARTEVSE)
    with fake_model_server() as model_url:
        data_dir = tmp_path_factory.mktemp("extract-data")
        # The narrative on, from the stand-in model: the extract first, then its text.
        model = {"NANOSENTRI_LLM_BACKEND": "openai", "NANOSENTRI_LLM_SERVER_URL": model_url,
                 "NANOSENTRI_LLM_NARRATIVE": "1"}
        with running_app(data_dir, **model) as url:
            manage(data_dir, "ingest", str(pdf), "--wait", "--timeout", "180")
            yield url


@pytest.fixture(scope="module")
def browser():
    with chromium() as b:
        yield b


def _check_answer(card):
    """The extract is first, holds the manual's sentence with its [n]; the invented number is marked."""
    from playwright.sync_api import expect

    extract = card.locator(".extract")
    expect(extract).to_be_visible()
    expect(extract.locator(".extract-title")).to_have_text("From the manual")
    item = extract.locator(".extract-item", has_text=MANUAL_SENTENCE)
    expect(item).to_have_count(1)
    expect(item.locator("a.cite")).to_have_text(re.compile(r"^\[\d+\]$"))
    expect(item.locator(".extract-source")).to_contain_text("SmartEVSE")
    expect(item.locator(".extract-source")).to_contain_text(re.compile(r"p\. \d+$"))
    # The [n] opens the citation it names, in this answer.
    n = item.locator("a.cite").inner_text().strip("[]")
    expect(card.locator(f'.citation[data-n="{n}"]')).to_have_count(1)

    answer = card.locator(".answer")
    expect(answer).to_contain_text(f"wait {INVENTED} minutes")
    expect(card.locator(".narrative-title")).to_contain_text("Assistant's note")
    mark = answer.locator("mark.ungrounded")
    expect(mark.filter(has_text=INVENTED)).to_have_count(1)
    expect(mark.filter(has_text="55")).to_have_count(0)  # in the manual: not marked
    expect(card.locator(".ungrounded-legend")).to_have_text("Highlighted items are not in the cited manuals.")

    # Document order: the manual's words, then the evidence, then the model's text.
    in_order = card.evaluate("""(card) => {
        const nodes = [".extract", ".citations", ".narrative-title", ".answer"].map((s) => card.querySelector(s));
        return nodes.slice(1).every((node, i) => !!(nodes[i].compareDocumentPosition(node) & Node.DOCUMENT_POSITION_FOLLOWING));
    }""")
    assert in_order, card.evaluate("(card) => [...card.children].map((e) => e.className)")


def test_the_manuals_words_come_first_and_an_invented_number_is_marked(app_url, browser):
    from playwright.sync_api import expect

    page = browser.new_context(viewport={"width": 1366, "height": 900}).new_page()
    login(page, app_url, "technician")
    page.goto(f"{app_url}/chat/")
    expect(page.locator("#ask")).to_be_enabled(timeout=15_000)
    page.fill("#question", QUESTION)
    page.click("#ask")
    card = page.locator("article.msg-assistant").last
    # The manual's words are on screen while the model has not written a word.
    expect(card.locator(".extract-item").first).to_be_visible(timeout=10_000)
    expect(card.locator(".answer")).to_be_empty()
    SPEAK.set()
    expect(card).to_have_attribute("data-status", "completed", timeout=60_000)
    _check_answer(card)
    expect(page).to_have_url(re.compile(r"/chat/\d+/$"))
    conversation_url = page.url

    # A reload is rendered by the server from Message.extract / Message.ungrounded: the same.
    page.reload()
    card = page.locator("article.msg-assistant").last
    _check_answer(card)
    page.context.close()

    # On a phone the quote wraps inside the card.
    phone = browser.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=2).new_page()
    login(phone, app_url, "technician")
    phone.goto(conversation_url)
    card = phone.locator("article.msg-assistant").last
    _check_answer(card)
    for selector in (".extract", ".answer"):
        box = card.locator(selector).bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= 390, (selector, box)
    phone.context.close()


FAKE_SOCKET = """
window.__frames = [];
window.WebSocket = class {
  static OPEN = 1;
  constructor() { this.readyState = 1; this.listeners = {}; setTimeout(() => this.frame({type: "ready"}), 0); }
  addEventListener(kind, fn) { (this.listeners[kind] = this.listeners[kind] || []).push(fn); }
  frame(obj) { (this.listeners.message || []).forEach((fn) => fn({data: JSON.stringify(obj)})); }
  send(text) {
    const m = 41;
    const frames = [
      {type: "accepted", conversation: 5, message: m},
      {type: "citations", message: m, retrieval_ms: 1, items: [
        {n: 1, document: "pump.pdf", page: 3, score: 0.7, text: "E42 means low pressure.", url: "/documents/1/file/#page=3"}]},
      {type: "extract", message: m, items: window.__extract},
      {type: "similar_incidents", message: m, items: []},
      {type: "done", message: m, status: "completed", answer: "", html: "", ungrounded: [], timings: {}},
    ];
    frames.forEach((f, i) => setTimeout(() => this.frame(f), 10 * i));
  }
  close() {}
};
"""


@pytest.mark.django_db
@pytest.mark.parametrize("extract", [
    [{"text": "<img src=x onerror=alert(1)> E42 means the pressure is below 1.5 bar.", "n": 1, "document": "pump.pdf", "page": 3}],
    [],
])
def test_with_the_narrative_off_the_extract_is_the_answer(client, technician, extract):
    """``NANOSENTRI_LLM_NARRATIVE=0``: no token, an empty ``done``; no empty "assistant's note"."""
    client.force_login(technician)
    page_html = client.get("/chat/").content.decode()
    with chromium() as b:
        page = chat_page(b, page_html, f"window.__extract = {json.dumps(extract)};" + FAKE_SOCKET)
        page.fill("#question", "What does E42 mean?")
        page.click("#ask")
        page.wait_for_selector("article.msg-assistant[data-status=completed]")
        card = page.locator("article.msg-assistant")
        if extract:
            item = card.locator(".extract .extract-item")
            assert item.locator(".extract-text").inner_text() == extract[0]["text"]  # text, not markup
            assert card.locator(".extract img").count() == 0
            assert item.locator("a.cite").get_attribute("href") == "#cite-1"
            assert item.locator(".extract-source").inner_text() == "pump.pdf, p. 3"
            assert not card.locator(".narrative-title").is_visible() and not card.locator(".answer").is_visible()
        else:
            assert not card.locator(".extract").is_visible()
            assert card.locator(".answer").inner_text() == "No answer was written."
        assert not card.locator(".ungrounded-legend").is_visible()
