"""R4 search: string and token parameters, with their modifiers (spec checklist).

string (R4 3.1.1.4.7): default = starts-with, case- and accent-insensitive; ``:exact`` = the whole
string, case- and accent-sensitive; ``:contains`` = anywhere in the string. HumanName and Address
match on each of their parts (and on text).

token (R4 3.1.1.4.10): ``code``, ``system|code``, ``|code`` (no system), ``system|`` (any code in
the system) on Coding, CodeableConcept, Identifier, ContactPoint, boolean and code; ``:not``
(resources without the element match too), ``:text`` (Coding.display, CodeableConcept.text,
Identifier.type.text, as a string search), ``:of-type`` (Identifier.type system|code|value).
"""

from __future__ import annotations

import pytest

from fhir_server.service.core import FhirService
from tests.contract.test_search_harness import assert_ids, cases, load, run

V2 = "http://terminology.hl7.org/CodeSystem/v2-0203"
LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"

PATIENTS = [
    {
        "resourceType": "Patient",
        "id": "p1",
        "active": True,
        "gender": "female",
        "name": [{"family": "Dupont", "given": ["Élodie", "Marie"], "text": "Élodie Dupont"}],
        "address": [
            {
                "line": ["Rue de la Loi 16"],
                "city": "Bruxelles",
                "postalCode": "1000",
                "country": "BE",
            }
        ],
        "identifier": [
            {
                "system": "urn:oid:nat",
                "value": "111",
                "type": {"coding": [{"system": V2, "code": "NI"}], "text": "National id"},
            }
        ],
        "telecom": [
            {"system": "phone", "value": "+32 2 555 01 01"},
            {"system": "email", "value": "elodie@example.org"},
        ],
    },
    {
        "resourceType": "Patient",
        "id": "p2",
        "active": False,
        "gender": "male",
        "name": [{"family": "Dupond", "given": ["Eloïse"]}],
        "address": [{"city": "Liège", "postalCode": "4000"}],
        "identifier": [
            {
                "system": "urn:oid:mrn",
                "value": "222",
                "type": {"coding": [{"system": V2, "code": "MR"}], "text": "Medical record"},
            },
            {"value": "333"},
        ],
        "telecom": [{"system": "email", "value": "eloise@example.org"}],
    },
    {
        "resourceType": "Patient",
        "id": "p3",
        "gender": "other",
        "name": [{"family": "Van der Berg", "given": ["Jan"]}],
        "address": [{"city": "Antwerpen", "postalCode": "2000", "country": "Belgium"}],
        "identifier": [{"system": "urn:oid:nat", "value": "222"}],
        "telecom": [{"system": "phone", "value": "+32 3 777 00 00"}],
    },
    {
        "resourceType": "Patient",
        "id": "p4",
        "gender": "female",
        "name": [{"family": "Ledupont", "given": ["Anne"]}],
        "address": [{"city": "Namur", "country": "FR"}],
    },
    {"resourceType": "Patient", "id": "p5"},  # no name, no gender, nothing
]

OBSERVATIONS = [
    {
        "resourceType": "Observation",
        "id": "oc1",
        "status": "final",
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                        "code": "laboratory",
                    }
                ]
            }
        ],
        "code": {
            "coding": [{"system": LOINC, "code": "1234-5", "display": "Glucose"}],
            "text": "Blood sugar",
        },
        "valueCodeableConcept": {"coding": [{"system": SNOMED, "code": "high"}]},
    },
    {
        "resourceType": "Observation",
        "id": "oc2",
        "status": "final",
        "code": {"coding": [{"system": SNOMED, "code": "1234-5"}]},
    },
    {
        "resourceType": "Observation",
        "id": "oc3",
        "status": "preliminary",
        "code": {"coding": [{"code": "1234-5", "display": "Glucose (local)"}]},
    },
    {
        "resourceType": "Observation",
        "id": "oc4",
        "status": "amended",
        "code": {
            "coding": [
                {"system": LOINC, "code": "9999-9", "display": "Hemoglobin"},
                {"system": SNOMED, "code": "111"},
            ]
        },
        "valueCodeableConcept": {
            "coding": [{"system": SNOMED, "code": "low"}],
            "text": "Below range",
        },
    },
    {
        "resourceType": "Observation",
        "id": "oc5",
        "status": "final",
        "code": {"text": "Free text only"},
    },
]


@pytest.fixture
async def svc(service: FhirService) -> FhirService:
    await load(service, PATIENTS + OBSERVATIONS)
    return service


# -- string ---------------------------------------------------------------------------------------

STRING_CASES = [
    # default: starts-with, case-insensitive
    ("family=dupon", {"p1", "p2"}),
    ("family=DUPONT", {"p1"}),
    ("family=Dupont", {"p1"}),
    ("family=upont", set()),  # not a prefix
    ("family=dupontx", set()),
    # accent-insensitive, both ways
    ("given=elodie", {"p1"}),
    ("given=ÉLODIE", {"p1"}),
    ("given=élo", {"p1", "p2"}),
    ("given=eloise", {"p2"}),
    # :exact: whole string, case and accents matter
    ("family:exact=Dupont", {"p1"}),
    ("family:exact=dupont", set()),
    ("family:exact=Dupon", set()),
    ("given:exact=Élodie", {"p1"}),
    ("given:exact=Elodie", set()),
    ("given:exact=Eloïse", {"p2"}),
    # :contains: anywhere, case- and accent-insensitive
    ("family:contains=pont", {"p1", "p4"}),
    ("family:contains=upon", {"p1", "p2", "p4"}),
    ("family:contains=DER", {"p3"}),
    ("given:contains=odi", {"p1"}),
    ("given:contains=ïs", {"p2"}),
    ("family:contains=%", set()),  # no wildcards
    ("family:contains=_", set()),
    ("family=d%", set()),
    # HumanName: any part (family, given, text)
    ("name=marie", {"p1"}),
    ("name=élodie dupont", {"p1"}),
    ("name=van der", {"p3"}),
    ("name=berg", set()),  # the family is one string: "Van der Berg"
    ("name:contains=berg", {"p3"}),
    ("name=jan", {"p3"}),
    ("name:exact=Van der Berg", {"p3"}),
    # Address: any part (line, city, postalCode, country...)
    ("address=bruxelles", {"p1"}),
    ("address=rue de la", {"p1"}),
    ("address=1000", {"p1"}),
    ("address=liege", {"p2"}),
    ("address:contains=loi", {"p1"}),
    ("address-city=LIÈGE", {"p2"}),
    ("address-city:exact=Liège", {"p2"}),
    ("address-city:exact=Liege", set()),
    ("address-postalcode=40", {"p2"}),
    ("address-country=be", {"p1", "p3"}),
    ("address-country:exact=BE", {"p1"}),
    # OR within one parameter, AND across parameters
    ("family=dupont,van", {"p1", "p3"}),
    ("family=dupon&given=elo", {"p1", "p2"}),
    ("family=dupon&given=eloise", {"p2"}),
    ("family:exact=Dupont,Ledupont", {"p1", "p4"}),
]


@pytest.mark.parametrize("query, expected", cases(STRING_CASES))
async def test_string(svc: FhirService, query: str, expected: set[str]):
    assert_ids(await run(svc, "Patient", query), expected, query)


# -- token ----------------------------------------------------------------------------------------

PATIENT_TOKEN_CASES = [
    # Identifier: value, system|value, |value, system|
    ("identifier=111", {"p1"}),
    ("identifier=222", {"p2", "p3"}),
    ("identifier=urn:oid:nat|222", {"p3"}),
    ("identifier=urn:oid:mrn|222", {"p2"}),
    ("identifier=urn:oid:other|222", set()),
    ("identifier=|333", {"p2"}),
    ("identifier=|222", set()),  # both 222s have a system
    ("identifier=urn:oid:nat|", {"p1", "p3"}),
    ("identifier=11", set()),  # tokens match whole codes, not prefixes
    ("identifier=111,333", {"p1", "p2"}),
    # Identifier :of-type (type system|type code|value)
    (f"identifier:of-type={V2}|MR|222", {"p2"}),
    (f"identifier:of-type={V2}|NI|111", {"p1"}),
    (f"identifier:of-type={V2}|NI|222", set()),  # p3's 222 has no type
    (f"identifier:of-type={V2}|MR|111", set()),
    # Identifier :text (Identifier.type.text, as a string search)
    ("identifier:text=medical", {"p2"}),
    ("identifier:text=NATIONAL ID", {"p1"}),
    ("identifier:text=record", set()),
    # code datatype (gender)
    ("gender=female", {"p1", "p4"}),
    ("gender=female,other", {"p1", "p3", "p4"}),
    ("gender=FEMALE", set()),  # codes are case-sensitive
    ("gender:not=male", {"p1", "p3", "p4", "p5"}),  # p5 has no gender: included
    ("gender:not=male,female", {"p3", "p5"}),
    # boolean
    ("active=true", {"p1"}),
    ("active=false", {"p2"}),
    ("active:not=true", {"p2", "p3", "p4", "p5"}),
    ("active:not=false", {"p1", "p3", "p4", "p5"}),
    # ContactPoint (telecom, phone, email): matches ContactPoint.value
    ("telecom=elodie@example.org", {"p1"}),
    ("telecom=+32 3 777 00 00", {"p3"}),
    ("email=elodie@example.org", {"p1"}),
    ("email=eloise@example.org", {"p2"}),
    ("phone=+32 2 555 01 01", {"p1"}),
    ("email=+32 2 555 01 01", set()),  # a phone number is not an email
    ("phone=elodie@example.org", set()),
    ("telecom=elodie", set()),
    # AND of token parameters
    ("gender=female&active=true", {"p1"}),
    ("gender=female&identifier=urn:oid:nat|", {"p1"}),
]


@pytest.mark.parametrize("query, expected", cases(PATIENT_TOKEN_CASES))
async def test_token_on_patient(svc: FhirService, query: str, expected: set[str]):
    assert_ids(await run(svc, "Patient", query), expected, query)


OBSERVATION_TOKEN_CASES = [
    # CodeableConcept / Coding: code, system|code, |code, system|
    ("code=1234-5", {"oc1", "oc2", "oc3"}),
    (f"code={LOINC}|1234-5", {"oc1"}),
    (f"code={SNOMED}|1234-5", {"oc2"}),
    ("code=|1234-5", {"oc3"}),
    (f"code={LOINC}|", {"oc1", "oc4"}),
    (f"code={SNOMED}|", {"oc2", "oc4"}),
    (f"code={SNOMED}|111", {"oc4"}),  # any coding of the CodeableConcept
    (f"code={LOINC}|111", set()),  # system and code must come from the same Coding
    (f"code={LOINC}|1234-5,{SNOMED}|111", {"oc1", "oc4"}),
    ("code=Glucose", set()),  # display is not a code
    # :text: Coding.display or CodeableConcept.text, starts-with, case/accent-insensitive
    ("code:text=glu", {"oc1", "oc3"}),
    ("code:text=blood", {"oc1"}),
    ("code:text=HEMO", {"oc4"}),
    ("code:text=free text", {"oc5"}),
    ("code:text=sugar", set()),  # starts-with, not any word
    ("value-concept:text=below", {"oc4"}),
    # :not: none of the values; resources without the element included
    (f"code:not={LOINC}|1234-5", {"oc2", "oc3", "oc4", "oc5"}),
    ("code:not=1234-5", {"oc4", "oc5"}),
    (f"code:not={LOINC}|", {"oc2", "oc3", "oc5"}),
    (f"value-concept:not={SNOMED}|high", {"oc2", "oc3", "oc4", "oc5"}),
    ("value-concept=low", {"oc4"}),
    # code datatype (status) and CodeableConcept (category)
    ("status=final", {"oc1", "oc2", "oc5"}),
    ("status=final,amended", {"oc1", "oc2", "oc4", "oc5"}),
    ("status:not=final", {"oc3", "oc4"}),
    ("category=laboratory", {"oc1"}),
    ("category:not=laboratory", {"oc2", "oc3", "oc4", "oc5"}),
    # repeated parameter = AND
    ("code=1234-5&status=final", {"oc1", "oc2"}),
    (f"code={LOINC}|&code={SNOMED}|", {"oc4"}),
    ("code=1234-5&code:not=|1234-5", {"oc1", "oc2"}),
]


@pytest.mark.parametrize("query, expected", cases(OBSERVATION_TOKEN_CASES))
async def test_token_on_observation(svc: FhirService, query: str, expected: set[str]):
    assert_ids(await run(svc, "Observation", query), expected, query)
