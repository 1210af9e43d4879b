# ruff: noqa: E501  (test tables read better on one line)
"""SDC $extract (by id and by body) and extraction on completion: observation-based (with
component, member and derived relationships) and definition-based (definitionExtract,
definitionExtractValue, extractAllocateId)."""

from __future__ import annotations

from typing import Any

import httpx

from tests.screening import helpers as H
from tests.screening.conftest import search

SDC = "http://hl7.org/fhir/uv/sdc/StructureDefinition/"
ELEMENT = f"{H.BIB}/CodeSystem/bib-screening-element"


def bundle_of(body: dict) -> tuple[dict, list[dict]]:
    """(transaction Bundle, issues) from an $extract answer (a Bundle, or Parameters)."""
    if body["resourceType"] == "Bundle":
        return body, []
    parts = {p["name"]: p["resource"] for p in body["parameter"]}
    return parts["return"], parts.get("issues", {}).get("issue", [])


def resources(bundle: dict, type_: str) -> list[dict]:
    return [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == type_]


async def test_extract_by_id_gives_the_observations_of_a_stored_response(
    fhir: httpx.AsyncClient,
) -> None:
    created = (
        await fhir.post("/QuestionnaireResponse", json=H.scored("epds", [1] * 9 + [0]))
    ).json()
    for method in ("GET", "POST"):
        response = await fhir.request(method, f"/QuestionnaireResponse/{created['id']}/$extract")
        assert response.status_code == 200, response.text
        bundle, issues = bundle_of(response.json())
        assert bundle["type"] == "transaction" and issues == []
        (observation,) = resources(bundle, "Observation")
        entry = bundle["entry"][0]
        assert entry["fullUrl"].startswith("urn:uuid:")
        assert entry["request"] == {"method": "POST", "url": "Observation"}
        assert observation["code"]["coding"] == [{"system": H.LOINC, "code": "99046-5"}]
        assert observation["valueQuantity"] == {
            "value": 9,
            "system": "http://unitsofmeasure.org",
            "code": "{score}",
            "unit": "score",
        }
        assert observation["status"] == "final"
        assert observation["category"][0]["coding"][0]["code"] == "survey"
        assert observation["subject"] == {"reference": "Patient/p1"}
        assert observation["effectiveDateTime"] == "2026-11-20T10:00:00+01:00"
        assert observation["issued"] == "2026-11-20T10:00:00+01:00"
        assert observation["performer"] == [{"reference": "Practitioner/mw-1"}]
        assert observation["derivedFrom"] == [
            {"reference": f"QuestionnaireResponse/{created['id']}"}
        ]
    # $extract itself stores nothing: the one Observation is the one written on completion
    assert len(await search(fhir, "/Observation")) == 1


async def test_extract_by_body_validates_and_scores_first(fhir: httpx.AsyncClient) -> None:
    body = {
        "resourceType": "Parameters",
        "parameter": [{"name": "questionnaire-response", "resource": H.scored("gad-7", [3] * 7)}],
    }
    response = await fhir.post("/QuestionnaireResponse/$extract", json=body)
    assert response.status_code == 200, response.text
    bundle, _ = bundle_of(response.json())
    (observation,) = resources(bundle, "Observation")
    assert observation["code"]["coding"][0]["code"] == "70274-6"
    assert observation["valueQuantity"]["value"] == 21
    assert "derivedFrom" not in observation  # nothing stored to point at
    forged = H.scored("gad-7", [3] * 7)
    forged["item"].append({"linkId": "gad-7-total", "answer": [{"valueInteger": 3}]})
    response = await fhir.post("/QuestionnaireResponse/$extract", json=forged)  # the bare resource
    assert response.status_code == 422 and "computes 21" in response.text
    broken = H.scored("gad-7", [3] * 7)
    broken["item"][0]["linkId"] = "nope"
    assert (await fhir.post("/QuestionnaireResponse/$extract", json=broken)).status_code == 422
    assert await search(fhir, "/Observation") == []


async def test_extract_an_in_progress_response_warns(fhir: httpx.AsyncClient) -> None:
    response = await fhir.post(
        "/QuestionnaireResponse/$extract", json=H.whooley(True, True, status="in-progress")
    )
    assert response.status_code == 200
    bundle, issues = bundle_of(response.json())
    assert bundle["entry"] == []
    assert any("not completed" in i["diagnostics"] for i in issues)


async def test_extract_errors(fhir: httpx.AsyncClient) -> None:
    assert (await fhir.get("/QuestionnaireResponse/nope/$extract")).status_code == 404
    assert (
        await fhir.post("/QuestionnaireResponse/$extract", json={"resourceType": "Parameters"})
    ).status_code == 400
    naked = H.whooley(True, True)
    del naked["questionnaire"]
    response = await fhir.post("/QuestionnaireResponse/$extract", json=naked)
    assert response.status_code == 400 and "names no questionnaire" in response.text
    assert (await fhir.post("/Patient/$extract", json=naked)).status_code == 404


async def test_the_bib_screening_yields_one_observation_per_indicator_and_the_consent(
    fhir: httpx.AsyncClient,
) -> None:
    created = (
        await fhir.post(
            "/QuestionnaireResponse", json=H.bib({"income": [1.5, 2], "housing": [0, 1]})
        )
    ).json()
    observations = {
        o["code"]["coding"][0]["code"]: o
        for o in await search(fhir, "/Observation?patient=Patient/p1&_count=50")
    }
    assert sorted(observations) == sorted(H.BIB_INDICATORS)
    income, housing = observations["income"], observations["housing"]
    assert income["valueBoolean"] is True and housing["valueBoolean"] is False
    assert income["code"]["coding"][0]["system"] == H.INDICATOR
    (component,) = income["component"]
    assert component["code"]["coding"] == [
        {"system": ELEMENT, "code": "indicator-score", "display": "Indicator score"}
    ]
    assert component["valueQuantity"]["value"] == 3.5
    assert housing["component"][0]["valueQuantity"]["value"] == 1
    (consent,) = await search(fhir, "/Consent?patient=Patient/p1")
    assert consent["status"] == "active"
    assert consent["scope"]["coding"][0]["code"] == "treatment"
    assert consent["category"][0]["coding"][0]["code"] == "59284-0"
    assert consent["patient"] == {"reference": "Patient/p1"}
    assert consent["dateTime"] == "2026-11-20T10:00:00+01:00"
    assert consent["sourceReference"] == {"reference": f"QuestionnaireResponse/{created['id']}"}
    assert consent["provision"]["type"] == "permit"
    # everything the screening yields is in the woman's record
    compartment = await search(fhir, "/Patient/p1/Observation?_count=50")
    assert len(compartment) == 13


# -- the mechanisms on a Questionnaire written for the test --------------------------------------


def extension(url: str, **value: Any) -> dict:
    return {"url": url, **value}


def expression(text: str) -> dict:
    return {"language": "text/fhirpath", "expression": text}


LOCAL = {
    "resourceType": "Questionnaire",
    "url": f"{H.BIB}/Questionnaire/extraction-test",
    "version": "1",
    "status": "active",
    "extension": [extension(SDC + "sdc-questionnaire-extractAllocateId", valueString="person")],
    "item": [
        {
            "linkId": "bp",
            "type": "group",
            "code": [{"system": H.LOINC, "code": "85354-9"}],
            "extension": [extension(SDC + "sdc-questionnaire-observationExtract", valueBoolean=True)],
            "item": [
                {"linkId": "sys", "type": "integer", "code": [{"system": H.LOINC, "code": "8480-6"}],
                 "extension": [extension(SDC + "sdc-questionnaire-observationExtract", valueCode="component"),
                               extension("http://hl7.org/fhir/StructureDefinition/questionnaire-unit", valueCoding={"system": "http://unitsofmeasure.org", "code": "mm[Hg]", "display": "mmHg"})]},
                {"linkId": "dia", "type": "integer", "code": [{"system": H.LOINC, "code": "8462-4"}],
                 "extension": [extension(SDC + "sdc-questionnaire-observationExtract", valueCode="member")]},
                {"linkId": "pulse", "type": "integer", "code": [{"system": H.LOINC, "code": "8867-4"}],
                 "extension": [extension(SDC + "sdc-questionnaire-observationExtract", valueCode="derived")]},
            ],
        },
        {
            "linkId": "contact",
            "type": "group",
            "extension": [
                extension(SDC + "sdc-questionnaire-definitionExtract", extension=[
                    {"url": "definition", "valueCanonical": "http://hl7.org/fhir/StructureDefinition/RelatedPerson"},
                    {"url": "fullUrl", "valueString": "%person"},
                ]),
                extension(SDC + "sdc-questionnaire-definitionExtractValue", extension=[
                    {"url": "definition", "valueUri": "http://hl7.org/fhir/StructureDefinition/RelatedPerson#RelatedPerson.patient"},
                    {"url": "expression", "valueExpression": expression("%resource.subject")},
                ]),
                extension(SDC + "sdc-questionnaire-definitionExtractValue", extension=[
                    {"url": "definition", "valueUri": "http://hl7.org/fhir/StructureDefinition/RelatedPerson#RelatedPerson.active"},
                    {"url": "fixed-value", "valueBoolean": True},
                ]),
            ],
            "item": [
                {"linkId": "family", "type": "string", "definition": "http://hl7.org/fhir/StructureDefinition/RelatedPerson#RelatedPerson.name.family"},
                {"linkId": "given", "type": "string", "repeats": True, "definition": "http://hl7.org/fhir/StructureDefinition/RelatedPerson#RelatedPerson.name.given"},
                {"linkId": "relation", "type": "choice", "definition": "http://hl7.org/fhir/StructureDefinition/RelatedPerson#RelatedPerson.relationship",
                 "answerOption": [{"valueCoding": {"system": "http://terminology.hl7.org/CodeSystem/v3-RoleCode", "code": "FTH"}}]},
            ],
        },
        {
            "linkId": "worry",
            "type": "boolean",
            "extension": [
                extension(SDC + "sdc-questionnaire-definitionExtract", extension=[
                    {"url": "definition", "valueCanonical": "http://hl7.org/fhir/StructureDefinition/Flag"},
                ]),
                extension(SDC + "sdc-questionnaire-definitionExtractValue", extension=[
                    {"url": "definition", "valueUri": "http://hl7.org/fhir/StructureDefinition/Flag#Flag.status"},
                    {"url": "fixed-value", "valueCode": "active"},
                ]),
                extension(SDC + "sdc-questionnaire-definitionExtractValue", extension=[
                    {"url": "definition", "valueUri": "http://hl7.org/fhir/StructureDefinition/Flag#Flag.code.text"},
                    {"url": "fixed-value", "valueString": "Partner worried"},
                ]),
                extension(SDC + "sdc-questionnaire-definitionExtractValue", extension=[
                    {"url": "definition", "valueUri": "http://hl7.org/fhir/StructureDefinition/Flag#Flag.subject.reference"},
                    {"url": "expression", "valueExpression": expression("%person")},
                ]),
            ],
        },
    ],
}  # fmt: skip


async def test_observation_relationships_and_definition_based_extraction(
    fhir: httpx.AsyncClient,
) -> None:
    assert (await fhir.post("/Questionnaire", json=LOCAL)).status_code == 201
    response = {
        "resourceType": "QuestionnaireResponse",
        "questionnaire": f"{LOCAL['url']}|1",
        "status": "completed",
        "subject": {"reference": "Patient/p1"},
        "authored": "2026-11-20T10:00:00Z",
        "item": [
            {"linkId": "bp", "item": [
                {"linkId": "sys", "answer": [{"valueInteger": 120}]},
                {"linkId": "dia", "answer": [{"valueInteger": 80}]},
                {"linkId": "pulse", "answer": [{"valueInteger": 70}]},
            ]},
            {"linkId": "contact", "item": [
                {"linkId": "family", "answer": [{"valueString": "Peeters"}]},
                {"linkId": "given", "answer": [{"valueString": "Jan"}, {"valueString": "Karel"}]},
                {"linkId": "relation", "answer": [{"valueCoding": {"system": "http://terminology.hl7.org/CodeSystem/v3-RoleCode", "code": "FTH"}}]},
            ]},
            {"linkId": "worry", "answer": [{"valueBoolean": True}]},
        ],
    }  # fmt: skip
    result = await fhir.post("/QuestionnaireResponse/$extract", json=response)
    assert result.status_code == 200, result.text
    bundle, issues = bundle_of(result.json())
    assert issues == []
    by_code = {
        o["code"]["coding"][0]["code"]: (e["fullUrl"], o)
        for e in bundle["entry"]
        if (o := e["resource"])["resourceType"] == "Observation"
    }
    panel_url, panel = by_code["85354-9"]
    assert "value" not in str(sorted(k for k in panel if k.startswith("value")))
    assert panel["component"] == [
        {"code": {"coding": [{"system": H.LOINC, "code": "8480-6"}]},
         "valueQuantity": {"value": 120, "system": "http://unitsofmeasure.org", "code": "mm[Hg]", "unit": "mmHg"}}
    ]  # fmt: skip
    dia_url, dia = by_code["8462-4"]
    assert panel["hasMember"] == [{"reference": dia_url}]
    assert dia["valueInteger"] == 80
    _, pulse = by_code["8867-4"]
    assert {"reference": panel_url} in pulse["derivedFrom"]
    (person_entry,) = [
        e for e in bundle["entry"] if e["resource"]["resourceType"] == "RelatedPerson"
    ]
    person = person_entry["resource"]
    assert person == {
        "resourceType": "RelatedPerson",
        "name": [{"family": "Peeters", "given": ["Jan", "Karel"]}],
        "relationship": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-RoleCode", "code": "FTH"}]}],
        "patient": {"reference": "Patient/p1"},
        "active": True,
    }  # fmt: skip
    (flag,) = resources(bundle, "Flag")
    assert flag["subject"] == {"reference": person_entry["fullUrl"]}  # the allocated id
    assert flag["code"] == {"text": "Partner worried"} and flag["status"] == "active"
    # posting the Bundle as it is creates the resources, references resolved
    posted = await fhir.post("", json=bundle)
    assert posted.status_code == 200, posted.text
    (stored_flag,) = await search(fhir, "/Flag")
    assert stored_flag["subject"]["reference"].startswith("RelatedPerson/")
