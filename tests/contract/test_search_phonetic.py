"""``phonetic`` finds names that sound alike (Janssens / Jansens, Lefebvre / Lefevre)."""

from __future__ import annotations

import orjson
import pytest

from fhir_server.json_codec import dumps
from fhir_server.service import crud, search
from fhir_server.service.context import RequestContext
from fhir_server.service.core import FhirService

CTX = RequestContext(base_url="http://testserver/fhir")
NAMES = {"a": ("Janssens", "Elodie"), "b": ("Lefebvre", "Marie"), "c": ("Peeters", "An")}


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("Jansens", {"a"}),
        ("JANSSENS", {"a"}),
        ("Lefevre", {"b"}),
        ("Pieters", {"c"}),
        ("Élodie", {"a"}),
        ("Dubois", set()),
    ],
)
async def test_phonetic_matches_names_that_sound_alike(
    service: FhirService, query: str, expected: set[str]
):
    for id_, (family, given) in NAMES.items():
        body = {
            "resourceType": "Patient",
            "id": id_,
            "name": [{"family": family, "given": [given]}],
        }
        await crud.update(service, CTX, "Patient", id_, body, None, None)
    result = await search.search(
        service, CTX, ("Patient",), [("phonetic", query)], "http://testserver/fhir/Patient"
    )
    bundle = orjson.loads(dumps(result.resource))
    assert {e["resource"]["id"] for e in bundle.get("entry", ())} == expected
