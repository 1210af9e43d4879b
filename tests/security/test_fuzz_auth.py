"""Seeded fuzzing of the authorization server, of token checks and of the authorization of
FHIR requests, on the real secure server process: odd form fields, client credentials, bearer
tokens and requests (under Role A, Role B, patient and system tokens) never cause a 500, and the
server logs no unhandled exception. (Found a 500 once: authlib refuses to quote a non-ASCII
parameter in its error description.) ``FUZZ_REQUESTS`` and ``FUZZ_SEED`` scale the run as in
tests/fuzz.
"""

from __future__ import annotations

import base64
import json
import os
import random
import uuid
from collections import Counter
from collections.abc import Iterator

import httpx
import pytest

from fhir_server.model.structure import r4_model
from fhir_server.search.registry import build_r4_registry
from tests.fuzz.generators import rest_request, search_request
from tests.security.conftest import INDICATOR, REDIRECT, SecureServer

SEED = int(os.environ.get("FUZZ_SEED", "20261124"))
REQUESTS = int(os.environ.get("FUZZ_REQUESTS", "0")) or 800
AS_PATHS = (
    "/auth/token", "/auth/introspect", "/auth/revoke", "/auth/launch", "/auth/authorize",
    "/auth/authorize/login", "/auth/authorize/confirm",
)  # fmt: skip
FIELDS = (
    "grant_type", "code", "redirect_uri", "client_id", "client_secret", "code_verifier",
    "refresh_token", "scope", "client_assertion", "client_assertion_type", "token",
    "token_type_hint", "response_type", "state", "aud", "launch", "code_challenge",
    "code_challenge_method", "username", "password", "decision", "patient", "nonce", "x",
)  # fmt: skip
VALUES = (
    "authorization_code", "refresh_token", "client_credentials", "password", "x", "",
    "app-public", "app-symmetric", REDIRECT, "http://evil.example/cb", "S256", "plain", "code",
    "token", "patient/*.rs openid", "launch/patient", "a" * 5000, "%00", "é", "null", "[]",
    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer", "e30.e30.e30", "allow", "deny",
    "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.",
)  # fmt: skip
ODD_TOKENS = (
    "x", "e30.e30.e30", "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.", "a.b.c.d", "x" * 10000,
    base64.urlsafe_b64encode(json.dumps({"alg": "RS256", "kid": "k" * 500}).encode()).decode()
    + ".e30.sig",
)  # fmt: skip
MINTED = (
    {"scope": "patient/*.rs"}, {"scope": "user/*.cruds"}, {"scope": ""},
    {"kind": "system", "scope": "system/*.rs"}, {"scope": "patient/Observation.rs", "patient": "x"},
)  # fmt: skip
FHIR_PATHS = (
    "/Patient", "/Observation?patient=p1", "/Patient/p1", "/metadata", "/AuditEvent",
    "/Patient/$validate", "/_history", "/Consent", "/Patient/p1/_history",
)  # fmt: skip


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureServer]:
    """A secure server of its own: the fuzzer writes (as Role A, say), and the other security
    tests must find the package server's seed data as they left it."""
    server = SecureServer(tmp_path_factory.mktemp("fuzz-secure"))
    try:
        yield server
    finally:
        server.close()


def _token(rnd: random.Random, server: SecureServer) -> str:
    if rnd.random() < 0.4:
        return server.mint(**rnd.choice(MINTED))
    return rnd.choice(ODD_TOKENS)


def _request(rnd: random.Random, server: SecureServer, http: httpx.Client) -> httpx.Response:
    roll = rnd.random()
    if roll < 0.45:
        form = {rnd.choice(FIELDS): rnd.choice(VALUES) for _ in range(rnd.randint(0, 7))}
        headers = {}
        if rnd.random() < 0.3:
            headers["authorization"] = rnd.choice(
                ("Basic " + base64.b64encode(b"app-symmetric:x").decode(), "Basic !!!",
                 "Basic " + base64.b64encode(b"no-colon").decode(), "Basic", "Bearer x")
            )  # fmt: skip
        url = server.origin + rnd.choice(AS_PATHS)
        if rnd.random() < 0.2:
            headers["content-type"] = rnd.choice(("application/json", "text/plain"))
            return http.post(url, content=json.dumps(form), headers=headers)
        return http.post(url, data=form, headers=headers)
    if roll < 0.55:
        query = {rnd.choice(FIELDS): rnd.choice(VALUES) for _ in range(rnd.randint(0, 8))}
        return http.get(server.origin + "/auth/authorize", params=query)
    token = _token(rnd, server)
    method = rnd.choice(("GET", "GET", "POST", "DELETE", "PUT"))
    headers = {
        "authorization": rnd.choice((f"Bearer {token}", f"bearer {token}", token, "Basic x")),
        "content-type": "application/fhir+json",
    }
    if rnd.random() < 0.2:
        headers["x-break-the-glass"] = rnd.choice(("true", "x"))
    body = '{"resourceType": "Patient", "gender": "female"}' if method in ("POST", "PUT") else None
    return http.request(method, server.base + rnd.choice(FHIR_PATHS), content=body, headers=headers)


def test_odd_oauth_and_token_input_never_causes_a_500(fuzzed: SecureServer) -> None:
    secure = fuzzed
    rnd = random.Random(SEED)
    log_before = len(secure.live.log.read_text(errors="replace"))
    seen: Counter[int] = Counter()
    with httpx.Client(timeout=10, follow_redirects=False) as http:
        for n in range(REQUESTS):
            response = _request(rnd, secure, http)
            seen[response.status_code] += 1
            assert response.status_code < 500, f"seed {SEED}, request {n}: {response.text[:300]}"
            assert "Traceback" not in response.text
    log = secure.live.log.read_text(errors="replace")[log_before:]
    assert "Traceback" not in log and "Exception in ASGI application" not in log, log[-2000:]
    # the run reaches token checks and OAuth error handling, and some requests succeed
    assert seen[400] > 50 and seen[401] > 50 and seen[200] > 5, seen


TOKEN_KINDS = (
    {"scope": "patient/*.cruds", "patient": "p1"},
    {"scope": "user/*.cruds"},  # Role A
    {
        "scope": "user/*.cruds",
        "role": "B",
        "practitioner": "Practitioner/sw-1",
        "organization": "Organization/cpas-1",
    },
    {"scope": "user/*.rs"},
    {"scope": "patient/Observation.rs", "patient": "p1"},
    {"kind": "system", "scope": "system/*.rs"},
)


def test_odd_requests_under_every_role_never_cause_a_500(fuzzed: SecureServer) -> None:
    """The guard (scopes, care relationships, Role B limits, labels, consent) on the paths the
    fuzz generators reach: interactions, searches with chains, _has, _include and paging."""
    secure = fuzzed
    rnd = random.Random(SEED + 1)
    tokens = [secure.mint(**kind) for kind in TOKEN_KINDS]
    params_of = build_r4_registry(r4_model()).params_for
    ids = ["p1", "p2", "p3", "p4", "p5"]
    log_before = len(secure.live.log.read_text(errors="replace"))
    seen: Counter[int] = Counter()
    with httpx.Client(timeout=20) as http:
        for n in range(REQUESTS):
            request = (
                rest_request(rnd, ids, n)
                if rnd.random() < 0.5
                else search_request(rnd, params_of, ids)
            )
            headers = {**request.headers, "authorization": f"Bearer {rnd.choice(tokens)}"}
            if rnd.random() < 0.1:
                headers["x-break-the-glass"] = "true"
            response = http.request(
                request.method, secure.base + request.url, headers=headers, content=request.body
            )
            seen[response.status_code] += 1
            assert response.status_code < 500, f"seed {SEED + 1}: {request.describe()}"
    log = secure.live.log.read_text(errors="replace")[log_before:]
    assert "Traceback" not in log and "Exception in ASGI application" not in log, log[-2000:]
    assert seen[200] > 100 and seen[403] > 50 and seen[400] > 100, seen


# -- the access model's classes under fuzzing (tests/security/test_access_classes.py) -----------

# type -> patient-compartment fields, as (JSON key, is a list, wrapper key)
COMPARTMENT_FIELDS = {
    "Observation": (("subject", False, None), ("performer", True, None)),
    "CareTeam": (("subject", False, None), ("participant", True, "member")),
    "ServiceRequest": (("subject", False, None), ("performer", True, None)),
    "Task": (("for", False, None), ("focus", False, None)),
    "Communication": (("subject", False, None), ("sender", False, None), ("recipient", True, None)),
    "Condition": (("subject", False, None), ("asserter", False, None)),
    "Flag": (("subject", False, None),),
    "CarePlan": (("subject", False, None),),
}
BASES = {
    "Observation": {"status": "final", "code": {"text": "fuzz"}},
    "CareTeam": {"status": "active"},
    "ServiceRequest": {"status": "active", "intent": "order"},
    "Task": {"status": "requested", "intent": "order"},
    "Communication": {"status": "completed"},
    "Condition": {"code": {"text": "fuzz"}},
    "Flag": {"status": "active", "code": {"text": "fuzz"}},
    "CarePlan": {"status": "draft", "intent": "plan"},
}
FUZZ_ID = "https://fuzz.example/id"


def _ref_forms(server: SecureServer, pid: str) -> tuple[str, ...]:
    return (
        f"Patient/{pid}",
        f"{server.base}/Patient/{pid}",
        f"Patient/{pid}/_history/1",
        f"https://elsewhere.example/fhir/Patient/{pid}",  # another server's: nobody here
    )


def _multi_patient_write(rnd: random.Random, server: SecureServer) -> tuple[dict, set[str]]:
    """A resource whose compartment fields point at a random mix of p1 (reachable for mw-1)
    and p2 (not), in random reference forms; returns it and the local patients it touches."""
    type_ = rnd.choice(list(COMPARTMENT_FIELDS))
    resource: dict = {
        "resourceType": type_,
        **BASES[type_],
        "identifier": [{"system": FUZZ_ID, "value": uuid.uuid4().hex}],
    }
    local: set[str] = set()
    for key, many, wrap in COMPARTMENT_FIELDS[type_]:
        if rnd.random() < 0.3 and key not in ("subject", "for"):
            continue
        pid = rnd.choice(("p1", "p1", "p2"))
        ref = rnd.choice(_ref_forms(server, pid))
        if "elsewhere" not in ref:
            local.add(pid)
        value: dict = {"reference": ref}
        if wrap:
            value = {wrap: value}
        resource[key] = [value] if many else value
    if type_ == "CareTeam":
        resource.setdefault("participant", []).append(
            {"member": {"reference": "Practitioner/mw-1"}}
        )
    return resource, local


def test_writes_touching_several_patients_under_fuzzing(fuzzed: SecureServer) -> None:
    """Random writes with patient references in every compartment field and every reference
    form, alone and in transactions: one that touches p2 (not in mw-1's care) is never stored."""
    secure = fuzzed
    rnd = random.Random(SEED + 2)
    role_a = secure.mint()
    backend = secure.mint(
        kind="system", scope="system/*.rs", client_id="backend", role="A", patient_data=True
    )
    stored_bad: list[str] = []
    with httpx.Client(timeout=20) as http:
        for _ in range(max(REQUESTS // 4, 50)):
            resource, local = _multi_patient_write(rnd, secure)
            marker = resource["identifier"][0]["value"]
            if rnd.random() < 0.3:
                body = {
                    "resourceType": "Bundle",
                    "type": "transaction",
                    "entry": [
                        {
                            "resource": resource,
                            "request": {"method": "POST", "url": resource["resourceType"]},
                        }
                    ],
                }
                response = http.post(
                    secure.base, json=body, headers={"authorization": f"Bearer {role_a}"}
                )
            else:
                response = http.post(
                    f"{secure.base}/{resource['resourceType']}",
                    json=resource,
                    headers={"authorization": f"Bearer {role_a}"},
                )
            assert response.status_code < 500, response.text[:300]
            found = http.get(
                f"{secure.base}/{resource['resourceType']}",
                params={"identifier": f"{FUZZ_ID}|{marker}"},
                headers={"authorization": f"Bearer {backend}"},
            ).json()
            written = bool(found.get("entry"))
            if "p2" in local and written:
                stored_bad.append(json.dumps(resource)[:300])
            if "p2" in local:
                assert response.status_code in (403, 404), response.text[:300]
    assert not stored_bad, stored_bad[:3]


HIDDEN_CONDITIONS = (  # true only through data Role B may not see (p1's labelled o1-dep)
    f"_id=p1&_has:Observation:subject:code={INDICATOR}|depression",
    f"_id=p1&_has:Observation:patient:code={INDICATOR}|depression",
)
EMPTY_CONDITIONS = (
    f"_id=p1&_has:Observation:subject:code={INDICATOR}|no-such-code",
    "_id=p1&_has:Observation:subject:code=http://loinc.org|0000-0",
)


def test_conditional_interactions_are_no_oracle_under_fuzzing(fuzzed: SecureServer) -> None:
    """Every conditional interaction, with conditions that match only through hidden data and
    conditions that match nothing: the answers cannot be told apart."""
    secure = fuzzed
    rnd = random.Random(SEED + 3)
    role_b = secure.mint(
        role="B", practitioner="Practitioner/sw-1", organization="Organization/cpas-1"
    )
    patient = {"resourceType": "Patient", "gender": "female"}

    def ask(condition: str) -> tuple[int, str]:
        kind = rnd_kind
        headers = {"authorization": f"Bearer {role_b}"}
        if kind == "patch":
            r = http.patch(
                f"{secure.base}/Patient?{condition}",
                content="[]",
                headers={**headers, "content-type": "application/json-patch+json"},
            )
        elif kind == "delete":
            r = http.delete(f"{secure.base}/Patient?{condition}", headers=headers)
        elif kind == "update":
            r = http.put(f"{secure.base}/Patient?{condition}", json=patient, headers=headers)
        elif kind == "search":
            r = http.get(f"{secure.base}/Patient?{condition}", headers=headers)
        else:  # a transaction's conditional reference
            body = {
                "resourceType": "Bundle",
                "type": "transaction",
                "entry": [
                    {
                        "resource": {
                            "resourceType": "Flag",
                            "status": "active",
                            "code": {"text": "x"},
                            "subject": {"reference": f"Patient?{condition}"},
                        },
                        "request": {"method": "POST", "url": "Flag"},
                    }
                ],
            }
            r = http.post(secure.base, json=body, headers=headers)
        assert r.status_code < 500, r.text[:300]
        text = r.text
        if kind == "search":
            text = str(r.json().get("total"))
        elif r.status_code < 300:
            text = ""  # a created Flag / updated resource: only the status is comparable
        for cond in (*HIDDEN_CONDITIONS, *EMPTY_CONDITIONS):
            text = text.replace(cond, "<condition>")
        return r.status_code, text

    with httpx.Client(timeout=20) as http:
        for _ in range(40):
            rnd_kind = rnd.choice(("patch", "delete", "update", "search", "reference"))
            hidden = ask(rnd.choice(HIDDEN_CONDITIONS))
            empty = ask(rnd.choice(EMPTY_CONDITIONS))
            if rnd_kind == "update":  # each created a Patient: compare the status only
                assert hidden[0] == empty[0], (rnd_kind, hidden, empty)
            else:
                assert hidden == empty, (rnd_kind, hidden, empty)


def test_patched_paging_cursors_under_fuzzing(fuzzed: SecureServer) -> None:
    """Paging links with changed bytes are a 400, never another page of data, never a 500."""
    secure = fuzzed
    rnd = random.Random(SEED + 4)
    token = secure.mint()
    with httpx.Client(timeout=20) as http:
        headers = {"authorization": f"Bearer {token}"}
        links = []
        for path in ("/Observation?_count=1", "/_history?_count=1", "/Patient?_count=1"):
            page = http.get(secure.base + path, headers=headers).json()
            links += [link["url"] for link in page["link"] if link["relation"] == "next"]
        assert links
        for _ in range(100):
            link = rnd.choice(links)
            head, _, cursor = link.partition("_cursor=")
            cursor, sep, rest = cursor.partition("&")
            chars = list(cursor)
            for _ in range(rnd.randint(1, 3)):
                i = rnd.randrange(len(chars))
                chars[i] = rnd.choice(
                    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_."
                )
            patched = "".join(chars)
            if patched == cursor:
                continue
            response = http.get(f"{head}_cursor={patched}{sep}{rest}", headers=headers)
            assert response.status_code == 400, (response.status_code, response.text[:200])
