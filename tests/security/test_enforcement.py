"""What each role, scope and context can do (the positive side of the negative probes), the
labels the server sets, Provenance, the shape of the audit trail, break-the-glass, and how care
relationships and consent take effect."""

from __future__ import annotations

import base64
import json
import uuid

import httpx

from fhir_server.model.structure import r4_model
from fhir_server.validation.structure import StructuralValidator
from tests.security.conftest import INDICATOR, SecureServer
from tests.security.smart_helpers import backend_token_request

R = ("http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "R")
INDICATOR_DEP = (INDICATOR, "depression")
BH = ("http://terminology.hl7.org/CodeSystem/v3-ActCode", "BH")
ETH = ("http://terminology.hl7.org/CodeSystem/v3-ActCode", "ETH")


def labels(resource: dict) -> set[tuple[str, str]]:
    return {(c["system"], c["code"]) for c in resource.get("meta", {}).get("security", ())}


def ids(response: httpx.Response) -> set[str]:
    assert response.status_code == 200, response.text
    return {
        e["resource"]["id"]
        for e in response.json().get("entry", ())
        if e["search"]["mode"] != "outcome"
    }


def new_obs(
    patient: str, code: tuple[str, str] = ("http://loinc.org", "29463-7"), **extra: object
) -> dict:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": code[0], "code": code[1]}]},
        "subject": {"reference": f"Patient/{patient}"},
        "valueBoolean": True,
        **extra,
    }


# -- roles and labels ---------------------------------------------------------------------------


def test_role_a_sees_labelled_data_role_b_does_not(secure: SecureServer) -> None:
    role_a = secure.mint()
    role_b = secure.mint(
        role="B", practitioner="Practitioner/sw-1", organization="Organization/cpas-1"
    )
    assert {"o1-dep", "o1-weight", "o1-lab"} <= ids(
        secure.request("GET", "/Observation?subject=Patient/p1", role_a)
    )
    seen_by_b = ids(secure.request("GET", "/Observation?subject=Patient/p1", role_b))
    assert "o1-weight" in seen_by_b and "o1-dep" not in seen_by_b
    assert secure.request("GET", "/Observation/o1-dep", role_a).status_code == 200
    assert secure.request("GET", "/QuestionnaireResponse/qr1", role_a).status_code == 200
    assert secure.request("GET", "/Condition/c1-sub", role_a).status_code == 200
    # Role B works on its patients: p1 (care team); p3 was referred to its organisation, and
    # the accepted referral shares her Patient resource (and the request's supportingInfo) only
    # (fhir_server/referrals: a referral is no longer a care relationship with her whole record)
    assert ids(secure.request("GET", "/Patient", role_b)) == {"p1", "p3"}
    created = secure.request("POST", "/Observation", role_b, json=new_obs("p1"))
    assert created.status_code == 201, created.text
    refused = secure.request("POST", "/Observation", role_b, json=new_obs("p3"))
    assert refused.status_code == 403, refused.text


def test_server_sets_labels_from_content(secure: SecureServer) -> None:
    token = secure.mint()
    stored = secure.request("GET", "/Observation/o1-dep", token).json()
    assert {R, BH} <= labels(stored)
    assert labels(secure.request("GET", "/Condition/c1-sub", token).json()) >= {R, ETH}
    assert R in labels(secure.request("GET", "/QuestionnaireResponse/qr1", token).json())
    assert not labels(secure.request("GET", "/Observation/o1-weight", token).json())
    # a client cannot remove the labels its content requires...
    body = secure.request("GET", "/Observation/o1-dep", token).json()
    body["meta"].pop("security")
    body["status"] = "amended"
    updated = secure.request("PUT", "/Observation/o1-dep", token, json=body)
    assert updated.status_code == 200 and {R, BH} <= labels(updated.json())
    # ...but may add its own, which are kept
    extra = {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "PSY"}
    created = secure.request(
        "POST", "/Observation", token, json=new_obs("p1", meta={"security": [extra]})
    )
    assert ("http://terminology.hl7.org/CodeSystem/v3-ActCode", "PSY") in labels(created.json())


def test_questionnaire_item_codes_label_the_answers(secure: SecureServer) -> None:
    admin = secure.mint(
        kind="system", admin=True, scope="system/*.cruds", client_id="auditor", subject="a"
    )
    url = f"https://borninbelgiumpro.be/fhir/Questionnaire/test-{uuid.uuid4().hex[:8]}"
    questionnaire = {
        "resourceType": "Questionnaire",
        "url": url,
        "status": "active",
        "item": [
            {
                "linkId": "phq9-9",
                "type": "boolean",  # answers are checked against their item (screening)
                "text": "Thoughts of self-harm",
                "code": [{"system": "http://loinc.org", "code": "44260-8"}],
            },
            {"linkId": "housing", "type": "boolean", "text": "Stable housing?"},
        ],
    }
    assert secure.request("POST", "/Questionnaire", admin, json=questionnaire).status_code == 201
    token = secure.mint()

    def answer(link: str) -> dict:
        return {
            "resourceType": "QuestionnaireResponse",
            "status": "completed",
            "questionnaire": url,
            "subject": {"reference": "Patient/p1"},
            "item": [{"linkId": link, "answer": [{"valueBoolean": True}]}],
        }

    sensitive = secure.request(
        "POST", "/QuestionnaireResponse", token, json=answer("phq9-9")
    ).json()
    assert {R, BH} <= labels(sensitive)
    plain = secure.request("POST", "/QuestionnaireResponse", token, json=answer("housing")).json()
    assert R in labels(plain) and BH not in labels(plain)


def test_terminology_is_never_labelled(secure: SecureServer) -> None:
    admin = secure.mint(
        kind="system", admin=True, scope="system/*.cruds", client_id="auditor", subject="a"
    )
    codesystem = {
        "resourceType": "CodeSystem",
        "url": f"http://example.org/cs-{uuid.uuid4().hex[:6]}",
        "status": "active",
        "content": "complete",
        "concept": [
            {
                "code": "x",
                "property": [
                    {"code": "p", "valueCoding": {"system": INDICATOR, "code": "violence"}}
                ],
            }
        ],
    }
    created = secure.request("POST", "/CodeSystem", admin, json=codesystem)
    assert created.status_code == 201 and not labels(created.json())


# -- scopes and contexts ------------------------------------------------------------------------


def test_patient_context_sees_one_compartment(secure: SecureServer) -> None:
    token = secure.mint(scope="patient/*.rs", patient="p1")
    page = secure.request("GET", "/Observation?_count=1000", token).json()
    subjects = {e["resource"]["subject"]["reference"] for e in page["entry"]}
    assert subjects == {"Patient/p1"}
    assert ids(secure.request("GET", "/Patient", token)) == {"p1"}
    # non-patient data is readable with a patient/ scope
    assert secure.request("GET", "/Organization/hosp-1", token).status_code == 200


def test_granular_scope_filters_searches_and_reads(secure: SecureServer) -> None:
    scope = "user/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory"
    token = secure.mint(scope=scope)
    assert ids(secure.request("GET", "/Observation?_count=100", token)) == {"o1-lab"}
    assert secure.request("GET", "/Observation/o1-lab", token).status_code == 200
    assert secure.request("GET", "/Observation/o1-weight", token).status_code == 404


def test_backend_with_patient_data_sees_all_patients(secure: SecureServer) -> None:
    response = backend_token_request(
        secure, "backend", secure.keys.es384, scope="system/Patient.rs"
    )
    token = response.json()["access_token"]
    assert {"p1", "p2", "p3", "p4", "p5"} <= ids(
        secure.request("GET", "/Patient?_count=100", token)
    )


def test_directory_client_reads_directory_data(secure: SecureServer) -> None:
    token = secure.mint(
        kind="system",
        scope="system/*.rs",
        client_id="directory-sync",
        subject="d",
        patient_data=False,
    )
    assert ids(secure.request("GET", "/Organization?_count=100", token)) >= {"hosp-1", "cpas-1"}


def test_external_idp_tokens_map_to_practitioners_and_roles(secure: SecureServer) -> None:
    physician = secure.idp_token()  # recognised physician, NIHDI -> Practitioner/dr-ext (p1's team)
    assert secure.request("GET", "/Observation/o1-dep", physician).status_code == 200
    assert ids(secure.request("GET", "/Patient", physician)) == {"p1"}
    social = secure.idp_token(
        sub="ehealth-user-2",
        userProfile={"ssin": "85010100111", "firstName": "S", "lastName": "W"},
        bib_professions=["perssocialworker"],
    )  # no WUG quality: Role B, mapped by SSIN to Practitioner/sw-ext
    assert secure.request("GET", "/Observation/o1-weight", social).status_code == 200
    assert secure.request("GET", "/Observation/o1-dep", social).status_code == 404


# -- relationships, consent, break-the-glass ----------------------------------------------------


def test_new_patient_is_reachable_through_managing_organization(secure: SecureServer) -> None:
    token = secure.mint()
    patient = {
        "resourceType": "Patient",
        "name": [{"family": "New"}],
        "managingOrganization": {"reference": "Organization/hosp-1"},
    }
    created = secure.request("POST", "/Patient", token, json=patient)
    assert created.status_code == 201
    pid = created.json()["id"]
    assert secure.request("GET", f"/Patient/{pid}", token).status_code == 200
    assert secure.request("POST", "/Observation", token, json=new_obs(pid)).status_code == 201
    # someone from another organisation does not see her
    other = secure.mint(
        practitioner="Practitioner/mw-2", organization="Organization/other-org", subject="o"
    )
    assert secure.request("GET", f"/Patient/{pid}", other).status_code == 404


def test_care_team_and_consent_changes_apply_at_once(secure: SecureServer) -> None:
    mw1 = secure.mint()
    newcomer = secure.mint(practitioner="Practitioner/mw-2", organization=None, subject="newcomer")
    pid = secure.request(
        "POST",
        "/Patient",
        mw1,
        json={
            "resourceType": "Patient",
            "managingOrganization": {"reference": "Organization/hosp-1"},
        },
    ).json()["id"]
    assert secure.request("GET", f"/Patient/{pid}", newcomer).status_code == 404
    team = secure.request(
        "POST",
        "/CareTeam",
        mw1,
        json={
            "resourceType": "CareTeam",
            "status": "active",
            "subject": {"reference": f"Patient/{pid}"},
            "participant": [{"member": {"reference": "Practitioner/mw-2"}}],
        },
    )
    assert team.status_code == 201
    assert secure.request("GET", f"/Patient/{pid}", newcomer).status_code == 200
    consent = secure.request(
        "POST",
        "/Consent",
        mw1,
        json={
            "resourceType": "Consent",
            "status": "active",
            "scope": {"text": "privacy"},
            "category": [{"text": "BiB"}],
            "patient": {"reference": f"Patient/{pid}"},
            "policyRule": {"text": "opt-out of one professional"},
            "provision": {
                "type": "permit",
                "provision": [
                    {
                        "type": "deny",
                        "actor": [
                            {
                                "role": {"text": "excluded"},
                                "reference": {"reference": "Practitioner/mw-2"},
                            }
                        ],
                    }
                ],
            },
        },
    )
    assert consent.status_code == 201, consent.text
    assert secure.request("GET", f"/Patient/{pid}", newcomer).status_code == 404
    assert secure.request("GET", f"/Patient/{pid}", mw1).status_code == 200


def patient_with_team(secure: SecureServer, token: str, member: str, ref_base: str = "") -> str:
    """A new woman registered by mw-1's organisation, with ``member`` on her CareTeam (a care
    relationship that outlives the Patient resource). ``ref_base`` makes the references
    absolute."""
    patient = {
        "resourceType": "Patient",
        "managingOrganization": {"reference": "Organization/hosp-1"},
    }
    pid = secure.request("POST", "/Patient", token, json=patient).json()["id"]
    team = {
        "resourceType": "CareTeam",
        "status": "active",
        "subject": {"reference": f"{ref_base}Patient/{pid}"},
        "participant": [{"member": {"reference": f"{ref_base}{member}"}}],
    }
    assert secure.request("POST", "/CareTeam", token, json=team).status_code == 201
    return pid


def consent_of(patient_ref: str, provision: dict) -> dict:
    return {
        "resourceType": "Consent",
        "status": "active",
        "scope": {"text": "privacy"},
        "category": [{"text": "BiB"}],
        "patient": {"reference": patient_ref},
        "policyRule": {"text": "test"},
        "provision": {"type": "permit", "provision": [provision]},
    }


def deny_actor(actor_ref: str) -> dict:
    return {
        "type": "deny",
        "actor": [{"role": {"text": "x"}, "reference": {"reference": actor_ref}}],
    }


DENY_RESTRICTED = {"type": "deny", "securityLabel": [{"system": R[0], "code": R[1]}]}


def test_changes_with_absolute_references_apply_at_once(secure: SecureServer) -> None:
    """A CareTeam or Consent that references the patient and the professional by absolute URL
    (as some clients write them) changes access at once too: cached relationships used to be
    dropped only for relative references, so such a Consent took up to a minute to apply."""
    mw1 = secure.mint()
    newcomer = secure.mint(practitioner="Practitioner/mw-2", organization=None, subject="absolute")
    base = f"{secure.base}/"
    pid = patient_with_team(secure, mw1, "Practitioner/mw-2", ref_base=base)
    assert secure.request("GET", f"/Patient/{pid}", newcomer).status_code == 200
    consent = consent_of(f"{base}Patient/{pid}", deny_actor(f"{base}Practitioner/mw-2"))
    assert secure.request("POST", "/Consent", mw1, json=consent).status_code == 201
    assert secure.request("GET", f"/Patient/{pid}", newcomer).status_code == 404
    assert secure.request("GET", f"/Patient/{pid}", mw1).status_code == 200


def test_deleting_the_patient_does_not_lift_her_consent(secure: SecureServer) -> None:
    """Found by fuzzing: consents were looked up through the Patient resource, so deleting it
    (which a professional on her care team may do) made label-denied data readable."""
    mw1 = secure.mint()
    pid = patient_with_team(secure, mw1, "Practitioner/mw-1")
    observation = secure.request("POST", "/Observation", mw1, json=new_obs(pid, INDICATOR_DEP))
    assert observation.status_code == 201, observation.text
    oid = observation.json()["id"]
    assert {(c["system"], c["code"]) for c in observation.json()["meta"]["security"]} >= {R}
    consent = consent_of(f"Patient/{pid}", DENY_RESTRICTED)
    assert secure.request("POST", "/Consent", mw1, json=consent).status_code == 201
    assert secure.request("GET", f"/Observation/{oid}", mw1).status_code == 404

    assert secure.request("DELETE", f"/Patient/{pid}", mw1).status_code in (200, 204)
    assert secure.request("GET", f"/Observation/{oid}", mw1).status_code == 404
    found = secure.request("GET", f"/Observation?subject=Patient/{pid}", mw1).json()
    assert oid not in {e["resource"]["id"] for e in found.get("entry", ())}


def test_a_consent_cannot_be_lifted_by_someone_it_restricts(secure: SecureServer) -> None:
    """A professional on the care team may manage a woman's consents, but not one that denies
    them something: otherwise deleting it would be a way around it."""
    mw1 = secure.mint()
    mw2 = secure.mint(practitioner="Practitioner/mw-2", organization=None, subject="mw2-consent")
    pid = patient_with_team(secure, mw1, "Practitioner/mw-2")
    oid = secure.request("POST", "/Observation", mw1, json=new_obs(pid, INDICATOR_DEP)).json()["id"]
    created = secure.request(
        "POST", "/Consent", mw1, json=consent_of(f"Patient/{pid}", DENY_RESTRICTED)
    )
    assert created.status_code == 201
    cid = created.json()["id"]
    assert secure.request("GET", f"/Observation/{oid}", mw1).status_code == 404
    # it restricts everyone, mw-1 included: mw-1 can neither delete, overwrite nor patch it
    assert secure.request("DELETE", f"/Consent/{cid}", mw1).status_code == 403
    lifted = {**created.json(), "status": "inactive"}
    assert secure.request("PUT", f"/Consent/{cid}", mw1, json=lifted).status_code == 403
    patch = [{"op": "replace", "path": "/status", "value": "inactive"}]
    patched = secure.request(
        "PATCH",
        f"/Consent/{cid}",
        mw1,
        content=json.dumps(patch),
        headers={"Content-Type": "application/json-patch+json"},
    )
    assert patched.status_code == 403
    assert secure.request("GET", f"/Observation/{oid}", mw1).status_code == 404
    # a consent that excludes mw-2 only: mw-1 may manage it, and mw-2 is back once it is gone
    excluded = consent_of(f"Patient/{pid}", deny_actor("Practitioner/mw-2"))
    other = secure.request("POST", "/Consent", mw1, json=excluded).json()["id"]
    assert secure.request("GET", f"/Patient/{pid}", mw2).status_code == 404
    assert secure.request("DELETE", f"/Consent/{other}", mw1).status_code in (200, 204)
    assert secure.request("GET", f"/Patient/{pid}", mw2).status_code == 200


def test_break_the_glass(secure: SecureServer) -> None:
    token = secure.mint()  # mw-1 has no relationship with p3
    assert secure.request("GET", "/Patient/p3", token).status_code == 404
    reason = "unconscious patient at the delivery ward, no EPD link"
    read = secure.request("GET", "/Patient/p3", token, headers={"X-Break-Glass": reason})
    assert read.status_code == 200
    event = secure.audit_event(read.request_id)
    codes = {c["code"] for c in event["purposeOfEvent"][0]["coding"]}
    assert codes == {"BTG", "ETREAT"} and event["purposeOfEvent"][0]["text"] == reason
    assert any(e.get("what", {}).get("reference") == "Patient/p3" for e in event["entity"])
    # writes made under break-the-glass carry the reason in their Provenance
    written = secure.request(
        "POST", "/Observation", token, json=new_obs("p3"), headers={"X-Break-Glass": reason}
    )
    assert written.status_code == 201
    provenance = provenance_of(secure, f"Observation/{written.json()['id']}")
    assert provenance["reason"][0]["coding"][0]["code"] == "BTG"
    # consent still applies under break-the-glass? No: emergencies override it, and it is audited
    assert (
        secure.request("GET", "/Patient/p4", token, headers={"X-Break-Glass": reason}).status_code
        == 200
    )


# -- provenance and audit -----------------------------------------------------------------------


def provenance_of(secure: SecureServer, target: str) -> dict:
    backend = secure.mint(
        kind="system",
        scope="system/*.rs",
        client_id="backend",
        subject="backend",
        role="A",
        patient_data=True,
    )
    page = secure.request("GET", f"/Provenance?target={target}", backend).json()
    assert page.get("entry"), page
    return page["entry"][0]["resource"]


def test_provenance_for_every_write(secure: SecureServer) -> None:
    token = secure.mint(client_id="app-public", name="Midwife One")
    created = secure.request("POST", "/Observation", token, json=new_obs("p1"))
    oid = created.json()["id"]
    provenance = provenance_of(secure, f"Observation/{oid}")
    assert provenance["target"][0]["reference"] == f"Observation/{oid}/_history/1"
    assert provenance["activity"]["coding"][0]["code"] == "CREATE"
    author = provenance["agent"][0]
    assert author["who"]["reference"] == "Practitioner/mw-1"
    assert author["onBehalfOf"]["reference"] == "Organization/hosp-1"
    assert provenance["agent"][1]["who"]["identifier"]["value"] == "app-public"
    deleted = secure.request("DELETE", f"/Observation/{oid}", token)
    assert deleted.status_code == 204
    backend = secure.mint(
        kind="system", scope="system/*.rs", client_id="backend", subject="b", role="A"
    )
    activities = {
        e["resource"]["activity"]["coding"][0]["code"]
        for e in secure.request("GET", f"/Provenance?target=Observation/{oid}", backend).json()[
            "entry"
        ]
    }
    assert activities == {"CREATE", "DELETE"}
    # the author sees the Provenance of what they wrote
    assert secure.request("GET", f"/Provenance/{provenance['id']}", token).status_code == 200


def test_failed_transaction_leaves_no_provenance(secure: SecureServer) -> None:
    token = secure.mint()
    marker = f"marker-{uuid.uuid4().hex[:8]}"
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "resource": new_obs("p1", identifier=[{"value": marker}]),
                "request": {"method": "POST", "url": "Observation"},
            },
            {
                "resource": new_obs("p2"),
                "request": {"method": "POST", "url": "Observation"},
            },  # refused
        ],
    }
    assert secure.request("POST", "", token, json=bundle).status_code == 403
    assert ids(secure.request("GET", f"/Observation?identifier={marker}", token)) == set()


def test_audit_event_shape(secure: SecureServer) -> None:
    token = secure.mint(client_id="app-public", name="Midwife One")
    read = secure.request("GET", "/Observation/o1-weight", token)
    event = secure.audit_event(read.request_id)
    assert event["type"]["code"] == "rest"
    assert event["subtype"][0] == {
        "system": "http://hl7.org/fhir/restful-interaction",
        "code": "read",
    }
    assert event["action"] == "R" and event["outcome"] == "0"
    client, user = event["agent"]
    assert (
        client["who"]["identifier"]["value"] == "app-public"
        and client["type"]["coding"][0]["code"] == "110150"
    )
    assert user["who"]["reference"] == "Practitioner/mw-1" and user["requestor"] is True
    assert user["policy"][0].startswith("urn:bib:token:")
    refs = {e.get("what", {}).get("reference") for e in event["entity"]}
    assert {"Patient/p1", "Observation/o1-weight"} <= refs
    search = secure.request("GET", "/Observation?subject=Patient/p1&code=29463-7", token)
    event = secure.audit_event(search.request_id)
    assert event["subtype"][0]["code"] == "search-type" and event["action"] == "E"
    query = next(e for e in event["entity"] if e.get("role", {}).get("code") == "24")
    assert base64.b64decode(query["query"]).decode() == "subject=Patient/p1&code=29463-7"
    assert any(e.get("what", {}).get("reference") == "Patient/p1" for e in event["entity"])
    refused = secure.request("GET", "/Patient/p2", token)
    event = secure.audit_event(refused.request_id)
    assert event["outcome"] == "4" and "care relationship" in event["outcomeDesc"]
    validator = StructuralValidator(r4_model())
    assert not [
        i for i in validator.validate(event, "AuditEvent") if i.severity in ("error", "fatal")
    ]


def test_unauthenticated_requests_are_audited(secure: SecureServer) -> None:
    response = secure.request("GET", "/Patient/p1")
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer realm=")
    assert response.json()["resourceType"] == "OperationOutcome"
    event = secure.audit_event(response.request_id)
    assert (
        event["outcome"] == "4" and event["agent"][0]["who"]["display"] == "unauthenticated caller"
    )
    bad = secure.request("GET", "/Patient/p1", "garbage")
    assert 'error="invalid_token"' in bad.headers["www-authenticate"]


def test_generated_provenance_is_valid_r4(secure: SecureServer) -> None:
    token = secure.mint()
    created = secure.request("POST", "/Observation", token, json=new_obs("p1"))
    provenance = provenance_of(secure, f"Observation/{created.json()['id']}")
    validator = StructuralValidator(r4_model())
    assert not [
        i for i in validator.validate(provenance, "Provenance") if i.severity in ("error", "fatal")
    ]


def test_administrator_reads_the_audit_trail_but_no_patient_data(secure: SecureServer) -> None:
    admin = secure.mint(
        kind="system",
        admin=True,
        scope="system/*.rs",
        client_id="auditor",
        subject="privacy-officer",
        patient_data=False,
    )
    trail = secure.request("GET", "/AuditEvent?patient=p2&_count=5", admin)
    assert trail.status_code == 200 and trail.json()["entry"]
    event_id = trail.json()["entry"][0]["resource"]["id"]
    assert secure.request("GET", f"/AuditEvent/{event_id}", admin).status_code == 200
    assert secure.request("GET", "/Patient/p2", admin).status_code == 403
