"""R4 search: reference parameters, chaining, reverse chaining (_has), compartments and _type.

reference (3.1.1.4.11): ``[id]`` and ``[type]/[id]`` are *local* references (relative, or absolute
with this server's base URL); ``[url]`` is an absolute reference; ``:[type]`` restricts the target
type; ``:identifier`` matches Reference.identifier; a version-specific reference
(``Patient/p1/_history/2``) is found by ``Patient/p1`` and by its own version; canonical references
are searched by url, optionally with ``|version``.

chaining (3.1.1.4.12): ``subject:Patient.name=x``, several levels. ``_has`` (3.1.1.4.13): reverse
chains, nested. Compartment search (``Patient/p1/Observation``) and system search over several
types (``_type``).
"""

from __future__ import annotations

import pytest

from fhir_server.service.core import FhirService
from tests.contract.test_search_harness import BASE, assert_ids, cases, load, run, search_error


def obs(id_: str, code: str, **extra: object) -> dict:
    return {
        "resourceType": "Observation",
        "id": id_,
        "status": "final",
        "code": {"coding": [{"system": "http://example.org/codes", "code": code}]},
        **extra,
    }


def ref(reference: str) -> dict:
    return {"reference": reference}


DATASET = [
    {"resourceType": "Organization", "id": "org0", "name": "Umbrella Group"},
    {
        "resourceType": "Organization",
        "id": "org1",
        "name": "Acme Hospital",
        "partOf": ref("Organization/org0"),
    },
    {"resourceType": "Organization", "id": "org2", "name": "Beta Clinic"},
    {"resourceType": "Practitioner", "id": "dr1", "name": [{"family": "House"}]},
    {
        "resourceType": "Patient",
        "id": "p1",
        "name": [{"family": "Peters"}],
        "managingOrganization": ref("Organization/org1"),
        "generalPractitioner": [ref("Practitioner/dr1")],
    },
    # p1 again: version 2 exists, so "Patient/p1/_history/2" points at a real version
    {
        "resourceType": "Patient",
        "id": "p1",
        "name": [{"family": "Peters"}],
        "active": True,
        "managingOrganization": ref("Organization/org1"),
        "generalPractitioner": [ref("Practitioner/dr1")],
    },
    {
        "resourceType": "Patient",
        "id": "p2",
        "name": [{"family": "Smith"}],
        "managingOrganization": ref(f"{BASE}/Organization/org2"),
        "link": [{"other": ref("Patient/p1"), "type": "seealso"}],
    },
    {"resourceType": "Patient", "id": "p3", "name": [{"family": "Peterson"}]},
    {"resourceType": "Patient", "id": "p4", "name": [{"family": "Twin"}]},
    {"resourceType": "Group", "id": "g1", "type": "person", "actual": True, "name": "Peters"},
    {
        "resourceType": "Encounter",
        "id": "e1",
        "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        "subject": ref("Patient/p3"),
    },
    obs("ob1", "A", subject=ref("Patient/p1"), performer=[ref("Practitioner/dr1")]),
    obs("ob2", "B", subject=ref(f"{BASE}/Patient/p2")),  # absolute URL of this server
    obs("ob3", "A", subject=ref("Patient/p1/_history/2")),  # version-specific
    # another server's Patient/p4: not the local Patient p4
    obs("ob4", "E", subject=ref("http://other.org/fhir/Patient/p4")),
    obs("ob5", "B", subject=ref("Group/g1")),
    obs("ob6", "A", subject={"identifier": {"system": "urn:oid:ssn", "value": "123"}}),
    obs("ob7", "C", performer=[ref("Patient/p1")]),  # no subject
    obs(
        "ob8",
        "B",
        subject=ref("Patient/p3"),
        encounter=ref("Encounter/e1"),
        derivedFrom=[ref("Observation/ob1")],
    ),
    obs("ob9", "D", subject=ref("Patient/ghost")),  # the target does not exist
    {
        "resourceType": "Questionnaire",
        "id": "qn1",
        "status": "active",
        "url": "http://example.org/Questionnaire/q1",
        "version": "1.0",
    },
    {
        "resourceType": "QuestionnaireResponse",
        "id": "qr1",
        "status": "completed",
        "questionnaire": "http://example.org/Questionnaire/q1|1.0",
        "subject": ref("Patient/p1"),
    },
    {
        "resourceType": "QuestionnaireResponse",
        "id": "qr2",
        "status": "completed",
        "questionnaire": "http://example.org/Questionnaire/q1|2.0",
    },
    {
        "resourceType": "QuestionnaireResponse",
        "id": "qr3",
        "status": "completed",
        "questionnaire": "http://example.org/Questionnaire/q2",
    },
    {"resourceType": "QuestionnaireResponse", "id": "qr4", "status": "in-progress"},
    {
        "resourceType": "Provenance",
        "id": "prov1",
        "target": [ref("Patient/p1")],
        "recorded": "2024-01-01T00:00:00Z",
        "agent": [{"who": ref("Practitioner/dr1")}],
    },
]


@pytest.fixture
async def svc(service: FhirService) -> FhirService:
    await load(service, DATASET)
    return service


# -- reference ------------------------------------------------------------------------------------

REFERENCE_CASES = [
    # [id] and [type]/[id] are local references; another server's Patient/p1 is not ours
    ("subject=p1", {"ob1", "ob3"}),
    ("subject=Patient/p1", {"ob1", "ob3"}),
    (f"subject={BASE}/Patient/p1", {"ob1", "ob3"}),  # this server's absolute URL
    ("subject=Patient/p2", {"ob2"}),  # stored as this server's absolute URL
    ("subject=p2", {"ob2"}),
    ("subject=http://other.org/fhir/Patient/p4", {"ob4"}),
    ("subject=p4", set()),  # the local p4 is not referenced: ob4 points at another server
    ("subject=Patient/p4", set()),
    (f"subject={BASE}/Patient/p4", set()),
    ("subject:Patient=p4", set()),
    ("subject=ghost", {"ob9"}),  # dangling references are still searchable
    # :[type]
    ("subject:Patient=p1", {"ob1", "ob3"}),
    ("subject:Group=g1", {"ob5"}),
    ("subject:Patient=g1", set()),
    ("subject=Group/g1", {"ob5"}),
    ("subject=Patient/g1", set()),
    # versions
    ("subject=Patient/p1/_history/2", {"ob3"}),
    ("subject=Patient/p1/_history/1", set()),
    (f"subject={BASE}/Patient/p1/_history/2", {"ob3"}),
    # :identifier (Reference.identifier)
    ("subject:identifier=urn:oid:ssn|123", {"ob6"}),
    ("subject:identifier=123", {"ob6"}),
    ("subject:identifier=urn:oid:other|123", set()),
    # the patient parameter: subject where it is a Patient
    ("patient=p1", {"ob1", "ob3"}),
    ("patient=Patient/p3", {"ob8"}),
    ("patient=g1", set()),
    # other reference parameters, OR and AND
    ("performer=Practitioner/dr1", {"ob1"}),
    ("performer:Patient=p1", {"ob7"}),
    ("subject=Patient/p1,Group/g1", {"ob1", "ob3", "ob5"}),
    ("subject=Patient/p1&code=A", {"ob1", "ob3"}),
    ("encounter=e1", {"ob8"}),
    ("derived-from=Observation/ob1", {"ob8"}),
    # :missing: ob6's subject has an identifier only, but it is there
    ("subject:missing=true", {"ob7"}),
    ("performer:missing=false", {"ob1", "ob7"}),
]


@pytest.mark.parametrize("query, expected", cases(REFERENCE_CASES))
async def test_reference(svc: FhirService, query: str, expected: set[str]):
    assert_ids(await run(svc, "Observation", query), expected, query)


CANONICAL_CASES = [
    ("questionnaire=http://example.org/Questionnaire/q1", {"qr1", "qr2"}),  # any version
    ("questionnaire=http://example.org/Questionnaire/q1|1.0", {"qr1"}),
    ("questionnaire=http://example.org/Questionnaire/q1|2.0", {"qr2"}),
    ("questionnaire=http://example.org/Questionnaire/q1|3.0", set()),
    ("questionnaire=http://example.org/Questionnaire/q2", {"qr3"}),
    ("questionnaire=http://example.org/Questionnaire/q", set()),
    ("questionnaire:missing=true", {"qr4"}),
    (
        "questionnaire=http://example.org/Questionnaire/q2,http://example.org/Questionnaire/q1|1.0",
        {"qr1", "qr3"},
    ),
]


@pytest.mark.parametrize("query, expected", cases(CANONICAL_CASES))
async def test_canonical_reference(svc: FhirService, query: str, expected: set[str]):
    assert_ids(await run(svc, "QuestionnaireResponse", query), expected, query)


async def test_reference_to_unknown_type_is_a_400(svc: FhirService):
    error = await search_error(svc, "Observation", "subject=Nonsense/p1")
    assert error.status == 400


# -- chaining -------------------------------------------------------------------------------------

CHAIN_CASES = [
    ("Observation", "subject:Patient.name=peter", {"ob1", "ob3", "ob8"}),
    ("Observation", "subject:Patient.name=twin", set()),  # ob4's p4 is another server's
    ("Observation", "subject:Patient.family:exact=Peters", {"ob1", "ob3"}),
    ("Observation", "subject:Patient.name=smith,peterson", {"ob2", "ob8"}),
    ("Observation", "subject:Patient._id=p3", {"ob8"}),
    ("Observation", "subject:Group.actual=true", {"ob5"}),
    ("Observation", "subject.name=peters", {"ob1", "ob3", "ob8"}),  # Group has no "name"
    ("Observation", "patient.name=peters", {"ob1", "ob3", "ob8"}),
    ("Observation", "patient.organization.name=acme", {"ob1", "ob3"}),  # two levels
    ("Observation", "subject:Patient.organization.partof.name=umbrella", {"ob1", "ob3"}),
    ("Observation", "subject:Patient.general-practitioner:Practitioner.name=house", {"ob1", "ob3"}),
    ("Observation", "subject:Patient.organization=Organization/org2", {"ob2"}),
    ("Observation", "subject:Patient.organization.name=beta", {"ob2"}),
    ("Observation", "subject:Patient.name=nobody", set()),
    ("Observation", "subject:Patient.name=peters&subject:Patient.organization.name=beta", set()),
    ("Observation", "encounter.subject:Patient.name=peterson", {"ob8"}),
    ("Observation", "derived-from:Observation.subject:Patient.name=peters", {"ob8"}),
    ("Patient", "organization.name=acme", {"p1"}),
    ("Patient", "organization.partof.name=umbrella", {"p1"}),
    ("Patient", "organization:Organization.name=beta", {"p2"}),
    ("Patient", "link:Patient.name=peters", {"p2"}),
    ("Patient", "general-practitioner:Practitioner.name=house", {"p1"}),
    ("Encounter", "subject:Patient.name=peterson", {"e1"}),
]


@pytest.mark.parametrize(
    "type_, query, expected", [pytest.param(*row, id=f"{row[0]}?{row[1]}") for row in CHAIN_CASES]
)
async def test_chaining(svc: FhirService, type_: str, query: str, expected: set[str]):
    assert_ids(await run(svc, type_, query), expected, query)


# -- reverse chaining (_has) ----------------------------------------------------------------------

HAS_CASES = [
    ("Patient", "_has:Observation:subject:code=A", {"p1"}),
    ("Patient", "_has:Observation:subject:code=B", {"p2", "p3"}),
    ("Patient", "_has:Observation:patient:code=B", {"p2", "p3"}),
    ("Patient", "_has:Observation:performer:code=C", {"p1"}),
    ("Patient", "_has:Observation:subject:code=A,B", {"p1", "p2", "p3"}),
    ("Patient", "_has:Observation:subject:code=A&_has:Observation:subject:code=B", set()),
    ("Patient", "_has:Observation:subject:code=B&name=smith", {"p2"}),
    ("Patient", "_has:Observation:subject:code=Z", set()),
    ("Patient", "_has:Observation:subject:code=E", set()),  # ob4 refers to another server
    ("Patient", "_has:Provenance:target:agent=Practitioner/dr1", {"p1"}),
    ("Patient", "_has:Observation:subject:performer:Practitioner.name=house", {"p1"}),
    ("Patient", "_has:Encounter:subject:status=finished", {"p3"}),
    ("Patient", "_has:Observation:subject:_id=ob2,ob5", {"p2"}),
    ("Group", "_has:Observation:subject:code=B", {"g1"}),
    # nested: organisations managing a patient who has an observation...
    ("Organization", "_has:Patient:organization:_has:Observation:subject:code=B", {"org2"}),
    ("Organization", "_has:Patient:organization:_has:Observation:subject:code=A", {"org1"}),
    ("Organization", "_has:Organization:partof:_has:Patient:organization:name=peters", {"org0"}),
    ("Practitioner", "_has:Patient:general-practitioner:_has:Observation:subject:code=A", {"dr1"}),
]


@pytest.mark.parametrize(
    "type_, query, expected", [pytest.param(*row, id=f"{row[0]}?{row[1]}") for row in HAS_CASES]
)
async def test_reverse_chaining(svc: FhirService, type_: str, query: str, expected: set[str]):
    assert_ids(await run(svc, type_, query), expected, query)


# -- compartments ---------------------------------------------------------------------------------

COMPARTMENT_CASES = [
    ("p1", ("Observation",), "", {"ob1", "ob3", "ob7"}),  # subject or performer
    ("p1", ("Observation",), "code=A", {"ob1", "ob3"}),
    ("p2", ("Observation",), "", {"ob2"}),
    ("p3", ("Observation", "Encounter"), "", {"Observation/ob8", "Encounter/e1"}),
    ("p1", ("QuestionnaireResponse",), "", {"qr1"}),
    ("p1", ("Provenance",), "", {"prov1"}),
    ("nobody", ("Observation",), "", set()),
    ("p4", ("Observation",), "", set()),  # ob4 refers to another server's Patient/p4
]


@pytest.mark.parametrize(
    "patient, types, query, expected",
    [
        pytest.param(*row, id=f"Patient/{row[0]}/{'+'.join(row[1])}?{row[2]}")
        for row in COMPARTMENT_CASES
    ],
)
async def test_patient_compartment(
    svc: FhirService, patient: str, types: tuple, query: str, expected: set[str]
):
    found = await run(svc, types, query, compartment=("Patient", patient))
    assert_ids(found, expected, query)


# -- system search over several types (_type) ----------------------------------------------------

SYSTEM_CASES = [
    (("Patient", "Observation"), "_id=p1,ob1", {"Patient/p1", "Observation/ob1"}),
    (("Patient", "Group"), "_id=g1", {"Group/g1"}),
    (
        ("Patient", "Organization"),
        "name=acme,peters",
        {"Patient/p1", "Patient/p3", "Organization/org1"},
    ),
    (("Patient", "Practitioner"), "name=house", {"Practitioner/dr1"}),
    (
        ("Organization", "Practitioner", "Group"),
        "",
        {
            "Organization/org0",
            "Organization/org1",
            "Organization/org2",
            "Practitioner/dr1",
            "Group/g1",
        },
    ),
]


@pytest.mark.parametrize(
    "types, query, expected",
    [pytest.param(*row, id=f"_type={','.join(row[0])}&{row[1]}") for row in SYSTEM_CASES],
)
async def test_system_search_over_types(
    svc: FhirService, types: tuple, query: str, expected: set[str]
):
    assert_ids(await run(svc, types, query), expected, query)


# -- _id ------------------------------------------------------------------------------------------

ID_CASES = [
    ("_id=p1", {"p1"}),
    ("_id=p1,p3", {"p1", "p3"}),
    ("_id=P1", set()),  # ids are case-sensitive
    ("_id=p", set()),  # and matched whole
    ("_id=ghost", set()),
    ("_id:not=p1", {"p2", "p3", "p4"}),
    ("_id=p1,p2&_id=p2,p3", {"p2"}),
    ("_id=p1&name=peters", {"p1"}),
]


@pytest.mark.parametrize("query, expected", cases(ID_CASES))
async def test_id(svc: FhirService, query: str, expected: set[str]):
    assert_ids(await run(svc, "Patient", query), expected, query)
