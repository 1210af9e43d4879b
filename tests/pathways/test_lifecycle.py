"""The CarePlan lifecycle (mappings/careplan-lifecycle.json) on every write path: create, update,
JSON Patch, FHIRPath Patch and transaction entries; the cascade to the plan's requests; every
change a new version."""

from __future__ import annotations

import pytest

from tests.pathways.conftest import create, loss_condition, new_patient, ref

pytestmark = pytest.mark.asyncio(loop_scope="module")


def careplan(pid: str, status: str = "draft", intent: str = "proposal") -> dict:
    return {
        "resourceType": "CarePlan",
        "status": status,
        "intent": intent,
        "subject": ref(f"Patient/{pid}"),
        "title": "Plan",
    }


async def stored_plan(client) -> tuple[str, dict]:
    """A loss pathway stored from $apply (transaction form): CarePlan + requests."""
    pid = await new_patient(client)
    await create(client, loss_condition(pid, "early-pregnancy-loss"))
    [plan] = [
        e["resource"]
        for e in (await client.get("/CarePlan", params={"patient": f"Patient/{pid}"})).json()[
            "entry"
        ]
    ]
    return pid, plan


async def requests_of(client, plan: dict) -> list[dict]:
    out = []
    for activity in plan["activity"][1:]:
        out.append((await client.get("/" + activity["reference"]["reference"])).json())
    return out


async def put(client, resource: dict, expect: int) -> dict:
    response = await client.put(f"/CarePlan/{resource['id']}", json=resource)
    assert response.status_code == expect, response.text
    return response.json()


async def test_draft_to_active_to_completed_and_no_way_back(client):
    pid = await new_patient(client)
    plan = await create(client, careplan(pid))
    plan["status"], plan["intent"] = "active", "plan"
    plan = await put(client, plan, 200)
    plan["status"] = "on-hold"
    plan = await put(client, plan, 200)
    plan["status"] = "active"
    plan = await put(client, plan, 200)
    plan["status"] = "completed"
    plan = await put(client, plan, 200)
    for status in ("active", "draft", "on-hold", "revoked"):
        outcome = await put(client, dict(plan, status=status), 422)
        assert outcome["issue"][0]["code"] == "business-rule"
        assert "completed -> " + status in outcome["issue"][0]["diagnostics"]
    # a finished plan's content does not change either
    outcome = await put(client, dict(plan, title="rewritten"), 422)
    assert "no longer changes" in outcome["issue"][0]["diagnostics"]
    # but a mistake can be marked
    await put(client, dict(plan, status="entered-in-error"), 200)
    history = (await client.get(f"/CarePlan/{plan['id']}/_history")).json()
    assert [e["resource"]["status"] for e in history["entry"]] == [
        "entered-in-error", "completed", "active", "on-hold", "active", "draft",
    ]  # fmt: skip


async def test_a_proposal_is_not_active_and_plans_are_not_proposals_again(client):
    pid = await new_patient(client)
    response = await client.post("/CarePlan", json=careplan(pid, "active", "proposal"))
    assert response.status_code == 422
    assert "intent" in response.json()["issue"][0]["diagnostics"]
    response = await client.post("/CarePlan", json=careplan(pid, "entered-in-error", "plan"))
    assert response.status_code == 422
    plan = await create(client, careplan(pid))
    outcome = await put(client, dict(plan, status="active"), 422)  # still a proposal
    assert outcome["issue"][0]["expression"] == ["CarePlan.intent"]
    plan = await put(client, dict(plan, status="active", intent="plan"), 200)
    outcome = await put(client, dict(plan, status="draft", intent="proposal"), 422)
    # the subject and the pathway never change
    other = await new_patient(client)
    outcome = await put(client, dict(plan, subject=ref(f"Patient/{other}")), 422)
    assert "subject cannot change" in outcome["issue"][0]["diagnostics"]


async def test_patch_and_transaction_follow_the_same_rules(client):
    pid = await new_patient(client)
    plan = await create(client, careplan(pid))
    json_patch = [{"op": "replace", "path": "/status", "value": "completed"}]
    response = await client.patch(
        f"/CarePlan/{plan['id']}",
        json=json_patch,
        headers={"Content-Type": "application/json-patch+json"},
    )
    assert response.status_code == 422, response.text
    fhirpath_patch = {
        "resourceType": "Parameters",
        "parameter": [
            {
                "name": "operation",
                "part": [
                    {"name": "type", "valueCode": "replace"},
                    {"name": "path", "valueString": "CarePlan.status"},
                    {"name": "value", "valueCode": "active"},
                ],
            }
        ],
    }
    response = await client.patch(
        f"/CarePlan/{plan['id']}",
        json=fhirpath_patch,
        headers={"Content-Type": "application/fhir+json"},
    )
    assert response.status_code == 422  # active needs intent plan
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "resource": dict(plan, status="completed", intent="plan"),
                "request": {"method": "PUT", "url": f"CarePlan/{plan['id']}"},
            },
            {
                "resource": {"resourceType": "Basic", "code": {"text": "x"}},
                "request": {"method": "POST", "url": "Basic"},
            },
        ],
    }
    response = await client.post("/", json=bundle)
    assert response.status_code == 422, response.text
    assert "draft -> completed" in response.json()["issue"][0]["diagnostics"]
    current = (await client.get(f"/CarePlan/{plan['id']}")).json()
    assert current["meta"]["versionId"] == "1"  # nothing was written


async def test_activating_a_suggestion_makes_its_requests_actionable(client):
    _, plan = await stored_plan(client)
    before = await requests_of(client, plan)
    assert {r["status"] for r in before} == {"draft"}
    response = await client.patch(
        f"/CarePlan/{plan['id']}",
        json=[
            {"op": "replace", "path": "/status", "value": "active"},
            {"op": "replace", "path": "/intent", "value": "plan"},
        ],
        headers={"Content-Type": "application/json-patch+json"},
    )
    assert response.status_code == 200, response.text
    after = await requests_of(client, plan)
    for request in after:
        expected = "active" if request["resourceType"] == "ServiceRequest" else "requested"
        assert (request["status"], request["intent"]) == (expected, "plan")
        assert request["meta"]["versionId"] == "2"

    # progress one activity: the Task is done, the plan records a progress note
    task = next(r for r in after if r["resourceType"] == "Task")
    task["status"] = "completed"
    response = await client.put(f"/Task/{task['id']}", json=task)
    assert response.status_code == 200, response.text
    active = (await client.get(f"/CarePlan/{plan['id']}")).json()
    active["activity"][1]["progress"] = [{"text": "Explained to both parents."}]
    response = await client.put(f"/CarePlan/{plan['id']}", json=active)
    assert response.status_code == 200, response.text

    # revoking withdraws the requests that have not started; the completed Task stays
    active = response.json()
    active["status"] = "revoked"
    response = await client.put(f"/CarePlan/{plan['id']}", json=active)
    assert response.status_code == 200, response.text
    final = {r["id"]: r for r in await requests_of(client, plan)}
    assert final[task["id"]]["status"] == "completed"
    others = [r for i, r in final.items() if i != task["id"]]
    assert {r["status"] for r in others} <= {"revoked", "cancelled"}


async def test_revoking_a_suggestion_withdraws_it(client):
    _, plan = await stored_plan(client)
    plan["status"] = "revoked"
    response = await client.put(f"/CarePlan/{plan['id']}", json=plan)
    assert response.status_code == 200, response.text
    statuses = {r["status"] for r in await requests_of(client, plan)}
    assert statuses == {"revoked", "cancelled"}


async def test_a_request_of_another_plan_is_not_touched(client):
    pid = await new_patient(client)
    task = await create(
        client,
        {
            "resourceType": "Task",
            "status": "draft",
            "intent": "proposal",
            "for": ref(f"Patient/{pid}"),
        },
    )
    plan = careplan(pid)
    plan["activity"] = [{"reference": ref(f"Task/{task['id']}")}]
    plan = await create(client, plan)
    await put(client, dict(plan, status="active", intent="plan"), 200)
    assert (await client.get(f"/Task/{task['id']}")).json()["status"] == "draft"
