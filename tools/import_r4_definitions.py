"""Copy the official R4 4.0.1 definitions the server needs into the package.

Run from the repository root: ``python tools/import_r4_definitions.py ../shared/fhir-r4``.
The product never reads ``../shared`` at run time; this script is how the package data is made.
StructureDefinitions are trimmed to the computable parts (paths, cardinality, types, bindings,
constraints, fixed/pattern values, slicing, summary flags); narrative texts are dropped to keep the
package small. Everything is written gzip-compressed and deterministic.
"""

from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path

TARGET = Path(__file__).resolve().parent.parent / "fhir_server" / "definitions" / "r4"

ELEMENT_KEYS = {
    "id",
    "path",
    "sliceName",
    "min",
    "max",
    "base",
    "type",
    "contentReference",
    "binding",
    "constraint",
    "maxLength",
    "isModifier",
    "isSummary",
    "slicing",
    "defaultValue",
}
SD_KEYS = {
    "resourceType",
    "id",
    "url",
    "version",
    "name",
    "status",
    "kind",
    "abstract",
    "type",
    "baseDefinition",
    "derivation",
    "fhirVersion",
    "context",
}


def _trim_element(element: dict) -> dict:
    out = {}
    for key, value in element.items():
        if key in ELEMENT_KEYS or key.startswith(("fixed", "pattern")):
            if key == "constraint":
                value = [
                    {
                        k: c[k]
                        for k in ("key", "severity", "human", "expression", "source")
                        if k in c
                    }
                    for c in value
                ]
            if key == "binding":
                value = {k: value[k] for k in ("strength", "valueSet") if k in value}
            out[key] = value
    return out


def _trim_structure_definition(sd: dict) -> dict:
    out = {k: v for k, v in sd.items() if k in SD_KEYS}
    out["snapshot"] = {"element": [_trim_element(e) for e in sd["snapshot"]["element"]]}
    return out


def _write(name: str, data: object) -> None:
    raw = json.dumps(data, ensure_ascii=False, separators=(",", ":"), sort_keys=False).encode()
    with gzip.GzipFile(TARGET / f"{name}.gz", "wb", mtime=0) as fh:
        fh.write(raw)
    print(f"{name}.gz: {len(raw) / 1e6:.1f} MB raw")


def main(source: Path) -> None:
    TARGET.mkdir(parents=True, exist_ok=True)
    for name in ("profiles-resources.json", "profiles-types.json", "extension-definitions.json"):
        bundle = json.loads((source / name).read_text())
        sds = [
            _trim_structure_definition(e["resource"])
            for e in bundle["entry"]
            if e["resource"]["resourceType"] == "StructureDefinition"
        ]
        _write(name, sds)
    for name in (
        "search-parameters.json",
        "compartmentdefinition-patient.json",
        "valuesets.json",
        "v3-codesystems.json",
        "v2-tables.json",
    ):
        data = json.loads((source / name).read_text())
        if data.get("resourceType") == "Bundle":
            data = [e["resource"] for e in data["entry"]]
        _write(name, data)
    (TARGET / "version.info").write_text((source / "version.info").read_text())


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "../shared/fhir-r4"))
