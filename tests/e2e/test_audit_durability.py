"""The audit trail survives ``kill -9``: every request the secure server answered has a durable
AuditEvent (the answer waits for it, docs/security.md "Audit trail").

Reads, searches, refusals and creates run concurrently over real HTTP against ``fhir-server
serve`` in its secure default; the process is killed with SIGKILL while requests are in flight;
a new process on the same data folder must hold an AuditEvent for every request that got an
answer (found by its X-Request-Id), with the status it answered.
"""

from __future__ import annotations

import asyncio
import base64
import uuid
from pathlib import Path

import httpx

from tests.security.conftest import SecureServer


async def _traffic(server: SecureServer, token: str, answered: dict[str, int]) -> None:
    async with httpx.AsyncClient(base_url=server.base, timeout=30) as http:

        async def one(i: int) -> None:
            rid = f"durable-{i}-{uuid.uuid4().hex[:8]}"
            kind = i % 4
            headers = {"X-Request-Id": rid, "Authorization": f"Bearer {token}"}
            try:
                if kind == 0:
                    r = await http.get("/Patient/p1", headers=headers)
                elif kind == 1:
                    r = await http.get("/Observation?subject=Patient/p1", headers=headers)
                elif kind == 2:
                    r = await http.get("/Observation/o2-weight", headers=headers)  # hidden
                else:
                    body = {
                        "resourceType": "Observation",
                        "status": "final",
                        "code": {"text": "durability"},
                        "subject": {"reference": "Patient/p1"},
                    }
                    r = await http.post("/Observation", json=body, headers=headers)
            except httpx.HTTPError:
                return  # killed in flight: not answered, nothing to find
            answered[rid] = r.status_code

        await asyncio.gather(*(one(i) for i in range(400)))


def test_every_answered_request_has_a_durable_audit_event(tmp_path: Path) -> None:
    server = SecureServer(tmp_path / "secure")
    answered: dict[str, int] = {}
    try:
        token = server.mint()

        async def run() -> None:
            traffic = asyncio.create_task(_traffic(server, token, answered))
            while len(answered) < 150:  # well into the traffic, with requests in flight
                await asyncio.sleep(0.01)
            assert server.live.process is not None
            server.live.process.kill()  # SIGKILL: no shutdown, no flush
            await traffic

        asyncio.run(run())
        server.live.process.wait()
        server.live.process = None
        assert len(answered) >= 150
        server.live.start()
        found: dict[str, dict] = {}
        url = "/AuditEvent?_count=1000&_sort=-_lastUpdated"
        while url:
            page = server.request("GET", url, server.auditor).json()
            for entry in page.get("entry", ()):
                event = entry["resource"]
                for entity in event.get("entity", ()):
                    rid = entity.get("what", {}).get("identifier", {}).get("value", "")
                    if rid.startswith("durable-"):
                        found[rid] = event
            nxt = [link["url"] for link in page.get("link", ()) if link["relation"] == "next"]
            url = nxt[0] if nxt else ""
        missing = [rid for rid in answered if rid not in found]
        assert not missing, f"{len(missing)} of {len(answered)} answered requests unaudited"
        for rid, status in answered.items():
            description = found[rid].get("outcomeDesc", "")
            assert description.startswith(f"HTTP {status}"), (rid, status, description)
            query = next((e for e in found[rid].get("entity", ()) if e.get("query")), None)
            if query is not None:  # a search: the query is kept, base64
                assert base64.b64decode(query["query"]).decode().startswith("subject=")
    finally:
        server.close()
