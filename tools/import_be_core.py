"""Copy the be-core 2.1.2 artefacts the BiB profiles need into ``profiles/be-core/``.

Run from the repository root::

    python tools/import_be_core.py ../shared/reference/be-artefacts/be-core

The source is the SUSHI-compiled be-core 2.1.2 package (CC0-1.0, hl7-be/core @ b0cf499, snapshots
generated with fhir-snapshot-generator; see its SOURCES.md). SUSHI build fields (``__corePackage``,
``__packageId``...) are dropped, everything else is kept as published. The product never reads
``../shared`` at run time: the copies in ``profiles/be-core/`` are the shipped artefacts.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

TARGET = Path(__file__).resolve().parent.parent / "profiles" / "be-core"

STRUCTURE_DEFINITIONS = (
    "be-patient",
    "be-practitioner",
    "be-practitionerrole",
    "be-organization",
    "be-address",
    "be-location",
    "be-communication",
    "be-Consent",
    "be-provenance",
    # extensions
    "be-ext-gender-at-birth",
    "be-ext-recorder",
    "be-ext-recorded-date",
    "be-ext-simple-note",
    "be-ext-codeableconcept",
    "be-ext-codeable-reference",
)
# be-core CodeSystems/ValueSets are shipped once, by the terminology package (terminology/be-core/)
PREFIXES = ("NamingSystem-",)


def clean(resource: dict) -> dict:
    return {k: v for k, v in resource.items() if not k.startswith("__")}


def write(path: Path, resource: dict) -> None:
    text = json.dumps(resource, ensure_ascii=False, indent=2) + "\n"
    path.write_text(text, encoding="utf-8")


def main(source: str) -> None:
    src = Path(source)
    TARGET.mkdir(parents=True, exist_ok=True)
    names = [f"StructureDefinition-{sd_id}.json" for sd_id in STRUCTURE_DEFINITIONS]
    names += sorted(p.name for p in src.glob("*.json") if p.name.startswith(PREFIXES))
    sums = []
    for name in names:
        resource = json.loads((src / name).read_text(encoding="utf-8"))
        write(TARGET / name, clean(resource))
        sums.append(f"{digest(clean(resource))}  {name}")
    # the fingerprints of the upstream content let a test prove the copies were not edited
    (TARGET / "UPSTREAM-SHA256.txt").write_text("\n".join(sums) + "\n", encoding="utf-8")
    print(f"wrote {len(names)} files to {TARGET}")


def digest(resource: dict) -> str:
    canonical = json.dumps(resource, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "../shared/reference/be-artefacts/be-core")
