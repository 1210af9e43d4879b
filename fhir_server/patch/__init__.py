"""PATCH: JSON Patch (RFC 6902), JSON Merge Patch (RFC 7386) and FHIRPath Patch (Parameters)."""

from __future__ import annotations

import copy
from typing import Any

import jsonpatch

from fhir_server.errors import FhirError, bad_request
from fhir_server.model.structure import Model
from fhir_server.patch.fhirpath_patch import apply_fhirpath_patch

JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"


def apply_patch(resource: dict, patch: Any, content_type: str, model: Model) -> dict:
    """Return the patched copy of ``resource``; the caller validates and stores it."""
    if content_type == JSON_PATCH:
        return _json_patch(resource, patch)
    if (
        isinstance(patch, dict)
        and patch.get("resourceType") == "Parameters"
        and (content_type != MERGE_PATCH)
    ):
        return apply_fhirpath_patch(copy.deepcopy(resource), patch, model)
    if isinstance(patch, dict):
        return merge_patch(copy.deepcopy(resource), patch)
    raise bad_request(
        "a PATCH body must be a JSON Patch array, a merge-patch object or a "
        "FHIRPath Patch Parameters resource"
    )


def _json_patch(resource: dict, patch: Any) -> dict:
    if not isinstance(patch, list):
        raise bad_request("a JSON Patch document must be a JSON array of operations")
    try:
        return jsonpatch.apply_patch(resource, patch, in_place=False)
    except jsonpatch.JsonPatchTestFailed as exc:
        raise FhirError(422, "processing", f"JSON Patch test failed: {exc}") from exc
    except (
        jsonpatch.JsonPatchException,
        jsonpatch.JsonPointerException,
        KeyError,
        IndexError,
        TypeError,
        ValueError,
    ) as exc:
        raise FhirError(422, "processing", f"JSON Patch could not be applied: {exc}") from exc


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: objects merge recursively, null deletes, anything else replaces."""
    if not isinstance(patch, dict):
        return patch
    if not isinstance(target, dict):
        target = {}
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        else:
            target[key] = merge_patch(target.get(key), value)
    return target
