"""ValueSet/$expand over HTTP: GET and POST, type and instance level, languages, filter, paging,
designations, abstract concepts, be-core content with BiB supplements, and errors."""

from __future__ import annotations

import pytest

from tests.http.fhir_helpers import assert_outcome
from tests.terminology.helpers import (
    CARE_LEVEL_VS,
    CARE_LINE_CS,
    CARE_LINE_ORDER,
    CARE_LINE_VS,
    CONTACT_PERSON_VS,
    LINE_1,
    LOINC_VS,
    PATHWAY_VS,
    PRACTITIONER_VS,
    codes,
    contains,
    displays,
    ok,
    parameters,
)


async def test_get_type_level_by_url(client):
    body = await ok(client.get("/ValueSet/$expand", params={"url": CARE_LINE_VS}))
    assert body["resourceType"] == "ValueSet"
    assert body["url"] == CARE_LINE_VS and body["id"] == "bib-care-line"
    expansion = body["expansion"]
    assert expansion["identifier"].startswith("urn:uuid:")
    assert expansion["timestamp"].endswith("Z")
    assert expansion["total"] == 6
    assert codes(body) == CARE_LINE_ORDER  # the code system's order
    first = contains(body)[2]
    assert first == {
        "system": CARE_LINE_CS,
        "version": "0.1.0",
        "code": "line-1",
        "display": "Line 1 (primary care)",
    }
    assert "compose" not in body


async def test_get_instance_level(client):
    body = await ok(client.get("/ValueSet/bib-care-line/$expand"))
    assert codes(body) == CARE_LINE_ORDER
    assert body["expansion"]["total"] == 6


async def test_post_type_level_with_url(client):
    body = await ok(
        client.post(
            "/ValueSet/$expand",
            json=parameters(
                ("url", "valueUri", CARE_LEVEL_VS), ("displayLanguage", "valueCode", "nl")
            ),
        )
    )
    assert codes(body) == ["basic", "specialised"]
    assert displays(body) == {"basic": "Basiszorg", "specialised": "Gespecialiseerde zorg"}


async def test_post_instance_level(client):
    body = await ok(
        client.post(
            "/ValueSet/bib-care-line/$expand",
            json=parameters(("count", "valueInteger", 2), ("offset", "valueInteger", 1)),
        )
    )
    assert codes(body) == ["line-0", "line-1"]
    assert body["expansion"]["offset"] == 1


async def test_post_inline_value_set(client):
    value_set = {
        "resourceType": "ValueSet",
        "status": "active",
        "compose": {
            "include": [
                {
                    "system": CARE_LINE_CS,
                    "filter": [{"property": "concept", "op": "is-a", "value": "specialised"}],
                }
            ],
            "exclude": [{"system": CARE_LINE_CS, "concept": [{"code": "line-3"}]}],
        },
    }
    body = await ok(
        client.post(
            "/ValueSet/$expand",
            json={
                "resourceType": "Parameters",
                "parameter": [
                    {"name": "valueSet", "resource": value_set},
                    {"name": "includeDefinition", "valueBoolean": True},
                ],
            },
        )
    )
    assert codes(body) == ["specialised", "line-2"]
    assert body["compose"] == value_set["compose"]  # includeDefinition keeps the definition


@pytest.mark.parametrize(
    ("language", "expected"),
    [
        ("nl", LINE_1["nl-BE"]),
        ("fr-BE", LINE_1["fr-BE"]),
        ("en", LINE_1["en"]),
        ("de", LINE_1["de"]),
    ],
)
async def test_display_language_parameter(client, language, expected):
    body = await ok(
        client.get("/ValueSet/$expand", params={"url": CARE_LINE_VS, "displayLanguage": language})
    )
    assert displays(body)["line-1"] == expected
    assert {"name": "displayLanguage", "valueCode": language} in body["expansion"]["parameter"]


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("nl-BE", LINE_1["nl-BE"]),
        ("nl", LINE_1["nl-BE"]),
        ("fr", LINE_1["fr-BE"]),
        ("fr-FR, en;q=0.5", LINE_1["fr-BE"]),
        ("de-BE", LINE_1["de"]),
        ("en-GB,en;q=0.9", LINE_1["en"]),
        ("nl;q=0.2, fr;q=0.9", LINE_1["fr-BE"]),  # q-values, not order, decide
        ("es, de;q=0.5", LINE_1["de"]),  # unsupported first choice: the next one
        ("es", LINE_1["en"]),  # none supported: the CodeSystem display
        ("*", LINE_1["en"]),
        ("fr;q=0, nl", LINE_1["nl-BE"]),  # q=0 means "not this one"
    ],
)
async def test_accept_language(client, header, expected):
    body = await ok(
        client.get("/ValueSet/bib-care-line/$expand", headers={"Accept-Language": header})
    )
    assert displays(body)["line-1"] == expected


async def test_display_language_parameter_wins_over_header(client):
    body = await ok(
        client.get(
            "/ValueSet/$expand",
            params={"url": CARE_LINE_VS, "displayLanguage": "de"},
            headers={"Accept-Language": "fr"},
        )
    )
    assert displays(body)["line-1"] == LINE_1["de"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("kinesitherapeute", {"physiotherapist"}),  # fr: Kinésithérapeute
        ("KINÉ", {"physiotherapist"}),
        ("sage-fem", {"midwife"}),  # fr: Sage-femme
        ("vroedvrouw", {"midwife"}),  # nl
        ("hebamme", {"midwife"}),  # de
        ("gynecolog", {"gynaecologist"}),  # fr: Gynécologue-obstétricien
        ("psychiatre perinatal", {"psychiatrist-perinatal"}),  # every word must match
        ("puericultrice", {"childcare-worker"}),  # a synonym designation
        ("midw", {"midwife"}),  # code and English display
        ("zzz-nothing", set()),
    ],
)
async def test_filter_is_case_and_accent_insensitive(client, text, expected):
    body = await ok(
        client.get("/ValueSet/$expand", params={"url": PRACTITIONER_VS, "filter": text})
    )
    assert set(codes(body)) == expected
    assert body["expansion"]["total"] == len(expected)
    assert {"name": "filter", "valueString": text} in body["expansion"]["parameter"]


async def test_filter_combines_with_language_and_paging(client):
    body = await ok(
        client.get(
            "/ValueSet/$expand",
            params={"url": PRACTITIONER_VS, "filter": "psycho", "count": "2", "offset": "1"},
            headers={"Accept-Language": "fr"},
        )
    )
    assert body["expansion"]["total"] == 5  # psychologist (2), -therapist, -motor, -pedagogue
    assert len(contains(body)) == 2
    assert all("psycho" in c["display"].lower() for c in contains(body))


async def test_paging_walks_the_whole_expansion_once(client):
    full = codes(await ok(client.get("/ValueSet/bib-practitioner-type/$expand")))
    assert len(full) == 41
    seen: list[str] = []
    for offset in range(0, 45, 10):
        page = await ok(
            client.get(
                "/ValueSet/bib-practitioner-type/$expand",
                params={"count": "10", "offset": str(offset)},
            )
        )
        assert page["expansion"]["total"] == 41
        assert page["expansion"]["offset"] == offset
        seen.extend(codes(page))
    assert seen == full


async def test_offset_past_the_end_gives_total_without_contains(client):
    body = await ok(
        client.get("/ValueSet/$expand", params={"url": CARE_LINE_VS, "offset": "50", "count": "5"})
    )
    assert body["expansion"]["total"] == 6
    assert "contains" not in body["expansion"]


async def test_count_zero_gives_only_the_total(client):
    body = await ok(client.get("/ValueSet/$expand", params={"url": PRACTITIONER_VS, "count": "0"}))
    assert body["expansion"]["total"] == 41
    assert "contains" not in body["expansion"]


async def test_include_designations(client):
    body = await ok(
        client.get("/ValueSet/$expand", params={"url": CARE_LINE_VS, "includeDesignations": "true"})
    )
    line_1 = next(c for c in contains(body) if c["code"] == "line-1")
    assert {d["language"]: d["value"] for d in line_1["designation"]} == LINE_1
    only_fr = await ok(
        client.get(
            "/ValueSet/$expand",
            params={"url": CARE_LINE_VS, "includeDesignations": "true", "designation": "fr"},
        )
    )
    line_1 = next(c for c in contains(only_fr) if c["code"] == "line-1")
    assert line_1["designation"] == [{"language": "fr-BE", "value": LINE_1["fr-BE"]}]


async def test_abstract_concepts_are_marked_and_can_be_left_out(client):
    body = await ok(client.get("/ValueSet/$expand", params={"url": PATHWAY_VS}))
    entry = next(c for c in contains(body) if c["code"] == "vulnerability-pathway")
    assert entry["abstract"] is True
    assert body["expansion"]["total"] == 23
    selectable = await ok(
        client.get("/ValueSet/$expand", params={"url": PATHWAY_VS, "excludeNotForUI": "true"})
    )
    assert "vulnerability-pathway" not in codes(selectable)
    assert selectable["expansion"]["total"] == 22


async def test_be_core_value_set_uses_bib_supplement_and_its_own_designations(client):
    nl = await ok(
        client.get(
            "/ValueSet/$expand",
            params={"url": CONTACT_PERSON_VS, "filter": "vader"},
            headers={"Accept-Language": "nl"},
        )
    )
    assert displays(nl) == {"father": "vader"}  # designation from the BiB supplement
    en = await ok(
        client.get(
            "/ValueSet/$expand",
            params={"url": CONTACT_PERSON_VS, "filter": "brother"},
            headers={"Accept-Language": "en"},
        )
    )
    # the value set's own designation ("brother-in-law") over the code system display
    assert displays(en)["brotherinlaw"] == "brother-in-law"
    whole = await ok(client.get("/ValueSet/$expand", params={"url": CONTACT_PERSON_VS}))
    systems = {c["system"] for c in contains(whole)}
    assert systems == {
        "http://terminology.hl7.org/CodeSystem/v2-0131",
        "https://www.ehealth.fgov.be/standards/fhir/core/CodeSystem/cd-contact-person",
    }
    assert "O" not in codes(whole)  # compose filter is-not-a O


async def test_listed_snomed_codes_expand_without_invented_displays(client):
    body = await ok(
        client.get(
            "/ValueSet/$expand",
            params={
                "url": "https://www.ehealth.fgov.be/standards/fhir/core/ValueSet/"
                "be-vs-patient-relationship-type"
            },
        )
    )
    assert body["expansion"]["total"] > 10
    assert all(c["system"] == "http://snomed.info/sct" for c in contains(body))
    assert all("display" not in c for c in contains(body))  # SNOMED CT is not held here


async def test_r4_core_value_set_and_exclude_system(client):
    body = await ok(
        client.get(
            "/ValueSet/$expand",
            params={"url": "http://hl7.org/fhir/ValueSet/administrative-gender"},
        )
    )
    assert codes(body) == ["male", "female", "other", "unknown"]
    none = await ok(
        client.get(
            "/ValueSet/$expand",
            params={
                "url": "http://hl7.org/fhir/ValueSet/administrative-gender",
                "exclude-system": "http://hl7.org/fhir/administrative-gender",
            },
        )
    )
    assert none["expansion"]["total"] == 0


async def test_value_set_version_is_checked(client):
    await ok(client.get("/ValueSet/$expand", params={"url": f"{CARE_LINE_VS}|0.1.0"}))
    assert_outcome(
        await client.get("/ValueSet/$expand", params={"url": f"{CARE_LINE_VS}|9.9"}),
        404,
        "not-found",
    )
    assert_outcome(
        await client.get(
            "/ValueSet/$expand", params={"url": CARE_LINE_VS, "valueSetVersion": "2.0"}
        ),
        404,
        "not-found",
    )


# -- errors ---------------------------------------------------------------------------------------


async def test_value_set_needing_loinc_is_not_supported(client):
    outcome = assert_outcome(
        await client.get("/ValueSet/$expand", params={"url": LOINC_VS}), 400, "not-supported"
    )
    assert "http://loinc.org" in outcome["issue"][0]["diagnostics"]


async def test_inline_value_set_needing_snomed_filter_is_not_supported(client):
    value_set = {
        "resourceType": "ValueSet",
        "status": "active",
        "compose": {
            "include": [
                {
                    "system": "http://snomed.info/sct",
                    "filter": [{"property": "concept", "op": "is-a", "value": "404684003"}],
                }
            ]
        },
    }
    response = await client.post(
        "/ValueSet/$expand",
        json={
            "resourceType": "Parameters",
            "parameter": [{"name": "valueSet", "resource": value_set}],
        },
    )
    outcome = assert_outcome(response, 400, "not-supported")
    assert "snomed" in outcome["issue"][0]["diagnostics"].lower()


@pytest.mark.parametrize(
    ("path", "query", "status", "code"),
    [
        ("/ValueSet/$expand", {"url": "http://example.org/unknown"}, 404, "not-found"),
        ("/ValueSet/$expand", {}, 400, "invalid"),
        ("/ValueSet/$expand", {"url": CARE_LINE_VS, "count": "-1"}, 400, "invalid"),
        ("/ValueSet/$expand", {"url": CARE_LINE_VS, "count": "ten"}, 400, "invalid"),
        ("/ValueSet/$expand", {"url": CARE_LINE_VS, "activeOnly": "yes"}, 400, "invalid"),
        ("/ValueSet/$expand", {"url": CARE_LINE_VS, "nonsense": "1"}, 400, "invalid"),
        ("/ValueSet/$expand", {"url": CARE_LINE_VS, "valueSet": "{}"}, 400, "invalid"),
        ("/ValueSet/$expand", {"url": CARE_LINE_VS, "context": "x"}, 400, "not-supported"),
        ("/ValueSet/$expand", {"url": CARE_LINE_VS, "displayLanguage": "n l"}, 400, "invalid"),
        ("/ValueSet/no-such-value-set/$expand", {}, 404, "not-found"),
        ("/ValueSet/bib-care-line/$expand", {"url": CARE_LINE_VS}, 400, "invalid"),
        ("/Patient/$expand", {"url": CARE_LINE_VS}, 404, "not-supported"),
        ("/$expand", {"url": CARE_LINE_VS}, 404, "not-supported"),
    ],
)
async def test_errors(client, path, query, status, code):
    assert_outcome(await client.get(path, params=query), status, code)


async def test_post_body_must_be_parameters(client):
    response = await client.post("/ValueSet/$expand", json={"resourceType": "Patient"})
    assert_outcome(response, 400, "structure")
    response = await client.post(
        "/ValueSet/$expand",
        json={"resourceType": "Parameters", "parameter": [{"name": "count", "valueString": "x"}]},
    )
    assert_outcome(response, 400, "invalid")


async def test_deleted_value_set_instance_is_gone(client):
    assert (await client.delete("/ValueSet/bib-care-level")).status_code in (200, 204)
    assert_outcome(await client.get("/ValueSet/bib-care-level/$expand"), 410, "deleted")
