"""The HTTP interaction suites of tests/http, run once more on the MongoDB store (mongomock).

The store contract (test_store_protocol, test_search_*) covers the storage protocol and every
search; CRUD, conditional interactions, versioning, history, PATCH and batch/transaction Bundles
are checked through HTTP in tests/http against the embedded store. This module collects those
same test functions again with the ``app`` fixture replaced by a server on the MongoDB store (the
same store code as in production, its queries executed by mongomock through
tests/mongomock_async.py), so both stores answer the same HTTP contract.

With MONGODB_URI set (tests/contract/conftest.py), they also run against that real MongoDB.
Tests that build their own server (a restart, a small body limit) are about the server, not the
store, and stay with tests/http.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from fhir_server import app as app_module
from fhir_server.app import ServerApp
from fhir_server.store.mongo import MongoStore
from tests.conftest import make_settings
from tests.contract.conftest import CONTRACT_STORES, client_factory, record, store_url

MODULES = (
    "test_bundles",
    "test_conditional",
    "test_crud",
    "test_history",
    "test_metadata",
    "test_negotiation_and_errors",
    "test_patch",
    "test_search_parameter_lifecycle",
    "test_validation",
    "test_versioning",
)


def _own_server(function: Any) -> bool:
    source = inspect.getsource(function)
    return "ServerApp(" in source or "small_client" in inspect.signature(function).parameters


def _is_fixture(value: Any) -> bool:
    return hasattr(value, "_fixture_function_marker") or hasattr(value, "_pytestfixturefunction")


def _collect() -> dict[str, Any]:
    found: dict[str, Any] = {}
    for name in MODULES:
        module = importlib.import_module(f"tests.http.{name}")
        for attribute, value in vars(module).items():
            if _is_fixture(value):
                found[attribute] = value  # module fixtures (capabilities, jane...)
            elif (
                attribute.startswith("test_")
                and inspect.isfunction(value)
                and value.__module__ == module.__name__
                and not _own_server(value)
            ):
                found[f"test_{name[5:]}__{attribute[5:]}"] = value
    return found


globals().update(_collect())


@pytest.fixture(params=[kind for kind in CONTRACT_STORES if kind != "sqlite"])
async def app(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[ServerApp]:
    factory = client_factory(request.param, request.node.name)
    if factory is not None:

        def mongo_store(url: str, **_: object) -> MongoStore:
            return MongoStore(url, client_factory=factory)

        monkeypatch.setattr(app_module, "open_store", mongo_store)
    server = ServerApp(make_settings(tmp_path, store=store_url(request.param, tmp_path)))
    assert isinstance(server.store, MongoStore)
    await server.startup()
    mock = getattr(server.store._client, "mock_server", None)
    try:
        yield server
    finally:
        await server.shutdown()
        if request.param == "mongomock":
            record(request.node.nodeid, mock)
