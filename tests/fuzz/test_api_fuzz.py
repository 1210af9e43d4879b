"""Seeded fuzzing of the FHIR API in process: no input may cause a 500, every error is an
OperationOutcome, nothing is logged as an unhandled error, and a refused write or a failed
transaction writes nothing.

The default run is short (a few seconds per test) and deterministic. A longer campaign is one
command away, with other seeds:

    FUZZ_REQUESTS=50000 FUZZ_SEED=7 ./scripts/test tests/fuzz

A failure prints the seed and the request, so it can be replayed.
"""

from __future__ import annotations

import json
import logging
import os
import random
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from fhir_server import app as app_module
from fhir_server.app import ServerApp
from fhir_server.store.mongo import MongoStore
from tests.conftest import TEST_BASE, make_settings
from tests.contract.conftest import STORES, client_factory, store_url
from tests.fuzz.generators import (
    FuzzRequest,
    bundle,
    operation_request,
    patch_request,
    patient,
    rest_request,
    search_request,
)

SEED = int(os.environ.get("FUZZ_SEED", "20261124"))
SCALE = int(os.environ.get("FUZZ_REQUESTS", "0"))  # 0: the defaults below


# The MongoDB store runs on mongomock here, which evaluates every filter and pipeline in Python
# over every document: a quarter of the requests keeps the suite in its time budget while the
# SQLite run carries the full count (FUZZ_REQUESTS sets both).
STORE_SHARE = {"mongomock": 4, "mongofaults": 4}
_share = 1


def budget(default: int) -> int:
    return SCALE or max(1, default // _share)


def least(count: int) -> int:
    """A floor on how often an outcome is seen, for the requests this store is sent."""
    # (half the proportional share: fewer requests vary more)
    return count if SCALE or _share == 1 else count // (2 * _share)


class ErrorLog(logging.Handler):
    """Collects what the server logs at ERROR (an unhandled exception on a request)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def server_errors() -> Iterator[ErrorLog]:
    handler = ErrorLog()
    logger = logging.getLogger("fhir_server")
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


# the MongoDB store with faults injected is fuzzed on demand (FUZZ_FAULTS=1, ~3 minutes more):
# the writing half of the contract suite runs under faults always (tests/contract/conftest.py)
FUZZ_STORES = [*STORES, *(["mongofaults"] if os.environ.get("FUZZ_FAULTS") else [])]


@pytest.fixture(params=FUZZ_STORES)
async def fuzz_client(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[httpx.AsyncClient, ServerApp]]:
    """The app on each store of the contract suite (SQLite, the MongoDB store on mongomock, and
    a real MongoDB when MONGODB_URI is set)."""
    global _share
    _share = STORE_SHARE.get(request.param, 1)
    factory = client_factory(request.param, request.node.name)
    if factory is not None:  # mongomock, with faults injected for mongofaults
        monkeypatch.setattr(
            app_module, "open_store", lambda url, **_: MongoStore(url, client_factory=factory)
        )
    settings = make_settings(
        tmp_path, load_terminology=True, store=store_url(request.param, tmp_path)
    )
    app = ServerApp(settings)
    await app.startup()
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=TEST_BASE) as client:
            yield client, app
    finally:
        await app.shutdown()


async def send(client: httpx.AsyncClient, request: FuzzRequest) -> httpx.Response:
    return await client.request(
        request.method, request.url, headers=request.headers, content=request.body
    )


def check(response: httpx.Response, request: FuzzRequest, errors: ErrorLog, seed: int) -> None:
    where = f"seed {seed}: {request.describe()}"
    assert response.status_code < 500, f"{response.status_code} for {where}\n{response.text[:500]}"
    if response.status_code >= 400 and request.method != "HEAD":
        outcome = response.json()
        assert outcome.get("resourceType") == "OperationOutcome", where
        assert "Traceback" not in response.text, where
    assert not errors.records, f"logged {errors.records[0].getMessage()[:200]} for {where}"


async def seed_patients(client: httpx.AsyncClient, rnd: random.Random, count: int) -> list[str]:
    ids = []
    for i in range(count):
        created = await client.post("/Patient", json=patient(rnd, i))
        assert created.status_code == 201, created.text
        ids.append(created.json()["id"])
    return ids


async def newest_version(client: httpx.AsyncClient) -> str:
    """The newest entry of the system history: it changes with every write."""
    history = await client.get("/_history", params={"_count": "1"})
    assert history.status_code == 200, history.text
    entry = history.json()["entry"][0]
    return json.dumps([entry["fullUrl"], entry.get("response"), entry.get("request")])


async def test_any_request_gets_a_fhir_answer_never_a_500(fuzz_client, server_errors) -> None:
    client, _ = fuzz_client
    rnd = random.Random(SEED)
    ids = await seed_patients(client, rnd, 10)
    seen: Counter[int] = Counter()
    for n in range(budget(2500)):
        request = rest_request(rnd, ids, n)
        writes = request.method in ("POST", "PUT", "PATCH", "DELETE")
        before = await newest_version(client) if writes else None
        response = await send(client, request)
        check(response, request, server_errors, SEED)
        seen[response.status_code] += 1
        if writes and response.status_code >= 400:
            after = await newest_version(client)
            assert after == before, f"a {response.status_code} wrote: {request.describe()}"
        if response.status_code == 201 and request.url.startswith("/Patient"):
            ids.append(response.json().get("id", "x") if response.content else "x")
    # the fuzzer reaches past the front door: writes and reads succeed, as do refusals
    assert seen[200] > least(50) and seen[201] > least(20) and seen[400] > least(100), seen


async def test_any_search_gets_a_fhir_answer_never_a_500(fuzz_client, server_errors) -> None:
    client, app = fuzz_client
    rnd = random.Random(SEED + 1)
    ids = await seed_patients(client, rnd, 5)
    for pid in ids:
        observation = {
            "resourceType": "Observation", "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "1234-5"}]},
            "subject": {"reference": f"Patient/{pid}"}, "effectiveDateTime": "2024-05-05",
            "valueQuantity": {"value": 5.4, "system": "http://unitsofmeasure.org", "code": "mg"},
        }  # fmt: skip
        assert (await client.post("/Observation", json=observation)).status_code == 201
    seen: Counter[int] = Counter()
    for _ in range(budget(1500)):
        request = search_request(rnd, app.service.registry.params_for, ids)
        response = await send(client, request)
        check(response, request, server_errors, SEED + 1)
        seen[response.status_code] += 1
        if response.status_code == 200 and rnd.random() < 0.3:
            links = [x["url"] for x in response.json().get("link", []) if x["relation"] == "next"]
            if links:
                page = FuzzRequest("GET", links[0])
                check(await send(client, page), page, server_errors, SEED + 1)
    assert seen[200] > least(300) and seen[400] > least(300), seen


async def test_failed_transactions_write_nothing_and_batches_answer_per_entry(
    fuzz_client, server_errors
) -> None:
    client, _ = fuzz_client
    rnd = random.Random(SEED + 2)
    ids = await seed_patients(client, rnd, 5)
    seen: Counter[str] = Counter()

    for _ in range(budget(600)):
        body = bundle(rnd, ids)
        request = FuzzRequest(
            "POST", "/", {"content-type": "application/fhir+json"}, json.dumps(body).encode()
        )
        before = await newest_version(client)
        response = await send(client, request)
        check(response, request, server_errors, SEED + 2)
        seen[f"{body['type']} {response.status_code}"] += 1
        if body["type"] == "transaction" and response.status_code >= 400:
            assert await newest_version(client) == before, (
                f"partial transaction: {request.describe()}"
            )
        if response.status_code == 200:
            for entry in response.json().get("entry", []):
                status = entry["response"]["status"]
                assert not status.startswith("5"), f"{status} in {request.describe()}"
                if status.startswith("4"):
                    assert entry["response"]["outcome"]["resourceType"] == "OperationOutcome"
                location = entry["response"].get("location", "")
                if location.startswith("Patient/") and len(ids) < 40:
                    ids.append(location.split("/")[1])
    assert seen["transaction 200"] > least(20) and seen["batch 200"] > least(50), seen


async def test_any_operation_call_gets_a_fhir_answer_never_a_500(fuzz_client, server_errors):
    client, app = fuzz_client
    rnd = random.Random(SEED + 3)
    pid = (await seed_patients(client, rnd, 1))[0]
    operations = sorted(app.fhir.operations)
    seen: Counter[int] = Counter()
    for _ in range(budget(1500)):
        request = operation_request(rnd, operations, pid)
        response = await send(client, request)
        check(response, request, server_errors, SEED + 3)
        seen[response.status_code] += 1
    # a tenth of the calls succeed; $populate and $extract (screening) need a stored
    # Questionnaire, which the fuzzed store has not, so they answer 400/404 here
    assert seen[200] > least(100), seen


async def test_patches_never_fail_half_way_nor_store_an_invalid_resource(
    fuzz_client, server_errors
) -> None:
    """FHIRPath Patch, JSON Patch and merge-patch on a fresh Patient each time: a refused patch
    leaves version 1 in place, and an accepted one stores a resource that validates."""
    client, _ = fuzz_client
    rnd = random.Random(SEED + 4)
    seen: Counter[int] = Counter()
    for _ in range(budget(800)):
        pid = (await seed_patients(client, rnd, 1))[0]
        request = patch_request(rnd, pid)
        response = await send(client, request)
        check(response, request, server_errors, SEED + 4)
        seen[response.status_code] += 1
        stored = (await client.get(f"/Patient/{pid}")).json()
        if response.status_code >= 400:
            assert stored["meta"]["versionId"] == "1", (
                f"a refused patch wrote: {request.describe()}"
            )
            continue
        validation = await client.post("/Patient/$validate", json=stored)
        errors = [i for i in validation.json()["issue"] if i["severity"] in ("error", "fatal")]
        assert not errors, f"{errors} after {request.describe()}"
    assert seen[200] > least(80) and seen[400] > least(80) and seen[422] > least(80), seen
