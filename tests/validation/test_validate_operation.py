"""$validate over HTTP, validation on write (422, nothing written), required profiles, reference
target profiles and stored StructureDefinitions."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from fhir_server.app import ServerApp
from tests.conftest import TEST_BASE, make_settings

from .conftest import BIB, example

BIB_PATIENT = BIB + "bib-patient"
SSIN = "https://www.ehealth.fgov.be/standards/fhir/core/NamingSystem/ssin"


def _issues(outcome: dict[str, Any], severity: str | None = None) -> list[dict[str, Any]]:
    """The issues of ``outcome`` (of one severity), without the best-practice warning dom-6
    (no narrative), which $validate reports for every resource without one."""
    assert outcome["resourceType"] == "OperationOutcome"
    return [
        i
        for i in outcome["issue"]
        if (severity is None or i["severity"] == severity) and not _best_practice(i)
    ]


def _best_practice(issue: dict[str, Any]) -> bool:
    codes = [c.get("code") for c in issue.get("details", {}).get("coding", ())]
    return issue["severity"] == "warning" and codes == ["dom-6"]


def _bad_patient(id_: str = "bad") -> dict[str, Any]:
    patient = example("Patient-bib-example-patient-rrn")
    patient["id"] = id_
    patient["identifier"][0]["value"] = "92031412452"  # wrong check digits
    return patient


@pytest.fixture
async def strict(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    """A server that requires BiB Patients and BiB PractitionerRoles."""
    settings = make_settings(
        tmp_path,
        required_profiles=f"Patient={BIB_PATIENT},PractitionerRole={BIB}bib-practitionerrole",
    )
    server = ServerApp(settings)
    await server.startup()
    try:
        transport = httpx.ASGITransport(app=server)
        async with httpx.AsyncClient(transport=transport, base_url=TEST_BASE) as http:
            yield http
    finally:
        await server.shutdown()


# -- $validate ----------------------------------------------------------------------------------


async def test_validate_valid_resource(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/Patient/$validate", json=example("Patient-bib-example-patient-rrn")
    )
    assert response.status_code == 200
    issues = response.json()["issue"]
    assert [
        (i["severity"], i.get("details", {}).get("coding", [{}])[0].get("code")) for i in issues
    ] == [("warning", "dom-6")]  # valid; the only remark is the best-practice one: no narrative
    narrated = example("Patient-bib-example-patient-rrn")
    narrated["text"] = {
        "status": "generated",
        "div": '<div xmlns="http://www.w3.org/1999/xhtml">Marie Dupont</div>',
    }
    response = await client.post("/Patient/$validate", json=narrated)
    assert [i["severity"] for i in response.json()["issue"]] == ["information"]


async def test_validate_reports_every_issue_with_its_location(client: httpx.AsyncClient) -> None:
    patient = _bad_patient()
    patient["maritalStatus"] = {"coding": [{"system": "http://example.org", "code": "Q"}]}
    patient["contact"] = [{"gender": "female"}]
    response = await client.post("/Patient/$validate", json=patient)
    assert response.status_code == 200
    found = {(i["expression"][0], i["code"]) for i in _issues(response.json(), "error")}
    assert found == {
        ("Patient.identifier[0]", "invariant"),
        ("Patient.maritalStatus", "code-invalid"),
        ("Patient.contact[0]", "invariant"),
    }


async def test_validate_includes_structural_issues(client: httpx.AsyncClient) -> None:
    patient = example("Patient-bib-example-patient-rrn")
    patient["gender"] = ["female"]
    patient["identifier"] = []
    response = await client.post("/Patient/$validate", json=patient)
    assert response.status_code == 200
    expressions = {i["expression"][0] for i in _issues(response.json(), "error")}
    assert "Patient.gender" in expressions and "Patient.identifier" in expressions


async def test_validate_with_parameters_and_profile(client: httpx.AsyncClient) -> None:
    plain = {"resourceType": "Patient", "name": [{"family": "X"}]}
    parameters = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "resource", "resource": plain},
            {"name": "mode", "valueCode": "create"},
            {"name": "profile", "valueUri": BIB_PATIENT},
        ],
    }
    response = await client.post("/Patient/$validate", json=parameters)
    assert response.status_code == 200
    errors = _issues(response.json(), "error")
    assert [(i["expression"][0], i["code"]) for i in errors] == [("Patient.identifier", "required")]
    # the same through the profile URL parameter
    response = await client.post(f"/Patient/$validate?profile={BIB_PATIENT}", json=plain)
    assert _issues(response.json(), "error") == errors


async def test_validate_unknown_profile_is_an_error(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/Patient/$validate?profile=http://example.org/StructureDefinition/nope",
        json={"resourceType": "Patient"},
    )
    assert response.status_code == 400
    assert "not known" in response.json()["issue"][0]["diagnostics"]


async def test_validate_type_mismatch(client: httpx.AsyncClient) -> None:
    response = await client.post("/Observation/$validate", json={"resourceType": "Patient"})
    assert response.status_code == 200
    assert _issues(response.json(), "error")[0]["code"] == "invalid"


async def test_validate_instance_modes(client: httpx.AsyncClient) -> None:
    patient = example("Patient-bib-example-patient-rrn")
    assert (await client.put(f"/Patient/{patient['id']}", json=patient)).status_code == 201
    # GET at instance level validates the stored version
    response = await client.get(f"/Patient/{patient['id']}/$validate")
    assert [i["severity"] for i in _issues(response.json())] == []  # valid (dom-6 aside)
    # update: the id must match the URL
    response = await client.post("/Patient/other/$validate?mode=update", json=patient)
    assert any("does not match" in i["diagnostics"] for i in _issues(response.json(), "error"))
    response = await client.post(f"/Patient/{patient['id']}/$validate?mode=update", json=patient)
    assert _issues(response.json(), "error") == []
    # update and delete need the instance level
    response = await client.post("/Patient/$validate?mode=update", json=patient)
    assert response.status_code == 400
    # delete: no resource needed
    response = await client.post(f"/Patient/{patient['id']}/$validate?mode=delete")
    assert _issues(response.json(), "error") == []
    response = await client.post("/Patient/missing/$validate?mode=delete")
    assert _issues(response.json(), "warning")[0]["code"] == "not-found"
    response = await client.post(f"/Patient/{patient['id']}/$validate?mode=sideways", json=patient)
    assert response.status_code == 400


async def test_validate_checks_stored_reference_targets(client: httpx.AsyncClient) -> None:
    await client.put("/Patient/plain", json={"resourceType": "Patient", "id": "plain"})
    referral = example("ServiceRequest-bib-example-referral")
    referral["subject"] = {"reference": "Patient/plain"}
    response = await client.post("/ServiceRequest/$validate", json=referral)
    errors = _issues(response.json(), "error")
    assert [(i["expression"][0], i["code"]) for i in errors] == [
        ("ServiceRequest.subject", "invalid")
    ]
    assert BIB_PATIENT in errors[0]["diagnostics"]


async def test_validate_at_system_level_is_not_supported(client: httpx.AsyncClient) -> None:
    response = await client.post("/$validate", json={"resourceType": "Patient"})
    assert response.status_code == 404


# -- validation on write --------------------------------------------------------------------------


async def test_invalid_write_is_rejected_and_nothing_is_written(client: httpx.AsyncClient) -> None:
    response = await client.put("/Patient/bad", json=_bad_patient())
    assert response.status_code == 422
    issues = _issues(response.json(), "error")
    assert issues[0]["expression"] == ["Patient.identifier[0]"]
    assert "be-inv-SSIN" in issues[0]["diagnostics"]
    assert (await client.get("/Patient/bad")).status_code == 404
    response = await client.post("/Patient", json=_bad_patient())
    assert response.status_code == 422
    bundle = (await client.get("/Patient")).json()
    assert bundle.get("total", len(bundle.get("entry", []))) == 0


async def test_warnings_do_not_block_a_write(client: httpx.AsyncClient) -> None:
    patient = example("Patient-bib-example-patient-rrn")
    patient["extension"] = [{"url": "http://example.org/fhir/unknown", "valueBoolean": True}]
    patient["meta"]["profile"].append("http://example.org/fhir/StructureDefinition/unknown")
    response = await client.put(f"/Patient/{patient['id']}", json=patient)
    assert response.status_code == 201


async def test_invalid_patch_is_rejected(client: httpx.AsyncClient) -> None:
    patient = example("Patient-bib-example-patient-rrn")
    await client.put(f"/Patient/{patient['id']}", json=patient)
    patch = [{"op": "replace", "path": "/identifier/0/value", "value": "92031412452"}]
    response = await client.patch(
        f"/Patient/{patient['id']}",
        content=str(patch).replace("'", '"'),
        headers={"Content-Type": "application/json-patch+json"},
    )
    assert response.status_code == 422
    stored = (await client.get(f"/Patient/{patient['id']}")).json()
    assert stored["identifier"][0]["value"] == "92031412451"


async def test_transaction_with_an_invalid_entry_writes_nothing(
    client: httpx.AsyncClient,
) -> None:
    good = example("Patient-bib-example-patient-bis")
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": good, "request": {"method": "PUT", "url": f"Patient/{good['id']}"}},
            {"resource": _bad_patient(), "request": {"method": "PUT", "url": "Patient/bad"}},
        ],
    }
    response = await client.post("", json=bundle)
    assert response.status_code == 422
    assert (await client.get(f"/Patient/{good['id']}")).status_code == 404


async def test_reference_to_a_non_conforming_stored_resource_is_rejected(
    client: httpx.AsyncClient,
) -> None:
    await client.put("/Patient/plain", json={"resourceType": "Patient", "id": "plain"})
    referral = example("ServiceRequest-bib-example-referral")
    referral["subject"] = {"reference": "Patient/plain"}
    response = await client.put(f"/ServiceRequest/{referral['id']}", json=referral)
    assert response.status_code == 422
    assert _issues(response.json(), "error")[0]["expression"] == ["ServiceRequest.subject"]
    assert (await client.get(f"/ServiceRequest/{referral['id']}")).status_code == 404
    # once the patient conforms to the BiB Patient profile, the referral is accepted
    patient = example("Patient-bib-example-patient-rrn")
    patient["id"] = "plain"
    assert (await client.put("/Patient/plain", json=patient)).status_code == 200
    response = await client.put(f"/ServiceRequest/{referral['id']}", json=referral)
    assert response.status_code == 201


async def test_required_profiles(strict: httpx.AsyncClient) -> None:
    plain = {"resourceType": "Patient", "name": [{"family": "Plain"}]}
    response = await strict.post("/Patient", json=plain)
    assert response.status_code == 422
    assert _issues(response.json(), "error")[0]["expression"] == ["Patient.identifier"]
    plain["identifier"] = [{"system": SSIN, "value": "92031412451"}]
    assert (await strict.post("/Patient", json=plain)).status_code == 201
    role = {"resourceType": "PractitionerRole", "active": True}
    response = await strict.post("/PractitionerRole", json=role)
    assert response.status_code == 422
    # other types are not affected
    assert (
        await strict.post("/Basic", json={"resourceType": "Basic", "code": {"text": "x"}})
    ).status_code == 201


async def test_misconfigured_required_profile_fails_at_start(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="required_profiles"):
        ServerApp(make_settings(tmp_path, required_profiles=f"Observation={BIB_PATIENT}"))
    with pytest.raises(ValueError, match="Type=url"):
        ServerApp(make_settings(tmp_path, required_profiles="Patient"))


async def test_reject_unknown_profiles(tmp_path: Path) -> None:
    server = ServerApp(make_settings(tmp_path, reject_unknown_profiles=True))
    await server.startup()
    try:
        transport = httpx.ASGITransport(app=server)
        async with httpx.AsyncClient(transport=transport, base_url=TEST_BASE) as http:
            patient = {
                "resourceType": "Patient",
                "meta": {"profile": ["http://example.org/StructureDefinition/x"]},
            }
            response = await http.post("/Patient", json=patient)
            assert response.status_code == 422
            assert _issues(response.json(), "error")[0]["code"] == "not-supported"
    finally:
        await server.shutdown()


# -- stored StructureDefinitions --------------------------------------------------------------


STORED_URL = "http://example.org/fhir/StructureDefinition/gendered-patient"
STORED = {
    "resourceType": "StructureDefinition",
    "id": "gendered-patient",
    "url": STORED_URL,
    "name": "GenderedPatient",
    "status": "draft",
    "kind": "resource",
    "abstract": False,
    "type": "Patient",
    "baseDefinition": BIB_PATIENT,
    "derivation": "constraint",
    "differential": {"element": [{"id": "Patient.gender", "path": "Patient.gender", "min": 1}]},
}


async def test_stored_structure_definitions_are_used(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    server = ServerApp(settings)
    await server.startup()
    patient = example("Patient-bib-example-patient-rrn")
    patient["meta"] = {"profile": [STORED_URL]}
    del patient["gender"]
    try:
        transport = httpx.ASGITransport(app=server)
        async with httpx.AsyncClient(transport=transport, base_url=TEST_BASE) as http:
            # unknown yet: a warning only
            assert (await http.put("/Patient/p1", json={**patient, "id": "p1"})).status_code == 201
            response = await http.put("/StructureDefinition/gendered-patient", json=STORED)
            assert response.status_code == 201
            response = await http.put("/Patient/p2", json={**patient, "id": "p2"})
            assert response.status_code == 422
            assert _issues(response.json(), "error")[0]["expression"] == ["Patient.gender"]
            response = await http.post(
                f"/Patient/$validate?profile={STORED_URL}",
                json=example("Patient-bib-example-patient-rrn"),
            )
            assert _issues(response.json(), "error") == []
    finally:
        await server.shutdown()
    # after a restart the stored profile is loaded again
    server = ServerApp(settings)
    await server.startup()
    try:
        transport = httpx.ASGITransport(app=server)
        async with httpx.AsyncClient(transport=transport, base_url=TEST_BASE) as http:
            assert (await http.put("/Patient/p3", json={**patient, "id": "p3"})).status_code == 422
            assert (await http.delete("/StructureDefinition/gendered-patient")).status_code in (
                200,
                204,
            )
            assert (await http.put("/Patient/p3", json={**patient, "id": "p3"})).status_code == 201
    finally:
        await server.shutdown()


# -- demo content ----------------------------------------------------------------------------------


async def test_demo_content_conforms_when_profiles_are_required(tmp_path: Path) -> None:
    settings = make_settings(
        tmp_path,
        required_profiles=f"Patient={BIB_PATIENT},PractitionerRole={BIB}bib-practitionerrole",
    )
    server = ServerApp(settings, load_demo=True)
    await server.startup()
    try:
        transport = httpx.ASGITransport(app=server)
        async with httpx.AsyncClient(transport=transport, base_url=TEST_BASE) as http:
            bundle = (await http.get("/Patient?_count=50")).json()
            ids = {e["resource"]["id"] for e in bundle["entry"]}
            assert {"demo-bib-patient-rrn", "demo-bib-patient-bis", "demo-patient-1"} <= ids
            for type_ in ("CarePlan", "ServiceRequest", "Task", "HealthcareService"):
                found = (await http.get(f"/{type_}?_count=50")).json()
                for entry in found["entry"]:
                    resource = entry["resource"]
                    response = await http.get(f"/{type_}/{resource['id']}/$validate")
                    assert _issues(response.json(), "error") == [], resource["id"]
                    assert _issues(response.json(), "warning") == [], resource["id"]
    finally:
        await server.shutdown()
