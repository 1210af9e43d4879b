"""What security costs on reads and creates, over real HTTP (wrk), as in bench/rest_throughput.py.

Three servers run the same way (uvicorn, one process each, same seed):

- ``open``: ``--insecure-open``, no security at all (the reference);
- ``secure``: the default secure mode of this checkout, with a Role A professional's token
  (token cache, scopes, the stored version judged before anything else, every patient of a write,
  care relationships, labels, and the AuditEvent of every request);
- ``secure, before``: the same secure mode of an earlier commit (``--baseline``, default the last
  release before the security rework), run from a temporary git worktree, so that the cost of the
  new checks is measured in the same run as the old ones.

Loads: ``GET /Patient/id`` and ``POST /Observation`` (an Observation of that patient). The
measurements alternate between the servers (``--rounds``) so that load from other processes
affects all alike; medians per server are printed next to the open reference.

    python bench/auth_overhead.py [--seconds 10] [--connections 32] [--rounds 3]
                                  [--baseline b930313 | --baseline none]
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
from rest_throughput import CREATE_LUA, free_port, wait_up, wrk

ROOT = Path(__file__).resolve().parents[1]
BASELINE = "b930313"  # main before the security rework (stop 10)
ORG = {"resourceType": "Organization", "id": "bench-org", "name": "Bench hospital"}
PATIENT = {
    "resourceType": "Patient",
    "id": "bench-1",
    "name": [{"family": "Bench", "given": ["Anna"]}],
    "gender": "female",
    "birthDate": "1990-02-03",
    "managingOrganization": {"reference": "Organization/bench-org"},
}
OBSERVATION = {
    "resourceType": "Observation",
    "status": "final",
    "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7"}]},
    "subject": {"reference": "Patient/bench-1"},
    "valueQuantity": {"value": 72.5, "unit": "kg", "system": "http://unitsofmeasure.org"},
}
HEADER_LUA = 'wrk.headers["Authorization"] = "Bearer {token}"\n'
ENV = {**os.environ, "FHIR_LOAD_TERMINOLOGY": "false", "FHIR_LOAD_CONTENT": "false"}


def fhir_server(*args: str) -> list[str]:
    return [sys.executable, "-m", "fhir_server", *args]


def env_for(code: Path | None) -> dict[str, str]:
    if code is None:
        return ENV
    return {**ENV, "PYTHONPATH": str(code)}  # run the baseline's package, not this checkout's


def serve(data: Path, port: int, code: Path | None, *flags: str) -> subprocess.Popen:
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
        env=env_for(code),
        cwd=str(code or ROOT),
        stderr=subprocess.DEVNULL,
    )


def baseline_worktree(ref: str, root: Path) -> Path:
    target = root / "baseline"
    subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(target), ref],
        check=True,
        capture_output=True,
    )
    # the package data lives at the top level (profiles/, terminology/...) and is installed under
    # fhir_server.content: link it where the importable package expects it
    content = target / "fhir_server" / "content"
    for name in ("profiles", "terminology", "mappings", "content"):
        if (target / name).is_dir() and not (content / name).exists():
            (content / name).symlink_to(target / name)
    if (content / "content").exists():
        (content / "content").rename(content / "library")
    return target


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--baseline", default=BASELINE, help="git ref, or 'none'")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("wrk is needed as the load generator: apt-get install wrk", file=sys.stderr)
        return 2
    root = Path(tempfile.mkdtemp(prefix="bench-auth-"))
    processes: list[subprocess.Popen] = []
    worktree: Path | None = None
    try:
        seed = root / "seed.json"
        entries = [
            {"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}}
            for r in (ORG, PATIENT)
        ]
        seed.write_text(
            json.dumps({"resourceType": "Bundle", "type": "transaction", "entry": entries})
        )
        servers: list[tuple[str, list[str], Path | None]] = [
            ("open (--insecure-open)", ["--insecure-open"], None),
            ("secure (Role A, audited)", [], None),
        ]
        if args.baseline != "none":
            worktree = baseline_worktree(args.baseline, root)
            servers.append((f"secure, before ({args.baseline})", [], worktree))
        loads: dict[tuple[str, str], tuple[str, str | None]] = {}
        for name, flags, code in servers:
            data = root / str(len(loads))
            data.mkdir()
            load = fhir_server("load", str(seed), "--data-dir", str(data))
            subprocess.run(load, check=True, capture_output=True, env=env_for(code), cwd=code)
            port = free_port()
            processes.append(serve(data, port, code, *flags))
            wait_up(f"http://127.0.0.1:{port}/health")
            base = f"http://127.0.0.1:{port}/fhir"
            header = ""
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
                    env=env_for(code),
                    cwd=code,
                ).stdout.strip()
                check = httpx.get(
                    f"{base}/Patient/bench-1", headers={"Authorization": f"Bearer {token}"}
                )
                assert check.status_code == 200, check.text
                header = HEADER_LUA.format(token=token)
            loads[(name, "read")] = (f"{base}/Patient/bench-1", header or None)
            create = header + CREATE_LUA.format(body=json.dumps(OBSERVATION))
            loads[(name, "create")] = (f"{base}/Observation", create)
        results: dict[tuple[str, str], list[float]] = {key: [] for key in loads}
        for _ in range(args.rounds):
            for key, (url, script) in loads.items():
                results[key].append(wrk(url, args.seconds, args.connections, script))
        median = {key: statistics.median(rates) for key, rates in results.items()}
        open_name = servers[0][0]
        print(f"\n{'':<34}{'req/s':>10}{'of open':>10}{'µs extra':>10}")
        for kind, label in (("read", "GET /Patient/id"), ("create", "POST /Observation")):
            print(label)
            floor = median[(open_name, kind)]
            for name, _, _ in servers:
                rate = median[(name, kind)]
                extra = 1e6 / rate - 1e6 / floor
                print(f"  {name:<32}{rate:>10.0f}{rate / floor:>10.0%}{extra:>10.0f}")
        if worktree is not None:
            before = servers[2][0]
            print("\nthe new checks, secure now / secure before (same run):")
            for kind in ("read", "create"):
                now, then = median[(servers[1][0], kind)], median[(before, kind)]
                print(f"  {kind:<8}{now / then:>8.0%}  ({1e6 / now - 1e6 / then:+.0f} µs each)")
        print(
            f"\nmedians of {args.rounds} alternating rounds; {args.connections} connections, "
            f"{args.seconds} s each, wrk in a second process; {os.cpu_count()} CPUs"
        )
    finally:
        for process in processes:
            process.terminate()
            process.wait()
        if worktree is not None:
            subprocess.run(
                ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(worktree)],
                capture_output=True,
            )
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
