"""Dates of a care pathway: anchors (loss date, due date, birth) plus the offsets of R4
``relatedAction`` (``offsetDuration`` / ``offsetRange``) and an action's own ``timingDuration``
become concrete calendar dates.

Pathway timing is kept at day precision: "within 24 hours after discharge" is the day of discharge
or the next; the care plan says which days, professionals decide the hour.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from fhir_server.pathways.definitions import time_unit


@dataclass(slots=True, frozen=True)
class Span:
    """A day or a range of days (``start <= end``)."""

    start: date
    end: date

    @property
    def is_day(self) -> bool:
        return self.start == self.end

    def as_timing(self) -> dict[str, Any]:
        """``timing[x]`` / ``occurrence[x]``-style JSON: a dateTime for one day, else a Period."""
        if self.is_day:
            return {"DateTime": self.start.isoformat()}
        return {"Period": {"start": self.start.isoformat(), "end": self.end.isoformat()}}

    def as_period(self) -> dict[str, str]:
        return {"start": self.start.isoformat(), "end": self.end.isoformat()}


def parse_date(value: Any) -> date | None:
    """The calendar day of a FHIR date or dateTime (a partial date gives its first day)."""
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    if not isinstance(value, str) or len(value) < 4:
        return None
    try:
        if len(value) == 4:
            return date(int(value), 1, 1)
        if len(value) == 7:
            return date(int(value[:4]), int(value[5:7]), 1)
        return date.fromisoformat(value[:10])
    except ValueError:
        return None


def add_months(day: date, months: int) -> date:
    month0 = day.month - 1 + months
    year = day.year + month0 // 12
    month = month0 % 12 + 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def shift(day: date, quantity: dict[str, Any], sign: int = 1) -> date:
    unit = time_unit(quantity)
    value = float(quantity.get("value", 0)) * sign
    if unit == "a":
        return add_months(day, round(value * 12))
    if unit == "mo":
        return add_months(day, round(value))
    if unit == "wk":
        return day + timedelta(days=round(value * 7))
    if unit == "d":
        return day + timedelta(days=round(value))
    if unit == "h":
        return (datetime(day.year, day.month, day.day) + timedelta(hours=value)).date()
    if unit == "min":
        return (datetime(day.year, day.month, day.day) + timedelta(minutes=value)).date()
    return day


def related_span(target: Span, related: dict[str, Any]) -> Span:
    """Where an action falls, given the span of the action it relates to (R4 relatedAction)."""
    relationship = related.get("relationship", "after-start")
    if relationship.endswith("-end") or relationship == "after":
        reference = target.end
    else:
        reference = target.start
    sign = -1 if relationship.startswith("before") else 1
    duration = related.get("offsetDuration")
    rng = related.get("offsetRange")
    if isinstance(duration, dict):
        day = shift(reference, duration, sign)
        return Span(day, day)
    if isinstance(rng, dict):
        low = shift(reference, rng["low"], sign) if "low" in rng else reference
        high = shift(reference, rng["high"], sign) if "high" in rng else low
        return Span(min(low, high), max(low, high))
    return Span(reference, reference)


def with_duration(span: Span, raw_action: dict[str, Any]) -> Span:
    """An action's ``timingDuration`` (e.g. a stay of at most 72 hours) extends its start."""
    duration = raw_action.get("timingDuration")
    if isinstance(duration, dict) and time_unit(duration) is not None:
        return Span(span.start, max(span.start, shift(span.start, duration)))
    return span
