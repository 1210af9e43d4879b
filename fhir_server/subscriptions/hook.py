"""The write hook of the subscriptions: the outbox, and Subscriptions checked and owned.

``after`` runs inside the unit of work of every write. For a resource of a watched type (the
types the topics trigger on and the types classic criteria may name; not the audit trail, not
Provenance) it writes one ``BibOutbox`` record in that same unit: if the change commits, so does
its record, and if it fails, neither exists. Nothing about subscribers is decided here: the
matcher reads the outbox in commit order (engine.py).

For a Subscription written by a client, ``before`` checks it (spec.py: channel, endpoint, criteria
or topic and filters; the endpoint's name is resolved and must not lead into a private network),
sets the status the client may ask for (``requested`` starts a handshake; ``off`` stops;
``active`` on a new or changed subscription means ``requested``), drops ``error`` (the server's)
and stamps the owner (``meta.tag`` ``bib-subscription-owner``: the professional or the backend
client; kept on every later write, so nobody can take a Subscription over). ``after`` records the
subscription's delivery state in the same unit.
"""

from __future__ import annotations

from typing import Any

import orjson

from fhir_server.errors import FhirError
from fhir_server.json_codec import loads_trusted
from fhir_server.service.context import RequestContext
from fhir_server.service.versioning import new_id, now_us
from fhir_server.store.protocol import StoredVersion, UnitOfWork
from fhir_server.subscriptions.records import (
    OUTBOX,
    STATE,
    data_of,
    new_state,
    owner_code,
    put,
    snapshot,
)
from fhir_server.subscriptions.spec import parse_spec

OWNER_SYSTEM = "https://borninbelgiumpro.be/fhir/subscription-owner"
SERVER_FIELDS = ("error",)


class ServerContext(RequestContext):
    """The context of the server's own writes of a Subscription (status active / error / off)."""


def owner_of(resource: dict[str, Any] | None) -> str | None:
    for tag in ((resource or {}).get("meta") or {}).get("tag", ()) or ():
        if isinstance(tag, dict) and tag.get("system") == OWNER_SYSTEM:
            code = tag.get("code")
            return code if isinstance(code, str) else None
    return None


def _set_owner(resource: dict[str, Any], code: str | None) -> None:
    meta = resource.setdefault("meta", {})
    tags = [
        t
        for t in meta.get("tag", ()) or ()
        if not (isinstance(t, dict) and t.get("system") == OWNER_SYSTEM)
    ]
    if code:
        tags.append({"system": OWNER_SYSTEM, "code": code})
    if tags:
        meta["tag"] = tags
    else:
        meta.pop("tag", None)


def _channel_key(resource: dict[str, Any]) -> bytes:
    """What a change of which needs a new handshake (endpoint, headers, criteria, payload)."""
    return orjson.dumps(
        [resource.get("criteria"), resource.get("_criteria"), resource.get("channel")],
        option=orjson.OPT_SORT_KEYS,
    )


class SubscriptionHook:
    def __init__(self, engine: Any) -> None:
        self.engine = engine

    async def before(self, ctx: Any, resource: dict, current: StoredVersion | None) -> None:
        type_ = resource.get("resourceType")
        if type_ != "Subscription":
            if owner_of(resource) is not None:
                _set_owner(resource, None)  # the owner tag marks Subscriptions only
            return
        if isinstance(ctx, ServerContext):
            return
        engine = self.engine
        principal = ctx.principal
        if principal is not None:
            kind = getattr(principal, "kind", "user")
            if kind == "user" and principal.role is None and not getattr(principal, "admin", 0):
                raise FhirError(
                    403,
                    "forbidden",
                    "subscriptions are for professionals with a BiB role and registered clients",
                )
        old = data_of(current)
        status = resource.get("status")
        if status == "error":
            raise FhirError(
                422,
                "business-rule",
                "only the server sets a Subscription's status to error; ask for requested to "
                "start again",
                "Subscription.status",
            )
        if status not in ("requested", "active", "off"):
            raise FhirError(
                422,
                "invalid",
                f"a Subscription is written as requested or off, not {status}",
                "Subscription.status",
            )
        if status == "active":
            unchanged = (
                old is not None
                and old.get("status") == "active"
                and _channel_key(old) == _channel_key(resource)
            )
            if not unchanged:
                resource["status"] = "requested"  # the handshake decides
        for name in SERVER_FIELDS:
            resource.pop(name, None)
        _set_owner(resource, owner_of(old) if old is not None else owner_code(principal))
        try:
            spec = parse_spec(engine.svc, resource, engine.topics, engine.policy, engine.watched)
        except FhirError:
            if resource["status"] == "off" and old is not None:
                return  # turning off a subscription that is no longer valid (new rules)
            raise
        if resource["status"] == "requested":
            await engine.policy.pin(spec.endpoint)  # the name must not lead inside

    async def after(
        self,
        ctx: Any,
        uow: UnitOfWork,
        written: StoredVersion,
        previous: StoredVersion | None,
    ) -> None:
        engine = self.engine
        if written.type not in engine.watched:
            return
        record = {
            "t": written.type,
            "i": written.id,
            "v": written.version,
            "p": previous.version if previous is not None and not previous.deleted else 0,
            "d": written.deleted,
            "ts": written.last_updated,
        }
        if written.type == "Subscription" and not isinstance(ctx, ServerContext):
            await self._state(ctx, uow, written)
        # a fresh UUIDv7: unique for ever, so no lookup is needed (the change's sequence number
        # is not known before the commit on every store: MongoDB numbers a unit at its turn);
        # readers follow the outbox in commit order (Store.log), not by id
        await put(uow, OUTBOX, new_id(), record, None, fresh=True)

    async def _state(self, ctx: Any, uow: UnitOfWork, written: StoredVersion) -> None:
        resource = loads_trusted(written.body) if written.body is not None else None
        current = await uow.current(STATE, written.id)
        state = data_of(current)
        principal = ctx.principal
        status = "off" if resource is None else resource.get("status", "off")
        if state is None:
            state = new_state(written.seq, snapshot(principal), status)
        else:
            if resource is not None and owner_code(principal) == owner_of(resource):
                state["owner"] = snapshot(principal)
            state["status"] = status
            if status == "requested":
                state.update(handshake=True, error=None, failures=0, next=0)
                state["gen"] = int(state.get("gen", 0)) + 1
            elif status == "off":
                state["handshake"] = False
        if resource is not None:
            try:
                spec = parse_spec(
                    self.engine.svc,
                    resource,
                    self.engine.topics,
                    self.engine.policy,
                    self.engine.watched,
                )
                state["heartbeat"], state["end"] = spec.heartbeat, spec.end
            except FhirError:  # an off subscription that no longer passes (checked before)
                state["heartbeat"], state["end"] = None, None
        state["changed"] = now_us()
        await put(uow, STATE, written.id, state, current)
