"""The FHIRPath parser: tokens (``lexer.py``) to an abstract syntax tree.

Operator precedence (FHIRPath N1 grammar, loosest first): ``implies``; ``or xor``; ``and``;
``in contains``; ``= ~ != !~``; ``< > <= >=``; ``|``; ``is as``; ``+ - &``; ``* / div mod``;
unary ``+ -``; ``.`` invocation and ``[]`` indexer.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from fhir_server.fhirpath.lexer import LexError, Token, tokenize
from fhir_server.fhirpath.values import CALENDAR_UNITS, Quantity, parse_temporal


class ParseError(ValueError):
    """The expression is not valid FHIRPath syntax."""


# -- syntax tree ---------------------------------------------------------------------------------


class Expr:
    __slots__ = ()


@dataclass(slots=True, frozen=True)
class Literal(Expr):
    value: Any  # a System value: bool, int, Decimal, str, Temporal, Quantity


@dataclass(slots=True, frozen=True)
class Empty(Expr):
    pass


@dataclass(slots=True, frozen=True)
class Member(Expr):
    base: Expr | None  # None: applied to $this (the start of a path)
    name: str
    quoted: bool = False


@dataclass(slots=True, frozen=True)
class Call(Expr):
    base: Expr | None  # None: applied to $this
    name: str
    args: tuple[Expr, ...]


@dataclass(slots=True, frozen=True)
class Index(Expr):
    base: Expr
    index: Expr


@dataclass(slots=True, frozen=True)
class Unary(Expr):
    op: str
    operand: Expr


@dataclass(slots=True, frozen=True)
class Binary(Expr):
    op: str
    left: Expr
    right: Expr


@dataclass(slots=True, frozen=True)
class TypeOp(Expr):
    op: str  # is | as
    operand: Expr
    type_name: tuple[str, ...]  # qualified identifier parts, e.g. ("System", "Boolean")


@dataclass(slots=True, frozen=True)
class Var(Expr):
    name: str  # without the leading %


@dataclass(slots=True, frozen=True)
class Special(Expr):
    name: str  # $this, $index, $total


# -- parser --------------------------------------------------------------------------------------

_LEVELS: tuple[frozenset[str], ...] = (
    frozenset({"implies"}),
    frozenset({"or", "xor"}),
    frozenset({"and"}),
    frozenset({"in", "contains"}),
    frozenset({"=", "~", "!=", "!~"}),
    frozenset({"<", ">", "<=", ">="}),
    frozenset({"|"}),
    frozenset({"is", "as"}),
    frozenset({"+", "-", "&"}),
    frozenset({"*", "/", "div", "mod"}),
)
_WORD_OPERATORS = frozenset(
    {"implies", "or", "xor", "and", "in", "contains", "is", "as", "div", "mod"}
)


class _Parser:
    def __init__(self, text: str) -> None:
        try:
            self.tokens = tokenize(text)
        except LexError as exc:
            raise ParseError(str(exc)) from exc
        self.pos = 0

    @property
    def token(self) -> Token:
        return self.tokens[self.pos]

    def advance(self) -> Token:
        token = self.tokens[self.pos]
        self.pos += 1
        return token

    def error(self, what: str) -> ParseError:
        token = self.token
        found = "the end" if token.kind == "eof" else repr(token.text)
        return ParseError(f"{what}, found {found} at position {token.pos}")

    def expect(self, text: str) -> None:
        token = self.token
        if token.kind != "op" or token.text != text:
            raise self.error(f"expected {text!r}")
        self.pos += 1

    def operator(self, level: int) -> str | None:
        token = self.token
        is_operator = token.kind == "op" or (token.kind == "id" and token.text in _WORD_OPERATORS)
        return token.text if is_operator and token.text in _LEVELS[level] else None

    def parse(self) -> Expr:
        if self.token.kind == "eof":
            raise self.error("expected an expression")
        expr = self.binary(0)
        if self.token.kind != "eof":
            raise self.error("unexpected text after the expression")
        return expr

    def binary(self, level: int) -> Expr:
        if level == len(_LEVELS):
            return self.unary()
        left = self.binary(level + 1)
        while True:
            op = self.operator(level)
            if op is None:
                return left
            self.advance()
            if op in ("is", "as"):
                left = TypeOp(op, left, self.type_specifier())
            else:
                left = Binary(op, left, self.binary(level + 1))

    def unary(self) -> Expr:
        token = self.token
        if token.kind == "op" and token.text in ("+", "-"):
            self.advance()
            return Unary(token.text, self.unary())
        return self.postfix()

    def postfix(self) -> Expr:
        expr = self.term()
        while True:
            token = self.token
            if token.kind == "op" and token.text == ".":
                self.advance()
                expr = self.invocation(expr)
            elif token.kind == "op" and token.text == "[":
                self.advance()
                index = self.binary(0)
                self.expect("]")
                expr = Index(expr, index)
            else:
                return expr

    def invocation(self, base: Expr | None) -> Expr:
        token = self.advance()
        if token.kind not in ("id", "qid") or token.text.startswith("$"):
            self.pos -= 1
            raise self.error("expected a name")
        if self.token.kind == "op" and self.token.text == "(":
            self.advance()
            return Call(base, token.text, self.arguments())
        return Member(base, token.text, token.kind == "qid")

    def arguments(self) -> tuple[Expr, ...]:
        args: list[Expr] = []
        if self.token.kind == "op" and self.token.text == ")":
            self.advance()
            return ()
        while True:
            args.append(self.binary(0))
            if self.token.kind == "op" and self.token.text == ",":
                self.advance()
                continue
            self.expect(")")
            return tuple(args)

    def type_specifier(self) -> tuple[str, ...]:
        parts: list[str] = []
        while True:
            token = self.advance()
            if token.kind not in ("id", "qid"):
                self.pos -= 1
                raise self.error("expected a type name")
            parts.append(token.text)
            if self.token.kind == "op" and self.token.text == "." and len(parts) < 2:
                self.advance()
                continue
            return tuple(parts)

    def term(self) -> Expr:
        token = self.token
        kind = token.kind
        if kind == "op":
            if token.text == "(":
                self.advance()
                inner = self.binary(0)
                self.expect(")")
                return inner
            if token.text == "{":
                self.advance()
                self.expect("}")
                return Empty()
            raise self.error("expected an expression")
        if kind == "str":
            self.advance()
            return Literal(token.text)
        if kind == "num":
            self.advance()
            number: int | Decimal = Decimal(token.text) if "." in token.text else int(token.text)
            unit = self.token
            if unit.kind == "str":
                self.advance()
                return Literal(Quantity(Decimal(number), unit.text))
            if unit.kind == "id" and unit.text in CALENDAR_UNITS:
                self.advance()
                return Literal(Quantity(Decimal(number), CALENDAR_UNITS[unit.text]))
            return Literal(number)
        if kind in ("date", "time"):
            self.advance()
            value = parse_temporal(token.text[1:], literal=True)
            if value is None:
                raise ParseError(f"{token.text} is not a valid date/time at position {token.pos}")
            return Literal(value)
        if kind == "var":
            self.advance()
            return Var(token.text)
        if kind in ("id", "qid"):
            if kind == "id":
                if token.text in ("true", "false"):
                    self.advance()
                    return Literal(token.text == "true")
                if token.text.startswith("$"):
                    self.advance()
                    if token.text not in ("$this", "$index", "$total"):
                        raise ParseError(f"unknown {token.text} at position {token.pos}")
                    return Special(token.text)
                if token.text in _WORD_OPERATORS - {"contains", "in", "as", "is"}:
                    raise self.error("expected an expression")
            return self.invocation(None)
        raise self.error("expected an expression")


def parse(text: str) -> Expr:
    """The syntax tree of ``text``; raises ``ParseError`` for anything that is not FHIRPath."""
    if not isinstance(text, str):
        raise ParseError("a FHIRPath expression must be a string")
    return _Parser(text).parse()


def walk(expr: Expr) -> list[Expr]:
    """Every node of a syntax tree."""
    out: list[Expr] = []
    stack: list[Expr] = [expr]
    while stack:
        node = stack.pop()
        out.append(node)
        for name in node.__slots__:  # type: ignore[attr-defined]
            child = getattr(node, name)
            if isinstance(child, Expr):
                stack.append(child)
            elif isinstance(child, tuple):
                stack.extend(c for c in child if isinstance(c, Expr))
    return out


def needs_resource(expr: Expr) -> bool:
    """Whether evaluating the expression may read %resource / %rootResource (also resolve(),
    which looks for contained resources and Bundle entries there)."""
    return any(
        (isinstance(node, Var) and node.name in ("resource", "rootResource"))
        or (isinstance(node, Call) and node.name == "resolve")
        for node in walk(expr)
    )
