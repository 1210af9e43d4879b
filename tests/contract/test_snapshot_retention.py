"""Old search snapshots are pruned: index rows only expired paging links could need are removed,
current results are unaffected, and an expired link gets 410 instead of a wrong page."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

import orjson
import pytest

from fhir_server.errors import FhirError
from fhir_server.json_codec import dumps
from fhir_server.service import crud, search
from fhir_server.service.context import RequestContext
from fhir_server.service.core import FhirService
from fhir_server.service.versioning import now_us

CTX = RequestContext(base_url="http://testserver/fhir")


async def names(svc: FhirService, params: list[tuple[str, str]]) -> tuple[list[str], dict]:
    result = await search.search(svc, CTX, ("Patient",), params, "http://testserver/fhir/Patient")
    bundle = orjson.loads(dumps(result.resource))
    found = [
        e["resource"]["name"][0]["family"]
        for e in bundle.get("entry", ())
        if e["search"]["mode"] == "match"
    ]
    return found, {link["relation"]: link["url"] for link in bundle["link"]}


async def test_pruning_keeps_current_results_and_expires_old_links(service: FhirService):
    for index in range(6):
        body = {"resourceType": "Patient", "id": f"p{index}", "name": [{"family": f"Old{index}"}]}
        await crud.update(service, CTX, "Patient", f"p{index}", body, None, None)
    first, links = await names(service, [("name", "old"), ("_count", "2")])
    assert first == ["Old0", "Old1"]
    cursor = dict(parse_qsl(urlsplit(links["next"]).query))["_cursor"]

    for index in range(6):  # every patient gets a new version: the old index rows close
        body = {"resourceType": "Patient", "id": f"p{index}", "name": [{"family": f"New{index}"}]}
        await crud.update(service, CTX, "Patient", f"p{index}", body, None, None)
    # before pruning the old snapshot still answers exactly as it was
    page, _ = await names(service, [("name", "old"), ("_count", "2"), ("_cursor", cursor)])
    assert page == ["Old2", "Old3"]

    upto = await service.store.prune_snapshots(now_us() + 1_000_000)
    assert upto >= await service.store.latest_seq() - 1
    current, _ = await names(service, [("name", "new"), ("_count", "10")])
    assert current == [f"New{i}" for i in range(6)]
    assert (await names(service, [("name", "old")]))[0] == []
    with pytest.raises(FhirError) as info:
        await names(service, [("name", "old"), ("_count", "2"), ("_cursor", cursor)])
    assert info.value.status == 410
    # pruning twice is harmless
    assert await service.store.prune_snapshots(now_us() + 1_000_000) >= upto
