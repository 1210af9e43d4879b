"""Regenerate the snapshots of the BiB profiles from their differentials.

Run from the repository root after editing a differential in ``profiles/bib/``::

    python tools/build_profiles.py [--r4 ../shared/fhir-r4]

The differential in each ``profiles/bib/StructureDefinition-*.json`` is the source; this tool writes
the generated ``snapshot`` into the same file (``tests/validation/test_profile_content.py`` fails
when a committed snapshot is out of date). Bases are resolved from the shipped definitions (R4,
``profiles/be-core/``, other BiB profiles, generated first). The packaged R4 definitions are trimmed
(no texts), so with ``--r4`` the ``short``/``definition`` texts of unconstrained R4 elements are
filled in from the full R4 definitions; without it they stay absent.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from fhir_server.validation.registry import DefinitionRegistry
from fhir_server.validation.snapshot import generate_snapshot

ROOT = Path(__file__).resolve().parent.parent
BIB = ROOT / "profiles" / "bib"


def r4_texts(folder: Path) -> dict[str, dict[str, Any]]:
    texts: dict[str, dict[str, Any]] = {}
    for name in ("profiles-types.json", "profiles-resources.json"):
        bundle = json.loads((folder / name).read_text(encoding="utf-8"))
        for entry in bundle.get("entry", ()):
            sd = entry.get("resource", {})
            if sd.get("resourceType") != "StructureDefinition":
                continue
            if sd.get("derivation") == "constraint":
                continue
            for element in sd.get("snapshot", {}).get("element", ()):
                found = {k: element[k] for k in ("short", "definition") if k in element}
                if "isModifierReason" in element:
                    found["isModifierReason"] = element["isModifierReason"]
                binding = element.get("binding") or {}
                if "description" in binding:
                    found["bindingDescription"] = binding["description"]
                texts.setdefault(element["path"], found)
    return texts


def build(r4_folder: Path | None) -> list[Path]:
    registry = DefinitionRegistry.shipped()
    texts = r4_texts(r4_folder) if r4_folder else {}
    files = sorted(BIB.glob("StructureDefinition-*.json"))
    pending = {path: json.loads(path.read_text(encoding="utf-8")) for path in files}
    urls = {sd["url"] for sd in pending.values()}
    written: list[Path] = []
    while pending:
        ready = [
            path
            for path, sd in pending.items()
            if sd["baseDefinition"] not in urls
            or all(other["url"] != sd["baseDefinition"] for other in pending.values())
        ]
        if not ready:
            raise SystemExit("circular baseDefinition references in profiles/bib")
        for path in ready:
            sd = pending.pop(path)
            sd.pop("snapshot", None)
            snapshot = generate_snapshot(
                sd, registry.get, registry.type_definition, texts.get if texts else None
            )
            sd["snapshot"] = {"element": snapshot}
            registry._put(sd, "shipped")
            path.write_text(json.dumps(sd, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
            written.append(path)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--r4", type=Path, default=None, help="folder with the full R4 definitions")
    args = parser.parse_args()
    for path in build(args.r4):
        print(f"snapshot written: {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
