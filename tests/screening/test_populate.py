# ruff: noqa: E501  (test tables read better on one line)
"""SDC $populate: launch contexts, FHIRPath and x-fhir-query variables, initialExpression,
itemPopulationContext, initial values; an in-progress response comes back, nothing is stored."""

from __future__ import annotations

import httpx

from tests.screening import helpers as H
from tests.screening.conftest import search

SDC = "http://hl7.org/fhir/uv/sdc/StructureDefinition/"
CORE = "http://hl7.org/fhir/StructureDefinition/"


def launch(name: str, type_: str) -> dict:
    return {
        "url": SDC + "sdc-questionnaire-launchContext",
        "extension": [
            {
                "url": "name",
                "valueCoding": {
                    "system": "http://hl7.org/fhir/uv/sdc/CodeSystem/launchContext",
                    "code": name,
                },
            },
            {"url": "type", "valueCode": type_},
        ],
    }


def variable(name: str, text: str, language: str = "text/fhirpath") -> dict:
    return {
        "url": CORE + "variable",
        "valueExpression": {"name": name, "language": language, "expression": text},
    }


def initial(text: str) -> dict:
    return {
        "url": SDC + "sdc-questionnaire-initialExpression",
        "valueExpression": {"language": "text/fhirpath", "expression": text},
    }


INTAKE = {
    "resourceType": "Questionnaire",
    "id": "intake",
    "url": f"{H.BIB}/Questionnaire/intake",
    "version": "1",
    "status": "active",
    "extension": [
        launch("patient", "Patient"),
        launch("encounter", "Encounter"),
        variable("gestation", "Observation?subject={{%patient.id}}&code=http://loinc.org|11884-4&_sort=-date&_count=1", "application/x-fhir-query"),
        variable("conditions", "Condition?subject={{%patient.id}}", "application/x-fhir-query"),
    ],
    "item": [
        {"linkId": "birth", "type": "date", "extension": [initial("%patient.birthDate")]},
        {"linkId": "ga", "type": "integer", "extension": [initial("%gestation.entry.resource.valueQuantity.value")]},
        {"linkId": "where", "type": "string", "extension": [initial("%encounter.class.code")]},
        {"linkId": "lang", "type": "choice",  # R4 que-11: with answerOption, the default is initialSelected
         "answerOption": [{"valueCoding": {"system": "urn:ietf:bcp:47", "code": "nl-BE"}, "initialSelected": True}, {"valueCoding": {"system": "urn:ietf:bcp:47", "code": "fr-BE"}}]},
        {"linkId": "history", "type": "group", "repeats": True,
         "extension": [{"url": SDC + "sdc-questionnaire-itemPopulationContext", "valueExpression": {"name": "condition", "language": "text/fhirpath", "expression": "%conditions.entry.resource"}}],
         "item": [{"linkId": "history-text", "type": "string", "extension": [initial("%condition.code.text")]}]},
        {"linkId": "broken", "type": "string", "extension": [initial("%nothing.here")]},
        {"linkId": "score", "type": "integer", "extension": [{"url": SDC + "sdc-questionnaire-calculatedExpression", "valueExpression": {"language": "text/fhirpath", "expression": "1 + 1"}}]},
    ],
}  # fmt: skip


async def seed(fhir: httpx.AsyncClient) -> None:
    stored = await fhir.put("/Questionnaire/intake", json=INTAKE)
    assert stored.status_code == 201, stored.text
    for resource in (
        {"resourceType": "Observation", "status": "final", "subject": {"reference": "Patient/p1"}, "effectiveDateTime": "2026-10-01",
         "code": {"coding": [{"system": "http://loinc.org", "code": "11884-4"}]}, "valueQuantity": {"value": 11, "unit": "wk"}},
        {"resourceType": "Observation", "status": "final", "subject": {"reference": "Patient/p1"}, "effectiveDateTime": "2026-11-01",
         "code": {"coding": [{"system": "http://loinc.org", "code": "11884-4"}]}, "valueQuantity": {"value": 15, "unit": "wk"}},
        {"resourceType": "Condition", "subject": {"reference": "Patient/p1"}, "code": {"text": "Asthma"}},
        {"resourceType": "Condition", "subject": {"reference": "Patient/p1"}, "code": {"text": "Migraine"}},
        {"resourceType": "Condition", "subject": {"reference": "Patient/p2"}, "code": {"text": "Someone else's"}},
        {"resourceType": "Encounter", "id": "enc-1", "status": "in-progress", "subject": {"reference": "Patient/p1"},
         "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"}},
    ):  # fmt: skip
        if "id" in resource:
            assert (
                await fhir.put(f"/Encounter/{resource['id']}", json=resource)
            ).status_code == 201
        else:
            assert (
                await fhir.post(f"/{resource['resourceType']}", json=resource)
            ).status_code == 201


def parts(body: dict) -> dict:
    assert body["resourceType"] == "Parameters", body
    return {p["name"]: p["resource"] for p in body["parameter"]}


async def test_populate_from_launch_context_variables_and_queries(fhir: httpx.AsyncClient) -> None:
    await seed(fhir)
    before = len(await search(fhir, "/QuestionnaireResponse"))
    body = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "subject", "valueReference": {"reference": "Patient/p1"}},
            {"name": "local", "valueBoolean": True},
            {"name": "context", "part": [{"name": "name", "valueString": "encounter"}, {"name": "content", "valueReference": {"reference": "Encounter/enc-1"}}]},
        ],
    }  # fmt: skip
    result = await fhir.post("/Questionnaire/intake/$populate", json=body)
    assert result.status_code == 200, result.text
    found = parts(result.json())
    response = found["response"]
    assert response["status"] == "in-progress"
    assert response["questionnaire"] == f"{INTAKE['url']}|1"
    assert response["subject"] == {"reference": "Patient/p1"}
    assert response["encounter"] == {"reference": "Encounter/enc-1"}
    assert H.answer_of(response, "birth") == "1994-05-01"
    assert H.answer_of(response, "ga") == 15  # the newest gestational age
    assert H.answer_of(response, "where") == "AMB"
    assert H.answer_of(response, "lang") == {"system": "urn:ietf:bcp:47", "code": "nl-BE"}
    histories = [i for i in response["item"] if i["linkId"] == "history"]
    assert sorted(h["item"][0]["answer"][0]["valueString"] for h in histories) == [
        "Asthma",
        "Migraine",
    ]
    assert H.answer_of(response, "score") is None  # calculated on completion, not here
    issues = found["issues"]["issue"]
    assert any("initialExpression of 'broken'" in i["diagnostics"] for i in issues)
    assert len(await search(fhir, "/QuestionnaireResponse")) == before  # nothing stored


async def test_populate_at_type_level_by_canonical(fhir: httpx.AsyncClient) -> None:
    result = await fhir.get(
        "/Questionnaire/$populate",
        params={
            "questionnaire": H.canonical("bib-psychosocial-screening"),
            "subject": "Patient/p1",
        },
    )
    assert result.status_code == 200, result.text
    response = parts(result.json())["response"]
    assert response["questionnaire"] == H.canonical("bib-psychosocial-screening")
    assert response["subject"] == {"reference": "Patient/p1"}


async def test_populate_errors(fhir: httpx.AsyncClient) -> None:
    await seed(fhir)
    assert (await fhir.get("/Questionnaire/intake/$populate")).status_code == 400  # no subject
    assert (
        await fhir.get("/Questionnaire/intake/$populate", params={"subject": "Patient/nobody"})
    ).status_code == 404
    assert (
        await fhir.get("/Questionnaire/nope/$populate", params={"subject": "Patient/p1"})
    ).status_code == 404
    assert (
        await fhir.get("/Questionnaire/$populate", params={"subject": "Patient/p1"})
    ).status_code == 400
    unknown = await fhir.get(
        "/Questionnaire/$populate",
        params={"subject": "Patient/p1", "questionnaire": f"{H.BIB}/Questionnaire/nope"},
    )
    assert unknown.status_code == 404
    unsupported = await fhir.get(
        "/Questionnaire/intake/$populate", params={"subject": "Patient/p1", "identifier": "x"}
    )
    assert unsupported.status_code == 400 and "not supported" in unsupported.text
    assert (
        await fhir.get("/Patient/$populate", params={"subject": "Patient/p1"})
    ).status_code == 404
