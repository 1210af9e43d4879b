"""The MongoDB store (PyMongo's async API): several stateless server processes, one database.

Sequence numbers and units of work
    A counters document holds ``n``, the last committed sequence number. On a replica set or a
    sharded cluster every unit of work is one multi-document transaction whose first operation
    writes that document (``$inc`` of a turn counter). MongoDB lets only one open transaction
    write a document, so units of work of all server processes take turns: a unit that finds
    the counter taken gets a WriteConflict before it has done anything and simply starts again
    (with back-off). Inside its turn a unit numbers its versions n+1, n+2... and stores the last
    one in ``n`` in the same commit. Hence a sequence number is visible only once every smaller
    one is: reading ``n`` gives a snapshot that no later commit can change, which is what
    paging "as of a snapshot" needs (tests/contract/test_search_results.py). The price is that
    writes are serialised cluster-wide, like the embedded store's single writer; reads and
    searches are not. Within one process units also queue on an asyncio lock, so they wait
    in order instead of spinning on conflicts.

Standalone mongod (no transactions)
    Units run one at a time in this process; every write is applied at once and undone
    (compensated) if the unit fails. A crash in the middle of a unit can leave it half done, so
    the store reports ``supports_transactions = False``: transaction Bundles are refused and
    /metadata says so. Meant for development with one server process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from pymongo import AsyncMongoClient, ReturnDocument
from pymongo.errors import DocumentTooLarge, DuplicateKeyError, PyMongoError
from pymongo.read_concern import ReadConcern
from pymongo.write_concern import WriteConcern

from fhir_server.errors import FhirError
from fhir_server.store import cursors
from fhir_server.store.cursors import decode_history, encode_history
from fhir_server.store.keys import param_key
from fhir_server.store.mongo.config import MongoConfig, parse_url
from fhir_server.store.mongo.documents import (
    COUNTERS,
    META,
    OPEN_END,
    SCHEMA_VERSION,
    SEQUENCE_ID,
    VERSIONS,
    index_entries,
    sort_field,
    stored_version,
    version_document,
    version_indexes,
)
from fhir_server.store.mongo.filters import keys_filter, one_or_in
from fhir_server.store.mongo.search import Searcher
from fhir_server.store.protocol import (
    CommitListener,
    HistoryPage,
    IndexRows,
    StoredVersion,
    VersionConflict,
)
from fhir_server.store.query import Query, SearchPage

log = logging.getLogger(__name__)
_BODY = {"x": 0, "o": 0}  # projection: a version without its index
TURN_TIMEOUT_S = 30.0  # longest wait for the writer turn before the unit fails


class MongoUnavailable(RuntimeError):
    """MongoDB cannot be reached or used (start-up error with the reason)."""


class _Unit:
    """One unit of work: inside a transaction (``session``) or compensated on standalone."""

    def __init__(self, store: MongoStore, session: Any, last_seq: int) -> None:
        self.store = store
        self.session = session
        self.last_seq = last_seq  # the last sequence number allocated so far
        self.first_seq: int | None = None
        self.written: list[StoredVersion] = []
        self.undo: list[tuple[str, Any, dict[str, Any]]] = []  # standalone only

    async def _seq(self) -> int:
        if self.session is not None:  # our turn: numbers follow the counter, committed with it
            self.last_seq += 1
        else:
            doc = await self.store._counters.find_one_and_update(
                {"_id": SEQUENCE_ID}, {"$inc": {"n": 1}}, return_document=ReturnDocument.AFTER
            )
            self.last_seq = doc["n"]
        if self.first_seq is None:
            self.first_seq = self.last_seq
            if self.session is None:  # visible at once: keep it out of snapshots until done
                self.store._inflight_first = self.last_seq
        return self.last_seq

    async def current(self, type_: str, id_: str) -> StoredVersion | None:
        return await self.store._current(type_, id_, self.session)

    async def search_ids(self, query: Query, limit: int) -> list[tuple[str, str]]:
        searcher = self.store._searcher(OPEN_END - 1, self.session)  # now, with own writes
        return await searcher.keys(query, limit)

    async def create_many(self, items: list[tuple[StoredVersion, IndexRows]]) -> None:
        for version, index in items:  # each is one insert; MongoDB batches them on the wire
            await self.write(version, index, 0)

    async def write(
        self,
        version: StoredVersion,
        index: IndexRows | None,
        expected_previous: int | None,
        *,
        fresh: bool = False,  # the unique index guards creates anyway
    ) -> StoredVersion:
        versions = self.store._versions
        head = await versions.find_one(
            {"t": version.type, "i": version.id},
            {"_id": 1, "v": 1},
            sort=[("v", -1)],
            session=self.session,
        )
        current_version = head["v"] if head else None
        if expected_previous is not None and (current_version or 0) != expected_previous:
            raise VersionConflict(current_version)
        seq = await self._seq()
        if head is not None:
            # every open version of the resource (normally one; more only after a crash on a
            # standalone server, which this repairs)
            await self._update_many(
                {"t": version.type, "i": version.id, "u": OPEN_END},
                {"u": seq, "ut": version.last_updated},
            )
        doc = version_document(version, seq, index)
        try:
            result = await versions.insert_one(doc, session=self.session)
        except DuplicateKeyError as exc:  # another writer created this version first
            raise VersionConflict(current_version) from exc
        except DocumentTooLarge as exc:
            raise FhirError(
                413,
                "too-costly",
                "the resource with its search index is larger than MongoDB's 16 MB document limit",
            ) from exc
        if self.session is None:
            self.undo.append(("delete", result.inserted_id, {}))
        stored = StoredVersion(
            version.type,
            version.id,
            version.version,
            version.last_updated,
            version.deleted,
            version.method,
            version.body,
            seq,
        )
        self.written.append(stored)
        return stored

    async def _update_many(self, filter_: dict[str, Any], values: dict[str, Any]) -> None:
        versions = self.store._versions
        if self.session is None:  # remember the old values, to undo
            old = await versions.find(filter_, {field: 1 for field in values}).to_list(None)
            for doc in old:
                self.undo.append(("set", doc["_id"], {f: doc.get(f) for f in values}))
            if not old:
                return
            filter_ = {"_id": one_or_in([doc["_id"] for doc in old])}
        await versions.update_many(filter_, {"$set": values}, session=self.session)

    async def add_index_rows(self, version: StoredVersion, index: IndexRows) -> None:
        entries, sort_values = index_entries(version.type, index)
        if not entries:
            return
        filter_ = {"t": version.type, "i": version.id, "s": version.seq, "u": OPEN_END, "d": False}
        versions = self.store._versions
        if self.session is None:
            old = await versions.find_one(filter_, {"x": 1, "o": 1})
            if old is None:
                return
            self.undo.append(("set", old["_id"], {"x": old.get("x"), "o": old.get("o")}))
        update: dict[str, Any] = {"$push": {"x": {"$each": entries}}}
        if sort_values:
            update["$min"] = {f"o.{k}.l": v["l"] for k, v in sort_values.items()}
            update["$max"] = {f"o.{k}.h": v["h"] for k, v in sort_values.items()}
        await versions.update_one(filter_, update, session=self.session)

    async def rollback(self) -> None:
        """Standalone only: undo this unit's writes, newest first."""
        versions = self.store._versions
        for action, doc_id, values in reversed(self.undo):
            if action == "delete":
                await versions.delete_one({"_id": doc_id})
            else:
                unset = {k: "" for k, v in values.items() if v is None}
                update: dict[str, Any] = {}
                if unset:
                    update["$unset"] = unset
                kept = {k: v for k, v in values.items() if v is not None}
                if kept:
                    update["$set"] = kept
                await versions.update_one({"_id": doc_id}, update)


class MongoStore:
    name = "mongodb"

    def __init__(
        self, url: str, *, client_factory: Callable[..., Any] | None = None, **_: object
    ) -> None:
        self.config: MongoConfig = parse_url(url)
        self._client_factory = client_factory or AsyncMongoClient
        self._client: Any = None
        self._db: Any = None
        self._versions: Any = None
        self._counters: Any = None
        self._meta: Any = None
        self.supports_transactions = False  # known after open(): needs a replica set
        self.topology = "unknown"
        self._lock = asyncio.Lock()
        self._inflight_first: int | None = None  # standalone: first seq of the running unit
        self._listeners: list[CommitListener] = []
        self._write_concern = WriteConcern()

    # -- lifecycle ----------------------------------------------------------------------------

    async def open(self) -> None:
        config = self.config
        self._client = self._client_factory(config.uri, **dict(config.driver_options))
        try:
            hello = await self._client.admin.command("hello")
        except PyMongoError as exc:
            await self._abandon()
            raise MongoUnavailable(
                f"cannot reach MongoDB at {config.display}: {exc}. Check that the server runs, "
                "the hosts, replicaSet and tls options of the store URL, and the network"
            ) from exc
        if hello.get("msg") == "isdbgrid":
            self.topology = "sharded"
        elif hello.get("setName"):
            self.topology = "replicaSet"
        else:
            self.topology = "standalone"
        self.supports_transactions = self.topology != "standalone"
        # a 2xx answer means durable: journaled, on a majority when there is a replica set
        # (unless the URL chose its own write concern with w=...)
        durable = WriteConcern(w="majority" if self.supports_transactions else 1, j=True)
        if self._client.write_concern.document:
            durable = self._client.write_concern
        self._write_concern = durable
        self._db = self._client.get_database(config.database, write_concern=durable)
        self._versions = self._db[VERSIONS]
        self._counters = self._db[COUNTERS]
        self._meta = self._db[META]
        try:
            await self._prepare()
        except MongoUnavailable:
            await self._abandon()
            raise
        except PyMongoError as exc:
            await self._abandon()
            raise MongoUnavailable(
                f"cannot prepare MongoDB database {config.database}: {exc}"
            ) from exc
        if not self.supports_transactions:
            log.warning(
                "MongoDB at %s is a standalone server: transaction Bundles are disabled; "
                "use a replica set (docs/deploy.md)",
                config.display,
            )

    async def _prepare(self) -> None:
        """Indexes, the counter and the schema version; idempotent, so every replica runs it."""
        await self._versions.create_indexes(
            version_indexes(unique_versions=self.topology != "sharded")
        )
        await self._counters.update_one(
            {"_id": SEQUENCE_ID}, {"$setOnInsert": {"n": 0, "w": 0}}, upsert=True
        )
        await self._meta.update_one(
            {"_id": "schema_version"}, {"$setOnInsert": {"value": str(SCHEMA_VERSION)}}, upsert=True
        )
        found = await self._meta.find_one({"_id": "schema_version"})
        if found is None or int(found["value"]) != SCHEMA_VERSION:
            raise MongoUnavailable(
                f"database {self.config.database} has schema version "
                f"{found and found['value']}; this server uses {SCHEMA_VERSION}"
            )

    async def _abandon(self) -> None:
        """A failed start-up: release the client (the server stops, close() is not called)."""
        with contextlib.suppress(PyMongoError):
            await self._client.close()
        self._client = None

    async def close(self) -> None:
        if self._client is None:
            return
        async with self._lock:
            if self.config.drop_on_close:
                with contextlib.suppress(PyMongoError):
                    await self._client.drop_database(self.config.database)
            await self._client.close()
            self._client = None

    async def health(self) -> dict[str, Any]:
        status: dict[str, Any] = {
            "store": "mongodb",
            "database": self.config.database,
            "topology": self.topology,
            "transactions": self.supports_transactions,
        }
        try:
            await self._db.command("ping")
            status["latestSeq"] = await self.latest_seq()
        except PyMongoError as exc:
            return {**status, "status": "unavailable", "error": type(exc).__name__}
        return {**status, "status": "ok"}

    # -- reads --------------------------------------------------------------------------------

    async def _current(self, type_: str, id_: str, session: Any = None) -> StoredVersion | None:
        doc = await self._versions.find_one(
            {"t": type_, "i": id_}, _BODY, sort=[("v", -1)], session=session
        )
        return stored_version(doc) if doc else None

    async def current(self, type_: str, id_: str) -> StoredVersion | None:
        return await self._current(type_, id_)

    async def version(self, type_: str, id_: str, version: int) -> StoredVersion | None:
        doc = await self._versions.find_one({"t": type_, "i": id_, "v": version}, _BODY)
        return stored_version(doc) if doc else None

    async def read_many(
        self, keys: list[tuple[str, str]], snapshot: int | None
    ) -> list[StoredVersion]:
        if not keys:
            return []
        at = snapshot if snapshot is not None else OPEN_END - 1
        types = tuple(dict.fromkeys(t for t, _ in keys))
        out: list[StoredVersion] = []
        for start in range(0, len(keys), 1000):
            filter_ = {
                **keys_filter(keys[start : start + 1000], types),
                "s": {"$lte": at},
                "u": {"$gt": at},
                "d": False,
            }
            docs = await self._versions.find(filter_, _BODY).to_list(None)
            out.extend(stored_version(doc) for doc in docs)
        return out

    def add_listener(self, listener: CommitListener) -> None:
        self._listeners.append(listener)

    async def current_versions(
        self, types: tuple[str, ...], after: str | None, limit: int
    ) -> tuple[list[StoredVersion], str | None]:
        filter_: dict[str, Any] = {"t": one_or_in(types), "u": OPEN_END, "d": False}
        if after:
            position = cursors.decode(after)
            last_type, last_id = position["t"], position["i"]
            filter_["$or"] = [{"t": {"$gt": last_type}}, {"t": last_type, "i": {"$gt": last_id}}]
        cursor = self._versions.find(filter_, _BODY).sort([("t", 1), ("i", 1)]).limit(limit)
        versions = [stored_version(doc) for doc in await cursor.to_list(None)]
        next_after = None
        if len(versions) == limit:
            next_after = cursors.encode({"t": versions[-1].type, "i": versions[-1].id})
        return versions, next_after

    async def log(self, type_: str, after_seq: int, limit: int) -> list[StoredVersion]:
        # bounded by the committed counter: a unit still running (standalone) or a version
        # above it is not read yet, so nothing below a version read can appear later
        upto = await self.latest_seq()
        if upto <= after_seq:
            return []
        cursor = (
            self._versions.find({"t": type_, "s": {"$gt": after_seq, "$lte": upto}}, _BODY)
            .sort([("s", 1)])
            .limit(limit)
        )
        return [stored_version(doc) for doc in await cursor.to_list(None)]

    async def count_current(self, types: tuple[str, ...]) -> int:
        return await self._versions.count_documents(
            {"t": one_or_in(types), "u": OPEN_END, "d": False}
        )

    async def drop_index_rows(self, params: list[tuple[str, str]]) -> None:
        keys = [param_key(t, code) for t, code in params]
        if not keys:
            return
        # idempotent, so it needs no transaction: after a crash it is simply run again
        await self._versions.update_many(
            {"x.p": {"$in": keys}},
            {
                "$pull": {"x": {"p": {"$in": keys}}},
                "$unset": {f"o.{sort_field(k)}": "" for k in keys},
            },
        )

    async def prune_snapshots(self, before_us: int) -> int:
        """Drop the index entries of versions superseded before the retention window: only
        snapshots older than it could still see them (their paging links then get 410)."""
        done = await self.oldest_snapshot()
        # the newest version written before the window (walks the s index from the newest end)
        older = await self._versions.find_one(
            {"lu": {"$lt": before_us}}, {"s": 1}, sort=[("s", -1)]
        )
        upto = min(older["s"] if older else 0, await self.latest_seq())
        if upto <= done:
            return done
        await self._versions.update_many(
            {"u": {"$gt": done, "$lte": upto}, "x": {"$exists": True}},
            {"$unset": {"x": "", "o": ""}},
        )
        await self.set_meta("pruned_upto", str(upto))
        return upto

    async def oldest_snapshot(self) -> int:
        return int(await self.get_meta("pruned_upto") or 0)

    async def get_meta(self, key: str) -> str | None:
        doc = await self._meta.find_one({"_id": key})
        return doc["value"] if doc else None

    async def set_meta(self, key: str, value: str | None) -> None:
        if value is None:
            await self._meta.delete_one({"_id": key})
        else:
            await self._meta.update_one({"_id": key}, {"$set": {"value": value}}, upsert=True)

    async def init_meta(self, key: str, value: str) -> str:
        # $setOnInsert on an upsert is atomic: of racing processes, one inserts, all read it
        await self._meta.update_one({"_id": key}, {"$setOnInsert": {"value": value}}, upsert=True)
        stored = await self.get_meta(key)
        assert stored is not None
        return stored

    async def latest_seq(self) -> int:
        doc = await self._counters.find_one({"_id": SEQUENCE_ID})
        latest = doc["n"] if doc else 0
        if self._inflight_first is not None:  # standalone: not yet complete
            latest = min(latest, self._inflight_first - 1)
        return latest

    async def history(
        self,
        type_: str | None,
        id_: str | None,
        since: int | None,
        at: tuple[int, int] | None,
        count: int,
        cursor: str | None,
    ) -> HistoryPage:
        filter_: dict[str, Any] = {}
        if type_ is not None:
            filter_["t"] = type_
        if id_ is not None:
            filter_["i"] = id_
        last_updated: dict[str, int] = {}
        if since is not None:
            last_updated["$gte"] = since
        if at is not None:  # versions current at some point in [at_low, at_high]
            last_updated["$lte"] = at[1]
            filter_["ut"] = {"$gt": at[0]}
        if last_updated:
            filter_["lu"] = last_updated
        if cursor is not None:
            filter_["s"] = {"$lt": decode_history(cursor)}
        docs = (
            await self._versions.find(filter_, _BODY)
            .sort([("s", -1)])
            .limit(count + 1)
            .to_list(None)
        )
        versions = [stored_version(doc) for doc in docs[:count]]
        next_cursor = encode_history(versions[-1].seq) if len(docs) > count else None
        return HistoryPage(versions, next_cursor)

    # -- search -------------------------------------------------------------------------------

    def _searcher(self, snapshot: int, session: Any = None) -> Searcher:
        return Searcher(self._versions, snapshot, self.config.staged_limit, session)

    async def search(self, query: Query) -> SearchPage:
        snapshot = query.snapshot if query.snapshot is not None else await self.latest_seq()
        return await self._searcher(snapshot).page(query)

    # -- units of work ------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def unit_of_work(self) -> AsyncIterator[_Unit]:
        async with self._lock:
            if self.supports_transactions:
                unit = await self._begin_turn()
                try:
                    yield unit
                except BaseException:
                    with contextlib.suppress(PyMongoError):
                        await unit.session.abort_transaction()
                    await unit.session.end_session()
                    raise
                await self._commit(unit)
            else:
                unit = _Unit(self, None, 0)
                try:
                    yield unit
                except BaseException:
                    await unit.rollback()
                    raise
                finally:
                    self._inflight_first = None
        if unit.written:
            for listener in self._listeners:
                try:
                    listener(unit.written)
                except Exception:  # a listener must never break the write path
                    log.exception("commit listener failed")

    async def _begin_turn(self) -> _Unit:
        """Start a transaction and take the writer turn (see the module docstring)."""
        deadline = time.monotonic() + TURN_TIMEOUT_S
        delay = 0.002
        while True:
            session = self._client.start_session()
            await session.start_transaction(
                read_concern=ReadConcern("snapshot"), write_concern=self._write_concern
            )
            try:
                counter = await self._counters.find_one_and_update(
                    {"_id": SEQUENCE_ID},
                    {"$inc": {"w": 1}},
                    return_document=ReturnDocument.AFTER,
                    session=session,
                )
                return _Unit(self, session, counter["n"])
            except PyMongoError as exc:
                with contextlib.suppress(PyMongoError):
                    await session.abort_transaction()
                await session.end_session()
                retry = exc.has_error_label("TransientTransactionError")
                if not retry or time.monotonic() > deadline:
                    raise
            await asyncio.sleep(delay * random.uniform(0.5, 1.5))
            delay = min(delay * 2, 0.1)

    async def _commit(self, unit: _Unit) -> None:
        session = unit.session
        try:
            if unit.first_seq is not None:
                await self._counters.update_one(
                    {"_id": SEQUENCE_ID}, {"$set": {"n": unit.last_seq}}, session=session
                )
            for attempt in range(3):
                try:
                    await session.commit_transaction()
                    break
                except PyMongoError as exc:
                    if attempt == 2 or not exc.has_error_label("UnknownTransactionCommitResult"):
                        raise
        except BaseException:
            with contextlib.suppress(PyMongoError):
                await session.abort_transaction()
            raise
        finally:
            await session.end_session()
