"""Core FHIR operations registered on the API (domain operations register themselves likewise)."""

from __future__ import annotations

from typing import Any

from fhir_server.errors import FhirError, not_found
from fhir_server.service.context import RequestContext
from fhir_server.service.core import Access, FhirService
from fhir_server.service.result import Result


async def reindex(
    svc: FhirService, ctx: RequestContext, request: Any, target: dict[str, Any]
) -> Result:
    """``GET|POST SearchParameter/[id]/$reindex``: the indexing status of a stored parameter."""
    if target.get("type") != "SearchParameter" or "id" not in target:
        raise FhirError(404, "not-supported", "$reindex is available on SearchParameter instances")
    await svc.authorize(
        ctx, Access("operation", "SearchParameter", target["id"], operation="reindex")
    )
    job = svc.search_parameters.status_for(target["id"])
    if job is None:
        raise not_found(f"SearchParameter/{target['id']} is not a stored search parameter")
    return Result(200, resource=job.as_parameters())


def install(app: Any) -> None:
    app.fhir.operations["reindex"] = reindex
