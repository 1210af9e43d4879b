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
        "native: operator = 'exists' implies (answer is boolean)",
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
    "bdl-3": ("native", "for speed (every Bundle): `entry.all(request.exists() = ...)`"),
    "bdl-4": ("native", "for speed (every Bundle): `entry.all(response.exists() = ...)`"),
    "bdl-7": ("native", "for speed: `fullUrl & versionId` distinct (`&` is not in the fast path)"),
    "bdl-11": ("native", "for speed: `resource.is(Composition)` needs the full engine"),
    "bdl-12": ("native", "for speed: `resource.is(MessageHeader)` needs the full engine"),
    "que-2": ("native", "for speed: `descendants().linkId.isDistinct()` on large Questionnaires"),
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
_RESOURCE_VAR = re.compile(r"%resource\b")
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
    # skip when an object has none of the keys of one of these sets (None: always evaluate)
    guards: tuple[frozenset[str], ...] | None
    evaluator: Invariant | None = None
    native: Native | None = None
    best_practice: bool = False


@dataclass(slots=True)
class Walk:
    """Where the structural walk is: the resource of the element (%resource) and its root."""

    resource: dict[str, Any]
    root: dict[str, Any]


# (invariant, value, "_x" partner, FHIRPath location, Walk): queued by the structural walk
Queued = tuple


# -- reading expressions -------------------------------------------------------------------


def _names(expression: str, resource_context: bool = False) -> tuple[frozenset[str], bool]:
    """(identifiers the expression reads as element names, whether it reads beyond them).
    On a resource's root, ``%resource`` is the context itself."""
    text = _STRING.sub("''", expression)
    if resource_context:
        text = _RESOURCE_VAR.sub("", text)
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
            keys = _NATIVE_KEYS.get((source, key), _NATIVE_KEYS.get(key))
            invariant.guards = None if keys is None else (keys,)
            return invariant
        selected = select_invariants(
            [{**constraint, "expression": expression}], source, frozenset()
        )
        if not selected:
            return None
        invariant.evaluator = selected[0]
        invariant.guards = _guards(invariant, context)
        return invariant


def _guards(
    invariant: CoreInvariant, context: ComplexType | None
) -> tuple[frozenset[str], ...] | None:
    """Sets of JSON keys of the context such that, when an object has none of the keys of one
    set, the invariant holds there without evaluation (None: always evaluate).

    Each set comes from a part of the expression that makes it true on its own: the whole
    expression, a term of a top-level ``or`` (``value.empty() or ...``) or the negated premise of
    a top-level ``implies``. A part qualifies when it reads nothing but named children of the
    context and holds on an object without them (decided once, with the full engine)."""
    if context is None or invariant.evaluator is None:
        return None
    is_resource = r4_model().kinds.get(invariant.fp_type) == "resource"
    empty: dict[str, Any] = {"resourceType": invariant.fp_type} if is_resource else {}
    guards: list[frozenset[str]] = []
    for part in _guard_parts(invariant.expression):
        head = _empty_chain_head(part)
        if head is not None:
            names, whole = frozenset({head}), False  # "x.y.where(...).empty()": true without x
        else:
            names, whole = _names(part, is_resource)
        if whole:
            continue
        keys: set[str] = set()
        for name in names:
            element = context.elements.get(name)
            if element is None:
                continue
            for key in context.json_keys_of(element):
                keys.add(key)
                keys.add("_" + key)
        probe = select_invariants(
            [{"key": invariant.key, "severity": "error", "expression": part}],
            invariant.source,
            frozenset(),
        )
        if not probe:
            continue
        holds = probe[0].evaluate_full(empty, invariant.fp_type, None, empty, empty) is None
        if holds and probe[0].broken is None:  # a part the engine cannot read is no guard
            guards.append(frozenset(keys))
    if not guards:
        return None
    return tuple(sorted(set(guards), key=len))


_EMPTY_PRESERVING = frozenset(
    {"where", "select", "first", "last", "tail", "ofType", "as", "distinct", "skip", "take"}
)
_SEGMENT = re.compile(r"^([A-Za-z_]\w*)(\(.*\))?$", re.S)


def _empty_chain_head(term: str) -> str | None:
    """For ``name.step...step.empty()`` whose steps all give nothing on nothing (member names,
    ``where``, ``select``, ``first``...): ``name``, whose absence makes the term true."""
    segments = _split_top(term.strip(), ".", keyword=False)
    if len(segments) < 2 or segments[-1].replace(" ", "") != "empty()":
        return None
    first = _SEGMENT.match(segments[0])
    if first is None or first.group(2) is not None or first.group(1) in _KEYWORDS:
        return None
    for segment in segments[1:-1]:
        match = _SEGMENT.match(segment)
        if match is None:
            return None
        if match.group(2) is not None and match.group(1) not in _EMPTY_PRESERVING:
            return None
    return first.group(1)


_NOT_OF = re.compile(r"^\((.*)\)\s*\.\s*not\(\)$", re.S)


def _guard_parts(expression: str) -> list[str]:
    """The whole expression, and the parts of it that make it true on their own."""
    parts = [expression]
    negated = _NOT_OF.match(expression.strip())
    if negated is not None and len(_split_top(negated.group(1), "and")) > 1:
        # "(a and b).not()" holds wherever a or b is false
        parts.extend(f"({term}).not()" for term in _split_top(negated.group(1), "and"))
        return parts
    implies = _split_top(expression, "implies")
    if len(implies) == 2:
        parts.append(f"({implies[0]}).not()")
        parts.append(implies[1])
    elif len(implies) == 1 and not _split_top(expression, "xor")[1:]:
        terms = _split_top(expression, "or")
        if len(terms) > 1:
            parts.extend(terms)
    return parts


def _split_top(expression: str, separator: str, *, keyword: bool = True) -> list[str]:
    """``expression`` split at ``separator`` (a keyword such as ``or``, or a symbol such as
    ``.``) outside parentheses and strings."""
    out, depth, start, i, n = [], 0, 0, 0, len(expression)
    size = len(separator)
    while i < n:
        char = expression[i]
        if char in "'`":
            end = i + 1
            while end < n and expression[end] != char:
                end += 2 if expression[end] == "\\" else 1
            i = end + 1
            continue
        if char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
        elif (
            depth == 0
            and expression.startswith(separator, i)
            and (
                not keyword
                or (
                    (i == 0 or not (expression[i - 1].isalnum() or expression[i - 1] == "_"))
                    and (i + size >= n or not expression[i + size].isalnum())
                )
            )
        ):
            out.append(expression[start:i].strip())
            start = i + size
            i = start
            continue
        i += 1
    out.append(expression[start:].strip())
    return out


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
    for invariant, value, partner, path, walk in queue:
        if invariant.native is not None:
            problem = invariant.native(value, walk)
        else:
            evaluator = invariant.evaluator
            assert evaluator is not None
            if full:
                problem = evaluator.evaluate_full(
                    value, invariant.fp_type, partner, walk.resource, walk.root
                )
            else:
                problem = evaluator.evaluate(
                    value, invariant.fp_type, partner, walk.resource, walk.root
                )
        if problem is not None:
            out.append((invariant, problem, path))
    return out


def applicable(invariant: CoreInvariant, obj: Any) -> bool:
    """False when a guard shows the invariant holds on ``obj`` without evaluating it."""
    guards = invariant.guards
    if guards is None or type(obj) is not dict:
        return True
    return all(not keys.isdisjoint(obj) for keys in guards)


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


def _same_shape(a: Any, b: Any) -> bool:
    """Two date/dateTime strings of the same precision and the same explicit offset: their
    text order is their time order."""
    if type(a) is not str or type(b) is not str or len(a) != len(b):
        return False
    if len(a) <= 10:
        return True  # dates of the same precision, no time zone
    if a[-1] == "Z" and b[-1] == "Z":
        return True
    return len(a) > 19 and a[-6] in "+-" and a[-6:] == b[-6:] and "." not in a[19:-6]


def _surely_ordered(a: Any, b: Any) -> bool:
    """A quick yes for ``a <= b`` (the common case); False means "look closer"."""
    if _same_shape(a, b):
        return a <= b
    if type(a) is str and type(b) is str and len(a) > 19 and len(b) > 19:
        try:  # two date-times with (different) offsets; C-fast parse
            return datetime.fromisoformat(a) <= datetime.fromisoformat(b)
        except (ValueError, TypeError):
            return False
    return False


def _per_1(value: Any, walk: Walk) -> str | None:
    if type(value) is not dict:
        return None
    start, end = value.get("start"), value.get("end")
    if start is None or end is None or _surely_ordered(start, end):
        return None
    start, end = _bounds(start), _bounds(end)
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
        a, b = value.get(earlier), value.get(later)
        if a is None or b is None or _surely_ordered(a, b):
            return None
        first, second = _bounds(a), _bounds(b)
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


def _bdl_entries(kind: str, types: frozenset[str]) -> Native:
    """bdl-3 / bdl-4: every entry has a request (response) exactly when the Bundle type says."""

    def check(value: Any, walk: Walk) -> str | None:
        if type(value) is not dict:
            return None
        expected = value.get("type") in types
        for index, entry in enumerate(value.get("entry") or ()):
            if type(entry) is dict and (kind in entry) != expected:
                has = "has" if kind in entry else "has no"
                return f"entry[{index}] {has} {kind} in a {value.get('type')} Bundle"
        return None

    return check


def _bdl_7(value: Any, walk: Walk) -> str | None:
    if type(value) is not dict or value.get("type") == "history":
        return None
    seen: set[str] = set()
    for entry in value.get("entry") or ():
        if type(entry) is not dict or "fullUrl" not in entry:
            continue
        resource = entry.get("resource")
        meta = resource.get("meta") if type(resource) is dict else None
        version = meta.get("versionId") if type(meta) is dict else None
        key = f"{entry['fullUrl']}{version or ''}"
        if key in seen:
            return f"the fullUrl {entry['fullUrl']} occurs more than once"
        seen.add(key)
    return None


def _bdl_first(bundle_type: str, resource_type: str) -> Native:
    """bdl-11 / bdl-12: a document (message) starts with a Composition (MessageHeader)."""

    def check(value: Any, walk: Walk) -> str | None:
        if type(value) is not dict or value.get("type") != bundle_type:
            return None
        entries = value.get("entry") or ()
        first = entries[0] if entries and type(entries[0]) is dict else {}
        resource = first.get("resource")
        if type(resource) is dict and resource.get("resourceType") == resource_type:
            return None
        return f"the first entry of a {bundle_type} must be a {resource_type}"

    return check


def _que_2(value: Any, walk: Walk) -> str | None:
    """``descendants().linkId.isDistinct()``: the linkIds of all items at any depth."""
    seen: set[Any] = set()
    stack = [value]
    while stack:
        items = stack.pop().get("item")
        if type(items) is not list:
            continue
        for item in items:
            if type(item) is not dict:
                continue
            link = item.get("linkId")
            if type(link) is str:
                if link in seen:
                    return f"the linkId {link!r} occurs more than once"
                seen.add(link)
            if "item" in item:
                stack.append(item)
    return None


def _que_7(value: Any, walk: Walk) -> str | None:
    if type(value) is not dict or value.get("operator") != "exists":
        return None
    if "answerBoolean" in value or "_answerBoolean" in value:
        return None
    return "the 'exists' operator needs answerBoolean"


_TRANSFER = frozenset({"batch", "transaction", "history"})
_RESPONSE = frozenset({"batch-response", "transaction-response", "history"})

# by key, or by (declaring type, key) where a key is not unique (inv-1 is Task's, Parameters'...)
_NATIVE: dict[str | tuple[str, str], Native] = {
    ("Task", "inv-1"): _date_order("authoredOn", "lastModified"),
    ("MedicationDispense", "mdd-1"): _date_order("whenPrepared", "whenHandedOver"),
    "bdl-3": _bdl_entries("request", _TRANSFER),
    "bdl-4": _bdl_entries("response", _RESPONSE),
    "bdl-7": _bdl_7,
    "bdl-11": _bdl_first("document", "Composition"),
    "bdl-12": _bdl_first("message", "MessageHeader"),
    "que-2": _que_2,
    "que-7": _que_7,
    "ref-1": _ref_1,
    "per-1": _per_1,
    "rng-2": _rng_2,
    "dom-3": _dom_3,
    "dom-6": _dom_6,
}
_NATIVE_KEYS: dict[str | tuple[str, str], frozenset[str] | None] = {
    ("Task", "inv-1"): frozenset({"authoredOn", "lastModified"}),
    ("MedicationDispense", "mdd-1"): frozenset({"whenPrepared", "whenHandedOver"}),
    "bdl-3": frozenset({"entry"}),
    "bdl-4": frozenset({"entry"}),
    "bdl-7": frozenset({"entry"}),
    "bdl-11": None,
    "bdl-12": None,
    "que-2": frozenset({"item"}),
    "que-7": frozenset({"operator"}),
    "ref-1": frozenset({"reference"}),
    "per-1": frozenset({"start", "end"}),
    "rng-2": frozenset({"low", "high"}),
    "dom-3": frozenset({"contained"}),
    "dom-6": None,
}


@cache
def plans_for(model: Model) -> CorePlans:
    return CorePlans(model)
