"""End to end over real HTTP with a real client (fhirpy) on the secure server (tokens, roles,
care relationships, labels, audit, Provenance): populate -> answer -> submit -> scores,
extracted Observations, next-step Tasks and the safety alert under Role A; Role B sees the
flagged indicators and not the answers; a co-parent screened as a subject of their own."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fhirpy import SyncFHIRClient
from fhirpy.base.exceptions import ForbiddenError, ResourceNotFound

from tests.screening import helpers as H
from tests.security.conftest import SecureServer

R = ("http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "R")
BH = ("http://terminology.hl7.org/CodeSystem/v3-ActCode", "BH")


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureServer]:
    server = SecureServer(tmp_path_factory.mktemp("screening-secure"))
    try:
        yield server
    finally:
        server.close()


def client(secure: SecureServer, token: str) -> SyncFHIRClient:
    return SyncFHIRClient(secure.base, authorization=f"Bearer {token}")


def role_a(secure: SecureServer) -> SyncFHIRClient:
    return client(secure, secure.mint())  # midwife mw-1, care team of p1


def role_b(secure: SecureServer) -> SyncFHIRClient:
    token = secure.mint(
        role="B", practitioner="Practitioner/sw-1", organization="Organization/cpas-1"
    )
    return client(secure, token)


def labels(resource: Any) -> set[tuple[str, str]]:
    return {(c["system"], c["code"]) for c in (resource.get("meta") or {}).get("security", [])}


def plain(resource: Any) -> dict:
    return resource.serialize() if hasattr(resource, "serialize") else dict(resource)


def by_patient(fhir: SyncFHIRClient, type_: str, patient: str) -> list[dict]:
    return [
        plain(r)
        for r in fhir.resources(type_).search(patient=f"Patient/{patient}").limit(200).fetch_all()
    ]


def test_role_a_screens_from_populate_to_alert(secure: SecureServer) -> None:
    fhir = role_a(secure)
    fhir.resource(
        "Observation",
        status="final",
        code={"coding": [{"system": H.LOINC, "code": "11884-4"}]},
        subject={"reference": "Patient/p1"},
        effectiveDateTime="2026-11-18",
        valueQuantity={
            "value": 14,
            "unit": "wk",
            "system": "http://unitsofmeasure.org",
            "code": "wk",
        },
    ).save()
    # 1. populate: an in-progress response with subject, author (the signed-in midwife) and
    #    the gestational age found by the Questionnaire's x-fhir-query, with her rights
    populated = fhir.execute(
        "Questionnaire/bib-psychosocial-screening/$populate",
        method="post",
        data={
            "resourceType": "Parameters",
            "parameter": [{"name": "subject", "valueReference": {"reference": "Patient/p1"}}],
        },
    )
    response = {p["name"]: p["resource"] for p in populated["parameter"]}["response"]
    assert response["status"] == "in-progress"
    assert response["author"] == {"reference": "Practitioner/mw-1"}
    assert H.answer_of(response, "gestational-age") == 14
    # 2. answer and submit: three risk factors, depression among them
    answers = H.bib({"income": [3, 2], "housing": [4, 0], "depression": [2.5, 1]})
    pregnancy = next(i for i in response["item"] if i["linkId"] == "pregnancy")
    answers["item"].insert(1, pregnancy)  # the populated answer is kept
    response.update(status="completed", item=answers["item"], authored="2026-11-20T10:00:00+01:00")
    saved = fhir.resource("QuestionnaireResponse", **response)
    saved.save()
    stored = plain(saved)
    # 3. scores computed by the server
    assert H.answer_of(stored, "income-flagged") is True
    assert float(H.answer_of(stored, "depression-score")) == 3.5
    assert H.answer_of(stored, "risk-factor-count") == 3
    assert R in labels(stored)
    # 4. one Observation per indicator, labelled by the indicator's sensitivity
    observations = {
        o["code"]["coding"][0]["code"]: o
        for o in by_patient(fhir, "Observation", "p1")
        if o["code"]["coding"][0].get("system") == H.INDICATOR
        and o.get("derivedFrom") == [{"reference": f"QuestionnaireResponse/{stored['id']}"}]
    }
    assert sorted(observations) == sorted(H.BIB_INDICATORS)
    assert {R, BH} <= labels(observations["depression"])
    assert labels(observations["income"]) == set()
    assert observations["income"]["valueBoolean"] is True
    # 5. the protocol's next steps, owned by the midwife
    steps = [
        t
        for t in by_patient(fhir, "Task", "p1")
        if t.get("reasonReference", {}).get("reference") == f"QuestionnaireResponse/{stored['id']}"
    ]
    assert sorted(t["focus"]["reference"] for t in steps) == [
        "Questionnaire/gad-2",
        "Questionnaire/whooley",
    ]
    assert all(t["owner"] == {"reference": "Practitioner/mw-1"} for t in steps)
    assert all({R, BH} <= labels(t) for t in steps)  # a depression step reveals the indicator
    # 6. one Provenance for everything derived, pointing at the response as its source
    provenances = [
        plain(p)
        for p in fhir.resources("Provenance")
        .search(target=f"Observation/{observations['income']['id']}")
        .fetch_all()
    ]
    (provenance,) = provenances
    assert provenance["entity"][0]["role"] == "source"
    assert provenance["entity"][0]["what"]["reference"].startswith(
        f"QuestionnaireResponse/{stored['id']}/_history/"
    )
    assert {a["type"]["coding"][0]["code"] for a in provenance["agent"]} == {"author", "assembler"}
    assert len(provenance["target"]) == 13 + 1 + 2  # Observations, the Consent, the two Tasks
    # 7. the EPDS with item 10 above 0 raises the alert at once
    epds = fhir.resource("QuestionnaireResponse", **H.scored("epds", [0] * 9 + [1]))
    epds.save()
    flags = by_patient(fhir, "Flag", "p1")
    assert [f["code"]["coding"][0]["code"] for f in flags] == ["self-harm-thoughts"]
    assert {R, BH} <= labels(flags[0])
    communications = by_patient(fhir, "Communication", "p1")
    assert any(c["recipient"] == [{"reference": "Practitioner/mw-1"}] for c in communications)


def test_role_b_sees_flagged_indicators_not_the_answers(secure: SecureServer) -> None:
    writer = role_a(secure)
    response = writer.resource(
        "QuestionnaireResponse", **H.bib({"housing": [4, 0], "violence": [4]}, patient="p1")
    )
    response.save()
    qr_id = plain(response)["id"]
    social = role_b(secure)
    with pytest.raises(ResourceNotFound):
        social.reference("QuestionnaireResponse", qr_id).to_resource()
    assert [
        plain(r)
        for r in social.resources("QuestionnaireResponse").search(patient="Patient/p1").fetch_all()
    ] == []
    visible = [
        o
        for o in by_patient(social, "Observation", "p1")
        if o.get("derivedFrom") == [{"reference": f"QuestionnaireResponse/{qr_id}"}]
    ]
    codes = {o["code"]["coding"][0]["code"]: o["valueBoolean"] for o in visible}
    # the socio-economic indicators, flagged or not, are there to organise help...
    assert codes["housing"] is True and codes["income"] is False
    # ...the sensitive ones (violence, depression, anxiety, substance use, residence) are not
    assert not {"violence", "depression", "anxiety", "substance-use", "residence-status"} & set(
        codes
    )
    assert len(codes) == 8
    # nor the answers by any other door
    with pytest.raises(ResourceNotFound):
        social.execute(f"QuestionnaireResponse/{qr_id}/$extract", method="get")
    assert by_patient(social, "Flag", "p1") == []


def test_no_relationship_no_populate_no_screening(secure: SecureServer) -> None:
    fhir = role_a(secure)  # mw-1 has no care relationship with p2
    with pytest.raises(ResourceNotFound):
        fhir.execute(
            "Questionnaire/epds/$populate",
            method="post",
            data={
                "resourceType": "Parameters",
                "parameter": [{"name": "subject", "valueReference": {"reference": "Patient/p2"}}],
            },
        )
    with pytest.raises(ForbiddenError):  # a refused write is a 403 (docs/security.md)
        fhir.resource("QuestionnaireResponse", **H.scored("epds", [3] * 10, patient="p2")).save()


def test_a_co_parent_is_screened_as_a_subject_of_their_own(secure: SecureServer) -> None:
    fhir = role_a(secure)
    partner = fhir.resource(
        "Patient",
        name=[{"family": "Alpha", "given": ["Partner"]}],
        gender="male",
        generalPractitioner=[{"reference": "Practitioner/mw-1"}],
    )
    partner.save()
    partner_id = plain(partner)["id"]
    fhir.resource(
        "RelatedPerson",
        patient={"reference": "Patient/p1"},
        relationship=[
            {
                "coding": [
                    {"system": "http://terminology.hl7.org/CodeSystem/v3-RoleCode", "code": "FTH"}
                ]
            }
        ],
        name=[{"family": "Alpha", "given": ["Partner"]}],
    ).save()
    before = len(by_patient(fhir, "Flag", "p1"))
    answers = fhir.resource(
        "QuestionnaireResponse", **H.scored("phq-9", [2] * 8 + [1], patient=partner_id)
    )
    answers.save()
    assert H.answer_of(plain(answers), "phq-9-total") == 17
    (flag,) = by_patient(fhir, "Flag", partner_id)
    assert flag["subject"] == {"reference": f"Patient/{partner_id}"}
    assert len(by_patient(fhir, "Flag", "p1")) == before  # nothing lands in the mother's record
    (total,) = [
        o
        for o in by_patient(fhir, "Observation", partner_id)
        if o["code"]["coding"][0]["code"] == "44261-6"
    ]
    assert total["valueQuantity"]["value"] == 17


def test_a_screening_is_audited_with_what_it_wrote(secure: SecureServer) -> None:
    token = secure.mint()
    response = secure.request(
        "POST", "/QuestionnaireResponse", token, json=H.scored("phq-9", [0] * 8 + [3])
    )
    assert response.status_code == 201, response.text
    event = secure.audit_event(response.request_id)  # type: ignore[attr-defined]
    assert event["outcome"] == "0"
    assert event["subtype"][0]["code"] == "create"
    named = {e.get("what", {}).get("reference") for e in event["entity"]}
    assert "Patient/p1" in named
    assert any(str(r).startswith("Flag/") for r in named)  # the alert it raised is on record
