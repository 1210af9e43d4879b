"""The labels a response inherits from its Questionnaire's item codes follow the Questionnaire:
the labeller keeps the parsed item codes between writes (a large Questionnaire is expensive to
parse) and parses again only when the stored Questionnaire changed."""

from __future__ import annotations

import httpx

from fhir_server.app import ServerApp
from fhir_server.security.labels import Labeller

URL = "https://borninbelgiumpro.be/fhir/Questionnaire/test-label-cache"


def questionnaire(code: bool) -> dict:
    item: dict = {"linkId": "q9", "type": "boolean", "text": "Thoughts of self-harm"}
    if code:
        item["code"] = [{"system": "http://loinc.org", "code": "44260-8"}]
    return {
        "resourceType": "Questionnaire",
        "id": "label-cache",
        "url": URL,
        "status": "active",
        "item": [item],
    }


RESPONSE = {
    "resourceType": "QuestionnaireResponse",
    "status": "completed",
    "questionnaire": URL,
    "subject": {"reference": "Patient/p1"},
    "item": [{"linkId": "q9", "answer": [{"valueBoolean": True}]}],
}


async def test_item_code_labels_follow_a_changed_questionnaire(
    app: ServerApp, client: httpx.AsyncClient
) -> None:
    labeller = Labeller(app.service)
    assert labeller.policy.resolve_questionnaires
    always = set(labeller.policy.by_type.get("QuestionnaireResponse", ()))  # R: raw answers
    sensitive = set(labeller.policy.by_code[("http://loinc.org", "44260-8")]) - always
    assert sensitive  # BH

    put = await client.put("/Questionnaire/label-cache", json=questionnaire(code=False))
    assert put.status_code == 201, put.text
    assert not sensitive & set(await labeller.names_for(RESPONSE))

    # other writes move the store on: the same Questionnaire gives the same answer
    other = {"resourceType": "Patient", "id": "p1"}
    assert (await client.put("/Patient/p1", json=other)).status_code in (200, 201)
    assert not sensitive & set(await labeller.names_for(RESPONSE))

    # the item gets a sensitive code: the next response is labelled by it
    put = await client.put("/Questionnaire/label-cache", json=questionnaire(code=True))
    assert put.status_code == 200, put.text
    assert sensitive <= set(await labeller.names_for(RESPONSE))
    assert (await client.put("/Patient/p1", json=other)).status_code == 200
    assert sensitive <= set(await labeller.names_for(RESPONSE))

    # and back
    put = await client.put("/Questionnaire/label-cache", json=questionnaire(code=False))
    assert put.status_code == 200, put.text
    assert not sensitive & set(await labeller.names_for(RESPONSE))
