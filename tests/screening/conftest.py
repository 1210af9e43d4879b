"""A server with the shipped screening content (content/screening) and a few patients."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from fhir_server.app import ServerApp
from tests.conftest import make_settings
from tests.preloaded import sqlite_with_content

PEOPLE = [
    {"resourceType": "Practitioner", "id": "mw-1", "name": [{"family": "Midwife"}]},
    {"resourceType": "Practitioner", "id": "gp-1", "name": [{"family": "Doctor"}]},
    {"resourceType": "Patient", "id": "p1", "birthDate": "1994-05-01", "gender": "female",
     "generalPractitioner": [{"reference": "Practitioner/gp-1"}]},
    {"resourceType": "Patient", "id": "p2", "birthDate": "1990-01-01", "gender": "female"},
]  # fmt: skip


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[ServerApp]:
    await sqlite_with_content(tmp_path / "fhir.db")
    server = ServerApp(make_settings(tmp_path, load_content=True))
    await server.startup()
    try:
        yield server
    finally:
        await server.shutdown()


@pytest.fixture
async def fhir(client: httpx.AsyncClient) -> httpx.AsyncClient:
    """The HTTP client, with the practitioners and patients of PEOPLE stored."""
    for resource in PEOPLE:
        response = await client.put(f"/{resource['resourceType']}/{resource['id']}", json=resource)
        assert response.status_code in (200, 201), response.text
    return client


async def search(client: httpx.AsyncClient, path: str) -> list[dict]:
    response = await client.get(path)
    assert response.status_code == 200, response.text
    return [
        e["resource"] for e in response.json().get("entry", []) if e["search"]["mode"] == "match"
    ]
