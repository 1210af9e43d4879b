# ruff: noqa: E501  (test tables read better on one line)
"""Wrong and hostile input: every check on responses and Questionnaires, on every write path.
Each refusal is a 422 OperationOutcome whose issue names the item's location; nothing is
written."""

from __future__ import annotations

import copy
from typing import Any

import httpx
import pytest

from tests.screening import helpers as H
from tests.screening.conftest import search

CALCULATED = "http://hl7.org/fhir/uv/sdc/StructureDefinition/sdc-questionnaire-calculatedExpression"
VARIABLE = "http://hl7.org/fhir/StructureDefinition/variable"
ENABLE_WHEN_EXPRESSION = (
    "http://hl7.org/fhir/uv/sdc/StructureDefinition/sdc-questionnaire-enableWhenExpression"
)


async def refused(fhir: httpx.AsyncClient, resource: dict, status: int = 422) -> dict:
    response = await fhir.post(f"/{resource['resourceType']}", json=resource)
    assert response.status_code == status, response.text
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    return outcome


def issue_with(outcome: dict, text: str) -> dict:
    for issue in outcome["issue"]:
        if text in issue["diagnostics"]:
            return issue
    raise AssertionError(f"no issue mentions {text!r}: {outcome}")


def gad2(**kw: Any) -> dict:
    return H.scored("gad-2", [1, 2], **kw)


def mutate(resource: dict, change: Any) -> dict:
    out = copy.deepcopy(resource)
    change(out)
    return out


CASES = [
    (
        "unknown linkId",
        lambda r: r["item"].append({"linkId": "gad-2-99", "answer": [{"valueBoolean": True}]}),
        "linkId 'gad-2-99' is not an item of the Questionnaire",
        "QuestionnaireResponse.item[2].linkId",
    ),
    (
        "a value of the wrong type",
        lambda r: r["item"][0].update(answer=[{"valueString": "several days"}]),
        "its answers are valueCoding, not valueString",
        "QuestionnaireResponse.item[0].answer[0].valueString",
    ),
    (
        "an answer outside the answer options",
        lambda r: r["item"][0].update(answer=[{"valueCoding": {"system": H.LOINC, "code": "LA33-6"}}]),
        "http://loinc.org|LA33-6 is not one of the answer options of 'gad-2-1'",
        "QuestionnaireResponse.item[0].answer[0].valueCoding",
    ),
    (
        "the right code in the wrong system",
        lambda r: r["item"][0]["answer"][0]["valueCoding"].update(system="http://snomed.info/sct"),
        "is not one of the answer options",
        "QuestionnaireResponse.item[0].answer[0].valueCoding",
    ),
    (
        "two answers to a question that does not repeat",
        lambda r: r["item"][0]["answer"].append(copy.deepcopy(r["item"][1]["answer"][0])),
        "takes one answer, got 2",
        "QuestionnaireResponse.item[0].answer[1]",
    ),
    (
        "the same question twice",
        lambda r: r["item"].append(copy.deepcopy(r["item"][0])),
        "appears more than once, but it does not repeat",
        "QuestionnaireResponse.item[2]",
    ),
    (
        "a missing required answer when completed",
        lambda r: r["item"].pop(1),
        "'gad-2-2' is required and has no answer",
        "QuestionnaireResponse.item",
    ),
    (
        "an answer to a display item",
        lambda r: r["item"].insert(0, {"linkId": "gad-2-stem", "answer": [{"valueString": "x"}]}),
        "the display item 'gad-2-stem' cannot be answered",
        "QuestionnaireResponse.item[0]",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("name", "change", "text", "where"), CASES, ids=[c[0] for c in CASES])
async def test_responses_are_checked_against_their_questionnaire(
    fhir: httpx.AsyncClient, name: str, change: Any, text: str, where: str
) -> None:
    outcome = await refused(fhir, mutate(gad2(), change))
    assert issue_with(outcome, text)["expression"] == [where]
    assert await search(fhir, "/QuestionnaireResponse") == []


async def test_required_answers_may_wait_while_in_progress(fhir: httpx.AsyncClient) -> None:
    draft = mutate(gad2(status="in-progress"), lambda r: r["item"].pop(1))
    assert (await fhir.post("/QuestionnaireResponse", json=draft)).status_code == 201


async def test_answers_to_disabled_items_are_refused(fhir: httpx.AsyncClient) -> None:
    """No consent, yet answers: every indicator group is disabled by its enableWhen."""
    answered = H.bib({"income": [3, 2]})
    answered["item"][0]["item"][1]["answer"] = [{"valueBoolean": False}]
    outcome = await refused(fhir, answered)
    issue = issue_with(outcome, "the group 'country-of-birth' is not enabled (enableWhen)")
    assert issue["expression"] == ["QuestionnaireResponse.item[1]"]
    assert len([i for i in outcome["issue"] if "is not enabled" in i["diagnostics"]]) == 13


async def test_a_disabled_question_inside_an_enabled_group(fhir: httpx.AsyncClient) -> None:
    response = H.bib()
    response["item"][0]["item"][0]["answer"] = [{"valueBoolean": False}]  # not informed
    outcome = await refused(fhir, response)
    issue = issue_with(outcome, "the question 'consent-given' is not enabled")
    assert issue["expression"] == ["QuestionnaireResponse.item[0].item[1].answer[0]"]


async def test_an_item_under_the_wrong_parent(fhir: httpx.AsyncClient) -> None:
    response = H.bib()
    response["item"][1]["item"].append(H.coded("income-1", {"system": "x", "code": "y"}))
    outcome = await refused(fhir, response)
    issue = issue_with(outcome, "the item 'income-1' belongs under 'income'")
    assert issue["expression"] == ["QuestionnaireResponse.item[1].item[2].linkId"]


async def test_a_group_cannot_have_answers(fhir: httpx.AsyncClient) -> None:
    response = H.bib()
    response["item"][1]["answer"] = [{"valueBoolean": True}]
    # the core R4 rule qrs-1, a 400 like every core invariant
    outcome = await refused(fhir, response, 400)
    issue = issue_with(outcome, "qrs-1")
    assert issue["expression"] == ["QuestionnaireResponse.item[1]"]


async def test_a_response_to_an_unknown_questionnaire(fhir: httpx.AsyncClient) -> None:
    response = gad2()
    response["questionnaire"] = f"{H.BIB}/Questionnaire/does-not-exist|1.0"
    outcome = await refused(fhir, response)
    issue = issue_with(outcome, "is not known to this server")
    assert issue["expression"] == ["QuestionnaireResponse.questionnaire"]
    response["questionnaire"] = H.canonical("gad-2").replace("0.1.0", "9.9.9")  # unknown version
    await refused(fhir, response)


async def test_a_response_without_questionnaire_is_stored_as_is(fhir: httpx.AsyncClient) -> None:
    response = gad2()
    del response["questionnaire"]
    assert (await fhir.post("/QuestionnaireResponse", json=response)).status_code == 201


@pytest.mark.parametrize("method", ["PUT", "PATCH", "transaction", "batch"])
async def test_every_write_path_checks(fhir: httpx.AsyncClient, method: str) -> None:
    good = (await fhir.post("/QuestionnaireResponse", json=gad2())).json()
    bad = mutate(good, lambda r: r["item"][0].update(answer=[{"valueString": "no"}]))
    bad.pop("meta")
    if method == "PUT":
        response = await fhir.put(f"/QuestionnaireResponse/{good['id']}", json=bad)
    elif method == "PATCH":
        response = await fhir.patch(
            f"/QuestionnaireResponse/{good['id']}",
            json=[{"op": "replace", "path": "/item/0/answer/0", "value": {"valueString": "no"}}],
            headers={"Content-Type": "application/json-patch+json"},
        )
    else:
        bundle = {
            "resourceType": "Bundle",
            "type": method,
            "entry": [
                {
                    "resource": bad,
                    "request": {"method": "PUT", "url": f"QuestionnaireResponse/{good['id']}"},
                }
            ],
        }
        response = await fhir.post("", json=bundle)
        if method == "batch":
            assert response.status_code == 200
            entry = response.json()["entry"][0]["response"]
            assert entry["status"].startswith("422")
            assert "not valueString" in str(entry["outcome"])
            response = None
    if response is not None:
        assert response.status_code in (400, 422), response.text
        assert "not valueString" in response.text
    stored = (await fhir.get(f"/QuestionnaireResponse/{good['id']}")).json()
    assert stored["meta"]["versionId"] == "1"


async def test_validate_operation_reports_the_same(fhir: httpx.AsyncClient) -> None:
    bad = mutate(gad2(), lambda r: r["item"][0].update(answer=[{"valueString": "x"}]))
    response = await fhir.post("/QuestionnaireResponse/$validate", json=bad)
    assert response.status_code == 200
    assert issue_with(response.json(), "not valueString")["severity"] == "error"


# -- bound value sets and other answer checks ----------------------------------------------------


def local_questionnaire(items: list[dict], url: str = "local-checks") -> dict:
    return {
        "resourceType": "Questionnaire",
        "url": f"{H.BIB}/Questionnaire/{url}",
        "version": "1",
        "status": "active",
        "item": items,
    }


async def test_answers_outside_the_bound_value_set(fhir: httpx.AsyncClient) -> None:
    questionnaire = local_questionnaire(
        [
            {
                "linkId": "step",
                "type": "choice",
                "answerValueSet": f"{H.BIB}/ValueSet/bib-screening-step",
            },
            {"linkId": "note", "type": "string", "maxLength": 5},
            {"linkId": "weeks", "type": "integer", "extension": [
                {"url": "http://hl7.org/fhir/StructureDefinition/maxValue", "valueInteger": 45}]},
        ]
    )  # fmt: skip
    assert (await fhir.post("/Questionnaire", json=questionnaire)).status_code == 201

    def answers(code: str, note: str = "ok", weeks: int = 12) -> dict:
        return {
            "resourceType": "QuestionnaireResponse",
            "questionnaire": f"{questionnaire['url']}|1",
            "status": "completed",
            "subject": {"reference": "Patient/p1"},
            "item": [
                {"linkId": "step", "answer": [{"valueCoding": {"system": f"{H.BIB}/CodeSystem/bib-screening-step", "code": code}}]},
                {"linkId": "note", "answer": [{"valueString": note}]},
                {"linkId": "weeks", "answer": [{"valueInteger": weeks}]},
            ],
        }  # fmt: skip

    assert (
        await fhir.post("/QuestionnaireResponse", json=answers("rescreening"))
    ).status_code == 201
    outcome = await refused(fhir, answers("bogus"))
    assert issue_with(outcome, "is not in the value set")["expression"] == [
        "QuestionnaireResponse.item[0].answer[0].valueCoding"
    ]
    assert issue_with(await refused(fhir, answers("screening", note="too long")), "longer than 5")
    assert issue_with(await refused(fhir, answers("screening", weeks=46)), "must be at most 45")


# -- Questionnaires are checked when they are written ---------------------------------------------


def with_expression(where: str, expression: str) -> dict:
    items = [
        {"linkId": "a", "type": "integer"},
        {"linkId": "b", "type": "integer"},
    ]
    questionnaire = local_questionnaire(items, url="broken")
    if where == "calculatedExpression":
        items[1]["extension"] = [
            {
                "url": CALCULATED,
                "valueExpression": {"language": "text/fhirpath", "expression": expression},
            }
        ]
    elif where == "variable":
        questionnaire["extension"] = [
            {
                "url": VARIABLE,
                "valueExpression": {
                    "name": "v",
                    "language": "text/fhirpath",
                    "expression": expression,
                },
            }
        ]
    else:
        items[1]["extension"] = [
            {
                "url": ENABLE_WHEN_EXPRESSION,
                "valueExpression": {"language": "text/fhirpath", "expression": expression},
            }
        ]
    return questionnaire  # fmt: skip


@pytest.mark.parametrize(
    ("where", "location"),
    [
        ("calculatedExpression", "Questionnaire.item[1].extension[0].valueExpression.expression"),
        ("variable", "Questionnaire.extension[0].valueExpression.expression"),
        ("enableWhenExpression", "Questionnaire.item[1].extension[0].valueExpression.expression"),
    ],
)
async def test_an_invalid_fhirpath_expression_is_refused_with_its_location(
    fhir: httpx.AsyncClient, where: str, location: str
) -> None:
    outcome = await refused(fhir, with_expression(where, "%resource.item.where(linkId = 'a'"))
    issue = issue_with(outcome, "invalid FHIRPath")
    assert issue["expression"] == [location]
    assert await search(fhir, "/Questionnaire?url=" + f"{H.BIB}/Questionnaire/broken") == []
    valid = with_expression(where, "%resource.item.where(linkId = 'a').answer.valueInteger")
    assert (await fhir.post("/Questionnaire", json=valid)).status_code == 201


async def test_other_questionnaire_mistakes(fhir: httpx.AsyncClient) -> None:
    duplicate = local_questionnaire(
        [{"linkId": "a", "type": "string"}, {"linkId": "a", "type": "integer"}]
    )
    # the core R4 rule que-2 catches it first: a 400, as for every core invariant
    assert issue_with(await refused(fhir, duplicate, 400), "the linkId 'a' occurs more than once")
    dangling = local_questionnaire(
        [{"linkId": "a", "type": "string", "enableWhen": [{"question": "zz", "operator": "exists", "answerBoolean": True}]}]
    )  # fmt: skip
    issue = issue_with(await refused(fhir, dangling), "enableWhen refers to 'zz'")
    assert issue["expression"] == ["Questionnaire.item[0].enableWhen[0].question"]
    language = with_expression("calculatedExpression", "1")
    language["item"][1]["extension"][0]["valueExpression"]["language"] = "text/cql"
    assert issue_with(await refused(fhir, language), "text/cql")


async def test_an_invalid_questionnaire_in_a_transaction(fhir: httpx.AsyncClient) -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "resource": with_expression("variable", "((("),
                "request": {"method": "POST", "url": "Questionnaire"},
            }
        ],
    }
    response = await fhir.post("", json=bundle)
    assert response.status_code == 422
    assert "invalid FHIRPath" in response.text


@pytest.mark.parametrize(
    "item",
    [
        {"linkId": "gad-2-1", "answer": "several days"},
        {"linkId": "gad-2-1", "answer": [{"valueCoding": "LA6569-3"}]},
        {"linkId": "gad-2-1", "answer": [{}]},
        {"linkId": 42},
        {"answer": [{"valueInteger": 1}]},
    ],
)
async def test_malformed_items_are_refused_not_crashed(fhir: httpx.AsyncClient, item: dict) -> None:
    response = gad2()
    response["item"][0] = item
    result = await fhir.post("/QuestionnaireResponse", json=response)
    assert result.status_code in (400, 422), result.text
    assert result.json()["resourceType"] == "OperationOutcome"
