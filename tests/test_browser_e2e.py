"""End to end in headless Chromium: the app as `manage.py runapp` starts it (real worker, real
model), an admin uploads a manual and watches it index, a technician asks and stops the answer.
"""
import re
import time

import pytest

from tests.browser_support import chromium, login, running_app

pytestmark = [pytest.mark.browser, pytest.mark.integration]

QUESTION = "What does ERROR HIGH TEMP mean and when does charging resume?"


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    # The narrative on: this test watches the bundled model stream and stops it.
    with running_app(tmp_path_factory.mktemp("e2e-data"), NANOSENTRI_LLM_NARRATIVE="1") as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    with chromium() as b:
        yield b


_login = login


def test_admin_uploads_then_technician_asks_and_stops(app_url, browser, smartevse):
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import expect

    admin = browser.new_context().new_page()
    _login(admin, app_url, "admin")
    assert admin.url.endswith("/documents/")
    admin.set_input_files("input[type=file]", str(smartevse))
    admin.click("button:has-text('Upload')")
    admin.wait_for_load_state()
    row = admin.locator("tr.doc-row", has_text=smartevse.name)
    expect(row).to_be_visible()
    admin.evaluate("window.__noReload = true")
    expect(row.locator("[data-role=status]")).to_have_text("Indexed", timeout=180_000)
    assert admin.evaluate("window.__noReload === true"), "the page reloaded: progress must be live"
    expect(row.locator("[data-role=progress]")).to_have_attribute("value", "100")
    expect(row.locator("[data-role=pages]")).to_have_text("2")
    admin.context.close()

    tech = browser.new_context().new_page()
    _login(tech, app_url, "technician")
    tech.goto(f"{app_url}/chat/")
    expect(tech.locator("#ask")).to_be_enabled(timeout=15_000)
    tech.fill("#question", QUESTION)
    sent = time.perf_counter()
    tech.click("#ask")
    first = tech.locator(".citation").first
    expect(first).to_be_visible(timeout=5_000)
    citations_after = time.perf_counter() - sent
    expect(first).to_contain_text(smartevse.name)
    expect(first).to_contain_text("page 2")
    link = first.locator("a").first
    assert re.search(r"/documents/\d+/file/#page=2$", link.get_attribute("href"))
    answer = tech.locator(".msg-assistant .answer").last
    expect(answer).not_to_be_empty(timeout=60_000)  # streamed text arrives
    last = tech.locator("article.msg-assistant").last
    expect(last).to_have_attribute("data-status", re.compile("^(completed|stopped)$"), timeout=120_000)
    expect(tech.locator("#ask")).to_be_enabled()

    # Stop: ask for something long and press Stop as soon as the text starts streaming.
    stopped = False
    for _ in range(3):
        tech.fill("#question", "What do the SmartEVSE error messages mean? Explain each one in detail, step by step.")
        tech.click("#ask")
        answer = tech.locator(".msg-assistant .answer").last
        expect(answer).not_to_be_empty(timeout=60_000)
        try:
            tech.click("#stop", timeout=3_000)
        except PlaywrightTimeout:  # the tiny model finished first: try again
            expect(tech.locator("#ask")).to_be_enabled(timeout=60_000)
            continue
        last = tech.locator("article.msg-assistant").last
        expect(last).to_have_attribute("data-status", re.compile("^(completed|stopped)$"), timeout=15_000)
        stopped = last.get_attribute("data-status") == "stopped"
        if stopped:
            expect(last.locator(".answer-status")).to_have_text("stopped")
        if stopped:
            break
        expect(tech.locator("#ask")).to_be_enabled()
    assert stopped, "Stop never stopped a streaming answer"
    expect(tech.locator("#ask")).to_be_enabled()
    assert citations_after < 1.5, f"citations took {citations_after:.2f} s to appear"
    tech.context.close()
