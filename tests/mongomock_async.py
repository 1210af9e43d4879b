"""Test adapter: mongomock behind the part of PyMongo's async API that the MongoDB store uses.

mongomock executes MongoDB queries, updates and aggregation pipelines in Python, so the filters
and documents the store generates are really run (a wrong operator or a wrong comparison fails a
test), but it has no async API, no sessions and no transactions. This adapter adds them:

- every operation is a coroutine that first yields to the event loop, so concurrent units of
  work really interleave;
- ``start_session()`` / ``start_transaction()`` / ``commit_transaction()`` /
  ``abort_transaction()``: a write inside a transaction while another session's transaction
  has written raises a WriteConflict labelled TransientTransactionError, as MongoDB does, and an
  abort restores every document the transaction touched (snapshot and restore);
- ``command("hello")`` answers as a replica set member, a mongos (``topology="sharded"``) or a
  standalone server, so each of the store's modes runs; ``down = True`` makes commands fail as
  an unreachable server does.

Reads outside the writing transaction see the committed state only (the touched documents are
restored in a scratch copy for them), so a read that forgets its ``session`` inside a unit of work
misses the unit's own writes here as it would on MongoDB; snapshot sessions (``snapshot=True``)
read the committed state too. A write outside a transaction to a collection the writing
transaction has touched waits until that transaction ends, as MongoDB makes it wait for the
document's lock. ``db.aggregate([{"$documents": [...]}, ...])`` runs a pipeline on literal
documents (MongoDB 5.1+).

Fault injection (``MockServer.faults = Faults(seed, rate)``): each operation inside a transaction
and each commit fails with the given probability, the way a failover, a WriteConflict, the
transaction lifetime or a lost commit reply fail on MongoDB (error codes and labels as the
server sends them; the transaction is then aborted, except after a lost commit reply, where the
commit may or may not have happened and committing again is answered as MongoDB answers it).
With ``Faults.outside`` naming collections, writes outside transactions to them (``update_one``,
``insert_many``) fail too, as a retryable write fails once PyMongo's own single retry has failed:
the primary stepped down before the write (NotPrimaryError, nothing applied) or the reply was lost
(AutoReconnect after the write was applied).
Not emulated: write concerns, index use (mongomock scans; indexes are created and unique ones are
enforced; tests/unit/test_mongo_index_bounds.py checks index use on the recorded filters), time
limits (``maxTimeMS`` is accepted and recorded).
Several ``AsyncMockClient`` objects built with the same ``server`` share one database server,
like several server processes on one MongoDB.
"""

from __future__ import annotations

import asyncio
import copy
import functools
import os
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import mongomock
from pymongo.errors import (
    AutoReconnect,
    BulkWriteError,
    ConnectionFailure,
    DuplicateKeyError,
    ExecutionTimeout,
    InvalidOperation,
    NotPrimaryError,
    OperationFailure,
    ServerSelectionTimeoutError,
)
from pymongo.results import BulkWriteResult, InsertManyResult
from pymongo.write_concern import WriteConcern

FAULTS = ("transient", "write_conflict", "lifetime", "unknown_commit")
# a write outside a transaction that still fails after PyMongo's own retry of a retryable write:
# the primary stepped down before it (nothing applied), or the reply was lost (applied)
WRITE_FAULTS = ("not_primary", "reply_lost")


@dataclass
class Faults:
    """Random failures of transactional operations (see the module docstring)."""

    seed: int = 0
    rate: float = 0.1
    kinds: tuple[str, ...] = FAULTS
    injected: dict[str, int] = field(default_factory=dict)
    # collections whose writes outside transactions (update_one, insert_many) fail too
    outside: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        self.random = random.Random(self.seed)

    def draw(self, commit: bool) -> str | None:
        if self.random.random() >= self.rate:
            return None
        kinds = [k for k in self.kinds if commit or k != "unknown_commit"]
        if not kinds:
            return None
        kind = self.random.choice(kinds)
        self.injected[kind] = self.injected.get(kind, 0) + 1
        return kind


def write_fault(kind: str) -> ConnectionFailure:
    if kind == "reply_lost":
        return AutoReconnect("connection reset while waiting for the reply")
    return NotPrimaryError("not primary", {"code": 10107, "errorLabels": ["RetryableWriteError"]})


def fault_error(kind: str) -> OperationFailure:
    if kind == "write_conflict":
        return OperationFailure(
            "WriteConflict error: this operation conflicted with another operation",
            112,
            {"errorLabels": ["TransientTransactionError"], "code": 112},
        )
    if kind == "lifetime":  # transactionLifetimeLimitSeconds aborted it meanwhile
        return OperationFailure(
            "Transaction with { txnNumber: 1 } has been aborted.",
            251,
            {"errorLabels": ["TransientTransactionError"], "code": 251},
        )
    if kind == "unknown_commit":
        return OperationFailure(
            "connection reset while waiting for the commit reply",
            6,
            {"errorLabels": ["UnknownTransactionCommitResult"], "code": 6},
        )
    return OperationFailure(  # a failover: the primary stepped down
        "not primary",
        10107,
        {"errorLabels": ["TransientTransactionError"], "code": 10107},
    )


def recorded(method: Any) -> Any:
    """Log the call (class, method, args, kwargs) on the server: test_mongo_driver_calls.py
    checks every logged call against PyMongo's real async API."""

    @functools.wraps(method)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        self.mock_server.calls.append((type(self).__name__, method.__name__, args, kwargs))
        return method(self, *args, **kwargs)

    return wrapper


# the plug-ins' suites: every query the MongoDB store runs for them (test id, query), for
# tests/zz_plugin_bounds (the index-bounds check of the contract suite, extended to them)
PLUGIN_DIRS = (
    "tests/screening/",
    "tests/pathways/",
    "tests/socialmap/",
    "tests/referrals/",
    "tests/subscriptions/",
)
PLUGIN_QUERIES: list[tuple[str, dict[str, Any]]] = []


def note_query(server: Any, query: dict[str, Any]) -> None:
    server.queries.append(query)
    test = os.environ.get("PYTEST_CURRENT_TEST", "")
    if test.startswith(PLUGIN_DIRS):
        PLUGIN_QUERIES.append((test.rsplit(" (", 1)[0], query))


class MockServer:
    """One in-memory MongoDB server, shared by the clients built on it."""

    def __init__(self, topology: str = "replicaSet") -> None:
        self.sync = mongomock.MongoClient()
        self.topology = topology
        self.down = False
        self.writer: MockSession | None = None  # the session whose transaction has written
        self.conflicts = 0  # WriteConflicts raised (tests check the retry path ran)
        self.calls: list[tuple[str, str, tuple, dict]] = []
        self.faults: Faults | None = None
        # every query run, for tests/contract/bounds.py: {"collection", "filter", "sort",
        # "limit", "pipeline", "count"}
        self.queries: list[dict[str, Any]] = []
        # reads given a maxTimeMS fail as MongoDB fails them when the time is up
        self.time_out_reads = False

    def view(self, collection: Any, session: Any) -> Any:
        """The collection as ``session`` sees it: without other transactions' writes."""
        writer = self.writer
        if writer is None or writer is session:
            return collection
        undo = [u for u in writer.undo if u[1].full_name == collection.full_name]
        if not undo:
            return collection
        scratch = mongomock.MongoClient()["view"]["view"]
        docs = [copy.deepcopy(doc) for doc in collection.find()]
        if docs:
            scratch.insert_many(docs)
        _apply_undo([(action, scratch, value) for action, _, value in undo])
        return scratch

    def client(self, uri: str = "", **options: Any) -> AsyncMockClient:
        return AsyncMockClient(uri, server=self, **options)

    def check_fault(self, session: MockSession) -> None:
        """Maybe fail an operation of ``session``'s transaction (then aborted)."""
        if self.faults is None or not session.active:
            return
        kind = self.faults.draw(commit=False)
        if kind is None:
            return
        _apply_undo(session.undo)
        session.active = False
        session.undo = []
        if self.writer is session:
            self.writer = None
        raise fault_error(kind)

    def outside_fault(self, collection: Any, session: Any) -> str | None:
        """Maybe fail a write outside a transaction (``Faults.outside``): the kind drawn."""
        faults = self.faults
        if faults is None or collection.name not in faults.outside:
            return None
        if session is not None and session.in_transaction:
            return None
        if faults.random.random() >= faults.rate:
            return None
        kind = faults.random.choice(WRITE_FAULTS)
        faults.injected[kind] = faults.injected.get(kind, 0) + 1
        if kind == "not_primary":
            raise write_fault(kind)
        return kind  # applied, then the reply is lost

    async def wait_for_writer(self, collection: Any, session: Any) -> None:
        """A write outside a transaction waits while the writing transaction holds documents of
        the collection (MongoDB makes it wait for the document's lock)."""
        while True:
            writer = self.writer
            if writer is None or writer is session:
                return
            if not any(u[1].full_name == collection.full_name for u in writer.undo):
                return
            await asyncio.sleep(0.0005)


class AsyncMockClient:
    def __init__(self, uri: str = "", *, server: MockServer | None = None, **options: Any) -> None:
        self.server = server or MockServer()
        self.uri = uri
        self.options = options
        self.write_concern = WriteConcern()
        self.closed = False
        self.mock_server = self.server

    @property
    @recorded
    def admin(self) -> AsyncMockDatabase:
        return self.get_database("admin")

    @recorded
    def get_database(self, name: str, **_: Any) -> AsyncMockDatabase:
        return AsyncMockDatabase(self, name)

    def __getitem__(self, name: str) -> AsyncMockDatabase:
        return self.get_database(name)

    @recorded
    def start_session(self, *, snapshot: bool = False, **_: Any) -> MockSession:
        return MockSession(self.server, snapshot=snapshot)

    @recorded
    async def drop_database(self, name: str) -> None:
        await asyncio.sleep(0)
        self.server.sync.drop_database(name)

    @recorded
    async def close(self) -> None:
        self.closed = True


class AsyncMockDatabase:
    def __init__(self, client: AsyncMockClient, name: str) -> None:
        self.client = client
        self.name = name
        self.sync = client.server.sync[name]
        self.mock_server = client.server

    def __getitem__(self, name: str) -> AsyncMockCollection:
        return AsyncMockCollection(self, name)

    @recorded
    def get_collection(self, name: str, **options: Any) -> AsyncMockCollection:
        return AsyncMockCollection(self, name, options)

    @recorded
    async def aggregate(self, pipeline: list[dict], *, session: Any = None, **_: Any) -> MockCursor:
        """Database-level aggregation: ``$documents`` as the first stage."""
        await asyncio.sleep(0)
        first = pipeline[0] if pipeline else {}
        if "$documents" not in first:
            raise NotImplementedError("only $documents pipelines run on the database")
        scratch = mongomock.MongoClient()["documents"]["documents"]
        if first["$documents"]:
            scratch.insert_many(copy.deepcopy(first["$documents"]))
        if session is not None and session.in_transaction:
            self.mock_server.check_fault(session)
        docs = list(scratch.aggregate(pipeline[1:])) if pipeline[1:] else list(scratch.find())
        if not any("_id" in doc for doc in first["$documents"]):
            for doc in docs:
                doc.pop("_id", None)  # added by the scratch collection, not by $documents
        return MockCursor(self.mock_server, lambda _sort, _limit: docs)

    @recorded
    async def command(self, command: str | dict, **_: Any) -> dict[str, Any]:
        await asyncio.sleep(0)
        name = command if isinstance(command, str) else next(iter(command))
        if self.client.server.down:
            raise ServerSelectionTimeoutError("mock server is down")
        if name == "ping":
            return {"ok": 1.0}
        if name == "hello":
            hello: dict[str, Any] = {"ok": 1.0, "isWritablePrimary": True, "maxWireVersion": 21}
            if self.client.server.topology == "replicaSet":
                hello["setName"] = "rs0"
            elif self.client.server.topology == "sharded":
                hello["msg"] = "isdbgrid"
            return hello
        raise NotImplementedError(f"command {name!r} is not emulated")


class MockSession:
    def __init__(self, server: MockServer, snapshot: bool = False) -> None:
        self.server = server
        self.mock_server = server
        self.snapshot = snapshot
        self.active = False
        self.committed = False  # the last transaction committed (a retried commit is a no-op)
        self.undo: list[tuple[str, Any, Any]] = []
        self.ended = False

    @property
    @recorded
    def in_transaction(self) -> bool:
        return self.active

    @recorded
    async def start_transaction(self, **_: Any) -> None:
        await asyncio.sleep(0)
        if self.snapshot:
            raise InvalidOperation("Transactions are not supported in snapshot sessions")
        if self.active:
            raise InvalidOperation("Transaction already in progress")
        self.active = True
        self.committed = False
        self.undo = []

    @recorded
    async def commit_transaction(self) -> None:
        await asyncio.sleep(0)
        if not self.active:
            if self.committed:  # a retry after a lost reply: MongoDB answers ok
                return
            raise InvalidOperation("No transaction started")
        faults = self.server.faults
        kind = faults.draw(commit=True) if faults is not None else None
        if kind == "unknown_commit":
            if faults is not None and faults.random.random() < 0.5:
                self._finish()  # committed, but the reply was lost
                self.committed = True
            raise fault_error(kind)
        if kind is not None:
            _apply_undo(self.undo)  # the transaction was aborted by the failure
            self._finish()
            raise fault_error(kind)
        self._finish()
        self.committed = True

    @recorded
    async def abort_transaction(self) -> None:
        await asyncio.sleep(0)
        if not self.active:
            raise InvalidOperation("No transaction started")
        _apply_undo(self.undo)
        self._finish()

    def _finish(self) -> None:
        self.active = False
        self.undo = []
        if self.server.writer is self:
            self.server.writer = None

    @recorded
    async def end_session(self) -> None:
        if self.active:
            await self.abort_transaction()
        self.ended = True

    def writing(self) -> None:
        """Called before a write in this session's transaction: one writer at a time."""
        self.server.check_fault(self)
        writer = self.server.writer
        if writer is not None and writer is not self:
            self.server.conflicts += 1
            raise OperationFailure(
                "WriteConflict error: this operation conflicted with another operation",
                112,
                {"errorLabels": ["TransientTransactionError"], "code": 112},
            )
        self.server.writer = self


def _apply_undo(undo: list[tuple[str, Any, Any]]) -> None:
    for action, collection, value in reversed(undo):
        if action == "delete":
            collection.delete_one({"_id": value})
        else:
            for doc in value:
                collection.replace_one({"_id": doc["_id"]}, copy.deepcopy(doc), upsert=True)


class MockCursor:
    def __init__(self, server: MockServer, produce: Any) -> None:
        self.mock_server = server
        self._produce = produce  # (sort, limit) -> list of documents
        self._sort: list[tuple[str, int]] | None = None
        self._limit = 0

    @recorded
    def sort(self, keys: list[tuple[str, int]]) -> MockCursor:
        self._sort = list(keys)
        return self

    @recorded
    def limit(self, count: int) -> MockCursor:
        self._limit = count
        return self

    @recorded
    def max_time_ms(self, max_time_ms: int | None) -> MockCursor:
        return self

    @recorded
    async def to_list(self, length: int | None = None) -> list[dict[str, Any]]:
        await asyncio.sleep(0)
        docs = self._produce(self._sort, self._limit)
        return docs if length is None else docs[:length]

    async def __aiter__(self) -> AsyncIterator[dict[str, Any]]:
        for doc in await self.to_list():
            yield doc


class AsyncMockCollection:
    def __init__(
        self, database: AsyncMockDatabase, name: str, options: dict[str, Any] | None = None
    ) -> None:
        self.database = database
        self.name = name
        self.options = options or {}  # read_preference... (recorded with each query)
        self.sync = database.sync[name]
        self.mock_server = database.client.server

    @recorded
    def with_options(self, **options: Any) -> AsyncMockCollection:
        return AsyncMockCollection(self.database, self.name, {**self.options, **options})

    # -- transactions -------------------------------------------------------------------------

    def _read(self, session: Any) -> Any:
        if session is not None and session.in_transaction:
            self.mock_server.check_fault(session)
        return self.database.client.server.view(self.sync, session)

    async def _outside(self, session: MockSession | None) -> None:
        if session is None or not session.in_transaction:
            await self.mock_server.wait_for_writer(self.sync, session)

    def _write(self, session: MockSession | None, filter_: dict | None) -> MockSession | None:
        """Check the writer turn; snapshot the documents the write may change, for an abort."""
        if session is None or not session.in_transaction:
            return None
        session.writing()
        if filter_ is not None:
            before = [copy.deepcopy(doc) for doc in self.sync.find(filter_)]
            session.undo.append(("restore", self.sync, before))
        return session

    @staticmethod
    def _inserted(session: MockSession | None, collection: Any, doc_id: Any) -> None:
        if session is not None and doc_id is not None:
            session.undo.append(("delete", collection, doc_id))

    # -- reads --------------------------------------------------------------------------------

    @recorded
    def find(
        self,
        filter_: dict | None = None,
        projection: dict | None = None,
        *,
        sort: list | None = None,
        limit: int = 0,
        session: Any = None,
    ) -> MockCursor:
        def produce(cursor_sort: list | None, cursor_limit: int) -> list[dict[str, Any]]:
            note_query(
                self.mock_server,
                {
                    "collection": self.name,
                    "filter": filter_ or {},
                    "sort": cursor_sort or sort,
                    "limit": cursor_limit or limit,
                    "read_preference": str(self.options.get("read_preference", "")),
                },
            )
            cursor = self._read(session).find(filter_ or {}, projection)
            if cursor_sort or sort:
                cursor = cursor.sort(cursor_sort or sort)
            if cursor_limit or limit:
                cursor = cursor.limit(cursor_limit or limit)
            return list(cursor)

        return MockCursor(self.mock_server, produce)

    @recorded
    async def find_one(
        self,
        filter_: dict | None = None,
        projection: dict | None = None,
        *,
        sort: list | None = None,
        session: Any = None,
    ) -> dict[str, Any] | None:
        docs = await self.find(filter_, projection, sort=sort, limit=1, session=session).to_list()
        return docs[0] if docs else None

    @recorded
    async def count_documents(self, filter_: dict, *, session: Any = None, **_: Any) -> int:
        await asyncio.sleep(0)
        note_query(self.mock_server, {"collection": self.name, "filter": filter_, "count": True})
        return self._read(session).count_documents(filter_)

    @recorded
    async def estimated_document_count(self, **_: Any) -> int:
        await asyncio.sleep(0)
        return self.sync.estimated_document_count()

    @recorded
    async def aggregate(
        self, pipeline: list[dict], *, session: Any = None, **options: Any
    ) -> MockCursor:
        await asyncio.sleep(0)
        note_query(self.mock_server, {"collection": self.name, "pipeline": pipeline})
        if self.mock_server.time_out_reads and "maxTimeMS" in options:
            raise ExecutionTimeout("operation exceeded time limit", 50, {"code": 50})
        docs = list(self._read(session).aggregate(pipeline))
        return MockCursor(self.mock_server, lambda _sort, _limit: docs)

    # -- writes -------------------------------------------------------------------------------

    @recorded
    async def insert_one(self, doc: dict, *, session: Any = None) -> Any:
        await asyncio.sleep(0)
        await self._outside(session)
        active = self._write(session, None)
        result = self.sync.insert_one(doc)
        self._inserted(active, self.sync, result.inserted_id)
        return result

    @recorded
    async def update_one(
        self, filter_: dict, update: dict, *, upsert: bool = False, session: Any = None
    ) -> Any:
        await asyncio.sleep(0)
        await self._outside(session)
        lost = self.mock_server.outside_fault(self.sync, session)
        active = self._write(session, filter_)
        result = self.sync.update_one(filter_, update, upsert=upsert)
        self._inserted(active, self.sync, result.upserted_id)
        if lost:
            raise write_fault(lost)
        return result

    @recorded
    async def update_many(
        self, filter_: dict, update: dict, *, upsert: bool = False, session: Any = None
    ) -> Any:
        await asyncio.sleep(0)
        await self._outside(session)
        active = self._write(session, filter_)
        result = self.sync.update_many(filter_, update, upsert=upsert)
        self._inserted(active, self.sync, result.upserted_id)
        return result

    @recorded
    async def find_one_and_update(
        self,
        filter_: dict,
        update: dict,
        *,
        projection: dict | None = None,
        upsert: bool = False,
        return_document: bool = False,
        session: Any = None,
    ) -> dict[str, Any] | None:
        await asyncio.sleep(0)
        await self._outside(session)
        active = self._write(session, filter_)
        existed = self.sync.count_documents(filter_) > 0
        doc = self.sync.find_one_and_update(
            filter_, update, projection, upsert=upsert, return_document=return_document
        )
        if not existed and upsert and active is not None:
            created = self.sync.find_one(filter_)
            self._inserted(active, self.sync, created and created["_id"])
        return doc

    @recorded
    async def delete_one(self, filter_: dict, *, session: Any = None) -> Any:
        await asyncio.sleep(0)
        await self._outside(session)
        self._write(session, filter_)
        return self.sync.delete_one(filter_)

    @recorded
    async def delete_many(self, filter_: dict, *, session: Any = None) -> Any:
        await asyncio.sleep(0)
        self._write(session, filter_)
        return self.sync.delete_many(filter_)

    @recorded
    async def insert_many(
        self, documents: list[dict], *, ordered: bool = True, session: Any = None
    ) -> InsertManyResult:
        await asyncio.sleep(0)
        await self._outside(session)
        lost = self.mock_server.outside_fault(self.sync, session)
        active = self._write(session, None)
        ids = []
        errors = []
        for index, doc in enumerate(documents):
            try:
                result = self.sync.insert_one(doc)
            except DuplicateKeyError as exc:
                errors.append({"index": index, "code": 11000, "errmsg": str(exc)})
                if ordered:
                    break
                continue
            self._inserted(active, self.sync, result.inserted_id)
            ids.append(result.inserted_id)
        if lost:
            raise write_fault(lost)
        if errors:
            raise BulkWriteError({"writeErrors": errors, "nInserted": len(ids)})
        return InsertManyResult(ids, True)

    @recorded
    async def bulk_write(
        self, requests: list[Any], *, ordered: bool = True, session: Any = None, **_: Any
    ) -> BulkWriteResult:
        """UpdateOne / UpdateMany requests (what the store sends)."""
        await asyncio.sleep(0)
        await self._outside(session)
        matched = modified = 0
        for request in requests:
            spec = request._filter, request._doc
            active = self._write(session, spec[0])
            many = type(request).__name__ == "UpdateMany"
            result = (self.sync.update_many if many else self.sync.update_one)(*spec)
            self._inserted(active, self.sync, result.upserted_id)
            matched += result.matched_count
            modified += result.modified_count
        return BulkWriteResult(
            {
                "nMatched": matched,
                "nModified": modified,
                "nInserted": 0,
                "nUpserted": 0,
                "nRemoved": 0,
                "upserted": [],
                "writeErrors": [],
                "writeConcernErrors": [],
            },
            True,
        )

    # -- administration -----------------------------------------------------------------------

    @recorded
    async def create_indexes(self, models: list[Any], **_: Any) -> list[str]:
        await asyncio.sleep(0)
        names = []
        for model in models:
            spec = dict(model.document)
            keys = list(spec.pop("key").items())
            names.append(self.sync.create_index(keys, **spec))
        return names

    @recorded
    async def index_information(self) -> dict[str, Any]:
        await asyncio.sleep(0)
        return self.sync.index_information()

    @recorded
    async def drop(self) -> None:
        await asyncio.sleep(0)
        self.sync.drop()
