"""The evidence of an answer is rendered once, by the partials of the chat page.

A stored answer is shown with templates/chat/_live_context.html and _similar_incidents.html; the
websocket sends the same HTML with the live_context and similar_incidents frames
(``apps.chat.rendering.evidence_html``), so chat.js builds none of that markup itself.
"""
from django.template.loader import render_to_string

from apps.chat.rendering import evidence_html

HOSTILE = "<img src=x onerror=alert(1)>"
SIMILAR = {"type": "similar_incidents", "message": 3, "items": [
    {"id": 7, "title": HOSTILE + " heater dead", "cause": "fuse F2 " + HOSTILE, "remedy": "replaced fuse",
     "resolved": "2026-01-12", "asset": "WXT536-01", "score": 0.6123, "url": "/incidents/7/"},
    {"id": 8, "title": "another site's", "cause": "", "remedy": "", "resolved": "", "asset": "", "score": 0.5,
     "url": None},
    {"id": 9, "title": "elsewhere", "cause": "", "remedy": "", "resolved": "", "asset": "", "score": 0.5,
     "url": "//evil.example/x"},
]}
LIVE = {"type": "live_context", "message": 3, "asset": "WXT536-01", "device_type": "WXT536", "source": "live",
        "readings": {"HEAT_CURRENT": {"value": 0.0, "unit": "A", "ts": None, "min": 0.0, "max": 1.2, "flag": ""}},
        "findings": [{"rule": "heater_failure", "severity": "high", "message": "Heater " + HOSTILE, "sensor": "HEAT_CURRENT",
                      "check": "fuse F2", "citation": {"document": "wxt.pdf", "page": 4, "url": "/documents/1/file/#page=4"}},
                     {"rule": "x", "severity": "low", "message": "odd", "sensor": "V_IN", "check": "",
                      "citation": {"document": "a.pdf", "page": 1, "url": "javascript:alert(1)"}}]}


def test_the_frames_carry_the_html_of_the_pages_partials():
    similar = evidence_html(SIMILAR)
    assert similar["items"] == SIMILAR["items"]  # the data stays, for other clients
    assert similar["html"] == render_to_string("chat/_similar_incidents.html", {"items": SIMILAR["items"]}).strip()
    live = evidence_html(LIVE)
    assert live["html"] == render_to_string("chat/_live_context.html", {"live": LIVE}).strip()
    assert '<section class="live-context"' in live["html"] and "<dt>HEAT_CURRENT</dt>" in live["html"]
    assert "(range 0.0–1.2)" in live["html"] and "Check: fuse F2" in live["html"]


def test_people_written_text_is_escaped_and_links_stay_on_the_site():
    html = evidence_html(SIMILAR)["html"]
    assert "<img" not in html and "&lt;img src=x onerror=alert(1)&gt; heater dead" in html
    assert html.count("<a ") == 1 and 'href="/incidents/7/"' in html  # #8: not the asker's; #9: not ours
    assert '<span class="similar-link">#9 elsewhere</span>' in html
    live = evidence_html(LIVE)["html"]
    assert "<img" not in live and "javascript:" not in live
    assert 'href="/documents/1/file/#page=4"' in live


def test_no_similar_incidents_is_no_html_and_other_frames_are_untouched():
    assert evidence_html({"type": "similar_incidents", "message": 3, "items": []})["html"] == ""
    token = {"type": "token", "message": 3, "text": "<b>"}
    assert evidence_html(token) is token
