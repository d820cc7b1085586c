"""Answers rendered as safe HTML: markdown kept, anything executable removed, [n] linked."""
import re

import pytest

from apps.chat.rendering import render_answer


def tags(html: str) -> set[str]:
    return {t.lower() for t in re.findall(r"<\s*([a-zA-Z0-9]+)", html)}


def test_it_strips_script_tags_and_their_content():
    html = render_answer("Check the fuse. <script>alert('pwned')</script> Then reset.")

    assert "<script" not in html.lower()
    assert "alert" not in html
    assert "Check the fuse." in html and "Then reset." in html


@pytest.mark.parametrize(
    "raw",
    [
        '<img src="x" onerror="alert(1)">',
        '<p onclick="steal()">click me</p>',
        '<svg onload="alert(1)"></svg>',
        '<a href="#cite-1" onmouseover="alert(1)">hover</a>',
    ],
)
def test_it_removes_event_handler_attributes(raw):
    html = render_answer(f"Manual says: {raw}", citation_count=1)

    assert not re.search(r"\son\w+\s*=", html), html
    assert "alert" not in html and "steal" not in html
    assert "<img" not in html and "<svg" not in html


@pytest.mark.parametrize(
    "text",
    [
        "[open the manual](javascript:alert(1))",
        '<a href="javascript:alert(1)">open</a>',
        '<a href="JaVaScRiPt:alert(1)">open</a>',
        "[data](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
    ],
)
def test_it_removes_javascript_and_data_links(text):
    html = render_answer(text)

    assert "javascript" not in html.lower()
    assert "data:" not in html
    assert "open" in html or "data" in html  # the link text stays readable


def test_it_keeps_http_links_safe():
    html = render_answer("See [Creality](https://www.creality3d.com).")

    assert '<a href="https://www.creality3d.com" rel="noopener noreferrer">Creality</a>' in html


def test_it_removes_iframes():
    html = render_answer('Wiring: <iframe src="http://evil.example/x"></iframe> done')

    assert "<iframe" not in html.lower()
    assert "evil.example" not in html
    assert "done" in html


def test_raw_html_quoted_from_a_manual_cannot_run_or_style_the_page():
    manual_text = (
        '<style>body{display:none}</style><form action="http://evil"><input name="pw"></form>'
        '<object data="x.swf"></object><div style="position:fixed">Relay stuck</div>'
    )

    html = render_answer(manual_text)

    assert tags(html) <= {"p"}
    assert "display:none" not in html and "position:fixed" not in html
    assert "evil" not in html
    assert "Relay stuck" in html


def test_it_keeps_markdown_bold_lists_and_code():
    text = (
        "**Power off** the printer and *wait*.\n\n"
        "- check the fuse\n- check the relay\n\n"
        "1. first\n2. second\n\n"
        "Run `M503` to print settings.\n\n"
        "```\nM104 S200 ; <hot end>\n```"
    )

    html = render_answer(text)

    assert "<strong>Power off</strong>" in html
    assert "<em>wait</em>" in html
    assert "<ul>\n<li>check the fuse</li>\n<li>check the relay</li>\n</ul>" in html
    assert "<ol>\n<li>first</li>\n<li>second</li>\n</ol>" in html
    assert "<code>M503</code>" in html
    assert "<pre><code>M104 S200 ; &lt;hot end&gt;\n</code></pre>" in html


def test_it_keeps_tables():
    html = render_answer("| Code | Meaning |\n|---|---|\n| E01 | relay |\n")

    assert {"table", "thead", "tbody", "tr", "th", "td"} <= tags(html)
    assert "<td>E01</td>" in html


def test_citation_markers_become_links_to_their_citation():
    html = render_answer("Reset the breaker [1], then check the CT wiring [2].", citation_count=2)

    assert '<a class="cite" href="#cite-1">[1]</a>' in html
    assert '<a class="cite" href="#cite-2">[2]</a>' in html


@pytest.mark.parametrize("marker", ["[0]", "[3]", "[12]"])
def test_markers_outside_the_citations_stay_plain_text(marker):
    html = render_answer(f"As the manual says {marker}.", citation_count=2)

    assert marker in html
    assert 'class="cite"' not in html


def test_no_citations_no_links():
    html = render_answer("See [1].", citation_count=0)

    assert "[1]" in html
    assert "<a" not in html


def test_a_cite_link_cannot_be_forged_with_extra_attributes():
    forged = '<a class="cite" href="#cite-1" onclick="x()" style="color:red">[1]</a>'

    html = render_answer(forged, citation_count=1)

    assert "onclick" not in html and "style" not in html


def test_code_is_shown_verbatim_without_citation_links():
    # An index in code (`reg[1]`, a fenced G-code listing) is not a citation marker.
    html = render_answer("Set `reg[1]` to 0:\n\n```\nbuf[2] = reg[1];\n```", citation_count=2)

    assert "<code>reg[1]</code>" in html
    assert "<pre><code>buf[2] = reg[1];\n</code></pre>" in html
    assert 'class="cite"' not in html


def test_a_stored_answer_links_its_citations_by_message(db):
    from apps.chat.models import Citation, Conversation, Message

    answer = Message.objects.create(conversation=Conversation.objects.create(), role="assistant", content="See [1].")
    Citation.objects.create(message=answer, rank=1, file_name="m.pdf", page=2, score=0.5, text="t")

    assert f'<a class="cite" href="#cite-{answer.pk}-1">[1]</a>' in answer.answer_html


def test_single_line_breaks_stay_line_breaks_as_they_streamed():
    html = render_answer("Check the fuse.\nThen measure 24 V at the heater.")

    assert "Check the fuse.<br" in html and "Then measure" in html
