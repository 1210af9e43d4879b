"""Server processes on one store share their token signing keys (issue 19, item 8).

Two secure servers, each with a data folder of its own (as two containers behind the compose
file's round-robin proxy), on one MongoDB (one MockServer): a token either one issues is accepted
by the other, the JWKS of both is the same, and a key rotation made through one is picked up by
the other when it meets a token signed with the new key. Before the key ring moved into the
store, each process generated its own key in its data folder and refused the other's tokens.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from fhir_server import app as app_module
from fhir_server.app import ServerApp
from fhir_server.security.authserver import access_claims
from fhir_server.security.tokens import rotate_signing_key
from fhir_server.store.mongo import MongoStore
from tests.conftest import TEST_BASE, make_settings
from tests.mongomock_async import MockServer


@pytest.fixture
async def two_servers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[list[ServerApp]]:
    server = MockServer()
    monkeypatch.setattr(
        app_module, "open_store", lambda url, **_: MongoStore(url, client_factory=server.client)
    )
    apps = []
    for name in ("fhir-1", "fhir-2"):
        data = tmp_path / name
        data.mkdir()
        settings = make_settings(data, store="mongodb://mock/fhir", auth="required")
        app = ServerApp(settings)
        await app.startup()
        apps.append(app)
    try:
        yield apps
    finally:
        for app in apps:
            await app.shutdown()


def token(app: ServerApp) -> str:
    claims = access_claims(
        app.settings,
        subject="demo:Practitioner/mw-1",
        client_id="app",
        scope="user/*.cruds",
        lifetime=600,
        role="A",
        admin=True,
        practitioner="Practitioner/mw-1",
        organization="Organization/hosp-1",
    )
    return app.security.key.sign(claims, typ="at+jwt")


async def get(app: ServerApp, path: str, bearer: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=TEST_BASE) as client:
        return await client.get(path, headers={"Authorization": f"Bearer {bearer}"})


async def test_each_server_accepts_the_tokens_of_the_other(two_servers: list[ServerApp]):
    first, second = two_servers
    assert first.security.key.kid == second.security.key.kid
    for issuer, verifier in ((first, second), (second, first)):
        response = await get(verifier, "/Patient", token(issuer))
        assert response.status_code == 200, response.text
    # the data folders hold a copy of the same current key (fhir-server demo-token signs with it)
    copies = {
        (Path(app.settings.data_dir) / "auth" / "signing-key.pem").read_bytes()
        for app in two_servers
    }
    assert len(copies) == 1


async def test_a_rotation_reaches_the_other_server(two_servers: list[ServerApp]):
    first, second = two_servers
    old = token(first)
    new_kid = await rotate_signing_key(first.store, keep_seconds=3600)
    assert await first.security.key.refresh(force=True)
    fresh = token(first)
    assert first.security.key.kid == new_kid != second.security.key.kid
    # the second server meets a key it does not know, reloads the ring, accepts both tokens
    assert (await get(second, "/Patient", fresh)).status_code == 200
    assert second.security.key.kid == new_kid
    assert (await get(second, "/Patient", old)).status_code == 200  # the old key still verifies
    keys = {k["kid"] for k in second.security.key.jwks()["keys"]}
    assert new_kid in keys and len(keys) == 2


async def test_a_paging_link_from_one_server_opens_on_the_other(two_servers: list[ServerApp]):
    """The paging-cursor key is shared too: behind the round-robin proxy, the next page of a
    search is often served by the other replica."""
    first, second = two_servers
    bearer = token(first)
    for app in two_servers:  # audited requests: AuditEvents to page through (admin may read)
        for _ in range(2):
            assert (await get(app, "/Patient", bearer)).status_code == 200
    assert first.service.sealer.key == second.service.sealer.key
    page = await get(first, "/AuditEvent?_count=1", bearer)
    assert page.status_code == 200, page.text
    links = {link["relation"]: link["url"] for link in page.json()["link"]}
    following = await get(second, links["next"].removeprefix(TEST_BASE), bearer)
    assert following.status_code == 200, following.text
    entries = following.json()["entry"]
    assert (
        len(entries) == 1
        and entries[0]["resource"]["id"] != page.json()["entry"][0]["resource"]["id"]
    )


async def test_a_token_from_a_foreign_key_is_still_refused(two_servers: list[ServerApp]):
    from joserfc import jwt
    from joserfc.jwk import RSAKey

    first, _ = two_servers
    claims = access_claims(
        first.settings, subject="x", client_id="app", scope="user/*.cruds", lifetime=600, role="A"
    )
    forged = jwt.encode({"alg": "RS256", "kid": "nope"}, claims, RSAKey.generate_key(2048))
    assert (await get(first, "/Patient", forged)).status_code == 401


async def test_the_rotation_command_sets_the_key_servers_start_with(tmp_path: Path, capsys):
    import asyncio

    from fhir_server.cli import main

    code = await asyncio.to_thread(main, ["rotate-signing-key", "--data-dir", str(tmp_path)])
    assert code == 0
    kid = capsys.readouterr().out.split()[3].rstrip(";")
    app = ServerApp(make_settings(tmp_path, auth="required"))
    await app.startup()
    try:
        assert app.security.key.kid == kid  # the store's ring wins over a fresh local key
        assert (await get(app, "/Patient", token(app))).status_code == 200
    finally:
        await app.shutdown()
