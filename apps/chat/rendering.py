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


def render_answer(text: str, citation_count: int = 0, *, scope: int | None = None) -> str:
    """Markdown → sanitized HTML; [n] markers that match a citation become links to it.

    The answer being streamed links to ``#cite-n``; a stored answer on a page with others
    (``scope`` = its message id) links to ``#cite-<scope>-n``, the ids its citations have there.
    """
    anchor = f"cite-{scope}-" if scope is not None else "cite-"
    html = markdown.markdown(text, extensions=["fenced_code", "tables", "sane_lists", "nl2br"])
    safe = nh3.clean(html, tags=ALLOWED_TAGS, attributes={"a": {"href", "class"}}, url_schemes={"http", "https"}, link_rel="noopener noreferrer")

    def link(match: re.Match) -> str:
        n = int(match.group(1))
        if 1 <= n <= citation_count:
            return f'<a class="cite" href="#{anchor}{n}">[{n}]</a>'
        return match.group(0)

    # Code is shown verbatim: no citation links inside it.
    parts = _CODE.split(safe)
    return "".join(part if i % 2 else _CITE.sub(link, part) for i, part in enumerate(parts))
