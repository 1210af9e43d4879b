"""Every write is validated against FHIR R4 (4.0.1), not R4B or R5: invalid content is a 400
OperationOutcome and nothing is stored. Also: decimal precision survives the round trip."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from fhir_server.model.structure import r4_model
from tests.http.fhir_helpers import (
    FHIR_JSON,
    assert_outcome,
    create,
    diagnostics,
    history_entries,
    observation,
    patient,
    put,
    version_count,
)

# Invalid variations of a valid Patient: (id, changes to apply). ``None`` deletes a key.
INVALID_PATIENTS: dict[str, dict[str, Any]] = {
    "unknown-element": {"favouriteColour": "blue"},
    "misspelt-element": {"birthdate": "1980-01-01"},
    "r5-only-element": {"contact": [{"name": {"family": "X"},
                                     "additionalName": [{"family": "Y"}]}]},
    "impossible-date": {"birthDate": "2023-02-30"},
    "month-13": {"birthDate": "2023-13-01"},
    "date-with-time": {"birthDate": "2023-01-01T10:00:00Z"},
    "datetime-without-zone": {"deceasedDateTime": "2023-01-01T10:00:00"},
    "boolean-as-string": {"active": "true"},
    "integer-as-string": {"multipleBirthInteger": "2"},
    "integer-as-decimal": {"multipleBirthInteger": 2.5},
    "integer-out-of-range": {"multipleBirthInteger": 2**31},
    "string-as-number": {"name": [{"family": 42}]},
    "nul-in-string": {"name": [{"family": "Doe\u0000"}]},
    "control-character-in-string": {"address": [{"line": ["Rue \u0007 1"]}]},
    "array-for-single": {"gender": ["female"]},
    "single-for-array": {"name": {"family": "Doe"}},
    "empty-string": {"gender": ""},
    "empty-object": {"name": [{}]},
    "empty-array": {"identifier": []},
    "null-value": {"gender": None, "active": None},
    "null-in-array": {"name": [{"given": [None]}]},
    "bad-code": {"gender": "fe male "},
    "choice-twice": {"deceasedBoolean": True, "deceasedDateTime": "2020-01-01"},
    "bad-uri-in-extension": {"extension": [{"url": "has spaces", "valueString": "x"}]},
    "extension-without-url": {"extension": [{"valueString": "x"}]},
    "extension-value-and-children": {"extension": [{
        "url": "http://e.org/x", "valueString": "x",
        "extension": [{"url": "y", "valueString": "z"}]}]},
    "bad-reference-type": {"managingOrganization": "Organization/1"},
    "bad-primitive-extension": {"_birthDate": "x"},
    "contained-without-resource-type": {"contained": [{"id": "c1"}]},
}  # fmt: skip


def _variant(changes: dict[str, Any]) -> dict[str, Any]:
    resource = patient("Valid")
    for key, value in changes.items():
        resource[key] = value
    return resource


@pytest.mark.parametrize("changes", INVALID_PATIENTS.values(), ids=INVALID_PATIENTS.keys())
async def test_invalid_patient_create_is_400_and_writes_nothing(client, changes):
    response = await client.post("/Patient", json=_variant(changes))
    assert_outcome(response, 400)
    assert await version_count(client) == 0


@pytest.mark.parametrize(
    "name", ["unknown-element", "impossible-date", "boolean-as-string", "array-for-single",
             "empty-object"]
)  # fmt: skip
async def test_invalid_patient_update_is_400_and_writes_nothing(client, name):
    existing = await create(client, patient("Valid"))
    body = {**_variant(INVALID_PATIENTS[name]), "id": existing["id"]}

    response = await put(client, body)

    assert_outcome(response, 400)
    assert (await client.get(f"/Patient/{existing['id']}")).json() == existing
    assert await version_count(client) == 1


async def test_validation_error_points_at_the_element(client):
    response = await client.post("/Patient", json=_variant({"birthDate": "2023-02-30"}))
    outcome = assert_outcome(response, 400)
    assert "birthDate" in diagnostics(outcome)


async def test_all_problems_are_reported(client):
    body = _variant({"birthDate": "2023-02-30", "active": "yes", "shoeSize": 42})
    outcome = assert_outcome(await client.post("/Patient", json=body), 400)
    text = diagnostics(outcome)
    for element in ("birthDate", "active", "shoeSize"):
        assert element in text, text


async def test_a_rich_valid_patient_is_accepted(client):
    body = patient(
        "Valid",
        mrn="v-1",
        active=True,
        multipleBirthInteger=2,
        deceasedBoolean=False,
        _birthDate={"extension": [{
            "url": "http://hl7.org/fhir/StructureDefinition/patient-birthTime",
            "valueDateTime": "1980-04-12T08:30:00+02:00"}]},
        telecom=[{"system": "phone", "value": "+32 2 555 12 12", "use": "home"}],
        address=[{"line": ["Rue de la Loi 16"], "city": "Brussels", "postalCode": "1000",
                  "country": "BE"}],
        text={"status": "generated",
              "div": '<div xmlns="http://www.w3.org/1999/xhtml"><p>Jane <b>Doe</b></p></div>'},
        contained=[{"resourceType": "Organization", "id": "org1", "name": "Clinic"}],
        managingOrganization={"reference": "#org1"},
        extension=[{"url": "http://example.org/ext", "valueCodeableConcept": {"text": "x"}}],
    )  # fmt: skip
    response = await client.post("/Patient", json=body)
    assert response.status_code == 201, response.text
    stored = response.json()
    assert stored["_birthDate"] == body["_birthDate"]
    assert stored["contained"] == body["contained"]


# -- resource type and id -----------------------------------------------------------------------


async def test_create_with_wrong_resource_type_for_url_is_400(client):
    response = await client.post("/Patient", json=observation())
    assert_outcome(response, 400)
    assert await version_count(client) == 0


async def test_create_without_resource_type_is_400(client):
    body = {k: v for k, v in patient().items() if k != "resourceType"}
    assert_outcome(await client.post("/Patient", json=body), 400)
    assert await version_count(client) == 0


async def test_create_with_unknown_resource_type_in_body_is_400(client):
    assert_outcome(await client.post("/Patient", json={"resourceType": "Patient2"}), 400)


async def test_update_body_id_differs_from_url_id_is_400(client):
    existing = await create(client, patient())
    response = await client.put(f"/Patient/{existing['id']}", json={**existing, "id": "other"})
    assert_outcome(response, 400)
    assert await version_count(client) == 1
    assert (await client.get("/Patient/other")).status_code == 404


@pytest.mark.parametrize(
    "bad_id", ["has_underscore", "has space", "a" * 65, "caf\u00e9", "semi;colon"]
)
async def test_update_with_invalid_url_id_is_400(client, bad_id):
    response = await client.put(f"/Patient/{bad_id}", json=patient(id=bad_id))
    assert_outcome(response, 400)
    assert await version_count(client) == 0


async def test_update_with_64_character_id_is_fine(client):
    long_id = "A-b.9" * 12 + "abcd"
    assert len(long_id) == 64
    response = await put(client, patient(id=long_id))
    assert response.status_code == 201


@pytest.mark.parametrize("body_id", [123, "", None, ["x"]])
async def test_update_with_non_string_or_empty_body_id_is_400(client, body_id):
    response = await client.put("/Patient/abc", json=patient(id=body_id))
    assert_outcome(response, 400)
    assert await version_count(client) == 0


# -- narrative safety ---------------------------------------------------------------------------


UNSAFE_DIVS = {
    "script": '<div xmlns="http://www.w3.org/1999/xhtml"><script>alert(1)</script></div>',
    "event-handler": '<div xmlns="http://www.w3.org/1999/xhtml"><p onclick="alert(1)">x</p></div>',
    "javascript-href": '<div xmlns="http://www.w3.org/1999/xhtml">'
    '<a href="javascript:alert(1)">x</a></div>',
    "tab-obfuscated-javascript-href": '<div xmlns="http://www.w3.org/1999/xhtml">'
    '<a href="java&#09;script:alert(1)">x</a></div>',
    "uppercase-script": '<div xmlns="http://www.w3.org/1999/xhtml"><SCRIPT>alert(1)</SCRIPT></div>',
    "img-onerror": '<div xmlns="http://www.w3.org/1999/xhtml">'
    '<img src="x" onerror="alert(1)"/></div>',
    "iframe": '<div xmlns="http://www.w3.org/1999/xhtml"><iframe src="http://evil"/></div>',
    "not-xhtml-namespace": "<div><p>x</p></div>",
    "not-well-formed": '<div xmlns="http://www.w3.org/1999/xhtml"><p>x</div>',
    "empty-div": '<div xmlns="http://www.w3.org/1999/xhtml"></div>',
}


@pytest.mark.parametrize("div", UNSAFE_DIVS.values(), ids=UNSAFE_DIVS.keys())
async def test_unsafe_or_invalid_narrative_is_400(client, div):
    response = await client.post("/Patient", json=patient(text={"status": "generated", "div": div}))
    assert_outcome(response, 400)
    assert await version_count(client) == 0


async def test_script_in_contained_resource_narrative_is_400(client):
    contained = {"resourceType": "Organization", "id": "o1", "name": "x",
                 "text": {"status": "generated", "div": UNSAFE_DIVS["script"]}}  # fmt: skip
    response = await client.post("/Patient", json=patient(contained=[contained]))
    assert_outcome(response, 400)


# -- R4 vs R4B ----------------------------------------------------------------------------------


def test_r4b_only_element_is_really_absent_from_r4_model():
    """ActivityDefinition.subject[x] gained a canonical choice in R4B (4.3.0); R4 has only
    CodeableConcept and Reference. Guard the premise of the HTTP test below."""
    from fhir.resources.R4B.activitydefinition import ActivityDefinition as R4BActivityDefinition

    r4_keys = r4_model().types["ActivityDefinition"].keys
    assert "subjectCanonical" not in r4_keys
    assert {"subjectCodeableConcept", "subjectReference"} <= set(r4_keys)
    R4BActivityDefinition.model_validate(_activity_definition(
        subjectCanonical="http://example.org/fhir/EvidenceVariable/x"))  # fmt: skip


def _activity_definition(**extra: Any) -> dict[str, Any]:
    return {"resourceType": "ActivityDefinition", "status": "draft", "name": "Example", **extra}


async def test_r4b_only_element_is_rejected(client):
    body = _activity_definition(subjectCanonical="http://example.org/fhir/EvidenceVariable/x")
    outcome = assert_outcome(await client.post("/ActivityDefinition", json=body), 400)
    assert "subjectCanonical" in diagnostics(outcome)
    assert await version_count(client) == 0


async def test_r4_variant_of_the_same_element_is_accepted(client):
    body = _activity_definition(subjectCodeableConcept={"text": "Patient"})
    response = await client.post("/ActivityDefinition", json=body)
    assert response.status_code == 201, response.text


async def test_r4b_only_resource_type_is_not_served(client):
    response = await client.post("/Citation", json={"resourceType": "Citation", "status": "draft"})
    assert_outcome(response, 404)
    assert await version_count(client) == 0


async def test_missing_required_element_is_400(client):
    body = observation()
    del body["status"]
    assert_outcome(await client.post("/Observation", json=body), 400, "required")


# -- decimal precision --------------------------------------------------------------------------


def _observation_text(value_literal: str) -> str:
    return json.dumps(observation(value="__VALUE__")).replace('"__VALUE__"', value_literal)


@pytest.mark.parametrize("literal", ["1.50", "0.10", "100.000", "-0.0010",
                                     "3.14159265358979323846264338327950"])  # fmt: skip
async def test_decimal_precision_is_preserved(client, literal):
    response = await client.post("/Observation", content=_observation_text(literal),
                                 headers={"Content-Type": FHIR_JSON})  # fmt: skip
    assert response.status_code == 201, response.text
    needle = f'"value":{literal}'
    assert needle in response.text

    obs_id = response.json()["id"]
    read = await client.get(f"/Observation/{obs_id}")
    assert needle in read.text
    pretty = await client.get(f"/Observation/{obs_id}", params={"_pretty": "true"})
    assert f'"value": {literal}' in pretty.text
    searched = await client.get("/Observation", params={"_id": obs_id})
    assert needle in searched.text
    history = await client.get(f"/Observation/{obs_id}/_history")
    assert needle in history.text


async def test_decimal_precision_survives_an_update(client):
    response = await client.post("/Observation", content=_observation_text("7.20"),
                                 headers={"Content-Type": FHIR_JSON})  # fmt: skip
    obs = response.text.replace('"status":"final"', '"status":"amended"')
    obs_id = response.json()["id"]
    updated = await client.put(f"/Observation/{obs_id}", content=obs,
                               headers={"Content-Type": FHIR_JSON})  # fmt: skip
    assert updated.status_code == 200
    assert '"value":7.20' in updated.text
    entries = await history_entries(client, f"/Observation/{obs_id}/_history")
    assert len(entries) == 2


async def test_decimal_as_string_is_rejected(client):
    response = await client.post("/Observation", json=observation(value="1.50"))
    assert_outcome(response, 400)


async def test_tab_and_line_breaks_are_allowed_in_strings(client):
    body = patient(name=[{"text": "Marie\tJanssens\r\nde Smet"}])
    stored = await create(client, body)
    assert stored["name"][0]["text"] == "Marie\tJanssens\r\nde Smet"


async def test_decimal_beyond_the_float_range_is_stored_indexed_and_harms_no_one(client):
    """9.5e308 is a valid FHIR decimal but no float: it is indexed as the largest float, and the
    writes committed with it (same batch) all succeed."""
    huge = client.post("/Observation", content=_observation_text("9.5e308"),
                       headers={"Content-Type": FHIR_JSON})  # fmt: skip
    others = [client.post("/Patient", json=patient(f"Batch{i}")) for i in range(5)]
    responses = await asyncio.gather(huge, *others)
    assert [r.status_code for r in responses] == [201] * 6, responses[0].text
    assert '"value":9.5E+308' in responses[0].text  # the same decimal, written by Python
    found = await client.get("/Observation", params={"value-quantity": "gt1e300"})
    assert [e["resource"]["id"] for e in found.json()["entry"]] == [responses[0].json()["id"]]
