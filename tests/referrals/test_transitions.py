"""Every allowed and forbidden transition of a referral Task, by the right and the wrong party.

The expected state machine is written out here (from the issue and standards.md 5.3), not read
from mappings/referral-workflow.json, and the table is checked against it: the programme may
change the table, and then this test says what changed.
"""

from __future__ import annotations

import pytest

from fhir_server.referrals.rules import workflow
from tests.referrals.world import World

STATUSES = (
    "draft",
    "requested",
    "received",
    "accepted",
    "rejected",
    "cancelled",
    "in-progress",
    "on-hold",
    "completed",
    "failed",
    "entered-in-error",
)
REQ, OWN = "requester", "owner"
# from -> to -> who may make the move
EXPECTED = {
    "draft": {"requested": REQ, "cancelled": REQ, "entered-in-error": REQ},
    "requested": {
        "received": OWN,
        "accepted": OWN,
        "rejected": OWN,
        "cancelled": REQ,
        "entered-in-error": REQ,
    },
    "received": {"accepted": OWN, "rejected": OWN, "cancelled": REQ, "entered-in-error": REQ},
    "accepted": {"in-progress": OWN, "failed": OWN, "cancelled": REQ, "entered-in-error": REQ},
    "in-progress": {
        "on-hold": OWN,
        "completed": OWN,
        "failed": OWN,
        "cancelled": REQ,
        "entered-in-error": REQ,
    },
    "on-hold": {"in-progress": OWN, "failed": OWN, "cancelled": REQ, "entered-in-error": REQ},
    "completed": {"entered-in-error": REQ},
    "failed": {"entered-in-error": REQ},
    "rejected": {"entered-in-error": REQ},
    "cancelled": {"entered-in-error": REQ},
    "entered-in-error": {},
}
PATHS = {  # how a referral reaches each status: (status, party) steps after "requested"
    "draft": [],
    "requested": [],
    "received": [("received", "sw")],
    "accepted": [("accepted", "sw")],
    "rejected": [("rejected", "sw")],
    "cancelled": [("cancelled", "mw")],
    "entered-in-error": [("entered-in-error", "mw")],
    "in-progress": [("accepted", "sw"), ("in-progress", "sw")],
    "on-hold": [("accepted", "sw"), ("in-progress", "sw"), ("on-hold", "sw")],
    "completed": [("accepted", "sw"), ("in-progress", "sw"), ("completed", "sw")],
    "failed": [("accepted", "sw"), ("failed", "sw")],
}
PARTY = {REQ: "mw", OWN: "sw"}  # the referrer (Role A, hosp) and the receiver (Role B, cpas)
# the statuses in which the receiving organisation may write the Task at all (its access tier)
OWNER_WRITES = {"requested", "received", "accepted", "in-progress", "on-hold"}
REASONS = {"rejected", "cancelled", "on-hold", "failed"}
REQUEST_STATUS = {
    "draft": "draft",
    "requested": "active",
    "received": "active",
    "accepted": "active",
    "in-progress": "active",
    "on-hold": "on-hold",
    "completed": "completed",
    "failed": "revoked",
    "rejected": "revoked",
    "cancelled": "revoked",
    "entered-in-error": "entered-in-error",
}


def test_the_table_is_the_expected_state_machine() -> None:
    rules = workflow()
    assert set(rules.transitions) == set(STATUSES)
    for old in STATUSES:
        table = {new: roles for new, roles in rules.transitions[old].items()}
        assert {new: set(roles) for new, roles in table.items()} == {
            new: {who} for new, who in EXPECTED[old].items()
        }, old
    assert set(rules.create) == {"draft", "requested"}
    assert rules.final == {"completed", "failed", "rejected", "cancelled", "entered-in-error"}
    assert rules.request_status == REQUEST_STATUS


async def at(world: World, status: str) -> tuple[str, str]:
    sr, task = await world.refer(status="draft" if status == "draft" else "requested")
    for step, who in PATHS[status]:
        response = await world.move(
            task,
            step,
            who,
            reason="because" if step in REASONS else None,
            outcome="realised" if step == "completed" else None,
        )
        assert response.status_code == 200, (status, step, response.text)
    return sr, task


def expected(party: str, old: str, new: str) -> int:
    if party == "sw" and old not in OWNER_WRITES:
        return 403  # the receiving organisation cannot write this Task (draft, final states)
    allowed = EXPECTED[old].get(new)
    if allowed is None:
        return 409
    return 200 if PARTY[allowed] == party else 403


async def attempt(world: World, task: str, new: str, who: str) -> int:
    response = await world.move(
        task,
        new,
        who,
        reason="because" if new in REASONS else None,
        outcome="realised" if new == "completed" else None,
    )
    if response.status_code == 409:
        # the answer names the statuses allowed next
        text = response.json()["issue"][0]["diagnostics"]
        assert "allowed next statuses" in text, text
    return response.status_code


@pytest.mark.parametrize("old", STATUSES)
async def test_every_transition_from(world: World, old: str) -> None:
    sr, task = await at(world, old)
    before = await world.task(task)
    failures = []
    for new in STATUSES:
        if new == old:
            continue
        # the refused attempts first, on one Task: they must change nothing
        for party in ("sw", "mw", "gp"):
            want = (
                expected(party, old, new)
                if party != "gp"
                else (409 if EXPECTED[old].get(new) is None else 403)
            )
            if want == 200:
                continue
            got = await attempt(world, task, new, party)
            if got != want:
                failures.append(f"{old}->{new} by {party}: {got}, expected {want}")
    after = await world.task(task)
    assert after["meta"]["versionId"] == before["meta"]["versionId"], "a refusal wrote something"
    # then each allowed move by its party, on a fresh Task in the same status
    for new, who in EXPECTED[old].items():
        sr, fresh = await at(world, old)
        got = await attempt(world, fresh, new, PARTY[who])
        if got != 200:
            failures.append(f"{old}->{new} by {PARTY[who]}: {got}, expected 200")
            continue
        assert (await world.task(fresh))["status"] == new
        request = (await world.get(f"/ServiceRequest/{sr}", "mw")).json()
        assert request["status"] == REQUEST_STATUS[new], (old, new)
    assert not failures, failures


async def test_a_final_state_no_longer_changes_even_without_a_new_status(world: World) -> None:
    _, task = await at(world, "completed")
    body = await world.task(task)
    body.pop("meta")
    body["note"] = [{"text": "an afterthought"}]
    response = await world.request("PUT", f"/Task/{task}", "mw", json=body)
    assert response.status_code == 409
    assert "no longer changes" in response.json()["issue"][0]["diagnostics"]


async def test_a_task_cannot_be_created_past_requested(world: World) -> None:
    for status in STATUSES:
        if status in ("draft", "requested"):
            continue
        before = (await world.get("/Task?_summary=count", "mw")).json()["total"]
        response = await world.request(
            "POST",
            "",
            "mw",
            json={
                "resourceType": "Bundle",
                "type": "transaction",
                "entry": [
                    {
                        "resource": {
                            "resourceType": "Task",
                            "status": status,
                            "intent": "order",
                            "focus": {"reference": "ServiceRequest/none"},
                            "for": {"reference": "Patient/p"},
                            "requester": {"reference": "PractitionerRole/mw-role"},
                            "owner": {"reference": "Organization/cpas"},
                            "statusReason": {"text": "x"},
                        },
                        "request": {"method": "POST", "url": "Task"},
                    }
                ],
            },
        )
        assert response.status_code == 409, (status, response.text)
        assert "created as draft, requested" in response.text
        assert (await world.get("/Task?_summary=count", "mw")).json()["total"] == before
