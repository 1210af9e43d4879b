"""Slicing (value, pattern, type, exists and profile discriminators; closed, ordered, openAtEnd),
and the differential -> snapshot generator, on small profiles made for the test."""

from __future__ import annotations

from typing import Any

import pytest

from fhir_server.errors import Issue
from fhir_server.validation.profiles import ProfileValidator
from fhir_server.validation.registry import DefinitionRegistry
from fhir_server.validation.snapshot import SnapshotError, generate_snapshot

R4 = "http://hl7.org/fhir/StructureDefinition/"
TEST = "http://example.org/fhir/StructureDefinition/"
CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"


def _el(element_id: str, **values: Any) -> dict[str, Any]:
    path = ".".join(part.split(":")[0] for part in element_id.split("."))
    element: dict[str, Any] = {"id": element_id, "path": path}
    last = element_id.rsplit(".", 1)[-1]
    if ":" in last:
        element["sliceName"] = last.split(":", 1)[1]
    element.update(values)
    return element


def _profile(name: str, type_: str, elements: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "resourceType": "StructureDefinition",
        "id": name,
        "url": TEST + name,
        "name": name.title().replace("-", ""),
        "status": "draft",
        "kind": "resource",
        "abstract": False,
        "type": type_,
        "baseDefinition": R4 + type_,
        "derivation": "constraint",
        "differential": {"element": elements},
    }


@pytest.fixture(scope="module")
def validator() -> ProfileValidator:
    registry = DefinitionRegistry.shipped()
    profiles = [
        _profile(
            "ordered-identifiers",
            "Patient",
            [
                _el(
                    "Patient.identifier",
                    slicing={
                        "discriminator": [{"type": "value", "path": "system"}],
                        "ordered": True,
                        "rules": "closed",
                    },
                ),
                _el("Patient.identifier:a", min=1, max="1"),
                _el("Patient.identifier:a.system", min=1, fixedUri="http://a"),
                _el("Patient.identifier:b", min=0, max="*"),
                _el("Patient.identifier:b.system", min=1, fixedUri="http://b"),
                _el("Patient.identifier:b.value", maxLength=3),
            ],
        ),
        _profile(
            "open-at-end",
            "Patient",
            [
                _el(
                    "Patient.identifier",
                    slicing={
                        "discriminator": [{"type": "value", "path": "system"}],
                        "rules": "openAtEnd",
                    },
                ),
                _el("Patient.identifier:a", min=0, max="*"),
                _el("Patient.identifier:a.system", min=1, fixedUri="http://a"),
            ],
        ),
        _profile(
            "typed-values",
            "Observation",
            [
                _el(
                    "Observation.category",
                    min=1,
                    slicing={
                        "discriminator": [{"type": "pattern", "path": "$this"}],
                        "rules": "open",
                    },
                ),
                _el(
                    "Observation.category:vitalSigns",
                    min=1,
                    max="1",
                    patternCodeableConcept={
                        "coding": [{"system": CATEGORY, "code": "vital-signs"}]
                    },
                ),
                _el(
                    "Observation.value[x]",
                    slicing={"discriminator": [{"type": "type", "path": "$this"}], "rules": "open"},
                ),
                _el(
                    "Observation.value[x]:valueString",
                    min=0,
                    max="1",
                    type=[{"code": "string"}],
                    maxLength=5,
                ),
                _el(
                    "Observation.value[x]:valueQuantity",
                    min=0,
                    max="1",
                    type=[{"code": "Quantity"}],
                ),
                _el(
                    "Observation.value[x]:valueQuantity.system",
                    min=1,
                    fixedUri="http://unitsofmeasure.org",
                ),
            ],
        ),
        _profile(
            "telecom-exists",
            "Patient",
            [
                _el(
                    "Patient.telecom",
                    slicing={
                        "discriminator": [{"type": "exists", "path": "period"}],
                        "rules": "open",
                    },
                ),
                _el("Patient.telecom:current", min=0, max="1"),
                _el("Patient.telecom:current.period", max="0"),
                _el("Patient.telecom:dated", min=0, max="*"),
                _el("Patient.telecom:dated.period", min=1),
            ],
        ),
        _profile(
            "be-addresses",
            "Patient",
            [
                _el(
                    "Patient.address",
                    slicing={
                        "discriminator": [{"type": "profile", "path": "$this"}],
                        "rules": "open",
                    },
                ),
                _el(
                    "Patient.address:belgian",
                    min=0,
                    max="1",
                    type=[
                        {
                            "code": "Address",
                            "profile": [
                                "https://www.ehealth.fgov.be/standards/fhir/core/StructureDefinition/be-address"
                            ],
                        }
                    ],
                ),
            ],
        ),
        _profile(
            "no-telecom",
            "Patient",
            [
                _el("Patient.telecom", max="0"),
                _el("Patient.deceased[x]", type=[{"code": "boolean"}]),
            ],
        ),
    ]
    for sd in profiles:
        assert registry.add_stored(sd["id"], sd) is None
    return ProfileValidator(registry=registry)


def _run(validator: ProfileValidator, name: str, resource: dict[str, Any]) -> list[Issue]:
    return validator.validate_against(resource, [TEST + name])


def _has(issues: list[Issue], expression: str, fragment: str) -> bool:
    return any(i.expression == expression and fragment in i.diagnostics for i in issues)


def test_value_discriminator_closed_and_ordered(validator: ProfileValidator) -> None:
    ok = {
        "resourceType": "Patient",
        "identifier": [{"system": "http://a", "value": "1"}, {"system": "http://b", "value": "2"}],
    }
    assert _run(validator, "ordered-identifiers", ok) == []
    wrong_order = {"resourceType": "Patient", "identifier": list(reversed(ok["identifier"]))}
    assert _has(
        _run(validator, "ordered-identifiers", wrong_order), "Patient.identifier[1]", "out of order"
    )
    stranger = {
        "resourceType": "Patient",
        "identifier": [{"system": "http://a", "value": "1"}, {"system": "http://c", "value": "3"}],
    }
    assert _has(
        _run(validator, "ordered-identifiers", stranger), "Patient.identifier[1]", "closed slicing"
    )
    missing = {"resourceType": "Patient", "identifier": [{"system": "http://b", "value": "2"}]}
    assert _has(
        _run(validator, "ordered-identifiers", missing),
        "Patient.identifier",
        "slice Patient.identifier:a: minimum cardinality is 1",
    )
    too_long = {
        "resourceType": "Patient",
        "identifier": [
            {"system": "http://a", "value": "1"},
            {"system": "http://b", "value": "2345"},
        ],
    }
    assert _has(
        _run(validator, "ordered-identifiers", too_long),
        "Patient.identifier[1].value",
        "at most 3 characters",
    )


def test_open_at_end(validator: ProfileValidator) -> None:
    good = {
        "resourceType": "Patient",
        "identifier": [{"system": "http://a", "value": "1"}, {"system": "http://z", "value": "2"}],
    }
    assert _run(validator, "open-at-end", good) == []
    bad = {"resourceType": "Patient", "identifier": list(reversed(good["identifier"]))}
    assert _has(_run(validator, "open-at-end", bad), "Patient.identifier[1]", "must come after")


def test_pattern_and_type_discriminators(validator: ProfileValidator) -> None:
    vital = {"coding": [{"system": CATEGORY, "code": "vital-signs"}]}
    base = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "x"},
        "category": [vital],
    }
    assert _run(validator, "typed-values", {**base, "valueString": "ok"}) == []
    issues = _run(validator, "typed-values", {**base, "valueString": "far too long"})
    assert _has(issues, "Observation.value.ofType(string)", "at most 5 characters")
    issues = _run(validator, "typed-values", {**base, "valueQuantity": {"value": 1, "unit": "kg"}})
    assert _has(issues, "Observation.value.ofType(Quantity).system", "minimum cardinality is 1")
    lab = {"coding": [{"system": CATEGORY, "code": "laboratory"}]}
    issues = _run(validator, "typed-values", {**base, "category": [lab]})
    assert _has(issues, "Observation.category", "slice Observation.category:vitalSigns")


def test_exists_discriminator(validator: ProfileValidator) -> None:
    now = {"system": "phone", "value": "1"}
    old = {"system": "phone", "value": "2", "period": {"end": "2020-01-01"}}
    assert (
        _run(validator, "telecom-exists", {"resourceType": "Patient", "telecom": [now, old, old]})
        == []
    )
    issues = _run(validator, "telecom-exists", {"resourceType": "Patient", "telecom": [now, now]})
    assert _has(
        issues, "Patient.telecom", "slice Patient.telecom:current: maximum cardinality is 1"
    )


def test_profile_discriminator(validator: ProfileValidator) -> None:
    one = {"resourceType": "Patient", "address": [{"city": "Gent"}]}
    assert _run(validator, "be-addresses", one) == []
    two = {"resourceType": "Patient", "address": [{"city": "Gent"}, {"city": "Namur"}]}
    assert _has(
        _run(validator, "be-addresses", two),
        "Patient.address",
        "slice Patient.address:belgian: maximum cardinality is 1",
    )


def test_prohibited_element_and_restricted_choice(validator: ProfileValidator) -> None:
    resource = {
        "resourceType": "Patient",
        "telecom": [{"system": "phone", "value": "1"}],
        "deceasedDateTime": "2020-01-01",
    }
    issues = _run(validator, "no-telecom", resource)
    assert _has(issues, "Patient.telecom", "maximum cardinality is 0")
    assert _has(issues, "Patient.deceased.ofType(dateTime)", "may not be a dateTime")


# -- the snapshot generator ----------------------------------------------------------------------


def test_generator_unfolds_types_and_creates_slices() -> None:
    registry = DefinitionRegistry.shipped()
    sd = _profile(
        "x",
        "Patient",
        [
            _el(
                "Patient.identifier",
                slicing={"discriminator": [{"type": "value", "path": "system"}], "rules": "open"},
            ),
            _el("Patient.identifier:a", min=1, max="1"),
            _el("Patient.identifier:a.system", min=1, fixedUri="http://a"),
        ],
    )
    elements = generate_snapshot(sd, registry.get, registry.type_definition)
    ids = [e["id"] for e in elements]
    assert ids.index("Patient.identifier") < ids.index("Patient.identifier:a")
    assert "Patient.identifier:a.system" in ids and "Patient.identifier:a.period" in ids
    system = elements[ids.index("Patient.identifier:a.system")]
    assert system["fixedUri"] == "http://a" and system["base"]["path"] == "Identifier.system"
    assert elements[ids.index("Patient.identifier:a")]["sliceName"] == "a"


@pytest.mark.parametrize(
    ("elements", "message"),
    [
        ([_el("Patient.communication.language", min=0)], "below the base min"),
        ([_el("Patient.gender", max="2")], "above the base max"),
        ([_el("Patient.nonsense")], "not an element"),
        ([_el("Patient.name:x")], "not sliced"),
        ([_el("Patient.deceased[x].foo")], "exactly one type"),
    ],
)
def test_generator_rejects_impossible_differentials(
    elements: list[dict[str, Any]], message: str
) -> None:
    registry = DefinitionRegistry.shipped()
    with pytest.raises(SnapshotError, match=message):
        generate_snapshot(
            _profile("bad", "Patient", elements), registry.get, registry.type_definition
        )


def test_extension_slices_get_url_slicing() -> None:
    registry = DefinitionRegistry.shipped()
    sd = _profile(
        "ext",
        "Patient",
        [
            _el(
                "Patient.extension:nationality",
                min=1,
                type=[{"code": "Extension", "profile": [R4 + "patient-nationality"]}],
            ),
        ],
    )
    elements = generate_snapshot(sd, registry.get, registry.type_definition)
    sliced = next(e for e in elements if e["id"] == "Patient.extension")
    assert sliced["slicing"]["discriminator"] == [{"type": "value", "path": "url"}]


def test_stored_definitions_that_cannot_be_used_get_a_warning() -> None:
    validator = ProfileValidator()
    unknown_base = _profile("orphan", "Patient", [])
    unknown_base["baseDefinition"] = "http://example.org/fhir/StructureDefinition/missing"
    issues = validator.validate(unknown_base, "StructureDefinition")
    assert [(i.severity, i.expression) for i in issues] == [
        ("warning", "StructureDefinition.baseDefinition")
    ]
    impossible = _profile("impossible", "Patient", [_el("Patient.gender", max="2")])
    issues = validator.validate(impossible, "StructureDefinition")
    assert [(i.severity, i.expression) for i in issues] == [
        ("warning", "StructureDefinition.differential")
    ]
    assert (
        validator.validate(
            _profile("fine", "Patient", [_el("Patient.gender", min=1)]), "StructureDefinition"
        )
        == []
    )
