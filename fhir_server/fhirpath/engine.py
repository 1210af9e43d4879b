"""The FHIRPath compiler: a syntax tree (``parser.py``) becomes nested Python closures, compiled
once per expression (and context type) and cached.

Items of a collection at run time are either System values (``bool``, ``int``, ``Decimal``,
``str``, ``Temporal``, ``Quantity``, ``TypeInfo``) or FHIR nodes. A FHIR node is a plain tuple
``(value, type, structure, parent, key, index)``: the JSON value, its FHIR type code from the R4
model, the ``ComplexType`` to navigate into it, and where it sits (parent object, JSON key, list
index), which gives the ``_key`` partner of primitives and the location FHIRPath Patch edits.
Tuples cost a fraction of objects to build, which keeps the compiled closures as fast as the two
special-purpose evaluators they replace.

Static types: while compiling, each sub-expression gets the set of types it can have when the
context type is known (an invariant's element, a search parameter's resource, the focus of
``evaluate``). Member names are resolved against the R4 model then: a name the type does not
have is a semantic error (``Observation.valueQuantity``, ``name.given1``), and the JSON keys of
each step are looked up once instead of per item.
"""

from __future__ import annotations

import base64
import binascii
import html
import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from fhir_server.fhirpath import parser as ast
from fhir_server.fhirpath.values import (
    CALENDAR_WORDS,
    SYSTEM_TYPES,
    EvaluationError,
    Quantity,
    Temporal,
    TypeInfo,
    decimal_boundary,
    decimal_equivalent,
    decimal_places,
    now_local,
    parse_temporal,
    quantity_add,
    quantity_compare,
    quantity_equivalent,
    quantity_multiply,
    system_type,
    temporal_add,
    temporal_boundary,
    temporal_compare,
    temporal_equivalent,
    temporal_from_datetime,
    to_boolean,
    to_decimal,
    to_integer,
    to_quantity,
    to_string,
    to_temporal,
)
from fhir_server.model.structure import PRIMITIVE_TYPES, ComplexType, Model

UCUM_SYSTEM = "http://unitsofmeasure.org"


class SemanticError(ValueError):
    """The expression is well-formed but cannot be valid for the types it applies to."""


Item = Any
Items = list
Fn = Callable[["Ctx"], list]
# a static type: None (unknown) or a tuple of (type code, structure or None) alternatives
SType = tuple[tuple[str, ComplexType | None], ...] | None

QUANTITY_TYPES = frozenset(
    {"Quantity", "Age", "Count", "Distance", "Duration", "SimpleQuantity", "MoneyQuantity"}
)
_STRING_TYPES = frozenset(
    {
        "string",
        "code",
        "id",
        "uri",
        "url",
        "canonical",
        "oid",
        "uuid",
        "markdown",
        "base64Binary",
        "xhtml",
    }
)
_INTEGER_TYPES = frozenset({"integer", "positiveInt", "unsignedInt"})
_EMPTY: list = []


# -- the evaluation context -----------------------------------------------------------------------


@dataclass(slots=True)
class Node:
    """A typed value for search extraction and patch."""

    value: Any  # JSON value (dict for complex types, Python primitive for primitives)
    type: str  # FHIR type code, e.g. "Quantity", "string", "Patient"
    structure: ComplexType | None = None  # for navigation into complex values
    loc: tuple[dict, str, int | None] | None = None  # (parent object, key, list index) for patch


class Env:
    """What an evaluation may use besides its data: variables and hooks (shareable)."""

    __slots__ = ("resolver", "terminology", "trace", "validator", "variables")

    def __init__(
        self,
        variables: dict[str, list] | None = None,
        resolver: Callable[[str], Any] | None = None,
        terminology: Any = None,
        validator: Callable[[Any, str], bool] | None = None,
        trace: Callable[[str, list], None] | None = None,
    ) -> None:
        self.variables = variables or {}
        self.resolver = resolver
        self.terminology = terminology
        self.validator = validator
        self.trace = trace


NO_ENV = Env()
# what a failing evaluation raises (anything else is a bug in the engine)
ENGINE_ERRORS: tuple[type[Exception], ...] = (
    ValueError,
    ArithmeticError,
    TypeError,
    RecursionError,
)


class Ctx:
    """One evaluation: ``$this``, ``$index``, ``$total`` (changed in place by the functions that
    iterate), ``%context``, ``%resource``, ``%rootResource`` and the environment."""

    __slots__ = ("context", "env", "index", "now", "resource", "root", "this", "total")

    def __init__(self, this: list, resource: list, root: list, env: Env = NO_ENV) -> None:
        self.this = self.context = this
        self.resource = resource
        self.root = root
        self.env = env
        self.index: int | None = None
        self.now: Temporal | None = None
        self.total: list = _EMPTY


# -- FHIR nodes -----------------------------------------------------------------------------------


def node_of(value: Any, model: Model, type_code: str | None = None) -> Item:
    """A FHIR node (or System value) for a JSON value handed in from outside."""
    if isinstance(value, dict):
        if type_code is None:
            resource_type = value.get("resourceType")
            if isinstance(resource_type, str):
                return (value, resource_type, model.types.get(resource_type), None, None, None)
            return (value, "", None, None, None, None)
        structure = model.types.get(type_code)
        if structure is None and "." in type_code:
            element = model.element_at(type_code)
            if element is not None:
                structure = element.children or (
                    model.types.get(element.types[0]) if element.types else None
                )
        return (value, type_code, structure, None, None, None)
    if type_code is not None:
        return (value, type_code, None, None, None, None)
    return system_value(value)


def system_value(value: Any) -> Any:
    """A plain Python/JSON value as a System value (floats become decimals)."""
    if isinstance(value, float):
        return Decimal(repr(value))
    return value


def _quantity_from_fhir(value: dict) -> Quantity | None:
    number = value.get("value")
    if number is None or isinstance(number, bool):
        return None
    if isinstance(number, float):
        number = Decimal(repr(number))
    code = value.get("code")
    if value.get("system") == UCUM_SYSTEM and isinstance(code, str):
        unit = code
    else:
        unit = value.get("unit") or code or "1"
        if unit in CALENDAR_WORDS or unit.rstrip("s") in CALENDAR_WORDS:
            unit = unit.rstrip("s")
    return Quantity(Decimal(number), unit)


def _decimal_of(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, float):
        return Decimal(repr(value))
    if isinstance(value, int):
        return Decimal(value)
    return value


def _temporal_of(kind: str) -> Callable[[Any], Any]:
    def convert(value: Any) -> Any:
        if not isinstance(value, str):
            return value
        parsed = parse_temporal(value, kind=kind)
        return value if parsed is None else parsed

    return convert


_PRIMITIVE_TO_SYSTEM: dict[str, Callable[[Any], Any]] = {
    "decimal": _decimal_of,
    "date": _temporal_of("date"),
    "dateTime": _temporal_of("dateTime"),
    "instant": _temporal_of("dateTime"),
    "time": _temporal_of("time"),
}


def to_system(item: Item) -> Any:
    """The System value of an item (FHIR primitives and quantities converted)."""
    if type(item) is not tuple:
        return item
    value, type_code = item[0], item[1]
    if type_code in _STRING_TYPES or type_code in _INTEGER_TYPES or type_code == "boolean":
        return value
    convert = _PRIMITIVE_TO_SYSTEM.get(type_code)
    if convert is not None:
        return convert(value)
    if type_code in QUANTITY_TYPES and isinstance(value, dict):
        quantity = _quantity_from_fhir(value)
        return value if quantity is None else quantity
    if isinstance(value, float):
        return Decimal(repr(value))
    return value


def to_json(item: Item) -> Any:
    """The plain (JSON-like) value of an item, as ``evaluate`` returns it."""
    if type(item) is tuple:
        return item[0]
    cls = type(item)
    if cls is Temporal:
        return str(item)
    if cls is Quantity:
        return item.to_fhir()
    if cls is TypeInfo:
        return {"namespace": item.namespace, "name": item.name}
    return item


def type_of(item: Item) -> tuple[str, str]:
    if type(item) is tuple:
        return "FHIR", item[1]
    return "System", system_type(item)


def _partner(item: Item) -> Any:
    """The ``_key`` object (id and extensions) of a primitive node."""
    parent, key, index = item[3], item[4], item[5]
    if parent is None or key is None:
        return None
    partner = parent.get("_" + key)
    if index is not None:
        if isinstance(partner, list) and index < len(partner):
            return partner[index]
        return None
    return partner if isinstance(partner, dict) else None


# -- member navigation ----------------------------------------------------------------------------

_MISSING = object()
Plan = tuple[tuple[str, str, ComplexType | None, bool, bool], ...]


class Navigator:
    """Per model: which JSON keys an element name means on each structure (cached)."""

    def __init__(self, model: Model, lenient: bool = False) -> None:
        self.model = model
        self.lenient = lenient  # JSON names of choice elements (valueQuantity) are accepted
        self._plans: dict[tuple[str, str], Plan | None] = {}
        self.element_structure = model.types.get("Element")
        self._suffixes = frozenset(t[:1].upper() + t[1:] for t in (*model.types, *PRIMITIVE_TYPES))

    def plan(self, structure: ComplexType, name: str) -> Plan | None:
        key = (structure.name, name)
        plan = self._plans.get(key, _MISSING)
        if plan is _MISSING:
            plan = self._build(structure, name)
            self._plans[key] = plan
        return plan  # type: ignore[return-value]

    def _build(self, structure: ComplexType, name: str) -> Plan | None:
        element = structure.elements.get(name)
        if element is None:
            return None
        model = self.model
        out = []
        codes = element.types or ("",)
        for code in codes:
            key = name + code[:1].upper() + code[1:] if element.choice else name
            is_resource = model.kinds.get(code) == "resource"
            child = None if is_resource else (element.children or model.types.get(code))
            out.append((key, code, child, code in PRIMITIVE_TYPES, is_resource))
            if not element.choice:
                break
        return tuple(out)

    def member(self, item: Item, name: str, out: list) -> None:
        if type(item) is not tuple:
            if type(item) is TypeInfo and name in ("namespace", "name"):
                out.append(getattr(item, name))
            return
        value = item[0]
        structure = item[2]
        if structure is None:
            if type(value) is dict:
                self.raw_member(value, name, out)
            elif name in ("extension", "id"):
                partner = _partner(item)
                if partner is not None:
                    self.member(
                        (partner, "Element", self.element_structure, None, None, None), name, out
                    )
            return
        plan = self.plan(structure, name)
        if plan is None:
            json_key = structure.keys.get(name) if self.lenient else None
            if json_key is not None and not json_key.extension_part:
                code = json_key.type_code
                element = json_key.element
                is_resource = self.model.kinds.get(code) == "resource"
                child = None if is_resource else (element.children or self.model.types.get(code))
                self.walk(value, ((name, code, child, code in PRIMITIVE_TYPES, is_resource),), out)
            return
        self.walk(value, plan, out)

    def walk(self, value: Any, plan: Plan, out: list) -> None:
        if type(value) is not dict:
            return
        model = self.model
        for key, code, child, primitive, is_resource in plan:
            raw = value.get(key)
            if raw is None:
                # (a choice element's plan lists every type's key: most are absent)
                if primitive and "_" + key in value:
                    self._partner_only(value, key, code, out)
                continue
            if type(raw) is list:
                for index, entry in enumerate(raw):
                    if entry is None:
                        if primitive:
                            partners = value.get("_" + key)
                            if (
                                type(partners) is list
                                and index < len(partners)
                                and partners[index] is not None
                            ):
                                out.append((None, code, None, value, key, index))
                        continue
                    if is_resource and type(entry) is dict:
                        rtype = entry.get("resourceType", code)
                        out.append((entry, rtype, model.types.get(rtype), value, key, index))
                    else:
                        out.append((entry, code, child, value, key, index))
            elif is_resource and type(raw) is dict:
                rtype = raw.get("resourceType", code)
                out.append((raw, rtype, model.types.get(rtype), value, key, None))
            else:
                out.append((raw, code, child, value, key, None))

    def walk_nodes(self, value: Any, plan: Plan, out: list) -> None:
        """``walk`` making ``Node``s (the typed-node evaluator's last step)."""
        if type(value) is not dict:
            return
        model = self.model
        for key, code, child, _primitive, is_resource in plan:
            raw = value.get(key)
            if raw is None:  # (a primitive with only an extension has no value to index)
                continue
            if type(raw) is list:
                for index, entry in enumerate(raw):
                    if entry is None:
                        continue
                    if is_resource and type(entry) is dict:
                        rtype = entry.get("resourceType", code)
                        out.append(Node(entry, rtype, model.types.get(rtype), (value, key, index)))
                    else:
                        out.append(Node(entry, code, child, (value, key, index)))
            elif is_resource and type(raw) is dict:
                rtype = raw.get("resourceType", code)
                out.append(Node(raw, rtype, model.types.get(rtype), (value, key, None)))
            else:
                out.append(Node(raw, code, child, (value, key, None)))

    @staticmethod
    def _partner_only(value: dict, key: str, code: str, out: list) -> None:
        partners = value.get("_" + key)
        if partners is None:
            return
        if type(partners) is list:
            for index, partner in enumerate(partners):
                if partner is not None:
                    out.append((None, code, None, value, key, index))
        else:
            out.append((None, code, None, value, key, None))

    def raw_member(self, value: dict, name: str, out: list) -> None:
        """Navigation into JSON whose type is not known (variables handed in as plain JSON)."""
        model = self.model
        raw = value.get(name)
        code = ""
        key = name
        if raw is None:
            for candidate, found in value.items():
                suffix = candidate[len(name) :]
                if candidate.startswith(name) and suffix in self._suffixes:
                    raw, key = found, candidate
                    code = suffix if suffix in model.types else suffix[:1].lower() + suffix[1:]
                    break
            if raw is None:
                return
        entries = raw if type(raw) is list else (raw,)
        for index, entry in enumerate(entries):
            if entry is None:
                continue
            position = index if type(raw) is list else None
            if type(entry) is dict and isinstance(entry.get("resourceType"), str):
                rtype = entry["resourceType"]
                out.append((entry, rtype, model.types.get(rtype), value, key, position))
            elif code:
                out.append((entry, code, model.types.get(code), value, key, position))
            else:
                out.append((entry, "", None, value, key, position))

    def children(self, item: Item, out: list) -> None:
        if type(item) is not tuple:
            return
        value, structure = item[0], item[2]
        if type(value) is not dict:
            return
        if structure is None:
            for key in value:
                if key != "resourceType" and not key.startswith("_"):
                    self.raw_member(value, key, out)
            return
        keys = structure.keys
        model = self.model
        for key, _raw in value.items():
            if key == "resourceType":
                continue
            if key[0] == "_":
                if key[1:] in value:
                    continue
                json_key = keys.get(key)
                if json_key is not None:
                    self._partner_only(value, key[1:], json_key.type_code, out)
                continue
            json_key = keys.get(key)
            if json_key is None:
                continue
            code = json_key.type_code
            element = json_key.element
            is_resource = model.kinds.get(code) == "resource"
            child = None if is_resource else (element.children or model.types.get(code))
            self.walk(value, ((key, code, child, code in PRIMITIVE_TYPES, is_resource),), out)


# -- equality, equivalence, ordering --------------------------------------------------------------


def _is_number(value: Any) -> bool:
    cls = type(value)
    return cls is int or cls is Decimal


def equal(a: Item, b: Item) -> bool | None:
    """FHIRPath ``=`` on two items: True, False, or None (not comparable at this precision)."""
    if type(a) is tuple and type(b) is tuple and type(a[0]) is dict and type(b[0]) is dict:
        if a[0] is b[0]:
            return True
        if a[1] not in QUANTITY_TYPES or b[1] not in QUANTITY_TYPES:
            if a[1] != b[1] and a[1] and b[1]:
                return False
            return a[0] == b[0]
    x, y = to_system(a), to_system(b)
    tx, ty = type(x), type(y)
    if tx is ty:
        if tx is Temporal:
            try:
                result = temporal_compare(x, y)
            except EvaluationError:
                return False
            return None if result is None else result == 0
        if tx is Quantity:
            result = quantity_compare(x, y)
            return None if result is None else result == 0
        if tx is dict:
            return _json_equal(x, y)
        return x == y
    if tx in (int, Decimal) and ty in (int, Decimal):
        return x == y
    if tx is Temporal and ty is str:
        parsed = parse_temporal(y, kind=x.kind)
        return False if parsed is None else equal(x, parsed)
    if ty is Temporal and tx is str:
        return equal(b, a)
    return False


def _json_equal(a: Any, b: Any) -> bool:
    if type(a) is dict and type(b) is dict:
        keys_a = {k for k in a if k != "id"}
        keys_b = {k for k in b if k != "id"}
        return keys_a == keys_b and all(_json_equal(a[k], b[k]) for k in keys_a)
    if type(a) is list and type(b) is list:
        return len(a) == len(b) and all(_json_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float):
        a = Decimal(repr(a))
    if isinstance(b, float):
        b = Decimal(repr(b))
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    return a == b


def equivalent(a: Item, b: Item) -> bool:
    x, y = to_system(a), to_system(b)
    tx, ty = type(x), type(y)
    if tx is str and ty is str:
        return _normal_text(x) == _normal_text(y)
    if tx in (int, Decimal) and ty in (int, Decimal):
        return decimal_equivalent(x, y)
    if tx is Temporal and ty is Temporal:
        return temporal_equivalent(x, y)
    if tx is Quantity and ty is Quantity:
        return quantity_equivalent(x, y)
    if tx is dict and ty is dict:
        return _json_equivalent(x, y)
    if tx is ty:
        return x == y
    return False


def _json_equivalent(a: Any, b: Any) -> bool:
    if type(a) is dict and type(b) is dict:
        keys_a = {k for k in a if k != "id"}
        keys_b = {k for k in b if k != "id"}
        return keys_a == keys_b and all(_json_equivalent(a[k], b[k]) for k in keys_a)
    if type(a) is list and type(b) is list:
        return len(a) == len(b) and all(any(_json_equivalent(x, y) for y in b) for x in a)
    return equivalent(a, b)


def _normal_text(text: str) -> str:
    return " ".join(text.split()).casefold()


def compare(a: Item, b: Item) -> int | None:
    x, y = to_system(a), to_system(b)
    tx, ty = type(x), type(y)
    if tx in (int, Decimal) and ty in (int, Decimal):
        return (x > y) - (x < y)
    if tx is str and ty is str:
        return (x > y) - (x < y)
    if tx is Temporal and ty is Temporal:
        return temporal_compare(x, y)
    if tx is Temporal and ty is str:
        parsed = parse_temporal(y, kind=x.kind)
        if parsed is not None:
            return temporal_compare(x, parsed)
    if ty is Temporal and tx is str:
        parsed = parse_temporal(x, kind=y.kind)
        if parsed is not None:
            return temporal_compare(parsed, y)
    if tx is Quantity and ty is Quantity:
        return quantity_compare(x, y)
    raise EvaluationError(f"cannot compare {_describe(a)} with {_describe(b)}")


def _describe(item: Item) -> str:
    namespace, name = type_of(item)
    return f"{namespace}.{name}"


def boolean(items: list, what: str = "a condition") -> bool | None:
    """Singleton evaluation of a collection where a Boolean is expected."""
    if not items:
        return None
    if len(items) > 1:
        raise EvaluationError(f"{what} gave {len(items)} items where one Boolean was expected")
    item = items[0]
    if item is True or item is False:
        return item
    if type(item) is tuple and item[1] == "boolean":
        return item[0] if item[0] is not None else None
    return True


def single(items: list, what: str) -> Item:
    if len(items) > 1:
        raise EvaluationError(f"{what} expects a single item, got {len(items)}")
    return items[0] if items else None


def _hash_key(item: Item) -> tuple | None:
    """A hashable stand-in for equality of strings, numbers and booleans (None for others)."""
    if type(item) is tuple:
        code, value = item[1], item[0]
        if code in _STRING_TYPES:
            return ("s", value)
        if code in _INTEGER_TYPES or code == "decimal":
            return ("n", value) if type(value) is not float else ("n", Decimal(repr(value)))
        if code == "boolean":
            return ("b", value)
        return None
    cls = type(item)
    if cls is str:
        return ("s", item)
    if cls is int or cls is Decimal:
        return ("n", item)
    if cls is bool:
        return ("b", item)
    return None


def distinct_items(items: list) -> list:
    """The items without repeats (FHIRPath equality), in their order."""
    if len(items) < 2:
        return items
    out: list = []
    seen: set = set()
    others: list = []  # items compared one by one (complex values, dates, quantities)
    for item in items:
        key = _hash_key(item)
        if key is not None:
            if key in seen:
                continue
            seen.add(key)
            out.append(item)
            continue
        for other in others:
            if other is item or equal(item, other) is True:
                break
        else:
            others.append(item)
            out.append(item)
    return out


# -- the compiler ---------------------------------------------------------------------------------


class Compiler:
    """Compiles syntax trees for one model; ``strict`` rejects unknown element names."""

    def __init__(self, model: Model, strict: bool = True) -> None:
        self.model = model
        self.strict = strict
        self.nav = Navigator(model, lenient=not strict)

    # -- static types ------------------------------------------------------------------------

    def stype(self, type_code: str) -> SType:
        model = self.model
        structure = model.types.get(type_code)
        if structure is not None:
            if model.kinds.get(type_code) == "resource" and type_code in model.abstract:
                return None  # a Resource/DomainResource: the concrete type is known at run time
            return ((type_code, structure),)
        if "." in type_code:
            element = model.element_at(type_code)
            if element is None:
                return None
            if element.children is not None:
                return ((element.types[0] if element.types else "", element.children),)
            return tuple(self.stype_element(code) for code in element.types) or None
        if type_code in PRIMITIVE_TYPES:
            return ((type_code, None),)
        return None

    def stype_element(self, code: str) -> tuple[str, ComplexType | None]:
        return (code, self.model.types.get(code))

    def is_type_name(self, name: str) -> bool:
        return name in self.model.kinds

    # -- entry ---------------------------------------------------------------------------

    def compile(self, expr: ast.Expr, st: SType) -> tuple[Fn, SType]:
        method = getattr(self, "c_" + type(expr).__name__)
        return method(expr, st)

    def c_Literal(self, expr: ast.Literal, st: SType) -> tuple[Fn, SType]:
        return _constant([expr.value]), None

    def c_Empty(self, expr: ast.Empty, st: SType) -> tuple[Fn, SType]:
        return _constant(_EMPTY), None

    def c_Special(self, expr: ast.Special, st: SType) -> tuple[Fn, SType]:
        if expr.name == "$this":
            return (lambda ctx: ctx.this), st
        if expr.name == "$index":
            return (lambda ctx: [] if ctx.index is None else [ctx.index]), None
        return (lambda ctx: ctx.total), None

    def c_Var(self, expr: ast.Var, st: SType) -> tuple[Fn, SType]:
        name = expr.name
        if name in ("resource", "rootResource"):
            attr = "resource" if name == "resource" else "root"
            return (lambda ctx: getattr(ctx, attr)), None
        if name == "context":
            return (lambda ctx: ctx.context), None
        constants = {
            "ucum": UCUM_SYSTEM,
            "sct": "http://snomed.info/sct",
            "loinc": "http://loinc.org",
        }
        if name in constants:
            value = [constants[name]]
            return (lambda ctx: value), None
        if name.startswith("vs-"):
            value = ["http://hl7.org/fhir/ValueSet/" + name[3:]]
            return (lambda ctx: value), None
        if name.startswith("ext-"):
            value = ["http://hl7.org/fhir/StructureDefinition/" + name[4:]]
            return (lambda ctx: value), None

        def variable(ctx: Ctx) -> list:
            found = ctx.env.variables.get(name)
            if found is None:
                raise EvaluationError(f"unknown variable %{name}")
            return found

        return variable, None

    # -- paths ---------------------------------------------------------------------------

    def c_Member(self, expr: ast.Member, st: SType) -> tuple[Fn, SType]:
        if expr.base is None:
            base: Fn | None = None
            base_st = st
        else:
            base, base_st = self.compile(expr.base, st)
        name = expr.name
        nav = self.nav
        model = self.model
        # a leading type name: Patient.name on a Patient
        if expr.base is None and name[:1].isupper() and self.is_type_name(name):
            has_element = base_st is not None and any(
                s is not None and name in s.elements for _, s in base_st
            )
            if not has_element:
                if (
                    base_st is not None
                    and self.strict
                    and not any(model.is_a(code, name) for code, _ in base_st)
                ):
                    raise SemanticError(f"the context is {_names(base_st)}, not {name}")

                def type_filter(ctx: Ctx) -> list:
                    out = []
                    for item in ctx.this:
                        if type(item) is tuple and model.is_a(item[1], name):
                            out.append(item)
                        else:
                            nav.member(item, name, out)
                    return out

                if base_st is not None and all(model.is_a(code, name) for code, _ in base_st):
                    filtered_st = base_st  # Resource.meta on a Patient: still a Patient
                else:
                    filtered_st = self.stype(name)
                if filtered_st is not None and len(filtered_st) == 1:
                    type_filter.fuse = (filtered_st[0][1], (), None)  # type: ignore[attr-defined]
                return type_filter, filtered_st
        out_st = self._member_stype(base_st, name)
        plan = None
        structure = None
        if base_st is not None and len(base_st) == 1 and base_st[0][1] is not None:
            structure = base_st[0][1]
            plan = nav.plan(structure, name)
        if plan is not None:
            walk = nav.walk
            member = nav.member

            def planned(ctx: Ctx) -> list:
                out: list = []
                for item in ctx.this if base is None else base(ctx):
                    if type(item) is tuple and item[2] is structure:
                        walk(item[0], plan, out)
                    else:
                        member(item, name, out)
                return out

            fuse = self._fuse(base, structure, plan)
            if fuse is not None:
                return _fused_path(fuse, planned, nav), out_st
            planned.fuse = None  # type: ignore[attr-defined]
            return planned, out_st

        member = nav.member

        def dynamic(ctx: Ctx) -> list:
            out: list = []
            for item in ctx.this if base is None else base(ctx):
                member(item, name, out)
            return out

        return dynamic, out_st

    @staticmethod
    def _fuse(base: Fn | None, structure: ComplexType, plan: Plan) -> tuple | None:
        """A plain member path from the focus (``Patient.contact.name``): the start structure,
        the JSON keys of the intermediate steps and the last step's plan, so one closure walks
        the JSON without building intermediate nodes."""
        if base is None:
            return (structure, (), plan)
        info = getattr(base, "fuse", None)
        if info is None:
            return None
        start, keys, last = info
        if keys is None:  # a union
            return None
        if last is None:
            return (start, keys, plan) if start is structure else None
        if len(last) != 1:
            return None
        key, _code, child, primitive, is_resource = last[0]
        if primitive or is_resource or child is not structure:
            return None
        return (start, (*keys, key), plan)

    def _member_stype(self, st: SType, name: str) -> SType:
        if st is None:
            return None
        out: list[tuple[str, ComplexType | None]] = []
        unknown = False
        for code, structure in st:
            if structure is None:
                if code in PRIMITIVE_TYPES:
                    if name == "extension":
                        out.append(("Extension", self.model.types.get("Extension")))
                    elif name == "id":
                        out.append(("string", None))
                    continue
                unknown = True
                continue
            plan = self.nav.plan(structure, name)
            if plan is None:
                continue
            for _key, child_code, child, _primitive, is_resource in plan:
                if is_resource:
                    unknown = True
                else:
                    out.append((child_code, child))
        if unknown:
            return None
        if not out:
            if self.strict:
                raise SemanticError(f"{_names(st)} has no element {name!r}")
            return None
        return tuple(out)

    def c_Index(self, expr: ast.Index, st: SType) -> tuple[Fn, SType]:
        base, base_st = self.compile(expr.base, st)
        index_fn, _ = self.compile(expr.index, st)

        def indexer(ctx: Ctx) -> list:
            items = base(ctx)
            position = single(index_fn(ctx), "an index")
            if position is None:
                return _EMPTY
            position = to_system(position)
            if type(position) is not int:
                raise EvaluationError("an index must be an integer")
            return items[position : position + 1] if position >= 0 else _EMPTY

        return indexer, base_st

    # -- operators -----------------------------------------------------------------------

    def c_Unary(self, expr: ast.Unary, st: SType) -> tuple[Fn, SType]:
        operand, operand_st = self.compile(expr.operand, st)
        if expr.op == "+":
            return operand, operand_st
        if isinstance(expr.operand, ast.Literal):
            value = _negate(expr.operand.value)
            values = [value]
            return (lambda ctx: values), None

        def negate(ctx: Ctx) -> list:
            item = single(operand(ctx), "unary minus")
            if item is None:
                return _EMPTY
            return [_negate(to_system(item))]

        return negate, None

    def c_Binary(self, expr: ast.Binary, st: SType) -> tuple[Fn, SType]:
        left, left_st = self.compile(expr.left, st)
        right, right_st = self.compile(expr.right, st)
        op = expr.op
        builder = _OPERATORS[op]
        fn = _fold(builder(left, right), left, right)
        if op == "|":
            return fn, _union_stype(left_st, right_st)
        return fn, None

    def c_TypeOp(self, expr: ast.TypeOp, st: SType) -> tuple[Fn, SType]:
        operand, _operand_st = self.compile(expr.operand, st)
        matcher = self.type_matcher(expr.type_name, exact=expr.op == "as", question=expr.op == "is")
        if expr.op == "is":

            def is_type(ctx: Ctx) -> list:
                item = single(operand(ctx), "is")
                if item is None:
                    return _EMPTY
                return [matcher(item)]

            return is_type, None

        def as_type(ctx: Ctx) -> list:
            items = operand(ctx)
            if len(items) > 1:
                raise EvaluationError("as expects a single item (use ofType() for collections)")
            return [item for item in items if matcher(item)]

        return as_type, self._type_stype(expr.type_name)

    def _type_stype(self, parts: tuple[str, ...]) -> SType:
        if len(parts) == 2 and parts[0] == "System":
            return None
        return self.stype(parts[-1])

    def type_matcher(
        self, parts: tuple[str, ...], exact: bool = False, question: bool = False
    ) -> Callable[[Item], bool]:
        """A test of an item's type; ``exact`` (as/ofType) does not let a FHIR primitive pass
        as its base type (a code is not taken as a string)."""
        model = self.model
        if len(parts) == 2:
            namespace, name = parts
            if namespace not in ("System", "FHIR"):
                raise SemanticError(f"unknown type namespace {namespace!r}")
        elif len(parts) == 1:
            namespace, name = "", parts[0]
        else:
            raise SemanticError(f"unknown type {'.'.join(parts)}")
        fhir_known = name in model.kinds
        primitive = name in PRIMITIVE_TYPES
        system_known = name in SYSTEM_TYPES
        if (namespace == "FHIR" and not fhir_known) or (
            namespace == "" and not fhir_known and not system_known
        ):
            if question:  # "is" of a type R4 does not have (dom-r4b names R4B resources)
                return lambda item: False
            raise SemanticError(f"unknown type {name!r}")
        match_fhir = namespace != "System" and fhir_known
        match_system = (
            namespace != "FHIR"
            and system_known
            and (namespace or not fhir_known or name == "Quantity")
        )

        # as(DateTime) / ofType(DateTime) on FHIR values: R4's own SearchParameters write the
        # System name for the FHIR primitive (Observation code-value-date: value.as(DateTime))
        alias = _SYSTEM_TO_FHIR_PRIMITIVE.get(name) if exact and namespace == "" else None

        def matches(item: Item) -> bool:
            if type(item) is tuple:
                if alias is not None and item[1] in alias:
                    return True
                if not match_fhir:
                    return False
                if exact and (primitive or item[1] in PRIMITIVE_TYPES):
                    return item[1] == name
                return model.is_a(item[1], name)
            return match_system and system_type(item) == name

        return matches

    # -- functions -----------------------------------------------------------------------

    def c_Call(self, expr: ast.Call, st: SType) -> tuple[Fn, SType]:
        if expr.base is None:
            base: Fn = _this
            base_st = st
        else:
            base, base_st = self.compile(expr.base, st)
        spec = FUNCTIONS.get(expr.name)
        if spec is None:
            raise SemanticError(f"unknown function {expr.name}()")
        low, high, builder = spec
        if not low <= len(expr.args) <= high:
            raise SemanticError(
                f"{expr.name}() takes {low if low == high else f'{low} to {high}'} "
                f"argument{'s' if high != 1 else ''}, got {len(expr.args)}"
            )
        return builder(self, base, base_st, expr.args, st)

    def arg(self, expr: ast.Expr, st: SType) -> Fn:
        return self.compile(expr, st)[0]

    def type_arg(self, expr: ast.Expr) -> tuple[str, ...]:
        parts: list[str] = []
        node: ast.Expr | None = expr
        while isinstance(node, ast.Member):
            parts.insert(0, node.name)
            node = node.base
        if node is not None or not parts:
            raise SemanticError("a type name was expected")
        return tuple(parts)


def _fused_path(fuse: tuple, general: Fn, nav: Navigator) -> Fn:
    start, keys, plan = fuse
    walk = nav.walk
    walk_nodes = nav.walk_nodes

    def fused(ctx: Ctx) -> list:
        this = ctx.this
        for item in this:
            if type(item) is not tuple or item[2] is not start:
                return general(ctx)
        out: list = []
        for item in this:
            values = [item[0]]
            for key in keys:
                found: list = []
                for value in values:
                    if type(value) is dict:
                        raw = value.get(key)
                        if raw is not None:
                            if type(raw) is list:
                                found.extend(raw)
                            else:
                                found.append(raw)
                values = found
                if not values:
                    break
            for value in values:
                walk(value, plan, out)
        return out

    def direct(value: Any) -> list:
        """The path as ``Node``s on a resource's JSON whose structure is ``start``."""
        out: list = []
        values = [value]
        for key in keys:
            found: list = []
            for entry in values:
                if type(entry) is dict:
                    raw = entry.get(key)
                    if raw is not None:
                        if type(raw) is list:
                            found.extend(raw)
                        else:
                            found.append(raw)
            values = found
            if not values:
                return out
        for entry in values:
            walk_nodes(entry, plan, out)
        return out

    fused.fuse = fuse  # type: ignore[attr-defined]
    fused.direct = direct  # type: ignore[attr-defined]
    return fused


_SYSTEM_TO_FHIR_PRIMITIVE = {
    "Boolean": ("boolean",),
    "String": ("string",),
    "Integer": ("integer",),
    "Decimal": ("decimal",),
    "Date": ("date",),
    "DateTime": ("dateTime",),
    "Time": ("time",),
}


def _names(st: SType) -> str:
    return " or ".join(sorted({code or "?" for code, _ in st or ()})) or "?"


def _union_stype(a: SType, b: SType) -> SType:
    if a is None or b is None:
        return None
    out: list = []
    for entry in a + b:
        if not any(entry[0] == seen[0] and entry[1] is seen[1] for seen in out):
            out.append(entry)
    return tuple(out)


def _constant(values: list) -> Fn:
    def constant(ctx: Ctx) -> list:
        return values

    constant.const = values  # type: ignore[attr-defined]
    return constant


def _fold(fn: Fn, *parts: Fn | None) -> Fn:
    """``fn`` evaluated once at compile time when every part is a constant (an error is left
    for run time)."""
    if not all(hasattr(part, "const") for part in parts if part is not None):
        return fn
    try:
        values = fn(Ctx(_EMPTY, _EMPTY, _EMPTY))
    except ENGINE_ERRORS:
        return fn
    return _constant(values)


def _this(ctx: Ctx) -> list:
    return ctx.this


def _negate(value: Any) -> Any:
    cls = type(value)
    if cls is int:
        return -value
    if cls is Decimal:
        return Decimal(0) - value
    if cls is Quantity:
        return Quantity(Decimal(0) - value.value, value.unit)
    raise EvaluationError(f"unary minus does not apply to {_describe(value)}")


# -- operators ------------------------------------------------------------------------------------


def _op_equal(negate: bool) -> Callable[[Fn, Fn], Fn]:
    def build(left: Fn, right: Fn) -> Fn:
        def fn(ctx: Ctx) -> list:
            a = left(ctx)
            if not a:
                return _EMPTY
            b = right(ctx)
            if not b:
                return _EMPTY
            if len(a) != len(b):
                return [negate]
            unknown = False
            for x, y in zip(a, b, strict=True):
                result = equal(x, y)
                if result is False:
                    return [negate]
                if result is None:
                    unknown = True
            return _EMPTY if unknown else [not negate]

        return fn

    return build


def _op_equivalent(negate: bool) -> Callable[[Fn, Fn], Fn]:
    def build(left: Fn, right: Fn) -> Fn:
        def fn(ctx: Ctx) -> list:
            a, b = left(ctx), right(ctx)
            if len(a) != len(b):
                return [negate]
            remaining = list(b)
            for x in a:
                for position, y in enumerate(remaining):
                    if equivalent(x, y):
                        del remaining[position]
                        break
                else:
                    return [negate]
            return [not negate]

        return fn

    return build


def _op_compare(test: Callable[[int], bool]) -> Callable[[Fn, Fn], Fn]:
    def build(left: Fn, right: Fn) -> Fn:
        def fn(ctx: Ctx) -> list:
            a, b = left(ctx), right(ctx)
            if not a or not b:
                return _EMPTY
            x, y = single(a, "a comparison"), single(b, "a comparison")
            result = compare(x, y)
            return _EMPTY if result is None else [test(result)]

        return fn

    return build


def _op_logic(op: str) -> Callable[[Fn, Fn], Fn]:
    def build(left: Fn, right: Fn) -> Fn:
        if op == "and":

            def fn(ctx: Ctx) -> list:
                a = boolean(left(ctx), "and")
                if a is False:
                    return [False]
                b = boolean(right(ctx), "and")
                if b is False:
                    return [False]
                return [True] if a and b else _EMPTY

        elif op == "or":

            def fn(ctx: Ctx) -> list:
                a = boolean(left(ctx), "or")
                if a is True:
                    return [True]
                b = boolean(right(ctx), "or")
                if b is True:
                    return [True]
                return [False] if a is False and b is False else _EMPTY

        elif op == "xor":

            def fn(ctx: Ctx) -> list:
                a = boolean(left(ctx), "xor")
                b = boolean(right(ctx), "xor")
                return _EMPTY if a is None or b is None else [a != b]

        else:  # implies

            def fn(ctx: Ctx) -> list:
                a = boolean(left(ctx), "implies")
                if a is False:
                    return [True]
                b = boolean(right(ctx), "implies")
                if b is True:
                    return [True]
                if a is True:
                    return _EMPTY if b is None else [b]
                return _EMPTY

        return fn

    return build


def _op_union(left: Fn, right: Fn) -> Fn:
    def fn(ctx: Ctx) -> list:
        return distinct_items(left(ctx) + right(ctx))

    # a union of plain member paths from the same start (Organization.name |
    # Organization.alias) walks the JSON directly as well
    left_fuse, right_fuse = getattr(left, "fuse", None), getattr(right, "fuse", None)
    if (
        left_fuse
        and right_fuse
        and left_fuse[0] is right_fuse[0]
        and hasattr(left, "direct")
        and hasattr(right, "direct")
    ):
        left_direct, right_direct = left.direct, right.direct  # type: ignore[attr-defined]

        def direct(value: Any) -> list:
            return distinct_nodes(left_direct(value) + right_direct(value))

        fn.fuse = (left_fuse[0], None, None)  # type: ignore[attr-defined]
        fn.direct = direct  # type: ignore[attr-defined]
    return fn


def distinct_nodes(nodes: list) -> list:
    """``Node``s without repeats (FHIRPath equality of their values)."""
    if len(nodes) < 2:
        return nodes
    as_items = [(n.value, n.type, n.structure, None, None, None) for n in nodes]
    kept = {id(item) for item in distinct_items(as_items)}
    return [node for node, item in zip(nodes, as_items, strict=True) if id(item) in kept]


def _op_membership(contains: bool) -> Callable[[Fn, Fn], Fn]:
    def build(left: Fn, right: Fn) -> Fn:
        element_fn, collection_fn = (right, left) if contains else (left, right)

        def fn(ctx: Ctx) -> list:
            element = element_fn(ctx)
            if not element:
                return _EMPTY
            item = single(element, "in/contains")
            return [any(equal(item, other) is True for other in collection_fn(ctx))]

        return fn

    return build


def _arith(op: str) -> Callable[[Fn, Fn], Fn]:
    def build(left: Fn, right: Fn) -> Fn:
        def fn(ctx: Ctx) -> list:
            a, b = left(ctx), right(ctx)
            if op == "&":
                x = single(a, "&")
                y = single(b, "&")
                x = "" if x is None else to_system(x)
                y = "" if y is None else to_system(y)
                if type(x) is not str or type(y) is not str:
                    raise EvaluationError("& joins strings")
                return [x + y]
            if not a or not b:
                return _EMPTY
            x, y = to_system(single(a, op)), to_system(single(b, op))
            result = arithmetic(op, x, y)
            return _EMPTY if result is None else [result]

        return fn

    return build


def arithmetic(op: str, x: Any, y: Any) -> Any:
    tx, ty = type(x), type(y)
    numbers = tx in (int, Decimal) and ty in (int, Decimal)
    if op == "+":
        if numbers:
            return x + y
        if tx is str and ty is str:
            return x + y
        if tx is Temporal and ty is Quantity:
            return temporal_add(x, y, 1)
        if tx is Quantity and ty is Quantity:
            return quantity_add(x, y, 1)
    elif op == "-":
        if numbers:
            return x - y
        if tx is Temporal and ty is Quantity:
            return temporal_add(x, y, -1)
        if tx is Quantity and ty is Quantity:
            return quantity_add(x, y, -1)
    elif op == "*":
        if numbers:
            return x * y
        if tx is Quantity and ty is Quantity:
            return quantity_multiply(x, y, False)
        if tx is Quantity and ty in (int, Decimal):
            return Quantity(x.value * y, x.unit)
        if ty is Quantity and tx in (int, Decimal):
            return Quantity(y.value * x, y.unit)
    elif op == "/":
        if numbers:
            if y == 0:
                return None
            return Decimal(x) / Decimal(y)
        try:
            if tx is Quantity and ty is Quantity:
                return quantity_multiply(x, y, True)
            if tx is Quantity and ty in (int, Decimal):
                return None if y == 0 else Quantity(x.value / Decimal(y), x.unit)
        except ZeroDivisionError:
            return None
    elif op in ("div", "mod") and numbers:
        if y == 0:
            return None
        if tx is int and ty is int:
            quotient = abs(x) // abs(y) * (1 if (x >= 0) == (y > 0) else -1)
            return quotient if op == "div" else x - y * quotient
        quotient = (Decimal(x) / Decimal(y)).to_integral_value(rounding=ROUND_DOWN)
        if op == "div":
            return int(quotient)
        return Decimal(x) - Decimal(y) * quotient
    raise EvaluationError(f"{op} does not apply to {_describe(x)} and {_describe(y)}")


_OPERATORS: dict[str, Callable[[Fn, Fn], Fn]] = {
    "=": _op_equal(False),
    "!=": _op_equal(True),
    "~": _op_equivalent(False),
    "!~": _op_equivalent(True),
    "<": _op_compare(lambda c: c < 0),
    "<=": _op_compare(lambda c: c <= 0),
    ">": _op_compare(lambda c: c > 0),
    ">=": _op_compare(lambda c: c >= 0),
    "and": _op_logic("and"),
    "or": _op_logic("or"),
    "xor": _op_logic("xor"),
    "implies": _op_logic("implies"),
    "|": _op_union,
    "in": _op_membership(False),
    "contains": _op_membership(True),
    "+": _arith("+"),
    "-": _arith("-"),
    "*": _arith("*"),
    "/": _arith("/"),
    "div": _arith("div"),
    "mod": _arith("mod"),
    "&": _arith("&"),
}


# -- the function library -------------------------------------------------------------------------

Builder = Callable[[Compiler, Fn, SType, tuple, SType], tuple[Fn, SType]]
FUNCTIONS: dict[str, tuple[int, int, Builder]] = {}


def function(name: str, low: int = 0, high: int | None = None) -> Callable[[Builder], Builder]:
    def register(builder: Builder) -> Builder:
        FUNCTIONS[name] = (low, low if high is None else high, builder)
        return builder

    return register


def value_function(
    name: str, low: int = 0, high: int | None = None, system: bool = True
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """A function of one input item (empty in, empty out; several items are an error) and
    arguments evaluated once each (an empty argument gives empty). ``impl`` returns a value, or
    None for empty."""

    def register(impl: Callable[..., Any]) -> Callable[..., Any]:
        def builder(
            compiler: Compiler, base: Fn, base_st: SType, args: tuple, st: SType
        ) -> tuple[Fn, SType]:
            arg_fns = [compiler.arg(a, st) for a in args]

            def fn(ctx: Ctx) -> list:
                items = base(ctx)
                if not items:
                    return _EMPTY
                item = single(items, name + "()")
                values = []
                for arg_fn in arg_fns:
                    arg_items = arg_fn(ctx)
                    if not arg_items:
                        return _EMPTY
                    values.append(to_system(single(arg_items, name + "() argument")))
                result = impl(to_system(item) if system else item, *values)
                return _EMPTY if result is None else [result]

            return _fold(fn, base, *arg_fns), None

        FUNCTIONS[name] = (low, low if high is None else high, builder)
        return impl

    return register


def collection_function(
    name: str, low: int = 0, high: int | None = None
) -> Callable[[Callable[..., list]], Callable[..., list]]:
    """A function of the whole input collection; arguments are evaluated once, as collections."""

    def register(impl: Callable[..., list]) -> Callable[..., list]:
        def builder(
            compiler: Compiler, base: Fn, base_st: SType, args: tuple, st: SType
        ) -> tuple[Fn, SType]:
            arg_fns = [compiler.arg(a, st) for a in args]
            if not arg_fns:
                return _fold(lambda ctx: impl(base(ctx)), base), None
            fn = lambda ctx: impl(base(ctx), *[f(ctx) for f in arg_fns])  # noqa: E731
            return _fold(fn, base, *arg_fns), None

        FUNCTIONS[name] = (low, low if high is None else high, builder)
        return impl

    return register


def _iterate(base: Fn, body: Fn, ctx: Ctx, each: Callable[[Item, list], bool | None]) -> None:
    """Evaluate ``body`` with ``$this``/``$index`` set to each input item in turn; ``each``
    returns False to stop."""
    items = base(ctx)
    saved_this, saved_index = ctx.this, ctx.index
    for index, item in enumerate(items):
        ctx.this = [item]
        ctx.index = index
        if each(item, body(ctx)) is False:
            break
    ctx.this, ctx.index = saved_this, saved_index


# existence ---------------------------------------------------------------------------------------


@function("empty")
def _empty(c: Compiler, base: Fn, base_st: SType, args: tuple, st: SType) -> tuple[Fn, SType]:
    return (lambda ctx: [not base(ctx)]), None


@function("exists", 0, 1)
def _exists(c: Compiler, base: Fn, base_st: SType, args: tuple, st: SType) -> tuple[Fn, SType]:
    if not args:
        return (lambda ctx: [bool(base(ctx))]), None
    criteria = c.arg(args[0], base_st)

    def exists(ctx: Ctx) -> list:
        items = base(ctx)
        saved_this, saved_index = ctx.this, ctx.index
        found = False
        for index, item in enumerate(items):
            ctx.this = [item]
            ctx.index = index
            if boolean(criteria(ctx), "exists()") is True:
                found = True
                break
        ctx.this, ctx.index = saved_this, saved_index
        return [found]

    return exists, None


@function("all", 1)
def _all(c: Compiler, base: Fn, base_st: SType, args: tuple, st: SType) -> tuple[Fn, SType]:
    criteria = c.arg(args[0], base_st)

    def all_(ctx: Ctx) -> list:
        items = base(ctx)
        saved_this, saved_index = ctx.this, ctx.index
        result = True
        for index, item in enumerate(items):
            ctx.this = [item]
            ctx.index = index
            if boolean(criteria(ctx), "all()") is not True:
                result = False
                break
        ctx.this, ctx.index = saved_this, saved_index
        return [result]

    return all_, None


def _truth_values(items: list, name: str) -> list[bool]:
    out = []
    for item in items:
        value = to_system(item)
        if value is not True and value is not False:
            raise EvaluationError(f"{name}() applies to Booleans, got {_describe(item)}")
        out.append(value)
    return out


@collection_function("allTrue")
def _all_true(items: list) -> list:
    return [all(_truth_values(items, "allTrue"))]


@collection_function("anyTrue")
def _any_true(items: list) -> list:
    return [any(_truth_values(items, "anyTrue"))]


@collection_function("allFalse")
def _all_false(items: list) -> list:
    return [not any(_truth_values(items, "allFalse"))]


@collection_function("anyFalse")
def _any_false(items: list) -> list:
    return [not all(_truth_values(items, "anyFalse"))]


@collection_function("subsetOf", 1)
def _subset_of(items: list, other: list) -> list:
    return [all(any(equal(x, y) is True for y in other) for x in items)]


@collection_function("supersetOf", 1)
def _superset_of(items: list, other: list) -> list:
    return [all(any(equal(x, y) is True for y in items) for x in other)]


@collection_function("count")
def _count(items: list) -> list:
    return [len(items)]


@collection_function("distinct")
def _distinct(items: list) -> list:
    return distinct_items(items)


@collection_function("isDistinct")
def _is_distinct(items: list) -> list:
    return [len(distinct_items(items)) == len(items)]


# filtering and projection ------------------------------------------------------------------------


@function("where", 1)
def _where(c: Compiler, base: Fn, base_st: SType, args: tuple, st: SType) -> tuple[Fn, SType]:
    criteria = c.arg(args[0], base_st)

    def where(ctx: Ctx) -> list:
        items = base(ctx)
        if not items:
            return items
        saved_this, saved_index = ctx.this, ctx.index
        out = []
        for index, item in enumerate(items):
            ctx.this = [item]
            ctx.index = index
            if boolean(criteria(ctx), "where()") is True:
                out.append(item)
        ctx.this, ctx.index = saved_this, saved_index
        return out

    return where, base_st


@function("select", 1)
def _select(c: Compiler, base: Fn, base_st: SType, args: tuple, st: SType) -> tuple[Fn, SType]:
    projection, out_st = c.compile(args[0], base_st)

    def select(ctx: Ctx) -> list:
        items = base(ctx)
        saved_this, saved_index = ctx.this, ctx.index
        out: list = []
        for index, item in enumerate(items):
            ctx.this = [item]
            ctx.index = index
            out.extend(projection(ctx))
        ctx.this, ctx.index = saved_this, saved_index
        return out

    return select, out_st


@function("repeat", 1)
def _repeat(c: Compiler, base: Fn, base_st: SType, args: tuple, st: SType) -> tuple[Fn, SType]:
    projection = c.arg(args[0], None)

    def repeat(ctx: Ctx) -> list:
        saved_this, saved_index = ctx.this, ctx.index
        out: list = []
        level = base(ctx)
        while level:
            found: list = []
            for index, item in enumerate(level):
                ctx.this = [item]
                ctx.index = index
                for new in projection(ctx):
                    if not any(new is seen or equal(new, seen) is True for seen in out):
                        out.append(new)
                        found.append(new)
            level = found
        ctx.this, ctx.index = saved_this, saved_index
        return out

    return repeat, None


@function("ofType", 1)
def _of_type(c: Compiler, base: Fn, base_st: SType, args: tuple, st: SType) -> tuple[Fn, SType]:
    parts = c.type_arg(args[0])
    matcher = c.type_matcher(parts, exact=True)
    return (lambda ctx: [item for item in base(ctx) if matcher(item)]), c._type_stype(parts)


@function("is", 1)
def _is(c: Compiler, base: Fn, base_st: SType, args: tuple, st: SType) -> tuple[Fn, SType]:
    matcher = c.type_matcher(c.type_arg(args[0]), question=True)

    def is_(ctx: Ctx) -> list:
        item = single(base(ctx), "is()")
        return _EMPTY if item is None else [matcher(item)]

    return is_, None


@function("as", 1)
def _as(c: Compiler, base: Fn, base_st: SType, args: tuple, st: SType) -> tuple[Fn, SType]:
    parts = c.type_arg(args[0])
    matcher = c.type_matcher(parts, exact=True)

    def as_(ctx: Ctx) -> list:
        items = base(ctx)
        if len(items) > 1:
            raise EvaluationError("as() expects a single item (use ofType() for collections)")
        return [item for item in items if matcher(item)]

    return as_, c._type_stype(parts)


@function("type")
def _type(c: Compiler, base: Fn, base_st: SType, args: tuple, st: SType) -> tuple[Fn, SType]:
    return (lambda ctx: [TypeInfo(*type_of(item)) for item in base(ctx)]), None


# subsetting --------------------------------------------------------------------------------------


@function("single")
def _single(c: Compiler, base: Fn, base_st: SType, args: tuple, st: SType) -> tuple[Fn, SType]:
    def single_(ctx: Ctx) -> list:
        items = base(ctx)
        if len(items) > 1:
            raise EvaluationError(f"single() got {len(items)} items")
        return items

    return single_, base_st


@function("first")
def _first(c: Compiler, base: Fn, base_st: SType, args: tuple, st: SType) -> tuple[Fn, SType]:
    return (lambda ctx: base(ctx)[:1]), base_st


@function("last")
def _last(c: Compiler, base: Fn, base_st: SType, args: tuple, st: SType) -> tuple[Fn, SType]:
    return (lambda ctx: base(ctx)[-1:]), base_st


@function("tail")
def _tail(c: Compiler, base: Fn, base_st: SType, args: tuple, st: SType) -> tuple[Fn, SType]:
    return (lambda ctx: base(ctx)[1:]), base_st


def _count_arg(values: list, name: str) -> int | None:
    value = to_system(single(values, name))
    if value is None:
        return None
    if type(value) is not int:
        raise EvaluationError(f"{name} expects an integer")
    return value


@function("skip", 1)
def _skip(c: Compiler, base: Fn, base_st: SType, args: tuple, st: SType) -> tuple[Fn, SType]:
    count = c.arg(args[0], st)

    def skip(ctx: Ctx) -> list:
        n = _count_arg(count(ctx), "skip()")
        items = base(ctx)
        return items if n is None or n <= 0 else items[n:]

    return skip, base_st


@function("take", 1)
def _take(c: Compiler, base: Fn, base_st: SType, args: tuple, st: SType) -> tuple[Fn, SType]:
    count = c.arg(args[0], st)

    def take(ctx: Ctx) -> list:
        n = _count_arg(count(ctx), "take()")
        return _EMPTY if n is None or n <= 0 else base(ctx)[:n]

    return take, base_st


@collection_function("intersect", 1)
def _intersect(items: list, other: list) -> list:
    out: list = []
    for item in items:
        if any(equal(item, y) is True for y in other) and not any(
            equal(item, seen) is True for seen in out
        ):
            out.append(item)
    return out


@collection_function("exclude", 1)
def _exclude(items: list, other: list) -> list:
    return [item for item in items if not any(equal(item, y) is True for y in other)]


@collection_function("union", 1)
def _union(items: list, other: list) -> list:
    return distinct_items(items + other)


@collection_function("combine", 1)
def _combine(items: list, other: list) -> list:
    return items + other


# conversion --------------------------------------------------------------------------------------


@function("iif", 2, 3)
def _iif(c: Compiler, base: Fn, base_st: SType, args: tuple, st: SType) -> tuple[Fn, SType]:
    criterion = c.arg(args[0], base_st)
    then_fn, then_st = c.compile(args[1], base_st)
    else_fn, else_st = c.compile(args[2], base_st) if len(args) == 3 else (None, None)

    def iif(ctx: Ctx) -> list:
        items = base(ctx)
        if len(items) > 1:
            raise EvaluationError("iif() applies to a single item")
        saved_this = ctx.this
        if base is not _this:
            ctx.this = items
        result = criterion(ctx)
        if len(result) > 1:
            raise EvaluationError("the criterion of iif() gave several items")
        test = to_system(result[0]) if result else None
        if result and test is not True and test is not False:
            raise EvaluationError("the criterion of iif() must be a Boolean")
        out = then_fn(ctx) if test is True else else_fn(ctx) if else_fn is not None else _EMPTY
        ctx.this = saved_this
        return out

    return iif, _union_stype(then_st, else_st) if else_fn is not None else then_st


def _converter(name: str, convert: Callable[[Any], Any]) -> None:
    @value_function("to" + name)
    def to(value: Any) -> Any:
        return convert(value)

    @value_function("convertsTo" + name)
    def converts(value: Any) -> Any:
        return convert(value) is not None


_converter("Boolean", to_boolean)
_converter("Integer", to_integer)
_converter("Decimal", to_decimal)
_converter("String", to_string)
_converter("Date", lambda v: to_temporal(v, "date"))
_converter("DateTime", lambda v: to_temporal(v, "dateTime"))
_converter("Time", lambda v: to_temporal(v, "time"))


@value_function("toQuantity", 0, 1)
def _to_quantity(value: Any, unit: Any = None) -> Any:
    return to_quantity(value, unit)


@value_function("convertsToQuantity", 0, 1)
def _converts_to_quantity(value: Any, unit: Any = None) -> Any:
    return to_quantity(value, unit) is not None


# strings -----------------------------------------------------------------------------------------


def _text(value: Any, name: str) -> str:
    if type(value) is not str:
        raise EvaluationError(f"{name}() applies to strings, got {_describe(value)}")
    return value


@value_function("indexOf", 1)
def _index_of(value: Any, sub: Any) -> Any:
    return _text(value, "indexOf").find(_text(sub, "indexOf"))


@value_function("substring", 1, 2)
def _substring(value: Any, start: Any, length: Any = None) -> Any:
    text = _text(value, "substring")
    if type(start) is not int:
        raise EvaluationError("substring() expects an integer start")
    if start < 0 or start >= len(text):
        return None
    if length is None:
        return text[start:]
    return text[start : start + max(int(length), 0)]


@function("substring", 1, 2)
def _substring_fn(c: Compiler, base: Fn, base_st: SType, args: tuple, st: SType) -> tuple:
    start_fn = c.arg(args[0], st)
    length_fn = c.arg(args[1], st) if len(args) == 2 else None

    def substring(ctx: Ctx) -> list:
        item = single(base(ctx), "substring()")
        if item is None:
            return _EMPTY
        start = single(start_fn(ctx), "substring() start")
        if start is None:
            return _EMPTY
        length = None
        if length_fn is not None:
            length = single(length_fn(ctx), "substring() length")
            if length is not None:
                length = to_system(length)
        result = _substring(to_system(item), to_system(start), length)
        return _EMPTY if result is None else [result]

    return _fold(substring, base, start_fn, length_fn), None


@value_function("startsWith", 1)
def _starts_with(value: Any, prefix: Any) -> Any:
    return _text(value, "startsWith").startswith(_text(prefix, "startsWith"))


@value_function("endsWith", 1)
def _ends_with(value: Any, suffix: Any) -> Any:
    return _text(value, "endsWith").endswith(_text(suffix, "endsWith"))


@value_function("contains", 1)
def _contains(value: Any, sub: Any) -> Any:
    return _text(sub, "contains") in _text(value, "contains")


@value_function("upper")
def _upper(value: Any) -> Any:
    return _text(value, "upper").upper()


@value_function("lower")
def _lower(value: Any) -> Any:
    return _text(value, "lower").lower()


@value_function("replace", 2)
def _replace(value: Any, old: Any, new: Any) -> Any:
    text = _text(value, "replace")
    old, new = _text(old, "replace"), _text(new, "replace")
    if old == "":
        return new + new.join(text) + new
    return text.replace(old, new)


_REGEX_CACHE: dict[str, re.Pattern[str]] = {}


def _regex(pattern: str) -> re.Pattern[str]:
    compiled = _REGEX_CACHE.get(pattern)
    if compiled is None:
        try:
            compiled = re.compile(pattern, re.DOTALL)
        except re.error as exc:
            raise EvaluationError(f"invalid regular expression {pattern!r}: {exc}") from exc
        if len(_REGEX_CACHE) > 1024:
            _REGEX_CACHE.clear()
        _REGEX_CACHE[pattern] = compiled
    return compiled


@value_function("matches", 1)
def _matches(value: Any, pattern: Any) -> Any:
    return _regex(_text(pattern, "matches")).search(_text(value, "matches")) is not None


@value_function("matchesFull", 1)
def _matches_full(value: Any, pattern: Any) -> Any:
    return _regex(_text(pattern, "matchesFull")).fullmatch(_text(value, "matchesFull")) is not None


@value_function("replaceMatches", 2)
def _replace_matches(value: Any, pattern: Any, substitution: Any) -> Any:
    text = _text(value, "replaceMatches")
    pattern = _text(pattern, "replaceMatches")
    if pattern == "":
        return text
    substitution = re.sub(r"\$(\d+)", r"\\\1", _text(substitution, "replaceMatches"))
    return _regex(pattern).sub(substitution, text)


@value_function("length")
def _length(value: Any) -> Any:
    return len(_text(value, "length"))


@function("toChars")
def _to_chars(c: Compiler, base: Fn, base_st: SType, args: tuple, st: SType) -> tuple:
    def to_chars(ctx: Ctx) -> list:
        item = single(base(ctx), "toChars()")
        return _EMPTY if item is None else list(_text(to_system(item), "toChars"))

    return to_chars, None


@value_function("trim")
def _trim(value: Any) -> Any:
    return _text(value, "trim").strip()


@function("split", 1)
def _split(c: Compiler, base: Fn, base_st: SType, args: tuple, st: SType) -> tuple:
    separator_fn = c.arg(args[0], st)

    def split(ctx: Ctx) -> list:
        item = single(base(ctx), "split()")
        separator = single(separator_fn(ctx), "split() separator")
        if item is None or separator is None:
            return _EMPTY
        text, sep = _text(to_system(item), "split"), _text(to_system(separator), "split")
        return text.split(sep) if sep else list(text)

    return split, None


@collection_function("join", 0, 1)
def _join(items: list, separator: list | None = None) -> list:
    sep = "" if not separator else _text(to_system(separator[0]), "join")
    return [sep.join(_text(to_system(item), "join") for item in items)]


@value_function("encode", 1)
def _encode(value: Any, encoding: Any) -> Any:
    data = _text(value, "encode").encode()
    if encoding == "hex":
        return data.hex()
    if encoding == "base64":
        return base64.b64encode(data).decode()
    if encoding == "urlbase64":
        return base64.urlsafe_b64encode(data).decode()
    raise EvaluationError(f"unknown encoding {encoding!r}")


@value_function("decode", 1)
def _decode(value: Any, encoding: Any) -> Any:
    text = _text(value, "decode")
    try:
        if encoding == "hex":
            return bytes.fromhex(text).decode()
        if encoding == "base64":
            return base64.b64decode(text, validate=True).decode()
        if encoding == "urlbase64":
            return base64.urlsafe_b64decode(text).decode()
    except (ValueError, binascii.Error, UnicodeDecodeError):
        return None
    raise EvaluationError(f"unknown encoding {encoding!r}")


@value_function("escape", 1)
def _escape(value: Any, target: Any) -> Any:
    text = _text(value, "escape")
    if target == "html":
        return html.escape(text, quote=True).replace("&#x27;", "&#39;")
    if target == "json":
        return json.dumps(text, ensure_ascii=False)[1:-1]
    raise EvaluationError(f"unknown escape target {target!r}")


_JSON_ESCAPE = re.compile(r'\\(u[0-9a-fA-F]{4}|["\\/bfnrt])')
_JSON_ESCAPES = {
    '"': '"',
    "\\": "\\",
    "/": "/",
    "b": "\b",
    "f": "\f",
    "n": "\n",
    "r": "\r",
    "t": "\t",
}


def _json_unescape(match: re.Match[str]) -> str:
    code = match.group(1)
    if code[0] == "u":
        return chr(int(code[1:], 16))
    return _JSON_ESCAPES[code]


@value_function("unescape", 1)
def _unescape(value: Any, target: Any) -> Any:
    text = _text(value, "unescape")
    if target == "html":
        return html.unescape(text)
    if target == "json":
        return _JSON_ESCAPE.sub(_json_unescape, text)
    raise EvaluationError(f"unknown escape target {target!r}")


# math --------------------------------------------------------------------------------------------


def _number(value: Any, name: str) -> int | Decimal:
    if type(value) not in (int, Decimal):
        raise EvaluationError(f"{name}() applies to numbers, got {_describe(value)}")
    return value


@value_function("abs")
def _abs(value: Any) -> Any:
    if type(value) is Quantity:
        return Quantity(abs(value.value), value.unit)
    return abs(_number(value, "abs"))


@value_function("ceiling")
def _ceiling(value: Any) -> Any:
    return math.ceil(_number(value, "ceiling"))


@value_function("floor")
def _floor(value: Any) -> Any:
    return math.floor(_number(value, "floor"))


@value_function("truncate")
def _truncate(value: Any) -> Any:
    return int(_number(value, "truncate"))


def _float_result(result: float) -> Decimal | None:
    if math.isnan(result) or math.isinf(result):
        return None
    return Decimal(repr(result))


@value_function("exp")
def _exp(value: Any) -> Any:
    return Decimal(_number(value, "exp")).exp()


@value_function("ln")
def _ln(value: Any) -> Any:
    number = Decimal(_number(value, "ln"))
    return number.ln() if number > 0 else None


@value_function("log", 1)
def _log(value: Any, base: Any) -> Any:
    number, base = Decimal(_number(value, "log")), Decimal(_number(base, "log"))
    if number <= 0 or base <= 0 or base == 1:
        return None
    result = number.ln() / base.ln()
    return result.quantize(Decimal(1).scaleb(-20)).normalize() if result == result else None


@value_function("power", 1)
def _power(value: Any, exponent: Any) -> Any:
    x, y = _number(value, "power"), _number(exponent, "power")
    if type(x) is int and type(y) is int and y >= 0:
        return x**y
    try:
        result = Decimal(x) ** Decimal(y)
    except InvalidOperation:
        return None
    return result if result.is_finite() else None


@value_function("round", 0, 1)
def _round(value: Any, precision: Any = 0) -> Any:
    number = Decimal(_number(value, "round"))
    if type(precision) is not int or precision < 0:
        raise EvaluationError("round() expects a non-negative integer precision")
    return number.quantize(Decimal(1).scaleb(-precision), rounding=ROUND_HALF_UP)


@value_function("sqrt")
def _sqrt(value: Any) -> Any:
    number = Decimal(_number(value, "sqrt"))
    return number.sqrt() if number >= 0 else None


# boundaries and precision ------------------------------------------------------------------------


def _boundary(high: bool) -> Callable[..., Any]:
    def boundary(value: Any, precision: Any = None) -> Any:
        if precision is not None and type(precision) is not int:
            raise EvaluationError("the precision must be an integer")
        cls = type(value)
        if cls in (int, Decimal):
            return decimal_boundary(value, precision, high)
        if cls is Quantity:
            bound = decimal_boundary(value.value, precision, high)
            return None if bound is None else Quantity(bound, value.unit)
        if cls is Temporal:
            return temporal_boundary(value, precision, high)
        raise EvaluationError(f"boundaries apply to numbers, quantities and dates, not {cls}")

    return boundary


value_function("lowBoundary", 0, 1)(_boundary(False))
value_function("highBoundary", 0, 1)(_boundary(True))


@value_function("precision")
def _precision(value: Any) -> Any:
    cls = type(value)
    if cls is Decimal:
        return decimal_places(value)
    if cls is int:
        return 0
    if cls is Temporal:
        return value.digits()
    if cls is Quantity:
        return decimal_places(value.value)
    raise EvaluationError("precision() applies to numbers and dates")


@value_function("comparable", 1)
def _comparable(value: Any, other: Any) -> Any:
    if type(value) is not Quantity or type(other) is not Quantity:
        raise EvaluationError("comparable() applies to quantities")
    return quantity_compare(value, other) is not None


# tree navigation ---------------------------------------------------------------------------------


@function("children")
def _children(c: Compiler, base: Fn, base_st: SType, args: tuple, st: SType) -> tuple:
    children = c.nav.children

    def fn(ctx: Ctx) -> list:
        out: list = []
        for item in base(ctx):
            children(item, out)
        return out

    return fn, None


@function("descendants")
def _descendants(c: Compiler, base: Fn, base_st: SType, args: tuple, st: SType) -> tuple:
    children = c.nav.children

    def fn(ctx: Ctx) -> list:
        out: list = []
        level = base(ctx)
        while level:
            found: list = []
            for item in level:
                children(item, found)
            out.extend(found)
            level = found
        return out

    return fn, None


# utility -----------------------------------------------------------------------------------------


@function("trace", 1, 2)
def _trace(c: Compiler, base: Fn, base_st: SType, args: tuple, st: SType) -> tuple:
    name_fn = c.arg(args[0], st)
    projection = c.arg(args[1], base_st) if len(args) == 2 else None

    def trace(ctx: Ctx) -> list:
        items = base(ctx)
        if ctx.env.trace is not None:
            names = name_fn(ctx)
            label = str(to_system(names[0])) if names else ""
            shown = items
            if projection is not None:
                saved = ctx.this
                ctx.this = items
                shown = projection(ctx)
                ctx.this = saved
            ctx.env.trace(label, [to_json(item) for item in shown])
        return items

    return trace, base_st


@function("now")
def _now(c: Compiler, base: Fn, base_st: SType, args: tuple, st: SType) -> tuple:
    return (lambda ctx: [_clock(ctx)]), None


@function("today")
def _today(c: Compiler, base: Fn, base_st: SType, args: tuple, st: SType) -> tuple:
    def today(ctx: Ctx) -> list:
        day = _clock(ctx).with_precision(3)
        day.kind, day.tz = "date", None
        return [day]

    return today, None


@function("timeOfDay")
def _time_of_day(c: Compiler, base: Fn, base_st: SType, args: tuple, st: SType) -> tuple:
    def time_of_day(ctx: Ctx) -> list:
        moment = _clock(ctx)
        return [
            Temporal(
                "time",
                hour=moment.hour,
                minute=moment.minute,
                second=moment.second,
                frac=moment.frac,
                precision=6,
            )
        ]

    return time_of_day, None


def _clock(ctx: Ctx) -> Temporal:
    if ctx.now is None:
        ctx.now = temporal_from_datetime(now_local(), "dateTime")
    return ctx.now


@function("aggregate", 1, 2)
def _aggregate(c: Compiler, base: Fn, base_st: SType, args: tuple, st: SType) -> tuple:
    aggregator = c.arg(args[0], base_st)
    init = c.arg(args[1], st) if len(args) == 2 else None

    def aggregate(ctx: Ctx) -> list:
        total = init(ctx) if init is not None else _EMPTY
        saved = ctx.this, ctx.index, ctx.total
        for index, item in enumerate(base(ctx)):
            ctx.this = [item]
            ctx.index = index
            ctx.total = total
            total = aggregator(ctx)
        ctx.this, ctx.index, ctx.total = saved
        return total

    return aggregate, None


@function("sort", 0, 99)
def _sort(c: Compiler, base: Fn, base_st: SType, args: tuple, st: SType) -> tuple:
    keys: list[tuple[Fn, bool]] = []
    for arg in args:
        descending = isinstance(arg, ast.Unary) and arg.op == "-"
        keys.append((c.arg(arg.operand if descending else arg, base_st), descending))

    def sort(ctx: Ctx) -> list:
        items = list(base(ctx))
        if not keys:
            return _sorted(items, lambda item: to_system(item), False)
        saved = ctx.this, ctx.index
        for key_fn, descending in reversed(keys):

            def key_of(item: Item, key_fn: Fn = key_fn) -> Any:
                ctx.this = [item]
                found = key_fn(ctx)
                return to_system(found[0]) if found else None

            items = _sorted(items, key_of, descending)
        ctx.this, ctx.index = saved
        return items

    return sort, base_st


def _sorted(items: list, key: Callable[[Item], Any], descending: bool) -> list:
    import functools

    keyed = [(key(item), item) for item in items]

    def order(a: tuple, b: tuple) -> int:
        x, y = a[0], b[0]
        if x is None or y is None:
            return (x is None) - (y is None) if not descending else (y is None) - (x is None)
        result = compare(x, y) or 0
        return -result if descending else result

    keyed.sort(key=functools.cmp_to_key(order))
    return [item for _, item in keyed]


# FHIR-specific functions -------------------------------------------------------------------------


@function("extension", 1)
def _extension(c: Compiler, base: Fn, base_st: SType, args: tuple, st: SType) -> tuple:
    url_fn = c.arg(args[0], st)
    member = c.nav.member

    def extension(ctx: Ctx) -> list:
        urls = url_fn(ctx)
        if not urls:
            return _EMPTY
        url = to_system(single(urls, "extension() url"))
        out: list = []
        found: list = []
        for item in base(ctx):
            member(item, "extension", found)
        for ext in found:
            value = ext[0]
            if type(value) is dict and value.get("url") == url:
                out.append(ext)
        return out

    extension_st = None
    model = c.model
    if "Extension" in model.types:
        extension_st = (("Extension", model.types["Extension"]),)
    return extension, extension_st


@function("hasValue")
def _has_value(c: Compiler, base: Fn, base_st: SType, args: tuple, st: SType) -> tuple:
    def has_value(ctx: Ctx) -> list:
        items = base(ctx)
        if len(items) != 1:
            return [False]
        item = items[0]
        if type(item) is tuple:
            return [item[2] is None and item[0] is not None and type(item[0]) is not dict]
        return [True]

    return has_value, None


@function("getValue")
def _get_value(c: Compiler, base: Fn, base_st: SType, args: tuple, st: SType) -> tuple:
    def get_value(ctx: Ctx) -> list:
        items = base(ctx)
        if len(items) != 1:
            return _EMPTY
        item = items[0]
        if type(item) is tuple:
            if item[2] is None and item[0] is not None and type(item[0]) is not dict:
                return [to_system(item)]
            return _EMPTY
        return [item]

    return get_value, None


@function("not")
def _not(c: Compiler, base: Fn, base_st: SType, args: tuple, st: SType) -> tuple:
    def not_(ctx: Ctx) -> list:
        value = boolean(base(ctx), "not()")
        return _EMPTY if value is None else [not value]

    return not_, None


def reference_text(item: Item) -> str | None:
    value = item[0] if type(item) is tuple else item
    if type(value) is dict:
        reference = value.get("reference")
        return reference if isinstance(reference, str) else None
    if type(value) is str:
        return value
    return None


@function("resolve")
def _resolve(c: Compiler, base: Fn, base_st: SType, args: tuple, st: SType) -> tuple:
    model = c.model

    def resolve(ctx: Ctx) -> list:
        out: list = []
        for item in base(ctx):
            reference = reference_text(item)
            if not reference:
                continue
            found = _resolve_local(ctx, reference)
            if found is None and ctx.env.resolver is not None:
                found = ctx.env.resolver(reference)
            if isinstance(found, dict):
                rtype = found.get("resourceType", "")
                out.append((found, rtype, model.types.get(rtype), None, None, None))
        return out

    return resolve, None


def _resolve_local(ctx: Ctx, reference: str) -> dict | None:
    """Contained resources and Bundle entries (by fullUrl or type/id)."""
    if reference.startswith("#"):
        for holder in (*ctx.resource, *ctx.root):
            value = holder[0] if type(holder) is tuple else None
            if type(value) is dict:
                for contained in value.get("contained", ()) or ():
                    if isinstance(contained, dict) and contained.get("id") == reference[1:]:
                        return contained
        return None
    for holder in ctx.root:
        value = holder[0] if type(holder) is tuple else None
        if type(value) is dict and value.get("resourceType") == "Bundle":
            for entry in value.get("entry", ()) or ():
                if not isinstance(entry, dict):
                    continue
                resource = entry.get("resource")
                if not isinstance(resource, dict):
                    continue
                full_url = entry.get("fullUrl")
                if full_url == reference or (
                    isinstance(full_url, str) and full_url.endswith("/" + reference)
                ):
                    return resource
                if f"{resource.get('resourceType')}/{resource.get('id')}" == reference:
                    return resource
    return None


def _codes_of(item: Item) -> list[tuple[str | None, str]]:
    """(system, code) pairs of a code, Coding or CodeableConcept item."""
    value = item[0] if type(item) is tuple else item
    if type(value) is str:
        return [(None, value)]
    if type(value) is dict:
        if "coding" in value:
            return [
                (c.get("system"), c["code"])
                for c in value.get("coding", ())
                if isinstance(c, dict) and isinstance(c.get("code"), str)
            ]
        if isinstance(value.get("code"), str):
            return [(value.get("system"), value["code"])]
    return []


@function("memberOf", 1)
def _member_of(c: Compiler, base: Fn, base_st: SType, args: tuple, st: SType) -> tuple:
    url_fn = c.arg(args[0], st)

    def member_of(ctx: Ctx) -> list:
        item = single(base(ctx), "memberOf()")
        urls = url_fn(ctx)
        if item is None or not urls:
            return _EMPTY
        if ctx.env.terminology is None:
            raise EvaluationError("memberOf() needs a terminology service")
        codes = ctx.env.terminology.expand(str(to_system(urls[0])))
        if codes is None:
            return _EMPTY
        pairs = _codes_of(item)
        if not pairs:
            return _EMPTY
        for system, code in pairs:
            if system is None:
                if any(found_code == code for _, found_code in codes):
                    return [True]
            elif (system, code) in codes:
                return [True]
        return [False]

    return member_of, None


def _subsumption(reverse: bool) -> Builder:
    def builder(c: Compiler, base: Fn, base_st: SType, args: tuple, st: SType) -> tuple:
        other_fn = c.arg(args[0], st)

        def subsumes(ctx: Ctx) -> list:
            item = single(base(ctx), "subsumes()")
            others = other_fn(ctx)
            if item is None or not others:
                return _EMPTY
            check = getattr(ctx.env.terminology, "subsumes", None)
            if check is None:
                raise EvaluationError("subsumes() needs a terminology service")
            for system, code in _codes_of(item):
                for other in others:
                    for other_system, other_code in _codes_of(other):
                        if system and other_system and system != other_system:
                            continue
                        a, b = (other_code, code) if reverse else (code, other_code)
                        result = check(system or other_system, a, b)
                        if result:
                            return [True]
            return [False]

        return subsumes, None

    return builder


FUNCTIONS["subsumes"] = (1, 1, _subsumption(False))
FUNCTIONS["subsumedBy"] = (1, 1, _subsumption(True))


@function("conformsTo", 1)
def _conforms_to(c: Compiler, base: Fn, base_st: SType, args: tuple, st: SType) -> tuple:
    url_fn = c.arg(args[0], st)

    def conforms_to(ctx: Ctx) -> list:
        item = single(base(ctx), "conformsTo()")
        urls = url_fn(ctx)
        if item is None or not urls:
            return _EMPTY
        if ctx.env.validator is None:
            raise EvaluationError("conformsTo() needs a validator")
        return [bool(ctx.env.validator(to_json(item), str(to_system(urls[0]))))]

    return conforms_to, None


@function("htmlChecks")
def _html_checks(c: Compiler, base: Fn, base_st: SType, args: tuple, st: SType) -> tuple:
    # the structural validator checks narrative XHTML (validation/xhtml.py) on every write
    return (lambda ctx: [True]), None


@function("checkModifiers", 1)
def _check_modifiers(c: Compiler, base: Fn, base_st: SType, args: tuple, st: SType) -> tuple:
    return base, base_st


@function("elementDefinition")
def _element_definition(c: Compiler, base: Fn, base_st: SType, args: tuple, st: SType) -> tuple:
    return (lambda ctx: _EMPTY), None


@function("slice", 2)
def _slice(c: Compiler, base: Fn, base_st: SType, args: tuple, st: SType) -> tuple:
    raise SemanticError("slice() is not supported")
