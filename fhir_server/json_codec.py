"""JSON in and out: fast (orjson), hostile-input safe, and faithful to FHIR decimals.

FHIR decimals carry their precision ("1.50" is not "1.5") and have no size limit, which a binary
float loses. orjson parses fractions, exponents and integers beyond 64 bits to binary floats, so a
body that holds such a number is parsed by the standard library into exact ``Decimal`` values
instead; the check is a literal byte scan, so most resources (no decimals at all) stay on orjson.
Decimals are written back verbatim through ``orjson.Fragment``.
"""

from __future__ import annotations

import json
import re
from decimal import Decimal, InvalidOperation
from typing import Any

import orjson

from fhir_server.errors import bad_request

# Where a number token might not survive orjson exactly: a fraction (".5"), an exponent ("1e5",
# "2E-3") or an integer of 19 digits or more (orjson turns those into binary floats). Python's re
# only scans fast for a literal first character, so fractions are found by a regex starting with
# "." and the others in a copy of the body whose digits are all "0" (literal searches).
_FRACTION = re.compile(rb"\.\d")
_ZEROS = bytes.maketrans(b"123456789", b"000000000")
_NUMBER_PART = frozenset(b"0123456789.-+eE")
_LONG = b"0" * 19


def _in_number(body: bytes, start: int) -> bool:
    """Whether position ``start`` is inside a JSON number token (not inside a string)."""
    i = start - 1
    while i >= 0 and body[i] in _NUMBER_PART:
        i -= 1
    while i >= 0 and body[i] in b" \t\r\n":
        i -= 1
    if i < 0:
        return True
    before = body[i]
    if before in b",[":
        return True
    if before == 58:  # ':' ends a key only if a quote precedes it
        i -= 1
        while i >= 0 and body[i] in b" \t\r\n":
            i -= 1
        return i >= 0 and body[i] == 34
    return False


def _has_decimal_number(body: bytes) -> bool:
    """True if a JSON number orjson could not keep exactly occurs (cheap literal scans, context
    checked: the candidate must be part of a number token, not of a string)."""
    for match in _FRACTION.finditer(body):
        if _in_number(body, match.start()):
            return True
    flat = body.translate(_ZEROS)
    for needle, offset in ((b"0e", 1), (b"0E", 1), (_LONG, 0)):
        i = flat.find(needle)
        while i != -1:
            if _in_number(body, i + offset):
                return True
            i = flat.find(needle, i + 1)
    return False


# Magnitudes are kept within what a float can order (1e-308 .. 1e308), as the search index
# stores numbers as floats: 1e999 is refused. Precision (the number of digits) is not limited.
MAX_EXPONENT = 308


def _decimal(text: str) -> Decimal:
    """FHIR decimals have no precision limit (R4 decimal regex): kept exactly, digit for digit."""
    value = Decimal(text)
    if value and abs(value.adjusted()) > MAX_EXPONENT:
        raise ValueError("number out of range")
    return value


def _int(text: str) -> int | Decimal:
    """Integers beyond 18 digits stay exact as Decimal (orjson cannot write Python ints beyond
    64 bits; the validator reports them as out of range where an integer type is expected)."""
    if len(text) > 18:
        return _decimal(text)
    return int(text)


def _no_constant(text: str) -> Any:
    raise ValueError(f"{text} is not a JSON number")


def parse(body: bytes) -> Any:
    """Parse a request body; any malformed or hostile input becomes a 400 FhirError."""
    try:
        if _has_decimal_number(body):
            value = json.loads(
                body.decode("utf-8"),
                parse_float=_decimal,
                parse_int=_int,
                parse_constant=_no_constant,
            )
        else:
            value = orjson.loads(body)
    except (ValueError, RecursionError, InvalidOperation, UnicodeDecodeError) as exc:
        raise bad_request(
            f"The request body is not valid JSON: {_reason(exc)}", code="structure"
        ) from None
    return value


def _reason(exc: Exception) -> str:
    text = str(exc)
    return text[:200] if text else type(exc).__name__


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return orjson.Fragment(str(value).encode())
    raise TypeError(f"cannot serialise {type(value).__name__}")


def dumps(value: Any, pretty: bool = False) -> bytes:
    option = orjson.OPT_INDENT_2 if pretty else 0
    return orjson.dumps(value, default=_default, option=option)


def loads_trusted(raw: bytes | str) -> Any:
    """Parse JSON the server wrote itself (stored resources): no hostile-input checks needed."""
    if isinstance(raw, str):
        raw = raw.encode()
    if _has_decimal_number(raw):
        return json.loads(raw, parse_float=Decimal, parse_int=_int)
    return orjson.loads(raw)
