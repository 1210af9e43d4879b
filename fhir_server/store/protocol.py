"""The storage protocol: what every store (SQLite, MongoDB) provides to the layers above.

A store keeps every version of every resource (deletes are tombstone versions), the search index
rows of each version (computed by the search layer and written in the same unit of work as the
resource, so search never lags behind writes), and a global, monotonically increasing sequence
number per version. The sequence number orders system history and is the "as of" point of a search
snapshot: index rows carry the sequence range in which they were valid, so a paging cursor can
re-run its query exactly as it was when the search began.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol

from fhir_server.store.records import Records

# -- index rows (produced by search/extract.py, consumed by stores) ------------------------------
# Every row starts with the search parameter code and ends with a composite group number (0 for
# ordinary values; composite components share a group number > 0 within one resource).

StringRow = tuple[str, str, str, int]  # param, normalized text, exact text, group
TokenRow = tuple[str, str | None, str, int]  # param, system (None: no system), code, group
ReferenceRow = tuple[str, str | None, str | None, str | None, str | None, int]
# param, target type, target id, target version, absolute URL / canonical (or None), group
DateRow = tuple[str, int, int, int]  # param, low µs, high µs (inclusive), group
NumberRow = tuple[str, float, int]  # param, value, group
QuantityRow = tuple[
    str, str | None, str | None, float, int
]  # param, system, code|unit, value, group
UriRow = tuple[str, str, int]  # param, uri, group
TextRow = tuple[str, str]  # param (_content / _text), space-separated terms (search/text.py)
GeoRow = tuple[str, float, float, float, float, float, int]  # param, lat, lon, x, y, z, group


@dataclass(slots=True)
class IndexRows:
    strings: list[StringRow] = field(default_factory=list)
    tokens: list[TokenRow] = field(default_factory=list)
    references: list[ReferenceRow] = field(default_factory=list)
    dates: list[DateRow] = field(default_factory=list)
    numbers: list[NumberRow] = field(default_factory=list)
    quantities: list[QuantityRow] = field(default_factory=list)
    uris: list[UriRow] = field(default_factory=list)
    geo: list[GeoRow] = field(default_factory=list)
    texts: list[TextRow] = field(default_factory=list)


# -- stored versions ---------------------------------------------------------------------------


@dataclass(slots=True, frozen=True)
class StoredVersion:
    type: str
    id: str
    version: int
    last_updated: int  # µs since epoch, UTC
    deleted: bool
    method: str  # POST | PUT | PATCH | DELETE
    body: bytes | None  # the resource JSON including meta; None for a delete tombstone
    seq: int = 0  # global sequence number of this version


@dataclass(slots=True, frozen=True)
class HistoryPage:
    versions: list[StoredVersion]
    next_cursor: str | None


class VersionConflict(Exception):
    """The current version is not the one the writer based its change on."""

    def __init__(self, current_version: int | None) -> None:
        super().__init__(f"current version is {current_version}")
        self.current_version = current_version


CommitListener = Callable[[list[StoredVersion]], None]


class UnitOfWork(Protocol):
    """One atomic unit: everything written through it commits together or not at all.

    Reads and searches through the unit see its own earlier writes.
    """

    async def current(self, type_: str, id_: str) -> StoredVersion | None: ...

    async def search_ids(self, query: Any, limit: int) -> list[tuple[str, str]]: ...

    async def write(
        self,
        version: StoredVersion,
        index: IndexRows | None,
        expected_previous: int | None,
        *,
        fresh: bool = False,
    ) -> StoredVersion:
        """Store a new version (create, update or delete tombstone) and its index rows.

        ``expected_previous`` is the version the change was based on (0 for a create, which must
        not find an existing live or deleted resource unless it is re-created after a delete):
        a mismatch raises VersionConflict. ``fresh`` says the server generated the id just now
        (a UUIDv7, never used before), so a store may skip looking for an existing resource.
        Returns the version. A store may defer the write (and the check of
        ``expected_previous``) to the end of the unit (MongoDB: nothing is written before the
        unit's turn), so the sequence number may be known only after the commit (0 until then)
        and a conflict may surface when the unit ends.
        """
        ...

    async def create_many(self, items: list[tuple[StoredVersion, IndexRows]]) -> None:
        """Write brand-new resources (version 1, ids never used before) in bulk: the cheap path
        for append-only records such as AuditEvents. An id that exists fails the unit."""
        ...

    async def add_index_rows(self, version: StoredVersion, index: IndexRows) -> None:
        """Add index rows to an existing current version (back-filling a new parameter)."""
        ...


class Store(Protocol):
    """A FHIR resource store. All methods are safe to call concurrently from one event loop."""

    name: str
    supports_transactions: bool
    records: Records  # short-lived shared records (the authorization server's state), once open

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def current(self, type_: str, id_: str) -> StoredVersion | None:
        """The latest version (possibly a delete tombstone), or None if the id never existed."""
        ...

    async def version(self, type_: str, id_: str, version: int) -> StoredVersion | None: ...

    async def history(
        self,
        type_: str | None,
        id_: str | None,
        since: int | None,
        at: tuple[int, int] | None,
        count: int,
        cursor: str | None,
    ) -> HistoryPage:
        """Versions newest first, optionally limited to one type or one resource.

        ``since``: only versions with last_updated >= since; ``at``: the version current at that
        moment for each resource; ``cursor`` continues a previous page.
        """
        ...

    async def search(self, query: Any) -> Any:
        """Run a search (store/query.py Query) and return a SearchPage."""
        ...

    async def read_many(
        self, keys: list[tuple[str, str]], snapshot: int | None
    ) -> list[StoredVersion]:
        """Live versions of the given resources as of ``snapshot`` (missing ones are skipped)."""
        ...

    def unit_of_work(self) -> AbstractAsyncContextManager[UnitOfWork]: ...

    async def latest_seq(self) -> int: ...

    async def health(self) -> dict[str, Any]: ...

    def add_listener(self, listener: CommitListener) -> None:
        """Call ``listener`` with the versions of every successful commit (in this process)."""
        ...

    async def current_versions(
        self, types: tuple[str, ...], after: str | None, limit: int
    ) -> tuple[list[StoredVersion], str | None]:
        """Live current versions of the given types in a stable order, for background jobs."""
        ...

    async def count_current(self, types: tuple[str, ...]) -> int: ...

    async def log(self, type_: str, after_seq: int, limit: int) -> list[StoredVersion]:
        """Every version of one type with a sequence number above ``after_seq``, oldest first,
        at most ``limit``, and only committed ones with nothing missing before them (up to
        ``latest_seq()``): a reader that remembers the last number it saw reads each version
        exactly once, in commit order, across restarts (the subscriptions outbox)."""
        ...

    async def drop_index_rows(self, params: list[tuple[str, str]]) -> None:
        """Remove every index row of the given (type, code) parameters."""
        ...

    async def prune_snapshots(self, before_us: int) -> int:
        """Forget index rows only snapshots older than ``before_us`` (µs) could see; returns
        the oldest sequence number a search may still start from afterwards."""
        ...

    async def oldest_snapshot(self) -> int:
        """Searches "as of" an older sequence number can no longer be answered exactly."""
        ...

    async def get_meta(self, key: str) -> str | None: ...

    async def set_meta(self, key: str, value: str | None) -> None: ...

    async def init_meta(self, key: str, value: str) -> str:
        """Store ``value`` under ``key`` unless a value is there already; return the stored one.
        Atomic, so every server process on one store ends up with the same value (secrets)."""
        ...


def rows_count(index: IndexRows | None) -> int:
    if index is None:
        return 0
    groups: Sequence[list[Any]] = (
        index.strings,
        index.tokens,
        index.references,
        index.dates,
        index.numbers,
        index.quantities,
        index.uris,
        index.geo,
        index.texts,
    )
    return sum(len(g) for g in groups)


async def aiter_list(items: list[Any]) -> AsyncIterator[Any]:
    for item in items:
        yield item
