"""A compiled fast path for the boolean FHIRPath that invariants use.

fhirpathpy evaluates an invariant in 40-100 µs (generic node wrapping, a function registry rebuilt
per call); a profile with a handful of invariants then costs more than all its other checks
together. Most invariants are short boolean expressions over paths, so this module compiles that
subset into nested Python closures working directly on the JSON (a few µs each). Everything
outside the subset raises ``Unsupported`` at compile time, and situations whose semantics would
need type information at run time (comparing dates, a non-boolean operand of ``and``...) raise
``Fallback``; in both cases the invariant is evaluated by fhirpathpy instead, so results never
depend on the fast path. ``tests/validation/test_invariants.py`` checks that both engines agree on
every invariant of the shipped profiles and on the R4 invariants the validator runs.

Subset: paths (choice elements by name, e.g. ``value``), ``$this``, ``%resource``,
``%rootResource``, string/number/boolean literals, ``{}``, ``implies``, ``or``, ``xor``, ``and``,
``=``, ``!=``, ``in``, ``contains``, ``<``, ``<=``, ``>``, ``>=`` (numbers), ``|``, ``+``, ``-``,
``*``, ``div``, ``mod`` (numbers), and the functions ``substring``, ``replace``, ``toString``,
``toInteger``,
``exists``, ``empty``, ``not``, ``count``, ``first``, ``last``, ``where``, ``select``, ``all``,
``allTrue``, ``anyTrue``, ``isDistinct``, ``distinct``, ``descendants``, ``children``,
``startsWith``, ``endsWith``, ``contains``, ``matches``, ``length``, ``hasValue``, ``extension``,
``trace``. A leading type name (``Identifier.where(...)``) is checked against the context type.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from bench.reference.old_lexer import LexError, tokenize
from fhir_server.model.structure import PRIMITIVE_TYPES, r4_model


class Unsupported(Exception):
    """The expression is outside the compiled subset."""


class Fallback(Exception):
    """This evaluation needs the full engine (raised at run time)."""


Env = dict[str, Any]  # "resource", "root", "type", "this"
Fn = Callable[[list[Any], Env], list[Any]]

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
_DATEISH = re.compile(r"^\d{4}(-\d{2})?")
_DATE = re.compile(r"^\d{4}(-\d{2}(-\d{2})?)?$")


def _type_suffixes() -> frozenset[str]:
    model = r4_model()
    names = set(model.types) | set(PRIMITIVE_TYPES)
    return frozenset(n[:1].upper() + n[1:] for n in names)


_SUFFIXES: frozenset[str] | None = None


def _choice_suffixes() -> frozenset[str]:
    global _SUFFIXES
    if _SUFFIXES is None:
        _SUFFIXES = _type_suffixes()
    return _SUFFIXES


def _unescape(text: str) -> str:
    out = []
    i = 0
    while i < len(text):
        char = text[i]
        if char == "\\" and i + 1 < len(text):
            nxt = text[i + 1]
            if nxt == "u" and i + 5 < len(text):
                out.append(chr(int(text[i + 2 : i + 6], 16)))
                i += 6
                continue
            out.append(_ESCAPES.get(nxt, nxt))
            i += 2
            continue
        out.append(char)
        i += 1
    return "".join(out)


def _tokenize(text: str) -> list[tuple[str, str]]:
    try:
        return tokenize(text)
    except LexError as exc:
        raise Unsupported(str(exc)) from exc


# -- values ------------------------------------------------------------------------------------


def _boolean(values: list[Any]) -> bool | None:
    """A collection in a boolean context: [] -> None, [x] -> bool; more -> Fallback."""
    if not values:
        return None
    if len(values) > 1:
        raise Fallback("a collection where a single boolean was expected")
    value = values[0]
    if isinstance(value, bool):
        return value
    return True  # a single non-boolean item counts as true


def _number(value: Any) -> bool:
    return isinstance(value, (int, float, Decimal)) and not isinstance(value, bool)


def _equal(a: Any, b: Any) -> bool:
    if type(a) is str and type(b) is str and a == b:
        return True
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if _number(a) and _number(b):
        return Decimal(str(a)) == Decimal(str(b))
    if isinstance(a, str) and isinstance(b, str):
        if _DATEISH.match(a) and _DATEISH.match(b) and len(a) != len(b):
            raise Fallback("dates of different precision")
        return a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b, strict=True))
    return False


def _children(item: Any) -> list[Any]:
    out: list[Any] = []
    if isinstance(item, dict):
        for key, value in item.items():
            if key == "resourceType" or key.startswith("_"):
                continue
            if isinstance(value, list):
                out.extend(v for v in value if v is not None)
            elif value is not None:
                out.append(value)
    return out


def _member(items: list[Any], name: str) -> list[Any]:
    out: list[Any] = []
    suffixes = None
    for item in items:
        if not isinstance(item, dict):
            if name in ("extension", "id"):
                raise Fallback("extension of a primitive value")
            continue
        value = item.get(name)
        if value is None:
            if item.get("resourceType") == name:
                out.append(item)
                continue
            if suffixes is None:
                suffixes = _choice_suffixes()
            for key, candidate in item.items():
                if key.startswith(name) and key[len(name) :] in suffixes:
                    value = candidate
                    break
        if isinstance(value, list):
            out.extend(v for v in value if v is not None)
        elif value is not None:
            out.append(value)
    return out


def _singleton_int(values: list[Any]) -> int | None:
    if not values:
        return None
    if len(values) > 1 or not isinstance(values[0], int) or isinstance(values[0], bool):
        raise Fallback("a single integer was expected")
    return values[0]


def _singleton_string(values: list[Any]) -> str | None:
    if not values:
        return None
    if len(values) > 1 or not isinstance(values[0], str):
        raise Fallback("a single string was expected")
    return values[0]


# -- parser -------------------------------------------------------------------------------------


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = _tokenize(text)
        self.pos = 0

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def at(self, *values: str) -> bool:
        token = self.peek()
        return token is not None and token[1] in values and token[0] in ("op", "id")

    def take(self, value: str | None = None) -> tuple[str, str]:
        token = self.peek()
        if token is None or (value is not None and token[1] != value):
            raise Unsupported(f"expected {value!r}")
        self.pos += 1
        return token

    def parse(self) -> Fn:
        fn = self.implies()
        if self.peek() is not None:
            raise Unsupported(f"unexpected {self.peek()}")
        return fn

    def implies(self) -> Fn:
        left = self.or_()
        while self.at("implies"):
            self.take()
            right = self.or_()
            left = _implies(left, right)
        return left

    def or_(self) -> Fn:
        left = self.and_()
        while self.at("or", "xor"):
            op = self.take()[1]
            left = _logic(left, self.and_(), op)
        return left

    def and_(self) -> Fn:
        left = self.membership()
        while self.at("and"):
            self.take()
            left = _logic(left, self.membership(), "and")
        return left

    def membership(self) -> Fn:
        left = self.equality()
        while self.at("in", "contains"):
            op = self.take()[1]
            right = self.equality()
            left = _member_of(left, right) if op == "in" else _member_of(right, left)
        return left

    def equality(self) -> Fn:
        left = self.comparison()
        while self.at("=", "!="):
            op = self.take()[1]
            left = _equality(left, self.comparison(), op == "!=")
        if self.at("~", "!~", "is", "as"):
            raise Unsupported(f"operator {self.peek()}")
        return left

    def comparison(self) -> Fn:
        left = self.union()
        while self.at("<", "<=", ">", ">="):
            op = self.take()[1]
            left = _compare(left, self.union(), op)
        return left

    def union(self) -> Fn:
        left = self.additive()
        while self.at("|"):
            self.take()
            left = _union(left, self.additive())
        return left

    def additive(self) -> Fn:
        left = self.multiplicative()
        while self.at("+", "-"):
            op = self.take()[1]
            left = _arithmetic(left, self.multiplicative(), op)
        if self.at("&"):
            raise Unsupported(f"operator {self.peek()}")
        return left

    def multiplicative(self) -> Fn:
        left = self.postfix()
        while self.at("*", "div", "mod"):
            op = self.take()[1]
            left = _arithmetic(left, self.postfix(), op)
        if self.at("/"):
            raise Unsupported(f"operator {self.peek()}")
        return left

    def postfix(self) -> Fn:
        fn = self.primary()
        while True:
            if self.at("."):
                self.take()
                fn = self.invocation(fn, first=False)
            elif self.at("["):
                self.take()
                kind, number = self.take()
                if kind != "num":
                    raise Unsupported("only literal indexes")
                self.take("]")
                index = int(number)
                fn = _then(fn, lambda items, env, i=index: items[i : i + 1])
            else:
                return fn

    def primary(self) -> Fn:
        token = self.peek()
        if token is None:
            raise Unsupported("unexpected end")
        kind, value = token
        if kind == "op" and value == "(":
            self.take()
            inner = self.implies()
            self.take(")")
            return inner
        if kind == "op" and value == "{":
            self.take()
            self.take("}")
            return _constant([])
        if kind == "str":
            self.take()
            return _constant([_unescape(value[1:-1])])
        if kind == "num":
            self.take()
            return _constant([Decimal(value) if "." in value else int(value)])
        if kind == "var":
            self.take()
            name = value[1:]
            if name in ("resource", "rootResource", "context"):
                key = {"resource": "resource", "rootResource": "root", "context": "this"}[name]
                return lambda items, env: [env[key]]
            raise Unsupported(f"variable {value}")
        if kind == "id":
            if value in ("true", "false"):
                self.take()
                return _constant([value == "true"])
            if value == "$this":
                self.take()
                return lambda items, env: items
            if value.startswith("$"):
                raise Unsupported(value)
            return self.invocation(lambda items, env: items, first=True)
        raise Unsupported(f"unexpected {value!r}")

    def arguments(self) -> list[Fn]:
        self.take("(")
        args: list[Fn] = []
        if not self.at(")"):
            args.append(self.implies())
            while self.at(","):
                self.take()
                args.append(self.implies())
        self.take(")")
        return args

    def invocation(self, base: Fn, first: bool) -> Fn:
        kind, name = self.take()
        if kind != "id":
            raise Unsupported(f"expected a name, got {name!r}")
        if self.at("("):
            return _function(base, name, self.arguments())
        if first and name[:1].isupper():
            type_name = name

            def type_filter(items: list[Any], env: Env) -> list[Any]:
                if env.get("type") == type_name:
                    return base(items, env)
                found = _member(base(items, env), type_name)
                if found:
                    return found
                raise Fallback(f"type {type_name}")

            return type_filter
        return _then(base, lambda items, env, n=name: _member(items, n))


# -- combinators --------------------------------------------------------------------------------


def _then(first: Fn, second: Fn) -> Fn:
    return lambda items, env: second(first(items, env), env)


def _implies(left: Fn, right: Fn) -> Fn:
    def fn(items: list[Any], env: Env) -> list[Any]:
        a = _boolean(left(items, env))
        if a is False:
            return [True]
        b = _boolean(right(items, env))
        if a is True:
            return [] if b is None else [b]
        return [True] if b is True else []

    return fn


def _logic(left: Fn, right: Fn, op: str) -> Fn:
    def fn(items: list[Any], env: Env) -> list[Any]:
        a = _boolean(left(items, env))
        if op == "and":
            if a is False:
                return [False]
            b = _boolean(right(items, env))
            if b is False:
                return [False]
            return [True] if a is True and b is True else []
        if op == "or":
            if a is True:
                return [True]
            b = _boolean(right(items, env))
            if b is True:
                return [True]
            return [False] if a is False and b is False else []
        b = _boolean(right(items, env))  # xor
        return [] if a is None or b is None else [a != b]

    return fn


def _equality(left: Fn, right: Fn, negate: bool) -> Fn:
    def fn(items: list[Any], env: Env) -> list[Any]:
        a, b = left(items, env), right(items, env)
        if not a or not b:
            return []
        same = len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b, strict=True))
        return [same != negate]

    return fn


def _member_of(item: Fn, collection: Fn) -> Fn:
    if isinstance(collection, _Constant) and all(type(v) is str for v in collection.values):
        strings = frozenset(collection.values)

        def fast(items: list[Any], env: Env) -> list[Any]:
            single = item(items, env)
            if not single:
                return []
            if len(single) > 1:
                raise Fallback("membership of a collection")
            return [type(single[0]) is str and single[0] in strings]

        return fast

    def fn(items: list[Any], env: Env) -> list[Any]:
        single = item(items, env)
        if not single:
            return []
        if len(single) > 1:
            raise Fallback("membership of a collection")
        return [any(_equal_safe(single[0], x) for x in collection(items, env))]

    return fn


def _compare(left: Fn, right: Fn, op: str) -> Fn:
    def fn(items: list[Any], env: Env) -> list[Any]:
        a, b = left(items, env), right(items, env)
        if not a or not b:
            return []
        if len(a) > 1 or len(b) > 1 or not (_number(a[0]) and _number(b[0])):
            raise Fallback("comparison of non-numbers")
        x, y = Decimal(str(a[0])), Decimal(str(b[0]))
        return [{"<": x < y, "<=": x <= y, ">": x > y, ">=": x >= y}[op]]

    return fn


def _arithmetic(left: Fn, right: Fn, op: str) -> Fn:
    def fn(items: list[Any], env: Env) -> list[Any]:
        a, b = left(items, env), right(items, env)
        if not a or not b:
            return []
        if len(a) > 1 or len(b) > 1 or not (_number(a[0]) and _number(b[0])):
            raise Fallback("arithmetic on non-numbers")
        x, y = a[0], b[0]
        if op == "+":
            return [x + y]
        if op == "-":
            return [x - y]
        if op == "*":
            return [x * y]
        if not (isinstance(x, int) and isinstance(y, int)):
            raise Fallback("div/mod of decimals")
        if y == 0:
            return []
        quotient = abs(x) // abs(y) * (1 if (x >= 0) == (y > 0) else -1)  # truncated
        return [quotient] if op == "div" else [x - y * quotient]

    return fn


class _Constant:
    """A literal (or a union of literals), evaluated once."""

    __slots__ = ("values",)

    def __init__(self, values: list[Any]) -> None:
        self.values = values

    def __call__(self, items: list[Any], env: Env) -> list[Any]:
        return self.values


def _constant(values: list[Any]) -> Fn:
    return _Constant(values)


def _merge(values: list[Any]) -> list[Any]:
    out: list[Any] = []
    for value in values:
        if not any(_equal_safe(value, seen) for seen in out):
            out.append(value)
    return out


def _union(left: Fn, right: Fn) -> Fn:
    if isinstance(left, _Constant) and isinstance(right, _Constant):
        return _Constant(_merge(left.values + right.values))

    def fn(items: list[Any], env: Env) -> list[Any]:
        return _merge(left(items, env) + right(items, env))

    return fn


def _equal_safe(a: Any, b: Any) -> bool:
    try:
        return _equal(a, b)
    except Fallback:
        return a == b


def _criteria(arg: Fn, item: Any, env: Env) -> bool | None:
    inner = dict(env)
    inner["this"] = item
    return _boolean(arg([item], inner))


def _function(base: Fn, name: str, args: list[Fn]) -> Fn:
    count = len(args)

    def need(n: int) -> None:
        if count != n:
            raise Unsupported(f"{name}() with {count} arguments")

    if name == "exists":
        if count == 0:
            return lambda items, env: [bool(base(items, env))]
        need(1)
        arg = args[0]
        return lambda items, env: [any(_criteria(arg, x, env) is True for x in base(items, env))]
    if name == "empty":
        need(0)
        return lambda items, env: [not base(items, env)]
    if name == "not":
        need(0)

        def negate(items: list[Any], env: Env) -> list[Any]:
            value = _boolean(base(items, env))
            return [] if value is None else [not value]

        return negate
    if name == "count":
        need(0)
        return lambda items, env: [len(base(items, env))]
    if name in ("first", "last"):
        need(0)
        pick = 0 if name == "first" else -1

        def one(items: list[Any], env: Env) -> list[Any]:
            values = base(items, env)
            return [values[pick]] if values else []

        return one
    if name == "where":
        need(1)
        arg = args[0]
        return lambda items, env: [x for x in base(items, env) if _criteria(arg, x, env) is True]
    if name == "select":
        need(1)
        arg = args[0]

        def select(items: list[Any], env: Env) -> list[Any]:
            out: list[Any] = []
            for item in base(items, env):
                inner = dict(env)
                inner["this"] = item
                out.extend(arg([item], inner))
            return out

        return select
    if name == "all":
        need(1)
        arg = args[0]
        return lambda items, env: [all(_criteria(arg, x, env) is True for x in base(items, env))]
    if name in ("allTrue", "anyTrue"):
        need(0)
        test = all if name == "allTrue" else any
        return lambda items, env: [test(x is True for x in base(items, env))]
    if name == "isDistinct":
        need(0)

        def distinct(items: list[Any], env: Env) -> list[Any]:
            values = base(items, env)
            if all(type(v) is str for v in values):
                return [len(set(values)) == len(values)]
            for i, a in enumerate(values):
                if any(_equal_safe(a, b) for b in values[i + 1 :]):
                    return [False]
            return [True]

        return distinct
    if name in ("descendants", "children"):
        need(0)
        deep = name == "descendants"

        def walk(items: list[Any], env: Env) -> list[Any]:
            out: list[Any] = []
            level = [c for item in base(items, env) for c in _children(item)]
            while level:
                out.extend(level)
                if not deep:
                    break
                level = [c for item in level for c in _children(item)]
            return out

        return walk
    if name in ("startsWith", "endsWith", "contains", "matches"):
        need(1)
        arg = args[0]

        def string_test(items: list[Any], env: Env) -> list[Any]:
            text = _singleton_string(base(items, env))
            other = _singleton_string(arg(items, env))
            if text is None or other is None:
                return []
            if name == "startsWith":
                return [text.startswith(other)]
            if name == "endsWith":
                return [text.endswith(other)]
            if name == "contains":
                return [other in text]
            return [re.search(other, text, re.DOTALL) is not None]

        return string_test
    if name == "length":
        need(0)

        def length(items: list[Any], env: Env) -> list[Any]:
            text = _singleton_string(base(items, env))
            return [] if text is None else [len(text)]

        return length
    if name == "substring":
        if count not in (1, 2):
            raise Unsupported("substring() arguments")

        def substring(items: list[Any], env: Env) -> list[Any]:
            text = _singleton_string(base(items, env))
            start = _singleton_int(args[0](items, env))
            if text is None or start is None:
                return []
            if start < 0 or start >= len(text):
                return []
            if count == 1:
                return [text[start:]]
            length = _singleton_int(args[1](items, env))
            return [] if length is None else [text[start : start + max(length, 0)]]

        return substring
    if name == "replace":
        need(2)

        def replace(items: list[Any], env: Env) -> list[Any]:
            text = _singleton_string(base(items, env))
            old = _singleton_string(args[0](items, env))
            new = _singleton_string(args[1](items, env))
            if text is None or old is None or new is None:
                return []
            if old == "":
                raise Fallback("replace of the empty string")
            return [text.replace(old, new)]

        return replace
    if name == "toString":
        need(0)

        def to_string(items: list[Any], env: Env) -> list[Any]:
            values = base(items, env)
            if not values:
                return []
            if len(values) > 1:
                raise Fallback("toString of a collection")
            value = values[0]
            if isinstance(value, str) and (not _DATEISH.match(value) or _DATE.match(value)):
                return [value]  # a string, or a date (its own text)
            if isinstance(value, int) and not isinstance(value, bool):
                return [str(value)]
            raise Fallback("toString of this value")

        return to_string
    if name == "toInteger":
        need(0)

        def to_integer(items: list[Any], env: Env) -> list[Any]:
            values = base(items, env)
            if not values:
                return []
            if len(values) > 1:
                raise Fallback("toInteger of a collection")
            value = values[0]
            if isinstance(value, bool):
                return [int(value)]
            if isinstance(value, int):
                return [value]
            if isinstance(value, str) and re.fullmatch(r"[+-]?\d+", value):
                return [int(value)]
            if isinstance(value, str):
                return []
            raise Fallback("toInteger of this value")

        return to_integer
    if name == "hasValue":
        need(0)

        def has_value(items: list[Any], env: Env) -> list[Any]:
            values = base(items, env)
            return [
                len(values) == 1
                and values[0] is not None
                and not isinstance(values[0], (dict, list))
            ]

        return has_value
    if name == "extension":
        need(1)
        arg = args[0]

        def extension(items: list[Any], env: Env) -> list[Any]:
            url = _singleton_string(arg(items, env))
            return [
                ext
                for ext in _member(base(items, env), "extension")
                if isinstance(ext, dict) and ext.get("url") == url
            ]

        return extension
    if name == "trace":
        return base
    raise Unsupported(f"function {name}()")


def compile_invariant(expression: str) -> Fn:
    """Compile ``expression``; the result is called as ``fn([context value], env)``."""
    fn = _Parser(expression).parse()
    return fn
