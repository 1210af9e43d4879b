"""Server processes on one SQLite file share the authorization server's state (issue 19).

The SQLite store's FHIR data has one writer process (its sequence numbers and version cache live
in that process, docs/architecture.md): a second *server* process on the same file cannot write
its AuditEvents (every audited request of the second one answers 503), so two full servers on one
SQLite file are not a deployment. The authorization state is another matter: it lives in a table
of its own (store/sqlite/records.py), written statement by statement, each atomic between
processes. Here a real server process (uvicorn) and a second process using the same file (this
test process, through the very code the server runs: ``AuthStore`` on the store's records) act on
one grant: what either does holds for the other at once. A race of several processes claiming the
same one-time records shows exactly one winner per record.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest

from fhir_server.security.authstore import LAUNCH, AuthStore, token_hash
from fhir_server.store.sqlite.records import SqliteRecords
from tests.authshare import flows
from tests.conftest import LiveServer
from tests.security.conftest import ClientKeys, midwife_user, registrations


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    root = tmp_path_factory.mktemp("authshare")
    data = root / "data"
    data.mkdir()
    clients = root / "clients.json"
    registered = registrations(ClientKeys(), "http://127.0.0.1:9/jwks")
    registered["users"] = [midwife_user()]
    clients.write_text(json.dumps(registered))
    live = LiveServer(
        data,
        ["--no-demo", "--clients", str(clients)],
        env={"FHIR_AUDIT_FLUSH_MS": "5", "FHIR_LOAD_TERMINOLOGY": "false"},
        secure=True,
    )
    live.start(timeout=90)
    try:
        yield live
    finally:
        live.stop()


@pytest.fixture
async def other(server: LiveServer) -> AsyncIterator[AuthStore]:
    """The second process's view: the authorization state of the same SQLite file."""
    records = SqliteRecords(server.data_dir / "fhir.db")
    try:
        yield AuthStore(SimpleNamespace(records=records))
    finally:
        records.close()


@pytest.fixture
async def http(server: LiveServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.base.removesuffix("/fhir"), timeout=20) as c:
        yield c


def jti_of(token: str) -> tuple[str, float]:
    import base64

    payload = token.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return claims["jti"], float(claims["exp"])


async def tokens(server: LiveServer, http: httpx.AsyncClient) -> dict:
    code, verifier = await flows.code_for(http, http, server.base)
    answer = await flows.exchange(http, code, verifier)
    assert answer.status_code == 200, answer.text
    return answer.json()


async def test_a_revocation_by_the_other_process_is_refused_at_once(
    server: LiveServer, http: httpx.AsyncClient, other: AuthStore
):
    access = (await tokens(server, http))["access_token"]
    assert await flows.read(http, server.base, "Patient", access) == 200  # verified and cached
    await other.revoke_access(*jti_of(access))
    assert await flows.read(http, server.base, "Patient", access) == 401


async def test_a_code_redeemed_by_the_other_process_fails_here(
    server: LiveServer, http: httpx.AsyncClient, other: AuthStore
):
    code, verifier = await flows.code_for(http, http, server.base)
    claimed = await other.claim_code(code)
    assert claimed is not None and claimed.first
    answer = await flows.exchange(http, code, verifier)
    assert answer.status_code == 400 and answer.json()["error"] == "invalid_grant"


async def test_a_refresh_token_used_by_the_other_process_and_replayed_here_revokes_the_family(
    server: LiveServer, http: httpx.AsyncClient, other: AuthStore
):
    issued = await tokens(server, http)
    claimed = await other.claim_refresh(issued["refresh_token"])  # the other process rotated it
    assert claimed is not None and claimed.first
    replay = await flows.refresh(http, issued["refresh_token"])
    assert replay.status_code == 400 and replay.json()["error"] == "invalid_grant"
    assert await flows.read(http, server.base, "Patient", issued["access_token"]) == 401
    assert await other.is_revoked(None, claimed.value["grant_id"])


async def test_a_launch_registered_by_the_other_process_is_usable_here(
    server: LiveServer, http: httpx.AsyncClient, other: AuthStore
):
    launch = {
        "user": {"subject": "epd/u-1", "professions": ["persmidwife"], "name": "M"},
        "context": {"encounter": "Encounter/e1", "need_patient_banner": False},
        "client_id": None,
        "expires": time.time() + 60,
        "registrar": "epd",
    }
    assert await other.put_once(LAUNCH, "launch-from-b", launch, time.time() + 60)
    verifier, challenge = flows.pkce()
    query = flows.authorize_query(server.base, challenge, "launch openid", launch="launch-from-b")
    answer = await http.get(f"/auth/authorize?{query}")
    assert answer.status_code == 302, answer.text
    code = flows.query_of(answer.headers["location"])["code"]
    issued = await flows.exchange(http, code, verifier)
    assert issued.status_code == 200 and issued.json()["encounter"] == "Encounter/e1"
    # and one-time: the other process cannot take it any more
    assert await other.take(LAUNCH, "launch-from-b") is None


RACE = """
import asyncio, sys
from fhir_server.store.sqlite.records import SqliteRecords
async def main():
    records = SqliteRecords(__import__("pathlib").Path(sys.argv[1]))
    won = 0
    for i in range(int(sys.argv[2])):
        claimed = await records.claim("code", f"race-{i}")
        won += bool(claimed and claimed.first)
    print(won)
asyncio.run(main())
"""


async def test_processes_racing_for_one_time_records_have_one_winner_each(tmp_path: Path):
    path = tmp_path / "fhir.db"
    records = SqliteRecords(path)
    count = 150
    for i in range(count):
        assert await records.put("code", f"race-{i}", {"i": i}, time.time() + 300)
    assert not await records.put("code", "race-0", {}, time.time() + 300)  # live: refused
    racers = [
        subprocess.Popen(
            [sys.executable, "-c", RACE, str(path), str(count)], stdout=subprocess.PIPE, text=True
        )
        for _ in range(3)
    ]
    wins = [int(p.communicate(timeout=120)[0]) for p in racers]
    records.close()
    assert sum(wins) == count, wins


async def test_expired_records_are_invisible_and_pruned(tmp_path: Path):
    records = SqliteRecords(tmp_path / "fhir.db")
    store = AuthStore(SimpleNamespace(records=records))
    await records.put("code", "old", {"x": 1}, time.time() - 1)
    await records.put("revoked", "jti-old", {}, time.time() - 1)
    await store.revoke_access("jti-live", time.time() + 600)
    assert await records.claim("code", "old") is None
    assert not await store.is_revoked("jti-old", None)
    assert await store.is_revoked("jti-live", None)
    assert await records.prune() == 2
    assert await records.put("code", "old", {"x": 2}, time.time() + 60)  # the key is free again
    assert token_hash("x") != "x"
    records.close()
