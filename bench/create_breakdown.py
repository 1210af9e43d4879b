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
    python bench/create_breakdown.py --compare-fhirpath [--creates 5000] [--runs 3]

``--compare-fhirpath`` runs only the ``full`` stage, alternately with the former search-value
evaluator (``bench/reference``: the compiled subset with fhirpathpy behind it) and with the
FHIRPath engine, and prints both create rates.

``--compare-sources DIR,DIR...`` runs the ``no-sql`` and ``full`` stages alternately on other
source trees of the server (e.g. ``git archive <commit> | tar -x -C DIR``), this one's bench code
driving each: whether a change made creates slower.

    python bench/create_breakdown.py --compare-sources /tmp/before,/tmp/after [--runs 3]
"""

from __future__ import annotations

import os
import sys

if os.environ.get("BENCH_SOURCE"):  # run on another source tree (--compare-sources)
    _tree = os.environ["BENCH_SOURCE"]
    # the editable install's finder would import this checkout's fhir_server first
    sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in type(f).__name__.lower()]
    sys.path.insert(0, _tree)
    for _package, _folder in (
        ("profiles", "profiles"),
        ("terminology", "terminology"),
        ("mappings", "mappings"),
        ("library", "content"),
    ):  # the content packages setuptools maps from top-level folders
        _link = os.path.join(_tree, "fhir_server", "content", _package)
        if not os.path.exists(_link) and os.path.isdir(os.path.join(_tree, _folder)):
            os.symlink(os.path.join(_tree, _folder), _link)

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


def use_old_fhirpath() -> None:
    """Search values through the former evaluator (a copy kept in bench/reference)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from bench.reference import old_fhirpath
    from fhir_server.search import registry

    registry.compile_expression = old_fhirpath.compile_expression


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
    parser.add_argument("--old-fhirpath", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--compare-fhirpath", action="store_true")
    parser.add_argument("--compare-sources", help="source trees to compare, comma-separated")
    args = parser.parse_args()
    if args.stage:  # each stage in its own process: switching parts off cannot leak
        if args.old_fhirpath:
            use_old_fhirpath()
        cpu, rate = uvloop.run(run_stage(args.stage, args.creates))
        print(f"{cpu:.1f} {rate:.0f}")
        return 0
    import subprocess

    if args.compare_sources:
        trees = args.compare_sources.split(",")
        found: dict[tuple[str, str], list[tuple[float, float]]] = {}
        for _ in range(args.runs):
            for stage in ("no-sql", "full"):
                for tree in trees:
                    out = subprocess.run(
                        [
                            sys.executable,
                            __file__,
                            "--stage",
                            stage,
                            "--creates",
                            str(args.creates),
                        ],
                        capture_output=True,
                        text=True,
                        check=True,
                        env={**os.environ, "BENCH_SOURCE": tree},
                    ).stdout.split()
                    found.setdefault((stage, tree), []).append((float(out[0]), float(out[1])))
        for (stage, tree), runs in found.items():
            print(
                f"{tree:<40} {stage:<7} loop CPU {min(r[0] for r in runs):6.1f} µs/create, "
                f"{max(r[1] for r in runs):5.0f} creates/s (runs: "
                f"{', '.join(f'{r[1]:.0f}' for r in runs)})"
            )
        return 0

    if args.compare_fhirpath:
        results: dict[str, list[tuple[float, float]]] = {"old": [], "new": []}
        for _ in range(args.runs):
            for engine in ("old", "new"):
                command = [
                    sys.executable,
                    __file__,
                    "--stage",
                    "full",
                    "--creates",
                    str(args.creates),
                ] + (["--old-fhirpath"] if engine == "old" else [])
                out = subprocess.run(command, capture_output=True, text=True, check=True)
                cpu, rate = out.stdout.split()
                results[engine].append((float(cpu), float(rate)))
        for engine, runs in results.items():
            print(
                f"{engine} FHIRPath: loop CPU {min(r[0] for r in runs):.1f} µs/create, "
                f"{max(r[1] for r in runs):.0f} creates/s (runs: "
                f"{', '.join(f'{r[1]:.0f}' for r in runs)})"
            )
        return 0

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


if __name__ == "__main__":
    sys.exit(main())
