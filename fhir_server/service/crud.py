"""Instance interactions: read, vread, create, update, patch, delete, and their conditional forms.

Each write interaction has an ``*_in`` form that works inside a given unit of work, so that
transaction Bundles run the very same code for their entries, atomically.
"""

from __future__ import annotations

from typing import Any

from fhir_server.errors import (
    FhirError,
    bad_request,
    gone,
    is_hidden,
    not_found,
    precondition_failed,
    unknown,
)
from fhir_server.json_codec import loads_trusted
from fhir_server.patch import apply_patch
from fhir_server.service.context import RequestContext
from fhir_server.service.core import Access, FhirService
from fhir_server.service.result import Result
from fhir_server.service.search import restrict
from fhir_server.service.versioning import etag, http_date, new_id, parse_etag
from fhir_server.store.protocol import StoredVersion, UnitOfWork, VersionConflict

_ID_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-.")


def check_id(id_: str) -> None:
    if not id_ or len(id_) > 64 or not set(id_) <= _ID_CHARS:
        raise bad_request(
            f"{id_[:70]!r} is not a valid resource id "
            "(1-64 characters: letters, digits, '-' and '.')"
        )


def _deleted_error(current: StoredVersion) -> FhirError:
    return gone(
        f"{current.type}/{current.id} was deleted",
        headers={"ETag": etag(current.version), "Last-Modified": http_date(current.last_updated)},
    )


# -- reads ------------------------------------------------------------------------------------


async def read(svc: FhirService, ctx: RequestContext, type_: str, id_: str) -> Result:
    svc.require_type(type_)
    current = await svc.store.current(type_, id_)
    await svc.authorize(ctx, Access("read", type_, id_, current=current))
    if current is None:
        raise unknown(type_, id_)
    if current.deleted:
        raise _deleted_error(current)
    if svc.output_hooks and current.body is not None:
        return Result(
            200, raw=svc.outgoing(ctx, type_, current.body) or current.body, version=current
        )
    return Result(200, raw=current.body, version=current)


async def vread(svc: FhirService, ctx: RequestContext, type_: str, id_: str, vid: str) -> Result:
    svc.require_type(type_)
    stored = await svc.store.version(type_, id_, int(vid)) if vid.isdigit() else None
    missing = not_found(f"version {vid[:20]} of {type_}/{id_} is not known")
    try:
        await svc.authorize(ctx, Access("vread", type_, id_, current=stored))
    except FhirError as exc:
        raise missing if is_hidden(exc) else exc from None
    if stored is None:
        raise missing
    if stored.deleted:
        raise _deleted_error(stored)
    if svc.output_hooks and stored.body is not None:
        return Result(200, raw=svc.outgoing(ctx, type_, stored.body) or stored.body, version=stored)
    return Result(200, raw=stored.body, version=stored)


# -- create -----------------------------------------------------------------------------------


async def create(
    svc: FhirService, ctx: RequestContext, type_: str, body: Any, if_none_exist: str | None
) -> Result:
    svc.require_type(type_)
    if isinstance(body, dict):
        body.pop("id", None)  # the server assigns the id of a created resource
    resource = svc.validate(body, type_)
    async with svc.store.unit_of_work() as uow:
        return await create_in(svc, ctx, uow, resource, if_none_exist)


async def create_in(
    svc: FhirService,
    ctx: RequestContext,
    uow: UnitOfWork,
    resource: dict,
    if_none_exist: str | None,
    assigned_id: str | None = None,
) -> Result:
    type_ = resource["resourceType"]
    if if_none_exist:
        matches = await conditional_matches(svc, ctx, uow, type_, if_none_exist)
        if len(matches) > 1:
            raise precondition_failed(
                f"If-None-Exist matched {len(matches)} {type_} resources; it must match at "
                "most one",
                code="multiple-matches",
            )
        if matches:
            existing = await uow.current(*matches[0])
            assert existing is not None
            await svc.authorize(ctx, Access("read", type_, existing.id, current=existing))
            return Result(200, raw=existing.body, version=existing)
    resource["id"] = assigned_id or new_id()
    await svc.authorize(ctx, Access("create", type_, resource["id"], resource=resource))
    stored = await svc.store_version(ctx, uow, resource, None, "POST", fresh=not assigned_id)
    return Result(201, raw=stored.body, version=stored, location=_location(ctx, stored))


def _location(ctx: RequestContext, stored: StoredVersion) -> str:
    return ctx.url(stored.type, stored.id, "_history", str(stored.version))


async def conditional_matches(
    svc: FhirService, ctx: RequestContext, uow: UnitOfWork, type_: str, query_string: str
) -> list[tuple[str, str]]:
    """The resources a conditional interaction's search matches, among those the caller may
    see (so that a conditional create cannot reveal another patient's data)."""
    from urllib.parse import parse_qsl

    query_string = query_string.split("?", 1)[-1]
    params = parse_qsl(query_string, keep_blank_values=True)
    if not params:
        raise bad_request("a conditional interaction needs search parameters")
    parsed = svc.parser.parse((type_,), params, strict=True)
    await restrict(svc, ctx, parsed.query)  # chains and _has too, as a search by this caller
    matches = await uow.search_ids(parsed.query, limit=2)
    if not matches:
        for resolver in svc.conditional_resolvers:
            matches = await resolver(ctx, uow, type_, query_string)
            if matches:
                break
    return matches


# -- update -----------------------------------------------------------------------------------


async def update(
    svc: FhirService,
    ctx: RequestContext,
    type_: str,
    id_: str,
    body: Any,
    if_match: str | None,
    if_none_match: str | None,
) -> Result:
    svc.require_type(type_)
    check_id(id_)
    resource = svc.validate(body, type_)
    if "id" not in resource:
        raise bad_request("the resource in an update must have an id", expression="id")
    if resource["id"] != id_:
        raise bad_request(
            f"the resource id {resource['id']!r} does not match the URL id {id_!r}", expression="id"
        )
    async with svc.store.unit_of_work() as uow:
        return await update_in(svc, ctx, uow, resource, if_match, if_none_match)


async def update_in(
    svc: FhirService,
    ctx: RequestContext,
    uow: UnitOfWork,
    resource: dict,
    if_match: str | None,
    if_none_match: str | None = None,
    method: str = "PUT",
) -> Result:
    type_, id_ = resource["resourceType"], resource["id"]
    current = await uow.current(type_, id_)
    interaction = "patch" if method == "PATCH" else "update"
    try:
        await svc.authorize(
            ctx, Access(interaction, type_, id_, resource=resource, current=current)
        )
    except FhirError as exc:
        if not is_hidden(exc):
            raise
        # answered as for a missing id (If-Match cannot match); only the write itself cannot
        # happen, since the id is taken (docs/security.md: client-assigned ids)
        if if_match is not None:
            raise _if_match_on_missing(type_, id_, if_match) from None
        raise FhirError(403, "forbidden", f"you may not write this {type_}") from None
    live = current is not None and not current.deleted
    if if_none_match is not None:
        if if_none_match.strip() != "*":
            raise bad_request("If-None-Match on an update only supports '*'")
        if live:
            raise precondition_failed(
                f"{type_}/{id_} already exists (If-None-Match: *)", code="duplicate"
            )
    if if_match is not None:
        wanted = parse_etag(if_match)
        if not live:
            raise _if_match_on_missing(type_, id_, if_match)
        assert current is not None
        if current.version != wanted:
            raise precondition_failed(
                f"version conflict: {type_}/{id_} is at version {current.version}, "
                f"If-Match asked for {wanted}"
            )
    if not live and not svc.settings.allow_update_create:
        raise FhirError(405, "not-supported", "this server does not allow update-as-create")
    if live and current is not None and _unchanged(current, resource):
        return Result(200, raw=current.body, version=current)
    try:
        stored = await svc.store_version(ctx, uow, resource, current, method)
    except VersionConflict as exc:
        raise FhirError(
            409,
            "conflict",
            f"{type_}/{id_} was changed concurrently (now version {exc.current_version}); retry",
        ) from exc
    status = 200 if live else 201
    return Result(status, raw=stored.body, version=stored, location=_location(ctx, stored))


def _if_match_on_missing(type_: str, id_: str, if_match: str) -> FhirError:
    return precondition_failed(
        f"{type_}/{id_} does not exist, so If-Match {if_match[:40]!r} cannot match"
    )


def _unchanged(current: StoredVersion, resource: dict) -> bool:
    """A PUT of identical content creates no new version (as HAPI does)."""
    if current.body is None:
        return False
    stored = loads_trusted(current.body)
    stored_meta = {
        k: v
        for k, v in (stored.pop("meta", None) or {}).items()
        if k not in ("versionId", "lastUpdated")
    }
    candidate = dict(resource)
    new_meta = {
        k: v
        for k, v in (candidate.pop("meta", None) or {}).items()
        if k not in ("versionId", "lastUpdated")
    }
    return stored == candidate and stored_meta == new_meta


async def conditional_update(
    svc: FhirService, ctx: RequestContext, type_: str, query: str, body: Any, if_match: str | None
) -> Result:
    svc.require_type(type_)
    resource = svc.validate(body, type_)
    async with svc.store.unit_of_work() as uow:
        return await conditional_update_in(svc, ctx, uow, resource, query, if_match)


async def conditional_update_in(
    svc: FhirService,
    ctx: RequestContext,
    uow: UnitOfWork,
    resource: dict,
    query: str,
    if_match: str | None,
) -> Result:
    type_ = resource["resourceType"]
    matches = await conditional_matches(svc, ctx, uow, type_, query)
    if len(matches) > 1:
        raise precondition_failed(
            f"the conditional update matched {len(matches)} {type_} "
            "resources; it must match at most one",
            code="multiple-matches",
        )
    if not matches:
        if "id" in resource:
            check_id(resource["id"])
            return await update_in(svc, ctx, uow, resource, if_match)
        return await create_in(svc, ctx, uow, resource, None)
    found_id = matches[0][1]
    if resource.get("id", found_id) != found_id:
        raise bad_request(
            f"the resource id {resource['id']!r} does not match the resource "
            f"found by the condition ({found_id!r})",
            expression="id",
        )
    resource["id"] = found_id
    return await update_in(svc, ctx, uow, resource, if_match)


# -- patch ------------------------------------------------------------------------------------


async def patch(
    svc: FhirService,
    ctx: RequestContext,
    type_: str,
    id_: str | None,
    query: str | None,
    body: Any,
    content_type: str,
    if_match: str | None,
) -> Result:
    svc.require_type(type_)
    async with svc.store.unit_of_work() as uow:
        if id_ is None:
            matches = await conditional_matches(svc, ctx, uow, type_, query or "")
            if len(matches) != 1:
                code = "multiple-matches" if matches else "not-found"
                status = 412 if matches else 404
                raise FhirError(
                    status,
                    code,
                    f"the conditional patch matched {len(matches)} "
                    f"{type_} resources; it must match exactly one",
                )
            id_ = matches[0][1]
        return await patch_in(svc, ctx, uow, type_, id_, body, content_type, if_match)


async def patch_in(
    svc: FhirService,
    ctx: RequestContext,
    uow: UnitOfWork,
    type_: str,
    id_: str,
    body: Any,
    content_type: str,
    if_match: str | None,
) -> Result:
    current = await uow.current(type_, id_)
    # the stored version is judged before the patch is applied, a precondition compared or an
    # error built from its content: a hidden resource answers exactly like a missing one
    try:
        await svc.authorize(ctx, Access("patch", type_, id_, current=current))
    except FhirError as exc:
        raise unknown(type_, id_) if is_hidden(exc) else exc from None
    if current is None:
        raise unknown(type_, id_)
    if current.deleted:
        raise _deleted_error(current)
    if if_match is not None and parse_etag(if_match) != current.version:
        raise precondition_failed(
            f"version conflict: {type_}/{id_} is at version {current.version}"
        )
    assert current.body is not None
    patched = apply_patch(loads_trusted(current.body), body, content_type, svc.model)
    if not isinstance(patched, dict) or patched.get("resourceType") != type_:
        raise FhirError(422, "processing", "a patch must not change the resourceType")
    if patched.get("id") != id_:
        raise FhirError(422, "processing", "a patch must not change the resource id")
    svc.validate(patched, type_)
    return await update_in(svc, ctx, uow, patched, None, method="PATCH")


# -- delete -----------------------------------------------------------------------------------


async def delete(
    svc: FhirService, ctx: RequestContext, type_: str, id_: str, if_match: str | None = None
) -> Result:
    svc.require_type(type_)
    async with svc.store.unit_of_work() as uow:
        return await delete_in(svc, ctx, uow, type_, id_, if_match)


async def delete_in(
    svc: FhirService,
    ctx: RequestContext,
    uow: UnitOfWork,
    type_: str,
    id_: str,
    if_match: str | None = None,
) -> Result:
    current = await uow.current(type_, id_)
    try:
        await svc.authorize(ctx, Access("delete", type_, id_, current=current))
    except FhirError as exc:
        if not is_hidden(exc):
            raise
        current = None  # answered exactly as a delete of a missing resource (and audited)
    if current is None or current.deleted:
        if if_match is not None:
            raise precondition_failed(f"{type_}/{id_} does not exist")
        return Result(204, version=current)
    if if_match is not None and parse_etag(if_match) != current.version:
        raise precondition_failed(
            f"version conflict: {type_}/{id_} is at version {current.version}"
        )
    tombstone = await svc.store_tombstone(ctx, uow, current)
    return Result(204, version=tombstone)


async def conditional_delete(
    svc: FhirService, ctx: RequestContext, type_: str, query: str
) -> Result:
    svc.require_type(type_)
    async with svc.store.unit_of_work() as uow:
        return await conditional_delete_in(svc, ctx, uow, type_, query)


async def conditional_delete_in(
    svc: FhirService, ctx: RequestContext, uow: UnitOfWork, type_: str, query: str
) -> Result:
    from urllib.parse import parse_qsl

    params = parse_qsl(query.split("?", 1)[-1], keep_blank_values=True)
    if not params:
        raise bad_request("a conditional delete needs search parameters")
    parsed = svc.parser.parse((type_,), params, strict=True)
    await restrict(svc, ctx, parsed.query)
    limit = svc.settings.max_multiple_delete + 1 if svc.settings.allow_multiple_delete else 2
    matches = await uow.search_ids(parsed.query, limit=limit)
    if len(matches) > 1 and not svc.settings.allow_multiple_delete:
        raise precondition_failed(
            f"the conditional delete matched {len(matches)} {type_} "
            "resources; this server deletes at most one",
            code="multiple-matches",
        )
    if len(matches) >= limit:
        raise precondition_failed(
            f"the conditional delete matched more than "
            f"{svc.settings.max_multiple_delete} resources",
            code="too-costly",
        )
    for match_type, match_id in matches:
        await delete_in(svc, ctx, uow, match_type, match_id)
    return Result(204)
