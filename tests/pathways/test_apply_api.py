"""$apply as an operation: type and instance level, GET and POST, inline and stored definitions,
ActivityDefinition/$apply, the transaction form stored in one POST, bad input (unknown
definitions, expressions that do not parse, subjects that do not exist), and /metadata."""

from __future__ import annotations

import copy
import uuid

import pytest

from tests.pathways.conftest import (
    Applied,
    apply,
    create,
    loss_condition,
    new_patient,
    ref,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")
PD = "https://borninbelgiumpro.be/fhir/PlanDefinition/"


def small_plan(condition: str = "%patient.gender = 'female'") -> dict:
    return {
        "resourceType": "PlanDefinition",
        "url": "https://example.org/fhir/PlanDefinition/small",
        "version": "1",
        "status": "active",
        "title": "Small plan",
        "action": [
            {
                "id": "start",
                "title": "Start",
                "dynamicValue": [
                    {
                        "path": "timing",
                        "expression": {"language": "text/fhirpath", "expression": "%today"},
                    }
                ],
            },
            {
                "id": "call",
                "title": "Telephone check-up",
                "condition": [
                    {
                        "kind": "applicability",
                        "expression": {"language": "text/fhirpath", "expression": condition},
                    }
                ],
                "relatedAction": [
                    {
                        "actionId": "start",
                        "relationship": "after-start",
                        "offsetDuration": {
                            "value": 2,
                            "unit": "d",
                            "code": "d",
                            "system": "http://unitsofmeasure.org",
                        },
                    }
                ],
                "definitionCanonical": "https://borninbelgiumpro.be/fhir/ActivityDefinition/"
                "ad-loss-telephone-check-up",
                "dynamicValue": [
                    {
                        "path": "note.text",
                        "expression": {
                            "language": "text/fhirpath",
                            "expression": "'for ' + %patient.id",
                        },
                    }
                ],
            },
        ],
    }


async def test_get_and_post_at_instance_and_type_level(client):
    pid = await new_patient(client)
    await create(client, loss_condition(pid, "early-pregnancy-loss"))
    by_get = await apply(client, "pd-loss-early", pid)
    post = await client.post(
        "/PlanDefinition/pd-loss-early/$apply",
        json={
            "resourceType": "Parameters",
            "parameter": [{"name": "subject", "valueString": f"Patient/{pid}"}],
        },
    )
    assert post.status_code == 200, post.text
    by_url = await client.get(
        "/PlanDefinition/$apply",
        params={"url": PD + "pd-loss-early", "version": "0.1.0", "subject": f"Patient/{pid}"},
    )
    assert by_url.status_code == 200, by_url.text
    for other in (post.json(), by_url.json()):
        assert other["instantiatesCanonical"] == by_get["instantiatesCanonical"]
        assert len(other["contained"]) == len(by_get["contained"])
    # an inline (unstored) PlanDefinition at type level
    inline = await client.post(
        "/PlanDefinition/$apply",
        json={
            "resourceType": "Parameters",
            "parameter": [
                {"name": "planDefinition", "resource": small_plan()},
                {"name": "subject", "valueString": f"Patient/{pid}"},
            ],
        },
    )
    assert inline.status_code == 200, inline.text
    result = Applied(inline.json())
    task = result.request("call")
    assert task["resourceType"] == "Task"
    assert task["note"] == [{"text": f"for {pid}"}]  # a dynamic value


async def test_practitioner_organization_and_encounter(client):
    pid = await new_patient(client)
    await create(client, loss_condition(pid, "early-pregnancy-loss"))
    role = await create(client, {"resourceType": "PractitionerRole", "active": True})
    encounter = await create(
        client,
        {
            "resourceType": "Encounter",
            "status": "in-progress",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
            "subject": ref(f"Patient/{pid}"),
        },
    )
    plan = await apply(
        client,
        "pd-loss-early",
        pid,
        practitioner=f"PractitionerRole/{role['id']}",
        encounter=f"Encounter/{encounter['id']}",
    )
    assert plan["author"] == ref(f"PractitionerRole/{role['id']}")
    assert plan["encounter"] == ref(f"Encounter/{encounter['id']}")
    for request in Applied(plan).requests().values():
        assert request["requester"] == ref(f"PractitionerRole/{role['id']}")
    # an encounter of another patient is refused
    other = await new_patient(client)
    outcome = await apply(
        client, "pd-loss-early", other, expect=400, encounter=f"Encounter/{encounter['id']}"
    )
    assert "not an encounter of the subject" in outcome["issue"][0]["diagnostics"]


async def test_the_transaction_form_stores_the_plan_in_one_post(client):
    pid = await new_patient(client)
    await create(client, loss_condition(pid, "mors-in-utero"))
    bundle = await apply(client, "pd-loss-mors-in-utero", pid, output="transaction")
    assert bundle["type"] == "transaction"
    kinds = [e["resource"]["resourceType"] for e in bundle["entry"]]
    assert kinds[0] == "CarePlan" and kinds[1] == "RequestGroup"
    assert {"Goal", "Task", "ServiceRequest"} <= set(kinds)
    response = await client.post("/", json=bundle)
    assert response.status_code == 200, response.text
    locations = [e["response"]["location"] for e in response.json()["entry"]]
    plan_id = locations[0].split("/")[-3]
    plan = (await client.get(f"/CarePlan/{plan_id}")).json()
    assert plan["status"] == "draft"
    # every activity points at a stored request that points back at the plan
    for activity in plan["activity"]:
        target = (await client.get("/" + activity["reference"]["reference"])).json()
        assert ref(f"CarePlan/{plan_id}") in target["basedOn"]
    # the contained form is a valid CarePlan too
    contained = await apply(client, "pd-loss-mors-in-utero", pid)
    stored = await client.post("/CarePlan", json=contained)
    assert stored.status_code == 201, stored.text


async def test_activity_definition_apply(client):
    pid = await new_patient(client)
    by_id = await client.get(
        "/ActivityDefinition/ad-loss-grief-counselling/$apply",
        params={"subject": f"Patient/{pid}"},
        headers={"Accept-Language": "nl-BE"},
    )
    assert by_id.status_code == 200, by_id.text
    request = by_id.json()
    assert request["resourceType"] == "ServiceRequest"
    assert (request["status"], request["intent"]) == ("draft", "proposal")
    assert request["subject"] == ref(f"Patient/{pid}")
    assert request["code"]["text"] == "Rouwbegeleiding"
    assert request["instantiatesCanonical"] == [
        "https://borninbelgiumpro.be/fhir/ActivityDefinition/ad-loss-grief-counselling|0.1.0"
    ]
    task = await client.post(
        "/ActivityDefinition/$apply",
        json={
            "resourceType": "Parameters",
            "parameter": [
                {
                    "name": "activityDefinition",
                    "resource": {
                        "resourceType": "ActivityDefinition",
                        "status": "active",
                        "kind": "Task",
                        "title": "Call the family",
                        "dynamicValue": [
                            {
                                "path": "description",
                                "expression": {
                                    "language": "text/fhirpath",
                                    "expression": "'Call ' + %patient.id",
                                },
                            }
                        ],
                    },
                },
                {"name": "subject", "valueString": f"Patient/{pid}"},
            ],
        },
    )
    assert task.status_code == 200, task.text
    assert task.json()["resourceType"] == "Task"
    assert task.json()["description"] == f"Call {pid}"


async def test_unknown_definitions_and_subjects(client):
    pid = await new_patient(client)
    response = await client.get("/PlanDefinition/nope/$apply", params={"subject": f"Patient/{pid}"})
    assert response.status_code == 404
    assert response.json()["resourceType"] == "OperationOutcome"
    response = await client.get(
        "/PlanDefinition/$apply", params={"url": PD + "nope", "subject": f"Patient/{pid}"}
    )
    assert response.status_code == 404
    response = await client.get(
        "/PlanDefinition/pd-loss-early/$apply", params={"subject": "Patient/does-not-exist"}
    )
    assert response.status_code == 404
    assert "Patient/does-not-exist" in response.json()["issue"][0]["diagnostics"]
    for bad, status in (("Observation/1", 400), ("not a reference", 400), ("", 400)):
        response = await client.get("/PlanDefinition/pd-loss-early/$apply", params={"subject": bad})
        assert response.status_code == status, (bad, response.text)
    response = await client.get("/PlanDefinition/pd-loss-early/$apply")
    assert response.status_code == 400
    assert "needs a subject" in response.json()["issue"][0]["diagnostics"]
    response = await client.get(
        "/PlanDefinition/pd-loss-early/$apply", params={"subject": f"Patient/{pid}", "bogus": "1"}
    )
    assert response.status_code == 400
    response = await client.get(
        "/PlanDefinition/pd-loss-early/$apply",
        params={"subject": f"Patient/{pid}", "output": "pdf"},
    )
    assert response.status_code == 400
    response = await client.get("/Patient/$apply", params={"subject": f"Patient/{pid}"})
    assert response.status_code == 404
    response = await client.get(
        "/ActivityDefinition/$apply", params={"url": "x", "subject": f"Patient/{pid}"}
    )
    assert response.status_code == 404


@pytest.mark.parametrize(
    ("mutate", "location", "text"),
    [
        (
            lambda p: p["action"][1]["condition"][0]["expression"].update(expression="'abc"),
            "PlanDefinition.action[1].condition[0].expression.expression",
            "not valid",
        ),
        (
            lambda p: p["action"][1]["condition"][0]["expression"].update(expression="%today ="),
            "PlanDefinition.action[1].condition[0].expression.expression",
            "expected an expression",
        ),
        (
            lambda p: p["action"][1]["dynamicValue"][0]["expression"].update(expression="where("),
            "PlanDefinition.action[1].dynamicValue[0].expression.expression",
            "where",
        ),
        (
            lambda p: p["action"][1]["condition"][0]["expression"].update(expression="%nobody = 1"),
            "PlanDefinition.action[1].condition[0].expression.expression",
            "%nobody",
        ),
        (
            lambda p: p["action"][1]["condition"][0]["expression"].update(language="text/cql"),
            "PlanDefinition.action[1].condition[0].expression.language",
            "text/cql",
        ),
        (
            lambda p: p["action"][1]["relatedAction"][0].update(actionId="ghost"),
            "PlanDefinition.action[1].relatedAction[0].actionId",
            "ghost",
        ),
        (
            lambda p: p["action"][1]["dynamicValue"][0].update(path="note[0].text"),
            "PlanDefinition.action[1].dynamicValue[0].path",
            "simple element path",
        ),
        (
            lambda p: p["action"][0].update(
                relatedAction=[{"actionId": "call", "relationship": "after"}]
            ),
            "PlanDefinition.action",
            "cycle",
        ),
    ],
)
async def test_a_definition_whose_expression_does_not_parse_is_refused_at_write(
    client, mutate, location, text
):
    plan = small_plan()
    mutate(plan)
    for method, url in (("POST", "/PlanDefinition"), ("PUT", "/PlanDefinition/bad-plan")):
        body = dict(plan, id="bad-plan") if method == "PUT" else plan
        response = await client.request(method, url, json=body)
        assert response.status_code == 422, response.text
        issues = response.json()["issue"]
        assert any(
            (i.get("expression") or [""])[0].startswith(location) and text in i["diagnostics"]
            for i in issues
        ), issues
    # in a transaction too, and nothing is written
    response = await client.post(
        "/",
        json={
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [{"resource": plan, "request": {"method": "POST", "url": "PlanDefinition"}}],
        },
    )
    assert response.status_code == 422
    search = await client.get("/PlanDefinition", params={"url": plan["url"]})
    assert search.json().get("total", 0) == 0
    # $validate says the same
    validate = await client.post("/PlanDefinition/$validate", json=plan)
    assert any(text in i["diagnostics"] for i in validate.json()["issue"])
    # and an inline one at $apply is refused before anything runs
    pid = await new_patient(client)
    response = await client.post(
        "/PlanDefinition/$apply",
        json={
            "resourceType": "Parameters",
            "parameter": [
                {"name": "planDefinition", "resource": plan},
                {"name": "subject", "valueString": f"Patient/{pid}"},
            ],
        },
    )
    assert response.status_code == 422


async def test_a_valid_definition_written_through_the_api_is_used_at_once(client):
    plan = small_plan("%patient.gender = 'female'")
    response = await client.put("/PlanDefinition/small-plan", json=dict(plan, id="small-plan"))
    assert response.status_code in (200, 201), response.text
    pid = await new_patient(client)
    assert "call" in Applied(await apply(client, "small-plan", pid)).actions
    by_url = await client.get(
        "/PlanDefinition/$apply", params={"url": plan["url"], "subject": f"Patient/{pid}"}
    )
    assert by_url.status_code == 200
    # a change is used at once, and a plan that does not apply says why
    changed = copy.deepcopy(plan)
    changed["action"][1]["condition"][0]["expression"]["expression"] = "%patient.gender = 'male'"
    changed["action"] = changed["action"][1:]
    changed["action"][0].pop("relatedAction")
    changed["action"][0]["condition"][0]["expression"]["description"] = "she is a he"
    await client.put("/PlanDefinition/small-plan", json=dict(changed, id="small-plan"))
    outcome = await apply(client, "small-plan", pid, expect=422)
    assert "it applies when she is a he" in outcome["issue"][0]["diagnostics"]
    await client.delete("/PlanDefinition/small-plan")
    response = await client.get(
        "/PlanDefinition/small-plan/$apply", params={"subject": f"Patient/{pid}"}
    )
    assert response.status_code == 410


async def test_metadata_lists_the_operations_with_their_definitions(client):
    statement = (await client.get("/metadata")).json()
    resources = {r["type"]: r for r in statement["rest"][0]["resource"]}
    wanted = {
        "PlanDefinition": "OperationDefinition/PlanDefinition-apply",
        "ActivityDefinition": "OperationDefinition/ActivityDefinition-apply",
        "Patient": "OperationDefinition/Patient-everything",
    }
    for type_, definition in wanted.items():
        operations = resources[type_]["operation"]
        [operation] = [o for o in operations if o["definition"].endswith(definition)]
        # the definition is served by this server
        stored = await client.get("/" + definition)
        assert stored.status_code == 200, definition
        assert stored.json()["url"] == operation["definition"]
        assert stored.json()["code"] == operation["name"]


@pytest.mark.parametrize("expression", ["%patient.(", "%patient..gender"])
async def test_fhirpath_check_refuses_every_syntax_error(expression):
    from fhir_server.pathways.definitions import compile_plan

    plan = small_plan(expression)
    assert compile_plan(plan).issues


async def test_a_bib_patient_gets_a_bib_careplan(client):
    pid = await new_patient(
        client,
        meta={"profile": ["https://borninbelgiumpro.be/fhir/StructureDefinition/bib-patient"]},
        identifier=[
            {
                "system": "https://borninbelgiumpro.be/fhir/NamingSystem/"
                "alternative-patient-number",
                "value": f"BIB-T-{uuid.uuid4().hex[:6]}",
            }
        ],
    )
    await create(client, loss_condition(pid, "early-pregnancy-loss"))
    plan = await apply(client, "pd-loss-early", pid)
    assert plan["meta"]["profile"] == [
        "https://borninbelgiumpro.be/fhir/StructureDefinition/bib-careplan"
    ]
    bundle = await apply(client, "pd-loss-early", pid, output="transaction")
    response = await client.post("/", json=bundle)
    assert response.status_code == 200, response.text
    # the suggestion the server made when the loss was recorded claims it too
    found = (
        await client.get("/CarePlan", params={"patient": f"Patient/{pid}", "status": "draft"})
    ).json()["entry"]
    assert all(
        e["resource"]["meta"]["profile"]
        == ["https://borninbelgiumpro.be/fhir/StructureDefinition/bib-careplan"]
        for e in found
    )
    # a non-BiB patient's plan claims no profile
    plain = await new_patient(client)
    await create(client, loss_condition(plain, "early-pregnancy-loss"))
    assert "meta" not in await apply(client, "pd-loss-early", plain)
