"""The compiled FHIRPath subset agrees with fhirpathpy on every R4 search expression."""

from __future__ import annotations

import json

import fhirpathpy
import pytest

from fhir_server.definitions import load_r4
from fhir_server.fhirpath import R4_MODEL
from fhir_server.fhirpath.compiler import compile_path
from fhir_server.model.structure import r4_model
from fhir_server.search.registry import split_union_for_type

OBSERVATION = {
    "resourceType": "Observation",
    "id": "o1",
    "status": "final",
    "code": {
        "coding": [{"system": "http://loinc.org", "code": "8480-6", "display": "SBP"}],
        "text": "Blood pressure",
    },
    "subject": {"reference": "Patient/p1"},
    "encounter": {"reference": "Encounter/e1"},
    "effectivePeriod": {"start": "2024-01-01", "end": "2024-01-02"},
    "performer": [{"reference": "Practitioner/pr1"}, {"reference": "Organization/org1"}],
    "valueQuantity": {
        "value": 120,
        "unit": "mmHg",
        "system": "http://unitsofmeasure.org",
        "code": "mm[Hg]",
    },
    "component": [
        {
            "code": {"coding": [{"system": "http://loinc.org", "code": "8462-4"}]},
            "valueQuantity": {"value": 80, "code": "mm[Hg]"},
        },
        {"code": {"text": "note"}, "valueString": "fine"},
    ],
}
PATIENT = {
    "resourceType": "Patient",
    "id": "p1",
    "active": True,
    "identifier": [
        {
            "system": "urn:ssin",
            "value": "90010112395",
            "type": {"coding": [{"system": "http://x", "code": "SS"}]},
        }
    ],
    "name": [{"family": "Janssens", "given": ["Élodie", "Marie"]}],
    "telecom": [{"system": "phone", "value": "+32 1"}, {"system": "email", "value": "a@b.be"}],
    "gender": "female",
    "birthDate": "1990-01-01",
    "deceasedBoolean": False,
    "address": [{"city": "Anderlecht", "postalCode": "1070"}],
    "generalPractitioner": [{"reference": "Practitioner/pr1"}],
    "managingOrganization": {"reference": "Organization/org1"},
    "link": [{"other": {"reference": "RelatedPerson/r1"}, "type": "seealso"}],
}


def _cases():
    model = r4_model()
    for definition in load_r4("search-parameters"):
        expression = definition.get("expression")
        if not expression:
            continue
        for example in (OBSERVATION, PATIENT):
            own = split_union_for_type(expression, example["resourceType"], model)
            if own and definition["code"] not in ("_id",):
                yield pytest.param(
                    own, example, id=f"{example['resourceType']}-{definition['code']}"
                )


def _normalise(values: list) -> list[str]:
    return sorted(json.dumps(v, sort_keys=True, default=str) for v in values)


@pytest.mark.parametrize(("expression", "resource"), list(_cases()))
def test_compiled_matches_fhirpathpy(expression: str, resource: dict) -> None:
    compiled = [n.value for n in compile_path(expression, r4_model())(resource)]
    if "resolve()" in expression:
        # fhirpathpy cannot resolve references without a resolver; compare the paths before it
        stripped = expression
        for target in ("Patient", "Practitioner", "Location", "RelatedPerson"):
            stripped = stripped.replace(f".where(resolve() is {target})", "")
        expected = [
            v
            for v in fhirpathpy.evaluate(resource, stripped, model=R4_MODEL)
            if isinstance(v, dict)
        ]
        assert all(v in expected for v in compiled)
        return
    expected = fhirpathpy.evaluate(resource, expression, model=R4_MODEL)
    assert _normalise(compiled) == _normalise(expected)


def test_typed_nodes_know_choice_types() -> None:
    nodes = compile_path("Observation.value", r4_model())(OBSERVATION)
    assert [n.type for n in nodes] == ["Quantity"]
    components = compile_path("Observation.component.value", r4_model())(OBSERVATION)
    assert [n.type for n in components] == ["Quantity", "string"]


def test_resolve_is_type_filters_references() -> None:
    path = compile_path("Observation.performer.where(resolve() is Organization)", r4_model())
    assert [n.value["reference"] for n in path(OBSERVATION)] == ["Organization/org1"]
