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
from collections import Counter
from collections.abc import Iterator

import httpx
import pytest

from fhir_server.model.structure import r4_model
from fhir_server.search.registry import build_r4_registry
from tests.fuzz.generators import rest_request, search_request
from tests.security.conftest import REDIRECT, SecureServer

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
