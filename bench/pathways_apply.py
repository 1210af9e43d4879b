"""$apply latency: the largest pregnancy-loss pathway applied to a woman, next to a plain read in
the same run.

Builds a synthetic BiB population (bench/population.py) into an embedded store, adds a woman with
a recorded loss, a care team and screening results, and measures p50/p95 of in-process ASGI calls
(HTTP parsing, the guard's hooks as installed, JSON rendering included; no network), interleaved so
that both see the same machine load:

- ``GET Patient/[id]`` (the reference);
- ``GET PlanDefinition/[largest loss pathway]/$apply?subject=...`` (the R4 CarePlan, contained);
- the same with ``output=transaction``;
- the GP pull: ``CarePlan?patient=...&status=active`` with its activities, goals and care team,
  and ``Patient/[id]/$everything``.

    python bench/pathways_apply.py [--women 2000] [--rounds 300]

Target: $apply p95 < 25 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlencode, urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))

from population import organizations, woman

from fhir_server.app import ServerApp
from fhir_server.cli import _freeze_heap
from fhir_server.config import Settings
from fhir_server.service import crud
from fhir_server.service.context import RequestContext

BASE = "http://bench/fhir"
SCENARIO = "https://borninbelgiumpro.be/fhir/CodeSystem/bib-pregnancy-loss-scenario"
INDICATOR = "https://borninbelgiumpro.be/fhir/CodeSystem/bib-vulnerability-indicator"


async def call(app: ServerApp, method: str, url: str, body: bytes = b"") -> tuple[int, bytes]:
    parts = urlsplit(url)
    scope = {
        "type": "http",
        "method": method,
        "path": parts.path,
        "query_string": parts.query.encode(),
        "headers": [(b"host", b"bench"), (b"content-type", b"application/fhir+json")],
    }
    sent: list[dict] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:])


async def populate(app: ServerApp, women: int) -> None:
    svc = app.service
    ctx = RequestContext(base_url=BASE, prefer_return="minimal")
    batch: list[dict] = list(organizations())
    for index in range(women):
        batch.extend(woman(index))
        if len(batch) >= 500:
            await _write(svc, ctx, batch)
            batch = []
    if batch:
        await _write(svc, ctx, batch)


async def _write(svc, ctx, resources: list[dict]) -> None:
    async with svc.store.unit_of_work() as uow:
        for resource in resources:
            svc.validate(resource, resource["resourceType"])
            await crud.update_in(svc, ctx, uow, resource, None)


def largest_loss_plan() -> str:
    folder = Path(__file__).resolve().parent.parent / "content" / "pathways"
    sizes = {}
    for path in folder.glob("PlanDefinition-pd-loss-*.json"):
        plan = json.loads(path.read_text())
        stack, count = list(plan["action"]), 0
        while stack:
            action = stack.pop()
            count += "definitionCanonical" in action
            stack.extend(action.get("action", ()))
        sizes[plan["id"]] = count
    return max(sizes, key=sizes.get)


def percentiles(samples: list[float]) -> str:
    ordered = sorted(samples)
    p50 = statistics.median(ordered) * 1000
    p95 = ordered[int(len(ordered) * 0.95) - 1] * 1000
    return f"p50 {p50:7.2f} ms   p95 {p95:7.2f} ms"


async def main(women: int, rounds: int) -> None:
    folder = Path(tempfile.mkdtemp(prefix="pathways-bench-"))
    try:
        settings = Settings(
            data_dir=folder,
            public_url=BASE,
            store=f"sqlite:///{folder / 'fhir.db'}",
            load_terminology=False,
            auth="open",
        )
        app = ServerApp(settings)
        await app.startup()
        started = time.perf_counter()
        await populate(app, women)
        print(f"population: {women} women ({time.perf_counter() - started:.0f} s)")
        pd = largest_loss_plan()
        scenario = {
            "pd-loss-early": "early-pregnancy-loss",
            "pd-loss-mors-in-utero": "mors-in-utero",
            "pd-loss-congenital-anomaly": "congenital-anomaly-loss",
        }[pd]
        pid = "bench-loss"
        seed = [
            {
                "resourceType": "Patient",
                "id": pid,
                "gender": "female",
                "communication": [
                    {
                        "language": {"coding": [{"system": "urn:ietf:bcp:47", "code": "pl"}]},
                        "preferred": True,
                    }
                ],
            },
            {
                "resourceType": "CareTeam",
                "id": "bench-team",
                "status": "active",
                "subject": {"reference": f"Patient/{pid}"},
                "participant": [{"member": {"reference": "Practitioner/bench-mw"}}],
            },
            {
                "resourceType": "Condition",
                "id": "bench-loss-condition",
                "subject": {"reference": f"Patient/{pid}"},
                "code": {"coding": [{"system": SCENARIO, "code": scenario}]},
                "onsetDateTime": "2026-10-01",
            },
            *(
                {
                    "resourceType": "Observation",
                    "id": f"bench-ind-{code}",
                    "status": "final",
                    "code": {"coding": [{"system": INDICATOR, "code": code}]},
                    "subject": {"reference": f"Patient/{pid}"},
                    "valueBoolean": True,
                }
                for code in ("communication", "housing", "income")
            ),
        ]
        for resource in seed:
            status, body = await call(
                app,
                "PUT",
                f"{BASE}/{resource['resourceType']}/{resource['id']}",
                json.dumps(resource).encode(),
            )
            assert status in (200, 201), body[:300]
        apply_url = f"{BASE}/PlanDefinition/{pd}/$apply?" + urlencode({"subject": f"Patient/{pid}"})
        status, body = await call(app, "GET", apply_url)
        assert status == 200, body[:500]
        plan = json.loads(body)
        stored_status, stored = await call(
            app,
            "POST",
            f"{BASE}/",
            await_body(await call(app, "GET", apply_url + "&output=transaction")),
        )
        assert stored_status == 200, stored[:300]
        plan_id = json.loads(stored)["entry"][0]["response"]["location"].split("/")[-3]
        status, body = await call(app, "GET", f"{BASE}/CarePlan/{plan_id}")
        active = json.loads(body)
        active["status"], active["intent"] = "active", "plan"
        status, _ = await call(
            app, "PUT", f"{BASE}/CarePlan/{plan_id}", json.dumps(active).encode()
        )
        assert status == 200
        await _freeze_heap()  # as `fhir-server serve` does after start-up
        requests = len(plan["activity"]) - 1
        print(
            f"largest loss pathway: {pd} ({requests} requests, "
            f"{len(plan['contained'])} contained resources, {len(body)} bytes stored plan)"
        )
        urls = {
            "read Patient/[id] (reference)": f"{BASE}/Patient/{pid}",
            f"$apply {pd}": apply_url,
            f"$apply {pd} output=transaction": apply_url + "&output=transaction",
            "GP pull: CarePlan?patient&status=active + _include": f"{BASE}/CarePlan?"
            + urlencode(
                [
                    ("patient", f"Patient/{pid}"),
                    ("status", "active"),
                    ("_include", "CarePlan:activity-reference"),
                    ("_include", "CarePlan:goal"),
                    ("_include", "CarePlan:care-team"),
                ]
            ),
            "GP pull: Patient/[id]/$everything": f"{BASE}/Patient/{pid}/$everything?_count=100",
        }
        samples: dict[str, list[float]] = {name: [] for name in urls}
        for name, url in urls.items():  # warm up
            for _ in range(5):
                status, body = await call(app, "GET", url)
                assert status == 200, (name, body[:300])
        for _ in range(rounds):
            for name, url in urls.items():
                start = time.perf_counter()
                await call(app, "GET", url)
                samples[name].append(time.perf_counter() - start)
        print(
            f"{rounds} rounds, interleaved, in process (no network), SQLite store, open mode, "
            "heap frozen as by fhir-server serve"
        )
        for name, values in samples.items():
            print(f"  {name:58s} {percentiles(values)}")
        await app.shutdown()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def await_body(result: tuple[int, bytes]) -> bytes:
    status, body = result
    assert status == 200, body[:300]
    return body


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--women", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=300)
    args = parser.parse_args()
    asyncio.run(main(args.women, args.rounds))
