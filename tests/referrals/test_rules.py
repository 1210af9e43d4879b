"""The referral rules beyond the transitions: reasons, outcomes, what never changes, the
ServiceRequest following its Task, forged requesters, deletes, every write path."""

from __future__ import annotations

import json
from typing import Any

from tests.referrals.world import FULFILL, OUTCOME, World, ref


def diagnostics(response: Any) -> str:
    return response.json()["issue"][0]["diagnostics"]


async def test_status_reason_is_required_where_the_table_says(world: World) -> None:
    _, task = await world.refer()
    response = await world.move(task, "rejected", "sw")
    assert response.status_code == 422
    assert "statusReason" in diagnostics(response)
    assert (await world.task(task))["status"] == "requested"
    assert (await world.move(task, "rejected", "sw", reason="no capacity")).status_code == 200
    _, task = await world.refer()
    assert (await world.move(task, "cancelled", "mw")).status_code == 422
    assert (await world.move(task, "accepted", "sw")).status_code == 200
    assert (await world.move(task, "failed", "sw")).status_code == 422
    assert (await world.move(task, "in-progress", "sw")).status_code == 200
    assert (await world.move(task, "on-hold", "sw")).status_code == 422
    assert (await world.move(task, "on-hold", "sw", reason="admitted")).status_code == 200


async def test_a_completed_referral_carries_its_outcome(world: World) -> None:
    _, task = await world.refer()
    await world.move(task, "accepted", "sw")
    await world.move(task, "in-progress", "sw")
    missing = await world.move(task, "completed", "sw")
    assert missing.status_code == 422
    assert "realised" in diagnostics(missing) and "waiting-list" in diagnostics(missing)
    bad = await world.move(task, "completed", "sw", outcome="maybe")
    assert bad.status_code == 422
    done = await world.move(task, "completed", "sw", outcome="waiting-list")
    assert done.status_code == 200, done.text
    body = done.json()
    # the outcome is copied to businessStatus, so it can be searched (business-status)
    assert body["businessStatus"]["coding"][0] == {"system": OUTCOME, "code": "waiting-list"}
    assert body["lastModified"]
    found = await world.get(f"/Task?business-status={OUTCOME}|waiting-list", "mw")
    assert [e["resource"]["id"] for e in found.json()["entry"]] == [task]


async def test_an_outcome_that_contradicts_business_status_is_refused(world: World) -> None:
    _, task = await world.refer()
    await world.move(task, "accepted", "sw")
    await world.move(task, "in-progress", "sw")
    body = await world.task(task)
    body.pop("meta")
    body["status"] = "completed"
    body["businessStatus"] = {"coding": [{"system": OUTCOME, "code": "not-realised"}]}
    body["output"] = [
        {
            "type": {"text": "outcome"},
            "valueCodeableConcept": {"coding": [{"system": OUTCOME, "code": "realised"}]},
        }
    ]
    response = await world.request("PUT", f"/Task/{task}", "sw", json=body)
    assert response.status_code == 422


async def test_what_never_changes(world: World) -> None:
    _, task = await world.refer()
    for element, value in (
        ("for", ref("Patient/q")),
        ("focus", ref("ServiceRequest/other")),
        ("requester", ref("Organization/hosp")),
        ("intent", "plan"),
    ):
        body = await world.task(task)
        body.pop("meta")
        body[element] = value
        response = await world.request("PUT", f"/Task/{task}", "mw", json=body)
        assert response.status_code == 422, (element, response.text)
        assert f"Task.{element}" in diagnostics(response)


async def test_the_referrer_may_redirect_a_referral_until_it_is_accepted(world: World) -> None:
    _, task = await world.refer()
    body = await world.task(task)
    body.pop("meta")
    body["owner"] = ref("Organization/other")
    by_owner = await world.request("PUT", f"/Task/{task}", "sw", json=body)
    assert by_owner.status_code == 403
    assert (await world.request("PUT", f"/Task/{task}", "mw", json=body)).status_code == 200
    body["owner"] = ref("HealthcareService/cpas-service")
    assert (await world.request("PUT", f"/Task/{task}", "mw", json=body)).status_code == 200
    await world.move(task, "accepted", "sw")
    body = await world.task(task)
    body.pop("meta")
    body["owner"] = ref("Organization/other")
    late = await world.request("PUT", f"/Task/{task}", "mw", json=body)
    assert late.status_code == 409
    assert "owner" in diagnostics(late)


async def test_a_forged_requester_is_refused(world: World) -> None:
    """Nobody sends a referral in someone else's name: the GP (who may write the woman's record)
    cannot send one as the midwife's role or the hospital."""
    sr = {
        "resourceType": "ServiceRequest",
        "status": "active",
        "intent": "order",
        "subject": ref("Patient/p"),
        "requester": ref("Practitioner/gp"),
        "performer": [ref("Organization/cpas")],
    }
    created = await world.request("POST", "/ServiceRequest", "gp", json=sr)
    assert created.status_code == 201
    sr_id = created.json()["id"]
    for forged in ("PractitionerRole/mw-role", "Organization/hosp", "Practitioner/mw"):
        task = {
            "resourceType": "Task",
            "status": "requested",
            "intent": "order",
            "code": FULFILL,
            "focus": ref(f"ServiceRequest/{sr_id}"),
            "for": ref("Patient/p"),
            "requester": ref(forged),
            "owner": ref("Organization/cpas"),
        }
        response = await world.request("POST", "/Task", "gp", json=task)
        assert response.status_code == 403, (forged, response.text)
        assert "requester" in diagnostics(response)
    task["requester"] = ref("Practitioner/gp")
    assert (await world.request("POST", "/Task", "gp", json=task)).status_code == 201


async def test_the_task_is_about_its_request(world: World) -> None:
    sr, _ = await world.refer()
    task = {
        "resourceType": "Task",
        "status": "requested",
        "intent": "order",
        "focus": ref(f"ServiceRequest/{sr}"),
        "for": ref("Patient/q"),
        "requester": ref("PractitionerRole/mw-role"),
        "owner": ref("Organization/cpas"),
    }
    response = await world.request("POST", "/Task", "mw", json=task)
    assert response.status_code == 422 and "Task.for" in diagnostics(response)
    task["for"] = ref("Patient/p")
    task["requester"] = ref("Practitioner/mw")  # the midwife herself: same side as her role
    assert (await world.request("POST", "/Task", "mw", json=task)).status_code == 201
    task["focus"] = ref("ServiceRequest/does-not-exist")
    missing = await world.request("POST", "/Task", "mw", json=task)
    assert missing.status_code == 422 and "does not exist" in diagnostics(missing)
    task["focus"] = ref(f"ServiceRequest/{sr}")
    task.pop("owner")
    ownerless = await world.request("POST", "/Task", "mw", json=task)
    assert ownerless.status_code == 422 and "owner" in diagnostics(ownerless)


async def test_the_service_request_follows_its_task_and_its_referrer(world: World) -> None:
    sr, task = await world.refer()
    request = (await world.get(f"/ServiceRequest/{sr}", "mw")).json()
    assert request["status"] == "active"
    request.pop("meta")
    # the receiving organisation does not change the referrer's request (COW)
    request["note"] = [{"text": "we changed your request"}]
    assert (
        await world.request("PUT", f"/ServiceRequest/{sr}", "sw2", json=request)
    ).status_code in (403,)
    # the referrer may, but its status follows the Task
    request["status"] = "completed"
    wrong = await world.request("PUT", f"/ServiceRequest/{sr}", "mw", json=request)
    assert wrong.status_code == 409 and "follows its Task" in diagnostics(wrong)
    request["status"] = "active"
    assert (
        await world.request("PUT", f"/ServiceRequest/{sr}", "mw", json=request)
    ).status_code == 200
    assert (await world.request("DELETE", f"/ServiceRequest/{sr}", "mw")).status_code == 409
    await world.move(task, "accepted", "sw")
    await world.move(task, "in-progress", "sw")
    await world.move(task, "on-hold", "sw", reason="admitted")
    assert (await world.get(f"/ServiceRequest/{sr}", "mw")).json()["status"] == "on-hold"


async def test_deletes(world: World) -> None:
    _, sent = await world.refer()
    response = await world.request("DELETE", f"/Task/{sent}", "mw")
    assert response.status_code == 409
    assert (await world.task(sent))["status"] == "requested"
    _, draft = await world.refer(status="draft")
    assert (await world.request("DELETE", f"/Task/{draft}", "gp")).status_code == 403
    assert (await world.request("DELETE", f"/Task/{draft}", "mw")).status_code == 204


async def test_every_write_path_and_whatever_profile_is_claimed(world: World) -> None:
    _, task = await world.refer()
    # JSON Patch that skips states
    patch = [{"op": "replace", "path": "/status", "value": "completed"}]
    response = await world.request(
        "PATCH",
        f"/Task/{task}",
        "sw",
        content=json.dumps(patch),
        headers={"Content-Type": "application/json-patch+json"},
    )
    assert response.status_code == 409
    # a conditional update, a transaction entry, a batch entry: the same rules (and the Task
    # claims no profile at all: the workflow does not depend on one)
    body = await world.task(task)
    body.pop("meta")
    body["status"] = "in-progress"
    conditional = await world.request("PUT", f"/Task?_id={task}", "sw", json=body)
    assert conditional.status_code == 409
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [{"resource": body, "request": {"method": "PUT", "url": f"Task/{task}"}}],
    }
    assert (await world.request("POST", "", "sw", json=bundle)).status_code == 409
    batch = dict(bundle, type="batch")
    answer = await world.request("POST", "", "sw", json=batch)
    assert answer.json()["entry"][0]["response"]["status"].startswith("409")
    assert (await world.task(task))["status"] == "requested"


async def test_a_task_that_is_no_referral_is_left_alone(world: World) -> None:
    """Screening alerts and pathway to-dos are Tasks too, with other foci."""
    task = {
        "resourceType": "Task",
        "status": "requested",
        "intent": "order",
        "focus": ref("Observation/obs-shared"),
        "for": ref("Patient/p"),
        "owner": ref("Practitioner/mw"),
    }
    created = await world.request("POST", "/Task", "mw", json=task)
    assert created.status_code == 201
    body = created.json()
    body["status"] = "completed"
    assert (await world.request("PUT", f"/Task/{body['id']}", "mw", json=body)).status_code == 200


async def test_a_backend_client_moves_a_referral_but_cannot_skip_states(world: World) -> None:
    """A backend client (no organisation in its token) is a registered integration: it may act
    for either party, within the state machine and its rules."""
    _, task = await world.refer()
    assert (await world.move(task, "completed", "backend", outcome="realised")).status_code == 409
    assert (await world.move(task, "accepted", "backend")).status_code == 200
    assert (await world.move(task, "failed", "backend")).status_code == 422
    assert (await world.move(task, "failed", "backend", reason="unreachable")).status_code == 200
