"""A care plan revoked while its referral is open (the CarePlan lifecycle's cascade meets the
referral workflow), over HTTP with Role A tokens on the secure server.

The decided behaviour (docs/referrals.md "A care plan revoked"): revoking a plan withdraws its
referral that has not started — its Task is cancelled with the reason the lifecycle table gives
(``statusReason`` coded ``request-status#revoked``, "care plan revoked") and the ServiceRequest
follows its Task (revoked). A referral already under way (accepted, in progress) and one the
caller's organisation did not send follow their own workflow: the plan is revoked, the referral
is left as it is (its referrer cancels it, with her own reason). Before, any of these refused the
whole revoke (422: no statusReason; 409: the request's status follows its Task).
"""

from __future__ import annotations

from typing import Any

from tests.referrals.world import World, ref

REQUEST_STATUS = "http://hl7.org/fhir/request-status"


async def plan_with_referral(
    world: World, task_status: str = "requested", who: str = "mw"
) -> tuple[str, str, str]:
    """A care plan of woman p whose activities are a referral (ServiceRequest + Task, both
    ``basedOn`` the plan), sent by the midwife's hospital."""
    plan = {
        "resourceType": "CarePlan",
        "status": "active",
        "intent": "plan",
        "title": "Support after birth",
        "subject": ref("Patient/p"),
    }
    created = await world.request("POST", "/CarePlan", who, json=plan)
    assert created.status_code == 201, created.text
    plan_id = created.json()["id"]
    based_on = [ref(f"CarePlan/{plan_id}")]
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": "urn:uuid:6a8f3c52-0000-4000-8000-000000000001",
                "resource": {
                    "resourceType": "ServiceRequest",
                    "status": "active" if task_status != "draft" else "draft",
                    "intent": "order",
                    "basedOn": based_on,
                    "code": {"text": "Social support"},
                    "subject": ref("Patient/p"),
                    "requester": ref("PractitionerRole/mw-role"),
                    "performer": [ref("HealthcareService/cpas-service")],
                },
                "request": {"method": "POST", "url": "ServiceRequest"},
            },
            {
                "fullUrl": "urn:uuid:6a8f3c52-0000-4000-8000-000000000002",
                "resource": {
                    "resourceType": "Task",
                    "status": "requested" if task_status != "draft" else "draft",
                    "intent": "order",
                    "basedOn": based_on,
                    "focus": ref("urn:uuid:6a8f3c52-0000-4000-8000-000000000001"),
                    "for": ref("Patient/p"),
                    "requester": ref("PractitionerRole/mw-role"),
                    "owner": ref("HealthcareService/cpas-service"),
                },
                "request": {"method": "POST", "url": "Task"},
            },
        ],
    }
    sent = await world.request("POST", "", "mw", json=bundle)
    assert sent.status_code == 200, sent.text
    sr_id, task_id = (e["response"]["location"].split("/")[-3] for e in sent.json()["entry"])
    if task_status in ("accepted", "in-progress"):
        assert (await world.move(task_id, "accepted", "sw2")).status_code == 200
    if task_status == "in-progress":
        assert (await world.move(task_id, "in-progress", "sw2")).status_code == 200
    current = (await world.get(f"/CarePlan/{plan_id}", who)).json()
    current["activity"] = [
        {"reference": ref(f"ServiceRequest/{sr_id}")},  # the request first: order must not matter
        {"reference": ref(f"Task/{task_id}")},
    ]
    updated = await world.request("PUT", f"/CarePlan/{plan_id}", who, json=current)
    assert updated.status_code == 200, updated.text
    return plan_id, sr_id, task_id


async def revoke(world: World, plan_id: str, who: str = "mw") -> Any:
    plan = (await world.get(f"/CarePlan/{plan_id}", who)).json()
    plan["status"] = "revoked"
    return await world.request("PUT", f"/CarePlan/{plan_id}", who, json=plan)


async def test_revoking_a_plan_cancels_its_open_referral_with_a_reason(world: World) -> None:
    plan_id, sr_id, task_id = await plan_with_referral(world)
    response = await revoke(world, plan_id)
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "revoked"
    task = await world.task(task_id)
    assert task["status"] == "cancelled"
    assert task["statusReason"]["text"] == "care plan revoked"
    assert task["statusReason"]["coding"] == [
        {"system": REQUEST_STATUS, "code": "revoked", "display": "Revoked"}
    ]
    request = (await world.get(f"/ServiceRequest/{sr_id}", "mw")).json()
    assert request["status"] == "revoked"  # it follows its Task
    # the receiving organisation sees a closed referral: the record, still nothing of hers
    assert (await world.get(f"/Task/{task_id}", "sw")).json()["status"] == "cancelled"
    assert (await world.get("/Patient/p", "sw")).status_code == 404
    # the cancellation is a move of the referral like any other: it is in the Task's history
    history = (await world.get(f"/Task/{task_id}/_history", "mw")).json()
    assert [e["resource"]["status"] for e in history["entry"]] == ["cancelled", "requested"]


async def test_a_draft_referral_is_cancelled_with_the_plan(world: World) -> None:
    plan_id, sr_id, task_id = await plan_with_referral(world, "draft")
    response = await revoke(world, plan_id)
    assert response.status_code == 200, response.text
    assert (await world.task(task_id))["status"] == "cancelled"
    assert (await world.get(f"/ServiceRequest/{sr_id}", "mw")).json()["status"] == "revoked"


async def test_a_referral_under_way_is_left_to_its_workflow(world: World) -> None:
    for status in ("accepted", "in-progress"):
        plan_id, sr_id, task_id = await plan_with_referral(world, status)
        response = await revoke(world, plan_id)
        assert response.status_code == 200, response.text
        assert (await world.task(task_id))["status"] == status
        assert (await world.get(f"/ServiceRequest/{sr_id}", "mw")).json()["status"] == "active"
        # the receiving organisation still has what the accepted referral shares
        assert (await world.get("/Patient/p", "sw2")).status_code == 200


async def test_another_organisation_revoking_the_plan_leaves_the_referral(world: World) -> None:
    """The woman's GP (Role A, in her care team, another organisation) revokes the plan: the
    plan is revoked, but only the referrer's side cancels a referral (403 for her directly)."""
    plan_id, sr_id, task_id = await plan_with_referral(world)
    direct = await world.move(task_id, "cancelled", "gp", reason="not needed")
    assert direct.status_code == 403, direct.text
    response = await revoke(world, plan_id, who="gp")
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "revoked"
    assert (await world.task(task_id))["status"] == "requested"
    assert (await world.get(f"/ServiceRequest/{sr_id}", "mw")).json()["status"] == "active"
