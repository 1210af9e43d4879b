# ruff: noqa: E501  (test tables read better on one line)
"""What today's FHIRPath engine (fhirpathpy behind ``fhir_server.fhirpath``) gets wrong for SDC,
written as tests of the right answer, marked xfail(strict): they fail today and start passing
(so the strict marker fails the run and the marker must go) when the new engine lands.

The shipped content avoids these forms: it reads the weights the server puts on the answers
(``answer.valueCoding.extension(itemWeight).valueDecimal``) instead of ``weight()``, sums with
``aggregate($this + $total, 0)`` instead of ``sum()``, names choice types (``valueBoolean``,
``valueCoding``) instead of ``value`` when the focus is an item, and compares booleans with
``= true`` in ``where``.
"""

from __future__ import annotations

import pytest

from fhir_server import fhirpath

W = "http://hl7.org/fhir/StructureDefinition/itemWeight"
QUESTIONNAIRE = {
    "resourceType": "Questionnaire",
    "item": [
        {
            "linkId": "q",
            "type": "choice",
            "answerOption": [
                {"valueCoding": {"system": "s", "code": "a"}, "extension": [{"url": W, "valueDecimal": 2}]}
            ],
        }
    ],
}  # fmt: skip
GROUP = {
    "linkId": "g",
    "item": [
        {"linkId": "q1", "answer": [{"valueCoding": {"system": "s", "code": "a", "extension": [{"url": W, "valueDecimal": 2}]}}]},
        {"linkId": "q2", "answer": [{"valueCoding": {"system": "s", "code": "a", "extension": [{"url": W, "valueDecimal": 1}]}}]},
        {"linkId": "f", "answer": [{"valueBoolean": False}]},
    ],
}  # fmt: skip
RESPONSE = {"resourceType": "QuestionnaireResponse", "status": "completed", "item": [GROUP]}


def run(expression: str, focus: dict) -> list:
    return fhirpath.evaluate(
        expression, focus, {"resource": RESPONSE, "questionnaire": QUESTIONNAIRE}
    )


def test_what_the_content_uses_works() -> None:
    assert run(
        f"item.answer.valueCoding.extension('{W}').valueDecimal.aggregate($this + $total, 0)", GROUP
    ) == [3]
    assert run("%resource.item.item.where(answer.valueBoolean = true).linkId", RESPONSE) == []


@pytest.mark.xfail(strict=True, reason="fhirpathpy has no weight() (SDC), raises 'Not implemented'")
def test_weight() -> None:
    assert run("%resource.item.item.answer.value.weight().sum()", RESPONSE) == [3]


@pytest.mark.xfail(strict=True, reason="fhirpathpy's sum() fails on values read from a resource")
def test_sum() -> None:
    assert run(
        f"%resource.item.item.answer.valueCoding.extension('{W}').valueDecimal.sum()", RESPONSE
    ) == [3]


@pytest.mark.xfail(strict=True, reason="fhirpathpy resolves choice types only from a resource root")
def test_choice_type_on_an_item() -> None:
    assert run("item.where(linkId = 'f').answer.value", GROUP) == [False]


@pytest.mark.xfail(strict=True, reason="fhirpathpy's where() keeps items whose criterion is false")
def test_where_with_a_false_criterion() -> None:
    assert run("%resource.item.item.where(answer.valueBoolean).linkId", RESPONSE) == []


def test_check_refuses_syntax_errors() -> None:
    """fhirpathpy's parser reports nothing; ``fhir_server.fhirpath.check`` now parses strictly."""
    for text in ("%resource.item.where(linkId = 'a'", "(((", "a..b", "%a.b)", "%weeks"):
        with pytest.raises(fhirpath.FhirPathError):
            fhirpath.check(text)
    fhirpath.check("%`weeks`.count() > 2")
