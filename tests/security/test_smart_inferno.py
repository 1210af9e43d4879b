"""The Inferno SMART App Launch STU2 checks (standards.md 6.6), rewritten as pytest, run over real
HTTP against ``fhir-server serve`` (authentication required) with authlib's OAuth2 client (PKCE
S256). Groups: discovery, standalone launch (public, symmetric and asymmetric client
authentication), EHR launch, OpenID Connect, token refresh, token introspection, backend services,
CORS. TLS is the deployment's reverse proxy's job and is not tested here."""

from __future__ import annotations

import time

import httpx
import pytest
from authlib.oauth2.rfc7523 import PrivateKeyJWT
from joserfc import jwt
from joserfc.jwk import KeySet

from tests.security.conftest import REDIRECT, SecureServer
from tests.security.smart_helpers import (
    backend_token_request,
    client,
    config,
    ehr_code,
    new_verifier,
    query_of,
    register_launch,
    standalone_code,
)

REQUIRED_TOKEN_FIELDS = ("access_token", "token_type", "expires_in", "scope")


def assert_token_headers(response: httpx.Response) -> None:
    assert "no-store" in response.headers.get("cache-control", "")
    assert response.headers.get("pragma") == "no-cache"


# -- discovery ----------------------------------------------------------------------------------


def test_well_known_smart_configuration(secure: SecureServer) -> None:
    response = httpx.get(
        f"{secure.base}/.well-known/smart-configuration", headers={"Accept": "text/html"}
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    doc = response.json()
    for name in (
        "authorization_endpoint",
        "token_endpoint",
        "capabilities",
        "grant_types_supported",
        "code_challenge_methods_supported",
        "issuer",
        "jwks_uri",
    ):
        assert name in doc, name
    assert "authorization_code" in doc["grant_types_supported"]
    assert "client_credentials" in doc["grant_types_supported"]
    assert "S256" in doc["code_challenge_methods_supported"]
    assert "plain" not in doc["code_challenge_methods_supported"]
    assert all(isinstance(c, str) for c in doc["capabilities"])
    assert {
        "launch-ehr",
        "launch-standalone",
        "client-public",
        "client-confidential-symmetric",
        "client-confidential-asymmetric",
        "sso-openid-connect",
        "context-ehr-patient",
        "context-standalone-patient",
        "permission-v1",
        "permission-v2",
        "permission-offline",
        "permission-patient",
        "permission-user",
    } <= set(doc["capabilities"])
    assert {"RS384", "ES384"} <= set(doc["token_endpoint_auth_signing_alg_values_supported"])
    for url in (doc["authorization_endpoint"], doc["token_endpoint"], doc["jwks_uri"]):
        assert url.startswith("http://127.0.0.1")  # absolute URLs
    # served at the origin as well
    assert httpx.get(f"{secure.origin}/.well-known/smart-configuration").json() == doc


def test_well_known_cors(secure: SecureServer) -> None:
    response = httpx.get(
        f"{secure.base}/.well-known/smart-configuration", headers={"Origin": "https://app.example"}
    )
    assert response.headers.get("access-control-allow-origin") in ("*", "https://app.example")


def test_capability_statement_advertises_smart(secure: SecureServer) -> None:
    statement = httpx.get(f"{secure.base}/metadata").json()  # public, no token
    security = statement["rest"][0]["security"]
    assert security["service"][0]["coding"][0]["code"] == "SMART-on-FHIR"
    uris = {e["url"]: e["valueUri"] for e in security["extension"][0]["extension"]}
    assert uris["token"] == config(secure)["token_endpoint"]
    assert uris["authorize"] == config(secure)["authorization_endpoint"]


def test_openid_configuration_and_jwks(secure: SecureServer) -> None:
    doc = httpx.get(f"{secure.origin}/.well-known/openid-configuration").json()
    assert doc["issuer"] == config(secure)["issuer"]
    for name in (
        "authorization_endpoint",
        "token_endpoint",
        "jwks_uri",
        "response_types_supported",
        "subject_types_supported",
        "id_token_signing_alg_values_supported",
    ):
        assert name in doc
    jwks = httpx.get(doc["jwks_uri"]).json()
    assert jwks["keys"] and all("d" not in k and "p" not in k for k in jwks["keys"])  # public only


# -- standalone launch --------------------------------------------------------------------------


@pytest.mark.parametrize("client_id", ["app-public", "app-symmetric", "app-asymmetric"])
def test_standalone_launch(secure: SecureServer, client_id: str) -> None:
    kwargs = {}
    if client_id == "app-symmetric":
        kwargs = {
            "client_secret": "s3cret-app",
            "token_endpoint_auth_method": "client_secret_basic",
        }
    app = client(
        secure, client_id, "launch/patient openid fhirUser offline_access patient/*.rs", **kwargs
    )
    if client_id == "app-asymmetric":
        app.token_endpoint_auth_method = "private_key_jwt"
        app.client_secret = secure.keys.rs384
        app.register_client_auth_method(  # SMART: the assertion expires within 5 minutes
            PrivateKeyJWT(
                config(secure)["token_endpoint"],
                alg="RS384",
                claims={"exp": int(time.time()) + 240},
            )
        )
    verifier = new_verifier()
    location, state = standalone_code(secure, app, verifier)
    params = query_of(location)
    assert location.startswith(REDIRECT)
    assert params["state"] == state  # state echoed
    assert "code" in params
    token = app.fetch_token(
        config(secure)["token_endpoint"], authorization_response=location, code_verifier=verifier
    )
    for name in REQUIRED_TOKEN_FIELDS:
        assert name in token, name
    assert token["token_type"] == "Bearer"
    assert token["patient"] == "p1"
    assert token["need_patient_banner"] is True
    granted = token["scope"].split()
    assert "patient/*.rs" in granted and "launch/patient" in granted
    assert "refresh_token" in token  # offline_access
    assert "id_token" in token
    # the token works, within the patient's compartment
    read = secure.request("GET", "/Patient/p1", token["access_token"])
    assert read.status_code == 200
    assert secure.request("GET", "/Patient/p3", token["access_token"]).status_code == 404


def test_token_response_headers_and_cors(secure: SecureServer) -> None:
    app = client(secure, "app-public", "launch/patient patient/Patient.rs")
    verifier = new_verifier()
    location, _ = standalone_code(secure, app, verifier)
    response = httpx.post(
        config(secure)["token_endpoint"],
        data={
            "grant_type": "authorization_code",
            "code": query_of(location)["code"],
            "redirect_uri": REDIRECT,
            "client_id": "app-public",
            "code_verifier": verifier,
        },
        headers={"Origin": "https://app.example"},
    )
    assert response.status_code == 200
    assert_token_headers(response)
    assert response.headers.get("access-control-allow-origin") in ("*", "https://app.example")


def test_missing_scope_is_not_granted(secure: SecureServer) -> None:
    """A scope the client is not registered for is dropped from the grant (Inferno checks the
    granted scopes against the requested ones)."""
    app = client(secure, "app-public", "launch/patient patient/Patient.rs system/*.cruds bogus")
    verifier = new_verifier()
    location, _ = standalone_code(secure, app, verifier)
    token = app.fetch_token(
        config(secure)["token_endpoint"], authorization_response=location, code_verifier=verifier
    )
    assert token["scope"].split() == ["launch/patient", "patient/Patient.rs"]


def test_user_level_standalone_without_patient(secure: SecureServer) -> None:
    app = client(secure, "app-public", "openid fhirUser user/*.rs")
    verifier = new_verifier()
    location, _ = standalone_code(secure, app, verifier, patient=None)
    token = app.fetch_token(
        config(secure)["token_endpoint"], authorization_response=location, code_verifier=verifier
    )
    assert "patient" not in token
    assert secure.request("GET", "/Patient/p1", token["access_token"]).status_code == 200
    assert secure.request("GET", "/Patient/p2", token["access_token"]).status_code == 404


def test_user_denies_access(secure: SecureServer) -> None:
    app = client(secure, "app-public", "launch/patient patient/*.rs")
    url, state = app.create_authorization_url(
        config(secure)["authorization_endpoint"], code_verifier=new_verifier(), aud=secure.base
    )
    from tests.security.smart_helpers import form_fields

    http = httpx.Client(follow_redirects=False)
    page = http.get(url)
    login = http.post(
        f"{secure.origin}/auth/authorize/login",
        data=dict([*form_fields(page.text), ("username", "midwife"), ("password", "midwife-pw")]),
    )
    data = dict(form_fields(login.text))
    data.update({"decision": "deny", "patient": "p1"})
    answer = http.post(f"{secure.origin}/auth/authorize/confirm", data=data)
    assert answer.status_code == 302
    params = query_of(answer.headers["location"])
    assert params["error"] == "access_denied" and params["state"] == state


# -- EHR launch ---------------------------------------------------------------------------------


def test_ehr_launch(secure: SecureServer) -> None:
    fhir_context = [
        {"reference": "Encounter/e1"},
        {"canonical": "https://borninbelgiumpro.be/fhir/Questionnaire/x", "type": "Questionnaire"},
    ]
    launch = register_launch(
        secure, encounter="e1", fhirContext=fhir_context, need_patient_banner=False
    )
    # the EPD opens the app with iss + launch; the app discovers the server from iss
    iss = secure.base
    assert httpx.get(f"{iss}/.well-known/smart-configuration").status_code == 200
    app = client(secure, "app-public", "launch openid fhirUser patient/*.rs user/*.rs")
    verifier = new_verifier()
    location = ehr_code(secure, app, verifier, launch)
    token = app.fetch_token(
        config(secure)["token_endpoint"], authorization_response=location, code_verifier=verifier
    )
    assert token["patient"] == "p1"
    assert token["encounter"] == "e1"
    assert token["fhirContext"] == fhir_context
    assert token["need_patient_banner"] is False
    assert secure.request("GET", "/Encounter/e1", token["access_token"]).status_code == 200
    # the launch id is single-use
    again = httpx.get(
        app.create_authorization_url(
            config(secure)["authorization_endpoint"],
            code_verifier=verifier,
            aud=secure.base,
            launch=launch,
        )[0],
        follow_redirects=False,
    )
    assert query_of(again.headers["location"])["error"] == "invalid_request"


def test_ehr_launch_creates_a_care_relationship(secure: SecureServer) -> None:
    """A professional without any relationship to p3 gets one through an EPD launch."""
    user = {"id": "nurse-7", "practitioner": "Practitioner/mw-2", "professions": ["persnurse"]}
    before = secure.mint(practitioner="Practitioner/mw-2", organization=None, subject="x")
    assert secure.request("GET", "/Patient/p3", before).status_code == 404
    launch = register_launch(secure, patient="p3", user=user)
    app = client(secure, "app-public", "launch user/*.rs")
    verifier = new_verifier()
    location = ehr_code(secure, app, verifier, launch)
    token = app.fetch_token(
        config(secure)["token_endpoint"], authorization_response=location, code_verifier=verifier
    )
    assert secure.request("GET", "/Patient/p3", token["access_token"]).status_code == 200
    assert secure.request("GET", "/Patient/p3", before).status_code == 200  # same practitioner
    assert secure.request("GET", "/Patient/p4", token["access_token"]).status_code == 404


# -- OpenID Connect -----------------------------------------------------------------------------


def test_id_token_and_fhir_user(secure: SecureServer) -> None:
    app = client(secure, "app-public", "openid fhirUser user/Practitioner.rs")
    verifier = new_verifier()
    location, _ = standalone_code(secure, app, verifier, patient=None, nonce="n-123")
    token = app.fetch_token(
        config(secure)["token_endpoint"], authorization_response=location, code_verifier=verifier
    )
    jwks = KeySet.import_key_set(httpx.get(config(secure)["jwks_uri"]).json())
    id_token = jwt.decode(token["id_token"], jwks, algorithms=["RS256"])
    assert id_token.header["alg"] == "RS256" and id_token.header["kid"]
    claims = id_token.claims
    assert claims["iss"] == config(secure)["issuer"]
    assert claims["aud"] in ("app-public", ["app-public"])
    assert claims["exp"] > time.time() and claims["sub"]
    assert claims["nonce"] == "n-123"
    assert claims["fhirUser"] == f"{secure.base}/Practitioner/mw-1"
    resolved = httpx.get(
        claims["fhirUser"],
        headers={
            "Authorization": f"Bearer {token['access_token']}",
            "Origin": "https://app.example",
        },
    )
    assert resolved.status_code == 200 and resolved.json()["id"] == "mw-1"
    assert resolved.headers.get("access-control-allow-origin") in ("*", "https://app.example")


# -- refresh ------------------------------------------------------------------------------------


@pytest.mark.parametrize("with_scope", [False, True])
def test_token_refresh(secure: SecureServer, with_scope: bool) -> None:
    app = client(secure, "app-public", "launch/patient offline_access patient/*.rs")
    verifier = new_verifier()
    location, _ = standalone_code(secure, app, verifier)
    token = app.fetch_token(
        config(secure)["token_endpoint"], authorization_response=location, code_verifier=verifier
    )
    data = {
        "grant_type": "refresh_token",
        "refresh_token": token["refresh_token"],
        "client_id": "app-public",
    }
    if with_scope:
        data["scope"] = "offline_access patient/*.rs"
    refreshed = httpx.post(config(secure)["token_endpoint"], data=data)
    assert refreshed.status_code == 200, refreshed.text
    assert_token_headers(refreshed)
    body = refreshed.json()
    for name in REQUIRED_TOKEN_FIELDS:
        assert name in body
    assert body["patient"] == "p1"
    narrowed = ["offline_access", "patient/*.rs"]
    assert body["scope"].split() == (narrowed if with_scope else token["scope"].split())
    assert body["refresh_token"] != token["refresh_token"]  # rotated
    assert secure.request("GET", "/Patient/p1", body["access_token"]).status_code == 200
    # the old refresh token no longer works
    assert (
        httpx.post(config(secure)["token_endpoint"], data={**data, "scope": ""}).status_code == 400
    )


# -- introspection and revocation ---------------------------------------------------------------


def test_introspection_active_and_inactive(secure: SecureServer) -> None:
    app = client(secure, "app-symmetric", "launch/patient patient/*.rs", client_secret="s3cret-app")
    verifier = new_verifier()
    location, _ = standalone_code(secure, app, verifier)
    token = app.fetch_token(
        config(secure)["token_endpoint"], authorization_response=location, code_verifier=verifier
    )
    endpoint = config(secure)["introspection_endpoint"]
    active = httpx.post(
        endpoint, data={"token": token["access_token"]}, auth=("app-symmetric", "s3cret-app")
    )
    assert active.status_code == 200
    body = active.json()
    assert body["active"] is True
    for name in ("scope", "client_id", "exp", "iss", "sub"):
        assert name in body
    assert body["patient"] == "p1" and body["client_id"] == "app-symmetric"
    assert body["fhirUser"] == f"{secure.base}/Practitioner/mw-1"
    inactive = httpx.post(
        endpoint, data={"token": "not-a-token"}, auth=("app-symmetric", "s3cret-app")
    )
    assert inactive.json() == {"active": False}
    # a bearer-protected introspection works too
    bearer = httpx.post(
        endpoint,
        data={"token": token["access_token"]},
        headers={"Authorization": f"Bearer {token['access_token']}"},
    )
    assert bearer.json()["active"] is True


def test_revocation(secure: SecureServer) -> None:
    app = client(secure, "app-symmetric", "launch/patient patient/*.rs", client_secret="s3cret-app")
    verifier = new_verifier()
    location, _ = standalone_code(secure, app, verifier)
    token = app.fetch_token(
        config(secure)["token_endpoint"], authorization_response=location, code_verifier=verifier
    )
    access = token["access_token"]
    assert secure.request("GET", "/Patient/p1", access).status_code == 200
    revoked = httpx.post(
        config(secure)["revocation_endpoint"],
        data={"token": access},
        auth=("app-symmetric", "s3cret-app"),
    )
    assert revoked.status_code == 200
    refused = secure.request("GET", "/Patient/p1", access)
    assert refused.status_code == 401
    assert "revoked" in refused.text
    assert secure.audit_event(refused.request_id)["outcome"] == "4"
    introspected = httpx.post(
        config(secure)["introspection_endpoint"],
        data={"token": access},
        auth=("app-symmetric", "s3cret-app"),
    )
    assert introspected.json() == {"active": False}


# -- backend services ---------------------------------------------------------------------------


@pytest.mark.parametrize("alg", ["ES384", "RS384"])
def test_backend_services_success(secure: SecureServer, alg: str) -> None:
    key = secure.keys.es384 if alg == "ES384" else secure.keys.rs384
    response = backend_token_request(
        secure, "backend", key, alg, scope="system/Observation.rs system/Patient.rs"
    )
    assert response.status_code == 200, response.text
    assert_token_headers(response)
    body = response.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] <= 300
    assert body["scope"].split() == ["system/Observation.rs", "system/Patient.rs"]
    assert "refresh_token" not in body
    listed = secure.request("GET", "/Observation?_count=100", body["access_token"])
    assert listed.status_code == 200 and listed.json()["total"] >= 10


def test_backend_services_jwks_url(secure: SecureServer) -> None:
    response = backend_token_request(
        secure,
        "backend-jku",
        secure.keys.jku_key,
        "RS384",
        scope="system/Organization.rs",
        header={"jku": secure.jwks_server.url},
    )
    assert response.status_code == 200, response.text
    token = response.json()["access_token"]
    assert secure.request("GET", "/Organization", token).status_code == 200
    assert secure.request("GET", "/Patient", token).status_code == 403  # not in its scopes


def test_backend_invalid_grant_type(secure: SecureServer) -> None:
    response = backend_token_request(secure, "backend", secure.keys.es384, grant_type="not_a_grant")
    assert response.status_code == 400 and response.json()["error"] == "unsupported_grant_type"


def test_backend_invalid_client_assertion_type(secure: SecureServer) -> None:
    response = backend_token_request(
        secure, "backend", secure.keys.es384, client_assertion_type="not_an_assertion_type"
    )
    assert response.status_code in (400, 401) and response.json()["error"] == "invalid_client"


def test_backend_invalid_jwt(secure: SecureServer) -> None:
    response = backend_token_request(
        secure, "backend", secure.keys.es384, client_assertion="not.a.jwt"
    )
    assert response.status_code in (400, 401) and response.json()["error"] == "invalid_client"


# -- CORS on the FHIR API -----------------------------------------------------------------------


def test_fhir_cors_preflight_and_response(secure: SecureServer) -> None:
    preflight = httpx.options(
        f"{secure.base}/Patient",
        headers={
            "Origin": "https://app.example",
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "authorization",
        },
    )
    assert preflight.status_code == 204
    assert "authorization" in preflight.headers["access-control-allow-headers"].lower()
    token = secure.mint()
    response = secure.request(
        "GET", "/Patient/p1", token, headers={"Origin": "https://app.example"}
    )
    assert response.headers["access-control-allow-origin"] in ("*", "https://app.example")
    assert "ETag" in response.headers["access-control-expose-headers"]
