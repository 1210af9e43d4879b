"""Social-map search at growing sizes, next to a read by id in the same run, and the import rate.

Builds a synthetic De Sociale Kaart export (services spread over Belgium, nl/fr words, rubrics
from the mapping table, languages), imports it through the real import (schema validation,
mapping, atomic batches through the service's write path), then measures through the FHIR API
(in-process ASGI; no network) p50/p95 of

    HealthcareService?_content=<word>&location.near=<point>|10|km&language=<l>&target-group=<t>

next to a read by id. The target is p95 < 20 ms at 100k services and >= 1,000 records/s imported.

    python bench/socialmap_bench.py --sizes 10000,100000 [--queries 200]
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

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))

from search_bench import call

from fhir_server.app import ServerApp
from fhir_server.config import Settings
from fhir_server.service.context import RequestContext
from fhir_server.socialmap.importer import run_import

BASE = "http://bench/fhir"
RUBRICS = [
    "13.08.01.",
    "13.08.02.",
    "13.08.03.",
    "13.08.04.",
    "07.02.",
    "07.05.",
    "03.01.",
    "03.02.",
    "11.03.",
]
WORDS_NL = [
    "rouwbegeleiding",
    "zwangerschap",
    "kraamzorg",
    "borstvoeding",
    "opvoeding",
    "verslaving",
    "tolken",
    "psycholoog",
    "vroedvrouw",
    "thuiszorg",
    "groep",
    "ouders",
]
WORDS_FR = [
    "deuil",
    "grossesse",
    "allaitement",
    "parentalite",
    "assuetudes",
    "interprete",
    "psychologue",
    "sage-femme",
    "domicile",
    "groupe",
    "parents",
    "naissance",
]
LANGS = ["nl", "fr", "en", "ar", "tr"]


def record(index: int, rng: random.Random) -> dict:
    lat = rng.uniform(49.6, 51.4)
    lon = rng.uniform(2.6, 6.3)
    words = " ".join(rng.sample(WORDS_NL, 4) + rng.sample(WORDS_FR, 4))
    return {
        "id": {"id": 1_000_000 + index},
        "legalName": {"description": f"Organisatie {index} vzw"},
        "name": {"description": f"Dienst {index} {rng.choice(WORDS_NL)}"},
        "description": {"description": f"Aanbod voor gezinnen: {words}."},
        "state": "ACTIVE",
        "lastUpdated": f"2026-{rng.randint(1, 11):02d}-{rng.randint(1, 28):02d}",
        "rubrics": [{"code": rng.choice(RUBRICS)}],
        "addresses": [
            {
                "street": {"name": {"description": "Kerkstraat"}},
                "number": str(rng.randint(1, 200)),
                "municipality": {"postalCode": "1000", "name": {"description": "Gemeente"}},
                "location": {"lat": round(lat, 5), "lon": round(lon, 5)},
            }
        ],
        "contactInfo": {"phones": [{"value": f"+32 2 {index:07d}"}]},
        "contactPersons": [{"name": f"Contact {index}", "function": "onthaal"}],
        "languages": rng.sample(LANGS, 2),
    }


async def load(app: ServerApp, start: int, stop: int) -> float:
    rng = random.Random(start)
    ctx = RequestContext(base_url=BASE, prefer_return="minimal")
    total, began = 0, time.perf_counter()
    for chunk in range(start, stop, 5000):
        records = [record(i, rng) for i in range(chunk, min(stop, chunk + 5000))]
        raw = orjson.dumps({"content": records})
        report = await run_import(app.service, ctx, "sociale-kaart", raw, batch_size=200)
        if report.rejected or report.failed:
            raise RuntimeError(f"import problems: {(report.rejected + report.failed)[:3]}")
        total += len(records)
    return total / (time.perf_counter() - began)


async def measure(app: ServerApp, size: int, count: int) -> dict[str, tuple[float, float, int]]:
    rng = random.Random(7)
    targets = [
        "pregnancy-or-infant-loss",
        "substance-use",
        "language-barrier",
        "socially-vulnerable",
    ]
    kinds = {
        "read by id (reference)": lambda: (
            f"/fhir/HealthcareService/sk-{1_000_000 + rng.randrange(size)}"
        ),
        "text + near + language + target group": lambda: (
            f"/fhir/HealthcareService?_content={rng.choice(WORDS_NL + WORDS_FR)}"
            f"&location.near={rng.uniform(50.6, 51.1):.4f}|{rng.uniform(3.5, 5.0):.4f}|10|km"
            f"&language={rng.choice(LANGS[:3])}&target-group={rng.choice(targets)}"
        ),
        "near 10 km only (nearest first)": lambda: (
            f"/fhir/HealthcareService?location.near={rng.uniform(50.6, 51.1):.4f}"
            f"|{rng.uniform(3.5, 5.0):.4f}|10|km"
        ),
        "text only": lambda: f"/fhir/HealthcareService?_content={rng.choice(WORDS_NL + WORDS_FR)}",
    }
    out = {}
    for name, make in kinds.items():
        times, hits = [], 0
        for _ in range(count):
            url = make()
            began = time.perf_counter()
            status, body = await call(app, url)
            times.append((time.perf_counter() - began) * 1000)
            if status != 200:
                raise RuntimeError(f"{url} -> {status}: {body[:300]!r}")
            hits += body.count(b'"mode":"match"')
        times.sort()
        out[name] = (statistics.median(times), times[int(len(times) * 0.95) - 1], hits // count)
    return out


async def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--queries", type=int, default=200)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="bench-socialmap-"))
    app = ServerApp(Settings(data_dir=folder, public_url=BASE, auth="open"))
    await app.startup()
    await app.service.search_parameters.wait_idle()
    loaded = 0
    try:
        for size in (int(s) for s in args.sizes.split(",")):
            rate = await load(app, loaded, size)
            loaded = size
            print(f"\n{size:,} services: import {rate:,.0f} records/s (target >= 1,000)")
            for name, (p50, p95, hits) in (await measure(app, size, args.queries)).items():
                print(f"  {name:<40} p50 {p50:6.2f} ms  p95 {p95:6.2f} ms  ({hits} hits/page)")
    finally:
        await app.shutdown()
        shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
