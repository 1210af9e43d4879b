"""Patient/[id]/$everything (R4): the patient and her compartment, paged with snapshot cursors,
with start / end / _since / _type / _count."""

from __future__ import annotations

import pytest

from tests.pathways.conftest import create, new_patient, ref

pytestmark = pytest.mark.asyncio(loop_scope="module")


def observation(pid: str, when: str) -> dict:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "weight"},
        "subject": ref(f"Patient/{pid}"),
        "effectiveDateTime": when,
    }


async def everything(client, pid: str, **params) -> list[dict]:
    """Every entry, following the next links."""
    response = await client.get(f"/Patient/{pid}/$everything", params=params)
    assert response.status_code == 200, response.text
    entries = []
    while True:
        bundle = response.json()
        assert bundle["type"] == "searchset"
        entries += [
            e["resource"] for e in bundle.get("entry", ()) if e["search"]["mode"] == "match"
        ]
        nxt = [link["url"] for link in bundle.get("link", ()) if link["relation"] == "next"]
        if not nxt:
            return entries
        assert "/$everything?" in nxt[0]
        response = await client.get(nxt[0])
        assert response.status_code == 200, response.text


async def test_everything_of_a_patient_and_only_hers(client):
    pid = await new_patient(client)
    other = await new_patient(client)
    made = [
        await create(client, observation(pid, "2026-01-10")),
        await create(client, observation(pid, "2026-06-10")),
        await create(
            client,
            {
                "resourceType": "CarePlan",
                "status": "active",
                "intent": "plan",
                "subject": ref(f"Patient/{pid}"),
            },
        ),
        await create(
            client,
            {"resourceType": "Condition", "subject": ref(f"Patient/{pid}"), "code": {"text": "x"}},
        ),
    ]
    await create(client, observation(other, "2026-01-10"))
    found = await everything(client, pid, _count="2")  # paged
    keys = sorted(f"{r['resourceType']}/{r['id']}" for r in found)
    assert keys == sorted([f"Patient/{pid}", *(f"{r['resourceType']}/{r['id']}" for r in made)])


async def test_type_since_and_care_dates(client):
    pid = await new_patient(client)
    early = await create(client, observation(pid, "2026-01-10"))
    late = await create(client, observation(pid, "2026-06-10"))
    condition = await create(
        client,
        {"resourceType": "Condition", "subject": ref(f"Patient/{pid}"), "code": {"text": "x"}},
    )
    only = await everything(client, pid, _type="Observation")
    assert {r["id"] for r in only} == {early["id"], late["id"]}
    dated = await everything(client, pid, start="2026-03-01", end="2026-12-31")
    ids = {r["id"] for r in dated}
    assert late["id"] in ids and early["id"] not in ids
    assert condition["id"] in ids and pid in ids  # no care date: in scope
    since = late["meta"]["lastUpdated"]
    recent = await everything(client, pid, _since=since)
    assert early["id"] not in {r["id"] for r in recent}
    assert late["id"] in {r["id"] for r in recent}


async def test_post_and_errors(client):
    pid = await new_patient(client)
    response = await client.post(
        f"/Patient/{pid}/$everything",
        json={
            "resourceType": "Parameters",
            "parameter": [{"name": "_type", "valueCode": "Patient"}],
        },
    )
    assert response.status_code == 200, response.text
    assert [e["resource"]["id"] for e in response.json()["entry"]] == [pid]
    assert (await client.get("/Patient/nobody/$everything")).status_code == 404
    assert (await client.get("/Patient/$everything")).status_code == 404
    for params in ({"_type": "Organization"}, {"start": "soon"}, {"color": "red"}):
        response = await client.get(f"/Patient/{pid}/$everything", params=params)
        assert response.status_code == 400, params
