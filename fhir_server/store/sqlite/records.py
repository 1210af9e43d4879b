"""The shared short-lived records (store/records.py) of the embedded store: a table of their own
in the store's file, on two connections of their own in autocommit mode, outside the FHIR data's
batches. Each operation is one statement and so atomic, also between processes on one file
(SQLite's file lock; ``busy_timeout`` waits out another writer). Writes run in a thread (they may
wait for that lock); reads run on the event loop (WAL readers never wait) and are one primary-key
lookup, a few microseconds.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import orjson

from fhir_server.store.records import Claimed

DDL = """
CREATE TABLE IF NOT EXISTS auth_records (
    kind TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    expires REAL NOT NULL,
    used INTEGER NOT NULL DEFAULT 0,
    subject TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (kind, key)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS auth_records_subject ON auth_records (kind, subject)
    WHERE subject != '';
CREATE INDEX IF NOT EXISTS auth_records_expires ON auth_records (expires);
"""


class SqliteRecords:
    def __init__(self, path: Path, synchronous: str = "NORMAL") -> None:
        self._lock = threading.Lock()
        self._w = self._connect(path, synchronous)
        self._w.executescript(DDL)
        self._r = self._connect(path, synchronous)

    @staticmethod
    def _connect(path: Path, synchronous: str) -> sqlite3.Connection:
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={synchronous}")
        conn.execute("PRAGMA busy_timeout=10000")
        return conn

    def close(self) -> None:
        with self._lock:
            self._w.close()
            self._r.close()

    async def _write(self, fn: Any, *args: Any) -> Any:
        def run() -> Any:
            with self._lock:
                return fn(self._w, *args)

        return await asyncio.to_thread(run)

    async def put(
        self, kind: str, key: str, value: dict[str, Any], expires: float, subject: str = ""
    ) -> bool:
        def run(conn: sqlite3.Connection) -> bool:
            before = conn.total_changes
            conn.execute(
                "INSERT INTO auth_records (kind, key, value, expires, used, subject) "
                "VALUES (?, ?, ?, ?, 0, ?) ON CONFLICT (kind, key) DO UPDATE SET "
                "value = excluded.value, expires = excluded.expires, used = 0, "
                "subject = excluded.subject WHERE auth_records.expires <= ?",
                (kind, key, orjson.dumps(value).decode(), expires, subject, time.time()),
            )
            return conn.total_changes > before

        return await self._write(run)

    async def get(self, kind: str, keys: list[str]) -> dict[str, dict[str, Any]]:
        if not keys:
            return {}
        marks = ", ".join("?" * len(keys))
        rows = self._r.execute(
            f"SELECT key, value FROM auth_records WHERE kind = ? AND key IN ({marks}) "
            "AND expires > ?",
            (kind, *keys, time.time()),
        ).fetchall()
        return {key: orjson.loads(value) for key, value in rows}

    async def claim(self, kind: str, key: str) -> Claimed | None:
        def run(conn: sqlite3.Connection) -> Claimed | None:
            now = time.time()
            row = conn.execute(
                "UPDATE auth_records SET used = 1 WHERE kind = ? AND key = ? AND expires > ? "
                "AND used = 0 RETURNING value",
                (kind, key, now),
            ).fetchall()
            if row:
                return Claimed(True, orjson.loads(row[0][0]))
            row = conn.execute(
                "SELECT value FROM auth_records WHERE kind = ? AND key = ? AND expires > ?",
                (kind, key, now),
            ).fetchall()
            return Claimed(False, orjson.loads(row[0][0])) if row else None

        return await self._write(run)

    async def by_subject(self, kind: str, subject: str) -> list[dict[str, Any]]:
        rows = self._r.execute(
            "SELECT value FROM auth_records WHERE kind = ? AND subject = ? AND subject != '' "
            "AND expires > ?",
            (kind, subject, time.time()),
        ).fetchall()
        return [orjson.loads(value) for (value,) in rows]

    async def drop_subject(self, kind: str, subject: str) -> None:
        def run(conn: sqlite3.Connection) -> None:
            conn.execute(
                "DELETE FROM auth_records WHERE kind = ? AND subject = ? AND subject != ''",
                (kind, subject),
            )

        await self._write(run)

    async def prune(self) -> int:
        def run(conn: sqlite3.Connection) -> int:
            return conn.execute(
                "DELETE FROM auth_records WHERE expires <= ?", (time.time(),)
            ).rowcount

        return await self._write(run)
