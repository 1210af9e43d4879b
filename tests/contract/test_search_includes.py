"""R4 search: _include and _revinclude (3.1.1.5.4), with :iterate, ``*`` and target types.

Included resources are in the same Bundle with ``search.mode = include``; a resource that is a
match is not repeated as an include, and no resource appears twice. Without ``:iterate`` an include
applies to the matches only; with it, also to the included resources, level after level. Only
resources on this server are included (a reference to another server or to a missing resource
includes nothing). The dataset is the one of test_search_references.
"""

from __future__ import annotations

import pytest

from fhir_server.service.core import FhirService
from tests.contract.test_search_harness import load, run
from tests.contract.test_search_references import DATASET


@pytest.fixture
async def svc(service: FhirService) -> FhirService:
    await load(service, DATASET)
    return service


INCLUDE_CASES = [
    # _include: the matches' references
    ("Observation", "_id=ob1&_include=Observation:subject", {"ob1"}, {"Patient/p1"}),
    (
        "Observation",
        "_id=ob1,ob2,ob5&_include=Observation:subject",
        {"ob1", "ob2", "ob5"},
        {"Patient/p1", "Patient/p2", "Group/g1"},
    ),
    (
        "Observation",
        "_id=ob1,ob5&_include=Observation:subject:Patient",
        {"ob1", "ob5"},
        {"Patient/p1"},
    ),
    ("Observation", "_id=ob1,ob5&_include=Observation:subject:Group", {"ob1", "ob5"}, {"Group/g1"}),
    ("Observation", "_id=ob1&_include=Observation:*", {"ob1"}, {"Patient/p1", "Practitioner/dr1"}),
    (
        "Observation",
        "_id=ob1&_include=Observation:subject&_include=Observation:performer",
        {"ob1"},
        {"Patient/p1", "Practitioner/dr1"},
    ),
    (
        "Observation",
        "_id=ob1,ob3&_include=Observation:subject",
        {"ob1", "ob3"},
        {"Patient/p1"},
    ),  # once, although two matches refer to it
    ("Observation", "_id=ob4&_include=Observation:subject", {"ob4"}, set()),  # other server
    ("Observation", "_id=ob9&_include=Observation:subject", {"ob9"}, set()),  # dangling
    ("Observation", "_id=ob6&_include=Observation:subject", {"ob6"}, set()),  # identifier only
    ("Observation", "_id=ob8&_include=Observation:derived-from", {"ob8"}, {"Observation/ob1"}),
    ("Observation", "_id=ob1,ob8&_include=Observation:derived-from", {"ob1", "ob8"}, set()),
    # without :iterate, an include applies to the matches only
    (
        "Observation",
        "_id=ob1&_include=Observation:subject&_include=Patient:organization",
        {"ob1"},
        {"Patient/p1"},
    ),
    # :iterate: level after level
    (
        "Observation",
        "_id=ob1&_include=Observation:subject&_include:iterate=Patient:organization",
        {"ob1"},
        {"Patient/p1", "Organization/org1"},
    ),
    (
        "Observation",
        "_id=ob1&_include=Observation:subject&_include:iterate=Patient:organization"
        "&_include:iterate=Organization:partof",
        {"ob1"},
        {"Patient/p1", "Organization/org1", "Organization/org0"},
    ),
    (
        "Observation",
        "_id=ob2&_include=Observation:subject&_include:iterate=Patient:organization",
        {"ob2"},
        {"Patient/p2", "Organization/org2"},
    ),  # absolute URLs of this server resolve
    (
        "Patient",
        "_id=p2&_include=Patient:link:Patient&_include:iterate=Patient:organization",
        {"p2"},
        {"Patient/p1", "Organization/org1", "Organization/org2"},
    ),
    ("Patient", "_id=p1,p2&_include=Patient:link", {"p1", "p2"}, set()),  # p1 is a match
    # _revinclude: resources referring to the matches
    (
        "Patient",
        "_id=p1&_revinclude=Observation:subject",
        {"p1"},
        {"Observation/ob1", "Observation/ob3"},
    ),
    ("Patient", "_id=p4&_revinclude=Observation:subject", {"p4"}, set()),  # ob4: other server
    ("Patient", "_id=p1&_revinclude=Observation:performer", {"p1"}, {"Observation/ob7"}),
    ("Patient", "_id=p1&_revinclude=Provenance:target", {"p1"}, {"Provenance/prov1"}),
    (
        "Patient",
        "_id=p1&_revinclude=QuestionnaireResponse:subject",
        {"p1"},
        {"QuestionnaireResponse/qr1"},
    ),
    (
        "Patient",
        "_id=p3&_revinclude=Encounter:subject&_revinclude:iterate=Observation:encounter",
        {"p3"},
        {"Encounter/e1", "Observation/ob8"},
    ),
    (
        "Patient",
        "_id=p1&_revinclude=Observation:subject&_include=Patient:organization",
        {"p1"},
        {"Observation/ob1", "Observation/ob3", "Organization/org1"},
    ),
    (
        "Organization",
        "_id=org0&_revinclude:iterate=Organization:partof&_revinclude:iterate=Patient:organization",
        {"org0"},
        {"Organization/org1", "Patient/p1"},
    ),
    (
        "Organization",
        "_id=org0&_revinclude=Organization:partof&_revinclude=Patient:organization",
        {"org0"},
        {"Organization/org1"},
    ),  # not iterated: p1 refers to org1, not to org0
    (
        "Practitioner",
        "_id=dr1&_revinclude=Patient:general-practitioner&_revinclude=Observation:performer",
        {"dr1"},
        {"Patient/p1", "Observation/ob1"},
    ),
    # no matches, nothing included
    ("Patient", "_id=nobody&_revinclude=Observation:subject", set(), set()),
]


@pytest.mark.parametrize(
    "type_, query, matches, included",
    [pytest.param(*row, id=f"{row[0]}?{row[1]}") for row in INCLUDE_CASES],
)
async def test_include_and_revinclude(
    svc: FhirService, type_: str, query: str, matches: set[str], included: set[str]
):
    found = await run(svc, type_, query)
    assert sorted(found.ids) == sorted(matches), query
    assert len(found.included) == len(set(found.included)), f"{query}: {found.included}"
    assert set(found.included) == included, query
    assert not set(found.included) & set(found.matches), "a match repeated as an include"


async def test_iterate_stops_on_reference_cycles(svc: FhirService):
    cycle = [
        {
            "resourceType": "Patient",
            "id": f"cy{i}",
            "link": [{"other": {"reference": f"Patient/cy{(i + 1) % 3}"}, "type": "seealso"}],
        }
        for i in range(3)
    ]
    await load(svc, cycle)
    found = await run(
        svc, "Patient", "_id=cy0&_include:iterate=Patient:link&_revinclude:iterate=Patient:link"
    )
    assert found.ids == ["cy0"]
    assert sorted(found.included) == ["Patient/cy1", "Patient/cy2"]


async def test_include_applies_to_the_page_only(svc: FhirService):
    found = await run(
        svc, "Observation", "_id=ob1,ob2&_sort=_id&_count=1&_include=Observation:subject"
    )
    assert found.ids == ["ob1"]
    assert found.included == ["Patient/p1"]
    assert found.total is None or found.total == 2  # only matches are counted


async def test_total_counts_matches_not_includes(svc: FhirService):
    found = await run(svc, "Patient", "_id=p1&_revinclude=Observation:subject&_total=accurate")
    assert found.total == 1
    assert len(found.included) == 2


async def test_invalid_include_is_a_400(svc: FhirService):
    from tests.contract.test_search_harness import search_error

    error = await search_error(svc, "Observation", "_include=Observation")
    assert error.status == 400
