"""The live terminology of one server: the packaged catalog plus the stored CodeSystems, ValueSets
and ConceptMaps, kept up to date from the store's commits.

The catalog starts as a copy of the packaged one (R4 core, ``terminology/``, ``mappings/``).
Every committed CodeSystem, ValueSet or ConceptMap with a ``url`` replaces the packaged resource of
that url (the most recently written stored resource wins when several share a url); when the last
stored resource of a url is deleted, the packaged one (if any) is used again.

At start-up the shipped content (``terminology/`` and ``mappings/``) is written into the store
under its own ids, so it can be read and searched like any resource (setting
``load_terminology``), by the shipped-content loader (``content/shipped.py``: idempotent, local
changes kept until a release changes that resource).
"""

from __future__ import annotations

import logging
from typing import Any

from fhir_server.content.shipped import attach as shipped_content
from fhir_server.json_codec import loads_trusted
from fhir_server.store.protocol import StoredVersion
from fhir_server.terminology.catalog import (
    TERMINOLOGY_TYPES,
    Catalog,
    Codes,
    default_catalog,
    shipped_resources,
)
from fhir_server.terminology.search import value_set_codes

log = logging.getLogger(__name__)
TYPES = tuple(sorted(TERMINOLOGY_TYPES))
META_KEY = "terminology-shipped"  # the loader's state: {"release": digest, "files": {...}}
BATCH = 500


class Terminology:
    def __init__(self, service: Any) -> None:
        self.svc = service
        self.packaged: Catalog = default_catalog()
        self.catalog: Catalog = self.packaged.copy()
        self._stored: dict[tuple[str, str], dict[str, Any]] = {}  # (type, id) -> resource
        self._versions: dict[tuple[str, str], int] = {}  # (type, id) -> version held
        self._ids_by_url: dict[tuple[str, str], list[str]] = {}  # (type, url) -> ids, oldest first
        self._search_cache: dict[str, Codes] = {}
        service.store.add_listener(self.committed)
        service.parser.value_set_codes = self.codes_for_search
        service.terminology = self
        shipped_content(service).add(
            "terminology",
            shipped_resources,
            enabled=getattr(service.settings, "load_terminology", True),
        )

    # -- start-up ---------------------------------------------------------------------------------

    async def start(self) -> None:
        """Follow what is stored (the shipped terminology itself is written by the service's
        shipped-content loader before this runs)."""
        await self.load_stored()

    async def load_stored(self) -> None:
        after = None
        while True:
            versions, after = await self.svc.store.current_versions(TYPES, after, BATCH)
            for version in versions:
                if self._versions.get((version.type, version.id)) != version.version:
                    self._put(version.type, version.id, loads_trusted(version.body))
                    self._versions[(version.type, version.id)] = version.version
            if after is None:
                break

    async def load_shipped(self) -> int:
        """Write the shipped terminology into the store where it is missing or changed by a
        new release (see ``content/shipped.py``); returns how many resources were written."""
        return await self.svc.shipped.load("terminology", list(shipped_resources()))

    # -- following the store ----------------------------------------------------------------------

    def committed(self, versions: list[StoredVersion]) -> None:
        for version in versions:
            if version.type not in TERMINOLOGY_TYPES:
                continue
            if version.deleted or version.body is None:
                self._drop(version.type, version.id)
                self._versions.pop((version.type, version.id), None)
            else:
                self._put(version.type, version.id, loads_trusted(version.body))
                self._versions[(version.type, version.id)] = version.version

    def _put(self, type_: str, id_: str, resource: dict[str, Any]) -> None:
        self._drop(type_, id_)
        self._stored[(type_, id_)] = resource
        url = resource.get("url")
        if isinstance(url, str) and url:
            self._ids_by_url.setdefault((type_, url), []).append(id_)
            self.catalog.add(resource)
        self._search_cache.clear()

    def _drop(self, type_: str, id_: str) -> None:
        old = self._stored.pop((type_, id_), None)
        if old is None:
            return
        self._search_cache.clear()
        url = old.get("url")
        if not isinstance(url, str) or not url:
            return
        ids = self._ids_by_url.get((type_, url), [])
        if id_ in ids:
            ids.remove(id_)
        if ids:
            self.catalog.add(self._stored[(type_, ids[-1])])
            return
        self._ids_by_url.pop((type_, url), None)
        self.catalog.remove(type_, url)
        packaged = self._packaged(type_, url)
        if packaged is not None:
            self.catalog.add(packaged)

    def _packaged(self, type_: str, url: str) -> dict[str, Any] | None:
        if type_ == "ValueSet":
            return self.packaged.value_sets.get(url)
        if type_ == "ConceptMap":
            return self.packaged.concept_maps.get(url)
        if url in self.packaged.supplements:
            return self.packaged.supplements[url]
        info = self.packaged.code_systems.get(url)
        return info.resource if info is not None else None

    # -- lookups ----------------------------------------------------------------------------------

    def stored(self, type_: str, id_: str) -> dict[str, Any] | None:
        return self._stored.get((type_, id_))

    def codes_for_search(self, reference: str) -> Codes:
        """``:in`` / ``:not-in``: canonical URL or ``ValueSet/[id]`` -> (system, code) pairs."""
        codes = self._search_cache.get(reference)
        if codes is None:
            codes = value_set_codes(
                self.catalog,
                reference,
                self.svc.settings.public_url,
                lambda id_: self.stored("ValueSet", id_),
            )
            if len(self._search_cache) > 256:
                self._search_cache.clear()
            self._search_cache[reference] = codes
        return codes


def attach(service: Any) -> Terminology:
    """The terminology of ``service`` (created on first use)."""
    existing = getattr(service, "terminology", None)
    if isinstance(existing, Terminology):
        return existing
    return Terminology(service)
