"""CodeSystems and ValueSets known to the server, and their expansion.

Sources: the R4 core terminology shipped with the package (FHIR, v3 and v2 code systems and value
sets) and the shipped content (``terminology/``: BiB, be-core and the BiB supplements of be-core
code systems; ``mappings/``: ConceptMaps). Expansion follows ValueSet.compose for
what these sources use: whole code systems, listed concepts, imported value sets, and the
``is-a`` / ``descendent-of`` / ``is-not-a`` / ``=`` filters. A value set that depends on a code
system the server does not hold in full (SNOMED CT, LOINC, UCUM, BCP-47...) cannot be expanded
here: ``expand`` returns None and callers must not treat that as "empty" (``expansion_problem``
says why). CodeSystem supplements (``content = supplement``) are not code systems of their own:
their designations and properties are merged into the code system they supplement.
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
    property_values: list[dict[str, Any]] = field(default_factory=list)  # concept.property as is


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
        self.concept_maps: dict[str, dict[str, Any]] = {}
        self.supplements: dict[str, dict[str, Any]] = {}  # supplement url -> CodeSystem
        self._expansions: dict[str, Codes | None] = {}

    def copy(self) -> Catalog:
        """A catalog with the same content that can be changed without touching this one."""
        other = Catalog()
        other.code_systems = dict(self.code_systems)
        other.value_sets = dict(self.value_sets)
        other.concept_maps = dict(self.concept_maps)
        other.supplements = dict(self.supplements)
        return other

    def add(self, resource: dict[str, Any]) -> None:
        kind = resource.get("resourceType")
        url = resource.get("url")
        if not url:
            return
        if kind == "CodeSystem":
            target = resource.get("supplements")
            if resource.get("content") == "supplement" and isinstance(target, str):
                self.supplements[url] = resource
                self._rebuild(_strip_version(target))
            else:
                self.code_systems[url] = self._supplemented(_code_system(resource))
        elif kind == "ValueSet":
            self.value_sets[url] = resource
        elif kind == "ConceptMap":
            self.concept_maps[url] = resource
        self._expansions.clear()

    def remove(self, kind: str, url: str) -> None:
        if kind == "CodeSystem" and url in self.supplements:
            target = self.supplements.pop(url).get("supplements", "")
            self._rebuild(_strip_version(target))
        elif kind == "CodeSystem":
            self.code_systems.pop(url, None)
        elif kind == "ValueSet":
            self.value_sets.pop(url, None)
        elif kind == "ConceptMap":
            self.concept_maps.pop(url, None)
        self._expansions.clear()

    # -- supplements ----------------------------------------------------------------------------

    def _rebuild(self, system: str) -> None:
        info = self.code_systems.get(system)
        if info is not None:  # build anew: copies of this catalog keep their own objects
            self.code_systems[system] = self._supplemented(_code_system(info.resource))

    def _supplemented(self, info: CodeSystemInfo) -> CodeSystemInfo:
        version = info.resource.get("version")
        for supplement in self.supplements.values():
            target, _, target_version = supplement.get("supplements", "").partition("|")
            if target != info.url or (target_version and version and target_version != version):
                continue
            for item in _walk(supplement.get("concept", ())):
                concept = info.concepts.get(item.get("code"))
                if concept is None:
                    continue
                for designation in item.get("designation", ()):
                    if designation not in concept.designations:
                        concept.designations.append(designation)
                for prop in item.get("property", ()):
                    concept.property_values.append(prop)
                    for key, value in prop.items():
                        if key.startswith("value"):
                            concept.properties.setdefault(prop.get("code"), value)
        return info

    def supplements_of(self, system: str) -> list[dict[str, Any]]:
        return [
            s
            for s in self.supplements.values()
            if _strip_version(s.get("supplements", "")) == system
        ]

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

    def expand_compose(self, compose: dict[str, Any] | None) -> Codes | None:
        """Expand a compose that is not (or not yet) in the catalog, e.g. a ValueSet given
        inline to $expand or a stored one without a url."""
        return self._expand_compose(compose)

    def expansion_problem(self, url: str, _seen: frozenset[str] = frozenset()) -> str | None:
        """Why ``expand(url)`` gives None, in words for an OperationOutcome (None if it
        expands)."""
        url = _strip_version(url)
        value_set = self.value_sets.get(url)
        if value_set is None:
            return f"the value set {url} is not known to this server"
        if url in _seen:
            return f"the value set {url} includes itself"
        if "compose" not in value_set:
            return None if "expansion" in value_set else f"the value set {url} has no compose"
        return self.compose_problem(value_set["compose"], _seen | {url})

    def compose_problem(
        self, compose: dict[str, Any], _seen: frozenset[str] = frozenset()
    ) -> str | None:
        for part in (*compose.get("include", ()), *compose.get("exclude", ())):
            for imported in part.get("valueSet", ()):
                if self.expand(imported) is None:
                    return self.expansion_problem(imported, _seen)
            system = part.get("system")
            if not system or (part.get("concept") and not part.get("filter")):
                continue
            code_system = self.code_systems.get(system)
            if code_system is None or code_system.resource.get("content") == "not-present":
                return (
                    f"it needs the code system {system}, which this server does not hold "
                    "(large external code systems such as SNOMED CT and LOINC are not "
                    "available here)"
                )
            if not code_system.complete:
                content = code_system.resource.get("content")
                return f"the code system {system} is only held as {content!r}, not complete"
            for spec in part.get("filter", ()):
                if self._filter(code_system, spec) is None:
                    return (
                        f"the filter {spec.get('property')} {spec.get('op')} "
                        f"{spec.get('value')!r} on {system} is not supported"
                    )
        return None

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


def _walk(concepts: Any) -> list[dict[str, Any]]:
    out = []
    for item in concepts or ():
        out.append(item)
        out.extend(_walk(item.get("concept", ())))
    return out


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
                list(item.get("designation", ())),  # a copy: supplements add to it
                properties,
                parent,
                property_values=list(item.get("property", ())),
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
        resource.get("url", ""), resource, resource.get("content") == "complete", concepts
    )


TERMINOLOGY_TYPES = frozenset({"CodeSystem", "ValueSet", "ConceptMap"})


@cache
def shipped_resources() -> tuple[dict[str, Any], ...]:
    """The CodeSystems, ValueSets and ConceptMaps in terminology/ and mappings/ (installed as
    package data ``fhir_server.content.terminology`` / ``.mappings``), in a stable order.
    Read once and shared: callers must not change them."""
    out: list[dict[str, Any]] = []
    for package in ("fhir_server.content.terminology", "fhir_server.content.mappings"):
        try:
            folder = resources.files(package)
        except ModuleNotFoundError:
            continue
        files = []
        stack = [folder]
        while stack:
            current = stack.pop()
            for entry in current.iterdir():
                if entry.is_dir():
                    stack.append(entry)
                elif entry.name.endswith(".json"):
                    files.append(entry)
        for entry in sorted(files, key=lambda e: str(e)):
            resource = orjson.loads(entry.read_bytes())
            if isinstance(resource, dict) and resource.get("resourceType") in TERMINOLOGY_TYPES:
                out.append(resource)
    return tuple(out)


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
