"""The R4 type model, built once from the official StructureDefinition snapshots.

Every other part of the server (validation, search value extraction, patch, ``_summary``) asks this
model what an element is: its cardinality, its type(s), and which JSON keys spell it. Nothing
here is hand-written per resource type; it all comes from the R4 ``profiles-resources`` and
``profiles-types`` definitions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache

from fhir_server.definitions import load_r4

FHIRPATH_SYSTEM_PREFIX = "http://hl7.org/fhirpath/System."
FHIR_TYPE_EXT = "http://hl7.org/fhir/StructureDefinition/structuredefinition-fhir-type"

PRIMITIVE_TYPES = frozenset(
    {
        "base64Binary",
        "boolean",
        "canonical",
        "code",
        "date",
        "dateTime",
        "decimal",
        "id",
        "instant",
        "integer",
        "markdown",
        "oid",
        "positiveInt",
        "string",
        "time",
        "unsignedInt",
        "uri",
        "url",
        "uuid",
        "xhtml",
    }
)


@dataclass(slots=True)
class Element:
    """One element definition of a type, e.g. ``Observation.value[x]``."""

    path: str
    name: str  # last path segment without ``[x]``
    min: int
    max: int | None  # None means unbounded
    types: tuple[str, ...]  # FHIR type codes; BackboneElement/Element for inline structures
    choice: bool
    is_summary: bool
    is_modifier: bool
    target_profiles: tuple[str, ...] = ()
    binding_strength: str | None = None
    binding_value_set: str | None = None
    # inline (backbone) structure, shared with the target of a contentReference
    children: ComplexType | None = field(default=None, repr=False)
    content_reference: str | None = None

    @property
    def repeats(self) -> bool:
        return self.max is None or self.max > 1


@dataclass(slots=True)
class JsonKey:
    """What one JSON property name of an object means."""

    element: Element
    type_code: str  # concrete type for this key (resolved for choice elements)
    extension_part: bool = False  # a ``_name`` key carrying id/extension of a primitive


@dataclass(slots=True)
class ComplexType:
    """A resource, a complex data type or an inline backbone structure."""

    name: str  # type name or path of the backbone element
    elements: dict[str, Element] = field(default_factory=dict, repr=False)  # by element name
    keys: dict[str, JsonKey] = field(default_factory=dict, repr=False)  # by JSON property name
    required: tuple[Element, ...] = field(default=(), repr=False)

    def finish(self) -> None:
        self.keys = {}
        for element in self.elements.values():
            for type_code in element.types:
                key = element.name + _cap(type_code) if element.choice else element.name
                self.keys[key] = JsonKey(element, type_code)
                if type_code in PRIMITIVE_TYPES:
                    self.keys["_" + key] = JsonKey(element, type_code, extension_part=True)
        self.required = tuple(e for e in self.elements.values() if e.min > 0)

    def json_keys_of(self, element: Element) -> list[str]:
        if element.choice:
            return [element.name + _cap(t) for t in element.types]
        return [element.name]


def _cap(type_code: str) -> str:
    return type_code[0].upper() + type_code[1:]


def _type_code(type_entry: dict) -> str:
    code = type_entry["code"]
    if code.startswith(FHIRPATH_SYSTEM_PREFIX):
        for ext in type_entry.get("extension", ()):
            if ext.get("url") == FHIR_TYPE_EXT:
                return ext["valueUrl"]
        return "string"
    return code


def _max(value: str) -> int | None:
    return None if value == "*" else int(value)


class Model:
    """All R4 resource and data types, indexed by name."""

    def __init__(self, structure_definitions: list[dict]) -> None:
        self.types: dict[str, ComplexType] = {}
        self.kinds: dict[str, str] = {}
        self.abstract: set[str] = set()
        self.base: dict[str, str] = {}
        self.urls: dict[str, str] = {}
        self._backbones: dict[str, Element] = {}
        pending_refs: list[Element] = []
        for sd in structure_definitions:
            if sd.get("derivation") == "constraint":
                continue
            name = sd["type"]
            self.kinds[name] = sd["kind"]
            self.urls[name] = sd["url"]
            if sd.get("abstract"):
                self.abstract.add(name)
            if sd.get("baseDefinition"):
                self.base[name] = sd["baseDefinition"].rsplit("/", 1)[-1]
            if sd["kind"] == "primitive-type" or sd["kind"] == "logical":
                continue
            self.types[name] = self._build(name, sd["snapshot"]["element"], pending_refs)
        for element in pending_refs:
            target = self._backbones[element.content_reference]
            element.children = target.children
            element.types = target.types
        for complex_type in self._all_structures():
            complex_type.finish()

    def _all_structures(self) -> list[ComplexType]:
        seen: dict[int, ComplexType] = {}
        stack = list(self.types.values())
        while stack:
            ct = stack.pop()
            if id(ct) in seen:
                continue
            seen[id(ct)] = ct
            for element in ct.elements.values():
                if element.children is not None:
                    stack.append(element.children)
        return list(seen.values())

    def _build(self, name: str, elements: list[dict], pending_refs: list[Element]) -> ComplexType:
        root = ComplexType(name)
        structures: dict[str, ComplexType] = {name: root}
        for definition in elements[1:]:
            if "sliceName" in definition:
                continue  # base definitions only; profiles are handled by the validator
            path = definition["path"]
            parent_path, _, segment = path.rpartition(".")
            parent = structures.get(parent_path)
            if parent is None:
                continue
            choice = segment.endswith("[x]")
            types = tuple(_type_code(t) for t in definition.get("type", ()))
            targets = tuple(
                p for t in definition.get("type", ()) for p in t.get("targetProfile", ())
            )
            binding = definition.get("binding") or {}
            element = Element(
                path=path,
                name=segment[:-3] if choice else segment,
                min=definition.get("min", 0),
                max=_max(definition.get("max", "*")),
                types=types,
                choice=choice,
                is_summary=bool(definition.get("isSummary")),
                is_modifier=bool(definition.get("isModifier")),
                target_profiles=targets,
                binding_strength=binding.get("strength"),
                binding_value_set=binding.get("valueSet"),
                content_reference=(definition.get("contentReference") or "").lstrip("#") or None,
            )
            parent.elements[element.name] = element
            if element.content_reference:
                pending_refs.append(element)
            elif (
                types
                and types[0] in ("BackboneElement", "Element")
                and name not in ("Element", "BackboneElement")
            ):
                element.children = ComplexType(path)
                structures[path] = element.children
                self._backbones[path] = element
        return root

    # -- queries --------------------------------------------------------------------------

    def is_resource(self, name: str) -> bool:
        return self.kinds.get(name) == "resource" and name not in self.abstract

    @property
    def resource_types(self) -> list[str]:
        return sorted(
            n for n, k in self.kinds.items() if k == "resource" and n not in self.abstract
        )

    def structure_of(self, type_code: str) -> ComplexType | None:
        return self.types.get(type_code)

    def is_a(self, type_name: str, ancestor: str) -> bool:
        while type_name:
            if type_name == ancestor:
                return True
            type_name = self.base.get(type_name, "")
        return False

    def element_at(self, path: str) -> Element | None:
        """Resolve a dotted element path such as ``Observation.component.value``."""
        parts = path.split(".")
        structure = self.types.get(parts[0])
        element = None
        for part in parts[1:]:
            if structure is None:
                return None
            element = structure.elements.get(part.removesuffix("[x]"))
            if element is None:
                return None
            structure = element.children or (
                self.types.get(element.types[0]) if len(element.types) == 1 else None
            )
        return element


@cache
def r4_model() -> Model:
    """The R4 model, built once per process from the packaged definitions."""
    sds = load_r4("profiles-types") + load_r4("profiles-resources")
    return Model(sds)
