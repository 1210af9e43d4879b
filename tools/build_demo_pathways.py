"""Generate the care-pathway demo content ``fhir_server/demo/40-pathways.json``.

Run from the repository root (after the pathway content changed)::

    python tools/build_demo_pathways.py

Four fictitious women, in the care team of the demo midwife and the demo social worker:

- Inaya, an early pregnancy loss, and Emma, a suspected congenital anomaly: only the loss is in
  the file; the server itself suggests their pathway (a draft CarePlan) when the demo is loaded,
  as it does when a midwife records a loss;
- Ilse, an intrauterine fetal death, limited Dutch: her loss pathway is active (with the
  interpreter) and the first tasks of the diagnosis phase are done;
- Nadia, pregnant, with the housing, income and social-support indicators flagged in her
  screening: active housing and screening-schedule pathways, a drafted income pathway.

The plans are made by the server's own ``$apply`` (run in process on a scratch store), then
given fixed ids; their dates are relative to the day the file was generated.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import httpx

from fhir_server.app import ServerApp
from fhir_server.config import Settings
from fhir_server.demo import load_file

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "fhir_server" / "demo" / "40-pathways.json"
BASE = "http://demo.invalid/fhir"
BIB = "https://borninbelgiumpro.be/fhir"
ALT = BIB + "/NamingSystem/alternative-patient-number"
SCENARIO = BIB + "/CodeSystem/bib-pregnancy-loss-scenario"
INDICATOR = BIB + "/CodeSystem/bib-vulnerability-indicator"
PATIENT_PROFILE = BIB + "/StructureDefinition/bib-patient"


def ref(value: str) -> dict[str, str]:
    return {"reference": value}


def patient(id_: str, number: str, given: str, family: str, born: str, lang: str) -> dict:
    return {
        "resourceType": "Patient",
        "id": id_,
        "meta": {"profile": [PATIENT_PROFILE]},
        "identifier": [{"system": ALT, "value": number}],
        "active": True,
        "name": [{"family": family, "given": [given], "text": f"{given} {family} (fictitious)"}],
        "gender": "female",
        "birthDate": born,
        "communication": [
            {
                "language": {"coding": [{"system": "urn:ietf:bcp:47", "code": lang}]},
                "preferred": True,
            }
        ],
        "managingOrganization": ref("Organization/demo-hospital"),
    }


def team(pid: str) -> dict:
    return {
        "resourceType": "CareTeam",
        "id": f"{pid}-team",
        "status": "active",
        "name": "Perinatal care team (fictitious)",
        "subject": ref(f"Patient/{pid}"),
        "participant": [
            {
                "role": [{"text": "midwife, trusted person"}],
                "member": ref("Practitioner/demo-midwife"),
                "onBehalfOf": ref("Organization/demo-hospital"),
            },
            {
                "role": [{"text": "social worker"}],
                "member": ref("Practitioner/demo-social-worker"),
                "onBehalfOf": ref("Organization/demo-cpas"),
            },
        ],
    }


def loss(pid: str, scenario: str, onset: date, verification: str = "confirmed") -> dict:
    return {
        "resourceType": "Condition",
        "id": f"{pid}-loss",
        "clinicalStatus": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                    "code": "active",
                }
            ]
        },
        "verificationStatus": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/condition-ver-status",
                    "code": verification,
                }
            ]
        },
        "code": {"coding": [{"system": SCENARIO, "code": scenario}]},
        "subject": ref(f"Patient/{pid}"),
        "onsetDateTime": onset.isoformat(),
        "recorder": ref("Practitioner/demo-midwife"),
    }


def flag(pid: str, code: str, flagged: bool, when: date) -> dict:
    return {
        "resourceType": "Observation",
        "id": f"{pid}-indicator-{code}",
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
        "effectiveDateTime": when.isoformat(),
        "valueBoolean": flagged,
    }


def due(pid: str, value: date, when: date) -> dict:
    return {
        "resourceType": "Observation",
        "id": f"{pid}-due-date",
        "status": "final",
        "code": {
            "coding": [
                {
                    "system": "http://loinc.org",
                    "code": "11778-8",
                    "display": "Delivery date Estimated",
                }
            ]
        },
        "subject": ref(f"Patient/{pid}"),
        "effectiveDateTime": when.isoformat(),
        "valueDateTime": value.isoformat(),
    }


def fixed_ids(bundle: dict, prefix: str) -> list[dict]:
    """The $apply transaction's resources with fixed ids and references between them."""
    mapping: dict[str, str] = {}
    for n, entry in enumerate(bundle["entry"]):
        type_ = entry["resource"]["resourceType"]
        mapping[entry["fullUrl"]] = f"{type_}/{prefix}-{n:02d}"

    def rewrite(value: Any) -> Any:
        if isinstance(value, dict):
            return {
                k: (mapping.get(v, v) if k == "reference" and isinstance(v, str) else rewrite(v))
                for k, v in value.items()
            }
        if isinstance(value, list):
            return [rewrite(v) for v in value]
        return value

    out = []
    for entry in bundle["entry"]:
        resource = rewrite(entry["resource"])
        resource["id"] = mapping[entry["fullUrl"]].split("/")[1]
        out.append(resource)
    return out


def activate(resources: list[dict], done: int = 0) -> list[dict]:
    """As agreed with the woman: the plan active, its requests actionable, ``done`` tasks done."""
    finished = 0
    for resource in resources:
        kind = resource["resourceType"]
        if kind == "CarePlan":
            resource["status"], resource["intent"] = "active", "plan"
            resource.pop("note", None)
        elif kind == "RequestGroup":
            resource["status"], resource["intent"] = "active", "plan"
        elif kind == "Goal":
            resource["lifecycleStatus"] = "active"
        elif kind == "ServiceRequest":
            resource["status"], resource["intent"] = "active", "plan"
        elif kind == "Task":
            resource["status"], resource["intent"] = "requested", "plan"
            if finished < done:
                resource["status"] = "completed"
                finished += 1
    return resources


async def build(today: date) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        settings = Settings(
            data_dir=Path(folder),
            public_url=BASE,
            store=f"sqlite:///{Path(folder) / 'demo.db'}",
            load_terminology=False,
            auth="open",
        )
        app = ServerApp(settings)
        await app.startup()
        await load_file(
            app.service, str(ROOT / "fhir_server" / "demo" / "10-organisations-and-people.json")
        )
        try:
            return await _build(app, today)
        finally:
            await app.shutdown()


async def _build(app: ServerApp, today: date) -> dict:
    base: list[dict] = [
        patient("demo-pw-inaya", "BIB-ALT-0101", "Inaya", "El Amrani", "1997-04-02", "nl-BE"),
        patient("demo-pw-ilse", "BIB-ALT-0102", "Ilse", "Nowak", "1991-01-15", "pl"),
        patient("demo-pw-emma", "BIB-ALT-0103", "Emma", "Vermeulen", "1987-06-30", "nl-BE"),
        patient("demo-pw-nadia", "BIB-ALT-0104", "Nadia", "Haddad", "1999-11-08", "fr-BE"),
    ]
    base += [team(p["id"]) for p in base]
    nadia = "demo-pw-nadia"
    screened = today - timedelta(days=10)
    base += [
        due(nadia, today + timedelta(weeks=26), screened),
        flag(nadia, "housing", True, screened),
        flag(nadia, "income", True, screened),
        flag(nadia, "social-support", True, screened),
        flag(nadia, "education", False, screened),
    ]
    ilse_loss = loss("demo-pw-ilse", "mors-in-utero", today - timedelta(days=4))
    transport = httpx.ASGITransport(app=app)
    plans: list[dict] = []
    async with httpx.AsyncClient(transport=transport, base_url=BASE) as client:
        seed = {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [
                {
                    "resource": r,
                    "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"},
                }
                for r in [*base, ilse_loss]
            ],
        }
        response = await client.post("/", json=seed)
        response.raise_for_status()

        async def applied(pd: str, pid: str, prefix: str, **params: str) -> list[dict]:
            response = await client.get(
                f"/PlanDefinition/{pd}/$apply",
                params={
                    "subject": f"Patient/{pid}",
                    "output": "transaction",
                    "practitioner": "Practitioner/demo-midwife",
                    **params,
                },
            )
            response.raise_for_status()
            return fixed_ids(response.json(), prefix)

        plans += activate(
            await applied("pd-loss-mors-in-utero", "demo-pw-ilse", "demo-pw-ilse-loss"), done=3
        )
        plans += activate(await applied("pd-vulnerability-housing", nadia, "demo-pw-nadia-housing"))
        plans += activate(
            await applied("pd-pmh-screening-detection", nadia, "demo-pw-nadia-screening"), done=1
        )
        plans += await applied(
            "pd-vulnerability-income", nadia, "demo-pw-nadia-income", userLanguage="fr-BE"
        )
    # the losses come last: the server suggests Inaya's and Emma's pathways as it loads them,
    # and sees that Ilse's is already active
    losses = [
        ilse_loss,
        loss("demo-pw-inaya", "early-pregnancy-loss", today - timedelta(days=2)),
        loss("demo-pw-emma", "congenital-anomaly-loss", today - timedelta(days=1), "provisional"),
    ]
    entries = [
        {
            "fullUrl": f"{BASE}/{r['resourceType']}/{r['id']}",
            "resource": r,
            "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"},
        }
        for r in [*base, *plans, *losses]
    ]
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def main() -> None:
    bundle = asyncio.run(build(date.today()))
    OUT.write_text(json.dumps(bundle, indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {len(bundle['entry'])} entries to {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
