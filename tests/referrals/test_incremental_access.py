"""Shared records kept current incrementally (docs/referrals.md "Keeping it current"), on SQLite
and on the MongoDB store over mongomock.

A professional's cached shared records are not recomputed when a referral of her organisation
changes: the index replays the committed versions since its entry's sequence number and the
referral provider derives the touched referral alone. After every step of a referral's life the
incrementally kept relations must equal a computation from scratch, and what the professional
can reach over HTTP must follow at once (granted on accept, removed on cancel, consent wins).
"""

from __future__ import annotations

from typing import Any

from fhir_server.security.principal import SecurePrincipal
from tests.referrals.world import World, ref

SOCIAL = SecurePrincipal(
    subject="sw2",
    practitioner="Practitioner/sw2",
    organization="Organization/cpas",
    role="A",
    kind="user",
)


def snapshot(relations: Any) -> tuple:
    return (
        relations.patients,
        dict(relations.shared),
        {k: v for k, v in relations.label_denies.items() if v},
        relations.aliases,
    )


async def same_as_from_scratch(world: World) -> Any:
    index = world.app.security.relationships
    kept = await index.relations(SOCIAL)
    fresh, _ = await index._compute(SOCIAL)
    assert snapshot(kept) == snapshot(fresh)
    return index._cache[index.key(SOCIAL)]


async def message(world: World, sr: str, who: str) -> str:
    body = {
        "resourceType": "Communication",
        "status": "completed",
        "basedOn": [ref(f"ServiceRequest/{sr}")],
        "subject": ref("Patient/p"),
        "payload": [{"contentString": "a question"}],
    }
    response = await world.request("POST", "/Communication", who, json=body)
    assert response.status_code == 201, response.text
    return response.json()["id"]


async def test_every_step_equals_a_computation_from_scratch(any_store_world: World) -> None:
    world = any_store_world
    index = world.app.security.relationships
    assert (await world.get("/Task", "sw2")).status_code == 200  # her relations are cached
    entry = index._cache[index.key(SOCIAL)]
    assert entry.relations.shared == {}

    sr, task = await world.refer()
    assert await same_as_from_scratch(world) is entry  # kept, not recomputed
    assert (await world.get(f"/Task/{task}", "sw2")).status_code == 200
    assert (await world.get("/Patient/p", "sw2")).status_code == 404  # offered only

    note = await message(world, sr, "mw")
    await same_as_from_scratch(world)
    assert (await world.get(f"/Communication/{note}", "sw2")).status_code == 200

    assert (await world.move(task, "accepted", "sw2")).status_code == 200
    assert await same_as_from_scratch(world) is entry
    assert (await world.get("/Patient/p", "sw2")).status_code == 200  # granted on accept
    assert (await world.get("/Observation/obs-shared", "sw2")).status_code == 200
    assert (await world.get("/Observation/obs-private", "sw2")).status_code == 404

    # a second referral about another woman, cancelled by the referrer
    sr_q, task_q = await world.refer(patient="q", supporting=())
    await same_as_from_scratch(world)
    assert (await world.get(f"/ServiceRequest/{sr_q}", "sw2")).status_code == 200
    cancelled = await world.move(task_q, "cancelled", "mw", reason="family moved")
    assert cancelled.status_code == 200
    await same_as_from_scratch(world)

    assert (await world.move(task, "cancelled", "mw", reason="not needed")).status_code == 200
    assert await same_as_from_scratch(world) is entry
    assert (await world.get("/Patient/p", "sw2")).status_code == 404  # removed on cancel
    assert (await world.get("/Observation/obs-shared", "sw2")).status_code == 404
    assert (await world.get(f"/Task/{task}", "sw2")).status_code == 200  # the record stays


async def test_a_new_referral_about_a_woman_whose_consent_denies_the_organisation(
    world: World,
) -> None:
    """Her consent was written before the professional's relations were cached; the new
    referral reaches the cache incrementally and her consent still wins."""
    consent = {
        "resourceType": "Consent",
        "status": "active",
        "scope": {"text": "privacy"},
        "category": [{"text": "privacy"}],
        "patient": ref("Patient/q"),
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
    assert (await world.get("/Task", "sw2")).status_code == 200
    index = world.app.security.relationships
    entry = index._cache[index.key(SOCIAL)]
    _, task = await world.refer(patient="q", supporting=())
    assert await same_as_from_scratch(world) is entry
    assert "q" not in entry.relations.shared
    assert (await world.get(f"/Task/{task}", "sw2")).status_code == 404
    assert (await world.move(task, "accepted", "sw2")).status_code in (403, 404)


async def test_another_process_commit_is_seen_by_a_fresh_judgement(world: World) -> None:
    """A commit this process's listener never hears of (another process wrote it): a plain check
    may use the cached entry until it expires, a fresh judgement (the subscriptions' ``hold``)
    replays the store's log and sees it."""
    index = world.app.security.relationships
    assert (await world.get("/Task", "sw2")).status_code == 200
    world.svc.store._listeners.remove(index.committed)
    try:
        _, task = await world.refer()
        index.hold(SOCIAL)
        try:
            relations = await index.relations(SOCIAL)
        finally:
            index.release(SOCIAL)
        assert f"Task/{task}" in relations.shared["p"].read
    finally:
        world.svc.store.add_listener(index.committed)
