"""The MongoDB store (PyMongo's async API): several stateless server processes, one database.

Units of work: the body first, the turn last
    A unit of work's body (reads, searches, validation, write hooks) runs *before* anything is
    written: ``write`` only buffers the new version, and reads and searches through the unit see
    the buffered writes through an overlay (searches evaluate the buffered documents with the same
    filters, server-side, with ``$documents``). When the body ends, the unit's writes go to this
    process's commit queue (FIFO). One committer task per process takes everything queued and
    commits it as one group, in one MongoDB transaction that only does the writes:

    1. ``$inc`` of ``n`` in the counters document by the number of versions (this takes the
       *turn*: MongoDB lets one open transaction write a document, so groups of all processes
       take turns, and the transaction's snapshot starts here);
    2. re-check what the bodies decided on (a version expected by an update must still be the
       head: the supersede filter carries it; a conditional search must still find the same
       resources: it is re-run on the versions committed since its snapshot);
    3. one bulk update closing the previous versions, one ``insert_many`` for the new ones;
    4. commit (majority). MongoDB releases the counter's lock at the local commit, so other
       processes take the turn while this one waits for the majority acknowledgement.

    Versions get sequence numbers n+1, n+2... in queue order and ``n`` is the last one, so a
    reader that sees ``n`` sees every version up to ``n`` and none after: an exact snapshot.
    Transient errors (failover, WriteConflict, the transaction lifetime, an unknown commit
    result) make the committer run the whole transaction again, until the oldest unit's
    deadline; then the units fail with 503 and nothing is written. A genuine conflict (a head
    that moved, a conditional search that finds something new) fails only that unit (409).

    Across processes a lost turn is retried after a short jittered pause; a process whose oldest
    unit has waited longer than CLAIM_AFTER_S claims the next turn in the counters document, and
    the others leave the turn to a live claim that is not theirs (starvation-free).

Append-only records (AuditEvents, through ``create_many``)
    A unit that only creates brand-new resources never takes the turn: it reserves a range of
    sequence numbers with one atomic single-document update of the counters document (no
    transaction), announcing the range as in flight, inserts the documents in bulk, and removes
    the announcement. A search over those types takes its snapshot below any announced range,
    so it never sees such a document appear later.

Reads
    Searches, history pages and ``latest_seq`` run in a snapshot session (readConcern
    "snapshot", MongoDB 5.0+): majority-committed data at one point in time, consistent across
    shards and unaffected by index keys that concurrent writes move, and never a counter value a
    failover could roll back. Searches and counts carry ``maxTimeMS``.

Standalone mongod (no transactions, no snapshots)
    The committer applies a unit's writes one by one and undoes them (compensation) if one
    fails; ``latest_seq`` stays below a running unit. A crash in the middle of a unit can leave
    it half done, so the store reports ``supports_transactions = False``: transaction Bundles are
    refused and /metadata says so. Meant for development with one server process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from pymongo import AsyncMongoClient, ReadPreference, ReturnDocument, UpdateMany
from pymongo.errors import (
    BulkWriteError,
    ConnectionFailure,
    DocumentTooLarge,
    DuplicateKeyError,
    ExecutionTimeout,
    PyMongoError,
)
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
    STATS_ID,
    VERSIONS,
    index_entries,
    sort_field,
    stored_version,
    version_document,
    version_indexes,
)
from fhir_server.store.mongo.filters import any_keys_filter, keys_filter, one_or_in
from fhir_server.store.mongo.records import MongoRecords
from fhir_server.store.mongo.search import Searcher, timed_out
from fhir_server.store.protocol import (
    CommitListener,
    HistoryPage,
    IndexRows,
    StoredVersion,
    VersionConflict,
)
from fhir_server.store.query import Query, SearchPage

log = logging.getLogger(__name__)
APPEND_STATS_ID = "stats-append"  # live counts of append-only writes (outside the turn)
_BODY = {"x": 0, "o": 0}  # projection: a version without its index
CLAIM_AFTER_S = 0.2  # a process waiting longer than this claims the next turn
CLAIM_S = 2.0  # how long a claim holds
INFLIGHT_S = 60.0  # an announced append-only range older than this is ignored (a dead writer)
GROUP_MAX_VERSIONS = 2_000  # versions per group transaction (far below the 60 s lifetime)
RETRYABLE_LABELS = ("TransientTransactionError",)
UNKNOWN_COMMIT = "UnknownTransactionCommitResult"


class MongoUnavailable(RuntimeError):
    """MongoDB cannot be reached or used (start-up error with the reason)."""


class CommitConflict(FhirError, VersionConflict):
    """A unit's writes no longer fit the database when its turn came (409)."""

    def __init__(self, message: str, current_version: int | None = None) -> None:
        FhirError.__init__(self, 409, "conflict", message)
        self.current_version = current_version


def _deadline_error(seconds: float) -> FhirError:
    return FhirError(
        503,
        "transient",
        f"MongoDB did not accept the write within {seconds:g} s (a failover or heavy write "
        "load); nothing was written, retry",
        headers={"Retry-After": "1"},
    )


def _transient_write(exc: BaseException) -> bool:
    """A write outside a transaction that failed on a failover or a lost connection (what
    escapes PyMongo's own single retry of a retryable write)."""
    return isinstance(exc, ConnectionFailure) or (
        isinstance(exc, PyMongoError)
        and any(exc.has_error_label(label) for label in ("RetryableWriteError", *RETRYABLE_LABELS))
    )


def _retryable(exc: BaseException) -> bool:
    return isinstance(exc, PyMongoError) and any(
        exc.has_error_label(label) for label in RETRYABLE_LABELS
    )


@dataclass(slots=True)
class _Write:
    version: StoredVersion
    index: IndexRows | None
    expected: int | None  # version the body based the write on (None: whatever is there)
    chained: bool = False  # follows an earlier write of the same resource in the unit


@dataclass(slots=True)
class _Check:
    """A search whose result the body acted upon (conditional interactions)."""

    query: Query
    found: frozenset[tuple[str, str]]
    since: int  # the snapshot it ran at


@dataclass(slots=True)
class _Pending:
    """A unit waiting in the commit queue."""

    unit: _Unit
    future: asyncio.Future
    deadline: float
    queued: float = field(default_factory=time.monotonic)


class _Unit:
    """One unit of work: the body's reads see its buffered writes; nothing is written until the
    unit is committed (store.py module docstring)."""

    def __init__(self, store: MongoStore) -> None:
        self.store = store
        self.writes: list[_Write] = []
        self.heads: dict[tuple[str, str], StoredVersion] = {}  # overlay: last buffered version
        self.appended: list[tuple[StoredVersion, IndexRows]] = []  # create_many
        self.index_adds: list[tuple[StoredVersion, IndexRows]] = []
        self.checks: list[_Check] = []
        self.written: list[StoredVersion] = []  # after commit, with sequence numbers
        self.serialized = False  # holds the store's conditional lock (search_ids)
        self.revived: set[tuple[str, str]] = set()  # deleted resources the body read

    @property
    def empty(self) -> bool:
        return not (self.writes or self.appended or self.index_adds)

    @property
    def append_only(self) -> bool:
        return bool(self.appended) and not (self.writes or self.index_adds)

    async def current(self, type_: str, id_: str) -> StoredVersion | None:
        buffered = self.heads.get((type_, id_))
        if buffered is not None:
            return buffered
        found = await self.store._current(type_, id_, primary=True)
        if found is not None and found.deleted:
            self.revived.add((type_, id_))  # a write now brings it back (statistics)
        return found

    def overlay(self) -> list[dict[str, Any]]:
        """The buffered heads as version documents a search can evaluate (valid at any
        snapshot: s 0, never superseded)."""
        indexes = {(w.version.type, w.version.id): w.index for w in self.writes}
        return [version_document(v, 0, indexes.get(key)) for key, v in self.heads.items()]

    async def search_ids(self, query: Query, limit: int) -> list[tuple[str, str]]:
        store = self.store
        task = asyncio.current_task()
        if not self.serialized and store._conditional_owner is not task:
            # conditional units of this process run one after the other (a unit opened inside
            # one, by the same task, does not wait for it)
            await store._conditional.acquire()
            store._conditional_owner = task
            self.serialized = True
            await store._barrier()  # and see every unit queued before them
        since = await self.store.latest_seq(query.types)
        searcher = self.store._searcher(since, overlay=self.overlay() if self.heads else None)
        found = await searcher.keys(query, limit)
        self.checks.append(_Check(query, frozenset(found), since))
        return found

    async def create_many(self, items: list[tuple[StoredVersion, IndexRows]]) -> None:
        self.appended.extend(items)

    async def write(
        self,
        version: StoredVersion,
        index: IndexRows | None,
        expected_previous: int | None,
        *,
        fresh: bool = False,  # no lookup needed anyway: the commit checks heads
    ) -> StoredVersion:
        key = (version.type, version.id)
        buffered = self.heads.get(key)
        chained = False
        if buffered is not None:  # a second write of one resource in this unit
            if expected_previous is not None and buffered.version != expected_previous:
                raise VersionConflict(buffered.version)
            chained = True
        self.writes.append(_Write(version, index, expected_previous, chained))
        self.heads[key] = version
        return version

    async def add_index_rows(self, version: StoredVersion, index: IndexRows) -> None:
        self.index_adds.append((version, index))


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
        self._primary: Any = None  # versions, read from the primary (the bodies of units)
        self._counters: Any = None
        self._meta: Any = None
        self.supports_transactions = False  # known after open(): needs a replica set
        self.topology = "unknown"
        self._queue: list[_Pending] = []
        self._committer: asyncio.Task | None = None
        self._wake = asyncio.Event()
        self._conditional = asyncio.Lock()
        self._conditional_owner: asyncio.Task | None = None
        self._committing = False
        self._inflight: list[asyncio.Future] = []
        self._inflight_first: int | None = None  # standalone: first seq of the running unit
        self._listeners: list[CommitListener] = []
        self._write_concern = WriteConcern()
        self._token = uuid.uuid4().hex[:16]  # this process, in turn claims
        self.stats = {"groups": 0, "retries": 0, "conflicts": 0, "claims": 0, "units": 0}

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
        self._primary = self._versions.with_options(read_preference=ReadPreference.PRIMARY)
        self._counters = self._db.get_collection(COUNTERS, read_preference=ReadPreference.PRIMARY)
        self._meta = self._db.get_collection(META, read_preference=ReadPreference.PRIMARY)
        self.records = MongoRecords(self._db)  # the authorization server's shared state
        # bookkeeping of append-only units whose loss in a failover costs only a delay or an
        # estimate (a withdrawn announcement, statistics): acknowledged by the primary alone,
        # so an audited request waits for no more majority round trips than its own insert's
        self._bookkeeping = self._counters.with_options(write_concern=WriteConcern(w=1))
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
        """Indexes, the counters and the schema version; idempotent, so every replica runs it.

        The indexes are the same on every topology (the unique ``t_i_v`` fits the shard key
        ``{t: 1, i: "hashed"}``), so a database that moves from a replica set to a sharded
        cluster starts unchanged (docs/deploy.md, "Sharding")."""
        await self._meta.update_one(
            {"_id": "schema_version"}, {"$setOnInsert": {"value": str(SCHEMA_VERSION)}}, upsert=True
        )
        found = await self._meta.find_one({"_id": "schema_version"})
        if found is None or int(found["value"]) != SCHEMA_VERSION:
            raise MongoUnavailable(
                f"database {self.config.database} has schema version "
                f"{found and found['value']}; this server uses {SCHEMA_VERSION} "
                "(docs/deploy.md, 'Schema versions')"
            )
        await self._versions.create_indexes(version_indexes())
        await self.records.prepare()
        await self._counters.update_one(
            {"_id": SEQUENCE_ID}, {"$setOnInsert": {"n": 0, "f": []}}, upsert=True
        )
        await self._counters.update_one(
            {"_id": STATS_ID}, {"$setOnInsert": {"types": {}}}, upsert=True
        )

    async def _abandon(self) -> None:
        """A failed start-up: release the client (the server stops, close() is not called)."""
        with contextlib.suppress(PyMongoError):
            await self._client.close()
        self._client = None

    async def close(self) -> None:
        if self._client is None:
            return
        while self._queue or self._committing:  # let queued units finish
            await asyncio.sleep(0.01)
        if self._committer is not None:
            self._committer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._committer
            self._committer = None
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

    # -- sessions -----------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _reading(self) -> AsyncIterator[Any]:
        """A snapshot session (replica set / sharded), or none (standalone)."""
        if not self.supports_transactions:
            yield None
            return
        session = self._client.start_session(snapshot=True)
        try:
            yield session
        finally:
            await session.end_session()

    # -- reads --------------------------------------------------------------------------------

    async def _current(
        self, type_: str, id_: str, session: Any = None, primary: bool = False
    ) -> StoredVersion | None:
        collection = self._primary if primary else self._versions
        doc = await collection.find_one(
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
        types = tuple(dict.fromkeys(t for t, _ in keys))
        out: list[StoredVersion] = []
        async with self._reading() as session:
            at = snapshot if snapshot is not None else await self._safe_seq(types, session)
            for start in range(0, len(keys), 1000):
                filter_ = {
                    **keys_filter(keys[start : start + 1000], types),
                    "s": {"$lte": at},
                    "u": {"$gt": at},
                    "d": False,
                }
                docs = await self._versions.find(filter_, _BODY, session=session).to_list(None)
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
        cursor = self._versions.find(filter_, _BODY).sort([("t", 1), ("u", 1), ("i", 1)])
        versions = [stored_version(doc) for doc in await cursor.limit(limit).to_list(None)]
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
        """From the statistics the commits keep (no scan); when they say none, one index
        key confirms it (the statistics never decide that a type is empty on their own)."""
        counts = await self.type_counts()
        total = sum(max(0, counts.get(t, 0)) for t in types)
        if total > 0:
            return total
        live = {"t": one_or_in(types), "u": OPEN_END, "d": False}
        found = await self._versions.find_one(live, {"_id": 1}, sort=[("t", 1), ("i", 1)])
        if found is None:
            return 0
        return await self._versions.count_documents(live, maxTimeMS=self.config.max_time_ms)

    async def type_counts(self) -> dict[str, int]:
        """Live resources per type, kept by the commits (the statistics behind
        ``_total=estimate``)."""
        counts: dict[str, int] = {}
        docs = await self._counters.find({"_id": {"$in": [STATS_ID, APPEND_STATS_ID]}}).to_list(
            None
        )
        for doc in docs:
            for t, n in doc.get("types", {}).items():
                counts[t] = counts.get(t, 0) + int(n)
        return counts

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
        # versions superseded before the window: their ``ut`` is older (index u_superseded)
        older = await self._versions.find_one(
            {"u": {"$lt": OPEN_END}, "x": {"$exists": True}, "ut": {"$lt": before_us}},
            {"u": 1},
            sort=[("u", -1)],
        )
        upto = min(older["u"] if older else 0, await self.latest_seq())
        now_ms = int(time.time() * 1000)
        await self._counters.update_one(  # forget announced ranges of dead writers
            {"_id": SEQUENCE_ID}, {"$pull": {"f": {"e": {"$lt": now_ms}}}}
        )
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

    async def latest_seq(self, types: tuple[str, ...] | None = None) -> int:
        async with self._reading() as session:
            return await self._safe_seq(types, session)

    async def _safe_seq(self, types: tuple[str, ...] | None, session: Any) -> int:
        """The newest snapshot: ``n``, or below an append-only range still in flight that holds
        documents of ``types`` (None: any type)."""
        doc = await self._counters.find_one({"_id": SEQUENCE_ID}, session=session)
        latest = doc["n"] if doc else 0
        if self._inflight_first is not None:  # standalone: not yet complete
            latest = min(latest, self._inflight_first - 1)
        now_ms = int(time.time() * 1000)
        for entry in (doc or {}).get("f") or ():
            if entry.get("e", 0) < now_ms:
                continue
            if types is None or set(entry.get("t", ())) & set(types):
                latest = min(latest, entry["lo"] - 1)
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
        async with self._reading() as session:
            if cursor is not None:
                filter_["s"] = {"$lt": decode_history(cursor)}
            elif id_ is None:  # the first page of a type or system history: a snapshot
                top = await self._safe_seq((type_,) if type_ else None, session)
                filter_["s"] = {"$lte": top}
            try:
                docs = (
                    await self._versions.find(filter_, _BODY, session=session)
                    .sort([("s", -1)])
                    .limit(count + 1)
                    .max_time_ms(self.config.max_time_ms)
                    .to_list(None)
                )
            except ExecutionTimeout as exc:
                raise timed_out(self.config.max_time_ms, "the history page") from exc
        versions = [stored_version(doc) for doc in docs[:count]]
        next_cursor = encode_history(versions[-1].seq) if len(docs) > count else None
        return HistoryPage(versions, next_cursor)

    # -- search -------------------------------------------------------------------------------

    def _searcher(
        self, snapshot: int, session: Any = None, overlay: list[dict[str, Any]] | None = None
    ) -> Searcher:
        return Searcher(
            self._versions,
            snapshot,
            self.config.staged_limit,
            session,
            max_time_ms=self.config.max_time_ms,
            overlay=overlay,
            database=self._db,
            type_counts=self.type_counts,
        )

    async def search(self, query: Query) -> SearchPage:
        async with self._reading() as session:
            snapshot = query.snapshot
            if snapshot is None:
                snapshot = await self._safe_seq(query.types, session)
            return await self._searcher(snapshot, session).page(query)

    # -- units of work ------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def unit_of_work(self) -> AsyncIterator[_Unit]:
        unit = _Unit(self)
        try:
            yield unit  # the body: nothing is written yet
            await self._finish(unit)
        finally:
            if unit.serialized:
                self._conditional_owner = None
                self._conditional.release()

    async def _barrier(self) -> None:
        """Wait until the units queued so far are committed (or failed)."""
        waiting = [*self._inflight, *(item.future for item in self._queue)]
        if waiting:
            await asyncio.gather(*waiting, return_exceptions=True)

    async def _finish(self, unit: _Unit) -> None:
        if unit.empty:
            return
        if unit.append_only:
            await self._append(unit)
        else:
            loop = asyncio.get_running_loop()
            pending = _Pending(
                unit, loop.create_future(), time.monotonic() + self.config.deadline_s
            )
            self._queue.append(pending)
            self._wake.set()
            if self._committer is None or self._committer.done():
                self._committer = loop.create_task(self._commit_loop())
            await pending.future  # raises the unit's error
        self.stats["units"] += 1
        for listener in self._listeners:
            try:
                listener(unit.written)
            except Exception:  # a listener must never break the write path
                log.exception("commit listener failed")

    # -- the committer ------------------------------------------------------------------------

    async def _commit_loop(self) -> None:
        while True:
            if not self._queue:
                self._wake.clear()
                await self._wake.wait()
                continue
            group: list[_Pending] = []
            size = 0
            while self._queue and (not group or size < GROUP_MAX_VERSIONS):
                item = self._queue.pop(0)
                group.append(item)
                size += len(item.unit.writes) + len(item.unit.appended)
            self._committing = True
            self._inflight = [item.future for item in group]
            try:
                if self.supports_transactions:
                    await self._commit_group(group)
                else:
                    for item in group:
                        try:
                            await self._commit_standalone(item)
                        except Exception as exc:  # this unit only
                            item.future.set_exception(exc)
            except asyncio.CancelledError:
                for item in group:
                    if not item.future.done():
                        item.future.cancel()
                raise
            except Exception as exc:  # every waiting unit must hear of it
                for item in group:
                    if not item.future.done():
                        item.future.set_exception(exc)
            finally:
                self._committing = False
                self._inflight = []
            for item in group:
                if not item.future.done():
                    item.future.set_result(None)

    async def _commit_group(self, group: list[_Pending]) -> None:
        """One transaction for the group, run again on transient errors until the deadline."""
        deadline = min(item.deadline for item in group)
        verify = False  # the first attempt trusts the supersede filters; a miss verifies
        delay = 0.001
        live = list(group)
        while live:
            if time.monotonic() > deadline:
                error = _deadline_error(self.config.deadline_s)
                for item in live:
                    item.future.set_exception(error)
                return
            waited = time.monotonic() - min(item.queued for item in live)
            try:
                outcome = await self._transaction(live, verify, claim=waited > CLAIM_AFTER_S)
            except _Refused as refused:  # a live claim of another process, or the turn taken
                self.stats["retries"] += 1
                if refused.claim_wanted:
                    await self._claim()
                await asyncio.sleep(delay * random.uniform(0.5, 1.5))
                delay = min(delay * 2, 0.05)
                continue
            except _Mismatch:
                verify = True
                self.stats["conflicts"] += 1
                continue
            except PyMongoError as exc:
                if not _retryable(exc):
                    raise
                self.stats["retries"] += 1
                if waited > CLAIM_AFTER_S:  # lost the turn for too long: claim the next one
                    await self._claim()
                await asyncio.sleep(delay * random.uniform(0.5, 1.5))
                delay = min(delay * 2, 0.05)
                continue
            failed, written = outcome
            for item in live:
                error = failed.get(id(item))
                if error is not None:
                    item.future.set_exception(error)
                else:
                    item.unit.written = written[id(item)]
            self.stats["groups"] += 1
            return

    async def _claim(self) -> None:
        now_ms = int(time.time() * 1000)
        with contextlib.suppress(PyMongoError):
            await self._counters.update_one(
                {
                    "_id": SEQUENCE_ID,
                    "$or": [{"c": None}, {"c": self._token}, {"ce": {"$lt": now_ms}}],
                },
                {"$set": {"c": self._token, "ce": now_ms + int(CLAIM_S * 1000)}},
            )
            self.stats["claims"] += 1

    async def _transaction(
        self, group: list[_Pending], verify: bool, claim: bool
    ) -> tuple[dict[int, BaseException], dict[int, list[StoredVersion]]]:
        total = sum(len(item.unit.writes) for item in group)
        # a create is version 1, which the unique t_i_v index guards; a "create" of another
        # version number has nothing to collide with, so its group checks heads first
        verify = verify or any(
            w.expected == 0 and w.version.version != 1 for item in group for w in item.unit.writes
        )
        session = self._client.start_session()
        try:
            await session.start_transaction(
                read_concern=ReadConcern("snapshot"),
                write_concern=self._write_concern,
                read_preference=ReadPreference.PRIMARY,
            )
            now_ms = int(time.time() * 1000)
            # 1. the turn: the first write of the transaction, so its snapshot starts here
            counter = await self._counters.find_one_and_update(
                {
                    "_id": SEQUENCE_ID,
                    "$or": [{"c": None}, {"c": self._token}, {"ce": {"$lt": now_ms}}],
                },
                {"$inc": {"n": total}, "$unset": {"c": "", "ce": ""}},
                projection={"n": 1},
                return_document=ReturnDocument.AFTER,
                session=session,
            )
            if counter is None:
                raise _Refused(claim_wanted=claim)
            seq = counter["n"] - total
            heads: dict[tuple[str, str], tuple[int, bool]] = {}
            if verify:
                heads = await self._heads(group, session)
            failed: dict[int, BaseException] = {}
            written: dict[int, list[StoredVersion]] = {}
            updates: list[Any] = []  # closes of expected versions: each must match one
            others: list[Any] = []  # other closes and index back-fills
            inserts: list[dict[str, Any]] = []
            expected_matches = 0
            pending_docs: dict[tuple[str, str], dict[str, Any]] = {}
            deltas: dict[str, int] = {}
            for item in group:
                unit = item.unit
                if unit.checks and (updates or others or inserts):  # checks see earlier units
                    if await self._flush(updates, others, inserts, session) < expected_matches:
                        raise _Mismatch()
                    updates, others, inserts, pending_docs = [], [], [], {}
                    expected_matches = 0
                try:
                    if unit.checks:
                        await self._run_checks(unit, session)
                    if verify:
                        _verify(unit, heads)
                except CommitConflict as conflict:
                    failed[id(item)] = conflict
                    continue
                versions: list[StoredVersion] = []
                for write in unit.writes:
                    seq += 1
                    v = write.version
                    key = (v.type, v.id)
                    earlier = pending_docs.get(key)
                    if earlier is not None:  # written by this group, not yet sent: close here
                        if (
                            not write.chained
                            and write.expected is not None
                            and earlier["v"] != write.expected
                        ):
                            raise _Mismatch()
                        earlier["u"], earlier["ut"] = seq, v.last_updated
                    elif write.chained or write.expected is None:
                        others.append(_close({"t": v.type, "i": v.id}, seq, v))
                    elif write.expected != 0:
                        close = {"t": v.type, "i": v.id, "v": write.expected}
                        updates.append(_close(close, seq, v))
                        expected_matches += 1
                    doc = version_document(v, seq, write.index)
                    inserts.append(doc)
                    pending_docs[key] = doc
                    versions.append(_with_seq(v, seq))
                    if verify:
                        heads[key] = (v.version, v.deleted)
                    _count_delta(deltas, v, write.expected, key in unit.revived)
                for version, index in unit.index_adds:
                    others.append(UpdateMany(*_index_update(version, index)))
                written[id(item)] = versions
            # 3. the writes
            if await self._flush(updates, others, inserts, session) < expected_matches:
                raise _Mismatch()
            if seq != counter["n"]:  # units that failed their checks leave no gap
                await self._counters.update_one(
                    {"_id": SEQUENCE_ID}, {"$set": {"n": seq}}, session=session
                )
            if deltas:
                await self._counters.update_one(
                    {"_id": STATS_ID},
                    {"$inc": {f"types.{t}": n for t, n in deltas.items()}},
                    session=session,
                )
            # 4. commit; an unknown result is retried (committing twice is a no-op)
            while True:
                try:
                    await session.commit_transaction()
                    break
                except PyMongoError as exc:
                    if not exc.has_error_label(UNKNOWN_COMMIT):
                        raise
                    self.stats["retries"] += 1
            return failed, written
        except (DuplicateKeyError, BulkWriteError) as exc:
            if _duplicate(exc):
                with contextlib.suppress(PyMongoError):
                    await session.abort_transaction()
                raise _Mismatch() from exc
            raise
        except DocumentTooLarge as exc:
            raise FhirError(
                413,
                "too-costly",
                "the resource with its search index is larger than MongoDB's 16 MB document limit",
            ) from exc
        finally:
            if session.in_transaction:
                with contextlib.suppress(PyMongoError):
                    await session.abort_transaction()
            await session.end_session()

    async def _flush(
        self, updates: list[Any], others: list[Any], inserts: list[dict[str, Any]], session: Any
    ) -> int:
        """Write a part of the group in the transaction; return how many of the expected
        versions ``updates`` closed (each must close one)."""
        matched = 0
        if updates:
            result = await self._versions.bulk_write(updates, ordered=True, session=session)
            matched = result.matched_count
        if others:
            await self._versions.bulk_write(others, ordered=True, session=session)
        if inserts:
            await self._versions.insert_many(inserts, ordered=True, session=session)
        return matched

    async def _heads(
        self, group: list[_Pending], session: Any
    ) -> dict[tuple[str, str], tuple[int, bool]]:
        keys = list({(w.version.type, w.version.id) for item in group for w in item.unit.writes})
        heads: dict[tuple[str, str], tuple[int, bool]] = {}
        for start in range(0, len(keys), 1000):
            docs = await self._versions.find(
                any_keys_filter(keys[start : start + 1000]),
                {"_id": 0, "t": 1, "i": 1, "v": 1, "d": 1},
                session=session,
            ).to_list(None)
            for doc in docs:
                key = (doc["t"], doc["i"])
                if key not in heads or heads[key][0] < doc["v"]:
                    heads[key] = (doc["v"], doc["d"])
        return heads

    async def _run_checks(self, unit: _Unit, session: Any) -> None:
        """The unit's conditional searches, again, on what was committed since they ran: a new
        match, or a change to a matched resource, is a conflict."""
        for check in unit.checks:
            searcher = self._searcher(OPEN_END - 1, session)
            newer = await searcher.keys(check.query, 2 + len(check.found), since=check.since)
            new = {key for key in newer if key not in check.found and key not in unit.heads}
            kept = [key for key in check.found if key not in unit.heads]
            changed: list[Any] = []
            if kept:
                changed = await self._versions.find(
                    {**any_keys_filter(kept), "u": OPEN_END, "s": {"$gt": check.since}},
                    {"_id": 0, "t": 1, "i": 1},
                    session=session,
                ).to_list(None)
            if new or changed:
                key = next(iter(new)) if new else (changed[0]["t"], changed[0]["i"])
                raise CommitConflict(
                    f"{key[0]}/{key[1]} changed while this request ran, so the search it "
                    "depended on would now find something else; nothing was written, retry"
                )

    # -- append-only records: no turn ---------------------------------------------------------

    async def _append(self, unit: _Unit) -> None:
        """Brand-new versions (AuditEvents) without the turn: reserve a range of sequence
        numbers, announced as in flight, insert, withdraw the announcement. A failover or a lost
        reply is retried until the write deadline (then 503), each step exactly once."""
        items = unit.appended
        k = len(items)
        types = sorted({v.type for v, _ in items})
        deadline = time.monotonic() + self.config.deadline_s
        n = await self._reserve(k, types, deadline)
        docs = []
        versions = []
        for offset, (version, index) in enumerate(items, start=1):
            docs.append(version_document(version, n + offset, index))
            versions.append(_with_seq(version, n + offset))
        try:
            await self._insert_appended(docs, n, types, deadline)
        except BaseException:
            with contextlib.suppress(PyMongoError):  # all or nothing: take back what went in
                await self._versions.delete_many(
                    {"s": {"$gte": n + 1, "$lte": n + k}, "t": one_or_in(types)}
                )
            with contextlib.suppress(PyMongoError):
                await self._withdraw(n, deadline)
            raise
        deltas: dict[str, int] = {}
        for v in versions:
            _count_delta(deltas, v, 0)
        # the events are durable (the insert's write concern): the statistics (not the group's
        # document: no WriteConflict with it; not retried, an $inc is not idempotent) and the
        # withdrawal go together, primary-acknowledged
        statistics = self._bookkeeping.update_one(
            {"_id": APPEND_STATS_ID},
            {"$inc": {f"types.{t}": c for t, c in deltas.items()}},
            upsert=True,
        )
        withdrawal = self._withdraw(n, deadline)
        for outcome in await asyncio.gather(statistics, withdrawal, return_exceptions=True):
            if isinstance(outcome, BaseException):  # the range expires after INFLIGHT_S anyway
                log.warning("append-only bookkeeping failed: %s", type(outcome).__name__)
        unit.written = versions

    async def _reserve(self, k: int, types: list[str], deadline: float) -> int:
        """Reserve ``k`` sequence numbers after the counter's ``n`` (returned), announced as in
        flight. The announcement carries a token of this unit, so a reservation whose reply was
        lost is found again instead of made twice."""
        token = uuid.uuid4().hex[:16]
        delay = 0.001
        while True:
            if time.monotonic() > deadline:
                raise _deadline_error(self.config.deadline_s)
            try:
                doc = await self._counters.find_one({"_id": SEQUENCE_ID}, {"n": 1, "f": 1})
                mine = [e for e in doc.get("f") or () if e.get("w") == token]
                if mine:  # an earlier attempt went through; its reply was lost
                    return mine[0]["lo"] - 1
                n = doc["n"]
                expires = int(time.time() * 1000 + INFLIGHT_S * 1000)
                entry = {"lo": n + 1, "hi": n + k, "t": types, "e": expires, "w": token}
                reserved = await self._counters.update_one(
                    {"_id": SEQUENCE_ID, "n": n}, {"$set": {"n": n + k}, "$push": {"f": entry}}
                )
            except PyMongoError as exc:
                if not _transient_write(exc):
                    raise
                self.stats["retries"] += 1
                await asyncio.sleep(delay * random.uniform(0.5, 1.5))
                delay = min(delay * 2, 0.05)
                continue
            if reserved.modified_count == 1:
                return n
            await asyncio.sleep(random.uniform(0, 0.002))  # another reservation came first

    async def _insert_appended(
        self, docs: list[dict[str, Any]], n: int, types: list[str], deadline: float
    ) -> None:
        """One unordered insert; after a failover or a lost reply the same documents again (the
        ones already in come back as duplicates of themselves)."""
        again = False
        delay = 0.001
        while True:
            try:
                await self._versions.insert_many(docs, ordered=False)
                return
            except BulkWriteError as exc:
                errors = exc.details.get("writeErrors", ())
                if again and errors and all(e.get("code") == 11000 for e in errors):
                    mine = {"s": {"$gte": n + 1, "$lte": n + len(docs)}, "t": one_or_in(types)}
                    if await self._versions.count_documents(mine) == len(docs):
                        return  # every document is in: the duplicates were this unit's own
                if _duplicate(exc):
                    raise CommitConflict("an appended resource id exists already") from exc
                raise
            except PyMongoError as exc:
                if not _transient_write(exc):
                    raise
                if time.monotonic() > deadline:
                    raise _deadline_error(self.config.deadline_s) from exc
                self.stats["retries"] += 1
                again = True
                await asyncio.sleep(delay * random.uniform(0.5, 1.5))
                delay = min(delay * 2, 0.05)

    async def _withdraw(self, n: int, deadline: float) -> None:
        """Withdraw the announcement of the range that starts after ``n`` (idempotent, so
        retried until the deadline)."""
        delay = 0.001
        while True:
            try:
                await self._bookkeeping.update_one(
                    {"_id": SEQUENCE_ID}, {"$pull": {"f": {"lo": n + 1}}}
                )
                return
            except PyMongoError as exc:
                if not _transient_write(exc) or time.monotonic() > deadline:
                    raise
                await asyncio.sleep(delay * random.uniform(0.5, 1.5))
                delay = min(delay * 2, 0.05)

    # -- standalone ---------------------------------------------------------------------------

    async def _commit_standalone(self, item: _Pending) -> None:
        unit = item.unit
        undo: list[tuple[str, Any, dict[str, Any]]] = []
        try:
            heads = await self._heads([item], None)
            _verify(unit, heads)
            if unit.checks:
                await self._run_checks(unit, None)
            k = len(unit.writes)
            doc = await self._counters.find_one_and_update(
                {"_id": SEQUENCE_ID}, {"$inc": {"n": k}}, return_document=ReturnDocument.AFTER
            )
            seq = doc["n"] - k
            self._inflight_first = seq + 1
            versions = []
            for write in unit.writes:
                seq += 1
                v = write.version
                old = await self._versions.find(
                    {"t": v.type, "i": v.id, "u": OPEN_END}, {"u": 1, "ut": 1}
                ).to_list(None)
                for found in old:
                    undo.append(("set", found["_id"], {"u": found.get("u"), "ut": found.get("ut")}))
                if old:
                    await self._versions.update_many(
                        {"_id": one_or_in([d["_id"] for d in old])},
                        {"$set": {"u": seq, "ut": v.last_updated}},
                    )
                try:
                    result = await self._versions.insert_one(version_document(v, seq, write.index))
                except DuplicateKeyError as exc:
                    raise CommitConflict(
                        f"{v.type}/{v.id} was changed concurrently; retry"
                    ) from exc
                undo.append(("delete", result.inserted_id, {}))
                versions.append(_with_seq(v, seq))
            for version, index in unit.index_adds:
                if not index_entries(version.type, index)[0]:
                    continue
                old_doc = await self._versions.find_one(
                    {"t": version.type, "i": version.id, "s": version.seq}, {"x": 1, "o": 1}
                )
                if old_doc is None:
                    continue
                undo.append(("set", old_doc["_id"], {"x": old_doc.get("x"), "o": old_doc.get("o")}))
                await self._versions.update_many(*_index_update(version, index))
            unit.written = versions
            deltas: dict[str, int] = {}
            for write in unit.writes:
                key = (write.version.type, write.version.id)
                _count_delta(deltas, write.version, write.expected, key in unit.revived)
            if deltas:
                await self._counters.update_one(
                    {"_id": STATS_ID}, {"$inc": {f"types.{t}": n for t, n in deltas.items()}}
                )
        except BaseException:
            for action, doc_id, values in reversed(undo):
                if action == "delete":
                    await self._versions.delete_one({"_id": doc_id})
                else:
                    unset = {k: "" for k, v in values.items() if v is None}
                    update: dict[str, Any] = {}
                    if unset:
                        update["$unset"] = unset
                    kept = {k: v for k, v in values.items() if v is not None}
                    if kept:
                        update["$set"] = kept
                    await self._versions.update_one({"_id": doc_id}, update)
            raise
        finally:
            self._inflight_first = None


class _Refused(Exception):
    """The counters document did not give the turn (a live claim of another process)."""

    def __init__(self, claim_wanted: bool) -> None:
        super().__init__("turn refused")
        self.claim_wanted = claim_wanted


class _Mismatch(Exception):
    """A supersede found fewer open versions than expected, or an insert a duplicate: some unit
    of the group conflicts; the group runs again with the heads verified first."""


def _duplicate(exc: BaseException) -> bool:
    if isinstance(exc, DuplicateKeyError):
        return True
    if isinstance(exc, BulkWriteError):
        return any(e.get("code") == 11000 for e in exc.details.get("writeErrors", ()))
    return False


def _verify(unit: _Unit, heads: dict[tuple[str, str], tuple[int, bool]]) -> None:
    """The unit's expected versions against the heads (updated by earlier units of the
    group); raise CommitConflict for the first that does not fit."""
    for write in unit.writes:
        v = write.version
        head = heads.get((v.type, v.id))
        current = head[0] if head else None
        if write.expected is None:
            continue
        if (current or 0) != write.expected:
            raise CommitConflict(
                f"{v.type}/{v.id} was changed concurrently (now version {current}); retry",
                current,
            )


def _with_seq(v: StoredVersion, seq: int) -> StoredVersion:
    return StoredVersion(v.type, v.id, v.version, v.last_updated, v.deleted, v.method, v.body, seq)


def _count_delta(
    deltas: dict[str, int], v: StoredVersion, expected: int | None, revived: bool = False
) -> None:
    """Live resources per type: +1 for a new or revived resource, -1 for a delete."""
    if v.deleted:
        deltas[v.type] = deltas.get(v.type, 0) - 1
    elif expected == 0 or v.version == 1 or revived:
        deltas[v.type] = deltas.get(v.type, 0) + 1


def _close(filter_: dict[str, Any], seq: int, v: StoredVersion) -> UpdateMany:
    """Close the open version the filter names: superseded by sequence number ``seq``."""
    return UpdateMany({**filter_, "u": OPEN_END}, {"$set": {"u": seq, "ut": v.last_updated}})


def _index_update(version: StoredVersion, index: IndexRows) -> tuple[dict, dict]:
    entries, sort_values = index_entries(version.type, index)
    filter_ = {"t": version.type, "i": version.id, "s": version.seq, "u": OPEN_END, "d": False}
    update: dict[str, Any] = {"$push": {"x": {"$each": entries}}}
    if sort_values:
        update["$min"] = {f"o.{k}.l": v["l"] for k, v in sort_values.items()}
        update["$max"] = {f"o.{k}.h": v["h"] for k, v in sort_values.items()}
    return filter_, update
