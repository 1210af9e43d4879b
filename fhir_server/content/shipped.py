"""Shipped content written into the store at start-up: terminology, Questionnaires,
PlanDefinitions, SearchParameters... whatever a feature ships as FHIR resources.

Each feature registers a *source* (a name and a function returning its resources, in a stable
order). At start-up every source is loaded, in registration order, before the demo content:

- idempotent: the digests of the shipped resources are kept in the store's meta table (one entry
  per source), and a resource is written only when it changed since the last start (a new
  release), and only if the stored copy differs from it;
- local changes to a shipped resource (an administrator edits a Questionnaire) are kept until a
  release changes that resource;
- a shipped resource that does not validate is logged and skipped; it never stops the server.

Resources are written through the service's write path (validation, write hooks, indexing) with
an internal context (no principal), in one unit of work per source.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterable
from importlib import resources
from importlib.resources.abc import Traversable
from typing import Any

import orjson

from fhir_server.errors import FhirError
from fhir_server.json_codec import loads_trusted
from fhir_server.service.context import RequestContext

log = logging.getLogger(__name__)

LIBRARY_PACKAGE = "fhir_server.content.library"  # the top-level content/ folder, installed


def digest(resource: dict[str, Any]) -> str:
    return hashlib.blake2b(
        orjson.dumps(resource, option=orjson.OPT_SORT_KEYS), digest_size=16
    ).hexdigest()


def _without_meta(resource: dict[str, Any]) -> dict[str, Any]:
    out = dict(resource)
    out.pop("meta", None)
    return out


def json_files(folder: Traversable) -> list[Traversable]:
    """Every ``*.json`` file under ``folder``, recursively, in a stable order."""
    files: list[Traversable] = []
    stack = [folder]
    while stack:
        current = stack.pop()
        if not current.is_dir():
            continue
        for entry in current.iterdir():
            if entry.is_dir():
                stack.append(entry)
            elif entry.name.endswith(".json"):
                files.append(entry)
    return sorted(files, key=lambda e: str(e))


def library_resources(subfolder: str, types: Iterable[str] | None = None) -> list[dict[str, Any]]:
    """The FHIR resources in ``content/<subfolder>/`` (a Bundle file contributes its entries),
    optionally only those of ``types``."""
    wanted = set(types) if types is not None else None
    folder = resources.files(LIBRARY_PACKAGE)
    for part in subfolder.split("/"):
        folder = folder / part
    out: list[dict[str, Any]] = []
    for entry in json_files(folder):
        data = orjson.loads(entry.read_bytes())
        items = (
            [e.get("resource") for e in data.get("entry", ())]
            if isinstance(data, dict) and data.get("resourceType") == "Bundle"
            else [data]
        )
        for resource in items:
            if not isinstance(resource, dict) or "id" not in resource:
                continue
            if wanted is None or resource.get("resourceType") in wanted:
                out.append(resource)
    return out


class ShippedContent:
    """The registry of shipped sources of one service (``service.shipped``)."""

    def __init__(self, service: Any) -> None:
        self.svc = service
        self.sources: list[tuple[str, Callable[[], Iterable[dict[str, Any]]]]] = []
        self.enabled: dict[str, bool] = {}

    def add(
        self,
        name: str,
        load: Callable[[], Iterable[dict[str, Any]]],
        *,
        enabled: bool = True,
    ) -> None:
        """Register a source; ``load`` is called at start-up (and must not change what it
        returns: the resources are shared)."""
        self.sources.append((name, load))
        self.enabled[name] = enabled

    def add_library(self, name: str, subfolder: str, types: Iterable[str] | None = None) -> None:
        """Register ``content/<subfolder>/`` as a source (off when ``load_content`` is false)."""
        self.add(
            name,
            lambda: library_resources(subfolder, types),
            enabled=getattr(self.svc.settings, "load_content", True),
        )

    async def load_all(self) -> int:
        written = 0
        for name, load in self.sources:
            if self.enabled.get(name, True):
                written += await self.load(name, list(load()))
        return written

    async def load(self, name: str, shipped: list[dict[str, Any]]) -> int:
        """Write ``shipped`` where it is missing or changed by a new release; returns how many
        resources were written."""
        store = self.svc.store
        meta_key = "terminology-shipped" if name == "terminology" else f"shipped:{name}"
        release = hashlib.blake2b(
            "".join(digest(r) for r in shipped).encode(), digest_size=16
        ).hexdigest()
        raw = await store.get_meta(meta_key)
        previous = orjson.loads(raw) if raw else {}
        if previous.get("release") == release:
            return 0
        known: dict[str, str] = dict(previous.get("files", {}))
        ctx = RequestContext(base_url=self.svc.settings.public_url, prefer_return="minimal")
        written = 0
        async with store.unit_of_work() as uow:
            for resource in shipped:
                key = f"{resource['resourceType']}/{resource['id']}"
                file_digest = digest(resource)
                if known.get(key) == file_digest:
                    continue  # unchanged since the last start: local edits are kept
                current = await uow.current(resource["resourceType"], resource["id"])
                live = current is not None and not current.deleted and current.body is not None
                if live and _without_meta(loads_trusted(current.body)) == resource:
                    known[key] = file_digest
                    continue
                body = orjson.loads(orjson.dumps(resource))  # the write path may amend it
                try:
                    self.svc.validate(body, resource["resourceType"])
                except FhirError as exc:
                    log.error("shipped %s (%s) is not valid and was not loaded: %s", key, name, exc)
                    continue
                await self.svc.store_version(ctx, uow, body, current, "PUT")
                known[key] = file_digest
                written += 1
        complete = all(known.get(f"{r['resourceType']}/{r['id']}") for r in shipped)
        state = {"release": release if complete else None, "files": known}
        await store.set_meta(meta_key, orjson.dumps(state).decode())
        if written:
            log.info("loaded %d shipped %s resources into the store", written, name)
        return written


def attach(service: Any) -> ShippedContent:
    """The shipped-content registry of ``service`` (created on first use)."""
    existing = getattr(service, "shipped", None)
    if isinstance(existing, ShippedContent):
        return existing
    shipped = ShippedContent(service)
    service.shipped = shipped
    return shipped
