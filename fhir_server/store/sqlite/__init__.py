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
from collections import OrderedDict
from collections.abc import AsyncIterator
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
from fhir_server.store.query import Hit, MissingPred, Query, SearchPage, SortKey
from fhir_server.store.sqlite.schema import DDL, INDEX_TABLES, OPEN_END, SCHEMA_VERSION
from fhir_server.store.sqlite.search_sql import Compiler, sort_sentinel

log = logging.getLogger(__name__)
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


def path_from_url(url: str) -> Path:
    parsed = urlparse(url)
    raw = unquote(parsed.path) if not parsed.netloc else unquote(parsed.netloc + parsed.path)
    if url.startswith("sqlite:///") and not raw.startswith("/"):
        raw = "/" + raw
    if url.startswith("sqlite://") and not url.startswith("sqlite:///"):
        raw = unquote(url[len("sqlite://") :])  # relative path
    return Path(raw)


class _Unit:
    """A unit of work on the writer connection (inside a SAVEPOINT)."""

    def __init__(self, store: SqliteStore) -> None:
        self.store = store
        self.conn = store._writer

    async def current(self, type_: str, id_: str) -> StoredVersion | None:
        return self.store._current(self.conn, type_, id_)

    async def search_ids(self, query: Query, limit: int) -> list[tuple[str, str]]:
        compiler = Compiler(OPEN_END - 1, self.store._estimate(self.conn))
        sql = compiler.matching(query)
        rows = self.conn.execute(
            f"SELECT type, id FROM resources WHERE rid IN ({sql.text}) LIMIT ?",
            [*sql.params, limit],
        ).fetchall()
        return [(r[0], r[1]) for r in rows]

    async def write(
        self, version: StoredVersion, index: IndexRows | None, expected_previous: int | None
    ) -> StoredVersion:
        return self.store._write(self.conn, version, index, expected_previous)

    async def create_many(self, items: list[tuple[StoredVersion, IndexRows]]) -> None:
        self.store._create_many(self.conn, items)

    async def add_index_rows(self, version: StoredVersion, index: IndexRows) -> None:
        row = self.conn.execute(
            "SELECT rid, seq FROM resources WHERE type = ? AND id = ? AND deleted = 0",
            (version.type, version.id),
        ).fetchone()
        if row is not None and row[1] == version.seq:  # still the current version
            self.store._insert_index(self.conn, version.type, row[0], row[1], index)


class SqliteStore:
    name = "sqlite"
    supports_transactions = True

    def __init__(self, url: str, *, synchronous: str = "FULL", cache_size: int = 50_000) -> None:
        self.path = path_from_url(url)
        self.synchronous = synchronous
        self._writer: sqlite3.Connection
        self._reader: sqlite3.Connection
        self._lock = asyncio.Lock()
        self._in_transaction = False
        self._batch: asyncio.Future[None] | None = None
        self._commit_task: asyncio.Task[None] | None = None
        self._next_seq = 1
        # Current versions of recently used resources. This process is the only writer of the
        # file (see docs/architecture.md), so the cache is exact: it changes only when a commit
        # that wrote the resource has succeeded.
        self._cache: OrderedDict[tuple[str, str], StoredVersion] = OrderedDict()
        self._cache_size = cache_size
        self._pending: list[tuple[StoredVersion, int]] = []  # written, change of live count
        self._type_counts: dict[str, int] = {}  # live resources per type, for the planner
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
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._writer = self._connect()
        self._writer.executescript(DDL)
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
        self._reader = self._connect()
        self._reader.execute("PRAGMA query_only=1")
        self._type_counts = dict(
            self._reader.execute(
                "SELECT type, count(*) FROM resources WHERE deleted = 0 GROUP BY type"
            ).fetchall()
        )

    async def close(self) -> None:
        if self._commit_task is not None:
            with contextlib.suppress(Exception):
                await self._commit_task
        async with self._lock:
            if self._in_transaction:
                self._writer.execute("COMMIT")
                self._in_transaction = False
        self._reader.close()
        self._writer.close()

    async def health(self) -> dict[str, Any]:
        row = self._reader.execute("SELECT count(*) FROM resources").fetchone()
        return {"store": "sqlite", "status": "ok", "path": str(self.path), "resources": row[0]}

    # -- reads --------------------------------------------------------------------------------

    @staticmethod
    def _current(conn: sqlite3.Connection, type_: str, id_: str) -> StoredVersion | None:
        row = conn.execute(
            f"SELECT {_VERSION_COLUMNS} FROM resources r JOIN versions v ON v.seq = r.seq "
            "WHERE r.type = ? AND r.id = ?",
            (type_, id_),
        ).fetchone()
        return _version(row) if row else None

    async def current(self, type_: str, id_: str) -> StoredVersion | None:
        key = (type_, id_)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        found = self._current(self._reader, type_, id_)
        if found is not None:
            self._remember(found)
        return found

    def _type_count(self, types: tuple[str, ...]) -> int:
        return sum(self._type_counts.get(t, 0) for t in types)

    def _remember(self, version: StoredVersion) -> None:
        cache = self._cache
        key = (version.type, version.id)
        cache[key] = version
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
            rows = self._reader.execute(
                f"SELECT {_VERSION_COLUMNS} FROM resources r JOIN versions v ON v.rid = r.rid "
                f"AND v.seq <= ? AND v.until_seq > ? AND v.deleted = 0 "
                f"WHERE (r.type, r.id) IN (VALUES {values})",
                [at, at, *(item for key in chunk for item in key)],
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

    async def count_current(self, types: tuple[str, ...]) -> int:
        marks = ",".join("?" * len(types))
        return self._reader.execute(
            f"SELECT count(*) FROM resources WHERE type IN ({marks}) AND deleted = 0", types
        ).fetchone()[0]

    async def drop_index_rows(self, params: list[tuple[str, str]]) -> None:
        keys = [param_key(t, code) for t, code in params]
        async with self.unit_of_work():
            for table, _ in INDEX_TABLES.values():
                self._writer.executemany(f"DELETE FROM {table} WHERE pid = ?", [(k,) for k in keys])

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
            async with self.unit_of_work():
                for table, _ in INDEX_TABLES.values():
                    self._writer.executemany(
                        f"DELETE FROM {table} WHERE rid = ? AND hi_seq <= ?",
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
        async with self.unit_of_work():
            if value is None:
                self._writer.execute("DELETE FROM meta WHERE key = ?", (key,))
            else:
                self._writer.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

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
        def estimate(sql: Any, cap: int) -> int:
            row = conn.execute(
                f"SELECT count(*) FROM ({sql.text} LIMIT {int(cap)})", sql.params
            ).fetchone()
            return row[0]

        return estimate

    async def search(self, query: Query) -> SearchPage:
        snapshot = query.snapshot if query.snapshot is not None else await self.latest_seq()
        compiler = Compiler(snapshot, self._estimate(self._reader), self._type_count)
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
            hits=hits, snapshot=snapshot, has_more=has_more, total=total, order=compiler.order_used
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

    @contextlib.asynccontextmanager
    async def unit_of_work(self) -> AsyncIterator[_Unit]:
        async with self._lock:
            if not self._in_transaction:
                self._writer.execute("BEGIN IMMEDIATE")
                self._in_transaction = True
                self._batch = asyncio.get_running_loop().create_future()
            batch = self._batch
            assert batch is not None
            self._writer.execute("SAVEPOINT unit")
            pending_mark = len(self._pending)
            try:
                yield _Unit(self)
            except BaseException:
                self._writer.execute("ROLLBACK TO unit")
                self._writer.execute("RELEASE unit")
                del self._pending[pending_mark:]
                self._schedule_commit()
                raise
            self._writer.execute("RELEASE unit")
            self._schedule_commit()
        await asyncio.shield(batch)

    def _schedule_commit(self) -> None:
        if self._commit_task is None:
            self._commit_task = asyncio.get_running_loop().create_task(self._commit())

    async def _commit(self) -> None:
        async with self._lock:  # runs after every unit already queued for the lock
            self._commit_task = None
            batch, self._batch = self._batch, None
            if not self._in_transaction:
                return
            self._in_transaction = False
            pending, self._pending = self._pending, []
            written = [version for version, _ in pending]
            try:
                await asyncio.to_thread(self._writer.execute, "COMMIT")
            except Exception as exc:  # disk full, I/O error: every unit in the batch fails
                with contextlib.suppress(sqlite3.Error):
                    self._writer.execute("ROLLBACK")
                for version in written:
                    self._cache.pop((version.type, version.id), None)
                if batch is not None and not batch.done():
                    batch.set_exception(exc)
                return
            for version, delta in pending:
                self._remember(version)
                if delta:
                    self._type_counts[version.type] = self._type_counts.get(version.type, 0) + delta
            if batch is not None and not batch.done():
                batch.set_result(None)
            if written:
                for listener in self._listeners:
                    try:
                        listener(written)
                    except Exception:  # a listener must never break the write path
                        log.exception("commit listener failed")

    def _write(
        self,
        conn: sqlite3.Connection,
        version: StoredVersion,
        index: IndexRows | None,
        expected_previous: int | None,
    ) -> StoredVersion:
        row = conn.execute(
            "SELECT rid, version, deleted FROM resources WHERE type = ? AND id = ?",
            (version.type, version.id),
        ).fetchone()
        current_version = row[1] if row else None
        if expected_previous is not None and (current_version or 0) != expected_previous:
            raise VersionConflict(current_version)
        seq = self._next_seq
        self._next_seq += 1
        if row is None:
            rid = conn.execute(
                "INSERT INTO resources (type, id, version, seq, created_seq, last_updated, deleted)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    version.type,
                    version.id,
                    version.version,
                    seq,
                    seq,
                    version.last_updated,
                    int(version.deleted),
                ),
            ).lastrowid
        else:
            rid = row[0]
            conn.execute(
                "UPDATE versions SET until_seq = ?, until_time = ? WHERE rid = ? AND version = ?",
                (seq, version.last_updated, rid, current_version),
            )
            for table, _ in INDEX_TABLES.values():
                conn.execute(
                    f"UPDATE {table} SET hi_seq = ? WHERE rid = ? AND hi_seq = ?",
                    (seq, rid, OPEN_END),
                )
            conn.execute(
                "UPDATE resources SET version = ?, seq = ?, last_updated = ?, deleted = ? "
                "WHERE rid = ?",
                (version.version, seq, version.last_updated, int(version.deleted), rid),
            )
        conn.execute(
            "INSERT INTO versions (seq, rid, type, version, last_updated, method, deleted, body) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                seq,
                rid,
                version.type,
                version.version,
                version.last_updated,
                version.method,
                int(version.deleted),
                version.body,
            ),
        )
        if index is not None and not version.deleted:
            self._insert_index(conn, version.type, rid, seq, index)
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
        was_live = row is not None and not row[2]
        self._pending.append((stored, int(not version.deleted) - int(was_live)))
        return stored

    def _create_many(
        self, conn: sqlite3.Connection, items: list[tuple[StoredVersion, IndexRows]]
    ) -> None:
        """One statement per table for the whole batch (resources, versions, each index table);
        row ids and sequence numbers are assigned here, as this process is the only writer."""
        if not items:
            return
        first_rid = conn.execute("SELECT coalesce(max(rid), 0) FROM resources").fetchone()[0] + 1
        first_seq = self._next_seq
        self._next_seq += len(items)
        resources, versions = [], []
        rows: dict[str, list[tuple]] = {attribute: [] for attribute in INDEX_TABLES}
        for offset, (version, index) in enumerate(items):
            rid, seq = first_rid + offset, first_seq + offset
            resources.append((rid, version.type, version.id, 1, seq, seq, version.last_updated))
            versions.append(
                (seq, rid, version.type, version.last_updated, version.method, version.body)
            )
            for attribute in INDEX_TABLES:
                for row in getattr(index, attribute):
                    rows[attribute].append(
                        (
                            param_key(version.type, row[0]),
                            *(v if v is not None else "" for v in row[1:]),
                            rid,
                            seq,
                            OPEN_END,
                        )
                    )
            stored = StoredVersion(
                version.type,
                version.id,
                1,
                version.last_updated,
                False,
                version.method,
                version.body,
                seq,
            )
            self._pending.append((stored, 1))
        conn.executemany(
            "INSERT INTO resources (rid, type, id, version, seq, created_seq, last_updated, "
            "deleted) VALUES (?, ?, ?, ?, ?, ?, ?, 0)",
            resources,
        )
        conn.executemany(
            "INSERT INTO versions (seq, rid, type, version, last_updated, method, deleted, body) "
            "VALUES (?, ?, ?, 1, ?, ?, 0, ?)",
            versions,
        )
        for attribute, (table, columns) in INDEX_TABLES.items():
            if rows[attribute]:
                marks = ", ".join("?" * (len(columns) + 5))
                conn.executemany(
                    f"INSERT OR IGNORE INTO {table} (pid, {', '.join(columns)}, grp, rid, lo_seq, "
                    f"hi_seq) VALUES ({marks})",
                    rows[attribute],
                )

    @staticmethod
    def _insert_index(
        conn: sqlite3.Connection, type_: str, rid: int, seq: int, index: IndexRows
    ) -> None:
        for attribute, (table, columns) in INDEX_TABLES.items():
            rows = getattr(index, attribute)
            if not rows:
                continue
            marks = ", ".join("?" * (len(columns) + 5))
            conn.executemany(
                f"INSERT OR IGNORE INTO {table} (pid, {', '.join(columns)}, grp, rid, lo_seq, "
                f"hi_seq) VALUES ({marks})",
                [
                    (
                        param_key(type_, r[0]),
                        *(v if v is not None else "" for v in r[1:]),
                        rid,
                        seq,
                        OPEN_END,
                    )
                    for r in rows
                ],
            )
