"""Two server processes on one MongoDB store share the authorization server's state (issue 19).

Two secure app instances, each with a data folder and an in-memory state of its own (as two
containers behind the compose file's round-robin proxy, without sticky sessions), on one MongoDB
(one mongomock MockServer): every step of a flow may land on either, and what one does holds at
the other at once. Before the state moved into the store, each of these failed (a code, a launch
or a sign-in form known to one replica only) or, worse, passed (a revoked or replayed token still
honoured by the other replica).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from fhir_server import app as app_module
from fhir_server.app import ServerApp
from fhir_server.security.authserver import access_claims
from fhir_server.store.mongo import MongoStore
from tests.authshare import flows
from tests.conftest import make_settings
from tests.mongomock_async import MockServer
from tests.security.conftest import ClientKeys, midwife_user, registrations

ORIGIN = "http://localhost:8080"  # authlib allows plain http on localhost only
BASE = f"{ORIGIN}/fhir"


class Replicas:
    def __init__(self, apps: list[ServerApp], clients: list[httpx.AsyncClient], keys: ClientKeys):
        self.apps = apps
        self.a, self.b = clients
        self.keys = keys

    def admin_token(self) -> str:
        app = self.apps[0]
        claims = access_claims(
            app.settings,
            subject="admin",
            client_id="setup",
            scope="user/*.cruds",
            lifetime=600,
            role="A",
            admin=True,
            practitioner="Practitioner/mw-1",
            organization="Organization/hosp-1",
        )
        return app.security.key.sign(claims, typ="at+jwt")


@pytest.fixture
async def replicas(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Replicas]:
    server = MockServer()
    monkeypatch.setattr(
        app_module, "open_store", lambda url, **_: MongoStore(url, client_factory=server.client)
    )
    keys = ClientKeys()
    clients_file = tmp_path / "clients.json"
    data = registrations(keys, "http://127.0.0.1:9/jwks")
    data["users"] = [midwife_user()]
    clients_file.write_text(json.dumps(data))
    apps, https = [], []
    for name in ("fhir-1", "fhir-2"):
        folder = tmp_path / name
        folder.mkdir()
        settings = make_settings(
            folder,
            store="mongodb://mock/fhir",
            auth="required",
            clients_file=str(clients_file),
            audit_flush_ms=1,
            public_url=f"{ORIGIN}/fhir",
        )
        app = ServerApp(settings)
        await app.startup()
        apps.append(app)
        https.append(httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=ORIGIN))
    try:
        yield Replicas(apps, https, keys)
    finally:
        for http in https:
            await http.aclose()
        for app in apps:
            await app.shutdown()


async def test_a_token_revoked_at_one_replica_is_refused_by_the_other(replicas: Replicas):
    code, verifier = await flows.code_for(replicas.a, replicas.a, BASE)
    tokens = (await flows.exchange(replicas.a, code, verifier)).json()
    access = tokens["access_token"]
    assert await flows.read(replicas.b, BASE, "Patient", access) == 200  # cached by B now
    assert (await flows.revoke(replicas.a, access)).status_code == 200
    assert await flows.read(replicas.b, BASE, "Patient", access) == 401
    assert await flows.read(replicas.a, BASE, "Patient", access) == 401
    # revoking the refresh token at B ends the whole grant, at A too
    code, verifier = await flows.code_for(replicas.a, replicas.b, BASE)
    tokens = (await flows.exchange(replicas.b, code, verifier)).json()
    assert await flows.read(replicas.a, BASE, "Patient", tokens["access_token"]) == 200
    assert (await flows.revoke(replicas.b, tokens["refresh_token"])).status_code == 200
    assert await flows.read(replicas.a, BASE, "Patient", tokens["access_token"]) == 401
    assert (await flows.refresh(replicas.a, tokens["refresh_token"])).status_code == 400


async def test_a_code_redeemed_at_one_replica_fails_at_the_other(replicas: Replicas):
    code, verifier = await flows.code_for(replicas.a, replicas.a, BASE)
    first = await flows.exchange(replicas.a, code, verifier)
    assert first.status_code == 200, first.text
    replay = await flows.exchange(replicas.b, code, verifier)
    assert replay.status_code == 400 and replay.json()["error"] == "invalid_grant"
    # the replay revoked what the first exchange produced, at both replicas
    tokens = first.json()
    for http in (replicas.a, replicas.b):
        assert await flows.read(http, BASE, "Patient", tokens["access_token"]) == 401
    assert (await flows.refresh(replicas.b, tokens["refresh_token"])).status_code == 400


async def test_a_refresh_token_replayed_at_the_other_replica_revokes_its_family(
    replicas: Replicas,
):
    code, verifier = await flows.code_for(replicas.b, replicas.a, BASE)
    tokens = (await flows.exchange(replicas.a, code, verifier)).json()
    rotated = await flows.refresh(replicas.a, tokens["refresh_token"])
    assert rotated.status_code == 200, rotated.text
    newer = rotated.json()
    assert newer["refresh_token"] != tokens["refresh_token"]
    assert await flows.read(replicas.b, BASE, "Patient", newer["access_token"]) == 200
    # an attacker replays the old refresh token at the other replica
    replay = await flows.refresh(replicas.b, tokens["refresh_token"])
    assert replay.status_code == 400 and replay.json()["error"] == "invalid_grant"
    # every token of the family is dead everywhere, the newest ones included
    for http in (replicas.a, replicas.b):
        assert await flows.read(http, BASE, "Patient", newer["access_token"]) == 401
        assert await flows.read(http, BASE, "Patient", tokens["access_token"]) == 401
    assert (await flows.refresh(replicas.a, newer["refresh_token"])).status_code == 400


async def test_sign_in_launch_and_lock_out_span_replicas(replicas: Replicas):
    admin = {"Authorization": f"Bearer {replicas.admin_token()}"}
    created = await replicas.a.put(
        f"{BASE}/Patient/p1",
        json={"resourceType": "Patient", "id": "p1", "birthDate": "1990-01-01"},
        headers=admin,
    )
    assert created.status_code in (200, 201), created.text
    # an EPD registers a launch at A; the app's authorize request lands on B
    launch = await replicas.a.post(
        "/auth/launch",
        json={
            "patient": "p1",
            "user": {
                "id": "u-7",
                "practitioner": "Practitioner/mw-9",
                "organization": "Organization/other",
                "professions": ["persmidwife"],
            },
        },
        auth=("epd", "epd-secret-123"),
    )
    assert launch.status_code == 201, launch.text
    launch_id = launch.json()["launch"]
    verifier, challenge = flows.pkce()
    query = flows.authorize_query(BASE, challenge, "launch openid user/*.rs", launch=launch_id)
    answer = await replicas.b.get(f"/auth/authorize?{query}")
    assert answer.status_code == 302, answer.text
    code = flows.query_of(answer.headers["location"])["code"]
    # the launch id is one-time everywhere
    assert (await replicas.a.get(f"/auth/authorize?{query}")).status_code in (302, 400)
    assert "code=" not in (await replicas.a.get(f"/auth/authorize?{query}")).headers.get(
        "location", ""
    )
    tokens = (await flows.exchange(replicas.a, code, verifier)).json()
    assert tokens["patient"] == "p1"
    # the launch made a care relationship, recorded at B, honoured by A: the professional of
    # another organisation reads the launched patient
    assert await flows.read(replicas.a, BASE, "Patient/p1", tokens["access_token"]) == 200
    # a sign-in form is one-time across replicas
    verifier, challenge = flows.pkce()
    page = await replicas.a.get(
        f"/auth/authorize?{flows.authorize_query(BASE, challenge, flows.SCOPE)}"
    )
    fields = {**flows.hidden(page.text), "username": "midwife", "password": "midwife-pw"}
    cookies = {"bib_signin": page.cookies["bib_signin"]}
    first = await replicas.b.post("/auth/authorize/login", data=fields, cookies=cookies)
    assert first.status_code == 302
    again = await replicas.a.post("/auth/authorize/login", data=fields, cookies=cookies)
    assert again.status_code == 403
    # five wrong passwords spread over both replicas lock the account on both
    for i in range(5):
        start, finish = (replicas.a, replicas.b) if i % 2 else (replicas.b, replicas.a)
        wrong, _ = await flows.sign_in(start, finish, BASE, password="wrong")
        assert wrong.status_code == 401
    right, _ = await flows.sign_in(replicas.a, replicas.b, BASE)
    assert right.status_code == 401 and "Wrong user name or password" in right.text


async def test_a_client_assertion_is_accepted_once_across_replicas(replicas: Replicas):
    assertion = flows.client_assertion(f"{ORIGIN}/auth/token", "backend", replicas.keys.es384)
    first = await flows.backend_token(replicas.a, assertion)
    assert first.status_code == 200, first.text
    replay = await flows.backend_token(replicas.b, assertion)
    assert replay.status_code in (400, 401), replay.text  # refused like a replay at A
    assert "access_token" not in replay.json()
    again = await flows.backend_token(replicas.a, assertion)
    assert again.status_code in (400, 401) and "access_token" not in again.json()
