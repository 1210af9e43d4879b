"""Notifications to a real HTTP receiver, on the secure server in this process (both stores):
the closed loop, payloads, retries, errors and recovery, access re-checked, heartbeat."""

from __future__ import annotations

import asyncio

from tests.referrals.world import OUTCOME, World, ref
from tests.subscriptions.conftest import TOPIC, subscribe, subscription, wait_for
from tests.subscriptions.receiver import Receiver


async def test_the_closed_loop_is_notified_to_each_party(
    any_store_world: World, receiver: Receiver
) -> None:
    world = any_store_world
    cpas = await subscribe(
        world, "sw", subscription(TOPIC + "referral-new", receiver.url("/cpas"), "full-resource")
    )
    hosp = await subscribe(
        world, "mw", subscription(TOPIC + "referral-status", receiver.url("/hosp"), "id-only")
    )
    gp = await subscribe(world, "gp", subscription(TOPIC + "referral-new", receiver.url("/gp")))
    nobody = await subscribe(
        world, "nobody", subscription(TOPIC + "referral-status", receiver.url("/nobody"))
    )
    assert {r.kind for r in receiver.received} == {"handshake"}
    # a new referral for cpas (its service is the owner): cpas is notified, with the Task
    _, task = await world.refer()
    first = await wait_for(lambda: [r for r in receiver.on("/cpas") if r.kind != "handshake"])
    event = first[0]
    assert event.headers["Content-Type"] == "application/fhir+json"
    assert event.numbers == [1]
    assert event.parameters["subscription"]["reference"].endswith(f"/Subscription/{cpas}")
    assert event.parameters["topic"] == TOPIC + "referral-new"
    resources = [e.get("resource") for e in event.bundle["entry"][1:]]
    assert {"resourceType": "Task", "id": task}.items() <= resources[0].items()
    assert resources[0]["status"] == "requested"
    # cpas accepts: the referrer is notified (id-only: a reference, no content)
    assert (await world.move(task, "accepted", "sw")).status_code == 200
    accepted = await wait_for(lambda: [r for r in receiver.on("/hosp") if r.kind != "handshake"])
    entry = accepted[0].bundle["entry"][1]
    assert entry["fullUrl"].endswith(f"/Task/{task}") and "resource" not in entry
    assert accepted[0].numbers == [1]
    # cpas completes with the outcome: the referrer learns whether the guidance was realised
    assert (await world.move(task, "in-progress", "sw")).status_code == 200
    done = await world.move(task, "completed", "sw", outcome="realised")
    assert done.status_code == 200
    hosp_events = await wait_for(
        lambda: (
            3 in [n for r in receiver.acknowledged("/hosp") for n in r.numbers]
            and [r for r in receiver.acknowledged("/hosp") if r.kind != "handshake"]
        )
    )
    assert [n for r in hosp_events for n in r.numbers] == [1, 2, 3]
    task_now = (await world.get(f"/Task/{task}", "mw")).json()
    assert task_now["businessStatus"]["coding"][0] == {"system": OUTCOME, "code": "realised"}
    # nobody else was told: the GP (her care team, no party) and another organisation
    await asyncio.sleep(0.3)
    assert [r.kind for r in receiver.on("/gp")] == ["handshake"]
    assert [r.kind for r in receiver.on("/nobody")] == ["handshake"]
    status = (await world.get(f"/Subscription/{hosp}/$status", "mw")).json()
    params = {p["name"]: p for p in status["entry"][0]["resource"]["parameter"]}
    assert params["status"]["valueCode"] == "active"
    assert params["events-since-subscription-start"]["valueString"] == "3"
    assert gp and nobody


async def test_payloads_of_classic_subscriptions(world: World, receiver: Receiver) -> None:
    """R4 criteria as a search: no payload is an empty POST; with a payload, a notification
    Bundle (id-only unless the content extension says otherwise)."""
    await subscribe(
        world,
        "mw",
        subscription("Task?status=accepted", receiver.url("/none"), content=None, payload=None),
    )
    await subscribe(
        world, "mw", subscription("Task?status=accepted", receiver.url("/full"), "full-resource")
    )
    _, task = await world.refer()
    await world.move(task, "accepted", "sw")
    none = await wait_for(lambda: receiver.on("/none")[1:])
    assert none[0].body == b"" and "Content-Type" not in none[0].headers
    full = await wait_for(lambda: [r for r in receiver.on("/full") if r.kind != "handshake"])
    assert full[0].bundle["entry"][1]["resource"]["status"] == "accepted"


async def test_retries_then_recovery_and_error_then_reactivation(
    tmp_path, receiver: Receiver
) -> None:
    world = await World(tmp_path, subscription_max_failures=3).start()
    try:
        sid = await subscribe(
            world, "sw", subscription(TOPIC + "referral-new", receiver.url("/cpas"))
        )
        # the endpoint fails twice, then recovers: delivered by a retry, still active
        receiver.script[:] = [503, 500]
        _, first = await world.refer()
        delivered = await wait_for(
            lambda: [r for r in receiver.acknowledged("/cpas") if r.kind != "handshake"]
        )
        assert delivered[0].numbers == [1]
        assert [r.status for r in receiver.on("/cpas")][1:] == [503, 500, 200]
        assert (await world.get(f"/Subscription/{sid}", "sw")).json()["status"] == "active"
        # it fails for good: the Subscription turns to error, with the reason
        receiver.default = 500
        for _ in range(2):
            await world.refer()

        async def in_error() -> bool:
            return (await world.get(f"/Subscription/{sid}", "sw")).json()["status"] == "error"

        for _ in range(300):
            if await in_error():
                break
            await asyncio.sleep(0.02)
        resource = (await world.get(f"/Subscription/{sid}", "sw")).json()
        assert resource["status"] == "error"
        assert "HTTP 500" in resource["error"]
        status = (await world.get(f"/Subscription/{sid}/$status", "sw")).json()
        params = {p["name"]: p for p in status["entry"][0]["resource"]["parameter"]}
        assert params["status"]["valueCode"] == "error"
        assert "HTTP 500" in params["error"]["valueCodeableConcept"]["text"]
        assert params["events-since-subscription-start"]["valueString"] == "3"
        # more events while in error are counted, not sent
        await world.refer()
        attempts = len(receiver.on("/cpas"))
        await asyncio.sleep(0.3)
        assert len(receiver.on("/cpas")) == attempts
        # the owner asks again: handshake, then the waiting events, in order, none lost
        receiver.default = 200
        resource.pop("meta", None)
        resource["status"] = "requested"
        again = await world.request("PUT", f"/Subscription/{sid}", "sw", json=resource)
        assert again.status_code == 200, again.text
        numbers = await wait_for(
            lambda: (lambda got: got if got[-1:] == [4] else None)(
                [n for r in receiver.acknowledged("/cpas") for n in r.numbers]
            )
        )
        assert numbers == [1, 2, 3, 4]
        assert (await world.get(f"/Subscription/{sid}", "sw")).json()["status"] == "active"
        assert first
    finally:
        await world.stop()


async def test_a_subscriber_that_lost_access_gets_nothing(world: World, receiver: Receiver) -> None:
    """The GP follows the CarePlans of her patient; once she is out of the care team, changes
    are no event of hers; one that was waiting goes out without its content."""
    sid = await subscribe(
        world, "gp", subscription(TOPIC + "careplan-change", receiver.url("/gp"), "full-resource")
    )
    plan = {
        "resourceType": "CarePlan",
        "status": "draft",
        "intent": "plan",
        "subject": ref("Patient/p"),
    }
    created = await world.request("POST", "/CarePlan", "mw", json=plan)
    assert created.status_code == 201
    first = await wait_for(lambda: [r for r in receiver.on("/gp") if r.kind != "handshake"])
    assert first[0].bundle["entry"][1]["resource"]["resourceType"] == "CarePlan"
    # her endpoint is down while one more change happens...
    receiver.default = 503
    changed = created.json()
    changed["status"] = "active"
    assert (
        await world.request("PUT", f"/CarePlan/{changed['id']}", "mw", json=changed)
    ).status_code == 200
    await wait_for(lambda: [r for r in receiver.on("/gp") if r.status == 503])
    # ...and she leaves the care team before it comes back up
    team = (await world.get("/CareTeam/team-p", "mw")).json()
    team["participant"] = [{"member": ref("Organization/hosp")}]
    assert (await world.request("PUT", "/CareTeam/team-p", "mw", json=team)).status_code == 200
    receiver.default = 200
    late = await wait_for(lambda: [r for r in receiver.acknowledged("/gp") if 2 in r.numbers])
    assert len(late[0].bundle["entry"]) == 1  # the status only: no CarePlan
    assert "focus" not in late[0].parameters["events"][0]
    # later changes are no event of hers at all
    changed["status"] = "completed"
    assert (
        await world.request("PUT", f"/CarePlan/{changed['id']}", "mw", json=changed)
    ).status_code == 200
    await asyncio.sleep(0.4)
    assert max(n for r in receiver.on("/gp") for n in r.numbers) == 2
    state = (await world.get(f"/Subscription/{sid}/$status", "gp")).json()
    params = {p["name"]: p for p in state["entry"][0]["resource"]["parameter"]}
    assert params["events-since-subscription-start"]["valueString"] == "2"


async def test_heartbeat(world: World, receiver: Receiver) -> None:
    await subscribe(
        world, "mw", subscription(TOPIC + "referral-status", receiver.url("/beat"), heartbeat=1)
    )
    beats = await wait_for(
        lambda: [r for r in receiver.on("/beat") if r.kind == "heartbeat"], timeout=5
    )
    assert beats[0].parameters["events-since-subscription-start"] == "0"


async def test_several_events_in_one_notification(world: World, receiver: Receiver) -> None:
    receiver.hold()
    await subscribe(
        world,
        "sw",
        subscription(TOPIC + "referral-new", receiver.url("/many"), max_count=10),
        active=False,
    )
    await wait_for(lambda: receiver.on("/many"))
    for _ in range(3):
        await world.refer()
    await asyncio.sleep(0.3)
    receiver.answer()
    numbers = await wait_for(
        lambda: (lambda got: got if got[-1:] == [3] else None)(
            [n for r in receiver.acknowledged("/many") for n in r.numbers]
        )
    )
    assert numbers == [1, 2, 3]
    assert any(len(r.numbers) > 1 for r in receiver.acknowledged("/many"))


async def test_events_operation_and_the_owner_rule(world: World, receiver: Receiver) -> None:
    sid = await subscribe(world, "sw", subscription(TOPIC + "referral-new", receiver.url("/c")))
    _, task = await world.refer()
    await world.refer()
    await wait_for(lambda: [n for r in receiver.acknowledged("/c") for n in r.numbers if n == 2])
    events = await world.get(f"/Subscription/{sid}/$events?eventsSinceNumber=2", "sw")
    assert events.status_code == 200
    params = events.json()["entry"][0]["resource"]["parameter"]
    assert [p["valueCode"] for p in params if p["name"] == "type"] == ["query-event"]
    numbers = [
        part["valueString"]
        for p in params
        if p["name"] == "notification-event"
        for part in p["part"]
        if part["name"] == "event-number"
    ]
    assert numbers == ["2"]
    everything = (await world.get(f"/Subscription/{sid}/$events", "sw")).json()
    assert (
        len(
            [
                p
                for p in everything["entry"][0]["resource"]["parameter"]
                if p["name"] == "notification-event"
            ]
        )
        == 2
    )
    # someone else's Subscription is like a missing one, for every interaction
    for who in ("mw", "sw2"):
        for path in (
            f"/Subscription/{sid}",
            f"/Subscription/{sid}/$status",
            f"/Subscription/{sid}/$events",
        ):
            assert (await world.get(path, who)).status_code == 404, (who, path)
        assert (await world.get("/Subscription", who)).json().get("total", 0) == 0
        mine = (await world.get("/Subscription/$status", who)).json()
        assert mine.get("entry", []) == []
    assert (await world.get("/Subscription", "sw")).json()["total"] == 1
    body = (await world.get(f"/Subscription/{sid}", "sw")).json()
    body["channel"]["endpoint"] = receiver.url("/stolen")
    assert (await world.request("PUT", f"/Subscription/{sid}", "sw2", json=body)).status_code == 403
    assert (await world.request("DELETE", f"/Subscription/{sid}", "mw")).status_code == 204
    assert (await world.get(f"/Subscription/{sid}", "sw")).status_code == 200
    # the administrator sees every Subscription
    assert (await world.get(f"/Subscription/{sid}", "admin")).status_code == 200
    assert task


async def test_safety_alerts_and_thread_messages(world: World, receiver: Receiver) -> None:
    """The screening's safety alert (a Flag, category safety) reaches those who may read the
    woman's record; a message in a referral thread reaches its recipient's party."""
    await subscribe(
        world, "gp", subscription(TOPIC + "safety-alert", receiver.url("/alerts"), "full-resource")
    )
    await subscribe(world, "mw", subscription(TOPIC + "referral-message", receiver.url("/inbox")))

    def flag(patient: str, category: str, status: str = "active") -> dict:
        return {
            "resourceType": "Flag",
            "status": status,
            "category": [
                {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/flag-category",
                            "code": category,
                        }
                    ]
                }
            ],
            "code": {"text": "self-harm thoughts"},
            "subject": ref(f"Patient/{patient}"),
        }

    for body in (flag("p", "admin"), flag("p", "safety", "inactive"), flag("q", "safety")):
        assert (await world.request("POST", "/Flag", "mw", json=body)).status_code == 201
    alert = await world.request("POST", "/Flag", "mw", json=flag("p", "safety"))
    assert alert.status_code == 201
    got = await wait_for(lambda: [r for r in receiver.acknowledged("/alerts") if r.numbers])
    assert got[0].numbers == [1]
    assert got[0].bundle["entry"][1]["resource"]["id"] == alert.json()["id"]
    # the thread: cpas asks the midwife's role a question
    sr, task = await world.refer()
    await world.move(task, "accepted", "sw")
    question = {
        "resourceType": "Communication",
        "status": "completed",
        "basedOn": [ref(f"ServiceRequest/{sr}")],
        "subject": ref("Patient/p"),
        "sender": ref("Practitioner/sw"),
        "recipient": [ref("PractitionerRole/mw-role")],
        "payload": [{"contentString": "Is the due date still 20 December?"}],
    }
    assert (await world.request("POST", "/Communication", "sw", json=question)).status_code == 201
    inbox = await wait_for(lambda: [r for r in receiver.acknowledged("/inbox") if r.numbers])
    assert inbox[0].bundle["entry"][1]["fullUrl"].split("/")[-2] == "Communication"
    await asyncio.sleep(0.3)
    assert [n for r in receiver.acknowledged("/alerts") for n in r.numbers] == [1]
