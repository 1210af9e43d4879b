"""The invariants of the R4 base definitions, on every resource, every write, every $validate.

Every ``ElementDefinition.constraint`` of the R4 resources and data types (``pat-1``, ``obs-6``,
``per-1``, ``ras-2``, ``que-1``...) runs wherever its element occurs in a resource, whether or not
the resource claims a profile. The structural validator (``structure.py``) walks each resource
once; at every object and element that has invariants it queues them, and once the walk found no
structural error the queue is evaluated (``evaluate_queue``).

What keeps this cheap (measured in docs/validation.md):

* **Plans per type, built once**: for each resource, data type and backbone element, the list of
  invariants of its root and of its non-backbone elements, from the R4 snapshots.
* **Absent context, no evaluation**: for each invariant the element names it reads are taken from
  its expression; when none of them is present in an object and the invariant holds on an object
  without them (decided once, with the full engine), it is skipped. ``pat-1`` runs only on a
  Patient.contact that lacks all four, ``obs-6`` only on an Observation with a value or a
  dataAbsentReason...
* **Native checks** for the generic invariants that occur everywhere or that the engines get
  wrong: ``ele-1``, ``ext-1``, ``dom-2``/``dom-4``/``dom-5`` (in the structural walk), ``dom-3``,
  ``dom-6``, ``ref-1``, ``per-1``, ``rng-2`` (here), ``txt-1``/``txt-2`` (``xhtml.py``).
* Everything else goes through ``validation.invariants.Invariant`` (the compiled fast path, with
  the full FHIRPath engine as fallback).

Where the 4.0.1 definitions are wrong and the community has fixed them (errata), the fixed
expression or a native check runs instead: ``ERRATA`` below, listed in docs/validation.md.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from functools import cache
from typing import Any

from fhir_server.definitions import load_r4
from fhir_server.model.structure import ComplexType, Model, r4_model
from fhir_server.validation.invariants import Invariant, select_invariants

R4_SD = "http://hl7.org/fhir/StructureDefinition/"
UCUM = "http://unitsofmeasure.org"

# key -> (what runs instead, why). "native" means a check in this module or the structural walk.
ERRATA: dict[str, tuple[str, str]] = {
    "que-12": (
        "enableWhen.count() > 1 implies enableBehavior.exists()",
        "the published expression tests `> 2`, but the rule (human text) is 'if there are more "
        "than one enableWhen, enableBehavior must be specified'; fixed in R4B/R5",
    ),
    "que-7": (
        "operator = 'exists' implies (answer is boolean)",
        "`answer is Boolean` names the FHIRPath System type, which a FHIR boolean is not, so "
        "every valid 'exists' condition failed; R5 tests `answer is boolean`",
    ),
    "ref-1": (
        "native",
        "a reference '#' (a contained resource pointing at its container) failed because "
        "`''` is no contained id; R5 allows `reference = '#'` inside contained resources",
    ),
    "dom-3": (
        "native",
        "`descendants().as(canonical)` finds nothing in untyped JSON engines; the check also "
        "counts narrative links (`href`/`src` '#id'), as the HL7 validator does since 2024",
    ),
    "per-1": (
        "native",
        "`start <= end` on date-times of different precision or time zones is 'unknown' in "
        "FHIRPath and failed; only a start that is certainly after the end fails",
    ),
    "inv-1": (
        "native (Task only)",
        "Task's `lastModified >= authoredOn` compared date-times wrongly across time zones and "
        "fractional seconds in the full engine (a Task modified at 09:00Z after being authored "
        "at 10:00+02:00 failed); only an authoredOn certainly after lastModified fails",
    ),
    "mdd-1": (
        "native",
        "`whenHandedOver >= whenPrepared`: the same date-time comparison as Task inv-1",
    ),
    "rng-2": (
        "native",
        "`low <= high` compares Quantities, which needs unit conversion; compared when both "
        "have the same unit, otherwise not decided (passes)",
    ),
    "dom-r4b": (
        "skipped",
        "not an R4 invariant: the packaged definitions carry the R4B backport of "
        "SubscriptionStatus, whose dom-r4b names R4B-only resource types",
    ),
    "ele-1": ("native", "decided by the structural walk (an element has a value or children)"),
    "ext-1": ("native", "decided by the structural walk (value or extensions, not both)"),
    "dom-2": ("native", "decided by the structural walk"),
    "dom-4": ("native", "decided by the structural walk"),
    "dom-5": ("native", "decided by the structural walk"),
    "dom-6": ("native", "a warning: the resource has no narrative"),
    "txt-1": ("native", "`htmlChecks()`: the narrative checks of xhtml.py"),
    "txt-2": ("native", "`htmlChecks()`: the narrative checks of xhtml.py"),
}

# Invariants the R4 definitions mark as best practice (extension elementdefinition-bestpractice;
# the packaged definitions are trimmed, so they are listed here): reported by $validate only.
BEST_PRACTICE = frozenset({"dom-6", "con-3"})
_STRUCTURAL = frozenset({"ele-1", "ext-1", "dom-2", "dom-4", "dom-5", "txt-1", "txt-2", "dom-r4b"})
# identifiers that read more than the context's own children: such invariants always run
_WHOLE = frozenset({"children", "descendants", "repeat", "resolve", "$this", "$index", "$total"})
_KEYWORDS = frozenset(
    {"and", "or", "xor", "implies", "true", "false", "in", "contains", "div", "mod", "is", "as"}
)
_STRING = re.compile(r"'(?:[^'\\]|\\.)*'")
_IDENT = re.compile(r"`([^`]+)`|(\$?[A-Za-z_]\w*)\s*(\()?")

Native = Callable[[Any, "Walk"], "str | None"]


@dataclass(slots=True)
class CoreInvariant:
    key: str
    severity: str  # error | warning
    human: str
    expression: str  # what runs (the errata's fix where there is one)
    source: str  # the definition that declares it, e.g. "Patient"
    fp_type: str  # FHIRPath type of the context, e.g. "Patient.contact", "Period"
    keys: frozenset[str] | None  # JSON keys whose presence calls for evaluation; None: always
    evaluator: Invariant | None = None
    native: Native | None = None
    best_practice: bool = False


@dataclass(slots=True)
class Walk:
    """Where the structural walk is: the resource of the element (%resource) and its root."""

    resource: dict[str, Any]
    root: dict[str, Any]


@dataclass(slots=True)
class Queued:
    invariant: CoreInvariant
    value: Any
    partner: Any
    path: str
    walk: Walk


# -- reading expressions -------------------------------------------------------------------


def _names(expression: str) -> tuple[frozenset[str], bool]:
    """(identifiers the expression reads as element names, whether it reads beyond them)."""
    text = _STRING.sub("''", expression)
    whole = "%" in text
    names: set[str] = set()
    for match in _IDENT.finditer(text):
        quoted, name, call = match.groups()
        if quoted:
            names.add(quoted)
            continue
        if name in _WHOLE:
            whole = True
        elif call:
            if name == "extension":
                names.add("extension")
        elif name not in _KEYWORDS:
            names.add(name)
    return frozenset(names), whole


# -- plans ----------------------------------------------------------------------------------


class CorePlans:
    """The invariants of every R4 type, indexed for the structural walk (built lazily)."""

    def __init__(self, model: Model) -> None:
        self.model = model
        self._constraints = _constraints_by_path()
        self._type_plans: dict[str, tuple[CoreInvariant, ...]] = {}
        self._element_plans: dict[str, dict[str, tuple[CoreInvariant, ...]]] = {}

    def type_plan(self, structure: ComplexType) -> tuple[CoreInvariant, ...]:
        """Invariants of the object itself (a resource, data type or backbone element)."""
        found = self._type_plans.get(structure.name)
        if found is None:
            found = self._build_type_plan(structure)
            self._type_plans[structure.name] = found
        return found

    def element_plan(self, structure: ComplexType) -> dict[str, tuple[CoreInvariant, ...]]:
        """By JSON key: invariants of the (non-backbone) elements of ``structure``."""
        found = self._element_plans.get(structure.name)
        if found is None:
            found = self._build_element_plan(structure)
            self._element_plans[structure.name] = found
        return found

    def _build_type_plan(self, structure: ComplexType) -> tuple[CoreInvariant, ...]:
        name = structure.name
        fp_type = name
        out = []
        for constraint, source in self._constraints.get(name, ()):
            invariant = self._make(constraint, source, fp_type, structure)
            if invariant is not None:
                out.append(invariant)
        return tuple(out)

    def _build_element_plan(self, structure: ComplexType) -> dict[str, tuple[CoreInvariant, ...]]:
        plan: dict[str, tuple[CoreInvariant, ...]] = {}
        for key, spec in structure.keys.items():
            element = spec.element
            if element.children is not None or spec.extension_part:
                continue  # backbone elements: their type plan; "_x": looked up as "x"
            constraints = list(self._constraints.get(element.path, ()))
            constraints += _type_profile_constraints(element.path, spec.type_code)
            if not constraints:
                continue
            context = self.model.types.get(spec.type_code)
            invariants = []
            for constraint, source in constraints:
                invariant = self._make(constraint, source, spec.type_code, context)
                if invariant is not None:
                    invariants.append(invariant)
            if invariants:
                plan[key] = tuple(invariants)
        return plan

    def _make(
        self,
        constraint: dict[str, Any],
        source: str,
        fp_type: str,
        context: ComplexType | None,
    ) -> CoreInvariant | None:
        key = constraint.get("key", "")
        if key in _STRUCTURAL:
            return None
        native = _NATIVE.get((source, key)) or _NATIVE.get(key)
        expression = constraint.get("expression") or ""
        fix = ERRATA.get(key)
        if fix is not None and not fix[0].startswith(("native", "skipped")):
            expression = fix[0]
        if native is None and not expression:
            return None
        expression = expression.replace("%ucum", f"'{UCUM}'")
        invariant = CoreInvariant(
            key,
            constraint.get("severity", "error"),
            constraint.get("human", ""),
            expression,
            source,
            fp_type,
            None,
            native=native,
            best_practice=key in BEST_PRACTICE,
        )
        if native is not None:
            invariant.keys = _NATIVE_KEYS.get((source, key), _NATIVE_KEYS.get(key))
            return invariant
        selected = select_invariants(
            [{**constraint, "expression": expression}], source, frozenset()
        )
        if not selected:
            return None
        invariant.evaluator = selected[0]
        invariant.keys = _skip_keys(invariant, context)
        return invariant


def _skip_keys(invariant: CoreInvariant, context: ComplexType | None) -> frozenset[str] | None:
    """The JSON keys of the context whose absence lets the invariant be skipped (None: never)."""
    if context is None or invariant.evaluator is None:
        return None
    names, whole = _names(invariant.expression)
    if whole:
        return None
    keys: set[str] = set()
    for name in names:
        element = context.elements.get(name)
        if element is None:
            continue
        for key in context.json_keys_of(element):
            keys.add(key)
            keys.add("_" + key)
    # the invariant must hold on an object without any of them (decided by the full engine)
    is_resource = r4_model().kinds.get(invariant.fp_type) == "resource"
    empty: dict[str, Any] = {"resourceType": invariant.fp_type} if is_resource else {}
    problem = invariant.evaluator.evaluate_full(empty, invariant.fp_type, None, empty, empty)
    if problem is not None:
        return None
    return frozenset(keys)


@cache
def _constraints_by_path() -> dict[str, tuple[tuple[dict[str, Any], str], ...]]:
    """Element path -> (constraint, declaring type) for every R4 type, each key once per path.

    Inherited constraints are left out where the walk applies them anyway: ``ele-1`` (every
    element), the data type's own invariants on elements of that type (the type plan of the value
    runs them). A resource root keeps the DomainResource ones (``dom-*``).
    """
    out: dict[str, list[tuple[dict[str, Any], str]]] = {}
    for name in ("profiles-types", "profiles-resources"):
        for sd in load_r4(name):
            if sd.get("derivation") == "constraint":
                continue
            own = sd["type"]
            for index, element in enumerate(sd["snapshot"]["element"]):
                path = element["path"]
                types = {t.get("code") for t in element.get("type", ())}
                seen: set[str] = set()
                for constraint in element.get("constraint", ()):
                    key = constraint.get("key", "")
                    source = (constraint.get("source") or "").rsplit("/", 1)[-1] or own
                    if key in seen or key == "ele-1":
                        continue
                    if index > 0 and source != own and (source in types or source == "Element"):
                        continue
                    seen.add(key)
                    out.setdefault(path, []).append((constraint, source))
    return {path: tuple(items) for path, items in out.items()}


@cache
def r4_expressions() -> dict[str, frozenset[str]]:
    """Every R4 base constraint key -> its expressions (to recognise inherited constraints)."""
    out: dict[str, set[str]] = {}
    for name in ("profiles-types", "profiles-resources"):
        for sd in load_r4(name):
            for element in sd["snapshot"]["element"]:
                for constraint in element.get("constraint", ()):
                    out.setdefault(constraint.get("key", ""), set()).add(
                        constraint.get("expression") or ""
                    )
    return {key: frozenset(values) for key, values in out.items()}


@cache
def _r4_urls() -> frozenset[str]:
    return frozenset(
        sd["url"] for name in ("profiles-types", "profiles-resources") for sd in load_r4(name)
    )


def inherited_from_r4(constraint: dict[str, Any]) -> bool:
    """Whether a constraint in a profile's snapshot is one of the R4 base definitions' (which
    the structural pass runs for every resource), not one the profile adds."""
    source = constraint.get("source") or ""
    if source:
        return source in _r4_urls()
    return (constraint.get("expression") or "") in r4_expressions().get(
        constraint.get("key", ""), ()
    )


@cache
def _profile_roots() -> dict[str, tuple[tuple[dict[str, Any], str], ...]]:
    """The own invariants of the R4 data type profiles (SimpleQuantity, MoneyQuantity)."""
    out: dict[str, tuple[tuple[dict[str, Any], str], ...]] = {}
    for sd in load_r4("profiles-types"):
        if sd.get("derivation") != "constraint":
            continue
        root = sd["snapshot"]["element"][0]
        base = sd["type"]
        items = []
        for constraint in root.get("constraint", ()):
            source = (constraint.get("source") or "").rsplit("/", 1)[-1]
            if constraint.get("key") == "ele-1" or source in (base, "Element"):
                continue
            items.append((constraint, sd["name"]))
        out[sd["url"]] = tuple(items)
    return out


@cache
def _type_profile_paths() -> dict[tuple[str, str], tuple[str, ...]]:
    """(element path, type) -> R4 type profiles it names (Range.low, Quantity -> SimpleQuantity)."""
    out: dict[tuple[str, str], tuple[str, ...]] = {}
    for name in ("profiles-types", "profiles-resources"):
        for sd in load_r4(name):
            if sd.get("derivation") == "constraint":
                continue
            for element in sd["snapshot"]["element"]:
                for type_ in element.get("type", ()):
                    if type_.get("profile"):
                        out[(element["path"], type_.get("code", ""))] = tuple(type_["profile"])
    return out


def _type_profile_constraints(path: str, type_code: str) -> list[tuple[dict[str, Any], str]]:
    roots = _profile_roots()
    out: list[tuple[dict[str, Any], str]] = []
    for url in _type_profile_paths().get((path, type_code), ()):
        out.extend(roots.get(url, ()))
    return out


# -- queue evaluation ----------------------------------------------------------------------


def evaluate_queue(queue: list[Queued], full: bool) -> list[tuple[CoreInvariant, str, str]]:
    """(invariant, problem, path) for each queued invariant that does not hold.

    ``full``: a primitive without a value (only ``_name``) occurs somewhere: the compiled fast
    path does not see those, so everything goes to the full engine."""
    out = []
    for item in queue:
        invariant = item.invariant
        if invariant.native is not None:
            problem = invariant.native(item.value, item.walk)
        else:
            evaluator = invariant.evaluator
            assert evaluator is not None
            walk = item.walk
            if full:
                problem = evaluator.evaluate_full(
                    item.value, invariant.fp_type, item.partner, walk.resource, walk.root
                )
            else:
                problem = evaluator.evaluate(
                    item.value, invariant.fp_type, item.partner, walk.resource, walk.root
                )
        if problem is not None:
            out.append((invariant, problem, item.path))
    return out


def should_run(invariant: CoreInvariant, obj: Any, best_practice: bool) -> bool:
    if invariant.best_practice and not best_practice:
        return False
    keys = invariant.keys
    if keys is None or type(obj) is not dict:
        return True
    return not keys.isdisjoint(obj)


# -- native invariants ---------------------------------------------------------------------


def _ref_1(value: Any, walk: Walk) -> str | None:
    if type(value) is not dict:
        return None
    reference = value.get("reference")
    if type(reference) is not str or not reference.startswith("#"):
        return None
    if reference == "#":
        if walk.resource is not walk.root:
            return None  # a contained resource pointing at its container (R5 fix)
        return "a reference '#' (to the container) is only allowed inside a contained resource"
    for item in walk.root.get("contained") or ():
        if type(item) is dict and item.get("id") == reference[1:]:
            return None
    return f"the local reference {reference} points at no contained resource"


_DATE_PARTS = re.compile(
    r"(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d+))?)?"
    r"(Z|[+-]\d{2}:\d{2})?)?)?)?$"
)


def _bounds(text: Any) -> tuple[datetime, datetime, bool] | None:
    """(earliest, latest, has time zone) of a partial date/dateTime/instant, naive UTC-less."""
    if type(text) is not str:
        return None
    match = _DATE_PARTS.match(text)
    if match is None:
        return None
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    try:
        if month is None:
            low = datetime(int(year), 1, 1)
            high = datetime(int(year) + 1, 1, 1) if int(year) < 9999 else datetime.max
        elif day is None:
            low = datetime(int(year), int(month), 1)
            high = (
                datetime(int(year) + int(month) // 12, int(month) % 12 + 1, 1)
                if int(year) < 9999 or int(month) < 12
                else datetime.max
            )
        elif hour is None:
            low = datetime(int(year), int(month), int(day))
            high = low + timedelta(days=1)
        else:
            sec = min(int(second or 0), 59)  # a leap second :60 counts as :59
            micro = int((fraction or "0")[:6].ljust(6, "0"))
            low = datetime(int(year), int(month), int(day), int(hour), int(minute), sec, micro)
            high = low + (timedelta(seconds=1) if second is None else timedelta(microseconds=1))
            if fraction is None and second is not None:
                high = low + timedelta(seconds=1)
    except (ValueError, OverflowError):
        return None
    if zone:
        offset = timedelta(0) if zone == "Z" else _offset(zone)
        return low - offset, high - offset, True
    return low, high, False


def _offset(zone: str) -> timedelta:
    sign = -1 if zone[0] == "-" else 1
    return sign * timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6]))


def _per_1(value: Any, walk: Walk) -> str | None:
    if type(value) is not dict:
        return None
    start, end = _bounds(value.get("start")), _bounds(value.get("end"))
    if start is None or end is None:
        return None
    start_low, _, start_zone = start
    _, end_high, end_zone = end
    if start_zone != end_zone:  # one side's zone unknown: widen by the largest offsets
        if not start_zone:
            start_low -= timedelta(hours=14)
        if not end_zone:
            end_high += timedelta(hours=14)
    if start_low >= end_high:
        return f"the period starts ({value['start']}) after it ends ({value['end']})"
    return None


def _date_order(earlier: str, later: str) -> Native:
    """``later >= earlier`` on two date-time elements (Task inv-1, MedicationDispense mdd-1): fails
    only when ``earlier`` is certainly after ``later`` (time zones and precision respected)."""

    def check(value: Any, walk: Walk) -> str | None:
        if type(value) is not dict:
            return None
        first, second = _bounds(value.get(earlier)), _bounds(value.get(later))
        if first is None or second is None:
            return None
        low, _, first_zone = first
        _, high, second_zone = second
        if first_zone != second_zone:
            if not first_zone:
                low -= timedelta(hours=14)
            if not second_zone:
                high += timedelta(hours=14)
        if low >= high:
            return f"{earlier} {value[earlier]} is after {later} {value[later]}"
        return None

    return check


def _number(value: Any) -> Decimal | None:
    if isinstance(value, bool) or not isinstance(value, (int, float, Decimal)):
        return None
    return Decimal(str(value))


def _rng_2(value: Any, walk: Walk) -> str | None:
    if type(value) is not dict:
        return None
    low, high = value.get("low"), value.get("high")
    if type(low) is not dict or type(high) is not dict:
        return None
    a, b = _number(low.get("value")), _number(high.get("value"))
    if a is None or b is None:
        return None
    same_unit = (low.get("system"), low.get("code")) == (high.get("system"), high.get("code"))
    if not same_unit or ("code" not in low and low.get("unit") != high.get("unit")):
        return None  # different units: deciding needs UCUM conversion
    if a > b:
        return f"the low value ({a}) is above the high value ({b})"
    return None


_NARRATIVE_LINK = re.compile(r"""(?:href|src)\s*=\s*["']#([^"']+)["']""")


def _local_targets(value: Any, out: set[str]) -> None:
    """Every '#...' string in ``value`` (references, canonicals, uris) and narrative link."""
    stack = [value]
    while stack:
        item = stack.pop()
        kind = type(item)
        if kind is dict:
            for key, child in item.items():
                if type(child) is str:
                    if child.startswith("#"):
                        out.add(child)
                    elif key == "div" and "#" in child:
                        out.update("#" + m for m in _NARRATIVE_LINK.findall(child))
                elif type(child) is dict or type(child) is list:
                    stack.append(child)
        elif kind is list:
            for child in item:
                if type(child) is str:
                    if child.startswith("#"):
                        out.add(child)
                elif type(child) is dict or type(child) is list:
                    stack.append(child)


def _dom_3(value: Any, walk: Walk) -> str | None:
    contained = value.get("contained") if type(value) is dict else None
    if type(contained) is not list:
        return None
    targets: set[str] = set()
    _local_targets(value, targets)
    unmatched = []
    for item in contained:
        if type(item) is not dict or type(item.get("id")) is not str:
            continue
        if "#" + item["id"] in targets:
            continue
        own: set[str] = set()
        _local_targets(item, own)
        if "#" in own:
            continue  # it refers to its container
        unmatched.append(item["id"])
    if unmatched:
        return (
            "every contained resource must be referenced from elsewhere in the resource or "
            f"refer to its container; not referenced: {', '.join(unmatched)}"
        )
    return None


def _dom_6(value: Any, walk: Walk) -> str | None:
    if value is not walk.root:
        return None  # contained resources need no narrative of their own
    text = value.get("text") if type(value) is dict else None
    if type(text) is dict and "div" in text:
        return None
    return "A resource should have narrative for robust management"


# by key, or by (declaring type, key) where a key is not unique (inv-1 is Task's, Parameters'...)
_NATIVE: dict[str | tuple[str, str], Native] = {
    ("Task", "inv-1"): _date_order("authoredOn", "lastModified"),
    ("MedicationDispense", "mdd-1"): _date_order("whenPrepared", "whenHandedOver"),
    "ref-1": _ref_1,
    "per-1": _per_1,
    "rng-2": _rng_2,
    "dom-3": _dom_3,
    "dom-6": _dom_6,
}
_NATIVE_KEYS: dict[str | tuple[str, str], frozenset[str] | None] = {
    ("Task", "inv-1"): frozenset({"authoredOn", "lastModified"}),
    ("MedicationDispense", "mdd-1"): frozenset({"whenPrepared", "whenHandedOver"}),
    "ref-1": frozenset({"reference"}),
    "per-1": frozenset({"start", "end"}),
    "rng-2": frozenset({"low", "high"}),
    "dom-3": frozenset({"contained"}),
    "dom-6": None,
}


@cache
def plans_for(model: Model) -> CorePlans:
    return CorePlans(model)
