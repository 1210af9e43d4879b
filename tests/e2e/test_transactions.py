"""End-to-end: a Born-in-Belgium flavoured transaction Bundle over real HTTP.

A midwife's software sends one transaction with the mother (SSIN), the midwife, her practice, a
prenatal home visit and an observation, wired with ``urn:uuid`` references and a conditional
reference ``Organization?identifier=...`` to the (already registered) maternity hospital. The
server must store everything atomically, rewrite every reference to ``Type/id``, honour
``ifNoneExist`` and roll back the whole Bundle when one entry fails.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import httpx
import pytest

SSIN = "https://www.ehealth.fgov.be/standards/fhir/core/NamingSystem/ssin"
NIHDI = "https://www.ehealth.fgov.be/standards/fhir/core/NamingSystem/nihdi"
CBE = "https://www.ehealth.fgov.be/standards/fhir/core/NamingSystem/cbe"
SNOMED = "http://snomed.info/sct"
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"


def urn() -> str:
    return f"urn:uuid:{uuid.uuid4()}"


def digits(n: int) -> str:
    return str(uuid.uuid4().int)[:n]


@pytest.fixture
def http(live_server) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=live_server.base,
        timeout=30,
        headers={"Accept": "application/fhir+json", "Content-Type": "application/fhir+json"},
    ) as client:
        yield client


def id_from_location(location: str, type_: str) -> str:
    return location.split(f"{type_}/", 1)[1].split("/")[0]


def bib_bundle(
    ssin: str, midwife_nihdi: str, practice_cbe: str, hospital_cbe: str, family: str
) -> tuple[dict, dict[str, str]]:
    u = {
        "practice": urn(),
        "midwife": urn(),
        "role": urn(),
        "patient": urn(),
        "encounter": urn(),
        "ga": urn(),
        "bp": urn(),
    }
    hospital_ref = f"Organization?identifier={CBE}|{hospital_cbe}"
    entries = [
        {
            "fullUrl": u["practice"],
            "resource": {
                "resourceType": "Organization",
                "identifier": [{"system": CBE, "value": practice_cbe}],
                "active": True,
                "type": [
                    {
                        "coding": [
                            {
                                "system": "http://terminology.hl7.org/CodeSystem/organization-type",
                                "code": "prov",
                                "display": "Healthcare Provider",
                            }
                        ]
                    }
                ],
                "name": "Vroedvrouwenpraktijk De Wieg",
                "address": [
                    {
                        "line": ["Kerkstraat 1"],
                        "city": "Leuven",
                        "postalCode": "3000",
                        "country": "BE",
                    }
                ],
            },
            "request": {
                "method": "POST",
                "url": "Organization",
                "ifNoneExist": f"identifier={CBE}|{practice_cbe}",
            },
        },
        {
            "fullUrl": u["midwife"],
            "resource": {
                "resourceType": "Practitioner",
                "identifier": [{"system": NIHDI, "value": midwife_nihdi}],
                "active": True,
                "name": [{"family": "Vermeulen", "given": ["Griet"], "prefix": ["Vroedvrouw"]}],
                "gender": "female",
                "telecom": [{"system": "phone", "value": "+32 16 12 34 56", "use": "work"}],
                "qualification": [
                    {
                        "code": {
                            "coding": [
                                {
                                    "system": SNOMED,
                                    "code": "309453006",
                                    "display": "Registered midwife",
                                }
                            ]
                        },
                        "issuer": {"display": "FOD Volksgezondheid"},
                    }
                ],
                "communication": [{"coding": [{"system": "urn:ietf:bcp:47", "code": "nl-BE"}]}],
            },
            "request": {"method": "POST", "url": "Practitioner"},
        },
        {
            "fullUrl": u["role"],
            "resource": {
                "resourceType": "PractitionerRole",
                "active": True,
                "practitioner": {"reference": u["midwife"]},
                "organization": {"reference": u["practice"]},
                "code": [
                    {
                        "coding": [
                            {"system": SNOMED, "code": "309453006", "display": "Registered midwife"}
                        ]
                    }
                ],
            },
            "request": {"method": "POST", "url": "PractitionerRole"},
        },
        {
            "fullUrl": u["patient"],
            "resource": {
                "resourceType": "Patient",
                "identifier": [{"system": SSIN, "value": ssin}],
                "active": True,
                "name": [{"use": "official", "family": family, "given": ["Fatima"]}],
                "gender": "female",
                "birthDate": "1996-02-29",
                "address": [{"city": "Leuven", "postalCode": "3000", "country": "BE"}],
                "communication": [
                    {
                        "language": {"coding": [{"system": "urn:ietf:bcp:47", "code": "fr-BE"}]},
                        "preferred": True,
                    }
                ],
                "generalPractitioner": [{"reference": u["midwife"]}],
                "managingOrganization": {"reference": hospital_ref},
            },
            "request": {
                "method": "POST",
                "url": "Patient",
                "ifNoneExist": f"identifier={SSIN}|{ssin}",
            },
        },
        {
            "fullUrl": u["encounter"],
            "resource": {
                "resourceType": "Encounter",
                "status": "finished",
                "class": {
                    "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                    "code": "HH",
                    "display": "home health",
                },
                "type": [
                    {
                        "coding": [
                            {
                                "system": SNOMED,
                                "code": "424441002",
                                "display": "Prenatal initial visit",
                            }
                        ]
                    }
                ],
                "subject": {"reference": u["patient"]},
                "participant": [{"individual": {"reference": u["midwife"]}}],
                "period": {
                    "start": "2024-05-14T10:00:00+02:00",
                    "end": "2024-05-14T11:00:00+02:00",
                },
                "serviceProvider": {"reference": hospital_ref},
            },
            "request": {"method": "POST", "url": "Encounter"},
        },
        {
            "fullUrl": u["ga"],
            "resource": {
                "resourceType": "Observation",
                "status": "final",
                "category": [
                    {
                        "coding": [
                            {
                                "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                "code": "exam",
                            }
                        ]
                    }
                ],
                "code": {
                    "coding": [
                        {"system": LOINC, "code": "11884-4", "display": "Gestational age Estimated"}
                    ]
                },
                "subject": {"reference": u["patient"]},
                "encounter": {"reference": u["encounter"]},
                "performer": [{"reference": u["midwife"]}],
                "effectiveDateTime": "2024-05-14T10:20:00+02:00",
                "valueQuantity": {"value": 12, "unit": "wk", "system": UCUM, "code": "wk"},
            },
            "request": {"method": "POST", "url": "Observation"},
        },
        {
            "fullUrl": u["bp"],
            "resource": {
                "resourceType": "Observation",
                "status": "final",
                "category": [
                    {
                        "coding": [
                            {
                                "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                "code": "vital-signs",
                            }
                        ]
                    }
                ],
                "code": {
                    "coding": [
                        {"system": LOINC, "code": "85354-9", "display": "Blood pressure panel"}
                    ]
                },
                "subject": {"reference": u["patient"]},
                "encounter": {"reference": u["encounter"]},
                "performer": [{"reference": u["midwife"]}],
                "effectiveDateTime": "2024-05-14T10:25:00+02:00",
                "component": [
                    {
                        "code": {"coding": [{"system": LOINC, "code": "8480-6"}]},
                        "valueQuantity": {
                            "value": 118,
                            "unit": "mmHg",
                            "system": UCUM,
                            "code": "mm[Hg]",
                        },
                    },
                    {
                        "code": {"coding": [{"system": LOINC, "code": "8462-4"}]},
                        "valueQuantity": {
                            "value": 76,
                            "unit": "mmHg",
                            "system": UCUM,
                            "code": "mm[Hg]",
                        },
                    },
                ],
            },
            "request": {"method": "POST", "url": "Observation"},
        },
    ]
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}, u


ORDER = ["practice", "midwife", "role", "patient", "encounter", "ga", "bp"]
TYPES = [
    "Organization",
    "Practitioner",
    "PractitionerRole",
    "Patient",
    "Encounter",
    "Observation",
    "Observation",
]


def post_transaction(http: httpx.Client, bundle: dict) -> httpx.Response:
    return http.post("/", content=json.dumps(bundle))


def test_bib_transaction_stores_everything_and_resolves_references(http: httpx.Client) -> None:
    hospital_cbe, practice_cbe = digits(10), digits(10)
    ssin, nihdi, family = digits(11), digits(11), f"El Amrani {uuid.uuid4().hex[:6]}"
    hospital = http.post(
        "/Organization",
        json={
            "resourceType": "Organization",
            "identifier": [{"system": CBE, "value": hospital_cbe}],
            "name": "UZ Leuven - Materniteit",
        },
    )
    assert hospital.status_code == 201, hospital.text
    hospital_id = hospital.json()["id"]

    bundle, _ = bib_bundle(ssin, nihdi, practice_cbe, hospital_cbe, family)
    response = post_transaction(http, bundle)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["resourceType"] == "Bundle"
    assert answer["type"] == "transaction-response"
    assert len(answer["entry"]) == len(ORDER)
    ids: dict[str, str] = {}
    for name, type_, entry in zip(ORDER, TYPES, answer["entry"], strict=True):
        assert entry["response"]["status"].startswith("201"), (name, entry["response"])
        location = entry["response"]["location"]
        assert f"{type_}/" in location and "/_history/1" in location, location
        ids[name] = id_from_location(location, type_)
        assert id_from_location(entry["fullUrl"], type_) == ids[name]
    assert len(set(ids.values())) == len(ids)

    def read(type_: str, id_: str) -> dict:
        got = http.get(f"/{type_}/{id_}")
        assert got.status_code == 200, got.text
        assert "urn:uuid:" not in got.text, f"{type_}/{id_} still holds a urn:uuid reference"
        assert "Organization?identifier" not in got.text, (
            f"{type_}/{id_} still holds the conditional reference"
        )
        return got.json()

    patient = read("Patient", ids["patient"])
    assert patient["identifier"] == [{"system": SSIN, "value": ssin}]
    assert patient["birthDate"] == "1996-02-29"
    assert patient["generalPractitioner"] == [{"reference": f"Practitioner/{ids['midwife']}"}]
    assert patient["managingOrganization"] == {"reference": f"Organization/{hospital_id}"}

    midwife = read("Practitioner", ids["midwife"])
    assert midwife["qualification"][0]["code"]["coding"][0]["code"] == "309453006"
    assert midwife["identifier"] == [{"system": NIHDI, "value": nihdi}]

    role = read("PractitionerRole", ids["role"])
    assert role["practitioner"] == {"reference": f"Practitioner/{ids['midwife']}"}
    assert role["organization"] == {"reference": f"Organization/{ids['practice']}"}

    practice = read("Organization", ids["practice"])
    assert practice["name"] == "Vroedvrouwenpraktijk De Wieg"

    encounter = read("Encounter", ids["encounter"])
    assert encounter["subject"] == {"reference": f"Patient/{ids['patient']}"}
    assert encounter["participant"][0]["individual"] == {
        "reference": f"Practitioner/{ids['midwife']}"
    }
    assert encounter["serviceProvider"] == {"reference": f"Organization/{hospital_id}"}
    assert encounter["class"]["code"] == "HH"

    ga = read("Observation", ids["ga"])
    assert ga["subject"] == {"reference": f"Patient/{ids['patient']}"}
    assert ga["encounter"] == {"reference": f"Encounter/{ids['encounter']}"}
    assert ga["performer"] == [{"reference": f"Practitioner/{ids['midwife']}"}]
    assert ga["valueQuantity"] == {"value": 12, "unit": "wk", "system": UCUM, "code": "wk"}
    bp = read("Observation", ids["bp"])
    assert [c["valueQuantity"]["value"] for c in bp["component"]] == [118, 76]

    # the rewritten references are searchable
    obs = http.get(
        "/Observation",
        params={"patient": f"Patient/{ids['patient']}", "_include": "Observation:encounter"},
    ).json()
    matched = sorted(e["resource"]["id"] for e in obs["entry"] if e["search"]["mode"] == "match")
    included = [e["resource"]["id"] for e in obs["entry"] if e["search"]["mode"] == "include"]
    assert matched == sorted([ids["ga"], ids["bp"]])
    assert included == [ids["encounter"]]
    by_hospital = http.get("/Encounter", params={"service-provider": f"Organization/{hospital_id}"})
    assert [e["resource"]["id"] for e in by_hospital.json()["entry"]] == [ids["encounter"]]
    by_ssin = http.get("/Patient", params={"identifier": f"{SSIN}|{ssin}"}).json()
    assert by_ssin["total"] == 1
    by_role = http.get("/PractitionerRole", params={"practitioner": ids["midwife"]}).json()
    assert [e["resource"]["id"] for e in by_role["entry"]] == [ids["role"]]

    # the same message again (new urn:uuids): the conditional creates find the existing mother
    # and practice; the new visit and observations point at them
    again_bundle, _ = bib_bundle(ssin, nihdi, practice_cbe, hospital_cbe, family)
    again = post_transaction(http, again_bundle)
    assert again.status_code == 200, again.text
    statuses = [e["response"]["status"].split()[0] for e in again.json()["entry"]]
    assert statuses == ["200", "201", "201", "200", "201", "201", "201"]
    again_ids = {  # a matched conditional create has no Location: the id is in fullUrl
        name: id_from_location(e["fullUrl"], type_)
        for name, type_, e in zip(ORDER, TYPES, again.json()["entry"], strict=True)
    }
    assert again_ids["patient"] == ids["patient"]
    assert again_ids["practice"] == ids["practice"]
    assert again_ids["encounter"] != ids["encounter"]
    new_encounter = read("Encounter", again_ids["encounter"])
    assert new_encounter["subject"] == {"reference": f"Patient/{ids['patient']}"}
    role_again = read("PractitionerRole", again_ids["role"])
    assert role_again["organization"] == {"reference": f"Organization/{ids['practice']}"}
    assert http.get("/Patient", params={"identifier": f"{SSIN}|{ssin}"}).json()["total"] == 1
    assert (
        http.get(
            "/Observation", params={"subject": f"Patient/{ids['patient']}", "_summary": "count"}
        ).json()["total"]
        == 4
    )


def _count(http: httpx.Client, type_: str, **params: str) -> int:
    response = http.get(f"/{type_}", params={**params, "_summary": "count"})
    assert response.status_code == 200, response.text
    return response.json()["total"]


def test_transaction_with_unresolvable_conditional_reference_is_rolled_back(
    http: httpx.Client,
) -> None:
    ssin, family = digits(11), f"Rollback{uuid.uuid4().hex[:6]}"
    bundle, _ = bib_bundle(ssin, digits(11), digits(10), "no-such-hospital", family)
    response = post_transaction(http, bundle)
    assert response.status_code in (400, 404, 412, 422), (
        f"an unresolvable conditional reference must fail the transaction, got "
        f"{response.status_code}: {response.text[:500]}"
    )
    assert response.json()["resourceType"] == "OperationOutcome"
    assert _count(http, "Patient", identifier=f"{SSIN}|{ssin}") == 0
    assert _count(http, "Patient", family=family) == 0
    assert _count(http, "Practitioner", name="Vermeulen") == 0
    assert _count(http, "Organization", name="Vroedvrouwenpraktijk") == 0
    assert _count(http, "Encounter") == 0
    assert _count(http, "Observation") == 0


def test_transaction_with_an_invalid_entry_is_rolled_back(http: httpx.Client) -> None:
    hospital_cbe = digits(10)
    hospital = http.post(
        "/Organization",
        json={
            "resourceType": "Organization",
            "identifier": [{"system": CBE, "value": hospital_cbe}],
            "name": "CHR de la Citadelle",
        },
    )
    assert hospital.status_code == 201
    hospital_id = hospital.json()["id"]
    ssin, family = digits(11), f"Invalid{uuid.uuid4().hex[:6]}"
    bundle, _ = bib_bundle(ssin, digits(11), digits(10), hospital_cbe, family)
    bundle["entry"][-1]["resource"]["effectiveDateTime"] = "14/05/2024"  # not a FHIR dateTime
    response = post_transaction(http, bundle)
    assert response.status_code in (400, 422), response.text[:500]
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert _count(http, "Patient", identifier=f"{SSIN}|{ssin}") == 0
    assert _count(http, "Encounter", **{"service-provider": f"Organization/{hospital_id}"}) == 0
    assert _count(http, "Organization") == 1, "only the hospital registered beforehand"
    assert _count(http, "Patient", family=family) == 0
    assert _count(http, "Practitioner", name="Vermeulen") == 0
