"""read, vread, create, update and delete (FHIR R4 http.html sections 3.1.0.2-3.1.0.7)."""

from __future__ import annotations

from datetime import timedelta

from tests.http.fhir_helpers import (
    BASE,
    assert_fhir_json,
    assert_outcome,
    create,
    history_entries,
    http_date,
    instant,
    observation,
    patient,
    put,
    search_ids,
    strip_meta,
    version_count,
)

# -- create -------------------------------------------------------------------------------------


async def test_create_returns_201_with_location_etag_and_last_modified(client):
    response = await client.post("/Patient", json=patient("Smith"))

    assert response.status_code == 201
    assert_fhir_json(response)
    body = response.json()
    new_id = body["id"]
    assert response.headers["location"] == f"{BASE}/Patient/{new_id}/_history/1"
    assert response.headers["etag"] == 'W/"1"'
    assert body["meta"]["versionId"] == "1"
    last_updated = instant(body["meta"]["lastUpdated"])
    last_modified = http_date(response)
    assert abs(last_modified - last_updated) < timedelta(seconds=1)
    assert body["name"] == [{"family": "Smith", "given": ["Jane"]}]


async def test_create_ignores_the_client_id_and_assigns_its_own(client):
    response = await client.post("/Patient", json=patient(id="my-own-id"))

    assert response.status_code == 201
    new_id = response.json()["id"]
    assert new_id != "my-own-id"
    assert (await client.get("/Patient/my-own-id")).status_code == 404
    assert (await client.get(f"/Patient/{new_id}")).status_code == 200


async def test_create_overrides_client_supplied_version_meta_but_keeps_tags(client):
    tag = {"system": "http://example.org/tags", "code": "vip"}
    body = patient(meta={"versionId": "42", "lastUpdated": "2001-01-01T00:00:00Z", "tag": [tag]})

    created = await create(client, body)

    assert created["meta"]["versionId"] == "1"
    assert not created["meta"]["lastUpdated"].startswith("2001")
    assert created["meta"]["tag"] == [tag]


async def test_location_of_created_resource_can_be_read(client):
    response = await client.post("/Observation", json=observation())
    followed = await client.get(response.headers["location"])
    assert followed.status_code == 200
    assert followed.json() == response.json()


# -- read / vread -------------------------------------------------------------------------------


async def test_read_returns_current_version_with_headers(client):
    created = await create(client, patient("Reader"))

    response = await client.get(f"/Patient/{created['id']}")

    assert response.status_code == 200
    assert_fhir_json(response)
    assert response.json() == created
    assert response.headers["etag"] == 'W/"1"'
    assert abs(http_date(response) - instant(created["meta"]["lastUpdated"])) < timedelta(seconds=1)


async def test_read_unknown_id_is_404_operation_outcome(client):
    assert_outcome(await client.get("/Patient/does-not-exist"), 404, "not-found")


async def test_head_read_has_headers_and_no_body(client):
    created = await create(client, patient())
    response = await client.head(f"/Patient/{created['id']}")
    assert response.status_code == 200
    assert response.headers["etag"] == 'W/"1"'
    assert response.content == b""


async def test_vread_returns_old_versions_unchanged(client):
    v1 = await create(client, patient("First"))
    v2 = (await put(client, {**v1, "name": [{"family": "Second"}]})).json()

    old = await client.get(f"/Patient/{v1['id']}/_history/1")
    new = await client.get(f"/Patient/{v1['id']}/_history/2")

    assert old.status_code == 200 and new.status_code == 200
    assert old.json() == v1
    assert old.headers["etag"] == 'W/"1"'
    assert new.json() == v2
    assert new.headers["etag"] == 'W/"2"'


async def test_vread_unknown_version_is_404(client):
    created = await create(client, patient())
    assert_outcome(await client.get(f"/Patient/{created['id']}/_history/9"), 404, "not-found")
    assert_outcome(await client.get(f"/Patient/{created['id']}/_history/abc"), 404, "not-found")


async def test_vread_of_the_deletion_version_is_410(client):
    created = await create(client, patient())
    assert (await client.delete(f"/Patient/{created['id']}")).status_code in (200, 204)

    assert_outcome(await client.get(f"/Patient/{created['id']}/_history/2"), 410, "deleted")
    # the version before the delete is still there
    assert (await client.get(f"/Patient/{created['id']}/_history/1")).status_code == 200


# -- update -------------------------------------------------------------------------------------


async def test_update_returns_200_and_the_next_version(client):
    created = await create(client, patient("Before"))
    changed = {**created, "name": [{"family": "After"}]}

    response = await put(client, changed)

    assert response.status_code == 200
    body = response.json()
    assert body["meta"]["versionId"] == "2"
    assert body["name"] == [{"family": "After"}]
    assert response.headers["etag"] == 'W/"2"'
    assert response.headers["location"] == f"{BASE}/Patient/{created['id']}/_history/2"
    assert instant(body["meta"]["lastUpdated"]) >= instant(created["meta"]["lastUpdated"])
    assert (await client.get(f"/Patient/{created['id']}")).json() == body


async def test_update_as_create_with_client_id_returns_201(client):
    response = await put(client, patient("Client", id="client-chosen-1"))

    assert response.status_code == 201
    assert response.headers["location"] == f"{BASE}/Patient/client-chosen-1/_history/1"
    assert response.headers["etag"] == 'W/"1"'
    assert response.json()["id"] == "client-chosen-1"
    assert response.json()["meta"]["versionId"] == "1"
    assert (await client.get("/Patient/client-chosen-1")).status_code == 200


async def test_update_without_id_in_body_is_rejected(client):
    created = await create(client, patient())
    before = await version_count(client)

    body = strip_meta(created) | {"resourceType": "Patient"}
    response = await client.put(f"/Patient/{created['id']}", json=body)

    assert_outcome(response, 400)
    assert await version_count(client) == before


async def test_update_with_wrong_resource_type_for_url_is_rejected(client):
    created = await create(client, patient())
    before = await version_count(client)

    body = observation() | {"id": created["id"]}
    response = await client.put(f"/Patient/{created['id']}", json=body)

    assert_outcome(response, 400)
    assert await version_count(client) == before


async def test_update_of_a_deleted_resource_brings_it_back(client):
    created = await create(client, patient("Lazarus"))
    await client.delete(f"/Patient/{created['id']}")

    response = await put(client, {**strip_meta(created), "resourceType": "Patient",
                                   "id": created["id"]})  # fmt: skip

    assert response.status_code == 201
    assert int(response.json()["meta"]["versionId"]) > 2
    assert (await client.get(f"/Patient/{created['id']}")).status_code == 200


# -- delete -------------------------------------------------------------------------------------


async def test_delete_then_read_is_410_with_operation_outcome(client):
    created = await create(client, patient())

    response = await client.delete(f"/Patient/{created['id']}")

    assert response.status_code == 204
    assert response.content == b""
    assert_outcome(await client.get(f"/Patient/{created['id']}"), 410, "deleted")


async def test_deleted_resource_is_gone_from_search_but_kept_in_history(client):
    created = await create(client, patient(mrn="del-1"))
    await client.delete(f"/Patient/{created['id']}")

    assert await search_ids(client, "Patient", "identifier=http://example.org/mrn|del-1") == []
    entries = await history_entries(client, f"/Patient/{created['id']}/_history")
    assert [e["request"]["method"] for e in entries] == ["DELETE", "POST"]


async def test_delete_of_unknown_resource_is_204_and_writes_nothing(client):
    before = await version_count(client)
    response = await client.delete("/Patient/never-existed")
    assert response.status_code == 204
    assert await version_count(client) == before
    assert (await client.get("/Patient/never-existed")).status_code == 404


async def test_deleting_twice_does_not_add_versions(client):
    created = await create(client, patient())
    await client.delete(f"/Patient/{created['id']}")
    before = await version_count(client)

    again = await client.delete(f"/Patient/{created['id']}")

    assert again.status_code in (200, 204)
    assert await version_count(client) == before
