"""R4 search: date parameters (3.1.1.4.3 date and 3.1.1.4.1 prefixes), spec checklist.

Every date value is a range given by its precision ("2024" is the whole year), and so is every
search value; the prefixes compare ranges:

* eq: the search range fully contains the target range; ne: it does not;
* gt / lt: the range above / below the search value intersects the target range;
* ge / le: gt / lt, or eq;
* sa / eb: the target starts after / ends before the search range (no overlap);
* ap: approximately the same (10% of the gap to now is recommended).

Period: an absent start / end is open (unbounded). Timing: only the outer limits (events) matter.
Values without a time zone are read in the server's zone, Europe/Brussels (CET +01:00 in winter,
CEST +02:00 in summer), so "2024-03-01" is the Brussels day 2024-02-29T23:00Z..2024-03-01T23:00Z.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from fhir_server.service.core import FhirService
from tests.contract.test_search_harness import assert_ids, cases, load, put, run

SUBJECT = {"reference": "Patient/pa"}


def obs(id_: str, **effective: object) -> dict:
    return {
        "resourceType": "Observation",
        "id": id_,
        "status": "final",
        "code": {"text": "x"},
        "subject": SUBJECT,
        **effective,
    }


PATIENTS = [
    {"resourceType": "Patient", "id": "pa", "birthDate": "1980-03-15"},
    {"resourceType": "Patient", "id": "pb", "birthDate": "1980-03"},
    {"resourceType": "Patient", "id": "pc", "birthDate": "1980"},
    {"resourceType": "Patient", "id": "pd", "birthDate": "1990-12-31"},
    {"resourceType": "Patient", "id": "pe"},
]

OBSERVATIONS = [
    obs("o1", effectiveDateTime="2024-03-01T10:00:00+01:00"),  # 09:00Z
    obs("o2", effectiveDateTime="2024-03-01T23:30:00Z"),  # Brussels 2024-03-02 00:30
    obs("o4", effectiveDateTime="2024-03-01"),  # the Brussels day
    obs("o5", effectivePeriod={"start": "2024-03-05T08:00:00+01:00"}),  # open end
    obs("o6", effectivePeriod={"end": "2024-02-10"}),  # open start
    obs("o7", effectiveInstant="2024-03-01T22:59:59.999Z"),  # Brussels 23:59:59.999
    obs("o8", effectivePeriod={"start": "2024-02-28", "end": "2024-03-02"}),
    obs("o9", effectiveDateTime="2024-07-14T22:30:00Z"),  # Brussels (CEST) 2024-07-15 00:30
    obs("o10"),  # no effective[x]
    obs("o11", effectiveDateTime="2024"),
    obs("o12", effectiveDateTime="2024-03"),
    # around the switch to summer time (2024-03-31 has 23 hours in Brussels)
    obs("o13", effectiveDateTime="2024-03-31T22:30:00Z"),  # Brussels 2024-04-01 00:30 +02:00
    obs("o14", effectiveDateTime="2024-03-30T23:30:00Z"),  # Brussels 2024-03-31 00:30 +01:00
]

SERVICE_REQUESTS = [
    {
        "resourceType": "ServiceRequest",
        "id": "sr1",
        "status": "active",
        "intent": "order",
        "subject": SUBJECT,
        "occurrenceTiming": {"event": ["2024-05-01T09:00:00+02:00", "2024-05-03T09:00:00+02:00"]},
    },
    {
        "resourceType": "ServiceRequest",
        "id": "sr2",
        "status": "active",
        "intent": "order",
        "subject": SUBJECT,
        "occurrenceDateTime": "2024-05-02T12:00:00+02:00",
    },
    {
        "resourceType": "ServiceRequest",
        "id": "sr3",
        "status": "active",
        "intent": "order",
        "subject": SUBJECT,
        "occurrencePeriod": {"start": "2024-04-30", "end": "2024-05-01"},
    },
]


@pytest.fixture
async def svc(service: FhirService) -> FhirService:
    await load(service, PATIENTS + OBSERVATIONS + SERVICE_REQUESTS)
    return service


# -- date (Patient.birthDate: partial dates) ------------------------------------------------------

BIRTHDATE_CASES = [
    ("birthdate=1980", {"pa", "pb", "pc"}),
    ("birthdate=1980-03", {"pa", "pb"}),
    ("birthdate=1980-03-15", {"pa"}),
    ("birthdate=eq1980-03-15", {"pa"}),
    ("birthdate=1980-03-15T12:00:00+01:00", set()),  # a second cannot contain a whole day
    ("birthdate=1990-12-31", {"pd"}),
    ("birthdate=1991", set()),
    ("birthdate=ne1980-03", {"pc", "pd"}),  # pe has no birthDate: not a match
    ("birthdate=gt1980-03", {"pc", "pd"}),
    ("birthdate=gt1980-03-15", {"pb", "pc", "pd"}),
    ("birthdate=lt1980-03", {"pc"}),
    ("birthdate=lt1980-03-15", {"pb", "pc"}),
    ("birthdate=ge1980-03", {"pa", "pb", "pc", "pd"}),
    ("birthdate=le1980-03", {"pa", "pb", "pc"}),
    ("birthdate=sa1980-03", {"pd"}),
    ("birthdate=eb1980-04", {"pa", "pb"}),
    ("birthdate=eb1980-12", {"pa", "pb"}),
    ("birthdate=ap1990-06-01", {"pd"}),
    ("birthdate=ap2000-01-01", set()),
    ("birthdate=1980-03-15,1990", {"pa", "pd"}),
    ("birthdate=ge1980-01-01&birthdate=lt1980-12-01", {"pa", "pb", "pc"}),
    ("birthdate:missing=true", {"pe"}),
    ("birthdate:missing=false", {"pa", "pb", "pc", "pd"}),
]


@pytest.mark.parametrize("query, expected", cases(BIRTHDATE_CASES))
async def test_date_on_partial_dates(svc: FhirService, query: str, expected: set[str]):
    assert_ids(await run(svc, "Patient", query), expected, query)


# -- date (Observation.effective[x]: dateTime, instant, Period; zones) ----------------------------

EFFECTIVE_CASES = [
    # days are Brussels days
    ("date=2024-03-01", {"o1", "o4", "o7"}),
    ("date=2024-03-02", {"o2"}),
    ("date=2024-02-29", set()),  # o8 spans the leap day but is not contained in it
    ("date=2024-03", {"o1", "o2", "o4", "o7", "o12", "o14"}),
    ("date=2024", {"o1", "o2", "o4", "o7", "o8", "o9", "o11", "o12", "o13", "o14"}),
    # time zones: the same instant written in different zones
    ("date=2024-03-01T10:00:00+01:00", {"o1"}),
    ("date=2024-03-01T09:00:00Z", {"o1"}),
    ("date=2024-03-01T04:00:00-05:00", {"o1"}),
    ("date=2024-03-01T10:00:00", {"o1"}),  # no zone: Brussels
    ("date=2024-03-01T10:00+01:00", {"o1"}),  # minute precision
    ("date=2024-03-01T10:00:01+01:00", set()),
    ("date=2024-03-02T00:30:00+01:00", {"o2"}),
    ("date=2024-03-01T23:59:59+01:00", {"o7"}),  # the instant lies inside that second
    ("date=2024-03-01T22:59:59.999Z", {"o7"}),
    # summer time: Brussels is +02:00 in July
    ("date=2024-07-15", {"o9"}),
    ("date=2024-07-14", set()),
    ("date=2024-07-15T00:30:00+02:00", {"o9"}),
    ("date=2024-07-15T00:30:00", {"o9"}),
    # the day summer time starts
    ("date=2024-03-31", {"o14"}),
    ("date=2024-04-01", {"o13"}),
    ("date=2024-03-31T00:30:00+01:00", {"o14"}),
    ("date=2024-04-01T00:30:00", {"o13"}),  # no zone: Brussels, which is +02:00 by then
    ("date=2024-04", {"o13"}),
    # prefixes on dateTime / instant / open and closed Periods
    ("date=gt2024-03-04", {"o5", "o9", "o11", "o12", "o13", "o14"}),
    ("date=lt2024-02-27", {"o6", "o11"}),
    ("date=lt2024-01-01", {"o6"}),
    ("date=sa2024-03-02", {"o5", "o9", "o13", "o14"}),
    ("date=eb2024-02-28", {"o6"}),
    ("date=ge2024-03-02", {"o2", "o5", "o9", "o11", "o12", "o13", "o14"}),
    ("date=le2024-02-28", {"o6", "o11"}),
    ("date=ne2024-03-01", {"o2", "o5", "o6", "o8", "o9", "o11", "o12", "o13", "o14"}),
    ("date=gt2099-01-01", {"o5"}),  # an open end goes on forever
    ("date=lt1900-01-01", {"o6"}),  # an open start goes back forever
    ("date=2024-03-05T08:00:00+01:00", set()),  # o5 starts then but is not contained in it
    # AND / OR
    ("date=gt2024-03-01&date=lt2024-03-02", {"o8", "o11", "o12"}),
    ("date=2024-03-01,2024-03-02", {"o1", "o2", "o4", "o7"}),
    ("date:missing=true", {"o10"}),
]


@pytest.mark.parametrize("query, expected", cases(EFFECTIVE_CASES))
async def test_date_on_datetime_instant_and_period(
    svc: FhirService, query: str, expected: set[str]
):
    assert_ids(await run(svc, "Observation", query), expected, query)


# -- date (ServiceRequest.occurrence[x]: Timing events are outer limits) -------------------------

OCCURRENCE_CASES = [
    ("occurrence=2024-05", {"sr1", "sr2"}),
    ("occurrence=2024-05-02", {"sr2"}),  # the Timing spans 05-01..05-03: not contained
    ("occurrence=2024-05-01T09:00:00+02:00", set()),
    ("occurrence=gt2024-05-02", {"sr1"}),
    ("occurrence=lt2024-05-02", {"sr1", "sr3"}),
    ("occurrence=sa2024-04-30", {"sr1", "sr2"}),
    ("occurrence=eb2024-05-02", {"sr3"}),
    ("occurrence=ne2024-05-02", {"sr1", "sr3"}),
]


@pytest.mark.parametrize("query, expected", cases(OCCURRENCE_CASES))
async def test_date_on_timing(svc: FhirService, query: str, expected: set[str]):
    assert_ids(await run(svc, "ServiceRequest", query), expected, query)


async def test_invalid_date_is_a_400(svc: FhirService):
    from tests.contract.test_search_harness import search_error

    for query in ("birthdate=2024-13", "birthdate=yesterday", "birthdate=xx2024"):
        error = await search_error(svc, "Patient", query)
        assert error.status == 400, query


# -- _lastUpdated ---------------------------------------------------------------------------------


def _local_day(instant: str) -> str:
    moment = datetime.fromisoformat(instant.replace("Z", "+00:00"))
    return moment.astimezone(ZoneInfo("Europe/Brussels")).date().isoformat()


async def test_last_updated(service: FhirService):
    first = await put(service, {"resourceType": "Patient", "id": "early"})
    await asyncio.sleep(0.01)
    second = await put(service, {"resourceType": "Patient", "id": "late"})
    t1, t2 = first["meta"]["lastUpdated"], second["meta"]["lastUpdated"]
    assert t1 < t2

    async def ids(query: str) -> set[str]:
        found = await run(service, "Patient", [("_lastUpdated", query)])
        return set(found.ids)

    assert await ids(t1) == {"early"}  # eq at the instant's own (millisecond) precision
    assert await ids(f"eq{t2}") == {"late"}
    assert await ids(f"lt{t2}") == {"early"}
    assert await ids(f"le{t1}") == {"early"}
    assert await ids(f"gt{t1}") == {"late"}
    assert await ids(f"ge{t1}") == {"early", "late"}
    assert await ids(f"sa{t1}") == {"late"}
    assert await ids(f"eb{t2}") == {"early"}
    assert await ids(f"ne{t1}") == {"late"}
    assert "early" in await ids(_local_day(t1))
    assert await ids("lt2000-01-01") == set()
    assert await ids("gt2000") == {"early", "late"}

    # an update moves lastUpdated: the index follows the current version
    await asyncio.sleep(0.01)
    third = await put(service, {"resourceType": "Patient", "id": "early", "active": True})
    assert third["meta"]["lastUpdated"] > t2
    assert await ids(f"lt{t2}") == set()
    assert await ids(f"gt{t2}") == {"early"}
    assert await ids(t1) == set()
