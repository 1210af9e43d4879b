"""FHIR dates, dateTimes and instants as ranges of UTC microseconds.

Every date value has an implicit range given by its precision ("2024" is the whole year), and search
compares ranges. Values without a time zone (dates, and partial dateTimes) are read in the server's
configured zone (Europe/Brussels by default), so a Belgian user's "2024-03-01" is the Belgian day.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from functools import lru_cache
from zoneinfo import ZoneInfo

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MIN_US = -(2**62)
MAX_US = 2**62

_DATE = re.compile(
    r"(?P<y>\d{4})(?:-(?P<m>\d{2})(?:-(?P<d>\d{2})(?:T(?P<H>\d{2})(?::(?P<M>\d{2})"
    r"(?::(?P<S>\d{2})(?:\.(?P<f>\d+))?)?)?(?P<tz>Z|[+-]\d{2}:\d{2})?)?)?)?$"
)

_default_zone: ZoneInfo | timezone = ZoneInfo("Europe/Brussels")


def set_default_zone(name: str) -> None:
    global _default_zone
    _default_zone = UTC if name.upper() == "UTC" else ZoneInfo(name)
    date_range.cache_clear()


def to_us(moment: datetime) -> int:
    delta = moment - EPOCH
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_us(value: int) -> datetime:
    return EPOCH + timedelta(microseconds=value)


def _zone(tz: str | None) -> timezone | ZoneInfo | None:
    """The zone of an offset, or None when it is not a valid FHIR offset (up to ±14:00)."""
    if tz is None:
        return _default_zone
    if tz == "Z":
        return UTC
    hours, minutes = int(tz[1:3]), int(tz[4:6])
    if minutes > 59 or hours > 14 or (hours == 14 and minutes):
        return None
    sign = 1 if tz[0] == "+" else -1
    return timezone(sign * timedelta(hours=hours, minutes=minutes))


@lru_cache(maxsize=65536)
def date_range(text: str) -> tuple[int, int] | None:
    """(low, high) inclusive microsecond bounds of a FHIR date/dateTime/instant, None if invalid."""
    match = _DATE.match(text.strip())
    if not match:
        return None
    g = match.groupdict()
    zone = _zone(g["tz"])
    if zone is None:
        return None
    try:
        year = int(g["y"])
        if g["m"] is None:
            start = datetime(year, 1, 1, tzinfo=zone)
            end = datetime(year + 1, 1, 1, tzinfo=zone) if year < 9999 else None
        elif g["d"] is None:
            month = int(g["m"])
            start = datetime(year, month, 1, tzinfo=zone)
            end = (
                datetime(year + (month == 12), month % 12 + 1, 1, tzinfo=zone)
                if not (year == 9999 and month == 12)
                else None
            )
        elif g["H"] is None:
            start = datetime(year, int(g["m"]), int(g["d"]), tzinfo=zone)
            end = start + timedelta(days=1)
        else:
            start = datetime(
                year,
                int(g["m"]),
                int(g["d"]),
                int(g["H"]),
                int(g["M"] or 0),
                int(g["S"] or 0),
                tzinfo=zone,
            )
            if g["f"]:
                digits = g["f"][:6]
                start = start.replace(microsecond=int(digits.ljust(6, "0")))
                end = start + timedelta(microseconds=10 ** (6 - len(digits)))
            elif g["S"] is not None:
                end = start + timedelta(seconds=1)
            else:
                end = start + timedelta(minutes=1)
    except (ValueError, OverflowError):
        return None
    low = to_us(start)
    high = to_us(end) - 1 if end is not None else MAX_US
    return low, high


def format_instant(value_us: int) -> str:
    """An R4 instant with millisecond precision in UTC, e.g. 2024-03-01T10:00:00.123Z."""
    second, micro = divmod(value_us, 1_000_000)
    return f"{_second_prefix(second)}.{micro // 1000:03d}Z"


@lru_cache(maxsize=256)  # the server stamps many instants within the same second
def _second_prefix(second: int) -> str:
    m = from_us(second * 1_000_000)
    return f"{m.year:04d}-{m.month:02d}-{m.day:02d}T{m.hour:02d}:{m.minute:02d}:{m.second:02d}"


def parse_instant(text: str) -> int | None:
    bounds = date_range(text)
    return bounds[0] if bounds else None
