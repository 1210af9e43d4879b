"""Checks for the R4 primitive types; the regular expressions come from the R4 definitions.

The R4 regexes are written for XML Schema / Java semantics, where ``\\s`` is ASCII whitespace,
``\\S`` any other character and ``\\d`` an ASCII digit. Python's default (Unicode) classes mean
something else: ``\\S`` does not match U+00A0 (no-break space) or U+2003, so a string holding one
was rejected as "not a valid string". Every regex is therefore compiled with ``re.ASCII``: ``\\s``
is then ``[ \\t\\n\\r\\f\\v]`` (form feed and vertical tab are control characters, which strings
may not hold anyway), ``\\S`` every other character including all of Unicode, ``\\d`` ``[0-9]``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date
from decimal import Decimal
from functools import cache

from fhir_server.definitions import load_r4
from fhir_server.validation.xhtml import check_xhtml

MAX_STRING_BYTES = 1024 * 1024
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1

Check = Callable[[object], str | None]


@cache
def _regexes() -> dict[str, re.Pattern[str]]:
    out: dict[str, re.Pattern[str]] = {}
    for sd in load_r4("profiles-types"):
        if sd["kind"] != "primitive-type":
            continue
        for element in sd["snapshot"]["element"]:
            if not element["path"].endswith(".value"):
                continue
            for ext in element["type"][0].get("extension", ()):
                if ext["url"].endswith("/regex"):
                    out[sd["type"]] = re.compile(ext["valueString"], re.ASCII)
    return out


def _valid_calendar_date(text: str) -> bool:
    """The regexes allow 2023-02-30; FHIR says dates SHALL be valid dates."""
    if len(text) < 10:
        return True
    try:
        date(int(text[0:4]), int(text[5:7]), int(text[8:10]))
    except ValueError:
        return False
    return True


# R4 datatypes: "Strings SHALL NOT contain Unicode character points below 32, except for u0009
# (horizontal tab), u0010 (carriage return) and u0013 (line feed)".
_CONTROL_CHARACTER = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")


# string and markdown: the R4 regex "[ \r\n\t\S]+" (ASCII) allows every character but \x0b and
# \x0c; together with the control-character rule that is one character class, one pass.
_STRING_WITHOUT_CONTROLS = re.compile(r"[^\x00-\x08\x0b\x0c\x0e-\x1f]+")
# types whose R4 regex admits no control character at all: no second scan needed
_NO_CONTROLS_POSSIBLE = frozenset({"date", "dateTime", "instant", "time", "id", "oid", "uuid"})


def _string_check(type_code: str, pattern: re.Pattern[str] | None) -> Check:
    fullmatch = pattern.fullmatch if pattern else None
    calendar = type_code in ("date", "dateTime", "instant")
    quick = _STRING_WITHOUT_CONTROLS.fullmatch if type_code in ("string", "markdown") else None
    scan_controls = type_code not in _NO_CONTROLS_POSSIBLE

    def check(value: object) -> str | None:
        if type(value) is not str:
            return f"expected a JSON string for {type_code}, got {_json_type(value)}"
        if not value:
            return f"an empty string is not a valid {type_code}"
        if len(value) > MAX_STRING_BYTES // 4 and len(value.encode()) > MAX_STRING_BYTES:
            return f"{type_code} is longer than 1 MB"
        if quick is not None and quick(value) is not None:
            return None  # the R4 regex and the control-character rule in one pass
        if fullmatch is not None and fullmatch(value) is None:
            return f"{_quote(value)} is not a valid {type_code}"
        if scan_controls:
            control = _CONTROL_CHARACTER.search(value)
            if control is not None:
                return (
                    f"{type_code} contains the control character U+{ord(control.group()):04X}, "
                    "which FHIR strings must not contain"
                )
        if calendar and not _valid_calendar_date(value):
            return f"{_quote(value)} is not a valid calendar date"
        return None

    return check


def _integer_check(type_code: str, minimum: int) -> Check:
    def check(value: object) -> str | None:
        if type(value) is Decimal and value == value.to_integral_value():  # type: ignore[union-attr]
            return f"{value} is out of range for {type_code}"  # a JSON integer beyond 64 bits
        if type(value) is not int:
            return f"expected a JSON integer for {type_code}, got {_json_type(value)}"
        if not minimum <= value <= INT32_MAX:
            return f"{value} is out of range for {type_code}"
        return None

    return check


def _decimal_check(value: object) -> str | None:
    kind = type(value)
    if kind not in (int, float, Decimal):
        return f"expected a JSON number for decimal, got {_json_type(value)}"
    # The JSON codec parses every number with a fraction, an exponent or more than 18 digits into
    # an exact Decimal, so a float only comes from code that computed one: beyond 1e18 it cannot
    # be kept digit for digit, and FHIR decimals must not change silently.
    if kind is float and abs(value) >= 1e18:  # type: ignore[arg-type]
        return "the number is too large to be stored exactly (more than 18 digits)"
    if kind is Decimal and not value.is_finite():  # type: ignore[union-attr]
        return "a decimal must be a finite number"
    return None


def _boolean_check(value: object) -> str | None:
    if type(value) is not bool:
        return f"expected true or false for boolean, got {_json_type(value)}"
    return None


def _xhtml_check(value: object) -> str | None:
    if type(value) is not str:
        return f"expected a JSON string for xhtml, got {_json_type(value)}"
    return check_xhtml(value)


@cache
def primitive_checks() -> dict[str, Check]:
    regexes = _regexes()
    checks: dict[str, Check] = {}
    for type_code in (
        "base64Binary",
        "canonical",
        "code",
        "date",
        "dateTime",
        "id",
        "instant",
        "markdown",
        "oid",
        "string",
        "time",
        "uri",
        "url",
        "uuid",
    ):
        checks[type_code] = _string_check(type_code, regexes.get(type_code))
    checks["integer"] = _integer_check("integer", INT32_MIN)
    checks["positiveInt"] = _integer_check("positiveInt", 1)
    checks["unsignedInt"] = _integer_check("unsignedInt", 0)
    checks["decimal"] = _decimal_check
    checks["boolean"] = _boolean_check
    checks["xhtml"] = _xhtml_check
    return checks


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float, Decimal)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _quote(value: str) -> str:
    return repr(value if len(value) <= 40 else value[:37] + "...")
