"""The CapabilityStatement, generated from what the server really does.

Interactions, search parameters, patch formats and conditional support are read from the running
service (registry, settings, store capabilities), so ``/metadata`` cannot drift from the code.
"""

from __future__ import annotations

from typing import Any

from fhir_server import FHIR_VERSION, __version__
from fhir_server.search.registry import SearchParam
from fhir_server.service.core import FhirService

TYPE_INTERACTIONS = (
    "read",
    "vread",
    "update",
    "patch",
    "delete",
    "history-instance",
    "history-type",
    "create",
    "search-type",
)
PATCH_FORMATS = (
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/fhir+json",
)
RESULT_PARAMS = ("_count", "_sort", "_include", "_revinclude", "_summary", "_elements", "_total")


def capability_statement(
    svc: FhirService, extra_rest: dict[str, Any] | None = None
) -> dict[str, Any]:
    settings = svc.settings
    conditional_delete = "multiple" if settings.allow_multiple_delete else "single"
    operations = list(getattr(svc, "capability_operations", ()))
    resources = []
    for resource_type in svc.model.resource_types:
        params = svc.registry.params_for(resource_type)
        handled = svc.parser.handlers
        active = sorted(
            (
                p
                for p in params.values()
                if _usable(p) or (p.url in handled and p.status == "active")
            ),
            key=lambda p: p.code,
        )
        references = [p.code for p in active if p.type == "reference"]
        resources.append(
            {
                "type": resource_type,
                "profile": svc.model.urls[resource_type],
                "interaction": [{"code": code} for code in TYPE_INTERACTIONS],
                "versioning": "versioned-update",
                "readHistory": True,
                "updateCreate": settings.allow_update_create,
                "conditionalCreate": True,
                "conditionalRead": "full-support",
                "conditionalUpdate": True,
                "conditionalDelete": conditional_delete,
                "referencePolicy": ["literal", "logical", "local"],
                "searchInclude": ["*", *(f"{resource_type}:{code}" for code in references)],
                "searchRevInclude": ["*"],
                "searchParam": [_search_param(p) for p in active],
            }
        )
        type_operations = [
            {"name": o["name"], "definition": o["definition"]}
            for o in operations
            if resource_type in o.get("types", ())
        ]
        if type_operations:
            resources[-1]["operation"] = type_operations
    rest: dict[str, Any] = {
        "mode": "server",
        "documentation": "FHIR R4 REST API of the Born in Belgium Professionals server",
        "resource": resources,
        "interaction": [
            {"code": c} for c in ("transaction", "batch", "search-system", "history-system")
        ],
        "searchParam": [
            {
                "name": name,
                "type": "special" if name.startswith("_") else "string",
                "documentation": "result parameter",
            }
            for name in RESULT_PARAMS
        ],
    }
    system_operations = [
        {"name": o["name"], "definition": o["definition"]} for o in operations if not o.get("types")
    ]
    if system_operations:
        rest["operation"] = system_operations
    if not svc.store.supports_transactions:
        rest["interaction"] = [i for i in rest["interaction"] if i["code"] != "transaction"]
        rest["documentation"] += (
            " (transactions are disabled: this store cannot run them atomically)"
        )
    if extra_rest:
        rest.update(extra_rest)
    statement = {
        "resourceType": "CapabilityStatement",
        "id": "bib-fhir-server",
        "url": f"{settings.public_url}/metadata",
        "version": __version__,
        "name": "BiBFhirServer",
        "title": "Born in Belgium Professionals FHIR server",
        "status": "active",
        "experimental": False,
        "date": "2026-11-24",
        "publisher": "Born in Belgium Professionals",
        "kind": "instance",
        "software": {"name": "bib-fhir-server", "version": __version__},
        "implementation": {"description": "BiB FHIR server", "url": settings.public_url},
        "fhirVersion": FHIR_VERSION,
        "format": ["application/fhir+json", "application/json"],
        "patchFormat": list(PATCH_FORMATS),
        "rest": [rest],
    }
    for hook in getattr(svc, "capability_hooks", ()):
        hook(statement)
    return statement


def _usable(param: SearchParam) -> bool:
    return param.status == "active" and (param.evaluator is not None or param.code == "_id")


def _search_param(param: SearchParam) -> dict[str, Any]:
    out = {"name": param.code, "type": param.type}
    if param.url:
        out["definition"] = param.url
    description = param.definition.get("description") if param.definition else None
    if isinstance(description, str) and param.url.startswith("https://borninbelgiumpro.be/"):
        out["documentation"] = description
    return out
