"""R4 search: parameters for all resources (_tag, _security, _profile, _source), :missing on every
parameter type, and escaping of ``,`` ``|`` ``\\`` in values (3.1.1.4 and 3.1.1.5), spec checklist.

``:missing=true`` matches resources without any value for the parameter, ``:missing=false`` those
with one; it applies to every parameter type.
"""

from __future__ import annotations

import pytest

from fhir_server.service.core import FhirService
from tests.contract.test_search_harness import assert_ids, cases, load, run

TAGS = "http://example.org/tags"
CONF = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"
PROFILE = "http://example.org/fhir/StructureDefinition/my-patient"

PATIENTS = [
    {
        "resourceType": "Patient",
        "id": "m1",
        "meta": {
            "tag": [{"system": TAGS, "code": "vip", "display": "Very important"}],
            "security": [{"system": CONF, "code": "R"}],
            "profile": [PROFILE],
            "source": "http://example.org/source#a1",
        },
        "active": True,
        "name": [{"family": "Alpha"}],
        "gender": "female",
        "birthDate": "1970-01-01",
        "managingOrganization": {"reference": "Organization/o1"},
        "telecom": [{"system": "email", "value": "a@example.org"}],
        "address": [{"city": "Gent"}],
    },
    {
        "resourceType": "Patient",
        "id": "m2",
        "meta": {
            "tag": [{"system": TAGS, "code": "test"}, {"system": "urn:other", "code": "vip"}],
            "profile": ["http://example.org/fhir/StructureDefinition/other"],
            "source": "http://example.org/source#b2",
        },
        "active": False,
        "name": [{"given": ["Bea"]}],  # a name without family
        "gender": "male",
    },
    {"resourceType": "Patient", "id": "m3"},  # nothing but what the server adds
    {
        "resourceType": "Patient",
        "id": "m4",
        "name": [{"family": "Smith, Jr", "given": ["A$B"]}],
        "identifier": [{"system": "urn:x", "value": "a|b"}, {"system": "urn:x", "value": "c\\d"}],
        "birthDate": "1980",
    },
]

OBSERVATIONS = [
    {
        "resourceType": "Observation",
        "id": "mo1",
        "status": "final",
        "code": {"text": "a"},
        "subject": {"reference": "Patient/m1"},
        "valueQuantity": {"value": 1, "unit": "kg"},
        "effectiveDateTime": "2024-01-01",
    },
    {
        "resourceType": "Observation",
        "id": "mo2",
        "status": "final",
        "code": {"text": "b"},
        "valueString": "two",
    },
]


@pytest.fixture
async def svc(service: FhirService) -> FhirService:
    await load(service, PATIENTS + OBSERVATIONS)
    return service


META_CASES = [
    # _tag (token on Coding)
    ("_tag=vip", {"m1", "m2"}),
    (f"_tag={TAGS}|vip", {"m1"}),
    (f"_tag={TAGS}|", {"m1", "m2"}),
    ("_tag=test", {"m2"}),
    ("_tag=|vip", set()),
    (f"_tag:not={TAGS}|vip", {"m2", "m3", "m4"}),
    ("_tag:text=very", {"m1"}),
    ("_tag:missing=true", {"m3", "m4"}),
    ("_tag=vip&_tag=test", {"m2"}),
    # _security (token on Coding)
    ("_security=R", {"m1"}),
    (f"_security={CONF}|R", {"m1"}),
    (f"_security={CONF}|N", set()),
    ("_security:missing=true", {"m2", "m3", "m4"}),
    # _profile (uri, canonical)
    (f"_profile={PROFILE}", {"m1"}),
    ("_profile=http://example.org/fhir/StructureDefinition/my", set()),
    ("_profile:below=http://example.org/fhir/StructureDefinition", {"m1", "m2"}),
    ("_profile:missing=true", {"m3", "m4"}),
    # _source (uri)
    ("_source=http://example.org/source#a1", {"m1"}),
    ("_source=http://example.org/source#a1,http://example.org/source#b2", {"m1", "m2"}),
    ("_source:missing=true", {"m3", "m4"}),
]


@pytest.mark.parametrize("query, expected", cases(META_CASES))
async def test_meta_parameters(svc: FhirService, query: str, expected: set[str]):
    assert_ids(await run(svc, "Patient", query), expected, query)


MISSING_CASES = [
    # string (HumanName part; and a whole HumanName)
    ("Patient", "family:missing=true", {"m2", "m3"}),
    ("Patient", "family:missing=false", {"m1", "m4"}),
    ("Patient", "name:missing=true", {"m3"}),
    ("Patient", "address-city:missing=false", {"m1"}),
    # token (code, boolean, Identifier, ContactPoint)
    ("Patient", "gender:missing=true", {"m3", "m4"}),
    ("Patient", "gender:missing=false", {"m1", "m2"}),
    ("Patient", "active:missing=true", {"m3", "m4"}),
    ("Patient", "active:missing=false", {"m1", "m2"}),  # false is a value
    ("Patient", "identifier:missing=false", {"m4"}),
    ("Patient", "email:missing=true", {"m2", "m3", "m4"}),
    # reference
    ("Patient", "organization:missing=true", {"m2", "m3", "m4"}),
    ("Patient", "organization:missing=false", {"m1"}),
    ("Observation", "subject:missing=true", {"mo2"}),
    # date
    ("Patient", "birthdate:missing=true", {"m2", "m3"}),
    ("Patient", "birthdate:missing=false", {"m1", "m4"}),
    ("Observation", "date:missing=true", {"mo2"}),
    # quantity
    ("Observation", "value-quantity:missing=true", {"mo2"}),
    ("Observation", "value-quantity:missing=false", {"mo1"}),
    # string on a choice type
    ("Observation", "value-string:missing=false", {"mo2"}),
    # combined with other criteria
    ("Patient", "gender=female,male&birthdate:missing=true", {"m2"}),
    ("Patient", "family:missing=true&gender:missing=true", {"m3"}),
]


@pytest.mark.parametrize(
    "type_, query, expected", [pytest.param(*row, id=f"{row[0]}?{row[1]}") for row in MISSING_CASES]
)
async def test_missing(svc: FhirService, type_: str, query: str, expected: set[str]):
    assert_ids(await run(svc, type_, query), expected, query)


async def test_missing_takes_only_true_or_false(svc: FhirService):
    from tests.contract.test_search_harness import search_error

    error = await search_error(svc, "Patient", "gender:missing=maybe")
    assert error.status == 400


ESCAPE_CASES = [
    ("family:exact=Smith\\, Jr", {"m4"}),  # \, is a comma in the value, not an OR
    ("family=smith\\,", {"m4"}),
    ("family=smith\\,,alpha", {"m1", "m4"}),
    ("family=smith,alpha", {"m1", "m4"}),
    ("family:exact=Smith", set()),
    ("identifier=urn:x|a\\|b", {"m4"}),  # \| is a pipe in the value
    ("identifier=a\\|b", {"m4"}),
    ("identifier=urn:x|c\\\\d", {"m4"}),  # \\ is a backslash
    ("given:exact=A\\$B", {"m4"}),  # \$ is a dollar
]


@pytest.mark.parametrize("query, expected", cases(ESCAPE_CASES))
async def test_escaping(svc: FhirService, query: str, expected: set[str]):
    assert_ids(await run(svc, "Patient", query), expected, query)


# -- long strings: the whole value is searched ----------------------------------------------------

LONG_FAMILY = "Lang" + "x" * 290 + "Ende"  # 298 characters


@pytest.mark.parametrize(
    "query, expected",
    [
        pytest.param("family=lang", {"long"}, id="family=lang"),
        pytest.param("family=Lang" + "x" * 200, {"long"}, id="family=Langxxx...(204)"),
        pytest.param(f"family={LONG_FAMILY}", {"long"}, id="family=<whole 298>"),
        pytest.param(f"family:exact={LONG_FAMILY}", {"long"}, id="family:exact=<whole 298>"),
        pytest.param(f"family:exact={LONG_FAMILY[:256]}", set(), id="family:exact=<first 256>"),
        pytest.param(f"family={LONG_FAMILY}x", set(), id="family=<whole 298>x"),
        pytest.param("family:contains=xende", {"long"}, id="family:contains=xende"),
    ],
)
async def test_long_strings(service: FhirService, query: str, expected: set[str]):
    await load(
        service, [{"resourceType": "Patient", "id": "long", "name": [{"family": LONG_FAMILY}]}]
    )
    assert_ids(await run(service, "Patient", query), expected, query)


# -- search sees the current version of each resource only ---------------------------------------


async def test_search_follows_updates_and_deletes(service: FhirService):
    from tests.contract.test_search_harness import delete, put

    await put(
        service,
        {"resourceType": "Patient", "id": "v", "name": [{"family": "Old"}], "gender": "male"},
    )
    await put(
        service,
        {
            "resourceType": "Observation",
            "id": "vo",
            "status": "final",
            "code": {"text": "x"},
            "subject": {"reference": "Patient/v"},
        },
    )
    assert (await run(service, "Patient", "family=old")).ids == ["v"]

    await put(service, {"resourceType": "Patient", "id": "v", "name": [{"family": "New"}]})
    assert (await run(service, "Patient", "family=old")).ids == []  # no stale index rows
    assert (await run(service, "Patient", "family=new")).ids == ["v"]
    assert (await run(service, "Patient", "gender=male")).ids == []
    assert (await run(service, "Patient", "gender:missing=true")).ids == ["v"]

    await delete(service, "Patient", "v")
    assert (await run(service, "Patient", "family=new")).ids == []
    assert (await run(service, "Patient", "")).ids == []
    assert (await run(service, "Patient", "gender:missing=true")).ids == []
    assert (await run(service, "Patient", "_id:not=zzz")).ids == []
    # a deleted target is neither included nor reachable through a chain
    found = await run(service, "Observation", "_id=vo&_include=Observation:subject")
    assert found.ids == ["vo"] and found.included == []
    assert (await run(service, "Observation", "subject:Patient.name=new")).ids == []
    assert (await run(service, "Patient", "_has:Observation:subject:code:text=x")).ids == []
    found = await run(service, "Observation", "subject=Patient/v")
    assert found.ids == ["vo"]  # the reference itself is still there

    await put(service, {"resourceType": "Patient", "id": "v", "name": [{"family": "Again"}]})
    assert (await run(service, "Patient", "family=again")).ids == ["v"]
    assert (await run(service, "Patient", "family=new")).ids == []
    assert (await run(service, "Observation", "subject:Patient.name=again")).ids == ["vo"]
