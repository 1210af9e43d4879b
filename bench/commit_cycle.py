"""Where a create's time goes in the SQLite store's commit cycle, under real HTTP load.

Serves the FHIR server with timing around each batch commit (the store itself is unchanged: the
timing wraps `SqliteStore._apply_and_commit` and `batch.apply` in the served process), drives it
with `wrk` POSTing Patients, and prints per batch: its size, the time from taking the batch to
the thread starting SQL, the SQL statement itself (apply + commit + fsync), the hand-back to the
event loop, and the gap before the next batch is taken. Next to it, the same run's throughput.
See docs/benchmarks.md ("where a create's time goes").

    python bench/commit_cycle.py [--seconds 8] [--connections 32]
"""

from __future__ import annotations

import argparse
import itertools
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from rest_throughput import CREATE_LUA, PATIENT, free_port, wait_up, wrk  # noqa: E402


def serve_instrumented(stats_path: Path, argv: list[str]) -> None:
    """Runs in the server process: time every batch, dump the records every 200 batches."""
    import fhir_server.store.sqlite as store_module
    from fhir_server.cli import main

    records: list[tuple[float, float, float, float, int]] = []
    original = store_module.SqliteStore._apply_and_commit
    real_apply = store_module.apply

    async def timed(self, batch) -> None:  # type: ignore[no-untyped-def]
        taken = time.perf_counter()
        sql: dict[str, float] = {}

        def apply(conn, payloads) -> None:  # type: ignore[no-untyped-def]
            sql["start"] = time.perf_counter()
            real_apply(conn, payloads)
            sql["end"] = time.perf_counter()

        store_module.apply = apply
        try:
            await original(self, batch)
        finally:
            store_module.apply = real_apply
        if "start" in sql:
            records.append(
                (taken, sql["start"], sql["end"], time.perf_counter(), len(batch.written))
            )
            if len(records) % 200 == 0:
                stats_path.write_text(json.dumps(records))

    store_module.SqliteStore._apply_and_commit = timed
    sys.argv = ["fhir-server", *argv]
    main()


def report(records: list[list[float]], rate: float) -> None:
    steady = records[len(records) // 5 :]  # skip the warm-up
    if len(steady) < 10:
        print("too few batches to report")
        return
    span = steady[-1][3] - steady[0][0]

    def mean_ms(values: list[float]) -> str:
        return f"{statistics.mean(values) * 1000:6.2f} ms"

    gaps = [b[0] - a[3] for a, b in itertools.pairwise(steady)]
    print(f"creates/s (wrk)                 {rate:9.0f}")
    print(f"batches measured                {len(steady):9d}")
    print(f"creates per batch               {statistics.mean(r[4] for r in steady):9.1f}")
    print(f"take -> thread runs SQL         {mean_ms([r[1] - r[0] for r in steady])}")
    print(f"SQL: apply + commit + fsync     {mean_ms([r[2] - r[1] for r in steady])}")
    print(f"SQL done -> event loop resumes  {mean_ms([r[3] - r[2] for r in steady])}")
    print(f"resume -> next batch taken      {mean_ms(gaps)}")
    print(f"cycle                           {span / len(steady) * 1000:6.2f} ms")
    busy = sum(r[2] - r[1] for r in steady) / span
    print(f"thread inside SQL               {busy:9.0%}")


def main() -> int:
    if len(sys.argv) > 2 and sys.argv[1] == "--serve":
        serve_instrumented(Path(sys.argv[2]), sys.argv[3:])
        return 0
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("wrk is needed as the load generator: apt-get install wrk", file=sys.stderr)
        return 2
    port = free_port()
    data = Path(tempfile.mkdtemp(prefix="bench-commit-"))
    stats = data / "cycle.json"
    server = subprocess.Popen(
        [
            sys.executable,
            __file__,
            "--serve",
            str(stats),
            "serve",
            "--port",
            str(port),
            "--data-dir",
            str(data / "store"),
            "--no-demo",
            "--insecure-open",
            "--log-level",
            "warning",
        ]
    )
    try:
        wait_up(f"http://127.0.0.1:{port}/health")
        url = f"http://127.0.0.1:{port}/fhir/Patient"
        script = CREATE_LUA.format(body=json.dumps(PATIENT))
        wrk(url, 2, args.connections, script)  # warm-up
        rate = wrk(url, args.seconds, args.connections, script)
        time.sleep(0.5)
        report(json.loads(stats.read_text()) if stats.exists() else [], rate)
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(data, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
