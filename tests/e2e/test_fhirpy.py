"""End-to-end: the fhirpy client (sync and async) against a real server process.

fhirpy has a few habits that a FHIR server must cope with:

* ``resource.patch(...)`` / ``save(fields=[...])`` send ``PATCH`` with a *partial resource* as a
  JSON merge-patch body and ``Content-Type: application/json`` (not ``merge-patch+json``);
* ``refresh()`` sends ``If-None-Match`` with the *bare* versionId (``1``, no quotes, no ``W/``)
  and keeps its local data on ``304``;
* ``resource.create(identifier=...)`` and ``searchset.get_or_create`` send the condition as the
  query string of ``POST /Type?identifier=...`` instead of an ``If-None-Exist`` header;
* ``count()`` sends ``_count=0&_totalMethod=count``;
* ``fetch_all()`` follows absolute ``next`` links, which must stay under the client's base URL;
* 404 and 410 raise ``ResourceNotFound``, 412 raises ``MultipleResourcesFound``.
"""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest
from fhirpy import AsyncFHIRClient, SyncFHIRClient
from fhirpy.base.exceptions import MultipleResourcesFound, OperationOutcome, ResourceNotFound

SSIN = "https://www.ehealth.fgov.be/standards/fhir/core/NamingSystem/ssin"
LOCAL_MRN = "urn:oid:2.16.840.1.113883.3.1937.777.24.2.1"


def unique(prefix: str = "e2e") -> str:
    return f"{prefix}{uuid.uuid4().hex[:12]}"


def version_of(resource) -> int:
    return int(resource["meta"]["versionId"])


@pytest.fixture
def client(live_server) -> SyncFHIRClient:
    return SyncFHIRClient(live_server.base)


@pytest.fixture
def aclient(live_server) -> AsyncFHIRClient:
    return AsyncFHIRClient(live_server.base)


# -- create / read / update / delete ---------------------------------------------------------


def test_create_read_update_delete_roundtrip(client: SyncFHIRClient, live_server) -> None:
    family = unique("Peeters")
    patient = client.resource(
        "Patient",
        identifier=[{"system": SSIN, "value": "85073003328"}],
        name=[{"family": family, "given": ["Anna", "Marie"]}],
        gender="female",
        birthDate="1985-07-30",
        telecom=[{"system": "phone", "value": "+32 2 555 12 34", "use": "mobile"}],
        address=[{"city": "Gent", "postalCode": "9000", "country": "BE"}],
    )
    patient.save()
    assert patient.id, "create must give the resource a server-assigned id"
    assert version_of(patient) == 1
    assert patient["meta"]["lastUpdated"]

    # read back through a reference and through a search
    read = client.reference("Patient", patient.id).to_resource()
    assert read.id == patient.id
    assert read["name"][0]["family"] == family
    assert read["name"][0]["given"] == ["Anna", "Marie"]
    assert read["birthDate"] == "1985-07-30"
    assert read["identifier"] == [{"system": SSIN, "value": "85073003328"}]
    assert read["address"][0]["city"] == "Gent"
    assert version_of(read) == 1
    found = client.resources("Patient").search(family=family).get()
    assert found.id == patient.id
    as_dict = client.get("Patient", patient.id)
    assert as_dict["gender"] == "female"

    # update via save(): PUT with the whole resource
    read["name"][0]["given"] = ["Anna"]
    read["gender"] = "other"
    read["active"] = True
    read.save()
    assert read.id == patient.id
    assert version_of(read) == 2
    again = client.reference("Patient", patient.id).to_resource()
    assert again["name"][0]["given"] == ["Anna"]
    assert again["gender"] == "other"
    assert again["active"] is True
    assert version_of(again) == 2
    # the previous version stays readable (vread)
    v1 = httpx.get(f"{live_server.base}/Patient/{patient.id}/_history/1")
    assert v1.status_code == 200
    assert v1.json()["gender"] == "female"

    # update via resource.update()
    again["birthDate"] = "1985-07-31"
    again.update()
    assert version_of(again) == 3
    assert client.get("Patient", patient.id)["birthDate"] == "1985-07-31"

    # delete: later reads answer 410 Gone, which fhirpy raises as ResourceNotFound
    again.delete()
    with pytest.raises(ResourceNotFound):
        client.reference("Patient", patient.id).to_resource()
    with pytest.raises(ResourceNotFound):
        client.get("Patient", patient.id)
    assert client.resources("Patient").search(family=family).count() == 0
    assert client.resources("Patient").search(family=family).fetch() == []
    gone = httpx.get(f"{live_server.base}/Patient/{patient.id}")
    assert gone.status_code == 410


def test_unknown_resource_raises_not_found(client: SyncFHIRClient) -> None:
    with pytest.raises(ResourceNotFound):
        client.reference("Patient", "does-not-exist").to_resource()
    with pytest.raises(ResourceNotFound):
        client.get("Observation", str(uuid.uuid4()))
    with pytest.raises(ResourceNotFound):
        client.resources("Patient").search(family=unique("nobody")).get()


def test_invalid_resource_raises_operation_outcome(client: SyncFHIRClient) -> None:
    bad = client.resource("Patient", gender="female", birthDate="30/07/1985")
    with pytest.raises(OperationOutcome) as excinfo:
        bad.save()
    outcome = excinfo.value.resource
    assert outcome["resourceType"] == "OperationOutcome"
    assert any(issue["severity"] in ("error", "fatal") for issue in outcome["issue"])
    assert bad.get("id") is None


def test_code_outside_required_binding_is_refused(client: SyncFHIRClient) -> None:
    """Patient.gender has a *required* binding (administrative-gender). A server that stores
    ``gender: "sometimes"`` hands out content that strict clients (HAPI, the .NET SDK, which parse
    such codes into enums) fail to read, so create and patch must both refuse it."""
    with pytest.raises(OperationOutcome):
        client.resource("Patient", name=[{"family": unique("Code")}], gender="sometimes").save()
    patient = client.resource("Patient", gender="female").save()
    with pytest.raises(OperationOutcome):
        patient.patch(gender="sometimes")
    assert client.get("Patient", patient.id)["gender"] == "female"


# -- merge patch as fhirpy sends it --------------------------------------------------------------


def test_patch_sends_partial_json_merge_patch(client: SyncFHIRClient) -> None:
    family = unique("Janssens")
    patient = client.resource(
        "Patient",
        name=[{"family": family, "given": ["Lotte"]}],
        gender="female",
        birthDate="1990-01-01",
        active=True,
    ).save()
    pid = patient.id

    # resource.patch(...) -> PATCH Patient/id, body {"birthDate": ..., "active": false}
    patient.patch(birthDate="1990-02-03", active=False)
    assert version_of(patient) == 2
    assert patient["birthDate"] == "1990-02-03"
    assert patient["active"] is False
    read = client.get("Patient", pid)
    assert read["birthDate"] == "1990-02-03"
    assert read["active"] is False
    assert read["name"] == [{"family": family, "given": ["Lotte"]}], "untouched fields survive"
    assert read["gender"] == "female"

    # save(fields=[...]) sends only the listed fields
    patient["gender"] = "other"
    patient["multipleBirthBoolean"] = False
    patient.save(fields=["gender"])
    assert version_of(patient) == 3
    read = client.get("Patient", pid)
    assert read["gender"] == "other"
    assert "multipleBirthBoolean" not in read, "only the listed field must be sent and stored"

    # a None value in the merge patch removes the element
    patient.patch(birthDate=None)
    assert version_of(patient) == 4
    assert "birthDate" not in client.get("Patient", pid)

    # client.patch and reference.patch take the same path
    client.patch("Patient", pid, telecom=[{"system": "email", "value": "lotte@example.org"}])
    patched = client.reference("Patient", pid).patch(active=True)
    assert patched["active"] is True
    assert patched["telecom"] == [{"system": "email", "value": "lotte@example.org"}]
    assert version_of(patched) == 6

    # a patch that makes the resource invalid is refused and changes nothing
    with pytest.raises(OperationOutcome):
        client.patch("Patient", pid, birthDate="03/02/1990")
    assert version_of(client.get("Patient", pid)) == 6

    # patching what does not exist is a 404 -> ResourceNotFound
    with pytest.raises(ResourceNotFound):
        client.patch("Patient", "no-such-patient", active=False)


# -- refresh with If-None-Match ------------------------------------------------------------------


def test_refresh_uses_bare_version_if_none_match(client: SyncFHIRClient, live_server) -> None:
    patient = client.resource("Patient", name=[{"family": unique("Claes")}], gender="male").save()
    pid = patient.id

    # raw check of what fhirpy sends: If-None-Match: 1 (bare), and the quoted / weak forms
    for header in ("1", '"1"', 'W/"1"'):
        response = httpx.get(f"{live_server.base}/Patient/{pid}", headers={"If-None-Match": header})
        assert response.status_code == 304, f"If-None-Match: {header} must give 304"
        assert response.content == b""
        assert response.headers.get("etag") == 'W/"1"'
    assert (
        httpx.get(f"{live_server.base}/Patient/{pid}", headers={"If-None-Match": "2"}).status_code
        == 200
    )

    # unchanged: refresh() gets a 304 and must keep the data it has
    patient.refresh()
    assert patient.id == pid
    assert version_of(patient) == 1
    assert patient["gender"] == "male"
    assert patient["resourceType"] == "Patient"

    # changed by someone else: refresh() must fetch the new version
    other = client.reference("Patient", pid).to_resource()
    other["gender"] = "unknown"
    other.save()
    patient.refresh()
    assert version_of(patient) == 2
    assert patient["gender"] == "unknown"

    # refreshing a deleted resource raises
    other.delete()
    with pytest.raises(ResourceNotFound):
        patient.refresh()


# -- conditional create ------------------------------------------------------------------------


def test_conditional_create_with_query_string(client: SyncFHIRClient, live_server) -> None:
    ssin = unique("ssin")
    token = f"{SSIN}|{ssin}"

    first = client.resource(
        "Patient", identifier=[{"system": SSIN, "value": ssin}], name=[{"family": "First"}]
    )
    first.create(identifier=token)  # POST /Patient?identifier=...
    assert first.id
    assert version_of(first) == 1

    # the same condition again: no new resource, the existing one comes back untouched
    second = client.resource(
        "Patient", identifier=[{"system": SSIN, "value": ssin}], name=[{"family": "Second"}]
    )
    second.create(identifier=token)
    assert second.id == first.id
    assert version_of(second) == 1
    assert second["name"][0]["family"] == "First"
    assert client.resources("Patient").search(identifier=token).count() == 1

    # the raw HTTP form, so the status codes are visible: 200 for a match, 201 for a create
    body = {"resourceType": "Patient", "identifier": [{"system": SSIN, "value": ssin}]}
    again = httpx.post(f"{live_server.base}/Patient", params={"identifier": token}, json=body)
    assert again.status_code == 200
    assert again.json()["id"] == first.id
    other_ssin = unique("ssin")
    new = httpx.post(
        f"{live_server.base}/Patient",
        headers={"If-None-Exist": f"identifier={SSIN}|{other_ssin}"},
        json={"resourceType": "Patient", "identifier": [{"system": SSIN, "value": other_ssin}]},
    )
    assert new.status_code == 201

    # a condition matching two resources is a 412 -> MultipleResourcesFound
    family = unique("Twin")
    client.resource("Patient", name=[{"family": family}]).save()
    client.resource("Patient", name=[{"family": family}]).save()
    with pytest.raises(MultipleResourcesFound):
        client.resource("Patient", name=[{"family": family}]).create(family=family)
    assert client.resources("Patient").search(family=family).count() == 2


def test_searchset_get_or_create(client: SyncFHIRClient) -> None:
    mrn = unique("mrn")
    search = client.resources("Patient").search(identifier=f"{LOCAL_MRN}|{mrn}")
    candidate = client.resource(
        "Patient", identifier=[{"system": LOCAL_MRN, "value": mrn}], name=[{"family": "Wouters"}]
    )
    created, was_created = search.get_or_create(candidate)
    assert was_created is True
    assert created.id
    assert created["name"][0]["family"] == "Wouters"

    existing, was_created = search.get_or_create(
        client.resource(
            "Patient", identifier=[{"system": LOCAL_MRN, "value": mrn}], name=[{"family": "Other"}]
        )
    )
    assert was_created is False
    assert existing.id == created.id
    assert existing["name"][0]["family"] == "Wouters"
    assert search.count() == 1


# -- search paging ---------------------------------------------------------------------------------


def test_fetch_all_follows_next_links(client: SyncFHIRClient) -> None:
    family = unique("Page")
    bundle = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            {
                "resource": {
                    "resourceType": "Patient",
                    "name": [{"family": family}],
                    "identifier": [{"system": LOCAL_MRN, "value": f"{family}-{i}"}],
                },
                "request": {"method": "POST", "url": "Patient"},
            }
            for i in range(55)
        ],
    }
    response = client.execute("", method="post", data=bundle)
    assert response["type"] == "batch-response"
    assert all(e["response"]["status"].startswith("201") for e in response["entry"])
    created = {
        e["response"]["location"].split("/Patient/", 1)[1].split("/")[0] for e in response["entry"]
    }
    assert len(created) == 55

    search = client.resources("Patient").search(family=family).limit(10)
    first_page = search.fetch()
    assert len(first_page) == 10
    everything = search.fetch_all()
    ids = [p.id for p in everything]
    assert len(ids) == 55, f"fetch_all returned {len(ids)} resources, expected 55"
    assert len(set(ids)) == 55, "paging must not repeat resources"
    assert set(ids) == created
    assert all(p["name"][0]["family"] == family for p in everything)
    assert search.count() == 55
    assert client.resources("Patient").search(family=family).count() == 55
    # sorted paging keeps its order over the pages
    ordered = [
        p["meta"]["lastUpdated"]
        for p in client.resources("Patient")
        .search(family=family)
        .sort("-_lastUpdated")
        .limit(7)
        .fetch_all()
    ]
    assert len(ordered) == 55
    assert ordered == sorted(ordered, reverse=True)

    # iteration of the search set follows the same links
    assert sum(1 for _ in client.resources("Patient").search(family=family).limit(20)) == 55


# -- conditional update / patch / delete on a search set -----------------------------------------


def test_searchset_conditional_update_patch_delete(client: SyncFHIRClient) -> None:
    mrn = unique("mrn")
    token = f"{LOCAL_MRN}|{mrn}"
    search = client.resources("Patient").search(identifier=token)

    resource = client.resource(
        "Patient",
        identifier=[{"system": LOCAL_MRN, "value": mrn}],
        name=[{"family": "Maes"}],
        gender="female",
    )
    created, was_created = search.update(resource)  # PUT /Patient?identifier=...
    assert was_created is True
    assert version_of(created) == 1
    pid = created.id

    changed = client.resource(
        "Patient",
        identifier=[{"system": LOCAL_MRN, "value": mrn}],
        name=[{"family": "Maes"}],
        gender="female",
        birthDate="2001-05-06",
    )
    updated, was_created = search.update(changed)
    assert was_created is False
    assert updated.id == pid
    assert version_of(updated) == 2
    assert client.get("Patient", pid)["birthDate"] == "2001-05-06"

    patched = search.patch(active=False)  # PATCH /Patient?identifier=... (merge patch)
    assert patched.id == pid
    assert patched["active"] is False
    assert patched["birthDate"] == "2001-05-06"
    assert version_of(patched) == 3
    assert client.get("Patient", pid)["active"] is False

    # conditional patch on nothing -> 404 -> ResourceNotFound
    with pytest.raises(ResourceNotFound):
        client.resources("Patient").search(identifier=f"{LOCAL_MRN}|{unique()}").patch(active=True)

    # conditional update / patch on two matches -> 412 -> MultipleResourcesFound
    family = unique("Dup")
    client.resource("Patient", name=[{"family": family}]).save()
    client.resource("Patient", name=[{"family": family}]).save()
    dup = client.resources("Patient").search(family=family)
    with pytest.raises(MultipleResourcesFound):
        dup.update(client.resource("Patient", name=[{"family": family}], active=True))
    with pytest.raises(MultipleResourcesFound):
        dup.patch(active=True)

    # conditional delete
    _, status = search.delete()
    assert status in (200, 204)
    with pytest.raises(ResourceNotFound):
        client.get("Patient", pid)
    assert search.count() == 0


# -- the async client ------------------------------------------------------------------------------


async def test_async_client_end_to_end(aclient: AsyncFHIRClient) -> None:
    family = unique("Async")
    org = await aclient.resource(
        "Organization",
        identifier=[
            {
                "system": "https://www.ehealth.fgov.be/standards/fhir/core/NamingSystem/nihdi",
                "value": unique("7100"),
            }
        ],
        name="UZ Gent - Verloskunde",
    ).save()

    patients = await asyncio.gather(
        *(
            aclient.resource(
                "Patient",
                name=[{"family": family, "given": [f"Kind{i}"]}],
                managingOrganization={"reference": f"Organization/{org.id}"},
            ).save()
            for i in range(25)
        )
    )
    assert len({p.id for p in patients}) == 25

    search = aclient.resources("Patient").search(family=family).limit(10)
    fetched = await search.fetch_all()
    assert {p.id for p in fetched} == {p.id for p in patients}
    assert await search.count() == 25
    by_org = await aclient.resources("Patient").search(organization=org.id).count()
    assert by_org == 25

    one = patients[0]
    await one.patch(gender="female")
    assert version_of(one) == 2
    await one.refresh()  # 304 path: data kept
    assert one["gender"] == "female"
    assert version_of(one) == 2

    loaded = await aclient.reference("Patient", one.id).to_resource()
    loaded["birthDate"] = "2024-03-01"
    await loaded.save()
    assert version_of(loaded) == 3
    await one.refresh()  # 200 path: new data
    assert one["birthDate"] == "2024-03-01"
    assert version_of(one) == 3

    mrn = unique("mrn")
    got, created = (
        await aclient.resources("Patient")
        .search(identifier=f"{LOCAL_MRN}|{mrn}")
        .get_or_create(
            aclient.resource("Patient", identifier=[{"system": LOCAL_MRN, "value": mrn}])
        )
    )
    assert created is True
    again, created = (
        await aclient.resources("Patient")
        .search(identifier=f"{LOCAL_MRN}|{mrn}")
        .get_or_create(
            aclient.resource("Patient", identifier=[{"system": LOCAL_MRN, "value": mrn}])
        )
    )
    assert created is False
    assert again.id == got.id

    await one.delete()
    with pytest.raises(ResourceNotFound):
        await aclient.reference("Patient", one.id).to_resource()
    assert await search.count() == 24


# -- search features as fhirpy spells them -------------------------------------------------------


def test_search_prefixes_modifiers_chains_and_includes(client: SyncFHIRClient) -> None:
    tag = unique("")
    org = client.resource("Organization", name=f"Ziekenhuis {tag}").save()
    midwife = client.resource("Practitioner", name=[{"family": f"Vroedvrouw{tag}"}]).save()
    anna = client.resource(
        "Patient",
        name=[{"family": f"Één{tag}", "given": ["Anaïs"]}],
        birthDate="1990-05-01",
        generalPractitioner=[{"reference": f"Practitioner/{midwife.id}"}],
        managingOrganization={"reference": f"Organization/{org.id}"},
    ).save()
    bea = client.resource("Patient", name=[{"family": f"Twee{tag}"}], birthDate="1980-05-01").save()
    weight = client.resource(
        "Observation",
        status="final",
        code={"coding": [{"system": "http://loinc.org", "code": "29463-7"}]},
        subject={"reference": f"Patient/{anna.id}"},
        valueQuantity={
            "value": 70,
            "unit": "kg",
            "system": "http://unitsofmeasure.org",
            "code": "kg",
        },
    ).save()
    patients = client.resources("Patient")

    def ids(search) -> list[str]:
        return [r.id for r in search.fetch()]

    assert ids(patients.search(family=f"twee{tag}"[:6])) == [bea.id], "string search is a prefix"
    assert ids(patients.search(birthdate__ge="1985-01-01", name__contains=tag)) == [anna.id]
    assert ids(patients.search(name__contains=f"één{tag}".upper())) == [anna.id]
    assert ids(patients.search(given="anais")) == [anna.id], "accent-insensitive string match"
    assert ids(patients.search(family__exact=f"Twee{tag}")) == [bea.id]
    assert ids(patients.search(family__exact=f"twee{tag}")) == []
    assert ids(patients.search(name__contains=tag, **{"general-practitioner:missing": "true"})) == [
        bea.id
    ]
    assert ids(
        patients.search(**{"general-practitioner:Practitioner.name": f"Vroedvrouw{tag}"})
    ) == [anna.id]
    assert ids(
        patients.has("Observation", "patient", code="29463-7").search(name__contains=tag)
    ) == [anna.id]
    assert ids(patients.search(name__contains=tag).sort("birthdate")) == [bea.id, anna.id]
    assert ids(patients.search(name__contains=tag).sort("-birthdate")) == [anna.id, bea.id]
    assert sorted(ids(patients.search(_id=f"{anna.id},{bea.id}"))) == sorted([anna.id, bea.id])
    assert ids(
        client.resources("Observation").search(
            **{"value-quantity": "gt69|http://unitsofmeasure.org|kg"}, subject=anna.id
        )
    ) == [weight.id]

    raw = patients.search(_id=anna.id).include("Patient", "organization").fetch_raw()
    assert sorted((e.resource.resourceType, e.search.mode) for e in raw.entry) == [
        ("Organization", "include"),
        ("Patient", "match"),
    ]
    raw = patients.search(_id=anna.id).revinclude("Observation", "subject").fetch_raw()
    assert sorted((e.resource.resourceType, e.resource.id) for e in raw.entry) == [
        ("Observation", weight.id),
        ("Patient", anna.id),
    ]
    raw = patients.search(_id=anna.id).elements("name").fetch_raw()
    subset = raw.entry[0].resource
    assert "birthDate" not in subset and subset["name"][0]["given"] == ["Anaïs"]
    assert any(t["code"] == "SUBSETTED" for t in subset["meta"]["tag"])


# -- concurrency as an app with several devices sees it --------------------------------------


async def test_concurrent_get_or_create_and_patches(aclient: AsyncFHIRClient) -> None:
    ssin = unique("ssin")
    search = aclient.resources("Patient").search(identifier=f"{SSIN}|{ssin}")

    async def register() -> tuple:
        candidate = aclient.resource("Patient", identifier=[{"system": SSIN, "value": ssin}])
        return await search.get_or_create(candidate)

    results = await asyncio.gather(*(register() for _ in range(20)))
    assert sum(1 for _, created in results if created) == 1, "exactly one device creates"
    assert len({resource.id for resource, _ in results}) == 1, "all devices get the same mother"
    assert await search.count() == 1

    # merge patches of different elements, all at once: none may be lost
    pid = results[0][0].id
    fields = {
        "gender": "female",
        "birthDate": "1993-08-17",
        "active": True,
        "multipleBirthInteger": 2,
        "maritalStatus": {
            "coding": [
                {"system": "http://terminology.hl7.org/CodeSystem/v3-MaritalStatus", "code": "M"}
            ]
        },
        "telecom": [{"system": "phone", "value": "+32 470 12 34 56"}],
        "address": [{"city": "Namur", "country": "BE"}],
        "name": [{"family": "Lambert", "given": ["Julie"]}],
    }
    await asyncio.gather(
        *(aclient.patch("Patient", pid, **{key: value}) for key, value in fields.items())
    )
    final = await aclient.get("Patient", pid)
    for key, value in fields.items():
        assert final[key] == value, f"the concurrent patch of {key} was lost"
    assert version_of(final) == 1 + len(fields)
