"""ValueSet/$validate-code and CodeSystem/$validate-code over HTTP (GET and POST, type and
instance level): membership, displays in any language, abstract and case-insensitive codes,
codes the server cannot check, and errors."""

from __future__ import annotations

import pytest

from tests.http.fhir_helpers import assert_outcome
from tests.terminology.helpers import (
    CARE_LEVEL_VS,
    CARE_LINE_CS,
    CARE_LINE_VS,
    CONTACT_PERSON_CS,
    GENDER_VS,
    LINE_1,
    LOINC_VS,
    PATHWAY_CS,
    PATHWAY_VS,
    SNOMED,
    ok,
    param,
)


async def validate_vs(client, headers=None, **query):
    return await ok(client.get("/ValueSet/$validate-code", params=query, headers=headers or {}))


async def test_code_in_value_set(client):
    body = await validate_vs(client, url=CARE_LINE_VS, system=CARE_LINE_CS, code="line-1")
    assert body["resourceType"] == "Parameters"
    assert param(body, "result") is True
    assert param(body, "display") == LINE_1["en"]
    assert param(body, "message") is None


@pytest.mark.parametrize(("header", "language"), [("nl", "nl-BE"), ("fr-BE", "fr-BE"),
                                                   ("de", "de"), ("en", "en")])  # fmt: skip
async def test_returned_display_follows_accept_language(client, header, language):
    body = await validate_vs(
        client, {"Accept-Language": header}, url=CARE_LINE_VS, system=CARE_LINE_CS, code="line-1"
    )
    assert param(body, "display") == LINE_1[language]


async def test_code_not_in_value_set(client):
    body = await validate_vs(client, url=CARE_LEVEL_VS, system=CARE_LINE_CS, code="line-1")
    assert param(body, "result") is False
    assert "is not in" in param(body, "message")


async def test_code_without_system_is_found_in_the_value_set(client):
    body = await validate_vs(client, url=CARE_LINE_VS, code="line-2")
    assert param(body, "result") is True
    body = await validate_vs(client, url=CARE_LINE_VS, code="nope")
    assert param(body, "result") is False


@pytest.mark.parametrize(
    ("display", "valid"),
    [
        ("Line 1 (primary care)", True),
        ("line 1  (PRIMARY care)", True),  # case and spacing do not matter
        ("Première ligne", True),  # a designation in another language is a valid display
        ("Eerste lijn", True),
        ("Second line", False),
    ],
)
async def test_display_is_checked_against_all_designations(client, display, valid):
    body = await validate_vs(
        client, url=CARE_LINE_VS, system=CARE_LINE_CS, code="line-1", display=display
    )
    assert param(body, "result") is valid
    if not valid:
        assert "is not a display" in param(body, "message")


async def test_coding_in_get_form_and_instance_level(client):
    body = await ok(
        client.get(
            "/ValueSet/bib-care-line/$validate-code", params={"coding": f"{CARE_LINE_CS}|line-3"}
        )
    )
    assert param(body, "result") is True
    assert param(body, "display") == "Line 3 (tertiary care)"


async def test_post_codeable_concept_one_good_coding_is_enough(client):
    body = await ok(
        client.post(
            "/ValueSet/$validate-code",
            json={
                "resourceType": "Parameters",
                "parameter": [
                    {"name": "url", "valueUri": CARE_LEVEL_VS},
                    {
                        "name": "codeableConcept",
                        "valueCodeableConcept": {
                            "coding": [
                                {"system": CARE_LINE_CS, "code": "line-1"},
                                {"system": CARE_LINE_CS, "code": "basic"},
                            ]
                        },
                    },
                    {"name": "displayLanguage", "valueCode": "fr"},
                ],
            },
        )
    )
    assert param(body, "result") is True
    assert param(body, "display") == "Soins de base"


async def test_post_instance_level_with_coding(client):
    body = await ok(
        client.post(
            "/ValueSet/bib-care-level/$validate-code",
            json={
                "resourceType": "Parameters",
                "parameter": [
                    {"name": "coding", "valueCoding": {"system": CARE_LINE_CS, "code": "line-0"}}
                ],
            },
        )
    )
    assert param(body, "result") is False


async def test_abstract_code_needs_abstract_true(client):
    query = {"url": PATHWAY_VS, "system": PATHWAY_CS, "code": "vulnerability-pathway"}
    body = await validate_vs(client, **query)
    assert param(body, "result") is False
    assert "abstract" in param(body, "message")
    body = await validate_vs(client, **query, abstract="true")
    assert param(body, "result") is True


async def test_code_element_of_r4_core_value_set(client):
    body = await validate_vs(client, url=GENDER_VS, code="female")
    assert param(body, "result") is True
    assert param(body, "display") == "Female"


async def test_value_set_the_server_cannot_expand_says_so(client):
    body = await validate_vs(client, url=LOINC_VS, system="http://loinc.org", code="8867-4")
    assert param(body, "result") is False
    assert "http://loinc.org" in param(body, "message")
    assert "cannot be validated" in param(body, "message")


# -- CodeSystem/$validate-code --------------------------------------------------------------------


async def test_code_system_validate_get_and_post(client):
    body = await ok(
        client.get("/CodeSystem/$validate-code", params={"url": CARE_LINE_CS, "code": "line-2"})
    )
    assert param(body, "result") is True
    assert param(body, "display") == "Line 2 (secondary care)"
    body = await ok(
        client.post(
            "/CodeSystem/$validate-code",
            json={
                "resourceType": "Parameters",
                "parameter": [
                    {"name": "coding", "valueCoding": {"system": CARE_LINE_CS, "code": "line-9"}}
                ],
            },
        )
    )
    assert param(body, "result") is False
    assert "is not a code of" in param(body, "message")


async def test_code_system_validate_instance_level(client):
    body = await ok(
        client.get(
            "/CodeSystem/bib-care-line/$validate-code",
            params={"code": "line-1", "display": "Erste Linie"},
            headers={"Accept-Language": "de"},
        )
    )
    assert param(body, "result") is True
    assert param(body, "display") == "Erste Linie"


async def test_case_insensitive_code_system(client):
    # be-core CD-CONTACT-PERSON has caseSensitive = false
    body = await ok(
        client.get(
            "/CodeSystem/$validate-code",
            params={"url": CONTACT_PERSON_CS, "code": "Father"},
            headers={"Accept-Language": "fr"},
        )
    )
    assert param(body, "result") is True
    assert param(body, "display") == "père"  # from the BiB supplement
    body = await ok(
        client.get("/CodeSystem/$validate-code", params={"url": CARE_LINE_CS, "code": "LINE-1"})
    )
    assert param(body, "result") is False  # bib-care-line is case-sensitive


async def test_snomed_code_cannot_be_checked(client):
    body = await ok(
        client.get("/CodeSystem/$validate-code", params={"url": SNOMED, "code": "22298006"})
    )
    assert param(body, "result") is False
    assert "not available" in param(body, "message")


async def test_code_system_version_mismatch(client):
    body = await ok(
        client.get(
            "/CodeSystem/$validate-code",
            params={"url": CARE_LINE_CS, "code": "line-1", "version": "7.0"},
        )
    )
    assert param(body, "result") is False
    assert "version 7.0" in param(body, "message")


@pytest.mark.parametrize(
    ("path", "query", "status", "code"),
    [
        ("/ValueSet/$validate-code", {"url": CARE_LINE_VS}, 400, "invalid"),
        ("/ValueSet/$validate-code", {"code": "line-1"}, 400, "invalid"),
        ("/ValueSet/$validate-code", {"url": CARE_LINE_VS, "code": "a", "coding": "s|a"}, 400,
         "invalid"),
        ("/ValueSet/$validate-code", {"url": CARE_LINE_VS, "coding": "nobar"}, 400, "invalid"),
        ("/ValueSet/$validate-code", {"url": "http://example.org/vs", "code": "a"}, 404,
         "not-found"),
        ("/ValueSet/$validate-code", {"url": CARE_LINE_VS, "code": "a", "date": "2020"}, 400,
         "not-supported"),
        ("/CodeSystem/$validate-code", {"code": "line-1"}, 400, "invalid"),
        ("/CodeSystem/unknown/$validate-code", {"code": "line-1"}, 404, "not-found"),
        ("/ConceptMap/$validate-code", {"code": "x"}, 404, "not-supported"),
    ],
)  # fmt: skip
async def test_errors(client, path, query, status, code):
    assert_outcome(await client.get(path, params=query), status, code)


async def test_post_values_of_the_wrong_type_are_400(client):
    for parameter in (
        {"name": "codeableConcept", "valueCodeableConcept": [{"code": "line-1"}]},
        {"name": "code", "valueCode": 12},
        {"name": "abstract", "valueBoolean": 1},
    ):
        response = await client.post(
            "/ValueSet/bib-care-line/$validate-code",
            json={"resourceType": "Parameters", "parameter": [parameter]},
        )
        assert_outcome(response, 400, "invalid")
