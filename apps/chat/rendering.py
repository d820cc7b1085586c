"""Markdown to safe HTML for answers: nothing a manual or the model writes can run on the page."""
import re

import markdown
import nh3

ALLOWED_TAGS = {
    "p", "br", "strong", "em", "b", "i", "code", "pre", "blockquote", "ul", "ol", "li",
    "h1", "h2", "h3", "h4", "h5", "h6", "table", "thead", "tbody", "tr", "th", "td", "hr", "sup", "a",
}
_CITE = re.compile(r"(?<![\w\]])\[(\d{1,2})\]")
_CODE = re.compile(r"(<pre>.*?</pre>|<code>.*?</code>)", re.S)

# Where an ungrounded span opens and closes while the text goes through markdown and the sanitizer:
# private-use characters, which both pass through untouched, become <mark> tags only at the end.
_OPEN, _CLOSE = "\ue000", "\ue001"
_SENTINEL = re.compile("([\ue000\ue001])")
_MARK = '<mark class="ungrounded" title="not in the manuals">'
_TAG = re.compile(r"(<[^>]*>)")  # nh3 escapes "<" and ">" in text and attribute values
_BLANK_MARK = re.compile(re.escape(_MARK) + r"(\s*)</mark>")


def answer_text(extract: list[dict], narrative: str) -> str:
    """What the technician reads, as plain text: the manual's own lines first, each with its [n],
    then the model's narrative (``ask --json``, the API, an incident's draft summary)."""
    lines = [f"{item['text']} [{item['n']}]" for item in extract]
    return "\n".join(lines + ([narrative] if narrative else [])).strip()


def render_answer(
    text: str, citation_count: int = 0, *, scope: int | None = None, ungrounded: list | None = None
) -> str:
    """Markdown → sanitized HTML; [n] markers that match a citation become links to it.

    The answer being streamed links to ``#cite-n``; a stored answer on a page with others
    (``scope`` = its message id) links to ``#cite-<scope>-n``, the ids its citations have there.
    ``ungrounded``: spans of ``text`` the evidence does not support (Claims, or dicts with "start"
    and "end"), each shown as ``<mark class="ungrounded">``, in code blocks too.
    """
    anchor = f"cite-{scope}-" if scope is not None else "cite-"
    spans = _spans(ungrounded or (), len(text))
    if spans:
        text = _with_sentinels(text, spans)
    html = markdown.markdown(text, extensions=["fenced_code", "tables", "sane_lists", "nl2br"])
    safe = nh3.clean(
        html, tags=ALLOWED_TAGS, attributes={"a": {"href", "class"}}, url_schemes={"http", "https"},
        link_rel="noopener noreferrer", attribute_filter=_without_sentinels if spans else None,
    )

    def link(match: re.Match) -> str:
        n = int(match.group(1))
        if 1 <= n <= citation_count:
            return f'<a class="cite" href="#{anchor}{n}">[{n}]</a>'
        return match.group(0)

    # Code is shown verbatim: no citation links inside it.
    parts = _CODE.split(safe)
    linked = "".join(part if i % 2 else _CITE.sub(link, part) for i, part in enumerate(parts))
    return _marks(linked) if spans else linked


def _spans(ungrounded, length: int) -> list[tuple[int, int]]:
    """The (start, end) of each item, clipped to the text, sorted, overlapping ones merged."""
    spans = []
    for item in ungrounded:
        start, end = (item["start"], item["end"]) if isinstance(item, dict) else (item.start, item.end)
        start, end = max(0, int(start)), min(length, int(end))
        if start < end:
            spans.append((start, end))
    merged: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged


def _with_sentinels(text: str, spans: list[tuple[int, int]]) -> str:
    """``text`` with a sentinel pair around each span; sentinels it had itself (a model or a document
    could write them to forge marks) are dropped first, piece by piece so the offsets still hold."""
    pieces, done = [], 0
    for start, end in spans:
        pieces += [_SENTINEL.sub("", text[done:start]), _OPEN, _SENTINEL.sub("", text[start:end]), _CLOSE]
        done = end
    pieces.append(_SENTINEL.sub("", text[done:]))
    return "".join(pieces)


def _without_sentinels(tag: str, attribute: str, value: str) -> str:
    """nh3 attribute filter: a span inside a link's address is not marked, nor left in the URL."""
    return _SENTINEL.sub("", value)


def _marks(html: str) -> str:
    """Sentinels to <mark> tags. A mark open at a tag is closed before it and reopened after, so marks
    nest properly whatever markdown made of the text between a pair (a span can cross a link)."""
    out: list[str] = []
    is_open = False
    for part in _TAG.split(html):
        if part.startswith("<"):
            out.append(f"</mark>{part}{_MARK}" if is_open else part)
            continue
        for piece in _SENTINEL.split(part):
            if piece in (_OPEN, _CLOSE):
                wanted = piece == _OPEN
                if wanted != is_open:
                    out.append(_MARK if wanted else "</mark>")
                    is_open = wanted
            else:
                out.append(piece)
    if is_open:
        out.append("</mark>")
    return _BLANK_MARK.sub(r"\1", "".join(out))


def evidence_html(event: dict) -> dict:
    """A ``live_context``, ``similar_incidents`` or ``route`` event with its ``html``: the partial a stored answer
    is shown with on the chat page, so a streamed answer looks the same and chat.js builds no markup
    of its own. Other events are returned as they are."""
    from django.template.loader import render_to_string

    kind = event.get("type")
    if kind == "live_context":
        return {**event, "html": render_to_string("chat/_live_context.html", {"live": event}).strip()}
    if kind == "similar_incidents":
        items = event.get("items") or []
        html = render_to_string("chat/_similar_incidents.html", {"items": items}).strip() if items else ""
        return {**event, "html": html}
    if kind == "route":  # which model answers and why: the badge of a stored answer
        return {**event, "html": render_to_string("chat/_route_badge.html", {"route": event}).strip()}
    return event
