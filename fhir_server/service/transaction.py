"""batch and transaction Bundles.

A transaction runs in one unit of work: all entries commit together or none does. Entries are
processed in the order the spec prescribes (DELETE, POST, PUT/PATCH, GET); ``urn:uuid:`` and other
fullUrls are mapped to server ids before anything is written and every reference in the Bundle is
rewritten; conditional references (``Patient?identifier=...``) are resolved by search; and each
entry runs the same code as the stand-alone interaction. A batch runs every entry in a unit of its
own, so entries succeed or fail one by one.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import orjson

from fhir_server.errors import FhirError, Issue, bad_request, operation_outcome, unknown
from fhir_server.json_codec import parse
from fhir_server.search.dates import format_instant
from fhir_server.service import crud
from fhir_server.service.bundles import bundle, response_entry
from fhir_server.service.context import RequestContext
from fhir_server.service.core import Access, FhirService
from fhir_server.service.result import Result
from fhir_server.service.versioning import new_id, now_us
from fhir_server.store.protocol import UnitOfWork

_ORDER = {"DELETE": 0, "POST": 1, "PUT": 2, "PATCH": 2, "GET": 3, "HEAD": 3}
_STATUS_TEXT = {200: "200 OK", 201: "201 Created", 204: "204 No Content", 304: "304 Not Modified"}


@dataclass(slots=True)
class _Entry:
    index: int
    method: str
    url: str
    resource: Any
    full_url: str | None
    if_none_exist: str | None
    if_match: str | None
    if_none_match: str | None
    type_: str | None = None
    id_: str | None = None
    query: str | None = None
    vid: str | None = None
    assigned_id: str | None = None
    result: Result | None = None
    error: FhirError | None = None
    extra: dict = field(default_factory=dict)


_ENTRY_RESOURCE = re.compile(r"Bundle\.entry\[\d+\]\.resource\b")


async def process_bundle(svc: FhirService, ctx: RequestContext, body: Any) -> Result:
    if not isinstance(body, dict) or body.get("resourceType") != "Bundle":
        raise bad_request("POST to the base URL needs a Bundle of type batch or transaction")
    kind = body.get("type")
    if kind not in ("batch", "transaction"):
        raise bad_request(
            f"Bundle.type must be batch or transaction, got {kind!r}", expression="Bundle.type"
        )
    issues = svc.validator.validate(body, "Bundle")
    # entry resources are validated one by one below (with their entry index in the message);
    # the entries' own elements (fullUrl, request) are checked here
    structural = [
        i for i in issues if i.severity == "error" and not _ENTRY_RESOURCE.match(i.expression or "")
    ]
    if structural:
        raise FhirError(400, structural[0].code, structural[0].diagnostics, issues=structural)
    entries = [_parse_entry(svc, ctx, i, e) for i, e in enumerate(body.get("entry", ()))]
    await svc.authorize(ctx, Access(kind))
    if kind == "transaction":
        if not svc.store.supports_transactions:
            raise FhirError(
                400,
                "not-supported",
                "this store cannot run transactions atomically "
                "(MongoDB needs a replica set); use a batch instead",
            )
        await _transaction(svc, ctx, entries)
    else:
        await _batch(svc, ctx, entries)
    response_entries = [_response(svc, ctx, e) for e in entries]
    return Result(
        200,
        resource=bundle(
            f"{kind}-response", response_entries, [], timestamp=format_instant(now_us())
        ),
    )


def _parse_entry(svc: FhirService, ctx: RequestContext, index: int, entry: Any) -> _Entry:
    where = f"Bundle.entry[{index}]"
    if not isinstance(entry, dict) or not isinstance(entry.get("request"), dict):
        raise bad_request(f"{where} needs a request", expression=f"{where}.request")
    request = entry["request"]
    method = request.get("method")
    url = request.get("url")
    if method not in _ORDER or not isinstance(url, str) or not url:
        raise bad_request(
            f"{where}.request needs a method (GET, POST, PUT, PATCH, DELETE) and a url",
            expression=f"{where}.request",
        )
    parsed = _Entry(
        index,
        method,
        url,
        entry.get("resource"),
        entry.get("fullUrl"),
        request.get("ifNoneExist"),
        request.get("ifMatch"),
        request.get("ifNoneMatch"),
    )
    relative = url
    if relative.startswith(ctx.base_url + "/"):
        relative = relative[len(ctx.base_url) + 1 :]
    split = urlsplit(relative)
    parts = [p for p in split.path.split("/") if p]
    parsed.query = split.query or None
    if parts:
        parsed.type_ = parts[0]
    if len(parts) >= 2:
        parsed.id_ = parts[1]
    if len(parts) == 4 and parts[2] == "_history":
        parsed.vid = parts[3]
    if method in ("POST", "PUT") and parsed.resource is None:
        raise bad_request(f"{where} ({method}) needs a resource", expression=f"{where}.resource")
    if parsed.type_ is None and method != "GET":
        raise bad_request(f"{where}.request.url must name a resource type")
    return parsed


# -- transaction ------------------------------------------------------------------------------


async def _transaction(svc: FhirService, ctx: RequestContext, entries: list[_Entry]) -> None:
    ordered = sorted(entries, key=lambda e: (_ORDER[e.method], e.index))
    current: _Entry | None = None
    async with svc.store.unit_of_work() as uow:
        try:
            for current in (e for e in ordered if e.method == "DELETE"):
                current.result = await _run(svc, ctx, uow, current)
            current = None
            mapping = await _assign_ids(svc, ctx, uow, entries)
            await _new_patients(ctx, uow, entries)
            _check_overlaps(entries, mapping)
            for current in entries:
                if current.resource is not None:
                    await _rewrite_references(svc, ctx, uow, current, mapping)
            for current in (e for e in ordered if e.method != "DELETE"):
                current.result = await _run(svc, ctx, uow, current)
        except FhirError as exc:
            if current is None:
                raise
            raise _entry_error(exc, current) from exc


async def _new_patients(ctx: RequestContext, uow: UnitOfWork, entries: list[_Entry]) -> None:
    """Patient records this transaction creates: their creator may write their data in the same
    transaction, whatever the order of the entries. Safe because a transaction is atomic: if
    the creation of one of them is refused, nothing is written at all."""
    for entry in entries:
        if entry.method not in ("POST", "PUT") or not isinstance(entry.resource, dict):
            continue
        if (entry.resource.get("resourceType") or entry.type_) != "Patient":
            continue
        if entry.method == "POST" and entry.assigned_id and "existing" not in entry.extra:
            ctx.new_patients.add(entry.assigned_id)
        elif entry.method == "PUT":
            id_ = entry.id_ or entry.assigned_id
            if id_ and await uow.current("Patient", id_) is None:
                ctx.new_patients.add(id_)


def _check_overlaps(entries: list[_Entry], mapping: dict[str, str]) -> None:
    """A transaction must not touch one resource twice (R4 http.html#trules)."""
    seen: dict[str, _Entry] = {}
    for entry in entries:
        if entry.method == "GET":
            continue
        if entry.method == "POST":
            target = f"{entry.type_}/{entry.assigned_id}"
        elif entry.method == "PUT" and entry.full_url in mapping:
            target = mapping[entry.full_url]
        elif entry.id_:
            target = f"{entry.type_}/{entry.id_}"
        elif entry.extra.get("target"):
            target = entry.extra["target"]
        else:
            continue
        if target in seen:
            first = seen[target]
            raise FhirError(
                400,
                "processing",
                f"Bundle.entry[{first.index}] and Bundle.entry[{entry.index}] both "
                f"change {target}; a transaction may change a resource only once",
            )
        seen[target] = entry


def _entry_error(exc: FhirError, entry: _Entry) -> FhirError:
    prefix = f"Bundle.entry[{entry.index}] ({entry.method} {entry.url[:80]}): "
    # keeps each issue's invariant key and definition (details.coding)
    issues = [replace(i, diagnostics=prefix + i.diagnostics) for i in exc.issues]
    return FhirError(
        exc.status, issues[0].code, issues[0].diagnostics, issues=issues, headers=exc.headers
    )


async def _assign_ids(
    svc: FhirService, ctx: RequestContext, uow: UnitOfWork, entries: list[_Entry]
) -> dict[str, str]:
    """fullUrl -> "Type/id" for every entry that creates or updates a resource."""
    mapping: dict[str, str] = {}
    for entry in entries:
        if entry.method not in ("POST", "PUT") or not isinstance(entry.resource, dict):
            continue
        type_ = entry.resource.get("resourceType") or entry.type_
        if entry.method == "POST":
            target_id = None
            if entry.if_none_exist:
                try:
                    matches = await crud.conditional_matches(
                        svc, ctx, uow, type_, entry.if_none_exist
                    )
                except FhirError as exc:
                    raise _entry_error(exc, entry) from exc
                if len(matches) > 1:
                    raise _entry_error(
                        FhirError(
                            412,
                            "multiple-matches",
                            f"ifNoneExist matched {len(matches)} {type_} resources; it must match "
                            "at most one",
                        ),
                        entry,
                    )
                if len(matches) == 1:
                    target_id = matches[0][1]
                    entry.extra["existing"] = matches[0]
            entry.assigned_id = target_id or new_id()
            target = f"{type_}/{entry.assigned_id}"
        elif entry.query and not entry.id_:
            try:
                matches = await crud.conditional_matches(svc, ctx, uow, type_, entry.query)
            except FhirError as exc:
                raise _entry_error(exc, entry) from exc
            if len(matches) > 1:
                raise _entry_error(
                    FhirError(
                        412,
                        "multiple-matches",
                        f"the conditional update matched {len(matches)} {type_} resources; it must "
                        "match at most one",
                    ),
                    entry,
                )
            if len(matches) == 1:
                target = f"{type_}/{matches[0][1]}"
            else:
                entry.assigned_id = entry.resource.get("id") or new_id()
                target = f"{type_}/{entry.assigned_id}"
            entry.extra["target"] = target
        else:
            target = f"{type_}/{entry.id_}"
        if entry.full_url:
            mapping[entry.full_url] = target
    return mapping


async def _rewrite_references(
    svc: FhirService, ctx: RequestContext, uow: UnitOfWork, entry: _Entry, mapping: dict[str, str]
) -> None:
    cache: dict[str, str] = {}

    async def resolve(reference: str) -> str:
        if reference in mapping:
            return mapping[reference]
        if reference.startswith(("urn:uuid:", "urn:oid:")):
            raise bad_request(
                f"reference {reference!r} does not match any fullUrl in the transaction"
            )
        if "?" in reference and "/" not in reference.split("?", 1)[0]:
            if reference not in cache:
                type_, _, query = reference.partition("?")
                svc.require_type(type_)
                matches = await crud.conditional_matches(svc, ctx, uow, type_, query)
                if len(matches) != 1:
                    raise FhirError(
                        412 if matches else 404,
                        "multiple-matches" if matches else "not-found",
                        f"conditional reference {reference!r} matched "
                        f"{len(matches)} resources; it must match exactly one",
                    )
                cache[reference] = f"{matches[0][0]}/{matches[0][1]}"
            return cache[reference]
        return reference

    try:
        await _walk(entry.resource, resolve, mapping)
    except FhirError as exc:
        raise _entry_error(exc, entry) from exc


async def _walk(value: Any, resolve: Any, mapping: dict[str, str]) -> None:
    """Rewrite references, uri-typed values equal to a fullUrl, and links in narratives."""
    if isinstance(value, dict):
        for key, child in value.items():
            if key == "reference" and isinstance(child, str):
                value[key] = await resolve(child)
            elif isinstance(child, str):
                if child in mapping:
                    value[key] = mapping[child]
                elif key == "div" and "urn:" in child:
                    value[key] = _rewrite_narrative(child, mapping)
            elif isinstance(child, (dict, list)):
                await _walk(child, resolve, mapping)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            if isinstance(item, str) and item in mapping:
                value[index] = mapping[item]
            elif isinstance(item, (dict, list)):
                await _walk(item, resolve, mapping)


def _rewrite_narrative(div: str, mapping: dict[str, str]) -> str:
    for old, new in mapping.items():
        if old in div:
            div = div.replace(f'"{old}"', f'"{new}"').replace(f"'{old}'", f"'{new}'")
    return div


# -- running one entry ------------------------------------------------------------------------


async def _run(svc: FhirService, ctx: RequestContext, uow: UnitOfWork, entry: _Entry) -> Result:
    method, type_ = entry.method, entry.type_
    if type_ is not None:
        svc.require_type(type_)
    if method == "DELETE":
        if entry.id_:
            return await crud.delete_in(svc, ctx, uow, type_, entry.id_, entry.if_match)
        return await crud.conditional_delete_in(svc, ctx, uow, type_, entry.query or "")
    if method == "POST":
        resource = entry.resource
        if isinstance(resource, dict):
            resource.pop("id", None)
        svc.validate(resource, type_)
        if "existing" in entry.extra:
            existing = await uow.current(*entry.extra["existing"])
            assert existing is not None
            await svc.authorize(ctx, Access("read", type_, existing.id, current=existing))
            return Result(200, raw=existing.body, version=existing)
        return await crud.create_in(svc, ctx, uow, resource, None, assigned_id=entry.assigned_id)
    if method == "PUT":
        resource = entry.resource
        svc.validate(resource, type_)
        if entry.id_:
            crud.check_id(entry.id_)
            if resource.get("id") != entry.id_:
                raise bad_request(
                    f"the resource id {resource.get('id')!r} does not match the "
                    f"request url id {entry.id_!r}"
                )
            return await crud.update_in(
                svc, ctx, uow, resource, entry.if_match, entry.if_none_match
            )
        if entry.assigned_id and "id" not in resource:
            resource["id"] = entry.assigned_id
        return await crud.conditional_update_in(
            svc, ctx, uow, resource, entry.query or "", entry.if_match
        )
    if method == "PATCH":
        if entry.id_ is None:
            raise bad_request("PATCH entries need a Type/id url")
        content_type = (
            "application/json-patch+json"
            if isinstance(entry.resource, dict) and (entry.resource.get("resourceType") == "Binary")
            else "application/fhir+json"
        )
        body = entry.resource
        if isinstance(body, dict) and body.get("resourceType") == "Binary":
            body = _binary_patch(body)
        return await crud.patch_in(
            svc, ctx, uow, type_, entry.id_, body, content_type, entry.if_match
        )
    return await _get(svc, ctx, uow, entry)


def _binary_patch(binary: dict) -> Any:
    """The JSON Patch a Binary entry carries as base64 ``data``, checked like a PATCH body."""
    data = binary.get("data")
    if not isinstance(data, str):
        raise bad_request("a PATCH entry's Binary needs its JSON Patch as base64 data")
    try:
        raw = base64.b64decode(data, validate=True)
    except ValueError:  # binascii.Error: not base64
        raise bad_request("a PATCH entry's Binary data is not valid base64") from None
    return parse(raw)


async def _get(svc: FhirService, ctx: RequestContext, uow: UnitOfWork, entry: _Entry) -> Result:
    type_ = entry.type_
    if type_ is None:
        raise bad_request("GET entries need a resource type in the url")
    if entry.id_ and entry.vid:
        return await crud.vread(svc, ctx, type_, entry.id_, entry.vid)
    if entry.id_:
        current = await uow.current(type_, entry.id_)
        await svc.authorize(ctx, Access("read", type_, entry.id_, current=current))
        if current is None:
            raise unknown(type_, entry.id_)
        if current.deleted:
            raise FhirError(410, "deleted", f"{type_}/{entry.id_} was deleted")
        return Result(200, raw=current.body, version=current)
    from fhir_server.service.search import search_in_unit

    params = parse_qsl(entry.query or "", keep_blank_values=True)
    return await search_in_unit(svc, ctx, uow, type_, params)


# -- batch ------------------------------------------------------------------------------------


async def _batch(svc: FhirService, ctx: RequestContext, entries: list[_Entry]) -> None:
    for entry in sorted(entries, key=lambda e: (_ORDER[e.method], e.index)):
        created = set(ctx.new_patients)
        try:
            if entry.method == "GET":
                async with svc.store.unit_of_work() as uow:
                    entry.result = await _get(svc, ctx, uow, entry)
                continue
            async with svc.store.unit_of_work() as uow:
                if (
                    entry.method == "POST"
                    and entry.if_none_exist
                    and isinstance(entry.resource, dict)
                ):
                    entry.resource.pop("id", None)
                    svc.validate(entry.resource, entry.type_ or "")
                    entry.result = await crud.create_in(
                        svc, ctx, uow, entry.resource, entry.if_none_exist
                    )
                else:
                    entry.result = await _run(svc, ctx, uow, entry)
        except FhirError as exc:
            entry.error = exc
            ctx.new_patients = created  # a failed entry created no patient


# -- response ---------------------------------------------------------------------------------


def _response(svc: FhirService, ctx: RequestContext, entry: _Entry) -> dict[str, Any]:
    if entry.error is not None:
        return {"response": {"status": str(entry.error.status), "outcome": entry.error.outcome()}}
    result = entry.result
    assert result is not None
    version = result.version
    out: dict[str, Any] = {}
    if version is not None and not version.deleted:
        out["fullUrl"] = ctx.url(version.type, version.id)
    body: Any = None
    if result.raw is not None:
        body = orjson.Fragment(result.raw)
    elif result.resource is not None:
        body = result.resource
    wants_body = ctx.prefer_return == "representation" or entry.method == "GET"
    if body is not None and entry.method != "DELETE" and wants_body:
        out["resource"] = body
    location = (
        result.location if entry.method in ("POST", "PUT") and result.status == 201 else (None)
    )
    out["response"] = response_entry(
        _STATUS_TEXT.get(result.status, str(result.status)),
        version.version if version is not None else None,
        version.last_updated if version is not None else None,
        location,
    )
    if ctx.prefer_return == "OperationOutcome" and entry.method != "GET":
        out["response"]["outcome"] = operation_outcome(
            [Issue("information", "informational", f"{entry.method} {entry.url} succeeded")]
        )
    return out
