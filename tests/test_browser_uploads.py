"""The issue's acceptance in headless Chromium against ``manage.py runapp`` (real worker; mock model
and embeddings, which the upload does not need): an admin selects a mixed batch of twelve files,
one of them an empty PDF, uploads them in one go and sees every file's line with its outcome; the
good files are in the library and get indexed, the bad ones are named with their reasons.
"""
import pytest

from tests.browser_support import chromium, login, running_app
from tests.test_uploads import GOOD_NAMES, MIXED_BATCH

pytestmark = [pytest.mark.browser]

MIME = {".pdf": "application/pdf", ".txt": "text/plain", ".md": "text/markdown", ".log": "text/plain",
        ".exe": "application/octet-stream"}


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    with running_app(
        tmp_path_factory.mktemp("uploads-data"),
        NANOSENTRI_LLM_BACKEND="mock",
        NANOSENTRI_EMBEDDING_BACKEND="mock",
        NANOSENTRI_VECTOR_STORE="memory",
        NANOSENTRI_OCR="off",
        NANOSENTRI_MAX_UPLOAD_MB="1",  # huge.log (1 MB + 1 byte) is over it
    ) as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    with chromium() as b:
        yield b


def test_a_mixed_batch_stores_every_good_file_and_names_every_bad_one(app_url, browser):
    from playwright.sync_api import expect

    page = browser.new_context().new_page()
    login(page, app_url, "admin")
    assert page.url.endswith("/documents/")

    page.set_input_files(
        "input[type=file]",
        [{"name": name, "mimeType": MIME[name[name.rindex("."):]], "buffer": content}
         for name, content, _, _ in MIXED_BATCH],
    )
    page.click("button:has-text('Upload')")
    page.wait_for_load_state()

    results = page.get_by_role("status").filter(has_text="Last upload")
    expect(results).to_be_visible()
    expect(results.locator("h3")).to_have_text("Last upload: 12 files — 3 queued, 8 rejected, 1 duplicate")
    lines = results.locator("li")
    expect(lines).to_have_count(len(MIXED_BATCH))
    for i, (name, _, outcome, reason) in enumerate(MIXED_BATCH):
        line = lines.nth(i)
        expect(line).to_have_attribute("data-outcome", outcome)
        expect(line.locator(".badge")).to_have_text(outcome.capitalize())
        expect(line).to_contain_text(f"{name}: {reason}")
    expect(page.locator("#upload-results [data-outcome=rejected]").nth(0)).to_contain_text("empty.pdf: empty file")

    # The good files, and only they, are in the library, and the worker indexes them.
    rows = page.locator("tr.doc-row")
    expect(rows).to_have_count(len(GOOD_NAMES))
    for name in GOOD_NAMES:
        row = page.locator("tr.doc-row", has_text=name)
        expect(row).to_be_visible()
        expect(row.locator("[data-role=status]")).to_have_text("Indexed", timeout=120_000)

    # The results are shown once; a reload shows the library only.
    page.reload()
    expect(page.locator("#upload-results")).to_have_count(0)
    expect(page.locator("tr.doc-row")).to_have_count(len(GOOD_NAMES))
    page.context.close()


def test_submitting_without_files_asks_for_one(app_url, browser):
    from playwright.sync_api import expect

    page = browser.new_context().new_page()
    login(page, app_url, "admin")
    page.goto(f"{app_url}/documents/")
    # The browser's own "required" check would stop the submit: this is what a script would post.
    page.evaluate("document.querySelector('input[type=file]').removeAttribute('required')")
    page.click("button:has-text('Upload')")
    page.wait_for_load_state()

    expect(page.locator(".field-error")).to_have_text("Choose at least one file.")
    page.context.close()
