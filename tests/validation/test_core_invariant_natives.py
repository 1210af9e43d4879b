"""The native checks that replace R4 invariants for speed agree with the published expression
(evaluated by the full FHIRPath engine) on valid and invalid samples."""

from __future__ import annotations

from typing import Any

import pytest

from fhir_server.definitions import load_r4
from fhir_server.validation.core_invariants import _NATIVE, Walk
from fhir_server.validation.invariants import Invariant


def r4_expression(key: str, path: str) -> str:
    for name in ("profiles-types", "profiles-resources"):
        for sd in load_r4(name):
            for element in sd["snapshot"]["element"]:
                if element["path"] != path:
                    continue
                for constraint in element.get("constraint", ()):
                    if constraint["key"] == key:
                        return constraint["expression"]
    raise KeyError(key)


def entry(resource_type: str, **extra: Any) -> dict[str, Any]:
    return {"fullUrl": f"urn:uuid:{resource_type}", "resource": {"resourceType": resource_type}}


SAMPLES: list[tuple[str, str, str, dict[str, Any]]] = [
    ("bdl-3", "Bundle", "Bundle", {"type": "transaction", "entry": [{"request": {}}]}),
    ("bdl-3", "Bundle", "Bundle", {"type": "transaction", "entry": [{"fullUrl": "x"}]}),
    ("bdl-3", "Bundle", "Bundle", {"type": "searchset", "entry": [{"request": {}}]}),
    ("bdl-3", "Bundle", "Bundle", {"type": "collection", "entry": [{"fullUrl": "x"}]}),
    ("bdl-4", "Bundle", "Bundle", {"type": "batch-response", "entry": [{"response": {}}]}),
    ("bdl-4", "Bundle", "Bundle", {"type": "batch-response", "entry": [{"fullUrl": "x"}]}),
    ("bdl-4", "Bundle", "Bundle", {"type": "document", "entry": [{"response": {}}]}),
    ("bdl-7", "Bundle", "Bundle", {"type": "collection", "entry": [entry("A"), entry("B")]}),
    ("bdl-7", "Bundle", "Bundle", {"type": "collection", "entry": [entry("A"), entry("A")]}),
    ("bdl-7", "Bundle", "Bundle", {"type": "history", "entry": [entry("A"), entry("A")]}),
    ("bdl-11", "Bundle", "Bundle", {"type": "document", "entry": [entry("Composition")]}),
    ("bdl-11", "Bundle", "Bundle", {"type": "document", "entry": [entry("Patient")]}),
    ("bdl-11", "Bundle", "Bundle", {"type": "document"}),
    ("bdl-11", "Bundle", "Bundle", {"type": "collection", "entry": [entry("Patient")]}),
    ("bdl-12", "Bundle", "Bundle", {"type": "message", "entry": [entry("MessageHeader")]}),
    ("bdl-12", "Bundle", "Bundle", {"type": "message", "entry": [entry("Patient")]}),
    (
        "que-2",
        "Questionnaire",
        "Questionnaire",
        {"item": [{"linkId": "a", "item": [{"linkId": "b"}]}, {"linkId": "c"}]},
    ),
    (
        "que-2",
        "Questionnaire",
        "Questionnaire",
        {"item": [{"linkId": "a", "item": [{"linkId": "a"}]}]},
    ),
]


@pytest.mark.parametrize(("key", "path", "fp_type", "value"), SAMPLES)
def test_native_agrees_with_the_r4_expression(
    key: str, path: str, fp_type: str, value: dict[str, Any]
) -> None:
    resource = {"resourceType": fp_type, **value}
    published = Invariant(key, "error", "", r4_expression(key, path))
    expected = published.evaluate_full(resource, fp_type, None, resource, resource)
    assert expected is None or not expected.startswith("could not"), expected
    got = _NATIVE[key](resource, Walk(resource, resource))
    assert (got is None) == (expected is None), (got, expected)
