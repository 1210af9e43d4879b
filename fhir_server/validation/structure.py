"""Structural validation of resources against the R4 4.0.1 base definitions.

Driven entirely by the R4 type model: unknown or misspelt elements, R4B/R5-only elements, arrays
where one value is allowed (and the reverse), wrong JSON types, primitive formats, missing required
elements, empty objects/arrays/strings, and unsafe narrative are all errors with a FHIRPath
location. It runs on every write, so it is a single pass over the JSON without building objects.

The same pass queues the invariants of the R4 base definitions (``core_invariants.py``) where
their elements occur; when the structure is sound they are evaluated, each failure an issue with
the invariant's key and the FHIRPath location of the element.
"""

from __future__ import annotations

from typing import Any

from fhir_server.errors import Issue
from fhir_server.model.structure import PRIMITIVE_TYPES, ComplexType, Model, r4_model
from fhir_server.terminology import Catalog, default_catalog
from fhir_server.validation.core_invariants import (
    R4_SD,
    Queued,
    Walk,
    applicable,
    evaluate_queue,
    plans_for,
)
from fhir_server.validation.primitives import primitive_checks

MAX_DEPTH = 64
_MISSING = object()
_ID_CHECK_TYPE = "id"
_NO_WALK = Walk({}, {})


class _Run(list):
    """The issues of one validation, plus what the walk gathered for the invariants."""

    __slots__ = ("best_practice", "partial", "plans", "queue", "walk")

    def __init__(self, best_practice: bool, plans: dict) -> None:  # the list starts empty
        self.best_practice = best_practice
        self.plans = plans
        self.queue: list[Queued] = []
        self.walk: Walk = _NO_WALK
        self.partial = False  # some primitive has no value (only "_name" or a null in an array)


class StructuralValidator:
    def __init__(self, model: Model | None = None, catalog: Catalog | None = None) -> None:
        self.model = model or r4_model()
        self.checks = primitive_checks()
        self.catalog = catalog if catalog is not None else default_catalog()
        self._bindings: dict[str, object] = {}
        self.plans = plans_for(self.model)
        # structure name -> (its invariants, its elements' invariants by JSON key, or None when
        # it has none); one cache without, one with the best-practice invariants
        self._plan_caches: tuple[dict[str, tuple[tuple, dict | None]], ...] = ({}, {})

    def validate(
        self, resource: object, expected_type: str | None = None, best_practice: bool = False
    ) -> list[Issue]:
        """Issues of ``resource``; ``best_practice`` adds the best-practice invariants (dom-6,
        con-3) as warnings, for $validate (a write ignores warnings, so it skips them)."""
        if not isinstance(resource, dict):
            return [Issue("error", "structure", "a resource must be a JSON object")]
        issues = _Run(best_practice, self._plan_caches[best_practice])
        self._resource(resource, expected_type or "", "", issues, 0, contained=False)
        if issues.queue:
            if not any(i.severity == "error" for i in issues):
                self._invariants(issues)
            issues.queue = []
        return issues

    def _invariants(self, run: _Run) -> None:
        for invariant, problem, path in evaluate_queue(run.queue, run.partial):
            source = R4_SD + invariant.source
            if problem.startswith("could not be evaluated"):
                text = f"{invariant.key} {problem}: {invariant.expression}"
                run.append(Issue("warning", "invariant", text, path, invariant.key, source))
                continue
            text = f"{invariant.key}: {invariant.human}"
            if invariant.native is not None and problem != invariant.human:
                text += f" ({problem})"
            elif invariant.native is None:
                text += f" [{invariant.expression}]"
            severity = "error" if invariant.severity == "error" else "warning"
            run.append(Issue(severity, "invariant", text, path, invariant.key, source))

    # -- resources -------------------------------------------------------------------------

    def _resource(
        self, obj: dict, expected: str, path: str, issues: list[Issue], depth: int, contained: bool
    ) -> None:
        resource_type = obj.get("resourceType")
        where = path or (resource_type if isinstance(resource_type, str) else "")
        if not isinstance(resource_type, str) or not self.model.is_resource(resource_type):
            issues.append(
                Issue(
                    "error",
                    "structure",
                    f"unknown or missing resourceType {resource_type!r}",
                    where or None,
                )
            )
            return
        if expected and expected not in ("Resource", "DomainResource", resource_type):
            issues.append(
                Issue(
                    "error",
                    "invalid",
                    f"expected a {expected} resource, got {resource_type}",
                    where,
                )
            )
            return
        structure = self.model.types[resource_type]
        root = path or resource_type
        if contained:
            self._contained_rules(obj, root, issues)
        run = issues if type(issues) is _Run else None
        if run is None:
            self._object(obj, structure, root, issues, depth + 1, resource_root=True)
            return
        outer = run.walk
        # %resource is the resource itself; %rootResource its container when it is contained
        # (a Bundle entry, Parameters resource or response outcome stands on its own)
        run.walk = Walk(obj, outer.root if contained and outer is not _NO_WALK else obj)
        try:
            self._object(obj, structure, root, issues, depth + 1, resource_root=True)
        finally:
            run.walk = outer

    def _contained_rules(self, obj: dict, path: str, issues: list[Issue]) -> None:
        if "contained" in obj:
            issues.append(
                Issue(
                    "error",
                    "invariant",
                    "a contained resource cannot contain resources (dom-2)",
                    path,
                    "dom-2",
                    R4_SD + "DomainResource",
                )
            )
        meta = obj.get("meta")
        if isinstance(meta, dict) and ("versionId" in meta or "lastUpdated" in meta):
            issues.append(
                Issue(
                    "error",
                    "invariant",
                    "a contained resource cannot have meta.versionId or meta.lastUpdated (dom-4)",
                    path,
                    "dom-4",
                    R4_SD + "DomainResource",
                )
            )
        if isinstance(meta, dict) and "security" in meta:
            issues.append(
                Issue(
                    "error",
                    "invariant",
                    "a contained resource cannot have security labels (dom-5)",
                    path,
                    "dom-5",
                    R4_SD + "DomainResource",
                )
            )

    # -- objects ---------------------------------------------------------------------------

    def _object(
        self,
        obj: dict,
        structure: ComplexType,
        path: str,
        issues: list[Issue],
        depth: int,
        resource_root: bool = False,
        has_value: bool = False,
    ) -> None:
        if depth > MAX_DEPTH:
            issues.append(Issue("error", "structure", "the content is nested too deeply", path))
            return
        if not obj or (len(obj) == 1 and "id" in obj and not resource_root and not has_value):
            issues.append(
                Issue(
                    "error",
                    "structure",
                    "an element must have a value or children other than id (ele-1)",
                    path,
                    "ele-1",
                    R4_SD + "Element",
                )
            )
            return
        keys = structure.keys
        choices: dict[str, str] | None = None
        run = issues if type(issues) is _Run else None
        element_plan = None
        if run is not None:
            plan = run.plans.get(structure.name)
            if plan is None:
                plan = self._plan(structure, run.best_practice)
            type_plan, element_plan = plan
            for invariant in type_plan:
                guards = invariant.guards
                if guards is not None:
                    for guard in guards:
                        if guard.isdisjoint(obj):
                            break
                    else:
                        run.queue.append((invariant, obj, None, path, run.walk))
                else:
                    run.queue.append((invariant, obj, None, path, run.walk))
        for key, value in obj.items():
            if resource_root and key == "resourceType":
                continue
            spec = keys.get(key)
            if spec is None:
                issues.append(
                    Issue("error", "structure", f"unknown element {key!r}", f"{path}.{key}")
                )
                continue
            element = spec.element
            if element.choice:  # value[x] holds one type: valueString and valueBoolean clash
                choices = choices if choices is not None else {}
                chosen = choices.setdefault(element.name, spec.type_code)
                if chosen != spec.type_code:
                    issues.append(
                        Issue(
                            "error",
                            "structure",
                            f"{element.name}[x] can have only one type, but both {chosen} and "
                            f"{spec.type_code} are present",
                            f"{path}.{element.name}",
                        )
                    )
                    continue
            where = (
                f"{path}.{element.name}"
                if not element.choice
                else (f"{path}.{element.name}.ofType({spec.type_code})")
            )
            if spec.extension_part and run is not None and key[1:] not in obj:
                run.partial = True  # a primitive with extensions and no value
            if element_plan is not None:
                own = element_plan.get(key[1:] if spec.extension_part else key)
                if own is not None and (not spec.extension_part or key[1:] not in obj):
                    self._queue_element(run, own, obj, key, spec.extension_part, where)  # type: ignore[arg-type]
            if element.repeats:
                if not isinstance(value, list):
                    issues.append(
                        Issue(
                            "error",
                            "structure",
                            f"{element.name} repeats, so it must be a JSON array",
                            where,
                        )
                    )
                    continue
                if not value:
                    issues.append(Issue("error", "structure", "an array must not be empty", where))
                    continue
                if spec.extension_part or spec.type_code in PRIMITIVE_TYPES:
                    partner = obj.get(key[1:] if spec.extension_part else "_" + key)
                    self._primitive_array(
                        value, partner, spec.type_code, spec.extension_part, where, issues, depth
                    )
                    if spec.type_code == "code" and element.binding_strength == "required":
                        for index, item in enumerate(value):
                            if isinstance(item, str):
                                self._code_binding(item, element, f"{where}[{index}]", issues)
                    continue
                for index, item in enumerate(value):
                    self._value(item, spec.type_code, element, f"{where}[{index}]", issues, depth)
                if element.max is not None and len(value) > element.max:
                    issues.append(
                        Issue(
                            "error",
                            "structure",
                            f"{element.name} allows at most {element.max} values",
                            where,
                        )
                    )
            else:
                if isinstance(value, list):
                    issues.append(
                        Issue(
                            "error",
                            "structure",
                            f"{element.name} does not repeat, so it must not be an array",
                            where,
                        )
                    )
                    continue
                if spec.extension_part:
                    self._element_extension(value, where, issues, depth, key[1:] in obj)
                elif resource_root and key == "id":
                    self._primitive(value, _ID_CHECK_TYPE, where, issues)
                else:
                    self._value(value, spec.type_code, element, where, issues, depth)
        for element in structure.required:
            if not any(k in obj or ("_" + k) in obj for k in structure.json_keys_of(element)):
                issues.append(
                    Issue(
                        "error",
                        "required",
                        f"{element.name} is required (minimum cardinality {element.min})",
                        f"{path}.{element.name}",
                    )
                )
        if structure.name == "Extension":
            self._extension_rules(obj, path, issues)

    def _plan(self, structure: ComplexType, best_practice: bool) -> tuple[tuple, dict | None]:
        def keep(invariants: tuple) -> tuple:
            return tuple(i for i in invariants if best_practice or not i.best_practice)

        elements = {
            key: kept
            for key, invariants in self.plans.element_plan(structure).items()
            if (kept := keep(invariants))
        }
        plan = (keep(self.plans.type_plan(structure)), elements or None)
        self._plan_caches[best_practice][structure.name] = plan
        return plan

    def _queue_element(
        self, run: _Run, invariants, obj: dict, key: str, extension_only: bool, where: str
    ) -> None:
        name = key[1:] if extension_only else key
        value = obj.get(name)
        partner = obj.get("_" + name)
        if isinstance(value, list) or isinstance(partner, list):
            values = value if isinstance(value, list) else []
            partners = partner if isinstance(partner, list) else []
            for index in range(max(len(values), len(partners))):
                item = values[index] if index < len(values) else None
                extra = partners[index] if index < len(partners) else None
                self._queue_value(run, invariants, item, extra, f"{where}[{index}]")
            return
        self._queue_value(run, invariants, value, partner, where)

    def _queue_value(self, run: _Run, invariants, value: Any, partner: Any, where: str) -> None:
        for invariant in invariants:
            if applicable(invariant, value):
                run.queue.append((invariant, value, partner, where, run.walk))

    def _value(
        self, value, type_code: str, element, path: str, issues: list[Issue], depth: int
    ) -> None:
        if type_code in PRIMITIVE_TYPES:
            self._primitive(value, type_code, path, issues)
            if (
                type_code == "code"
                and element.binding_strength == "required"
                and (isinstance(value, str))
            ):
                self._code_binding(value, element, path, issues)
            return
        if type_code == "Resource" or self.model.kinds.get(type_code) == "resource":
            # contained, Bundle.entry.resource, Parameters.parameter.resource (any resource),
            # Bundle.entry.response.outcome (an OperationOutcome): a resource inline
            if not isinstance(value, dict):
                issues.append(Issue("error", "structure", "expected a resource object", path))
                return
            expected = "" if type_code == "Resource" else type_code
            self._resource(
                value, expected, path, issues, depth, contained=element.name == "contained"
            )
            return
        if not isinstance(value, dict):
            issues.append(
                Issue("error", "structure", f"expected a JSON object for {type_code}", path)
            )
            return
        structure = (
            element.children if element.children is not None else (self.model.types.get(type_code))
        )
        if structure is None:
            issues.append(Issue("error", "not-supported", f"type {type_code} is not known", path))
            return
        self._object(value, structure, path, issues, depth + 1)
        if element.binding_strength == "required" and type_code in ("Coding", "CodeableConcept"):
            self._coding_binding(value, type_code, element, path, issues)

    # -- required bindings ---------------------------------------------------------------------

    def _expansion(self, url: str) -> tuple[frozenset, frozenset[str]] | None:
        found = self._bindings.get(url, _MISSING)
        if found is _MISSING:
            codes = self.catalog.expand(url) if self.catalog is not None else None
            found = None if codes is None else (codes, frozenset(code for _, code in codes))
            self._bindings[url] = found
        return found  # type: ignore[return-value]

    def _code_binding(self, code: str, element, path: str, issues: list[Issue]) -> None:
        expansion = self._expansion(element.binding_value_set or "")
        if expansion is not None and code not in expansion[1]:
            issues.append(
                Issue(
                    "error",
                    "code-invalid",
                    f"{code!r} is not in the value set {element.binding_value_set} that "
                    f"{element.path} requires",
                    path,
                )
            )

    def _coding_binding(
        self, value: dict, type_code: str, element, path: str, issues: list[Issue]
    ) -> None:
        expansion = self._expansion(element.binding_value_set or "")
        if expansion is None:
            return
        codings = [value] if type_code == "Coding" else value.get("coding") or []
        codings = [c for c in codings if isinstance(c, dict) and isinstance(c.get("code"), str)]
        if not codings:
            return
        pairs, codes = expansion
        for coding in codings:
            system = coding.get("system")
            if (system, coding["code"]) in pairs or (system is None and coding["code"] in codes):
                return
        issues.append(
            Issue(
                "error",
                "code-invalid",
                f"none of the codes is in the value set {element.binding_value_set} that "
                f"{element.path} requires",
                path,
            )
        )

    def _primitive(self, value, type_code: str, path: str, issues: list[Issue]) -> None:
        problem = self.checks[type_code](value)
        if problem:
            issues.append(Issue("error", "value", problem, path))

    def _primitive_array(
        self,
        values: list,
        partner,
        type_code: str,
        extension_part: bool,
        path: str,
        issues: list[Issue],
        depth: int,
    ) -> None:
        partner_list = partner if isinstance(partner, list) else None
        if partner_list is not None and len(partner_list) != len(values):
            issues.append(
                Issue(
                    "error",
                    "structure",
                    "a primitive array and its '_' extension array must have the same length",
                    path,
                )
            )
        for index, item in enumerate(values):
            where = f"{path}[{index}]"
            if item is None:
                other = partner_list[index] if partner_list and index < len(partner_list) else None
                if type(issues) is _Run:
                    issues.partial = True
                if other is None:
                    issues.append(
                        Issue(
                            "error",
                            "structure",
                            "null is only allowed where the matching '_' entry has content",
                            where,
                        )
                    )
                continue
            if extension_part:
                values = partner if isinstance(partner, list) else []
                has_value = index < len(values) and values[index] is not None
                self._element_extension(item, where, issues, depth, has_value)
            else:
                self._primitive(item, type_code, where, issues)

    def _element_extension(
        self, value, path: str, issues: list[Issue], depth: int, has_value: bool
    ) -> None:
        if not isinstance(value, dict):
            issues.append(
                Issue(
                    "error",
                    "structure",
                    "a '_' property must hold an object with id/extension",
                    path,
                )
            )
            return
        self._object(
            value, self.model.types["Element"], path, issues, depth + 1, has_value=has_value
        )

    def _extension_rules(self, obj: dict, path: str, issues: list[Issue]) -> None:
        # a primitive value given only as "_valueString" (extensions, no value) is a value too
        has_value = any(k.startswith(("value", "_value")) for k in obj)
        if has_value and "extension" in obj:
            issues.append(
                Issue(
                    "error",
                    "invariant",
                    "an extension must have either extensions or a value, not both (ext-1)",
                    path,
                    "ext-1",
                    R4_SD + "Extension",
                )
            )
        if not has_value and "extension" not in obj:
            issues.append(
                Issue(
                    "error",
                    "invariant",
                    "an extension must have either extensions or a value (ext-1)",
                    path,
                    "ext-1",
                    R4_SD + "Extension",
                )
            )
