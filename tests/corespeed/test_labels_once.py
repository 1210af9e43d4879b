"""The label policy runs once per write (issue 18): the guard's judgement and the label hook
share one computation when the content has not changed in between, and compute again when it
has (a write hook before the label hook may add codes)."""

from __future__ import annotations

from pathlib import Path

from fhir_server.app import ServerApp
from fhir_server.security import labels as labels_module
from tests.conftest import make_settings

PHQ9 = {"system": "http://loinc.org", "code": "44249-1"}  # PHQ-9 total: R + BH
WEIGHT = {"system": "http://loinc.org", "code": "29463-7"}
R = ("http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "R")
BH = ("http://terminology.hl7.org/CodeSystem/v3-ActCode", "BH")


def observation(coding: dict) -> dict:
    return {
        "resourceType": "Observation",
        "id": "o1",
        "status": "final",
        "code": {"coding": [coding]},
        "subject": {"reference": "Patient/p1"},
    }


async def test_names_are_computed_once_unless_the_content_changes(
    tmp_path: Path, monkeypatch
) -> None:
    app = ServerApp(make_settings(tmp_path, auth="required"))
    labeller = app.security.labeller
    walks = []
    real = labels_module.collect_codings

    def counting(value, out):
        if isinstance(value, dict) and "resourceType" in value:
            walks.append(value["resourceType"])
        real(value, out)

    monkeypatch.setattr(labels_module, "collect_codings", counting)
    resource = observation(PHQ9)
    first = await labeller.labels_for(resource)  # the guard
    assert {R, BH} <= first
    await labeller.apply(resource)  # the label hook: the same content, not walked again
    assert len(walks) == 1
    assert {(c["system"], c["code"]) for c in resource["meta"]["security"]} >= {R, BH}

    plain = observation(WEIGHT)
    assert not (await labeller.labels_for(plain)) & {R, BH}
    plain["code"]["coding"].append(PHQ9)  # a hook in between adds a sensitive code
    await labeller.apply(plain)
    assert len(walks) == 3  # computed again, and the label follows the new content
    assert {(c["system"], c["code"]) for c in plain["meta"]["security"]} >= {R, BH}

    other = observation(WEIGHT)  # an equal resource, another object: its own computation
    await labeller.labels_for(other)
    assert len(walks) == 4
