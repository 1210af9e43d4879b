"""Parameters and composite components skipped by their JSON keys (issue 18): an Observation
with a valueQuantity no longer evaluates code-value-string, -date and -concept, value-date or
value-concept. The rows must be exactly those of the extraction that evaluates every parameter
and component, for every value[x] type, components, useContext values and every resource
shipped with the server."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from fhir_server.search.extract import Extractor
from fhir_server.search.registry import build_r4_registry

ROOT = Path(__file__).resolve().parents[2]
TABLES = ("strings", "tokens", "references", "dates", "numbers", "quantities", "uris", "geo")
CODE = {"coding": [{"system": "http://loinc.org", "code": "8867-4", "display": "Heart rate"}]}
VALUES = {
    "valueQuantity": {"value": 72, "unit": "/min", "system": "http://unitsofmeasure.org"},
    "valueCodeableConcept": CODE,
    "valueString": "seventy-two",
    "valueBoolean": True,
    "valueInteger": 72,
    "valueRange": {"low": {"value": 1}, "high": {"value": 2}},
    "valueRatio": {"numerator": {"value": 1}, "denominator": {"value": 2}},
    "valueSampledData": {"origin": {"value": 0}, "period": 1, "dimensions": 1, "data": "1 2"},
    "valueTime": "10:00:00",
    "valueDateTime": "2024-03-01T10:00:00+01:00",
    "valuePeriod": {"start": "2024-03-01", "end": "2024-03-02"},
}


def observations() -> Iterator[dict]:
    for key, value in VALUES.items():
        base = {"resourceType": "Observation", "id": "o", "status": "final", "code": CODE}
        yield {**base, key: value}
        yield {**base, "component": [{"code": CODE, key: value}, {"code": CODE}]}
        yield {**base, key: value, "component": [{"code": CODE, k: v} for k, v in VALUES.items()]}
        yield {**base, "_" + key: {"extension": []}} if key != "valueQuantity" else base
        no_code = {k: v for k, v in base.items() if k != "code"}
        yield {**no_code, key: value, "component": [{key: value}]}


def shipped() -> Iterator[dict]:
    folders = [ROOT / "fhir_server" / "demo", ROOT / "content"]
    for folder in folders:
        for path in sorted(folder.rglob("*.json")):
            try:
                data = json.loads(path.read_text())
            except (UnicodeDecodeError, json.JSONDecodeError):
                continue
            stack = [data]
            while stack:
                item = stack.pop()
                if isinstance(item, dict) and isinstance(item.get("resourceType"), str):
                    if item["resourceType"] == "Bundle":
                        stack.extend(e.get("resource") for e in item.get("entry", ()))
                    else:
                        yield item
                elif isinstance(item, list):
                    stack.extend(item)


def use_context() -> Iterator[dict]:
    for key, value in VALUES.items():
        yield {
            "resourceType": "Questionnaire",
            "status": "active",
            "useContext": [
                {
                    "code": {
                        "system": "http://terminology.hl7.org/CodeSystem/usage-context-type",
                        "code": "age",
                    },
                    key: value,
                }
            ],
        }


@pytest.fixture(scope="module")
def extractors() -> tuple[Extractor, Extractor]:
    fast = build_r4_registry()
    slow = build_r4_registry()
    for params in slow._by_type.values():  # copies: the R4 parameters are shared
        for code, param in params.items():
            # every component and every ofType parameter evaluated (other parameters keep the
            # roots they had before: `Patient.deceased.exists() and ...` is false, not empty,
            # on a Patient without deceased[x], and was skipped before as now)
            typed = "ofType(" in (param.expression or "")
            params[code] = dataclasses.replace(
                param,
                roots=None if typed else param.roots,
                probe=None if typed else param.probe,
                components=tuple(dataclasses.replace(c, keys=None) for c in param.components),
            )
    slow._indexed.clear()
    return Extractor(fast, "http://x/fhir"), Extractor(slow, "http://x/fhir")


def rows(extractor: Extractor, resource: dict) -> dict[str, list[str]]:
    found = extractor.extract(resource)
    return {t: sorted(map(repr, getattr(found, t))) for t in TABLES}


def test_probes_change_no_row(extractors: tuple[Extractor, Extractor]) -> None:
    fast, slow = extractors
    resources = [*observations(), *use_context(), *shipped()]
    assert len(resources) > 100
    composite_rows = 0
    for resource in resources:
        expected = rows(slow, resource)
        assert rows(fast, resource) == expected, json.dumps(resource)[:300]
        composite_rows += sum("$" in r for t in expected.values() for r in t)
    assert composite_rows > 50  # the comparison covers composites that do produce rows


def test_an_observation_with_a_quantity_skips_the_other_composites() -> None:
    registry = build_r4_registry()
    params = registry.params_for("Observation")
    keys = {code: params[code].components[1].keys for code in params if "code-value-" in code}
    assert keys["code-value-string"] is not None
    assert keys["code-value-string"].isdisjoint({"valueQuantity"})
    assert keys["code-value-date"].isdisjoint({"valueQuantity"})
    assert not keys["code-value-quantity"].isdisjoint({"valueQuantity"})
    assert not keys["code-value-quantity"].isdisjoint({"valueAge"})  # a Quantity too
    assert not keys["code-value-date"].isdisjoint({"valueDateTime"})


def test_of_type_roots_name_only_that_type() -> None:
    params = build_r4_registry().params_for("Observation")
    roots = params["value-date"].roots
    assert {"valueDateTime", "valuePeriod"} <= roots  # and, conservatively, other primitives
    assert "valueQuantity" not in roots and "valueCodeableConcept" not in roots
    assert "valueQuantity" not in params["value-concept"].roots
    assert "component" in params["combo-value-concept"].roots  # the components' values too
