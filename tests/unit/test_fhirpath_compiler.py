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


def _demo_resources() -> list[dict]:
    from importlib.resources import files

    found: list[dict] = [OBSERVATION, PATIENT]
    for item in files("fhir_server.demo").iterdir():
        if item.name.endswith(".json"):
            data = json.loads(item.read_text())
            entries = data.get("entry", ()) if data.get("resourceType") == "Bundle" else ()
            found.extend(e["resource"] for e in entries if "resource" in e)
    return found


def test_plain_member_paths_take_the_fast_walk_with_identical_nodes() -> None:
    """The direct JSON walk for plain member paths gives exactly the general evaluator's nodes
    (value object, type, structure and location), for every R4 search expression that is one."""
    from fhir_server.fhirpath.compiler import Env, Node

    model = r4_model()
    definitions = [d for d in load_r4("search-parameters") if d.get("expression")]
    walked = 0
    for resource in _demo_resources():
        resource_type = resource["resourceType"]
        for definition in definitions:
            own = split_union_for_type(definition["expression"], resource_type, model)
            if not own:
                continue
            path = compile_path(own, model)
            root = [Node(resource, resource_type, model.types.get(resource_type))]
            general = path._fn(root, Env(root))
            fast = path(resource)
            assert [(id(n.value), n.type, n.structure, n.loc) for n in fast] == [
                (id(n.value), n.type, n.structure, n.loc) for n in general
            ], (resource_type, own)
            walked += path._simple is not None and bool(fast)
    assert walked > 100  # most parameters are plain paths, and the demo content exercises them
