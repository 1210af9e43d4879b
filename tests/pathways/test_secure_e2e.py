"""End to end with security on: a real ``fhir-server serve`` (uvicorn) with the security seed of
tests/security (patient p1 in the care team of midwife mw-1, social worker sw-1 and physician
dr-ext; p2 in mw-2's), real tokens and the fhirpy client.

The midwife records a loss, gets the suggestion, applies and stores a pathway, activates it and
progresses an activity; the GP (dr-ext) pulls the active plans with their activities, goals and
care team, and $everything; a professional without a care relationship gets no plan and no data;
a Role B user does not see a mental-health pathway; every step is audited.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fhirpy import SyncFHIRClient
from fhirpy.base.exceptions import ForbiddenError, OperationOutcome, ResourceNotFound

from tests.security.conftest import SecureServer

SCENARIO = "https://borninbelgiumpro.be/fhir/CodeSystem/bib-pregnancy-loss-scenario"
SEVERITY = "https://borninbelgiumpro.be/fhir/CodeSystem/bib-pmh-severity"


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureServer]:
    server = SecureServer(tmp_path_factory.mktemp("pathways-secure"))
    try:
        yield server
    finally:
        server.close()


def client_for(secure: SecureServer, **claims: Any) -> SyncFHIRClient:
    token = secure.mint(**claims)
    return SyncFHIRClient(secure.base, authorization=f"Bearer {token}")


@pytest.fixture(scope="module")
def midwife(secure: SecureServer) -> SyncFHIRClient:
    return client_for(secure)  # mw-1, Role A, user/*.cruds


@pytest.fixture(scope="module")
def gp(secure: SecureServer) -> SyncFHIRClient:
    return client_for(
        secure,
        practitioner="Practitioner/dr-ext",
        subject="dr-ext",
        organization="Organization/other-org",
        scope="user/*.rs",
    )


@pytest.fixture(scope="module")
def stranger(secure: SecureServer) -> SyncFHIRClient:
    return client_for(
        secure,
        practitioner="Practitioner/mw-2",
        subject="mw-2",
        organization="Organization/other-org",
    )


@pytest.fixture(scope="module")
def social_worker(secure: SecureServer) -> SyncFHIRClient:
    return client_for(
        secure,
        practitioner="Practitioner/sw-1",
        subject="sw-1",
        organization="Organization/cpas-1",
        role="B",
    )


def test_a_midwife_starts_a_pathway_and_a_gp_pulls_it(
    secure: SecureServer, midwife: SyncFHIRClient, gp: SyncFHIRClient
) -> None:
    # recording the loss makes a draft suggestion
    condition = midwife.resource(
        "Condition",
        subject={"reference": "Patient/p1"},
        code={"coding": [{"system": SCENARIO, "code": "early-pregnancy-loss"}]},
        onsetDateTime="2026-10-01",
    )
    condition.save()
    [suggestion] = midwife.resources("CarePlan").search(patient="Patient/p1").fetch_all()
    assert (suggestion["status"], suggestion["intent"]) == ("draft", "proposal")
    assert suggestion.serialize()["careTeam"] == [{"reference": "CareTeam/team-p1"}]
    # the midwife declines it and applies the plan herself (in Dutch), storing it in one go
    suggestion["status"] = "revoked"
    suggestion.save()
    bundle = midwife.execute(
        "PlanDefinition/pd-loss-early/$apply",
        method="get",
        params={
            "subject": "Patient/p1",
            "output": "transaction",
            "userLanguage": "nl-BE",
            "practitioner": "Practitioner/mw-1",
        },
    )
    assert bundle["resourceType"] == "Bundle"
    stored = midwife.execute("", method="post", data=bundle)
    plan_id = stored["entry"][0]["response"]["location"].split("/")[-3]
    plan = midwife.reference("CarePlan", plan_id).to_resource()
    assert plan["title"] == "Zorgpad pril zwangerschapsverlies"
    # activate it: the drafted requests become actionable
    plan["status"], plan["intent"] = "active", "plan"
    plan.save()
    first = plan.serialize()["activity"][1]["reference"]["reference"]
    task = midwife.reference(*first.split("/")).to_resource()
    assert task["status"] in ("requested", "active")
    # progress one activity
    task["status"] = "completed"
    task.save()
    # every one of these was audited and has a Provenance
    provenance = midwife.resources("Provenance").search(target=f"CarePlan/{plan_id}").fetch_all()
    assert len(provenance) >= 2  # created, activated

    # the GP's software pulls the active plans with activities, goals and the care team
    raw = (
        gp.resources("CarePlan")
        .search(patient="Patient/p1", status="active")
        .include("CarePlan", "activity-reference")
        .include("CarePlan", "goal")
        .include("CarePlan", "care-team")
        .fetch_raw()
    )
    matches = [e["resource"] for e in raw["entry"] if e["search"]["mode"] == "match"]
    included = [e["resource"] for e in raw["entry"] if e["search"]["mode"] == "include"]
    assert [m["id"] for m in matches] == [plan_id]
    kinds = {r["resourceType"] for r in included}
    assert {"RequestGroup", "Task", "ServiceRequest", "Goal", "CareTeam"} <= kinds
    assert (
        len([r for r in included if r["resourceType"] in ("Task", "ServiceRequest")])
        == len(plan["activity"]) - 1
    )
    # and everything, page by page
    page = gp.execute("Patient/p1/$everything", method="get", params={"_count": "10"})
    seen: list[str] = []
    while True:
        seen += [f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in page["entry"]]
        nxt = [link["url"] for link in page.get("link", ()) if link["relation"] == "next"]
        if not nxt:
            break
        page = gp.execute(nxt[0][len(secure.base) + 1 :], method="get")
    assert f"CarePlan/{plan_id}" in seen and "Patient/p1" in seen
    assert f"Condition/{condition.id}" in seen
    assert not [k for k in seen if k.startswith("Patient/") and k != "Patient/p1"]
    # the GP (read-only scopes) cannot change the plan
    plan_as_gp = gp.reference("CarePlan", plan_id).to_resource()
    plan_as_gp["status"] = "completed"
    with pytest.raises(ForbiddenError):
        plan_as_gp.save()


def test_no_care_relationship_no_plan_and_no_data(
    secure: SecureServer, stranger: SyncFHIRClient
) -> None:
    with pytest.raises(ResourceNotFound):
        stranger.execute(
            "PlanDefinition/pd-loss-early/$apply", method="get", params={"subject": "Patient/p1"}
        )
    with pytest.raises(ResourceNotFound):
        stranger.execute("Patient/p1/$everything", method="get")
    assert stranger.resources("CarePlan").search(patient="Patient/p1").fetch_all() == []
    assert stranger.resources("Task").search(patient="Patient/p1").fetch_all() == []
    # recording a loss for someone else's patient is refused, and suggests nothing
    with pytest.raises(ForbiddenError):
        stranger.resource(
            "Condition",
            subject={"reference": "Patient/p1"},
            code={"coding": [{"system": SCENARIO, "code": "mors-in-utero"}]},
        ).save()
    # the audit trail has the refused $apply (outcome 4)
    response = secure.request(
        "GET",
        "/PlanDefinition/pd-loss-early/$apply?subject=Patient/p1",
        secure.mint(
            practitioner="Practitioner/mw-2", subject="mw-2", organization="Organization/other-org"
        ),
    )
    assert response.status_code == 404
    event = secure.audit_event(response.request_id)
    assert event["outcome"] == "4"


def test_role_b_does_not_see_a_mental_health_pathway(
    secure: SecureServer, midwife: SyncFHIRClient, social_worker: SyncFHIRClient
) -> None:
    midwife.resource(
        "Observation",
        status="final",
        code={"text": "severity"},
        subject={"reference": "Patient/p1"},
        valueCodeableConcept={"coding": [{"system": SEVERITY, "code": "moderate"}]},
    ).save()
    bundle = midwife.execute(
        "PlanDefinition/pd-pmh-stepped-care/$apply",
        method="get",
        params={"subject": "Patient/p1", "output": "transaction"},
    )
    stored = midwife.execute("", method="post", data=bundle)
    plan_id = stored["entry"][0]["response"]["location"].split("/")[-3]
    plan = midwife.reference("CarePlan", plan_id).to_resource()
    assert {"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "R"} in [
        {"system": s["system"], "code": s["code"]} for s in plan["meta"]["security"]
    ]
    visible = {
        p.id for p in social_worker.resources("CarePlan").search(patient="Patient/p1").fetch_all()
    }
    assert plan_id not in visible
    with pytest.raises(ResourceNotFound):
        social_worker.reference("CarePlan", plan_id).to_resource()
    everything = social_worker.execute(
        "Patient/p1/$everything", method="get", params={"_count": "1000"}
    )
    ids = {f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in everything["entry"]}
    assert f"CarePlan/{plan_id}" not in ids
    # nor its requests: they carry the pathway code, so they are labelled too
    for entry in stored["entry"][1:]:
        key = entry["response"]["location"].split("/_history")[0].split("/fhir/")[-1]
        assert key not in ids
    # and the stepped-care plan applied by Role B sees no severity (the assessment is labelled)
    with pytest.raises(OperationOutcome):
        social_worker.execute(
            "PlanDefinition/pd-pmh-stepped-care/$apply",
            method="get",
            params={"subject": "Patient/p1"},
        )
