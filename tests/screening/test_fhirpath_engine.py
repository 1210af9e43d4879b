# ruff: noqa: E501  (test tables read better on one line)
"""The FHIRPath forms the screening content relies on, on the server's engine (docs/fhirpath.md),
evaluated as content is: leniently (``strict=False``: the JSON choice names SDC tools write).

The shipped content reads the weights the server puts on the answers
(``answer.valueCoding.extension(itemWeight).valueDecimal``) and sums with
``aggregate($this + $total, 0)``: the R5/SDC functions ``weight()`` and ``sum()`` are not R4
FHIRPath and the engine does not have them (marked xfail(strict), so adding them flags here).
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
        expression, focus, {"resource": RESPONSE, "questionnaire": QUESTIONNAIRE}, strict=False
    )


def test_what_the_content_uses_works() -> None:
    assert run(
        f"item.answer.valueCoding.extension('{W}').valueDecimal.aggregate($this + $total, 0)", GROUP
    ) == [3]
    assert run("%resource.item.item.where(answer.valueBoolean = true).linkId", RESPONSE) == []


@pytest.mark.xfail(strict=True, reason="weight() is SDC / FHIRPath 2.0, not R4: not in the engine")
def test_weight() -> None:
    assert run("%resource.item.item.answer.value.weight().sum()", RESPONSE) == [3]


@pytest.mark.xfail(strict=True, reason="sum() is FHIRPath 2.0 (R5), not R4: not in the engine")
def test_sum() -> None:
    assert run(
        f"%resource.item.item.answer.valueCoding.extension('{W}').valueDecimal.sum()", RESPONSE
    ) == [3]


def test_choice_type_on_an_item() -> None:
    assert run("item.where(linkId = 'f').answer.value", GROUP) == [False]


def test_where_with_a_false_criterion() -> None:
    assert run("%resource.item.item.where(answer.valueBoolean).linkId", RESPONSE) == []


def test_check_refuses_syntax_errors() -> None:
    """Syntax errors are refused when content is written (an unknown %variable is not one: it
    is an error when evaluated)."""
    for text in ("%resource.item.where(linkId = 'a'", "(((", "a..b", "%a.b)", "%"):
        with pytest.raises(fhirpath.FhirPathError):
            fhirpath.check(text)
    fhirpath.check("%`weeks`.count() > 2")
