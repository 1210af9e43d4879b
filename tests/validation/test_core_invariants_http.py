"""Issue 13 (validation): false rejections and missed R4 invariants, over HTTP.

Every write runs every invariant of the R4 resources and data types (not only for profiled
resources), and ``$validate`` reports them; each failure names the invariant's key
(``details.coding``) and the FHIRPath location of the element (``expression`` and ``location``).
Valid content from outside the project (non-breaking spaces, primitives given only as ``_x``,
inline resources, long decimals, narrative with inline images) is accepted and kept exactly.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tests.http.fhir_helpers import FHIR_JSON, create, observation, patient

R4 = "http://hl7.org/fhir/StructureDefinition/"


async def post_raw(client: httpx.AsyncClient, type_: str, body: str) -> httpx.Response:
    return await client.post(f"/{type_}", content=body, headers={"Content-Type": FHIR_JSON})


def invariant_issues(outcome: dict[str, Any], key: str) -> list[dict[str, Any]]:
    assert outcome["resourceType"] == "OperationOutcome"
    return [
        issue
        for issue in outcome["issue"]
        if any(c.get("code") == key for c in issue.get("details", {}).get("coding", ()))
    ]


async def assert_rejected(
    client: httpx.AsyncClient, resource: dict[str, Any], key: str, where: str, definition: str
) -> None:
    """The write is refused with the invariant named and located, nothing is stored, and
    $validate reports the same issue."""
    type_ = resource["resourceType"]
    before = (await client.get(f"/{type_}")).json().get("total", 0)
    response = await client.post(f"/{type_}", json=resource)
    assert response.status_code == 400, response.text
    found = invariant_issues(response.json(), key)
    assert found, response.text
    issue = found[0]
    assert issue["severity"] == "error"
    assert issue["code"] == "invariant"
    assert issue["details"]["coding"][0] == {"system": R4 + definition, "code": key}
    assert issue["expression"] == [where]
    assert issue["location"] == [where]
    assert issue["diagnostics"].startswith(f"{key}: ")
    assert (await client.get(f"/{type_}")).json().get("total", 0) == before
    validated = await client.post(f"/{type_}/$validate", json=resource)
    assert validated.status_code == 200
    reported = invariant_issues(validated.json(), key)
    assert [(i["severity"], i["expression"]) for i in reported] == [("error", [where])]


# -- missed invariants ---------------------------------------------------------------------------


async def test_pat_1_contact_without_any_details(client: httpx.AsyncClient) -> None:
    resource = patient(contact=[{"gender": "female"}])
    await assert_rejected(client, resource, "pat-1", "Patient.contact[0]", "Patient")
    resource["contact"] = [{"gender": "female", "telecom": [{"system": "phone", "value": "1"}]}]
    await create(client, resource)


async def test_obs_6_value_and_data_absent_reason(client: httpx.AsyncClient) -> None:
    resource = observation(dataAbsentReason={"text": "not measured"})
    await assert_rejected(client, resource, "obs-6", "Observation", "Observation")
    del resource["valueQuantity"]
    await create(client, resource)


async def test_per_1_period_that_ends_before_it_starts(client: httpx.AsyncClient) -> None:
    resource = patient()
    resource["name"][0]["period"] = {"start": "2020-02-01", "end": "2020-01-31"}
    await assert_rejected(client, resource, "per-1", "Patient.name[0].period", "Period")
    # equal, other precisions and time zones that do not contradict each other are valid
    for period in (
        {"start": "2020-02-01", "end": "2020-02-01"},
        {"start": "2020-02", "end": "2020"},
        {"start": "2020-02-01T10:00:00+02:00", "end": "2020-02-01T09:00:00Z"},
        {"start": "2020-02-01T10:00:00Z", "end": "2020-02-01T10:00:00.5Z"},
    ):
        resource["name"][0]["period"] = period
        await create(client, resource)


async def test_ras_2_probability_above_100(client: httpx.AsyncClient) -> None:
    resource = {
        "resourceType": "RiskAssessment",
        "status": "final",
        "subject": {"reference": "Patient/p1"},
        "prediction": [{"probabilityDecimal": 101}],
    }
    await assert_rejected(
        client, resource, "ras-2", "RiskAssessment.prediction[0]", "RiskAssessment"
    )
    resource["prediction"] = [{"probabilityDecimal": 100}]
    await create(client, resource)


async def test_data_type_invariant_inside_a_backbone_and_a_contained_resource(
    client: httpx.AsyncClient,
) -> None:
    """The invariants apply wherever their element occurs: qty-3 on a Quantity deep inside a
    contained resource (a code needs a system)."""
    resource = patient(
        contained=[observation(id="o", valueQuantity={"value": 1, "code": "mg"})],
        extension=[
            {
                "url": "http://example.org/observation",
                "valueReference": {"reference": "#o"},
            }
        ],
    )
    await assert_rejected(
        client, resource, "qty-3", "Patient.contained[0].value.ofType(Quantity)", "Quantity"
    )


async def test_invariants_of_every_resource_in_a_transaction(client: httpx.AsyncClient) -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": patient(), "request": {"method": "POST", "url": "Patient"}},
            {
                "resource": observation(dataAbsentReason={"text": "x"}),
                "request": {"method": "POST", "url": "Observation"},
            },
        ],
    }
    response = await client.post("/", json=bundle)
    assert response.status_code == 400, response.text
    issue = invariant_issues(response.json(), "obs-6")[0]
    assert issue["diagnostics"].startswith("Bundle.entry[1] (POST Observation): obs-6: ")
    assert issue["expression"] == ["Observation"]
    assert (await client.get("/Patient")).json().get("total", 0) == 0


# -- false rejections -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "Marie\u00a0Dupont",  # no-break space (\S in the R4 regex, not Python's Unicode \s)
        "Marie\u2003Dupont",  # em space
        "Marie\u3000Dupont",  # ideographic space
        "Marie\u202fDupont",  # narrow no-break space (French typography before ':')
    ],
)
async def test_unicode_spaces_in_strings(client: httpx.AsyncClient, text: str) -> None:
    created = await create(client, patient(name=[{"text": text, "family": text}]))
    assert created["name"][0]["text"] == text
    note = observation(note=[{"text": f"**{text}**"}])  # markdown
    assert (await create(client, note))["note"][0]["text"] == f"**{text}**"


async def test_spec_regexes_keep_their_meaning(client: httpx.AsyncClient) -> None:
    """\\d is [0-9]: digits of other scripts are no date; control characters stay refused."""
    response = await client.post("/Patient", json=patient(birthDate="١٩٨٠-٠٤-١٢"))
    assert response.status_code == 400
    response = await client.post("/Patient", json=patient(name=[{"text": "a\u0007b"}]))
    assert response.status_code == 400


async def test_extension_with_only_a_value_extension(client: httpx.AsyncClient) -> None:
    extension = {
        "url": "http://example.org/nickname",
        "_valueString": {
            "extension": [
                {
                    "url": "http://hl7.org/fhir/StructureDefinition/data-absent-reason",
                    "valueCode": "masked",
                }
            ]
        },
    }
    created = await create(client, patient(extension=[extension]))
    assert created["extension"] == [extension]
    # ext-1 still holds: an extension with neither value nor extensions is refused
    response = await client.post("/Patient", json=patient(extension=[{"url": "http://x.org/e"}]))
    assert response.status_code == 400
    assert invariant_issues(response.json(), "ext-1")


async def test_primitives_given_only_as_underscore(client: httpx.AsyncClient) -> None:
    absent = {
        "extension": [
            {
                "url": "http://hl7.org/fhir/StructureDefinition/data-absent-reason",
                "valueCode": "unknown",
            }
        ]
    }
    resource = patient(_birthDate=absent)
    del resource["birthDate"]
    resource["name"] = [{"family": "Dupont", "given": ["Marie", None], "_given": [None, absent]}]
    created = await create(client, resource)
    assert created["_birthDate"] == absent
    assert created["name"][0]["_given"] == [None, absent]
    # a Questionnaire item whose required linkId and type come only as _linkId/_type is
    # structurally complete, and its invariants see the elements (que-6 holds here)
    questionnaire = {
        "resourceType": "Questionnaire",
        "status": "draft",
        "item": [{"linkId": "1", "type": "display", "_text": absent}],
    }
    await create(client, questionnaire)
    # an "_x" holding only an id has neither value nor children (ele-1)
    response = await client.post("/Patient", json=patient(_gender={"id": "g"}) | {"gender": None})
    assert response.status_code == 400


async def test_inline_outcome_in_a_bundle_response(client: httpx.AsyncClient) -> None:
    outcome = {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "warning", "code": "informational", "diagnostics": "kept"}],
    }
    bundle = {
        "resourceType": "Bundle",
        "type": "batch-response",
        "entry": [{"response": {"status": "200 OK", "outcome": outcome}}],
    }
    created = await create(client, bundle)
    assert created["entry"][0]["response"]["outcome"] == outcome
    # the element's type is OperationOutcome: another resource there is refused
    bundle["entry"][0]["response"]["outcome"] = patient()
    response = await client.post("/Bundle", json=bundle)
    assert response.status_code == 400
    assert "expected a OperationOutcome" in response.text


async def test_inline_resource_in_parameters(client: httpx.AsyncClient) -> None:
    parameters = {
        "resourceType": "Parameters",
        "parameter": [{"name": "resource", "resource": patient()}],
    }
    response = await client.post("/Patient/$validate", json=parameters)
    assert response.status_code == 200
    assert not [i for i in response.json()["issue"] if i["severity"] == "error"]


@pytest.mark.parametrize(
    "number",
    [
        "12345678901234567890123",  # more than 18 digits
        "-98765432109876543210.5",
        "0.1234567890123456789012345678901234567890123",  # more than 36 significant digits
        "1.0000000000000000000000000000000000000000001",
        "1.5E+3",
    ],
)
async def test_decimals_of_any_length_are_kept_exactly(
    client: httpx.AsyncClient, number: str
) -> None:
    body = json.dumps(observation()).replace('"value": 72', f'"value": {number}')
    response = await post_raw(client, "Observation", body)
    assert response.status_code == 201, response.text
    assert f'"value":{number}' in response.text.replace(" ", "")
    read = await client.get(response.headers["location"].split("/_history")[0])
    assert f'"value":{number}' in read.text.replace(" ", "")


async def test_an_integer_beyond_32_bits_is_out_of_range(client: httpx.AsyncClient) -> None:
    body = json.dumps(patient())[:-1] + ', "multipleBirthInteger": 12345678901234567890123}'
    response = await post_raw(client, "Patient", body)
    assert response.status_code == 400
    assert "out of range" in response.text


INLINE_IMAGE = (
    "background-image: url(data: image/png;base64,iVBORw0KGgoAAAANSUhEUgAAABAAAAAQCAYAAAAf8/9h"
    "AAAAB3RJTUUH); background-repeat: repeat-y"
)


async def test_narrative_style_with_an_inline_image(client: httpx.AsyncClient) -> None:
    div = f'<div xmlns="http://www.w3.org/1999/xhtml"><p style="{INLINE_IMAGE}">Marie</p></div>'
    await create(client, patient(text={"status": "generated", "div": div}))
    for style in (
        "background: url(https://tracker.example/pixel.png)",
        "background: url('javascript:alert(1)')",
        "width: expression(alert(1))",
        "background: u\\72l(https://tracker.example/pixel.png)",
    ):
        div = f'<div xmlns="http://www.w3.org/1999/xhtml"><p style="{style}">x</p></div>'
        response = await client.post(
            "/Patient", json=patient(text={"status": "generated", "div": div})
        )
        assert response.status_code == 400, style
        assert "active style" in response.text


async def test_narrative_link_with_an_ftp_url(client: httpx.AsyncClient) -> None:
    div = '<div xmlns="http://www.w3.org/1999/xhtml"><a href="ftp://ftp.example.org/x">x</a></div>'
    await create(client, patient(text={"status": "generated", "div": div}))


# -- errata: the fixed expressions run ---------------------------------------------------------


def _questionnaire(**item: Any) -> dict[str, Any]:
    return {
        "resourceType": "Questionnaire",
        "status": "draft",
        "item": [
            {"linkId": "a", "type": "boolean", "text": "A?"},
            {"linkId": "b", "type": "boolean", "text": "B?"},
            {"linkId": "c", "type": "string", "text": "C?", **item},
        ],
    }


async def test_que_12_errata_two_conditions_need_an_enable_behavior(
    client: httpx.AsyncClient,
) -> None:
    conditions = [
        {"question": "a", "operator": "=", "answerBoolean": True},
        {"question": "b", "operator": "exists", "answerBoolean": True},  # que-7 (errata) holds
    ]
    resource = _questionnaire(enableWhen=conditions)
    await assert_rejected(client, resource, "que-12", "Questionnaire.item[2]", "Questionnaire")
    await create(client, _questionnaire(enableWhen=conditions, enableBehavior="any"))


async def test_ref_1_errata_contained_resource_pointing_at_its_container(
    client: httpx.AsyncClient,
) -> None:
    provenance = {
        "resourceType": "Provenance",
        "id": "prov",
        "target": [{"reference": "#"}],
        "recorded": "2024-01-01T10:00:00Z",
        "agent": [{"who": {"display": "Midwife"}}],
    }
    await create(client, patient(contained=[provenance]))
    resource = patient(managingOrganization={"reference": "#nowhere"})
    await assert_rejected(client, resource, "ref-1", "Patient.managingOrganization", "Reference")


async def test_dom_3_contained_resources_must_be_referenced(client: httpx.AsyncClient) -> None:
    organization = {"resourceType": "Organization", "id": "org", "name": "Kind en Gezin"}
    await assert_rejected(
        client, patient(contained=[organization]), "dom-3", "Patient", "DomainResource"
    )
    # a link from the narrative counts (as in the HL7 validator)
    div = '<div xmlns="http://www.w3.org/1999/xhtml"><a href="#org">Kind en Gezin</a></div>'
    await create(
        client, patient(contained=[organization], text={"status": "generated", "div": div})
    )


async def test_task_inv_1_compares_date_times_in_their_time_zones(
    client: httpx.AsyncClient,
) -> None:
    task = {
        "resourceType": "Task",
        "status": "requested",
        "intent": "order",
        "authoredOn": "2024-03-01T10:00:00+02:00",
        "lastModified": "2024-03-01T09:00:00Z",  # an hour after it was authored
    }
    await create(client, task)
    task["lastModified"] = "2024-03-01T07:00:00Z"
    await assert_rejected(client, task, "inv-1", "Task", "Task")


async def test_best_practice_dom_6_is_a_validate_warning_only(client: httpx.AsyncClient) -> None:
    await create(client, patient())  # no narrative: the write succeeds
    response = await client.post("/Patient/$validate", json=patient())
    warnings = invariant_issues(response.json(), "dom-6")
    assert [(w["severity"], w["expression"]) for w in warnings] == [("warning", ["Patient"])]


async def test_invariants_of_the_type_profiles_an_element_names(client: httpx.AsyncClient) -> None:
    """Observation.referenceRange.low is a SimpleQuantity: no comparator (sqty-1)."""
    resource = observation(referenceRange=[{"low": {"value": 60, "comparator": "<"}}])
    await assert_rejected(
        client, resource, "sqty-1", "Observation.referenceRange[0].low", "SimpleQuantity"
    )
    resource["referenceRange"] = [{"low": {"value": 60}, "high": {"value": 100}}]
    await create(client, resource)
    # a Range whose low is above its high (rng-2), in the same units
    del resource["referenceRange"]
    resource["valueRange"] = {
        "low": {"value": 100, "unit": "mg"},
        "high": {"value": 60, "unit": "mg"},
    }
    del resource["valueQuantity"]
    await assert_rejected(client, resource, "rng-2", "Observation.value.ofType(Range)", "Range")
