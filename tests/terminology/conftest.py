"""Fixtures for the terminology tests: the ``client`` fixture of tests/conftest.py, on a server
that loads the shipped terminology into its store at start-up (as production does).

Loading is done once per session into a template database, which each test copies: the start-up
then finds the release already loaded (which is also what a restarted server does).
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from fhir_server.app import ServerApp
from tests.conftest import make_settings


@pytest.fixture(scope="session")
def loaded_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("terminology-template")

    async def build() -> None:
        server = ServerApp(make_settings(folder, load_terminology=True))
        await server.startup()
        await server.shutdown()

    asyncio.run(build())
    return folder


@pytest.fixture
async def app(tmp_path: Path, loaded_store: Path) -> AsyncIterator[ServerApp]:
    for path in loaded_store.glob("fhir.db*"):
        shutil.copy(path, tmp_path / path.name)
    server = ServerApp(make_settings(tmp_path, load_terminology=True))
    await server.startup()
    try:
        yield server
    finally:
        await server.shutdown()
