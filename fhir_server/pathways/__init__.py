"""Care pathways (zorgpaden): a PlanDefinition library, ``$apply`` to a living CarePlan, the
CarePlan lifecycle, pathway suggestions from events, and what GP software pulls.

``install(app)`` (listed in ``fhir_server/plugins.py``) registers:

- the shipped content ``content/pathways/`` (PlanDefinitions, ActivityDefinitions,
  OperationDefinitions), written into the store at start-up;
- ``PlanDefinition/$apply`` and ``ActivityDefinition/$apply`` (R4, type and instance level);
- a validator that refuses PlanDefinitions / ActivityDefinitions whose expressions do not parse
  (with the location), and the index of definitions the engine uses;
- the CarePlan lifecycle write hook (rules in ``mappings/careplan-lifecycle.json``);
- the trigger write hook that suggests a loss pathway when a loss is recorded;
- the operations' entries in ``/metadata``.

See docs/pathways.md.
"""

from __future__ import annotations

from typing import Any

from fhir_server.pathways.definitions import BIB, DefinitionValidator
from fhir_server.pathways.library import DefinitionIndex
from fhir_server.pathways.lifecycle import CarePlanLifecycle
from fhir_server.pathways.operations import apply_operation
from fhir_server.pathways.triggers import PathwayTriggers

OPERATIONS = [
    {
        "name": "apply",
        "definition": f"{BIB}/OperationDefinition/PlanDefinition-apply",
        "types": ("PlanDefinition",),
    },
    {
        "name": "apply",
        "definition": f"{BIB}/OperationDefinition/ActivityDefinition-apply",
        "types": ("ActivityDefinition",),
    },
]


def install(app: Any) -> None:
    svc = app.service
    index = DefinitionIndex(svc.store)
    svc.pathway_definitions = index
    svc.store.add_listener(index.committed)
    svc.start_hooks.append(index.load)
    svc.profile_validators.append(DefinitionValidator())
    svc.shipped.add_library("pathways", "pathways")
    svc.write_hooks.append(CarePlanLifecycle(svc))
    svc.write_hooks.append(PathwayTriggers(svc, index))
    app.fhir.operations["apply"] = apply_operation
    svc.capability_operations.extend(OPERATIONS)
