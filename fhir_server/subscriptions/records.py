"""The subscription machinery's records, kept in the store beside the resources.

They are versions of internal types (not FHIR resources: the API never serves them; system
history skips them), written through the store's ordinary unit of work, so they work on every
store and commit atomically with whatever they describe:

``BibOutbox``
    one per change of a watched resource, written by a write hook *in the unit of work of the
    change itself* (the outbox): type, id, version, the version before, delete or not;
``BibSubscriptionState``
    one per Subscription (same id): its delivery state (status, error, ``events`` = the last
    event number given out, ``delivered`` = the last one the endpoint acknowledged, handshake
    pending, failures, next attempt, last notification), the owner's rights at subscription
    time, the outbox position it starts after, and the delivery *lease*;
``BibSubscriptionEvent``
    one per event of a subscription (id ``<subscription>.<number>``): number, time, focus;
``BibSubscriptionMatcher``
    the matcher's position in the outbox and its lease.

A lease (``lease`` = the holder's process id, ``until`` = expiry in µs) is taken and renewed in a
unit of work that reads the record and writes it back: units of work are serialised (one at a
time in the SQLite process; on MongoDB every unit takes the cluster-wide writer turn, and a
version number is unique), so of two processes only one can hold it (docs/subscriptions.md).
"""

from __future__ import annotations

from typing import Any

import orjson

from fhir_server.json_codec import loads_trusted
from fhir_server.service.versioning import now_us
from fhir_server.store.protocol import StoredVersion, UnitOfWork

OUTBOX = "BibOutbox"
STATE = "BibSubscriptionState"
EVENT = "BibSubscriptionEvent"
MATCHER = "BibSubscriptionMatcher"
MATCHER_ID = "matcher"
INTERNAL = frozenset({OUTBOX, STATE, EVENT, MATCHER})


def data_of(version: StoredVersion | None) -> dict[str, Any] | None:
    if version is None or version.deleted or version.body is None:
        return None
    return loads_trusted(version.body)


async def put(
    uow: UnitOfWork,
    type_: str,
    id_: str,
    data: dict[str, Any],
    current: StoredVersion | None,
    *,
    fresh: bool = False,
) -> StoredVersion:
    """Write a record's next version (no search index: records are read by id or by log)."""
    number = current.version + 1 if current is not None else 1
    version = StoredVersion(
        type_, id_, number, now_us(), False, "PUT" if current else "POST", orjson.dumps(data)
    )
    return await uow.write(version, None, current.version if current else 0, fresh=fresh)


def event_id(subscription: str, number: int) -> str:
    return f"{subscription}.{number:010d}"


def new_state(start: int, owner: dict[str, Any] | None, status: str) -> dict[str, Any]:
    return {
        "status": status,
        "error": None,
        "events": 0,
        "delivered": 0,
        "start": start,  # outbox records after this sequence number may concern it
        "handshake": status == "requested",
        "owner": owner,
        "lease": None,
        "until": 0,
        "failures": 0,
        "next": 0,
        "last": 0,
    }


# -- the subscriber's rights ------------------------------------------------------------------


def owner_code(principal: Any) -> str:
    """Who owns a Subscription: the professional (her Practitioner), a backend client, or the
    server itself (no principal)."""
    if principal is None:
        return "server"
    if getattr(principal, "kind", "user") == "system":
        return f"client:{principal.client_id or principal.subject}"
    return principal.practitioner or f"user:{principal.subject}"


def snapshot(principal: Any) -> dict[str, Any] | None:
    """The subscriber's rights at subscription time (what a notification may carry is judged
    with them and the care relationships, consent and labels of the moment)."""
    if principal is None:
        return None
    claims = getattr(principal, "claims", {}) or {}
    return {
        "sub": principal.subject,
        "client": principal.client_id,
        "kind": getattr(principal, "kind", claims.get("bib_kind", "user")),
        "role": principal.role,
        "practitioner": principal.practitioner,
        "organization": principal.organization,
        "roles": [r for r in claims.get("bib_practitioner_roles", ()) if isinstance(r, str)],
        "scope": " ".join(sorted(principal.scopes)),
        "admin": bool(getattr(principal, "admin", claims.get("bib_admin", False))),
        "patient_data": bool(getattr(principal, "patient_data", True)),
    }


def principal_from(data: dict[str, Any] | None) -> Any:
    if not data:
        return None
    from fhir_server.security.principal import SecurePrincipal
    from fhir_server.security.scopes import ScopeSet

    scope = data.get("scope") or ""
    claims: dict[str, Any] = {"bib_kind": data.get("kind", "user")}
    if data.get("roles"):
        claims["bib_practitioner_roles"] = list(data["roles"])
    return SecurePrincipal(
        subject=data.get("sub") or "",
        client_id=data.get("client"),
        scopes=frozenset(scope.split()),
        role=data.get("role"),
        practitioner=data.get("practitioner"),
        organization=data.get("organization"),
        claims=claims,
        kind=data.get("kind") or "user",
        admin=bool(data.get("admin")),
        patient_data=bool(data.get("patient_data", True)),
        scope_set=ScopeSet.parse(scope),
    )
