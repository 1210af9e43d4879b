"""End to end over real HTTP: the secure ``fhir-server serve`` (a uvicorn process, the security
seed of tests/security/conftest.py: midwife mw-1 of hosp-1 cares for p1; social worker sw-1 of
cpas-1) and a real HTTP receiver.

- new referral -> notification to the receiving organisation -> accept -> notification to the
  referrer -> complete with outcome -> the referrer learns the guidance was realised;
- ``kill -9`` between the commit and the delivery: after the restart exactly the missed events
  are delivered, in order.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.security.conftest import SecureServer
from tests.subscriptions.conftest import TOPIC, subscription
from tests.subscriptions.receiver import Receiver

OUTCOME = "https://borninbelgiumpro.be/fhir/CodeSystem/bib-referral-outcome"
ENV = {
    "FHIR_SUBSCRIPTION_ALLOWED_HOSTS": "127.0.0.1",
    "FHIR_SUBSCRIPTION_POLL_MS": "50",
    "FHIR_SUBSCRIPTION_LEASE_SECONDS": "2",
    "FHIR_SUBSCRIPTION_RETRY_MS": "100",
    # the topics come with the code: start (and restart) without the shipped content; the seed
    # loader inherits these too
    "FHIR_LOAD_CONTENT": "false",
    "FHIR_LOAD_TERMINOLOGY": "false",
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureServer]:
    saved = {k: os.environ.get(k) for k in ENV}
    os.environ.update(ENV)  # the server process inherits them
    try:
        instance = SecureServer(tmp_path_factory.mktemp("subscriptions-e2e"))
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    try:
        yield instance
    finally:
        instance.close()


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    instance = Receiver()
    try:
        yield instance
    finally:
        instance.close()


def tokens(server: SecureServer) -> tuple[str, str]:
    midwife = server.mint(subject="mw-1")
    social = server.mint(
        role="B",
        practitioner="Practitioner/sw-1",
        organization="Organization/cpas-1",
        subject="sw-1",
    )
    return midwife, social


def until(check: Any, timeout: float = 20.0, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out: {what}")
        time.sleep(0.02)


def subscribe(server: SecureServer, token: str, body: dict[str, Any]) -> str:
    created = server.request("POST", "/Subscription", token, json=body)
    assert created.status_code == 201, created.text
    sid = created.json()["id"]
    until(
        lambda: server.request("GET", f"/Subscription/{sid}", token).json()["status"] == "active",
        what="handshake",
    )
    return sid


def refer(server: SecureServer, token: str, patient: str = "p1") -> tuple[str, str]:
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": "urn:uuid:9d1c1b8e-0000-4000-8000-000000000001",
                "resource": {
                    "resourceType": "ServiceRequest",
                    "status": "active",
                    "intent": "order",
                    "category": [
                        {
                            "coding": [
                                {
                                    "system": "https://borninbelgiumpro.be/fhir/CodeSystem/bib-referral-type",
                                    "code": "warm-handover",
                                }
                            ]
                        }
                    ],
                    "subject": {"reference": f"Patient/{patient}"},
                    "requester": {"reference": "Organization/hosp-1"},
                    "performer": [{"reference": "Organization/cpas-1"}],
                    "supportingInfo": [{"reference": "Observation/o1-weight"}],
                },
                "request": {"method": "POST", "url": "ServiceRequest"},
            },
            {
                "resource": {
                    "resourceType": "Task",
                    "status": "requested",
                    "intent": "order",
                    "focus": {"reference": "urn:uuid:9d1c1b8e-0000-4000-8000-000000000001"},
                    "for": {"reference": f"Patient/{patient}"},
                    "requester": {"reference": "Organization/hosp-1"},
                    "owner": {"reference": "Organization/cpas-1"},
                },
                "request": {"method": "POST", "url": "Task"},
            },
        ],
    }
    response = server.request("POST", "", token, json=bundle)
    assert response.status_code == 200, response.text
    ids = [e["response"]["location"].split("/")[-3] for e in response.json()["entry"]]
    return ids[0], ids[1]


def move(server: SecureServer, token: str, task: dict[str, Any], status: str, **extra: Any) -> dict:
    body = {k: v for k, v in task.items() if k != "meta"}
    body["status"] = status
    body.update(extra)
    response = server.request("PUT", f"/Task/{task['id']}", token, json=body)
    assert response.status_code == 200, response.text
    return response.json()


def test_the_closed_loop_end_to_end(server: SecureServer, receiver: Receiver) -> None:
    midwife, social = tokens(server)
    subscribe(
        server, social, subscription(TOPIC + "referral-new", receiver.url("/cpas"), "full-resource")
    )
    subscribe(server, midwife, subscription(TOPIC + "referral-status", receiver.url("/hosp")))
    # the midwife refers her patient p1 to cpas-1
    sr, task_id = refer(server, midwife)
    note = until(lambda: [r for r in receiver.acknowledged("/cpas") if r.kind != "handshake"])
    task = note[0].bundle["entry"][1]["resource"]
    assert task["id"] == task_id and task["status"] == "requested"
    # the social worker reads it (offered: the Task and request, not p1's record) and accepts
    assert server.request("GET", f"/ServiceRequest/{sr}", social).status_code == 200
    assert server.request("GET", "/Patient/p1", social).status_code == 200  # her care team
    task = move(server, social, task, "accepted")
    accepted = until(lambda: [r for r in receiver.acknowledged("/hosp") if r.kind != "handshake"])
    focus = accepted[0].bundle["entry"][1]["fullUrl"]
    assert focus.endswith(f"/Task/{task_id}")
    assert httpx.get(focus, headers={"Authorization": f"Bearer {midwife}"}).json()["status"] == (
        "accepted"
    )
    # started, then completed with its outcome: the referrer learns it was realised
    task = move(server, social, task, "in-progress")
    move(
        server,
        social,
        task,
        "completed",
        output=[
            {
                "type": {"text": "Referral outcome"},
                "valueCodeableConcept": {"coding": [{"system": OUTCOME, "code": "realised"}]},
            }
        ],
    )
    events = until(
        lambda: (lambda got: got if 3 in got else None)(
            [n for r in receiver.acknowledged("/hosp") for n in r.numbers]
        )
    )
    assert events == [1, 2, 3]
    final = server.request("GET", f"/Task/{task_id}", midwife).json()
    assert final["businessStatus"]["coding"][0]["code"] == "realised"
    assert server.request("GET", f"/ServiceRequest/{sr}", midwife).json()["status"] == "completed"


def test_kill_9_between_the_commit_and_the_delivery(
    server: SecureServer, receiver: Receiver
) -> None:
    midwife, social = tokens(server)
    sid = subscribe(
        server, social, subscription(TOPIC + "referral-new", receiver.url("/after-crash"))
    )
    receiver.hold()  # the endpoint takes the next notification and does not answer
    for _ in range(3):
        refer(server, midwife)  # committed: 201s
    until(lambda: [r for r in receiver.on("/after-crash") if r.kind != "handshake"])
    server.live.stop(kill=True)  # kill -9 while the delivery is in flight
    receiver.script[:] = [503] * len(receiver.on("/after-crash"))  # to a dead connection
    receiver.answer()
    time.sleep(0.2)
    before = {id(r) for r in receiver.on("/after-crash")}
    server.live.start()
    got = until(
        lambda: (lambda numbers: numbers if 3 in numbers else None)(
            [
                n
                for r in receiver.acknowledged("/after-crash")
                if id(r) not in before
                for n in r.numbers
            ]
        ),
        what="the missed events after the restart",
    )
    assert got == [1, 2, 3]  # exactly the missed events, in order
    status = server.request("GET", f"/Subscription/{sid}/$status", social).json()
    params = {p["name"]: p for p in status["entry"][0]["resource"]["parameter"]}
    assert params["status"]["valueCode"] == "active"
    assert params["events-since-subscription-start"]["valueString"] == "3"
