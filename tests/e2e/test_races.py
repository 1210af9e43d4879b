"""End-to-end: 50 clients racing over real HTTP on the same resource or the same condition.

What a hospital integrator needs from concurrent writers: exactly one of them wins each race, the
others get the answer the spec gives (412, or the existing resource), and no duplicate is ever
created by a conditional interaction.
"""

from __future__ import annotations

import asyncio
from collections import Counter

import httpx

RACERS = 50


async def race(calls: list) -> Counter[int]:
    responses = await asyncio.gather(*calls)
    return Counter(r.status_code for r in responses)


async def matches(client: httpx.AsyncClient, query: str) -> int:
    return (await client.get(f"/Patient?{query}")).json()["total"]


async def test_racing_writers_have_one_winner(live_server) -> None:
    limits = httpx.Limits(max_connections=RACERS)
    async with httpx.AsyncClient(base_url=live_server.base, timeout=30, limits=limits) as client:
        created = (await client.post("/Patient", json={"resourceType": "Patient"})).json()
        pid = created["id"]
        updates = [
            client.put(
                f"/Patient/{pid}",
                json={**created, "birthDate": f"2000-01-{i % 28 + 1:02d}"},
                headers={"If-Match": 'W/"1"'},
            )
            for i in range(RACERS)
        ]
        assert await race(updates) == {200: 1, 412: RACERS - 1}
        history = (await client.get(f"/Patient/{pid}/_history")).json()
        assert len(history["entry"]) == 2

        body = {"resourceType": "Patient", "identifier": [{"system": "urn:race", "value": "1"}]}
        creates = [
            client.post("/Patient", json=body, headers={"If-None-Exist": "identifier=urn:race|1"})
            for _ in range(RACERS)
        ]
        assert await race(creates) == {201: 1, 200: RACERS - 1}
        assert await matches(client, "identifier=urn:race|1") == 1

        body = {"resourceType": "Patient", "identifier": [{"system": "urn:race", "value": "2"}]}
        upserts = [client.put("/Patient?identifier=urn:race|2", json=body) for _ in range(RACERS)]
        assert (await race(upserts))[201] == 1
        assert await matches(client, "identifier=urn:race|2") == 1

        entry = {
            "resource": {
                "resourceType": "Patient",
                "identifier": [{"system": "urn:race", "value": "3"}],
            },
            "request": {"method": "POST", "url": "Patient", "ifNoneExist": "identifier=urn:race|3"},
        }
        bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [entry]}
        answers = await asyncio.gather(*(client.post("/", json=bundle) for _ in range(RACERS)))
        assert {a.status_code for a in answers} == {200}
        statuses = Counter(a.json()["entry"][0]["response"]["status"][:3] for a in answers)
        assert statuses == {"201": 1, "200": RACERS - 1}
        assert await matches(client, "identifier=urn:race|3") == 1

        fresh = {"resourceType": "Patient", "id": "race-inm"}
        only_new = [
            client.put("/Patient/race-inm", json=fresh, headers={"If-None-Match": "*"})
            for _ in range(RACERS)
        ]
        assert await race(only_new) == {201: 1, 412: RACERS - 1}
