"""Version-aware interactions: If-Match, If-None-Match, If-Modified-Since and no-op updates."""

from __future__ import annotations

from email.utils import format_datetime

import pytest

from tests.http.fhir_helpers import (
    assert_outcome,
    create,
    history_entries,
    http_date,
    patient,
    put,
    version_count,
)

ETAG_SPELLINGS = ['W/"1"', '"1"', "1"]  # clients send all three


async def _patient_v1(client) -> dict:
    return await create(client, patient("Versioned"))


def _renamed(resource: dict, family: str) -> dict:
    return {**resource, "name": [{"family": family}]}


# -- If-Match -----------------------------------------------------------------------------------


@pytest.mark.parametrize("if_match", ETAG_SPELLINGS)
async def test_update_with_matching_if_match_succeeds(client, if_match):
    v1 = await _patient_v1(client)

    response = await put(client, _renamed(v1, "Matched"), **{"If-Match": if_match})

    assert response.status_code == 200, response.text
    assert response.headers["etag"] == 'W/"2"'


@pytest.mark.parametrize("if_match", ['W/"7"', '"2"', "0"])
async def test_update_with_stale_if_match_is_412_and_writes_nothing(client, if_match):
    v1 = await _patient_v1(client)

    response = await put(client, _renamed(v1, "Lost update"), **{"If-Match": if_match})

    assert_outcome(response, 412)
    current = (await client.get(f"/Patient/{v1['id']}")).json()
    assert current == v1


async def test_second_writer_with_same_if_match_loses(client):
    v1 = await _patient_v1(client)
    first = await put(client, _renamed(v1, "Writer A"), **{"If-Match": 'W/"1"'})
    second = await put(client, _renamed(v1, "Writer B"), **{"If-Match": 'W/"1"'})

    assert first.status_code == 200
    assert_outcome(second, 412)
    assert (await client.get(f"/Patient/{v1['id']}")).json()["name"][0]["family"] == "Writer A"


async def test_if_match_on_update_of_missing_resource_is_412(client):
    response = await put(client, patient(id="nobody-here"), **{"If-Match": 'W/"1"'})
    assert_outcome(response, 412)
    assert (await client.get("/Patient/nobody-here")).status_code == 404


async def test_delete_with_stale_if_match_is_412_and_keeps_resource(client):
    v1 = await _patient_v1(client)
    response = await client.delete(f"/Patient/{v1['id']}", headers={"If-Match": 'W/"5"'})
    assert_outcome(response, 412)
    assert (await client.get(f"/Patient/{v1['id']}")).status_code == 200


async def test_delete_with_matching_if_match_deletes(client):
    v1 = await _patient_v1(client)
    response = await client.delete(f"/Patient/{v1['id']}", headers={"If-Match": 'W/"1"'})
    assert response.status_code in (200, 204)
    assert (await client.get(f"/Patient/{v1['id']}")).status_code == 410


async def test_malformed_if_match_is_400(client):
    v1 = await _patient_v1(client)
    response = await put(client, _renamed(v1, "X"), **{"If-Match": 'W/"abc"'})
    assert_outcome(response, 400)
    assert (await client.get(f"/Patient/{v1['id']}")).json() == v1


# -- If-None-Match: * on update (create-only PUT) -----------------------------------------------


async def test_if_none_match_star_on_existing_resource_is_412(client):
    v1 = await _patient_v1(client)
    response = await put(client, _renamed(v1, "Overwrite"), **{"If-None-Match": "*"})
    assert_outcome(response, 412)
    assert (await client.get(f"/Patient/{v1['id']}")).json() == v1


async def test_if_none_match_star_on_new_id_creates(client):
    response = await put(client, patient(id="fresh-one"), **{"If-None-Match": "*"})
    assert response.status_code == 201
    assert response.headers["etag"] == 'W/"1"'


# -- conditional read ---------------------------------------------------------------------------


@pytest.mark.parametrize("if_none_match", ETAG_SPELLINGS)
async def test_read_with_current_etag_is_304(client, if_none_match):
    v1 = await _patient_v1(client)

    response = await client.get(f"/Patient/{v1['id']}", headers={"If-None-Match": if_none_match})

    assert response.status_code == 304
    assert response.content == b""
    assert response.headers["etag"] == 'W/"1"'


async def test_read_with_outdated_etag_returns_the_resource(client):
    v1 = await _patient_v1(client)
    v2 = (await put(client, _renamed(v1, "Newer"))).json()

    response = await client.get(f"/Patient/{v1['id']}", headers={"If-None-Match": 'W/"1"'})

    assert response.status_code == 200
    assert response.json() == v2
    assert response.headers["etag"] == 'W/"2"'


async def test_read_if_modified_since_last_modified_is_304(client):
    v1 = await _patient_v1(client)
    first = await client.get(f"/Patient/{v1['id']}")

    response = await client.get(
        f"/Patient/{v1['id']}", headers={"If-Modified-Since": first.headers["last-modified"]}
    )

    assert response.status_code == 304
    assert response.content == b""


async def test_read_if_modified_since_older_date_is_200(client):
    v1 = await _patient_v1(client)
    first = await client.get(f"/Patient/{v1['id']}")
    long_ago = format_datetime(http_date(first).replace(year=2000), usegmt=True)

    response = await client.get(f"/Patient/{v1['id']}", headers={"If-Modified-Since": long_ago})

    assert response.status_code == 200
    assert response.json() == v1


# -- no-op updates ------------------------------------------------------------------------------


async def test_update_with_identical_content_creates_no_new_version(client):
    v1 = await _patient_v1(client)
    before = await version_count(client)

    response = await put(client, v1)  # exactly what read returned, meta included

    assert response.status_code == 200
    assert response.headers["etag"] == 'W/"1"'
    assert response.json()["meta"]["versionId"] == "1"
    assert await version_count(client) == before
    assert len(await history_entries(client, f"/Patient/{v1['id']}/_history")) == 1


async def test_update_identical_content_without_meta_creates_no_new_version(client):
    v1 = await _patient_v1(client)
    body = {k: v for k, v in v1.items() if k != "meta"}

    response = await put(client, body)

    assert response.status_code == 200
    assert response.json()["meta"]["versionId"] == "1"


async def test_update_changing_only_a_tag_is_a_new_version(client):
    v1 = await _patient_v1(client)
    tagged = {**v1, "meta": {**v1["meta"], "tag": [{"system": "http://e.org", "code": "t"}]}}

    response = await put(client, tagged)

    assert response.status_code == 200
    assert response.json()["meta"]["versionId"] == "2"
