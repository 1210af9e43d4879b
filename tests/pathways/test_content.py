"""The shipped pathway content: what the generator produces is what is committed, every definition
loads, is trilingual, and every loss action carries its activity code, need domain, performer type
and timing; the demo shows pathways at once."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fhir_server.pathways.definitions import compile_activity, compile_plan
from tools.build_pathway_content import build

ROOT = Path(__file__).resolve().parents[2]
CONTENT = ROOT / "content" / "pathways"
CS = "https://borninbelgiumpro.be/fhir/CodeSystem/"
TRANSLATION = "http://hl7.org/fhir/StructureDefinition/translation"

MODULE_LOOP = pytest.mark.asyncio(loop_scope="module")


def files() -> dict[str, dict]:
    return {p.name: json.loads(p.read_text()) for p in sorted(CONTENT.glob("*.json"))}


def languages(element: dict, key: str) -> set[str]:
    out = {"en"} if element.get(key) else set()
    for ext in (element.get("_" + key) or {}).get("extension", ()):
        if ext["url"] == TRANSLATION:
            out |= {e["valueCode"] for e in ext["extension"] if e["url"] == "lang"}
    return out


def walk(actions: list[dict]):
    for action in actions:
        yield action
        yield from walk(action.get("action", ()))


def test_the_committed_content_is_what_the_generator_makes() -> None:
    assert build() == files(), "run python tools/build_pathway_content.py"


def test_the_library() -> None:
    content = files()
    plans = {r["id"]: r for r in content.values() if r["resourceType"] == "PlanDefinition"}
    assert {
        "pd-loss-early",
        "pd-loss-mors-in-utero",
        "pd-loss-congenital-anomaly",
        "pd-pmh-stepped-care",
        "pd-postnatal-short-stay",
        "pd-pmh-screening-detection",
    } <= set(plans)
    assert len([p for p in plans if p.startswith("pd-vulnerability-")]) == 13
    for plan in plans.values():
        assert compile_plan(plan).issues == [], plan["id"]
        assert languages(plan, "title") == {"en", "nl-BE", "fr-BE"}, plan["id"]
        assert languages(plan, "description") == {"en", "nl-BE", "fr-BE"}, plan["id"]
        for action in walk(plan["action"]):
            assert languages(action, "title") >= {"en", "nl-BE", "fr-BE"}, action["id"]
    activities = content["ActivityDefinitions.json"]["entry"]
    for entry in activities:
        assert compile_activity(entry["resource"]).issues == []
        assert languages(entry["resource"], "title") == {"en", "nl-BE", "fr-BE"}
    canonicals = {e["resource"]["url"] for e in activities}
    for plan in plans.values():
        for action in walk(plan["action"]):
            if "definitionCanonical" in action:
                assert action["definitionCanonical"] in canonicals


@pytest.mark.parametrize(
    "plan", ["pd-loss-early", "pd-loss-mors-in-utero", "pd-loss-congenital-anomaly"]
)
def test_every_loss_action_has_code_domain_performer_and_timing(plan) -> None:
    resource = files()[f"PlanDefinition-{plan}.json"]
    leaves = [a for a in walk(resource["action"]) if "definitionCanonical" in a]
    assert len(leaves) > 30
    for action in leaves:
        systems = {c["system"] for cc in action["code"] for c in cc["coding"]}
        assert systems & {CS + "bib-loss-support-activity", CS + "bib-loss-management-option"}
        assert CS + "bib-need-domain" in systems, action["id"]
        assert any(p["type"] == "practitioner" for p in action["participant"]), action["id"]
        assert action["relatedAction"][0]["actionId"], action["id"]
    # the pathway starts from the loss event: its trigger is a Condition / EpisodeOfCare
    [group] = resource["action"]
    types = {d["type"] for t in group["trigger"] for d in t["data"]}
    assert types == {"Condition", "EpisodeOfCare"}


@MODULE_LOOP
async def test_every_shipped_definition_is_loaded(client) -> None:
    for type_, minimum in (
        ("PlanDefinition", 19),
        ("ActivityDefinition", 80),
        ("OperationDefinition", 3),
    ):
        response = await client.get(f"/{type_}", params={"_summary": "count"})
        assert response.json()["total"] >= minimum, type_


@MODULE_LOOP
async def test_the_demo_shows_pathways_at_once(tmp_path) -> None:
    import httpx

    from fhir_server.app import ServerApp
    from tests.conftest import TEST_BASE, make_settings

    server = ServerApp(
        make_settings(tmp_path, load_content=True, load_terminology=True), load_demo=True
    )
    await server.startup()
    try:
        transport = httpx.ASGITransport(app=server)
        async with httpx.AsyncClient(transport=transport, base_url=TEST_BASE) as http:
            plans = (await http.get("/CarePlan", params={"_count": "100"})).json()["entry"]
            by_patient: dict[str, list[tuple[str, str]]] = {}
            for entry in plans:
                plan = entry["resource"]
                by_patient.setdefault(plan["subject"]["reference"], []).append(
                    (plan["status"], plan["instantiatesCanonical"][0].split("/")[-1])
                )
            assert by_patient["Patient/demo-pw-inaya"] == [("draft", "pd-loss-early|0.1.0")]
            assert by_patient["Patient/demo-pw-emma"] == [
                ("draft", "pd-loss-congenital-anomaly|0.1.0")
            ]
            assert by_patient["Patient/demo-pw-ilse"] == [("active", "pd-loss-mors-in-utero|0.1.0")]
            assert ("active", "pd-vulnerability-housing|0.1.0") in by_patient[
                "Patient/demo-pw-nadia"
            ]
            # the demo loss plan starts from the loss, not from a screening
            demo = (await http.get("/CarePlan/demo-bib-loss-pathway")).json()
            assert demo["addresses"] == [{"reference": "Condition/demo-bib-loss-early"}]
            assert "supportingInfo" not in demo
            assert by_patient["Patient/demo-bib-patient-rrn"] == [("active", "pd-loss-early|0.1.0")]
    finally:
        await server.shutdown()
