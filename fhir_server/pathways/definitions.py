"""PlanDefinitions and ActivityDefinitions as the engine uses them: compiled once per version, and
checked on every write (``DefinitionValidator``) so that a definition whose expressions do not
parse, name unknown variables, or relate actions that do not exist is refused with the location of
the problem, instead of failing later when a midwife applies it.

What is data and what is code: the applicability conditions, dynamic values, timing offsets,
triggers and data requirements are the definitions' own FHIR elements (R4 PlanDefinition.action
.condition / dynamicValue / relatedAction / trigger / input). The code only knows how to evaluate
them (FHIRPath through ``fhir_server.fhirpath``) and which variables it prepares
(``VARIABLES``, documented in docs/pathways.md).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from fhir_server import fhirpath
from fhir_server.errors import Issue

BIB = "https://borninbelgiumpro.be/fhir"
CS = BIB + "/CodeSystem/"
SD = BIB + "/StructureDefinition/"
NEED_DOMAIN = CS + "bib-need-domain"
LOSS_PHASE = CS + "bib-pregnancy-loss-phase"
LOSS_SCENARIO = CS + "bib-pregnancy-loss-scenario"
CARE_PATHWAY = CS + "bib-care-pathway"
INDICATOR = CS + "bib-vulnerability-indicator"
PMH_SEVERITY = CS + "bib-pmh-severity"
EXT_NEED_DOMAIN = SD + "bib-ext-need-domain"
EXT_LOSS_PHASE = SD + "bib-ext-loss-phase"
CAREPLAN_PROFILE = SD + "bib-careplan"
PATIENT_PROFILE = SD + "bib-patient"
TRANSLATION = "http://hl7.org/fhir/StructureDefinition/translation"
PERTAINS_TO_GOAL = "http://hl7.org/fhir/StructureDefinition/resource-pertainsToGoal"
FHIRPATH = "text/fhirpath"

# The %variables conditions and dynamic values may use (docs/pathways.md, "Variables").
VARIABLES: dict[str, str] = {
    "patient": "the subject Patient",
    "subject": "the subject Patient (same as %patient)",
    "today": "the date the plan is applied (FHIR date, server time zone)",
    "lossEvents": "recorded pregnancy losses, newest first: {scenario, date, reference, status}",
    "lossDate": "the lossDate parameter, if given",
    "dueDate": "the estimated due date (dueDate parameter, else LOINC 11778-8/11779-6/11780-4)",
    "birthDate": "the date the baby was born (birthDate parameter, else a delivery record)",
    "gestationalAgeWeeks": "gestational age in completed weeks on %today",
    "indicators": "the latest Observation per BiB vulnerability indicator",
    "flaggedIndicators": "codes of the indicators whose latest Observation is flagged",
    "scores": "latest EPDS / PHQ-9 / GAD-7 totals: {code, value, date, reference}",
    "severity": "perinatal mental-health severity: mild | moderate | severe | acute",
    "severityBasis": "where %severity comes from: 'assessment' or 'scores'",
    "conditions": "the patient's Conditions",
    "careTeams": "the patient's active CareTeams",
    "relatedPersons": "the patient's RelatedPersons",
    "encounter": "the encounter parameter (reference string)",
    "practitioner": "the practitioner parameter (reference string)",
    "organization": "the organization parameter (reference string)",
    "userType": "the userType parameter",
    "userLanguage": "the userLanguage parameter",
    "userTaskContext": "the userTaskContext parameter",
    "setting": "the setting parameter",
    "settingContext": "the settingContext parameter",
}
_TRIAL_PATIENT = {"resourceType": "Patient", "id": "trial"}
_TRIAL_VARIABLES: dict[str, Any] = {
    **{name: [] for name in VARIABLES},
    "patient": _TRIAL_PATIENT,
    "subject": _TRIAL_PATIENT,
    "today": "2026-01-01",
}
BUILTIN_VARIABLES = frozenset({"resource", "context", "rootResource", "ucum", "sct", "loinc"})
_VARIABLE = re.compile(r"%(`[^`]*`|'[^']*'|[A-Za-z_][A-Za-z0-9_\-]*)")
MAX_ACTIONS = 2000
MAX_DEPTH = 12


def variables_in(expression: str) -> set[str]:
    out = set()
    for match in _VARIABLE.finditer(expression):
        name = match.group(1)
        if name[0] in "`'":
            name = name[1:-1]
        out.add(name)
    return out


@dataclass(slots=True)
class Expr:
    expression: str
    description: str | None
    location: str


@dataclass(slots=True, eq=False)
class Action:
    location: str
    raw: dict[str, Any]
    id: str | None
    conditions: list[Expr] = field(default_factory=list)
    timing: Expr | None = None  # dynamicValue with path "timing": the action's own date (anchors)
    dynamic: list[tuple[str, Expr]] = field(default_factory=list)  # on the generated request
    related: list[dict[str, Any]] = field(default_factory=list)
    definition: str | None = None
    children: list[Action] = field(default_factory=list)

    @property
    def is_anchor(self) -> bool:
        return self.timing is not None and self.definition is None and not self.children


@dataclass(slots=True, eq=False)
class Plan:
    resource: dict[str, Any]
    url: str | None
    version: str | None
    actions: list[Action]
    by_id: dict[str, Action]
    variables: set[str]
    issues: list[Issue]

    @property
    def canonical(self) -> str | None:
        if self.url and self.version:
            return f"{self.url}|{self.version}"
        return self.url

    def walk(self) -> list[Action]:
        out: list[Action] = []
        stack = list(reversed(self.actions))
        while stack:
            action = stack.pop()
            out.append(action)
            stack.extend(reversed(action.children))
        return out


@dataclass(slots=True, eq=False)
class Activity:
    resource: dict[str, Any]
    url: str | None
    version: str | None
    kind: str | None
    dynamic: list[tuple[str, Expr]]
    variables: set[str]
    issues: list[Issue]

    @property
    def canonical(self) -> str | None:
        if self.url and self.version:
            return f"{self.url}|{self.version}"
        return self.url


class _Checker:
    """Collects the problems of one definition, each with its FHIRPath location."""

    def __init__(self) -> None:
        self.issues: list[Issue] = []
        self.variables: set[str] = set()

    def error(self, text: str, location: str, code: str = "invalid") -> None:
        self.issues.append(Issue("error", code, text, location))

    def expression(self, value: Any, location: str) -> Expr | None:
        if not isinstance(value, dict):
            self.error("an Expression is required here", location, "required")
            return None
        language = value.get("language")
        text = value.get("expression")
        if value.get("reference") and not text:
            self.error(
                "expressions by reference (Expression.reference) are not supported: give the "
                "FHIRPath inline in Expression.expression",
                f"{location}.reference",
                "not-supported",
            )
            return None
        if language != FHIRPATH:
            self.error(
                f"expression language {language!r} is not supported: this server evaluates "
                f"{FHIRPATH} only",
                f"{location}.language",
                "not-supported",
            )
            return None
        if not isinstance(text, str) or not text.strip():
            self.error("the expression is empty", f"{location}.expression", "required")
            return None
        try:
            fhirpath.check(text, strict=False)
        except fhirpath.FhirPathError as exc:
            self.error(str(exc), f"{location}.expression")
            return None
        names = variables_in(text)
        unknown = sorted(n for n in names if n not in VARIABLES and n not in BUILTIN_VARIABLES)
        if unknown:
            self.error(
                "unknown variable(s) "
                + ", ".join("%" + n for n in unknown)
                + "; known: "
                + ", ".join("%" + n for n in sorted(VARIABLES)),
                f"{location}.expression",
            )
            return None
        try:  # the parser alone lets some broken expressions through (tests/pathways)
            fhirpath.evaluate(text, _TRIAL_PATIENT, _TRIAL_VARIABLES, strict=False)
        except fhirpath.FhirPathError as exc:
            self.error(
                f"{exc} (the expression must evaluate on an empty record)",
                f"{location}.expression",
            )
            return None
        self.variables |= names
        description = value.get("description")
        return Expr(text, description if isinstance(description, str) else None, location)


def _dynamic_path_ok(path: Any) -> bool:
    return isinstance(path, str) and bool(
        re.fullmatch(r"[A-Za-z][A-Za-z0-9]*(\.[A-Za-z]\w*)*", path)
    )


def compile_plan(resource: dict[str, Any]) -> Plan:
    """The engine's view of a PlanDefinition, with every problem found (``issues``)."""
    check = _Checker()
    by_id: dict[str, Action] = {}
    count = 0

    def action_of(raw: Any, location: str, depth: int) -> Action | None:
        nonlocal count
        count += 1
        if not isinstance(raw, dict):
            return None
        if depth > MAX_DEPTH:
            check.error(f"actions are nested more than {MAX_DEPTH} levels deep", location)
            return None
        id_ = raw.get("id")
        action = Action(location, raw, id_ if isinstance(id_, str) else None)
        if action.id is not None:
            if action.id in by_id:
                check.error(f"two actions have the id {action.id!r}", f"{location}.id")
            by_id[action.id] = action
        for i, condition in enumerate(raw.get("condition") or ()):
            where = f"{location}.condition[{i}]"
            if not isinstance(condition, dict):
                continue
            if condition.get("kind") != "applicability":
                continue  # start / stop conditions are not evaluated when a plan is applied
            expr = check.expression(condition.get("expression"), f"{where}.expression")
            if expr is not None:
                action.conditions.append(expr)
        for i, dynamic in enumerate(raw.get("dynamicValue") or ()):
            where = f"{location}.dynamicValue[{i}]"
            if not isinstance(dynamic, dict):
                continue
            path = dynamic.get("path")
            if not _dynamic_path_ok(path):
                check.error(
                    f"dynamicValue.path {path!r} must be a simple element path (a.b.c)",
                    f"{where}.path",
                )
                continue
            expr = check.expression(dynamic.get("expression"), f"{where}.expression")
            if expr is None:
                continue
            if path == "timing":
                action.timing = expr
            else:
                action.dynamic.append((path, expr))
        for i, related in enumerate(raw.get("relatedAction") or ()):
            if isinstance(related, dict):
                related = {**related, "_location": f"{location}.relatedAction[{i}]"}
                action.related.append(related)
        definition = raw.get("definitionCanonical")
        if isinstance(definition, str) and definition:
            action.definition = definition
        elif raw.get("definitionUri"):
            check.error(
                "definitionUri is not supported: use definitionCanonical (an ActivityDefinition)",
                f"{location}.definitionUri",
                "not-supported",
            )
        for i, child in enumerate(raw.get("action") or ()):
            compiled = action_of(child, f"{location}.action[{i}]", depth + 1)
            if compiled is not None:
                action.children.append(compiled)
        return action

    actions = []
    for i, raw in enumerate(resource.get("action") or ()):
        compiled = action_of(raw, f"PlanDefinition.action[{i}]", 1)
        if compiled is not None:
            actions.append(compiled)
    if count > MAX_ACTIONS:
        check.error(f"a PlanDefinition may have at most {MAX_ACTIONS} actions", "PlanDefinition")
    plan = Plan(
        resource,
        resource.get("url") if isinstance(resource.get("url"), str) else None,
        resource.get("version") if isinstance(resource.get("version"), str) else None,
        actions,
        by_id,
        check.variables,
        check.issues,
    )
    _check_related(plan, check)
    return plan


RELATIONSHIPS = frozenset(
    {
        "before-start",
        "before",
        "before-end",
        "concurrent-with-start",
        "concurrent",
        "concurrent-with-end",
        "after-start",
        "after",
        "after-end",
    }
)


def _check_related(plan: Plan, check: _Checker) -> None:
    for action in plan.walk():
        for related in action.related:
            where = related["_location"]
            target = related.get("actionId")
            if target not in plan.by_id:
                check.error(
                    f"relatedAction.actionId {target!r} is not the id of an action of this "
                    "PlanDefinition",
                    f"{where}.actionId",
                )
            if related.get("relationship") not in RELATIONSHIPS:
                check.error(
                    f"relatedAction.relationship {related.get('relationship')!r} is not an R4 "
                    "action-relationship-type",
                    f"{where}.relationship",
                )
            for key in ("offsetDuration",):
                if key in related and not _quantity_ok(related[key]):
                    check.error("the offset needs a value and a time unit", f"{where}.{key}")
            if "offsetRange" in related:
                rng = related["offsetRange"]
                if not isinstance(rng, dict) or not all(
                    _quantity_ok(rng.get(k)) for k in ("low", "high") if k in rng
                ):
                    check.error("the offset range needs time quantities", f"{where}.offsetRange")
    # a cycle of relatedActions would make the dates depend on themselves
    state: dict[str, int] = {}

    def visit(action_id: str, trail: list[str]) -> None:
        if state.get(action_id) == 2:
            return
        if state.get(action_id) == 1:
            cycle = " -> ".join([*trail[trail.index(action_id) :], action_id])
            check.error(f"relatedActions form a cycle ({cycle})", plan.by_id[action_id].location)
            return
        state[action_id] = 1
        for related in plan.by_id[action_id].related:
            target = related.get("actionId")
            if target in plan.by_id:
                visit(target, [*trail, action_id])
        state[action_id] = 2

    for action_id in plan.by_id:
        visit(action_id, [])


TIME_UNITS = {
    "min": "min",
    "minute": "min",
    "minutes": "min",
    "h": "h",
    "hour": "h",
    "hours": "h",
    "d": "d",
    "day": "d",
    "days": "d",
    "wk": "wk",
    "week": "wk",
    "weeks": "wk",
    "mo": "mo",
    "month": "mo",
    "months": "mo",
    "a": "a",
    "year": "a",
    "years": "a",
}


def time_unit(quantity: Any) -> str | None:
    if not isinstance(quantity, dict):
        return None
    for key in ("code", "unit"):
        unit = quantity.get(key)
        if isinstance(unit, str) and unit in TIME_UNITS:
            return TIME_UNITS[unit]
    return None


def _quantity_ok(quantity: Any) -> bool:
    return (
        isinstance(quantity, dict)
        and isinstance(quantity.get("value"), (int, float))
        and not isinstance(quantity.get("value"), bool)
        and time_unit(quantity) is not None
    )


def compile_activity(resource: dict[str, Any]) -> Activity:
    check = _Checker()
    dynamic: list[tuple[str, Expr]] = []
    for i, item in enumerate(resource.get("dynamicValue") or ()):
        where = f"ActivityDefinition.dynamicValue[{i}]"
        if not isinstance(item, dict):
            continue
        path = item.get("path")
        if not _dynamic_path_ok(path):
            check.error(
                f"dynamicValue.path {path!r} must be a simple element path (a.b.c)",
                f"{where}.path",
            )
            continue
        expr = check.expression(item.get("expression"), f"{where}.expression")
        if expr is not None:
            dynamic.append((path, expr))
    kind = resource.get("kind")
    if kind is not None and kind not in SUPPORTED_KINDS:
        check.error(
            f"ActivityDefinition.kind {kind!r} cannot be applied here (supported: "
            + ", ".join(sorted(SUPPORTED_KINDS))
            + ")",
            "ActivityDefinition.kind",
            "not-supported",
        )
    return Activity(
        resource,
        resource.get("url") if isinstance(resource.get("url"), str) else None,
        resource.get("version") if isinstance(resource.get("version"), str) else None,
        kind if isinstance(kind, str) else None,
        dynamic,
        check.variables,
        check.issues,
    )


SUPPORTED_KINDS = frozenset({"ServiceRequest", "Task", "CommunicationRequest"})


class DefinitionValidator:
    """A ``ResourceValidator`` (service.profile_validators): every create, update, patch and
    transaction entry of a PlanDefinition or ActivityDefinition is checked, and so is
    ``$validate``; errors refuse the write (422) with their locations."""

    def validate(self, resource: dict, expected_type: str | None = None) -> list[Issue]:
        type_ = resource.get("resourceType") if isinstance(resource, dict) else None
        if type_ == "PlanDefinition":
            return compile_plan(resource).issues
        if type_ == "ActivityDefinition":
            return compile_activity(resource).issues
        return []


# -- text in the user's language


def localized(owner: dict[str, Any], key: str, languages: list[str]) -> str | None:
    """``owner[key]`` in the first of ``languages`` that has a translation (core ``translation``
    extension on ``_key``), else the element itself."""
    value = owner.get(key)
    if languages:
        from fhir_server.terminology.languages import matches

        translations = []
        for ext in (owner.get("_" + key) or {}).get("extension", ()) or ():
            if not isinstance(ext, dict) or ext.get("url") != TRANSLATION:
                continue
            lang = content = None
            for part in ext.get("extension", ()) or ():
                if part.get("url") == "lang":
                    lang = part.get("valueCode")
                elif part.get("url") == "content":
                    content = part.get("valueString") or part.get("valueMarkdown")
            if lang and content:
                translations.append((lang, content))
        for tag in languages:
            best = None
            best_score = 0
            for lang, content in translations:
                score = matches(lang, tag)
                if score > best_score:
                    best, best_score = content, score
            if best is not None:
                return best
            if tag.split("-")[0].lower() == str(owner.get("language", "en")).split("-")[0]:
                break
    return value if isinstance(value, str) else None
