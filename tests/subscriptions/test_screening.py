"""The screening's own safety alert reaches a subscriber: a completed QuestionnaireResponse whose
safety item is answered makes the screening plug-in write an active safety Flag in the response's
unit of work; the "safety alert" topic notifies those who may read the woman's record, and only
them."""

from __future__ import annotations

import asyncio

from tests.referrals.world import World, ref
from tests.subscriptions.conftest import TOPIC, subscribe, subscription, wait_for
from tests.subscriptions.receiver import Receiver

BIB = "https://borninbelgiumpro.be/fhir"
QUESTIONNAIRE = {
    "resourceType": "Questionnaire",
    "id": "safety-check",
    "url": f"{BIB}/Questionnaire/test-safety-check",
    "version": "1",
    "status": "active",
    "subjectType": ["Patient"],
    "item": [
        {
            "linkId": "harm",
            "text": "Thoughts of harming yourself?",
            "type": "boolean",
            "extension": [
                {
                    "url": f"{BIB}/StructureDefinition/questionnaire-safety-alert",
                    "extension": [
                        {
                            "url": "code",
                            "valueCoding": {
                                "system": f"{BIB}/CodeSystem/bib-screening-alert",
                                "code": "self-harm-thoughts",
                            },
                        }
                    ],
                }
            ],
        }
    ],
}


def response(patient: str, answer: bool) -> dict:
    return {
        "resourceType": "QuestionnaireResponse",
        "questionnaire": f"{QUESTIONNAIRE['url']}|1",
        "status": "completed",
        "subject": ref(f"Patient/{patient}"),
        "author": ref("Practitioner/mw"),
        "authored": "2026-11-20T10:00:00Z",
        "item": [{"linkId": "harm", "answer": [{"valueBoolean": answer}]}],
    }


async def test_a_screening_safety_alert_is_notified(world: World, receiver: Receiver) -> None:
    await world.load([QUESTIONNAIRE])
    await subscribe(
        world, "gp", subscription(TOPIC + "safety-alert", receiver.url("/gp"), "full-resource")
    )
    # the social worker has no care relationship with p: she subscribes, and hears nothing
    await subscribe(world, "sw", subscription(TOPIC + "safety-alert", receiver.url("/sw")))
    calm = await world.request("POST", "/QuestionnaireResponse", "mw", json=response("p", False))
    assert calm.status_code == 201, calm.text
    alarmed = await world.request("POST", "/QuestionnaireResponse", "mw", json=response("p", True))
    assert alarmed.status_code == 201, alarmed.text
    got = await wait_for(lambda: [r for r in receiver.acknowledged("/gp") if r.numbers])
    assert got[0].numbers == [1]
    flag = got[0].bundle["entry"][1]["resource"]
    assert flag["resourceType"] == "Flag" and flag["status"] == "active"
    assert flag["subject"] == ref("Patient/p")
    assert flag["code"]["coding"][0]["code"] == "self-harm-thoughts"
    detail = flag["extension"][0]["valueReference"]["reference"]
    assert detail == f"QuestionnaireResponse/{alarmed.json()['id']}"
    await asyncio.sleep(0.3)
    assert [n for r in receiver.acknowledged("/gp") for n in r.numbers] == [1]
    assert not [r for r in receiver.acknowledged("/sw") if r.numbers]
