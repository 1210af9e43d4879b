"""Building Bundles from stored versions without re-parsing them.

Stored bodies are already JSON; ``orjson.Fragment`` embeds them as they are, so a 100-entry search
page costs one serialisation of the envelope. Only subsetting (_summary/_elements) parses bodies.
"""

from __future__ import annotations

from typing import Any

import orjson

from fhir_server.json_codec import loads_trusted
from fhir_server.model.structure import Model
from fhir_server.search.dates import format_instant
from fhir_server.service.subsetting import subset
from fhir_server.service.versioning import etag


def resource_fragment(
    body: bytes, model: Model, summary: str | None, elements: tuple[str, ...]
) -> Any:
    if summary in (None, "false") and not elements:
        return orjson.Fragment(body)
    return subset(loads_trusted(body), model, summary, elements)


def bundle(
    type_: str,
    entries: list[dict[str, Any]],
    links: list[tuple[str, str]],
    total: int | None = None,
    bundle_id: str | None = None,
    timestamp: str | None = None,
) -> dict[str, Any]:
    out: dict[str, Any] = {"resourceType": "Bundle"}
    if bundle_id:
        out["id"] = bundle_id
    if timestamp:
        out["meta"] = {"lastUpdated": timestamp}
    out["type"] = type_
    if timestamp:
        out["timestamp"] = timestamp
    if total is not None:
        out["total"] = total
    if links:
        out["link"] = [{"relation": relation, "url": url} for relation, url in links]
    if entries:
        out["entry"] = entries
    return out


def response_entry(
    status: str,
    version_number: int | None = None,
    last_updated: int | None = None,
    location: str | None = None,
) -> dict[str, Any]:
    response: dict[str, Any] = {"status": status}
    if location:
        response["location"] = location
    if version_number is not None:
        response["etag"] = etag(version_number)
    if last_updated is not None:
        response["lastModified"] = format_instant(last_updated)
    return response
