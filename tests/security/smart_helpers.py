"""Driving the SMART flows like an app (and an EPD) would: authlib's OAuth2 client with PKCE S256
over real HTTP, the login and patient-picker pages filled in like a user would."""

from __future__ import annotations

import re
import time
import uuid
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
from authlib.common.security import generate_token
from authlib.integrations.httpx_client import OAuth2Client
from authlib.oauth2.rfc7523 import PrivateKeyJWT
from joserfc import jwt

from tests.security.conftest import REDIRECT, SecureServer

HIDDEN = re.compile(r'<input type=hidden name="([^"]+)" value="([^"]*)">')


def form_fields(page: str) -> list[tuple[str, str]]:
    import html

    return [(html.unescape(k), html.unescape(v)) for k, v in HIDDEN.findall(page)]


def config(server: SecureServer) -> dict[str, Any]:
    return httpx.get(f"{server.base}/.well-known/smart-configuration").json()


def client(
    server: SecureServer, client_id: str = "app-public", scope: str = "", **kw: Any
) -> OAuth2Client:
    return OAuth2Client(
        client_id=client_id,
        redirect_uri=REDIRECT,
        scope=scope,
        code_challenge_method="S256",
        timeout=10,
        **kw,
    )


def authorize_url(
    server: SecureServer, app: OAuth2Client, verifier: str, **extra: Any
) -> tuple[str, str]:
    extra.setdefault("aud", server.base)
    return app.create_authorization_url(
        config(server)["authorization_endpoint"], code_verifier=verifier, **extra
    )


def standalone_code(
    server: SecureServer,
    app: OAuth2Client,
    verifier: str,
    username: str = "midwife",
    password: str = "midwife-pw",
    patient: str | None = "p1",
    **extra: Any,
) -> tuple[str, str]:
    """Run the standalone launch up to the redirect; returns (redirect location, state)."""
    url, state = authorize_url(server, app, verifier, **extra)
    http = httpx.Client(timeout=10, follow_redirects=False)
    page = http.get(url)
    assert page.status_code == 200, page.text
    fields = [*form_fields(page.text), ("username", username), ("password", password)]
    answer = http.post(f"{server.origin}/auth/authorize/login", data=dict(fields))
    if answer.status_code == 200 and "Select a patient" in answer.text:
        ticket = form_fields(answer.text)
        data = dict(ticket)
        data["decision"] = "allow"
        if patient is not None:
            data["patient"] = patient
        answer = http.post(f"{server.origin}/auth/authorize/confirm", data=data)
    assert answer.status_code == 302, answer.text
    return answer.headers["location"], state


def query_of(location: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def register_launch(server: SecureServer, **body: Any) -> str:
    body.setdefault("patient", "p1")
    body.setdefault(
        "user",
        {
            "id": "u-42",
            "practitioner": "Practitioner/mw-1",
            "organization": "Organization/hosp-1",
            "professions": ["persmidwife"],
            "name": "Midwife One",
        },
    )
    response = httpx.post(f"{server.origin}/auth/launch", json=body, auth=("epd", "epd-secret-123"))
    assert response.status_code == 201, response.text
    return response.json()["launch"]


def ehr_code(
    server: SecureServer, app: OAuth2Client, verifier: str, launch: str, **extra: Any
) -> str:
    url, _state = authorize_url(server, app, verifier, launch=launch, **extra)
    answer = httpx.get(url, follow_redirects=False, timeout=10)
    assert answer.status_code == 302, answer.text
    return answer.headers["location"]


def new_verifier() -> str:
    return generate_token(64)


def assertion(server: SecureServer, client_id: str, key: Any, alg: str, **overrides: Any) -> str:
    now = int(time.time())
    claims = {
        "iss": client_id,
        "sub": client_id,
        "aud": config(server)["token_endpoint"],
        "exp": now + 240,
        "iat": now,
        "jti": uuid.uuid4().hex,
    }
    claims.update(overrides.pop("claims", {}))
    header = {"alg": alg, "kid": key.kid, "typ": "JWT", **overrides.pop("header", {})}
    return jwt.encode(header, claims, key, algorithms=[alg])


def backend_token_request(
    server: SecureServer,
    client_id: str,
    key: Any,
    alg: str = "ES384",
    scope: str = "system/*.rs",
    **overrides: Any,
) -> httpx.Response:
    data = {
        "grant_type": overrides.pop("grant_type", "client_credentials"),
        "scope": scope,
        "client_assertion_type": overrides.pop(
            "client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
        ),
        "client_assertion": overrides.pop("client_assertion", None)
        or assertion(server, client_id, key, alg, **overrides),
    }
    return httpx.post(
        config(server)["token_endpoint"],
        data=data,
        timeout=10,
        headers={"X-Request-Id": "as-" + uuid.uuid4().hex},
    )


__all__ = ["PrivateKeyJWT"]
