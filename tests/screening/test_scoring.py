"""Scoring on the server: every instrument's table, reverse-scored items, cut-off boundaries, the
safety item, forged and missing scores, and a weight change in a new Questionnaire version."""

from __future__ import annotations

import copy

import httpx
import pytest

from tests.screening import helpers as H
from tests.screening.conftest import search

REVERSED = {3, 5, 6, 7, 8, 9, 10}  # EPDS items scored 3-2-1-0 from top to bottom


async def create(fhir: httpx.AsyncClient, resource: dict) -> dict:
    response = await fhir.post("/QuestionnaireResponse", json=resource)
    assert response.status_code == 201, response.text
    return response.json()


def zero_epds_positions() -> list[int]:
    """The position of the option worth 0 for each EPDS item (first or last)."""
    return [3 if i in REVERSED else 0 for i in range(1, 11)]


@pytest.mark.parametrize("item", range(1, 11))
async def test_epds_first_option_is_worth_0_or_3_by_the_item_direction(
    fhir: httpx.AsyncClient, item: int
) -> None:
    positions = zero_epds_positions()
    positions[item - 1] = 0  # the first option as printed
    created = await create(fhir, H.epds_by_position(positions))
    assert H.answer_of(created, "epds-total") == (3 if item in REVERSED else 0)
    positions[item - 1] = 3  # the last option as printed
    created = await create(fhir, H.epds_by_position(positions))
    assert H.answer_of(created, "epds-total") == (0 if item in REVERSED else 3)


async def test_every_answer_carries_its_points(fhir: httpx.AsyncClient) -> None:
    created = await create(fhir, H.scored("phq-9", [0, 1, 2, 3, 0, 1, 2, 3, 0]))
    points = [
        next(e["valueDecimal"] for e in item["answer"][0]["valueCoding"]["extension"])
        for item in created["item"]
        if item["linkId"].startswith("phq-9-") and item["linkId"][-1].isdigit()
    ]
    assert points == [0, 1, 2, 3, 0, 1, 2, 3, 0]
    assert H.answer_of(created, "phq-9-total") == 12


@pytest.mark.parametrize(
    ("instrument", "points", "total"),
    [
        ("gad-2", [0, 0], 0),
        ("gad-2", [1, 1], 2),
        ("gad-2", [1, 2], 3),
        ("gad-2", [3, 3], 6),
        ("gad-7", [3, 3, 3, 3, 3, 3, 3], 21),
        ("gad-7", [1, 2, 1, 2, 1, 2, 1], 10),
        ("phq-2", [0, 3], 3),
        ("phq-9", [3] * 9, 27),
        ("phq-9", [0] * 9, 0),
    ],
)
async def test_totals(fhir: httpx.AsyncClient, instrument: str, points: list, total: int) -> None:
    created = await create(fhir, H.scored(instrument, points))
    assert H.answer_of(created, f"{instrument}-total") == total


@pytest.mark.parametrize(
    ("first", "second", "positive"),
    [(False, False, False), (True, False, True), (False, True, True), (True, True, True)],
)
async def test_whooley_is_positive_on_either_yes(
    fhir: httpx.AsyncClient, first: bool, second: bool, positive: bool
) -> None:
    created = await create(fhir, H.whooley(first, second))
    assert H.answer_of(created, "whooley-positive") is positive


async def test_epds_item_10_alerts_whatever_the_total(fhir: httpx.AsyncClient) -> None:
    positions = zero_epds_positions()
    quiet = await create(fhir, H.epds_by_position(positions, patient="p1"))
    assert H.answer_of(quiet, "epds-total") == 0
    assert H.answer_of(quiet, "epds-self-harm-alert") is False
    positions[9] = 2  # "Hardly ever": 1 point, the lowest answer above 0
    alarming = await create(fhir, H.epds_by_position(positions, patient="p2"))
    assert H.answer_of(alarming, "epds-total") == 1
    assert H.answer_of(alarming, "epds-self-harm-alert") is True
    assert await search(fhir, "/Flag?patient=Patient/p1") == []
    flags = await search(fhir, "/Flag?patient=Patient/p2")
    assert len(flags) == 1 and flags[0]["status"] == "active"


async def test_phq9_item_9_alerts(fhir: httpx.AsyncClient) -> None:
    created = await create(fhir, H.scored("phq-9", [0] * 8 + [1]))
    assert H.answer_of(created, "phq-9-total") == 1
    assert H.answer_of(created, "phq-9-self-harm-alert") is True
    assert len(await search(fhir, "/Flag?patient=Patient/p1")) == 1


async def test_a_forged_total_is_refused_with_the_expected_value(fhir: httpx.AsyncClient) -> None:
    resource = H.scored("epds", [1] * 10)  # 10 points... with item 10 at 1 point
    resource["item"].append({"linkId": "epds-total", "answer": [{"valueInteger": 4}]})
    response = await fhir.post("/QuestionnaireResponse", json=resource)
    assert response.status_code == 422
    outcome = response.json()
    text = " ".join(i["diagnostics"] for i in outcome["issue"])
    assert "'epds-total' is 4" in text and "computes 10" in text
    assert outcome["issue"][0]["expression"] == ["QuestionnaireResponse.item[10].answer"]
    # nothing written: no response, no extracted Observation, no alert
    for type_ in ("QuestionnaireResponse", "Observation", "Flag", "Task"):
        assert await search(fhir, f"/{type_}") == []


async def test_a_forged_safety_item_is_refused(fhir: httpx.AsyncClient) -> None:
    resource = H.scored("phq-9", [0] * 8 + [2])
    resource["item"].append(
        {"linkId": "phq-9-self-harm-alert", "answer": [{"valueBoolean": False}]}
    )
    response = await fhir.post("/QuestionnaireResponse", json=resource)
    assert response.status_code == 422
    assert "computes true" in response.text
    assert await search(fhir, "/Flag") == []


async def test_a_forged_weight_on_an_answer_is_refused(fhir: httpx.AsyncClient) -> None:
    resource = H.scored("gad-2", [3, 3])
    resource["item"][0]["answer"][0]["valueCoding"]["extension"] = [
        {"url": H.ITEM_WEIGHT, "valueDecimal": 0}
    ]
    response = await fhir.post("/QuestionnaireResponse", json=resource)
    assert response.status_code == 422
    assert "gives this option the weight 3" in response.text


async def test_a_correct_total_is_accepted_and_kept(fhir: httpx.AsyncClient) -> None:
    resource = H.scored("gad-7", [1, 1, 1, 1, 1, 1, 1])
    resource["item"].append({"linkId": "gad-7-total", "answer": [{"valueInteger": 7}]})
    created = await create(fhir, resource)
    assert H.answer_of(created, "gad-7-total") == 7


async def test_an_in_progress_response_is_not_scored(fhir: httpx.AsyncClient) -> None:
    created = await create(fhir, H.scored("gad-7", [3] * 3, status="in-progress"))
    assert H.answer_of(created, "gad-7-total") is None
    assert await search(fhir, "/Observation") == []


async def test_completing_later_scores_then(fhir: httpx.AsyncClient) -> None:
    draft = await create(fhir, H.scored("gad-2", [3], status="in-progress"))
    complete = copy.deepcopy(draft)
    complete["status"] = "completed"
    complete["item"].append(
        H.coded("gad-2-2", H.option_with_weight(H.questionnaire("gad-2"), "gad-2-2", 2))
    )
    response = await fhir.put(f"/QuestionnaireResponse/{draft['id']}", json=complete)
    assert response.status_code == 200, response.text
    assert H.answer_of(response.json(), "gad-2-total") == 5


@pytest.mark.parametrize(
    ("indicator", "points", "flagged", "score"),
    [
        ("income", [0, 0], False, 0),
        ("income", [1.5, 0], False, 1.5),  # below the threshold 2.5
        ("income", [0, 2], False, 2),
        ("income", [1.5, 2], True, 3.5),
        ("anxiety", [2.5, 0], True, 2.5),  # exactly the threshold: flagged
        ("anxiety", [1, 0.5], False, 1.5),  # half points add up
        ("anxiety", [1, 1.5], True, 2.5),
        ("violence", [2], True, 2),
        ("country-of-birth", [0.5, 0.5], False, 1),
    ],
)
async def test_bib_indicator_scores_and_thresholds(
    fhir: httpx.AsyncClient, indicator: str, points: list, flagged: bool, score: float
) -> None:
    created = await create(fhir, H.bib({indicator: points}))
    assert H.answer_of(created, f"{indicator}-flagged") is flagged
    assert float(H.answer_of(created, f"{indicator}-score")) == score
    assert H.answer_of(created, "risk-factor-count") == (1 if flagged else 0)


async def test_a_weight_change_in_a_new_version_needs_no_code(fhir: httpx.AsyncClient) -> None:
    """The programme publishes version 2.0 of the GAD-2 where "several days" is worth 2: the
    same answers score differently by the version the response names, both stay valid."""
    new = H.questionnaire("gad-2")
    new.pop("id")
    new["version"] = "2.0"
    for item in new["item"]:
        for option in item.get("answerOption", []):
            if option["valueCoding"]["code"] == "LA6569-3":  # several days
                option["extension"] = [{"url": H.ITEM_WEIGHT, "valueDecimal": 2}]
    response = await fhir.post("/Questionnaire", json=new)
    assert response.status_code == 201, response.text
    old = await create(fhir, H.scored("gad-2", [1, 1]))
    assert H.answer_of(old, "gad-2-total") == 2
    again = H.scored("gad-2", [1, 1])
    again["questionnaire"] = f"{new['url']}|2.0"
    newer = await create(fhir, again)
    assert H.answer_of(newer, "gad-2-total") == 4
    # and the protocol follows the data: 4 >= 3 plans EPDS and GAD-7, 2 did not
    tasks = await search(fhir, "/Task?patient=Patient/p1")
    assert {t["reasonReference"]["reference"] for t in tasks} == {
        f"QuestionnaireResponse/{newer['id']}"
    }
