"""Every official R4 resource validates: the R4 definitions themselves (StructureDefinitions with
their narratives, OperationDefinitions, CapabilityStatements, CompartmentDefinitions,
SearchParameters, ValueSets, CodeSystems) pass the structural validator and every R4 core
invariant, so neither a primitive regex, the narrative checks nor an invariant rejects valid
content that the specification publishes.

The genuinely invalid ones are listed with the reason (docs/validation.md)."""

from __future__ import annotations

import json
import lzma
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fhir_server.definitions import load_r4
from fhir_server.json_codec import dumps, parse
from fhir_server.validation.structure import StructuralValidator

DATA = Path(__file__).resolve().parents[1] / "data" / "fhir-r4"
PACKAGED = ("valuesets", "v3-codesystems", "v2-tables", "search-parameters")

# Not 4.0.1 content: the definitions package carries the R4B backport of SubscriptionStatus
# (fhirVersion 4.3.0, which the R4 FHIR-version value set does not have).
GENUINELY_INVALID = {"StructureDefinition/SubscriptionStatus": ["StructureDefinition.fhirVersion"]}
# Warnings of the R4 definitions themselves: `name.matches('[A-Z]([A-Za-z0-9_]){0,254}')` on
# computable names the specification gave in lower case ("boolean", "chromosome-human") or
# beginning with "_" ("_text").
NAME_WARNINGS = {"spd-0", "vsd-0", "csd-0", "sdf-0"}


def official() -> Iterator[dict[str, Any]]:
    for name in ("profiles-resources", "profiles-types", "extension-definitions"):
        bundle = json.loads(lzma.decompress((DATA / f"{name}.json.xz").read_bytes()))
        for entry in bundle["entry"]:
            yield entry["resource"]
    for name in PACKAGED:
        yield from load_r4(name)
    yield load_r4("compartmentdefinition-patient")


def test_every_official_r4_resource_validates() -> None:
    validator = StructuralValidator()
    errors: dict[str, list[str]] = {}
    warnings: Counter[str] = Counter()
    count = 0
    data_images = 0
    for resource in official():
        count += 1
        div = (resource.get("text") or {}).get("div", "")
        data_images += "url(data: image/" in div or "url(data:image/" in div
        # as a client would send it: through the server's JSON parser (exact decimals)
        resource = parse(dumps(resource))
        for issue in validator.validate(resource, resource["resourceType"]):
            where = f"{resource['resourceType']}/{resource.get('id')}"
            if issue.severity == "error":
                errors.setdefault(where, []).append(f"{issue.expression}: {issue.diagnostics}")
            else:
                warnings[issue.key or issue.diagnostics] += 1
    assert count > 4400
    assert data_images >= 190  # narratives with inline images in a style
    assert {k: [v.split(":")[0] for v in vs] for k, vs in errors.items()} == GENUINELY_INVALID, (
        errors
    )
    assert set(warnings) <= NAME_WARNINGS, warnings
