"""batch and transaction Bundles (R4 http.html 3.1.0.11): atomicity, processing order, reference
rewriting, conditional entries and the response Bundles."""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

import pytest

from tests.http.fhir_helpers import (
    BASE,
    FHIR_JSON,
    MRN,
    assert_fhir_json,
    assert_outcome,
    create,
    diagnostics,
    identifier_query,
    observation,
    patient,
    search_ids,
    version_count,
)

# -- builders -----------------------------------------------------------------------------------


def urn() -> str:
    return f"urn:uuid:{uuid.uuid4()}"


def entry(method: str, url: str, resource: dict | None = None, full_url: str | None = None,
          **request: str) -> dict[str, Any]:  # fmt: skip
    out: dict[str, Any] = {}
    if full_url:
        out["fullUrl"] = full_url
    if resource is not None:
        out["resource"] = resource
    out["request"] = {"method": method, "url": url, **request}
    return out


def bundle(kind: str, *entries: dict) -> dict[str, Any]:
    out: dict[str, Any] = {"resourceType": "Bundle", "type": kind}
    if entries:
        out["entry"] = list(entries)
    return out


async def post_bundle(client, body: dict, **headers: str):
    return await client.post("/", json=body, headers=headers)


async def run_ok(client, body: dict, **headers: str) -> list[dict]:
    """POST a Bundle that must succeed; return its response entries."""
    response = await post_bundle(client, body, **headers)
    assert response.status_code == 200, response.text
    assert_fhir_json(response)
    result = response.json()
    assert result["resourceType"] == "Bundle"
    assert result["type"] == f"{body['type']}-response"
    assert len(result.get("entry", ())) == len(body.get("entry", ()))
    return result.get("entry", [])


def status_of(response_entry: dict) -> int:
    return int(response_entry["response"]["status"].split()[0])


def id_from_location(response_entry: dict) -> str:
    location = response_entry["response"]["location"]
    parts = location.split("/")
    return parts[parts.index("_history") - 1] if "_history" in parts else parts[-1]


async def read(client, reference: str) -> dict:
    response = await client.get(f"/{reference}")
    assert response.status_code == 200, response.text
    return response.json()


# -- transaction basics -------------------------------------------------------------------------


async def test_transaction_creates_and_rewrites_urn_uuid_references(client):
    patient_urn = urn()
    body = bundle(
        "transaction",
        entry("POST", "Patient", patient("Linked"), patient_urn),
        entry("POST", "Observation", observation(subject=patient_urn), urn()),
    )

    entries = await run_ok(client, body)

    assert [status_of(e) for e in entries] == [201, 201]
    patient_id = id_from_location(entries[0])
    obs_id = id_from_location(entries[1])
    for response_entry, type_, id_ in ((entries[0], "Patient", patient_id),
                                       (entries[1], "Observation", obs_id)):  # fmt: skip
        response = response_entry["response"]
        assert response["location"] == f"{BASE}/{type_}/{id_}/_history/1"
        assert response["etag"] == 'W/"1"'
        assert "lastModified" in response
    stored = await read(client, f"Observation/{obs_id}")
    assert stored["subject"]["reference"] == f"Patient/{patient_id}"
    assert entries[1]["resource"]["subject"]["reference"] == f"Patient/{patient_id}"


async def test_transaction_rewrites_references_in_nested_and_circular_places(client):
    patient_urn, org_urn = urn(), urn()
    org = {"resourceType": "Organization", "name": "Clinic",
           "extension": [{"url": "http://example.org/fav-patient",
                          "valueReference": {"reference": patient_urn}}]}  # fmt: skip
    pat = patient("Circular", managingOrganization={"reference": org_urn},
                  generalPractitioner=[{"reference": org_urn}])  # fmt: skip
    body = bundle(
        "transaction",
        entry("POST", "Patient", pat, patient_urn),
        entry("POST", "Organization", org, org_urn),
    )

    entries = await run_ok(client, body)

    patient_id, org_id = id_from_location(entries[0]), id_from_location(entries[1])
    stored_patient = await read(client, f"Patient/{patient_id}")
    stored_org = await read(client, f"Organization/{org_id}")
    assert stored_patient["managingOrganization"]["reference"] == f"Organization/{org_id}"
    assert stored_patient["generalPractitioner"][0]["reference"] == f"Organization/{org_id}"
    assert stored_org["extension"][0]["valueReference"]["reference"] == f"Patient/{patient_id}"


async def test_transaction_rewrites_urn_uuid_in_uri_elements_and_narrative(client):
    # R4 3.1.0.11.2: "Servers SHALL replace all matching links in the bundle, whether they are
    # found in the resource ids, resource references, elements of type uri, url, oid, uuid, and
    # <a href="" & <img src="" in the narrative."
    patient_urn = urn()
    obs = observation(
        subject=patient_urn,
        extension=[{"url": "http://example.org/source", "valueUri": patient_urn}],
        text={"status": "generated",
              "div": f'<div xmlns="http://www.w3.org/1999/xhtml"><a href="{patient_urn}">pt</a>'
                     "</div>"},
    )  # fmt: skip
    body = bundle("transaction", entry("POST", "Patient", patient(), patient_urn),
                  entry("POST", "Observation", obs))  # fmt: skip

    entries = await run_ok(client, body)

    stored = await read(client, f"Observation/{id_from_location(entries[1])}")
    assert patient_urn not in json.dumps(stored)
    assert id_from_location(entries[0]) in stored["extension"][0]["valueUri"]


async def test_transaction_with_unresolvable_urn_reference_fails_and_writes_nothing(client):
    body = bundle(
        "transaction",
        entry("POST", "Patient", patient(), urn()),
        entry("POST", "Observation", observation(subject=urn())),
    )
    response = await post_bundle(client, body)
    assert_outcome(response, 400)
    assert await version_count(client) == 0


async def test_transaction_response_entries_follow_request_order(client):
    existing = await create(client, patient("Existing", mrn="ro-1"))
    body = bundle(
        "transaction",
        entry("GET", f"Patient?{identifier_query('ro-1')}"),
        entry("PUT", "Patient/put-me", patient("Put", id="put-me")),
        entry("POST", "Observation", observation()),
        entry("DELETE", f"Patient/{existing['id']}"),
    )

    entries = await run_ok(client, body)

    assert entries[0]["resource"]["type"] == "searchset"
    assert status_of(entries[1]) == 201
    assert entries[1]["response"]["location"].startswith(f"{BASE}/Patient/put-me/")
    assert status_of(entries[2]) == 201
    assert entries[2]["response"]["location"].startswith(f"{BASE}/Observation/")
    assert status_of(entries[3]) in (200, 204)


async def test_transaction_processing_order_delete_post_put_get(client):
    doomed = await create(client, patient("Doomed", mrn="order-del"))
    body = bundle(
        "transaction",
        entry("GET", f"Patient?{identifier_query('order-new')}"),
        entry("GET", f"Patient?{identifier_query('order-del')}"),
        entry("PUT", "Patient/order-put", patient("Put", mrn="order-put", id="order-put")),
        entry("POST", "Patient", patient("New", mrn="order-new")),
        entry("DELETE", f"Patient/{doomed['id']}"),
    )

    entries = await run_ok(client, body)

    created_search, deleted_search = entries[0]["resource"], entries[1]["resource"]
    assert created_search["resourceType"] == "Bundle"
    assert [e["resource"]["name"][0]["family"] for e in created_search["entry"]] == ["New"]
    assert deleted_search.get("entry", []) == []
    assert status_of(entries[2]) == 201 and status_of(entries[3]) == 201


async def test_transaction_is_atomic_when_a_resource_is_invalid(client):
    keep = await create(client, patient("Keep"))
    before = await version_count(client)
    body = bundle(
        "transaction",
        entry("POST", "Patient", patient("Would be created")),
        entry("PUT", f"Patient/{keep['id']}", {**keep, "name": [{"family": "Changed"}]}),
        entry("DELETE", f"Patient/{keep['id']}-other"),
        entry("POST", "Observation", observation(status="not-a-status-code ")),
    )

    response = await post_bundle(client, body)

    outcome = assert_outcome(response, 400)
    assert "entry[3]" in diagnostics(outcome) or "entry.3" in diagnostics(outcome)
    assert await version_count(client) == before
    assert (await client.get(f"/Patient/{keep['id']}")).json() == keep


async def test_transaction_is_atomic_when_a_precondition_fails(client):
    keep = await create(client, patient("Keep"))
    before = await version_count(client)
    body = bundle(
        "transaction",
        entry("POST", "Patient", patient("Would be created")),
        entry("DELETE", f"Patient/{keep['id']}"),
        entry("PUT", "Patient/other", patient(id="other"), ifMatch='W/"3"'),
    )

    response = await post_bundle(client, body)

    assert_outcome(response, 412)
    assert await version_count(client) == before
    assert (await client.get(f"/Patient/{keep['id']}")).status_code == 200
    assert await search_ids(client, "Patient") == [keep["id"]]


async def test_transaction_with_overlapping_identities_fails(client):
    # R4 3.1.0.11.2: if any resource identities overlap in the DELETE/POST/PUT steps, the
    # transaction SHALL fail
    body = bundle(
        "transaction",
        entry("PUT", "Patient/twice", patient("First", id="twice")),
        entry("PUT", "Patient/twice", patient("Second", id="twice")),
    )
    response = await post_bundle(client, body)
    assert 400 <= response.status_code < 500
    assert_outcome(response, response.status_code)
    assert await version_count(client) == 0


async def test_transaction_delete_and_put_of_same_resource_fails(client):
    existing = await create(client, patient("Existing", id="x"))
    before = await version_count(client)
    body = bundle(
        "transaction",
        entry("DELETE", f"Patient/{existing['id']}"),
        entry("PUT", f"Patient/{existing['id']}", {**existing, "gender": "male"}),
    )
    response = await post_bundle(client, body)
    assert 400 <= response.status_code < 500
    assert_outcome(response, response.status_code)
    assert await version_count(client) == before


async def test_empty_transaction_returns_empty_response(client):
    response = await post_bundle(client, bundle("transaction"))
    assert response.status_code == 200
    result = response.json()
    assert result["type"] == "transaction-response"
    assert result.get("entry", []) == []


async def test_transaction_put_entries_create_and_update(client):
    existing = await create(client, patient("Old"))
    body = bundle(
        "transaction",
        entry("PUT", "Patient/tx-new", patient("New", id="tx-new")),
        entry("PUT", f"Patient/{existing['id']}", {**existing, "name": [{"family": "Renamed"}]}),
    )

    entries = await run_ok(client, body)

    assert status_of(entries[0]) == 201
    assert entries[0]["response"]["location"] == f"{BASE}/Patient/tx-new/_history/1"
    assert status_of(entries[1]) == 200
    assert entries[1]["response"]["etag"] == 'W/"2"'
    assert (await read(client, f"Patient/{existing['id']}"))["name"][0]["family"] == "Renamed"


async def test_transaction_put_with_mismatching_id_fails(client):
    body = bundle("transaction", entry("PUT", "Patient/a", patient(id="b")))
    assert_outcome(await post_bundle(client, body), 400)
    assert await version_count(client) == 0


async def test_transaction_accepts_absolute_request_urls(client):
    body = bundle("transaction", entry("PUT", f"{BASE}/Patient/absolute", patient(id="absolute")))
    entries = await run_ok(client, body)
    assert status_of(entries[0]) == 201
    assert (await client.get("/Patient/absolute")).status_code == 200


async def test_transaction_prefer_minimal_omits_resources(client):
    body = bundle("transaction", entry("POST", "Patient", patient()))
    entries = await run_ok(client, body, Prefer="return=minimal")
    assert status_of(entries[0]) == 201
    assert "resource" not in entries[0]
    assert entries[0]["response"]["location"].endswith("/_history/1")


async def test_transaction_keeps_decimal_precision(client):
    body = bundle("transaction", entry("POST", "Observation", observation(value="__V__")))
    text = json.dumps(body).replace('"__V__"', "98.60")
    response = await client.post("/", content=text, headers={"Content-Type": FHIR_JSON})
    assert response.status_code == 200
    obs_id = id_from_location(response.json()["entry"][0])
    assert '"value":98.60' in (await client.get(f"/Observation/{obs_id}")).text


# -- conditional entries ------------------------------------------------------------------------


async def test_transaction_resolves_conditional_references(client):
    target = await create(client, patient("Target", mrn="cr-1"))
    body = bundle(
        "transaction",
        entry("POST", "Observation", observation(subject=f"Patient?identifier={MRN}|cr-1")),
    )

    entries = await run_ok(client, body)

    stored = await read(client, f"Observation/{id_from_location(entries[0])}")
    assert stored["subject"]["reference"] == f"Patient/{target['id']}"


@pytest.mark.parametrize("matches", [0, 2])
async def test_transaction_fails_when_conditional_reference_is_not_unique(client, matches):
    for _ in range(matches):
        await create(client, patient(mrn="cr-2"))
    before = await version_count(client)
    body = bundle(
        "transaction",
        entry("POST", "Patient", patient("Would be created")),
        entry("POST", "Observation", observation(subject=f"Patient?identifier={MRN}|cr-2")),
    )
    response = await post_bundle(client, body)
    assert 400 <= response.status_code < 500
    assert_outcome(response, response.status_code)
    assert await version_count(client) == before


async def test_transaction_if_none_exist_returns_existing(client):
    existing = await create(client, patient("Existing", mrn="ine-1"))
    patient_urn = urn()
    body = bundle(
        "transaction",
        entry("POST", "Patient", patient("Dup", mrn="ine-1"), patient_urn,
              ifNoneExist=identifier_query("ine-1")),
        entry("POST", "Observation", observation(subject=patient_urn)),
    )  # fmt: skip

    entries = await run_ok(client, body)

    assert status_of(entries[0]) == 200
    assert await search_ids(client, "Patient") == [existing["id"]]
    obs = await read(client, f"Observation/{id_from_location(entries[1])}")
    assert obs["subject"]["reference"] == f"Patient/{existing['id']}"


async def test_transaction_if_none_exist_without_match_creates(client):
    body = bundle(
        "transaction",
        entry("POST", "Patient", patient(mrn="ine-2"), ifNoneExist=identifier_query("ine-2")),
    )
    entries = await run_ok(client, body)
    assert status_of(entries[0]) == 201
    assert len(await search_ids(client, "Patient", identifier_query("ine-2"))) == 1


async def test_transaction_if_none_exist_with_multiple_matches_fails(client):
    await create(client, patient(mrn="ine-3"))
    await create(client, patient(mrn="ine-3"))
    before = await version_count(client)
    body = bundle(
        "transaction",
        entry("POST", "Patient", patient(mrn="ine-3"), ifNoneExist=identifier_query("ine-3")),
    )
    assert_outcome(await post_bundle(client, body), 412)
    assert await version_count(client) == before


async def test_transaction_if_match_honoured(client):
    existing = await create(client, patient("Before"))
    body = bundle(
        "transaction",
        entry("PUT", f"Patient/{existing['id']}", {**existing, "gender": "male"},
              ifMatch='W/"1"'),
    )  # fmt: skip
    entries = await run_ok(client, body)
    assert status_of(entries[0]) == 200
    assert entries[0]["response"]["etag"] == 'W/"2"'


async def test_transaction_conditional_update_and_delete_entries(client):
    to_update = await create(client, patient("Old", mrn="cu-1"))
    to_delete = await create(client, patient("Gone", mrn="cd-1"))
    body = bundle(
        "transaction",
        entry("PUT", f"Patient?{identifier_query('cu-1')}", patient("New", mrn="cu-1")),
        entry("DELETE", f"Patient?{identifier_query('cd-1')}"),
        entry("PUT", f"Patient?{identifier_query('cu-2')}", patient("Created", mrn="cu-2")),
    )

    entries = await run_ok(client, body)

    assert status_of(entries[0]) == 200
    assert status_of(entries[1]) in (200, 204)
    assert status_of(entries[2]) == 201
    assert (await read(client, f"Patient/{to_update['id']}"))["name"][0]["family"] == "New"
    assert (await client.get(f"/Patient/{to_delete['id']}")).status_code == 410


async def test_transaction_patch_entries(client):
    existing = await create(client, patient("Patchy"))
    other = await create(client, patient("Patchier"))
    json_patch = [{"op": "replace", "path": "/gender", "value": "male"}]
    binary = {"resourceType": "Binary", "contentType": "application/json-patch+json",
              "data": base64.b64encode(json.dumps(json_patch).encode()).decode()}  # fmt: skip
    fhirpath_patch = {
        "resourceType": "Parameters",
        "parameter": [{"name": "operation", "part": [
            {"name": "type", "valueCode": "replace"},
            {"name": "path", "valueString": "Patient.birthDate"},
            {"name": "value", "valueDate": "1999-09-09"},
        ]}],
    }  # fmt: skip
    body = bundle(
        "transaction",
        entry("PATCH", f"Patient/{existing['id']}", binary),
        entry("PATCH", f"Patient/{other['id']}", fhirpath_patch),
    )
    entries = await run_ok(client, body)

    assert [status_of(e) for e in entries] == [200, 200]
    assert (await read(client, f"Patient/{existing['id']}"))["gender"] == "male"
    assert (await read(client, f"Patient/{other['id']}"))["birthDate"] == "1999-09-09"


BAD_PATCH_BINARIES = {
    "not base64": "!!!",
    "empty": "",
    "base64 of invalid JSON": base64.b64encode(b"{not json").decode(),
    "base64 of too deep JSON": base64.b64encode(b"[" * 5000 + b"]" * 5000).decode(),
    "not a string": 42,
}


@pytest.mark.parametrize("data", BAD_PATCH_BINARIES.values(), ids=BAD_PATCH_BINARIES.keys())
async def test_transaction_with_a_broken_patch_binary_is_400_and_writes_nothing(client, data):
    """Found by fuzzing: undecodable Binary data in a PATCH entry was a 500."""
    existing = await create(client, patient("Intact"))
    binary = {"resourceType": "Binary", "contentType": "application/json-patch+json", "data": data}
    body = bundle(
        "transaction",
        entry("POST", "Patient", patient("NotKept")),
        entry("PATCH", f"Patient/{existing['id']}", binary),
    )
    response = await client.post("/", json=body, headers={"Content-Type": FHIR_JSON})
    assert_outcome(response, 400)
    assert await search_ids(client, "Patient") == [existing["id"]]
    assert await read(client, f"Patient/{existing['id']}") == existing


async def test_batch_with_a_broken_patch_binary_fails_only_that_entry(client):
    existing = await create(client, patient("Intact"))
    binary = {"resourceType": "Binary", "contentType": "application/json-patch+json", "data": "!!"}
    entries = await run_ok(
        client,
        bundle(
            "batch",
            entry("PATCH", f"Patient/{existing['id']}", binary),
            entry("POST", "Patient", patient("Kept")),
        ),
    )
    assert [status_of(e) for e in entries] == [400, 201]
    assert entries[0]["response"]["outcome"]["resourceType"] == "OperationOutcome"
    assert await read(client, f"Patient/{existing['id']}") == existing


@pytest.mark.parametrize("kind", ["transaction", "batch"])
@pytest.mark.parametrize(
    "twist",
    [
        {"fullUrl": [{"reference": "urn:uuid:x"}]},
        {"fullUrl": 3},
        {"fullUrl": ""},
        {"request": {"method": "POST", "url": "Patient", "ifNoneExist": 5}},
        {"request": {"method": "POST", "url": ["Patient"]}},
    ],
    ids=["fullUrl list", "fullUrl number", "fullUrl empty", "ifNoneExist number", "url list"],
)
async def test_bundle_with_a_malformed_entry_element_is_400_and_writes_nothing(client, kind, twist):
    """Found by fuzzing: a fullUrl that is not a string was a 500 (the entries' own elements
    escaped structural validation)."""
    good = entry("POST", "Patient", patient("NotKept"), full_url=urn())
    bad = {**entry("POST", "Patient", patient("AlsoNotKept"), full_url=urn()), **twist}
    response = await client.post(
        "/", json=bundle(kind, good, bad), headers={"Content-Type": FHIR_JSON}
    )
    assert_outcome(response, 400)
    assert await search_ids(client, "Patient") == []


# -- batch --------------------------------------------------------------------------------------


async def test_batch_entries_succeed_or_fail_independently(client):
    body = bundle(
        "batch",
        entry("POST", "Patient", patient("Good")),
        entry("POST", "Patient", patient("Bad", birthDate="2023-02-30")),
        entry("GET", "Patient/does-not-exist"),
        entry("PUT", "Patient/batch-put", patient(id="batch-put")),
    )

    entries = await run_ok(client, body)

    assert status_of(entries[0]) == 201
    assert entries[0]["response"]["location"].endswith("/_history/1")
    for failed, expected in ((entries[1], 400), (entries[2], 404)):
        assert status_of(failed) == expected
        outcome = failed["response"]["outcome"]
        assert outcome["resourceType"] == "OperationOutcome"
        assert outcome["issue"][0]["severity"] in ("error", "fatal")
    assert status_of(entries[3]) == 201
    ids = await search_ids(client, "Patient")
    assert sorted(ids) == sorted([id_from_location(entries[0]), "batch-put"])


async def test_batch_read_and_search_entries(client):
    existing = await create(client, patient("Readable", mrn="b-1"))
    body = bundle(
        "batch",
        entry("GET", f"Patient/{existing['id']}"),
        entry("GET", f"Patient?{identifier_query('b-1')}"),
        entry("GET", f"Patient/{existing['id']}/_history/1"),
    )
    entries = await run_ok(client, body)

    assert [status_of(e) for e in entries] == [200, 200, 200]
    assert entries[0]["resource"] == existing
    assert entries[0]["response"]["etag"] == 'W/"1"'
    assert entries[1]["resource"]["type"] == "searchset"
    assert entries[1]["resource"]["entry"][0]["resource"]["id"] == existing["id"]
    assert entries[2]["resource"] == existing


async def test_batch_if_none_exist_and_if_match(client):
    existing = await create(client, patient("Existing", mrn="b-2"))
    body = bundle(
        "batch",
        entry("POST", "Patient", patient(mrn="b-2"), ifNoneExist=identifier_query("b-2")),
        entry("PUT", f"Patient/{existing['id']}", {**existing, "gender": "male"},
              ifMatch='W/"5"'),
    )  # fmt: skip
    entries = await run_ok(client, body)

    assert status_of(entries[0]) == 200
    assert entries[0]["resource"]["id"] == existing["id"]
    assert status_of(entries[1]) == 412
    assert entries[1]["response"]["outcome"]["resourceType"] == "OperationOutcome"
    assert (await read(client, f"Patient/{existing['id']}")) == existing


async def test_batch_entry_with_unknown_type_fails_alone(client):
    body = bundle(
        "batch",
        entry("POST", "Unicorn", {"resourceType": "Unicorn"}),
        entry("POST", "Patient", patient()),
    )
    entries = await run_ok(client, body)
    assert status_of(entries[0]) in (400, 404)
    assert status_of(entries[1]) == 201


# -- invalid Bundles ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        {"resourceType": "Bundle", "type": "collection",
         "entry": [{"resource": patient()}]},
        {"resourceType": "Bundle", "type": "searchset"},
        {"resourceType": "Bundle"},
        {"resourceType": "Patient"},
        {"resourceType": "Bundle", "type": "transaction", "entry": [{"resource": patient()}]},
        {"resourceType": "Bundle", "type": "transaction",
         "entry": [{"request": {"method": "FETCH", "url": "Patient"}, "resource": patient()}]},
        {"resourceType": "Bundle", "type": "transaction",
         "entry": [{"request": {"method": "POST", "url": "Patient"}}]},
        {"resourceType": "Bundle", "type": "batch", "unknownElement": 1},
        {"resourceType": "Bundle", "type": "transaction",
         "entry": [{"request": {"method": "POST", "url": "Patient"}, "resource": observation()}]},
        [],
    ],
    ids=["collection", "searchset", "no-type", "not-a-bundle", "no-request", "bad-method",
         "post-without-resource", "unknown-element", "entry-type-mismatch", "array"],
)  # fmt: skip
async def test_invalid_bundles_are_400(client, body):
    response = await client.post("/", json=body)
    assert_outcome(response, 400)
    assert await version_count(client) == 0
