"""Care-pathway tests: one server per test module and store (SQLite, and the MongoDB store on
mongomock) with the shipped pathway content loaded; every test makes its own patient, so tests do
not see each other's data.

The fixtures write data in the shapes docs/pathways.md documents: loss Conditions, indicator
Observations as the screening extraction writes them (three accepted shapes of "flagged"), score
totals (LOINC), severity assessments and due dates.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
import pytest_asyncio

from fhir_server import app as app_module
from fhir_server.app import ServerApp
from fhir_server.store.mongo import MongoStore
from tests.conftest import TEST_BASE, make_settings
from tests.contract.conftest import STORES, store_url
from tests.mongomock_async import AsyncMockClient

BIB = "https://borninbelgiumpro.be/fhir"
CS = BIB + "/CodeSystem/"
SCENARIO = CS + "bib-pregnancy-loss-scenario"
INDICATOR = CS + "bib-vulnerability-indicator"
NEED_DOMAIN = CS + "bib-need-domain"
PHASE = CS + "bib-pregnancy-loss-phase"
LOSS_ACTIVITY = CS + "bib-loss-support-activity"
PRACTITIONER_TYPE = CS + "bib-practitioner-type"
SEVERITY = CS + "bib-pmh-severity"
CARE_LINE = CS + "bib-care-line"
LOINC = "http://loinc.org"
EXT_NEED_DOMAIN = BIB + "/StructureDefinition/bib-ext-need-domain"
EXT_PHASE = BIB + "/StructureDefinition/bib-ext-loss-phase"
INTERPRETATION = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"


def today() -> date:
    return datetime.now(ZoneInfo("Europe/Brussels")).date()


async def make_app(kind: str, folder: Any) -> ServerApp:
    """A server on one store kind: ``mongodb`` (listed when MONGODB_URI is set) is the real
    server with PyMongo's own driver, in a database of its own dropped at close, as in the
    contract suite; ``mongomock`` the MongoDB store on mongomock."""
    if kind == "mongomock":
        original = app_module.open_store

        def mongo_store(url: str, **_: object) -> MongoStore:
            return MongoStore(url, client_factory=AsyncMockClient)

        app_module.open_store = mongo_store  # type: ignore[assignment]
        try:
            server = ServerApp(
                make_settings(folder, store=store_url(kind, folder), load_content=True)
            )
        finally:
            app_module.open_store = original  # type: ignore[assignment]
    elif kind == "mongodb":
        server = ServerApp(make_settings(folder, store=store_url(kind, folder), load_content=True))
    else:
        server = ServerApp(make_settings(folder, load_content=True))
    await server.startup()
    return server


@pytest_asyncio.fixture(scope="module", loop_scope="module", params=STORES)
async def app(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[ServerApp]:
    server = await make_app(request.param, tmp_path_factory.mktemp(request.param))
    try:
        yield server
    finally:
        await server.shutdown()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def client(app: ServerApp) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=TEST_BASE, timeout=60) as http:
        yield http


# -- data ----------------------------------------------------------------------------------------


def ref(value: str) -> dict[str, str]:
    return {"reference": value}


async def new_patient(client: httpx.AsyncClient, **extra: Any) -> str:
    pid = "pw-" + uuid.uuid4().hex[:12]
    patient = {"resourceType": "Patient", "id": pid, "gender": "female", **extra}
    response = await client.put(f"/Patient/{pid}", json=patient)
    assert response.status_code == 201, response.text
    return pid


async def create(client: httpx.AsyncClient, resource: dict[str, Any]) -> dict[str, Any]:
    response = await client.post(f"/{resource['resourceType']}", json=resource)
    assert response.status_code == 201, response.text
    return response.json()


def loss_condition(
    pid: str, scenario: str, onset: str | None = "2026-10-01", verification: str | None = None
) -> dict[str, Any]:
    condition: dict[str, Any] = {
        "resourceType": "Condition",
        "subject": ref(f"Patient/{pid}"),
        "code": {"coding": [{"system": SCENARIO, "code": scenario}]},
    }
    if onset:
        condition["onsetDateTime"] = onset
    if verification:
        condition["verificationStatus"] = {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/condition-ver-status",
                    "code": verification,
                }
            ]
        }
    return condition


def indicator(
    pid: str,
    code: str,
    flagged: bool = True,
    shape: str = "boolean",
    when: str = "2026-09-01T10:00:00+02:00",
    score: float | None = None,
) -> dict[str, Any]:
    """An indicator Observation as the screening extraction writes it (docs/pathways.md)."""
    observation: dict[str, Any] = {
        "resourceType": "Observation",
        "status": "final",
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                        "code": "survey",
                    }
                ]
            }
        ],
        "code": {"coding": [{"system": INDICATOR, "code": code}]},
        "subject": ref(f"Patient/{pid}"),
        "effectiveDateTime": when,
    }
    if shape == "boolean":
        observation["valueBoolean"] = flagged
    elif shape == "component":
        observation["valueQuantity"] = {"value": score if score is not None else 3}
        observation["component"] = [
            {
                "code": {
                    "coding": [
                        {"system": BIB + "/CodeSystem/bib-indicator-result", "code": "flagged"}
                    ]
                },
                "valueBoolean": flagged,
            }
        ]
    else:
        observation["valueQuantity"] = {"value": score if score is not None else 3}
        observation["interpretation"] = [
            {"coding": [{"system": INTERPRETATION, "code": "POS" if flagged else "NEG"}]}
        ]
    return observation


def score(pid: str, loinc: str, value: int, when: str = "2026-09-01") -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": loinc}]},
        "subject": ref(f"Patient/{pid}"),
        "effectiveDateTime": when,
        "valueInteger": value,
    }


def severity(pid: str, level: str, when: str = "2026-09-02") -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "Perinatal mental-health severity (clinical assessment)"},
        "subject": ref(f"Patient/{pid}"),
        "effectiveDateTime": when,
        "valueCodeableConcept": {"coding": [{"system": SEVERITY, "code": level}]},
    }


def due_date(pid: str, value: str) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": "11778-8"}]},
        "subject": ref(f"Patient/{pid}"),
        "effectiveDateTime": "2026-06-01",
        "valueDateTime": value,
    }


async def apply(
    client: httpx.AsyncClient, pd: str, pid: str, expect: int = 200, **params: str
) -> dict[str, Any]:
    response = await client.get(
        f"/PlanDefinition/{pd}/$apply", params={"subject": f"Patient/{pid}", **params}
    )
    assert response.status_code == expect, response.text
    return response.json()


# -- reading a $apply result ----------------------------------------------------------------------


class Applied:
    """A contained $apply result, indexed by action id."""

    def __init__(self, careplan: dict[str, Any]) -> None:
        self.careplan = careplan
        self.contained = {r["id"]: r for r in careplan.get("contained", ())}
        self.group = next(r for r in self.contained.values() if r["resourceType"] == "RequestGroup")
        self.actions: dict[str, dict[str, Any]] = {}
        self.parents: dict[str, list[str]] = {}

        def walk(actions: list[dict[str, Any]], trail: list[str]) -> None:
            for action in actions:
                if "id" in action:
                    self.actions[action["id"]] = action
                    self.parents[action["id"]] = trail
                walk(action.get("action", ()), [*trail, action.get("id", "?")])

        walk(self.group.get("action", ()), [])

    def request(self, action_id: str) -> dict[str, Any]:
        local = self.actions[action_id]["resource"]["reference"]
        assert local.startswith("#")
        return self.contained[local[1:]]

    def requests(self) -> dict[str, dict[str, Any]]:
        return {a: self.request(a) for a, act in self.actions.items() if "resource" in act}

    def phase_of(self, action_id: str) -> str | None:
        for parent in self.parents[action_id]:
            codes = [
                c["code"]
                for cc in self.actions.get(parent, {}).get("code", ())
                for c in cc["coding"]
                if c["system"] == PHASE
            ]
            if codes:
                return codes[0]
        return None


def codes(concepts: list[dict[str, Any]] | dict[str, Any] | None, system: str) -> list[str]:
    if concepts is None:
        return []
    items = concepts if isinstance(concepts, list) else [concepts]
    return [c["code"] for cc in items for c in cc.get("coding", ()) if c.get("system") == system]


def extension_codes(resource: dict[str, Any], url: str) -> list[str]:
    return [
        c["code"]
        for e in resource.get("extension", ())
        if e["url"] == url
        for c in e["valueCodeableConcept"]["coding"]
    ]


def dates(request: dict[str, Any]) -> tuple[str, str]:
    """(start, end) of a generated request's schedule."""
    if request["resourceType"] == "Task":
        period = request["restriction"]["period"]
        return period["start"], period["end"]
    if "occurrenceDateTime" in request:
        return request["occurrenceDateTime"], request["occurrenceDateTime"]
    period = request["occurrencePeriod"]
    return period["start"], period["end"]
