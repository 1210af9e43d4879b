"""'Was the guidance realised?': by search, and as the programme's aggregate MeasureReport."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.referrals.world import OUTCOME, TYPE, World

MEASURE = "Measure/bib-referral-outcomes"


@pytest.fixture
async def loaded(tmp_path: Path) -> Any:
    """The world with the shipped content (the Measure) and some history of referrals."""
    world = await World(tmp_path, load_content=True).start()
    try:
        # p lives in Anderlecht (1070: care zone Centre-West); q has no address
        plan = [
            ("p", "warm-handover", "2026-10-03", ["accepted", "in-progress", "completed:realised"]),
            ("p", "warm-handover", "2026-10-20", ["accepted", "in-progress", "completed:realised"]),
            (
                "q",
                "warm-handover",
                "2026-10-21",
                ["accepted", "in-progress", "completed:not-realised"],
            ),
            ("p", "referral", "2026-11-04", ["rejected"]),
            ("q", "referral", "2026-11-05", ["accepted"]),
            ("p", "referral", "2026-11-06", []),
            ("q", "warm-guidance", "2026-12-01", ["cancelled"]),
        ]
        for patient, kind, authored, steps in plan:
            _, task = await world.refer(
                patient=patient, kind=kind, authored=authored, supporting=()
            )
            for step in steps:
                status, _, outcome = step.partition(":")
                who = "mw" if status == "cancelled" else "sw"
                response = await world.move(
                    task,
                    status,
                    who,
                    reason="because" if status in ("rejected", "cancelled") else None,
                    outcome=outcome or None,
                )
                assert response.status_code == 200, response.text
        yield world
    finally:
        await world.stop()


def count(population: dict[str, Any]) -> int | None:
    return population.get("count")


def populations(group: dict[str, Any]) -> dict[str, int | None]:
    return {p["code"]["coding"][0]["code"]: count(p) for p in group["population"]}


async def test_the_questions_by_search(loaded: World) -> None:
    world = loaded

    async def found(query: str) -> int:
        response = await world.get(f"/Task?{query}&_summary=count", "mw")
        assert response.status_code == 200, response.text
        return response.json()["total"]

    assert await found(f"business-status={OUTCOME}|realised") == 2
    assert await found(f"business-status={OUTCOME}|not-realised") == 1
    assert await found("requester=PractitionerRole/mw-role") == 7  # per referrer
    assert await found("owner=HealthcareService/cpas-service&status=completed") == 3  # per org
    assert await found(f"focus:ServiceRequest.category={TYPE}|warm-handover") == 3  # per type
    assert await found("authored-on=ge2026-11-01&authored-on=lt2026-12-01") == 3  # per period
    assert await found(f"status=completed&focus:ServiceRequest.category={TYPE}|referral") == 0


async def test_the_aggregate_counts_per_type_outcome_zone_and_month(loaded: World) -> None:
    response = await loaded.get(
        f"/{MEASURE}/$evaluate-measure?periodStart=2026-10-01&periodEnd=2026-11-30", "admin"
    )
    assert response.status_code == 200, response.text
    report = response.json()
    assert report["resourceType"] == "MeasureReport" and report["type"] == "summary"
    group = report["group"][0]
    # sent in the period: 6 (the December one is outside); closed: 4; realised: 2
    assert populations(group) == {"initial-population": 6, "denominator": 4, "numerator": 2}
    assert group["measureScore"]["value"] == 0.5
    by_name = {s["code"][0]["text"]: s for s in group["stratifier"]}
    types = {s["value"]["text"]: populations(s) for s in by_name["type"]["stratum"]}
    assert types["warm-handover"] == {"initial-population": 3, "denominator": 3, "numerator": 2}
    assert types["referral"]["initial-population"] == 3
    outcomes = {
        s["value"]["text"]: populations(s)["initial-population"]
        for s in by_name["outcome"]["stratum"]
    }
    assert outcomes == {
        "realised": 2,
        "not-realised": 1,
        "rejected": 1,
        "accepted": 1,
        "requested": 1,
    }
    zones = {
        s["value"]["text"]: populations(s)["initial-population"]
        for s in by_name["care-zone"]["stratum"]
    }
    assert zones == {"zorgzone-centrum-west": 4, "unknown": 2}
    months = {
        s["value"]["text"]: populations(s)["initial-population"]
        for s in by_name["month"]["stratum"]
    }
    assert months == {"2026-10": 3, "2026-11": 3}
    cross = by_name["type, outcome, care-zone, month"]["stratum"]
    cell = next(
        s
        for s in cross
        if [c["value"]["text"] for c in s["component"]]
        == ["warm-handover", "realised", "zorgzone-centrum-west", "2026-10"]
    )
    assert populations(cell)["initial-population"] == 2
    # nothing about any woman leaves the server: no subject, no reference, no id of hers
    text = response.text
    for private in ('"Patient/', "Peeters", "Quinten", '"subject"', "evaluatedResource"):
        assert private not in text


async def test_small_cells_are_masked(tmp_path: Path) -> None:
    world = await World(tmp_path, load_content=True, report_min_cell=2).start()
    try:
        _, task = await world.refer(authored="2026-10-03")
        await world.move(task, "rejected", "sw", reason="full")
        for _ in range(2):
            await world.refer(authored="2026-10-04")
        report = (await world.get(f"/{MEASURE}/$evaluate-measure", "admin")).json()
        group = report["group"][0]
        assert populations(group)["initial-population"] == 3
        denominator = next(
            p for p in group["population"] if p["code"]["coding"][0]["code"] == "denominator"
        )
        assert "count" not in denominator
        assert denominator["extension"][0]["valueCode"] == "masked"
        assert "measureScore" not in group
    finally:
        await world.stop()


async def test_only_administrators_run_it_and_it_is_listed(loaded: World) -> None:
    for who in ("mw", "sw", "gp"):
        response = await loaded.get(f"/{MEASURE}/$evaluate-measure", who)
        assert response.status_code == 403, (who, response.text)
    by_url = await loaded.get(
        "/Measure/$evaluate-measure?measure=https://borninbelgiumpro.be/fhir/Measure/bib-referral-outcomes",
        "admin",
    )
    assert by_url.status_code == 200
    assert (await loaded.get("/Measure/nope/$evaluate-measure", "admin")).status_code == 404
    bad = await loaded.get(f"/{MEASURE}/$evaluate-measure?periodStart=yesterday", "admin")
    assert bad.status_code == 400
    metadata = (await loaded.request("GET", "/metadata", None)).json()
    resources = {r["type"]: r for r in metadata["rest"][0]["resource"]}
    operations = {o["name"]: o["definition"] for o in resources["Measure"]["operation"]}
    definition = operations["evaluate-measure"]
    assert (await loaded.get(f"/OperationDefinition?url={definition}", "admin")).json()[
        "total"
    ] == 1
    subscription_ops = {o["name"]: o["definition"] for o in resources["Subscription"]["operation"]}
    assert set(subscription_ops) == {"status", "events"}
    for url in subscription_ops.values():
        assert (await loaded.get(f"/OperationDefinition?url={url}", "admin")).json()["total"] == 1
    topics = [e["valueCanonical"] for e in resources["Subscription"]["extension"]]
    assert "https://borninbelgiumpro.be/fhir/SubscriptionTopic/referral-new" in topics
    assert any("subscriptions-backport" in url for url in metadata.get("instantiates", []))
