"""Read throughput with authentication on versus off, over real HTTP (wrk), as in
bench/rest_throughput.py.

Two servers run the same way (uvicorn, one process each): ``--insecure-open`` (no security at
all) and the default secure mode, read with a Role A professional's token (token cache, scope,
care-relationship and label checks, and the AuditEvent of every read, buffered and written in
batches). The measurements alternate between the two servers (``--rounds``) so that load from
other processes affects both alike. Prints requests/s and the cost of security per read.

    python bench/auth_overhead.py [--seconds 10] [--connections 32] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from rest_throughput import free_port, wait_up, wrk

ORG = {"resourceType": "Organization", "id": "bench-org", "name": "Bench hospital"}
PATIENT = {
    "resourceType": "Patient",
    "id": "bench-1",
    "name": [{"family": "Bench", "given": ["Anna"]}],
    "gender": "female",
    "birthDate": "1990-02-03",
    "managingOrganization": {"reference": "Organization/bench-org"},
}
HEADER_LUA = 'wrk.headers["Authorization"] = "Bearer {token}"\n'
ENV = {**os.environ, "FHIR_LOAD_TERMINOLOGY": "false"}


def fhir_server(*args: str) -> list[str]:
    return [sys.executable, "-m", "fhir_server", *args]


def serve(data: Path, port: int, *flags: str) -> subprocess.Popen:
    return subprocess.Popen(
        fhir_server(
            "serve",
            "--port",
            str(port),
            "--data-dir",
            str(data),
            "--no-demo",
            "--log-level",
            "warning",
            *flags,
        ),
        env=ENV,
        stderr=subprocess.DEVNULL,
    )


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("wrk is needed as the load generator: apt-get install wrk", file=sys.stderr)
        return 2
    root = Path(tempfile.mkdtemp(prefix="bench-auth-"))
    processes: list[subprocess.Popen] = []
    try:
        seed = root / "seed.json"
        entries = [
            {"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}}
            for r in (ORG, PATIENT)
        ]
        seed.write_text(
            json.dumps({"resourceType": "Bundle", "type": "transaction", "entry": entries})
        )
        urls: dict[str, str] = {}
        scripts: dict[str, str | None] = {}
        for name, flags in (
            ("open (--insecure-open)", ["--insecure-open"]),
            ("secure (Role A token, audited)", []),
        ):
            data = root / str(len(urls))
            data.mkdir()
            load = fhir_server("load", str(seed), "--data-dir", str(data))
            subprocess.run(load, check=True, capture_output=True, env=ENV)
            port = free_port()
            processes.append(serve(data, port, *flags))
            wait_up(f"http://127.0.0.1:{port}/health")
            urls[name] = f"http://127.0.0.1:{port}/fhir/Patient/bench-1"
            scripts[name] = None
            if not flags:
                token = subprocess.run(
                    fhir_server(
                        "demo-token",
                        "--data-dir",
                        str(data),
                        "--port",
                        str(port),
                        "--organization",
                        "bench-org",
                    ),
                    check=True,
                    capture_output=True,
                    text=True,
                    env=ENV,
                ).stdout.strip()
                check = httpx.get(urls[name], headers={"Authorization": f"Bearer {token}"})
                assert check.status_code == 200, check.text
                scripts[name] = HEADER_LUA.format(token=token)
        results: dict[str, list[float]] = {name: [] for name in urls}
        for _ in range(args.rounds):
            for name, url in urls.items():
                results[name].append(wrk(url, args.seconds, args.connections, scripts[name]))
        best = {name: max(rates) for name, rates in results.items()}
        floor = best["open (--insecure-open)"]
        print(f"\n{'GET /Patient/id':<34}{'req/s':>10}{'of open':>10}{'µs/read extra':>15}")
        for name, rate in best.items():
            extra = 1e6 / rate - 1e6 / floor
            print(f"{name:<34}{rate:>10.0f}{rate / floor:>10.0%}{extra:>15.0f}")
        print(
            f"\nbest of {args.rounds} alternating rounds; {args.connections} connections, "
            f"{args.seconds} s each, wrk in a second process; {os.cpu_count()} CPUs"
        )
    finally:
        for process in processes:
            process.terminate()
            process.wait()
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
