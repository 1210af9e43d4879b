"""Speed where deployments live: one table with open and secure mode, default logging and the
floors, measured side by side in one run (issue 18).

Servers (uvicorn, one process each, the same seed: an organisation, a woman in its care, 20 of
her Observations):

- ``open, warning``: ``--insecure-open --log-level warning`` (how earlier benchmarks ran);
- ``open``: ``--insecure-open`` at the default log level (one access line per request);
- ``secure``: the default: a Role A professional's token, guard, audit trail durable before each
  answer, default log level;
- the floors: a bare ASGI app answering a GET, and a bare ASGI app group-committing a POST into
  SQLite the way the store does (``durable_create_app.py``).

Loads: read ``GET /Patient/id``, search ``GET /Observation?patient=...``, create ``POST
/Observation``. Every round measures every load once (wrk, 32 connections), alternating, so that
drift affects all alike; the table shows medians and the median of each per-round ratio, next to
the targets.

    python bench/deployment_table.py [--seconds 10] [--connections 32] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from rest_throughput import CREATE_LUA, free_port, wait_up, wrk  # noqa: E402

ORG = {"resourceType": "Organization", "id": "bench-org", "name": "Bench hospital"}
PATIENT = {
    "resourceType": "Patient",
    "id": "bench-1",
    "name": [{"family": "Bench", "given": ["Anna"]}],
    "gender": "female",
    "birthDate": "1990-02-03",
    "managingOrganization": {"reference": "Organization/bench-org"},
}


def observation(i: int | None = None) -> dict:
    out = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7"}]},
        "subject": {"reference": "Patient/bench-1"},
        "effectiveDateTime": "2026-11-01T10:00:00+01:00",
        "valueQuantity": {"value": 70 + (i or 0) / 10, "unit": "kg"},
    }
    if i is not None:
        out["id"] = f"obs-{i}"
    return out


ENV = {**os.environ, "FHIR_LOAD_TERMINOLOGY": "false", "FHIR_LOAD_CONTENT": "false"}
HEADER_LUA = 'wrk.headers["Authorization"] = "Bearer {token}"\n'
UVICORN = ["--no-access-log", "--log-level", "warning", "--loop", "uvloop", "--http", "httptools"]
SERVERS = {
    "open, warning": ["--insecure-open", "--log-level", "warning"],
    "open": ["--insecure-open"],
    "secure": [],
}
# (measure, reference, target ratio)
TARGETS = [
    ("read open", "read open, warning", 0.90, "default logging within 10 % of warning"),
    ("read secure", "read open", 0.70, "secure read >= 70 % of open read"),
    ("search secure", "search open", 0.70, "secure search >= 70 % of open search"),
    ("create secure", "create open", 0.60, "secure create >= 60 % of open create"),
    ("create open", "durable-create floor", 0.50, "open create >= 50 % of the durable floor"),
]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("wrk is needed as the load generator: apt-get install wrk", file=sys.stderr)
        return 2
    root = Path(tempfile.mkdtemp(prefix="bench-table-"))
    processes: list[subprocess.Popen] = []
    try:
        seed = root / "seed.json"
        resources = [ORG, PATIENT, *(observation(i) for i in range(20))]
        entries = [
            {"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}}
            for r in resources
        ]
        seed.write_text(
            json.dumps({"resourceType": "Bundle", "type": "transaction", "entry": entries})
        )
        loads: dict[str, tuple[str, str | None]] = {}
        floor_port, durable_port = free_port(), free_port()
        processes.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "uvicorn",
                    "floor_app:app",
                    "--port",
                    str(floor_port),
                    *UVICORN,
                ],
                cwd=HERE,
            )
        )
        processes.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "uvicorn",
                    "durable_create_app:app",
                    "--port",
                    str(durable_port),
                    *UVICORN,
                ],
                cwd=HERE,
                env={**os.environ, "DURABLE_CREATE_DB": str(root / "durable-floor.db")},
            )
        )
        wait_up(f"http://127.0.0.1:{floor_port}/")
        wait_up(f"http://127.0.0.1:{durable_port}/")
        create_body = json.dumps(observation())
        loads["floor (bare ASGI GET)"] = (f"http://127.0.0.1:{floor_port}/Patient/floor", None)
        loads["durable-create floor"] = (
            f"http://127.0.0.1:{durable_port}/Patient",
            CREATE_LUA.format(body=json.dumps(PATIENT)),
        )
        for name, flags in SERVERS.items():
            data = root / name.replace(", ", "-")
            data.mkdir()
            subprocess.run(
                [sys.executable, "-m", "fhir_server", "load", str(seed), "--data-dir", str(data)],
                check=True,
                capture_output=True,
                env=ENV,
            )
            port = free_port()
            log = (root / f"{data.name}.log").open("w")
            processes.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "fhir_server",
                        "serve",
                        "--port",
                        str(port),
                        "--data-dir",
                        str(data),
                        "--no-demo",
                        *flags,
                    ],
                    env=ENV,
                    stdout=log,
                    stderr=log,
                )
            )
            wait_up(f"http://127.0.0.1:{port}/health")
            header = ""
            auth: dict[str, str] = {}
            if name == "secure":
                token = subprocess.run(
                    [
                        sys.executable,
                        "-m",
                        "fhir_server",
                        "demo-token",
                        "--data-dir",
                        str(data),
                        "--port",
                        str(port),
                        "--organization",
                        "bench-org",
                    ],
                    check=True,
                    capture_output=True,
                    text=True,
                    env=ENV,
                ).stdout.strip()
                header = HEADER_LUA.format(token=token)
                auth = {"Authorization": f"Bearer {token}"}
            base = f"http://127.0.0.1:{port}/fhir"
            check = httpx.get(f"{base}/Observation?patient=Patient/bench-1", headers=auth)
            assert check.status_code == 200 and check.json().get("entry"), check.text[:300]
            kind = "secure" if name == "secure" else name
            loads[f"read {kind}"] = (f"{base}/Patient/bench-1", header or None)
            if name != "open, warning":
                loads[f"search {kind}"] = (
                    f"{base}/Observation?patient=Patient/bench-1&_count=10",
                    header or None,
                )
                loads[f"create {kind}"] = (
                    f"{base}/Observation",
                    header + CREATE_LUA.format(body=create_body),
                )
        rounds: list[dict[str, float]] = []
        for _ in range(args.rounds):
            rounds.append(
                {
                    name: wrk(url, args.seconds, args.connections, script)
                    for name, (url, script) in loads.items()
                }
            )
        floor = "floor (bare ASGI GET)"
        print(f"\n{'measure':<26}{'req/s':>9}{'of floor':>10}")
        for name in loads:
            rate = statistics.median(r[name] for r in rounds)
            ratio = statistics.median(r[name] / r[floor] for r in rounds)
            print(f"{name:<26}{rate:>9.0f}{ratio:>10.0%}")
        print(f"\n{'target':<44}{'ratio':>7}{'needed':>8}")
        for measure, reference, target, text in TARGETS:
            ratio = statistics.median(r[measure] / r[reference] for r in rounds)
            mark = "ok" if ratio >= target else "MISS"
            print(f"{text:<44}{ratio:>7.0%}{target:>8.0%}  {mark}")
        print(
            f"\nmedians of {args.rounds} interleaved rounds; {args.connections} connections, "
            f"{args.seconds} s each, wrk in a second process; {os.cpu_count()} CPUs"
        )
        print(
            "per round: "
            + " | ".join(", ".join(f"{k}={v:.0f}" for k, v in r.items()) for r in rounds)
        )
    finally:
        for process in processes:
            process.terminate()
            process.wait()
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
