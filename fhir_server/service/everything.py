"""``Patient/[id]/$everything`` (R4): the patient and her Patient compartment, as the caller may see
it, as a paged searchset Bundle.

It is one search over the Patient and every type of the R4 Patient CompartmentDefinition, run by
the search service with the caller's context: the guard narrows it (care relationship, consent,
security labels, patient context) exactly as it narrows any search, and the paging links are the
same snapshot cursors (paging while others write neither repeats nor skips).

Parameters (GET query, or POST Parameters): ``start`` / ``end`` (care dates: a resource whose
type has the R4 common ``date`` search parameter must fall in the range; resources of other types,
or without a date, are kept, as R4 asks for everything in scope), ``_since`` (last updated at or
after), ``_type`` (comma-separated or repeated), ``_count``. Resources outside the compartment that
compartment resources reference (Practitioners, Organizations...) are not added; search them
directly.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

from fhir_server.errors import FhirError, bad_request, gone, not_found
from fhir_server.json_codec import parse
from fhir_server.service import search
from fhir_server.service.context import RequestContext
from fhir_server.service.core import Access, FhirService
from fhir_server.service.result import Result
from fhir_server.store.query import MissingPred

PARAMS = ("start", "end", "_since", "_type", "_count", "_cursor")
DEFINITION = "https://borninbelgiumpro.be/fhir/OperationDefinition/Patient-everything"


def compartment_types(svc: FhirService) -> tuple[str, ...]:
    types = ["Patient"]
    for type_, params in search.patient_compartment().items():
        if params and svc.model.is_resource(type_) and type_ != "Patient":
            types.append(type_)
    return tuple(types)


async def _params(svc: FhirService, request: Any) -> list[tuple[str, str]]:
    params = [(k, v) for k, v in request.params if k not in ("_format", "_pretty")]
    if request.method == "POST":
        raw = await request.body(svc.settings.max_body_bytes)
        if raw.strip():
            content_type = (request.header("content-type") or "").split(";")[0].strip()
            if content_type == "application/x-www-form-urlencoded":
                params += parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True)
            else:
                body = parse(raw)
                if not isinstance(body, dict) or body.get("resourceType") != "Parameters":
                    raise bad_request("the body of POST $everything must be a Parameters resource")
                for item in body.get("parameter") or ():
                    name = item.get("name") if isinstance(item, dict) else None
                    value = (
                        next((v for k, v in item.items() if k.startswith("value")), None)
                        if isinstance(item, dict)
                        else None
                    )
                    if not isinstance(name, str) or value is None:
                        raise bad_request("every parameter needs a name and a value")
                    params.append((name, str(value)))
    elif request.method not in ("GET", "HEAD"):
        raise FhirError(405, "not-supported", "$everything takes GET or POST")
    for name, _ in params:
        if name not in PARAMS:
            raise bad_request(
                f"unknown parameter {name!r} for $everything; known: " + ", ".join(PARAMS)
            )
    return params


async def everything(
    svc: FhirService, ctx: RequestContext, request: Any, target: dict[str, Any]
) -> Result:
    if target.get("type") != "Patient" or "id" not in target:
        raise FhirError(
            404, "not-supported", "$everything is available as Patient/[id]/$everything"
        )
    pid = target["id"]
    await svc.authorize(ctx, Access("operation", "Patient", pid, operation="everything"))
    current = await svc.store.current("Patient", pid)
    if current is None:
        raise not_found(f"Patient/{pid} is not known")
    if current.deleted:
        raise gone(f"Patient/{pid} has been deleted")
    params = await _params(svc, request)
    all_types = compartment_types(svc)
    wanted: list[str] = []
    search_params: list[tuple[str, str]] = []
    link_params: list[tuple[str, str]] = []
    extra: list[tuple] = []
    for name, value in params:
        if name == "_type":
            for type_ in (t.strip() for t in value.split(",")):
                if not type_:
                    continue
                if type_ not in all_types:
                    raise bad_request(
                        f"{type_!r} is not the Patient or a type of the Patient compartment",
                        "_type",
                    )
                wanted.append(type_)
            link_params.append((name, value))
        elif name == "_count":
            search_params.append((name, value))
            link_params.append((name, value))
        elif name == "_since":
            search_params.append(("_lastUpdated", f"ge{value}"))
            link_params.append((name, value))
        elif name == "_cursor":
            search_params.append((name, value))
        elif name in ("start", "end"):
            prefix = "ge" if name == "start" else "le"
            try:
                clause = svc.parser.parse(
                    ("Observation",), [("date", f"{prefix}{value}")], strict=True
                ).query.where[0]
            except FhirError as exc:
                raise bad_request(f"{name} must be a date, got {value!r}", name) from exc
            extra.append((*clause, MissingPred("date", "dates", True)))
            link_params.append((name, value))
    types = tuple(dict.fromkeys(wanted)) or await _searchable(svc, ctx, all_types)
    return await search.search(
        svc,
        ctx,
        types,
        search_params,
        ctx.url("Patient", pid, "$everything"),
        ("Patient", pid),
        extra_where=extra,
        link_params=link_params,
    )


async def _searchable(
    svc: FhirService, ctx: RequestContext, types: tuple[str, ...]
) -> tuple[str, ...]:
    """The types the caller may search at all (without _type, $everything leaves out e.g. the
    audit trail for a professional instead of refusing the whole request)."""
    out = []
    for type_ in types:
        try:
            # asked as a multi-type search, the guard refuses (403) a type the caller may not
            # search, where a single-type search would just match nothing
            await svc.search_filter(ctx, (type_, type_))
        except FhirError as exc:
            if exc.status != 403:
                raise
            continue
        out.append(type_)
    if not out:
        raise FhirError(403, "forbidden", "the granted scopes allow no type of the compartment")
    return tuple(out)


def install(app: Any) -> None:
    app.fhir.operations["everything"] = everything
    app.service.capability_operations.append(
        {"name": "everything", "definition": DEFINITION, "types": ("Patient",)}
    )
