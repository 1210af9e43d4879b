"""JSON in and out: fast (orjson), hostile-input safe, and faithful to FHIR decimals.

FHIR decimals carry their precision ("1.50" is not "1.5"), which a binary float loses. orjson parses
floats to binary, so a body that holds a number with a fraction is parsed by the standard library
into ``Decimal`` instead; the check is a literal byte scan, so most resources (no decimals at all)
stay on orjson. Decimals are written back verbatim through ``orjson.Fragment``.
"""

from __future__ import annotations

import json
import re
from decimal import Decimal, InvalidOperation
from typing import Any

import orjson

from fhir_server.errors import bad_request

MAX_SIGNIFICANT_DIGITS = 36
MAX_EXPONENT = 308

# A number token whose float round-trip could differ from its text.
_FRACTION = re.compile(rb"\.\d")


def _has_decimal_number(body: bytes) -> bool:
    """True if a JSON number with a fraction occurs (cheap literal scan, context checked)."""
    for match in _FRACTION.finditer(body):
        i = match.start() - 1
        while i >= 0 and 48 <= body[i] <= 57:
            i -= 1
        if i >= 0 and body[i] == 45:  # minus sign
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
            if i >= 0 and body[i] == 34:
                return True
    return False


def _decimal(text: str) -> Decimal:
    value = Decimal(text)
    digits = value.as_tuple()
    if len(digits.digits) > MAX_SIGNIFICANT_DIGITS or abs(value.adjusted()) > MAX_EXPONENT:
        raise ValueError("number out of range")
    return value


def _int(text: str) -> int | Decimal:
    if len(text.lstrip("-")) > 18:
        raise ValueError("integer out of range")
    return int(text)


def parse(body: bytes) -> Any:
    """Parse a request body; any malformed or hostile input becomes a 400 FhirError."""
    try:
        if _has_decimal_number(body):
            value = json.loads(body.decode("utf-8"), parse_float=_decimal, parse_int=_int)
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
        return json.loads(raw, parse_float=Decimal)
    return orjson.loads(raw)
