"""Search latency at growing sizes of a synthetic BiB population, and the ingest rate.

Builds the population (bench/population.py) into an embedded store through the service layer
(validation, indexing and durable group commits included), and at each size measures p50/p95 of
typical queries through the FHIR API (in-process ASGI calls, so HTTP parsing and JSON rendering are
included; no network). The reference in the same run is a read by id.

    python bench/search_bench.py --sizes 10000,100000,1000000 [--queries 200]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))

from population import BENCH_QUESTIONNAIRE, RESOURCES_PER_WOMAN, organizations, woman

from fhir_server.app import ServerApp
from fhir_server.config import Settings
from fhir_server.service import crud
from fhir_server.service.context import RequestContext

BASE = "http://bench/fhir"


async def call(app: ServerApp, url: str) -> tuple[int, bytes]:
    parts = urlsplit(url)
    scope = {
        "type": "http",
        "method": "GET",
        "path": parts.path,
        "query_string": parts.query.encode(),
        "headers": [(b"host", b"bench")],
    }
    sent: list[dict] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent[0]["status"], sent[1]["body"]


async def ingest(app: ServerApp, start: int, stop: int) -> float:
    """Load women start..stop-1; returns resources per second."""
    svc = app.service
    ctx = RequestContext(base_url=BASE)
    count = 0
    began = time.perf_counter()
    batch: list[dict] = []

    async def flush() -> None:
        async with svc.store.unit_of_work() as uow:
            for resource in batch:
                svc.validate(resource, resource["resourceType"])
                await crud.update_in(svc, ctx, uow, resource, None)
        batch.clear()

    for index in range(start, stop):
        for resource in woman(index):
            batch.append(resource)
            count += 1
        if len(batch) >= 500:
            await flush()
    if batch:
        await flush()
    return count / (time.perf_counter() - began)


def queries(women: int) -> dict[str, Callable[[random.Random], str]]:
    def patient(rng: random.Random) -> int:
        return rng.randrange(women)

    def ssin_of(index: int) -> str:
        return next(woman(index))["identifier"][0]["value"]

    return {
        "read by id (reference)": lambda r: f"/fhir/Patient/p{patient(r)}",
        "patient + code": lambda r: (
            f"/fhir/Observation?subject=Patient/p{patient(r)}&code=http://loinc.org|29463-7"
        ),
        "patient + date range": lambda r: (
            f"/fhir/Observation?patient=p{patient(r)}&date=ge2024-06-01&date=lt2025-06-01"
        ),
        "date range (first page)": lambda r: (
            f"/fhir/Observation?date=ge2025-0{r.randint(1, 9)}-01&date=lt2025-10-01&_count=20"
        ),
        "identifier (SSIN)": lambda r: f"/fhir/Patient?identifier={ssin_of(patient(r))}",
        "chain subject.identifier": lambda r: (
            f"/fhir/Observation?subject.identifier={ssin_of(patient(r))}"
        ),
        "name + birthdate": lambda r: "/fhir/Patient?name=jans&birthdate=ge1990&_count=20",
        "_include subject": lambda r: (
            f"/fhir/Observation?patient=p{patient(r)}&_include=Observation:subject"
        ),
        "_revinclude Observation": lambda r: (
            f"/fhir/Patient?_id=p{patient(r)}&_revinclude=Observation:subject"
        ),
        "_sort -date + count": lambda r: (
            f"/fhir/Observation?patient=p{patient(r)}&_sort=-date&_count=2"
        ),
        "_sort family, city (page 1)": lambda r: (
            f"/fhir/Patient?address-city={['Gent', 'Leuven', 'Anderlecht'][r.randrange(3)]}"
            "&_sort=family&_count=20"
        ),
        "token, huge result (page 1)": lambda r: "/fhir/QuestionnaireResponse?status=completed",
        "_has screening positive": lambda r: (
            f"/fhir/Patient?_id=p{patient(r)}&_has:Observation:subject:code=8480-6"
        ),
    }


async def measure(app: ServerApp, women: int, per_kind: int) -> dict[str, tuple[float, float]]:
    rng = random.Random(42)
    out: dict[str, tuple[float, float]] = {}
    for name, make in queries(women).items():
        times = []
        for _ in range(per_kind):
            url = make(rng)
            began = time.perf_counter()
            status, body = await call(app, url)
            times.append((time.perf_counter() - began) * 1000)
            if status != 200:
                raise RuntimeError(f"{url} -> {status}: {body[:300]!r}")
        times.sort()
        out[name] = (statistics.median(times), times[int(len(times) * 0.95) - 1])
    # paging: follow next links of a broad search (keyset cursors)
    times = []
    url = "/fhir/Observation?date=ge2024-01-01&_count=50"
    for _ in range(min(per_kind, 50)):
        began = time.perf_counter()
        status, body = await call(app, url)
        times.append((time.perf_counter() - began) * 1000)
        import orjson

        links = {link["relation"]: link["url"] for link in orjson.loads(body).get("link", ())}
        if "next" not in links:
            break
        url = urlsplit(links["next"]).path + "?" + urlsplit(links["next"]).query
    times.sort()
    out["paging next (50/page)"] = (statistics.median(times), times[int(len(times) * 0.95) - 1])
    return out


async def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--keep", help="data folder to keep and reuse (default: temporary)")
    parser.add_argument(
        "--ingest-only",
        action="store_true",
        help="only load the population (measure later with --keep)",
    )
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    folder = Path(args.keep or tempfile.mkdtemp(prefix="bench-search-"))
    # the engine is measured without authentication (see bench/rest_throughput.py for auth)
    app = ServerApp(Settings(data_dir=folder, public_url=BASE, auth="open"))
    await app.startup()
    results: dict[int, dict[str, tuple[float, float]]] = {}
    ingest_rates: dict[int, float] = {}
    try:
        async with app.service.store.unit_of_work() as uow:
            ctx = RequestContext(base_url=BASE)
            for org in organizations():
                await crud.update_in(app.service, ctx, uow, org, None)
            await crud.update_in(app.service, ctx, uow, dict(BENCH_QUESTIONNAIRE), None)
        # a kept folder is reused: only the women not loaded yet are added
        loaded = await app.service.store.count_current(("Patient",))
        for size in sizes:
            women = size // RESOURCES_PER_WOMAN
            if women > loaded:
                ingest_rates[size] = await ingest(app, loaded, women)
                loaded = women
            else:
                ingest_rates[size] = float("nan")  # already loaded in an earlier run
            if args.ingest_only:
                print(f"size {size:,}: ingest {ingest_rates[size]:,.0f} resources/s", flush=True)
                continue
            results[size] = await measure(app, women, args.queries)
            print(f"size {size:,}: ingest {ingest_rates[size]:,.0f} resources/s", flush=True)
    finally:
        await app.shutdown()
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
    if args.ingest_only:
        return 0
    header = "".join(f"{f'{s:,}':>18}" for s in sizes)
    print(f"\n{'query (ms: p50 / p95)':<30}{header}")
    for name in results[sizes[0]]:
        cells = "".join(f"{results[s][name][0]:>8.2f} /{results[s][name][1]:>7.2f}" for s in sizes)
        print(f"{name:<30}{cells}")
    print(f"{'ingest (resources/s)':<30}" + "".join(f"{ingest_rates[s]:>18,.0f}" for s in sizes))
    first, last = sizes[0], sizes[-1]
    print(
        f"\np50 growth {first:,} -> {last:,} (target <= 2x) and p95 at {last:,} "
        "(target < 20 ms for indexed queries):"
    )
    for name in results[first]:
        growth = results[last][name][0] / results[first][name][0]
        p95 = results[last][name][1]
        verdict = "ok" if growth <= 2 and p95 < 20 else "MISS"
        print(f"  {name:<30} x{growth:>5.2f}  p95 {p95:>7.2f} ms  {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
