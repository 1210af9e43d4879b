"""The FHIRPath tokenizer shared by the compiled evaluators (search values and invariants)."""

from __future__ import annotations

import re

_TOKEN = re.compile(
    r"\s*(?:(?P<str>'(?:[^'\\]|\\.)*')|(?P<num>\d+(?:\.\d+)?)|(?P<var>%[A-Za-z_]\w*)"
    r"|(?P<id>`[^`]+`|\$?[A-Za-z_]\w*)|(?P<op>!=|<=|>=|!~|[.|()\[\],=<>+{}~*/&-]))"
)


class LexError(ValueError):
    """The text is not FHIRPath this server can read."""


def tokenize(text: str) -> list[tuple[str, str]]:
    """(kind, text) pairs; kind is str, num, var, id (backquotes removed) or op."""
    tokens: list[tuple[str, str]] = []
    pos = 0
    text = text.strip()
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if not match or match.end() == pos:
            raise LexError(f"cannot tokenize {text[pos : pos + 20]!r}")
        kind = match.lastgroup or ""
        value = match.group(kind)
        if kind == "id" and value.startswith("`"):
            value = value[1:-1]
        tokens.append((kind, value))
        pos = match.end()
    return tokens
