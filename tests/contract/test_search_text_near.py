"""Free text (``_content``, ``_text``) and ``near`` (Location, and chained from another type):
the same answers on every store."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from fhir_server.json_codec import dumps
from fhir_server.search.geo import km_of_chord2
from fhir_server.service import crud, search
from fhir_server.service.context import RequestContext
from fhir_server.service.core import FhirService
from fhir_server.store.protocol import Store
from tests.conftest import make_settings

CTX = RequestContext(base_url="http://testserver/fhir")
BASE = "http://testserver/fhir"

# Brussels Grand-Place, and places at known distances (great-circle, km)
GRAND_PLACE = (50.8467, 4.3525)
PLACES = {
    "grand-place": (50.8467, 4.3525),  # 0
    "ixelles": (50.8333, 4.3667),  # ~1.8 km
    "uccle": (50.8000, 4.3333),  # ~5.4 km
    "leuven": (50.8798, 4.7005),  # ~24.8 km
    "gent": (51.0543, 3.7174),  # ~50.3 km
}
TEXTS = {
    "rouw": (
        "Rouwbegeleiding na zwangerschapsverlies",
        "Groepen voor ouders na het verlies van hun baby",
    ),
    "deuil": (
        "Accompagnement du deuil périnatal",
        "Soutien aux parents après la perte de leur bébé",
    ),
    "borst": ("Borstvoedingsconsulente", "Lactatiekundige begeleiding thuis"),
    "interp": ("Interprétariat social", "Interprètes en arabe, turc et dari"),
}


@pytest.fixture
def service(store: Store, tmp_path: Path) -> FhirService:
    settings = make_settings(
        tmp_path, store="sqlite:///unused", text_search_types="Organization,Location"
    )
    return FhirService(settings, store)


async def _put(service: FhirService, body: dict) -> None:
    await crud.update(service, CTX, body["resourceType"], body["id"], body, None, None)


async def _search(service: FhirService, type_: str, params: list[tuple[str, str]]) -> dict:
    result = await search.search(service, CTX, (type_,), params, f"{BASE}/{type_}")
    return orjson.loads(dumps(result.resource))


def _ids(bundle: dict) -> list[str]:
    return [e["resource"]["id"] for e in bundle.get("entry", ()) if e["search"]["mode"] == "match"]


def _warnings(bundle: dict) -> list[str]:
    return [
        issue["diagnostics"]
        for e in bundle.get("entry", ())
        if e["search"]["mode"] == "outcome"
        for issue in e["resource"]["issue"]
    ]


async def _organisations(service: FhirService) -> None:
    for id_, (name, description) in TEXTS.items():
        await _put(
            service,
            {
                "resourceType": "Organization",
                "id": id_,
                "name": name,
                "alias": [description],
                "text": {
                    "status": "generated",
                    "div": f'<div xmlns="http://www.w3.org/1999/xhtml"><p>{description}</p></div>',
                },
            },
        )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("rouwbegeleiding", {"rouw"}),
        ("ROUWBEGELEIDING", {"rouw"}),
        ("verlies", {"rouw"}),  # a word of the description
        ("zwangerschapsverlies rouwbegeleiding", {"rouw"}),  # words are ANDed
        ("rouwbegeleiding deuil", set()),
        ("deuil périnatal", {"deuil"}),
        ("deuil perinatal", {"deuil"}),  # accents folded
        ("PÉRINATAL", {"deuil"}),
        ("perinatale", {"deuil"}),  # French stem: périnatal / périnatale
        ("interprete", {"interp"}),  # interprètes: stem and accents
        ("accompagnements", {"deuil"}),  # plural, same stem
        ("groep", {"rouw"}),  # Dutch stem: groepen / groep
        ("borstv*", {"borst"}),  # prefix
        ("rouwbegeleiding,interprétariat", {"rouw", "interp"}),  # comma: OR
        ("bébé", {"deuil"}),
        ("baby", {"rouw"}),
    ],
)
async def test_content_searches_words_in_nl_and_fr(service: FhirService, text, expected):
    await _organisations(service)
    bundle = await _search(service, "Organization", [("_content", text)])
    assert set(_ids(bundle)) == expected, text
    assert not _warnings(bundle)


async def test_text_searches_the_narrative_only(service: FhirService):
    await _organisations(service)
    # the name is not in the narrative, the description is
    assert _ids(await _search(service, "Organization", [("_text", "rouwbegeleiding")])) == []
    assert _ids(await _search(service, "Organization", [("_text", "lactatiekundige")])) == ["borst"]


async def test_content_combines_with_other_parameters_and_follows_updates(service: FhirService):
    await _organisations(service)
    bundle = await _search(service, "Organization", [("_content", "deuil"), ("name", "acc")])
    assert _ids(bundle) == ["deuil"]
    bundle = await _search(service, "Organization", [("_content", "deuil"), ("name", "rouw")])
    assert _ids(bundle) == []
    changed = {"resourceType": "Organization", "id": "deuil", "name": "Kraamzorg"}
    await _put(service, changed)
    assert _ids(await _search(service, "Organization", [("_content", "deuil")])) == []
    assert _ids(await _search(service, "Organization", [("_content", "kraamzorg")])) == ["deuil"]


async def test_content_on_a_type_without_text_index_is_reported_not_ignored(
    service: FhirService,
):
    await _put(service, {"resourceType": "Patient", "id": "p", "name": [{"family": "Deuil"}]})
    bundle = await _search(service, "Patient", [("_content", "deuil")])
    # the parameter is not applied, and the outcome says so: never a silently filtered result
    assert _ids(bundle) == ["p"]
    assert any("_content is not supported for Patient" in w for w in _warnings(bundle))


async def test_content_without_a_word_is_a_bad_request(service: FhirService):
    from fhir_server.errors import FhirError

    with pytest.raises(FhirError) as caught:
        await _search(service, "Organization", [("_content", "de la")])
    assert caught.value.status == 400


async def _locations(service: FhirService) -> None:
    for id_, (lat, lon) in PLACES.items():
        await _put(
            service,
            {
                "resourceType": "Location",
                "id": id_,
                "name": id_,
                "position": {"latitude": lat, "longitude": lon},
            },
        )
    await _put(service, {"resourceType": "Location", "id": "nowhere", "name": "no position"})


@pytest.mark.parametrize(
    ("distance", "expected"),
    [
        ("2", ["grand-place", "ixelles"]),
        ("6|km", ["grand-place", "ixelles", "uccle"]),
        ("6000|m", ["grand-place", "ixelles", "uccle"]),
        ("30", ["grand-place", "ixelles", "uccle", "leuven"]),
        ("20|mi", ["grand-place", "ixelles", "uccle", "leuven"]),
        ("100", ["grand-place", "ixelles", "uccle", "leuven", "gent"]),
        ("50", ["grand-place", "ixelles", "uccle", "leuven"]),  # Gent is just over 50 km
    ],
)
async def test_near_finds_locations_within_the_distance_nearest_first(
    service: FhirService, distance, expected
):
    await _locations(service)
    value = f"{GRAND_PLACE[0]}|{GRAND_PLACE[1]}|{distance}"
    bundle = await _search(service, "Location", [("near", value)])
    assert _ids(bundle) == expected
    distances = [
        e["search"]["extension"][0]["valueDistance"]["value"]
        for e in bundle["entry"]
        if e["search"]["mode"] == "match"
    ]
    assert distances == sorted(distances)
    assert distances[0] == 0


async def test_near_distances_are_great_circle_km(service: FhirService):
    await _locations(service)
    bundle = await _search(service, "Location", [("near", "50.8467|4.3525|100|km")])
    found = {
        e["resource"]["id"]: e["search"]["extension"][0]["valueDistance"]["value"]
        for e in bundle["entry"]
    }
    assert found["leuven"] == pytest.approx(24.8, abs=0.3)
    assert found["gent"] == pytest.approx(50.3, abs=0.3)


async def test_near_pages_keep_the_distance_order(service: FhirService):
    await _locations(service)
    result = await search.search(
        service,
        CTX,
        ("Location",),
        [("near", "50.8467|4.3525|100"), ("_count", "2")],
        f"{BASE}/Location",
    )
    seen: list[str] = []
    bundle = orjson.loads(dumps(result.resource))
    while True:
        seen.extend(_ids(bundle))
        following = [link["url"] for link in bundle["link"] if link["relation"] == "next"]
        if not following:
            break
        params = [tuple(p.split("=", 1)) for p in following[0].split("?", 1)[1].split("&")]
        from urllib.parse import unquote_plus

        params = [(unquote_plus(k), unquote_plus(v)) for k, v in params]
        bundle = await _search(service, "Location", params)
    assert seen == ["grand-place", "ixelles", "uccle", "leuven", "gent"]


@pytest.mark.parametrize(
    "value",
    ["50.8|", "abc|4.3|5", "50.8|4.3|5|parsec", "95|4.3|5", "50.8|4.3|-1", "50.8|4.3|5000"],
)
async def test_near_rejects_bad_values(service: FhirService, value):
    from fhir_server.errors import FhirError

    with pytest.raises(FhirError) as caught:
        await _search(service, "Location", [("near", value)])
    assert caught.value.status == 400


async def test_chained_near_sorts_by_the_nearest_location(service: FhirService):
    await _locations(service)
    services = {
        "s-gent-and-ixelles": ["gent", "ixelles"],
        "s-leuven": ["leuven"],
        "s-uccle": ["uccle"],
        "s-nowhere": ["nowhere"],
    }
    for id_, locations in services.items():
        await _put(
            service,
            {
                "resourceType": "HealthcareService",
                "id": id_,
                "name": id_,
                "location": [{"reference": f"Location/{loc}"} for loc in locations],
            },
        )
    bundle = await _search(service, "HealthcareService", [("location.near", "50.8467|4.3525|30")])
    assert _ids(bundle) == ["s-gent-and-ixelles", "s-uccle", "s-leuven"]
    first = bundle["entry"][0]["search"]["extension"][0]["valueDistance"]["value"]
    assert first == pytest.approx(km_of_chord2(0) + 1.8, abs=0.2)  # via Ixelles, not Gent
    # an explicit _sort wins over the distance order
    bundle = await _search(
        service,
        "HealthcareService",
        [("location.near", "50.8467|4.3525|30"), ("_sort", "-name")],
    )
    assert _ids(bundle) == ["s-uccle", "s-leuven", "s-gent-and-ixelles"]


async def test_near_with_text_on_the_chained_type(service: FhirService):
    await _locations(service)
    await _organisations(service)
    for id_, (org, loc) in {
        "a": ("rouw", "ixelles"),
        "b": ("rouw", "leuven"),
        "c": ("deuil", "uccle"),
    }.items():
        await _put(
            service,
            {
                "resourceType": "HealthcareService",
                "id": id_,
                "providedBy": {"reference": f"Organization/{org}"},
                "location": [{"reference": f"Location/{loc}"}],
            },
        )
    bundle = await _search(
        service,
        "HealthcareService",
        [("location.near", "50.8467|4.3525|30"), ("organization._content", "verlies")],
    )
    assert _ids(bundle) == ["a", "b"]
