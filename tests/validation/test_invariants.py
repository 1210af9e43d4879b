"""Invariants: the compiled fast path must agree with fhirpathpy, and the selection rules hold."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import fhirpathpy
import pytest

from fhir_server.fhirpath import R4_MODEL
from fhir_server.validation.fastpath import Fallback, Unsupported, compile_invariant
from fhir_server.validation.invariants import USER_FUNCTIONS, Invariant, select_invariants
from fhir_server.validation.profiles import ProfileValidator
from fhir_server.validation.structure import StructuralValidator

from .conftest import example, example_names
from .test_profile_examples import INVALID

SAMPLE: dict[str, Any] = {
    "resourceType": "Patient",
    "id": "p1",
    "active": True,
    "identifier": [
        {"system": "http://a", "value": "1"},
        {"system": "http://b", "value": "22"},
    ],
    "name": [{"family": "Peeters", "given": ["An", "Marie"]}, {"given": ["Annie"]}],
    "birthDate": "1992-03-14",
    "multipleBirthInteger": 2,
    "contact": [{"gender": "female"}],
    "extension": [{"url": "http://x/e", "valueString": "hello"}],
}

EXPRESSIONS = [
    "identifier.exists()",
    "identifier.where(system = 'http://b').value = '22'",
    "identifier.where(system = 'http://c').exists()",
    "identifier.value.count()",
    "name.given.count() = 3",
    "name.all(given.exists())",
    "name.all(family.exists())",
    "name.family.exists() implies name.given.exists()",
    "deceased.exists() implies active",
    "contact.name.exists() or contact.telecom.exists()",
    "active and identifier.empty()",
    "active xor identifier.empty()",
    "identifier.empty() or active",
    "{} implies false",
    "false implies {}",
    "(1 | 2 | 1).count()",
    "multipleBirth = 2",
    "multipleBirth > 1 and multipleBirth <= 2",
    "(multipleBirth + 3) mod 4 = 1",
    "(7 div 2) = 3 and (7 mod 2) = 1",
    "birthDate.toString().substring(2, 8).replace('-', '') = '920314'",
    "'abc'.substring(1) = 'bc'",
    "'abc'.substring(5).empty()",
    "identifier[1].value.toInteger() = 22",
    "name.given.first() = 'An'",
    "name.given.last() = 'Annie'",
    "identifier.value.isDistinct()",
    "(identifier.value | identifier.value).count() = 2",
    "'x' in ('x' | 'y')",
    "('x' | 'y') contains 'z'",
    "name.family.startsWith('Pee') and name.family.endsWith('ers')",
    "name.family.matches('^P[a-z]+$')",
    "name.family.length() = 7",
    "extension('http://x/e').value = 'hello'",
    "extension.where(url = 'http://x/e').exists()",
    "descendants().value.count()",
    "children().count() > 3",
    "identifier.select(value).count() = 2",
    "identifier.where(value.length() > 1).system = 'http://b'",
    "Patient.identifier.exists()",
    "%resource.id = 'p1'",
    "active.not()",
    "identifier.value.select($this.matches('[0-9]+')).allTrue()",
    "identifier.value.select($this = '1').anyTrue()",
    "birthDate.hasValue()",
]


def _full(expression: str, resource: dict[str, Any]) -> list[Any]:
    fn = fhirpathpy.compile(
        expression, model=R4_MODEL, options={"userInvocationTable": USER_FUNCTIONS}
    )
    return fn(resource, {"resource": resource, "rootResource": resource})


@pytest.mark.parametrize("expression", EXPRESSIONS)
def test_fast_path_matches_fhirpathpy(expression: str) -> None:
    fast = compile_invariant(expression)
    env = {"resource": SAMPLE, "root": SAMPLE, "type": "Patient", "this": SAMPLE}
    try:
        result = fast([SAMPLE], env)
    except Fallback:  # every expression listed here must stay on the fast path
        pytest.fail(f"the fast path no longer handles {expression!r}")
    expected = _full(expression, SAMPLE)
    normalise = [
        Decimal(str(v)) if isinstance(v, (int, float)) and not isinstance(v, bool) else v
        for v in expected
    ]
    got = [
        Decimal(str(v)) if isinstance(v, (int, float)) and not isinstance(v, bool) else v
        for v in result
    ]
    assert got == normalise


@pytest.mark.parametrize(
    "expression",
    ["value is Quantity", "a ~ b", "value.ofType(Quantity)", "iif(a, b, c)", "today() > a"],
)
def test_outside_the_subset_is_unsupported(expression: str) -> None:
    with pytest.raises(Unsupported):
        compile_invariant(expression)


def test_dates_of_different_precision_fall_back() -> None:
    fast = compile_invariant("birthDate = '1992-03'")
    with pytest.raises(Fallback):
        fast([SAMPLE], {"resource": SAMPLE, "root": SAMPLE, "type": "Patient", "this": SAMPLE})


def test_every_invariant_agrees_with_fhirpathpy_on_the_examples(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Run all examples and invalid cases with both engines on every invariant evaluation (the
    profile invariants and the R4 core invariants the structural validator runs)."""
    validator = ProfileValidator()
    structural = StructuralValidator()
    original = Invariant.evaluate
    checked: list[str] = []
    disagreements: list[str] = []

    def both(
        self: Invariant, value: Any, type_path: str, partner: Any, resource: Any, root: Any
    ) -> str | None:
        result = original(self, value, type_path, partner, resource, root)
        if self.native is None:
            full = self.evaluate_full(value, type_path, partner, resource, root)
            if full is not None and full.startswith("could not be evaluated"):
                return result
            checked.append(self.key)
            if (result is None) != (full is None):
                disagreements.append(f"{self.key} on {type_path}: fast={result!r} full={full!r}")
        return result

    monkeypatch.setattr(Invariant, "evaluate", both)
    resources = [example(name) for name in example_names()]
    for case in INVALID:
        resource = example(case[1])
        case[2](resource)
        resources.append(resource)
    for resource in resources:
        validator.validate(resource, resource["resourceType"])
        structural.validate(resource, resource["resourceType"], best_practice=True)
    assert not disagreements, disagreements
    assert {"bib-pat-1", "bib-pat-2", "bib-prr-1", "bib-cp-1", "bib-task-2", "que-1", "pat-1"} <= (
        set(checked)
    )


def test_selection_keeps_profile_and_own_resource_invariants() -> None:
    constraints = [
        {"key": "ele-1", "severity": "error", "expression": "hasValue()"},
        {"key": "dom-6", "severity": "warning", "expression": "text.exists()"},
        {"key": "pat-1", "severity": "error", "expression": "name.exists()"},
        {
            "key": "per-1",
            "severity": "error",
            "expression": "start.exists()",
            "source": "http://hl7.org/fhir/StructureDefinition/Period",
        },
        {"key": "bib-x-1", "severity": "error", "expression": "true"},
        {"key": "be-inv-SSIN", "severity": "error", "expression": "true"},
    ]
    base_keys = frozenset({"ele-1", "dom-6", "pat-1", "per-1"})
    keys = [i.key for i in select_invariants(constraints, "Patient", base_keys)]
    assert keys == ["pat-1", "bib-x-1", "be-inv-SSIN"]
