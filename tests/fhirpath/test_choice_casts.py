"""The fast path of choice casts (``value.ofType(T)``, ``value.as(T)``, ``value as T`` read only
the keys T admits) gives exactly what the general path gives: same items, same errors."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from fhir_server.fhirpath import CompiledExpression, FhirPathError
from fhir_server.fhirpath.engine import Compiler, SemanticError
from fhir_server.fhirpath.parser import parse
from fhir_server.model.structure import r4_model

INPUTS = Path(__file__).parent / "suite" / "inputs"

OBSERVATION: dict[str, Any] = {
    "resourceType": "Observation",
    "status": "final",
    "code": {"text": "x"},
    "valueQuantity": {"value": 3, "unit": "kg"},
    "component": [
        {"code": {"text": "a"}, "valueString": "one"},
        {"code": {"text": "b"}, "valueQuantity": {"value": 4}},
        {
            "code": {"text": "c"},
            "_valueString": {"extension": [{"url": "u", "valueBoolean": True}]},
        },
        {"code": {"text": "d"}, "valueCodeableConcept": {"text": "cc"}},
    ],
    "extension": [
        {"url": "age", "valueAge": {"value": 30, "code": "a"}},
        {"url": "duration", "valueDuration": {"value": 2, "code": "h"}},
        {"url": "date", "valueDateTime": "2026-01-02"},
        {"url": "code", "valueCode": "abc"},
    ],
}
# not valid FHIR: two keys of one choice element (``as`` must still see two items)
TWO_VALUES = {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
              "valueString": "a", "valueBoolean": True}  # fmt: skip

EXPRESSIONS = [
    "Observation.value.ofType(Quantity)",
    "Observation.value.as(Quantity)",
    "Observation.value as Quantity",
    "(Observation.value as Quantity).value",
    "Observation.value.ofType(Quantity).unit",
    "Observation.value.ofType(string)",
    "Observation.value.as(String)",
    "Observation.value.as(DateTime)",
    "Observation.component.value.ofType(Quantity)",
    "Observation.component.value.ofType(string)",
    "Observation.component.value.as(string)",
    "Observation.component.value as CodeableConcept",
    "Observation.component.where(code.text = 'c').value.ofType(string).extension.url",
    "Observation.extension.value.ofType(Quantity)",
    "Observation.extension.value.ofType(Age)",
    "Observation.extension.value.ofType(FHIR.Quantity)",
    "Observation.extension.value.ofType(dateTime)",
    "Observation.extension.value.ofType(DateTime)",
    "Observation.extension.value.ofType(code)",
    "Observation.extension.value.ofType(string)",
    "Observation.extension.value.ofType(System.String)",
    "Observation.extension.where(url = 'age').value.as(Quantity)",
    "Observation.code.ofType(CodeableConcept)",
    "Observation.subject.ofType(Reference)",
    "value.ofType(Quantity)",
    "value as String",
    "component.value.ofType(CodeableConcept).text",
    "extension.value.ofType(Duration).value",
]


def _inputs() -> list[dict[str, Any]]:
    found = [OBSERVATION, TWO_VALUES]
    for path in sorted(INPUTS.glob("*.json")):
        resource = json.loads(path.read_text(), parse_float=Decimal)
        if resource.get("resourceType") in ("Observation", "Patient", "Questionnaire"):
            found.append(resource)
    return found


def _outcome(compiler: Compiler, expression: str, resource: dict, typed: bool) -> Any:
    context = resource["resourceType"] if typed else None
    try:
        fn, _ = compiler.compile(parse(expression), compiler.stype(context) if context else None)
    except SemanticError as exc:
        return ("semantic", str(exc))
    compiled = CompiledExpression(expression, fn, compiler.model, context)
    try:
        return [repr(v) for v in compiled.values(resource)]
    except FhirPathError as exc:
        return ("error", str(exc).split(" failed: ")[-1])


@pytest.mark.parametrize("strict", [True, False])
@pytest.mark.parametrize("typed", [True, False])
def test_choice_casts_match_the_general_path(strict: bool, typed: bool) -> None:
    model = r4_model()
    general = Compiler(model, strict=strict, choice_casts=False)
    fast = Compiler(model, strict=strict)
    compared = 0
    for resource in _inputs():
        for expression in EXPRESSIONS:
            expected = _outcome(general, expression, resource, typed)
            assert _outcome(fast, expression, resource, typed) == expected, (
                expression,
                resource.get("id"),
            )
            compared += 1
    assert compared > 100


def test_the_fast_path_reads_one_key_and_keeps_the_errors() -> None:
    fast = Compiler(r4_model())
    assert _outcome(fast, "Observation.value.ofType(Quantity).value", OBSERVATION, True) == ["3"]
    assert _outcome(fast, "Observation.value.ofType(string)", OBSERVATION, True) == []
    # two values where FHIR allows one: `as` refuses, `ofType` filters
    assert _outcome(fast, "Observation.value as String", TWO_VALUES, True)[0] == "error"
    assert _outcome(fast, "Observation.value.as(Boolean)", TWO_VALUES, True)[0] == "error"
    assert _outcome(fast, "Observation.value.ofType(boolean)", TWO_VALUES, True) == ["True"]
