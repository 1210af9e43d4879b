"""The public API (evaluate/check with their hooks) and the hooks' wiring to the terminology
catalog, the profile validator and an (async, guarded) resolver."""

from __future__ import annotations

from decimal import Decimal

import pytest

from fhir_server import fhirpath
from fhir_server.fhirpath.hooks import conformance_hook, terminology_hook

PATIENT = {
    "resourceType": "Patient",
    "id": "p1",
    "gender": "female",
    "birthDate": "1990-05-01",
    "maritalStatus": {
        "coding": [
            {"system": "http://terminology.hl7.org/CodeSystem/v3-MaritalStatus", "code": "M"}
        ]
    },
    "generalPractitioner": [{"reference": "Practitioner/pr1"}, {"reference": "#c1"}],
    "contained": [{"resourceType": "Organization", "id": "c1", "name": "Inner"}],
}


def test_check_raises_on_syntax_and_unknown_functions() -> None:
    for bad in ("name.", "2 + 2 /", "name.frobnicate()", "substring()", "'open"):
        with pytest.raises(fhirpath.FhirPathError):
            fhirpath.check(bad)
    fhirpath.check("name.given.first()")
    with pytest.raises(fhirpath.FhirPathError):
        fhirpath.check("name.given1", "Patient")


def test_positional_api_and_sdc_variables() -> None:
    qr = {
        "resourceType": "QuestionnaireResponse",
        "item": [
            {"linkId": "a", "answer": [{"valueInteger": 3}]},
            {"linkId": "b", "answer": [{"valueCoding": {"code": "x"}}]},
        ],
    }
    assert fhirpath.evaluate(
        "%resource.item.where(linkId='a').answer.value + %extra", qr, {"extra": 2}
    ) == [5]
    assert fhirpath.evaluate("item.answer.value.ofType(Coding).code", qr) == ["x"]
    assert fhirpath.evaluate("%age > 18", {}, {"age": 30}) == [True]
    assert fhirpath.evaluate("today() - 18 years < @2020-01-01", {}) == [True]
    assert fhirpath.evaluate("(1.5 'kg' + 500 'g')", {}) == [
        {"value": Decimal("2.0"), "unit": "kg", "system": "http://unitsofmeasure.org", "code": "kg"}
    ]


def test_strict_and_lenient_choice_names() -> None:
    obs = {
        "resourceType": "Observation",
        "status": "final",
        "code": {},
        "valueQuantity": {"value": 1, "unit": "mg"},
    }
    with pytest.raises(fhirpath.FhirPathError):
        fhirpath.evaluate("Observation.valueQuantity.value", obs)
    assert fhirpath.evaluate("Observation.valueQuantity.value", obs, strict=False) == [1]
    assert fhirpath.evaluate("Observation.value.ofType(Quantity).value", obs) == [1]


def test_member_of_through_the_terminology_catalog() -> None:
    hook = terminology_hook()
    vs = "http://hl7.org/fhir/ValueSet/administrative-gender"
    assert fhirpath.evaluate(f"gender.memberOf('{vs}')", PATIENT, terminology=hook) == [True]
    assert fhirpath.evaluate(
        "maritalStatus.memberOf('http://hl7.org/fhir/ValueSet/marital-status')",
        PATIENT,
        terminology=hook,
    ) == [True]
    assert fhirpath.evaluate("'nonsense'.memberOf(%vs)", PATIENT, {"vs": vs}, terminology=hook) == [
        False
    ]
    with pytest.raises(fhirpath.FhirPathError):  # no terminology hook: an error, not a guess
        fhirpath.evaluate(f"gender.memberOf('{vs}')", PATIENT)


def test_conforms_to_through_the_validator() -> None:
    hook = conformance_hook()
    base = "http://hl7.org/fhir/StructureDefinition/"
    assert fhirpath.evaluate(f"conformsTo('{base}Patient')", PATIENT, validator=hook) == [True]
    assert fhirpath.evaluate(f"conformsTo('{base}Person')", PATIENT, validator=hook) == [False]
    with pytest.raises(fhirpath.FhirPathError):
        fhirpath.evaluate("conformsTo('http://trash')", PATIENT, validator=hook)


def test_resolve_uses_contained_resources_and_the_resolver() -> None:
    seen = []

    def resolver(reference: str):
        seen.append(reference)
        return {"resourceType": "Practitioner", "id": "pr1", "name": [{"family": "Peeters"}]}

    names = fhirpath.evaluate(
        "generalPractitioner.resolve().name.family", PATIENT, resolver=resolver
    )
    assert names == ["Peeters"]
    assert seen == ["Practitioner/pr1"]
    assert fhirpath.evaluate(
        "generalPractitioner.resolve().ofType(Organization).name", PATIENT
    ) == ["Inner"]


async def test_evaluate_async_waits_for_an_async_resolver() -> None:
    async def resolver(reference: str):
        if reference == "Practitioner/pr1":
            return {"resourceType": "Practitioner", "id": "pr1", "active": True}
        return None  # what the guard refuses looks like what does not exist

    result = await fhirpath.evaluate_async(
        "generalPractitioner.resolve().ofType(Practitioner).active", PATIENT, resolver=resolver
    )
    assert result == [True]


def test_trace_hook() -> None:
    traced = []
    fhirpath.evaluate(
        "name.trace('n').exists()",
        {"resourceType": "Patient", "name": [{"family": "A"}]},
        trace=lambda label, values: traced.append((label, values)),
    )
    assert traced == [("n", [{"family": "A"}])]
