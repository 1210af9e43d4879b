"""The stepped protocol (PlanDefinition, data) and the safety alert: which Tasks, Flags and
Communications a completed response creates, for whom, and that they share its unit of work."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from tests.screening import helpers as H
from tests.screening.conftest import search

SDC_TEMP = "http://hl7.org/fhir/uv/sdc/CodeSystem/temp"
STEP = f"{H.BIB}/CodeSystem/bib-screening-step"
ALERT = f"{H.BIB}/CodeSystem/bib-screening-alert"


async def create(fhir: httpx.AsyncClient, resource: dict) -> dict:
    response = await fhir.post("/QuestionnaireResponse", json=resource)
    assert response.status_code == 201, response.text
    return response.json()


async def tasks(fhir: httpx.AsyncClient, patient: str = "p1") -> list[dict]:
    return await search(fhir, f"/Task?patient=Patient/{patient}&_count=100")


def focus_ids(found: list[dict]) -> list[str]:
    return sorted(
        t["focus"]["reference"]
        for t in found
        if t.get("focus", {}).get("reference", "").startswith("Questionnaire/")
    )


def codes(task: dict) -> set[str]:
    return {c["code"] for c in task.get("code", {}).get("coding", [])}


def due_in_days(task: dict) -> float:
    end = datetime.fromisoformat(task["restriction"]["period"]["end"].replace("Z", "+00:00"))
    return (end - datetime.now(UTC)) / timedelta(days=1)


# -- the BiB screening's first step -----------------------------------------------------------


@pytest.mark.parametrize(
    ("points", "steps"),
    [
        ({}, False),  # nothing flagged
        ({"income": [3, 2], "housing": [4, 0]}, False),  # 2 risk factors
        ({"income": [3, 2], "housing": [4, 0], "education": [3]}, True),  # 3 risk factors
        ({"violence": [2]}, True),  # 1 high-risk factor
        ({"anxiety": [2.5, 0]}, True),  # high risk, exactly at its threshold
        ({"anxiety": [1, 0.5]}, False),  # high-risk indicator below its threshold
    ],
)
async def test_risk_factors_plan_whooley_and_gad2(
    fhir: httpx.AsyncClient, points: dict, steps: bool
) -> None:
    created = await create(fhir, H.bib(points))
    found = await tasks(fhir)
    if not steps:
        assert found == []
        return
    assert focus_ids(found) == ["Questionnaire/gad-2", "Questionnaire/whooley"]
    for task in found:
        assert task["status"] == "requested" and task["intent"] == "order"
        assert task["for"] == {"reference": "Patient/p1"}
        assert task["owner"] == {"reference": "Practitioner/mw-1"}  # the author
        assert task["reasonReference"] == {"reference": f"QuestionnaireResponse/{created['id']}"}
        assert {"complete-questionnaire", "screening"} <= codes(task)
        assert 6.9 < due_in_days(task) <= 7
        assert task["input"][0]["valueCanonical"].startswith(f"{H.BIB}/Questionnaire/")
        assert task["instantiatesUri"].startswith(f"{H.BIB}/PlanDefinition/bib-stepped-screening#")


async def test_no_consent_means_no_answers_and_no_steps(fhir: httpx.AsyncClient) -> None:
    created = await create(fhir, H.bib(consent=False))
    assert [i["linkId"] for i in created["item"]] == ["consent"]
    assert await tasks(fhir) == []
    consents = await search(fhir, "/Consent?patient=Patient/p1")
    assert [c["status"] for c in consents] == ["rejected"]  # the refusal is on record


# -- Whooley and GAD-2 -> EPDS and GAD-7 --------------------------------------------------------


@pytest.mark.parametrize(
    ("first", "second", "steps"), [(False, False, False), (True, False, True), (False, True, True)]
)
async def test_whooley(fhir: httpx.AsyncClient, first: bool, second: bool, steps: bool) -> None:
    await create(fhir, H.whooley(first, second))
    expected = ["Questionnaire/epds", "Questionnaire/gad-7"] if steps else []
    assert focus_ids(await tasks(fhir)) == expected


@pytest.mark.parametrize(("points", "steps"), [([1, 1], False), ([2, 1], True), ([0, 3], True)])
async def test_gad2_cut_off_is_3(fhir: httpx.AsyncClient, points: list, steps: bool) -> None:
    await create(fhir, H.scored("gad-2", points))
    expected = ["Questionnaire/epds", "Questionnaire/gad-7"] if steps else []
    assert focus_ids(await tasks(fhir)) == expected


async def test_the_same_step_is_not_planned_twice(fhir: httpx.AsyncClient) -> None:
    await create(fhir, H.whooley(True, True))
    await create(fhir, H.scored("gad-2", [3, 3]))
    found = await tasks(fhir)
    assert focus_ids(found) == ["Questionnaire/epds", "Questionnaire/gad-7"]


async def test_nor_twice_in_one_transaction(fhir: httpx.AsyncClient) -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": r, "request": {"method": "POST", "url": "QuestionnaireResponse"}}
            for r in (H.whooley(True, True), H.scored("gad-2", [3, 3]))
        ],
    }
    assert (await fhir.post("", json=bundle)).status_code == 200
    assert focus_ids(await tasks(fhir)) == ["Questionnaire/epds", "Questionnaire/gad-7"]


# -- EPDS and GAD-7 cut-offs --------------------------------------------------------------------


def epds_total(total: int) -> list[float]:
    """EPDS points per item summing to ``total`` with item 10 at 0 (no alert)."""
    points = [0.0] * 10
    for index in range(9):
        points[index] = min(3, total)
        total -= points[index]
    assert total == 0
    return points


@pytest.mark.parametrize(
    ("total", "expected"),
    [
        (10, None),
        (11, "rescreening"),
        (13, "rescreening"),
        (14, "clinical-assessment"),
        (27, "clinical-assessment"),
    ],
)
async def test_epds_cut_offs(fhir: httpx.AsyncClient, total: int, expected: str | None) -> None:
    created = await create(fhir, H.scored("epds", epds_total(total)))
    assert H.answer_of(created, "epds-total") == total
    found = await tasks(fhir)
    if expected is None:
        assert found == []
        return
    assert len(found) == 1
    task = found[0]
    assert expected in codes(task)
    if expected == "rescreening":
        assert task["focus"]["reference"] == "Questionnaire/epds"
        assert 13.9 < due_in_days(task) <= 14
        assert task["priority"] == "routine"
    else:
        assert "focus" not in task
        assert task["priority"] == "urgent"
        assert 6.9 < due_in_days(task) <= 7
    assert task["reasonCode"]["coding"][0]["code"] == "depression"


@pytest.mark.parametrize(
    ("points", "expected"),
    [
        ([2, 2, 2, 2, 2, 0, 0], None),  # 10
        ([2, 2, 2, 2, 2, 1, 0], "rescreening"),  # 11
        ([3, 3, 3, 3, 3, 0, 0], "rescreening"),  # 15
        ([3, 3, 3, 3, 3, 1, 0], "clinical-assessment"),  # 16
    ],
)
async def test_gad7_cut_offs(fhir: httpx.AsyncClient, points: list, expected: str | None) -> None:
    await create(fhir, H.scored("gad-7", points))
    found = await tasks(fhir)
    assert [c for t in found for c in codes(t) if c in ("rescreening", "clinical-assessment")] == (
        [expected] if expected else []
    )


# -- the safety alert ---------------------------------------------------------------------------


async def test_the_safety_alert_flags_tasks_and_tells_the_responsible_professional(
    fhir: httpx.AsyncClient,
) -> None:
    positions = [3 if i in (3, 5, 6, 7, 8, 9, 10) else 0 for i in range(1, 11)]
    positions[9] = 2  # item 10: "Hardly ever", 1 point; the total stays 1
    created = await create(fhir, H.epds_by_position(positions, author="Practitioner/mw-1"))
    reference = {"reference": f"QuestionnaireResponse/{created['id']}"}
    flags = await search(fhir, "/Patient/p1/Flag")
    assert len(flags) == 1
    flag = flags[0]
    assert flag["status"] == "active"
    assert flag["code"]["coding"][0] == {
        "system": ALERT,
        "code": "self-harm-thoughts",
        "display": "Thoughts of self-harm reported",
    }
    assert flag["category"][0]["coding"][0]["code"] == "safety"
    assert flag["extension"][0]["valueReference"] == reference
    (task,) = [t for t in await tasks(fhir) if t["priority"] == "stat"]
    assert task["owner"] == {"reference": "Practitioner/mw-1"}
    assert task["focus"] == reference
    assert 0.9 < due_in_days(task) <= 1
    communications = await search(fhir, "/Patient/p1/Communication")
    assert len(communications) == 1
    communication = communications[0]
    assert communication["recipient"] == [{"reference": "Practitioner/mw-1"}]
    assert communication["category"][0]["coding"][0]["code"] == "alert"
    assert {a["reference"] for a in communication["about"]} == {
        reference["reference"],
        f"Flag/{flag['id']}",
        f"Task/{task['id']}",
    }
    assert "whatever the total" in communication["payload"][0]["contentString"]


@pytest.mark.parametrize(
    ("author", "owner"),
    [
        ("PractitionerRole/role-1", "PractitionerRole/role-1"),  # the author
        (None, "Practitioner/gp-1"),  # no author, no care team: the general practitioner
        ("Patient/p1", "Practitioner/gp-1"),  # self-administered: not a professional
    ],
)
async def test_who_is_responsible(fhir: httpx.AsyncClient, author: str | None, owner: str) -> None:
    await create(fhir, H.scored("phq-9", [0] * 8 + [3], author=author))
    (task,) = await tasks(fhir)
    assert task["owner"] == {"reference": owner}


async def test_the_care_team_comes_before_the_general_practitioner(
    fhir: httpx.AsyncClient,
) -> None:
    team = {
        "resourceType": "CareTeam",
        "status": "active",
        "subject": {"reference": "Patient/p1"},
        "participant": [{"member": {"reference": "Practitioner/mw-1"}}],
    }
    assert (await fhir.post("/CareTeam", json=team)).status_code == 201
    await create(fhir, H.scored("phq-9", [0] * 8 + [3], author=None))
    (task,) = await tasks(fhir)
    assert task["owner"] == {"reference": "Practitioner/mw-1"}
    assert "care team" in task["note"][0]["text"]


# -- one unit of work ---------------------------------------------------------------------------


async def test_a_failing_transaction_leaves_no_alert_and_no_observation(
    fhir: httpx.AsyncClient,
) -> None:
    alarming = H.scored("phq-9", [3] * 9)
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": alarming, "request": {"method": "POST", "url": "QuestionnaireResponse"}},
            {
                "resource": {"resourceType": "Patient", "id": "p1", "birthDate": "not a date"},
                "request": {"method": "PUT", "url": "Patient/p1"},
            },
        ],
    }
    response = await fhir.post("", json=bundle)
    assert response.status_code == 400
    for type_ in ("QuestionnaireResponse", "Observation", "Flag", "Task", "Communication"):
        assert await search(fhir, f"/{type_}") == [], type_


async def test_a_transaction_writes_the_response_and_everything_it_yields(
    fhir: httpx.AsyncClient,
) -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": r, "request": {"method": "POST", "url": "QuestionnaireResponse"}}
            for r in (H.scored("phq-9", [3] * 9), H.whooley(True, False))
        ],
    }
    response = await fhir.post("", json=bundle)
    assert response.status_code == 200, response.text
    assert len(await search(fhir, "/Flag")) == 1
    assert focus_ids(await tasks(fhir)) == ["Questionnaire/epds", "Questionnaire/gad-7"]
    observations = await search(fhir, "/Observation")
    assert sorted(o["code"]["coding"][0]["code"] for o in observations) == [
        "44261-6",
        "whooley-positive",
    ]


async def test_a_questionnaire_and_its_response_in_one_transaction(
    fhir: httpx.AsyncClient,
) -> None:
    questionnaire = H.questionnaire("gad-2")
    questionnaire.pop("id")
    questionnaire["url"] = f"{H.BIB}/Questionnaire/local-gad-2"
    answers = H.scored("gad-2", [3, 3])
    answers["questionnaire"] = f"{questionnaire['url']}|{questionnaire['version']}"
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": questionnaire, "request": {"method": "POST", "url": "Questionnaire"}},
            {"resource": answers, "request": {"method": "POST", "url": "QuestionnaireResponse"}},
        ],
    }
    response = await fhir.post("", json=bundle)
    assert response.status_code == 200, response.text
    stored = await search(fhir, "/QuestionnaireResponse")
    assert H.answer_of(stored[0], "gad-2-total") == 6


# -- amending a response ------------------------------------------------------------------------


async def test_amending_updates_what_was_derived(fhir: httpx.AsyncClient) -> None:
    created = await create(fhir, H.scored("phq-9", [0] * 8 + [2]))
    (observation,) = await search(fhir, "/Observation")
    assert observation["valueQuantity"]["value"] == 2
    amended = copy.deepcopy(created)
    amended["status"] = "amended"
    amended = H.without(amended, "phq-9-total")
    q = H.questionnaire("phq-9")
    amended["item"][1]["answer"] = [{"valueCoding": H.option_with_weight(q, "phq-9-1", 3)}]
    response = await fhir.put(f"/QuestionnaireResponse/{created['id']}", json=amended)
    assert response.status_code == 200, response.text
    assert H.answer_of(response.json(), "phq-9-total") == 5
    (again,) = await search(fhir, "/Observation")
    assert again["id"] == observation["id"]
    assert again["status"] == "amended" and again["valueQuantity"]["value"] == 5
    assert len(await search(fhir, "/Flag")) == 1  # the alert is not raised a second time


# -- the protocol is data -------------------------------------------------------------------------


async def test_changing_the_protocol_needs_no_code(fhir: httpx.AsyncClient) -> None:
    """The programme lowers the EPDS re-screening threshold from above 10 to above 8."""
    plan = (await fhir.get("/PlanDefinition/bib-stepped-screening")).json()
    for action in plan["action"]:
        if action["id"] == "epds-rescreen":
            expression = action["condition"][0]["expression"]
            expression["expression"] = expression["expression"].replace("> 10", "> 8")
    plan.pop("meta")
    assert (await fhir.put("/PlanDefinition/bib-stepped-screening", json=plan)).status_code == 200
    await create(fhir, H.scored("epds", epds_total(9)))
    (task,) = await tasks(fhir)
    assert "rescreening" in codes(task)


async def test_resubmitting_the_same_answers_derives_nothing_new(fhir: httpx.AsyncClient) -> None:
    original = H.bib({"income": [3, 2]})
    created = await create(fhir, original)
    before = {t: await search(fhir, f"/{t}?_count=100") for t in ("Observation", "Consent", "Task")}
    again = dict(original, id=created["id"], status="amended")
    response = await fhir.put(f"/QuestionnaireResponse/{created['id']}", json=again)
    assert response.status_code == 200, response.text
    for type_, found in before.items():
        now = await search(fhir, f"/{type_}?_count=100")
        assert [r["id"] for r in now] == [r["id"] for r in found], type_
        assert [r["meta"]["versionId"] for r in now] == [r["meta"]["versionId"] for r in found], (
            type_
        )
