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


async def _ring_map(service: FhirService) -> dict[str, tuple[float, str, str]]:
    """60 services at 0.2 to 40 km from the Grand-Place, every third with 'rouw' in its name,
    every second active ("fr"): (distance km, word, "fr"/"nl") by service id."""
    import math

    from fhir_server.search.geo import chord2, unit_vector

    centre = unit_vector(*GRAND_PLACE)
    expected = {}
    for index in range(60):
        km = 0.2 + index * index / 90  # dense near the centre, sparse far away
        bearing = index * 2.4
        lat = GRAND_PLACE[0] + km / 111.2 * math.cos(bearing)
        lon = GRAND_PLACE[1] + km / 111.2 * math.sin(bearing) / math.cos(math.radians(lat))
        word = "rouw" if index % 3 == 0 else "tolk"
        language = "fr" if index % 2 == 0 else "nl"
        await _put(
            service,
            {
                "resourceType": "Location",
                "id": f"ring-loc-{index}",
                "position": {"latitude": round(lat, 6), "longitude": round(lon, 6)},
            },
        )
        await _put(
            service,
            {
                "resourceType": "HealthcareService",
                "id": f"ring-{index}",
                "name": f"{word} dienst {index}",
                "location": [{"reference": f"Location/ring-loc-{index}"}],
                "active": language == "fr",
            },
        )
        position = unit_vector(round(lat, 6), round(lon, 6))
        expected[f"ring-{index}"] = (km_of_chord2(chord2(centre, position)), word, language)
    return expected


async def _all_pages(service: FhirService, type_: str, params: list[tuple[str, str]]) -> list:
    from urllib.parse import unquote_plus

    bundle = await _search(service, type_, params)
    seen: list[str] = []
    while True:
        seen.extend(_ids(bundle))
        following = [link["url"] for link in bundle["link"] if link["relation"] == "next"]
        if not following:
            return seen
        query = following[0].split("?", 1)[1].split("&")
        bundle = await _search(
            service,
            type_,
            [(unquote_plus(k), unquote_plus(v)) for k, v in (p.split("=", 1) for p in query)],
        )


@pytest.mark.parametrize(
    ("extra", "keep"),
    [
        ([], lambda word, language: True),
        ([("_content", "rouw")], lambda word, language: word == "rouw"),
        (
            [("_content", "rouw"), ("active", "true")],
            lambda word, language: word == "rouw" and language == "fr",
        ),
        ([("active", "false")], lambda word, language: language == "nl"),
    ],
)
async def test_near_pages_are_the_nearest_first_whatever_the_density(
    store: Store, tmp_path: Path, extra, keep
):
    """Near searches read rings around the point (service/search.py nearest_first): the pages
    must be exactly those of one search over the whole radius, page after page."""
    settings = make_settings(
        tmp_path, store="sqlite:///unused", text_search_types="HealthcareService,Location"
    )
    service = FhirService(settings, store)
    expected = await _ring_map(service)
    for radius in (5, 30):
        wanted = [
            id_
            for id_, (km, word, language) in sorted(expected.items(), key=lambda kv: kv[1][0])
            if km <= radius and keep(word, language)
        ]
        params = [("location.near", f"{GRAND_PLACE[0]}|{GRAND_PLACE[1]}|{radius}|km")]
        for count in ("3", "7"):
            found = await _all_pages(
                service, "HealthcareService", [*params, *extra, ("_count", count)]
            )
            assert found == wanted, (radius, count)


async def test_content_with_codes_matches_each_code_clause(service: FhirService):
    """Words and codes together (SQLite answers them in one FTS5 query over the version's
    codes): each code clause still filters, a comma is OR, a system still counts, and a code
    removed by an update no longer matches."""
    systems = {"rouw": "http://a", "deuil": "http://b", "borst": "http://a", "interp": "http://a"}
    codes = {"rouw": ["grief", "group"], "deuil": ["grief"], "borst": ["lactation"]}
    for id_, (name, description) in TEXTS.items():
        body = {"resourceType": "Organization", "id": id_, "name": name}
        body["alias"] = [description, "ouders parents"]
        if id_ in codes:
            body["type"] = [{"coding": [{"system": systems[id_], "code": c}]} for c in codes[id_]]
        await _put(service, body)

    async def ids(*params: tuple[str, str]) -> set[str]:
        return set(_ids(await _search(service, "Organization", [("_content", "ouders"), *params])))

    assert await ids() == {"rouw", "deuil", "borst", "interp"}
    assert await ids(("type", "grief")) == {"rouw", "deuil"}
    assert await ids(("type", "grief"), ("type", "group")) == {"rouw"}
    assert await ids(("type", "group,lactation")) == {"rouw", "borst"}
    assert await ids(("type", "http://b|grief")) == {"deuil"}
    assert await ids(("type", "http://a|grief"), ("type", "grief")) == {"rouw"}
    assert await ids(("type", "griefs")) == set()
    assert await ids(("type:not", "grief")) == {"borst", "interp"}
    await _put(
        service,
        {"resourceType": "Organization", "id": "rouw", "name": "Rouw", "alias": ["ouders"]},
    )
    assert await ids(("type", "grief")) == {"deuil"}
