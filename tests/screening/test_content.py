# ruff: noqa: E501  (test tables read better on one line)
"""The shipped screening content: it loads, validates, and says what the issue asks of it
(13 weighted indicator groups with thresholds, the instruments' LOINC codes and scoring,
reverse-scored EPDS items as data, licence texts, four languages, the protocol's references)."""

from __future__ import annotations

import json
from decimal import Decimal

import httpx
import pytest

from fhir_server.screening.form import compile_form
from fhir_server.screening.protocol import steps_of
from tests.screening import helpers as H

TRANSLATION = "http://hl7.org/fhir/StructureDefinition/translation"
STATUS = f"{H.BIB}/StructureDefinition/questionnaire-translation-status"
VARIABLE = "http://hl7.org/fhir/StructureDefinition/variable"
QUESTIONNAIRES = [
    "bib-psychosocial-screening",
    "whooley",
    "gad-2",
    "gad-7",
    "phq-2",
    "phq-9",
    "epds",
]


def shipped() -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(H.CONTENT.glob("*.json"))]


async def test_everything_shipped_is_in_the_store_and_valid(fhir: httpx.AsyncClient) -> None:
    for resource in shipped():
        path = f"/{resource['resourceType']}/{resource['id']}"
        stored = await fhir.get(path)
        assert stored.status_code == 200, f"{path} was not loaded (see the server log)"
        outcome = (await fhir.get(f"{path}/$validate")).json()
        errors = [i for i in outcome["issue"] if i["severity"] in ("error", "fatal")]
        assert errors == [], (path, errors)


@pytest.mark.parametrize("id_", QUESTIONNAIRES)
def test_every_expression_parses_and_every_text_is_translated(id_: str) -> None:
    questionnaire = H.questionnaire(id_)
    assert compile_form(questionnaire).issues == []
    languages = {
        sub["valueCode"]
        for ext in questionnaire["extension"]
        if ext["url"] == STATUS
        for sub in ext["extension"]
        if sub["url"] == "language"
    }
    assert languages == {"nl-BE", "fr-BE", "en", "de"}
    for item in H.walk(questionnaire["item"]):
        translations = {
            sub["valueCode"]
            for ext in item["_text"]["extension"]
            if ext["url"] == TRANSLATION
            for sub in ext["extension"]
            if sub["url"] == "lang"
        }
        assert {"nl-BE", "fr-BE", "de"} <= translations, item["linkId"]
        for option in item.get("answerOption", []):
            assert "_display" in option["valueCoding"], item["linkId"]


@pytest.mark.parametrize("id_", QUESTIONNAIRES)
def test_translations_are_marked_as_not_validated(id_: str) -> None:
    statuses = {}
    for ext in H.questionnaire(id_)["extension"]:
        if ext["url"] == STATUS:
            parts = {
                s["url"]: next(v for k, v in s.items() if k.startswith("value"))
                for s in ext["extension"]
            }
            statuses[parts["language"]] = (parts["validated"], parts["note"])
    for language in ("nl-BE", "fr-BE", "de"):
        validated, note = statuses[language]
        assert validated is False and "not a validated version" in note


def test_bib_screening_is_a_replaceable_weighted_indicator_set() -> None:
    q = H.questionnaire("bib-psychosocial-screening")
    assert q["experimental"] is True and "PLACEHOLDER" in q["description"]
    assert q["item"][0]["linkId"] == "consent"
    indicators = json.loads(
        (H.ROOT / "terminology/bib/CodeSystem-bib-vulnerability-indicator.json").read_text()
    )
    codes = [c["code"] for c in indicators["concept"]]
    groups = [i for i in q["item"] if i["code"][0]["system"] == H.INDICATOR]
    assert sorted(g["linkId"] for g in groups) == sorted(codes)
    questions = 0
    for group in groups:
        assert group["code"][0]["code"] == group["linkId"]
        assert group["enableWhen"] == [
            {"question": "consent-given", "operator": "=", "answerBoolean": True}
        ]
        variables = {
            e["valueExpression"]["name"]: e["valueExpression"]["expression"]
            for e in group["extension"]
            if e["url"] == VARIABLE
        }
        threshold = Decimal(variables["threshold"])
        assert threshold % Decimal("0.5") == 0
        for item in group["item"]:
            if item["type"] != "choice":
                continue
            questions += 1
            weights = [Decimal(str(H.weight(o))) for o in item["answerOption"]]
            assert all(w % Decimal("0.5") == 0 and 0 <= w <= 4 for w in weights)
        flagged = next(i for i in group["item"] if i["linkId"] == f"{group['linkId']}-flagged")
        assert flagged["code"] == group["code"]
    assert questions == 21  # the programme's count of questions (its wording is not public)


def test_epds_reverse_scoring_is_data() -> None:
    q = H.questionnaire("epds")
    assert q["code"][1]["code"] == "71354-5"
    for index in range(1, 11):
        weights = [H.weight(o) for o in H.item_of(q, f"epds-{index}")["answerOption"]]
        expected = [3, 2, 1, 0] if index in (3, 5, 6, 7, 8, 9, 10) else [0, 1, 2, 3]
        assert weights == expected, index
    assert H.item_of(q, "epds-total")["code"][0]["code"] == "99046-5"
    assert "Cox, J.L., Holden, J.M., & Sagovsky, R. (1987)" in q["copyright"]
    assert "Royal College of Psychiatrists" in q["copyright"]


@pytest.mark.parametrize(
    ("id_", "panel", "items", "total"),
    [
        ("phq-9", "44249-1", ["44250-9", "44255-8", "44259-0", "44254-1", "44251-7", "44258-2", "44252-5", "44253-3", "44260-8"], "44261-6"),
        ("phq-2", "55757-9", ["44250-9", "44255-8"], "55758-7"),
        ("gad-7", "69737-5", ["69725-0", "68509-9", "69733-4", "69734-2", "69735-9", "69689-8", "69736-7"], "70274-6"),
        ("gad-2", None, ["69725-0", "68509-9"], None),
    ],
)  # fmt: skip
def test_loinc_codes_and_the_pfizer_notice(
    id_: str, panel: str | None, items: list, total: str | None
) -> None:
    q = H.questionnaire(id_)
    assert [c["code"] for c in q["code"] if c["system"] == H.LOINC] == ([panel] if panel else [])
    questions = [i for i in q["item"] if i["type"] == "choice"]
    assert [i["code"][0]["code"] for i in questions] == items
    for item in questions:
        options = [(o["valueCoding"]["code"], H.weight(o)) for o in item["answerOption"]]
        assert options == [("LA6568-5", 0), ("LA6569-3", 1), ("LA6570-1", 2), ("LA6571-9", 3)]
    total_codes = H.item_of(q, f"{id_}-total")["code"]
    if total:
        assert total_codes[0] == {"system": H.LOINC, "code": total}
    assert "No permission required to reproduce, translate, display or distribute" in q["copyright"]
    assert "loinc.org/license" in q["copyright"]


def test_whooley_cites_its_source() -> None:
    q = H.questionnaire("whooley")
    assert "Whooley MA" in q["copyright"] and "J Gen Intern Med 1997" in q["copyright"]
    assert [i["type"] for i in q["item"][:2]] == ["boolean", "boolean"]


def test_the_protocol_refers_to_shipped_questionnaires() -> None:
    plan = json.loads((H.CONTENT / "PlanDefinition-bib-stepped-screening.json").read_text())
    steps, issues = steps_of(plan)
    assert issues == []
    urls = {H.questionnaire(i)["url"] for i in QUESTIONNAIRES}
    assert {s.questionnaire for s in steps} == urls - {
        H.questionnaire("phq-2")["url"],
        H.questionnaire("phq-9")["url"],
    }
    for step in steps:
        assert step.conditions
        for target in step.targets:
            assert target.definition is None or target.definition in urls


async def test_metadata_lists_the_operations_and_sdc(fhir: httpx.AsyncClient) -> None:
    statement = (await fhir.get("/metadata")).json()
    assert (
        "http://hl7.org/fhir/uv/sdc/CapabilityStatement/sdc-form-manager"
        in statement["instantiates"]
    )
    resources = {r["type"]: r for r in statement["rest"][0]["resource"]}
    (populate,) = resources["Questionnaire"]["operation"]
    (extract,) = resources["QuestionnaireResponse"]["operation"]
    assert populate["name"] == "populate" and extract["name"] == "extract"
    for operation in (populate, extract):
        found = await fhir.get("/OperationDefinition", params={"url": operation["definition"]})
        (definition,) = found.json()["entry"]
        assert definition["resource"]["code"] == operation["name"]
        assert definition["resource"]["base"].startswith(
            "http://hl7.org/fhir/uv/sdc/OperationDefinition/"
        )
