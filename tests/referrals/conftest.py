from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.referrals.world import World


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    instance = await World(tmp_path).start()
    try:
        yield instance
    finally:
        await instance.stop()


@pytest.fixture(params=["sqlite", "mongomock"])
async def any_store_world(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[World]:
    instance = await World(tmp_path, store=request.param).start()
    try:
        yield instance
    finally:
        await instance.stop()
