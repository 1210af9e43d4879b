"""Several server processes on one store: one matches, one delivers each subscription, none
twice; a process that dies gives its work up when its lease expires.

Two subscription engines (what two server processes run) share one store here, on SQLite and on
the MongoDB store over mongomock: they claim the matcher and each subscription through the
store's units of work, exactly as separate processes on a MongoDB cluster do (docs/subscriptions
.md "Several processes").
"""

from __future__ import annotations

import asyncio
import time

from fhir_server.subscriptions.engine import Engine
from fhir_server.subscriptions.records import MATCHER, MATCHER_ID, STATE, data_of
from tests.referrals.world import World
from tests.subscriptions.conftest import TOPIC, subscribe, subscription, wait_for
from tests.subscriptions.receiver import Receiver


async def second_engine(world: World) -> Engine:
    engine = Engine(world.svc)
    world.svc.store.add_listener(engine.committed)
    await engine.start()
    return engine


def delivered(receiver: Receiver, path: str) -> list[int]:
    return [n for r in receiver.acknowledged(path) for n in r.numbers]


async def test_two_engines_one_store_every_event_once_in_order(
    any_store_world: World, receiver: Receiver
) -> None:
    world = any_store_world
    other = await second_engine(world)
    try:
        sid = await subscribe(
            world, "sw", subscription(TOPIC + "referral-new", receiver.url("/cpas"))
        )
        for _ in range(8):
            await world.refer()
        numbers = await wait_for(
            lambda: (lambda got: got if len(got) >= 8 else None)(delivered(receiver, "/cpas")),
            timeout=20,
        )
        await asyncio.sleep(0.3)
        numbers = delivered(receiver, "/cpas")
        assert numbers == list(range(1, 9))  # each once, in order
        assert len([r for r in receiver.on("/cpas") if r.kind == "handshake"]) == 1
        matcher = data_of(await world.svc.store.current(MATCHER, MATCHER_ID))
        engines = {world.svc.subscriptions.instance, other.instance}
        assert matcher["lease"] in engines
        state = data_of(await world.svc.store.current(STATE, sid))
        assert state["events"] == state["delivered"] == 8
    finally:
        await other.stop()


async def test_a_process_that_dies_gives_its_work_up(tmp_path, receiver: Receiver) -> None:
    world = await World(tmp_path, subscription_lease_seconds=1).start()
    first = world.svc.subscriptions
    try:
        await subscribe(world, "sw", subscription(TOPIC + "referral-new", receiver.url("/c")))
        await world.refer()
        await wait_for(lambda: delivered(receiver, "/c") == [1])
        # the first engine dies without a word (its loops stop, its leases stay in the store)
        for task in first._tasks:
            task.cancel()
        await asyncio.sleep(0.05)
        matcher = data_of(await world.svc.store.current(MATCHER, MATCHER_ID))
        assert matcher["lease"] == first.instance
        await world.refer()
        other = await second_engine(world)
        try:
            started = time.monotonic()
            await wait_for(lambda: delivered(receiver, "/c") == [1, 2], timeout=10)
            assert time.monotonic() - started < 5  # once the 1 s lease has expired
            matcher = data_of(await world.svc.store.current(MATCHER, MATCHER_ID))
            assert matcher["lease"] == other.instance
        finally:
            await other.stop()
    finally:
        first._tasks = []
        await world.stop()


async def test_a_commit_the_relationship_cache_has_not_heard_of(
    any_store_world: World, receiver: Receiver
) -> None:
    """Another process wrote the referral: this process's cache of the social worker's shared
    records never hears of it (a store listener sees only its own process's commits) and still
    holds what she could read before. The matcher judges a refusal once more with fresh
    relations: the new referral is notified, not silently dropped."""
    world = any_store_world
    relationships = world.app.security.relationships
    await subscribe(world, "sw", subscription(TOPIC + "referral-new", receiver.url("/cpas")))
    await world.refer()
    await wait_for(lambda: delivered(receiver, "/cpas") == [1])
    world.svc.store._listeners.remove(relationships.committed)  # as if written elsewhere
    try:
        # her relations are cached now, from before the next referral
        assert (await world.get("/Task?_count=50", "sw")).status_code == 200
        _, task = await world.refer()
        numbers = await wait_for(
            lambda: (lambda got: got if len(got) == 2 else None)(delivered(receiver, "/cpas"))
        )
        assert numbers == [1, 2]
        last = [r for r in receiver.acknowledged("/cpas") if r.numbers][-1]
        assert last.bundle["entry"][1]["fullUrl"].endswith(f"/Task/{task}")
    finally:
        world.svc.store.add_listener(relationships.committed)
