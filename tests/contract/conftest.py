"""The store contract suite runs against every store implementation.

``sqlite`` and ``mongomock`` (the MongoDB store on mongomock through tests/mongomock_async.py: the
same store code, its queries executed by mongomock) always run, and so does ``mongofaults``: the
MongoDB store on mongomock with one transactional operation or commit in eight failing the way a
failover, a WriteConflict, the transaction lifetime or a lost commit reply fail on MongoDB (the
store must retry whole transactions and every test must still pass), for the suites where a
fault can change the outcome (``FAULT_MODULES`` below; ``FHIR_ALL_FAULTS=1``: every test).
``mongodb`` runs when MONGODB_URI points at a real MongoDB (a replica set, for transactions),
e.g. against docker/compose.yaml::

    MONGODB_URI="mongodb://localhost:27017/?directConnection=true" pytest tests/contract -k mongodb
"""

from __future__ import annotations

import os
import zlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from fhir_server.service.core import FhirService
from fhir_server.store import open_store
from fhir_server.store.protocol import Store
from tests.conftest import make_settings
from tests.mongomock_async import AsyncMockClient, Faults, MockServer

# the stores every suite runs on (the plug-in suites import this list too)
STORES = ["sqlite", "mongomock"]
FAULT_RATE = 0.125
if os.environ.get("MONGODB_URI"):
    STORES.append("mongodb")
# the contract suite also runs on the MongoDB store with faults injected
CONTRACT_STORES = [*STORES[:2], "mongofaults", *STORES[2:]]


def store_url(kind: str, tmp_path: Path) -> str:
    if kind == "sqlite":
        return f"sqlite:///{tmp_path / 'contract.db'}"
    if kind in ("mongomock", "mongofaults"):
        return "mongodb://mongomock.invalid/contract"
    uri = os.environ["MONGODB_URI"]
    database = f"fhir_contract_{os.getpid()}_{abs(hash(tmp_path)) % 10_000_000}"
    separator = "&" if "?" in uri else "?"
    return f"{uri}{separator}database={database}&drop_on_close=true"


def client_factory(kind: str, seed: str) -> object:
    """The driver for a store kind (None: PyMongo's own)."""
    if kind == "mongomock":
        return AsyncMockClient
    if kind == "mongofaults":
        server = MockServer()
        server.faults = Faults(seed=zlib.crc32(seed.encode()), rate=FAULT_RATE)
        return server.client
    return None


# the queries the MongoDB store ran on mongomock, per test (test_zz_index_bounds.py checks them)
RECORDED: list[tuple[str, dict]] = []
# with MONGODB_URI and FHIR_BOUNDS_DUMP: the commands sent to the real server (for the explain
# pass of tools/mongo_live.py)
SENT: list[dict] = []


if os.environ.get("FHIR_BOUNDS_DUMP") and os.environ.get("MONGODB_URI"):
    from pymongo import monitoring

    class _Sent(monitoring.CommandListener):
        def started(self, event: monitoring.CommandStartedEvent) -> None:
            command = event.command
            if event.command_name in ("find", "aggregate") and command.get(event.command_name) in (
                "versions",
                1,
            ):
                SENT.append(dict(command))

        def succeeded(self, event: object) -> None:
            pass

        def failed(self, event: object) -> None:
            pass

    monitoring.register(_Sent())


# The fault-injected pass runs where faults can change the outcome: the store protocol (units of
# work, conflicts, concurrency), paging and plans while others write, and the HTTP interactions
# that write (CRUD, conditional, versioning, PATCH, history, batch and transaction Bundles).
# Faults hit transactions only (searches read in snapshot sessions, never in a transaction), so
# in the pure search suites they would only hit the set-up writes, which the suites above cover;
# those run without faults to keep the CI budget. FHIR_ALL_FAULTS=1 runs every test with faults.
FAULT_MODULES = ("test_store_protocol", "test_search_results", "test_search_plans")
FAULT_HTTP = ("bundles", "conditional", "crud", "history", "patch", "versioning")


def with_faults(item: pytest.Item) -> bool:
    module = item.module.__name__.rsplit(".", 1)[-1]  # type: ignore[attr-defined]
    if module == "test_mongo_http":
        return item.name.split("__")[0].removeprefix("test_") in FAULT_HTTP
    return module in FAULT_MODULES


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get("FHIR_ALL_FAULTS"):
        return
    dropped = [
        item
        for item in items
        if "[mongofaults" in item.nodeid
        and item.nodeid.startswith("tests/contract/")
        and not with_faults(item)
    ]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        keep = {id(item) for item in dropped}
        items[:] = [item for item in items if id(item) not in keep]


def record(test: str, server: object) -> None:
    for query in getattr(server, "queries", ()):
        RECORDED.append((test, query))


def pytest_sessionfinish(session: pytest.Session) -> None:
    """With FHIR_BOUNDS_DUMP set, write the recorded queries there (test_zz_index_bounds.py
    runs the suite that way when it runs alone)."""
    target = os.environ.get("FHIR_BOUNDS_DUMP")
    if target:
        import orjson

        Path(target).write_bytes(
            orjson.dumps(RECORDED, default=str, option=orjson.OPT_NON_STR_KEYS)
        )
        if SENT:
            from bson import json_util

            Path(target + ".sent.json").write_text(json_util.dumps(SENT))


@pytest.fixture(params=CONTRACT_STORES)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    factory = client_factory(request.param, request.node.name)
    options = {"client_factory": factory} if factory is not None else {}
    instance = open_store(store_url(request.param, tmp_path), **options)
    await instance.open()
    server = getattr(getattr(instance, "_client", None), "mock_server", None)
    try:
        yield instance
    finally:
        await instance.close()
        if request.param == "mongomock":
            record(request.node.nodeid, server)


@pytest.fixture
def service(store: Store, tmp_path: Path) -> FhirService:
    return FhirService(make_settings(tmp_path, store="sqlite:///unused"), store)
