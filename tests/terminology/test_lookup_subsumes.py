"""CodeSystem/$lookup (with designations and properties) and CodeSystem/$subsumes over HTTP."""

from __future__ import annotations

import pytest

from tests.http.fhir_helpers import assert_outcome
from tests.terminology.helpers import (
    ACT_CODE,
    CARE_LINE_CS,
    CD_HCPARTY,
    CONTACT_PERSON_CS,
    LINE_1,
    PRACTITIONER_CS,
    REGION_CS,
    SNOMED,
    ok,
    param,
    params_named,
    parts,
)


def properties(body: dict) -> dict[str, list]:
    out: dict[str, list] = {}
    for parameter in params_named(body, "property"):
        values = parts(parameter)
        out.setdefault(values["code"], []).append(values["value"])
    return out


def designations(body: dict) -> dict[str, str]:
    return {
        parts(p).get("language"): parts(p)["value"]
        for p in params_named(body, "designation")
        if "use" not in parts(p)
    }


async def test_lookup_get(client):
    body = await ok(
        client.get("/CodeSystem/$lookup", params={"system": CARE_LINE_CS, "code": "line-1"})
    )
    assert param(body, "name") == "BiB care line and care level"
    assert param(body, "version") == "0.1.0"
    assert param(body, "display") == LINE_1["en"]
    assert designations(body) == LINE_1
    props = properties(body)
    assert props["parent"] == ["basic"]
    assert props["basis"] == ["seed"]
    assert props["inactive"] == [False]
    assert props["definition"][0].startswith("Basic care provided outside the hospital")


async def test_lookup_children_and_declared_property_description(client):
    body = await ok(
        client.get(
            "/CodeSystem/$lookup", params={"system": PRACTITIONER_CS, "code": "psychologist"}
        )
    )
    assert properties(body)["child"] == ["first-line-psychologist"]
    basis = next(p for p in params_named(body, "property") if parts(p)["code"] == "basis")
    assert parts(basis).get("description")


@pytest.mark.parametrize(("header", "language"), [("nl-BE", "nl-BE"), ("fr", "fr-BE"),
                                                   ("de-DE", "de"), ("en-US", "en")])  # fmt: skip
async def test_lookup_display_follows_accept_language(client, header, language):
    body = await ok(
        client.get(
            "/CodeSystem/$lookup",
            params={"system": CARE_LINE_CS, "code": "line-1"},
            headers={"Accept-Language": header},
        )
    )
    assert param(body, "display") == LINE_1[language]


async def test_lookup_post_with_coding_and_display_language(client):
    body = await ok(
        client.post(
            "/CodeSystem/$lookup",
            json={
                "resourceType": "Parameters",
                "parameter": [
                    {
                        "name": "coding",
                        "valueCoding": {"system": CD_HCPARTY, "code": "persmidwife"},
                    },
                    {"name": "displayLanguage", "valueCode": "fr"},
                ],
            },
        )
    )
    assert param(body, "display") == "sage-femme"
    assert set(designations(body)) == {"nl-BE", "fr-BE", "en", "de"}


async def test_lookup_instance_level_get_and_post(client):
    body = await ok(client.get("/CodeSystem/bib-care-line/$lookup", params={"code": "line-3"}))
    assert param(body, "display") == "Line 3 (tertiary care)"
    body = await ok(
        client.post(
            "/CodeSystem/bib-care-line/$lookup",
            json={
                "resourceType": "Parameters",
                "parameter": [{"name": "code", "valueCode": "basic"}],
            },
            headers={"Accept-Language": "nl"},
        )
    )
    assert param(body, "display") == "Basiszorg"


async def test_lookup_property_filter(client):
    body = await ok(
        client.get(
            "/CodeSystem/$lookup",
            params=[("system", CARE_LINE_CS), ("code", "line-1"), ("property", "basis")],
        )
    )
    assert list(properties(body)) == ["basis"]
    assert params_named(body, "designation") == []
    body = await ok(
        client.get(
            "/CodeSystem/$lookup",
            params=[
                ("system", CARE_LINE_CS),
                ("code", "line-1"),
                ("property", "designation"),
                ("property", "parent"),
            ],
        )
    )
    assert list(properties(body)) == ["parent"]
    assert len(params_named(body, "designation")) == 4


async def test_lookup_merges_bib_supplement_designations(client):
    body = await ok(
        client.get(
            "/CodeSystem/$lookup",
            params={"system": CONTACT_PERSON_CS, "code": "stepmother"},
            headers={"Accept-Language": "nl"},
        )
    )
    assert param(body, "display") == "stiefmoeder"
    assert designations(body) == {
        "en": "stepmother",
        "nl-BE": "stiefmoeder",
        "fr-BE": "belle-mère",
        "de": "Stiefmutter",
    }


async def test_lookup_r4_core_code(client):
    body = await ok(client.get("/CodeSystem/$lookup", params={"system": ACT_CODE, "code": "AMB"}))
    assert param(body, "display") == "ambulatory"
    assert properties(body)["parent"] == ["_ActEncounterCode"]


@pytest.mark.parametrize(
    ("query", "status", "code"),
    [
        ({"system": CARE_LINE_CS, "code": "line-9"}, 404, "not-found"),
        ({"system": CARE_LINE_CS, "code": "line-1", "version": "3"}, 404, "not-found"),
        ({"system": SNOMED, "code": "22298006"}, 404, "not-found"),  # not held here
        ({"code": "line-1"}, 400, "invalid"),
        ({"system": CARE_LINE_CS}, 400, "invalid"),
        ({"system": CARE_LINE_CS, "code": "x", "coding": f"{CARE_LINE_CS}|x"}, 400, "invalid"),
    ],
)
async def test_lookup_errors(client, query, status, code):
    outcome = assert_outcome(await client.get("/CodeSystem/$lookup", params=query), status, code)
    if query.get("system") == SNOMED:
        assert "not available" in outcome["issue"][0]["diagnostics"]


# -- $subsumes -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code_a", "code_b", "outcome"),
    [
        ("specialist-physician", "gynaecologist", "subsumes"),
        ("gynaecologist", "specialist-physician", "subsumed-by"),
        ("midwife", "midwife", "equivalent"),
        ("midwife", "gynaecologist", "not-subsumed"),
        ("psychologist", "first-line-psychologist", "subsumes"),
    ],
)
async def test_subsumes_get(client, code_a, code_b, outcome):
    body = await ok(
        client.get(
            "/CodeSystem/$subsumes",
            params={"system": PRACTITIONER_CS, "codeA": code_a, "codeB": code_b},
        )
    )
    assert body == {"resourceType": "Parameters",
                    "parameter": [{"name": "outcome", "valueCode": outcome}]}  # fmt: skip


async def test_subsumes_post_with_codings_and_instance_level(client):
    body = await ok(
        client.post(
            "/CodeSystem/$subsumes",
            json={
                "resourceType": "Parameters",
                "parameter": [
                    {"name": "codingA", "valueCoding": {"system": CARE_LINE_CS, "code": "line-2"}},
                    {
                        "name": "codingB",
                        "valueCoding": {"system": CARE_LINE_CS, "code": "specialised"},
                    },
                ],
            },
        )
    )
    assert param(body, "outcome") == "subsumed-by"
    body = await ok(
        client.get(
            "/CodeSystem/bib-care-line/$subsumes", params={"codeA": "basic", "codeB": "line-0"}
        )
    )
    assert param(body, "outcome") == "subsumes"


async def test_subsumes_in_r4_core_hierarchy(client):
    body = await ok(
        client.get(
            "/CodeSystem/$subsumes",
            params={"system": ACT_CODE, "codeA": "_ActEncounterCode", "codeB": "AMB"},
        )
    )
    assert param(body, "outcome") == "subsumes"


async def test_subsumes_flat_code_system(client):
    body = await ok(
        client.get(
            "/CodeSystem/$subsumes",
            params={
                "system": "http://hl7.org/fhir/administrative-gender",
                "codeA": "male",
                "codeB": "female",
            },
        )
    )
    assert param(body, "outcome") == "not-subsumed"


@pytest.mark.parametrize(
    ("query", "status", "code"),
    [
        # bib-region is a part-of hierarchy: subsumption is not defined for it
        ({"system": REGION_CS, "codeA": "region-flanders", "codeB": "province-antwerpen"}, 400,
         "not-supported"),
        ({"system": PRACTITIONER_CS, "codeA": "midwife", "codeB": "nobody"}, 404, "not-found"),
        ({"system": SNOMED, "codeA": "1", "codeB": "2"}, 404, "not-found"),
        ({"system": PRACTITIONER_CS, "codeA": "midwife"}, 400, "invalid"),
        ({"codeA": "midwife", "codeB": "doula"}, 400, "invalid"),
        ({"system": PRACTITIONER_CS, "codeA": "midwife", "codeB": "doula", "version": "9"}, 404,
         "not-found"),
    ],
)  # fmt: skip
async def test_subsumes_errors(client, query, status, code):
    assert_outcome(await client.get("/CodeSystem/$subsumes", params=query), status, code)


async def test_subsumes_codings_from_two_systems_are_refused(client):
    response = await client.post(
        "/CodeSystem/$subsumes",
        json={
            "resourceType": "Parameters",
            "parameter": [
                {"name": "codingA", "valueCoding": {"system": CARE_LINE_CS, "code": "basic"}},
                {"name": "codingB", "valueCoding": {"system": PRACTITIONER_CS, "code": "midwife"}},
            ],
        },
    )
    assert_outcome(response, 400, "invalid")
