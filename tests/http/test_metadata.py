"""GET /metadata: an R4 CapabilityStatement that tells the truth about the REST core."""

from __future__ import annotations

import pytest

from fhir_server.definitions import load_r4
from tests.http.fhir_helpers import assert_fhir_json, assert_outcome, create, patient

INSTANCE_AND_TYPE_INTERACTIONS = {
    "read", "vread", "update", "patch", "delete", "history-instance", "history-type", "create",
    "search-type",
}  # fmt: skip


@pytest.fixture
async def capabilities(client) -> dict:
    response = await client.get("/metadata")
    assert response.status_code == 200
    assert_fhir_json(response)
    return response.json()


def _resource(capabilities: dict, type_: str) -> dict:
    matches = [r for r in capabilities["rest"][0]["resource"] if r["type"] == type_]
    assert len(matches) == 1, type_
    return matches[0]


async def test_metadata_is_an_r4_capability_statement(capabilities):
    assert capabilities["resourceType"] == "CapabilityStatement"
    assert capabilities["fhirVersion"] == "4.0.1"
    assert capabilities["kind"] == "instance"
    assert capabilities["status"] == "active"
    assert capabilities["rest"][0]["mode"] == "server"


async def test_metadata_parses_with_a_strict_r4_client_model(capabilities):
    # python fhirclient parses /metadata with strict R4 4.0.1 models before doing anything else
    from fhirclient.models.capabilitystatement import CapabilityStatement

    parsed = CapabilityStatement(capabilities, strict=True)
    assert parsed.fhirVersion == "4.0.1"


async def test_metadata_formats_are_json_only(capabilities):
    formats = set(capabilities["format"])
    assert "application/fhir+json" in formats or "json" in formats
    assert not any("xml" in f for f in formats)


async def test_metadata_lists_all_patch_formats(capabilities):
    patch_formats = set(capabilities["patchFormat"])
    assert {"application/json-patch+json", "application/merge-patch+json"} <= patch_formats
    assert "application/fhir+json" in patch_formats  # FHIRPath Patch (Parameters)


async def test_metadata_system_interactions(capabilities):
    codes = {i["code"] for i in capabilities["rest"][0]["interaction"]}
    assert {"transaction", "batch", "history-system", "search-system"} <= codes


async def test_metadata_patient_resource_capabilities(capabilities):
    resource = _resource(capabilities, "Patient")
    codes = {i["code"] for i in resource["interaction"]}
    assert codes == INSTANCE_AND_TYPE_INTERACTIONS
    assert resource["versioning"] in ("versioned", "versioned-update")
    assert resource["readHistory"] is True
    assert resource["updateCreate"] is True
    assert resource["conditionalCreate"] is True
    assert resource["conditionalUpdate"] is True
    assert resource["conditionalDelete"] == "single"
    assert resource["conditionalRead"] in ("modified-since", "not-match", "full-support")
    params = {p["name"] for p in resource["searchParam"]}
    assert {"identifier", "name", "birthdate", "_id"} <= params


async def test_metadata_covers_every_r4_resource_type_and_no_r4b_ones(capabilities):
    types = {r["type"] for r in capabilities["rest"][0]["resource"]}
    assert {"Patient", "Observation", "Bundle", "ActivityDefinition", "Binary"} <= types
    assert not {"Citation", "EvidenceReport", "SubscriptionTopic"} & types
    r4_types = {sd["type"] for sd in load_r4("profiles-resources")
                if sd.get("kind") == "resource" and not sd.get("abstract")}  # fmt: skip
    assert types == r4_types


async def test_metadata_advertised_interactions_really_work(client, capabilities):
    """A quick tour: each advertised Patient interaction answers without 4xx/5xx."""
    created = await create(client, patient(mrn="meta-1"))
    pid = created["id"]
    calls = [
        ("GET", f"/Patient/{pid}", None, {}),
        ("GET", f"/Patient/{pid}/_history/1", None, {}),
        ("GET", "/Patient?identifier=meta-1", None, {}),
        ("GET", "/Patient/_history", None, {}),
        ("GET", f"/Patient/{pid}/_history", None, {}),
        ("PATCH", f"/Patient/{pid}", {"gender": "male"},
         {"Content-Type": "application/merge-patch+json"}),
        ("PUT", f"/Patient/{pid}", {**created, "gender": "other"}, {}),
        ("GET", "/_history", None, {}),
        ("DELETE", f"/Patient/{pid}", None, {}),
    ]  # fmt: skip
    for method, url, body, headers in calls:
        kwargs = {"json": body} if body is not None else {}
        response = await client.request(method, url, headers=headers, **kwargs)
        assert response.status_code < 300, (method, url, response.text)


async def test_metadata_as_xml_is_406(client):
    assert_outcome(await client.get("/metadata", params={"_format": "xml"}), 406)
