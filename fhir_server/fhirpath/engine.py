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

from collections.abc import Callable
from dataclasses import dataclass
from decimal import ROUND_DOWN, Decimal
from typing import Any

from fhir_server.fhirpath import parser as ast
from fhir_server.fhirpath.values import (
    CALENDAR_WORDS,
    SYSTEM_TYPES,
    EvaluationError,
    Quantity,
    Temporal,
    TypeInfo,
    decimal_equivalent,
    parse_temporal,
    quantity_add,
    quantity_compare,
    quantity_equivalent,
    quantity_multiply,
    system_type,
    temporal_add,
    temporal_compare,
    temporal_equivalent,
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

    def __init__(self, model: Model, strict: bool = True, choice_casts: bool = True) -> None:
        self.model = model
        self.strict = strict
        self.nav = Navigator(model, lenient=not strict)
        self.choice_casts = choice_casts  # False: the general path (benchmarks, equivalence)

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
        if expr.op == "as" and self.choice_casts and isinstance(expr.operand, ast.Member):
            fast = self.choice_cast(expr.operand, expr.type_name, st, single="as")
            if fast is not None:
                return fast
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

    def choice_cast(
        self, member: ast.Member, parts: tuple[str, ...], st: SType, single: str = ""
    ) -> tuple[Fn, SType] | None:
        """``value.ofType(T)``, ``value.as(T)``, ``value as T``: the member's JSON keys are
        filtered by ``T`` once per structure (a choice element ``value[x]`` becomes the single
        key ``valueT``), instead of walking every choice key and testing each item's type.

        Exactly the general result: an item's type is the type code of the key it comes from
        (resources excepted: a plan with a resource-typed key is left to the general path), so
        filtering the keys by ``T`` filters the items. ``single`` (``as``) keeps the error for
        more than one item: an item whose JSON has more than one key of the element (not valid
        FHIR) takes the general path. ``single`` names the form in that error (``as``,
        ``as()``); empty for ``ofType``."""
        name = member.name
        if member.base is None and name[:1].isupper() and self.is_type_name(name):
            return None  # a leading type name (Observation.ofType(...)) is a type filter
        matcher = self.type_matcher(parts, exact=True)
        general_member, _member_st = self.c_Member(member, st)
        out_st = self._type_stype(parts)
        if member.base is None:
            parent: Fn | None = None
        else:
            parent, _parent_st = self.compile(member.base, st)
        nav = self.nav
        walk = nav.walk
        member_of = nav.member
        plans: dict[int, tuple[Plan, frozenset[str]] | None] = {}  # by id(structure)

        def filtered(structure: ComplexType) -> tuple[Plan, frozenset[str]] | None:
            found = plans.get(id(structure), _MISSING)
            if found is _MISSING:
                plan = nav.plan(structure, name)
                if plan is None or any(entry[4] for entry in plan):
                    found = None
                else:
                    kept = tuple(e for e in plan if matcher((None, e[1], None, None, None, None)))
                    keys = frozenset(k for e in plan for k in (e[0], "_" + e[0]))
                    found = (kept, keys)
                plans[id(structure)] = found
            return found  # type: ignore[return-value]

        def general(ctx: Ctx) -> list:
            items = general_member(ctx)
            if single and len(items) > 1:
                raise EvaluationError(
                    f"{single} expects a single item (use ofType() for collections)"
                )
            return [item for item in items if matcher(item)]

        def cast(ctx: Ctx) -> list:
            bases = ctx.this if parent is None else parent(ctx)
            if single and len(bases) > 1:
                return general(ctx)
            out: list = []
            for item in bases:
                if type(item) is tuple and item[2] is not None:
                    found = filtered(item[2])
                    if found is not None:
                        value = item[0]
                        if single and type(value) is dict:
                            present = found[1].intersection(value)
                            if len(present) > 1 or any(type(value[k]) is list for k in present):
                                return general(ctx)
                        walk(value, found[0], out)
                        continue
                if single:
                    return general(ctx)
                found_items: list = []
                member_of(item, name, found_items)
                out.extend(i for i in found_items if matcher(i))
            return out

        info = getattr(general_member, "fuse", None)
        if not single and info is not None and info[1] is not None and info[2] is not None:
            # a plain path from the focus (Observation.value.ofType(Quantity)): fused, its last
            # step walking only the kept keys (search values take this path)
            start, keys, plan = info
            if not any(entry[4] for entry in plan):
                kept = tuple(e for e in plan if matcher((None, e[1], None, None, None, None)))
                return _fused_path((start, keys, kept), cast, nav), out_st
        cast.fuse = None  # type: ignore[attr-defined]
        return cast, out_st

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
        if (
            expr.name in ("ofType", "as")
            and self.choice_casts
            and len(expr.args) == 1
            and isinstance(expr.base, ast.Member)
        ):
            fast = self.choice_cast(
                expr.base, self.type_arg(expr.args[0]), st, "as()" if expr.name == "as" else ""
            )
            if fast is not None:
                return fast
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
