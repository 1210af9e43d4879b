"""The access model at the level of classes, not examples (the security issue's findings).

Over real HTTP against a secure server of its own (the seed of conftest.py: mw-1 of hosp-1 cares
for p1, p4 and p5; sw-1 of cpas-1, Role B, for p1, and sees what p3's accepted referral shares;
mw-2 for p2; o1-dep is a labelled depression indicator of p1), for every kind of caller:

- hidden vs missing: every interaction on a resource the caller may not see answers exactly as
  on one that does not exist (status, message, no ETag), and never shows stored content;
- writes: every reference form in every Patient-compartment field of the programme's types is
  refused when it points into a record the caller cannot write;
- care relationships cannot be self-granted; re-creating a deleted record is an update of it;
- directory identity elements are written by administrators only;
- older versions are judged by the current one; paging cursors are sealed and bound;
- conditional interactions are narrowed like searches.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from tests.security.conftest import INDICATOR, SSIN, SecureServer

Token = str
P2_SSIN = "9001011100"  # conftest: p2's SSIN ("9001011" + index 1 + "00")
P4_SSIN = "9001011300"


@pytest.fixture(scope="module")
def s(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureServer]:
    server = SecureServer(tmp_path_factory.mktemp("classes"))
    try:
        yield server
    finally:
        server.close()


def role_a(s: SecureServer) -> Token:
    return s.mint(subject="mw-1")


def role_b(s: SecureServer) -> Token:
    return s.mint(
        role="B",
        practitioner="Practitioner/sw-1",
        organization="Organization/cpas-1",
        subject="sw-1",
    )


def patient_app(s: SecureServer) -> Token:
    return s.mint(scope="patient/*.cruds", patient="p1", subject="mw-1-app")


def no_relationship(s: SecureServer) -> Token:
    return s.mint(
        practitioner="Practitioner/nobody", organization="Organization/other-org", subject="nb"
    )


def backend(s: SecureServer) -> Token:
    return s.mint(
        kind="system",
        scope="system/*.cruds",
        client_id="backend",
        subject="backend",
        role="A",
        patient_data=True,
    )


def directory_client(s: SecureServer) -> Token:
    return s.mint(
        kind="system",
        scope="system/*.cruds",
        client_id="directory-sync",
        subject="directory-sync",
        patient_data=False,
    )


# caller -> (token factory, a resource of the seed that caller may not see)
HIDDEN: dict[str, tuple[Callable[[SecureServer], Token], str]] = {
    "role A, no relationship": (role_a, "Observation/o2-weight"),
    "role B, labelled": (role_b, "Observation/o1-dep"),
    "patient-context app": (patient_app, "Observation/o2-weight"),
    "professional without any relationship": (no_relationship, "Observation/o1-weight"),
    "backend without patient data": (directory_client, "Observation/o1-weight"),
}


def ok(response: httpx.Response, *status: int) -> httpx.Response:
    assert response.status_code in (status or (200,)), (response.status_code, response.text)
    return response


def obs(patient: str, code: tuple[str, str] = ("http://loinc.org", "29463-7"), **extra: Any):
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": code[0], "code": code[1]}]},
        "subject": {
            "reference": patient if "/" in patient or ":" in patient else f"Patient/{patient}"
        },
        "valueBoolean": True,
        **extra,
    }


# -- hidden looks exactly like missing ------------------------------------------------------------

JSON_PATCH = {"Content-Type": "application/json-patch+json"}


def interactions(target: str) -> dict[str, Callable[[SecureServer, Token], httpx.Response]]:
    """Every interaction on one stored resource (``Type/id``), as a request function."""
    id_ = target.split("/")[1]

    def req(method: str, path: str, **kw: Any) -> Callable[[SecureServer, Token], httpx.Response]:
        return lambda s, t: s.request(method, path, t, **kw)

    def bundle(kind: str, method: str, url: str, resource: Any = None) -> dict:
        entry: dict[str, Any] = {"request": {"method": method, "url": url}}
        if resource is not None:
            entry["resource"] = resource
        return {"resourceType": "Bundle", "type": kind, "entry": [entry]}

    patch_leaks = [{"op": "test", "path": "", "value": 0}]
    patch_copy = [{"op": "copy", "from": "/code", "path": "/status"}]
    binary = {
        "resourceType": "Binary",
        "contentType": "application/json-patch+json",
        "data": base64.b64encode(json.dumps(patch_leaks).encode()).decode(),
    }
    return {
        "read": req("GET", f"/{target}"),
        "head": req("HEAD", f"/{target}"),
        "vread": req("GET", f"/{target}/_history/1"),
        "history": req("GET", f"/{target}/_history"),
        "update If-Match": req(
            "PUT", f"/{target}", json=obs("p1", id=id_), headers={"If-Match": 'W/"1"'}
        ),
        "patch test": req("PATCH", f"/{target}", json=patch_leaks, headers=JSON_PATCH),
        "patch copy": req("PATCH", f"/{target}", json=patch_copy, headers=JSON_PATCH),
        "patch true test": req(
            "PATCH",
            f"/{target}",
            json=[{"op": "test", "path": "/status", "value": "final"}],
            headers=JSON_PATCH,
        ),
        "patch If-Match": req(
            "PATCH", f"/{target}", json=[], headers={**JSON_PATCH, "If-Match": 'W/"9"'}
        ),
        "merge patch": req("PATCH", f"/{target}", json={"status": "amended"}),
        "delete": req("DELETE", f"/{target}"),
        "delete If-Match": req("DELETE", f"/{target}", headers={"If-Match": 'W/"1"'}),
        "$validate": req("GET", f"/{target}/$validate"),
        "$validate delete": req("GET", f"/{target}/$validate?mode=delete"),
        "batch read": req("POST", "", json=bundle("batch", "GET", target)),
        "batch vread": req("POST", "", json=bundle("batch", "GET", f"{target}/_history/1")),
        "batch patch": req("POST", "", json=bundle("batch", "PATCH", target, binary)),
        "transaction read": req("POST", "", json=bundle("transaction", "GET", target)),
        "transaction patch": req("POST", "", json=bundle("transaction", "PATCH", target, binary)),
        "transaction delete": req("POST", "", json=bundle("transaction", "DELETE", target)),
        "transaction update If-Match": req(
            "POST",
            "",
            json={
                "resourceType": "Bundle",
                "type": "transaction",
                "entry": [
                    {
                        "resource": obs("p1", id=id_),
                        "request": {"method": "PUT", "url": target, "ifMatch": 'W/"1"'},
                    }
                ],
            },
        ),
    }


def shape(response: httpx.Response, target: str) -> tuple:
    """What a caller can observe of an answer, with the resource id taken out."""
    id_ = target.split("/")[1]
    text = response.text.replace(id_, "<id>")
    try:
        body = json.loads(text) if text else None
    except ValueError:
        body = text
    if isinstance(body, dict) and body.get("resourceType") == "Bundle":
        for entry in body.get("entry", ()):  # timestamps and ids of the answer itself
            entry.get("response", {}).pop("lastModified", None)
        body.pop("timestamp", None)
        body.pop("id", None)
        body.pop("meta", None)
    headers = {k for k in response.headers if k in ("etag", "last-modified", "location")}
    return response.status_code, body, headers


@pytest.mark.parametrize("caller", list(HIDDEN))
def test_every_interaction_answers_a_hidden_resource_like_a_missing_one(
    s: SecureServer, caller: str
) -> None:
    mint, hidden_target = HIDDEN[caller]
    token = mint(s)
    missing_target = hidden_target.split("/")[0] + "/" + "never-existed-" + uuid.uuid4().hex[:8]
    backend_token = backend(s)
    before = ok(s.request("GET", f"/{hidden_target}", backend_token)).json()
    for name, run in interactions(hidden_target).items():
        hidden = run(s, token)
        missing = {k: v for k, v in interactions(missing_target).items()}[name](s, token)
        assert shape(hidden, hidden_target) == shape(missing, missing_target), (
            caller,
            name,
            hidden.status_code,
            hidden.text[:300],
            missing.status_code,
            missing.text[:300],
        )
        assert hidden.status_code < 500, (name, hidden.text)
        assert '"meta"' not in hidden.text or hidden.status_code == 200, (name, hidden.text)
        assert "29463-7" not in hidden.text and "depression" not in hidden.text, (name, hidden.text)
    # and nothing was changed: not a new version, not deleted
    after = ok(s.request("GET", f"/{hidden_target}", backend_token)).json()
    assert after["meta"]["versionId"] == before["meta"]["versionId"]


def test_a_refused_hidden_delete_is_audited_as_a_refusal(s: SecureServer) -> None:
    response = s.request("DELETE", "/Observation/o2-weight", role_a(s))
    assert response.status_code == 204  # as for a missing resource
    event = s.audit_event(response.request_id)  # type: ignore[attr-defined]
    assert event["outcome"] == "4", event
    assert {"reference": "Patient/p2"} in [e.get("what") for e in event["entity"]]


def test_patch_disclosure_attempts_are_audited_with_the_patient(s: SecureServer) -> None:
    response = s.request(
        "PATCH",
        "/Observation/o2-weight",
        role_a(s),
        json=[{"op": "test", "path": "", "value": 0}],
        headers=JSON_PATCH,
    )
    assert response.status_code == 404
    event = s.audit_event(response.request_id)  # type: ignore[attr-defined]
    assert event["outcome"] == "4"
    assert {"reference": "Patient/p2"} in [e.get("what") for e in event["entity"]]


def test_openid_only_token_learns_nothing_from_a_patch(s: SecureServer) -> None:
    token = s.mint(scope="openid fhirUser")
    hidden = s.request(
        "PATCH",
        "/Observation/o1-dep",
        token,
        json=[{"op": "test", "path": "", "value": 0}],
        headers=JSON_PATCH,
    )
    assert hidden.status_code == 403 and "depression" not in hidden.text
    missing = s.request(
        "PATCH",
        "/Observation/nope-1",
        token,
        json=[{"op": "test", "path": "", "value": 0}],
        headers=JSON_PATCH,
    )
    assert (missing.status_code, missing.json()) == (hidden.status_code, hidden.json())


def test_deleted_hidden_resource_gives_no_etag(s: SecureServer) -> None:
    mw2 = s.mint(practitioner="Practitioner/mw-2", organization=None, subject="mw-2")
    created = ok(s.request("POST", "/Observation", mw2, json=obs("p2")), 201).json()
    ok(s.request("DELETE", f"/Observation/{created['id']}", mw2), 204)
    assert s.request("GET", f"/Observation/{created['id']}", mw2).status_code == 410
    seen = s.request("GET", f"/Observation/{created['id']}", role_a(s))
    assert seen.status_code == 404 and "etag" not in seen.headers
    assert seen.json()["issue"][0]["diagnostics"] == f"Observation/{created['id']} is not known"


def test_a_client_assigned_id_taken_by_a_hidden_resource_is_refused_without_content(
    s: SecureServer,
) -> None:
    """The one residual of client-assigned ids (docs/security.md): a PUT that would create an id
    already taken by a resource the caller cannot see is refused like a write the caller may
    not make, with no content, status or version of the stored resource."""
    response = s.request("PUT", "/Observation/o2-weight", role_a(s), json=obs("p1", id="o2-weight"))
    assert response.status_code == 403
    assert response.json()["issue"][0]["diagnostics"] == "you may not write this Observation"
    assert "etag" not in response.headers


# -- writes touching several patients ---------------------------------------------------------

REF_FORMS: dict[str, Callable[[SecureServer, str], str]] = {
    "relative": lambda s, ref: ref,
    "absolute": lambda s, ref: f"{s.base}/{ref}",
    "versioned": lambda s, ref: f"{ref}/_history/1",
}

# type -> (resource with the caller's patient in place, {compartment field: how to set a ref})
Setter = Callable[[dict, str], None]


def _set(path: str, many: bool = False, wrap: str | None = None) -> Setter:
    def setter(resource: dict, ref: str) -> None:
        value: Any = {"reference": ref}
        if wrap:
            value = {wrap: value}
        resource[path] = [value] if many else value

    return setter


def _append(path: str, wrap: str | None = None) -> Setter:
    def setter(resource: dict, ref: str) -> None:
        value: Any = {"reference": ref}
        if wrap:
            value = {wrap: value}
        resource.setdefault(path, []).append(value)

    return setter


WRITE_CASES: dict[str, tuple[Callable[[str], dict], dict[str, Setter]]] = {
    "Observation": (
        lambda p: obs(p),
        {"subject": _set("subject"), "performer": _set("performer", many=True)},
    ),
    "CareTeam": (
        lambda p: {
            "resourceType": "CareTeam",
            "status": "active",
            "subject": {"reference": f"Patient/{p}"},
            "participant": [{"member": {"reference": "Practitioner/mw-1"}}],
        },
        {"patient": _set("subject"), "participant": _append("participant", wrap="member")},
    ),
    "ServiceRequest": (
        lambda p: {
            "resourceType": "ServiceRequest",
            "status": "active",
            "intent": "order",
            "subject": {"reference": f"Patient/{p}"},
        },
        {"subject": _set("subject"), "performer": _set("performer", many=True)},
    ),
    "Task": (
        lambda p: {
            "resourceType": "Task",
            "status": "requested",
            "intent": "order",
            "for": {"reference": f"Patient/{p}"},
            "owner": {"reference": "Practitioner/mw-1"},
        },
        {"patient": _set("for"), "focus": _set("focus")},
    ),
    "Communication": (
        lambda p: {
            "resourceType": "Communication",
            "status": "completed",
            "subject": {"reference": f"Patient/{p}"},
        },
        {
            "subject": _set("subject"),
            "sender": _set("sender"),
            "recipient": _set("recipient", many=True),
        },
    ),
    "Condition": (
        lambda p: {
            "resourceType": "Condition",
            "subject": {"reference": f"Patient/{p}"},
            "code": {"text": "x"},
        },
        {"patient": _set("subject"), "asserter": _set("asserter")},
    ),
    "QuestionnaireResponse": (
        lambda p: {
            "resourceType": "QuestionnaireResponse",
            "status": "completed",
            "subject": {"reference": f"Patient/{p}"},
        },
        {"subject": _set("subject"), "author": _set("author")},
    ),
    "Flag": (
        lambda p: {
            "resourceType": "Flag",
            "status": "active",
            "code": {"text": "x"},
            "subject": {"reference": f"Patient/{p}"},
        },
        {"patient": _set("subject")},
    ),
    "CarePlan": (
        lambda p: {
            "resourceType": "CarePlan",
            "status": "draft",
            "intent": "plan",
            "subject": {"reference": f"Patient/{p}"},
        },
        {"patient": _set("subject")},
    ),
    "Consent": (
        lambda p: {
            "resourceType": "Consent",
            "status": "active",
            "scope": {"text": "x"},
            "category": [{"text": "x"}],
            "patient": {"reference": f"Patient/{p}"},
            "policyRule": {"text": "x"},
        },
        {"patient": _set("patient")},
    ),
}

WRITERS: dict[str, tuple[Callable[[SecureServer], Token], str]] = {
    "role A": (role_a, "p1"),
    # p1: sw-1's care team (p3 was referred to her organisation: since the referral workflow
    # an accepted referral shares only the woman's Patient and the request's supportingInfo,
    # so p3's record is no longer writable for sw-1; see tests/referrals)
    "role B": (role_b, "p1"),
    "patient-context app": (patient_app, "p1"),
}


def write_cases() -> Iterator[tuple[str, str, str]]:
    for type_, (_, fields) in WRITE_CASES.items():
        for field in fields:
            yield type_, field, "relative"


@pytest.mark.parametrize("writer", list(WRITERS))
def test_every_patient_field_in_every_reference_form_is_checked(
    s: SecureServer, writer: str
) -> None:
    mint, own = WRITERS[writer]
    token = mint(s)
    refused: list[str] = []
    for type_, (build, fields) in WRITE_CASES.items():
        if writer == "role B" and type_ in ("Consent", "QuestionnaireResponse"):
            continue  # Role B may not write Consent, nor raw answers (always labelled R)
        for field, setter in fields.items():
            for form, make in REF_FORMS.items():
                resource = build(own)
                setter(resource, make(s, "Patient/p2"))
                response = s.request("POST", f"/{type_}", token, json=resource)
                if response.status_code != 403:
                    refused.append(f"{type_}.{field} {form}: {response.status_code}")
                # the same write into the caller's own patient is fine (the control)
            control = build(own)
            setter(control, f"Patient/{own}")
            assert s.request("POST", f"/{type_}", token, json=control).status_code == 201, (
                type_,
                field,
            )
    assert not refused, refused
    # and nothing of p2's record became visible through any of them
    assert s.request("GET", "/Observation/o2-weight", token).status_code == 404


def test_writes_in_a_transaction_are_checked_after_references_are_resolved(
    s: SecureServer,
) -> None:
    token = role_a(s)
    conditional = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "resource": obs("p1", performer=[{"reference": "Patient?_id=p2"}]),
                "request": {"method": "POST", "url": "Observation"},
            }
        ],
    }
    # p2 is not visible, so the conditional reference matches nothing (as for a missing one)
    assert s.request("POST", "", token, json=conditional).status_code == 404
    by_uuid = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": "urn:uuid:9a7c0a58-0000-4000-8000-000000000001",
                "resource": {"resourceType": "Patient", "id": "p2", "birthDate": "1911-11-11"},
                "request": {"method": "PUT", "url": "Patient/p2"},
            },
            {
                "resource": obs(
                    "p1",
                    performer=[{"reference": "urn:uuid:9a7c0a58-0000-4000-8000-000000000001"}],
                ),
                "request": {"method": "POST", "url": "Observation"},
            },
        ],
    }
    assert s.request("POST", "", token, json=by_uuid).status_code == 403
    assert ok(s.request("GET", "/Patient/p2", backend(s))).json()["birthDate"] == "1990-01-01"


def test_write_into_a_record_one_cannot_read(s: SecureServer) -> None:
    token = role_a(s)
    into_p2 = obs("p2", performer=[{"reference": "Patient/p1"}])
    assert s.request("POST", "/Observation", token, json=into_p2).status_code == 403
    app = patient_app(s)
    assert s.request("POST", "/Observation", app, json=into_p2).status_code == 403


# -- care relationships cannot be self-granted -----------------------------------------------


def test_a_care_team_for_someone_else_is_refused_and_grants_nothing(s: SecureServer) -> None:
    token = role_a(s)
    team = {
        "resourceType": "CareTeam",
        "status": "active",
        "subject": {"reference": "Patient/p2"},
        "participant": [
            {"member": {"reference": "Practitioner/mw-1"}},
            {"member": {"reference": "Patient/p1"}},
        ],
    }
    assert s.request("POST", "/CareTeam", token, json=team).status_code == 403
    assert s.request("GET", "/QuestionnaireResponse/qr2", token).status_code == 404


def test_another_servers_patient_url_grants_no_relationship(s: SecureServer) -> None:
    """A Role B user registers her own patient, then a CareTeam and a Task whose subject is an
    absolute URL of another server ending in the victim's id: written (they are about nobody
    here), but they grant nothing."""
    token = role_b(s)
    own = ok(
        s.request("POST", "/Patient", token, json={"resourceType": "Patient", "gender": "female"}),
        201,
    ).json()["id"]
    evil = "https://evil.example/fhir/Patient/p2"
    team = {
        "resourceType": "CareTeam",
        "status": "active",
        "subject": {"reference": evil},
        "participant": [
            {"member": {"reference": "Practitioner/sw-1"}},
            {"member": {"reference": f"Patient/{own}"}},
        ],
    }
    task = {
        "resourceType": "Task",
        "status": "requested",
        "intent": "order",
        "for": {"reference": evil},
        "focus": {"reference": f"Patient/{own}"},
        "owner": {"reference": "Practitioner/sw-1"},
    }
    for resource in (team, task):
        response = s.request("POST", f"/{resource['resourceType']}", token, json=resource)
        assert response.status_code in (201, 403), response.text
    assert s.request("GET", "/Observation/o2-weight", token).status_code == 404
    assert s.request("GET", "/Patient/p2", token).status_code == 404
    request = {
        "resourceType": "ServiceRequest",
        "status": "active",
        "intent": "order",
        "subject": {"reference": "Patient/p2"},
        "performer": [{"reference": "Practitioner/sw-1"}, {"reference": f"Patient/{own}"}],
    }
    assert s.request("POST", "/ServiceRequest", token, json=request).status_code == 403
    assert s.request("GET", "/Patient/p2", token).status_code == 404


def test_recreating_a_deleted_patient_is_an_update_of_her_record(s: SecureServer) -> None:
    mw2 = s.mint(
        practitioner="Practitioner/mw-2", organization="Organization/other-org", subject="mw-2"
    )
    pid = ok(
        s.request("POST", "/Patient", mw2, json={"resourceType": "Patient", "gender": "female"}),
        201,
    ).json()["id"]
    oid = ok(s.request("POST", "/Observation", mw2, json=obs(pid)), 201).json()["id"]
    ok(s.request("DELETE", f"/Patient/{pid}", mw2), 204)
    other = role_a(s)
    takeover = {
        "resourceType": "Patient",
        "id": pid,
        "generalPractitioner": [{"reference": "Practitioner/mw-1"}],
    }
    assert s.request("PUT", f"/Patient/{pid}", other, json=takeover).status_code == 403
    assert s.request("GET", f"/Observation/{oid}", other).status_code == 404
    assert s.request("GET", f"/Patient/{pid}/_history/1", other).status_code == 404
    # her own care team may re-create the record (an update of the one it replaces)
    again = {"resourceType": "Patient", "id": pid, "gender": "female"}
    assert s.request("PUT", f"/Patient/{pid}", mw2, json=again).status_code == 201


# -- registration and identification: the ordinary integrator flows ------------------------------


def test_create_a_patient_and_read_her_back(s: SecureServer) -> None:
    token = role_b(s)
    created = ok(
        s.request("POST", "/Patient", token, json={"resourceType": "Patient", "gender": "female"}),
        201,
    ).json()
    assert ok(s.request("GET", f"/Patient/{created['id']}", token)).json()["id"] == created["id"]
    teams = ok(s.request("GET", f"/CareTeam?subject=Patient/{created['id']}", token)).json()
    team = teams["entry"][0]["resource"]
    assert team["category"][0]["coding"][0]["code"] == "registration"
    assert team["participant"][0]["member"]["reference"] == "Organization/cpas-1"


def test_one_transaction_with_a_new_patient_and_her_observation(s: SecureServer) -> None:
    token = role_a(s)
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {  # the observation first: the order of entries must not matter
                "resource": obs("urn:uuid:5b0c1f9e-0000-4000-8000-00000000000a"),
                "request": {"method": "POST", "url": "Observation"},
            },
            {
                "fullUrl": "urn:uuid:5b0c1f9e-0000-4000-8000-00000000000a",
                "resource": {"resourceType": "Patient", "gender": "female"},
                "request": {"method": "POST", "url": "Patient"},
            },
        ],
    }
    response = ok(s.request("POST", "", token, json=bundle))
    locations = [e["response"]["location"] for e in response.json()["entry"]]
    assert all(loc for loc in locations)
    for location in locations:
        path = location.split("/fhir/")[-1].split("/_history")[0]
        assert s.request("GET", f"/{path}", token).status_code == 200


def test_identification_by_ssin_is_recorded_and_audited(s: SecureServer) -> None:
    token = no_relationship(s)
    assert s.request("GET", "/Patient/p2", token).status_code == 404
    response = s.request(
        "POST",
        "/Patient/$identify",
        token,
        json={
            "resourceType": "Parameters",
            "parameter": [
                {"name": "identifier", "valueIdentifier": {"system": SSIN, "value": P2_SSIN}}
            ],
        },
    )
    assert ok(response).json()["id"] == "p2"
    event = s.audit_event(response.request_id)  # type: ignore[attr-defined]
    assert {"reference": "Patient/p2"} in [e.get("what") for e in event["entity"]]
    assert s.request("GET", "/Observation/o2-weight", token).status_code == 200
    teams = ok(s.request("GET", "/CareTeam?subject=Patient/p2", token)).json()
    codes = {
        e["resource"].get("category", [{}])[0].get("coding", [{}])[0].get("code")
        for e in teams["entry"]
    }
    assert "identification" in codes
    unknown = s.request("GET", f"/Patient/$identify?identifier={SSIN}|00000000000", token)
    assert unknown.status_code == 404
    not_identifying = s.request("GET", "/Patient/$identify?identifier=urn:x|1", token)
    assert not_identifying.status_code == 400


def test_conditional_create_by_ssin_identifies_instead_of_duplicating(s: SecureServer) -> None:
    token = s.mint(
        practitioner="Practitioner/other", organization="Organization/hosp-9", subject="o9"
    )
    body = {
        "resourceType": "Patient",
        "identifier": [{"system": SSIN, "value": P4_SSIN}],  # p4
    }
    response = s.request(
        "POST",
        "/Patient",
        token,
        json=body,
        headers={"If-None-Exist": f"identifier={SSIN}|{P4_SSIN}"},
    )
    assert response.status_code == 200 and response.json()["id"] == "p4"
    # p4's consent denies mw-1: identification does not get around it
    denied = s.request(
        "POST",
        "/Patient",
        role_a(s),
        json=body,
        headers={"If-None-Exist": f"identifier={SSIN}|{P4_SSIN}"},
    )
    assert denied.status_code == 403 and "consent" in denied.text


def test_identification_is_for_professionals_only(s: SecureServer) -> None:
    for token in (patient_app(s), backend(s), s.mint(scope="user/Observation.rs")):
        response = s.request("GET", f"/Patient/$identify?identifier={SSIN}|{P2_SSIN}", token)
        assert response.status_code == 403, response.text


# -- directory and identity -----------------------------------------------------------------------


def test_identity_elements_of_the_directory_need_an_administrator(s: SecureServer) -> None:
    nurse = s.idp_token(
        userProfile={
            "ssin": "80222700999",
            "nurse": {"recognised": True, "nihii11": "40099999901"},
        }
    )
    assert s.request("GET", "/Patient", nurse).status_code == 200
    add_nihdi = [
        {
            "op": "add",
            "path": "/identifier",
            "value": [
                {
                    "system": "https://www.ehealth.fgov.be/standards/fhir/core/NamingSystem/"
                    "nihdi-professional",
                    "value": "40099999901",
                }
            ],
        }
    ]
    response = s.request("PATCH", "/Practitioner/mw-1", nurse, json=add_nihdi, headers=JSON_PATCH)
    assert response.status_code == 403 and "administrator" in response.text
    cbe = [
        {
            "op": "add",
            "path": "/identifier",
            "value": [
                {
                    "system": "https://www.ehealth.fgov.be/standards/fhir/core/NamingSystem/cbe",
                    "value": "0999999999",
                }
            ],
        }
    ]
    assert (
        s.request("PATCH", "/Organization/hosp-1", role_a(s), json=cbe, headers=JSON_PATCH)
    ).status_code == 403
    created = s.request(
        "POST",
        "/Practitioner",
        role_a(s),
        json={"resourceType": "Practitioner", "identifier": add_nihdi[0]["value"]},
    )
    assert created.status_code == 403
    # other directory edits stay open to professionals
    rename = [{"op": "add", "path": "/name", "value": [{"family": "Peeters"}]}]
    assert (
        s.request("PATCH", "/Practitioner/mw-1", role_a(s), json=rename, headers=JSON_PATCH)
    ).status_code == 200
    admin = s.mint(kind="system", admin=True, scope="system/*.cruds", client_id="auditor")
    ok(s.request("PATCH", "/Organization/hosp-1", admin, json=cbe, headers=JSON_PATCH))


# -- versions from before a label -----------------------------------------------------------------


def test_a_label_added_later_hides_the_versions_before_it(s: SecureServer) -> None:
    a, b = role_a(s), role_b(s)
    created = ok(s.request("POST", "/Observation", a, json=obs("p1")), 201).json()
    oid = created["id"]
    assert s.request("GET", f"/Observation/{oid}/_history/1", b).status_code == 200
    labelled = {
        **created,
        "meta": {
            "security": [
                {"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "R"}
            ]
        },
    }
    ok(s.request("PUT", f"/Observation/{oid}", a, json=labelled))
    assert s.request("GET", f"/Observation/{oid}/_history/1", b).status_code == 404
    assert s.request("GET", f"/Observation/{oid}/_history", b).status_code == 404
    for path in ("/Observation/_history?_count=1000", "/_history?_count=1000"):
        history = ok(s.request("GET", path, b)).json()
        assert oid not in {e.get("resource", {}).get("id") for e in history.get("entry", ())}
    batch = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [{"request": {"method": "GET", "url": f"Observation/{oid}/_history/1"}}],
    }
    entry = ok(s.request("POST", "", b, json=batch)).json()["entry"][0]
    assert entry["response"]["status"] == "404"
    assert s.request("GET", f"/Observation/{oid}/_history/1", a).status_code == 200


def _next_link(response: httpx.Response) -> str:
    links = {link["relation"]: link["url"] for link in response.json()["link"]}
    return links["next"]


def _cursor_payload(cursor: str) -> dict:
    body = cursor.split(".")[0]
    return json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))


def _with_cursor(url: str, cursor: str) -> str:
    from urllib.parse import parse_qsl, urlencode, urlsplit

    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k != "_cursor"]
    return f"{parts.scheme}://{parts.netloc}{parts.path}?{urlencode([*query, ('_cursor', cursor)])}"


def _cursor_of(url: str) -> str:
    from urllib.parse import parse_qs, urlsplit

    return parse_qs(urlsplit(url).query)["_cursor"][0]


@pytest.mark.parametrize("path", ["/Observation?_count=1", "/Observation/_history?_count=1"])
def test_paging_cursors_are_sealed_and_bound_to_the_caller(s: SecureServer, path: str) -> None:
    a = role_a(s)
    first = ok(s.request("GET", path, a))
    link = _next_link(first)
    assert s.request("GET", link, a).status_code == 200
    cursor = _cursor_of(link)
    payload = _cursor_payload(cursor)
    if "s" in payload:
        payload["s"] = 1  # an older snapshot
    else:
        payload["c"] = payload["c"][:-2] + "AA"
    forged_body = base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=")
    forged = _with_cursor(link, forged_body + "." + cursor.split(".")[1])
    tampered = s.request("GET", forged, a)
    assert tampered.status_code == 400 and "not valid" in tampered.text
    unsigned = s.request("GET", _with_cursor(link, forged_body), a)
    assert unsigned.status_code == 400
    other = s.request("GET", link, role_b(s))
    assert other.status_code == 400


# -- conditional interactions are narrowed like searches ----------------------------------------


def test_conditional_interactions_with_chains_and_has_are_not_oracles(s: SecureServer) -> None:
    """Role B sees p1, not her labelled depression indicator o1-dep: a condition that would
    match only through it must answer exactly like one that matches nothing."""
    b = role_b(s)
    has_dep = f"_id=p1&_has:Observation:subject:code={INDICATOR}|depression"
    has_none = f"_id=p1&_has:Observation:subject:code={INDICATOR}|no-such-code"
    for condition in (has_dep, has_none):
        patched = s.request("PATCH", f"/Patient?{condition}", b, json=[], headers=JSON_PATCH)
        assert patched.status_code == 404, (condition, patched.text)
    chain_dep = f"subject:Patient._id=p1&code={INDICATOR}|depression"
    deleted = s.request("DELETE", f"/Observation?{chain_dep}", b)
    assert deleted.status_code in (200, 204)
    assert ok(s.request("GET", "/Observation/o1-dep", role_a(s)))  # still there
    created = s.request(
        "POST",
        "/Observation",
        b,
        json=obs("p1", ("http://loinc.org", "29463-7")),
        headers={"If-None-Exist": f"subject=Patient/p1&code={INDICATOR}|depression"},
    )
    assert created.status_code == 201  # nothing matched: a new resource, no disclosure


def test_the_audit_trail_cannot_be_probed_through_conditions(s: SecureServer) -> None:
    a = role_a(s)
    probes = [
        ("PATCH", "/Patient?_has:AuditEvent:patient:outcome=0"),
        ("DELETE", "/Patient?_has:AuditEvent:entity:outcome=4"),
        ("GET", "/Patient?_has:AuditEvent:patient:outcome=0"),
        ("GET", "/Patient?_revinclude=AuditEvent:patient"),
    ]
    for method, path in probes:
        kw: dict[str, Any] = {"json": [], "headers": JSON_PATCH} if method == "PATCH" else {}
        response = s.request(method, path, a, **kw)
        assert response.status_code == 403 and "administrators" in response.text, path


# -- hardening -------------------------------------------------------------------------------------


def test_responses_are_not_cached_nor_sniffed(s: SecureServer) -> None:
    for path in ("/Patient/p1", "/Patient/nope", "/metadata"):
        response = s.request("GET", path, role_a(s))
        assert response.headers["cache-control"] == "no-store"
        assert response.headers["x-content-type-options"] == "nosniff"


def test_provenance_names_only_its_author(s: SecureServer) -> None:
    b = role_b(s)
    provenance = {
        "resourceType": "Provenance",
        "target": [{"reference": "Patient/p1"}],
        "recorded": "2026-12-03T10:00:00Z",
        "agent": [{"who": {"reference": "Practitioner/mw-1"}}],
    }
    response = s.request("POST", "/Provenance", b, json=provenance)
    assert response.status_code == 403 and "agent" in response.text
    provenance["agent"] = [
        {
            "who": {"reference": "Practitioner/sw-1"},
            "onBehalfOf": {"reference": "Organization/cpas-1"},
        }
    ]
    ok(s.request("POST", "/Provenance", b, json=provenance), 201)


def test_a_huge_header_is_refused_and_audited(s: SecureServer) -> None:
    response = s.request("GET", "/Patient/p1", role_a(s), headers={"X-Big": "x" * 200_000})
    assert response.status_code == 431
    assert response.json()["resourceType"] == "OperationOutcome"
    # one below the bound still works
    ok(s.request("GET", "/Patient/p1", role_a(s), headers={"X-Big": "x" * 20_000}))
    deadline = time.monotonic() + 5
    while True:
        page = s.request("GET", "/AuditEvent?_sort=-_lastUpdated&_count=100", s.auditor)
        events = ok(page).json()["entry"]
        if any("HTTP 431" in e["resource"].get("outcomeDesc", "") for e in events):
            break
        assert time.monotonic() < deadline, "the 431 was not audited"
        time.sleep(0.05)


def test_format_refusals_are_audited(s: SecureServer) -> None:
    for headers, path in (
        ({"Accept": "application/fhir+xml"}, "/Patient/p1"),
        ({}, "/Patient/p1?_format=xml"),
    ):
        response = s.request("GET", path, role_a(s), headers=headers)
        assert response.status_code == 406
        event = s.audit_event(response.request_id)  # type: ignore[attr-defined]
        assert event["outcome"] == "4"
