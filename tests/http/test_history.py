"""History at instance, type and system level: content, order, _since, _at, _count and paging."""

from __future__ import annotations

import pytest

from tests.http.fhir_helpers import (
    BASE,
    assert_fhir_json,
    assert_outcome,
    create,
    history_entries,
    next_link,
    observation,
    patient,
    put,
)


async def _three_versions_then_delete(client) -> tuple[str, list[dict]]:
    v1 = await create(client, patient("One"))
    v2 = (await put(client, {**v1, "name": [{"family": "Two"}]})).json()
    v3 = (await put(client, {**v2, "name": [{"family": "Three"}]})).json()
    assert (await client.delete(f"/Patient/{v1['id']}")).status_code in (200, 204)
    return v1["id"], [v1, v2, v3]


def _version_ids(entries: list[dict]) -> list[str]:
    out = []
    for entry in entries:
        if "resource" in entry:
            out.append(entry["resource"]["meta"]["versionId"])
        else:
            out.append(entry["response"]["etag"])
    return out


async def test_instance_history_lists_all_versions_newest_first(client):
    id_, versions = await _three_versions_then_delete(client)

    response = await client.get(f"/Patient/{id_}/_history")

    assert response.status_code == 200
    assert_fhir_json(response)
    bundle = response.json()
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "history"
    entries = bundle["entry"]
    assert [e["request"]["method"] for e in entries] == ["DELETE", "PUT", "PUT", "POST"]
    assert "resource" not in entries[0]
    assert entries[0]["response"]["etag"] == 'W/"4"'
    assert entries[0]["response"]["status"].startswith("20")
    assert [e["resource"] for e in entries[1:]] == versions[::-1]
    for entry in entries:
        assert entry["fullUrl"] == f"{BASE}/Patient/{id_}"
        assert entry["response"]["status"][:3].isdigit()
    assert entries[-1]["request"]["url"] == "Patient"
    assert entries[1]["request"]["url"] == f"Patient/{id_}"


async def test_history_entries_can_be_vread(client):
    id_, _ = await _three_versions_then_delete(client)
    for entry in await history_entries(client, f"/Patient/{id_}/_history"):
        if "resource" not in entry:
            continue
        vid = entry["resource"]["meta"]["versionId"]
        old = await client.get(f"/Patient/{id_}/_history/{vid}")
        assert old.status_code == 200
        assert old.json() == entry["resource"]


async def test_type_history_only_contains_that_type(client):
    p = await create(client, patient())
    await create(client, observation(subject=f"Patient/{p['id']}"))

    entries = await history_entries(client, "/Patient/_history")

    assert [e["resource"]["resourceType"] for e in entries] == ["Patient"]


async def test_system_history_contains_all_types(client):
    p = await create(client, patient())
    o = await create(client, observation(subject=f"Patient/{p['id']}"))

    entries = await history_entries(client, "/_history")

    assert [(e["resource"]["resourceType"], e["resource"]["id"]) for e in entries] == [
        ("Observation", o["id"]),
        ("Patient", p["id"]),
    ]


async def test_history_of_unknown_instance_is_404(client):
    assert_outcome(await client.get("/Patient/nobody/_history"), 404, "not-found")


async def test_history_of_unknown_type_is_404(client):
    assert_outcome(await client.get("/Unicorn/_history"), 404)


# -- _count and paging --------------------------------------------------------------------------


async def test_history_count_pages_with_working_next_links(client):
    created = [await create(client, patient(f"P{i}")) for i in range(5)]

    first = await client.get("/Patient/_history", params={"_count": "2"})
    assert first.status_code == 200
    assert len(first.json()["entry"]) == 2

    seen: list[str] = []
    url: str | None = str(first.url)
    pages = 0
    while url:
        page = await client.get(url)
        assert page.status_code == 200
        bundle = page.json()
        assert len(bundle.get("entry", ())) <= 2
        seen.extend(e["resource"]["id"] for e in bundle.get("entry", ()))
        url = next_link(bundle)
        if url is not None:
            assert url.startswith(BASE + "/Patient/_history?")
        pages += 1
        assert pages < 10, "next links do not terminate"
    assert pages == 3
    assert seen == [p["id"] for p in reversed(created)]


async def test_instance_history_count_one(client):
    id_, _ = await _three_versions_then_delete(client)
    entries = await history_entries(client, f"/Patient/{id_}/_history?_count=1")
    assert len(entries) == 4
    assert _version_ids(entries) == ['W/"4"', "3", "2", "1"]


async def test_history_paging_is_stable_while_writes_happen(client):
    for i in range(4):
        await create(client, patient(f"Old{i}"))
    first = (await client.get("/_history", params={"_count": "2"})).json()
    await create(client, patient("Newcomer"))

    second = (await client.get(next_link(first))).json()

    names = [e["resource"]["name"][0]["family"] for e in first["entry"] + second["entry"]]
    assert names == ["Old3", "Old2", "Old1", "Old0"]


@pytest.mark.parametrize("count", ["0", "-1", "abc"])
async def test_history_invalid_count_is_400(client, count):
    assert_outcome(await client.get("/_history", params={"_count": count}), 400)


# -- _since and _at -----------------------------------------------------------------------------


async def test_history_since_excludes_older_versions(client):
    old = await create(client, patient("Old"))
    new = await create(client, patient("New"))
    updated_old = (await put(client, {**old, "name": [{"family": "Old v2"}]})).json()

    since = new["meta"]["lastUpdated"]
    entries = await history_entries(client, f"/Patient/_history?_since={since}")

    assert [(e["resource"]["id"], e["resource"]["meta"]["versionId"]) for e in entries] == [
        (updated_old["id"], "2"),
        (new["id"], "1"),
    ]


async def test_history_since_with_timezone_offset(client):
    created = await create(client, patient())
    response = await client.get(
        f"/Patient/{created['id']}/_history", params={"_since": "2000-01-01T00:00:00+02:00"}
    )
    assert response.status_code == 200
    assert len(response.json()["entry"]) == 1
    future = await client.get(
        f"/Patient/{created['id']}/_history", params={"_since": "2999-01-01T00:00:00+02:00"}
    )
    assert future.status_code == 200
    assert future.json().get("entry", []) == []


async def test_history_at_returns_the_version_current_then(client):
    v1 = await create(client, patient("First"))
    v2 = (await put(client, {**v1, "name": [{"family": "Second"}]})).json()
    await put(client, {**v2, "name": [{"family": "Third"}]})

    at = v2["meta"]["lastUpdated"]
    entries = await history_entries(client, f"/Patient/{v1['id']}/_history?_at={at}")

    assert [e["resource"]["meta"]["versionId"] for e in entries] == ["2"]


async def test_history_at_before_creation_is_empty(client):
    created = await create(client, patient())
    response = await client.get(f"/Patient/{created['id']}/_history", params={"_at": "2001"})
    assert response.status_code == 200
    assert response.json().get("entry", []) == []


@pytest.mark.parametrize("param", ["_since", "_at"])
async def test_history_invalid_date_parameter_is_400(client, param):
    assert_outcome(await client.get("/_history", params={param: "yesterday"}), 400)


async def test_history_self_link_is_absolute(client):
    await create(client, patient())
    bundle = (await client.get("/Patient/_history", params={"_count": "5"})).json()
    self_links = [link["url"] for link in bundle["link"] if link["relation"] == "self"]
    assert len(self_links) == 1
    assert self_links[0].startswith(f"{BASE}/Patient/_history")
