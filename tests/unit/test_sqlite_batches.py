"""The SQLite store's deferred, pipelined group commit (store/sqlite/batch.py).

Writes wait in memory until a thread applies and commits their batch; the next batch collects
while that happens. These tests hold a commit in the thread on purpose to check what a writer
sees meanwhile, and make a commit fail to check that nothing of the failed batch (or of writes
built on it) survives.
"""

from __future__ import annotations

import asyncio
import sqlite3
import sys
import threading
from pathlib import Path

import orjson
import pytest

import fhir_server.store.sqlite as sqlite_store
from fhir_server.store.protocol import IndexRows, StoredVersion, VersionConflict
from fhir_server.store.query import Query, TokenPred
from fhir_server.store.sqlite import SqliteStore

T0 = 1_700_000_000_000_000


def version(id_: str, number: int, *, type_: str = "Patient") -> StoredVersion:
    body = orjson.dumps({"resourceType": type_, "id": id_, "n": number})
    return StoredVersion(type_, id_, number, T0 + number, False, "PUT", body)


def gender(value: str) -> IndexRows:
    return IndexRows(tokens=[("gender", "", value, 0)])


def by_gender(value: str) -> Query:
    return Query(types=("Patient",), where=[(TokenPred("gender", "\x00any", value),)])


async def write(store: SqliteStore, v: StoredVersion, expected: int, index=None) -> None:
    async with store.unit_of_work() as uow:
        await uow.write(v, index, expected)


@pytest.fixture
async def store(tmp_path: Path):
    instance = SqliteStore(f"sqlite:///{tmp_path / 'batches.db'}")
    await instance.open()
    try:
        yield instance
    finally:
        await instance.close()


class HeldCommit:
    """Makes the next batch application wait in the commit thread until released (and then
    fail like a full disk, with ``fail=True``)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, *, fail: bool = False) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        original = sqlite_store.apply
        held = [False]

        def apply(conn: sqlite3.Connection, payloads) -> None:
            if not held[0] and threading.current_thread() is not threading.main_thread():
                held[0] = True
                self.entered.set()
                self.release.wait(10)
                if fail:
                    raise sqlite3.OperationalError("database or disk is full")
            original(conn, payloads)

        monkeypatch.setattr(sqlite_store, "apply", apply)

    async def wait_entered(self) -> None:
        await asyncio.to_thread(self.entered.wait, 10)

    async def fail(self, *writers: asyncio.Task) -> None:
        """Let the writers reach their wait, then fail the held commit: each must fail."""
        await asyncio.sleep(0.05)
        self.release.set()
        for writer in writers:
            with pytest.raises(sqlite3.OperationalError):
                await writer


async def test_next_batch_collects_while_one_commits(store, monkeypatch):
    held = HeldCommit(monkeypatch)
    first = asyncio.create_task(write(store, version("a", 1), 0, gender("female")))
    await held.wait_entered()
    # the writer connection is busy in the thread; these writes still get through their units
    # (they wait only for durability) and see the uncommitted head of "a"
    second = asyncio.create_task(write(store, version("a", 2), 1, gender("male")))
    third = asyncio.create_task(write(store, version("b", 1), 0, gender("female")))
    await asyncio.sleep(0.05)
    assert not first.done() and not second.done()
    assert await store.current("Patient", "a") is None  # readers see committed data only
    held.release.set()
    await asyncio.gather(first, second, third)
    assert (await store.current("Patient", "a")).version == 2
    female = await store.search(by_gender("female"))
    assert [h.id for h in female.hits] == ["b"]  # version 1 of "a" no longer matches
    male = await store.search(by_gender("male"))
    assert [h.id for h in male.hits] == ["a"]


async def test_search_in_a_unit_waits_for_the_commit_in_flight(store, monkeypatch):
    held = HeldCommit(monkeypatch)
    first = asyncio.create_task(write(store, version("a", 1), 0, gender("female")))
    await held.wait_entered()

    async def conditional() -> list:
        async with store.unit_of_work() as uow:
            return await uow.search_ids(by_gender("female"), 5)

    searching = asyncio.create_task(conditional())
    await asyncio.sleep(0.05)
    assert not searching.done()  # it needs the connection, so it waits for the commit
    held.release.set()
    assert await searching == [("Patient", "a")]
    await first


async def test_failed_commit_fails_its_batch_and_the_writes_built_on_it(store, monkeypatch):
    failing = HeldCommit(monkeypatch, fail=True)
    doomed = asyncio.create_task(write(store, version("a", 1), 0, gender("female")))
    await failing.wait_entered()
    built_on_it = asyncio.create_task(write(store, version("a", 2), 1))
    await failing.fail(doomed, built_on_it)
    assert await store.current("Patient", "a") is None
    assert (await store.search(by_gender("female"))).hits == []
    assert (await store.history(None, None, None, None, 10, None)).versions == []
    # the store carries on: the same id can be created now
    await write(store, version("a", 1), 0, gender("female"))
    assert (await store.current("Patient", "a")).version == 1
    assert [h.id for h in (await store.search(by_gender("female"))).hits] == ["a"]


async def test_conflict_against_an_uncommitted_head(store, monkeypatch):
    held = HeldCommit(monkeypatch)
    first = asyncio.create_task(write(store, version("a", 1), 0))
    await held.wait_entered()
    with pytest.raises(VersionConflict):
        await write(store, version("a", 1), 0)  # "a" exists, though not yet on disk
    held.release.set()
    await first


async def test_row_ids_and_sequence_numbers_continue_after_a_restart(tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'restart.db'}"
    first = SqliteStore(url)
    await first.open()
    await asyncio.gather(*(write(first, version(f"p{i}", 1), 0) for i in range(5)))
    await first.close()
    second = SqliteStore(url)
    await second.open()
    try:
        await write(second, version("q", 1), 0, gender("female"))
        await write(second, version("p0", 2), 1, gender("male"))
        history = await second.history(None, None, None, None, 10, None)
        assert [(v.id, v.version) for v in history.versions[:2]] == [("p0", 2), ("q", 1)]
        assert len({v.seq for v in history.versions}) == 7
        assert [h.id for h in (await second.search(by_gender("female"))).hits] == ["q"]
        assert (await second.current("Patient", "p4")).version == 1
    finally:
        await second.close()


async def test_store_shortens_the_switch_interval(store):
    assert sys.getswitchinterval() <= sqlite_store.SWITCH_INTERVAL_S


async def test_unit_waiting_for_a_failing_commit_fails_and_leaves_nothing(store, monkeypatch):
    """A conditional create waits for the commit in flight to query; that commit fails and takes
    the waiting unit's batch with it: the unit fails instead of writing outside a transaction."""
    failing = HeldCommit(monkeypatch, fail=True)
    doomed = asyncio.create_task(write(store, version("a", 1), 0, gender("female")))
    await failing.wait_entered()

    async def conditional_create() -> None:
        async with store.unit_of_work() as uow:
            await uow.write(version("b", 1), gender("female"), 0)
            if not await uow.search_ids(by_gender("nobody"), 2):
                await uow.write(version("c", 1), gender("female"), 0)

    waiting = asyncio.create_task(conditional_create())
    await failing.fail(doomed, waiting)
    for id_ in ("a", "b", "c"):
        assert await store.current("Patient", id_) is None
    await write(store, version("d", 1), 0, gender("female"))  # and the store carries on
    assert [h.id for h in (await store.search(by_gender("female"))).hits] == ["d"]
    conn = sqlite3.connect(store.path)
    try:
        assert conn.execute("SELECT count(*) FROM resources").fetchone()[0] == 1
    finally:
        conn.close()


async def test_a_writer_that_gives_up_does_not_cancel_its_batch(store, monkeypatch):
    """A client that disconnects while its write waits for the commit: the batch (and so the
    other writers' commits) go on; the write itself was accepted into the batch and lands."""
    held = HeldCommit(monkeypatch)
    first = asyncio.create_task(write(store, version("a", 1), 0))
    await held.wait_entered()
    impatient = asyncio.create_task(write(store, version("b", 1), 0))
    patient = asyncio.create_task(write(store, version("c", 1), 0))
    await asyncio.sleep(0.05)
    impatient.cancel()
    held.release.set()
    await asyncio.gather(first, patient)
    with pytest.raises(asyncio.CancelledError):
        await impatient
    for id_ in ("a", "b", "c"):
        assert (await store.current("Patient", id_)).version == 1


async def test_cached_heads_are_invisible_to_the_garbage_collector(store):
    """Thousands of cached heads as objects made every full collection walk them (10-20 ms,
    a pause for every request in flight); as tuples of plain values the collector drops them."""
    import gc

    for number in range(50):
        await write(store, version(f"p{number}", 1), 0)
    gc.collect()
    assert store._cache and not any(gc.is_tracked(entry) for entry in store._cache.values())
    head = store._committed_head("Patient", "p7")
    assert head is not None and head.version.version == 1 and head.version.seq > 0


async def test_absent_parts_of_index_rows_are_stored_as_empty_text(store):
    index = IndexRows(references=[("subject", "Patient", "p1", None, None, 0)])
    await write(store, version("o1", 1, type_="Observation"), 0, index)
    row = store._reader.execute(
        "SELECT ref_type, ref_id, ref_version, url FROM ix_reference"
    ).fetchone()
    assert row == ("Patient", "p1", "", "")


async def test_a_store_whose_text_rows_have_no_codes_is_rebuilt_at_start(tmp_path: Path):
    """Stores written before ix_text had its ``facets`` column: reopened, the column is filled
    from each version's token rows and words-with-codes searches find them."""
    from fhir_server.store.query import TextPred

    path = tmp_path / "old.db"
    store = SqliteStore(f"sqlite:///{path}")
    await store.open()
    rows = IndexRows(tokens=[("gender", "", "female", 0)], texts=[("_content", "anna")])
    await write(store, version("a", 1), 0, rows)
    await store.close()
    with sqlite3.connect(path) as db:  # the table as older stores have it
        db.executescript(
            "DROP TABLE ix_text; CREATE VIRTUAL TABLE ix_text USING fts5(content, narrative, "
            "tokenize = 'unicode61 remove_diacritics 0', detail = column, columnsize = 0);"
            "INSERT INTO ix_text (rowid, content, narrative) SELECT seq, 'anna', '' FROM versions;"
        )
    store = SqliteStore(f"sqlite:///{path}")
    await store.open()
    try:
        query = Query(
            types=("Patient",),
            where=[
                (TextPred("_content", (("anna",),)),),
                (TokenPred("gender", "\x00any", "female"),),
            ],
        )
        assert [h.id for h in (await store.search(query)).hits] == ["a"]
        query.where[1] = (TokenPred("gender", "\x00any", "male"),)
        assert (await store.search(query)).hits == []
    finally:
        await store.close()
