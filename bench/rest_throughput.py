"""REST throughput of the FHIR server next to a bare ASGI floor, over real HTTP.

Both servers run under uvicorn the same way (one process, uvloop + httptools, no access log); the
load comes from `wrk` in a second process (Debian package `wrk`). Prints requests/s for the floor,
read, create and update, each as a fraction of the floor, against the targets of the REST core
issue (read >= 50 %, create >= 25 %).

    python bench/rest_throughput.py [--seconds 10] [--connections 32]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
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


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("wrk is needed as the load generator: apt-get install wrk", file=sys.stderr)
        return 2
    floor_port, fhir_port = free_port(), free_port()
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
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "fhir_server",
            "serve",
            "--port",
            str(fhir_port),
            "--data-dir",
            str(data),
            "--no-demo",
            "--insecure-open",  # the REST core without security; bench/auth_overhead.py adds it
            "--log-level",
            "warning",
        ]
    )
    try:
        base = f"http://127.0.0.1:{fhir_port}/fhir"
        wait_up(f"http://127.0.0.1:{floor_port}/")
        wait_up(f"http://127.0.0.1:{fhir_port}/health")
        created = httpx.post(f"{base}/Patient", json=PATIENT).json()
        pid = created["id"]
        results: dict[str, float] = {}
        results["floor (bare ASGI GET)"] = wrk(
            f"http://127.0.0.1:{floor_port}/Patient/floor", args.seconds, args.connections
        )
        results["read GET /Patient/id"] = wrk(
            f"{base}/Patient/{pid}", args.seconds, args.connections
        )
        results["create POST /Patient"] = wrk(
            f"{base}/Patient",
            args.seconds,
            args.connections,
            CREATE_LUA.format(body=json.dumps(PATIENT)),
        )
        template = json.dumps({**PATIENT, "id": pid, "name": [{"family": "Bench%d"}]})
        results["update PUT /Patient/id"] = wrk(
            f"{base}/Patient/{pid}",
            args.seconds,
            args.connections,
            UPDATE_LUA.format(template=template, path=f"/fhir/Patient/{pid}"),
        )
        floor_rate = results["floor (bare ASGI GET)"]
        targets = {"read GET /Patient/id": 0.50, "create POST /Patient": 0.25}
        print(f"\n{'measure':<28}{'req/s':>10}{'of floor':>10}{'target':>9}")
        for name, rate in results.items():
            ratio = rate / floor_rate
            target = targets.get(name)
            mark = "" if target is None else (" ok" if ratio >= target else " MISS")
            target_text = f"{target:.0%}" if target else ""
            print(f"{name:<28}{rate:>10.0f}{ratio:>10.0%}{target_text:>9}{mark}")
        print(
            f"\n{args.connections} connections, {args.seconds} s each, wrk in a second "
            f"process; {os.cpu_count()} CPUs; store: SQLite WAL, synchronous=FULL"
        )
    finally:
        for process in (floor, server):
            process.terminate()
            process.wait()
        shutil.rmtree(data, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
