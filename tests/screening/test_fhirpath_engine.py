# ruff: noqa: E501  (test tables read better on one line)
"""The FHIRPath forms the screening content relies on, on the server's engine (docs/fhirpath.md),
evaluated as content is: leniently (``strict=False``: the JSON choice names SDC tools write).

The shipped content reads the weights the server puts on the answers
(``answer.valueCoding.extension(itemWeight).valueDecimal``) and sums with
``aggregate($this + $total, 0)``; content from other SDC tools writes ``weight()`` and
``sum()`` (SDC and FHIRPath 2.0, not R4), which the engine has too (fhirpath/aggregates.py).
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


def test_weight_and_sum() -> None:
    """SDC weight() reads itemWeight on the answer's Coding; sum() adds (0 for nothing)."""
    assert run("%resource.item.item.answer.value.weight().sum()", RESPONSE) == [3]
    assert run("%resource.item.item.answer.value.ordinal().sum()", RESPONSE) == [3]
    assert run(
        "%resource.item.item.where(linkId = 'none').answer.value.weight().sum()", RESPONSE
    ) == [0]


def test_weight_from_the_questionnaire() -> None:
    """Without a weight on the answer, weight() finds it on %questionnaire's answerOption."""
    bare = {"linkId": "q", "answer": [{"valueCoding": {"system": "s", "code": "a"}}]}
    assert run("answer.value.weight()", bare) == [2]
    unknown = {"linkId": "q", "answer": [{"valueCoding": {"system": "s", "code": "zz"}}]}
    assert run("answer.value.weight()", unknown) == []


def test_aggregates() -> None:
    values = "(3 | 1 | 2)"
    assert run(f"{values}.sum()", GROUP) == [6]
    assert run(f"{values}.min()", GROUP) == [1]
    assert run(f"{values}.max()", GROUP) == [3]
    assert run(f"{values}.avg()", GROUP) == [2]
    assert run("{}.min()", GROUP) == []
    assert run("{}.avg()", GROUP) == []
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
