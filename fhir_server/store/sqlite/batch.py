"""Deferred writes of the embedded store.

A unit of work does not run SQL for its writes: it appends rows to the open batch (new resources,
new versions, index rows, rows to close) and records the resource's new head in an in-memory
overlay, so that later units see it before it is on disk. The batch then runs, in a thread, as
ONE statement: an insert into the TEMP table ``batch_in`` whose trigger runs one set-based
statement per kind of row (``INSERT ... SELECT ... FROM json_each(?)``). In autocommit mode that
statement is its own transaction, so it also commits (fsync). One statement matters twice:
SQLite releases the GIL for it, so the b-tree work and the fsync run on another core while the
event loop parses, validates and indexes the next requests; and the thread needs the GIL back
once per batch instead of once per row (each hand-back can wait for the event loop's switch
interval).

Why not ``executemany``: it binds each row in Python and steps it with the GIL released, so a
thread would hand the GIL back and forth per row; on the event loop it keeps the b-tree work on
the busy core. The JSON text of a batch is built by orjson; floats survive the trip exactly
(SQLite parses them correctly rounded), bodies travel as text and are cast back to BLOB.
"""

from __future__ import annotations

import asyncio
import sqlite3
from dataclasses import dataclass, field
from typing import Any

import orjson

from fhir_server.store.protocol import StoredVersion
from fhir_server.store.sqlite.schema import INDEX_TABLES, OPEN_END


def _cols(count: int) -> str:
    return ", ".join(f"c.value->>{i}" for i in range(count))


def _index_insert(table: str, columns: tuple[str, ...]) -> str:
    """Index rows travel as the search layer made them, with None for an absent part (e.g. a
    reference's version); the key columns hold '' for it."""
    names = ", ".join(("pid", *columns, "grp", "rid", "lo_seq", "hi_seq"))
    values = ", ".join(
        (
            "c.value->>0",
            *(f"coalesce(c.value->>{i}, '')" for i in range(1, len(columns) + 1)),
            *(f"c.value->>{i}" for i in range(len(columns) + 1, len(columns) + 5)),
        )
    )
    return f"INSERT OR IGNORE INTO {table} ({names}) SELECT {values} FROM json_each(?) AS c"


# The kinds of deferred rows, in the order a batch applies them. A resource is written at most
# once between two applications (a second write of the same resource applies the batch first),
# so closing the previous version's rows before inserting the new ones is always right.
CLOSE_VERSIONS = "close_versions"  # (rid, version, until_seq, until_time)
CLOSE_INDEX = "close_index"  # (rid, seq): index rows of the version that seq supersedes
NEW_RESOURCES = "new_resources"  # (rid, type, id, version, seq, last_updated, deleted)
MOVE_RESOURCES = "move_resources"  # (rid, version, seq, last_updated, deleted)
NEW_VERSIONS = "new_versions"  # (seq, rid, type, version, last_updated, method, deleted, body)
NEW_TEXT = "new_text"  # (seq, content terms, narrative terms): free text of a version

STATEMENTS: dict[str, list[str]] = {
    CLOSE_VERSIONS: [
        "UPDATE versions SET until_seq = c.value->>2, until_time = c.value->>3 "
        "FROM json_each(?) AS c "
        "WHERE versions.rid = c.value->>0 AND versions.version = c.value->>1"
    ],
    CLOSE_INDEX: [
        f"UPDATE {table} SET hi_seq = c.value->>1 FROM json_each(?) AS c "
        f"WHERE {table}.rid = c.value->>0 AND {table}.hi_seq = {OPEN_END}"
        for table, _ in INDEX_TABLES.values()
    ],
    NEW_RESOURCES: [
        "INSERT INTO resources (rid, type, id, version, seq, created_seq, last_updated, deleted) "
        "SELECT c.value->>0, c.value->>1, c.value->>2, c.value->>3, c.value->>4, c.value->>4, "
        "c.value->>5, c.value->>6 FROM json_each(?) AS c"
    ],
    MOVE_RESOURCES: [
        "UPDATE resources SET version = c.value->>1, seq = c.value->>2, "
        "last_updated = c.value->>3, deleted = c.value->>4 "
        "FROM json_each(?) AS c WHERE resources.rid = c.value->>0"
    ],
    NEW_VERSIONS: [
        "INSERT INTO versions (seq, rid, type, version, last_updated, method, deleted, body) "
        f"SELECT {_cols(7)}, CAST(c.value->>7 AS BLOB) FROM json_each(?) AS c"
    ],
}
for _attribute, (_table, _columns) in INDEX_TABLES.items():
    STATEMENTS[_attribute] = [_index_insert(_table, _columns)]
STATEMENTS[NEW_TEXT] = [
    "INSERT OR REPLACE INTO ix_text (rowid, content, narrative) "
    "SELECT c.value->>0, coalesce(c.value->>1, ''), coalesce(c.value->>2, '') "
    "FROM json_each(?) AS c"
]
ORDER = tuple(STATEMENTS)


@dataclass(slots=True)
class Head:
    """What the store knows of a resource's current version before it is committed."""

    rid: int
    version: StoredVersion  # with its sequence number


@dataclass
class Batch:
    """Writes that will commit together (one transaction, one fsync)."""

    rows: dict[str, list[Any]] = field(default_factory=lambda: {kind: [] for kind in ORDER})
    heads: dict[tuple[str, str], Head] = field(default_factory=dict)
    written: list[tuple[StoredVersion, int]] = field(default_factory=list)  # version, Δ live
    began: bool = False  # some rows already ran on the writer connection (inside BEGIN)
    done: asyncio.Future[None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )  # committed (or failed): what the writers wait for
    applied: asyncio.Event = field(default_factory=asyncio.Event)  # writer connection free

    def has_rows(self) -> bool:
        return any(self.rows.values())

    def mark(self) -> dict[str, int]:
        return {kind: len(rows) for kind, rows in self.rows.items()}

    def truncate(self, mark: dict[str, int]) -> None:
        for kind, rows in self.rows.items():
            del rows[mark[kind] :]

    def take_rows(self) -> dict[str, list[Any]]:
        taken = self.rows
        self.rows = {kind: [] for kind in ORDER}
        return taken


def install(conn: sqlite3.Connection) -> None:
    """The batch entry point on a connection: inserting one row of JSON payloads into the TEMP
    table ``batch_in`` runs every statement above in one step (a BEFORE INSERT trigger that
    ends with RAISE(IGNORE), so the row itself is never stored)."""
    columns = ", ".join(f"p_{kind} TEXT" for kind in ORDER)
    body = "".join(
        statement.replace("json_each(?)", f"json_each(NEW.p_{kind})") + ";\n"
        for kind in ORDER
        for statement in STATEMENTS[kind]
    )
    conn.executescript(
        f"CREATE TEMP TABLE IF NOT EXISTS batch_in ({columns});\n"
        "CREATE TEMP TRIGGER IF NOT EXISTS batch_apply BEFORE INSERT ON batch_in BEGIN\n"
        f"{body}SELECT RAISE(IGNORE);\nEND;"
    )


_APPLY = f"INSERT INTO batch_in VALUES ({', '.join('?' * len(ORDER))})"


def encode(rows: dict[str, list[Any]]) -> tuple[bytes | None, ...] | None:
    """The JSON parameters of a set of deferred rows, or None when there are none (done on the
    event loop: orjson is fast and needs the GIL anyway)."""
    if not any(rows.values()):
        return None
    return tuple(orjson.dumps(found) if found else None for found in rows.values())


def apply(conn: sqlite3.Connection, payloads: tuple[bytes | None, ...] | None) -> None:
    if payloads is not None:
        conn.execute(_APPLY, payloads)
