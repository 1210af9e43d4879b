"""The pathway fixtures run on the store kinds the contract suite lists: with MONGODB_URI set, the
``mongodb`` kind is the real server (PyMongo's driver), not mongomock (tools/mongo_live.py runs
the live suite that way)."""

from __future__ import annotations

from pathlib import Path

import pytest

from fhir_server.store.mongo import MongoStore
from fhir_server.store.sqlite import SqliteStore
from tests.mongomock_async import AsyncMockClient
from tests.pathways import conftest


@pytest.mark.parametrize("kind", ["sqlite", "mongomock", "mongodb"])
def test_each_store_kind_gets_its_own_store_and_driver(
    kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("MONGODB_URI", "mongodb://db.example:27017/?replicaSet=rs0")
    built: list = []
    original = conftest.ServerApp

    class Recorder(original):  # type: ignore[misc,valid-type]
        def __init__(self, settings: object) -> None:
            super().__init__(settings)
            built.append(self)

        async def startup(self) -> None:  # no server to reach here: the store is what counts
            return None

    monkeypatch.setattr(conftest, "ServerApp", Recorder)
    import asyncio

    asyncio.run(conftest.make_app(kind, tmp_path))
    store = built[0].store
    if kind == "sqlite":
        assert isinstance(store, SqliteStore)
    elif kind == "mongomock":
        assert isinstance(store, MongoStore) and store._client_factory is AsyncMockClient
    else:
        assert isinstance(store, MongoStore) and store._client_factory is not AsyncMockClient
        assert "db.example" in store.config.display
