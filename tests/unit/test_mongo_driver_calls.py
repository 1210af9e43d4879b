"""Every call the MongoDB store makes through the test adapter fits PyMongo's real async API.

mongomock runs the store's queries, but the adapter (tests/mongomock_async.py) would accept a
keyword PyMongo does not know. So a workload that reaches every driver call of the store (HTTP
interactions, a transaction Bundle, searches with chains, _has, includes and sorts, history,
pruning, index maintenance) runs on the adapter, which logs each call, and each logged call is
then bound to the signature of the real AsyncMongoClient / AsyncDatabase / AsyncCollection /
AsyncClientSession / AsyncCursor method; the store URL's options are given to a real
AsyncMongoClient.
"""

from __future__ import annotations

import inspect
from pathlib import Path

import httpx
import pytest
from pymongo import AsyncMongoClient
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.command_cursor import AsyncCommandCursor
from pymongo.asynchronous.cursor import AsyncCursor
from pymongo.asynchronous.database import AsyncDatabase

from fhir_server import app as app_module
from fhir_server.app import ServerApp
from fhir_server.service.versioning import now_us
from fhir_server.store.mongo import MongoStore
from fhir_server.store.mongo.config import parse_url
from tests.conftest import TEST_BASE, make_settings
from tests.mongomock_async import MockServer

REAL = {
    "AsyncMockClient": AsyncMongoClient,
    "AsyncMockDatabase": AsyncDatabase,
    "AsyncMockCollection": AsyncCollection,
    "MockSession": AsyncClientSession,
    "MockCursor": AsyncCursor,
}
# documented options of aggregate() that PyMongo passes through **kwargs
AGGREGATE_OPTIONS = {"allowDiskUse", "maxTimeMS", "batchSize", "collation", "hint"}
# documented options that count_documents passes to its command
OPTIONS = {"aggregate": AGGREGATE_OPTIONS, "count_documents": {"maxTimeMS", "limit", "skip"}}

BUNDLE = {
    "resourceType": "Bundle",
    "type": "transaction",
    "entry": [
        {
            "fullUrl": "urn:uuid:11111111-1111-4111-8111-111111111111",
            "resource": {"resourceType": "Organization", "name": "Acme"},
            "request": {"method": "POST", "url": "Organization"},
        },
        {
            "fullUrl": "urn:uuid:22222222-2222-4222-8222-222222222222",
            "resource": {
                "resourceType": "Patient",
                "name": [{"family": "Peeters"}],
                "birthDate": "1990-05-01",
                "managingOrganization": {
                    "reference": "urn:uuid:11111111-1111-4111-8111-111111111111"
                },
            },
            "request": {"method": "POST", "url": "Patient"},
        },
        {
            "resource": {
                "resourceType": "Observation",
                "status": "final",
                "code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
                "subject": {"reference": "urn:uuid:22222222-2222-4222-8222-222222222222"},
                "valueQuantity": {"value": 120, "system": "http://unitsofmeasure.org"},
            },
            "request": {"method": "POST", "url": "Observation"},
        },
    ],
}

SEARCHES = [
    "Patient?name=peeters&_total=accurate",
    "Patient?_sort=-birthdate,name&_count=1",
    "Patient?_sort=-_lastUpdated",
    "Observation?subject:Patient.organization.name=acme",
    "Patient?_has:Observation:subject:code=8480-6",
    "Observation?_include=Observation:subject&_revinclude=Provenance:target",
    "Patient?_revinclude=Observation:subject",
    "Observation?code-value-quantity=8480-6$120",
    "Patient?birthdate=ge1990&_id:not=x",
    "Patient/_history?_count=1",
    "_history?_since=2000-01-01",
]


@pytest.fixture
def server() -> MockServer:
    return MockServer()


async def test_store_calls_fit_pymongo(server: MockServer, tmp_path: Path, monkeypatch):
    monkeypatch.setattr(
        app_module, "open_store", lambda url, **_: MongoStore(url, client_factory=server.client)
    )
    url = "mongodb://mock/fhir?drop_on_close=true"
    app = ServerApp(make_settings(tmp_path, store=url))
    await app.startup()
    store = app.store
    assert isinstance(store, MongoStore)
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=TEST_BASE) as client:
            assert (await client.post("", json=BUNDLE)).status_code == 200
            patient = (await client.get("/Patient")).json()["entry"][0]["resource"]
            pid = patient["id"]
            patient["gender"] = "female"
            assert (await client.put(f"/Patient/{pid}", json=patient)).status_code == 200
            assert (await client.get(f"/Patient/{pid}/_history/1")).status_code == 200
            headers = {"If-None-Exist": "family=peeters"}
            created = await client.post("/Patient", json=patient, headers=headers)
            assert created.status_code == 200
            for query in SEARCHES:
                response = await client.get(f"/{query}")
                assert response.status_code == 200, (query, response.text)
                links = {link["relation"]: link["url"] for link in response.json()["link"]}
                if "next" in links:
                    assert (await client.get(links["next"])).status_code == 200
            assert (await client.delete(f"/Patient/{pid}")).status_code in (200, 204)
        versions, _ = await store.current_versions(("Observation",), None, 10)
        assert await store.count_current(("Observation",)) == len(versions) == 1
        await store.prune_snapshots(now_us() + 10_000_000)
        await store.drop_index_rows([("Observation", "code")])
        assert (await store.health())["status"] == "ok"
    finally:
        await app.shutdown()

    assert server.calls, "nothing was logged"
    for owner, name, args, kwargs in server.calls:
        real = REAL[owner]
        if owner == "AsyncMockCollection" and name in ("find", "find_one"):
            target = AsyncCursor.__init__  # find_one(filter, *args, **kwargs) -> find -> cursor
            arguments = (None, None, *args)  # self, collection
        elif (owner, name) == ("AsyncMockClient", "admin"):
            assert hasattr(AsyncMongoClient, "__getattr__")  # client.<name> is that database
            continue
        else:
            member = inspect.getattr_static(real, name, None)
            assert member is not None, f"{real.__name__} has no {name}"
            if isinstance(member, property):
                continue
            target = member
            arguments = (None, *args)
        signature = inspect.signature(target)
        bound = signature.bind(*arguments, **kwargs)  # TypeError if wrong
        # keywords that only a **kwargs catch-all accepts are suspect (a misspelt option)
        extra = {
            key
            for parameter in signature.parameters.values()
            if parameter.kind is inspect.Parameter.VAR_KEYWORD
            for key in bound.arguments.get(parameter.name, {})
        }
        allowed = OPTIONS.get(name, set())
        assert extra <= allowed, f"{owner}.{name}: unknown options {extra - allowed}"
    called = {(owner, name) for owner, name, _, _ in server.calls}
    assert {("MockSession", "commit_transaction"), ("AsyncMockCollection", "aggregate")} <= called
    assert ("MockCursor", "to_list") in called
    assert hasattr(AsyncCommandCursor, "to_list")  # aggregate() returns a command cursor


def test_url_options_are_accepted_by_the_real_client():
    config = parse_url("mongodb://h1,h2/fhir?replicaSet=rs0&database=x&staged_limit=9&w=1")
    client = AsyncMongoClient(config.uri, **dict(config.driver_options))  # does not connect
    assert client.options.server_selection_timeout == 10
    assert client.options.replica_set_name == "rs0"
    assert client.write_concern.document == {"w": 1}
