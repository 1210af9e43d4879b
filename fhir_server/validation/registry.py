"""The StructureDefinitions (and profile terminology) the profile validator can use.

Three sources, looked up by canonical URL (a ``|version`` suffix is ignored):

* the R4 4.0.1 base definitions shipped in the package (resources, data types and the 393 core
  extension definitions, trimmed to their computable parts);
* the shipped profiles in ``profiles/`` (installed as ``fhir_server.content.profiles``): the
  be-core 2.1.2 subset in ``profiles/be-core/`` and the BiB profiles in ``profiles/bib/``, with
  the CodeSystems, ValueSets and NamingSystems that come with them;
* StructureDefinitions stored on the server (added and removed as they are committed).
"""

from __future__ import annotations

import logging
from functools import cache
from importlib import resources
from typing import Any

import orjson

from fhir_server.definitions import load_r4
from fhir_server.validation.snapshot import SnapshotError, generate_snapshot

log = logging.getLogger(__name__)

R4_BASE = "http://hl7.org/fhir/StructureDefinition/"


def strip_version(url: str) -> str:
    return url.split("|", 1)[0]


@cache
def shipped_content() -> tuple[dict[str, Any], ...]:
    """Every JSON resource under ``profiles/`` (parsed once per process)."""
    out: list[dict[str, Any]] = []
    try:
        folder = resources.files("fhir_server.content.profiles")
    except ModuleNotFoundError:  # pragma: no cover - the package is always installed with it
        return ()
    stack = [folder]
    while stack:
        current = stack.pop()
        for entry in sorted(current.iterdir(), key=lambda e: e.name):
            if entry.is_dir():
                stack.append(entry)
            elif entry.name.endswith(".json"):
                resource = orjson.loads(entry.read_bytes())
                if isinstance(resource, dict) and "resourceType" in resource:
                    out.append(resource)
    return tuple(out)


class DefinitionRegistry:
    """StructureDefinitions by canonical URL; ``generation`` changes whenever the set changes."""

    def __init__(self) -> None:
        self.structures: dict[str, dict[str, Any]] = {}
        self.origin: dict[str, str] = {}  # url -> "r4" | "shipped" | "stored"
        self.types: dict[str, dict[str, Any]] = {}  # R4 type/resource name -> definition
        self.terminology: list[dict[str, Any]] = []  # CodeSystems/ValueSets from profiles/
        self.naming_systems: list[dict[str, Any]] = []
        self.generation = 0
        self._stored_ids: dict[str, str] = {}  # stored StructureDefinition id -> url

    @classmethod
    def shipped(cls) -> DefinitionRegistry:
        registry = cls()
        for name in ("profiles-types", "profiles-resources"):
            for sd in load_r4(name):
                registry._put(sd, "r4")
                if sd.get("derivation") != "constraint" and sd.get("kind") != "logical":
                    registry.types[sd["type"]] = sd
        for sd in load_r4("extension-definitions"):
            registry._put(sd, "r4")
        for resource in shipped_content():
            kind = resource.get("resourceType")
            if kind == "StructureDefinition":
                registry._put(resource, "shipped")
            elif kind in ("CodeSystem", "ValueSet"):
                registry.terminology.append(resource)
            elif kind == "NamingSystem":
                registry.naming_systems.append(resource)
        return registry

    def _put(self, sd: dict[str, Any], origin: str) -> None:
        url = sd.get("url")
        if url:
            self.structures[url] = sd
            self.origin[url] = origin
            self.generation += 1

    # -- lookup ---------------------------------------------------------------------------------

    def get(self, url: str) -> dict[str, Any] | None:
        return self.structures.get(strip_version(url))

    def type_definition(self, code: str) -> dict[str, Any] | None:
        return self.types.get(code)

    def is_base(self, url: str) -> bool:
        """True for the R4 base definition of a resource or data type (nothing beyond the
        structural validation to check)."""
        sd = self.get(url)
        return (
            sd is not None
            and self.origin.get(strip_version(url)) == "r4"
            and (sd.get("derivation") != "constraint" and sd.get("type") != "Extension")
        )

    def profiles_of(self, origin: str) -> list[dict[str, Any]]:
        return [sd for url, sd in self.structures.items() if self.origin[url] == origin]

    # -- stored StructureDefinitions -------------------------------------------------------------

    def add_stored(self, resource_id: str, sd: dict[str, Any]) -> str | None:
        """Register a stored StructureDefinition; returns a problem description or None.

        Shipped and R4 definitions are never replaced by stored ones with the same URL.
        """
        self.remove_stored(resource_id)
        url = sd.get("url")
        if not url:
            return "the StructureDefinition has no url"
        if self.origin.get(url) in ("r4", "shipped"):
            return f"{url} is a shipped definition; the stored copy is not used for validation"
        if "snapshot" not in sd:
            try:
                sd = {
                    **sd,
                    "snapshot": {"element": generate_snapshot(sd, self.get, self.type_definition)},
                }
            except (SnapshotError, KeyError, TypeError) as exc:
                return f"no snapshot could be generated: {exc}"
        self._put(sd, "stored")
        self._stored_ids[resource_id] = url
        return None

    def remove_stored(self, resource_id: str) -> None:
        url = self._stored_ids.pop(resource_id, None)
        if url and self.origin.get(url) == "stored":
            del self.structures[url]
            del self.origin[url]
            self.generation += 1
