"""PATCH: JSON Patch, JSON Merge Patch (incl. fhirpy's plain application/json partials) and
FHIRPath Patch (Parameters), instance-level and conditional."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.http.fhir_helpers import (
    FHIR_JSON,
    assert_outcome,
    create,
    identifier_query,
    observation,
    patient,
    version_count,
)

JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"


async def _patch(client, url: str, body: Any, content_type: str, **headers: str):
    return await client.patch(url, json=body, headers={"Content-Type": content_type, **headers})


def _fhirpath_patch(*operations: dict[str, Any]) -> dict[str, Any]:
    return {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "operation", "part": [{"name": k, **v} for k, v in op.items()]}
            for op in operations
        ],
    }


def _op(type_: str, path: str, **parts: dict[str, Any]) -> dict[str, Any]:
    return {"type": {"valueCode": type_}, "path": {"valueString": path}, **parts}


async def _assert_unchanged(client, resource: dict, versions_before: int) -> None:
    current = await client.get(f"/{resource['resourceType']}/{resource['id']}")
    assert current.json() == resource
    assert await version_count(client) == versions_before


@pytest.fixture
async def jane(client) -> dict:
    return await create(
        client,
        patient(
            "Doe",
            mrn="p-1",
            telecom=[
                {"system": "phone", "value": "111"},
                {"system": "phone", "value": "222"},
                {"system": "email", "value": "jane@example.org"},
            ],
        ),
    )


# -- JSON Patch ---------------------------------------------------------------------------------


async def test_json_patch_replace_add_remove(client, jane):
    ops = [
        {"op": "replace", "path": "/birthDate", "value": "1981-05-06"},
        {"op": "add", "path": "/name/-", "value": {"family": "Alias"}},
        {"op": "remove", "path": "/gender"},
    ]
    response = await _patch(client, f"/Patient/{jane['id']}", ops, JSON_PATCH)

    assert response.status_code == 200, response.text
    assert response.headers["etag"] == 'W/"2"'
    body = response.json()
    assert body["meta"]["versionId"] == "2"
    assert body["birthDate"] == "1981-05-06"
    assert body["name"][-1] == {"family": "Alias"}
    assert "gender" not in body
    assert (await client.get(f"/Patient/{jane['id']}")).json() == body


async def test_json_patch_failed_test_op_is_rejected_and_writes_nothing(client, jane):
    before = await version_count(client)
    ops = [
        {"op": "test", "path": "/gender", "value": "male"},
        {"op": "replace", "path": "/gender", "value": "other"},
    ]
    response = await _patch(client, f"/Patient/{jane['id']}", ops, JSON_PATCH)

    # RFC 5789 / FHIR: a patch that cannot be applied to the current state -> 409 or 422
    assert response.status_code in (409, 422), response.text
    assert_outcome(response, response.status_code)
    await _assert_unchanged(client, jane, before)


async def test_json_patch_to_missing_path_is_rejected(client, jane):
    before = await version_count(client)
    ops = [{"op": "replace", "path": "/maritalStatus/text", "value": "x"}]
    response = await _patch(client, f"/Patient/{jane['id']}", ops, JSON_PATCH)
    assert response.status_code in (400, 409, 422), response.text
    assert_outcome(response, response.status_code)
    await _assert_unchanged(client, jane, before)


async def test_json_patch_body_must_be_an_array(client, jane):
    before = await version_count(client)
    response = await _patch(client, f"/Patient/{jane['id']}", {"op": "remove"}, JSON_PATCH)
    assert_outcome(response, 400)
    await _assert_unchanged(client, jane, before)


# -- merge patch --------------------------------------------------------------------------------


async def test_merge_patch_sets_and_removes_elements(client, jane):
    body = {"gender": "other", "birthDate": None, "active": True}
    response = await _patch(client, f"/Patient/{jane['id']}", body, MERGE_PATCH)

    assert response.status_code == 200, response.text
    patched = response.json()
    assert patched["gender"] == "other"
    assert patched["active"] is True
    assert "birthDate" not in patched
    assert patched["name"] == jane["name"]  # untouched elements stay
    assert patched["meta"]["versionId"] == "2"


async def test_fhirpy_style_partial_object_with_plain_json(client, jane):
    # fhirpy: resource.patch(gender="male") -> PATCH, Content-Type: application/json, no
    # resourceType in the body
    response = await _patch(client, f"/Patient/{jane['id']}", {"gender": "male"},
                            "application/json")  # fmt: skip

    assert response.status_code == 200, response.text
    assert response.json()["gender"] == "male"
    assert response.json()["name"] == jane["name"]
    assert (await client.get(f"/Patient/{jane['id']}")).json()["gender"] == "male"


async def test_merge_patch_keeps_decimal_precision_of_untouched_elements(client):
    text = json.dumps(observation(value="__DECIMAL__")).replace('"__DECIMAL__"', "1.50")
    created = await client.post("/Observation", content=text, headers={"Content-Type": FHIR_JSON})
    assert created.status_code == 201
    obs = created.json()
    response = await _patch(client, f"/Observation/{obs['id']}", {"status": "amended"},
                            MERGE_PATCH)  # fmt: skip
    assert response.status_code == 200
    assert '"value":1.50' in response.text.replace(" ", "")


# -- FHIRPath Patch -----------------------------------------------------------------------------


async def test_fhirpath_patch_add(client, jane):
    patch = _fhirpath_patch(
        _op("add", "Patient", name={"valueString": "active"}, value={"valueBoolean": True}),
        _op("add", "Patient", name={"valueString": "telecom"},
            value={"valueContactPoint": {"system": "fax", "value": "333"}}),
    )  # fmt: skip
    response = await _patch(client, f"/Patient/{jane['id']}", patch, FHIR_JSON)

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["active"] is True
    assert body["telecom"][-1] == {"system": "fax", "value": "333"}
    assert len(body["telecom"]) == 4


async def test_fhirpath_patch_insert(client, jane):
    patch = _fhirpath_patch(
        _op("insert", "Patient.telecom", index={"valueInteger": 0},
            value={"valueContactPoint": {"system": "phone", "value": "000"}}),
    )  # fmt: skip
    response = await _patch(client, f"/Patient/{jane['id']}", patch, FHIR_JSON)

    assert response.status_code == 200, response.text
    assert [t["value"] for t in response.json()["telecom"]] == [
        "000", "111", "222", "jane@example.org"
    ]  # fmt: skip


async def test_fhirpath_patch_delete(client, jane):
    patch = _fhirpath_patch(
        _op("delete", "Patient.telecom.where(system = 'email')"),
        _op("delete", "Patient.birthDate"),
    )
    response = await _patch(client, f"/Patient/{jane['id']}", patch, FHIR_JSON)

    assert response.status_code == 200, response.text
    body = response.json()
    assert [t["value"] for t in body["telecom"]] == ["111", "222"]
    assert "birthDate" not in body


async def test_fhirpath_patch_replace(client, jane):
    patch = _fhirpath_patch(
        _op("replace", "Patient.birthDate", value={"valueDate": "1970-01-01"}),
        _op("replace", "Patient.telecom[1].value", value={"valueString": "999"}),
    )
    response = await _patch(client, f"/Patient/{jane['id']}", patch, FHIR_JSON)

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["birthDate"] == "1970-01-01"
    assert [t["value"] for t in body["telecom"]] == ["111", "999", "jane@example.org"]


async def test_fhirpath_patch_move(client, jane):
    patch = _fhirpath_patch(
        _op("move", "Patient.telecom", source={"valueInteger": 2},
            destination={"valueInteger": 0}),
    )  # fmt: skip
    response = await _patch(client, f"/Patient/{jane['id']}", patch, FHIR_JSON)

    assert response.status_code == 200, response.text
    assert [t["value"] for t in response.json()["telecom"]] == [
        "jane@example.org", "111", "222"
    ]  # fmt: skip


async def test_fhirpath_patch_with_complex_value_in_parts(client, jane):
    patch = {
        "resourceType": "Parameters",
        "parameter": [{"name": "operation", "part": [
            {"name": "type", "valueCode": "add"},
            {"name": "path", "valueString": "Patient"},
            {"name": "name", "valueString": "contact"},
            {"name": "value", "part": [
                {"name": "gender", "valueCode": "male"},
                {"name": "name", "valueHumanName": {"family": "Brother"}},
            ]},
        ]}],
    }  # fmt: skip
    response = await _patch(client, f"/Patient/{jane['id']}", patch, FHIR_JSON)

    assert response.status_code == 200, response.text
    assert response.json()["contact"] == [{"gender": "male", "name": {"family": "Brother"}}]


async def test_fhirpath_patch_unknown_operation_type_is_rejected(client, jane):
    before = await version_count(client)
    patch = _fhirpath_patch(_op("frobnicate", "Patient.gender", value={"valueCode": "male"}))
    response = await _patch(client, f"/Patient/{jane['id']}", patch, FHIR_JSON)
    assert_outcome(response, 400)
    await _assert_unchanged(client, jane, before)


async def test_fhirpath_patch_is_all_or_nothing(client, jane):
    before = await version_count(client)
    patch = _fhirpath_patch(
        _op("replace", "Patient.gender", value={"valueCode": "male"}),
        _op("replace", "Patient.telecom", value={"valueString": "ambiguous"}),  # 3 matches
    )
    response = await _patch(client, f"/Patient/{jane['id']}", patch, FHIR_JSON)
    assert response.status_code in (400, 422), response.text
    assert_outcome(response, response.status_code)
    await _assert_unchanged(client, jane, before)


# -- patches that must be refused ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        (JSON_PATCH, [{"op": "replace", "path": "/birthDate", "value": "2023-02-30"}]),
        (JSON_PATCH, [{"op": "add", "path": "/favouriteColour", "value": "blue"}]),
        (MERGE_PATCH, {"gender": ["female"]}),
        (MERGE_PATCH, {"active": "yes"}),
        ("application/json", {"name": []}),
        (FHIR_JSON, _fhirpath_patch(_op("replace", "Patient.birthDate",
                                        value={"valueString": "yesterday"}))),
    ],
    ids=["bad-date", "unknown-element", "array-for-single", "string-boolean", "empty-array",
         "fhirpath-bad-date"],
)  # fmt: skip
async def test_patch_producing_invalid_resource_is_rejected(client, jane, content_type, body):
    before = await version_count(client)
    response = await _patch(client, f"/Patient/{jane['id']}", body, content_type)
    assert response.status_code in (400, 422), response.text
    assert_outcome(response, response.status_code)
    await _assert_unchanged(client, jane, before)


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        (JSON_PATCH, [{"op": "replace", "path": "/id", "value": "hijacked"}]),
        (JSON_PATCH, [{"op": "remove", "path": "/id"}]),
        (MERGE_PATCH, {"id": "hijacked"}),
        (JSON_PATCH, [{"op": "replace", "path": "/resourceType", "value": "Practitioner"}]),
    ],
    ids=["json-patch-id", "json-patch-remove-id", "merge-patch-id", "resource-type"],
)
async def test_patch_changing_identity_is_rejected(client, jane, content_type, body):
    before = await version_count(client)
    response = await _patch(client, f"/Patient/{jane['id']}", body, content_type)
    assert response.status_code in (400, 422), response.text
    assert_outcome(response, response.status_code)
    await _assert_unchanged(client, jane, before)
    assert (await client.get("/Patient/hijacked")).status_code == 404


async def test_patch_unknown_resource_is_404(client):
    response = await _patch(client, "/Patient/nope", {"gender": "male"}, MERGE_PATCH)
    assert_outcome(response, 404, "not-found")


async def test_patch_deleted_resource_is_410(client, jane):
    await client.delete(f"/Patient/{jane['id']}")
    response = await _patch(client, f"/Patient/{jane['id']}", {"gender": "male"}, MERGE_PATCH)
    assert_outcome(response, 410, "deleted")


async def test_patch_with_stale_if_match_is_412(client, jane):
    before = await version_count(client)
    response = await _patch(client, f"/Patient/{jane['id']}", {"gender": "male"}, MERGE_PATCH,
                            **{"If-Match": 'W/"3"'})  # fmt: skip
    assert_outcome(response, 412)
    await _assert_unchanged(client, jane, before)


async def test_patch_with_matching_if_match_applies(client, jane):
    response = await _patch(client, f"/Patient/{jane['id']}", {"gender": "male"}, MERGE_PATCH,
                            **{"If-Match": 'W/"1"'})  # fmt: skip
    assert response.status_code == 200
    assert response.headers["etag"] == 'W/"2"'


async def test_patch_with_unsupported_content_type_is_415(client, jane):
    before = await version_count(client)
    response = await client.patch(
        f"/Patient/{jane['id']}", content=b"gender=male", headers={"Content-Type": "text/plain"}
    )
    assert_outcome(response, 415, "not-supported")
    await _assert_unchanged(client, jane, before)


# -- conditional patch --------------------------------------------------------------------------


async def test_conditional_patch_single_match(client, jane):
    other = await create(client, patient("Other", mrn="p-2"))
    response = await _patch(client, f"/Patient?{identifier_query('p-1')}", {"gender": "male"},
                            MERGE_PATCH)  # fmt: skip

    assert response.status_code == 200, response.text
    assert response.json()["id"] == jane["id"]
    assert (await client.get(f"/Patient/{jane['id']}")).json()["gender"] == "male"
    assert (await client.get(f"/Patient/{other['id']}")).json() == other


async def test_conditional_patch_with_json_patch(client, jane):
    ops = [{"op": "replace", "path": "/gender", "value": "unknown"}]
    response = await _patch(client, f"/Patient?{identifier_query('p-1')}", ops, JSON_PATCH)
    assert response.status_code == 200, response.text
    assert response.json()["gender"] == "unknown"


async def test_conditional_patch_no_match_is_404(client, jane):
    before = await version_count(client)
    response = await _patch(client, f"/Patient?{identifier_query('nobody')}", {"gender": "male"},
                            MERGE_PATCH)  # fmt: skip
    assert_outcome(response, 404)
    assert await version_count(client) == before


async def test_conditional_patch_multiple_matches_is_412(client, jane):
    twin = await create(client, patient("Twin", mrn="p-1"))
    before = await version_count(client)
    response = await _patch(client, f"/Patient?{identifier_query('p-1')}", {"gender": "male"},
                            MERGE_PATCH)  # fmt: skip
    assert_outcome(response, 412)
    await _assert_unchanged(client, jane, before)
    await _assert_unchanged(client, twin, before)


@pytest.mark.parametrize(
    ("content_type", "body"),
    [(JSON_PATCH, b"[{"), (MERGE_PATCH, b"not json"), (FHIR_JSON, b""),
     (MERGE_PATCH, b'{"gender": "\xff"}'), (JSON_PATCH, b'"replace"')],
    ids=["truncated", "not-json", "empty", "invalid-utf8", "json-string"],
)  # fmt: skip
async def test_malformed_patch_body_is_400(client, jane, content_type, body):
    before = await version_count(client)
    response = await client.patch(
        f"/Patient/{jane['id']}", content=body, headers={"Content-Type": content_type}
    )
    assert_outcome(response, 400)
    await _assert_unchanged(client, jane, before)
