"""Generate the referral demo content: fhir_server/demo/3x-referrals-*.json.

The referral workflow (mappings/referral-workflow.json) is enforced on every write, also when
the demo loads, so a referral reaches its state the way a real one does: sent in one Bundle,
answered in the next, started, then closed. Each file is one transaction; the demo loader applies
them in name order, so every referral Task has the history of its loop (``_history``).

Run ``python tools/referral_demo.py`` after changing it; tests/referrals/test_demo.py checks that
the files are what this script writes and that a new user sees the loop.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

DEMO = Path(__file__).resolve().parent.parent / "fhir_server" / "demo"
BIB = "https://borninbelgiumpro.be/fhir/"
TYPE = BIB + "CodeSystem/bib-referral-type"
OUTCOME = BIB + "CodeSystem/bib-referral-outcome"
COMM_CATEGORY = "http://terminology.hl7.org/CodeSystem/communication-category"

HOSPITAL = "Organization/demo-hospital"
CPAS = "Organization/demo-cpas"
MIDWIFE = "Practitioner/demo-midwife"
SOCIAL = "Practitioner/demo-social-worker"


def ref(value: str) -> dict[str, str]:
    return {"reference": value}


def request(
    id_: str,
    patient: str,
    kind: str,
    text: str,
    authored: str,
    requester: str = HOSPITAL,
    performer: str = CPAS,
    supporting: list[str] | None = None,
    based_on: str | None = None,
    note: str | None = None,
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "resourceType": "ServiceRequest",
        "id": id_,
        "status": "active",
        "intent": "order",
        "category": [{"coding": [{"system": TYPE, "code": kind}]}],
        "code": {"text": text},
        "subject": ref(f"Patient/{patient}"),
        "authoredOn": authored,
        "requester": ref(requester),
        "performer": [ref(performer)],
    }
    if based_on:
        out["basedOn"] = [ref(f"ServiceRequest/{based_on}")]
    if supporting:
        out["supportingInfo"] = [ref(s) for s in supporting]
    if note:
        out["note"] = [{"text": note}]
    return out


def task(
    id_: str,
    sr: dict[str, Any],
    status: str,
    reason: str | None = None,
    outcome: str | None = None,
    note: str | None = None,
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "resourceType": "Task",
        "id": id_,
        "status": status,
        "intent": "order",
        "code": {
            "coding": [{"system": "http://hl7.org/fhir/CodeSystem/task-code", "code": "fulfill"}]
        },
        "description": sr["code"]["text"],
        "focus": ref(f"ServiceRequest/{sr['id']}"),
        "for": sr["subject"],
        "authoredOn": sr["authoredOn"],
        "requester": sr["requester"],
        "owner": sr["performer"][0],
    }
    if reason:
        out["statusReason"] = {"text": reason}
    if outcome:
        out["businessStatus"] = {"coding": [{"system": OUTCOME, "code": outcome}]}
        out["output"] = [
            {
                "type": {"text": "Referral outcome"},
                "valueCodeableConcept": {"coding": [{"system": OUTCOME, "code": outcome}]},
            }
        ]
    if note:
        out["note"] = [{"text": note}]
    return out


def message(
    id_: str,
    sr: dict[str, Any],
    task_id: str,
    sent: str,
    sender: str,
    recipient: str,
    text: str,
    reply_to: str | None = None,
    category: str = "notification",
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "resourceType": "Communication",
        "id": id_,
        "basedOn": [ref(f"ServiceRequest/{sr['id']}")],
        "status": "completed",
        "category": [{"coding": [{"system": COMM_CATEGORY, "code": category}]}],
        "subject": sr["subject"],
        "about": [ref(f"Task/{task_id}")],
        "sent": sent,
        "recipient": [ref(recipient)],
        "sender": ref(sender),
        "payload": [{"contentString": text}],
    }
    if reply_to:
        out["inResponseTo"] = [ref(f"Communication/{reply_to}")]
    return out


def bundle(resources: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}}
            for r in resources
        ],
    }


def build() -> dict[str, dict[str, Any]]:
    # the referrals (fictitious), demo-hospital (the demo midwife) -> demo-cpas (the demo social
    # worker), plus the profiles' referral to a grief support group (20-bib-profiles-content)
    r2 = {
        "resourceType": "ServiceRequest",
        "id": "demo-referral-2",
        "status": "active",
        "intent": "order",
        "category": [{"coding": [{"system": TYPE, "code": "referral"}]}],
        "code": {"text": "Social support: referral to the social service (fictitious)"},
        "subject": ref("Patient/demo-patient-2"),
        "authoredOn": "2026-10-05",
        "requester": ref(HOSPITAL),
        "performer": [ref(CPAS)],
    }
    r3 = request(
        "demo-referral-3",
        "demo-patient-1",
        "warm-handover",
        "Warm handover: housing and income support before the birth",
        "2026-10-08",
        supporting=["Observation/demo-weight-1"],
        note="Elodie agreed to the handover; she prefers to be called in the morning.",
    )
    r4 = request(
        "demo-referral-4",
        "demo-patient-1",
        "waiting-list-registration",
        "Registration on the waiting list of the parenting support group",
        "2026-10-09",
    )
    r5 = request(
        "demo-referral-5",
        "demo-patient-2",
        "referral",
        "Referral for debt counselling",
        "2026-10-12",
    )
    r6 = request(
        "demo-referral-6",
        "demo-patient-1",
        "warm-guidance",
        "Warm guidance to the neighbourhood baby café (not sent yet)",
        "2026-11-02",
    )
    r7 = request(
        "demo-referral-7",
        "demo-patient-2",
        "warm-guidance",
        "Warm guidance to a volunteer buddy after the birth",
        "2026-11-04",
    )
    r8 = request(
        "demo-referral-8",
        "demo-patient-1",
        "liaison-support",
        "Home visits by the social service around the birth",
        "2026-10-15",
    )
    r9 = request(
        "demo-referral-9",
        "demo-patient-2",
        "referral",
        "Referral for help with the residence permit file",
        "2026-10-16",
    )
    r10 = request(
        "demo-referral-10",
        "demo-patient-1",
        "referral",
        "Referral entered for the wrong woman",
        "2026-10-20",
    )
    back = request(
        "demo-back-referral-3",
        "demo-patient-1",
        "back-referral",
        "Back-referral: please follow up the baby's weight at the next consultation",
        "2026-11-10",
        requester=CPAS,
        performer=HOSPITAL,
        based_on="demo-referral-3",
    )
    # the profiles' referral (20-bib-profiles-content.json): sent there, answered here
    profiles = json.loads((DEMO / "20-bib-profiles-content.json").read_text(encoding="utf-8"))
    grief = next(
        e["resource"]
        for e in profiles["entry"]
        if e["resource"]["resourceType"] == "Task"
        and e["resource"]["id"] == "demo-bib-referral-task"
    )

    def grief_task(status: str, **extra: Any) -> dict[str, Any]:
        out = {k: v for k, v in grief.items() if k not in ("businessStatus", "output")}
        out["status"] = status
        out.update(extra)
        return out

    t = {  # task ids
        "r2": "demo-referral-2-task",
        "r3": "demo-referral-3-task",
        "r4": "demo-referral-4-task",
        "r5": "demo-referral-5-task",
        "r6": "demo-referral-6-task",
        "r7": "demo-referral-7-task",
        "r8": "demo-referral-8-task",
        "r9": "demo-referral-9-task",
        "r10": "demo-referral-10-task",
        "back": "demo-back-referral-3-task",
    }
    sent = [
        r2,  # 20-care-relationships.json sent it without a referral type
        r3,
        r4,
        r5,
        r6,
        r7,
        r8,
        r9,
        r10,
        task(t["r2"], r2, "requested"),
        task(t["r3"], r3, "requested"),
        task(t["r4"], r4, "requested"),
        task(t["r5"], r5, "requested"),
        task(t["r6"], r6, "draft"),
        task(t["r7"], r7, "requested"),
        task(t["r8"], r8, "requested"),
        task(t["r9"], r9, "requested"),
        task(t["r10"], r10, "requested"),
        message(
            "demo-referral-3-handover",
            r3,
            t["r3"],
            "2026-10-08T10:12:00+02:00",
            MIDWIFE,
            CPAS,
            "Handover note: Elodie (28 weeks) lost her job and has rent arrears; she would like "
            "help with housing and income before the birth. She knows you will call her.",
        ),
        message(
            "demo-referral-2-handover",
            r2,
            t["r2"],
            "2026-10-05T09:30:00+02:00",
            MIDWIFE,
            CPAS,
            "Handover note: Yasmina asked for social support; she speaks French and Arabic.",
        ),
        message(
            "demo-referral-7-handover",
            r7,
            t["r7"],
            "2026-11-04T15:00:00+01:00",
            MIDWIFE,
            CPAS,
            "Yasmina would like a buddy for the first weeks at home. Could you find one?",
        ),
    ]
    answered = [
        grief_task("accepted"),
        task(t["r2"], r2, "accepted"),
        task(t["r3"], r3, "accepted"),
        task(
            t["r4"],
            r4,
            "rejected",
            reason="The parenting group is full until March; please refer to the group in Forest.",
        ),
        task(
            t["r5"],
            r5,
            "cancelled",
            reason="The family moved to Liège; referred there by their GP.",
        ),
        task(t["r8"], r8, "accepted"),
        task(t["r9"], r9, "accepted"),
        task(t["r10"], r10, "entered-in-error"),
        message(
            "demo-referral-3-question",
            r3,
            t["r3"],
            "2026-10-09T11:00:00+02:00",
            SOCIAL,
            HOSPITAL,
            "We accepted the referral. Is the due date still 20 December?",
            reply_to="demo-referral-3-handover",
        ),
        message(
            "demo-referral-3-answer",
            r3,
            t["r3"],
            "2026-10-09T14:20:00+02:00",
            MIDWIFE,
            CPAS,
            "Yes, 20 December. Thank you for taking this up.",
            reply_to="demo-referral-3-question",
        ),
    ]
    started = [
        grief_task("in-progress"),
        task(t["r2"], r2, "in-progress"),
        task(t["r3"], r3, "in-progress"),
        task(t["r8"], r8, "in-progress"),
        back,
        task(t["back"], back, "requested"),
    ]
    closed = [
        grief_task(
            "completed",
            businessStatus={"coding": [{"system": OUTCOME, "code": "realised"}]},
            output=[
                {
                    "type": {"text": "Referral outcome"},
                    "valueCodeableConcept": {"coding": [{"system": OUTCOME, "code": "realised"}]},
                }
            ],
        ),
        task(
            t["r3"],
            r3,
            "completed",
            outcome="realised",
            note="First appointment on 14 October; rent arrears plan agreed with the landlord.",
        ),
        task(t["back"], back, "accepted"),
        task(
            t["r8"],
            r8,
            "on-hold",
            reason="Elodie is admitted to the maternity ward; home visits resume after discharge.",
        ),
        task(
            t["r9"],
            r9,
            "failed",
            reason="The family could not be reached by phone or letter for four weeks.",
        ),
        message(
            "demo-referral-3-feedback",
            r3,
            t["r3"],
            "2026-10-20T16:00:00+02:00",
            SOCIAL,
            HOSPITAL,
            "Feedback: the guidance was realised. Elodie came on 14 October; the housing "
            "file is with the OCMW. We referred her back to you for the baby's follow-up.",
        ),
    ]
    return {
        "30-referrals-1-sent.json": bundle(sent),
        "31-referrals-2-answered.json": bundle(answered),
        "32-referrals-3-started.json": bundle(started),
        "33-referrals-4-closed.json": bundle(closed),
    }


def main() -> None:
    for name, content in build().items():
        text = json.dumps(content, indent=2, ensure_ascii=False) + "\n"
        (DEMO / name).write_text(text, encoding="utf-8")
        print("wrote", DEMO / name)


if __name__ == "__main__":
    main()
