"""History interactions at instance, type and system level (Bundle type ``history``)."""

from __future__ import annotations

from urllib.parse import urlencode

import orjson

from fhir_server.errors import bad_request, unknown
from fhir_server.search.dates import date_range, format_instant
from fhir_server.service.bundles import bundle, response_entry
from fhir_server.service.context import RequestContext
from fhir_server.service.core import Access, FhirService
from fhir_server.service.result import Result
from fhir_server.service.versioning import now_us
from fhir_server.store.cursors import encode_history
from fhir_server.store.protocol import StoredVersion

_METHOD_STATUS = {
    "POST": "201 Created",
    "PUT": "200 OK",
    "PATCH": "200 OK",
    "DELETE": "204 No Content",
}


async def history(
    svc: FhirService,
    ctx: RequestContext,
    type_: str | None,
    id_: str | None,
    params: list[tuple[str, str]],
    link_base: str,
) -> Result:
    if type_ is not None:
        svc.require_type(type_)
    level = "history-instance" if id_ else "history-type" if type_ else "history-system"
    await svc.authorize(ctx, Access(level, type_, id_))
    if id_ is not None and await svc.store.current(type_ or "", id_) is None:
        raise unknown(type_, id_)
    since = at = cursor = store_cursor = None
    count = svc.settings.default_count
    used: list[tuple[str, str]] = []
    for name, value in params:
        if name == "_since":
            bounds = date_range(value)
            if bounds is None:
                raise bad_request(f"_since must be an instant, got {value!r}")
            since = bounds[0]
            used.append((name, value))
        elif name == "_at":
            at = date_range(value)
            if at is None:
                raise bad_request(f"_at must be a date or dateTime, got {value!r}")
            used.append((name, value))
        elif name == "_count":
            if not value.isdigit() or int(value) < 1:
                raise bad_request("_count must be a positive integer")
            count = min(int(value), svc.settings.max_count)
            used.append((name, value))
        elif name == "_cursor":
            cursor = value
            sealed = svc.sealer.open(value, ctx).get("c")
            if not isinstance(sealed, str):
                raise bad_request("this paging link is not valid; start again")
            store_cursor = sealed
        elif name not in ("_format", "_pretty", "_list", "_sort"):
            raise bad_request(f"unknown history parameter {name!r}")
    try:
        versions, next_cursor = await _page(svc, type_, id_, since, at, count, store_cursor)
    except ValueError as exc:
        raise bad_request(str(exc)) from exc
    entries = []
    for version in versions:
        if not await svc.visible(ctx, version):
            continue
        full_url = ctx.url(version.type, version.id)
        entry: dict = {"fullUrl": full_url}
        if version.body is not None:
            body = version.body
            if svc.output_hooks:  # as on reads: the resource as the caller should get it
                body = svc.outgoing(ctx, version.type, body) or body
            entry["resource"] = orjson.Fragment(body)
        url = version.type if version.method == "POST" else f"{version.type}/{version.id}"
        entry["request"] = {"method": version.method, "url": url}
        entry["response"] = response_entry(
            _METHOD_STATUS.get(version.method, "200 OK"), version.version, version.last_updated
        )
        entries.append(entry)
    links = [("self", _url(link_base, used, cursor))]
    if next_cursor:
        sealed = svc.sealer.seal({"c": next_cursor}, ctx)
        links.append(("next", _url(link_base, used, sealed)))
    return Result(
        200, resource=bundle("history", entries, links, timestamp=format_instant(now_us()))
    )


async def _page(
    svc: FhirService,
    type_: str | None,
    id_: str | None,
    since: int | None,
    at: tuple[int, int] | None,
    count: int,
    cursor: str | None,
) -> tuple[list[StoredVersion], str | None]:
    """One page of versions of FHIR resources. The store may also hold plug-ins' internal
    records (e.g. the subscriptions' outbox and delivery state; not FHIR resources, never
    served): system history skips them and reads on, so a page is still ``count`` long."""
    page = await svc.store.history(type_, id_, since, at, count, cursor)
    if type_ is not None:
        return page.versions, page.next_cursor
    kept: list[StoredVersion] = []
    while True:
        for version in page.versions:
            if svc.model.is_resource(version.type):
                kept.append(version)
                if len(kept) == count:
                    last = page.versions[-1].seq
                    more = version.seq != last or page.next_cursor is not None
                    return kept, encode_history(version.seq) if more else None
        if page.next_cursor is None:
            return kept, None
        page = await svc.store.history(type_, id_, since, at, count, page.next_cursor)


def _url(base: str, used: list[tuple[str, str]], cursor: str | None) -> str:
    items = list(used) + ([("_cursor", cursor)] if cursor else [])
    return f"{base}?{urlencode(items)}" if items else base
