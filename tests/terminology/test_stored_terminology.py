"""Terminology in the store: the shipped content is loaded at start-up (once, idempotently) and is
readable and searchable; CodeSystems, ValueSets and ConceptMaps written through the REST API join
the catalog at once, and leave it when deleted."""

from __future__ import annotations

from pathlib import Path

import orjson

from fhir_server.app import ServerApp
from fhir_server.terminology.catalog import shipped_resources
from fhir_server.terminology.manager import META_KEY
from tests.conftest import make_settings
from tests.http.fhir_helpers import assert_outcome, history_entries, search_ids
from tests.terminology.helpers import (
    BIB,
    CARE_LEVEL_VS,
    CARE_LINE_CS,
    codes,
    displays,
    ok,
    param,
)

LOCAL_CS = {
    "resourceType": "CodeSystem",
    "id": "local-visit-type",
    "url": "http://example.org/fhir/CodeSystem/local-visit-type",
    "version": "1",
    "status": "active",
    "content": "complete",
    "hierarchyMeaning": "is-a",
    "concept": [
        {
            "code": "home",
            "display": "Home visit",
            "designation": [
                {"language": "nl-BE", "value": "Huisbezoek"},
                {"language": "fr-BE", "value": "Visite à domicile"},
            ],
            "concept": [{"code": "home-night", "display": "Night home visit"}],
        },
        {"code": "office", "display": "Office visit"},
    ],
}
LOCAL_VS = {
    "resourceType": "ValueSet",
    "id": "local-visits",
    "url": "http://example.org/fhir/ValueSet/local-visits",
    "status": "active",
    "compose": {"include": [{"system": LOCAL_CS["url"]}]},
}


def shipped_keys() -> set[str]:
    return {f"{r['resourceType']}/{r['id']}" for r in shipped_resources()}


async def test_shipped_terminology_is_readable_and_searchable(client):
    for path in (
        "/ValueSet/bib-region",
        "/CodeSystem/bib-care-line",
        "/ConceptMap/bib-nis-municipality-to-region",
        "/CodeSystem/cd-hcparty",
        "/ValueSet/be-vs-care-location",
        "/CodeSystem/bib-supplement-cd-contact-person",
    ):
        response = await client.get(path)
        assert response.status_code == 200, path
    assert await search_ids(client, "ValueSet", f"url={CARE_LEVEL_VS}") == ["bib-care-level"]
    # R4 CodeSystem "code" is CodeSystem.concept.code: top-level concepts only
    assert await search_ids(client, "CodeSystem", "code=specialised") == ["bib-care-line"]
    all_types = []
    for type_ in ("CodeSystem", "ValueSet", "ConceptMap"):
        all_types += [f"{type_}/{i}" for i in await search_ids(client, type_)]
    assert set(all_types) == shipped_keys()


async def test_loading_is_idempotent_and_keeps_local_edits(tmp_path: Path):
    settings = make_settings(tmp_path, load_terminology=True)
    server = ServerApp(settings)
    await server.startup()
    shipped = len(shipped_resources())
    assert await server.store.latest_seq() == shipped
    terminology = server.service.terminology
    assert await terminology.load_shipped() == 0  # nothing new
    edited = orjson.loads((await server.store.current("ValueSet", "bib-care-level")).body)
    edited["compose"]["include"][0]["concept"] = [{"code": "basic"}]
    async with server.store.unit_of_work() as uow:
        current = await uow.current("ValueSet", "bib-care-level")
        await server.service.store_version(_ctx(settings), uow, edited, current, "PUT")
    await server.shutdown()

    again = ServerApp(settings)
    await again.startup()
    try:
        assert await again.store.latest_seq() == shipped + 1  # the restart wrote nothing
        assert again.service.terminology.catalog.expand(CARE_LEVEL_VS) == frozenset(
            {(CARE_LINE_CS, "basic")}
        )  # the local edit is kept and used
    finally:
        await again.shutdown()


async def test_a_changed_release_file_is_written_again(tmp_path: Path):
    settings = make_settings(tmp_path, load_terminology=True)
    server = ServerApp(settings)
    await server.startup()
    state = orjson.loads(await server.store.get_meta(META_KEY))
    state["release"] = "an older release"
    state["files"]["ValueSet/bib-care-level"] = "an older digest"
    del state["files"]["CodeSystem/bib-care-line"]
    await server.store.set_meta(META_KEY, orjson.dumps(state).decode())
    async with server.store.unit_of_work() as uow:  # the old release's copy differed
        current = await uow.current("ValueSet", "bib-care-level")
        old = orjson.loads(current.body)
        old["title"] = "An old title"
        await server.service.store_version(_ctx(settings), uow, old, current, "PUT")
    await server.shutdown()

    again = ServerApp(settings)
    await again.startup()
    try:
        stored = orjson.loads((await again.store.current("ValueSet", "bib-care-level")).body)
        assert stored["title"] != "An old title"  # the release copy is back
        assert (await again.store.current("ValueSet", "bib-care-level")).version == 3
        # bib-care-line was unchanged in the store: recorded again, not rewritten
        assert (await again.store.current("CodeSystem", "bib-care-line")).version == 1
        state = orjson.loads(await again.store.get_meta(META_KEY))
        assert state["release"] != "an older release"
        assert set(state["files"]) == shipped_keys()
    finally:
        await again.shutdown()


async def test_without_loading_the_operations_still_use_the_packaged_content(tmp_path: Path):
    import httpx

    server = ServerApp(make_settings(tmp_path, load_terminology=False))
    await server.startup()
    try:
        transport = httpx.ASGITransport(app=server)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver/fhir") as c:
            assert await history_entries(c) == []
            body = await ok(c.get("/ValueSet/$expand", params={"url": CARE_LEVEL_VS}))
            assert codes(body) == ["basic", "specialised"]
            assert_outcome(await c.get("/ValueSet/bib-care-level/$expand"), 404, "not-found")
    finally:
        await server.shutdown()


async def test_created_code_system_and_value_set_join_the_catalog(client):
    assert (await client.put("/CodeSystem/local-visit-type", json=LOCAL_CS)).status_code == 201
    assert (await client.put("/ValueSet/local-visits", json=LOCAL_VS)).status_code == 201
    body = await ok(
        client.get(
            "/ValueSet/$expand", params={"url": LOCAL_VS["url"]}, headers={"Accept-Language": "fr"}
        )
    )
    assert displays(body) == {
        "home": "Visite à domicile",
        "home-night": "Night home visit",
        "office": "Office visit",
    }
    body = await ok(client.get("/ValueSet/local-visits/$expand", params={"filter": "huisbez"}))
    assert codes(body) == ["home"]
    lookup = await ok(
        client.get(
            "/CodeSystem/$lookup",
            params={"system": LOCAL_CS["url"], "code": "home"},
            headers={"Accept-Language": "nl"},
        )
    )
    assert param(lookup, "display") == "Huisbezoek"
    subsumes = await ok(
        client.get(
            "/CodeSystem/local-visit-type/$subsumes",
            params={"codeA": "home-night", "codeB": "home"},
        )
    )
    assert param(subsumes, "outcome") == "subsumed-by"


async def test_update_and_delete_change_the_catalog(client):
    await client.put("/CodeSystem/local-visit-type", json=LOCAL_CS)
    await client.put("/ValueSet/local-visits", json=LOCAL_VS)
    narrowed = {
        **LOCAL_VS,
        "compose": {"include": [{"system": LOCAL_CS["url"], "concept": [{"code": "office"}]}]},
    }
    assert (await client.put("/ValueSet/local-visits", json=narrowed)).status_code == 200
    body = await ok(client.get("/ValueSet/$expand", params={"url": LOCAL_VS["url"]}))
    assert codes(body) == ["office"]
    assert (await client.delete("/ValueSet/local-visits")).status_code in (200, 204)
    assert_outcome(
        await client.get("/ValueSet/$expand", params={"url": LOCAL_VS["url"]}), 404, "not-found"
    )
    assert (await client.delete("/CodeSystem/local-visit-type")).status_code in (200, 204)
    assert_outcome(
        await client.get("/CodeSystem/$lookup", params={"system": LOCAL_CS["url"], "code": "home"}),
        404,
        "not-found",
    )


async def test_a_stored_copy_of_a_shipped_value_set_wins_and_deleting_it_restores_the_package(
    client,
):
    stored = (await client.get("/ValueSet/bib-care-level")).json()
    stored["compose"]["include"][0]["concept"] = [{"code": "specialised"}]
    assert (await client.put("/ValueSet/bib-care-level", json=stored)).status_code == 200
    body = await ok(client.get("/ValueSet/$expand", params={"url": CARE_LEVEL_VS}))
    assert codes(body) == ["specialised"]
    assert (await client.delete("/ValueSet/bib-care-level")).status_code in (200, 204)
    body = await ok(client.get("/ValueSet/$expand", params={"url": CARE_LEVEL_VS}))
    assert codes(body) == ["basic", "specialised"]  # the packaged definition again


async def test_stored_code_system_without_url_works_at_instance_level(client):
    anonymous = {key: value for key, value in LOCAL_CS.items() if key != "url"}
    anonymous["id"] = "no-url"
    assert (await client.put("/CodeSystem/no-url", json=anonymous)).status_code == 201
    body = await ok(client.get("/CodeSystem/no-url/$lookup", params={"code": "office"}))
    assert param(body, "display") == "Office visit"
    body = await ok(client.get("/CodeSystem/no-url/$validate-code", params={"code": "nope"}))
    assert param(body, "result") is False


async def test_search_in_with_a_stored_value_set(client):
    await client.put("/CodeSystem/local-visit-type", json=LOCAL_CS)
    await client.put("/ValueSet/local-visits", json=LOCAL_VS)
    for id_, code in (("e1", "home"), ("e2", "office"), ("e3", "elsewhere")):
        encounter = {
            "resourceType": "Encounter",
            "id": id_,
            "status": "finished",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "HH"},
            "type": [{"coding": [{"system": LOCAL_CS["url"], "code": code}]}],
        }
        assert (await client.put(f"/Encounter/{id_}", json=encounter)).status_code == 201
    assert sorted(await search_ids(client, "Encounter", "type:in=ValueSet/local-visits")) == [
        "e1",
        "e2",
    ]
    assert await search_ids(client, "Encounter", f"type:not-in={LOCAL_VS['url']}") == ["e3"]
    assert sorted(
        await search_ids(
            client, "Encounter", "type:in=http://testserver/fhir/ValueSet/local-visits"
        )
    ) == ["e1", "e2"]
    response = await client.get("/Encounter", params={"type:in": f"{BIB}/ValueSet/nope"})
    assert_outcome(response, 400, "invalid")


async def test_every_shipped_resource_passes_validation(client, app):
    for resource in shipped_resources():
        body = orjson.loads(orjson.dumps(resource))
        app.service.validate(body, resource["resourceType"])


def _ctx(settings):
    from fhir_server.service.context import RequestContext

    return RequestContext(base_url=settings.public_url)
