"""The FHIRPath tokenizer (FHIRPath N1 grammar: comments, strings, quoted identifiers, numbers,
date/time literals, environment variables, operators)."""

from __future__ import annotations

import re
from typing import NamedTuple


class LexError(ValueError):
    """The text is not FHIRPath (a syntax error found while reading the characters)."""


class Token(NamedTuple):
    kind: str  # str, num, date, time, var, id, qid (quoted identifier), op, eof
    text: str  # for str: the unescaped value; for id/qid: the name; for var: the name without %
    pos: int


_DATETIME = (
    r"@\d{4}(?:-\d{2}(?:-\d{2})?)?"
    r"(?:T(?:\d{2}(?::\d{2}(?::\d{2}(?:\.\d+)?)?)?)?(?:Z|[+-]\d{2}:\d{2})?)?"
)
_TIME = r"@T\d{2}(?::\d{2}(?::\d{2}(?:\.\d+)?)?)?"
_TOKEN = re.compile(
    r"(?P<ws>\s+|//[^\n]*|/\*.*?\*/)"
    r"|(?P<str>'(?:[^'\\]|\\.)*')"
    r"|(?P<qid>`(?:[^`\\]|\\.)*`)"
    rf"|(?P<time>{_TIME})(?![\w:+-])"
    rf"|(?P<date>{_DATETIME})(?![\w:])"
    r"|(?P<num>\d+(?:\.\d+)?)"
    r"|(?P<var>%(?:[A-Za-z_][\w-]*|`(?:[^`\\]|\\.)*`|'(?:[^'\\]|\\.)*'))"
    r"|(?P<id>\$?[A-Za-z_]\w*)"
    r"|(?P<op>!=|<=|>=|!~|[.|()\[\],=<>+{}~*/&-])",
    re.DOTALL,
)

_ESCAPES = {
    "'": "'",
    '"': '"',
    "`": "`",
    "\\": "\\",
    "/": "/",
    "f": "\f",
    "n": "\n",
    "r": "\r",
    "t": "\t",
}


def unescape(text: str) -> str:
    """The value of a string or quoted identifier body (escapes resolved)."""
    if "\\" not in text:
        return text
    out: list[str] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char == "\\" and i + 1 < len(text):
            nxt = text[i + 1]
            if nxt == "u" and re.fullmatch(r"[0-9a-fA-F]{4}", text[i + 2 : i + 6]):
                out.append(chr(int(text[i + 2 : i + 6], 16)))
                i += 6
                continue
            if nxt not in _ESCAPES:
                raise LexError(f"unknown escape \\{nxt}")
            out.append(_ESCAPES[nxt])
            i += 2
            continue
        out.append(char)
        i += 1
    return "".join(out)


def tokenize(text: str) -> list[Token]:
    """The tokens of ``text``, ending with an ``eof`` token."""
    tokens: list[Token] = []
    pos = 0
    length = len(text)
    while pos < length:
        if text.startswith("/*", pos) and text.find("*/", pos + 2) < 0:
            raise LexError(f"unterminated comment at {pos}")
        match = _TOKEN.match(text, pos)
        if match is None:
            raise LexError(f"unexpected {text[pos : pos + 20]!r} at {pos}")
        kind = match.lastgroup or ""
        value = match.group(kind)
        start = pos
        pos = match.end()
        if kind == "ws":
            continue
        if kind == "str":
            tokens.append(Token("str", unescape(value[1:-1]), start))
        elif kind == "qid":
            tokens.append(Token("qid", unescape(value[1:-1]), start))
        elif kind == "var":
            name = value[1:]
            if name[:1] in "`'":
                name = unescape(name[1:-1])
            tokens.append(Token("var", name, start))
        else:
            tokens.append(Token(kind, value, start))
    tokens.append(Token("eof", "", length))
    return tokens
