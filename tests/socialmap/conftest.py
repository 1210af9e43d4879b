"""A server with the social map (shipped content, terminology, the demo social map) on each
store: SQLite, and the MongoDB store on mongomock (tests/contract/conftest.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio

from fhir_server import app as app_module
from fhir_server.app import ServerApp
from fhir_server.store.mongo import MongoStore
from tests.conftest import TEST_BASE, make_settings
from tests.contract.conftest import STORES, store_url
from tests.mongomock_async import AsyncMockClient

DATA = Path(__file__).parent / "data"


async def start(
    tmp_path: Path, kind: str, monkeypatch: pytest.MonkeyPatch, demo: bool
) -> ServerApp:
    if kind == "mongomock":

        def mongo_store(url: str, **_: object) -> MongoStore:
            return MongoStore(url, client_factory=AsyncMockClient)

        monkeypatch.setattr(app_module, "open_store", mongo_store)
    settings = make_settings(
        tmp_path,
        store=store_url(kind, tmp_path),
        load_content=True,
        load_terminology=False,  # the packaged terminology is used all the same
    )
    server = ServerApp(settings, load_demo=demo)
    await server.startup()
    await server.service.search_parameters.wait_idle()
    return server


@pytest_asyncio.fixture(params=STORES, scope="module", loop_scope="module")
async def social_app(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[ServerApp]:
    """One server with the demo social map per store, shared by a module's read-only tests
    (loading it on mongomock takes seconds)."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        server = await start(tmp_path_factory.mktemp("social"), request.param, monkeypatch, True)
        try:
            yield server
        finally:
            await server.shutdown()


@pytest.fixture(params=STORES)
async def empty_app(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[ServerApp]:
    server = await start(tmp_path, request.param, monkeypatch, demo=False)
    try:
        yield server
    finally:
        await server.shutdown()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def http(social_app: ServerApp) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=social_app)
    async with httpx.AsyncClient(transport=transport, base_url=TEST_BASE) as client:
        yield client
