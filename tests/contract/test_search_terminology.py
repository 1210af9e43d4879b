"""R4 search: token ``:in`` and ``:not-in`` (3.1.1.4.10) with value sets of the terminology
services, for every store.

``:in`` matches resources with a value in the expansion of the value set (by canonical URL, or
``ValueSet/[id]`` of a stored one); ``:not-in`` matches resources none of whose values is in it
(resources without the element too, as ``:not``). Values indexed without a system (``code``
elements) match on the code. A value set that is unknown or cannot be expanded is a 400, never an
empty result. The predicate is ``TokenInPred`` (store/query.py), which each store compiles.
"""

from __future__ import annotations

from typing import Any

import pytest

from fhir_server.service.core import FhirService
from fhir_server.terminology.manager import Terminology, attach
from tests.contract.test_search_harness import (
    all_pages,
    assert_ids,
    cases,
    load,
    put,
    run,
    search_error,
)

BIB = "https://borninbelgiumpro.be/fhir"
PRACTITIONER_CS = f"{BIB}/CodeSystem/bib-practitioner-type"
PRACTITIONER_VS = f"{BIB}/ValueSet/bib-practitioner-type"
CARE_LINE_CS = f"{BIB}/CodeSystem/bib-care-line"
CARE_LEVEL_VS = f"{BIB}/ValueSet/bib-care-level"  # basic, specialised
GENDER_VS = "http://hl7.org/fhir/ValueSet/administrative-gender"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
ACT_ENCOUNTER_VS = "http://terminology.hl7.org/ValueSet/v3-ActEncounterCode"
ACT_CODE_VS = "http://terminology.hl7.org/ValueSet/v3-ActCode"  # > 1000 codes
LOINC_VS = "http://hl7.org/fhir/ValueSet/observation-codes"


def role(id_: str, *codes: tuple[str, str], active: bool = True) -> dict[str, Any]:
    resource: dict[str, Any] = {"resourceType": "PractitionerRole", "id": id_, "active": active}
    if codes:
        codings = [{"system": s, "code": c} if s else {"code": c} for s, c in codes]
        resource["code"] = [{"coding": codings}]
    return resource


ROLES = [
    role("r-midwife", (PRACTITIONER_CS, "midwife")),
    role("r-gp", (PRACTITIONER_CS, "general-practitioner"), active=False),
    role("r-mixed", (PRACTITIONER_CS, "doula"), ("http://example.org/local", "X1")),
    role("r-local", ("http://example.org/local", "midwife")),  # right code, other system
    role("r-nosystem-line", ("", "basic")),  # coding without a system
    role("r-line", (CARE_LINE_CS, "specialised")),
    role("r-none"),
]
PATIENTS = [
    {"resourceType": "Patient", "id": "pf", "gender": "female"},
    {"resourceType": "Patient", "id": "pm", "gender": "male"},
    {"resourceType": "Patient", "id": "pu", "gender": "unknown"},
    {"resourceType": "Patient", "id": "px"},
]
ENCOUNTERS = [
    {
        "resourceType": "Encounter",
        "id": f"enc-{code.strip('_')}",
        "status": "finished",
        "class": {"system": ACT_CODE, "code": code},
    }
    for code in ("AMB", "HH", "IMP", "ACADR", "_ActEncounterCode")
]
FEMALE_ONLY = {
    "resourceType": "ValueSet",
    "id": "female-only",
    "url": "http://example.org/fhir/ValueSet/female-only",
    "status": "active",
    "compose": {
        "include": [
            {"system": "http://hl7.org/fhir/administrative-gender", "concept": [{"code": "female"}]}
        ]
    },
}


@pytest.fixture
async def terminology(service: FhirService) -> Terminology:
    found = attach(service)
    await found.load_stored()
    await load(service, [*ROLES, *PATIENTS, *ENCOUNTERS, FEMALE_ONLY])
    return found


TOKEN_CASES = [
    (f"role:in={PRACTITIONER_VS}", {"r-midwife", "r-gp", "r-mixed"}),
    (f"role:not-in={PRACTITIONER_VS}", {"r-local", "r-nosystem-line", "r-line", "r-none"}),
    # a coding without a system matches on its code
    (f"role:in={CARE_LEVEL_VS}", {"r-nosystem-line", "r-line"}),
    # several value sets: :in any of them; :not-in none of them
    (f"role:in={PRACTITIONER_VS},{CARE_LEVEL_VS}",
     {"r-midwife", "r-gp", "r-mixed", "r-nosystem-line", "r-line"}),
    (f"role:not-in={PRACTITIONER_VS},{CARE_LEVEL_VS}", {"r-local", "r-none"}),
    # with other clauses: the value set drives the query or is probed
    (f"role:in={PRACTITIONER_VS}&active=true", {"r-midwife", "r-mixed"}),
    (f"active=false&role:in={PRACTITIONER_VS}", {"r-gp"}),
    (f"_id=r-midwife,r-local&role:not-in={PRACTITIONER_VS}", {"r-local"}),
    (f"role:in={PRACTITIONER_VS}|0.1.0", {"r-midwife", "r-gp", "r-mixed"}),
]  # fmt: skip


@pytest.mark.parametrize(("query", "expected"), cases(TOKEN_CASES))
async def test_in_and_not_in_on_codeable_concepts(service, terminology, query, expected):
    assert_ids(await run(service, "PractitionerRole", query), expected, query)


PATIENT_CASES = [
    (f"gender:in={GENDER_VS}", {"pf", "pm", "pu"}),  # a code element: indexed without system
    ("gender:in=http://example.org/fhir/ValueSet/female-only", {"pf"}),
    ("gender:in=ValueSet/female-only", {"pf"}),
    ("gender:in=http://testserver/fhir/ValueSet/female-only", {"pf"}),
    ("gender:not-in=ValueSet/female-only", {"pm", "pu", "px"}),
    (f"gender:not-in={GENDER_VS}", {"px"}),
]


@pytest.mark.parametrize(("query", "expected"), cases(PATIENT_CASES))
async def test_in_and_not_in_on_code_elements(service, terminology, query, expected):
    assert_ids(await run(service, "Patient", query), expected, query)


async def test_hierarchical_value_set_and_a_large_expansion(service, terminology):
    # v3-ActEncounterCode: is-a _ActEncounterCode, minus the abstract head itself; ACADR is an
    # information-access code elsewhere in v3-ActCode
    found = await run(service, "Encounter", f"class:in={ACT_ENCOUNTER_VS}")
    assert_ids(found, {"enc-AMB", "enc-HH", "enc-IMP"})
    found = await run(service, "Encounter", f"class:not-in={ACT_ENCOUNTER_VS}")
    assert_ids(found, {"enc-ACADR", "enc-ActEncounterCode"})
    assert len(terminology.catalog.expand(ACT_CODE_VS)) > 1000
    assert_ids(await run(service, "Encounter", f"class:in={ACT_CODE_VS}"),
               {f"enc-{c}" for c in ("AMB", "HH", "IMP", "ACADR", "ActEncounterCode")})  # fmt: skip
    assert_ids(await run(service, "Encounter", f"class:not-in={ACT_CODE_VS}"), set())


async def test_paging_through_an_in_search(service, terminology):
    pages = await all_pages(service, "PractitionerRole", f"role:in={PRACTITIONER_VS}&_count=1")
    ids = [i for page in pages for i in page.ids]
    assert sorted(ids) == ["r-gp", "r-midwife", "r-mixed"]


async def test_a_changed_value_set_changes_the_result(service, terminology):
    assert_ids(await run(service, "Patient", "gender:in=ValueSet/female-only"), {"pf"})
    both = {
        **FEMALE_ONLY,
        "compose": {
            "include": [
                {
                    "system": "http://hl7.org/fhir/administrative-gender",
                    "concept": [{"code": "female"}, {"code": "male"}],
                }
            ]
        },
    }
    await put(service, both)
    assert_ids(await run(service, "Patient", "gender:in=ValueSet/female-only"), {"pf", "pm"})


@pytest.mark.parametrize(
    ("query", "status", "code"),
    [
        ("role:in=http://example.org/fhir/ValueSet/unknown", 400, "invalid"),
        ("role:in=ValueSet/no-such-value-set", 400, "invalid"),
        (f"role:in={LOINC_VS}", 400, "not-supported"),  # needs LOINC: not an empty result
        (f"role:not-in={LOINC_VS}", 400, "not-supported"),
        (f"role:in={PRACTITIONER_VS}|9.9", 400, "invalid"),
        ("role:in=", 400, "invalid"),
    ],
)
async def test_value_sets_that_cannot_be_used_are_errors(service, terminology, query, status, code):
    error = await search_error(service, "PractitionerRole", query)
    assert error.status == status
    assert error.issues[0].code == code


async def test_without_terminology_services_canonical_urls_still_work(service):
    await load(service, PATIENTS)
    assert_ids(await run(service, "Patient", f"gender:in={GENDER_VS}"), {"pf", "pm", "pu"})
    error = await search_error(service, "Patient", "gender:in=ValueSet/female-only")
    assert error.status == 400
