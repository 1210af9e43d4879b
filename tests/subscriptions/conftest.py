from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.referrals.world import World
from tests.subscriptions.receiver import Receiver

BACKPORT = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/"
TOPIC = "https://borninbelgiumpro.be/fhir/SubscriptionTopic/"


def subscription(
    criteria: str,
    endpoint: str,
    content: str | None = "id-only",
    filters: tuple[str, ...] = (),
    heartbeat: int | None = None,
    headers: tuple[str, ...] = (),
    payload: str | None = "application/fhir+json",
    max_count: int | None = None,
) -> dict[str, Any]:
    channel: dict[str, Any] = {"type": "rest-hook", "endpoint": endpoint}
    if payload is not None:
        channel["payload"] = payload
    if content is not None:
        channel["_payload"] = {
            "extension": [{"url": BACKPORT + "backport-payload-content", "valueCode": content}]
        }
    extensions = []
    if heartbeat is not None:
        extensions.append(
            {"url": BACKPORT + "backport-heartbeat-period", "valueUnsignedInt": heartbeat}
        )
    if max_count is not None:
        extensions.append({"url": BACKPORT + "backport-max-count", "valuePositiveInt": max_count})
    if extensions:
        channel["extension"] = extensions
    if headers:
        channel["header"] = list(headers)
    out: dict[str, Any] = {
        "resourceType": "Subscription",
        "status": "requested",
        "reason": "test",
        "criteria": criteria,
        "channel": channel,
    }
    if filters:
        out["_criteria"] = {
            "extension": [
                {"url": BACKPORT + "backport-filter-criteria", "valueString": f} for f in filters
            ]
        }
    return out


async def wait_for(check: Callable[[], Any], timeout: float = 10.0, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or check}")
        await asyncio.sleep(0.02)


async def subscribe(world: World, who: str, body: dict[str, Any], active: bool = True) -> str:
    created = await world.request("POST", "/Subscription", who, json=body)
    assert created.status_code == 201, created.text
    sid = created.json()["id"]
    if active:

        async def is_active() -> bool:
            return (await world.get(f"/Subscription/{sid}", who)).json()["status"] == "active"

        deadline = time.monotonic() + 10
        while not await is_active():
            assert time.monotonic() < deadline, "the subscription did not become active"
            await asyncio.sleep(0.02)
    return sid


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    instance = Receiver()
    try:
        yield instance
    finally:
        instance.close()


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    instance = await World(tmp_path).start()
    try:
        yield instance
    finally:
        await instance.stop()


@pytest.fixture(params=["sqlite", "mongomock"])
async def any_store_world(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[World]:
    instance = await World(tmp_path, store=request.param).start()
    try:
        yield instance
    finally:
        await instance.stop()
