"""A secure server in this process (the ASGI app with security on, real tokens signed with its
own key, a real SQLite file or the MongoDB store on mongomock) and a small world of parties:

- ``hosp`` (the referrer's hospital): midwife ``mw`` (Role A, PractitionerRole ``mw-role``);
- ``cpas`` (the receiving social service): social worker ``sw`` (Role B), colleague ``sw2``
  (Role A), its service ``HealthcareService/cpas-service``;
- ``other``: the woman's GP ``gp`` (Role A, in her care team, neither party of the referral);
- ``far``: ``nobody`` (Role A, no relation at all); ``clerk`` (no BiB role);
- a backend client (``backend``, Role A, patient data, no organisation) and an administrator;
- women ``p`` (care team: hosp and gp; home in Anderlecht) and ``q`` (care team: hosp), with
  observations of ``p``: ``obs-shared`` (weight), ``obs-private`` (lab), ``obs-dep`` (a
  depression indicator, labelled R/BH: Role B never sees it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from fhir_server import app as app_module
from fhir_server.app import ServerApp
from fhir_server.security.authserver import access_claims
from fhir_server.security.tokens import SigningKey
from fhir_server.service.context import RequestContext
from fhir_server.service.transaction import process_bundle
from fhir_server.store.mongo import MongoStore
from tests.conftest import TEST_BASE, make_settings
from tests.mongomock_async import AsyncMockClient

INDICATOR = "https://borninbelgiumpro.be/fhir/CodeSystem/bib-vulnerability-indicator"
TYPE = "https://borninbelgiumpro.be/fhir/CodeSystem/bib-referral-type"
OUTCOME = "https://borninbelgiumpro.be/fhir/CodeSystem/bib-referral-outcome"
FULFILL = {"coding": [{"system": "http://hl7.org/fhir/CodeSystem/task-code", "code": "fulfill"}]}

USERS: dict[str, dict[str, Any]] = {
    "mw": {"practitioner": "Practitioner/mw", "organization": "Organization/hosp", "role": "A"},
    "sw": {"practitioner": "Practitioner/sw", "organization": "Organization/cpas", "role": "B"},
    "sw2": {"practitioner": "Practitioner/sw2", "organization": "Organization/cpas", "role": "A"},
    "gp": {"practitioner": "Practitioner/gp", "organization": "Organization/other", "role": "A"},
    "nobody": {
        "practitioner": "Practitioner/nobody",
        "organization": "Organization/far",
        "role": "A",
    },
    # administrative staff: no BiB role
    "clerk": {"practitioner": "Practitioner/nobody", "organization": "Organization/hosp"},
}


def ref(value: str) -> dict[str, str]:
    return {"reference": value}


def seed() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for org in ("hosp", "cpas", "other", "far"):
        out.append({"resourceType": "Organization", "id": org, "name": org})
    for person in ("mw", "sw", "sw2", "gp", "nobody"):
        out.append({"resourceType": "Practitioner", "id": person})
    out += [
        {
            "resourceType": "PractitionerRole",
            "id": "mw-role",
            "practitioner": ref("Practitioner/mw"),
            "organization": ref("Organization/hosp"),
        },
        {
            "resourceType": "HealthcareService",
            "id": "cpas-service",
            "providedBy": ref("Organization/cpas"),
            "name": "Social support",
        },
        {
            "resourceType": "Patient",
            "id": "p",
            "name": [{"family": "Peeters", "given": ["Ann"]}],
            "address": [{"use": "home", "postalCode": "1070", "country": "BE"}],
        },
        {"resourceType": "Patient", "id": "q", "name": [{"family": "Quinten"}]},
        {
            "resourceType": "CareTeam",
            "id": "team-p",
            "status": "active",
            "subject": ref("Patient/p"),
            "participant": [
                {"member": ref("Organization/hosp")},
                {"member": ref("Practitioner/gp")},
            ],
        },
        {
            "resourceType": "CareTeam",
            "id": "team-q",
            "status": "active",
            "subject": ref("Patient/q"),
            "participant": [{"member": ref("Organization/hosp")}],
        },
    ]
    for id_, code in (
        ("obs-shared", ("http://loinc.org", "29463-7")),
        ("obs-private", ("http://loinc.org", "2345-7")),
        ("obs-dep", (INDICATOR, "depression")),
    ):
        out.append(
            {
                "resourceType": "Observation",
                "id": id_,
                "status": "final",
                "code": {"coding": [{"system": code[0], "code": code[1]}]},
                "subject": ref("Patient/p"),
                "valueBoolean": True,
            }
        )
    return out


def transaction(resources: list[dict[str, Any]], method: str = "PUT") -> dict[str, Any]:
    entries = []
    for resource in resources:
        if method == "PUT":
            request = {"method": "PUT", "url": f"{resource['resourceType']}/{resource['id']}"}
            entries.append({"resource": resource, "request": request})
        else:
            full = resource.pop("fullUrl", None)
            entry: dict[str, Any] = {
                "resource": resource,
                "request": {"method": "POST", "url": resource["resourceType"]},
            }
            if full:
                entry["fullUrl"] = full
            entries.append(entry)
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


class World:
    def __init__(self, tmp_path: Path, store: str = "sqlite", **settings: Any) -> None:
        self.tmp_path = tmp_path
        self.store_kind = store
        values: dict[str, Any] = {
            "auth": "required",
            "subscription_allowed_hosts": "127.0.0.1",
            "subscription_poll_ms": 50,
            "subscription_retry_ms": 50,
            "subscription_lease_seconds": 5,
            "report_min_cell": 0,
        }
        values.update(settings)
        if store == "mongomock":
            values["store"] = "mongodb://mongomock.invalid/referrals"
        self.settings = make_settings(tmp_path, **values)
        self.app: ServerApp | None = None
        self.http: httpx.AsyncClient | None = None
        self.key: SigningKey | None = None
        self._tokens: dict[str, str] = {}

    async def start(self, load_seed: bool = True) -> World:
        original = app_module.open_store
        if self.store_kind == "mongomock":

            def mongo_store(url: str, **_: object) -> MongoStore:
                return MongoStore(url, client_factory=AsyncMockClient)

            app_module.open_store = mongo_store  # type: ignore[assignment]
        try:
            self.app = ServerApp(self.settings)
        finally:
            app_module.open_store = original
        await self.app.startup()
        self.key = SigningKey(Path(self.settings.data_dir) / "auth" / "signing-key.pem")
        self.http = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app), base_url=TEST_BASE, timeout=30
        )
        if load_seed:
            await self.load(seed())
        return self

    async def stop(self) -> None:
        if self.http is not None:
            await self.http.aclose()
        if self.app is not None:
            await self.app.shutdown()

    @property
    def svc(self) -> Any:
        assert self.app is not None
        return self.app.service

    async def load(self, resources: list[dict[str, Any]]) -> None:
        """Write as the operator does (``fhir-server load``): no caller, the rules still apply."""
        ctx = RequestContext(base_url=self.settings.public_url, prefer_return="minimal")
        result = await process_bundle(self.svc, ctx, transaction(resources))
        assert result.status == 200, result

    def token(self, who: str) -> str:
        if who not in self._tokens:
            assert self.key is not None
            if who == "backend":
                claims = access_claims(
                    self.settings,
                    subject="backend",
                    client_id="backend",
                    scope="system/*.cruds",
                    lifetime=3600,
                    kind="system",
                    role="A",
                    patient_data=True,
                )
            elif who == "admin":
                claims = access_claims(
                    self.settings,
                    subject="admin",
                    client_id="admin",
                    scope="system/*.rs",
                    lifetime=3600,
                    kind="system",
                    admin=True,
                    patient_data=False,
                )
            else:
                user = USERS[who]
                claims = access_claims(
                    self.settings,
                    subject=who,
                    client_id="app",
                    scope="user/*.cruds",
                    lifetime=3600,
                    **user,
                )
            self._tokens[who] = self.key.sign(claims, typ="at+jwt")
        return self._tokens[who]

    async def request(self, method: str, path: str, who: str | None, **kw: Any) -> httpx.Response:
        assert self.http is not None
        headers = dict(kw.pop("headers", None) or {})
        if who is not None:
            headers["Authorization"] = f"Bearer {self.token(who)}"
        return await self.http.request(method, path, headers=headers, **kw)

    async def get(self, path: str, who: str) -> httpx.Response:
        return await self.request("GET", path, who)

    # -- referrals -----------------------------------------------------------------------------

    async def refer(
        self,
        patient: str = "p",
        owner: str = "HealthcareService/cpas-service",
        status: str = "requested",
        kind: str = "warm-handover",
        supporting: tuple[str, ...] = ("Observation/obs-shared", "Observation/obs-dep"),
        who: str = "mw",
        requester: str = "PractitionerRole/mw-role",
        authored: str = "2026-11-02",
    ) -> tuple[str, str]:
        """A referral sent by the midwife (ServiceRequest + Task in one transaction)."""
        request = {
            "resourceType": "ServiceRequest",
            "fullUrl": "urn:uuid:0d4c6a1e-0000-4000-8000-000000000001",
            "status": "active",
            "intent": "order",
            "category": [{"coding": [{"system": TYPE, "code": kind}]}],
            "code": {"text": "Social support"},
            "subject": ref(f"Patient/{patient}"),
            "authoredOn": authored,
            "requester": ref(requester),
            "performer": [ref(owner)],
        }
        if supporting:
            request["supportingInfo"] = [ref(s) for s in supporting]
        task = {
            "resourceType": "Task",
            "fullUrl": "urn:uuid:0d4c6a1e-0000-4000-8000-000000000002",
            "status": status,
            "intent": "order",
            "code": FULFILL,
            "focus": ref("urn:uuid:0d4c6a1e-0000-4000-8000-000000000001"),
            "for": ref(f"Patient/{patient}"),
            "authoredOn": authored,
            "requester": ref(requester),
            "owner": ref(owner),
        }
        response = await self.request(
            "POST", "", who, json=transaction([request, task], method="POST")
        )
        assert response.status_code == 200, response.text
        locations = [e["response"]["location"] for e in response.json()["entry"]]
        ids = [loc.split("/")[-3] for loc in locations]
        return ids[0], ids[1]

    async def task(self, task_id: str, who: str = "mw") -> dict[str, Any]:
        response = await self.get(f"/Task/{task_id}", who)
        assert response.status_code == 200, response.text
        return response.json()

    async def move(
        self,
        task_id: str,
        status: str,
        who: str,
        reason: str | None = None,
        outcome: str | None = None,
        reader: str = "mw",
    ) -> httpx.Response:
        task = await self.task(task_id, reader)
        task["status"] = status
        task.pop("meta", None)
        if reason:
            task["statusReason"] = {"text": reason}
        if outcome:
            task["output"] = [
                {
                    "type": {"text": "Referral outcome"},
                    "valueCodeableConcept": {"coding": [{"system": OUTCOME, "code": outcome}]},
                }
            ]
        return await self.request("PUT", f"/Task/{task_id}", who, json=task)
