"""ConceptMap/$translate over HTTP with the shipped maps (mappings/) and maps created through the
REST API: forward and reverse, target system, displays in the requested language, and errors."""

from __future__ import annotations

import pytest

from tests.http.fhir_helpers import assert_outcome
from tests.terminology.helpers import (
    BIB,
    CD_HCPARTY,
    NIS_MAP,
    NIS_MUNICIPALITY,
    PRACTITIONER_CS,
    PRACTITIONER_MAP,
    REGION_CS,
    SNOMED,
    ok,
    param,
    params_named,
    parts,
)


def matches(body: dict) -> list[tuple[str, str, str | None, str]]:
    """(equivalence, code, display, source) of every match."""
    out = []
    for match in params_named(body, "match"):
        values = parts(match)
        concept = values.get("concept") or {}
        out.append(
            (values["equivalence"], concept.get("code"), concept.get("display"), values["source"])
        )
    return out


async def test_translate_get_to_cd_hcparty(client):
    body = await ok(
        client.get("/ConceptMap/$translate", params={"system": PRACTITIONER_CS, "code": "midwife"})
    )
    assert param(body, "result") is True
    assert matches(body) == [("equivalent", "persmidwife", "midwife", PRACTITIONER_MAP)]
    concept = parts(params_named(body, "match")[0])["concept"]
    assert concept["system"] == CD_HCPARTY


@pytest.mark.parametrize(
    ("header", "display"),
    [("nl", "vroedvrouw"), ("fr-BE", "sage-femme"), ("de", "Hebamme"), ("en", "midwife")],
)
async def test_translate_display_follows_accept_language(client, header, display):
    body = await ok(
        client.get(
            "/ConceptMap/$translate",
            params={"system": PRACTITIONER_CS, "code": "midwife"},
            headers={"Accept-Language": header},
        )
    )
    assert matches(body)[0][2] == display


async def test_translate_brussels_municipality_to_region_and_zone(client):
    body = await ok(
        client.get(
            "/ConceptMap/$translate",
            params={"system": NIS_MUNICIPALITY, "code": "21004", "displayLanguage": "fr"},
        )
    )
    assert param(body, "result") is True
    found = {(eq, code) for eq, code, _, _ in matches(body)}
    assert found == {
        ("wider", "region-brussels-capital"),
        ("inexact", "zorgzone-noord"),
        ("inexact", "zorgzone-centrum-west"),
        ("inexact", "zorgzone-zuid"),
    }
    region = next(m for m in matches(body) if m[1] == "region-brussels-capital")
    assert region[2] == "Région de Bruxelles-Capitale"


async def test_translate_post_instance_level_with_coding(client):
    body = await ok(
        client.post(
            "/ConceptMap/bib-nis-municipality-to-region/$translate",
            json={
                "resourceType": "Parameters",
                "parameter": [
                    {
                        "name": "coding",
                        "valueCoding": {"system": "https://statbel.fgov.be/fhir/CodeSystem/refnis",
                                        "code": "60000"},
                    },
                    {"name": "displayLanguage", "valueCode": "de"},
                ],
            },
        )
    )  # fmt: skip
    assert matches(body) == [("equivalent", "province-liege", "Provinz Lüttich", NIS_MAP)]


async def test_translate_by_url_and_target_system(client):
    body = await ok(
        client.get(
            "/ConceptMap/$translate",
            params={
                "url": PRACTITIONER_MAP,
                "system": PRACTITIONER_CS,
                "code": "psychiatrist-perinatal",
                "targetsystem": CD_HCPARTY,
            },
        )
    )
    assert [(eq, code) for eq, code, _, _ in matches(body)] == [
        ("equivalent", "perspsychatrist"),
        ("narrower", "persadultpsychiatrist"),
        ("narrower", "perschildandadolescentpsychiatrist"),
    ]
    none = await ok(
        client.get(
            "/ConceptMap/$translate",
            params={"system": PRACTITIONER_CS, "code": "midwife", "targetsystem": REGION_CS},
        )
    )
    assert param(none, "result") is False
    assert params_named(none, "match") == []


async def test_translate_source_and_target_value_sets_select_maps(client):
    body = await ok(
        client.get(
            "/ConceptMap/$translate",
            params={
                "system": PRACTITIONER_CS,
                "code": "nurse",
                "source": f"{BIB}/ValueSet/bib-practitioner-type",
                "target": "https://www.ehealth.fgov.be/standards/fhir/core/ValueSet/be-vs-cd-hcparty",
            },
        )
    )
    assert [code for _, code, _, _ in matches(body)] == ["persnurse"]
    body = await ok(
        client.get(
            "/ConceptMap/$translate",
            params={
                "system": PRACTITIONER_CS,
                "code": "nurse",
                "target": f"{BIB}/ValueSet/bib-region",
            },
        )
    )
    assert param(body, "result") is False


async def test_translate_reverse(client):
    body = await ok(
        client.get(
            "/ConceptMap/$translate",
            params={
                "system": CD_HCPARTY,
                "code": "persclinicalpsychologist",
                "reverse": "true",
                "displayLanguage": "nl",
            },
        )
    )
    assert param(body, "result") is True
    assert {(eq, code, display) for eq, code, display, _ in matches(body)} == {
        ("wider", "psychologist", "Psycholoog"),  # psychologist -> narrower, reversed
        ("inexact", "first-line-psychologist", "Eerstelijnspsycholoog"),
    }


async def test_translate_codeable_concept(client):
    body = await ok(
        client.post(
            "/ConceptMap/$translate",
            json={
                "resourceType": "Parameters",
                "parameter": [
                    {
                        "name": "codeableConcept",
                        "valueCodeableConcept": {
                            "coding": [
                                {"system": PRACTITIONER_CS, "code": "doula"},
                                {"system": PRACTITIONER_CS, "code": "pharmacist"},
                            ]
                        },
                    }
                ],
            },
        )
    )
    assert param(body, "result") is True
    assert [code for _, code, _, _ in matches(body)] == ["perspharmacist"]


async def test_unmapped_code_is_false_with_message(client):
    body = await ok(
        client.get("/ConceptMap/$translate", params={"system": PRACTITIONER_CS, "code": "doula"})
    )
    assert param(body, "result") is False
    assert "no mapping" in param(body, "message")


async def test_snomed_code_without_a_map_is_false(client):
    body = await ok(
        client.get("/ConceptMap/$translate", params={"system": SNOMED, "code": "309343006"})
    )
    assert param(body, "result") is False
    assert param(body, "message")


async def test_translate_with_a_map_created_through_the_api(client):
    concept_map = {
        "resourceType": "ConceptMap",
        "id": "local-care-line",
        "url": "http://example.org/fhir/ConceptMap/local-care-line",
        "status": "active",
        "group": [
            {
                "source": "http://example.org/local-lines",
                "target": f"{BIB}/CodeSystem/bib-care-line",
                "element": [
                    {"code": "L1", "target": [{"code": "line-1", "equivalence": "equivalent"}]},
                    {"code": "LX", "target": [{"equivalence": "unmatched"}]},
                ],
                "unmapped": {"mode": "fixed", "code": "basic"},
            }
        ],
    }
    response = await client.put("/ConceptMap/local-care-line", json=concept_map)
    assert response.status_code == 201, response.text
    body = await ok(
        client.get(
            "/ConceptMap/$translate",
            params={
                "url": concept_map["url"],
                "system": "http://example.org/local-lines",
                "code": "L1",
                "displayLanguage": "fr",
            },
        )
    )
    assert matches(body) == [("equivalent", "line-1", "Première ligne", concept_map["url"])]
    unmatched = await ok(
        client.get(
            "/ConceptMap/local-care-line/$translate",
            params={"system": "http://example.org/local-lines", "code": "LX"},
        )
    )
    assert param(unmatched, "result") is False
    assert [m[0] for m in matches(unmatched)] == ["unmatched"]
    fixed = await ok(
        client.get(
            "/ConceptMap/local-care-line/$translate",
            params={"system": "http://example.org/local-lines", "code": "L9"},
        )
    )
    assert [(eq, code) for eq, code, _, _ in matches(fixed)] == [("inexact", "basic")]
    assert (await client.delete("/ConceptMap/local-care-line")).status_code in (200, 204)
    assert_outcome(
        await client.get(
            "/ConceptMap/$translate",
            params={"url": concept_map["url"], "system": "http://example.org/local-lines",
                    "code": "L1"},
        ),
        404,
        "not-found",
    )  # fmt: skip


@pytest.mark.parametrize(
    ("path", "query", "status", "code"),
    [
        ("/ConceptMap/$translate", {"code": "midwife"}, 400, "invalid"),
        ("/ConceptMap/$translate", {"system": PRACTITIONER_CS}, 400, "invalid"),
        ("/ConceptMap/$translate", {"url": f"{BIB}/ConceptMap/nope", "system": PRACTITIONER_CS,
                                    "code": "midwife"}, 404, "not-found"),
        ("/ConceptMap/$translate", {"url": f"{PRACTITIONER_MAP}|5.0", "system": PRACTITIONER_CS,
                                    "code": "midwife"}, 404, "not-found"),
        ("/ConceptMap/nope/$translate", {"system": PRACTITIONER_CS, "code": "midwife"}, 404,
         "not-found"),
        ("/ConceptMap/$translate", {"system": PRACTITIONER_CS, "code": "midwife",
                                    "reverse": "maybe"}, 400, "invalid"),
        ("/ValueSet/$translate", {"system": PRACTITIONER_CS, "code": "midwife"}, 404,
         "not-supported"),
    ],
)  # fmt: skip
async def test_errors(client, path, query, status, code):
    assert_outcome(await client.get(path, params=query), status, code)


async def test_dependency_is_refused_not_ignored(client):
    response = await client.post(
        "/ConceptMap/$translate",
        json={
            "resourceType": "Parameters",
            "parameter": [
                {"name": "system", "valueUri": PRACTITIONER_CS},
                {"name": "code", "valueCode": "midwife"},
                {"name": "dependency", "part": [{"name": "element", "valueUri": "x"}]},
            ],
        },
    )
    assert_outcome(response, 400, "not-supported")
