"""Narrative safety and form (R4 invariants txt-1 and txt-2).

The div must be well-formed XML in the XHTML namespace, use only the basic formatting elements
FHIR allows, carry no scripts, event handlers or active URLs, and have some text. It is parsed
with defusedxml (no entity expansion, no external entities).
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ElementTree

from defusedxml import ElementTree as SafeElementTree
from defusedxml.common import DefusedXmlException

XHTML = "{http://www.w3.org/1999/xhtml}"
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
URL_ATTRIBUTES = frozenset({"href", "src", "cite", "longdesc", "usemap"})
# URL schemes that only fetch or name something (none runs code in the reader's browser); an
# unknown scheme is refused (javascript:, vbscript:, data:text/html...). ftp: occurs in the
# official R4 narratives (ValueSet/formatcodes).
SAFE_SCHEMES = (
    "http:",
    "https:",
    "ftp:",
    "ftps:",
    "sftp:",
    "mailto:",
    "tel:",
    "urn:",
    "#",
    "data:image/",
)
_INVISIBLE = re.compile(r"[\x00-\x20\x7f-\xa0\u1680\u180e\u2000-\u200f\u2028-\u202f\u205f\ufeff]")
_SCHEME = re.compile(r"^[a-z][a-z0-9+.\-]*:")
_CSS_COMMENT = re.compile(r"/\*.*?\*/", re.S)
_CSS_URL = re.compile(r"url\s*\(([^)]*)\)", re.I)
_URL_OPEN = re.compile(r"url\s*\(", re.I)
_CSS_ACTIVE = ("expression(", "behavior", "-moz-binding", "javascript:", "vbscript:", "@import")


def _unsafe_url(value: str) -> bool:
    """True for javascript:, vbscript:, data:text/html... even when obfuscated with whitespace or
    control characters, which browsers ignore."""
    cleaned = _INVISIBLE.sub("", value).lower()
    if not _SCHEME.match(cleaned):
        return False  # a relative URL
    return not cleaned.startswith(SAFE_SCHEMES)


def _unsafe_style(value: str) -> bool:
    """True for a style that can run or fetch something: ``expression()``, ``behavior``,
    ``-moz-binding``, or a ``url()`` that is not an inline ``data:image/`` (which fetches nothing;
    190 of the official R4 StructureDefinitions use one for their tree icons). CSS escapes
    (``\\75 rl(``) could hide any of these, so a style with a backslash is refused too."""
    if "\\" in value:
        return True
    cleaned = _CSS_COMMENT.sub("", value).lower()
    if any(word in cleaned for word in _CSS_ACTIVE):
        return True
    if "url" not in cleaned:
        return False
    if _URL_OPEN.search(_CSS_URL.sub("", cleaned)):
        return True  # a url( left that is not well-formed: refuse rather than guess
    for target in _CSS_URL.findall(cleaned):
        target = _INVISIBLE.sub("", target).strip("'\"")
        if not target.startswith("data:image/"):
            return True
    return False


def check_xhtml(div: str) -> str | None:
    try:
        root = SafeElementTree.fromstring(div)
    except (ElementTree.ParseError, DefusedXmlException):
        return (
            "the narrative is not well-formed XHTML (entities other than &lt; &gt; &amp; "
            "&quot; &apos; and character references are not allowed)"
        )
    if root.tag != XHTML + "div":
        return (
            "the narrative must be a <div> in the XHTML namespace "
            '(xmlns="http://www.w3.org/1999/xhtml")'
        )
    has_content = False
    for element in root.iter():
        if not element.tag.startswith(XHTML):
            return f"the narrative contains an element outside XHTML: {element.tag}"
        name = element.tag[len(XHTML) :]
        if name not in ALLOWED_TAGS:
            return f"the narrative contains a <{name}> element, which FHIR does not allow"
        for attribute, value in element.attrib.items():
            local = attribute.rsplit("}", 1)[-1].lower()
            if local.startswith("on"):
                return f"the narrative contains an event handler attribute {local!r}"
            if local in URL_ATTRIBUTES and _unsafe_url(value):
                return f"the narrative contains an unsafe URL in {local!r}"
            if local == "style" and _unsafe_style(value):
                return "the narrative contains an active style (script, binding or external url())"
        if (
            name == "img"
            or (element.text and element.text.strip())
            or (element.tail and element.tail.strip() and element is not root)
        ):
            has_content = True
    if not has_content:
        return "the narrative must have some non-whitespace content (txt-2)"
    return None
