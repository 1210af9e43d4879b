"""SMART flows driven like an app, a browser and an EPD would, against any replica: each step
takes the HTTP client of the replica it goes to (in-process ASGI apps or real server processes).
"""

from __future__ import annotations

import base64
import hashlib
import html
import re
import secrets
import time
import uuid
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
from joserfc import jwt

from tests.security.conftest import REDIRECT

HIDDEN = re.compile(r'<input type=hidden name="([^"]+)" value="([^"]*)">')
SCOPE = "openid fhirUser user/*.rs offline_access"
PATIENT_SCOPE = "launch/patient openid fhirUser user/*.rs offline_access"


def hidden(page: str) -> dict[str, str]:
    return {html.unescape(k): html.unescape(v) for k, v in HIDDEN.findall(page)}


def query_of(location: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def authorize_query(fhir_base: str, challenge: str, scope: str, **extra: str) -> str:
    return urlencode(
        {
            "response_type": "code",
            "client_id": "app-public",
            "redirect_uri": REDIRECT,
            "scope": scope,
            "state": secrets.token_hex(8),
            "aud": fhir_base,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
            **extra,
        }
    )


async def sign_in(
    start: httpx.AsyncClient,
    finish: httpx.AsyncClient,
    fhir_base: str,
    scope: str = SCOPE,
    password: str = "midwife-pw",
) -> tuple[httpx.Response, str]:
    """Open the sign-in page on ``start``, post it to ``finish``; (answer, PKCE verifier)."""
    verifier, challenge = pkce()
    page = await start.get(f"/auth/authorize?{authorize_query(fhir_base, challenge, scope)}")
    assert page.status_code == 200, page.text
    fields = {**hidden(page.text), "username": "midwife", "password": password}
    cookies = {"bib_signin": page.cookies["bib_signin"]}
    answer = await finish.post("/auth/authorize/login", data=fields, cookies=cookies)
    return answer, verifier


async def code_for(
    start: httpx.AsyncClient, finish: httpx.AsyncClient, fhir_base: str
) -> tuple[str, str]:
    answer, verifier = await sign_in(start, finish, fhir_base)
    assert answer.status_code == 302, answer.text
    return query_of(answer.headers["location"])["code"], verifier


async def exchange(http: httpx.AsyncClient, code: str, verifier: str) -> httpx.Response:
    return await http.post(
        "/auth/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT,
            "client_id": "app-public",
            "code_verifier": verifier,
        },
    )


async def refresh(http: httpx.AsyncClient, token: str) -> httpx.Response:
    return await http.post(
        "/auth/token",
        data={"grant_type": "refresh_token", "refresh_token": token, "client_id": "app-public"},
    )


async def revoke(http: httpx.AsyncClient, token: str) -> httpx.Response:
    return await http.post("/auth/revoke", data={"token": token, "client_id": "app-public"})


async def read(http: httpx.AsyncClient, fhir_base: str, path: str, token: str) -> int:
    answer = await http.get(f"{fhir_base}/{path}", headers={"Authorization": f"Bearer {token}"})
    return answer.status_code


def client_assertion(token_endpoint: str, client_id: str, key: Any, alg: str = "ES384") -> str:
    now = int(time.time())
    claims = {
        "iss": client_id,
        "sub": client_id,
        "aud": token_endpoint,
        "exp": now + 240,
        "iat": now,
        "jti": uuid.uuid4().hex,
    }
    return jwt.encode({"alg": alg, "kid": key.kid, "typ": "JWT"}, claims, key, algorithms=[alg])


async def backend_token(http: httpx.AsyncClient, assertion: str) -> httpx.Response:
    return await http.post(
        "/auth/token",
        data={
            "grant_type": "client_credentials",
            "scope": "system/*.rs",
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": assertion,
        },
    )
