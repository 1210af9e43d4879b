"""The embedded store: one SQLite file in WAL mode, durable group commit, snapshot search.

Writes run one unit of work at a time on the event loop (each inside a SAVEPOINT of a shared
transaction); the COMMIT, which is where the fsync happens, runs in a thread while the next units
queue up, and every unit's caller waits until the commit that contains it is durable. Under load
many writes share one fsync (group commit) and a 2xx answer always means "on disk".
Reads use a second connection and see only committed data.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import sys
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from fhir_server.store.cursors import decode_history, encode_history
from fhir_server.store.keys import param_key
from fhir_server.store.protocol import (
    CommitListener,
    HistoryPage,
    IndexRows,
    StoredVersion,
    VersionConflict,
)
from fhir_server.store.query import (
    Hit,
    MissingPred,
    NearPred,
    Query,
    SearchPage,
    SortKey,
    first_ring,
    ring_search,
    with_radius,
)
from fhir_server.store.sqlite.batch import (
    CLOSE_INDEX,
    CLOSE_VERSIONS,
    MOVE_RESOURCES,
    NEW_RESOURCES,
    NEW_TEXT,
    NEW_VERSIONS,
    Batch,
    Head,
    apply,
    encode,
    install,
)
from fhir_server.store.sqlite.records import SqliteRecords
from fhir_server.store.sqlite.schema import (
    DDL,
    GEO_MIGRATION,
    INDEX_TABLES,
    OPEN_END,
    SCHEMA_VERSION,
    TEXT_COLUMNS,
    TEXT_MIGRATION,
    facet_term,
    geo_band,
)
from fhir_server.store.sqlite.search_sql import Compiler, sort_sentinel

log = logging.getLogger(__name__)
# The commit thread needs the GIL back after each SQLite step; while the event loop is busy it
# gets it only when the loop is made to drop it, after the interpreter's switch interval (5 ms by
# default). A batch waits for that twice, so the interval bounds how fast batches turn
# over: 0.2 ms gave about 30 % more creates per second (docs/benchmarks.md).
SWITCH_INTERVAL_S = 0.0002
SIZES_TTL_S = 600.0  # how long a counted clause size is trusted (it only steers plans)
SIZES_MAX = 20_000
_VERSION_COLUMNS = "r.type, r.id, v.version, v.last_updated, v.deleted, v.method, v.body, v.seq"


def _version(row: tuple) -> StoredVersion:
    return StoredVersion(
        type=row[0],
        id=row[1],
        version=row[2],
        last_updated=row[3],
        deleted=bool(row[4]),
        method=row[5],
        body=row[6],
        seq=row[7],
    )


def _packed(head: Head) -> tuple:
    """A head as a tuple of plain values. The garbage collector stops tracking such tuples, so
    a cache of many thousands costs it nothing; objects would be walked by every full
    collection (with 20k cached heads that took 10-20 ms, a pause on every request in flight)."""
    v = head.version
    return (head.rid, v.type, v.id, v.version, v.last_updated, v.deleted, v.method, v.body, v.seq)


def path_from_url(url: str) -> Path:
    parsed = urlparse(url)
    raw = unquote(parsed.path) if not parsed.netloc else unquote(parsed.netloc + parsed.path)
    if url.startswith("sqlite:///") and not raw.startswith("/"):
        raw = "/" + raw
    if url.startswith("sqlite://") and not url.startswith("sqlite:///"):
        raw = unquote(url[len("sqlite://") :])  # relative path
    if raw.startswith("//"):  # sqlite:////abs/path: POSIX would keep the double slash
        raw = "/" + raw.lstrip("/")
    return Path(raw)


class _Unit:
    """A unit of work: its writes go to the open batch (see batch.py); it runs SQL on the
    writer connection only when it must read its own or its batch's writes through SQL."""

    def __init__(self, store: SqliteStore, batch: Batch) -> None:
        self.store = store
        self.batch = batch
        self.mark = batch.mark()
        self.written_mark = len(batch.written)
        self.undo: list[tuple[tuple[str, str], Head | None]] = []  # heads this unit replaced
        self.savepoint = False

    async def sql(self) -> sqlite3.Connection:
        """The writer connection, with every write of the batch so far applied (this unit's
        inside a SAVEPOINT, so that a failure undoes only this unit)."""
        store, batch = self.store, self.batch
        inflight = store._inflight
        if inflight is not None:  # the connection is busy committing the previous batch
            await inflight.applied.wait()
        self.check()  # ...which may have failed, taking this batch with it
        conn = store._writer
        if not batch.began:
            conn.execute("BEGIN IMMEDIATE")
            batch.began = True
        if not self.savepoint:
            rows = batch.rows
            earlier = {kind: found[: self.mark[kind]] for kind, found in rows.items()}
            mine = {kind: found[self.mark[kind] :] for kind, found in rows.items()}
            apply(conn, encode(earlier))
            conn.execute("SAVEPOINT unit")
            self.savepoint = True
            batch.rows = mine
            self.mark = {kind: 0 for kind in rows}
        apply(conn, encode(batch.take_rows()))
        return conn

    def check(self) -> None:
        """A unit's batch completes only after the unit ends, unless a commit before it failed
        and took it along (see SqliteStore._fail_open_batch): then the unit fails too."""
        done = self.batch.done
        if done.done():
            raise done.exception() or RuntimeError("the batch ended before its unit")

    def rollback(self) -> None:
        batch = self.batch
        if batch.done.done():  # failed with an earlier commit: nothing of it is kept anyway
            return
        if self.savepoint:
            self.store._writer.execute("ROLLBACK TO unit")
            self.store._writer.execute("RELEASE unit")
        batch.truncate(self.mark)
        del batch.written[self.written_mark :]
        for key, head in reversed(self.undo):
            if head is None:
                batch.heads.pop(key, None)
            else:
                batch.heads[key] = head

    def release(self) -> None:
        self.check()
        if self.savepoint:
            self.store._writer.execute("RELEASE unit")

    async def current(self, type_: str, id_: str) -> StoredVersion | None:
        head = self.store._head(type_, id_)
        return head.version if head is not None else None

    async def search_ids(self, query: Query, limit: int) -> list[tuple[str, str]]:
        conn = await self.sql()
        compiler = Compiler(OPEN_END - 1, self.store._estimate(conn))
        sql = compiler.matching(query)
        rows = conn.execute(
            f"SELECT type, id FROM resources WHERE rid IN ({sql.text}) LIMIT ?",
            [*sql.params, limit],
        ).fetchall()
        return [(r[0], r[1]) for r in rows]

    async def write(
        self,
        version: StoredVersion,
        index: IndexRows | None,
        expected_previous: int | None,
        *,
        fresh: bool = False,
    ) -> StoredVersion:
        self.check()
        if fresh:
            return self.store._write(self, version, index, expected_previous, known_new=True)
        if (version.type, version.id) in self.batch.heads and self.batch.has_rows():
            await self.sql()  # its previous version's rows must be in place before closing them
        return self.store._write(self, version, index, expected_previous)

    async def create_many(self, items: list[tuple[StoredVersion, IndexRows]]) -> None:
        self.check()
        self.store._create_many(self, items)

    async def add_index_rows(self, version: StoredVersion, index: IndexRows) -> None:
        head = self.store._head(version.type, version.id)
        if head is not None and head.version.seq == version.seq and not head.version.deleted:
            self.store._add_index(self.batch, version.type, head.rid, version.seq, index)


class _UnitScope:
    """``async with store.unit_of_work() as unit``: one unit at a time joins the open batch;
    leaving the block waits until the batch is durable (or undoes the unit on an error). A
    class rather than @asynccontextmanager: it runs on every write, and the generator-based
    helper costs a few microseconds more."""

    __slots__ = ("store", "unit")

    def __init__(self, store: SqliteStore) -> None:
        self.store = store

    async def __aenter__(self) -> _Unit:
        store = self.store
        await store._lock.acquire()
        batch = store._open_batch
        if batch is None:
            batch = store._open_batch = Batch()
        self.unit = _Unit(store, batch)
        return self.unit

    async def __aexit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        store, unit = self.store, self.unit
        try:
            if exc_type is not None:
                unit.rollback()
            else:
                unit.release()
            store._schedule_commit()
        finally:
            store._lock.release()
        if exc_type is None:
            # shielded: a writer that gives up must not cancel the commit the others wait for
            await asyncio.shield(unit.batch.done)


class SqliteStore:
    name = "sqlite"
    supports_transactions = True
    plans_near_rings = True  # nearest-first searches: see _nearest

    def __init__(self, url: str, *, synchronous: str = "FULL", cache_size: int = 50_000) -> None:
        self.path = path_from_url(url)
        self.synchronous = synchronous
        self._writer: sqlite3.Connection
        self._reader: sqlite3.Connection
        self._lock = asyncio.Lock()
        self._open_batch: Batch | None = None  # collecting writes
        self._inflight: Batch | None = None  # being applied and committed in a thread
        self._commit_task: asyncio.Task[None] | None = None
        self._next_seq = 1
        self._next_rid = 1
        # Current versions of recently used resources. This process is the only writer of the
        # file (see docs/architecture.md), so the cache is exact: it changes only when a commit
        # that wrote the resource has succeeded. Entries are plain tuples (see _packed).
        self._cache: OrderedDict[tuple[str, str], tuple] = OrderedDict()
        self._cache_size = cache_size
        self._type_counts: dict[str, int] = {}  # live resources per type, for the planner
        self._sizes: dict[str, tuple[int, float]] = {}  # clause key -> (rows, when counted)
        self._listeners: list[CommitListener] = []

    # -- lifecycle ----------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, cached_statements=512
        )
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={self.synchronous}")
        conn.execute("PRAGMA busy_timeout=10000")
        conn.execute("PRAGMA temp_store=MEMORY")
        conn.execute("PRAGMA cache_size=-65536")
        conn.execute("PRAGMA mmap_size=268435456")
        return conn

    async def open(self) -> None:
        sys.setswitchinterval(min(sys.getswitchinterval(), SWITCH_INTERVAL_S))
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._writer = self._connect()
        self._writer.executescript(DDL)
        geo_columns = {row[1] for row in self._writer.execute("PRAGMA table_info(ix_geo)")}
        if "band" not in geo_columns:  # a store written before positions had bands
            self._writer.executescript(GEO_MIGRATION)
        text_columns = {row[1] for row in self._writer.execute("PRAGMA table_info(ix_text)")}
        if "facets" not in text_columns:  # a store written before text rows had codes
            self._writer.executescript(TEXT_MIGRATION)
        found = self._writer.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        if found is None:
            self._writer.execute(
                "INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
            )
        elif int(found[0]) != SCHEMA_VERSION:
            raise RuntimeError(f"database schema version {found[0]} is not {SCHEMA_VERSION}")
        self._next_seq = (
            self._writer.execute("SELECT max(seq) FROM versions").fetchone()[0] or 0
        ) + 1
        self._next_rid = (
            self._writer.execute("SELECT max(rid) FROM resources").fetchone()[0] or 0
        ) + 1
        install(self._writer)
        self._reader = self._connect()
        self._reader.execute("PRAGMA query_only=1")
        self.records = SqliteRecords(self.path, self.synchronous)  # shared authorization state
        self._type_counts = dict(
            self._reader.execute(
                "SELECT type, count(*) FROM resources WHERE deleted = 0 GROUP BY type"
            ).fetchall()
        )

    async def close(self) -> None:
        while self._commit_task is not None:
            with contextlib.suppress(Exception):
                await self._commit_task
        self._reader.close()
        self._writer.close()
        self.records.close()

    async def health(self) -> dict[str, Any]:
        row = self._reader.execute("SELECT count(*) FROM resources").fetchone()
        return {"store": "sqlite", "status": "ok", "path": str(self.path), "resources": row[0]}

    # -- reads --------------------------------------------------------------------------------

    def _committed_head(self, type_: str, id_: str) -> Head | None:
        key = (type_, id_)
        cached = self._cache.get(key)
        if cached is not None:
            return Head(cached[0], StoredVersion(*cached[1:]))
        row = self._reader.execute(
            f"SELECT {_VERSION_COLUMNS}, r.rid FROM resources r JOIN versions v ON v.seq = r.seq "
            "WHERE r.type = ? AND r.id = ?",
            key,
        ).fetchone()
        if row is None:
            return None
        head = Head(row[8], _version(row))
        self._remember(head)
        return head

    def _head(self, type_: str, id_: str) -> Head | None:
        """The newest head, committed or not (for writers, which must see earlier writes)."""
        key = (type_, id_)
        for batch in (self._open_batch, self._inflight):
            if batch is not None:
                head = batch.heads.get(key)
                if head is not None:
                    return head
        return self._committed_head(type_, id_)

    async def current(self, type_: str, id_: str) -> StoredVersion | None:
        head = self._committed_head(type_, id_)
        return head.version if head is not None else None

    def _type_count(self, types: tuple[str, ...]) -> int:
        return sum(self._type_counts.get(t, 0) for t in types)

    def _remember(self, head: Head) -> None:
        cache = self._cache
        version = head.version
        key = (version.type, version.id)
        cache[key] = _packed(head)
        cache.move_to_end(key)
        if len(cache) > self._cache_size:
            cache.popitem(last=False)

    async def version(self, type_: str, id_: str, version: int) -> StoredVersion | None:
        row = self._reader.execute(
            f"SELECT {_VERSION_COLUMNS} FROM resources r JOIN versions v ON v.rid = r.rid "
            "WHERE r.type = ? AND r.id = ? AND v.version = ?",
            (type_, id_, version),
        ).fetchone()
        return _version(row) if row else None

    async def read_many(
        self, keys: list[tuple[str, str]], snapshot: int | None
    ) -> list[StoredVersion]:
        if not keys:
            return []
        at = snapshot if snapshot is not None else OPEN_END - 1
        out: list[StoredVersion] = []
        for start in range(0, len(keys), 400):
            chunk = keys[start : start + 400]
            values = ",".join("(?,?)" for _ in chunk)
            # a join on the listed keys seeks the unique (type, id) index for each; a row-value
            # `(type, id) IN (VALUES ...)` would scan every resource
            rows = self._reader.execute(
                f"SELECT {_VERSION_COLUMNS} FROM (VALUES {values}) k "
                f"JOIN resources r ON r.type = k.column1 AND r.id = k.column2 "
                f"JOIN versions v ON v.rid = r.rid "
                f"AND v.seq <= ? AND v.until_seq > ? AND v.deleted = 0",
                [*(item for key in chunk for item in key), at, at],
            ).fetchall()
            out.extend(_version(row) for row in rows)
        return out

    def add_listener(self, listener: CommitListener) -> None:
        self._listeners.append(listener)

    async def current_versions(
        self, types: tuple[str, ...], after: str | None, limit: int
    ) -> tuple[list[StoredVersion], str | None]:
        marks = ",".join("?" * len(types))
        start = int(after) if after else 0
        rows = self._reader.execute(
            f"SELECT {_VERSION_COLUMNS}, r.rid FROM resources r JOIN versions v ON v.seq = r.seq "
            f"WHERE r.type IN ({marks}) AND r.deleted = 0 AND r.rid > ? ORDER BY r.rid LIMIT ?",
            [*types, start, limit],
        ).fetchall()
        versions = [_version(row[:8]) for row in rows]
        return versions, (str(rows[-1][8]) if len(rows) == limit else None)

    async def log(self, type_: str, after_seq: int, limit: int) -> list[StoredVersion]:
        # reads see committed batches only, and batches commit in sequence order
        rows = self._reader.execute(
            f"SELECT {_VERSION_COLUMNS} FROM versions v JOIN resources r ON r.rid = v.rid "
            "WHERE v.type = ? AND v.seq > ? ORDER BY v.seq LIMIT ?",
            (type_, after_seq, limit),
        ).fetchall()
        return [_version(row) for row in rows]

    async def count_current(self, types: tuple[str, ...]) -> int:
        marks = ",".join("?" * len(types))
        return self._reader.execute(
            f"SELECT count(*) FROM resources WHERE type IN ({marks}) AND deleted = 0", types
        ).fetchone()[0]

    async def drop_index_rows(self, params: list[tuple[str, str]]) -> None:
        keys = [param_key(t, code) for t, code in params]
        async with self.unit_of_work() as unit:
            conn = await unit.sql()
            for table, _ in INDEX_TABLES.values():
                conn.executemany(f"DELETE FROM {table} WHERE pid = ?", [(k,) for k in keys])

    async def prune_snapshots(self, before_us: int) -> int:
        done = int(await self.get_meta("pruned_upto") or 0)
        row = self._reader.execute(
            "SELECT coalesce(min(seq), 0) FROM versions WHERE last_updated >= ?", (before_us,)
        ).fetchone()
        upto = row[0] - 1 if row[0] else await self.latest_seq()
        if upto <= done:
            return done
        rids = [
            r[0]
            for r in self._reader.execute(
                "SELECT DISTINCT rid FROM versions WHERE until_seq > ? AND until_seq <= ?",
                (done, upto),
            )
        ]
        for start in range(0, len(rids), 500):
            chunk = rids[start : start + 500]
            async with self.unit_of_work() as unit:
                conn = await unit.sql()
                for table, _ in INDEX_TABLES.values():
                    conn.executemany(
                        f"DELETE FROM {table} WHERE rid = ? AND hi_seq <= ?",
                        [(rid, upto) for rid in chunk],
                    )
                conn.executemany(
                    "DELETE FROM ix_text WHERE rowid IN "
                    "(SELECT seq FROM versions WHERE rid = ? AND until_seq <= ?)",
                    [(rid, upto) for rid in chunk],
                )
            await asyncio.sleep(0)  # let requests through between chunks
        await self.set_meta("pruned_upto", str(upto))
        return upto

    async def oldest_snapshot(self) -> int:
        return int(await self.get_meta("pruned_upto") or 0)

    async def get_meta(self, key: str) -> str | None:
        row = self._reader.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    async def set_meta(self, key: str, value: str | None) -> None:
        async with self.unit_of_work() as unit:
            conn = await unit.sql()
            if value is None:
                conn.execute("DELETE FROM meta WHERE key = ?", (key,))
            else:
                conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    async def init_meta(self, key: str, value: str) -> str:
        async with self.unit_of_work() as unit:
            conn = await unit.sql()
            conn.execute("INSERT OR IGNORE INTO meta VALUES (?, ?)", (key, value))
        stored = await self.get_meta(key)
        assert stored is not None
        return stored

    async def latest_seq(self) -> int:
        return self._reader.execute("SELECT coalesce(max(seq), 0) FROM versions").fetchone()[0]

    async def history(
        self,
        type_: str | None,
        id_: str | None,
        since: int | None,
        at: tuple[int, int] | None,
        count: int,
        cursor: str | None,
    ) -> HistoryPage:
        conditions: list[str] = []
        params: list[Any] = []
        if type_ is not None:
            conditions.append("v.type = ?")
            params.append(type_)
        if id_ is not None:
            conditions.append("r.id = ?")
            params.append(id_)
        if since is not None:
            conditions.append("v.last_updated >= ?")
            params.append(since)
        if at is not None:  # versions current at some point in [at_low, at_high]
            low, high = at
            conditions.append("v.last_updated <= ? AND v.until_time > ?")
            params.extend([high, low])
        if cursor is not None:
            conditions.append("v.seq < ?")
            params.append(decode_history(cursor))
        where = " AND ".join(conditions) or "1"
        rows = self._reader.execute(
            f"SELECT {_VERSION_COLUMNS} FROM versions v JOIN resources r ON r.rid = v.rid "
            f"WHERE {where} ORDER BY v.seq DESC LIMIT ?",
            [*params, count + 1],
        ).fetchall()
        versions = [_version(row) for row in rows[:count]]
        next_cursor = encode_history(versions[-1].seq) if len(rows) > count else None
        return HistoryPage(versions, next_cursor)

    def _estimate(self, conn: sqlite3.Connection) -> Any:
        def estimate(sql: Any, cap: int, key: str | None = None) -> int:
            if key is not None:
                known = self._sizes.get(key)
                if known is not None and time.monotonic() - known[1] < SIZES_TTL_S:
                    return known[0]
            row = conn.execute(
                f"SELECT count(*) FROM ({sql.text} LIMIT {int(cap)})", sql.params
            ).fetchone()
            if key is not None:
                if len(self._sizes) >= SIZES_MAX:
                    self._sizes.clear()
                self._sizes[key] = (row[0], time.monotonic())
            return row[0]

        return estimate

    async def search(self, query: Query) -> SearchPage:
        snapshot = query.snapshot if query.snapshot is not None else await self.latest_seq()
        compiler = Compiler(snapshot, self._estimate(self._reader), self._type_count)
        near = ring_search(query)
        if near is not None:
            return self._nearest(compiler, query, near, snapshot)
        return self._page(compiler, query, snapshot)

    def _nearest(
        self, compiler: Compiler, query: Query, near: NearPred, snapshot: int
    ) -> SearchPage:
        """Nearest first (see service/search.py nearest_first): rings around the point when
        the other clauses keep many positions (Compiler.near_plan), else the smallest other
        clause over the whole radius. A ring read through another clause (near_bound false)
        means a wider one costs no less: the whole radius comes next."""
        rings, smallest = compiler.near_plan(query)
        if rings:
            radius = first_ring(query, near)
            while radius < near.km:
                ring = with_radius(query, near, radius)
                ring_compiler = Compiler(snapshot, compiler.estimate, compiler.type_count)
                page = self._page(ring_compiler, ring, snapshot)
                if page.has_more:
                    return page
                if not ring_compiler.near_bound:
                    break
                radius *= 2
            else:  # every ring was read from its circle: the planner picks for the last one
                smallest = None
        compiler.forced_driver = smallest
        return self._page(compiler, query, snapshot)

    def _page(self, compiler: Compiler, query: Query, snapshot: int) -> SearchPage:
        sql = compiler.page(query)
        rows = self._reader.execute(sql.text, sql.params).fetchall()
        scanned = compiler.sort_scanned
        if scanned is not None and len(rows) <= query.count and not query.reverse:
            rows += self._without_sort_value(compiler, query, scanned, query.count + 1 - len(rows))
        has_more = len(rows) > query.count
        if query.reverse:
            rows = rows[: query.count][::-1]
        hits = [
            Hit(type=row[1], id=row[2], body=row[3], sort_values=(*row[4:], row[0]))
            for row in rows[: query.count]
        ]
        total = None
        if query.total in ("accurate", "estimate"):
            count_sql = compiler.count(query)
            total = self._reader.execute(count_sql.text, count_sql.params).fetchone()[0]
        return SearchPage(
            hits=hits,
            snapshot=snapshot,
            has_more=has_more,
            total=total,
            order=compiler.order_used,
            near_bound=compiler.near_bound,
        )

    def _without_sort_value(
        self, compiler: Compiler, query: Query, key: SortKey, limit: int
    ) -> list[tuple]:
        """After walking the sort index, the resources that have no value sort last."""
        sentinel = sort_sentinel(key)
        after = query.after
        if after is None or after[0] != sentinel:
            after = (sentinel, 0)
        rest = Query(
            types=query.types,
            where=[*query.where, (MissingPred(key.param, key.table, True),)],
            sort=query.sort,
            count=limit,
            snapshot=compiler.snapshot,
            after=after,
        )
        compiler.sort_scanned = None
        sql = Compiler(compiler.snapshot, compiler.estimate, compiler.type_count).page(rest)
        return self._reader.execute(sql.text, sql.params).fetchall()[:limit]

    # -- writes -------------------------------------------------------------------------------

    def unit_of_work(self) -> _UnitScope:
        return _UnitScope(self)

    def _schedule_commit(self) -> None:
        if self._commit_task is None:
            self._commit_task = asyncio.get_running_loop().create_task(self._commit_loop())

    async def _commit_loop(self) -> None:
        """Commit batches one after the other; each takes the writes that arrived while the
        previous one was committing (group commit)."""
        try:
            while True:
                async with self._lock:  # after every unit already waiting for the lock
                    batch, self._open_batch = self._open_batch, None
                    if batch is None:
                        return
                    self._inflight = batch
                try:  # no unit can add to the batch now: new units start the next one
                    await self._apply_and_commit(batch)
                except BaseException as exc:  # a bug: still, no writer may wait forever
                    if not batch.done.done():
                        batch.done.set_exception(
                            exc if isinstance(exc, Exception) else RuntimeError("commit stopped")
                        )
                    raise
                finally:
                    self._inflight = None
                    batch.applied.set()
        finally:
            self._commit_task = None

    async def _apply_and_commit(self, batch: Batch) -> None:
        conn = self._writer

        def run() -> None:
            if batch.began:  # finish the transaction the batch's units started
                apply(conn, payloads)
                conn.execute("COMMIT")
            else:  # one statement in autocommit mode: applied and committed (fsync) in one step
                apply(conn, payloads)

        try:
            payloads = encode(batch.take_rows())
            if payloads is None and not batch.began:
                if not batch.done.done():  # nothing was written: nothing to make durable
                    batch.done.set_result(None)
                return
            await asyncio.to_thread(run)
        except BaseException as exc:  # disk full, I/O error: every unit in the batch fails
            with contextlib.suppress(sqlite3.Error):
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
            log.error("commit failed: %s", type(exc).__name__)
            failure = exc if isinstance(exc, Exception) else RuntimeError("commit cancelled")
            self._fail_open_batch(failure)
            if not batch.done.done():
                batch.done.set_exception(failure)
                batch.done.exception()  # its units report it; no "never retrieved" warning
            if not isinstance(exc, Exception):
                raise
            return
        for version, delta in batch.written:
            head = batch.heads.get((version.type, version.id))
            if head is not None and head.version.seq == version.seq:
                self._remember(head)
            if delta:
                self._type_counts[version.type] = self._type_counts.get(version.type, 0) + delta
        if not batch.done.done():
            batch.done.set_result(None)
        written = [version for version, _ in batch.written]
        if written:
            for listener in self._listeners:
                try:
                    listener(written)
                except Exception:  # a listener must never break the write path
                    log.exception("commit listener failed")

    def _fail_open_batch(self, exc: BaseException) -> None:
        """Writes queued behind a failed commit may build on it (an update of a resource the
        failed batch created): they fail too, and nothing of them is kept."""
        batch, self._open_batch = self._open_batch, None
        if batch is None:
            return
        if batch.began:
            with contextlib.suppress(sqlite3.Error):
                self._writer.execute("ROLLBACK")
        if not batch.done.done():
            batch.done.set_exception(exc)
            batch.done.exception()  # its units report it; no "never retrieved" warning

    def _write(
        self,
        unit: _Unit,
        version: StoredVersion,
        index: IndexRows | None,
        expected_previous: int | None,
        known_new: bool = False,
    ) -> StoredVersion:
        batch = unit.batch
        key = (version.type, version.id)
        head = None if known_new else self._head(*key)
        current_version = head.version.version if head else None
        if expected_previous is not None and (current_version or 0) != expected_previous:
            raise VersionConflict(current_version)
        seq = self._next_seq
        self._next_seq += 1
        rows = batch.rows
        deleted = int(version.deleted)
        if head is None:
            rid = self._next_rid
            self._next_rid += 1
            rows[NEW_RESOURCES].append(
                (rid, version.type, version.id, version.version, seq, version.last_updated, deleted)
            )
        else:
            rid = head.rid
            rows[CLOSE_VERSIONS].append((rid, current_version, seq, version.last_updated))
            rows[CLOSE_INDEX].append((rid, seq))
            rows[MOVE_RESOURCES].append((rid, version.version, seq, version.last_updated, deleted))
        body = version.body
        rows[NEW_VERSIONS].append(
            (
                seq,
                rid,
                version.type,
                version.version,
                version.last_updated,
                version.method,
                deleted,
                body.decode() if body is not None else None,
            )
        )
        if index is not None and not version.deleted:
            self._add_index(batch, version.type, rid, seq, index)
        stored = StoredVersion(
            version.type,
            version.id,
            version.version,
            version.last_updated,
            version.deleted,
            version.method,
            body,
            seq,
        )
        unit.undo.append((key, batch.heads.get(key)))
        batch.heads[key] = Head(rid, stored)
        was_live = head is not None and not head.version.deleted
        batch.written.append((stored, int(not version.deleted) - int(was_live)))
        return stored

    def _create_many(self, unit: _Unit, items: list[tuple[StoredVersion, IndexRows]]) -> None:
        """Brand-new resources in bulk (no existing id: checked with one query)."""
        if not items:
            return
        keys = [(version.type, version.id) for version, _ in items]
        ids_by_type: dict[str, list[str]] = {}
        for type_, id_ in keys:
            ids_by_type.setdefault(type_, []).append(id_)
        for type_, ids in ids_by_type.items():
            # one type per query: `type = ? AND id IN (...)` seeks the unique (type, id) index,
            # where a row-value IN over (type, id) pairs scans every resource
            for start in range(0, len(ids), 400):
                chunk = ids[start : start + 400]
                marks = ",".join("?" * len(chunk))
                taken = self._reader.execute(
                    f"SELECT 1 FROM resources WHERE type = ? AND id IN ({marks}) LIMIT 1",
                    [type_, *chunk],
                ).fetchone()
                if taken is not None:
                    raise VersionConflict(1)
        for batch_ in (self._open_batch, self._inflight):
            if batch_ is not None and not batch_.heads.keys().isdisjoint(keys):
                raise VersionConflict(1)
        for version, index in items:
            self._write(unit, version, index, None, known_new=True)

    @staticmethod
    def _add_index(batch: Batch, type_: str, rid: int, seq: int, index: IndexRows) -> None:
        rows = batch.rows
        tail = (rid, seq, OPEN_END)
        for attribute in INDEX_TABLES:
            found = getattr(index, attribute)
            if found:
                if attribute == "geo":  # (code, lat, lon, x, y, z, group): the band goes first
                    rows[attribute].extend(
                        (param_key(type_, r[0]), geo_band(r[1]), *r[1:], *tail) for r in found
                    )
                    continue
                rows[attribute].extend((param_key(type_, r[0]), *r[1:], *tail) for r in found)
        if index.texts:
            columns = dict.fromkeys(TEXT_COLUMNS.values(), "")
            for code, terms in index.texts:
                columns[TEXT_COLUMNS[code]] = terms
            facets = " ".join(
                dict.fromkeys(
                    facet_term(param_key(type_, r[0]), r[2]) for r in index.tokens if r[2]
                )
            )
            rows[NEW_TEXT].append((seq, columns["content"], columns["narrative"], facets))
