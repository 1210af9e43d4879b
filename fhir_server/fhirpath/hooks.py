"""Ready-made hooks for the FHIRPath functions that need the rest of the server.

* ``memberOf()`` / ``subsumes()``: ``terminology_hook(catalog)`` wraps the live terminology
  catalog (``app.service.terminology.catalog``, or ``default_catalog()`` for the packaged one).
* ``conformsTo()``: ``conformance_hook(validator)`` checks a value against a profile with the
  profile validator (the R4 base definitions with the structural validator).
* ``resolve()``: ``guarded_resolver(svc, ctx)`` reads a reference through the service layer, so
  the guard decides with the caller's ``RequestContext`` (a resource the caller may not see
  resolves to nothing, like one that does not exist). It is async: use it with
  ``fhirpath.evaluate_async``.

Pass them as ``evaluate(..., terminology=..., validator=..., resolver=...)``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fhir_server.fhirpath import FhirPathError


class CatalogTerminology:
    """``expand`` and ``subsumes`` over a terminology ``Catalog``."""

    def __init__(self, catalog: Any) -> None:
        self.catalog = catalog

    def expand(self, url: str) -> Any:
        return self.catalog.expand(url)

    def subsumes(self, system: str | None, ancestor: str, descendant: str) -> bool | None:
        if not system:
            return None
        info = self.catalog.code_systems.get(system)
        if info is None:
            return None
        return ancestor == descendant or descendant in info.descendants(ancestor)


def terminology_hook(catalog: Any = None) -> CatalogTerminology:
    if catalog is None:
        from fhir_server.terminology.catalog import default_catalog

        catalog = default_catalog()
    return CatalogTerminology(catalog)


def conformance_hook(validator: Any = None) -> Callable[[Any, str], bool]:
    """``conformsTo(url)``: an unknown profile is an error (FHIRPath says so), a base
    definition is checked by type and structure, a profile by the profile validator."""
    if validator is None:
        from fhir_server.validation.profiles import ProfileValidator

        validator = ProfileValidator()
    from fhir_server.validation.structure import StructuralValidator

    structural = StructuralValidator()
    model = validator.model

    def conforms_to(value: Any, url: str) -> bool:
        if not validator.knows(url):
            raise FhirPathError(f"conformsTo(): the profile {url} is not known to this server")
        if validator.registry.is_base(url):
            definition = validator.registry.get(url) or {}
            base_type = definition.get("type", "")
            if not isinstance(value, dict):
                return False
            value_type = value.get("resourceType")
            if not isinstance(value_type, str) or not model.is_a(value_type, base_type):
                return False
            issues = structural.validate(value, value_type)
            return not any(i.severity in ("error", "fatal") for i in issues)
        return bool(validator.conforms(value, url))

    return conforms_to


def guarded_resolver(svc: Any, ctx: Any) -> Callable[[str], Awaitable[dict[str, Any] | None]]:
    """An async resolver reading ``Type/id`` references through ``service.crud.read`` with the
    caller's context: whatever the guard refuses, or what does not exist, resolves to
    nothing."""
    from fhir_server.errors import FhirError
    from fhir_server.json_codec import loads_trusted
    from fhir_server.service import crud

    async def resolve(reference: str) -> dict[str, Any] | None:
        parts = reference.split("?", 1)[0].rstrip("/").split("/")
        if len(parts) < 2:
            return None
        if "_history" in parts[-2:-1] and len(parts) >= 4:
            parts = parts[:-2]
        resource_type, resource_id = parts[-2], parts[-1]
        try:
            result = await crud.read(svc, ctx, resource_type, resource_id)
        except FhirError:
            return None
        resource = result.resource
        if resource is None and result.raw is not None:
            resource = loads_trusted(result.raw)
        return resource if isinstance(resource, dict) else None

    return resolve
