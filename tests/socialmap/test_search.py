"""Social-map search on the demo social map, on both stores: every new parameter, free text in
nl and fr, near with distances, zone resolution, stale marking, language of results, combined
filters, and unknown parameters that are reported, never silently ignored."""

from __future__ import annotations

import httpx
import pytest

from fhir_server.socialmap import model
from fhir_server.socialmap.output import translated

pytestmark = pytest.mark.asyncio(loop_scope="session")
IXELLES = "50.8333|4.3667"


async def _bundle(http: httpx.AsyncClient, query: str, **headers: str) -> dict:
    response = await http.get(f"HealthcareService?{query}", headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


def _matches(bundle: dict) -> list[dict]:
    return [e["resource"] for e in bundle.get("entry", []) if e["search"]["mode"] == "match"]


def _outcomes(bundle: dict) -> list[str]:
    return [
        issue["diagnostics"]
        for e in bundle.get("entry", [])
        if e["search"]["mode"] == "outcome"
        for issue in e["resource"]["issue"]
    ]


async def _ids(http: httpx.AsyncClient, query: str) -> set[str]:
    bundle = await _bundle(http, query + "&_count=500")
    assert not _outcomes(bundle), _outcomes(bundle)
    return {r["id"] for r in _matches(bundle)}


def _codes(resource: dict, element: str, system: str) -> set[str]:
    return {
        c["code"]
        for item in resource.get(element, ())
        for c in item.get("coding", ())
        if c.get("system") == system
    }


async def test_token_parameters_of_the_model(http: httpx.AsyncClient):
    everything = await _ids(http, "source=bib-local")
    assert len(everything) >= 80
    arabic = await _ids(http, "language=ar")
    assert arabic and arabic < everything
    loss = await _ids(http, f"target-group={model.CS_TARGET_GROUP}|pregnancy-or-infant-loss")
    home = await _ids(http, "delivery-mode=home-visit")
    line3 = await _ids(http, "care-line=line-3")
    free = await _ids(http, "cost=free")
    mbu = await _ids(http, "module=residential-mbu")
    referral = await _ids(http, "referral=physician-referral")
    priority = await _ids(http, "priority-pregnant=true")
    always = await _ids(http, "available-24x7=true")
    postpartum = await _ids(http, "perinatal-period=postpartum-0-6w")
    for found in (loss, home, line3, free, mbu, referral, priority, always, postpartum):
        assert found and found < everything | {"demo-bib-grief-support"}
    assert mbu <= line3 and mbu <= referral
    bundle = await _bundle(http, "target-group=pregnancy-or-infant-loss&_count=500")
    for resource in _matches(bundle):
        assert "pregnancy-or-infant-loss" in _codes(
            resource, "characteristic", model.CS_TARGET_GROUP
        )
    assert any("Regenboog" in r["name"] or "Arc-en-ciel" in r["name"] for r in _matches(bundle))


async def test_coverage_resolves_a_municipality_to_its_zones(http: httpx.AsyncClient):
    ixelles = await _ids(http, "coverage=21009")
    assert "demo-sm-cpas-21009" in ixelles  # the municipality itself
    assert "demo-sm-loss-group-zorgzone-zuid" in ixelles  # through its care zone (ConceptMap)
    assert "demo-sm-cpas-21016" not in ixelles  # Uccle: same zone, other municipality
    assert "demo-sm-loss-group-zorgzone-noord" not in ixelles  # another zone
    assert any(i.startswith("demo-sm-regional") for i in ixelles)  # whole-region services
    leuven = await _ids(http, "coverage=24062")  # Flemish: through the eerstelijnszone map
    assert "demo-sm-loss-group-elz-leuven" in leuven
    assert "demo-sm-loss-group-elz-mechelen-katelijne" not in leuven
    assert not leuven & {i for i in ixelles if "zorgzone" in i}
    zone = await _ids(http, "coverage=zorgzone-zuid")
    assert "demo-sm-loss-group-zorgzone-zuid" in zone and "demo-sm-cpas-21009" not in zone


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("rouwbegeleiding", "rouwbegeleiding"),
        ("zwangerschapsverlies", "zwangerschapsverlies"),
        ("deuil périnatal", "deuil"),
        ("DEUIL PERINATAL", "deuil"),
        ("interprètes", "interpr"),
        ("kraamverzorgende", "kraamverzorgende"),
        ("assuétudes", "assuétudes"),
    ],
)
async def test_free_text_in_dutch_and_french(http: httpx.AsyncClient, text: str, needle: str):
    bundle = await _bundle(http, f"_content={text}&_count=500")
    found = _matches(bundle)
    assert found, text
    for resource in found:
        assert needle.lower() in str(resource).lower(), (text, resource["id"])


async def test_free_text_finds_contact_persons(http: httpx.AsyncClient):
    bundle = await _bundle(http, "contact=a&_count=1")
    person = next(
        p["valueString"]
        for e in _matches(bundle)[0]["extension"]
        if e["url"] == model.EXT_CONTACT
        for p in e["extension"]
        if p["url"] == "name"
    )
    found = await _ids(http, f"_content={person}")
    assert _matches(bundle)[0]["id"] in found


async def test_near_sorts_services_by_distance_of_their_location(http: httpx.AsyncClient):
    bundle = await _bundle(http, f"location.near={IXELLES}|3|km&_count=100")
    distances = [
        e["search"]["extension"][0]["valueDistance"]["value"]
        for e in bundle["entry"]
        if e["search"]["mode"] == "match"
    ]
    assert len(distances) >= 5
    assert distances == sorted(distances) and distances[-1] <= 3.0
    wider = await _ids(http, f"location.near={IXELLES}|10|km")
    assert {r["id"] for r in _matches(bundle)} < wider


async def test_grief_support_near_an_address_in_french_is_one_query(http: httpx.AsyncClient):
    query = (
        f"_content=deuil&location.near={IXELLES}|10|km&language=fr"
        "&target-group=pregnancy-or-infant-loss"
    )
    bundle = await _bundle(http, query, **{"Accept-Language": "fr-BE, nl;q=0.5"})
    found = _matches(bundle)
    assert found and not _outcomes(bundle)
    for resource in found:
        assert "fr" in _codes(resource, "communication", model.LANGUAGE)
        assert "pregnancy-or-infant-loss" in _codes(
            resource, "characteristic", model.CS_TARGET_GROUP
        )
        assert resource["language"] == "fr"
    distances = [e["search"]["extension"][0]["valueDistance"]["value"] for e in bundle["entry"]]
    assert distances == sorted(distances)


async def test_stale_services_are_marked_and_searchable(http: httpx.AsyncClient):
    stale = await _ids(http, "stale=true")
    fresh = await _ids(http, "stale=false")
    everything = await _ids(http, "_id:not=nothing")
    assert stale and fresh and stale | fresh == everything and not stale & fresh
    for resource in _matches(await _bundle(http, "stale=true&_count=500")):
        assert {"system": model.CS_STATUS, "code": "stale", "display": "Not verified recently"} in (
            resource["meta"]["tag"]
        )
    for resource in _matches(await _bundle(http, "stale=false&_count=500")):
        assert not any(t["system"] == model.CS_STATUS for t in resource["meta"].get("tag", ()))
    old = await _ids(http, "last-verified=lt2025-12-01")
    assert old <= stale


async def test_stale_services_are_marked_in_history_and_when_included(http: httpx.AsyncClient):
    """The tag is computed wherever a service goes out: reads, searches, history, _include and
    _revinclude (it is never stored)."""
    tag = {"system": model.CS_STATUS, "code": "stale", "display": "Not verified recently"}
    service = _matches(await _bundle(http, "stale=true&_count=1"))[0]
    history = await http.get(f"HealthcareService/{service['id']}/_history")
    assert history.status_code == 200
    versions = [e["resource"] for e in history.json()["entry"]]
    assert versions and all(tag in v["meta"]["tag"] for v in versions)
    everything = await http.get("HealthcareService/_history?_count=500")
    by_id = {e["resource"]["id"]: e["resource"] for e in everything.json()["entry"]}
    assert tag in by_id[service["id"]]["meta"]["tag"]
    location = service["location"][0]["reference"].split("/")[1]
    response = await http.get(f"Location?_id={location}&_revinclude=HealthcareService:location")
    included = {
        e["resource"]["id"]: e["resource"]
        for e in response.json()["entry"]
        if e["search"]["mode"] == "include"
    }
    assert tag in included[service["id"]]["meta"]["tag"]
    back = await http.get(
        f"HealthcareService?_id={service['id']}&_include=HealthcareService:location"
    )
    assert tag in _matches(back.json())[0]["meta"]["tag"]


@pytest.mark.parametrize("language", ["nl", "fr"])
async def test_results_come_in_the_callers_language(http: httpx.AsyncClient, language: str):
    response = await http.get(
        "HealthcareService?_id=demo-sm-cpas-21009,demo-sm-loss-group-elz-leuven",
        headers={"Accept-Language": f"{language}-BE"},
    )
    assert response.headers["content-language"] == language
    assert "Accept-Language" in response.headers["vary"]
    for resource in _matches(response.json()):
        assert resource["language"] == language
        assert resource["name"] == translated(resource, "name", language)
        other = "fr" if language == "nl" else "nl"
        assert translated(resource, "name", other) not in (None, resource["name"])
    names = {r["id"]: r["name"] for r in _matches(response.json())}
    if language == "nl":
        assert names["demo-sm-cpas-21009"].startswith("OCMW Elsene")
    else:
        assert names["demo-sm-loss-group-elz-leuven"].startswith("Groupe de parole")
    read = await http.get(
        "HealthcareService/demo-sm-cpas-21009", headers={"Accept-Language": language}
    )
    assert read.json()["language"] == language and read.headers["content-language"] == language


async def test_english_where_known_and_a_fallback_otherwise(http: httpx.AsyncClient):
    response = await http.get(
        "HealthcareService/demo-sm-lactation-zorgzone-zuid", headers={"Accept-Language": "en"}
    )
    assert response.json()["name"].startswith("Lactation consultant")
    response = await http.get(
        "HealthcareService/demo-sm-cpas-21009", headers={"Accept-Language": "en, nl;q=0.8"}
    )
    assert response.json()["language"] == "nl"  # no English name: the next language asked


async def test_unknown_parameters_never_look_like_a_filtered_result(http: httpx.AsyncClient):
    bundle = await _bundle(http, "spoken-language=fr&_count=1")
    assert any("spoken-language" in message for message in _outcomes(bundle))
    strict = await http.get(
        "HealthcareService?spoken-language=fr", headers={"Prefer": "handling=strict"}
    )
    assert strict.status_code == 400
    bundle = await _bundle(http, "_content=rouw&_text=rouw&language=nl&_count=1")
    assert not _outcomes(bundle)


async def test_metadata_lists_every_social_map_parameter(http: httpx.AsyncClient):
    statement = (await http.get("metadata")).json()
    rest = statement["rest"][0]
    by_type = {r["type"]: {p["name"] for p in r["searchParam"]} for r in rest["resource"]}
    assert {
        "language",
        "target-group",
        "delivery-mode",
        "care-line",
        "module",
        "cost",
        "coverage",
        "stale",
        "last-verified",
        "referral",
        "priority-pregnant",
        "available-24x7",
        "source",
        "contact",
        "_content",
        "_text",
        "location",
        "coverage-area",
    } <= by_type["HealthcareService"]
    assert {"near", "_content"} <= by_type["Location"]
    assert "_content" not in by_type["Patient"]
    assert {
        "name": "socialmap-import",
        "definition": f"{model.BASE}/OperationDefinition/socialmap-import",
    } in rest["operation"]
