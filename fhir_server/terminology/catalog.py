"""CodeSystems and ValueSets known to the server, and their expansion.

Sources: the R4 core terminology shipped with the package (FHIR, v3 and v2 code systems and value
sets) and the shipped BiB content (``terminology/``). Expansion follows ValueSet.compose for
what these sources use: whole code systems, listed concepts, imported value sets, and the
``is-a`` / ``descendent-of`` / ``is-not-a`` / ``=`` filters. A value set that depends on a code
system the server does not hold in full (SNOMED CT, LOINC, UCUM, BCP-47...) cannot be expanded
here: ``expand`` returns None and callers must not treat that as "empty".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

import orjson

from fhir_server.definitions import load_r4

Codes = frozenset[tuple[str, str]]


@dataclass(slots=True)
class Concept:
    code: str
    display: str | None
    definition: str | None
    designations: list[dict[str, Any]]
    properties: dict[str, Any]
    parent: str | None = None
    children: list[str] = field(default_factory=list)


@dataclass(slots=True)
class CodeSystemInfo:
    url: str
    resource: dict[str, Any]
    complete: bool
    concepts: dict[str, Concept]

    def descendants(self, code: str) -> set[str]:
        out: set[str] = set()
        stack = list(self.concepts[code].children) if code in self.concepts else []
        while stack:
            child = stack.pop()
            if child not in out:
                out.add(child)
                stack.extend(self.concepts[child].children)
        return out


def _strip_version(url: str) -> str:
    return url.split("|", 1)[0]


class Catalog:
    def __init__(self) -> None:
        self.code_systems: dict[str, CodeSystemInfo] = {}
        self.value_sets: dict[str, dict[str, Any]] = {}
        self._expansions: dict[str, Codes | None] = {}

    def add(self, resource: dict[str, Any]) -> None:
        kind = resource.get("resourceType")
        url = resource.get("url")
        if not url:
            return
        if kind == "CodeSystem":
            self.code_systems[url] = _code_system(resource)
        elif kind == "ValueSet":
            self.value_sets[url] = resource
        self._expansions.clear()

    def remove(self, kind: str, url: str) -> None:
        (self.code_systems if kind == "CodeSystem" else self.value_sets).pop(url, None)
        self._expansions.clear()

    # -- expansion ------------------------------------------------------------------------------

    def expand(self, url: str) -> Codes | None:
        url = _strip_version(url)
        if url in self._expansions:
            return self._expansions[url]
        self._expansions[url] = None  # guards against import cycles
        value_set = self.value_sets.get(url)
        result = self._expand_compose(value_set.get("compose")) if value_set else None
        if result is None and value_set and "expansion" in value_set:
            result = frozenset(
                (c.get("system", ""), c["code"])
                for c in _flatten(value_set["expansion"].get("contains", ()))
            )
        self._expansions[url] = result
        return result

    def _expand_compose(self, compose: dict[str, Any] | None) -> Codes | None:
        if not compose:
            return None
        included: set[tuple[str, str]] = set()
        for part in compose.get("include", ()):
            codes = self._expand_part(part)
            if codes is None:
                return None
            included |= codes
        for part in compose.get("exclude", ()):
            codes = self._expand_part(part)
            if codes is None:
                return None
            included -= codes
        return frozenset(included)

    def _expand_part(self, part: dict[str, Any]) -> set[tuple[str, str]] | None:
        sets: list[set[tuple[str, str]]] = []
        for imported in part.get("valueSet", ()):
            codes = self.expand(imported)
            if codes is None:
                return None
            sets.append(set(codes))
        system = part.get("system")
        if system:
            system_codes = self._system_part(system, part)
            if system_codes is None:
                return None
            sets.append(system_codes)
        if not sets:
            return set()
        result = sets[0]
        for other in sets[1:]:
            result &= other
        return result

    def _system_part(self, system: str, part: dict[str, Any]) -> set[tuple[str, str]] | None:
        listed = part.get("concept")
        filters = part.get("filter", ())
        code_system = self.code_systems.get(system)
        if listed and not filters:
            return {(system, c["code"]) for c in listed}
        if code_system is None or not code_system.complete:
            return None
        codes = set(code_system.concepts)
        for spec in filters:
            selected = self._filter(code_system, spec)
            if selected is None:
                return None
            codes &= selected
        if listed:
            codes &= {c["code"] for c in listed}
        return {(system, code) for code in codes}

    @staticmethod
    def _filter(code_system: CodeSystemInfo, spec: dict[str, Any]) -> set[str] | None:
        op, prop, value = spec.get("op"), spec.get("property"), spec.get("value", "")
        if op == "is-a" and prop == "concept":
            return (
                ({value} | code_system.descendants(value))
                if value in code_system.concepts
                else set()
            )
        if op == "descendent-of" and prop == "concept":
            return code_system.descendants(value)
        if op == "is-not-a" and prop == "concept":
            excluded = {value} | code_system.descendants(value)
            return set(code_system.concepts) - excluded
        if op == "=":
            return {
                code
                for code, concept in code_system.concepts.items()
                if str(concept.properties.get(prop)) == value
            }
        return None

    # -- lookups --------------------------------------------------------------------------------

    def concept(self, system: str, code: str) -> Concept | None:
        code_system = self.code_systems.get(system)
        return code_system.concepts.get(code) if code_system else None


def _flatten(contains: Any) -> list[dict[str, Any]]:
    out = []
    for item in contains:
        if "code" in item:
            out.append(item)
        out.extend(_flatten(item.get("contains", ())))
    return out


def _code_system(resource: dict[str, Any]) -> CodeSystemInfo:
    concepts: dict[str, Concept] = {}

    def visit(items: Any, parent: str | None) -> None:
        for item in items or ():
            code = item.get("code")
            if not isinstance(code, str):
                continue
            properties = {}
            for prop in item.get("property", ()):
                for key, value in prop.items():
                    if key.startswith("value"):
                        properties[prop.get("code")] = value
            concept = Concept(
                code,
                item.get("display"),
                item.get("definition"),
                item.get("designation", []),
                properties,
                parent,
            )
            concepts[code] = concept
            if parent is not None and parent in concepts:
                concepts[parent].children.append(code)
            visit(item.get("concept"), code)

    visit(resource.get("concept"), None)
    for code, concept in concepts.items():  # parent/child given as properties (v3 style)
        parent = concept.properties.get("subsumedBy") or concept.properties.get("parent")
        if isinstance(parent, str) and parent in concepts and code not in concepts[parent].children:
            concepts[parent].children.append(code)
    return CodeSystemInfo(
        resource["url"], resource, resource.get("content") == "complete", concepts
    )


def shipped_resources() -> list[dict[str, Any]]:
    """The BiB CodeSystems, ValueSets and ConceptMaps in terminology/ (installed as package
    data)."""
    out: list[dict[str, Any]] = []
    try:
        folder = resources.files("fhir_server.content.terminology")
    except ModuleNotFoundError:
        return out
    stack = [folder]
    while stack:
        current = stack.pop()
        for entry in current.iterdir():
            if entry.is_dir():
                stack.append(entry)
            elif entry.name.endswith(".json"):
                out.append(orjson.loads(entry.read_bytes()))
    return out


@cache
def default_catalog() -> Catalog:
    """R4 core + shipped BiB terminology (built once; copies are cheap to extend)."""
    catalog = Catalog()
    for name in ("valuesets", "v3-codesystems", "v2-tables"):
        for resource in load_r4(name):
            catalog.add(resource)
    for resource in shipped_resources():
        catalog.add(resource)
    return catalog
