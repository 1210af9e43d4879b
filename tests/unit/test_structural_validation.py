"""Structural validation against the R4 definitions (validation/structure.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fhir_server.validation.structure import StructuralValidator

BE_CORE = Path(__file__).resolve().parents[1] / "data" / "be-core"  # be-core 2.1.2 examples (CC0)
VALIDATOR = StructuralValidator()


def problems(resource: dict) -> list[tuple[str, str | None]]:
    return [
        (i.diagnostics, i.expression) for i in VALIDATOR.validate(resource) if i.severity == "error"
    ]


def test_a_complete_valid_resource_passes() -> None:
    patient = {
        "resourceType": "Patient",
        "id": "p-1",
        "active": True,
        "identifier": [{"system": "urn:x", "value": "1"}],
        "name": [
            {
                "family": "Peeters",
                "given": ["An", "Marie"],
                "_given": [None, {"extension": [{"url": "http://x", "valueString": "y"}]}],
            }
        ],
        "birthDate": "1990-02-28",
        "_birthDate": {"id": "b"},
        "deceasedBoolean": False,
        "contained": [{"resourceType": "Organization", "id": "o", "name": "Org"}],
        "managingOrganization": {"reference": "#o"},  # dom-3: contained resources are referenced
        "text": {
            "status": "generated",
            "div": '<div xmlns="http://www.w3.org/1999/xhtml"><p>An</p></div>',
        },
    }
    assert problems(patient) == []


@pytest.mark.parametrize(
    ("change", "where"),
    [
        ({"foo": 1}, "Patient.foo"),
        ({"id": "not valid!"}, "Patient.id"),
        ({"birthDate": "2023-02-30"}, "Patient.birthDate"),
        ({"birthDate": "01/02/2023"}, "Patient.birthDate"),
        ({"active": "true"}, "Patient.active"),
        ({"gender": ""}, "Patient.gender"),
        ({"name": {"family": "x"}}, "Patient.name"),
        ({"telecom": []}, "Patient.telecom"),
        ({"contact": [{}]}, "Patient.contact[0]"),
        ({"multipleBirthInteger": 3.5}, "Patient.multipleBirth.ofType(integer)"),
        ({"multipleBirthInteger": 2**40}, "Patient.multipleBirth.ofType(integer)"),
        ({"deceasedString": "yes"}, "Patient.deceasedString"),
        ({"link": [{"type": "seealso"}]}, "Patient.link[0].other"),
        ({"extension": [{"url": "http://x"}]}, "Patient.extension[0]"),
        (
            {
                "text": {
                    "status": "generated",
                    "div": '<div xmlns="http://www.w3.org/1999/xhtml"><script>x</script></div>',
                }
            },
            "Patient.text.div",
        ),
        (
            {
                "contained": [
                    {"resourceType": "Organization", "id": "o", "meta": {"versionId": "1"}}
                ]
            },
            "Patient.contained[0]",
        ),
    ],
)
def test_structural_errors_are_found_with_their_location(change: dict, where: str) -> None:
    resource = {"resourceType": "Patient", **change}
    found = problems(resource)
    assert found, f"{change} was accepted"
    assert any(location == where for _, location in found), found


def test_r4b_only_elements_are_rejected() -> None:
    # PlanDefinition.subjectCanonical exists in R4B (4.3.0, fhir.resources' models) but not in
    # R4 4.0.1, where subject[x] is only CodeableConcept or Reference
    plan = {
        "resourceType": "PlanDefinition",
        "status": "draft",
        "subjectCanonical": "http://example.org/fhir/StructureDefinition/x",
    }
    assert ("unknown element 'subjectCanonical'", "PlanDefinition.subjectCanonical") in problems(
        plan
    )


def test_wrong_type_inside_bundle_entries_is_found() -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": {"resourceType": "Patient", "birthDate": 1990}}],
    }
    assert (
        "expected a JSON string for date, got number",
        "Bundle.entry[0].resource.birthDate",
    ) in problems(bundle)


@pytest.mark.parametrize("path", sorted(BE_CORE.glob("*.json")), ids=lambda p: p.name)
def test_belgian_core_examples_are_structurally_valid(path: Path) -> None:
    assert problems(json.loads(path.read_text())) == []
