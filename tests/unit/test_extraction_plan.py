"""Which search parameters extraction evaluates, and the shortcuts that let it skip the rest.

Extraction runs on every write, so it skips a parameter without evaluating its expression when
the resource cannot have a value for it: when the resource lacks the expression's first member
(``roots``) or, for paths through one object such as ``meta``, the member inside it (``probe``).
These tests check that a skip never loses a value.
"""

from __future__ import annotations

import pytest

from fhir_server.search.extract import Extractor
from fhir_server.search.registry import build_r4_registry

META = {"versionId": "1", "lastUpdated": "2026-11-24T08:00:00.000+00:00"}


@pytest.fixture(scope="module")
def registry():
    return build_r4_registry()


@pytest.fixture(scope="module")
def extractor(registry):
    return Extractor(registry, "http://localhost/fhir")


def codes(rows) -> set[str]:
    found: set[str] = set()
    for kind in ("strings", "tokens", "references", "dates", "numbers", "quantities", "uris"):
        found.update(row[0] for row in getattr(rows, kind))
    return found


def test_meta_parameters_probe_inside_meta(registry):
    for code, key in (("_profile", "profile"), ("_tag", "tag"), ("_security", "security")):
        probe = registry.get("Patient", code).probe
        assert probe is not None and probe[0] == "meta"
        assert {key, "_" + key} <= probe[1]  # a primitive's extension-only "_key" counts too
    assert registry.get("Patient", "name").probe is None  # name repeats: no single object


def test_a_plain_meta_yields_no_meta_values(extractor):
    patient = {"resourceType": "Patient", "id": "p", "meta": META, "gender": "female"}
    assert codes(extractor.extract(patient)) == {"_lastUpdated", "gender"}


def test_every_meta_value_is_still_indexed(extractor):
    meta = {
        **META,
        "profile": ["https://example.org/StructureDefinition/bib-patient"],
        "tag": [{"system": "https://example.org/tags", "code": "bib"}],
        "security": [
            {"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "R"}
        ],
        "source": "https://example.org/epd",
    }
    rows = extractor.extract({"resourceType": "Patient", "id": "p", "meta": meta})
    assert {"_profile", "_tag", "_security", "_source"} <= codes(rows)
    assert ("_tag", "https://example.org/tags", "bib", 0) in rows.tokens


def test_a_single_address_probes_its_parts(extractor, registry):
    probe = registry.get("Location", "address-city").probe
    assert probe == ("address", frozenset({"city", "_city"}))
    with_city = {"resourceType": "Location", "id": "l", "address": {"city": "Gent"}}
    without = {"resourceType": "Location", "id": "l", "address": {"postalCode": "9000"}}
    assert ("address-city", "gent", "Gent", 0) in extractor.extract(with_city).strings
    rows = extractor.extract(without)
    assert "address-city" not in codes(rows)
    assert "address-postalcode" in codes(rows)


def test_indexed_parameters_follow_added_and_removed_definitions(registry):
    local = build_r4_registry(registry.model)
    before = {p.code for p in local.indexed_params("Patient")}
    assert "_id" not in before and "gender" in before
    url = "https://example.org/SearchParameter/patient-nickname"
    local.add_definition(
        {
            "resourceType": "SearchParameter",
            "url": url,
            "code": "nickname",
            "base": ["Patient"],
            "type": "string",
            "expression": "Patient.name.given",
        }
    )
    assert "nickname" in {p.code for p in local.indexed_params("Patient")}
    local.remove_definition(url)
    assert {p.code for p in local.indexed_params("Patient")} == before
    assert "nickname" not in {p.code for p in registry.indexed_params("Patient")}
