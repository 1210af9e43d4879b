"""The Questionnaires the server knows, compiled once, found by canonical URL.

Kept in memory: loaded at start-up and followed through the store's commit listener (like the
stored StructureDefinitions of the validator), so validating a response costs no store access.
A canonical not in memory (written by another server process on the same MongoDB, or earlier in
the same transaction Bundle) is looked up in the store by the write hook (``resolve``).

A canonical is ``url|version`` or ``url``; without a version the newest ``active`` Questionnaire
with that URL wins (else the newest of any status). ``Questionnaire/[id]`` and this server's
absolute ``[base]/Questionnaire/[id]`` are accepted too.
"""

from __future__ import annotations

import logging
from typing import Any

from fhir_server.json_codec import loads_trusted
from fhir_server.screening.form import Form, compile_form
from fhir_server.store.protocol import StoredVersion
from fhir_server.store.query import Query, UriPred

log = logging.getLogger(__name__)


class _Entry:
    __slots__ = ("form", "id", "last_updated", "resource", "status", "url", "version")

    def __init__(self, id_: str, resource: dict[str, Any]) -> None:
        self.id = id_
        self.resource = resource
        self.url = resource.get("url") if isinstance(resource.get("url"), str) else None
        version = resource.get("version")
        self.version = version if isinstance(version, str) else None
        self.status = resource.get("status")
        meta = resource.get("meta") if isinstance(resource.get("meta"), dict) else {}
        self.last_updated = str(meta.get("lastUpdated", ""))
        self.form: Form | None = None

    def compiled(self) -> Form:
        if self.form is None:
            self.form = compile_form(self.resource)
        return self.form


class FormRegistry:
    def __init__(self, svc: Any) -> None:
        self.svc = svc
        self._by_id: dict[str, _Entry] = {}
        self._by_url: dict[str, set[str]] = {}

    # -- following the store ----------------------------------------------------------------

    async def load(self) -> None:
        after = None
        while True:
            versions, after = await self.svc.store.current_versions(("Questionnaire",), after, 500)
            for version in versions:
                self._put(version)
            if after is None:
                break

    def committed(self, versions: list[StoredVersion]) -> None:
        for version in versions:
            if version.type == "Questionnaire":
                self._put(version)

    def _put(self, version: StoredVersion) -> None:
        self._drop(version.id)
        if version.deleted or version.body is None:
            return
        try:
            resource = loads_trusted(version.body)
        except ValueError:  # pragma: no cover - stored bodies are valid JSON
            return
        entry = _Entry(version.id, resource)
        self._by_id[version.id] = entry
        if entry.url:
            self._by_url.setdefault(entry.url, set()).add(version.id)

    def _drop(self, id_: str) -> None:
        old = self._by_id.pop(id_, None)
        if old is not None and old.url:
            ids = self._by_url.get(old.url)
            if ids is not None:
                ids.discard(id_)
                if not ids:
                    self._by_url.pop(old.url, None)

    # -- lookups ----------------------------------------------------------------------------

    def _local_id(self, url: str) -> str | None:
        base = self.svc.settings.public_url.rstrip("/") + "/"
        local = url[len(base) :] if url.startswith(base) else url
        parts = local.split("/")
        if len(parts) == 2 and parts[0] == "Questionnaire" and parts[1]:
            return parts[1]
        return None

    def get(self, canonical: str) -> Form | None:
        """The compiled Questionnaire a response names, from memory only."""
        entry = self._find(canonical)
        return entry.compiled() if entry is not None else None

    def _find(self, canonical: str) -> _Entry | None:
        url, _, version = canonical.partition("|")
        ids = self._by_url.get(url)
        if ids:
            candidates = [self._by_id[i] for i in ids if i in self._by_id]
            if version:
                candidates = [c for c in candidates if c.version == version]
            if candidates:
                return max(candidates, key=lambda c: (c.status == "active", c.last_updated, c.id))
            return None
        local = self._local_id(url)
        if local is not None and not version:
            return self._by_id.get(local)
        return None

    async def resolve(self, canonical: str) -> Form | None:
        """Like ``get``, falling back to the store (for a Questionnaire this process has not
        seen commit)."""
        form = self.get(canonical)
        if form is not None:
            return form
        url, _, _version = canonical.partition("|")
        local = self._local_id(url)
        if local is not None:
            stored = await self.svc.store.current("Questionnaire", local)
            if stored is not None:
                self._put(stored)
        else:
            query = Query(types=("Questionnaire",), where=[(UriPred("url", "eq", url),)], count=50)
            page = await self.svc.store.search(query)
            for hit in page.hits:
                current = await self.svc.store.current("Questionnaire", hit.id)
                if current is not None:
                    self._put(current)
        return self.get(canonical)

    def forms(self) -> list[Form]:
        return [entry.compiled() for entry in self._by_id.values()]

    def resource_by_url(self, canonical: str) -> tuple[str, dict[str, Any]] | None:
        entry = self._find(canonical)
        return (entry.id, entry.resource) if entry is not None else None
