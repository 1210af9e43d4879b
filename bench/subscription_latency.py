"""Notifications: latency from commit to delivery, and referral creation end to end.

One secure ``fhir-server serve`` (uvicorn, one process, SQLite), a seed (a hospital, a social
service, a midwife and a woman in her care), and a real HTTP receiver in this process. The
social service subscribes to the topic "a new referral for my organisation" (id-only).

1. **Latency** at a steady rate (``--rate`` referrals per second for ``--seconds``): each
   referral (ServiceRequest + Task in one transaction) is committed when its 200 arrives; the
   notification naming its Task arrives at the receiver later. Printed: p50/p95/max of
   (arrival - commit), next to the p50/p95 of the transactions themselves (the reference: what
   a write costs in the same run). Target p95 < 200 ms.
2. **Throughput** of referral creation end to end: ``--connections`` clients send referrals as
   fast as they can for ``--seconds``; counted: referrals committed per second, and the time
   until the last one's notification was delivered. Reference, same run and server: the same
   transactions on a server where nobody subscribed.

    python bench/subscription_latency.py [--rate 100] [--seconds 15] [--connections 8]
"""

from __future__ import annotations

import argparse
import asyncio
import http.server
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fhir_server.config import Settings  # noqa: E402
from fhir_server.security.authserver import access_claims  # noqa: E402
from fhir_server.security.tokens import SigningKey  # noqa: E402

TOPIC = "https://borninbelgiumpro.be/fhir/SubscriptionTopic/referral-new"
BACKPORT = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/"
SEED = [
    {"resourceType": "Organization", "id": "hosp", "name": "Hospital"},
    {"resourceType": "Organization", "id": "cpas", "name": "Social service"},
    {"resourceType": "Practitioner", "id": "mw"},
    {"resourceType": "Practitioner", "id": "sw"},
    {"resourceType": "Patient", "id": "p", "name": [{"family": "Bench"}]},
    {
        "resourceType": "CareTeam",
        "id": "team-p",
        "status": "active",
        "subject": {"reference": "Patient/p"},
        "participant": [{"member": {"reference": "Organization/hosp"}}],
    },
]


class Arrivals:
    """The receiver: when the notification of each Task arrived."""

    def __init__(self) -> None:
        self.at: dict[str, float] = {}
        self.numbers: list[int] = []  # event numbers, in the order they arrived
        self.count = 0
        arrivals = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                now = time.monotonic()
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                bundle = json.loads(body)
                status = bundle["entry"][0]["resource"]
                for param in status.get("parameter", []):
                    if param["name"] != "notification-event":
                        continue
                    parts = {part["name"]: part for part in param["part"]}
                    arrivals.numbers.append(int(parts["event-number"]["valueString"]))
                    focus = parts["focus"]["valueReference"]["reference"]
                    arrivals.at.setdefault(focus.rsplit("/", 1)[-1], now)
                arrivals.count += 1
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                return None

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    def __init__(self, root: Path, spy: str | None = None) -> None:
        self.data = root / "data"
        self.data.mkdir(parents=True)
        self.errors = 0  # connections the server dropped (retried)
        seed = root / "seed.json"
        seed.write_text(
            json.dumps(
                {
                    "resourceType": "Bundle",
                    "type": "transaction",
                    "entry": [
                        {
                            "resource": r,
                            "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"},
                        }
                        for r in SEED
                    ],
                }
            )
        )
        env = {
            **os.environ,
            "FHIR_LOAD_TERMINOLOGY": "false",
            "FHIR_LOAD_CONTENT": "false",
            "FHIR_SUBSCRIPTION_ALLOWED_HOSTS": "127.0.0.1",
        }
        subprocess.run(
            [sys.executable, "-m", "fhir_server", "load", str(seed), "--data-dir", str(self.data)],
            check=True,
            env=env,
            capture_output=True,
        )
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}/fhir"
        self.log = (root / "server.log").open("wb")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "fhir_server",
                "serve",
                "--port",
                str(self.port),
                "--data-dir",
                str(self.data),
                "--no-demo",
                "--log-level",
                "warning",
            ],
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/health").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError("the server did not start")
            time.sleep(0.1)
        # BENCH_SPY=out.txt: py-spy samples this server (raw collapsed stacks) until it stops
        self.spy = (
            subprocess.Popen(
                ["py-spy", "record", "--format", "raw", "-o", spy, "--pid", str(self.process.pid)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            if spy
            else None
        )
        settings = Settings(data_dir=self.data, public_url=self.base)
        key = SigningKey(self.data / "auth" / "signing-key.pem")

        def token(practitioner: str, organization: str, role: str) -> str:
            claims = access_claims(
                settings,
                subject=practitioner,
                client_id="bench",
                scope="user/*.cruds",
                lifetime=3600,
                role=role,
                practitioner=practitioner,
                organization=organization,
            )
            return key.sign(claims, typ="at+jwt")

        self.midwife = token("Practitioner/mw", "Organization/hosp", "A")
        self.social = token("Practitioner/sw", "Organization/cpas", "B")

    def stop(self) -> None:
        if self.spy is not None:
            self.spy.send_signal(signal.SIGINT)
            self.spy.wait(timeout=60)
        self.process.terminate()
        self.process.wait(timeout=20)
        self.log.close()


def referral() -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": "urn:uuid:5e3c1b8e-0000-4000-8000-000000000001",
                "resource": {
                    "resourceType": "ServiceRequest",
                    "status": "active",
                    "intent": "order",
                    "subject": {"reference": "Patient/p"},
                    "requester": {"reference": "Organization/hosp"},
                    "performer": [{"reference": "Organization/cpas"}],
                },
                "request": {"method": "POST", "url": "ServiceRequest"},
            },
            {
                "resource": {
                    "resourceType": "Task",
                    "status": "requested",
                    "intent": "order",
                    "focus": {"reference": "urn:uuid:5e3c1b8e-0000-4000-8000-000000000001"},
                    "for": {"reference": "Patient/p"},
                    "requester": {"reference": "Organization/hosp"},
                    "owner": {"reference": "Organization/cpas"},
                },
                "request": {"method": "POST", "url": "Task"},
            },
        ],
    }


async def send(http: httpx.AsyncClient, server: Server) -> tuple[str, float, float]:
    started = time.monotonic()
    for attempt in range(3):
        try:
            response = await http.post(
                server.base, json=referral(), headers={"Authorization": f"Bearer {server.midwife}"}
            )
            break
        except httpx.TransportError:  # a kept-alive connection the server closed: count, retry
            server.errors += 1
            if attempt == 2:
                raise
    done = time.monotonic()
    assert response.status_code == 200, response.text
    task = response.json()["entry"][1]["response"]["location"].split("/")[-3]
    return task, started, done


async def subscribe(server: Server, arrivals: Arrivals) -> None:
    body = {
        "resourceType": "Subscription",
        "status": "requested",
        "reason": "bench",
        "criteria": TOPIC,
        "channel": {
            "type": "rest-hook",
            "endpoint": f"http://127.0.0.1:{arrivals.port}/hook",
            "payload": "application/fhir+json",
            "_payload": {
                "extension": [
                    {"url": BACKPORT + "backport-payload-content", "valueCode": "id-only"}
                ]
            },
        },
    }
    async with httpx.AsyncClient(timeout=30) as http:
        headers = {"Authorization": f"Bearer {server.social}"}
        created = await http.post(f"{server.base}/Subscription", json=body, headers=headers)
        assert created.status_code == 201, created.text
        sid = created.json()["id"]
        for _ in range(500):
            found = await http.get(f"{server.base}/Subscription/{sid}", headers=headers)
            if found.json()["status"] == "active":
                return
            await asyncio.sleep(0.02)
    raise RuntimeError("the subscription did not become active")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def latency(server: Server, arrivals: Arrivals, rate: float, seconds: float) -> None:
    sent: list[tuple[str, float, float]] = []
    async with httpx.AsyncClient(
        timeout=30, limits=httpx.Limits(max_connections=64, keepalive_expiry=2)
    ) as http:
        tasks = []
        start = time.monotonic()
        n = int(rate * seconds)
        for i in range(n):
            delay = start + i / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(send(http, server)))
        sent = await asyncio.gather(*tasks)
    deadline = time.monotonic() + 30
    while len([t for t, _, _ in sent if t in arrivals.at]) < len(sent):
        if time.monotonic() > deadline:
            break
        await asyncio.sleep(0.05)
    delays = [(arrivals.at[t] - done) * 1000 for t, _, done in sent if t in arrivals.at]
    writes = [(done - started) * 1000 for _, started, done in sent]
    missing = len(sent) - len(delays)
    print(f"latency at {rate:g} referrals/s for {seconds:g} s ({len(sent)} notifications):")
    print(
        f"  commit -> delivery   p50 {statistics.median(delays):7.1f} ms   "
        f"p95 {pct(delays, 0.95):7.1f} ms   max {max(delays):7.1f} ms   (target p95 < 200 ms)"
    )
    print(
        f"  reference: the write p50 {statistics.median(writes):7.1f} ms   "
        f"p95 {pct(writes, 0.95):7.1f} ms   (ServiceRequest + Task transaction)"
    )
    if missing:
        print(f"  MISSING notifications: {missing}")
    numbers = sorted(set(arrivals.numbers))
    if numbers != list(range(1, len(numbers) + 1)) or len(numbers) != len(arrivals.numbers):
        print(f"  event numbers not 1..n once each: {arrivals.numbers}")
    if server.errors:
        print(f"  connections dropped by the server (retried): {server.errors}")


async def throughput(
    server: Server, arrivals: Arrivals | None, seconds: float, connections: int
) -> tuple[float, float | None, int]:
    done: list[tuple[str, float, float]] = []
    stop = time.monotonic() + seconds

    async def client(http: httpx.AsyncClient) -> None:
        while time.monotonic() < stop:
            done.append(await send(http, server))

    started = time.monotonic()
    async with httpx.AsyncClient(
        timeout=30, limits=httpx.Limits(max_connections=64, keepalive_expiry=2)
    ) as http:
        await asyncio.gather(*(client(http) for _ in range(connections)))
    elapsed = time.monotonic() - started
    rate = len(done) / elapsed
    if arrivals is None:
        return rate, None, len(done)
    deadline = time.monotonic() + 60
    while any(t not in arrivals.at for t, _, _ in done) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    last = max(arrivals.at.get(t, float("inf")) for t, _, _ in done)
    return rate, (last - started), len(done)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=float, default=100)
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--connections", type=int, default=8)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        arrivals = Arrivals()
        subscribed = Server(Path(tmp) / "subscribed", os.environ.get("BENCH_SPY"))
        plain = Server(Path(tmp) / "plain")
        try:
            await subscribe(subscribed, arrivals)
            await latency(subscribed, arrivals, args.rate, args.seconds)
            base_rate, _, _ = await throughput(plain, None, args.seconds, args.connections)
            rate, until_last, count = await throughput(
                subscribed, arrivals, args.seconds, args.connections
            )
            print(f"referral creation end to end ({args.connections} clients, {args.seconds:g} s):")
            print(
                f"  with a subscriber     {rate:7.1f} referrals/s committed; the last notification "
                f"arrived {until_last:5.1f} s after the start "
                f"({count / until_last:6.1f} notified referrals/s)"
            )
            print(f"  reference, nobody subscribed   {base_rate:7.1f} referrals/s committed")
        finally:
            subscribed.stop()
            plain.stop()
            arrivals.httpd.shutdown()


if __name__ == "__main__":
    asyncio.run(main())
