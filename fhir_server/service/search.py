"""Search interactions: type, system and compartment search, with includes, paging and totals.

Paging links carry an opaque cursor: the snapshot sequence number the search began at, the keyset
position, the direction, and a hash of the parameters. Every page re-runs the query "as of" that
snapshot, so a client paging while others write sees neither duplicates nor gaps, and the server
keeps no per-search state.
"""

from __future__ import annotations

import hashlib
from functools import cache
from typing import Any
from urllib.parse import urlencode

from fhir_server.definitions import load_r4
from fhir_server.errors import FhirError, Issue, bad_request, operation_outcome
from fhir_server.json_codec import loads_trusted
from fhir_server.search.dates import format_instant
from fhir_server.search.geo import km_of_chord2
from fhir_server.search.parse import Include, ParsedSearch
from fhir_server.service.bundles import bundle, resource_fragment
from fhir_server.service.context import RequestContext
from fhir_server.service.core import Access, FhirService
from fhir_server.service.result import Result
from fhir_server.service.versioning import now_us
from fhir_server.store.protocol import StoredVersion, UnitOfWork
from fhir_server.store.query import Hit, Query, ReferencePred, SearchPage

MAX_INCLUDE_ITERATIONS = 4
LOCATION_DISTANCE = "http://hl7.org/fhir/StructureDefinition/location-distance"


@cache
def patient_compartment() -> dict[str, tuple[str, ...]]:
    definition = load_r4("compartmentdefinition-patient")
    return {r["code"]: tuple(r.get("param", ())) for r in definition.get("resource", ())}


def _decode_cursor(svc: FhirService, ctx: RequestContext, cursor: str) -> dict[str, Any]:
    data = svc.sealer.open(cursor, ctx)
    if not isinstance(data.get("s"), int):
        raise bad_request("the paging cursor is not valid; start the search again")
    return data


def _params_hash(types: tuple[str, ...], used: list[tuple[str, str]]) -> str:
    text = "&".join(types) + "?" + urlencode(sorted(used))
    return hashlib.blake2b(text.encode(), digest_size=6).hexdigest()


async def search(
    svc: FhirService,
    ctx: RequestContext,
    types: tuple[str, ...],
    params: list[tuple[str, str]],
    link_base: str,
    compartment: tuple[str, str] | None = None,
    *,
    extra_where: list[tuple] | None = None,
    link_params: list[tuple[str, str]] | None = None,
) -> Result:
    """``extra_where``: more AND clauses (operations that filter beyond URL parameters, e.g.
    ``$everything``'s care dates); ``link_params``: the parameters the paging links repeat (and
    the cursor is bound to) instead of the parsed ones, for operations whose own parameters are
    not search parameters."""
    for resource_type in types:
        svc.require_type(resource_type)
    interaction = "search-system" if len(types) != 1 else "search-type"
    await svc.authorize(ctx, Access(interaction, types[0] if len(types) == 1 else None))
    parsed = svc.parser.parse(types, params, strict=ctx.prefer_handling == "strict")
    await restrict(svc, ctx, parsed.query)
    if compartment is not None:
        parsed.query.where.append(_compartment_clause(svc, types, *compartment))
    if extra_where:
        parsed.query.where.extend(extra_where)
    query = parsed.query
    if link_params is not None:
        parsed.used = list(link_params)
    params_hash = _params_hash(types, parsed.used)
    first_page = True
    if parsed.cursor:
        cursor = _decode_cursor(svc, ctx, parsed.cursor)
        if cursor.get("h") != params_hash:
            raise bad_request("the paging cursor belongs to a different search")
        if cursor["s"] <= await svc.store.oldest_snapshot():
            raise FhirError(
                410,
                "expired",
                "this paging link has expired (older than the snapshot retention); "
                "start the search again",
            )
        query.snapshot = cursor["s"]
        query.after = tuple(cursor["k"]) if cursor.get("k") is not None else None
        query.reverse = bool(cursor.get("r"))
        query.order_hint = cursor.get("o")
        first_page = query.after is None and not query.reverse
    if parsed.total_only:
        query.total = "accurate"
        query.count = 1
    page: SearchPage = await svc.store.search(query)
    hits = [] if parsed.total_only else page.hits
    total = page.total
    if total is None and first_page and not page.has_more:
        total = len(page.hits)
    entries = [_entry(svc, ctx, hit.type, hit.id, hit.body, "match", parsed, hit) for hit in hits]
    warnings = list(parsed.warnings)
    if parsed.includes and hits:
        included, include_warnings = await _includes(svc, ctx, parsed, hits, page.snapshot)
        warnings.extend(include_warnings)
        entries.extend(_entry(svc, ctx, v.type, v.id, v.body, "include", parsed) for v in included)
    if warnings:
        entries.append({"resource": operation_outcome(warnings), "search": {"mode": "outcome"}})
    links = _links(svc, ctx, link_base, parsed, page, hits, params_hash, query.reverse, first_page)
    timestamp = format_instant(now_us())
    return Result(
        200,
        resource=bundle("searchset", entries, links, total, bundle_id=None, timestamp=timestamp),
    )


async def restrict(svc: FhirService, ctx: RequestContext, query: Query) -> None:
    """AND the guard's filters into the query and into every chained / _has sub-query, so no
    search feature can reach resources the caller may not see."""
    original = list(query.where)
    query.where.extend(await svc.search_filter(ctx, query.types))
    for clause in original:
        for pred in clause:
            inner = getattr(pred, "query", None)
            if isinstance(inner, Query):
                await restrict(svc, ctx, inner)


async def search_in_unit(
    svc: FhirService,
    ctx: RequestContext,
    uow: UnitOfWork,
    type_: str,
    params: list[tuple[str, str]],
) -> Result:
    """A search inside a transaction: it sees the transaction's own writes. One page, no
    includes (a transaction's GET entries are meant for small reads)."""
    svc.require_type(type_)
    await svc.authorize(ctx, Access("search-type", type_))
    parsed = svc.parser.parse((type_,), params, strict=ctx.prefer_handling == "strict")
    await restrict(svc, ctx, parsed.query)
    keys = await uow.search_ids(parsed.query, limit=parsed.query.count + 1)
    entries = []
    for key in keys[: parsed.query.count]:
        version = await uow.current(*key)
        if version is not None and version.body is not None:
            entries.append(
                _entry(svc, ctx, version.type, version.id, version.body, "match", parsed)
            )
    if parsed.warnings:
        entries.append(
            {"resource": operation_outcome(parsed.warnings), "search": {"mode": "outcome"}}
        )
    total = len(keys) if len(keys) <= parsed.query.count else None
    return Result(
        200, resource=bundle("searchset", entries, [], total, timestamp=format_instant(now_us()))
    )


def _entry(
    svc: FhirService,
    ctx: RequestContext,
    type_: str,
    id_: str,
    body: bytes | None,
    mode: str,
    parsed: ParsedSearch,
    hit: Hit | None = None,
) -> dict[str, Any]:
    assert body is not None
    if svc.output_hooks:
        body = svc.outgoing(ctx, type_, body) or body
    search_info: dict[str, Any] = {"mode": mode}
    sort = parsed.query.sort
    if hit is not None and sort and sort[0].near is not None and hit.sort_values:
        value = hit.sort_values[0]
        if isinstance(value, (int, float)) and value <= 4:  # a chord (else: no position)
            search_info["extension"] = [
                {
                    "url": LOCATION_DISTANCE,
                    "valueDistance": {
                        "value": round(km_of_chord2(value), 3),
                        "unit": "km",
                        "system": "http://unitsofmeasure.org",
                        "code": "km",
                    },
                }
            ]
    return {
        "fullUrl": ctx.url(type_, id_),
        "resource": resource_fragment(body, svc.model, parsed.summary, parsed.elements),
        "search": search_info,
    }


def _links(
    svc: FhirService,
    ctx: RequestContext,
    link_base: str,
    parsed: ParsedSearch,
    page: SearchPage,
    hits: list[Hit],
    params_hash: str,
    reverse: bool,
    first_page: bool,
) -> list[tuple[str, str]]:
    def url(extra: dict[str, Any] | None) -> str:
        items = list(parsed.used)
        if extra is not None:
            items.append(
                (
                    "_cursor",
                    svc.sealer.seal(
                        {**extra, "s": page.snapshot, "h": params_hash, "o": page.order}, ctx
                    ),
                )
            )
        return f"{link_base}?{urlencode(items)}" if items else link_base

    self_items = list(parsed.used) + ([("_cursor", parsed.cursor)] if parsed.cursor else [])
    links = [("self", f"{link_base}?{urlencode(self_items)}" if self_items else link_base)]
    links.append(("first", url({"k": None})))
    more_after = page.has_more if not reverse else True
    more_before = page.has_more if reverse else not first_page
    if hits and more_before and not first_page:
        links.append(("previous", url({"k": list(hits[0].sort_values), "r": True})))
    if hits and more_after:
        links.append(("next", url({"k": list(hits[-1].sort_values)})))
    return links


def _compartment_clause(
    svc: FhirService, types: tuple[str, ...], compartment_type: str, compartment_id: str
) -> tuple:
    if compartment_type != "Patient":
        raise FhirError(
            400,
            "not-supported",
            f"the {compartment_type} compartment is not supported; "
            "use the Patient compartment or a search",
        )
    preds: list[Any] = []
    for resource_type in types:
        if resource_type == "Patient":
            from fhir_server.store.query import IdPred

            preds.append(IdPred((compartment_id,)))
            continue
        params = patient_compartment().get(resource_type)
        if not params:
            raise FhirError(
                400, "not-supported", f"{resource_type} is not in the Patient compartment"
            )
        preds.extend(
            ReferencePred(p, "Patient", compartment_id)
            for p in params
            if svc.registry.get(resource_type, p) is not None
        )
    return tuple(preds)


# -- _include / _revinclude -------------------------------------------------------------------


async def _includes(
    svc: FhirService, ctx: RequestContext, parsed: ParsedSearch, hits: list[Hit], snapshot: int
) -> tuple[list[StoredVersion], list[Issue]]:
    limit = svc.settings.include_limit
    seen: set[tuple[str, str]] = {(h.type, h.id) for h in hits}
    frontier: list[tuple[str, str, bytes]] = [(h.type, h.id, h.body) for h in hits]
    included: list[StoredVersion] = []
    warnings: list[Issue] = []
    truncated = False
    for iteration in range(MAX_INCLUDE_ITERATIONS):
        active = [i for i in parsed.includes if iteration == 0 or i.iterate]
        if not active or not frontier:
            break
        new: list[StoredVersion] = []
        for include in active:
            if include.reverse:
                found, more = await _revinclude(svc, ctx, include, frontier, snapshot, limit)
                truncated = truncated or more
            else:
                found = await _include(svc, include, frontier, snapshot)
            for version in found:
                key = (version.type, version.id)
                if key in seen or not await svc.visible(ctx, version):
                    continue
                if len(included) + len(new) >= limit:
                    truncated = True
                    break
                seen.add(key)
                new.append(version)
        included.extend(new)
        frontier = [(v.type, v.id, v.body) for v in new if v.body is not None]
    if truncated:
        warnings.append(
            Issue(
                "warning",
                "too-costly",
                f"included resources were limited to {limit} for this page; use a smaller _count "
                "or search the included type directly to get all of them",
            )
        )
    return included, warnings


async def _include(
    svc: FhirService, include: Include, frontier: list[tuple[str, str, bytes]], snapshot: int
) -> list[StoredVersion]:
    keys: list[tuple[str, str]] = []
    for type_, _id, body in frontier:
        if include.source_type not in ("*", type_):
            continue
        params = (
            [p for p in svc.registry.params_for(type_).values() if p.type == "reference"]
            if include.param == "*"
            else [p for p in (svc.registry.get(type_, include.param),) if p is not None]
        )
        if not params:
            continue
        resource = loads_trusted(body)
        for param in params:
            if param.evaluator is None:
                continue
            for node in param.evaluator(resource):
                if not isinstance(node.value, dict):
                    continue
                ref = node.value.get("reference")
                if not isinstance(ref, str):
                    continue
                parsed = svc.extractor.parse_reference(ref, resource)
                if parsed is None or parsed[3] is not None or not parsed[0] or not parsed[1]:
                    continue
                if include.target_type and parsed[0] != include.target_type:
                    continue
                keys.append((parsed[0], parsed[1]))
    return await svc.store.read_many(list(dict.fromkeys(keys)), snapshot)


async def _revinclude(
    svc: FhirService,
    ctx: RequestContext,
    include: Include,
    frontier: list[tuple[str, str, bytes]],
    snapshot: int,
    limit: int,
) -> tuple[list[StoredVersion], bool]:
    source_types = svc.model.resource_types if include.source_type == "*" else [include.source_type]
    found: list[StoredVersion] = []
    more = False
    for source_type in source_types:
        params = (
            [p.code for p in svc.registry.params_for(source_type).values() if p.type == "reference"]
            if include.param == "*"
            else [include.param]
        )
        preds = tuple(
            ReferencePred(code, type_, id_)
            for code in params
            for type_, id_, _ in frontier
            if svc.registry.get(source_type, code) is not None
        )
        if not preds:
            continue
        query = Query(types=(source_type,), where=[preds], count=limit, snapshot=snapshot)
        await restrict(svc, ctx, query)
        page = await svc.store.search(query)
        more = more or page.has_more
        found.extend(StoredVersion(h.type, h.id, 0, 0, False, "", h.body) for h in page.hits)
    return found, more
