"""Subscriptions belong to whoever created them (docs/subscriptions.md "Who sees a
Subscription").

A Subscription carries its endpoint's headers (often a secret) and tells what someone watches, so
it is read, changed, deleted, searched and asked about (``$status``, ``$events``) by its owner
only (the professional or backend client that created it; administrators too). This wraps the
security guard: every decision of the guard stands, and for Subscriptions the owner rule is added.
Someone else's Subscription answers exactly like a missing one.
"""

from __future__ import annotations

from typing import Any

from fhir_server.json_codec import loads_trusted
from fhir_server.service.context import RequestContext
from fhir_server.service.core import Access
from fhir_server.store.protocol import StoredVersion
from fhir_server.store.query import NotPred, TokenPred
from fhir_server.subscriptions.hook import OWNER_SYSTEM, owner_of
from fhir_server.subscriptions.records import owner_code

ON_STORED = frozenset(
    {"read", "vread", "update", "patch", "delete", "history-instance", "operation"}
)


def _admin(principal: Any) -> bool:
    return bool(getattr(principal, "admin", False) or principal.claims.get("bib_admin"))


class OwnerGuard:
    def __init__(self, inner: Any, svc: Any) -> None:
        self.inner = inner
        self.svc = svc

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def _owned(self, principal: Any, version: StoredVersion | None) -> bool:
        if version is None:
            return True
        body = version.body
        if body is None:  # a tombstone: its owner is the owner of the version before it
            return True
        return owner_of(loads_trusted(body)) == owner_code(principal)

    async def _owned_now(self, principal: Any, version: StoredVersion) -> bool:
        if version.body is None:
            before = (
                await self.svc.store.version(version.type, version.id, version.version - 1)
                if version.version > 1
                else None
            )
            return before is None or self._owned(principal, before)
        return self._owned(principal, version)

    async def check(self, ctx: RequestContext, access: Access) -> None:
        await self.inner.check(ctx, access)
        principal = ctx.principal
        if access.resource_type != "Subscription" or principal is None or _admin(principal):
            return
        if access.interaction not in ON_STORED or not access.resource_id:
            return
        stored = access.current
        if stored is None or access.interaction in ("history-instance", "operation"):
            stored = await self.svc.store.current("Subscription", access.resource_id)
        if stored is not None and not await self._owned_now(principal, stored):
            from fhir_server.security.guard import hidden

            if hasattr(ctx, "refusal") and not getattr(ctx, "refusal", None):
                ctx.refusal = "the Subscription belongs to someone else"  # type: ignore[attr-defined]
            raise hidden("Subscription", access.resource_id)

    async def search_filter(self, ctx: RequestContext, types: tuple[str, ...]) -> list[Any]:
        clauses = await self.inner.search_filter(ctx, types)
        principal = ctx.principal
        if "Subscription" not in types or principal is None or _admin(principal):
            return clauses
        mine = TokenPred("_tag", OWNER_SYSTEM, owner_code(principal))
        if types == ("Subscription",):
            return [*clauses, (mine,)]
        # other types carry no owner tag (the write hook removes it from them)
        return [*clauses, (NotPred((TokenPred("_tag", OWNER_SYSTEM, None),)), mine)]

    async def visible(self, ctx: RequestContext, version: StoredVersion) -> bool:
        if not await self.inner.visible(ctx, version):
            return False
        principal = ctx.principal
        if version.type != "Subscription" or principal is None or _admin(principal):
            return True
        return await self._owned_now(principal, version)

    async def hides(self, ctx: RequestContext, version: StoredVersion) -> bool:
        if await self.inner.hides(ctx, version):
            return True
        principal = ctx.principal
        if version.type != "Subscription" or principal is None or _admin(principal):
            return False
        return not await self._owned_now(principal, version)
