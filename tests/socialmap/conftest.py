"""A server with the social map (shipped content, terminology, the demo social map) on each
store: SQLite, and the MongoDB store on mongomock (tests/contract/conftest.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio

from fhir_server import app as app_module
from fhir_server import demo as demo_package
from fhir_server.app import ServerApp
from fhir_server.demo import load_file
from fhir_server.store.mongo import MongoStore
from tests.conftest import TEST_BASE, make_settings
from tests.contract.conftest import STORES, store_url
from tests.mongomock_async import AsyncMockClient

DATA = Path(__file__).parent / "data"
DEMO_SOCIAL_MAP = Path(demo_package.__file__).parent / "30-social-map.json"


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
    server = ServerApp(settings)
    await server.startup()
    await server.service.search_parameters.wait_idle()
    if demo:  # the demo social map alone: the other demo files (pathways: a minute on
        # mongomock) are other capabilities' and tested there
        await load_demo(server)
    return server


async def load_demo(server: ServerApp) -> None:
    """The demo social map, as ``./scripts/serve`` loads it (load_file: a batch Bundle).

    The subscription engine is paused meanwhile and resumed after (it then matches the
    outbox, nobody subscribes): its matcher wakes at every commit and reads the store while the
    next entry's unit is open, and the mongomock harness answers such a read from a deep copy
    of the whole collection (tests/mongomock_async.py ``view``): 267 entries cost ~85 s of CPU
    that way, ~3 s without. The social-map tests do not exercise subscriptions."""
    engine = getattr(server.service, "subscriptions", None)
    if engine is not None:
        await engine.stop()
    try:
        await load_file(server.service, str(DEMO_SOCIAL_MAP))
    finally:
        if engine is not None:
            await engine.start()


@pytest_asyncio.fixture(params=STORES, scope="session", loop_scope="session")
async def social_app(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[ServerApp]:
    """One server with the demo social map per store, built once per test session and shared
    by the read-only tests of test_demo.py and test_search.py (their modules run in the
    session's event loop, where the server lives)."""
    with pytest.MonkeyPatch.context() as monkeypatch:  # undone once the store is open
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


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def http(social_app: ServerApp) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=social_app)
    async with httpx.AsyncClient(transport=transport, base_url=TEST_BASE) as client:
        yield client
