"""Invariants: the FHIRPath engine agrees with fhirpathpy (the former evaluator, kept as the
reference here) on every invariant evaluation of the examples, every invariant of the shipped
profiles and of R4 compiles, and the selection rules hold."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import fhirpathpy
import pytest
from fhirpathpy.engine.nodes import ResourceNode
from fhirpathpy.models import models as fhirpathpy_models

from fhir_server import fhirpath
from fhir_server.definitions import load_r4
from fhir_server.validation.invariants import Invariant, select_invariants
from fhir_server.validation.profiles import ProfileValidator
from fhir_server.validation.registry import shipped_content
from fhir_server.validation.structure import StructuralValidator

from .conftest import example, example_names
from .test_profile_examples import INVALID

R4_MODEL = fhirpathpy_models["r4"]


def _has_value(inputs: list[Any]) -> bool:
    return len(inputs) == 1 and inputs[0] is not None and not isinstance(inputs[0], dict)


# what the former evaluator added to fhirpathpy
USER_FUNCTIONS = {
    "hasValue": {"fn": _has_value, "arity": {0: []}},
    "htmlChecks": {"fn": lambda inputs: True, "arity": {0: []}},
    "trace": {"fn": lambda inputs, name=None: inputs, "arity": {1: ["String"]}},
}

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
def test_engine_matches_fhirpathpy(expression: str) -> None:
    result = fhirpath.evaluate(expression, SAMPLE)
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
    ("expression", "holds"),
    [
        ("birthDate = @1992-03-14", True),
        ("birthDate < today()", True),
        ("multipleBirth is integer", True),
        ("multipleBirth.ofType(integer) = 2", True),
        ("name.given ~ ('an' | 'marie' | 'annie')", True),
        ("iif(active, name.exists(), false)", True),
        ("birthDate = '1992-03'", False),  # a date of other precision is not equal (empty)
    ],
)
def test_what_needed_fhirpathpy_before_runs_in_the_engine(expression: str, holds: bool) -> None:
    invariant = Invariant("x-1", "error", "fails", expression)
    problem = invariant.evaluate(SAMPLE, "Patient", None, SAMPLE, SAMPLE)
    assert (problem is None) is holds
    assert problem is None or problem == "fails"


def _reference(
    invariant: Invariant, value: Any, type_path: str, partner: Any, resource: Any, root: Any
) -> str | None:
    """The former full evaluation (fhirpathpy), for comparison."""
    try:
        fn = fhirpathpy.compile(
            invariant.expression, model=R4_MODEL, options={"userInvocationTable": USER_FUNCTIONS}
        )
    except Exception as exc:
        return f"could not be evaluated ({exc})"
    node = ResourceNode.create_node(value, type_path, partner)
    try:
        result = fn(node, {"resource": resource, "rootResource": root})
    except Exception as exc:
        return f"could not be evaluated ({exc})"
    return None if result and all(item is True for item in result) else invariant.human


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
            full = _reference(self, value, type_path, partner, resource, root)
            if full is not None and full.startswith("could not be evaluated"):
                return result
            checked.append(self.key)
            if (result is None) != (full is None):
                disagreements.append(f"{self.key} on {type_path}: new={result!r} old={full!r}")
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


def _all_constraints() -> list[tuple[str, str, str]]:
    """(source, type path, expression) of every invariant of R4 and of the shipped profiles."""
    out = []
    for origin, definitions in (
        ("r4", [*load_r4("profiles-types"), *load_r4("profiles-resources")]),
        (
            "shipped",
            [r for r in shipped_content() if r.get("resourceType") == "StructureDefinition"],
        ),
    ):
        for sd in definitions:
            elements = (sd.get("snapshot") or sd.get("differential") or {}).get("element", ())
            for element in elements:
                for constraint in element.get("constraint", ()):
                    if constraint.get("expression"):
                        path = element.get("path", "")
                        out.append(
                            (f"{origin}:{constraint['key']}", path, constraint["expression"])
                        )
    return out


def test_every_r4_and_shipped_invariant_compiles() -> None:
    """Every invariant expression parses and uses known functions (compiled without a context
    type: element paths of profiles need the profile's own types to check names)."""
    failures = []
    for source, _path, expression in _all_constraints():
        try:
            fhirpath.check(expression)
        except fhirpath.FhirPathError as exc:
            failures.append(f"{source}: {exc}")
    assert not failures, failures


def test_r4_invariants_type_check_on_their_elements() -> None:
    """The R4 invariants compile in strict mode on the element they are defined on (the
    element names exist), apart from the ones listed with the R4 error they contain."""
    from fhir_server.model.structure import r4_model

    model = r4_model()
    # R4's own mistake: ChargeItemDefinition has no name element (the validator then logs the
    # invariant as broken and skips it, as it never applies)
    r4_errors = {"r4:cid-0"}
    failures = []
    for source, path, expression in _all_constraints():
        if not source.startswith("r4:") or ("." in path and model.element_at(path) is None):
            continue
        if source in r4_errors:
            with pytest.raises(fhirpath.FhirPathError):
                fhirpath.compile(expression, path)
            continue
        try:
            fhirpath.compile(expression, path)
        except fhirpath.FhirPathError as exc:
            failures.append(f"{source} on {path}: {exc}")
    assert not failures, failures
