"""The durable-create floor: the least any server can do for a durable FHIR create in Python.

A bare ASGI app (no framework, no validation, no search index) that parses the JSON body, gives
it an id and meta, and commits it to SQLite the way the FHIR server's store does (WAL,
synchronous=FULL, group commit: one statement over ``json_each`` per batch, in a thread, the
loop free meanwhile) before answering 201.
Served exactly like the floor, it shows what the platform (uvicorn + Python + SQLite on this
machine) leaves for everything a real create adds. The database file comes from
``DURABLE_CREATE_DB``.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import sqlite3
import sys
import time

import orjson
from floor_app import lifespan

_ids = itertools.count(1)
_pending: list[tuple[str, bytes]] = []
_waiters: list[asyncio.Future[None]] = []
_committer: asyncio.Task[None] | None = None


def _open() -> sqlite3.Connection:
    conn = sqlite3.connect(
        os.environ["DURABLE_CREATE_DB"], isolation_level=None, check_same_thread=False
    )
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("CREATE TABLE IF NOT EXISTS resources (id TEXT PRIMARY KEY, body BLOB) ")
    sys.setswitchinterval(0.0002)  # as the FHIR server's store does
    return conn


_conn = _open()  # at import: uvicorn imports the app with DURABLE_CREATE_DB set


def _write(rows: list[tuple[str, bytes]]) -> None:
    """One statement in autocommit mode: insert and commit (fsync) in one step."""
    _conn.execute(
        "INSERT INTO resources SELECT c.value->>0, CAST(c.value->>1 AS BLOB) FROM json_each(?) c",
        (orjson.dumps([(i, b.decode()) for i, b in rows]),),
    )


async def _commit_loop() -> None:
    global _committer
    try:
        while _pending:
            rows, waiters = _pending[:], _waiters[:]
            _pending.clear()
            _waiters.clear()
            await asyncio.to_thread(_write, rows)
            for waiter in waiters:
                waiter.set_result(None)
    finally:
        _committer = None


async def _create(body: bytes) -> tuple[str, bytes]:
    global _committer
    resource = orjson.loads(body)
    resource["id"] = str(next(_ids))
    resource["meta"] = {"versionId": "1", "lastUpdated": time.strftime("%Y-%m-%dT%H:%M:%SZ")}
    stored = orjson.dumps(resource)
    done = asyncio.get_running_loop().create_future()
    _pending.append((resource["id"], stored))
    _waiters.append(done)
    if _committer is None:
        _committer = asyncio.create_task(_commit_loop())
    await done
    return resource["id"], stored


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        await lifespan(receive, send)
        return
    if scope["type"] != "http":
        return
    if scope["method"] != "POST":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})
        return
    chunks = []
    more = True
    while more:
        message = await receive()
        chunks.append(message.get("body", b""))
        more = message.get("more_body", False)
    new_id, stored = await _create(b"".join(chunks))
    headers = [
        (b"content-type", b"application/fhir+json; charset=utf-8"),
        (b"location", b"/Patient/" + new_id.encode() + b"/_history/1"),
        (b"etag", b'W/"1"'),
    ]
    await send({"type": "http.response.start", "status": 201, "headers": headers})
    await send({"type": "http.response.body", "body": stored})
