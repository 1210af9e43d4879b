"""The service layer: one object that every interaction goes through.

It owns the collaborators (store, validator, search registry and parser) and the two hooks the
security layer plugs into: ``guard`` (may this caller do this?) and ``audit`` (record that they
did, or were refused). Interactions live in their own modules and receive this object.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from fhir_server.config import Settings
from fhir_server.errors import FhirError, Issue, bad_request
from fhir_server.json_codec import dumps
from fhir_server.model.structure import Model, r4_model
from fhir_server.search.dates import set_default_zone
from fhir_server.search.extract import Extractor
from fhir_server.search.parse import SearchParser
from fhir_server.search.registry import Registry, build_r4_registry
from fhir_server.service.context import RequestContext
from fhir_server.service.versioning import now_us, stamp_meta
from fhir_server.store.protocol import IndexRows, Store, StoredVersion, UnitOfWork
from fhir_server.validation.structure import StructuralValidator

log = logging.getLogger(__name__)


@dataclass(slots=True, frozen=True)
class Access:
    """What a caller attempts, as the guard and the audit trail see it."""

    interaction: str  # read | vread | search-type | search-system | create | update | patch |
    #                   delete | history-* | transaction | batch | operation
    resource_type: str | None = None
    resource_id: str | None = None
    resource: dict | None = field(default=None, compare=False)  # the new content (writes)
    current: StoredVersion | None = field(default=None, compare=False)  # what is stored now
    operation: str | None = None  # the operation name for interaction "operation"


class Guard(Protocol):
    """The authorization hook of the service layer (the security layer implements it)."""

    async def check(self, ctx: RequestContext, access: Access) -> None:
        """Raise FhirError(401/403) if the caller may not do this."""

    async def search_filter(self, ctx: RequestContext, types: tuple[str, ...]) -> list[Any]:
        """Extra AND clauses (store/query.py predicates) that narrow every search of these types
        to what the caller may see (compartments, security labels, care relationships)."""

    async def visible(self, ctx: RequestContext, version: StoredVersion) -> bool:
        """Whether an included resource, history entry... may be shown to the caller."""

    async def hides(self, ctx: RequestContext, version: StoredVersion) -> bool:
        """Whether a stored resource must look to the caller exactly like one that does not
        exist. Asked before anything that could reveal it (applying a patch, comparing a
        precondition, building an error from its content, choosing a status)."""


class Auditor(Protocol):
    async def record(self, ctx: RequestContext, status: int) -> None:
        """Record what ``ctx.accesses`` attempted and how it ended (HTTP status)."""

    def refused(
        self,
        method: str,
        path: str,
        query: str,
        client_ip: str | None,
        request_id: str,
        status: int,
        reason: str,
        principal: Any = None,
    ) -> Any:
        """Record a request refused before any request context existed (size, token...);
        returns an awaitable done when the record is durable."""


class OpenGuard:
    async def check(self, ctx: RequestContext, access: Access) -> None:
        return None

    async def search_filter(self, ctx: RequestContext, types: tuple[str, ...]) -> list[Any]:
        return []

    async def visible(self, ctx: RequestContext, version: StoredVersion) -> bool:
        return True

    async def hides(self, ctx: RequestContext, version: StoredVersion) -> bool:
        return False


class Done:
    """An awaitable that is already done."""

    def __await__(self):  # type: ignore[no-untyped-def]
        return iter(())


class NoAudit:
    async def record(self, ctx: RequestContext, status: int) -> None:
        return None

    def refused(self, *args: Any, **kwargs: Any) -> Done:
        return Done()


class WriteHook(Protocol):
    """Runs inside the unit of work of every write (create, update, patch, delete)."""

    async def before(
        self, ctx: RequestContext, resource: dict, current: StoredVersion | None
    ) -> None: ...

    async def after(
        self,
        ctx: RequestContext,
        uow: UnitOfWork,
        written: StoredVersion,
        previous: StoredVersion | None,
    ) -> None: ...


class ResourceValidator(Protocol):
    def validate(self, resource: dict, expected_type: str | None = None) -> list[Issue]: ...


class FhirService:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        model: Model | None = None,
        registry: Registry | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.model = model or r4_model()
        set_default_zone(settings.timezone)
        self.registry = registry or build_r4_registry(self.model)
        self.validator: ResourceValidator = StructuralValidator(self.model)
        self.profile_validators: list[ResourceValidator] = []  # profiles plug in here
        self.extractor = Extractor(self.registry, settings.public_url)
        self.parser = SearchParser(
            self.registry, settings.public_url, settings.default_count, settings.max_count
        )
        self.guard: Guard = OpenGuard()
        self.audit: Auditor = NoAudit()
        self.write_hooks: list[WriteHook] = []
        # asked when a conditional interaction finds nothing the caller may see: a plug-in may
        # resolve the condition itself (security: identifying a woman by her SSIN)
        self.conditional_resolvers: list[Any] = []
        self.start_hooks: list[Any] = []  # async callables run by start() (plug-ins load state)
        # extra CapabilityStatement.rest fields from plug-ins (e.g. "security": SMART)
        self.capability_extras: dict[str, Any] = {}
        # operations plug-ins add, listed in the CapabilityStatement with their definitions:
        # {"name": "apply", "definition": canonical, "types": ("PlanDefinition",)} (no types:
        # a system-level operation)
        self.capability_operations: list[dict[str, Any]] = []
        # plug-ins that add to the CapabilityStatement (e.g. the SDC capabilities it instantiates):
        # each is called with the statement being built and changes it in place
        self.capability_hooks: list[Any] = []
        self._maintenance: asyncio.Task[None] | None = None
        from fhir_server.content.shipped import ShippedContent
        from fhir_server.service.search_parameters import SearchParameterManager

        # shipped resources (terminology, Questionnaires, PlanDefinitions...) features register
        self.shipped = ShippedContent(self)
        from fhir_server.service.sealing import Sealer

        self.sealer = Sealer()  # paging cursors: sealed, bound to the caller

        # transforms of resources on the way out (reads, search entries), by resource type:
        # fn(ctx, resource dict) -> None (edits it). Only called when registered for the type.
        self.output_hooks: dict[str, list[Any]] = {}
        for resource_type in filter(
            None, (t.strip() for t in settings.text_search_types.split(","))
        ):
            self.enable_text(resource_type)

        self.search_parameters = SearchParameterManager(self)
        self.profile_validators.append(self.search_parameters)
        self.parser.pending_message = self.search_parameters.pending_message
        store.add_listener(self.search_parameters.committed)

    def enable_text(self, resource_type: str) -> None:
        """Index free text (_content, _text) of a resource type; resources stored before are
        indexed in the background at start-up (search_parameters.backfill_builtin)."""
        if self.model.is_resource(resource_type) and not self.registry.text_enabled(resource_type):
            self.registry.enable_text(resource_type)

    def add_output_hook(self, resource_type: str, hook: Any) -> None:
        self.output_hooks.setdefault(resource_type, []).append(hook)

    def outgoing(self, ctx: RequestContext, resource_type: str, body: bytes) -> bytes | None:
        """The body as the caller should get it, or None when no output hook changes it."""
        hooks = self.output_hooks.get(resource_type)
        if not hooks:
            return None
        from fhir_server.json_codec import loads_trusted

        resource = loads_trusted(body)
        changed = False
        for hook in hooks:
            changed = bool(hook(ctx, resource)) or changed
        return dumps(resource) if changed else None

    async def start(self) -> None:
        """Called once the store is open: load stored SearchParameters, resume their jobs, write
        the shipped content, and start the maintenance loop."""
        await self.sealer.load(self.store)
        await self.search_parameters.load()
        await self.search_parameters.backfill_builtin()
        await self.shipped.load_all()
        for hook in self.start_hooks:
            await hook()
        self._maintenance = asyncio.get_running_loop().create_task(self._maintain())

    async def stop(self) -> None:
        if self._maintenance is not None:
            self._maintenance.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._maintenance
        await self.search_parameters.stop()

    async def prune(self) -> int:
        """Forget index rows that only expired paging snapshots could need."""
        retention_us = self.settings.snapshot_retention_seconds * 1_000_000
        return await self.store.prune_snapshots(now_us() - retention_us)

    async def _maintain(self) -> None:
        interval = max(60, self.settings.snapshot_retention_seconds // 4)
        while True:
            await asyncio.sleep(interval)
            try:
                await self.prune()
            except Exception:  # maintenance must never take the server down
                log.exception("pruning old search snapshots failed")

    # -- authorization (called once per attempted access, by every interaction) -------------

    async def authorize(self, ctx: RequestContext, access: Access) -> None:
        ctx.accesses.append(access)
        await self.guard.check(ctx, access)

    async def search_filter(self, ctx: RequestContext, types: tuple[str, ...]) -> list[Any]:
        return await self.guard.search_filter(ctx, types)

    async def visible(self, ctx: RequestContext, version: StoredVersion) -> bool:
        return await self.guard.visible(ctx, version)

    async def existing(
        self, ctx: RequestContext, version: StoredVersion | None
    ) -> StoredVersion | None:
        """``version`` if the caller may know it exists, else None: what every interaction on
        one stored resource sees first, so that a resource the caller may not see answers
        exactly like a missing one (same status, same message, no ETag)."""
        if version is None or ctx.principal is None:
            return version
        return None if await self.guard.hides(ctx, version) else version

    # -- checks shared by the interactions ------------------------------------------------

    def require_type(self, resource_type: str) -> None:
        if not self.model.is_resource(resource_type):
            raise FhirError(404, "not-supported", f"unknown resource type {resource_type!r}")

    def validate(self, resource: Any, resource_type: str) -> dict:
        if not isinstance(resource, dict):
            raise bad_request(
                "the request body must be a JSON object (a FHIR resource)", code="structure"
            )
        actual = resource.get("resourceType")
        if actual != resource_type:
            raise bad_request(
                f"resourceType {actual!r} does not match the {resource_type} endpoint",
                expression="resourceType",
            )
        issues = self.validator.validate(resource, resource_type)
        errors = [i for i in issues if i.severity in ("error", "fatal")]
        if errors:
            raise FhirError(400, errors[0].code, errors[0].diagnostics, issues=issues)
        profile_issues: list[Issue] = []
        for validator in self.profile_validators:
            profile_issues.extend(validator.validate(resource, resource_type))
        if any(i.severity in ("error", "fatal") for i in profile_issues):
            first = next(i for i in profile_issues if i.severity in ("error", "fatal"))
            raise FhirError(422, first.code, first.diagnostics, issues=profile_issues)
        return resource

    # -- the write primitive --------------------------------------------------------------

    async def store_version(
        self,
        ctx: RequestContext,
        uow: UnitOfWork,
        resource: dict,
        current: StoredVersion | None,
        method: str,
        *,
        fresh: bool = False,
        indexer: Callable[[dict, int], IndexRows] | None = None,
    ) -> StoredVersion:
        """Stamp meta, index and write ``resource`` as the next version after ``current``.

        Write hooks run here, inside the unit of work: ``before`` may amend the resource (e.g.
        security labels from the label policy), ``after`` may write more in the same unit
        (e.g. a Provenance), so either everything commits or nothing does. ``indexer``
        (resource, lastUpdated µs) replaces the generic extractor for a resource the caller
        built itself and knows how to index (the security layer's Provenance).
        """
        for hook in self.write_hooks:
            await hook.before(ctx, resource, current)
        version = current.version + 1 if current else 1
        last_updated = now_us()
        stamp_meta(resource, version, last_updated)
        index: IndexRows = (
            indexer(resource, last_updated)
            if indexer is not None
            else self.extractor.extract(resource, last_updated=last_updated)
        )
        stored = StoredVersion(
            resource["resourceType"],
            resource["id"],
            version,
            last_updated,
            False,
            method,
            dumps(resource),
        )
        written = await uow.write(stored, index, current.version if current else 0, fresh=fresh)
        for hook in self.write_hooks:
            await hook.after(ctx, uow, written, current)
        return written

    async def store_tombstone(
        self, ctx: RequestContext, uow: UnitOfWork, current: StoredVersion
    ) -> StoredVersion:
        tombstone = StoredVersion(
            current.type, current.id, current.version + 1, now_us(), True, "DELETE", None
        )
        written = await uow.write(tombstone, None, current.version)
        for hook in self.write_hooks:
            await hook.after(ctx, uow, written, current)
        return written
