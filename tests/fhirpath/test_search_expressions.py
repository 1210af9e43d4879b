"""Search extraction: every R4 SearchParameter expression, through the engine's typed-node
evaluator (``compile_expression``), on the demo content, the be-core examples and samples, agrees
with fhirpathpy (kept as the reference in tests) and with the engine's own full evaluator."""

from __future__ import annotations

import json

import fhirpathpy
import pytest
from fhirpathpy.models import models as fhirpathpy_models

from fhir_server import fhirpath
from fhir_server.definitions import load_r4
from fhir_server.fhirpath import compile_expression
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


R4_MODEL = fhirpathpy_models["r4"]


def compile_path(expression: str, model):  # the server's search extraction path
    return compile_expression(expression, model)


def _demo_resources() -> list[dict]:
    from importlib.resources import files

    found: list[dict] = [OBSERVATION, PATIENT]
    for item in files("fhir_server.demo").iterdir():
        if item.name.endswith(".json"):
            data = json.loads(item.read_text())
            entries = data.get("entry", ()) if data.get("resourceType") == "Bundle" else ()
            found.extend(e["resource"] for e in entries if "resource" in e)
    return found


def _examples() -> list[dict]:
    from pathlib import Path

    found = _demo_resources()
    for path in sorted((Path(__file__).parent.parent / "data" / "be-core").glob("*.json")):
        found.append(json.loads(path.read_text()))
    return found


def _cases():
    model = r4_model()
    definitions = [d for d in load_r4("search-parameters") if d.get("expression")]
    seen = set()
    for example in _examples():
        rtype = example["resourceType"]
        for definition in definitions:
            bases = definition.get("base", ())
            if rtype not in bases and not {"Resource", "DomainResource"} & set(bases):
                continue
            own = split_union_for_type(definition["expression"], rtype, model)
            key = (rtype, example.get("id"), definition["code"])
            if own and definition["code"] not in ("_id",) and key not in seen:
                seen.add(key)
                yield pytest.param(
                    own, example, id=f"{rtype}-{example.get('id')}-{definition['code']}"
                )


def _plain(value):
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items() if not k.startswith("_")}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, float) or (hasattr(value, "as_tuple") and not isinstance(value, str)):
        return str(value)
    return value


def _normalise(values: list) -> list[str]:
    return sorted(json.dumps(_plain(v), sort_keys=True, default=str) for v in values)


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
    # fhirpathpy does not take Resource.meta as a type filter on a Patient: name the type
    reference = expression.replace("Resource.", resource["resourceType"] + ".")
    expected = fhirpathpy.evaluate(resource, reference, model=R4_MODEL)
    assert _normalise(compiled) == _normalise(expected)
    # the full evaluator (evaluate) gives the same values
    assert _normalise(compiled) == _normalise(fhirpath.evaluate(expression, resource))


def test_typed_nodes_know_choice_types() -> None:
    nodes = compile_path("Observation.value", r4_model())(OBSERVATION)
    assert [n.type for n in nodes] == ["Quantity"]
    components = compile_path("Observation.component.value", r4_model())(OBSERVATION)
    assert [n.type for n in components] == ["Quantity", "string"]


def test_resolve_is_type_filters_references() -> None:
    path = compile_path("Observation.performer.where(resolve() is Organization)", r4_model())
    assert [n.value["reference"] for n in path(OBSERVATION)] == ["Organization/org1"]


def test_plain_member_paths_take_the_fast_walk_with_identical_nodes() -> None:
    """The direct JSON walk for plain member paths gives exactly the general evaluator's nodes
    (value object, type, structure and location), for every R4 search expression that is one."""
    from fhir_server.fhirpath.engine import Ctx

    model = r4_model()
    definitions = [d for d in load_r4("search-parameters") if d.get("expression")]
    walked = 0
    for resource in _demo_resources():
        resource_type = resource["resourceType"]
        for definition in definitions:
            if resource_type not in definition.get("base", ()):
                continue
            own = split_union_for_type(definition["expression"], resource_type, model)
            if not own:
                continue
            compiled = fhirpath.compile(own, resource_type)
            root = [(resource, resource_type, model.types.get(resource_type), None, None, None)]
            path = compile_path(own, model)
            general = [
                fhirpath._to_node(i)
                for i in compiled.fn(Ctx(root, root, root, path._env))
                if type(i) is not tuple or i[0] is not None
            ]
            fast = path(resource)
            assert [(id(n.value), n.type, n.structure, n.loc) for n in fast] == [
                (id(n.value), n.type, n.structure, n.loc) for n in general
            ], (resource_type, own)
            walked += compiled._direct is not None and bool(fast)
    assert walked > 100  # most parameters are plain paths, and the demo content exercises them
