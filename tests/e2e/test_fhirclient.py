"""End-to-end: the SMART on FHIR Python client (``fhirclient``) against a real server process.

fhirclient parses every response with its generated R4 (4.0.1) models in strict mode: an element
that R4 does not have (R4B/R5 content, a typo), a wrong JSON type or a missing required element
raises ``FHIRValidationError``. It reads ``/metadata`` before anything else, so a
CapabilityStatement with a single R4B-only element makes the whole client unusable. These tests
guard that.
"""

from __future__ import annotations

import uuid
import warnings
from pathlib import Path

import httpx
import pytest
import requests
from fhirclient import client as smart_client
from fhirclient._utils import iter_pages
from fhirclient.models.bundle import Bundle
from fhirclient.models.capabilitystatement import CapabilityStatement
from fhirclient.models.encounter import Encounter
from fhirclient.models.fhirreference import FHIRReference
from fhirclient.models.observation import Observation
from fhirclient.models.operationoutcome import OperationOutcome
from fhirclient.models.organization import Organization
from fhirclient.models.patient import Patient
from fhirclient.server import FHIRNotFoundException

from tests.conftest import LiveServer

SSIN = "https://www.ehealth.fgov.be/standards/fhir/core/NamingSystem/ssin"


def unique(prefix: str = "fc") -> str:
    return f"{prefix}{uuid.uuid4().hex[:12]}"


@pytest.fixture
def smart(live_server) -> smart_client.FHIRClient:
    fhir = smart_client.FHIRClient(settings={"app_id": "test", "api_base": live_server.base})
    return fhir


def test_prepare_parses_capability_statement_with_strict_r4_models(smart, live_server) -> None:
    assert smart.prepare() is True
    assert smart.ready
    statement = smart.server.capabilityStatement
    assert isinstance(statement, CapabilityStatement)
    assert statement.fhirVersion == "4.0.1"
    assert statement.kind == "instance"
    assert "json" in " ".join(statement.format)
    rest = statement.rest[0]
    assert rest.mode == "server"
    by_type = {r.type: r for r in rest.resource}
    for needed in ("Patient", "Practitioner", "Organization", "Encounter", "Observation"):
        assert needed in by_type, f"{needed} missing from the CapabilityStatement"
    patient = by_type["Patient"]
    interactions = {i.code for i in patient.interaction}
    assert {"read", "create", "update", "search-type"} <= interactions
    assert any(p.name == "identifier" for p in patient.searchParam)

    # the same, parsed directly from the raw JSON, strictly, and round-tripped through the model
    raw = httpx.get(f"{live_server.base}/metadata", headers={"Accept": "application/fhir+json"})
    assert raw.status_code == 200
    parsed = CapabilityStatement(raw.json(), strict=True)
    assert parsed.as_json()["fhirVersion"] == "4.0.1"


def test_create_read_search_update_delete_with_strict_models(smart) -> None:
    smart.prepare()
    server = smart.server
    ssin = unique("ssin")
    family = unique("Dubois")
    patient = Patient(
        {
            "identifier": [{"system": SSIN, "value": ssin}],
            "name": [{"use": "official", "family": family, "given": ["Camille"]}],
            "gender": "female",
            "birthDate": "1992-11-05",
            "telecom": [{"system": "email", "value": "camille@example.org"}],
            "address": [
                {
                    "line": ["Rue Haute 12"],
                    "city": "Bruxelles",
                    "postalCode": "1000",
                    "country": "BE",
                }
            ],
            "communication": [
                {"language": {"coding": [{"system": "urn:ietf:bcp:47", "code": "fr-BE"}]}}
            ],
        }
    )
    created = patient.create(server)
    assert created is not None, "create must answer with the created resource"
    created_model = Patient(created, strict=True)
    pid = created_model.id
    assert pid
    assert created_model.meta.versionId == "1"

    read = Patient.read(pid, server)
    assert isinstance(read, Patient)
    assert read.id == pid
    assert read.name[0].family == family
    assert read.name[0].given == ["Camille"]
    assert read.birthDate.isostring == "1992-11-05"
    assert read.identifier[0].system == SSIN
    assert read.identifier[0].value == ssin
    assert read.address[0].city == "Bruxelles"
    assert read.meta.versionId == "1"
    assert read.meta.lastUpdated is not None

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        found = Patient.where(struct={"identifier": f"{SSIN}|{ssin}"}).perform_resources(server)
        assert [p.id for p in found] == [pid]
        assert isinstance(found[0], Patient)
        by_name = Patient.where(struct={"family": family, "gender": "female"}).perform_resources(
            server
        )
        assert [p.id for p in by_name] == [pid]
        bundle = Patient.where(struct={"family": family}).perform(server)
    assert isinstance(bundle, Bundle)
    assert bundle.type == "searchset"
    assert bundle.total == 1

    read.gender = "other"
    read.birthDate = None
    updated = read.update(server)
    assert Patient(updated, strict=True).meta.versionId == "2"
    again = Patient.read(pid, server)
    assert again.gender == "other"
    assert again.birthDate is None

    again.delete(server)
    # 410 Gone is not a FHIRNotFoundException in fhirclient: requests raises HTTPError for it
    with pytest.raises(requests.HTTPError) as excinfo:
        Patient.read(pid, server)
    assert excinfo.value.response.status_code == 410
    with pytest.raises(FHIRNotFoundException):
        Patient.read(unique("missing"), server)


def test_references_paging_history_and_errors_parse_strictly(smart, live_server) -> None:
    smart.prepare()
    server = smart.server
    org = Organization({"name": "AZ Sint-Jan Brugge", "active": True})
    org_id = Organization(org.create(server)).id
    family = unique("Wauters")
    patient = Patient(
        {
            "name": [{"family": family}],
            "managingOrganization": {"reference": f"Organization/{org_id}"},
        }
    )
    pid = Patient(patient.create(server)).id

    encounter = Encounter(
        {
            "status": "finished",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
            "subject": {"reference": f"Patient/{pid}"},
            "period": {"start": "2024-03-01T09:00:00+01:00", "end": "2024-03-01T09:30:00+01:00"},
        }
    )
    enc_id = Encounter(encounter.create(server)).id
    for i in range(12):
        Observation(
            {
                "status": "final",
                "category": [
                    {
                        "coding": [
                            {
                                "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                "code": "vital-signs",
                            }
                        ]
                    }
                ],
                "code": {
                    "coding": [
                        {"system": "http://loinc.org", "code": "29463-7", "display": "Body weight"}
                    ]
                },
                "subject": {"reference": f"Patient/{pid}"},
                "encounter": {"reference": f"Encounter/{enc_id}"},
                "effectiveDateTime": f"2024-03-{i + 1:02d}T10:00:00+01:00",
                "valueQuantity": {
                    "value": 70 + i / 10,
                    "unit": "kg",
                    "system": "http://unitsofmeasure.org",
                    "code": "kg",
                },
            }
        ).create(server)

    # paging over next links, each page parsed as a strict Bundle
    search = Observation.where(struct={"subject": f"Patient/{pid}", "_count": "5"})
    pages = list(search.perform_iter(server))
    assert len(pages) == 3
    observations = [e.resource for page in pages for e in (page.entry or [])]
    assert len(observations) == 12
    assert len({o.id for o in observations}) == 12
    assert all(isinstance(o, Observation) for o in observations)
    assert sorted(float(o.valueQuantity.value) for o in observations)[0] == 70.0
    assert isinstance(observations[0].subject, FHIRReference)
    assert observations[0].subject.reference == f"Patient/{pid}"

    # _include: the included Patient and Organization must parse too
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        included = Patient.where(struct={"_id": pid, "_include": "Patient:organization"}).perform(
            server
        )
    kinds = sorted(type(e.resource).__name__ for e in included.entry)
    assert kinds == ["Organization", "Patient"]
    modes = {type(e.resource).__name__: e.search.mode for e in included.entry}
    assert modes == {"Patient": "match", "Organization": "include"}

    # history of an instance, as a strict Bundle
    patient_model = Patient.read(pid, server)
    patient_model.active = True
    patient_model.update(server)
    history = Bundle.read_from(f"Patient/{pid}/_history", server)
    assert history.type == "history"
    assert [e.resource.meta.versionId for e in history.entry] == ["2", "1"]
    assert all(e.request is not None and e.response is not None for e in history.entry)

    # a transaction-response Bundle, as a strict Bundle
    tx = Bundle(
        {
            "type": "transaction",
            "entry": [
                {
                    "fullUrl": "urn:uuid:3f7d2c1e-0000-4000-8000-000000000001",
                    "resource": {"resourceType": "Patient", "name": [{"family": family + "-tx"}]},
                    "request": {"method": "POST", "url": "Patient"},
                }
            ],
        }
    )
    answer = Bundle(tx.create(server), strict=True)
    assert answer.type == "transaction-response"
    assert answer.entry[0].response.status.startswith("201")

    # an error answer is a strict OperationOutcome
    bad = httpx.post(
        f"{live_server.base}/Patient", json={"resourceType": "Patient", "birthDate": "not-a-date"}
    )
    assert bad.status_code in (400, 422)
    outcome = OperationOutcome(bad.json(), strict=True)
    assert outcome.issue[0].severity == "error"


def test_demo_content_parses_with_strict_models(tmp_path: Path) -> None:
    """What a new user sees first: a server started *with* its demo content. Every demo resource,
    read through a system-level search and its next links, must parse as strict R4."""
    data_dir = tmp_path / "demo"
    data_dir.mkdir()
    server = LiveServer(data_dir)  # no --no-demo: loads the demo Bundles into the empty store
    server.start()
    try:
        fhir = smart_client.FHIRClient(settings={"app_id": "test", "api_base": server.base})
        assert fhir.prepare() is True
        first = Bundle.read_from("?_count=3", fhir.server)
        resources = []
        pages = 0
        for page in iter_pages(first, fhir.server):
            pages += 1
            resources.extend(e.resource for e in page.entry or [])
        assert pages >= 2
        types = {type(r).__name__ for r in resources}
        assert {"Patient", "Practitioner", "Organization"} <= types, types
        for resource in resources:  # and each one read on its own
            type(resource).read(resource.id, fhir.server)
    finally:
        server.stop()
