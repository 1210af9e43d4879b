"""Short-lived shared records: the authorization server's state, kept in the store so that every
server process on one store sees the same (docs/security.md, "Shared authorization state").

A record is ``(kind, key) -> value`` (a JSON object) with an expiry (epoch seconds), a ``used``
flag and an optional ``subject`` to list records by. Expired records are invisible to every
operation and removed by ``prune``. The operations are the few the authorization server needs,
each atomic on its own across processes:

- ``put``: insert unless a live record holds the key (``False`` then: a replay);
- ``get``: the live records of some keys of one kind (one indexed lookup);
- ``claim``: mark a live record used; exactly one caller, in any process, gets ``first=True``
  (one-time codes, refresh-token rotation with reuse detection, launch ids, login tickets);
- ``by_subject`` / ``drop_subject``: live records of one subject (EPD-launch relationships,
  failed sign-ins of one user name).

Both stores implement them on a table / collection of their own, outside the FHIR data and its
units of work (``SqliteRecords``, ``MongoRecords``); ``MemoryRecords`` is the reference model.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(slots=True, frozen=True)
class Claimed:
    first: bool  # this caller marked the record used (False: it was used before: a replay)
    value: dict[str, Any]


class Records(Protocol):
    async def put(
        self, kind: str, key: str, value: dict[str, Any], expires: float, subject: str = ""
    ) -> bool: ...

    async def get(self, kind: str, keys: list[str]) -> dict[str, dict[str, Any]]: ...

    async def claim(self, kind: str, key: str) -> Claimed | None: ...

    async def by_subject(self, kind: str, subject: str) -> list[dict[str, Any]]: ...

    async def drop_subject(self, kind: str, subject: str) -> None: ...

    async def prune(self) -> int: ...


class MemoryRecords:
    """One process's records (a store without sharing, and the model the others follow)."""

    def __init__(self) -> None:
        self._data: dict[tuple[str, str], tuple[dict[str, Any], float, bool, str]] = {}

    def _live(self, kind: str, key: str) -> tuple[dict[str, Any], float, bool, str] | None:
        item = self._data.get((kind, key))
        return item if item is not None and item[1] > time.time() else None

    async def put(
        self, kind: str, key: str, value: dict[str, Any], expires: float, subject: str = ""
    ) -> bool:
        if self._live(kind, key) is not None:
            return False
        self._data[(kind, key)] = (value, expires, False, subject)
        return True

    async def get(self, kind: str, keys: list[str]) -> dict[str, dict[str, Any]]:
        return {k: item[0] for k in keys if (item := self._live(kind, k)) is not None}

    async def claim(self, kind: str, key: str) -> Claimed | None:
        item = self._live(kind, key)
        if item is None:
            return None
        self._data[(kind, key)] = (item[0], item[1], True, item[3])
        return Claimed(not item[2], item[0])

    async def by_subject(self, kind: str, subject: str) -> list[dict[str, Any]]:
        now = time.time()
        return [
            v
            for (k, _), (v, exp, _u, s) in self._data.items()
            if k == kind and s == subject and exp > now
        ]

    async def drop_subject(self, kind: str, subject: str) -> None:
        for key in [k for k, item in self._data.items() if k[0] == kind and item[3] == subject]:
            del self._data[key]

    async def prune(self) -> int:
        now = time.time()
        old = [k for k, item in self._data.items() if item[1] <= now]
        for key in old:
            del self._data[key]
        return len(old)
