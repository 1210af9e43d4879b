"""Psychosocial screening: instruments, server-side validation and scoring of responses, SDC
$populate and $extract, the stepped protocol's next steps and safety alerts (docs/screening.md).

``install(app)`` (listed in ``fhir_server/plugins.py``) plugs it into the server:

* shipped content ``content/screening/`` (the BiB screening, Whooley, GAD-2, GAD-7, PHQ-2,
  PHQ-9, EPDS, the stepped protocol, the OperationDefinitions) is loaded at start-up;
* ``ScreeningValidator`` joins the profile validators (Questionnaire and response checks on every
  write and in ``$validate``), ``ScreeningHook`` the write hooks (first, so that the labels and
  the Provenance see the computed response);
* the Questionnaire and PlanDefinition indexes follow the store's commits;
* ``$populate`` and ``$extract`` on the FHIR API, listed in ``/metadata`` with their
  OperationDefinitions, and the SDC capabilities the server instantiates.
"""

from __future__ import annotations

from typing import Any

from fhir_server.screening.hook import ScreeningHook, ScreeningState, ScreeningValidator
from fhir_server.screening.operations import EXTRACT_DEFINITION, POPULATE_DEFINITION, handlers

SDC_CAPABILITIES = (
    "http://hl7.org/fhir/uv/sdc/CapabilityStatement/sdc-form-manager",
    "http://hl7.org/fhir/uv/sdc/CapabilityStatement/sdc-form-response-manager",
    "http://hl7.org/fhir/uv/sdc/CapabilityStatement/sdc-form-archiver",
)


OPERATIONS = [
    {"name": "populate", "definition": POPULATE_DEFINITION, "types": ("Questionnaire",)},
    {"name": "extract", "definition": EXTRACT_DEFINITION, "types": ("QuestionnaireResponse",)},
]


def capabilities(statement: dict[str, Any]) -> None:
    """The SDC capabilities this server instantiates (its operations are listed as data)."""
    instantiates = statement.setdefault("instantiates", [])
    instantiates.extend(url for url in SDC_CAPABILITIES if url not in instantiates)


def install(app: Any) -> None:
    svc = app.service
    state = ScreeningState(svc)
    svc.screening = state
    svc.profile_validators.append(ScreeningValidator(state))
    svc.write_hooks.insert(0, ScreeningHook(state))
    svc.store.add_listener(state.forms.committed)
    svc.store.add_listener(state.protocols.committed)
    svc.start_hooks.append(state.forms.load)
    svc.start_hooks.append(state.protocols.load)
    svc.shipped.add_library("screening", "screening")
    app.fhir.operations.update(handlers(state))
    svc.capability_operations.extend(OPERATIONS)
    svc.capability_hooks.append(capabilities)
