"""Contained resources, Bundle entries and reference targets resolved inside the resource."""

from __future__ import annotations

import copy

from fhir_server.validation.profiles import ProfileValidator

from .conftest import BIB, errors, example


def test_contained_resource_claiming_a_profile_is_validated(validator: ProfileValidator) -> None:
    plan = example("CarePlan-bib-example-loss-pathway")
    patient = example("Patient-bib-example-patient-rrn")
    patient["id"] = "p"
    patient["identifier"][0]["value"] = "92031412452"
    del patient["meta"]["profile"][0]
    patient["meta"] = {"profile": [BIB + "bib-patient"]}
    plan["contained"] = [patient]
    plan["subject"] = {"reference": "#p"}
    issues = errors(validator.validate(plan, "CarePlan"))
    assert [i.expression for i in issues] == [
        "CarePlan.contained[0].identifier[0]",
        "CarePlan.subject",
    ]
    assert "does not conform" in issues[1].diagnostics


def test_contained_target_must_conform_even_without_a_claim(validator: ProfileValidator) -> None:
    plan = example("CarePlan-bib-example-loss-pathway")
    plan["contained"] = [{"resourceType": "Patient", "id": "p", "name": [{"family": "X"}]}]
    plan["subject"] = {"reference": "#p"}
    issues = errors(validator.validate(plan, "CarePlan"))
    assert [(i.expression, i.code) for i in issues] == [("CarePlan.subject", "invalid")]


def test_reference_to_a_missing_contained_resource(validator: ProfileValidator) -> None:
    plan = example("CarePlan-bib-example-loss-pathway")
    plan["subject"] = {"reference": "#nowhere"}
    issues = errors(validator.validate(plan, "CarePlan"))
    assert [(i.expression, i.code) for i in issues] == [("CarePlan.subject", "not-found")]


def test_absolute_and_versioned_references_are_typed(validator: ProfileValidator) -> None:
    plan = example("CarePlan-bib-example-loss-pathway")
    plan["subject"] = {"reference": "https://other.example.org/fhir/Group/1/_history/2"}
    issues = errors(validator.validate(plan, "CarePlan"))
    assert [(i.expression, i.code) for i in issues] == [("CarePlan.subject", "structure")]
    plan["subject"] = {"reference": "https://other.example.org/fhir/Patient/1/_history/2"}
    assert errors(validator.validate(plan, "CarePlan")) == []


def test_bundle_entries_claiming_profiles_are_validated(validator: ProfileValidator) -> None:
    bad = example("Task-bib-example-referral-task")
    del bad["businessStatus"]
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "meta": {"profile": ["http://hl7.org/fhir/StructureDefinition/Bundle"]},
        "entry": [
            {"resource": example("Patient-bib-example-patient-rrn")},
            {"resource": bad},
        ],
    }
    issues = errors(validator.validate(bundle, "Bundle"))
    assert [(i.expression, i.diagnostics[:10]) for i in issues] == [
        ("Bundle.entry[1].resource", "bib-task-3")
    ]


def test_extension_context_inside_a_contained_resource(validator: ProfileValidator) -> None:
    plan = example("CarePlan-bib-example-loss-pathway")
    patient = example("Patient-bib-example-patient-rrn")
    patient["id"] = "p"
    patient["extension"] = [copy.deepcopy(plan["extension"][0])]  # a CarePlan extension
    plan["contained"] = [patient]
    plan["subject"] = {"reference": "#p"}
    issues = errors(validator.validate(plan, "CarePlan"))
    assert ("CarePlan.contained[0].extension[0]", "extension") in {
        (i.expression, i.code) for i in issues
    }
