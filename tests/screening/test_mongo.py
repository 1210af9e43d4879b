"""The screening suites once more on the MongoDB store (mongomock; a real MongoDB with
MONGODB_URI, see tests/contract/conftest.py): scoring, the protocol's Tasks and alerts, the
extraction and the validation use the unit of work, committed searches and the commit listener
of whichever store runs."""

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
from tests.contract.conftest import STORES, store_url
from tests.preloaded import mongomock_factory, mongomock_with_content

MODULES = ("test_scoring", "test_protocol", "test_extraction", "test_validation")


def _collect() -> dict[str, Any]:
    found: dict[str, Any] = {}
    for name in MODULES:
        module = importlib.import_module(f"tests.screening.{name}")
        for attribute, value in vars(module).items():
            if (
                attribute.startswith("test_")
                and inspect.isfunction(value)
                and value.__module__ == module.__name__
            ):
                found[f"test_{name[5:]}__{attribute[5:]}"] = value
    return found


globals().update(_collect())


@pytest.fixture(params=[kind for kind in STORES if kind != "sqlite"])
async def app(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[ServerApp]:
    if request.param == "mongomock":
        factory = mongomock_factory(await mongomock_with_content())

        def mongo_store(url: str, **_: object) -> MongoStore:
            return MongoStore(url, client_factory=factory)

        monkeypatch.setattr(app_module, "open_store", mongo_store)
    settings = make_settings(tmp_path, store=store_url(request.param, tmp_path), load_content=True)
    server = ServerApp(settings)
    assert isinstance(server.store, MongoStore)
    await server.startup()
    try:
        yield server
    finally:
        await server.shutdown()
