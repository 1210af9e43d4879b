"""FHIRPath System values: dates, date-times and times with their precision, quantities with
UCUM or calendar units, type information; their equality, equivalence, ordering, arithmetic
and conversions.

System values are plain Python objects: ``bool`` (Boolean), ``int`` (Integer), ``Decimal``
(Decimal), ``str`` (String), ``Temporal`` (Date, DateTime, Time), ``Quantity`` and ``TypeInfo``.
"""

from __future__ import annotations

import calendar
import datetime as dt
import re
from decimal import ROUND_FLOOR, ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from fhir_server.fhirpath import ucum


class EvaluationError(ValueError):
    """An expression that fails when evaluated (a type error, a collection where one value is
    needed...)."""


# -- calendar durations ---------------------------------------------------------------------------

CALENDAR_UNITS = {
    "year": "year",
    "years": "year",
    "month": "month",
    "months": "month",
    "week": "week",
    "weeks": "week",
    "day": "day",
    "days": "day",
    "hour": "hour",
    "hours": "hour",
    "minute": "minute",
    "minutes": "minute",
    "second": "second",
    "seconds": "second",
    "millisecond": "millisecond",
    "milliseconds": "millisecond",
}
CALENDAR_WORDS = frozenset(CALENDAR_UNITS.values())
# calendar durations of a fixed length and their UCUM units
_CALENDAR_TO_UCUM = {
    "week": "wk",
    "day": "d",
    "hour": "h",
    "minute": "min",
    "second": "s",
    "millisecond": "ms",
}
_UCUM_TO_CALENDAR = {v: k for k, v in _CALENDAR_TO_UCUM.items()}


class Quantity:
    """A System.Quantity: a decimal value and a unit (a UCUM code, or a calendar duration word
    such as ``week``)."""

    __slots__ = ("unit", "value")

    def __init__(self, value: Decimal, unit: str) -> None:
        self.value = value
        self.unit = unit or "1"

    @property
    def calendar(self) -> bool:
        return self.unit in CALENDAR_WORDS

    def __repr__(self) -> str:
        return f"Quantity({self.value}, {self.unit!r})"

    def __str__(self) -> str:
        value = format_decimal(self.value)
        if self.calendar:
            return f"{value} {self.unit}"
        return f"{value} '{self.unit}'"

    def to_fhir(self) -> dict[str, Any]:
        """A FHIR Quantity (UCUM system for UCUM units)."""
        if self.calendar:
            unit = _CALENDAR_TO_UCUM.get(self.unit, {"year": "a", "month": "mo"}[self.unit])
            return {
                "value": self.value,
                "unit": self.unit,
                "system": "http://unitsofmeasure.org",
                "code": unit,
            }
        return {
            "value": self.value,
            "unit": self.unit,
            "system": "http://unitsofmeasure.org",
            "code": self.unit,
        }


def _ucum_unit(quantity: Quantity) -> str | None:
    """The UCUM unit of a quantity (calendar durations of fixed length map to UCUM)."""
    if quantity.calendar:
        return _CALENDAR_TO_UCUM.get(quantity.unit)
    return quantity.unit


def _in_same_units(a: Quantity, b: Quantity) -> tuple[Decimal, Decimal] | None:
    """The values of ``a`` and ``b`` in ``a``'s unit; None if they are not comparable."""
    if a.unit == b.unit:
        return a.value, b.value
    if a.unit in ("year", "month") or b.unit in ("year", "month"):
        months = {"year": 12, "month": 1}
        if a.unit in months and b.unit in months:
            return a.value * months[a.unit], b.value * months[b.unit]
        return None
    ua, ub = _ucum_unit(a), _ucum_unit(b)
    if ua is None or ub is None:
        return None
    converted = ucum.convert(b.value, ub, ua)
    if converted is None:
        return None
    return a.value, converted


def quantity_compare(a: Quantity, b: Quantity) -> int | None:
    pair = _in_same_units(a, b)
    if pair is None:
        return None
    x, y = pair
    return (x > y) - (x < y)


def quantity_equivalent(a: Quantity, b: Quantity) -> bool:
    pair = _in_same_units(a, b)
    if pair is None:
        return False
    return decimal_equivalent(pair[0], pair[1])


def decimal_places(value: Decimal) -> int:
    exponent = value.as_tuple().exponent
    return max(0, -exponent) if isinstance(exponent, int) else 0


def decimal_equivalent(a: Decimal | int, b: Decimal | int) -> bool:
    """Equal when rounded to the precision of the less precise of the two."""
    a, b = Decimal(a), Decimal(b)
    places = min(decimal_places(a), decimal_places(b))
    quantum = Decimal(1).scaleb(-places)
    try:
        return a.quantize(quantum, ROUND_HALF_UP) == b.quantize(quantum, ROUND_HALF_UP)
    except InvalidOperation:
        return a == b


def format_decimal(value: Decimal) -> str:
    if not value.is_finite():
        return str(value)
    text = format(value, "f")
    return text


def quantity_multiply(a: Quantity, b: Quantity, divide: bool) -> Quantity:
    ua, ub = _ucum_unit(a), _ucum_unit(b)
    if ua is None or ub is None:
        raise EvaluationError("calendar durations of years or months cannot be multiplied")
    if divide:
        if b.value == 0:
            raise ZeroDivisionError
        value = a.value / b.value
        unit = "1" if ua == ub else f"{_group(ua)}/{_group(ub)}"
    else:
        value = a.value * b.value
        unit = ub if ua == "1" else ua if ub == "1" else f"{_group(ua)}.{_group(ub)}"
    try:
        ucum.canonical(unit)
    except ucum.UnitError as exc:
        raise EvaluationError(str(exc)) from exc
    return Quantity(value, unit)


def _group(unit: str) -> str:
    return f"({unit})" if any(c in unit for c in "./") else unit


def quantity_add(a: Quantity, b: Quantity, sign: int) -> Quantity | None:
    pair = _in_same_units(a, b)
    if pair is None:
        return None
    return Quantity(pair[0] + sign * pair[1], a.unit)


# -- dates and times ------------------------------------------------------------------------------

_DATE_RE = re.compile(
    r"(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?"
    r"(?:T(?:(\d{2})(?::(\d{2})(?::(\d{2})(?:\.(\d+))?)?)?)?(Z|[+-]\d{2}:\d{2})?)?"
)
_TIME_RE = re.compile(r"T?(\d{2})(?::(\d{2})(?::(\d{2})(?:\.(\d+))?)?)?")
# precision levels: 1 year, 2 month, 3 day, 4 hour, 5 minute, 6 second
_DIGITS_DATE = {4: 1, 6: 2, 8: 3, 10: 4, 12: 5, 14: 6, 17: 6}
_DIGITS_TIME = {2: 4, 4: 5, 6: 6, 9: 6}


class Temporal:
    """A System.Date, System.DateTime or System.Time with its precision."""

    __slots__ = ("day", "frac", "hour", "kind", "minute", "month", "precision", "second", "tz")
    __slots__ += ("year",)

    def __init__(
        self,
        kind: str,
        year: int = 0,
        month: int = 1,
        day: int = 1,
        hour: int = 0,
        minute: int = 0,
        second: int = 0,
        frac: str = "",
        tz: str | None = None,
        precision: int = 1,
    ) -> None:
        self.kind = kind  # date | dateTime | time
        self.year = year
        self.month = month
        self.day = day
        self.hour = hour
        self.minute = minute
        self.second = second
        self.frac = frac  # digits of the fraction of a second ("" when absent)
        self.tz = tz  # "Z", "+01:00", or None
        self.precision = precision  # 1 year .. 6 second (times: 4 hour .. 6 second)

    def __repr__(self) -> str:
        return f"Temporal({self.kind}, {self})"

    def parts(self) -> tuple[int, ...]:
        return (self.year, self.month, self.day, self.hour, self.minute)

    def seconds(self) -> Decimal:
        return Decimal(f"{self.second}.{self.frac}") if self.frac else Decimal(self.second)

    def __str__(self) -> str:
        p = self.precision
        if self.kind == "time":
            text = f"{self.hour:02d}"
        else:
            text = f"{self.year:04d}"
            if p >= 2:
                text += f"-{self.month:02d}"
            if p >= 3:
                text += f"-{self.day:02d}"
            if p < 4:
                return text
            text += f"T{self.hour:02d}"
        if p >= 5:
            text += f":{self.minute:02d}"
        if p >= 6:
            text += f":{self.second:02d}"
            if self.frac:
                text += "." + self.frac
        if self.tz and self.kind != "time":
            text += self.tz
        return text

    def literal(self) -> str:
        """The FHIRPath literal form (``@2014-01``, ``@2014T``, ``@T10:30``)."""
        text = str(self)
        if self.kind == "time":
            return "@T" + text
        if self.kind == "dateTime" and self.precision < 4:
            return "@" + text + "T"
        return "@" + text

    def tz_minutes(self) -> int | None:
        if self.tz is None:
            return None
        if self.tz == "Z":
            return 0
        sign = -1 if self.tz[0] == "-" else 1
        return sign * (int(self.tz[1:3]) * 60 + int(self.tz[4:6]))

    def with_precision(self, precision: int) -> Temporal:
        copy = Temporal(
            self.kind,
            self.year,
            self.month,
            self.day,
            self.hour,
            self.minute,
            self.second,
            self.frac,
            self.tz,
            precision,
        )
        return copy

    def digits(self) -> int:
        """The FHIRPath precision() of this value."""
        if self.kind == "time":
            base = {4: 2, 5: 4, 6: 6}[self.precision]
        else:
            base = {1: 4, 2: 6, 3: 8, 4: 10, 5: 12, 6: 14}[self.precision]
        if self.precision == 6 and self.frac:
            base += len(self.frac)
        return base


def parse_temporal(text: str, literal: bool = False, kind: str | None = None) -> Temporal | None:
    """A date, dateTime or time from FHIRPath literal text (after ``@``) or FHIR JSON text."""
    if literal and text.startswith("T"):
        return _parse_time(text[1:])
    if kind == "time":
        return _parse_time(text)
    match = _DATE_RE.fullmatch(text)
    if match is None:
        return None
    year, month, day, hour, minute, second, frac, tz = match.groups()
    has_t = "T" in text
    if kind == "date" and (has_t or tz):
        return None
    try:
        precision = 1
        value = Temporal("dateTime" if has_t else "date", int(year))
        if month:
            value.month = int(month)
            precision = 2
            if not 1 <= value.month <= 12:
                return None
        if day:
            value.day = int(day)
            precision = 3
            if not 1 <= value.day <= calendar.monthrange(value.year, value.month)[1]:
                return None
        if hour:
            value.hour = int(hour)
            precision = 4
            if value.hour > 23:
                return None
        if minute:
            value.minute = int(minute)
            precision = 5
            if value.minute > 59:
                return None
        if second:
            value.second = int(second)
            precision = 6
            if value.second > 59:
                return None
        value.frac = frac or ""
        value.tz = tz
        value.precision = precision
    except ValueError:
        return None
    if tz and precision < 4 and not literal:
        return None
    if kind == "dateTime" and value.kind == "date":
        value.kind = "dateTime"
    return value


def _parse_time(text: str) -> Temporal | None:
    match = _TIME_RE.fullmatch(text)
    if match is None:
        return None
    hour, minute, second, frac = match.groups()
    value = Temporal("time", hour=int(hour), precision=4)
    if value.hour > 23:
        return None
    if minute:
        value.minute = int(minute)
        value.precision = 5
    if second:
        value.second = int(second)
        value.precision = 6
    if value.minute > 59 or value.second > 59:
        return None
    value.frac = frac or ""
    return value


def _utc(value: Temporal) -> Temporal:
    """The same instant in UTC (for values with a time zone and at least hour precision)."""
    offset = value.tz_minutes()
    if offset is None or offset == 0 or value.precision < 4:
        return value
    moment = dt.datetime(value.year, value.month, value.day, value.hour, value.minute)
    moment -= dt.timedelta(minutes=offset)
    out = value.with_precision(value.precision)
    out.year, out.month, out.day = moment.year, moment.month, moment.day
    out.hour, out.minute = moment.hour, moment.minute
    out.tz = "Z"
    return out


def temporal_compare(a: Temporal, b: Temporal) -> int | None:
    """-1, 0, 1, or None when the precisions leave the answer open."""
    if (a.kind == "time") != (b.kind == "time"):
        raise EvaluationError("a time cannot be compared with a date")
    if a.kind == "time":
        pa, pb = a.precision, b.precision
        xa = (a.hour, a.minute)
        xb = (b.hour, b.minute)
        start = 3
    else:
        if a.precision >= 4 and b.precision >= 4:
            if (a.tz is None) != (b.tz is None):
                for x, y in zip(a.parts()[:3], b.parts()[:3], strict=True):
                    if x != y:
                        return -1 if x < y else 1
                return None
            a, b = _utc(a), _utc(b)
        pa, pb = a.precision, b.precision
        xa, xb = a.parts(), b.parts()
        start = 0
    for level in range(start + 1, min(pa, pb) + 1):
        if level == 6:
            sa, sb = a.seconds(), b.seconds()
            if sa != sb:
                return -1 if sa < sb else 1
            continue
        x, y = xa[level - 1 - start], xb[level - 1 - start]
        if x != y:
            return -1 if x < y else 1
    if pa != pb:
        return None
    return 0


def temporal_equivalent(a: Temporal, b: Temporal) -> bool:
    if (a.kind == "time") != (b.kind == "time") or a.precision != b.precision:
        return False
    try:
        return temporal_compare(a, b) == 0
    except EvaluationError:
        return False


def _frac_micro(frac: str) -> int:
    return int((frac + "000000")[:6]) if frac else 0


def temporal_add(value: Temporal, quantity: Quantity, sign: int) -> Temporal:
    unit = quantity.unit
    if not quantity.calendar:
        unit = _UCUM_TO_CALENDAR.get(unit, "")
        if not unit:
            raise EvaluationError(
                f"'{quantity.unit}' cannot be added to a date (use a calendar duration)"
            )
    amount = int(quantity.value) * sign  # decimal durations are truncated
    out = value.with_precision(value.precision)
    if value.kind == "time":
        if unit in ("year", "month", "week", "day"):
            raise EvaluationError(f"{unit} cannot be added to a time")
        moment = dt.datetime(
            2000, 1, 1, value.hour, value.minute, value.second, _frac_micro(value.frac)
        )
        moment += _delta(unit, amount)
        out.hour, out.minute, out.second = moment.hour, moment.minute, moment.second
        out.frac = _frac_text(moment.microsecond, value.frac, unit)
        return out
    if unit in ("year", "month"):
        months = amount * (12 if unit == "year" else 1)
        if value.precision == 1:
            out.year = value.year + int(months / 12)
            return out
        total = value.year * 12 + (value.month - 1) + months
        out.year, out.month = divmod(total, 12)
        out.month += 1
        out.day = min(value.day, calendar.monthrange(out.year, out.month)[1])
        return out
    seconds = {
        "week": 604800,
        "day": 86400,
        "hour": 3600,
        "minute": 60,
        "second": 1,
        "millisecond": 0,
    }[unit]
    if value.precision <= 2:  # year or month precision: whole months only
        return out
    if value.precision == 3 and unit not in ("week", "day"):
        days = int(amount * seconds / 86400) if seconds else 0
        moment = dt.datetime(value.year, value.month, value.day) + dt.timedelta(days=days)
        out.year, out.month, out.day = moment.year, moment.month, moment.day
        return out
    moment = dt.datetime(
        value.year,
        value.month,
        value.day,
        value.hour,
        value.minute,
        value.second,
        _frac_micro(value.frac),
    )
    moment += _delta(unit, amount)
    out.year, out.month, out.day = moment.year, moment.month, moment.day
    out.hour, out.minute, out.second = moment.hour, moment.minute, moment.second
    out.frac = _frac_text(moment.microsecond, value.frac, unit)
    return out


def _delta(unit: str, amount: int) -> dt.timedelta:
    return {
        "week": dt.timedelta(weeks=amount),
        "day": dt.timedelta(days=amount),
        "hour": dt.timedelta(hours=amount),
        "minute": dt.timedelta(minutes=amount),
        "second": dt.timedelta(seconds=amount),
        "millisecond": dt.timedelta(milliseconds=amount),
    }[unit]


def _frac_text(micro: int, original: str, unit: str) -> str:
    if not original and not micro:
        return ""
    width = max(len(original), 3 if micro else 0)
    text = f"{micro:06d}"
    if width <= 6:
        return text[:width]
    return text + "0" * (width - 6)


def now_local() -> dt.datetime:
    return dt.datetime.now().astimezone()


def temporal_from_datetime(moment: dt.datetime, kind: str) -> Temporal:
    offset = moment.utcoffset()
    tz = None
    if offset is not None:
        minutes = int(offset.total_seconds() // 60)
        sign = "-" if minutes < 0 else "+"
        tz = f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"
    if kind == "date":
        return Temporal("date", moment.year, moment.month, moment.day, precision=3)
    if kind == "time":
        return Temporal(
            "time",
            hour=moment.hour,
            minute=moment.minute,
            second=moment.second,
            frac=f"{moment.microsecond // 1000:03d}",
            precision=6,
        )
    return Temporal(
        "dateTime",
        moment.year,
        moment.month,
        moment.day,
        moment.hour,
        moment.minute,
        moment.second,
        f"{moment.microsecond // 1000:03d}",
        tz,
        6,
    )


# -- boundaries -----------------------------------------------------------------------------------

MAX_PRECISION = 28


def decimal_boundary(value: Decimal | int, precision: int | None, high: bool) -> Decimal | None:
    """lowBoundary()/highBoundary() of a decimal (the bounds of the range its digits stand for)."""
    if precision is None:
        precision = 8
    if precision < 0 or precision > MAX_PRECISION:
        return None
    number = Decimal(value)
    if number.is_signed() and number != 0:
        inner = decimal_boundary(-number, precision, not high)
        return None if inner is None else inner.copy_negate()
    digits = decimal_places(number)
    half = Decimal(5).scaleb(-(digits + 1))
    bound = number + half if high else number - half
    quantum = Decimal(1).scaleb(-precision)
    if precision >= digits + 1:
        return bound.quantize(quantum)
    return bound.quantize(quantum, rounding=ROUND_HALF_UP if high else ROUND_FLOOR)


def temporal_boundary(value: Temporal, precision: int | None, high: bool) -> Temporal | None:
    if value.kind == "time":
        levels = _DIGITS_TIME
        default = 9
    else:
        levels = _DIGITS_DATE
        default = 8 if value.kind == "date" else 17
    if precision is None:
        precision = default
    level = levels.get(precision)
    if level is None:
        return None
    if value.kind == "date" and level > 3:
        return None
    out = value.with_precision(level)
    if value.kind != "time" and value.precision == 4 and level > 4:
        out.minute = 0  # an hour alone stands for hour:00
        base = 5
    else:
        base = value.precision
    if value.kind != "time":
        if base < 2:
            out.month = 12 if high else 1
        if base < 3:
            out.day = calendar.monthrange(out.year, out.month)[1] if high else 1
    if base < 4:
        out.hour = 23 if high else 0
    if base < 5:
        out.minute = 59 if high else 0
    if base < 6:
        out.second = 59 if high else 0
        out.frac = ""
    if precision in (17, 9):
        if base < 6 or not value.frac:
            out.frac = "999" if high else "000"
        else:
            out.frac = (value.frac + ("9" if high else "0") * 3)[:3]
    elif level == 6:
        out.frac = ""
    if value.kind == "dateTime" and level >= 4 and value.tz is None:
        out.tz = "-12:00" if high else "+14:00"
    if level < 4:
        out.tz = None
    return out


# -- type information -----------------------------------------------------------------------------


class TypeInfo:
    """What ``type()`` returns: a namespace (System or FHIR) and a name."""

    __slots__ = ("name", "namespace")

    def __init__(self, namespace: str, name: str) -> None:
        self.namespace = namespace
        self.name = name

    def __repr__(self) -> str:
        return f"{self.namespace}.{self.name}"


SYSTEM_TYPES = frozenset(
    {"Boolean", "String", "Integer", "Decimal", "Date", "DateTime", "Time", "Quantity"}
)


def system_type(value: Any) -> str:
    """The System type name of a System value."""
    if value is True or value is False:
        return "Boolean"
    cls = type(value)
    if cls is str:
        return "String"
    if cls is int:
        return "Integer"
    if cls is Decimal:
        return "Decimal"
    if cls is Temporal:
        return {"date": "Date", "dateTime": "DateTime", "time": "Time"}[value.kind]
    if cls is Quantity:
        return "Quantity"
    if cls is TypeInfo:
        return "TypeInfo"
    return "Any"


# -- conversions ----------------------------------------------------------------------------------

_INTEGER_RE = re.compile(r"[+-]?\d+")
_DECIMAL_RE = re.compile(r"[+-]?\d+(\.\d+)?")
_QUANTITY_RE = re.compile(r"([+-]?\d+(?:\.\d+)?)\s*(?:'([^']+)'|([a-zA-Z]+))?")
_TRUE = frozenset({"true", "t", "yes", "y", "1", "1.0"})
_FALSE = frozenset({"false", "f", "no", "n", "0", "0.0"})


def to_boolean(value: Any) -> bool | None:
    if value is True or value is False:
        return value
    cls = type(value)
    if cls is int:
        return {1: True, 0: False}.get(value)
    if cls is Decimal:
        return True if value == 1 else False if value == 0 else None
    if cls is str:
        lowered = value.lower()
        return True if lowered in _TRUE else False if lowered in _FALSE else None
    return None


def to_integer(value: Any) -> int | None:
    if value is True or value is False:
        return int(value)
    cls = type(value)
    if cls is int:
        return value
    if cls is str and _INTEGER_RE.fullmatch(value):
        return int(value)
    return None


def to_decimal(value: Any) -> Decimal | None:
    if value is True or value is False:
        return Decimal("1.0") if value else Decimal("0.0")
    cls = type(value)
    if cls is Decimal:
        return value
    if cls is int:
        return Decimal(value)
    if cls is str and _DECIMAL_RE.fullmatch(value):
        return Decimal(value)
    return None


def to_quantity(value: Any, unit: str | None = None) -> Quantity | None:
    cls = type(value)
    quantity: Quantity | None = None
    if value is True or value is False:
        quantity = Quantity(Decimal("1.0") if value else Decimal("0.0"), "1")
    elif cls is Quantity:
        quantity = value
    elif cls in (int, Decimal):
        quantity = Quantity(Decimal(value), "1")
    elif cls is str:
        match = _QUANTITY_RE.fullmatch(value.strip())
        if match is None:
            return None
        number, quoted, word = match.groups()
        if word is not None:
            if word not in CALENDAR_UNITS:
                return None
            quantity = Quantity(Decimal(number), CALENDAR_UNITS[word])
        elif quoted is not None:
            if not ucum.is_unit(quoted):
                return None
            quantity = Quantity(Decimal(number), quoted)
        else:
            quantity = Quantity(Decimal(number), "1")
    if quantity is None or unit is None or unit == quantity.unit:
        return quantity
    pair = _in_same_units(Quantity(Decimal(1), unit), quantity)
    if pair is None:
        return None
    return Quantity(pair[1], unit)


def to_string(value: Any) -> str | None:
    if value is True:
        return "true"
    if value is False:
        return "false"
    cls = type(value)
    if cls is str:
        return value
    if cls is int:
        return str(value)
    if cls is Decimal:
        return format_decimal(value)
    if cls in (Temporal, Quantity):
        return str(value)
    return None


def to_temporal(value: Any, kind: str) -> Temporal | None:
    cls = type(value)
    if cls is Temporal:
        if kind == "time":
            return value if value.kind == "time" else None
        if value.kind == "time":
            return None
        if kind == "date":
            return value.with_precision(min(value.precision, 3)) if value.kind else None
        out = value.with_precision(value.precision)
        out.kind = "dateTime"
        return out
    if cls is str:
        parsed = parse_temporal(value, kind=kind)
        if parsed is None:
            return None
        if kind == "date" and parsed.kind != "date":
            return None
        if kind == "dateTime":
            parsed.kind = "dateTime"
        return parsed
    return None
