"""Building screening responses the way a form filler would: by choosing answer options of the
shipped Questionnaires (read from content/screening, as a client reads them from the server)."""

from __future__ import annotations

import copy
import json
from functools import cache
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
CONTENT = ROOT / "content" / "screening"
BIB = "https://borninbelgiumpro.be/fhir"
INDICATOR = f"{BIB}/CodeSystem/bib-vulnerability-indicator"
ITEM_WEIGHT = "http://hl7.org/fhir/StructureDefinition/itemWeight"
LOINC = "http://loinc.org"


@cache
def _questionnaire(id_: str) -> str:
    return (CONTENT / f"Questionnaire-{id_}.json").read_text()


def questionnaire(id_: str) -> dict[str, Any]:
    return json.loads(_questionnaire(id_))


def canonical(id_: str) -> str:
    q = questionnaire(id_)
    return f"{q['url']}|{q['version']}"


def walk(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for item in items:
        out.append(item)
        out.extend(walk(item.get("item", [])))
    return out


def item_of(q: dict[str, Any], link_id: str) -> dict[str, Any]:
    for item in walk(q["item"]):
        if item["linkId"] == link_id:
            return item
    raise KeyError(link_id)


def weight(option: dict[str, Any]) -> float:
    return next(e["valueDecimal"] for e in option["extension"] if e["url"] == ITEM_WEIGHT)


def option_with_weight(q: dict[str, Any], link_id: str, points: float) -> dict[str, Any]:
    """The Coding of the answer option of ``link_id`` worth ``points`` (first such option)."""
    for option in item_of(q, link_id)["answerOption"]:
        if weight(option) == points:
            coding = option["valueCoding"]
            return {"system": coding["system"], "code": coding["code"]}
    raise KeyError(f"{link_id} has no option worth {points}")


def option_at(q: dict[str, Any], link_id: str, index: int) -> dict[str, Any]:
    coding = item_of(q, link_id)["answerOption"][index]["valueCoding"]
    return {"system": coding["system"], "code": coding["code"]}


def response(
    id_: str,
    items: list[dict[str, Any]],
    patient: str = "p1",
    status: str = "completed",
    author: str | None = "Practitioner/mw-1",
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "resourceType": "QuestionnaireResponse",
        "questionnaire": canonical(id_),
        "status": status,
        "subject": {"reference": f"Patient/{patient}"},
        "authored": "2026-11-20T10:00:00+01:00",
        "item": items,
    }
    if author:
        out["author"] = {"reference": author}
    return out


def coded(link_id: str, coding: dict[str, Any]) -> dict[str, Any]:
    return {"linkId": link_id, "answer": [{"valueCoding": dict(coding)}]}


def scored(id_: str, points: list[float], **kw: Any) -> dict[str, Any]:
    """A completed response to a frequency instrument (GAD, PHQ) or the EPDS, with the given
    points per item (in item order)."""
    q = questionnaire(id_)
    items = [
        coded(f"{id_}-{i}", option_with_weight(q, f"{id_}-{i}", p)) for i, p in enumerate(points, 1)
    ]
    return response(id_, items, **kw)


def epds_by_position(positions: list[int], **kw: Any) -> dict[str, Any]:
    """An EPDS response choosing, for each item, the option at that position (0 = the first
    option as printed), so reverse scoring shows."""
    q = questionnaire("epds")
    items = [coded(f"epds-{i}", option_at(q, f"epds-{i}", p)) for i, p in enumerate(positions, 1)]
    return response("epds", items, **kw)


def whooley(first: bool, second: bool, **kw: Any) -> dict[str, Any]:
    items = [
        {"linkId": "whooley-1", "answer": [{"valueBoolean": first}]},
        {"linkId": "whooley-2", "answer": [{"valueBoolean": second}]},
    ]
    return response("whooley", items, **kw)


BIB_INDICATORS = [
    "country-of-birth", "education", "anxiety", "employment-status", "partner-employment-status",
    "communication", "income", "social-support", "residence-status", "depression", "housing",
    "substance-use", "violence",
]  # fmt: skip


def bib(points: dict[str, list[float]] | None = None, consent: bool = True, **kw: Any) -> dict:
    """A completed BiB screening: the consent, then every question answered with the option
    worth the given points (default: the option worth 0)."""
    q = questionnaire("bib-psychosocial-screening")
    points = points or {}
    items: list[dict[str, Any]] = [
        {
            "linkId": "consent",
            "item": [
                {"linkId": "consent-informed", "answer": [{"valueBoolean": True}]},
                {"linkId": "consent-given", "answer": [{"valueBoolean": consent}]},
            ],
        }
    ]
    if consent:
        for group in q["item"]:
            code = group["linkId"]
            if code not in BIB_INDICATORS:
                continue
            questions = [i for i in group["item"] if i["type"] == "choice"]
            wanted = points.get(code, [0] * len(questions))
            items.append(
                {
                    "linkId": code,
                    "item": [
                        coded(item["linkId"], option_with_weight(q, item["linkId"], p))
                        for item, p in zip(questions, wanted, strict=True)
                    ],
                }
            )
    return response("bib-psychosocial-screening", items, **kw)


def answer_of(resource: dict[str, Any], link_id: str) -> Any:
    """The value of the first answer to ``link_id`` anywhere in a response."""

    def search(items: list[dict[str, Any]]) -> Any:
        for item in items:
            if item.get("linkId") == link_id and item.get("answer"):
                answer = item["answer"][0]
                return next(v for k, v in answer.items() if k.startswith("value"))
            found = search(item.get("item", []))
            if found is not None:
                return found
            for answer in item.get("answer", []):
                found = search(answer.get("item", []))
                if found is not None:
                    return found
        return None

    return search(resource.get("item", []))


def without(resource: dict[str, Any], link_id: str) -> dict[str, Any]:
    """A copy of a response without the answers of ``link_id`` (e.g. the computed total)."""
    out = copy.deepcopy(resource)

    def strip(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        kept = []
        for item in items:
            if item.get("linkId") == link_id:
                continue
            if "item" in item:
                item["item"] = strip(item["item"])
            for answer in item.get("answer", []):
                if "item" in answer:
                    answer["item"] = strip(answer["item"])
            kept.append(item)
        return kept

    out["item"] = strip(out.get("item", []))
    return out
