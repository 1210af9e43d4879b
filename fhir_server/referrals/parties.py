"""The two parties of a referral and who acts for them.

A referral has a *requester* side (the referrer: ``Task.requester``, normally the midwife's
PractitionerRole or her organisation) and an *owner* side (the receiving organisation:
``Task.owner``, an Organization, one of its PractitionerRoles or HealthcareServices). Each side is
an organisation, not one person: any professional of the organisation acts for it (a colleague
may accept a referral addressed to the service, or cancel one a colleague sent). A side is the
reference itself plus the organisation it belongs to (a PractitionerRole's ``organization``, a
HealthcareService's ``providedBy``).

Reading those directory resources is an internal lookup for an access decision (like the care
relationship index does); it reveals nothing to the caller but an allow or a refusal.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fhir_server.json_codec import loads_trusted
from fhir_server.security.relationships import MAX_PATIENTS, local_ref
from fhir_server.store.query import Query, ReferencePred

Reader = Callable[[str, str], Awaitable[dict[str, Any] | None]]


def ref_of(value: Any, base_url: str) -> str | None:
    """``Type/id`` of a ``{"reference": ...}`` to this server, else None."""
    if not isinstance(value, dict):
        return None
    return local_ref(value.get("reference"), base_url)


def store_reader(store: Any) -> Reader:
    async def read(type_: str, id_: str) -> dict[str, Any] | None:
        version = await store.current(type_, id_)
        if version is None or version.deleted or version.body is None:
            return None
        return loads_trusted(version.body)

    return read


def unit_reader(uow: Any) -> Reader:
    async def read(type_: str, id_: str) -> dict[str, Any] | None:
        version = await uow.current(type_, id_)
        if version is None or version.deleted or version.body is None:
            return None
        return loads_trusted(version.body)

    return read


async def organisation_of(read: Reader, ref: str | None, base_url: str) -> str | None:
    """The organisation a referral party belongs to (None for a Practitioner on her own)."""
    if not ref:
        return None
    type_, _, id_ = ref.partition("/")
    if type_ == "Organization":
        return ref
    if type_ not in ("PractitionerRole", "HealthcareService", "CareTeam"):
        return None
    resource = await read(type_, id_)
    if resource is None:
        return None
    key = {
        "PractitionerRole": "organization",
        "HealthcareService": "providedBy",
        "CareTeam": "managingOrganization",
    }[type_]
    value = resource.get(key)
    if isinstance(value, list):
        value = value[0] if value else None
    found = ref_of(value, base_url)
    return found if found and found.startswith("Organization/") else None


async def side_of(read: Reader, ref: str | None, base_url: str) -> frozenset[str]:
    """The references that count as one side of a referral: the party, its organisation and,
    for a PractitionerRole, the practitioner herself."""
    if not ref:
        return frozenset()
    org = await organisation_of(read, ref, base_url)
    person = await practitioner_of(read, ref) if ref.startswith("PractitionerRole/") else None
    return frozenset(r for r in (ref, org, person) if r)


async def practitioner_of(read: Reader, ref: str) -> str | None:
    type_, _, id_ = ref.partition("/")
    if type_ == "Practitioner":
        return ref
    if type_ != "PractitionerRole":
        return None
    role = await read(type_, id_)
    value = (role or {}).get("practitioner")
    return value.get("reference") if isinstance(value, dict) else None


def caller_refs(principal: Any) -> frozenset[str]:
    refs = getattr(principal, "user_refs", None)
    if refs is None:
        refs = tuple(r for r in (principal.practitioner, principal.organization) if r)
    return frozenset(refs)


async def acts_for(read: Reader, principal: Any, side: frozenset[str], base_url: str) -> bool:
    """Whether the caller acts for this side: she is the party, belongs to its organisation, or
    the party is one of her own PractitionerRoles."""
    mine = caller_refs(principal)
    if mine & side:
        return True
    practitioner = principal.practitioner
    if practitioner:
        for ref in side:
            if ref.startswith("PractitionerRole/") and await practitioner_of(read, ref) == (
                practitioner
            ):
                return True
    return False


async def is_caller(read: Reader, principal: Any, ref: str | None, base_url: str) -> bool:
    """Whether ``ref`` names the caller herself: her Practitioner, one of her PractitionerRoles,
    her organisation, or a service of her organisation. What a new referral's requester must be
    (no one sends a referral in someone else's name)."""
    if not ref:
        return False
    mine = caller_refs(principal)
    if ref in mine:
        return True
    type_ = ref.partition("/")[0]
    if type_ == "PractitionerRole" and principal.practitioner:
        if await practitioner_of(read, ref) != principal.practitioner:
            return False
        org = await organisation_of(read, ref, base_url)
        return org is None or principal.organization is None or org == principal.organization
    if type_ == "HealthcareService" and principal.organization:
        return await organisation_of(read, ref, base_url) == principal.organization
    return False


async def search_refs(store: Any, type_: str, param: str, refs: list[str]) -> list[dict]:
    """Resources of ``type_`` whose ``param`` names one of ``refs`` (committed data)."""
    out: list[dict] = []
    for start in range(0, len(refs), 400):
        preds = []
        for ref in refs[start : start + 400]:
            t, _, i = ref.partition("/")
            if t and i:
                preds.append(ReferencePred(param, t, i))
        if not preds:
            continue
        page = await store.search(Query((type_,), where=[tuple(preds)], count=MAX_PATIENTS))
        out.extend(loads_trusted(hit.body) for hit in page.hits)
    return out


async def party_aliases(store: Any, principal: Any) -> frozenset[str]:
    """The references that stand for a professional's party: herself, her roles, her
    organisation and its PractitionerRoles and HealthcareServices."""
    refs = set(caller_refs(principal))
    org = principal.organization
    if org:
        for type_ in ("PractitionerRole", "HealthcareService"):
            for found in await search_refs(store, type_, "organization", [org]):
                refs.add(f"{type_}/{found['id']}")
    if principal.practitioner:
        for found in await search_refs(
            store, "PractitionerRole", "practitioner", [principal.practitioner]
        ):
            refs.add(f"PractitionerRole/{found['id']}")
    return frozenset(refs)
