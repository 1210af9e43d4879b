"""Language negotiation and the catalog's supplement handling, without HTTP."""

from __future__ import annotations

import pytest

from fhir_server.errors import FhirError
from fhir_server.terminology.catalog import Catalog, default_catalog
from fhir_server.terminology.languages import (
    designation_for,
    parse_accept_language,
    pick_display,
    requested_languages,
)
from tests.terminology.helpers import CONTACT_PERSON_CS

DESIGNATIONS = [
    {"language": "nl-BE", "value": "Vroedvrouw"},
    {"language": "fr-BE", "value": "Sage-femme"},
    {"language": "en", "value": "Midwife"},
    {"language": "de", "value": "Hebamme"},
    {
        "language": "nl-BE",
        "use": {"system": "http://snomed.info/sct", "code": "900000000000013009"},
        "value": "Verloskundige",
    },
]


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, []),
        ("", []),
        ("nl-BE", ["nl-BE"]),
        ("fr-CH, fr;q=0.9, en;q=0.8, de;q=0.7, *;q=0.5", ["fr-CH", "fr", "en", "de"]),
        ("de;q=0.1, nl;q=0.8, fr", ["fr", "nl", "de"]),
        ("en;q=0, nl", ["nl"]),
        ("nl;q=abc, fr", ["fr"]),
        ("12, ,;q=1, f r, nl", ["nl"]),
    ],
)
def test_parse_accept_language(header, expected):
    assert parse_accept_language(header) == expected


def test_display_language_parameter_replaces_the_header():
    assert requested_languages("de", "nl, fr") == ["de"]
    assert requested_languages(None, "nl, fr") == ["nl", "fr"]
    with pytest.raises(FhirError):
        requested_languages("not a tag!", None)


@pytest.mark.parametrize(
    ("languages", "expected"),
    [
        (["nl"], "Vroedvrouw"),  # the preferred term, not the synonym
        (["nl-NL"], "Vroedvrouw"),  # same primary language
        (["fr-BE"], "Sage-femme"),
        (["de-AT"], "Hebamme"),
        (["es", "de"], "Hebamme"),
        (["es"], "midwife (display)"),
        ([], "midwife (display)"),
    ],
)
def test_pick_display(languages, expected):
    assert pick_display(DESIGNATIONS, "midwife (display)", languages) == expected


def test_display_language_of_the_code_system_is_used_for_its_display():
    only_nl = [{"language": "nl-BE", "value": "Vroedvrouw"}]
    assert pick_display(only_nl, "Midwife", ["en", "nl"], "en") == "Midwife"
    assert pick_display(only_nl, "Midwife", ["en", "nl"], None) == "Vroedvrouw"


def test_exact_tag_beats_primary_language():
    designations = [
        {"language": "fr", "value": "générique"},
        {"language": "fr-BE", "value": "belge"},
    ]
    assert designation_for(designations, "fr-BE")["value"] == "belge"
    assert designation_for(designations, "fr")["value"] == "générique"


# -- catalog -------------------------------------------------------------------------------------

BASE_CS = {
    "resourceType": "CodeSystem",
    "url": "http://example.org/cs",
    "version": "2",
    "status": "active",
    "content": "complete",
    "concept": [{"code": "a", "display": "A"}, {"code": "b", "display": "B"}],
}
SUPPLEMENT = {
    "resourceType": "CodeSystem",
    "url": "http://example.org/cs-nl",
    "status": "active",
    "content": "supplement",
    "supplements": "http://example.org/cs|2",
    "concept": [{"code": "a", "designation": [{"language": "nl-BE", "value": "Aa"}]}],
}


def test_supplement_added_before_or_after_its_code_system():
    for order in ((BASE_CS, SUPPLEMENT), (SUPPLEMENT, BASE_CS)):
        catalog = Catalog()
        for resource in order:
            catalog.add(resource)
        assert "http://example.org/cs-nl" not in catalog.code_systems
        concept = catalog.concept("http://example.org/cs", "a")
        assert concept is not None
        assert concept.designations == [{"language": "nl-BE", "value": "Aa"}]
        catalog.remove("CodeSystem", "http://example.org/cs-nl")
        assert catalog.concept("http://example.org/cs", "a").designations == []
    assert BASE_CS["concept"][0].get("designation") is None  # the resource is not changed


def test_supplement_for_another_version_is_not_applied():
    catalog = Catalog()
    catalog.add({**BASE_CS, "version": "3"})
    catalog.add(SUPPLEMENT)
    assert catalog.concept("http://example.org/cs", "a").designations == []


def test_copies_do_not_change_the_packaged_catalog():
    packaged = default_catalog()
    copy = packaged.copy()
    copy.add({**BASE_CS, "url": CONTACT_PERSON_CS, "concept": [{"code": "x", "display": "X"}]})
    assert copy.concept(CONTACT_PERSON_CS, "x") is not None
    assert packaged.concept(CONTACT_PERSON_CS, "x") is None
    assert packaged.concept(CONTACT_PERSON_CS, "father") is not None


def test_expansion_problem_names_the_missing_code_system():
    catalog = default_catalog()
    assert catalog.expansion_problem("http://hl7.org/fhir/ValueSet/administrative-gender") is None
    problem = catalog.expansion_problem("http://hl7.org/fhir/ValueSet/observation-codes")
    assert "http://loinc.org" in problem
    assert "not known" in catalog.expansion_problem("http://example.org/none")


def test_every_shipped_concept_map_is_in_the_catalog():
    maps = default_catalog().concept_maps
    assert "https://borninbelgiumpro.be/fhir/ConceptMap/bib-nis-municipality-to-region" in maps
    assert "https://borninbelgiumpro.be/fhir/ConceptMap/bib-practitioner-type-to-cd-hcparty" in maps
