"""Event-loop CPU per request, open and secure, in process (ASGI calls, no network; issue 18).

The same seed as ``deployment_table.py`` (an organisation, a woman in its care, 20 of her
Observations); the secure app uses a Role A professional's token of that organisation (guard,
Provenance, the audit trail durable before each answer). Each load runs ``--requests`` requests,
32 in flight, and prints the event loop's CPU per request (``time.thread_time``: what limits a
one-process server), min of ``--runs`` runs, for both modes and the difference: what the secure
path adds per request. Microseconds of CPU drift far less than requests per second on a shared
machine.

    python bench/secure_breakdown.py [--requests 4000] [--runs 3]
    python bench/secure_breakdown.py --profile read|search|create [--mode secure]   # cProfile

``--code DIR`` runs the measurement with another checkout's ``fhir_server`` (a ``git worktree``
of an older revision: the before of a before/after in one run).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
IN_FLIGHT = 32
LOADS = ("read", "search", "create")

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


def scope_for(method: str, path: str, query: str, body: bytes, token: str | None) -> dict:
    headers = [(b"host", b"bench"), (b"accept", b"application/fhir+json")]
    if body:
        headers += [
            (b"content-type", b"application/fhir+json"),
            (b"content-length", str(len(body)).encode()),
        ]
    if token:
        headers.append((b"authorization", f"Bearer {token}".encode()))
    return {
        "type": "http",
        "method": method,
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "headers": headers,
        "scheme": "http",
        "server": ("127.0.0.1", 8080),
        "client": ("127.0.0.1", 1),
        "root_path": "",
        "http_version": "1.1",
        "asgi": {"version": "3.0"},
    }


async def call(app: Any, scope: dict, body: bytes = b"") -> tuple[int, bytes]:
    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    status: list[int] = []
    chunks: list[bytes] = []

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            status.append(message["status"])
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await app(dict(scope), receive, send)
    return status[0], b"".join(chunks)


async def build(data: Path, mode: str) -> tuple[Any, str | None]:
    from fhir_server.app import ServerApp
    from fhir_server.config import Settings

    def settings(auth: str) -> Any:
        return Settings(
            data_dir=data,
            store=f"sqlite:///{data}/fhir.db",
            auth=auth,
            public_url="http://127.0.0.1:8080/fhir",
        )

    seeder = ServerApp(settings("open"))
    await seeder.startup()
    entries = [
        {"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}}
        for r in (ORG, PATIENT, *(observation(i) for i in range(20)))
    ]
    bundle = json.dumps({"resourceType": "Bundle", "type": "transaction", "entry": entries})
    body = bundle.encode()
    status, text = await call(seeder, scope_for("POST", "/fhir", "", body, None), body)
    assert status == 200, text[:300]
    await seeder.shutdown()
    app = ServerApp(settings(mode if mode == "open" else "required"))
    await app.startup()
    if mode == "open":
        return app, None
    from fhir_server.security import signing_key_path
    from fhir_server.security.authserver import access_claims
    from fhir_server.security.tokens import SigningKey

    claims = access_claims(
        settings("required"),
        subject="demo:Practitioner/demo-midwife",
        client_id="fhir-server-demo-token",
        scope="user/*.cruds openid fhirUser",
        lifetime=3600,
        role="A",
        practitioner="Practitioner/demo-midwife",
        organization="Organization/bench-org",
        professions=["persmidwife"],
        name="An Peeters (demo)",
        source="demo",
    )
    token = SigningKey(signing_key_path(settings("required"))).sign(claims, typ="at+jwt")
    return app, token


def request_for(load: str, token: str | None) -> tuple[dict, bytes, int]:
    if load == "read":
        return scope_for("GET", "/fhir/Patient/bench-1", "", b"", token), b"", 200
    if load == "search":
        return scope_for("GET", "/fhir/Observation", "patient=bench-1", b"", token), b"", 200
    body = json.dumps(observation()).encode()
    return scope_for("POST", "/fhir/Observation", "", body, token), body, 201


async def measure(mode: str, load: str, requests: int, profile: str | None) -> float:
    from fhir_server.cli import _freeze_heap

    with tempfile.TemporaryDirectory(prefix="bench-secure-") as data:
        app, token = await build(Path(data), mode)
        scope, body, expected = request_for(load, token)

        async def one() -> None:
            status, text = await call(app, scope, body)
            if status != expected:
                raise RuntimeError(f"{load} answered {status}: {text[:300]!r}")

        for _ in range(10):  # warm up
            await asyncio.gather(*(one() for _ in range(IN_FLIGHT)))
        await _freeze_heap()
        profiler = sampler = None
        if profile == "sample":  # pyinstrument (pip install pyinstrument): a sampling profile
            from pyinstrument import Profiler

            sampler = Profiler(interval=0.0002, async_mode="disabled")
            sampler.start()
        elif profile:
            import cProfile

            profiler = cProfile.Profile()
            profiler.enable()
        cpu = time.thread_time()
        rounds = max(requests // IN_FLIGHT, 1)
        for _ in range(rounds):
            await asyncio.gather(*(one() for _ in range(IN_FLIGHT)))
        cpu = time.thread_time() - cpu
        if sampler is not None:
            sampler.stop()
            print(sampler.output_text(unicode=False, color=False, show_all=False, timeline=False))
        if profiler is not None:
            import pstats

            profiler.disable()
            pstats.Stats(profiler).sort_stats(profile).print_stats(45)
        await app.shutdown()
    return cpu / (rounds * IN_FLIGHT) * 1e6


def run_one(code: Path | None, mode: str, load: str, requests: int) -> float:
    env = dict(os.environ)
    if code is not None:
        env["PYTHONPATH"] = str(code)
    out = subprocess.run(
        [sys.executable, __file__, "--one", mode, load, "--requests", str(requests)],
        capture_output=True,
        text=True,
        env=env,
        cwd=str(code) if code else None,
    )
    if out.returncode:
        raise RuntimeError(out.stderr[-2000:])
    return float(out.stdout.split()[-1])


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--one", nargs=2, metavar=("MODE", "LOAD"), help=argparse.SUPPRESS)
    parser.add_argument("--profile", choices=LOADS)
    parser.add_argument("--mode", choices=("open", "secure"), default="secure")
    parser.add_argument("--sort", default="tottime", help="cProfile order, or 'sample'")
    parser.add_argument("--code", type=Path, action="append", default=[], help="other checkouts")
    args = parser.parse_args()
    import uvloop

    if args.one:
        mode, load = args.one
        print(f"{uvloop.run(measure(mode, load, args.requests, None)):.1f}")
        return 0
    if args.profile:
        uvloop.run(measure(args.mode, args.profile, args.requests, args.sort))
        return 0
    codes: list[tuple[str, Path | None]] = [("this", None)]
    codes += [(str(c), c.resolve()) for c in args.code]
    results: dict[tuple[str, str, str], list[float]] = {}
    for _ in range(args.runs):  # interleaved: drift hits every cell alike
        for name, code in codes:
            for load in LOADS:
                for mode in ("open", "secure"):
                    value = run_one(code, mode, load, args.requests)
                    results.setdefault((name, load, mode), []).append(value)
    print(f"loop CPU µs per request, min of {args.runs} runs, {args.requests} requests each")
    print(f"{'code':<24}{'load':<8}{'open':>9}{'secure':>9}{'added':>9}")
    for name, _code in codes:
        for load in LOADS:
            open_ = min(results[(name, load, "open")])
            secure = min(results[(name, load, "secure")])
            print(f"{name:<24}{load:<8}{open_:>9.1f}{secure:>9.1f}{secure - open_:>+9.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
