"""The FHIRPath function library: one builder per function, registered by name in the
compiler's table (``engine.FUNCTIONS``) when this module is imported (``fhirpath/__init__.py``
imports it). A builder gets the compiler, the compiled input, its static type and the argument
syntax trees, and returns the compiled function and its static type."""

from __future__ import annotations

import base64
import binascii
import html
import json
import math
import re
from collections.abc import Callable
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from fhir_server.fhirpath import parser as ast
from fhir_server.fhirpath.engine import (
    _EMPTY,
    FUNCTIONS,
    Builder,
    Compiler,
    Ctx,
    Fn,
    Item,
    SemanticError,
    SType,
    _describe,
    _fold,
    _this,
    _union_stype,
    boolean,
    collection_function,
    compare,
    distinct_items,
    equal,
    function,
    single,
    to_json,
    to_system,
    type_of,
    value_function,
)
from fhir_server.fhirpath.values import (
    EvaluationError,
    Quantity,
    Temporal,
    TypeInfo,
    decimal_boundary,
    decimal_places,
    now_local,
    quantity_compare,
    temporal_boundary,
    temporal_from_datetime,
    to_boolean,
    to_decimal,
    to_integer,
    to_quantity,
    to_string,
    to_temporal,
)


@function("empty")
def _empty(c: Compiler, base: Fn, base_st: SType, args: tuple, st: SType) -> tuple[Fn, SType]:
    return (lambda ctx: [not base(ctx)]), None


@function("exists", 0, 1)
def _exists(c: Compiler, base: Fn, base_st: SType, args: tuple, st: SType) -> tuple[Fn, SType]:
    if not args:
        return (lambda ctx: [bool(base(ctx))]), None
    criteria = c.arg(args[0], base_st)

    def exists(ctx: Ctx) -> list:
        items = base(ctx)
        saved_this, saved_index = ctx.this, ctx.index
        found = False
        for index, item in enumerate(items):
            ctx.this = [item]
            ctx.index = index
            if boolean(criteria(ctx), "exists()") is True:
                found = True
                break
        ctx.this, ctx.index = saved_this, saved_index
        return [found]

    return exists, None


@function("all", 1)
def _all(c: Compiler, base: Fn, base_st: SType, args: tuple, st: SType) -> tuple[Fn, SType]:
    criteria = c.arg(args[0], base_st)

    def all_(ctx: Ctx) -> list:
        items = base(ctx)
        saved_this, saved_index = ctx.this, ctx.index
        result = True
        for index, item in enumerate(items):
            ctx.this = [item]
            ctx.index = index
            if boolean(criteria(ctx), "all()") is not True:
                result = False
                break
        ctx.this, ctx.index = saved_this, saved_index
        return [result]

    return all_, None


def _truth_values(items: list, name: str) -> list[bool]:
    out = []
    for item in items:
        value = to_system(item)
        if value is not True and value is not False:
            raise EvaluationError(f"{name}() applies to Booleans, got {_describe(item)}")
        out.append(value)
    return out


@collection_function("allTrue")
def _all_true(items: list) -> list:
    return [all(_truth_values(items, "allTrue"))]


@collection_function("anyTrue")
def _any_true(items: list) -> list:
    return [any(_truth_values(items, "anyTrue"))]


@collection_function("allFalse")
def _all_false(items: list) -> list:
    return [not any(_truth_values(items, "allFalse"))]


@collection_function("anyFalse")
def _any_false(items: list) -> list:
    return [not all(_truth_values(items, "anyFalse"))]


@collection_function("subsetOf", 1)
def _subset_of(items: list, other: list) -> list:
    return [all(any(equal(x, y) is True for y in other) for x in items)]


@collection_function("supersetOf", 1)
def _superset_of(items: list, other: list) -> list:
    return [all(any(equal(x, y) is True for y in items) for x in other)]


@collection_function("count")
def _count(items: list) -> list:
    return [len(items)]


@collection_function("distinct")
def _distinct(items: list) -> list:
    return distinct_items(items)


@collection_function("isDistinct")
def _is_distinct(items: list) -> list:
    return [len(distinct_items(items)) == len(items)]


# filtering and projection ------------------------------------------------------------------------


@function("where", 1)
def _where(c: Compiler, base: Fn, base_st: SType, args: tuple, st: SType) -> tuple[Fn, SType]:
    criteria = c.arg(args[0], base_st)

    def where(ctx: Ctx) -> list:
        items = base(ctx)
        if not items:
            return items
        saved_this, saved_index = ctx.this, ctx.index
        out = []
        for index, item in enumerate(items):
            ctx.this = [item]
            ctx.index = index
            if boolean(criteria(ctx), "where()") is True:
                out.append(item)
        ctx.this, ctx.index = saved_this, saved_index
        return out

    return where, base_st


@function("select", 1)
def _select(c: Compiler, base: Fn, base_st: SType, args: tuple, st: SType) -> tuple[Fn, SType]:
    projection, out_st = c.compile(args[0], base_st)

    def select(ctx: Ctx) -> list:
        items = base(ctx)
        saved_this, saved_index = ctx.this, ctx.index
        out: list = []
        for index, item in enumerate(items):
            ctx.this = [item]
            ctx.index = index
            out.extend(projection(ctx))
        ctx.this, ctx.index = saved_this, saved_index
        return out

    return select, out_st


@function("repeat", 1)
def _repeat(c: Compiler, base: Fn, base_st: SType, args: tuple, st: SType) -> tuple[Fn, SType]:
    projection = c.arg(args[0], None)

    def repeat(ctx: Ctx) -> list:
        saved_this, saved_index = ctx.this, ctx.index
        out: list = []
        level = base(ctx)
        while level:
            found: list = []
            for index, item in enumerate(level):
                ctx.this = [item]
                ctx.index = index
                for new in projection(ctx):
                    if not any(new is seen or equal(new, seen) is True for seen in out):
                        out.append(new)
                        found.append(new)
            level = found
        ctx.this, ctx.index = saved_this, saved_index
        return out

    return repeat, None


@function("ofType", 1)
def _of_type(c: Compiler, base: Fn, base_st: SType, args: tuple, st: SType) -> tuple[Fn, SType]:
    parts = c.type_arg(args[0])
    matcher = c.type_matcher(parts, exact=True)
    return (lambda ctx: [item for item in base(ctx) if matcher(item)]), c._type_stype(parts)


@function("is", 1)
def _is(c: Compiler, base: Fn, base_st: SType, args: tuple, st: SType) -> tuple[Fn, SType]:
    matcher = c.type_matcher(c.type_arg(args[0]), question=True)

    def is_(ctx: Ctx) -> list:
        item = single(base(ctx), "is()")
        return _EMPTY if item is None else [matcher(item)]

    return is_, None


@function("as", 1)
def _as(c: Compiler, base: Fn, base_st: SType, args: tuple, st: SType) -> tuple[Fn, SType]:
    parts = c.type_arg(args[0])
    matcher = c.type_matcher(parts, exact=True)

    def as_(ctx: Ctx) -> list:
        items = base(ctx)
        if len(items) > 1:
            raise EvaluationError("as() expects a single item (use ofType() for collections)")
        return [item for item in items if matcher(item)]

    return as_, c._type_stype(parts)


@function("type")
def _type(c: Compiler, base: Fn, base_st: SType, args: tuple, st: SType) -> tuple[Fn, SType]:
    return (lambda ctx: [TypeInfo(*type_of(item)) for item in base(ctx)]), None


# subsetting --------------------------------------------------------------------------------------


@function("single")
def _single(c: Compiler, base: Fn, base_st: SType, args: tuple, st: SType) -> tuple[Fn, SType]:
    def single_(ctx: Ctx) -> list:
        items = base(ctx)
        if len(items) > 1:
            raise EvaluationError(f"single() got {len(items)} items")
        return items

    return single_, base_st


@function("first")
def _first(c: Compiler, base: Fn, base_st: SType, args: tuple, st: SType) -> tuple[Fn, SType]:
    return (lambda ctx: base(ctx)[:1]), base_st


@function("last")
def _last(c: Compiler, base: Fn, base_st: SType, args: tuple, st: SType) -> tuple[Fn, SType]:
    return (lambda ctx: base(ctx)[-1:]), base_st


@function("tail")
def _tail(c: Compiler, base: Fn, base_st: SType, args: tuple, st: SType) -> tuple[Fn, SType]:
    return (lambda ctx: base(ctx)[1:]), base_st


def _count_arg(values: list, name: str) -> int | None:
    value = to_system(single(values, name))
    if value is None:
        return None
    if type(value) is not int:
        raise EvaluationError(f"{name} expects an integer")
    return value


@function("skip", 1)
def _skip(c: Compiler, base: Fn, base_st: SType, args: tuple, st: SType) -> tuple[Fn, SType]:
    count = c.arg(args[0], st)

    def skip(ctx: Ctx) -> list:
        n = _count_arg(count(ctx), "skip()")
        items = base(ctx)
        return items if n is None or n <= 0 else items[n:]

    return skip, base_st


@function("take", 1)
def _take(c: Compiler, base: Fn, base_st: SType, args: tuple, st: SType) -> tuple[Fn, SType]:
    count = c.arg(args[0], st)

    def take(ctx: Ctx) -> list:
        n = _count_arg(count(ctx), "take()")
        return _EMPTY if n is None or n <= 0 else base(ctx)[:n]

    return take, base_st


@collection_function("intersect", 1)
def _intersect(items: list, other: list) -> list:
    out: list = []
    for item in items:
        if any(equal(item, y) is True for y in other) and not any(
            equal(item, seen) is True for seen in out
        ):
            out.append(item)
    return out


@collection_function("exclude", 1)
def _exclude(items: list, other: list) -> list:
    return [item for item in items if not any(equal(item, y) is True for y in other)]


@collection_function("union", 1)
def _union(items: list, other: list) -> list:
    return distinct_items(items + other)


@collection_function("combine", 1)
def _combine(items: list, other: list) -> list:
    return items + other


# conversion --------------------------------------------------------------------------------------


@function("iif", 2, 3)
def _iif(c: Compiler, base: Fn, base_st: SType, args: tuple, st: SType) -> tuple[Fn, SType]:
    criterion = c.arg(args[0], base_st)
    then_fn, then_st = c.compile(args[1], base_st)
    else_fn, else_st = c.compile(args[2], base_st) if len(args) == 3 else (None, None)

    def iif(ctx: Ctx) -> list:
        items = base(ctx)
        if len(items) > 1:
            raise EvaluationError("iif() applies to a single item")
        saved_this = ctx.this
        if base is not _this:
            ctx.this = items
        result = criterion(ctx)
        if len(result) > 1:
            raise EvaluationError("the criterion of iif() gave several items")
        test = to_system(result[0]) if result else None
        if result and test is not True and test is not False:
            raise EvaluationError("the criterion of iif() must be a Boolean")
        out = then_fn(ctx) if test is True else else_fn(ctx) if else_fn is not None else _EMPTY
        ctx.this = saved_this
        return out

    return iif, _union_stype(then_st, else_st) if else_fn is not None else then_st


def _converter(name: str, convert: Callable[[Any], Any]) -> None:
    @value_function("to" + name)
    def to(value: Any) -> Any:
        return convert(value)

    @value_function("convertsTo" + name)
    def converts(value: Any) -> Any:
        return convert(value) is not None


_converter("Boolean", to_boolean)
_converter("Integer", to_integer)
_converter("Decimal", to_decimal)
_converter("String", to_string)
_converter("Date", lambda v: to_temporal(v, "date"))
_converter("DateTime", lambda v: to_temporal(v, "dateTime"))
_converter("Time", lambda v: to_temporal(v, "time"))


@value_function("toQuantity", 0, 1)
def _to_quantity(value: Any, unit: Any = None) -> Any:
    return to_quantity(value, unit)


@value_function("convertsToQuantity", 0, 1)
def _converts_to_quantity(value: Any, unit: Any = None) -> Any:
    return to_quantity(value, unit) is not None


# strings -----------------------------------------------------------------------------------------


def _text(value: Any, name: str) -> str:
    if type(value) is not str:
        raise EvaluationError(f"{name}() applies to strings, got {_describe(value)}")
    return value


@value_function("indexOf", 1)
def _index_of(value: Any, sub: Any) -> Any:
    return _text(value, "indexOf").find(_text(sub, "indexOf"))


@value_function("substring", 1, 2)
def _substring(value: Any, start: Any, length: Any = None) -> Any:
    text = _text(value, "substring")
    if type(start) is not int:
        raise EvaluationError("substring() expects an integer start")
    if start < 0 or start >= len(text):
        return None
    if length is None:
        return text[start:]
    return text[start : start + max(int(length), 0)]


@function("substring", 1, 2)
def _substring_fn(c: Compiler, base: Fn, base_st: SType, args: tuple, st: SType) -> tuple:
    start_fn = c.arg(args[0], st)
    length_fn = c.arg(args[1], st) if len(args) == 2 else None

    def substring(ctx: Ctx) -> list:
        item = single(base(ctx), "substring()")
        if item is None:
            return _EMPTY
        start = single(start_fn(ctx), "substring() start")
        if start is None:
            return _EMPTY
        length = None
        if length_fn is not None:
            length = single(length_fn(ctx), "substring() length")
            if length is not None:
                length = to_system(length)
        result = _substring(to_system(item), to_system(start), length)
        return _EMPTY if result is None else [result]

    return _fold(substring, base, start_fn, length_fn), None


@value_function("startsWith", 1)
def _starts_with(value: Any, prefix: Any) -> Any:
    return _text(value, "startsWith").startswith(_text(prefix, "startsWith"))


@value_function("endsWith", 1)
def _ends_with(value: Any, suffix: Any) -> Any:
    return _text(value, "endsWith").endswith(_text(suffix, "endsWith"))


@value_function("contains", 1)
def _contains(value: Any, sub: Any) -> Any:
    return _text(sub, "contains") in _text(value, "contains")


@value_function("upper")
def _upper(value: Any) -> Any:
    return _text(value, "upper").upper()


@value_function("lower")
def _lower(value: Any) -> Any:
    return _text(value, "lower").lower()


@value_function("replace", 2)
def _replace(value: Any, old: Any, new: Any) -> Any:
    text = _text(value, "replace")
    old, new = _text(old, "replace"), _text(new, "replace")
    if old == "":
        return new + new.join(text) + new
    return text.replace(old, new)


_REGEX_CACHE: dict[str, re.Pattern[str]] = {}


def _regex(pattern: str) -> re.Pattern[str]:
    compiled = _REGEX_CACHE.get(pattern)
    if compiled is None:
        try:
            compiled = re.compile(pattern, re.DOTALL)
        except re.error as exc:
            raise EvaluationError(f"invalid regular expression {pattern!r}: {exc}") from exc
        if len(_REGEX_CACHE) > 1024:
            _REGEX_CACHE.clear()
        _REGEX_CACHE[pattern] = compiled
    return compiled


@value_function("matches", 1)
def _matches(value: Any, pattern: Any) -> Any:
    return _regex(_text(pattern, "matches")).search(_text(value, "matches")) is not None


@value_function("matchesFull", 1)
def _matches_full(value: Any, pattern: Any) -> Any:
    return _regex(_text(pattern, "matchesFull")).fullmatch(_text(value, "matchesFull")) is not None


@value_function("replaceMatches", 2)
def _replace_matches(value: Any, pattern: Any, substitution: Any) -> Any:
    text = _text(value, "replaceMatches")
    pattern = _text(pattern, "replaceMatches")
    if pattern == "":
        return text
    substitution = re.sub(r"\$(\d+)", r"\\\1", _text(substitution, "replaceMatches"))
    return _regex(pattern).sub(substitution, text)


@value_function("length")
def _length(value: Any) -> Any:
    return len(_text(value, "length"))


@function("toChars")
def _to_chars(c: Compiler, base: Fn, base_st: SType, args: tuple, st: SType) -> tuple:
    def to_chars(ctx: Ctx) -> list:
        item = single(base(ctx), "toChars()")
        return _EMPTY if item is None else list(_text(to_system(item), "toChars"))

    return to_chars, None


@value_function("trim")
def _trim(value: Any) -> Any:
    return _text(value, "trim").strip()


@function("split", 1)
def _split(c: Compiler, base: Fn, base_st: SType, args: tuple, st: SType) -> tuple:
    separator_fn = c.arg(args[0], st)

    def split(ctx: Ctx) -> list:
        item = single(base(ctx), "split()")
        separator = single(separator_fn(ctx), "split() separator")
        if item is None or separator is None:
            return _EMPTY
        text, sep = _text(to_system(item), "split"), _text(to_system(separator), "split")
        return text.split(sep) if sep else list(text)

    return split, None


@collection_function("join", 0, 1)
def _join(items: list, separator: list | None = None) -> list:
    sep = "" if not separator else _text(to_system(separator[0]), "join")
    return [sep.join(_text(to_system(item), "join") for item in items)]


@value_function("encode", 1)
def _encode(value: Any, encoding: Any) -> Any:
    data = _text(value, "encode").encode()
    if encoding == "hex":
        return data.hex()
    if encoding == "base64":
        return base64.b64encode(data).decode()
    if encoding == "urlbase64":
        return base64.urlsafe_b64encode(data).decode()
    raise EvaluationError(f"unknown encoding {encoding!r}")


@value_function("decode", 1)
def _decode(value: Any, encoding: Any) -> Any:
    text = _text(value, "decode")
    try:
        if encoding == "hex":
            return bytes.fromhex(text).decode()
        if encoding == "base64":
            return base64.b64decode(text, validate=True).decode()
        if encoding == "urlbase64":
            return base64.urlsafe_b64decode(text).decode()
    except (ValueError, binascii.Error, UnicodeDecodeError):
        return None
    raise EvaluationError(f"unknown encoding {encoding!r}")


@value_function("escape", 1)
def _escape(value: Any, target: Any) -> Any:
    text = _text(value, "escape")
    if target == "html":
        return html.escape(text, quote=True).replace("&#x27;", "&#39;")
    if target == "json":
        return json.dumps(text, ensure_ascii=False)[1:-1]
    raise EvaluationError(f"unknown escape target {target!r}")


_JSON_ESCAPE = re.compile(r'\\(u[0-9a-fA-F]{4}|["\\/bfnrt])')
_JSON_ESCAPES = {
    '"': '"',
    "\\": "\\",
    "/": "/",
    "b": "\b",
    "f": "\f",
    "n": "\n",
    "r": "\r",
    "t": "\t",
}


def _json_unescape(match: re.Match[str]) -> str:
    code = match.group(1)
    if code[0] == "u":
        return chr(int(code[1:], 16))
    return _JSON_ESCAPES[code]


@value_function("unescape", 1)
def _unescape(value: Any, target: Any) -> Any:
    text = _text(value, "unescape")
    if target == "html":
        return html.unescape(text)
    if target == "json":
        return _JSON_ESCAPE.sub(_json_unescape, text)
    raise EvaluationError(f"unknown escape target {target!r}")


# math --------------------------------------------------------------------------------------------


def _number(value: Any, name: str) -> int | Decimal:
    if type(value) not in (int, Decimal):
        raise EvaluationError(f"{name}() applies to numbers, got {_describe(value)}")
    return value


@value_function("abs")
def _abs(value: Any) -> Any:
    if type(value) is Quantity:
        return Quantity(abs(value.value), value.unit)
    return abs(_number(value, "abs"))


@value_function("ceiling")
def _ceiling(value: Any) -> Any:
    return math.ceil(_number(value, "ceiling"))


@value_function("floor")
def _floor(value: Any) -> Any:
    return math.floor(_number(value, "floor"))


@value_function("truncate")
def _truncate(value: Any) -> Any:
    return int(_number(value, "truncate"))


def _float_result(result: float) -> Decimal | None:
    if math.isnan(result) or math.isinf(result):
        return None
    return Decimal(repr(result))


@value_function("exp")
def _exp(value: Any) -> Any:
    return Decimal(_number(value, "exp")).exp()


@value_function("ln")
def _ln(value: Any) -> Any:
    number = Decimal(_number(value, "ln"))
    return number.ln() if number > 0 else None


@value_function("log", 1)
def _log(value: Any, base: Any) -> Any:
    number, base = Decimal(_number(value, "log")), Decimal(_number(base, "log"))
    if number <= 0 or base <= 0 or base == 1:
        return None
    result = number.ln() / base.ln()
    return result.quantize(Decimal(1).scaleb(-20)).normalize() if result == result else None


@value_function("power", 1)
def _power(value: Any, exponent: Any) -> Any:
    x, y = _number(value, "power"), _number(exponent, "power")
    if type(x) is int and type(y) is int and y >= 0:
        return x**y
    try:
        result = Decimal(x) ** Decimal(y)
    except InvalidOperation:
        return None
    return result if result.is_finite() else None


@value_function("round", 0, 1)
def _round(value: Any, precision: Any = 0) -> Any:
    number = Decimal(_number(value, "round"))
    if type(precision) is not int or precision < 0:
        raise EvaluationError("round() expects a non-negative integer precision")
    return number.quantize(Decimal(1).scaleb(-precision), rounding=ROUND_HALF_UP)


@value_function("sqrt")
def _sqrt(value: Any) -> Any:
    number = Decimal(_number(value, "sqrt"))
    return number.sqrt() if number >= 0 else None


# boundaries and precision ------------------------------------------------------------------------


def _boundary(high: bool) -> Callable[..., Any]:
    def boundary(value: Any, precision: Any = None) -> Any:
        if precision is not None and type(precision) is not int:
            raise EvaluationError("the precision must be an integer")
        cls = type(value)
        if cls in (int, Decimal):
            return decimal_boundary(value, precision, high)
        if cls is Quantity:
            bound = decimal_boundary(value.value, precision, high)
            return None if bound is None else Quantity(bound, value.unit)
        if cls is Temporal:
            return temporal_boundary(value, precision, high)
        raise EvaluationError(f"boundaries apply to numbers, quantities and dates, not {cls}")

    return boundary


value_function("lowBoundary", 0, 1)(_boundary(False))
value_function("highBoundary", 0, 1)(_boundary(True))


@value_function("precision")
def _precision(value: Any) -> Any:
    cls = type(value)
    if cls is Decimal:
        return decimal_places(value)
    if cls is int:
        return 0
    if cls is Temporal:
        return value.digits()
    if cls is Quantity:
        return decimal_places(value.value)
    raise EvaluationError("precision() applies to numbers and dates")


@value_function("comparable", 1)
def _comparable(value: Any, other: Any) -> Any:
    if type(value) is not Quantity or type(other) is not Quantity:
        raise EvaluationError("comparable() applies to quantities")
    return quantity_compare(value, other) is not None


# tree navigation ---------------------------------------------------------------------------------


@function("children")
def _children(c: Compiler, base: Fn, base_st: SType, args: tuple, st: SType) -> tuple:
    children = c.nav.children

    def fn(ctx: Ctx) -> list:
        out: list = []
        for item in base(ctx):
            children(item, out)
        return out

    return fn, None


@function("descendants")
def _descendants(c: Compiler, base: Fn, base_st: SType, args: tuple, st: SType) -> tuple:
    children = c.nav.children

    def fn(ctx: Ctx) -> list:
        out: list = []
        level = base(ctx)
        while level:
            found: list = []
            for item in level:
                children(item, found)
            out.extend(found)
            level = found
        return out

    return fn, None


# utility -----------------------------------------------------------------------------------------


@function("trace", 1, 2)
def _trace(c: Compiler, base: Fn, base_st: SType, args: tuple, st: SType) -> tuple:
    name_fn = c.arg(args[0], st)
    projection = c.arg(args[1], base_st) if len(args) == 2 else None

    def trace(ctx: Ctx) -> list:
        items = base(ctx)
        if ctx.env.trace is not None:
            names = name_fn(ctx)
            label = str(to_system(names[0])) if names else ""
            shown = items
            if projection is not None:
                saved = ctx.this
                ctx.this = items
                shown = projection(ctx)
                ctx.this = saved
            ctx.env.trace(label, [to_json(item) for item in shown])
        return items

    return trace, base_st


@function("now")
def _now(c: Compiler, base: Fn, base_st: SType, args: tuple, st: SType) -> tuple:
    return (lambda ctx: [_clock(ctx)]), None


@function("today")
def _today(c: Compiler, base: Fn, base_st: SType, args: tuple, st: SType) -> tuple:
    def today(ctx: Ctx) -> list:
        day = _clock(ctx).with_precision(3)
        day.kind, day.tz = "date", None
        return [day]

    return today, None


@function("timeOfDay")
def _time_of_day(c: Compiler, base: Fn, base_st: SType, args: tuple, st: SType) -> tuple:
    def time_of_day(ctx: Ctx) -> list:
        moment = _clock(ctx)
        return [
            Temporal(
                "time",
                hour=moment.hour,
                minute=moment.minute,
                second=moment.second,
                frac=moment.frac,
                precision=6,
            )
        ]

    return time_of_day, None


def _clock(ctx: Ctx) -> Temporal:
    if ctx.now is None:
        ctx.now = temporal_from_datetime(now_local(), "dateTime")
    return ctx.now


@function("aggregate", 1, 2)
def _aggregate(c: Compiler, base: Fn, base_st: SType, args: tuple, st: SType) -> tuple:
    aggregator = c.arg(args[0], base_st)
    init = c.arg(args[1], st) if len(args) == 2 else None

    def aggregate(ctx: Ctx) -> list:
        total = init(ctx) if init is not None else _EMPTY
        saved = ctx.this, ctx.index, ctx.total
        for index, item in enumerate(base(ctx)):
            ctx.this = [item]
            ctx.index = index
            ctx.total = total
            total = aggregator(ctx)
        ctx.this, ctx.index, ctx.total = saved
        return total

    return aggregate, None


@function("sort", 0, 99)
def _sort(c: Compiler, base: Fn, base_st: SType, args: tuple, st: SType) -> tuple:
    keys: list[tuple[Fn, bool]] = []
    for arg in args:
        descending = isinstance(arg, ast.Unary) and arg.op == "-"
        keys.append((c.arg(arg.operand if descending else arg, base_st), descending))

    def sort(ctx: Ctx) -> list:
        items = list(base(ctx))
        if not keys:
            return _sorted(items, lambda item: to_system(item), False)
        saved = ctx.this, ctx.index
        for key_fn, descending in reversed(keys):

            def key_of(item: Item, key_fn: Fn = key_fn) -> Any:
                ctx.this = [item]
                found = key_fn(ctx)
                return to_system(found[0]) if found else None

            items = _sorted(items, key_of, descending)
        ctx.this, ctx.index = saved
        return items

    return sort, base_st


def _sorted(items: list, key: Callable[[Item], Any], descending: bool) -> list:
    import functools

    keyed = [(key(item), item) for item in items]

    def order(a: tuple, b: tuple) -> int:
        x, y = a[0], b[0]
        if x is None or y is None:
            return (x is None) - (y is None) if not descending else (y is None) - (x is None)
        result = compare(x, y) or 0
        return -result if descending else result

    keyed.sort(key=functools.cmp_to_key(order))
    return [item for _, item in keyed]


# FHIR-specific functions -------------------------------------------------------------------------


@function("extension", 1)
def _extension(c: Compiler, base: Fn, base_st: SType, args: tuple, st: SType) -> tuple:
    url_fn = c.arg(args[0], st)
    member = c.nav.member

    def extension(ctx: Ctx) -> list:
        urls = url_fn(ctx)
        if not urls:
            return _EMPTY
        url = to_system(single(urls, "extension() url"))
        out: list = []
        found: list = []
        for item in base(ctx):
            member(item, "extension", found)
        for ext in found:
            value = ext[0]
            if type(value) is dict and value.get("url") == url:
                out.append(ext)
        return out

    extension_st = None
    model = c.model
    if "Extension" in model.types:
        extension_st = (("Extension", model.types["Extension"]),)
    return extension, extension_st


@function("hasValue")
def _has_value(c: Compiler, base: Fn, base_st: SType, args: tuple, st: SType) -> tuple:
    def has_value(ctx: Ctx) -> list:
        items = base(ctx)
        if len(items) != 1:
            return [False]
        item = items[0]
        if type(item) is tuple:
            return [item[2] is None and item[0] is not None and type(item[0]) is not dict]
        return [True]

    return has_value, None


@function("getValue")
def _get_value(c: Compiler, base: Fn, base_st: SType, args: tuple, st: SType) -> tuple:
    def get_value(ctx: Ctx) -> list:
        items = base(ctx)
        if len(items) != 1:
            return _EMPTY
        item = items[0]
        if type(item) is tuple:
            if item[2] is None and item[0] is not None and type(item[0]) is not dict:
                return [to_system(item)]
            return _EMPTY
        return [item]

    return get_value, None


@function("not")
def _not(c: Compiler, base: Fn, base_st: SType, args: tuple, st: SType) -> tuple:
    def not_(ctx: Ctx) -> list:
        value = boolean(base(ctx), "not()")
        return _EMPTY if value is None else [not value]

    return not_, None


def reference_text(item: Item) -> str | None:
    value = item[0] if type(item) is tuple else item
    if type(value) is dict:
        reference = value.get("reference")
        return reference if isinstance(reference, str) else None
    if type(value) is str:
        return value
    return None


@function("resolve")
def _resolve(c: Compiler, base: Fn, base_st: SType, args: tuple, st: SType) -> tuple:
    model = c.model

    def resolve(ctx: Ctx) -> list:
        out: list = []
        for item in base(ctx):
            reference = reference_text(item)
            if not reference:
                continue
            found = _resolve_local(ctx, reference)
            if found is None and ctx.env.resolver is not None:
                found = ctx.env.resolver(reference)
            if isinstance(found, dict):
                rtype = found.get("resourceType", "")
                out.append((found, rtype, model.types.get(rtype), None, None, None))
        return out

    return resolve, None


def _resolve_local(ctx: Ctx, reference: str) -> dict | None:
    """Contained resources and Bundle entries (by fullUrl or type/id)."""
    if reference.startswith("#"):
        for holder in (*ctx.resource, *ctx.root):
            value = holder[0] if type(holder) is tuple else None
            if type(value) is dict:
                for contained in value.get("contained", ()) or ():
                    if isinstance(contained, dict) and contained.get("id") == reference[1:]:
                        return contained
        return None
    for holder in ctx.root:
        value = holder[0] if type(holder) is tuple else None
        if type(value) is dict and value.get("resourceType") == "Bundle":
            for entry in value.get("entry", ()) or ():
                if not isinstance(entry, dict):
                    continue
                resource = entry.get("resource")
                if not isinstance(resource, dict):
                    continue
                full_url = entry.get("fullUrl")
                if full_url == reference or (
                    isinstance(full_url, str) and full_url.endswith("/" + reference)
                ):
                    return resource
                if f"{resource.get('resourceType')}/{resource.get('id')}" == reference:
                    return resource
    return None


def _codes_of(item: Item) -> list[tuple[str | None, str]]:
    """(system, code) pairs of a code, Coding or CodeableConcept item."""
    value = item[0] if type(item) is tuple else item
    if type(value) is str:
        return [(None, value)]
    if type(value) is dict:
        if "coding" in value:
            return [
                (c.get("system"), c["code"])
                for c in value.get("coding", ())
                if isinstance(c, dict) and isinstance(c.get("code"), str)
            ]
        if isinstance(value.get("code"), str):
            return [(value.get("system"), value["code"])]
    return []


@function("memberOf", 1)
def _member_of(c: Compiler, base: Fn, base_st: SType, args: tuple, st: SType) -> tuple:
    url_fn = c.arg(args[0], st)

    def member_of(ctx: Ctx) -> list:
        item = single(base(ctx), "memberOf()")
        urls = url_fn(ctx)
        if item is None or not urls:
            return _EMPTY
        if ctx.env.terminology is None:
            raise EvaluationError("memberOf() needs a terminology service")
        codes = ctx.env.terminology.expand(str(to_system(urls[0])))
        if codes is None:
            return _EMPTY
        pairs = _codes_of(item)
        if not pairs:
            return _EMPTY
        for system, code in pairs:
            if system is None:
                if any(found_code == code for _, found_code in codes):
                    return [True]
            elif (system, code) in codes:
                return [True]
        return [False]

    return member_of, None


def _subsumption(reverse: bool) -> Builder:
    def builder(c: Compiler, base: Fn, base_st: SType, args: tuple, st: SType) -> tuple:
        other_fn = c.arg(args[0], st)

        def subsumes(ctx: Ctx) -> list:
            item = single(base(ctx), "subsumes()")
            others = other_fn(ctx)
            if item is None or not others:
                return _EMPTY
            check = getattr(ctx.env.terminology, "subsumes", None)
            if check is None:
                raise EvaluationError("subsumes() needs a terminology service")
            for system, code in _codes_of(item):
                for other in others:
                    for other_system, other_code in _codes_of(other):
                        if system and other_system and system != other_system:
                            continue
                        a, b = (other_code, code) if reverse else (code, other_code)
                        result = check(system or other_system, a, b)
                        if result:
                            return [True]
            return [False]

        return subsumes, None

    return builder


FUNCTIONS["subsumes"] = (1, 1, _subsumption(False))
FUNCTIONS["subsumedBy"] = (1, 1, _subsumption(True))


@function("conformsTo", 1)
def _conforms_to(c: Compiler, base: Fn, base_st: SType, args: tuple, st: SType) -> tuple:
    url_fn = c.arg(args[0], st)

    def conforms_to(ctx: Ctx) -> list:
        item = single(base(ctx), "conformsTo()")
        urls = url_fn(ctx)
        if item is None or not urls:
            return _EMPTY
        if ctx.env.validator is None:
            raise EvaluationError("conformsTo() needs a validator")
        return [bool(ctx.env.validator(to_json(item), str(to_system(urls[0]))))]

    return conforms_to, None


@function("htmlChecks")
def _html_checks(c: Compiler, base: Fn, base_st: SType, args: tuple, st: SType) -> tuple:
    # the structural validator checks narrative XHTML (validation/xhtml.py) on every write
    return (lambda ctx: [True]), None


@function("checkModifiers", 1)
def _check_modifiers(c: Compiler, base: Fn, base_st: SType, args: tuple, st: SType) -> tuple:
    return base, base_st


@function("elementDefinition")
def _element_definition(c: Compiler, base: Fn, base_st: SType, args: tuple, st: SType) -> tuple:
    return (lambda ctx: _EMPTY), None


@function("slice", 2)
def _slice(c: Compiler, base: Fn, base_st: SType, args: tuple, st: SType) -> tuple:
    raise SemanticError("slice() is not supported")
