"""Conditional create, update and delete (header and fhirpy query-string styles)."""

from __future__ import annotations

import pytest

from tests.http.fhir_helpers import (
    BASE,
    assert_outcome,
    create,
    identifier_query,
    patient,
    search_ids,
    version_count,
)


async def _ids_with_mrn(client, mrn: str) -> list[str]:
    return await search_ids(client, "Patient", identifier_query(mrn))


# -- conditional create: If-None-Exist ----------------------------------------------------------


async def test_if_none_exist_without_match_creates(client):
    response = await client.post(
        "/Patient", json=patient(mrn="c-1"), headers={"If-None-Exist": identifier_query("c-1")}
    )
    assert response.status_code == 201
    new_id = response.json()["id"]
    assert response.headers["location"] == f"{BASE}/Patient/{new_id}/_history/1"
    assert await _ids_with_mrn(client, "c-1") == [new_id]


async def test_if_none_exist_with_one_match_returns_existing_and_creates_nothing(client):
    existing = await create(client, patient("Original", mrn="c-2"))
    before = await version_count(client)

    response = await client.post(
        "/Patient",
        json=patient("Duplicate", mrn="c-2"),
        headers={"If-None-Exist": identifier_query("c-2")},
    )

    assert response.status_code == 200
    assert response.json()["id"] == existing["id"]
    assert response.json()["name"][0]["family"] == "Original"
    assert response.headers["etag"] == 'W/"1"'
    assert await _ids_with_mrn(client, "c-2") == [existing["id"]]
    assert await version_count(client) == before


async def test_if_none_exist_with_two_matches_is_412(client):
    await create(client, patient("One", mrn="c-3"))
    await create(client, patient("Two", mrn="c-3"))
    before = await version_count(client)

    response = await client.post(
        "/Patient", json=patient(mrn="c-3"), headers={"If-None-Exist": identifier_query("c-3")}
    )

    assert_outcome(response, 412)
    assert len(await _ids_with_mrn(client, "c-3")) == 2
    assert await version_count(client) == before


async def test_if_none_exist_with_unknown_search_parameter_is_rejected(client):
    # silently ignoring the unknown parameter would turn the condition into "match anything"
    await create(client, patient(mrn="c-4"))
    before = await version_count(client)
    response = await client.post(
        "/Patient", json=patient(mrn="c-4"), headers={"If-None-Exist": "not-a-param=x"}
    )
    assert_outcome(response, 400)
    assert await version_count(client) == before


# -- conditional create: fhirpy style (search parameters in the POST URL) -----------------------


async def test_fhirpy_create_with_query_creates_when_absent(client):
    response = await client.post(f"/Patient?{identifier_query('f-1')}", json=patient(mrn="f-1"))
    assert response.status_code == 201
    assert await _ids_with_mrn(client, "f-1") == [response.json()["id"]]


async def test_fhirpy_create_with_query_returns_existing_when_present(client):
    existing = await create(client, patient("Existing", mrn="f-2"))
    before = await version_count(client)

    response = await client.post(f"/Patient?{identifier_query('f-2')}", json=patient(mrn="f-2"))

    assert response.status_code == 200
    assert response.json()["id"] == existing["id"]
    assert await version_count(client) == before


async def test_fhirpy_create_with_query_and_multiple_matches_is_412(client):
    await create(client, patient(mrn="f-3"))
    await create(client, patient(mrn="f-3"))
    before = await version_count(client)
    response = await client.post(f"/Patient?{identifier_query('f-3')}", json=patient(mrn="f-3"))
    assert_outcome(response, 412)
    assert await version_count(client) == before


async def test_format_parameters_on_create_url_are_not_a_condition(client):
    await create(client, patient(mrn="f-4"))
    response = await client.post("/Patient?_format=json&_pretty=true", json=patient(mrn="f-4"))
    assert response.status_code == 201
    assert len(await _ids_with_mrn(client, "f-4")) == 2


# -- conditional update -------------------------------------------------------------------------


async def test_conditional_update_without_match_creates(client):
    response = await client.put(f"/Patient?{identifier_query('u-1')}", json=patient(mrn="u-1"))

    assert response.status_code == 201
    new_id = response.json()["id"]
    assert response.headers["location"] == f"{BASE}/Patient/{new_id}/_history/1"
    assert await _ids_with_mrn(client, "u-1") == [new_id]


async def test_conditional_update_without_match_and_with_body_id_uses_that_id(client):
    response = await client.put(
        f"/Patient?{identifier_query('u-2')}", json=patient(mrn="u-2", id="chosen-by-client")
    )
    assert response.status_code == 201
    assert response.json()["id"] == "chosen-by-client"
    assert (await client.get("/Patient/chosen-by-client")).status_code == 200


async def test_conditional_update_with_one_match_updates_it(client):
    existing = await create(client, patient("Before", mrn="u-3"))

    response = await client.put(
        f"/Patient?{identifier_query('u-3')}", json=patient("After", mrn="u-3")
    )

    assert response.status_code == 200
    body = response.json()
    assert body["id"] == existing["id"]
    assert body["meta"]["versionId"] == "2"
    assert response.headers["etag"] == 'W/"2"'
    assert await _ids_with_mrn(client, "u-3") == [existing["id"]]
    assert (await client.get(f"/Patient/{existing['id']}")).json()["name"][0]["family"] == "After"


async def test_conditional_update_with_matching_body_id_updates(client):
    existing = await create(client, patient("Before", mrn="u-4"))
    response = await client.put(
        f"/Patient?{identifier_query('u-4')}", json=patient("After", mrn="u-4", id=existing["id"])
    )
    assert response.status_code == 200
    assert response.json()["id"] == existing["id"]


async def test_conditional_update_with_conflicting_body_id_is_400(client):
    existing = await create(client, patient("Before", mrn="u-5"))
    before = await version_count(client)

    response = await client.put(
        f"/Patient?{identifier_query('u-5')}", json=patient("After", mrn="u-5", id="other-id")
    )

    assert_outcome(response, 400)
    assert await version_count(client) == before
    assert (await client.get(f"/Patient/{existing['id']}")).json() == existing
    assert (await client.get("/Patient/other-id")).status_code == 404


async def test_conditional_update_with_two_matches_is_412(client):
    first = await create(client, patient("One", mrn="u-6"))
    second = await create(client, patient("Two", mrn="u-6"))
    before = await version_count(client)

    response = await client.put(f"/Patient?{identifier_query('u-6')}", json=patient(mrn="u-6"))

    assert_outcome(response, 412)
    assert await version_count(client) == before
    assert (await client.get(f"/Patient/{first['id']}")).json() == first
    assert (await client.get(f"/Patient/{second['id']}")).json() == second


async def test_conditional_update_honours_if_match(client):
    existing = await create(client, patient("Before", mrn="u-7"))
    before = await version_count(client)
    response = await client.put(
        f"/Patient?{identifier_query('u-7')}",
        json=patient("After", mrn="u-7"),
        headers={"If-Match": 'W/"9"'},
    )
    assert_outcome(response, 412)
    assert await version_count(client) == before
    assert (await client.get(f"/Patient/{existing['id']}")).json() == existing


async def test_conditional_update_with_invalid_body_is_400_and_writes_nothing(client):
    existing = await create(client, patient(mrn="u-8"))
    before = await version_count(client)
    response = await client.put(
        f"/Patient?{identifier_query('u-8')}", json=patient(mrn="u-8", birthDate="2023-02-30")
    )
    assert_outcome(response, 400)
    assert await version_count(client) == before
    assert (await client.get(f"/Patient/{existing['id']}")).json() == existing


async def test_type_level_put_without_search_parameters_is_rejected(client):
    before = await version_count(client)
    response = await client.put("/Patient", json=patient())
    assert 400 <= response.status_code < 500
    assert_outcome(response, response.status_code)
    assert await version_count(client) == before


# -- conditional delete -------------------------------------------------------------------------


async def test_conditional_delete_single_match(client):
    target = await create(client, patient(mrn="d-1"))
    bystander = await create(client, patient(mrn="d-2"))

    response = await client.delete(f"/Patient?{identifier_query('d-1')}")

    assert response.status_code in (200, 204)
    assert_outcome(await client.get(f"/Patient/{target['id']}"), 410, "deleted")
    assert (await client.get(f"/Patient/{bystander['id']}")).status_code == 200


async def test_conditional_delete_multiple_matches_is_412_by_default(client):
    first = await create(client, patient(mrn="d-3"))
    second = await create(client, patient(mrn="d-3"))
    before = await version_count(client)

    response = await client.delete(f"/Patient?{identifier_query('d-3')}")

    assert_outcome(response, 412)
    assert await version_count(client) == before
    assert (await client.get(f"/Patient/{first['id']}")).status_code == 200
    assert (await client.get(f"/Patient/{second['id']}")).status_code == 200


async def test_conditional_delete_without_match_writes_nothing(client):
    await create(client, patient(mrn="d-4"))
    before = await version_count(client)
    response = await client.delete(f"/Patient?{identifier_query('nobody')}")
    # R4: no match -> an ordinary delete of an unknown resource (200/204) or 404
    assert response.status_code in (200, 204, 404)
    assert await version_count(client) == before


@pytest.mark.parametrize("url", ["/Patient", "/Patient?_format=json"])
async def test_conditional_delete_without_criteria_deletes_nothing(client, url):
    survivor = await create(client, patient(mrn="d-5"))
    before = await version_count(client)
    response = await client.delete(url)
    assert 400 <= response.status_code < 500
    assert_outcome(response, response.status_code)
    assert await version_count(client) == before
    assert (await client.get(f"/Patient/{survivor['id']}")).status_code == 200


async def test_conditional_delete_with_unknown_parameter_deletes_nothing(client):
    survivor = await create(client, patient(mrn="d-6"))
    before = await version_count(client)
    response = await client.delete("/Patient?no-such-param=1")
    assert_outcome(response, 400)
    assert await version_count(client) == before
    assert (await client.get(f"/Patient/{survivor['id']}")).status_code == 200
