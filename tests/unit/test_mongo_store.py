"""MongoDB store behaviour beyond the shared contract: topologies, several server processes on
one database, start-up errors, health, schema version, staged search limits, index back-fill.

The store runs on mongomock through tests/mongomock_async.py, except for the start-up error test,
which uses PyMongo's real AsyncMongoClient against a port where nothing listens.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import httpx
import orjson
import pytest

from fhir_server import app as app_module
from fhir_server.app import ServerApp
from fhir_server.errors import FhirError
from fhir_server.store.mongo import MongoStore, MongoUnavailable
from fhir_server.store.mongo.documents import SCHEMA_VERSION
from fhir_server.store.protocol import IndexRows, StoredVersion, VersionConflict
from fhir_server.store.query import ANY_SYSTEM, ChainPred, Query, SortKey, StringPred, TokenPred
from tests.conftest import TEST_BASE, make_settings
from tests.mongomock_async import MockServer

T0 = 1_700_000_000_000_000


def version(id_: str, number: int, type_: str = "Patient", deleted: bool = False):
    body = None if deleted else orjson.dumps({"resourceType": type_, "id": id_, "n": number})
    method = "DELETE" if deleted else "PUT"
    return StoredVersion(type_, id_, number, T0 + number, deleted, method, body)


def gender(value: str) -> IndexRows:
    return IndexRows(tokens=[("gender", "", value, 0)])


FEMALE = Query(types=("Patient",), where=[(TokenPred("gender", ANY_SYSTEM, "female"),)])


async def opened(server: MockServer, url: str = "mongodb://mock/fhir") -> MongoStore:
    store = MongoStore(url, client_factory=server.client)
    await store.open()
    return store


@pytest.fixture
async def standalone() -> AsyncIterator[MongoStore]:
    store = await opened(MockServer(topology="standalone"))
    yield store
    await store.close()


async def write(store: MongoStore, v: StoredVersion, expected: int, index=None) -> StoredVersion:
    """One unit of work with one write; the version as committed (with its sequence number)."""
    async with store.unit_of_work() as uow:
        await uow.write(v, index, expected)
    return uow.written[-1]


# -- standalone mongod: no transactions, compensated units ---------------------------------------


async def test_standalone_reports_no_transactions(standalone: MongoStore):
    assert standalone.topology == "standalone" and not standalone.supports_transactions
    health = await standalone.health()
    assert health["status"] == "ok" and health["transactions"] is False


async def test_standalone_unit_is_undone_when_it_fails(standalone: MongoStore):
    await write(standalone, version("a", 1), 0, gender("female"))
    with pytest.raises(RuntimeError):
        async with standalone.unit_of_work() as uow:
            await uow.write(version("a", 2), gender("male"), 1)
            await uow.write(version("b", 1), gender("female"), 0)
            raise RuntimeError("boom")
    current = await standalone.current("Patient", "a")
    assert current is not None and current.version == 1
    assert await standalone.current("Patient", "b") is None
    page = await standalone.search(FEMALE)
    assert [h.id for h in page.hits] == ["a"]  # version 1 is open again, with its index


async def test_standalone_snapshot_excludes_a_running_unit(standalone: MongoStore):
    await write(standalone, version("a", 1), 0)
    before = await standalone.latest_seq()
    async with standalone.unit_of_work() as uow:
        await uow.write(version("b", 1), gender("female"), 0)
        assert await standalone.latest_seq() == before  # written, not yet complete
    assert await standalone.latest_seq() > before


async def test_standalone_server_refuses_transaction_bundles(tmp_path, monkeypatch):
    server = MockServer(topology="standalone")
    monkeypatch.setattr(
        app_module, "open_store", lambda url, **_: MongoStore(url, client_factory=server.client)
    )
    app = ServerApp(make_settings(tmp_path, store="mongodb://mock/fhir"))
    await app.startup()
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=TEST_BASE) as client:
            metadata = (await client.get("/metadata")).json()
            interactions = {i["code"] for i in metadata["rest"][0]["interaction"]}
            assert "transaction" not in interactions and "batch" in interactions
            assert "transactions are disabled" in metadata["rest"][0]["documentation"]
            entry = {
                "resource": {"resourceType": "Patient"},
                "request": {"method": "POST", "url": "Patient"},
            }
            bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [entry]}
            response = await client.post("", json=bundle)
            assert response.status_code == 400
            outcome = response.json()
            assert outcome["resourceType"] == "OperationOutcome"
            assert "replica set" in outcome["issue"][0]["diagnostics"]
            assert (await client.get("/Patient")).json().get("total", 0) == 0  # nothing written
            batch = {**bundle, "type": "batch"}
            assert (await client.post("", json=batch)).status_code == 200
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as web:
            health = (await web.get("/health")).json()
            assert health["store"] == "mongodb" and health["topology"] == "standalone"
    finally:
        await app.shutdown()


# -- several server processes on one replica set -------------------------------------------------


async def test_two_processes_take_turns_and_number_versions_without_gaps():
    server = MockServer()
    first, second = await opened(server), await opened(server)
    try:
        stored = await asyncio.gather(
            *(
                write(first if i % 2 else second, version(f"p{i}", 1), 0, gender("female"))
                for i in range(30)
            )
        )
        assert sorted(v.seq for v in stored) == list(range(1, 31))
        assert server.conflicts > 0  # the writer turn was contended and retried
        assert await first.latest_seq() == await second.latest_seq() == 30
        page = await second.search(Query(types=("Patient",), where=FEMALE.where, count=100))
        assert len(page.hits) == 30
    finally:
        await first.close()
        await second.close()


async def test_paging_on_one_process_while_another_writes():
    server = MockServer()
    reader, writer = await opened(server), await opened(server)
    try:
        for i in range(6):
            await write(writer, version(f"p{i}", 1), 0, gender("female"))
        query = Query(types=("Patient",), where=FEMALE.where, sort=(SortKey("_id", ""),), count=2)
        page = await reader.search(query)
        seen = [h.id for h in page.hits]
        await write(writer, version("p5", 2, deleted=True), 1)  # deleted after the search began
        while page.has_more:
            await write(writer, version(f"new{len(seen)}", 1), 0, gender("female"))
            query.snapshot, query.after = page.snapshot, page.hits[-1].sort_values
            page = await reader.search(query)
            seen += [h.id for h in page.hits]
        assert seen == [f"p{i}" for i in range(6)]  # the snapshot: no new, none lost
    finally:
        await reader.close()
        await writer.close()


async def test_concurrent_creates_of_one_id_conflict():
    server = MockServer()
    stores = [await opened(server) for _ in range(3)]
    try:
        results = await asyncio.gather(
            *(write(s, version("same", 1), 0) for s in stores), return_exceptions=True
        )
        assert sum(isinstance(r, StoredVersion) for r in results) == 1
        assert sum(isinstance(r, VersionConflict) for r in results) == 2
    finally:
        for store in stores:
            await store.close()


# -- start-up, health, schema -------------------------------------------------------------------


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def test_unreachable_mongodb_is_a_clear_start_up_error():
    port = _closed_port()
    store = MongoStore(f"mongodb://fhir:secret@127.0.0.1:{port}/bib?serverSelectionTimeoutMS=300")
    with pytest.raises(MongoUnavailable) as info:
        await store.open()
    message = str(info.value)
    assert f"cannot reach MongoDB at mongodb://fhir:***@127.0.0.1:{port}/bib" in message
    assert "secret" not in message


async def test_health_reports_an_unreachable_database():
    server = MockServer()
    store = await opened(server)
    try:
        assert (await store.health())["status"] == "ok"
        server.down = True
        health = await store.health()
        assert health["status"] == "unavailable" and health["store"] == "mongodb"
    finally:
        await store.close()


async def test_start_up_is_idempotent_and_checks_the_schema_version():
    server = MockServer()
    store = await opened(server)
    await write(store, version("a", 1), 0)
    await store.close()
    again = await opened(server)  # indexes and counter exist: nothing changes
    assert await again.latest_seq() == 1
    doc = await again._versions.find_one({"i": "a"})
    assert doc["sv"] == SCHEMA_VERSION
    await again.set_meta("schema_version", "99")
    await again.close()
    with pytest.raises(MongoUnavailable, match="schema version 99"):
        await opened(server)


async def test_a_replica_set_database_starts_unchanged_once_sharded():
    """The indexes are the same on every topology: the unique t_i_v fits the shard key
    {t: 1, i: "hashed"} (its fields are the prefix), so moving a database from a replica set to
    a sharded cluster needs no index change and start-up meets no options conflict."""
    server = MockServer()
    store = await opened(server)
    await write(store, version("a", 1), 0)
    before = await store._versions.index_information()
    await store.close()
    server.topology = "sharded"
    sharded = await opened(server)
    try:
        assert sharded.topology == "sharded" and sharded.supports_transactions
        info = await sharded._versions.index_information()
        assert info == before and info["t_i_v"]["unique"]
        assert [k for k, _ in info["t_i_v"]["key"]][:2] == ["t", "i"]  # the shard key's fields
        with pytest.raises(VersionConflict):
            await write(sharded, version("a", 1), 0)  # still unique
    finally:
        await sharded.close()


# -- search limits and index maintenance --------------------------------------------------------


async def test_a_chain_over_too_many_targets_is_refused():
    store = await opened(MockServer(), "mongodb://mock/fhir?staged_limit=2")
    try:
        for i in range(3):
            await write(store, version(f"p{i}", 1), 0, gender("female"))
        inner = Query(types=("Patient",), where=FEMALE.where)
        chain = Query(types=("Observation",), where=[(ChainPred("subject", inner),)])
        with pytest.raises(FhirError) as info:
            await store.search(chain)
        assert info.value.status == 400 and info.value.issues[0].code == "too-costly"
    finally:
        await store.close()


async def test_back_filled_index_rows_are_searchable_sortable_and_droppable():
    store = await opened(MockServer())
    try:
        stored = [await write(store, version(f"p{i}", 1), 0) for i in range(3)]
        async with store.unit_of_work() as uow:
            for i, v in enumerate(stored):
                rows = IndexRows(strings=[("nick", f"n{2 - i}", f"N{2 - i}", 0)])
                await uow.add_index_rows(v, rows)
        nick = Query(
            types=("Patient",),
            where=[(StringPred("nick", "prefix", "n"),)],
            sort=(SortKey("nick", "strings"),),
        )
        assert [h.id for h in (await store.search(nick)).hits] == ["p2", "p1", "p0"]
        await store.drop_index_rows([("Patient", "nick")])
        assert (await store.search(nick)).hits == []
        doc = await store._versions.find_one({"i": "p0"})
        assert not doc.get("x") and not doc.get("o")
    finally:
        await store.close()
