"""Access follows the referral: what it shares with the receiving organisation, no more.

The receiving organisation (cpas, through its HealthcareService as owner) has no care
relationship with the woman: before it answers it sees the request, the Task and the thread;
once it accepts, also her Patient resource and the request's supportingInfo (obs-shared, and the
labelled obs-dep for Role A only), never the rest of her record (obs-private); when the referral
is cancelled or closed, the shared data is gone again and only the record of the referral stays.
"""

from __future__ import annotations

from typing import Any

from tests.referrals.world import FULFILL, World, ref, transaction


def ids(response: Any) -> set[str]:
    assert response.status_code == 200, response.text
    return {
        e["resource"]["id"]
        for e in response.json().get("entry", ())
        if e.get("search", {}).get("mode") != "outcome"
    }


async def thread_message(world: World, sr: str, task: str, who: str, sender: str, to: str) -> Any:
    message = {
        "resourceType": "Communication",
        "status": "completed",
        "basedOn": [ref(f"ServiceRequest/{sr}")],
        "about": [ref(f"Task/{task}")],
        "subject": ref("Patient/p"),
        "sent": "2026-11-02T10:00:00Z",
        "sender": ref(sender),
        "recipient": [ref(to)],
        "payload": [{"contentString": "handover note"}],
    }
    return await world.request("POST", "/Communication", who, json=message)


async def status(world: World, path: str, who: str) -> int:
    return (await world.get(path, who)).status_code


async def test_access_is_granted_on_accept_and_removed_on_cancel(any_store_world: World) -> None:
    world = any_store_world
    sr, task = await world.refer()
    note = await thread_message(world, sr, task, "mw", "Practitioner/mw", "Organization/cpas")
    assert note.status_code == 201
    note_id = note.json()["id"]
    # offered: the request, the Task and the thread; not the woman, not what is shared
    for who in ("sw", "sw2"):
        assert await status(world, f"/Task/{task}", who) == 200
        assert await status(world, f"/ServiceRequest/{sr}", who) == 200
        assert await status(world, f"/Communication/{note_id}", who) == 200
        assert await status(world, "/Patient/p", who) == 404
        assert await status(world, "/Observation/obs-shared", who) == 404
        assert "p" not in ids(await world.get("/Patient", who))
    # accepted: her Patient resource and the request's supportingInfo, no more
    assert (await world.move(task, "accepted", "sw")).status_code == 200
    assert await status(world, "/Patient/p", "sw") == 200
    assert await status(world, "/Observation/obs-shared", "sw") == 200
    assert await status(world, "/Observation/obs-dep", "sw") == 404  # labelled: Role B never
    assert await status(world, "/Observation/obs-dep", "sw2") == 200  # Role A: shared
    for who in ("sw", "sw2"):
        assert await status(world, "/Observation/obs-private", who) == 404
        assert await status(world, "/Observation/obs-private/_history", who) == 404
        assert await status(world, "/Patient/q", who) == 404
    assert ids(await world.get("/Observation?subject=Patient/p", "sw")) == {"obs-shared"}
    assert ids(await world.get("/Observation?subject=Patient/p", "sw2")) == {
        "obs-shared",
        "obs-dep",
    }
    assert ids(await world.get("/Patient/p/Observation", "sw2")) == {"obs-shared", "obs-dep"}
    assert ids(await world.get("/Patient", "sw")) == {"p"}
    assert ids(await world.get("/Observation?_id=obs-private", "sw2")) == set()
    assert ids(await world.get("/CareTeam?subject=Patient/p", "sw2")) == set()
    # the woman's GP and the referrer see everything as before
    assert ids(await world.get("/Observation?subject=Patient/p", "gp")) == {
        "obs-shared",
        "obs-private",
        "obs-dep",
    }
    # cancelled by the referrer: the shared data is gone; the record of the referral stays
    assert (await world.move(task, "cancelled", "mw", reason="family moved")).status_code == 200
    for who in ("sw", "sw2"):
        assert await status(world, "/Patient/p", who) == 404
        assert await status(world, "/Observation/obs-shared", who) == 404
        assert await status(world, f"/Task/{task}", who) == 200
        assert await status(world, f"/Communication/{note_id}", who) == 200
        assert ids(await world.get("/Observation?subject=Patient/p", who)) == set()
    # and nothing of it can be written any more by the receiving side
    assert (await world.move(task, "entered-in-error", "sw2")).status_code == 403


async def test_a_professional_of_another_organisation_sees_nothing(world: World) -> None:
    sr, task = await world.refer()
    for step, who in (("accepted", "sw"), ("in-progress", "sw")):
        for path in (
            f"/Task/{task}",
            f"/ServiceRequest/{sr}",
            "/Patient/p",
            "/Observation/obs-shared",
        ):
            assert await status(world, path, "nobody") == 404, (step, path)
        assert ids(await world.get("/Task", "nobody")) == set()
        assert (await world.move(task, step, who)).status_code == 200
    # nor may she answer it
    body = (await world.get(f"/Task/{task}", "mw")).json()
    body["status"] = "on-hold"
    body["statusReason"] = {"text": "x"}
    assert (await world.request("PUT", f"/Task/{task}", "nobody", json=body)).status_code == 403


async def test_what_the_receiving_organisation_may_write(world: World) -> None:
    sr, task = await world.refer()
    await world.move(task, "accepted", "sw")
    # not her record
    observation = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "note"},
        "subject": ref("Patient/p"),
    }
    assert (await world.request("POST", "/Observation", "sw2", json=observation)).status_code == 403
    patient = (await world.get("/Patient/p", "sw2")).json()
    patient["gender"] = "female"
    assert (await world.request("PUT", "/Patient/p", "sw2", json=patient)).status_code == 403
    # a message in the thread of the referral, yes; a message about her outside it, no
    reply = await thread_message(
        world, sr, task, "sw", "Practitioner/sw", "PractitionerRole/mw-role"
    )
    assert reply.status_code == 201, reply.text
    assert await status(world, f"/Communication/{reply.json()['id']}", "mw") == 200
    loose = {
        "resourceType": "Communication",
        "status": "completed",
        "subject": ref("Patient/p"),
        "payload": [{"contentString": "about her, outside any referral"}],
    }
    assert (await world.request("POST", "/Communication", "sw", json=loose)).status_code == 403
    # a back-referral (a ServiceRequest that refers to this one) with its Task, in one transaction
    back = {
        "resourceType": "ServiceRequest",
        "fullUrl": "urn:uuid:7b1b9a7e-0000-4000-8000-0000000000b1",
        "status": "active",
        "intent": "order",
        "basedOn": [ref(f"ServiceRequest/{sr}")],
        "subject": ref("Patient/p"),
        "requester": ref("Organization/cpas"),
        "performer": [ref("Organization/hosp")],
    }
    back_task = {
        "resourceType": "Task",
        "fullUrl": "urn:uuid:7b1b9a7e-0000-4000-8000-0000000000b2",
        "status": "requested",
        "intent": "order",
        "code": FULFILL,
        "focus": ref("urn:uuid:7b1b9a7e-0000-4000-8000-0000000000b1"),
        "for": ref("Patient/p"),
        "requester": ref("Organization/cpas"),
        "owner": ref("Organization/hosp"),
    }
    sent = await world.request("POST", "", "sw2", json=transaction([back, back_task], "POST"))
    assert sent.status_code == 200, sent.text
    back_task_id = sent.json()["entry"][1]["response"]["location"].split("/")[-3]
    # the referrer's side receives it (it has her record) and accepts it; the sender follows it
    assert (await world.move(back_task_id, "accepted", "mw")).status_code == 200
    assert (await world.get(f"/Task/{back_task_id}", "sw")).json()["status"] == "accepted"
    # a ServiceRequest about her that refers to no referral shared with cpas: refused
    unrelated = dict(back, basedOn=[ref("ServiceRequest/elsewhere")])
    unrelated.pop("fullUrl", None)
    assert (
        await world.request("POST", "/ServiceRequest", "sw2", json=unrelated)
    ).status_code == 403


async def test_a_consent_that_denies_the_organisation_wins(world: World) -> None:
    sr, task = await world.refer()
    await world.move(task, "accepted", "sw")
    assert await status(world, "/Patient/p", "sw2") == 200
    consent = {
        "resourceType": "Consent",
        "status": "active",
        "scope": {"text": "privacy"},
        "category": [{"text": "privacy"}],
        "patient": ref("Patient/p"),
        "policyRule": {"text": "opt-in"},
        "provision": {
            "type": "permit",
            "provision": [
                {
                    "type": "deny",
                    "actor": [{"role": {"text": "x"}, "reference": ref("Organization/cpas")}],
                }
            ],
        },
    }
    assert (await world.request("POST", "/Consent", "mw", json=consent)).status_code == 201
    for path in ("/Patient/p", f"/Task/{task}", f"/ServiceRequest/{sr}", "/Observation/obs-shared"):
        assert await status(world, path, "sw2") == 404, path


async def test_a_finished_referral_keeps_its_record_not_the_shared_data(world: World) -> None:
    sr, task = await world.refer()
    await world.move(task, "accepted", "sw")
    await world.move(task, "in-progress", "sw")
    done = await world.move(task, "completed", "sw", outcome="realised")
    assert done.status_code == 200
    assert await status(world, "/Patient/p", "sw") == 404
    assert await status(world, "/Observation/obs-shared", "sw") == 404
    assert await status(world, f"/Task/{task}", "sw") == 200
    assert await status(world, f"/ServiceRequest/{sr}", "sw") == 200
