"""Social-map search at 10k and 100k services next to a read by id, and the import rate next to
plain creates, each measured in the same run.

Data: bench/socialmap_data.py (services like the demo's: nl/fr names and descriptions of real
words, kinds drawn with realistic weights, spread over Brussels and Flanders).

1. Import rate (``--import-records``, default 10,000, per format): each format's export imported
   into an empty store through the real import (schema validation, mapping, matching, atomic
   batches through the service's write path), then imported again (every record unchanged: no
   version written), next to the *plain create rate* of the same resources: the Organization,
   Location and HealthcareService of each record PUT one by one through the FHIR API in process
   (32 requests in flight), which is what a client writing them itself would get.
2. Search (``--sizes``, default 10,000 and 100,000 services): the map as its sources hold it
   (Brussels from Bruxelles Social, Flanders from De Sociale Kaart) imported into one store, then
   p50/p95 through the FHIR API (in-process ASGI, no network, ``Accept-Language: fr``) of

       HealthcareService?_content=<word>&location.near=<point>|10|km&language=<l>
           &target-group=<t>

   and its parts, next to a read by id. Target: p95 < 20 ms at 100k.

    python bench/socialmap_bench.py [--sizes 10000,100000] [--import-records 10000]
        [--queries 200] [--formats sociale-kaart,bruxelles-social,hsds] [--skip-import]
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
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))

import socialmap_data as data

from fhir_server.app import ServerApp
from fhir_server.cli import _freeze_heap
from fhir_server.config import Settings
from fhir_server.service.context import RequestContext
from fhir_server.socialmap.importer import run_import
from fhir_server.socialmap.importer.build import build
from fhir_server.socialmap.importer.formats import FORMATS

BASE = "http://bench/fhir"
IN_FLIGHT = 32


async def request(
    app: ServerApp,
    method: str,
    url: str,
    body: bytes = b"",
    headers: list[tuple[bytes, bytes]] | None = None,
) -> tuple[int, bytes]:
    path, _, query = url.partition("?")
    scope = {
        "type": "http",
        "method": method,
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "headers": [(b"host", b"bench"), *(headers or [])],
    }
    sent: list[dict] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:])


async def start(folder: Path) -> ServerApp:
    app = ServerApp(Settings(data_dir=folder, public_url=BASE, auth="open", load_content=True))
    await app.startup()
    await app.service.search_parameters.wait_idle()
    await _freeze_heap()  # as `fhir-server serve` and `fhir-server import` do
    return app


async def import_records(app: ServerApp, fmt: str, records: list[dict]) -> tuple[float, Any]:
    ctx = RequestContext(base_url=BASE, prefer_return="minimal")
    key = FORMATS[fmt].records_key[0] if fmt != "bruxelles-social" else "organisations"
    raw = orjson.dumps({key: records})
    began, cpu = time.perf_counter(), time.process_time()
    report = await run_import(app.service, ctx, fmt, raw, options={"language": "en"})
    elapsed = time.perf_counter() - began
    report.cpu_ms = (time.process_time() - cpu) * 1000 / len(records)  # type: ignore[attr-defined]
    if report.rejected or report.failed:
        raise RuntimeError(f"import problems: {(report.rejected + report.failed)[:3]}")
    return len(records) / elapsed, report


async def plain_creates(app: ServerApp, fmt: str, records: list[dict]) -> tuple[float, float]:
    """The same resources PUT one by one through the FHIR API, 32 in flight: records/s and
    CPU ms per record."""
    bodies: list[tuple[str, bytes]] = []
    for record in records:
        mapped = FORMATS[fmt].map(record, {"language": "en"})
        for resource in build(mapped, "2026-11-01"):
            resource["id"] = "p" + resource["id"]
            for holder in (resource.get("providedBy"), *(resource.get("location") or ())):
                if isinstance(holder, dict) and "/" in holder.get("reference", ""):
                    kind, _, ref = holder["reference"].partition("/")
                    holder["reference"] = f"{kind}/p{ref}"
            url = f"/fhir/{resource['resourceType']}/{resource['id']}"
            bodies.append((url, orjson.dumps(resource)))
    headers = [(b"content-type", b"application/fhir+json"), (b"prefer", b"return=minimal")]
    queue = iter(bodies)

    async def worker() -> None:
        for url, body in queue:
            status, answer = await request(app, "PUT", url, body, headers)
            if status not in (200, 201):
                raise RuntimeError(f"PUT {url} -> {status}: {answer[:300]!r}")

    began, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(worker() for _ in range(IN_FLIGHT)))
    cpu_ms = (time.process_time() - cpu) * 1000 / len(records)
    return len(records) / (time.perf_counter() - began), cpu_ms


async def import_rates(count: int, formats: list[str]) -> None:
    print(
        f"\nImport rate, {count:,} records per format (each record: 3 resources; CPU = the "
        "whole process, both cores)"
    )
    for fmt in formats:
        records = data.records(fmt, 0, count)
        folder = Path(tempfile.mkdtemp(prefix="bench-socialmap-import-"))
        app = await start(folder)
        try:
            rate, report = await import_records(app, fmt, records)
            again, second = await import_records(app, fmt, records)
            plain, plain_cpu = await plain_creates(app, fmt, records)
        finally:
            await app.shutdown()
            shutil.rmtree(folder, ignore_errors=True)
        print(
            f"  {fmt:<17} import {rate:6,.0f} records/s, {report.cpu_ms:.2f} ms CPU/record "
            f"({report.written:,} versions) | re-import {again:6,.0f} records/s "
            f"({second.written} versions) | plain creates {plain:6,.0f} records/s, "
            f"{plain_cpu:.2f} ms CPU/record"
        )


async def load_map(app: ServerApp, start: int, stop: int) -> float:
    total, began = 0, time.perf_counter()
    for chunk in range(start, stop, 10_000):
        parts = data.mixed(chunk, min(stop, chunk + 10_000))
        for fmt, records in parts.items():
            if records:
                await import_records(app, fmt, records)
                total += len(records)
    return total / (time.perf_counter() - began)


def _point(rng: random.Random) -> str:
    """A place where families live: 30 % Brussels, the rest around a Flemish town."""
    if rng.random() < 0.3:
        lat, lon = 50.845 + rng.uniform(-0.04, 0.04), 4.36 + rng.uniform(-0.06, 0.06)
    else:
        town = rng.choices(data.FLANDERS, weights=[t[4] for t in data.FLANDERS])[0]
        lat, lon = town[1] + rng.uniform(-0.05, 0.05), town[2] + rng.uniform(-0.07, 0.07)
    return f"{lat:.4f}|{lon:.4f}"


async def measure(app: ServerApp, size: int, count: int) -> dict[str, tuple[float, float, float]]:
    rng = random.Random(7)
    words = data.QUERY_WORDS
    kinds = {
        "read by id (reference)": lambda: (
            f"/fhir/HealthcareService/{data.service_id(rng.randrange(size))}"
        ),
        "text + near + language + target group": lambda: (
            f"/fhir/HealthcareService?_content={rng.choice(words)}"
            f"&location.near={_point(rng)}|10|km"
            f"&language={rng.choice(('nl', 'fr', 'en'))}"
            f"&target-group={rng.choice(data.TARGET_GROUPS)}"
        ),
        "text + near 10 km": lambda: (
            f"/fhir/HealthcareService?_content={rng.choice(words)}"
            f"&location.near={_point(rng)}|10|km"
        ),
        "near 10 km only (nearest first)": lambda: (
            f"/fhir/HealthcareService?location.near={_point(rng)}|10|km"
        ),
        "text only": lambda: f"/fhir/HealthcareService?_content={rng.choice(words)}",
        "language + target group": lambda: (
            f"/fhir/HealthcareService?language={rng.choice(('nl', 'fr', 'en'))}"
            f"&target-group={rng.choice(data.TARGET_GROUPS)}"
        ),
    }
    headers = [(b"accept-language", b"fr")]
    out = {}
    for name, make in kinds.items():
        times, hits = [], 0
        for _ in range(count):
            url = make()
            began = time.perf_counter()
            status, body = await request(app, "GET", url, headers=headers)
            times.append((time.perf_counter() - began) * 1000)
            if status != 200:
                raise RuntimeError(f"{url} -> {status}: {body[:300]!r}")
            hits += body.count(b'"mode":"match"') if b'"searchset"' in body else 1
        times.sort()
        out[name] = (statistics.median(times), times[int(len(times) * 0.95) - 1], hits / count)
    return out


def _cached(cache: Path | None, size: int) -> Path | None:
    if cache is None:
        return None
    folder = cache / f"services-{size}"
    return folder if (folder / "done").exists() else None


async def search_sizes(sizes: list[int], count: int, cache: Path | None) -> None:
    """Each size's store is kept in ``cache`` (a folder per size) once built: generating 100k
    services through the import takes many minutes. Delete the folder after a change of the
    store's schema or of the generated data."""
    folder = Path(tempfile.mkdtemp(prefix="bench-socialmap-"))
    loaded = 0
    app = await start(folder)
    try:
        for size in sorted(sizes):
            hit = _cached(cache, size)
            if size > loaded and hit is not None:
                await app.shutdown()
                shutil.rmtree(folder)
                shutil.copytree(hit, folder)
                app, loaded = await start(folder), size
                rate_note = "store from the cache"
            elif size > loaded:
                rate = await load_map(app, loaded, size)
                loaded = size
                rate_note = f"imported at {rate:,.0f} records/s"
                if cache is not None:
                    await app.shutdown()
                    target = cache / f"services-{size}"
                    shutil.rmtree(target, ignore_errors=True)
                    shutil.copytree(folder, target)
                    (target / "done").write_text(str(size))
                    app = await start(folder)
            else:
                rate_note = "store from the cache"
            print(f"\n{size:,} services ({rate_note})")
            for name, (p50, p95, hits) in (await measure(app, size, count)).items():
                print(f"  {name:<40} p50 {p50:6.2f} ms  p95 {p95:6.2f} ms  ({hits:.1f} hits/page)")
    finally:
        await app.shutdown()
        shutil.rmtree(folder, ignore_errors=True)


async def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--import-records", type=int, default=10_000)
    parser.add_argument("--formats", default=",".join(data.WRITERS))
    parser.add_argument("--skip-import", action="store_true")
    parser.add_argument("--skip-search", action="store_true")
    parser.add_argument(
        "--cache",
        default=str(Path(tempfile.gettempdir()) / "bench-socialmap-stores"),
        help="folder keeping each size's store between runs ('' = none)",
    )
    args = parser.parse_args()
    if not args.skip_import:
        await import_rates(args.import_records, args.formats.split(","))
    if not args.skip_search:
        cache = Path(args.cache) if args.cache else None
        if cache is not None:
            cache.mkdir(parents=True, exist_ok=True)
        await search_sizes([int(s) for s in args.sizes.split(",")], args.queries, cache)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
