"""The social map: services (HealthcareService) as activities with contact persons, searched by
language, target group, delivery mode, care line, cost, area and freshness, in the caller's
language, and imported from De Sociale Kaart, Bruxelles Social and Open Referral (HSDS 3.0).

See docs/socialmap.md. Everything plugs in here (``install``): the search parameters are shipped
content (content/socialmap/), their special meanings are parser handlers, the language and stale
marking are output hooks, the import is the ``$socialmap-import`` operation and the
``fhir-server import`` command.
"""

from __future__ import annotations

import os
from typing import Any

from fhir_server.socialmap import model
from fhir_server.socialmap.output import OutputHook, StripComputedTags
from fhir_server.socialmap.search import CoverageResolver, StaleHandler


def stale_months() -> int:
    raw = os.environ.get("FHIR_SOCIALMAP_STALE_MONTHS", "12")
    try:
        return max(1, int(raw))
    except ValueError:
        return 12


def install(app: Any) -> None:
    svc = app.service
    for resource_type in model.TEXT_TYPES:
        svc.enable_text(resource_type)
    svc.shipped.add_library("socialmap", "socialmap")
    stale = StaleHandler(stale_months())
    svc.parser.handlers[model.SP_COVERAGE] = CoverageResolver(svc).handle
    svc.parser.handlers[model.SP_STALE] = stale.handle
    hook = OutputHook(stale)
    for resource_type in model.TEXT_TYPES:
        svc.add_output_hook(resource_type, hook)
    svc.write_hooks.insert(0, StripComputedTags())
    from fhir_server.socialmap.operation import import_operation

    app.fhir.operations["socialmap-import"] = import_operation
    svc.capability_operations.append(
        {
            "name": "socialmap-import",
            "definition": f"{model.BASE}/OperationDefinition/socialmap-import",
        }
    )
