"""Stored SearchParameters: usable after a background back-fill, visible in /metadata, survive a
restart, can be changed and deleted — no manual reindex."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

from fhir_server.app import ServerApp
from tests.conftest import TEST_BASE, make_settings

WEEK_URL = "https://borninbelgiumpro.be/fhir/StructureDefinition/gestational-week-at-screening"
SEARCH_PARAMETER = {
    "resourceType": "SearchParameter",
    "id": "gestational-week",
    "url": "https://borninbelgiumpro.be/fhir/SearchParameter/gestational-week",
    "name": "gestational-week",
    "status": "active",
    "description": "Gestational week at which the screening was done",
    "code": "gestational-week",
    "base": ["Patient"],
    "type": "number",
    "expression": f"Patient.extension('{WEEK_URL}').value",
}


def patient(week: int) -> dict:
    return {
        "resourceType": "Patient",
        "name": [{"family": f"W{week}"}],
        "extension": [{"url": WEEK_URL, "valueInteger": week}],
    }


async def wait_indexed(client: httpx.AsyncClient, sp_id: str) -> dict:
    for _ in range(200):
        status = (await client.get(f"/SearchParameter/{sp_id}/$reindex")).json()
        values = {
            p["name"]: next(v for k, v in p.items() if k.startswith("value"))
            for p in status["parameter"]
        }
        if values["status"] in ("completed", "failed"):
            return values
        await asyncio.sleep(0.02)
    raise AssertionError("indexing did not finish")


def families(bundle: dict) -> list[str]:
    return sorted(
        e["resource"]["name"][0]["family"]
        for e in bundle.get("entry", ())
        if e.get("search", {}).get("mode") == "match"
    )


def search_params_in_metadata(metadata: dict) -> set[str]:
    patient = next(r for r in metadata["rest"][0]["resource"] if r["type"] == "Patient")
    return {p["name"] for p in patient["searchParam"]}


async def test_new_parameter_is_backfilled_and_then_searchable(client: httpx.AsyncClient):
    for week in (10, 14, 16, 20, 24):
        assert (await client.post("/Patient", json=patient(week))).status_code == 201
    metadata = (await client.get("/metadata")).json()
    assert "gestational-week" not in search_params_in_metadata(metadata)

    created = await client.put("/SearchParameter/gestational-week", json=SEARCH_PARAMETER)
    assert created.status_code == 201
    status = await wait_indexed(client, "gestational-week")
    assert status["status"] == "completed" and status["indexed"] == 5 and status["percent"] == 100

    bundle = (await client.get("/Patient?gestational-week=le16")).json()
    assert families(bundle) == ["W10", "W14", "W16"]
    assert "gestational-week" in search_params_in_metadata((await client.get("/metadata")).json())
    # resources written afterwards are indexed at write time
    await client.post("/Patient", json=patient(12))
    assert families((await client.get("/Patient?gestational-week=12")).json()) == ["W12"]


async def test_unusable_parameter_is_reported_not_silently_ignored(client: httpx.AsyncClient):
    await client.post("/Patient", json=patient(10))
    await client.put("/SearchParameter/gestational-week", json=SEARCH_PARAMETER)
    app_registry = client._transport.app.service.registry  # type: ignore[attr-defined]
    await wait_indexed(client, "gestational-week")
    param = app_registry.get("Patient", "gestational-week")
    param.status = "indexing"  # as it is while the back-fill runs
    try:
        lenient = (await client.get("/Patient?gestational-week=10")).json()
        outcome = lenient["entry"][-1]
        assert outcome["search"]["mode"] == "outcome"
        assert "still being indexed" in outcome["resource"]["issue"][0]["diagnostics"]
        strict = await client.get(
            "/Patient?gestational-week=10", headers={"Prefer": "handling=strict"}
        )
        assert strict.status_code == 400
    finally:
        param.status = "active"


async def test_invalid_search_parameter_is_rejected(client: httpx.AsyncClient):
    bad = {**SEARCH_PARAMETER, "expression": "Patient.name.where(", "id": "bad"}
    response = await client.put("/SearchParameter/bad", json=bad)
    assert response.status_code == 422
    assert response.json()["issue"][0]["expression"] == ["SearchParameter.expression"]
    assert (await client.get("/SearchParameter/bad")).status_code == 404


async def test_changed_and_deleted_parameters(client: httpx.AsyncClient):
    await client.post("/Patient", json={**patient(10), "birthDate": "1991-01-01"})
    await client.put("/SearchParameter/gestational-week", json=SEARCH_PARAMETER)
    await wait_indexed(client, "gestational-week")
    changed = {**SEARCH_PARAMETER, "type": "date", "expression": "Patient.birthDate"}
    assert (await client.put("/SearchParameter/gestational-week", json=changed)).status_code == 200
    await wait_indexed(client, "gestational-week")
    assert families((await client.get("/Patient?gestational-week=1991")).json()) == ["W10"]
    assert (await client.delete("/SearchParameter/gestational-week")).status_code == 204
    await asyncio.sleep(0.05)
    gone = (await client.get("/Patient?gestational-week=1991")).json()
    assert gone["entry"][-1]["search"]["mode"] == "outcome"
    assert "gestational-week" not in search_params_in_metadata(
        (await client.get("/metadata")).json()
    )


async def test_status_survives_a_restart(tmp_path: Path):
    settings = make_settings(tmp_path)
    first = ServerApp(settings)
    await first.startup()
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=first), base_url=TEST_BASE
    ) as client:
        await client.post("/Patient", json=patient(18))
        await client.put("/SearchParameter/gestational-week", json=SEARCH_PARAMETER)
        await wait_indexed(client, "gestational-week")
    await first.shutdown()

    second = ServerApp(make_settings(tmp_path))
    await second.startup()
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=second), base_url=TEST_BASE
        ) as client:
            bundle = (
                await client.get(
                    "/Patient?gestational-week=18", headers={"Prefer": "handling=strict"}
                )
            ).json()
            assert families(bundle) == ["W18"]
    finally:
        await second.shutdown()
