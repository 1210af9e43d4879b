"""Date values as precision ranges (search/dates.py)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from fhir_server.search.dates import date_range, format_instant, from_us, set_default_zone


@pytest.fixture(autouse=True)
def brussels():
    set_default_zone("Europe/Brussels")
    yield
    set_default_zone("Europe/Brussels")


def bounds(text: str) -> tuple[datetime, datetime]:
    low, high = date_range(text)
    return from_us(low), from_us(high)


def test_year_month_day_precision_in_brussels_time() -> None:
    assert bounds("2024") == (
        datetime(2023, 12, 31, 23, tzinfo=UTC),
        datetime(2024, 12, 31, 22, 59, 59, 999999, tzinfo=UTC),
    )
    # February of a leap year, winter time
    assert bounds("2024-02")[1] == datetime(2024, 2, 29, 22, 59, 59, 999999, tzinfo=UTC)
    # a summer day is offset by two hours
    assert bounds("2024-07-01")[0] == datetime(2024, 6, 30, 22, tzinfo=UTC)


def test_explicit_zones_and_fractions() -> None:
    low, high = bounds("2024-03-01T10:00:00.123+02:00")
    assert low == datetime(2024, 3, 1, 8, 0, 0, 123000, tzinfo=UTC)
    assert high == datetime(2024, 3, 1, 8, 0, 0, 123999, tzinfo=UTC)
    assert bounds("2024-03-01T10:00:00Z")[1] == datetime(2024, 3, 1, 10, 0, 0, 999999, tzinfo=UTC)


def test_utc_default_zone_is_configurable() -> None:
    set_default_zone("UTC")
    assert bounds("2024-07-01")[0] == datetime(2024, 7, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    "text",
    [
        "2024-13",
        "2024-02-30",
        "24",
        "2024-01-01T25:00:00Z",
        "x",
        # offsets beyond R4's ±14:00 (datetime cannot even represent ±24:00 and more)
        "2024-01-01T10:00:00+25:00",
        "2024-01-01T10:00:00-24:00",
        "2024-01-01T10:00:00+14:30",
        "2024-01-01T10:00:00+01:60",
    ],
)
def test_invalid_dates_are_rejected(text: str) -> None:
    assert date_range(text) is None


def test_extreme_valid_offsets_are_read() -> None:
    assert bounds("2024-01-01T10:00:00+14:00")[0] == datetime(2023, 12, 31, 20, tzinfo=UTC)
    assert bounds("2024-01-01T10:00:00-12:00")[0] == datetime(2024, 1, 1, 22, tzinfo=UTC)


def test_format_instant_is_r4_instant() -> None:
    assert format_instant(date_range("2024-03-01T10:00:00.5Z")[0]) == "2024-03-01T10:00:00.500Z"
