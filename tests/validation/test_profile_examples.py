"""Valid and invalid examples for every shipped profile (be-core subset and BiB).

Each valid example in ``examples/`` must produce no issue at all (not even a warning); each
invalid case is a valid example with one change, and must produce the expected issue at the
expected FHIRPath location.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from fhir_server.validation.profiles import ProfileValidator
from fhir_server.validation.structure import StructuralValidator

from .conftest import BE, BE_CORE_EXAMPLES, BIB, errors, example, example_names

NS = "https://www.ehealth.fgov.be/standards/fhir/core/NamingSystem/"
CS = "https://borninbelgiumpro.be/fhir/CodeSystem/"
ALT = "https://borninbelgiumpro.be/fhir/NamingSystem/alternative-patient-number"

STRUCTURAL = StructuralValidator()


@pytest.mark.parametrize("name", example_names())
def test_valid_examples_have_no_issues(validator: ProfileValidator, name: str) -> None:
    resource = example(name)
    assert resource["meta"]["profile"], "every example claims a profile"
    assert STRUCTURAL.validate(resource, resource["resourceType"]) == []
    assert validator.validate(resource, resource["resourceType"]) == []


def test_every_shipped_profile_has_a_valid_example(validator: ProfileValidator) -> None:
    claimed = {url for name in example_names() for url in example(name)["meta"]["profile"]}
    for path in BE_CORE_EXAMPLES.glob("*.json"):
        resource = json.loads(path.read_text(encoding="utf-8"))
        claimed |= set(resource.get("meta", {}).get("profile", ()))
    shipped = {
        sd["url"] for sd in validator.registry.profiles_of("shipped") if sd["kind"] == "resource"
    }
    assert shipped - claimed == set()


# -- the be-core examples ------------------------------------------------------------------------


def _be_core(name: str) -> dict[str, Any]:
    return json.loads((BE_CORE_EXAMPLES / f"{name}.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize(
    ("name", "expression", "fragment"),
    [
        # the upstream examples only satisfy the 11-digit pattern; their check digits are wrong
        ("Patient-patient1", "Patient.identifier[0]", "be-inv-SSIN"),
        ("Practitioner-practitioner1", "Practitioner.identifier[0]", "be-inv-SSIN"),
        ("Organization-organization1", "Organization.identifier[0]", "be-inv-CBE"),
        ("Organization-organization1", "Organization.identifier[1]", "be-inv-NIHDI"),
    ],
)
def test_be_core_examples_fail_the_real_check_digits(
    validator: ProfileValidator, name: str, expression: str, fragment: str
) -> None:
    resource = _be_core(name)
    found = [i for i in validator.validate(resource, resource["resourceType"])]
    assert any(i.expression == expression and fragment in i.diagnostics for i in found), found


@pytest.mark.parametrize(
    ("name", "fix"),
    [
        ("Patient-patient1", {"Patient.identifier[0]": "92031412451"}),
        ("Patient-patient2", {"Patient.identifier[0]": "92031412451"}),
        ("Practitioner-practitioner1", {"Practitioner.identifier[0]": "92031412451"}),
        ("Practitioner-practitioner2", {"Practitioner.identifier[0]": "92031412451"}),
        (
            "Organization-organization1",
            {
                "Organization.identifier[0]": "0412345614",
                "Organization.identifier[1]": "71032209000",
            },
        ),
        ("PractitionerRole-practitionerrole1", {}),
        ("Location-mammographicUnit", {}),
        ("Provenance-provenance1", {}),
    ],
)
def test_be_core_examples_with_valid_numbers_conform(
    validator: ProfileValidator, name: str, fix: dict[str, str]
) -> None:
    resource = _be_core(name)
    for where, value in fix.items():
        index = int(where.split("[")[1].rstrip("]"))
        resource["identifier"][index]["value"] = value
    assert errors(validator.validate(resource, resource["resourceType"])) == []


# -- invalid cases ---------------------------------------------------------------------------------

Mutation = Callable[[dict[str, Any]], Any]


def _set(path: list[Any], value: Any) -> Mutation:
    def mutate(resource: dict[str, Any]) -> None:
        target: Any = resource
        for step in path[:-1]:
            target = target[step]
        target[path[-1]] = value

    return mutate


def _delete(*path: Any) -> Mutation:
    def mutate(resource: dict[str, Any]) -> None:
        target: Any = resource
        for step in path[:-1]:
            target = target[step]
        del target[path[-1]]

    return mutate


def _append(path: list[Any], value: Any) -> Mutation:
    def mutate(resource: dict[str, Any]) -> None:
        target: Any = resource
        for step in path:
            target = target.setdefault(step, []) if isinstance(target, dict) else target[step]
        target.append(value)

    return mutate


def _all(*mutations: Mutation) -> Mutation:
    def mutate(resource: dict[str, Any]) -> None:
        for mutation in mutations:
            mutation(resource)

    return mutate


PATIENT = "Patient-bib-example-patient-rrn"
ROLE = "PractitionerRole-bib-example-midwife-role"
CAREPLAN = "CarePlan-bib-example-loss-pathway"
TASK = "Task-bib-example-referral-task"
REFERRAL = "ServiceRequest-bib-example-referral"
SERVICE = "HealthcareService-bib-example-grief-support"
QUESTIONNAIRE = "Questionnaire-bib-example-psychosocial-structure"
RESPONSE = "QuestionnaireResponse-bib-example-screening-response"
MESSAGE = "Communication-bib-example-feedback"
ORGANIZATION = "Organization-bib-example-hospital"
PRACTITIONER = "Practitioner-bib-example-midwife"

# (case id, example, mutation, severity, issue code, expression, diagnostics fragment)
INVALID = [
    # -- BiB Patient
    (
        "patient: no identifier",
        PATIENT,
        _delete("identifier"),
        "error",
        "required",
        "Patient.identifier",
        "minimum cardinality is 1",
    ),
    (
        "patient: wrong SSIN check digits",
        PATIENT,
        _set(["identifier", 0, "value"], "92031412452"),
        "error",
        "invariant",
        "Patient.identifier[0]",
        "be-inv-SSIN: the check digits",
    ),
    (
        "patient: wrong BIS check digits",
        "Patient-bib-example-patient-bis",
        _set(["identifier", 0, "value"], "95470800246"),
        "error",
        "invariant",
        "Patient.identifier[0]",
        "check digits of the BIS number",
    ),
    (
        "patient: BIS month out of range",
        "Patient-bib-example-patient-bis",
        _set(["identifier", 0, "value"], "95670800245"),
        "error",
        "invariant",
        "Patient.identifier[0]",
        "month digits 67",
    ),
    (
        "patient: born 2003, wrong check digits",
        "Patient-bib-example-patient-2003",
        _set(["identifier", 0, "value"], "03051224697"),
        "error",
        "invariant",
        "Patient.identifier[0]",
        "or 06 (born 2000 or later)",
    ),
    (
        "patient: born 2003, check digits without the 2-prefix (bib-pat-2)",
        "Patient-bib-example-patient-2003",
        _set(["identifier", 0, "value"], "03051224674"),
        "warning",
        "invariant",
        "Patient",
        "bib-pat-2",
    ),
    (
        "patient: INSZ birth date differs from birthDate (bib-pat-2)",
        PATIENT,
        _set(["birthDate"], "1992-03-15"),
        "warning",
        "invariant",
        "Patient",
        "bib-pat-2",
    ),
    (
        "patient: SSIN with punctuation",
        PATIENT,
        _set(["identifier", 0, "value"], "92.03.14-124.51"),
        "error",
        "invariant",
        "Patient.identifier[0]",
        "exactly 11 digits",
    ),
    (
        "patient: alternative number without value",
        "Patient-bib-example-patient-alternative",
        _delete("identifier", 0, "value"),
        "error",
        "required",
        "Patient.identifier[0].value",
        "minimum cardinality is 1",
    ),
    (
        "patient: two alternative numbers",
        "Patient-bib-example-patient-alternative",
        _append(["identifier"], {"system": ALT, "value": "BIB-ALT-0043"}),
        "error",
        "structure",
        "Patient.identifier",
        "slice Patient.identifier:alternative: maximum cardinality is 1",
    ),
    (
        "patient: INSZ and an alternative number (warning)",
        PATIENT,
        _append(["identifier"], {"system": ALT, "value": "BIB-ALT-0044"}),
        "warning",
        "invariant",
        "Patient",
        "bib-pat-1",
    ),
    (
        "patient: marital status outside the required be-civilstate",
        PATIENT,
        _set(["maritalStatus"], {"coding": [{"system": "http://example.org/cs", "code": "Q"}]}),
        "error",
        "code-invalid",
        "Patient.maritalStatus",
        "be-civilstate",
    ),
    (
        "patient: two language extensions on an address",
        PATIENT,
        _append(
            ["address", 0, "extension"],
            {"url": "http://hl7.org/fhir/StructureDefinition/language", "valueCode": "fr-BE"},
        ),
        "error",
        "structure",
        "Patient.address[0].extension",
        "Address.extension:language",
    ),
    (
        "patient: contact without details (R4 pat-1)",
        PATIENT,
        _set(["contact"], [{"gender": "female"}]),
        "error",
        "invariant",
        "Patient.contact[0]",
        "pat-1",
    ),
    (
        "patient: generalPractitioner of a wrong type",
        PATIENT,
        _set(["generalPractitioner"], [{"reference": "Patient/other"}]),
        "error",
        "structure",
        "Patient.generalPractitioner[0]",
        "a reference to a Patient is not allowed",
    ),
    (
        "patient: gender-at-birth extension with a wrong code",
        PATIENT,
        _set(
            ["extension"],
            [
                {
                    "url": BE + "be-ext-gender-at-birth",
                    "valueCodeableConcept": {
                        "coding": [
                            {"system": "http://hl7.org/fhir/administrative-gender", "code": "x"}
                        ]
                    },
                }
            ],
        ),
        "error",
        "code-invalid",
        "Patient.extension[0].value.ofType(CodeableConcept)",
        "be-vs-gender-at-birth",
    ),
    (
        "patient: extension on the wrong resource",
        PATIENT,
        _set(
            ["extension"],
            [
                {
                    "url": BIB + "bib-ext-loss-phase",
                    "valueCodeableConcept": {
                        "coding": [{"system": CS + "bib-pregnancy-loss-phase", "code": "diagnosis"}]
                    },
                }
            ],
        ),
        "error",
        "extension",
        "Patient.extension[0]",
        "is not allowed on Patient",
    ),
    (
        "patient: unknown modifier extension",
        PATIENT,
        _set(["modifierExtension"], [{"url": "http://example.org/fhir/x", "valueBoolean": True}]),
        "error",
        "extension",
        "Patient.modifierExtension[0]",
        "not known to this server",
    ),
    (
        "patient: unknown extension (warning)",
        PATIENT,
        _set(["extension"], [{"url": "http://example.org/fhir/y", "valueBoolean": True}]),
        "warning",
        "extension",
        "Patient.extension[0]",
        "not known to this server",
    ),
    (
        "patient: R4 extension with a wrong value type",
        PATIENT,
        _set(
            ["extension"],
            [
                {
                    "url": "http://hl7.org/fhir/StructureDefinition/patient-birthPlace",
                    "valueString": "Brussel",
                }
            ],
        ),
        "error",
        "structure",
        "Patient.extension[0].value.ofType(string)",
        "may not be a string",
    ),
    # -- BiB PractitionerRole
    (
        "role: no access role (required slice)",
        ROLE,
        _set(
            ["code"],
            [
                {
                    "coding": [
                        {
                            "system": "https://www.ehealth.fgov.be/standards/fhir/core/CodeSystem/cd-hcparty",
                            "code": "persmidwife",
                        }
                    ]
                },
                {"text": "midwife"},
            ],
        ),
        "error",
        "required",
        "PractitionerRole.code",
        "slice PractitionerRole.code:accessRole",
    ),
    (
        "role: no profession (required slice)",
        ROLE,
        _delete("code", 0),
        "error",
        "required",
        "PractitionerRole.code",
        "slice PractitionerRole.code:CD-HCPARTY",
    ),
    (
        "role: access role outside the value set",
        ROLE,
        _set(["code", 1, "coding", 0, "code"], "role-c"),
        "error",
        "code-invalid",
        "PractitionerRole.code[1]",
        "bib-access-role",
    ),
    (
        "role: unknown CD-HCPARTY code",
        ROLE,
        _set(["code", 0, "coding", 0, "code"], "persfoo"),
        "error",
        "code-invalid",
        "PractitionerRole.code[0]",
        "be-vs-cd-hcparty",
    ),
    (
        "role: organisation code as profession (bib-prr-1)",
        ROLE,
        _set(["code", 0, "coding", 0, "code"], "orghospital"),
        "error",
        "invariant",
        "PractitionerRole",
        "bib-prr-1",
    ),
    (
        "role: no organisation",
        ROLE,
        _delete("organization"),
        "error",
        "required",
        "PractitionerRole.organization",
        "minimum cardinality is 1",
    ),
    (
        "role: practitioner reference to a Patient",
        ROLE,
        _set(["practitioner"], {"reference": "Patient/x"}),
        "error",
        "structure",
        "PractitionerRole.practitioner",
        "allowed: Practitioner",
    ),
    # -- be-core Organization / Practitioner
    (
        "organization: wrong CBE check digits",
        ORGANIZATION,
        _set(["identifier", 0, "value"], "0412345615"),
        "error",
        "invariant",
        "Organization.identifier[0]",
        "be-inv-CBE",
    ),
    (
        "organization: wrong NIHDI check digits",
        ORGANIZATION,
        _set(["identifier", 1, "value"], "71012399"),
        "error",
        "invariant",
        "Organization.identifier[1]",
        "be-inv-NIHDI",
    ),
    (
        "organization: NIHDI slice without a value",
        ORGANIZATION,
        _delete("identifier", 1, "value"),
        "error",
        "required",
        "Organization.identifier[1].value",
        "minimum cardinality is 1",
    ),
    (
        "practitioner: no name (BePractitioner name 1..*)",
        PRACTITIONER,
        _delete("name"),
        "error",
        "required",
        "Practitioner.name",
        "minimum cardinality is 1",
    ),
    (
        "practitioner: wrong NIHDI check digits",
        PRACTITIONER,
        _set(["identifier", 0, "value"], "41234599002"),
        "error",
        "invariant",
        "Practitioner.identifier[0]",
        "be-inv-NIHDI",
    ),
    # -- BiB CarePlan
    (
        "careplan: no pathway category",
        CAREPLAN,
        _delete("category", 0),
        "error",
        "required",
        "CarePlan.category",
        "slice CarePlan.category:pathway",
    ),
    (
        "careplan: loss pathway without its scenario (bib-cp-1)",
        CAREPLAN,
        _delete("category", 1),
        "error",
        "invariant",
        "CarePlan",
        "bib-cp-1",
    ),
    (
        "careplan: pathway code outside the value set",
        CAREPLAN,
        _set(["category", 0, "coding", 0, "code"], "no-such-pathway"),
        "error",
        "code-invalid",
        "CarePlan.category[0]",
        "bib-care-pathway",
    ),
    (
        "careplan: loss phase with a wrong code",
        CAREPLAN,
        _set(["extension", 0, "valueCodeableConcept", "coding", 0, "code"], "after"),
        "error",
        "code-invalid",
        "CarePlan.extension[0].value.ofType(CodeableConcept)",
        "bib-pregnancy-loss-phase",
    ),
    (
        "careplan: two loss phases",
        CAREPLAN,
        _append(
            ["extension"],
            {
                "url": BIB + "bib-ext-loss-phase",
                "valueCodeableConcept": {
                    "coding": [{"system": CS + "bib-pregnancy-loss-phase", "code": "follow-up"}]
                },
            },
        ),
        "error",
        "structure",
        "CarePlan.extension",
        "slice CarePlan.extension:lossPhase",
    ),
    (
        "careplan: activity with reference and detail (R4 cpl-3)",
        CAREPLAN,
        _set(["activity", 0, "detail"], {"status": "scheduled"}),
        "error",
        "invariant",
        "CarePlan.activity[0]",
        "cpl-3",
    ),
    (
        "careplan: subject is a Group",
        CAREPLAN,
        _set(["subject"], {"reference": "Group/g"}),
        "error",
        "structure",
        "CarePlan.subject",
        "a reference to a Group is not allowed",
    ),
    # -- BiB referral ServiceRequest / Task / Communication
    (
        "referral: no referral type",
        REFERRAL,
        _delete("category"),
        "error",
        "required",
        "ServiceRequest.category",
        "minimum cardinality is 1",
    ),
    (
        "referral: neither performer nor performerType (bib-sr-1)",
        REFERRAL,
        _delete("performer"),
        "error",
        "invariant",
        "ServiceRequest",
        "bib-sr-1",
    ),
    (
        "referral: no requester",
        REFERRAL,
        _delete("requester"),
        "error",
        "required",
        "ServiceRequest.requester",
        "minimum cardinality is 1",
    ),
    (
        "referral: requester is a Patient",
        REFERRAL,
        _set(["requester"], {"reference": "Patient/p"}),
        "error",
        "structure",
        "ServiceRequest.requester",
        "allowed: Organization, PractitionerRole",
    ),
    (
        "task: completed without outcome (bib-task-3)",
        TASK,
        _delete("businessStatus"),
        "error",
        "invariant",
        "Task",
        "bib-task-3",
    ),
    (
        "task: rejected without a reason (bib-task-2)",
        TASK,
        _set(["status"], "rejected"),
        "error",
        "invariant",
        "Task",
        "bib-task-2",
    ),
    (
        "task: state 'ready' (bib-task-1)",
        TASK,
        _set(["status"], "ready"),
        "error",
        "invariant",
        "Task",
        "bib-task-1",
    ),
    (
        "task: intent is fixed to order",
        TASK,
        _set(["intent"], "plan"),
        "error",
        "value",
        "Task.intent",
        'must be exactly "order"',
    ),
    (
        "task: code does not match the fulfill pattern",
        TASK,
        _set(["code", "coding", 0, "code"], "approve"),
        "error",
        "value",
        "Task.code",
        "must match the pattern",
    ),
    (
        "task: outcome outside bib-referral-outcome",
        TASK,
        _set(["businessStatus", "coding", 0, "code"], "lost"),
        "error",
        "code-invalid",
        "Task.businessStatus",
        "bib-referral-outcome",
    ),
    (
        "task: no focus",
        TASK,
        _delete("focus"),
        "error",
        "required",
        "Task.focus",
        "minimum cardinality is 1",
    ),
    (
        "communication: completed without sent (bib-com-1)",
        MESSAGE,
        _delete("sent"),
        "error",
        "invariant",
        "Communication",
        "bib-com-1",
    ),
    (
        "communication: no recipient",
        MESSAGE,
        _delete("recipient"),
        "error",
        "required",
        "Communication.recipient",
        "minimum cardinality is 1",
    ),
    (
        "communication: no payload",
        MESSAGE,
        _delete("payload"),
        "error",
        "required",
        "Communication.payload",
        "minimum cardinality is 1",
    ),
    (
        "be-communication: no sender",
        "Communication-bib-example-be-communication",
        _delete("sender"),
        "error",
        "required",
        "Communication.sender",
        "minimum cardinality is 1",
    ),
    # -- BeConsent
    (
        "consent: patient is a Group",
        "Consent-bib-example-consent",
        _set(["patient"], {"reference": "Group/g"}),
        "error",
        "structure",
        "Consent.patient",
        "a reference to a Group is not allowed",
    ),
    (
        "consent: neither policy nor policyRule (R4 ppc-1)",
        "Consent-bib-example-consent",
        _delete("policy"),
        "error",
        "invariant",
        "Consent",
        "ppc-1",
    ),
    # -- BiB HealthcareService
    (
        "service: no way to reach it (bib-hcs-1)",
        SERVICE,
        _all(_delete("telecom"), _delete("location")),
        "error",
        "invariant",
        "HealthcareService",
        "bib-hcs-1",
    ),
    (
        "service: target group outside the value set",
        SERVICE,
        _set(["characteristic", 0, "coding", 0, "code"], "everyone"),
        "error",
        "code-invalid",
        "HealthcareService.characteristic[0]",
        "bib-target-group",
    ),
    (
        "service: source database with a wrong type",
        SERVICE,
        _set(["extension", 0], {"url": BIB + "bib-ext-social-map-source", "valueString": "x"}),
        "error",
        "structure",
        "HealthcareService.extension[0].value.ofType(string)",
        "may not be a string",
    ),
    (
        "service: no provider",
        SERVICE,
        _delete("providedBy"),
        "error",
        "required",
        "HealthcareService.providedBy",
        "minimum cardinality is 1",
    ),
    # -- BiB screening Questionnaire / QuestionnaireResponse
    (
        "questionnaire: BiB Pro item that is not an indicator group (bib-q-1)",
        QUESTIONNAIRE,
        _append(["item"], {"linkId": "extra", "type": "string", "text": "Extra"}),
        "error",
        "invariant",
        "Questionnaire",
        "bib-q-1",
    ),
    (
        "questionnaire: indicator code outside the value set",
        QUESTIONNAIRE,
        _set(["item", 0, "code", 0, "code"], "poverty"),
        "error",
        "code-invalid",
        "Questionnaire.item[0].code[0]",
        "bib-vulnerability-indicator",
    ),
    (
        "questionnaire: subject type is fixed to Patient",
        QUESTIONNAIRE,
        _set(["subjectType"], ["Group"]),
        "error",
        "value",
        "Questionnaire.subjectType[0]",
        'must be exactly "Patient"',
    ),
    (
        "questionnaire: no instrument code",
        QUESTIONNAIRE,
        _delete("code"),
        "error",
        "required",
        "Questionnaire.code",
        "minimum cardinality is 1",
    ),
    (
        "questionnaire: duplicate linkId (R4 que-2)",
        QUESTIONNAIRE,
        _set(["item", 0, "item", 0, "linkId"], "education"),
        "error",
        "invariant",
        "Questionnaire",
        "que-2",
    ),
    (
        "questionnaire: nested group without items (R4 que-1)",
        QUESTIONNAIRE,
        _append(["item", 0, "item"], {"linkId": "g", "type": "group", "text": "empty group"}),
        "error",
        "invariant",
        "Questionnaire.item[0].item[1]",
        "que-1",
    ),
    (
        "response: completed without answers (bib-qr-1)",
        RESPONSE,
        _delete("item"),
        "error",
        "invariant",
        "QuestionnaireResponse",
        "bib-qr-1",
    ),
    (
        "response: no author",
        RESPONSE,
        _delete("author"),
        "error",
        "required",
        "QuestionnaireResponse.author",
        "minimum cardinality is 1",
    ),
    (
        "response: item with answer and nested items (R4 qrs-1)",
        RESPONSE,
        _set(["item", 0, "answer"], [{"valueBoolean": True}]),
        "error",
        "invariant",
        "QuestionnaireResponse.item[0]",
        "qrs-1",
    ),
]


@pytest.mark.parametrize(
    ("name", "mutation", "severity", "code", "expression", "fragment"),
    [pytest.param(*case[1:], id=case[0]) for case in INVALID],
)
def test_invalid_examples(
    validator: ProfileValidator,
    name: str,
    mutation: Mutation,
    severity: str,
    code: str,
    expression: str,
    fragment: str,
) -> None:
    resource = example(name)
    mutation(resource)
    # the R4 invariants (pat-1, que-2...) are the structural validator's: it runs on every write
    issues = STRUCTURAL.validate(resource, resource["resourceType"]) + validator.validate(
        resource, resource["resourceType"]
    )
    matching = [
        i
        for i in issues
        if i.severity == severity
        and i.code == code
        and i.expression == expression
        and fragment in i.diagnostics
    ]
    assert matching, "\n".join(str(i) for i in issues) or "no issues"
    if severity == "warning":
        assert errors(issues) == []
