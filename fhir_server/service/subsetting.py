"""``_summary`` and ``_elements``: return part of a resource, marked SUBSETTED as the spec asks."""

from __future__ import annotations

from typing import Any

from fhir_server.model.structure import Model

SUBSETTED = {
    "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
    "code": "SUBSETTED",
    "display": "subsetted",
}
_ALWAYS = ("resourceType", "id", "meta")


def _mark(resource: dict[str, Any]) -> dict[str, Any]:
    meta = dict(resource.get("meta") or {})
    tags = [t for t in meta.get("tag", ()) if t.get("code") != "SUBSETTED"]
    meta["tag"] = [*tags, SUBSETTED]
    resource["meta"] = meta
    return resource


def _keys_for(model: Model, resource_type: str, wanted) -> set[str]:
    structure = model.types.get(resource_type)
    if structure is None:
        return set()
    return {key for key, spec in structure.keys.items() if wanted(spec.element)}


def subset(
    resource: dict[str, Any], model: Model, summary: str | None, elements: tuple[str, ...]
) -> dict[str, Any]:
    resource_type = resource.get("resourceType", "")
    if summary == "true":
        keep = _keys_for(model, resource_type, lambda e: e.is_summary or e.min > 0 or e.is_modifier)
        return _mark({k: v for k, v in resource.items() if k in keep or k in _ALWAYS})
    if summary == "text":
        keep = _keys_for(model, resource_type, lambda e: e.min > 0)
        return _mark(
            {k: v for k, v in resource.items() if k in keep or k in _ALWAYS or k == "text"}
        )
    if summary == "data":
        return _mark({k: v for k, v in resource.items() if k != "text"})
    if elements:
        structure = model.types.get(resource_type)
        wanted = set(elements)
        keep = set()
        if structure is not None:
            for key, spec in structure.keys.items():
                name = spec.element.name
                if name in wanted or spec.element.min > 0 or spec.element.is_modifier:
                    keep.add(key)
        return _mark({k: v for k, v in resource.items() if k in keep or k in _ALWAYS})
    return resource
