"""Where a create's event-loop time goes: the FHIR API called in process, parts switched off.

Each stage runs the real server application (ASGI calls, no network) with 32 creates in flight,
and replaces everything after a point with a canned 201 answer, so that the difference between
two stages is the cost of what the later one adds. Prints the event loop's CPU per create
(``time.thread_time``) and creates per second, the minimum of ``--runs`` runs each:

- ``api``: negotiation, dispatch, rendering (the reference);
- ``validate``: + R4 structural validation;
- ``unit``: + an empty unit of work (lock, batch join, waiting for the commit);
- ``no-index``: + the store write (meta, version and history rows, the batch, group commit)
  with the batch's SQL replaced by a no-op and no search values extracted;
- ``no-sql``: + search extraction and index rows, still without SQL: what the FHIR work costs
  the event loop on its own;
- ``full``: the whole create, committed to SQLite (WAL, synchronous=FULL).

    python bench/create_breakdown.py [--creates 20000] [--runs 3]
    python bench/create_breakdown.py --baseline REV [--body observation]

``--baseline REV`` measures the ``validate`` and ``full`` stages of this code and of git
revision REV in the same run, alternating them run by run (the machine's speed drifts), and
prints the create rate of both and the change. ``--body`` picks the resource: ``patient`` (the
default, as in rest_throughput.py) or ``observation`` (a vital sign with a Period, a Quantity
and a reference, where more R4 invariants apply).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import uvloop

from fhir_server.app import ServerApp
from fhir_server.cli import _freeze_heap
from fhir_server.config import Settings
from fhir_server.service import crud
from fhir_server.service.result import Result
from fhir_server.store.protocol import IndexRows, StoredVersion
from fhir_server.store.sqlite import batch as sqlite_batch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from rest_throughput import PATIENT

OBSERVATION = {
    "resourceType": "Observation",
    "status": "final",
    "category": [
        {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                    "code": "vital-signs",
                }
            ]
        }
    ],
    "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
    "subject": {"reference": "Patient/bench"},
    "effectivePeriod": {"start": "2024-03-01T10:00:00+01:00", "end": "2024-03-01T10:05:00+01:00"},
    "valueQuantity": {
        "value": 72,
        "unit": "/min",
        "system": "http://unitsofmeasure.org",
        "code": "/min",
    },
    "referenceRange": [{"low": {"value": 60}, "high": {"value": 100}}],
}
BODIES = {"patient": PATIENT, "observation": OBSERVATION}
BODY = json.dumps(PATIENT).encode()
STAGES = ("api", "validate", "unit", "no-index", "no-sql", "full")
IN_FLIGHT = 32
SCOPE = {
    "type": "http",
    "method": "POST",
    "path": "/fhir/Patient",
    "raw_path": b"/fhir/Patient",
    "query_string": b"",
    "headers": [
        (b"host", b"bench"),
        (b"content-type", b"application/fhir+json"),
        (b"content-length", str(len(BODY)).encode()),
    ],
    "scheme": "http",
    "server": ("127.0.0.1", 80),
    "client": ("127.0.0.1", 1),
    "root_path": "",
    "http_version": "1.1",
    "asgi": {"version": "3.0"},
}


def use_body(name: str) -> None:
    global BODY
    BODY = json.dumps(BODIES[name]).encode()
    resource_type = BODIES[name]["resourceType"]
    SCOPE["path"] = f"/fhir/{resource_type}"
    SCOPE["raw_path"] = SCOPE["path"].encode()
    SCOPE["headers"] = [
        (b"host", b"bench"),
        (b"content-type", b"application/fhir+json"),
        (b"content-length", str(len(BODY)).encode()),
    ]


async def one_create(app: ServerApp) -> None:
    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": BODY, "more_body": False}

    statuses: list[int] = []

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    await app(dict(SCOPE), receive, send)
    if statuses != [201]:
        raise RuntimeError(f"create answered {statuses}")


def switch_off(stage: str, app: ServerApp) -> None:
    """Replace the create after ``stage`` with a canned answer (or the SQL with a no-op)."""
    canned = StoredVersion("Patient", "bench", 1, 1_764_000_000_000_000, False, "POST", BODY, 1)

    def answer() -> Result:
        return Result(201, raw=canned.body, version=canned, location="http://bench/Patient/bench")

    async def create(svc: Any, ctx: Any, type_: str, body: Any, if_none_exist: Any) -> Result:
        if stage in ("validate", "unit"):
            svc.validate(body, type_)
        if stage == "unit":
            async with svc.store.unit_of_work():
                pass
        return answer()

    if stage in ("api", "validate", "unit"):
        crud.create = create
    if stage in ("no-index", "no-sql"):
        sqlite_batch.apply = lambda conn, payloads: None
        sys.modules["fhir_server.store.sqlite"].apply = sqlite_batch.apply
    if stage == "no-index":
        app.service.extractor.extract = lambda *args, **kwargs: IndexRows()


async def run_stage(stage: str, creates: int) -> tuple[float, float]:
    with tempfile.TemporaryDirectory(prefix="bench-breakdown-") as data:
        settings = Settings(data_dir=Path(data), store=f"sqlite:///{data}/fhir.db", auth="open")
        app = ServerApp(settings)
        await app.startup()
        switch_off(stage, app)
        for _ in range(300):  # warm up caches and the batch pipeline
            await one_create(app)
        await _freeze_heap()  # as `fhir-server serve` does after start-up
        started, cpu = time.perf_counter(), time.thread_time()
        for _ in range(creates // IN_FLIGHT):
            await asyncio.gather(*(one_create(app) for _ in range(IN_FLIGHT)))
        cpu, elapsed = time.thread_time() - cpu, time.perf_counter() - started
        await app.shutdown()
    done = creates // IN_FLIGHT * IN_FLIGHT
    return cpu / done * 1e6, done / elapsed


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--creates", type=int, default=20000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--stage", choices=STAGES, help="run one stage (used internally)")
    parser.add_argument("--baseline", help="git revision to compare with (before/after)")
    parser.add_argument("--body", choices=sorted(BODIES), default="patient")
    args = parser.parse_args()
    use_body(args.body)
    if args.stage:  # each stage in its own process: switching parts off cannot leak
        cpu, rate = uvloop.run(run_stage(args.stage, args.creates))
        print(f"{cpu:.1f} {rate:.0f}")
        return 0
    if args.baseline:
        return compare(args.baseline, args.creates, args.runs, args.body)
    import subprocess

    print(f"{'stage':<10}{'loop CPU µs/create':>20}{'creates/s':>12}{'added µs':>10}")
    previous = None
    for stage in STAGES:
        runs = []
        for _ in range(args.runs):
            out = subprocess.run(
                [sys.executable, __file__, "--stage", stage, "--creates", str(args.creates)],
                capture_output=True,
                text=True,
                check=True,
            ).stdout.split()
            runs.append((float(out[0]), float(out[1])))
        cpu = min(r[0] for r in runs)
        rate = max(r[1] for r in runs)
        added = "" if previous is None else f"{cpu - previous:+.1f}"
        print(f"{stage:<10}{cpu:>20.1f}{rate:>12.0f}{added:>10}")
        previous = cpu
    print(
        f"\nin process, {IN_FLIGHT} creates in flight, {args.creates} creates per run, "
        f"min of {args.runs} runs; `full` is the only stage that writes to disk"
    )
    return 0


def compare(revision: str, creates: int, runs: int, body: str) -> int:
    """This code next to ``revision``, stage by stage, alternating the two run by run."""
    from baseline import extract, run

    tree = extract(revision)
    print(f"create rate, {body}: {revision} (before) vs this tree (after), {runs} alternated runs")
    header = f"{'stage':<10}{'before/s':>10}{'after/s':>10}{'change':>9}"
    print(header + f"{'before µs':>11}{'after µs':>10}")
    for stage in ("validate", "full"):
        results: dict[str, list[tuple[float, float]]] = {"before": [], "after": []}
        for _ in range(runs):
            for label, where in (("before", tree), ("after", None)):
                out = run(
                    where,
                    "create_breakdown.py",
                    ["--stage", stage, "--creates", str(creates), "--body", body],
                ).split()
                results[label].append((float(out[0]), float(out[1])))
        before = max(r[1] for r in results["before"])
        after = max(r[1] for r in results["after"])
        cpu_before = min(r[0] for r in results["before"])
        cpu_after = min(r[0] for r in results["after"])
        print(
            f"{stage:<10}{before:>10.0f}{after:>10.0f}{(after / before - 1) * 100:>8.1f}%"
            f"{cpu_before:>11.1f}{cpu_after:>10.1f}"
        )
    print("best run of each; µs = event-loop CPU per create (min); the machine is shared")
    return 0


if __name__ == "__main__":
    sys.exit(main())
