"""Hostile or broken Subscriptions: refused with an OperationOutcome that says why, and nothing
written."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from tests.referrals.world import World
from tests.subscriptions.conftest import TOPIC, subscription, wait_for
from tests.subscriptions.receiver import Receiver


@pytest.fixture
async def closed(tmp_path: Path) -> Any:
    """A server whose configuration allows no private endpoint at all."""
    world = await World(tmp_path, subscription_allowed_hosts="").start()
    try:
        yield world
    finally:
        await world.stop()


async def refused(world: World, body: dict[str, Any], who: str = "mw") -> str:
    before = (await world.get("/Subscription?_summary=count", "admin")).json()["total"]
    response = await world.request("POST", "/Subscription", who, json=body)
    assert 400 <= response.status_code < 500, response.text
    assert response.json()["resourceType"] == "OperationOutcome"
    assert (await world.get("/Subscription?_summary=count", "admin")).json()["total"] == before
    return response.json()["issue"][0]["diagnostics"]


@pytest.mark.parametrize(
    "endpoint",
    [
        "http://127.0.0.1:9/hook",
        "https://127.0.0.1/hook",
        "https://169.254.169.254/latest/meta-data/iam/security-credentials/",
        "https://[::ffff:169.254.169.254]/x",
        "https://10.20.30.40/hook",
        "https://localhost/hook",
        "http://hooks.example.org/hook",
    ],
)
async def test_endpoints_into_the_network_are_refused(closed: World, endpoint: str) -> None:
    text = await refused(closed, subscription(TOPIC + "referral-new", endpoint))
    assert "https" in text or "private" in text


@pytest.mark.parametrize(
    ("criteria", "says"),
    [
        ("Task?nonsense=1", "does not parse"),
        ("NoSuchType?status=x", "not a resource type"),
        ("Task?status=requested&_sort=status", "may only filter"),
        ("Task?_include=Task:focus", "may only filter"),
        ("Task?authored-on=notadate", "does not parse"),
        ("AuditEvent?agent=Practitioner/mw", "not notified"),
        ("https://elsewhere.example/fhir/Task?status=x", "not a search of this server"),
        ("https://borninbelgiumpro.be/fhir/SubscriptionTopic/no-such-topic", "unknown"),
    ],
)
async def test_criteria_that_do_not_parse(world: World, criteria: str, says: str) -> None:
    body = subscription(criteria, "http://127.0.0.1:9/hook")
    assert says in await refused(world, body)


async def test_filters_a_topic_does_not_allow(world: World) -> None:
    wrong_param = subscription(
        TOPIC + "referral-new", "http://127.0.0.1:9/h", filters=("Task?code=fulfill",)
    )
    assert "cannot be filtered by code" in await refused(world, wrong_param)
    wrong_type = subscription(
        TOPIC + "referral-new", "http://127.0.0.1:9/h", filters=("CarePlan?status=active",)
    )
    assert "topic" in await refused(world, wrong_type)


async def test_channels_headers_and_statuses(world: World) -> None:
    body = subscription(TOPIC + "referral-new", "http://127.0.0.1:9/h")
    body["channel"]["type"] = "websocket"
    assert "not supported" in await refused(world, body)
    for header in ("Host: evil.example", "Content-Length: 0", "X-A: b\r\nX-Injected: 1", "nocolon"):
        body = subscription(TOPIC + "referral-new", "http://127.0.0.1:9/h", headers=(header,))
        await refused(world, body)
    body = subscription(TOPIC + "referral-new", "http://127.0.0.1:9/h")
    body["status"] = "error"
    assert "only the server" in await refused(world, body)
    # administrative staff (no BiB role) do not subscribe to patient events
    await refused(world, subscription(TOPIC + "referral-new", "http://127.0.0.1:9/h"), "clerk")


async def test_a_name_that_turns_private_after_the_check(tmp_path: Path) -> None:
    """DNS rebinding: the name resolved to a public address when the Subscription was written
    and to the metadata service when the server is about to deliver: nothing is sent, the
    Subscription turns to error with the reason."""
    world = await World(tmp_path, subscription_allowed_hosts="").start()
    try:
        answers = ["93.184.215.14"]

        async def dns(host: str, port: int) -> list[str]:
            found = list(answers)
            answers[:] = ["169.254.169.254"]  # the name turns private after this answer
            return found

        world.svc.subscriptions.policy.resolver = dns
        body = subscription(TOPIC + "referral-new", "https://rebind.example.org/hook")
        # the write checks the name (public now); the delivery resolves it again
        created = await world.request("POST", "/Subscription", "sw", json=body)
        assert created.status_code == 201, created.text
        sid = created.json()["id"]

        async def status() -> str:
            return (await world.get(f"/Subscription/{sid}", "sw")).json()["status"]

        for _ in range(200):
            if await status() == "error":
                break
            await asyncio.sleep(0.02)
        resource = (await world.get(f"/Subscription/{sid}", "sw")).json()
        assert resource["status"] == "error"
        assert "private" in resource["error"]
    finally:
        await world.stop()


async def test_a_client_asking_for_active_gets_a_handshake(
    world: World, receiver: Receiver
) -> None:
    body = subscription(TOPIC + "referral-new", receiver.url("/h"))
    body["status"] = "active"
    created = await world.request("POST", "/Subscription", "sw", json=body)
    assert created.status_code == 201 and created.json()["status"] == "requested"
    await wait_for(lambda: receiver.acknowledged("/h"))
    assert receiver.acknowledged("/h")[0].kind == "handshake"
