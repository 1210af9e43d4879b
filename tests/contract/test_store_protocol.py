"""The storage protocol: versions, tombstones, optimistic concurrency, units of work, history."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from fhir_server.search.normalize import normalize
from fhir_server.store.protocol import IndexRows, Store, StoredVersion, VersionConflict
from fhir_server.store.query import NumberPred, Query, StringPred, TokenPred

T0 = 1_700_000_000_000_000


def version(
    type_: str,
    id_: str,
    number: int,
    body: dict | None = None,
    *,
    deleted=False,
    method="PUT",
    at: int | None = None,
) -> StoredVersion:
    raw = None if deleted else orjson.dumps(body or {"resourceType": type_, "id": id_, "n": number})
    return StoredVersion(
        type_, id_, number, at or T0 + number * 1000, deleted, "DELETE" if deleted else method, raw
    )


def tokens(*pairs: tuple[str, str]) -> IndexRows:
    return IndexRows(tokens=[(param, "", code, 0) for param, code in pairs])


async def write(store: Store, v: StoredVersion, expected: int | None, index=None):
    async with store.unit_of_work() as uow:
        return await uow.write(v, index, expected)


async def test_create_and_read_current(store: Store):
    await write(store, version("Patient", "a", 1), 0)
    current = await store.current("Patient", "a")
    assert current is not None and current.seq > 0  # numbered when the unit commits
    assert current is not None and current.version == 1 and not current.deleted
    assert orjson.loads(current.body)["id"] == "a"
    assert await store.current("Patient", "missing") is None
    assert await store.current("Observation", "a") is None


async def test_versions_are_kept_and_vread_returns_each(store: Store):
    for number in (1, 2, 3):
        await write(store, version("Patient", "a", number), number - 1)
    assert (await store.current("Patient", "a")).version == 3
    for number in (1, 2, 3):
        old = await store.version("Patient", "a", number)
        assert old is not None and orjson.loads(old.body)["n"] == number
    assert await store.version("Patient", "a", 4) is None


async def test_delete_is_a_tombstone_version(store: Store):
    await write(store, version("Patient", "a", 1), 0)
    await write(store, version("Patient", "a", 2, deleted=True), 1)
    current = await store.current("Patient", "a")
    assert current.deleted and current.version == 2 and current.body is None
    assert (await store.version("Patient", "a", 1)).body is not None
    # re-created after the delete: history continues
    await write(store, version("Patient", "a", 3), 2)
    assert not (await store.current("Patient", "a")).deleted


async def test_optimistic_concurrency(store: Store):
    await write(store, version("Patient", "a", 1), 0)
    with pytest.raises(VersionConflict) as info:
        await write(store, version("Patient", "a", 2), 0)  # create over an existing id
    assert info.value.current_version == 1
    with pytest.raises(VersionConflict):
        await write(store, version("Patient", "a", 3), 2)  # stale base version
    await write(store, version("Patient", "a", 2), 1)
    assert (await store.current("Patient", "a")).version == 2


async def test_unit_of_work_is_atomic(store: Store):
    with pytest.raises(RuntimeError):
        async with store.unit_of_work() as uow:
            await uow.write(version("Patient", "x", 1), None, 0)
            await uow.write(version("Patient", "y", 1), None, 0)
            assert (await uow.current("Patient", "x")).version == 1  # sees its own writes
            raise RuntimeError("boom")
    assert await store.current("Patient", "x") is None
    assert await store.current("Patient", "y") is None
    history = await store.history(None, None, None, None, 10, None)
    assert history.versions == []


async def test_failed_unit_does_not_disturb_concurrent_units(store: Store):
    async def good(i: int) -> None:
        await write(store, version("Patient", f"g{i}", 1), 0)

    async def bad() -> None:
        async with store.unit_of_work() as uow:
            await uow.write(version("Patient", "bad", 1), None, 0)
            raise ValueError("no")

    results = await asyncio.gather(*(good(i) for i in range(20)), bad(), return_exceptions=True)
    assert sum(isinstance(r, ValueError) for r in results) == 1
    for i in range(20):
        assert await store.current("Patient", f"g{i}") is not None
    assert await store.current("Patient", "bad") is None


async def test_many_concurrent_writes_all_land(store: Store):
    await asyncio.gather(*(write(store, version("Observation", f"o{i}", 1), 0) for i in range(200)))
    page = await store.history("Observation", None, None, None, 500, None)
    assert len(page.versions) == 200


async def test_history_levels_order_and_paging(store: Store):
    await write(store, version("Patient", "a", 1), 0)
    await write(store, version("Observation", "o", 1), 0)
    await write(store, version("Patient", "a", 2), 1)
    await write(store, version("Patient", "b", 1), 0)
    system = await store.history(None, None, None, None, 10, None)
    assert [(v.type, v.id, v.version) for v in system.versions] == [
        ("Patient", "b", 1),
        ("Patient", "a", 2),
        ("Observation", "o", 1),
        ("Patient", "a", 1),
    ]
    by_type = await store.history("Patient", None, None, None, 10, None)
    assert [(v.id, v.version) for v in by_type.versions] == [("b", 1), ("a", 2), ("a", 1)]
    instance = await store.history("Patient", "a", None, None, 10, None)
    assert [v.version for v in instance.versions] == [2, 1]
    first = await store.history(None, None, None, None, 2, None)
    assert len(first.versions) == 2 and first.next_cursor
    second = await store.history(None, None, None, None, 2, first.next_cursor)
    assert [(v.id, v.version) for v in second.versions] == [("o", 1), ("a", 1)]
    assert second.next_cursor is None


async def test_history_since_and_at(store: Store):
    await write(store, version("Patient", "a", 1, at=T0 + 1_000_000), 0)
    await write(store, version("Patient", "a", 2, at=T0 + 5_000_000), 1)
    await write(store, version("Patient", "a", 3, at=T0 + 9_000_000), 2)
    since = await store.history("Patient", "a", T0 + 5_000_000, None, 10, None)
    assert [v.version for v in since.versions] == [3, 2]
    at = await store.history("Patient", "a", None, (T0 + 6_000_000, T0 + 6_000_000), 10, None)
    assert [v.version for v in at.versions] == [2]


async def test_search_sees_index_rows_in_the_same_unit(store: Store):
    async with store.unit_of_work() as uow:
        await uow.write(version("Patient", "a", 1), tokens(("gender", "female")), 0)
        query = Query(types=("Patient",), where=[(TokenPred("gender", "\x00any", "female"),)])
        assert await uow.search_ids(query, 5) == [("Patient", "a")]


async def test_search_snapshot_sees_the_past(store: Store):
    await write(store, version("Patient", "a", 1), 0, tokens(("gender", "female")))
    snapshot = await store.latest_seq()
    await write(store, version("Patient", "a", 2), 1, tokens(("gender", "male")))
    await write(store, version("Patient", "b", 1), 0, tokens(("gender", "female")))
    female = (TokenPred("gender", "\x00any", "female"),)
    now = await store.search(Query(types=("Patient",), where=[female]))
    assert [h.id for h in now.hits] == ["b"]
    then = await store.search(Query(types=("Patient",), where=[female], snapshot=snapshot))
    assert [h.id for h in then.hits] == ["a"]
    assert orjson.loads(then.hits[0].body)["n"] == 1  # the version as it was


async def test_read_many_as_of_snapshot(store: Store):
    await write(store, version("Patient", "a", 1), 0)
    await write(store, version("Patient", "b", 1), 0)
    snapshot = await store.latest_seq()
    await write(store, version("Patient", "a", 2, deleted=True), 1)
    now = await store.read_many([("Patient", "a"), ("Patient", "b"), ("Patient", "zz")], None)
    assert sorted(v.id for v in now) == ["b"]
    then = await store.read_many([("Patient", "a"), ("Patient", "b")], snapshot)
    assert sorted(v.id for v in then) == ["a", "b"]


async def test_health(store: Store):
    health = await store.health()
    assert health["status"] == "ok"


async def test_create_many_writes_new_resources_in_one_unit(store: Store):
    items = [
        (version("AuditEvent", f"a{i}", 1, method="POST"), tokens(("action", "R")))
        for i in range(50)
    ]
    async with store.unit_of_work() as uow:
        await uow.create_many(items)
    assert (await store.current("AuditEvent", "a49")).version == 1
    found = await store.search(
        Query(types=("AuditEvent",), where=[(TokenPred("action", "\x00any", "R"),)], count=100)
    )
    assert len(found.hits) == 50
    with pytest.raises(Exception):  # noqa: B017 - stores raise their own integrity errors
        async with store.unit_of_work() as uow:
            await uow.create_many(
                [
                    (version("AuditEvent", "new", 1), tokens()),
                    (version("AuditEvent", "a0", 1), tokens()),
                ]
            )
    assert await store.current("AuditEvent", "new") is None


# -- writes that share a commit (group commit / deferred batches) -------------------------------


def gender(value: str) -> tuple:
    return (TokenPred("gender", "\x00any", value),)


async def test_updates_queued_behind_their_create_in_one_commit(store: Store):
    """Create then update the same resource while both are uncommitted: versions chain, and
    the first version's index rows stop matching."""

    async def update(number: int, value: str) -> None:
        await write(store, version("Patient", "p", number), number - 1, tokens(("gender", value)))

    await asyncio.gather(
        write(store, version("Patient", "p", 1), 0, tokens(("gender", "female"))),
        update(2, "male"),
        update(3, "other"),
    )
    assert (await store.current("Patient", "p")).version == 3
    history = await store.history("Patient", "p", None, None, 10, None)
    assert [v.version for v in history.versions] == [3, 2, 1]
    for value, expected in (("female", []), ("male", []), ("other", ["p"])):
        page = await store.search(Query(types=("Patient",), where=[gender(value)]))
        assert [h.id for h in page.hits] == expected, value


async def test_concurrent_conditional_creates_make_one_resource(store: Store):
    """Each unit searches before it writes (If-None-Exist): it must see the uncommitted writes
    of the units before it, or two devices register the same mother twice."""
    created = []

    async def register(i: int) -> None:
        async with store.unit_of_work() as uow:
            if await uow.search_ids(Query(types=("Patient",), where=[gender("unique")]), 2):
                return
            await uow.write(version("Patient", f"m{i}", 1), tokens(("gender", "unique")), 0)
            created.append(i)

    await asyncio.gather(*(register(i) for i in range(20)))
    assert len(created) == 1
    page = await store.search(Query(types=("Patient",), where=[gender("unique")]))
    assert len(page.hits) == 1


async def test_failed_unit_after_a_search_keeps_the_earlier_units(store: Store):
    """A unit that ran SQL (its search needed the batch's rows) and then failed is undone
    alone; the units before it in the same commit stay."""

    async def good(i: int) -> None:
        await write(store, version("Patient", f"g{i}", 1), 0, tokens(("gender", "female")))

    async def bad() -> None:
        async with store.unit_of_work() as uow:
            await uow.write(version("Patient", "bad", 1), tokens(("gender", "female")), 0)
            await uow.search_ids(Query(types=("Patient",), where=[gender("female")]), 50)
            raise ValueError("no")

    results = await asyncio.gather(
        *(good(i) for i in range(10)),
        bad(),
        *(good(i) for i in range(10, 20)),
        return_exceptions=True,
    )
    assert sum(isinstance(r, ValueError) for r in results) == 1
    page = await store.search(Query(types=("Patient",), where=[gender("female")], count=50))
    assert sorted(h.id for h in page.hits) == sorted(f"g{i}" for i in range(20))
    assert await store.current("Patient", "bad") is None


async def test_version_conflict_is_seen_before_commit(store: Store):
    """Two writers based on the same version in one commit: the second loses (no lost update)."""
    await write(store, version("Patient", "c", 1), 0)
    results = await asyncio.gather(
        write(store, version("Patient", "c", 2), 1),
        write(store, version("Patient", "c", 2), 1),
        return_exceptions=True,
    )
    assert sum(isinstance(r, VersionConflict) for r in results) == 1
    assert (await store.current("Patient", "c")).version == 2


async def test_fresh_ids_and_numbers_survive_the_trip(store: Store):
    """Values written through the batch come back exactly: decimals, non-ASCII text, quotes."""
    text = 'Zoë "Q" \\ 日本 ∑'
    body = {"resourceType": "Observation", "id": "f", "valueQuantity": {"value": 0.1}, "t": text}
    index = IndexRows(
        strings=[("name", normalize(text), text, 0)],
        numbers=[("value", 0.1, 0), ("value", 1e-300, 0), ("value", 123456789.123456789, 0)],
    )
    async with store.unit_of_work() as uow:
        await uow.write(version("Observation", "f", 1, body, method="POST"), index, 0, fresh=True)
    stored = await store.current("Observation", "f")
    assert orjson.loads(stored.body)["t"] == text
    assert isinstance(stored.body, bytes)
    exact = StringPred("name", "exact", text)
    assert [h.id for h in (await store.search(Query(("Observation",), [(exact,)]))).hits] == ["f"]
    for value in (0.1, 1e-300, 123456789.123456789):  # the float itself, not a neighbour
        pred = NumberPred("value", "ge", value, value, value)
        above = NumberPred("value", "le", value, value, value)
        found = await store.search(Query(("Observation",), [(pred,), (above,)]))
        assert [h.id for h in found.hits] == ["f"], value


async def test_log_reads_one_type_in_commit_order_exactly_once(store: Store):
    """``Store.log``: the versions of one type after a sequence number, oldest first, committed
    ones only (the subscriptions outbox is read this way, across restarts)."""
    assert await store.log("Outbox", 0, 10) == []
    seen: list[int] = []
    for batch in range(3):
        async with store.unit_of_work() as uow:
            for n in range(4):
                await uow.write(version("Outbox", f"b{batch}-{n}", 1), None, 0)
                await uow.write(version("Patient", f"b{batch}-{n}", 1), None, 0)
    position = 0
    while True:
        found = await store.log("Outbox", position, 5)
        if not found:
            break
        assert all(v.type == "Outbox" for v in found)
        assert [v.seq for v in found] == sorted(v.seq for v in found)
        assert found[0].seq > position
        seen += [v.seq for v in found]
        position = found[-1].seq
    assert len(seen) == len(set(seen)) == 12
    # a failed unit leaves nothing in the log; later writes come after the position
    with pytest.raises(RuntimeError):
        async with store.unit_of_work() as uow:
            await uow.write(version("Outbox", "lost", 1), None, 0)
            raise RuntimeError("boom")
    await write(store, version("Outbox", "later", 1), 0)
    after = await store.log("Outbox", position, 10)
    assert [v.id for v in after] == ["later"]
    # the same version read twice through a unit of work: a version of the record type
    await write(store, version("Outbox", "later", 2), 1)
    assert [(v.id, v.version) for v in await store.log("Outbox", after[0].seq, 10)] == [
        ("later", 2)
    ]


async def test_a_record_read_and_written_back_in_units_is_a_lease(store: Store):
    """Of several claims read-and-written in units, exactly one wins (the subscriptions' leases
    rely on it on every store). A loser either sees the winner's claim (SQLite serialises units)
    or fails with a version conflict, writing nothing (MongoDB's units meet only at commit)."""
    await write(store, version("Lease", "x", 1, {"holder": None}), 0)

    async def claim(who: str) -> bool:
        async with store.unit_of_work() as uow:
            current = await uow.current("Lease", "x")
            if orjson.loads(current.body)["holder"] is not None:
                return False
            await asyncio.sleep(0)  # let the other claimant run
            await uow.write(
                version("Lease", "x", current.version + 1, {"holder": who}), None, current.version
            )
            return True

    results = await asyncio.gather(*(claim(f"p{i}") for i in range(5)), return_exceptions=True)
    assert [r for r in results if r is True] == [True]
    assert all(r in (True, False) or isinstance(r, VersionConflict) for r in results), results
    winner = orjson.loads((await store.current("Lease", "x")).body)["holder"]
    assert winner is not None and (await store.current("Lease", "x")).version == 2
