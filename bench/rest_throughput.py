"""REST throughput of the FHIR server next to a bare ASGI floor, over real HTTP.

Both servers run under uvicorn the same way (one process, uvloop + httptools, no access log); the
load comes from `wrk` in a second process (Debian package `wrk`). Prints requests/s for the floor,
read, create and update, each as a fraction of the floor, against the targets of the REST core
issue (read >= 50 %, create >= 25 %).

A second reference, the durable-create floor (`durable_create_app.py`), answers the same POST
with the least a durable create needs (parse, id, meta, group-committed SQLite insert; no
framework, validation, history or search index). The create row is also shown against it: that
fraction is what the FHIR work itself costs.

    python bench/rest_throughput.py [--seconds 10] [--connections 32] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
PATIENT = {
    "resourceType": "Patient",
    "name": [{"family": "Bench", "given": ["Anna"]}],
    "gender": "female",
    "birthDate": "1990-02-03",
    "identifier": [
        {
            "system": "https://www.ehealth.fgov.be/standards/fhir/core/NamingSystem/ssin",
            "value": "90020312345",
        }
    ],
}

CREATE_LUA = """
wrk.method = "POST"
wrk.body = [[{body}]]
wrk.headers["Content-Type"] = "application/fhir+json"
"""
UPDATE_LUA = """
counter = 0
request = function()
  counter = counter + 1
  local body = string.format([[{template}]], counter)
  return wrk.format("PUT", "{path}", {{["Content-Type"] = "application/fhir+json"}}, body)
end
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_up(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


def wrk(url: str, seconds: int, connections: int, script: str | None = None) -> float:
    args = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency"]
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as fh:
        if script:
            fh.write(script)
    if script:
        args += ["-s", fh.name]
    output = subprocess.run([*args, url], capture_output=True, text=True, check=True).stdout
    os.unlink(fh.name)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if errors:
        raise RuntimeError(f"{errors.group(1)} failed requests against {url}:\n{output}")
    return float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))


TARGETS = {"read GET /Patient/id": 0.50, "create POST /Patient": 0.25}


def report(rounds: list[dict[str, float]]) -> None:
    """Median rate of each load and the median of its per-round ratio to the floor."""
    floor = "floor (bare ASGI GET)"
    print(f"\n{'measure':<28}{'req/s':>10}{'of floor':>10}{'target':>9}")
    for name in rounds[0]:
        rate = statistics.median(r[name] for r in rounds)
        ratio = statistics.median(r[name] / r[floor] for r in rounds)
        target = TARGETS.get(name)
        mark = "" if target is None else (" ok" if ratio >= target else " MISS")
        target_text = f"{target:.0%}" if target else ""
        print(f"{name:<28}{rate:>10.0f}{ratio:>10.0%}{target_text:>9}{mark}")
    share = statistics.median(
        r["create POST /Patient"] / r["durable-create floor POST"] for r in rounds
    )
    print(f"\ncreate / durable-create floor: {share:.0%} (the cost of the FHIR work itself)")
    print(
        "per round (req/s): "
        + "; ".join(", ".join(f"{rate:.0f}" for rate in r.values()) for r in rounds)
    )


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("wrk is needed as the load generator: apt-get install wrk", file=sys.stderr)
        return 2
    floor_port, fhir_port, durable_port = free_port(), free_port(), free_port()
    data = Path(tempfile.mkdtemp(prefix="bench-rest-"))
    uvicorn_flags = [
        "--no-access-log",
        "--log-level",
        "warning",
        "--loop",
        "uvloop",
        "--http",
        "httptools",
    ]
    floor = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "floor_app:app",
            "--port",
            str(floor_port),
            *uvicorn_flags,
        ],
        cwd=HERE,
    )
    durable = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "durable_create_app:app",
            "--port",
            str(durable_port),
            *uvicorn_flags,
        ],
        cwd=HERE,
        env={**os.environ, "DURABLE_CREATE_DB": str(data / "durable-floor.db")},
    )
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "fhir_server",
            "serve",
            "--port",
            str(fhir_port),
            "--data-dir",
            str(data / "fhir"),
            "--no-demo",
            "--insecure-open",  # the REST core without security; bench/auth_overhead.py adds it
            "--log-level",
            "warning",
        ]
    )
    try:
        base = f"http://127.0.0.1:{fhir_port}/fhir"
        wait_up(f"http://127.0.0.1:{floor_port}/")
        wait_up(f"http://127.0.0.1:{durable_port}/")
        wait_up(f"http://127.0.0.1:{fhir_port}/health")
        created = httpx.post(f"{base}/Patient", json=PATIENT).json()
        pid = created["id"]
        create_lua = CREATE_LUA.format(body=json.dumps(PATIENT))
        template = json.dumps({**PATIENT, "id": pid, "name": [{"family": "Bench%d"}]})
        loads = {
            "floor (bare ASGI GET)": (f"http://127.0.0.1:{floor_port}/Patient/floor", None),
            "read GET /Patient/id": (f"{base}/Patient/{pid}", None),
            "durable-create floor POST": (f"http://127.0.0.1:{durable_port}/Patient", create_lua),
            "create POST /Patient": (f"{base}/Patient", create_lua),
            "update PUT /Patient/id": (
                f"{base}/Patient/{pid}",
                UPDATE_LUA.format(template=template, path=f"/fhir/Patient/{pid}"),
            ),
        }
        # This machine's speed drifts by up to 20 % from one run to the next: each round measures
        # every load once, and the ratios are taken within a round, next to their reference.
        rounds: list[dict[str, float]] = []
        for _ in range(args.rounds):
            rounds.append(
                {
                    name: wrk(url, args.seconds, args.connections, script)
                    for name, (url, script) in loads.items()
                }
            )
        report(rounds)
        print(
            f"{args.rounds} rounds; {args.connections} connections, {args.seconds} s each, wrk in "
            f"a second process; {os.cpu_count()} CPUs; store: SQLite WAL, synchronous=FULL"
        )
    finally:
        for process in (floor, durable, server):
            process.terminate()
            process.wait()
        shutil.rmtree(data, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
