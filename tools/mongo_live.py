"""The MongoDB store against a real MongoDB, in one command (README, "MongoDB"):

    MONGODB_URI="mongodb://localhost:27017/?directConnection=true" python tools/mongo_live.py

1. the store contract suite and the HTTP suites on that server (``pytest tests/contract -k
   mongodb``), recording every find and aggregate the store sends to ``versions``;
2. an explain pass: each recorded command is explained (``executionStats``) on a database that
   holds a synthetic BiB population, and any plan with a COLLSCAN fails the run; the keys and
   documents examined per returned document are printed for the worst commands;
3. a small load test: ``--processes`` processes write units of work (a Patient and two
   Observations each) for ``--seconds`` seconds while another process pages through a search
   (``_count=20``), printing writes per second and the paging latency (p50/p95).

Each step uses databases of its own (``fhir_live_*``) and drops them. It needs a replica set or a
sharded cluster (MongoDB 6.0+); the compose file's single-node replica set will do. Nothing
here runs without MONGODB_URI: there is no MongoDB server on the build machines.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def database_url(uri: str, name: str) -> str:
    separator = "&" if "?" in uri else "?"
    return f"{uri}{separator}database={name}"


# -- 1. the contract suite ---------------------------------------------------------------------


def contract(uri: str, dump: Path) -> bool:
    print("== contract suite on", uri.split("@")[-1], flush=True)
    env = {**os.environ, "MONGODB_URI": uri, "FHIR_BOUNDS_DUMP": str(dump)}
    started = time.monotonic()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "tests/contract",
            "-q",
            "-p",
            "no:cacheprovider",
            "-k",
            "mongodb",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    tail = [line for line in result.stdout.splitlines() if line.strip()][-3:]
    print("\n".join(tail))
    print(f"   ({time.monotonic() - started:.0f} s, exit {result.returncode})", flush=True)
    return result.returncode == 0


# -- a synthetic population --------------------------------------------------------------------


def patient(i: int) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "identifier": [
            {
                "system": "https://www.ehealth.fgov.be/standards/fhir/core/NamingSystem/ssin",
                "value": f"{90010100000 + i}",
            }
        ],
        "name": [{"family": f"Janssens{i % 997}", "given": [f"Sofie{i % 31}"]}],
        "gender": "female",
        "birthDate": f"19{80 + i % 20}-0{1 + i % 9}-1{i % 9}",
        "address": [{"city": ["Brussel", "Gent", "Antwerpen"][i % 3], "postalCode": "1000"}],
    }


def observation(i: int, subject: str) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
        "subject": {"reference": subject},
        "effectiveDateTime": f"2025-0{1 + i % 9}-1{i % 9}T10:00:00+01:00",
        "valueQuantity": {
            "value": 100 + i % 60,
            "unit": "mm[Hg]",
            "system": "http://unitsofmeasure.org",
            "code": "mm[Hg]",
        },
    }


async def service_on(url: str) -> Any:
    from fhir_server.service.core import FhirService
    from fhir_server.store import open_store
    from tests.conftest import make_settings

    store = open_store(url)
    await store.open()
    return FhirService(make_settings(Path(tempfile.mkdtemp()), store="sqlite:///unused"), store)


async def populate(url: str, patients: int) -> Any:
    from fhir_server.service import crud
    from tests.contract.test_search_harness import make_ctx

    svc = await service_on(url)
    for i in range(patients):
        created = await crud.create(svc, make_ctx(), "Patient", patient(i), None)
        pid = created.version.id
        for j in range(2):
            await crud.create(
                svc, make_ctx(), "Observation", observation(i + j, f"Patient/{pid}"), None
            )
    return svc


# -- 2. explain ----------------------------------------------------------------------------------


def collscans(plan: Any) -> list[str]:
    found = []
    if isinstance(plan, dict):
        if plan.get("stage") == "COLLSCAN":
            found.append("COLLSCAN")
        for value in plan.values():
            found += collscans(value)
    elif isinstance(plan, list):
        for value in plan:
            found += collscans(value)
    return found


async def explain(uri: str, sent_file: Path, patients: int) -> bool:
    from bson import json_util

    print(f"== explain pass ({patients} patients, {2 * patients} observations)", flush=True)
    if not sent_file.exists():
        print("   no commands were recorded (did the contract suite run?)")
        return False
    commands = json_util.loads(sent_file.read_text())
    name = f"fhir_live_explain_{uuid.uuid4().hex[:8]}"
    svc = await populate(database_url(uri, name), patients)
    db = svc.store._db
    failures = 0
    ratios: list[tuple[float, str]] = []
    seen = set()
    try:
        for command in commands:
            kind = "find" if "find" in command else "aggregate"
            body: dict[str, Any] = {kind: "versions"}
            for key in ("filter", "sort", "limit", "projection", "pipeline", "hint"):
                if key in command:
                    body[key] = command[key]
            if kind == "aggregate":
                if any("$documents" in stage for stage in body.get("pipeline", ())):
                    continue
                body["cursor"] = {}
            marker = json_util.dumps(body)
            if marker in seen:
                continue
            seen.add(marker)
            result = await db.command("explain", body, verbosity="executionStats")
            if collscans(result.get("queryPlanner", result)) or collscans(result.get("stages")):
                failures += 1
                print("   COLLSCAN:", marker[:300])
            stats = result.get("executionStats", {})
            returned = max(1, stats.get("nReturned", 0))
            examined = stats.get("totalKeysExamined", 0) + stats.get("totalDocsExamined", 0)
            ratios.append((examined / returned, marker[:160]))
    finally:
        await svc.store._client.drop_database(name)
        await svc.store.close()
    ratios.sort(reverse=True)
    print(f"   {len(seen)} distinct commands explained, {failures} with a COLLSCAN")
    for ratio, marker in ratios[:5]:
        print(f"   examined/returned {ratio:8.1f}  {marker}")
    return failures == 0


# -- 3. load -------------------------------------------------------------------------------------


def _writer(url: str, seconds: float, out: Any) -> None:
    async def run() -> int:
        from fhir_server.service import crud
        from tests.contract.test_search_harness import make_ctx

        svc = await service_on(url)
        done = 0
        deadline = time.monotonic() + seconds

        async def one(i: int) -> None:
            nonlocal done
            created = await crud.create(svc, make_ctx(), "Patient", patient(i), None)
            await crud.create(
                svc,
                make_ctx(),
                "Observation",
                observation(i, f"Patient/{created.version.id}"),
                None,
            )
            done += 2

        i = 0
        while time.monotonic() < deadline:
            await asyncio.gather(*(one(i + k) for k in range(8)))  # 8 requests in flight
            i += 8
        await svc.store.close()
        return done

    out.put(asyncio.run(run()))


def _pager(url: str, seconds: float, out: Any) -> None:
    async def run() -> list[float]:
        from fhir_server.service import search
        from tests.contract.test_search_harness import BASE, make_ctx

        svc = await service_on(url)
        latencies = []
        deadline = time.monotonic() + seconds
        params = [("gender", "female"), ("_count", "20")]
        while time.monotonic() < deadline:
            result = await search.search(svc, make_ctx(), ("Patient",), params, f"{BASE}/Patient")
            pages = 0
            links = {x["relation"]: x["url"] for x in result.resource.get("link", ())}
            while "next" in links and pages < 20 and time.monotonic() < deadline:
                from urllib.parse import parse_qsl, urlsplit

                started = time.monotonic()
                result = await search.search(
                    svc,
                    make_ctx(),
                    ("Patient",),
                    parse_qsl(urlsplit(links["next"]).query),
                    f"{BASE}/Patient",
                )
                latencies.append(time.monotonic() - started)
                links = {x["relation"]: x["url"] for x in result.resource.get("link", ())}
                pages += 1
        await svc.store.close()
        return latencies

    out.put(asyncio.run(run()))


async def load(uri: str, processes: int, seconds: float) -> bool:
    print(f"== load: {processes} writing processes for {seconds:g} s, one paging", flush=True)
    name = f"fhir_live_load_{uuid.uuid4().hex[:8]}"
    url = database_url(uri, name)
    svc = await populate(url, 200)  # something to page through from the start
    context = multiprocessing.get_context("spawn")
    writes, pages = context.Queue(), context.Queue()
    workers = [
        context.Process(target=_writer, args=(url, seconds, writes)) for _ in range(processes)
    ]
    pager = context.Process(target=_pager, args=(url, seconds, pages))
    for process in [*workers, pager]:
        process.start()
    total = sum(writes.get(timeout=seconds + 120) for _ in workers)
    latencies = pages.get(timeout=seconds + 120)
    for process in [*workers, pager]:
        process.join()
    await svc.store._client.drop_database(name)
    await svc.store.close()
    print(
        f"   {total / seconds:.0f} versions written per second ({total} in {seconds:g} s, "
        f"{processes} processes, 8 requests in flight each)"
    )
    if latencies:
        ordered = sorted(latencies)
        p95 = ordered[int(len(ordered) * 0.95) - 1] if len(ordered) > 20 else ordered[-1]
        print(
            f"   paging while writing: {len(ordered)} pages, p50 "
            f"{statistics.median(ordered) * 1000:.1f} ms, p95 {p95 * 1000:.1f} ms"
        )
    return total > 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--patients", type=int, default=2000, help="explain pass population")
    parser.add_argument("--skip-contract", action="store_true")
    args = parser.parse_args()
    uri = os.environ.get("MONGODB_URI")
    if not uri:
        print("set MONGODB_URI to a MongoDB replica set or sharded cluster", file=sys.stderr)
        return 2
    dump = Path(tempfile.mkdtemp()) / "queries.json"
    ok = True
    if not args.skip_contract:
        ok &= contract(uri, dump)
    ok &= asyncio.run(explain(uri, Path(str(dump) + ".sent.json"), args.patients))
    ok &= asyncio.run(load(uri, args.processes, args.seconds))
    print("== all passed" if ok else "== FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
