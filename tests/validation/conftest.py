"""Shared fixtures for the profile-validation tests: one validator per session, the examples."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from fhir_server.errors import Issue
from fhir_server.validation.profiles import ProfileValidator

EXAMPLES = Path(__file__).resolve().parent / "examples"
BE_CORE_EXAMPLES = Path(__file__).resolve().parents[1] / "data" / "be-core"
BIB = "https://borninbelgiumpro.be/fhir/StructureDefinition/"
BE = "https://www.ehealth.fgov.be/standards/fhir/core/StructureDefinition/"


def example(name: str) -> dict[str, Any]:
    """A fresh copy of ``examples/<name>.json`` (e.g. ``Patient-bib-example-patient-rrn``)."""
    return copy.deepcopy(_load(name))


_CACHE: dict[str, dict[str, Any]] = {}


def _load(name: str) -> dict[str, Any]:
    if name not in _CACHE:
        _CACHE[name] = json.loads((EXAMPLES / f"{name}.json").read_text(encoding="utf-8"))
    return _CACHE[name]


def example_names() -> list[str]:
    return sorted(p.stem for p in EXAMPLES.glob("*.json"))


def errors(issues: list[Issue]) -> list[Issue]:
    return [i for i in issues if i.severity in ("error", "fatal")]


@pytest.fixture(scope="session")
def validator() -> ProfileValidator:
    return ProfileValidator()
