"""Stores that already hold the shipped content, without loading it again for every test.

Loading the shipped content (Questionnaires, PlanDefinitions, SearchParameters, ConceptMaps...)
validates and indexes a few hundred resources: about 2.5 s of CPU on SQLite and about 1 s on
mongomock, per test that asks for it. Each kind of store is loaded once per test process through
the real start-up path, and each test gets its own copy: a copy of the SQLite file, or a new
mongomock server holding a copy of every collection and its indexes. The server under test still
runs its own start-up on the copy, which finds the content in place (the digests kept in the
store's meta table match) and writes nothing, exactly as on a restart of a deployment.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from fhir_server import app as app_module
from fhir_server.app import ServerApp
from fhir_server.store.mongo import MongoStore
from tests.conftest import make_settings
from tests.mongomock_async import AsyncMockClient, MockServer

MONGOMOCK_URL = "mongodb://mongomock.invalid/contract"

# (store kind, load_terminology) -> the SQLite template file or the template mongomock server
_TEMPLATES: dict[tuple[str, bool], Any] = {}


async def _load(settings_dir: Path, store: str, terminology: bool, factory: Any = None) -> None:
    settings = make_settings(
        settings_dir, store=store, load_content=True, load_terminology=terminology
    )
    original = app_module.open_store
    if factory is not None:
        app_module.open_store = lambda url, **_: MongoStore(url, client_factory=factory)  # type: ignore[assignment]
    try:
        server = ServerApp(settings)
    finally:
        app_module.open_store = original  # type: ignore[assignment]
    await server.startup()
    await server.service.search_parameters.wait_idle()
    await server.shutdown()


async def sqlite_with_content(database: Path, *, terminology: bool = False) -> None:
    """Put a SQLite store holding the shipped content at ``database``."""
    key = ("sqlite", terminology)
    template = _TEMPLATES.get(key)
    if template is None:
        folder = Path(tempfile.mkdtemp(prefix="fhir-content-template-"))
        template = folder / "fhir.db"
        await _load(folder, f"sqlite:///{template}", terminology)
        _TEMPLATES[key] = template
    database.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(template, database)


async def mongomock_with_content(*, terminology: bool = False) -> MockServer:
    """A new mongomock server holding the shipped content (open it with ``server.client``)."""
    key = ("mongomock", terminology)
    template = _TEMPLATES.get(key)
    if template is None:
        template = MockServer()
        await _load(Path(tempfile.mkdtemp()), MONGOMOCK_URL, terminology, template.client)
        _TEMPLATES[key] = template
    return clone(template)


def clone(source: MockServer) -> MockServer:
    """A new server with a copy of every database, collection, document and index of ``source``."""
    target = MockServer(source.topology)
    for database_name in source.sync.list_database_names():
        for name in source.sync[database_name].list_collection_names():
            original = source.sync[database_name][name]
            copy = target.sync[database_name][name]
            documents = list(original.find())  # mongomock hands out copies
            if documents:
                copy.insert_many(documents)
            for index_name, info in original.index_information().items():
                if index_name == "_id_":
                    continue
                options = {k: v for k, v in info.items() if k not in ("key", "v", "ns")}
                copy.create_index(info["key"], name=index_name, **options)
    return target


def mongomock_factory(server: MockServer) -> Any:
    """A ``client_factory`` for the MongoDB store that opens ``server``."""
    return lambda uri="", **options: AsyncMockClient(uri, server=server, **options)
