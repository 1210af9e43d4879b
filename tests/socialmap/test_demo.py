"""The demo social map loads on both stores and has what the issue asks for."""

from __future__ import annotations

import httpx
import pytest

from fhir_server.socialmap import model

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def _all(http: httpx.AsyncClient, query: str) -> list[dict]:
    response = await http.get(f"HealthcareService?{query}&_count=500")
    assert response.status_code == 200, response.text
    return [
        e["resource"] for e in response.json().get("entry", []) if e["search"]["mode"] == "match"
    ]


async def test_demo_social_map_has_80_bilingual_services_in_brussels_and_two_zones(
    http: httpx.AsyncClient,
):
    services = await _all(http, "source=bib-local")
    assert len(services) >= 80
    for service in services:
        langs = {service["language"]} | {
            part["valueCode"]
            for ext in service["_name"]["extension"]
            for part in ext["extension"]
            if part["url"] == "lang"
        }
        assert {"nl", "fr"} <= langs, service["id"]
    areas = {area["identifier"]["value"] for s in services for area in s.get("coverageArea", ())}
    assert {"zorgzone-zuid", "zorgzone-noord", "elz-leuven", "elz-mechelen-katelijne"} <= areas
    names = " ".join(
        s["name"] + " " + s["_name"]["extension"][0]["extension"][1]["valueString"]
        for s in services
    )
    for expected in (
        "Boven de Regenboog",
        "Berenfonds",
        "Kleine Stapjes",
        "Kraamzorg",
        "Moeder-baby-eenheid",
        "OCMW",
        "CPAS",
        "Sociaal tolken",
        "Drughulp",
    ):
        assert expected in names, expected
    assert any(e["url"] == model.EXT_CONTACT for s in services for e in s.get("extension", ()))
