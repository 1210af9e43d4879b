"""Narrative safety (R4 invariants txt-1 and txt-2): only basic formatting XHTML, nothing active."""

from __future__ import annotations

from html.parser import HTMLParser

ALLOWED_TAGS = frozenset(
    [
        "a",
        "abbr",
        "acronym",
        "address",
        "b",
        "big",
        "blockquote",
        "br",
        "caption",
        "cite",
        "code",
        "col",
        "colgroup",
        "dd",
        "dfn",
        "div",
        "dl",
        "dt",
        "em",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "hr",
        "i",
        "img",
        "kbd",
        "li",
        "ol",
        "p",
        "pre",
        "q",
        "samp",
        "small",
        "span",
        "strong",
        "sub",
        "sup",
        "table",
        "tbody",
        "td",
        "tfoot",
        "th",
        "thead",
        "tr",
        "tt",
        "ul",
        "var",
    ]
)
FORBIDDEN_URL_SCHEMES = ("javascript:", "vbscript:", "data:text/html")


class _NarrativeChecker(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.problem: str | None = None
        self.has_text = False
        self.first_tag: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self.first_tag is None:
            self.first_tag = tag
        if tag not in ALLOWED_TAGS and self.problem is None:
            self.problem = f"the narrative contains a <{tag}> element, which FHIR does not allow"
        if tag == "img":
            self.has_text = True
        for name, value in attrs:
            lowered = (value or "").strip().lower()
            if name.startswith("on") or lowered.startswith(FORBIDDEN_URL_SCHEMES):
                self.problem = (
                    self.problem or f"the narrative contains an active attribute {name!r}"
                )

    def handle_data(self, data: str) -> None:
        if data.strip():
            self.has_text = True


def check_xhtml(div: str) -> str | None:
    if not div.lstrip().startswith("<div"):
        return "the narrative must be an XHTML <div> element"
    checker = _NarrativeChecker()
    try:
        checker.feed(div)
        checker.close()
    except Exception:  # html.parser only raises on truly broken input
        return "the narrative is not well-formed XHTML"
    if checker.problem:
        return checker.problem
    if not checker.has_text:
        return "the narrative must have some non-whitespace content (txt-2)"
    return None
