"""The definitions the server holds (PlanDefinitions, ActivityDefinitions), compiled once per
version and found by canonical URL without a store query.

The index is filled at start-up from the store and kept current by the store's commit listener,
so a PlanDefinition written through the API (or shipped in a new release) is used at once. With
several server processes on one MongoDB, a process sees another's definition changes when it
restarts or when a canonical it does not know is looked up (a miss falls back to a store search);
see docs/pathways.md.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from fhir_server.json_codec import loads_trusted
from fhir_server.pathways.definitions import Activity, Plan, compile_activity, compile_plan
from fhir_server.store.protocol import StoredVersion

log = logging.getLogger(__name__)
TYPES = ("PlanDefinition", "ActivityDefinition")


@dataclass(slots=True)
class Entry:
    type: str
    id: str
    version_id: int
    url: str | None
    version: str | None
    status: str | None
    compiled: Plan | Activity


def _version_key(version: str | None) -> tuple:
    parts = []
    for part in (version or "").replace("-", ".").split("."):
        parts.append((0, int(part), "") if part.isdigit() else (1, 0, part))
    return tuple(parts)


class DefinitionIndex:
    def __init__(self, store: Any) -> None:
        self.store = store
        self.by_key: dict[tuple[str, str], Entry] = {}  # (type, id) -> entry
        self._by_url: dict[tuple[str, str], list[Entry]] | None = None  # built on first find
        self.listeners: list[Any] = []  # called with (entry or None, type, id) on a change

    async def load(self) -> None:
        after = None
        while True:
            versions, after = await self.store.current_versions(TYPES, after, 500)
            self.committed(versions)
            if after is None:
                break

    def committed(self, versions: list[StoredVersion]) -> None:
        for version in versions:
            if version.type not in TYPES:
                continue
            key = (version.type, version.id)
            self._by_url = None
            if version.deleted or version.body is None:
                self.by_key.pop(key, None)
                for listener in self.listeners:
                    listener(None, version.type, version.id)
                continue
            entry = self.entry_for(version)
            for listener in self.listeners:
                listener(entry, version.type, version.id)

    def entry_for(self, version: StoredVersion) -> Entry:
        """The compiled definition of a stored version (cached per version)."""
        key = (version.type, version.id)
        known = self.by_key.get(key)
        if known is not None and known.version_id == version.version:
            return known
        resource = loads_trusted(version.body or b"{}")
        compiled: Plan | Activity = (
            compile_plan(resource)
            if version.type == "PlanDefinition"
            else compile_activity(resource)
        )
        entry = Entry(
            version.type,
            version.id,
            version.version,
            resource.get("url") if isinstance(resource.get("url"), str) else None,
            resource.get("version") if isinstance(resource.get("version"), str) else None,
            resource.get("status") if isinstance(resource.get("status"), str) else None,
            compiled,
        )
        self.by_key[key] = entry
        self._by_url = None
        return entry

    def find(self, type_: str, canonical: str) -> Entry | None:
        """The definition a canonical names: ``url|version`` exactly, or the newest version of
        ``url`` (active before draft, retired last)."""
        url, _, version = canonical.partition("|")
        if self._by_url is None:
            by_url: dict[tuple[str, str], list[Entry]] = {}
            for e in self.by_key.values():
                if e.url:
                    by_url.setdefault((e.type, e.url), []).append(e)
            self._by_url = by_url
        candidates = self._by_url.get((type_, url), [])
        if version:
            candidates = [e for e in candidates if e.version == version]
        if not candidates:
            return None
        rank = {"active": 0, "draft": 1, "unknown": 2, "retired": 3}
        return min(
            candidates,
            key=lambda e: (rank.get(e.status or "unknown", 2), _Neg(_version_key(e.version))),
        )

    def plans(self) -> list[Entry]:
        return [e for e in self.by_key.values() if e.type == "PlanDefinition"]


class _Neg:
    """Sort newer versions first."""

    __slots__ = ("key",)

    def __init__(self, key: tuple) -> None:
        self.key = key

    def __lt__(self, other: _Neg) -> bool:
        return self.key > other.key

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Neg) and self.key == other.key

    def __hash__(self) -> int:
        return hash(self.key)
