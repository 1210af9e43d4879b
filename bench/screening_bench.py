# ruff: noqa: E501  (long command lines read better unwrapped)
"""Completed screenings per second, end to end over real HTTP (wrk), security on, next to a plain
create measured in the same run.

One secure server (uvicorn, one process, SQLite), a Role A token (care relationship through the
patient's managing organization). The loads, measured in alternating rounds:

* ``plain create``: ``POST /Observation`` (a patient-data create: token, scopes, relationship and
  label checks, validation, indexing, its Provenance and AuditEvent);
* ``BiB screening``: ``POST /QuestionnaireResponse`` of a completed BiB psychosocial screening
  (validation against the Questionnaire, scoring of 13 indicators, observation-based extraction
  of 13 Observations, the Consent by definition-based extraction, one Provenance; one indicator
  flagged, so no protocol step);
* ``EPDS with alert``: a completed EPDS with item 10 above 0 and a total above 13 (total
  Observation, Flag, alert Task and Communication, clinical-assessment Task, Provenance).

Each screening line gives how many resources one request writes and its cost in plain creates
(plain rate / screening rate); the target is at most 5 for the BiB screening. A second part
runs the same screening in process and reports the share of the time spent in FHIRPath
(fhirpathpy today, through ``fhir_server.fhirpath.evaluate``).

    python bench/screening_bench.py [--seconds 10] [--connections 16] [--rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT))
from rest_throughput import free_port, wait_up, wrk  # noqa: E402

from tests.screening import helpers as H  # noqa: E402

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
    "code": {
        "coding": [{"system": "http://loinc.org", "code": "29463-7", "display": "Body weight"}]
    },
    "subject": {"reference": "Patient/bench-1"},
    "effectiveDateTime": "2026-11-20T10:00:00+01:00",
    "valueQuantity": {
        "value": 68.5,
        "unit": "kg",
        "system": "http://unitsofmeasure.org",
        "code": "kg",
    },
}
AUTHOR = "Practitioner/demo-midwife"
ENV = {**os.environ, "FHIR_LOAD_TERMINOLOGY": "false", "FHIR_AUDIT_FLUSH_MS": "50"}
LUA = """wrk.method = "POST"
wrk.body = {body}
wrk.headers["Content-Type"] = "application/fhir+json"
wrk.headers["Authorization"] = "Bearer {token}"
wrk.headers["Prefer"] = "return=minimal"
"""


def screenings() -> dict[str, dict]:
    bib = H.bib({"housing": [4, 0]}, patient="bench-1", author=AUTHOR)
    epds = H.scored("epds", [3, 3, 3, 1, 0, 0, 0, 0, 0, 1], patient="bench-1", author=AUTHOR)
    return {"BiB screening": bib, "EPDS with alert": epds}


def fhir_server(*args: str) -> list[str]:
    return [sys.executable, "-m", "fhir_server", *args]


def written_per_request(base: str, token: str, resource: dict) -> int:
    """Resources one request writes: the response, what it yields, and the Provenance(s)."""
    headers = {"Authorization": f"Bearer {token}"}
    response = httpx.post(f"{base}/QuestionnaireResponse", json=resource, headers=headers)
    assert response.status_code == 201, response.text
    qr_id = response.json()["id"]
    found = httpx.get(
        f"{base}/Provenance",
        params={"entity": f"QuestionnaireResponse/{qr_id}"},
        headers=headers,
    )
    if found.status_code == 200 and found.json().get("entry"):
        derived = sum(len(e["resource"]["target"]) for e in found.json()["entry"])
        return 1 + derived + len(found.json()["entry"]) + 1  # + the response's own Provenance
    return 2


def over_http(args: argparse.Namespace) -> dict[str, float]:
    root = Path(tempfile.mkdtemp(prefix="bench-screening-"))
    server = None
    try:
        data = root / "data"
        data.mkdir()
        seed = root / "seed.json"
        entries = [
            {"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}}
            for r in (ORG, PATIENT)
        ]
        seed.write_text(
            json.dumps({"resourceType": "Bundle", "type": "transaction", "entry": entries})
        )
        subprocess.run(
            fhir_server("load", str(seed), "--data-dir", str(data)),
            check=True,
            capture_output=True,
            env=ENV,
        )
        port = free_port()
        server = subprocess.Popen(
            fhir_server("serve", "--port", str(port), "--data-dir", str(data), "--no-demo", "--log-level", "warning"),
            env=ENV,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        wait_up(f"http://127.0.0.1:{port}/health")
        base = f"http://127.0.0.1:{port}/fhir"
        token = subprocess.run(
            fhir_server("demo-token", "--data-dir", str(data), "--port", str(port), "--organization", "bench-org"),
            check=True, capture_output=True, text=True, env=ENV,
        ).stdout.strip()  # fmt: skip
        loads = {"plain create (POST /Observation)": ("Observation", OBSERVATION)}
        loads.update({name: ("QuestionnaireResponse", r) for name, r in screenings().items()})
        writes = {name: written_per_request(base, token, r) for name, r in screenings().items()}
        check = httpx.post(
            f"{base}/Observation", json=OBSERVATION, headers={"Authorization": f"Bearer {token}"}
        )
        assert check.status_code == 201, check.text
        rates: dict[str, list[float]] = {name: [] for name in loads}
        for _ in range(args.rounds):
            for name, (type_, body) in loads.items():
                script = LUA.format(body=json.dumps(json.dumps(body)), token=token)
                rates[name].append(wrk(f"{base}/{type_}", args.seconds, args.connections, script))
        plain = statistics.median(rates["plain create (POST /Observation)"])
        print(f"\n{'load (secure, Role A)':<36}{'req/s':>8}{'writes':>8}{'plain creates':>15}")
        writes["plain create (POST /Observation)"] = 2  # the Observation and its Provenance
        for name, values in rates.items():
            rate = statistics.median(values)
            print(f"{name:<36}{rate:>8.1f}{writes[name]:>8}{plain / rate:>15.1f}")
        print(
            "per round (req/s): "
            + "; ".join(
                f"{name}: " + ", ".join(f"{v:.1f}" for v in values)
                for name, values in rates.items()
            )
        )
        print(
            f"median of {args.rounds} alternating rounds; {args.connections} connections, "
            f"{args.seconds} s each, wrk in a second process; {os.cpu_count()} CPUs shared "
            "with other work (numbers drift: compare the ratios)"
        )
        return {name: statistics.median(v) for name, v in rates.items()}
    finally:
        if server is not None:
            server.terminate()
            server.wait()
        shutil.rmtree(root, ignore_errors=True)


async def in_process(count: int) -> None:
    """The BiB screening in process (no HTTP, security off), with the time inside FHIRPath."""
    import fhir_server.fhirpath as fhirpath
    from fhir_server.app import ServerApp
    from fhir_server.config import Settings
    from fhir_server.screening import extraction, protocol, responses

    spent = [0.0, 0]
    original = fhirpath.evaluate

    def timed(*a, **kw):  # type: ignore[no-untyped-def]
        start = time.perf_counter()
        try:
            return original(*a, **kw)
        finally:
            spent[0] += time.perf_counter() - start
            spent[1] += 1

    for module in (responses, extraction, protocol):
        module.fhirpath.evaluate = timed  # type: ignore[attr-defined]
    root = Path(tempfile.mkdtemp(prefix="bench-screening-inproc-"))
    app = ServerApp(
        Settings(data_dir=root, public_url="http://bench/fhir", auth="open", load_terminology=False)
    )
    await app.startup()
    indexing = [0.0]
    extract_index = app.service.extractor.extract

    def timed_index(*a, **kw):  # type: ignore[no-untyped-def]
        start = time.perf_counter()
        try:
            return extract_index(*a, **kw)
        finally:
            indexing[0] += time.perf_counter() - start

    app.service.extractor.extract = timed_index  # type: ignore[method-assign]
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench/fhir") as client:
            await client.put("/Patient/bench-1", json=PATIENT)
            bib = screenings()["BiB screening"]
            for label, path, body in (
                ("plain create", "/Observation", OBSERVATION),
                ("BiB screening", "/QuestionnaireResponse", bib),
            ):
                await client.post(path, json=body)
                spent[:] = [0.0, 0]
                indexing[0] = 0.0
                cpu = time.process_time()
                for _ in range(count):
                    response = await client.post(path, json=body)
                    assert response.status_code == 201, response.text
                cpu = (time.process_time() - cpu) / count * 1000
                print(f"in process, {label:<14} {cpu:6.2f} ms CPU per request; FHIRPath "
                      f"{spent[0] / count * 1000:5.2f} ms in {spent[1] / count:.0f} evaluations; "
                      f"search indexing {indexing[0] / count * 1000:5.2f} ms")  # fmt: skip
    finally:
        await app.shutdown()
        for module in (responses, extraction, protocol):
            module.fhirpath.evaluate = original  # type: ignore[attr-defined]
        shutil.rmtree(root, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--in-process", type=int, default=50, help="screenings in process")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("wrk is needed as the load generator: apt-get install wrk", file=sys.stderr)
        return 2
    over_http(args)
    asyncio.run(in_process(args.in_process))
    return 0


if __name__ == "__main__":
    sys.exit(main())
