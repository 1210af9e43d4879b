"""The MongoDB store's writer turn: only writes inside it, whole-transaction retries on injected
faults, the deadline, fair turn-taking across processes, append-only units (AuditEvents) without
the turn, and a unit's searches that see its own unwritten versions.

All on mongomock through tests/mongomock_async.py (several stores on one MockServer are several
server processes on one MongoDB); the whole contract suite also runs with faults injected
(tests/contract, ``mongofaults``).
"""

from __future__ import annotations

import asyncio
import time

import orjson
import pytest
from pymongo import ReturnDocument

from fhir_server.errors import FhirError
from fhir_server.store.mongo import MongoStore
from fhir_server.store.mongo.documents import SEQUENCE_ID
from fhir_server.store.mongo.store import CLAIM_AFTER_S
from fhir_server.store.protocol import IndexRows, StoredVersion
from fhir_server.store.query import ANY_SYSTEM, Query, TokenPred
from tests.mongomock_async import FAULTS, Faults, MockServer

T0 = 1_700_000_000_000_000


def version(id_: str, number: int = 1, type_: str = "Patient") -> StoredVersion:
    body = orjson.dumps({"resourceType": type_, "id": id_, "n": number})
    return StoredVersion(type_, id_, number, T0 + number, False, "PUT", body)


def tag(value: str) -> IndexRows:
    return IndexRows(tokens=[("gender", "", value, 0)])


async def opened(server: MockServer, url: str = "mongodb://mock/fhir") -> MongoStore:
    store = MongoStore(url, client_factory=server.client)
    await store.open()
    return store


def started_transactions(server: MockServer) -> int:
    return sum(1 for owner, name, _, _ in server.calls if name == "start_transaction")


async def test_every_kind_of_fault_is_retried_as_a_whole_transaction():
    server = MockServer()
    store = await opened(server)
    server.faults = Faults(seed=3, rate=0.3)
    try:

        async def unit(i: int) -> list[StoredVersion]:
            async with store.unit_of_work() as uow:
                for j in range(3):
                    await uow.write(version(f"p{i}-{j}"), tag("female"), 0)
            return uow.written

        written = [await unit(i) for i in range(30)]  # one transaction each
        written += await asyncio.gather(*(unit(i) for i in range(30, 40)))  # and grouped
        seqs = sorted(v.seq for versions in written for v in versions)
        assert seqs == list(range(1, 121))  # every version once, no gap, nothing twice
        assert set(server.faults.injected) == set(FAULTS), server.faults.injected
        assert store.stats["retries"] > 0
        server.faults = None
        page = await store.search(
            Query(
                types=("Patient",), where=[(TokenPred("gender", ANY_SYSTEM, "female"),)], count=500
            )
        )
        assert len(page.hits) == 120
    finally:
        server.faults = None
        await store.close()


async def test_a_unit_that_cannot_get_through_before_its_deadline_fails_with_503():
    server = MockServer()
    store = await opened(server, "mongodb://mock/fhir?write_deadline_ms=200")
    server.faults = Faults(seed=1, rate=1.0, kinds=("transient",))
    try:
        with pytest.raises(FhirError) as info:
            async with store.unit_of_work() as uow:
                await uow.write(version("a"), None, 0)
        assert info.value.status == 503 and info.value.issues[0].code == "transient"
        assert "nothing was written" in info.value.issues[0].diagnostics
        server.faults = None
        assert await store.current("Patient", "a") is None
        assert await store.latest_seq() == 0
    finally:
        server.faults = None
        await store.close()


async def test_the_body_runs_outside_the_turn_and_reads_see_its_own_writes():
    """Nothing reaches MongoDB before the body ends; meanwhile its searches and reads see its
    unwritten versions (evaluated with $documents) in place of the stored ones."""
    server = MockServer()
    store = await opened(server)
    try:
        async with store.unit_of_work() as uow:
            await uow.write(version("old"), tag("male"), 0)
        before = started_transactions(server)
        female = Query(types=("Patient",), where=[(TokenPred("gender", ANY_SYSTEM, "female"),)])
        async with store.unit_of_work() as uow:
            await uow.write(version("new"), tag("female"), 0)
            await uow.write(version("old", 2), tag("female"), 1)
            assert started_transactions(server) == before  # no turn taken yet
            assert sorted(await uow.search_ids(female, 10)) == [
                ("Patient", "new"),
                ("Patient", "old"),
            ]
            assert (await uow.current("Patient", "old")).version == 2
            assert await store.current("Patient", "new") is None  # not written yet
        assert started_transactions(server) == before + 1
        assert len((await store.search(female)).hits) == 2
    finally:
        await store.close()


async def test_one_transaction_commits_the_units_queued_meanwhile():
    server = MockServer()
    store = await opened(server)
    try:
        before = started_transactions(server)

        async def unit(i: int) -> None:
            async with store.unit_of_work() as uow:
                await uow.write(version(f"g{i}"), None, 0)

        await asyncio.gather(*(unit(i) for i in range(50)))
        assert started_transactions(server) - before < 10  # group commit, not 50 turns
        assert await store.latest_seq() == 50
    finally:
        await store.close()


async def test_append_only_units_never_take_the_turn():
    server = MockServer()
    store = await opened(server)
    try:
        before = started_transactions(server)
        items = [(version(f"a{i}", type_="AuditEvent"), tag("R")) for i in range(500)]
        async with store.unit_of_work() as uow:
            await uow.create_many(items)
        assert started_transactions(server) == before
        inserts = [c for c in server.calls if c[1] == "insert_many"]
        assert len(inserts) == 1 and len(inserts[0][2][0]) == 500  # one bulk insert
        assert not [c for c in server.calls if c[1] == "find_one" and c[2][0].get("i") == "a1"]
        assert await store.latest_seq() == 500
        page = await store.search(Query(types=("AuditEvent",), count=1000))
        assert len(page.hits) == 500
    finally:
        await store.close()


async def test_append_only_units_ride_out_failovers_and_lost_replies():
    """The audit trail's writes outside transactions fail the way a retryable write fails once
    PyMongo's own retry has failed (the primary stepped down, or the reply was lost after the
    write was applied): every unit still gets through, each step exactly once."""
    server = MockServer()
    store = await opened(server)
    server.faults = Faults(seed=5, rate=0.3, kinds=(), outside=("versions", "counters"))
    try:

        async def unit(i: int) -> list[StoredVersion]:
            items = [(version(f"a{i}-{j}", type_="AuditEvent"), tag("R")) for j in range(5)]
            async with store.unit_of_work() as uow:
                await uow.create_many(items)
            return uow.written

        written = await asyncio.gather(*(unit(i) for i in range(30)))
        assert set(server.faults.injected) == {"not_primary", "reply_lost"}
        server.faults = None
        docs = list(server.sync["fhir"]["versions"].find({"t": "AuditEvent"}, {"s": 1, "i": 1}))
        assert len({d["i"] for d in docs}) == len(docs) == 150
        seqs = sorted(d["s"] for d in docs)
        assert seqs == list(range(1, 151))  # no range reserved twice, no gap, no duplicate
        assert sorted(v.seq for versions in written for v in versions) == seqs
        counter = server.sync["fhir"]["counters"].find_one({"_id": SEQUENCE_ID})
        assert counter["n"] == 150 and counter["f"] == []  # every announcement withdrawn
        page = await store.search(Query(types=("AuditEvent",), count=1000))
        assert len(page.hits) == 150
    finally:
        server.faults = None
        await store.close()


async def test_an_append_only_unit_that_cannot_get_through_fails_with_503_and_leaves_nothing():
    server = MockServer()
    store = await opened(server, "mongodb://mock/fhir?write_deadline_ms=300")
    # every insert fails, half of them after the documents went in (reply lost)
    server.faults = Faults(seed=1, rate=1.0, kinds=(), outside=("versions",))
    try:
        with pytest.raises(FhirError) as info:
            async with store.unit_of_work() as uow:
                await uow.create_many(
                    [(version(f"x{j}", type_="AuditEvent"), tag("R")) for j in range(5)]
                )
        assert info.value.status == 503 and "nothing was written" in str(info.value.issues)
        assert server.faults.injected.get("reply_lost")
        server.faults = None
        assert server.sync["fhir"]["versions"].count_documents({"t": "AuditEvent"}) == 0
        counter = server.sync["fhir"]["counters"].find_one({"_id": SEQUENCE_ID})
        assert counter["f"] == []
        assert await store.latest_seq(("AuditEvent",)) == counter["n"]  # nothing held back
    finally:
        server.faults = None
        await store.close()


async def test_a_range_in_flight_keeps_its_types_out_of_new_snapshots():
    server = MockServer()
    store = await opened(server)
    try:
        async with store.unit_of_work() as uow:
            await uow.write(version("p"), None, 0)
        # another process has reserved 5..14 for AuditEvents and not inserted them yet
        await store._counters.find_one_and_update(
            {"_id": SEQUENCE_ID},
            {
                "$inc": {"n": 10},
                "$push": {
                    "f": {"lo": 2, "hi": 11, "t": ["AuditEvent"], "e": time.time() * 1000 + 5000}
                },
            },
            return_document=ReturnDocument.AFTER,
        )
        assert await store.latest_seq(("Patient",)) == 11
        assert await store.latest_seq(("AuditEvent",)) == 1  # below the range in flight
        assert await store.latest_seq() == 1  # system history and searches over every type
    finally:
        await store.close()


async def test_a_process_that_waits_too_long_claims_the_next_turn():
    server = MockServer()
    store = await opened(server)
    other = server.client()["fhir"]
    try:
        # another process holds the turn (an open transaction that wrote the counter)
        session = other.client.start_session()
        await session.start_transaction()
        await other["counters"].update_one(
            {"_id": SEQUENCE_ID}, {"$inc": {"n": 0}}, session=session
        )

        async def unit() -> None:
            async with store.unit_of_work() as uow:
                await uow.write(version("late"), None, 0)

        task = asyncio.create_task(unit())
        await asyncio.sleep(CLAIM_AFTER_S + 0.2)
        await session.commit_transaction()  # the other process finishes its turn
        await asyncio.sleep(0.01)  # the claim was waiting for the counter's lock
        counter = await other["counters"].find_one({"_id": SEQUENCE_ID})
        assert counter.get("c") == store._token  # claimed while it waited
        # a third process may not take the turn while the claim is live
        third = await opened(server)
        third_unit = asyncio.create_task(_write_one(third, "third"))
        await task
        await third_unit
        counter = await other["counters"].find_one({"_id": SEQUENCE_ID})
        assert "c" not in counter  # the claimant cleared it in its own turn
        assert (await store.current("Patient", "late")).seq == 1
        assert (await store.current("Patient", "third")).seq == 2
        assert store.stats["claims"] >= 1
        await third.close()
    finally:
        await store.close()


async def _write_one(store: MongoStore, id_: str) -> None:
    async with store.unit_of_work() as uow:
        await uow.write(version(id_), None, 0)


# -- reads: time limits, statistics, primary --------------------------------------------------


async def test_a_search_that_runs_out_of_time_is_a_clear_operation_outcome(tmp_path, monkeypatch):
    import httpx

    from fhir_server import app as app_module
    from fhir_server.app import ServerApp
    from tests.conftest import TEST_BASE, make_settings

    server = MockServer()
    monkeypatch.setattr(
        app_module, "open_store", lambda url, **_: MongoStore(url, client_factory=server.client)
    )
    app = ServerApp(make_settings(tmp_path, store="mongodb://mock/fhir?max_time_ms=2500"))
    await app.startup()
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=TEST_BASE) as client:
            server.time_out_reads = True
            response = await client.get("/Patient?family=janssens")
            assert response.status_code == 400
            outcome = response.json()
            assert outcome["resourceType"] == "OperationOutcome"
            issue = outcome["issue"][0]
            assert issue["code"] == "too-costly"
            assert "did not finish within 2.5 s" in issue["diagnostics"]
            assert "add criteria" in issue["diagnostics"]
    finally:
        server.time_out_reads = False
        await app.shutdown()


async def test_total_estimate_comes_from_the_statistics():
    server = MockServer()
    store = await opened(server)
    try:
        for i in range(5):
            await _write_one(store, f"s{i}")
        async with store.unit_of_work() as uow:  # a delete: one fewer live Patient
            await uow.current("Patient", "s0")
            await uow.write(
                StoredVersion("Patient", "s0", 2, T0 + 9, True, "DELETE", None), None, 1
            )
        server.queries.clear()
        page = await store.search(Query(types=("Patient",), total="estimate", count=2))
        assert page.total == 4
        counted = [q for q in server.queries if "$count" in str(q.get("pipeline"))]
        assert not counted  # no scan for the estimate
        accurate = await store.search(Query(types=("Patient",), total="accurate", count=2))
        assert accurate.total == 4
        assert await store.count_current(("Patient",)) == 4
    finally:
        await store.close()


async def test_transactions_and_unit_reads_use_the_primary_whatever_the_url_says():
    from pymongo import ReadPreference

    server = MockServer()
    store = await opened(server, "mongodb://mock/fhir?readPreference=secondary")
    try:
        async with store.unit_of_work() as uow:
            assert await uow.current("Patient", "x") is None
            await uow.write(version("x"), None, 0)
        transactions = [c for c in server.calls if c[1] == "start_transaction"]
        assert transactions and all(
            c[3].get("read_preference") == ReadPreference.PRIMARY for c in transactions
        )
        primary_views = [
            c
            for c in server.calls
            if c[1] in ("with_options", "get_collection")
            and c[3].get("read_preference") == ReadPreference.PRIMARY
        ]
        assert primary_views  # the versions read by unit bodies, the counters, meta
        body_reads = [
            q
            for q in server.queries
            if q["collection"] == "versions" and q.get("filter", {}).get("i") == "x"
        ]
        assert body_reads and all("Primary" in q["read_preference"] for q in body_reads)
    finally:
        await store.close()
