"""Content negotiation, Prefer, and error handling: every failure is an OperationOutcome with the
right status, nothing is written, and no internals leak."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import httpx
import pytest

from fhir_server.app import ServerApp
from tests.conftest import TEST_BASE, make_settings
from tests.http.fhir_helpers import (
    FHIR_JSON,
    assert_fhir_json,
    assert_outcome,
    create,
    patient,
    put,
    search_ids,
    version_count,
)

# -- Content-Type and Accept --------------------------------------------------------------------


@pytest.mark.parametrize(
    "content_type",
    [
        FHIR_JSON,
        "application/json",
        "application/fhir+json; charset=utf-8",
        "application/json;charset=UTF-8",
        "application/fhir+json; fhirVersion=4.0",
    ],
)
async def test_json_content_types_are_accepted(client, content_type):
    response = await client.post(
        "/Patient", content=json.dumps(patient()), headers={"Content-Type": content_type}
    )
    assert response.status_code == 201, response.text
    assert_fhir_json(response)


@pytest.mark.parametrize(
    "accept",
    [
        FHIR_JSON,
        "application/json",
        "*/*",
        "application/fhir+json, */*; q=0.1",
        "application/fhir+xml;q=0.9, application/fhir+json",
        "application/fhir+json; fhirVersion=4.0",
    ],
)
async def test_json_accept_values_get_fhir_json(client, accept):
    created = await create(client, patient())
    response = await client.get(f"/Patient/{created['id']}", headers={"Accept": accept})
    assert response.status_code == 200
    assert_fhir_json(response)
    assert response.json() == created


@pytest.mark.parametrize("fmt", ["json", "application/fhir+json", "application/json"])
async def test_format_json_parameter(client, fmt):
    created = await create(client, patient())
    response = await client.get(f"/Patient/{created['id']}", params={"_format": fmt})
    assert response.status_code == 200
    assert_fhir_json(response)
    assert response.json() == created


async def test_format_parameter_overrides_an_xml_accept_header(client):
    created = await create(client, patient())
    response = await client.get(
        f"/Patient/{created['id']}",
        params={"_format": "json"},
        headers={"Accept": "application/fhir+xml"},
    )
    assert response.status_code == 200
    assert response.json() == created


async def test_pretty_true_indents_the_json(client):
    created = await create(client, patient())
    compact = await client.get(f"/Patient/{created['id']}")
    pretty = await client.get(f"/Patient/{created['id']}", params={"_pretty": "true"})

    assert pretty.status_code == 200
    assert "\n  " in pretty.text
    assert "\n" not in compact.text.strip()
    assert pretty.json() == compact.json()


async def test_pretty_applies_to_error_bodies_too(client):
    response = await client.get("/Patient/missing", params={"_pretty": "true"})
    assert_outcome(response, 404)
    assert "\n  " in response.text


@pytest.mark.parametrize(
    "accept", ["application/fhir+xml", "application/xml", "text/xml", "application/xml+fhir"]
)
async def test_xml_accept_is_406_operation_outcome(client, accept):
    created = await create(client, patient())
    response = await client.get(f"/Patient/{created['id']}", headers={"Accept": accept})
    assert_outcome(response, 406, "not-supported")


@pytest.mark.parametrize("fmt", ["xml", "application/fhir+xml", "text/xml"])
async def test_format_xml_is_406_operation_outcome(client, fmt):
    created = await create(client, patient())
    response = await client.get(f"/Patient/{created['id']}", params={"_format": fmt})
    assert_outcome(response, 406, "not-supported")


async def test_xml_accept_on_create_is_406_and_writes_nothing(client):
    response = await client.post(
        "/Patient", json=patient(), headers={"Accept": "application/fhir+xml"}
    )
    assert_outcome(response, 406)
    assert await version_count(client) == 0


async def test_unsupported_fhir_version_in_accept_is_406(client):
    response = await client.get(
        "/metadata", headers={"Accept": "application/fhir+json; fhirVersion=5.0"}
    )
    assert_outcome(response, 406, "not-supported")


@pytest.mark.parametrize(
    "content_type",
    ["application/fhir+xml", "application/xml", "text/xml", "text/plain", "application/pdf"],
)
async def test_unsupported_content_type_is_415_and_writes_nothing(client, content_type):
    response = await client.post(
        "/Patient", content=json.dumps(patient()), headers={"Content-Type": content_type}
    )
    assert_outcome(response, 415, "not-supported")
    assert await version_count(client) == 0


async def test_xml_content_type_on_update_is_415(client):
    created = await create(client, patient())
    xml = f'<Patient xmlns="http://hl7.org/fhir"><id value="{created["id"]}"/></Patient>'
    response = await client.put(
        f"/Patient/{created['id']}", content=xml, headers={"Content-Type": "application/fhir+xml"}
    )
    assert_outcome(response, 415, "not-supported")
    assert (await client.get(f"/Patient/{created['id']}")).json() == created


# -- Prefer -------------------------------------------------------------------------------------


async def test_prefer_return_minimal_on_create(client):
    response = await client.post("/Patient", json=patient(), headers={"Prefer": "return=minimal"})

    assert response.status_code == 201
    assert response.content == b""
    assert response.headers["etag"] == 'W/"1"'
    assert "last-modified" in response.headers
    location = response.headers["location"]
    assert "/Patient/" in location and location.endswith("/_history/1")
    assert (await client.get(location)).status_code == 200


async def test_prefer_return_minimal_on_update(client):
    created = await create(client, patient())
    response = await put(client, {**created, "gender": "male"}, Prefer="return=minimal")
    assert response.status_code == 200
    assert response.content == b""
    assert response.headers["etag"] == 'W/"2"'
    assert "last-modified" in response.headers


async def test_prefer_return_representation(client):
    response = await client.post(
        "/Patient", json=patient("Shown"), headers={"Prefer": "return=representation"}
    )
    assert response.status_code == 201
    assert response.json()["name"][0]["family"] == "Shown"
    assert response.json()["meta"]["versionId"] == "1"


async def test_prefer_return_operation_outcome(client):
    response = await client.post(
        "/Patient", json=patient(), headers={"Prefer": "return=OperationOutcome"}
    )
    assert response.status_code == 201
    assert_fhir_json(response)
    assert response.json()["resourceType"] == "OperationOutcome"
    assert response.headers["etag"] == 'W/"1"'
    assert "/_history/1" in response.headers["location"]


async def test_prefer_return_minimal_on_patch(client):
    created = await create(client, patient())
    response = await client.patch(
        f"/Patient/{created['id']}",
        json={"gender": "male"},
        headers={"Content-Type": "application/merge-patch+json", "Prefer": "return=minimal"},
    )
    assert response.status_code == 200
    assert response.content == b""
    assert response.headers["etag"] == 'W/"2"'


# -- malformed and hostile bodies ---------------------------------------------------------------


def _nested(depth: int, open_: str, close: str, inner: str = "1") -> bytes:
    return (open_ * depth + inner + close * depth).encode()


HOSTILE_BODIES = {
    "not-json": b"this is not json",
    "truncated": b'{"resourceType": "Patient", "gender": ',
    "trailing-garbage": b'{"resourceType": "Patient"} {}',
    "single-quotes": b"{'resourceType': 'Patient'}",
    "nan": b'{"resourceType": "Patient", "multipleBirthInteger": NaN}',
    "deep-arrays": b'{"resourceType": "Patient", "extension": ' + _nested(3000, "[", "]") + b"}",
    "deep-objects": b'{"resourceType": "Patient", "text": ' + _nested(3000, '{"a":', "}") + b"}",
    "deep-arrays-with-decimal": b'{"resourceType": "Patient", "x": '
    + _nested(3000, "[", "]", "1.5")
    + b"}",
    "huge-exponent": b'{"resourceType": "Observation", "status": "final", '
    b'"code": {"text": "x"}, "valueQuantity": {"value": 1e999999}}',
    "huge-integer": b'{"resourceType": "Patient", "multipleBirthInteger": ' + b"9" * 1000 + b"}",
    "huge-decimal": b'{"resourceType": "Observation", "status": "final", '
    b'"code": {"text": "x"}, "valueQuantity": {"value": 1.' + b"5" * 5000 + b"}}",
    "invalid-utf8": b'{"resourceType": "Patient", "name": [{"family": "\xff\xfe\xc3"}]}',
    "lone-surrogate": b'{"resourceType": "Patient", "name": [{"family": "\\ud800"}]}',
    "json-array": b"[]",
    "json-string": b'"Patient"',
    "json-null": b"null",
    "empty": b"",
    "whitespace": b"   \n ",
}


@pytest.mark.parametrize("body", HOSTILE_BODIES.values(), ids=HOSTILE_BODIES.keys())
async def test_malformed_body_on_create_is_400_and_writes_nothing(client, body):
    response = await client.post("/Patient", content=body, headers={"Content-Type": FHIR_JSON})
    assert_outcome(response, 400)
    assert await version_count(client) == 0


@pytest.mark.parametrize(
    "body", [HOSTILE_BODIES["not-json"], HOSTILE_BODIES["deep-arrays"],
             HOSTILE_BODIES["invalid-utf8"]],
    ids=["not-json", "deep", "utf8"],
)  # fmt: skip
async def test_malformed_body_on_update_is_400_and_writes_nothing(client, body):
    created = await create(client, patient())
    response = await client.put(
        f"/Patient/{created['id']}", content=body, headers={"Content-Type": FHIR_JSON}
    )
    assert_outcome(response, 400)
    assert (await client.get(f"/Patient/{created['id']}")).json() == created
    assert await version_count(client) == 1


async def test_large_integer_in_decimal_is_kept_exactly_or_rejected(client):
    digits = "123456789012345678901234567890"
    body = (
        '{"resourceType": "Observation", "status": "final", "code": {"text": "x"}, '
        f'"valueQuantity": {{"value": {digits}}}}}'
    )
    response = await client.post("/Observation", content=body,
                                 headers={"Content-Type": FHIR_JSON})  # fmt: skip
    if response.status_code == 201:  # accepted: it must not have been rounded
        assert digits in response.text
        stored = await client.get(f"/Observation/{response.json()['id']}")
        assert digits in stored.text
    else:
        assert_outcome(response, 400)
        assert await version_count(client) == 0


# -- size limit ---------------------------------------------------------------------------------


@pytest.fixture
async def small_client(tmp_path) -> AsyncIterator[httpx.AsyncClient]:
    server = ServerApp(make_settings(tmp_path, max_body_bytes=1000))
    await server.startup()
    try:
        transport = httpx.ASGITransport(app=server)
        async with httpx.AsyncClient(transport=transport, base_url=TEST_BASE) as http:
            yield http
    finally:
        await server.shutdown()


def _padded_patient(size: int) -> bytes:
    body = patient(name=[{"family": "x"}])
    base = len(json.dumps(body | {"name": [{"family": ""}]}).encode())
    body["name"][0]["family"] = "x" * (size - base)
    raw = json.dumps(body).encode()
    assert len(raw) == size
    return raw


async def test_body_just_under_the_limit_is_accepted(small_client):
    response = await small_client.post(
        "/Patient", content=_padded_patient(990), headers={"Content-Type": FHIR_JSON}
    )
    assert response.status_code == 201


async def test_body_over_the_limit_is_413_and_writes_nothing(small_client):
    response = await small_client.post(
        "/Patient", content=_padded_patient(5000), headers={"Content-Type": FHIR_JSON}
    )
    assert_outcome(response, 413, "too-long")
    assert await search_ids(small_client, "Patient") == []


async def test_streamed_body_over_the_limit_is_413(small_client):
    raw = _padded_patient(5000)

    async def chunks():
        for start in range(0, len(raw), 500):
            yield raw[start : start + 500]

    response = await small_client.post(
        "/Patient", content=chunks(), headers={"Content-Type": FHIR_JSON}
    )
    assert "content-length" not in response.request.headers
    assert_outcome(response, 413, "too-long")
    assert await search_ids(small_client, "Patient") == []


async def test_transaction_over_the_limit_is_413(small_client):
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [{"resource": json.loads(_padded_patient(600)),
                   "request": {"method": "POST", "url": "Patient"}}] * 3,
    }  # fmt: skip
    response = await small_client.post("/", json=bundle)
    assert_outcome(response, 413, "too-long")
    assert await search_ids(small_client, "Patient") == []


# -- unknown types, unsupported methods ---------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "url"),
    [
        ("GET", "/Unicorn"),
        ("GET", "/Unicorn/1"),
        ("POST", "/Unicorn"),
        ("PUT", "/Unicorn/1"),
        ("GET", "/Citation/1"),  # R4B/R5 resource type, not in R4
        ("GET", "/patient/1"),  # resource types are case-sensitive
    ],
)
async def test_unknown_resource_type_is_404(client, method, url):
    body = {"resourceType": url.split("/")[1], "id": "1"}
    kwargs = {"json": body} if method in ("POST", "PUT") else {}
    response = await client.request(method, url, **kwargs)
    assert_outcome(response, 404)
    assert await version_count(client) == 0


@pytest.mark.parametrize(
    ("method", "url"),
    [
        ("POST", "/Patient/123"),
        ("PUT", "/metadata"),
        ("DELETE", "/metadata"),
        ("DELETE", "/Patient/123/_history/1"),
        ("PUT", "/Patient/123/_history/1"),
        ("PATCH", "/"),
        ("DELETE", "/_history"),
        ("POST", "/Patient/_history"),
        ("DELETE", "/Patient/123/_history"),
    ],
)
async def test_unsupported_method_is_405(client, method, url):
    kwargs = {"json": patient(id="123")} if method in ("POST", "PUT", "PATCH") else {}
    response = await client.request(method, url, **kwargs)
    assert_outcome(response, 405, "not-supported")
    assert await version_count(client) == 0


async def test_405_response_lists_the_allowed_methods(client):
    # RFC 9110 15.5.6: a 405 response MUST carry an Allow header
    response = await client.post("/Patient/123", json=patient(id="123"))
    assert response.status_code == 405
    allowed = {m.strip() for m in response.headers.get("allow", "").split(",") if m.strip()}
    assert {"GET", "PUT", "DELETE"} <= allowed
    assert "POST" not in allowed


async def test_unknown_url_shape_is_404(client):
    assert_outcome(await client.get("/Patient/1/_history/1/extra"), 404)


@pytest.mark.parametrize(
    "url",
    [
        "/Patient?_lastUpdated=ne2024-01-01T10:00:00%2B25:00",
        "/Patient?birthdate=lt2024-01-01T10:00:00-24:00",
        "/?_lastUpdated=2024-01-01T10:00:00%2B99:99",
        "/Patient/_history?_since=2024-01-01T10:00:00%2B25:00",
        "/_history?_at=2024-01-01T10:00:00%2B25:00",
    ],
)
async def test_out_of_range_time_zone_offsets_are_400(client, url):
    """Found by fuzzing: an offset beyond ±14:00 was a 500 (datetime cannot hold ±24 h)."""
    assert_outcome(await client.get(url), 400)


async def test_conditional_patch_with_an_out_of_range_offset_is_400(client):
    created = await client.post(
        "/Patient",
        json={"resourceType": "Patient", "gender": "female"},
        headers={"Content-Type": FHIR_JSON},
    )
    assert created.status_code == 201
    response = await client.patch(
        "/Patient?_lastUpdated=ne2024-01-01T10:00:00%2B25:00",
        json=[{"op": "replace", "path": "/gender", "value": "male"}],
        headers={"Content-Type": "application/json-patch+json"},
    )
    assert_outcome(response, 400)
    unchanged = await client.get(f"/Patient/{created.json()['id']}")
    assert unchanged.json()["gender"] == "female"


async def test_error_responses_never_contain_stack_traces(client):
    responses = [
        await client.post("/Patient", content=HOSTILE_BODIES["deep-objects"],
                          headers={"Content-Type": FHIR_JSON}),
        await client.post("/Patient", content=b"{", headers={"Content-Type": FHIR_JSON}),
        await client.get("/Patient/x/_history/y"),
    ]  # fmt: skip
    for response in responses:
        assert response.status_code >= 400
        for marker in ("Traceback", ".py", "sqlite3", "Exception"):
            assert marker not in response.text, (marker, response.text)
