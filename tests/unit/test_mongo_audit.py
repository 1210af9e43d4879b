"""The audit trail on the MongoDB store: durable before the answer, and off the writer turn.

The secure server's audit log (fhir_server/security/audit.py) answers a request only once its
AuditEvent is committed: one writer task group-commits what is queued in one unit of work of
``create_many``. On MongoDB such a unit is append-only (docs/architecture.md, "Append-only
records"): a reserved range of sequence numbers and one bulk insert, no transaction, so no turn.
These tests run a secure server on the MongoDB store (mongomock through tests/mongomock_async.py)
and check what a client and an operator would see: every answered read has its AuditEvent in the
database at the moment of the answer, reads start no transaction, concurrent reads share bulk
inserts, audited reads still get answered while another process holds the turn, and a failover
while the events are written refuses no request and duplicates no event.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from fhir_server import app as app_module
from fhir_server.app import ServerApp
from fhir_server.store.mongo import MongoStore
from fhir_server.store.mongo.documents import SEQUENCE_ID
from tests.conftest import TEST_BASE, make_settings
from tests.mongomock_async import Faults, MockServer
from tests.unit.test_mongo_shared_keys import token


@pytest.fixture
async def secure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple]:
    server = MockServer()
    monkeypatch.setattr(
        app_module, "open_store", lambda url, **_: MongoStore(url, client_factory=server.client)
    )
    app = ServerApp(make_settings(tmp_path, store="mongodb://mock/fhir", auth="required"))
    await app.startup()
    try:
        yield app, server
    finally:
        await app.shutdown()


def transactions(server: MockServer) -> int:
    return sum(1 for _, name, _, _ in server.calls if name == "start_transaction")


def audit_inserts(server: MockServer) -> list[int]:
    """Sizes of the bulk inserts of AuditEvents sent to MongoDB."""
    return [
        len(args[0])
        for _, name, args, _ in server.calls
        if name == "insert_many" and args[0] and args[0][0].get("t") == "AuditEvent"
    ]


def audited_request_ids(server: MockServer) -> set[str]:
    found = set()
    for doc in server.sync["fhir"]["versions"].find({"t": "AuditEvent"}, {"b": 1}):
        body = doc["b"].decode() if isinstance(doc["b"], bytes) else str(doc["b"])
        found.update(part for part in body.split('"') if part.startswith("audit-"))
    return found


async def test_every_answered_read_has_its_audit_event_and_takes_no_turn(secure):
    app, server = secure
    bearer = token(app)
    transport = httpx.ASGITransport(app=app)
    before = transactions(server)
    inserts_before = len(audit_inserts(server))
    seen_at_answer: dict[str, bool] = {}
    async with httpx.AsyncClient(transport=transport, base_url=TEST_BASE) as client:

        async def read(i: int) -> None:
            rid = f"audit-{i:03d}"
            path = "/Patient" if i % 2 else "/Observation?code=8480-6"
            headers = {"Authorization": f"Bearer {bearer}", "X-Request-Id": rid}
            response = await client.get(path, headers=headers)
            assert response.status_code == 200, response.text
            seen_at_answer[rid] = rid in audited_request_ids(server)  # durable before answering

        await asyncio.gather(*(read(i) for i in range(40)))
    assert all(seen_at_answer.values()), [r for r, ok in seen_at_answer.items() if not ok]
    assert transactions(server) == before  # no read (and no audit write) took the turn
    sizes = audit_inserts(server)[inserts_before:]
    assert sum(sizes) == 40 and len(sizes) < 40, sizes  # group commit: shared bulk inserts
    counter = server.sync["fhir"]["counters"].find_one({"_id": SEQUENCE_ID})
    assert counter["f"] == []  # every reserved range withdrawn
    seqs = [d["s"] for d in server.sync["fhir"]["versions"].find({"t": "AuditEvent"}, {"s": 1})]
    assert len(seqs) == len(set(seqs)) and max(seqs) <= counter["n"]


async def test_audited_reads_are_answered_while_another_process_holds_the_turn(secure):
    app, server = secure
    bearer = token(app)
    other = server.client()["fhir"]
    # another server process's group commit holds the turn (its transaction wrote the counter)
    session = other.client.start_session()
    await session.start_transaction()
    await other["counters"].update_one({"_id": SEQUENCE_ID}, {"$inc": {"n": 3}}, session=session)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=TEST_BASE) as client:
        headers = {"Authorization": f"Bearer {bearer}", "X-Request-Id": "audit-held"}
        reading = asyncio.create_task(client.get("/Patient", headers=headers))
        await asyncio.sleep(0.2)
        # the reservation waits for the counter document, as on MongoDB; only for that group
        assert not reading.done()
        await session.commit_transaction()
        await session.end_session()
        response = await asyncio.wait_for(reading, 5)
    assert response.status_code == 200, response.text
    assert "audit-held" in audited_request_ids(server)
    counter = server.sync["fhir"]["counters"].find_one({"_id": SEQUENCE_ID})
    audit = server.sync["fhir"]["versions"].find_one({"t": "AuditEvent"}, {"s": 1})
    assert audit["s"] > 3 and counter["f"] == []  # numbered after the other group's range


async def test_a_failover_while_the_audit_trail_is_written_refuses_no_request(secure):
    app, server = secure
    bearer = token(app)
    # a retryable write that still fails after PyMongo's own retry, on one write in three
    server.faults = Faults(seed=11, rate=0.3, kinds=(), outside=("versions", "counters"))
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url=TEST_BASE) as client:

            async def read(i: int) -> int:
                headers = {"Authorization": f"Bearer {bearer}", "X-Request-Id": f"audit-f{i}"}
                return (await client.get("/Patient", headers=headers)).status_code

            statuses = await asyncio.gather(*(read(i) for i in range(30)))
        assert server.faults.injected  # the audit writes did fail on the way
    finally:
        server.faults = None
    assert statuses == [200] * 30
    assert {f"audit-f{i}" for i in range(30)} <= audited_request_ids(server)
    events = server.sync["fhir"]["versions"].count_documents({"t": "AuditEvent"})
    assert events == 30  # each exactly once, though replies were lost
