"""The shipped profiles: one source of truth, complete snapshots, consistent canonical URLs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from fhir_server.validation.profiles import ProfileValidator
from fhir_server.validation.registry import DefinitionRegistry
from fhir_server.validation.snapshot import generate_snapshot
from tools.import_be_core import digest

ROOT = Path(__file__).resolve().parents[2]
PROFILES = ROOT / "profiles"
BIB_BASE = "https://borninbelgiumpro.be/fhir/"
BE_BASE = "https://www.ehealth.fgov.be/standards/fhir/core/"
# descriptive texts the build tool fills in from the full R4 definitions (not packaged)
TEXT_KEYS = ("short", "definition", "isModifierReason")


def _files(folder: str, prefix: str = "StructureDefinition-") -> list[Path]:
    return sorted((PROFILES / folder).glob(f"{prefix}*.json"))


def _json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def _computable(elements: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for element in elements:
        element = {k: v for k, v in element.items() if k not in TEXT_KEYS}
        if "binding" in element:
            element["binding"] = {k: v for k, v in element["binding"].items() if k != "description"}
        out.append(element)
    return out


@pytest.mark.parametrize("path", _files("bib"), ids=lambda p: p.stem)
def test_bib_snapshot_is_generated_from_the_differential(path: Path) -> None:
    """The differential is the source: run ``python tools/build_profiles.py --r4
    ../shared/fhir-r4`` after changing it."""
    registry = DefinitionRegistry.shipped()
    sd = _json(path)
    generated = generate_snapshot(sd, registry.get, registry.type_definition)
    assert _computable(generated) == _computable(sd["snapshot"]["element"])


@pytest.mark.parametrize("path", _files("bib") + _files("be-core"), ids=lambda p: p.stem)
def test_snapshots_are_complete(path: Path) -> None:
    sd = _json(path)
    elements = sd["snapshot"]["element"]
    assert elements[0]["path"] == sd["type"]
    ids = [e["id"] for e in elements]
    assert len(ids) == len(set(ids)), "element ids are unique (sdf-16)"
    for element in elements:
        assert element["path"].split(".")[0] == sd["type"]
        for key in ("min", "max", "base", "definition"):
            assert key in element, f"{element['id']} has no {key} (sdf-3, sdf-8b)"
    assert not any(k.startswith("__") for k in sd), "SUSHI build fields are stripped"


@pytest.mark.parametrize("path", _files("bib"), ids=lambda p: p.stem)
def test_bib_canonical_urls(path: Path) -> None:
    sd = _json(path)
    assert sd["url"] == f"{BIB_BASE}StructureDefinition/{sd['id']}"
    assert path.name == f"StructureDefinition-{sd['id']}.json"
    assert sd["id"].startswith("bib-")
    assert sd["fhirVersion"] == "4.0.1" and sd["derivation"] == "constraint"
    assert sd["publisher"] == "Born in Belgium Professionals"
    for element in sd["differential"]["element"]:
        for constraint in element.get("constraint", ()):
            if constraint["key"].startswith("bib-"):
                assert constraint["source"] == sd["url"]
        for type_ref in element.get("type", ()):
            for url in type_ref.get("profile", []) + type_ref.get("targetProfile", []):
                assert url.startswith((BIB_BASE, BE_BASE, "http://hl7.org/fhir/")), url


def test_every_referenced_profile_and_value_set_is_known() -> None:
    validator = ProfileValidator()
    for path in _files("bib") + _files("be-core"):
        sd = _json(path)
        profile = validator.compiled(sd["url"])
        assert profile is not None, sd["url"]
        for element in sd["snapshot"]["element"]:
            for type_ref in element.get("type", ()):
                for url in type_ref.get("profile", []) + type_ref.get("targetProfile", []):
                    assert validator.knows(url), f"{sd['id']} {element['id']}: {url}"
            binding = element.get("binding") or {}
            if binding.get("strength") == "required" and binding.get("valueSet", "").startswith(
                (BIB_BASE, BE_BASE)
            ):
                vs = binding["valueSet"]
                assert validator.terminology.expansion(vs) is not None, f"{element['id']}: {vs}"


def test_readme_lists_every_profile() -> None:
    readme = (PROFILES / "README.md").read_text(encoding="utf-8")
    for path in _files("bib") + _files("be-core"):
        assert _json(path)["url"] in readme, path.name


@pytest.mark.parametrize(
    "path", _files("be-core") + _files("be-core", "NamingSystem-"), ids=lambda p: p.stem
)
def test_be_core_files_are_the_upstream_artefacts(path: Path) -> None:
    """The copies equal the be-core 2.1.2 artefacts as imported by tools/import_be_core.py,
    which recorded a fingerprint of each upstream file (without SUSHI build fields)."""
    sums = dict(
        reversed(line.split("  ", 1))
        for line in (PROFILES / "be-core" / "UPSTREAM-SHA256.txt").read_text().splitlines()
    )
    assert digest(_json(path)) == sums[path.name]


def test_naming_systems() -> None:
    names = {p.stem for p in _files("be-core", "NamingSystem-")}
    assert {"NamingSystem-be-ssin", "NamingSystem-be-nihdi", "NamingSystem-be-cbe"} <= names
    ns = _json(PROFILES / "bib" / "NamingSystem-bib-alternative-patient-number.json")
    assert ns["uniqueId"][0]["value"] == f"{BIB_BASE}NamingSystem/alternative-patient-number"
