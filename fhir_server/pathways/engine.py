"""Applying a PlanDefinition (and an ActivityDefinition) to a subject: R4 ``$apply``.

The steps follow R4 PlanDefinition "Applying a PlanDefinition":

1. each action's applicability conditions are evaluated (FHIRPath over the prepared variables);
   a child is only considered when its parent applies; if no top-level action applies, the plan
   does not apply (422, saying which condition failed);
2. the dates: anchor actions (a ``dynamicValue`` with path ``timing``, e.g. the loss date) give a
   day; ``relatedAction`` offsets and ``timingDuration`` turn every other action into concrete
   days; an anchor a needed action depends on that has no value is missing data (422 naming it);
3. every applicable action with a ``definitionCanonical`` becomes a request through its
   ActivityDefinition (ServiceRequest for referrals, Task for to-dos), with the action's title in
   the user's language, its need domain, performer types, dates, priority and dynamic values;
4. a RequestGroup holds the action tree (groups, the decision points with their
   ``selectionBehavior``, each action's dates and request), goals become Goal resources, and a
   CarePlan (draft, intent proposal) ties it together: ``instantiatesCanonical``, the pathway
   categories, the care team, the evidence (loss Condition in ``addresses``, indicator or score
   Observations in ``supportingInfo``), and one activity for the RequestGroup plus one per
   request (with need domain and loss phase extensions).

The result shares read-only parts (codes, participants) with the cached definitions instead of
copying them, and nothing in the engine changes them (dynamic values copy on write). It can be
rendered once: as the R4 operation returns it (a CarePlan with everything contained), as a
transaction Bundle that stores it in one go, or with server ids for the server's own writes
(pathway suggestions).
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from fhir_server import fhirpath
from fhir_server.errors import FhirError, Issue
from fhir_server.model.structure import Model
from fhir_server.pathways.definitions import (
    CARE_PATHWAY,
    CAREPLAN_PROFILE,
    EXT_LOSS_PHASE,
    EXT_NEED_DOMAIN,
    LOSS_PHASE,
    LOSS_SCENARIO,
    NEED_DOMAIN,
    PERTAINS_TO_GOAL,
    Action,
    Activity,
    Expr,
    Plan,
    localized,
)
from fhir_server.pathways.subject import SubjectData
from fhir_server.pathways.timing import Span, parse_date, related_span, shift, with_duration
from fhir_server.service.versioning import new_id

ActivityResolver = Callable[[str], Awaitable[Activity]]
GROUP_KEYS = (
    "prefix",
    "type",
    "groupingBehavior",
    "selectionBehavior",
    "requiredBehavior",
    "precheckBehavior",
    "cardinalityBehavior",
    "priority",
)


class Ref:
    """A reference to a resource of the result, resolved when the result is rendered."""

    __slots__ = ("local",)

    def __init__(self, local: str) -> None:
        self.local = local


CAREPLAN = "careplan"


@dataclass(slots=True)
class Inputs:
    """The operation's parameters, resolved."""

    subject: SubjectData
    languages: list[str]
    now: str
    encounter: str | None = None
    practitioner: str | None = None
    organization: str | None = None
    claim_profile: bool = False  # the subject conforms to the BiB Patient profile


@dataclass(slots=True)
class Applied:
    """The result of applying a plan, before its internal references are resolved. Rendering
    resolves them in place, so an Applied is rendered once."""

    careplan: dict[str, Any]
    resources: dict[str, dict[str, Any]]  # local id -> RequestGroup, Goal, requests
    order: list[str] = field(default_factory=list)
    holders: list[dict[str, Any]] = field(default_factory=list)  # {"reference": Ref}
    rendered: bool = False

    def _resolve(self, resolve: Callable[[str], str]) -> None:
        if self.rendered:
            raise RuntimeError("an applied plan is rendered once")
        self.rendered = True
        for holder in self.holders:
            holder["reference"] = resolve(holder["reference"].local)

    def _type(self, local: str) -> str:
        resource = self.careplan if local == CAREPLAN else self.resources[local]
        return resource["resourceType"]

    # -- renderings --------------------------------------------------------------------------------

    def contained(self) -> dict[str, Any]:
        """R4 ``$apply``: the CarePlan, with the RequestGroup, goals and requests contained."""
        self._resolve(lambda local: "#" if local == CAREPLAN else "#" + local)
        contained = []
        for local in self.order:
            resource = self.resources[local]
            contained.append({"resourceType": resource["resourceType"], "id": local, **resource})
        plan = dict(self.careplan)
        out = {"resourceType": "CarePlan"}
        if "meta" in plan:
            out["meta"] = plan.pop("meta")
        out["contained"] = contained
        plan.pop("resourceType")
        out.update(plan)
        return out

    def transaction(self) -> dict[str, Any]:
        """A transaction Bundle that stores the plan and everything it references at once."""
        urns = {local: f"urn:uuid:{uuid.uuid4()}" for local in [CAREPLAN, *self.order]}
        self._resolve(urns.__getitem__)
        entries = []
        for local in [CAREPLAN, *self.order]:
            resource = self.careplan if local == CAREPLAN else self.resources[local]
            entries.append(
                {
                    "fullUrl": urns[local],
                    "resource": resource,
                    "request": {"method": "POST", "url": resource["resourceType"]},
                }
            )
        return {"resourceType": "Bundle", "type": "transaction", "entry": entries}

    def with_ids(self) -> list[dict[str, Any]]:
        """The resources with server ids (CarePlan first), for the server's own writes."""
        ids = {local: new_id() for local in [CAREPLAN, *self.order]}
        self._resolve(lambda local: f"{self._type(local)}/{ids[local]}")
        out = []
        for local in [CAREPLAN, *self.order]:
            resource = self.careplan if local == CAREPLAN else self.resources[local]
            out.append({"resourceType": resource["resourceType"], "id": ids[local], **resource})
        return out

    def requests(self) -> list[dict[str, Any]]:
        return [
            self.resources[local]
            for local in self.order
            if self.resources[local]["resourceType"] not in ("RequestGroup", "Goal")
        ]


# -- errors


def unprocessable(text: str, code: str = "business-rule", where: str | None = None) -> FhirError:
    return FhirError(422, code, text, where)


def _evaluate(expr: Expr, data: SubjectData, what: str) -> list[Any]:
    try:
        return fhirpath.evaluate(expr.expression, data.patient, data.variables, strict=False)
    except fhirpath.FhirPathError as exc:
        raise unprocessable(f"the {what} at {expr.location} failed: {exc}", "processing") from exc


def _truth(expr: Expr, data: SubjectData) -> bool:
    result = _evaluate(expr, data, "condition")
    if result == [] or result == [False]:
        return False
    if result == [True]:
        return True
    raise unprocessable(
        f"the condition at {expr.location} ({expr.expression}) gave {result!r}, not a boolean",
        "processing",
    )


def _describe(expr: Expr) -> str:
    return expr.description or expr.expression


# -- apply a PlanDefinition


async def apply_plan(
    plan: Plan, inputs: Inputs, resolve: ActivityResolver, model: Model
) -> Applied:
    if plan.issues:
        first = plan.issues[0]
        raise FhirError(422, first.code, first.diagnostics, first.expression, issues=plan.issues)
    data = inputs.subject
    name = _plan_name(plan)

    # 1. applicability
    applicable: list[Action] = []
    included: set[int] = set()

    def visit(actions: list[Action]) -> None:
        for action in actions:
            if all(_truth(c, data) for c in action.conditions):
                applicable.append(action)
                included.add(id(action))
                visit(action.children)

    visit(plan.actions)
    if not any(id(a) in included for a in plan.actions):
        reasons = [_describe(c) for a in plan.actions for c in a.conditions if not _truth(c, data)]
        because = "; ".join(dict.fromkeys(reasons)) or "it has no actions"
        raise unprocessable(
            f"{name} does not apply to {data.reference}; it applies when {because}",
            where="PlanDefinition.action",
        )

    # 2. dates
    spans: dict[int, Span | None] = {}
    missing: dict[int, Action] = {}

    def span_of(action: Action) -> Span | None:
        key = id(action)
        if key in spans:
            return spans[key]
        spans[key] = None  # cycles are refused at write; this guards inline definitions
        result: Span | None = None
        if action.timing is not None:
            values = _evaluate(action.timing, data, "dynamic value")
            day = parse_date(values[0]) if values else None
            if day is None:
                missing[key] = action
            else:
                result = Span(day, day)
        else:
            for related in action.related:
                target = plan.by_id.get(related.get("actionId"))
                if target is None or id(target) not in included:
                    continue
                base = span_of(target)
                if base is not None:
                    result = related_span(base, related)
                break
        if result is not None:
            result = with_duration(result, action.raw)
        spans[key] = result
        return result

    for action in applicable:
        span_of(action)
    if missing:
        needs = [
            (localized(a.raw, "description", []) or localized(a.raw, "title", []) or a.id or "")
            for a in missing.values()
        ]
        raise FhirError(
            422,
            "required",
            f"{name} cannot be applied to {data.reference}: it needs " + "; and ".join(needs),
            issues=[
                Issue(
                    "error",
                    "required",
                    f"{name} cannot be applied to {data.reference}: it needs {need}",
                    a.location,
                )
                for need, a in zip(needs, missing.values(), strict=True)
            ],
        )

    # 3. requests
    builder = _Builder(plan, inputs, model)
    activities: dict[str, Activity] = {}
    for action in applicable:
        if action.definition and action.definition not in activities:
            activities[action.definition] = await resolve(action.definition)
    builder.goals()
    tree = builder.actions(plan.actions, included, spans, activities, phase=None)
    rg_title = localized(plan.resource, "title", inputs.languages)
    request_group: dict[str, Any] = {
        "resourceType": "RequestGroup",
        "instantiatesCanonical": [plan.canonical] if plan.canonical else [],
        "basedOn": [builder.ref(CAREPLAN)],
        "status": "draft",
        "intent": "proposal",
        "subject": {"reference": data.reference},
        "authoredOn": inputs.now,
        "action": tree,
    }
    if not request_group["instantiatesCanonical"]:
        del request_group["instantiatesCanonical"]
    if inputs.encounter:
        request_group["encounter"] = {"reference": inputs.encounter}
    author = inputs.practitioner or inputs.organization
    if author:
        request_group["author"] = {"reference": author}
    if builder.pathway:
        request_group["reasonCode"] = builder.pathway
    if rg_title:
        request_group["note"] = [{"text": rg_title}]
    builder.add("rg", request_group, first=True)
    builder.careplan(applicable, spans)
    return Applied(builder.plan_resource, builder.resources, builder.order, builder.holders)


def _plan_name(plan: Plan) -> str:
    id_ = plan.resource.get("id")
    return f"PlanDefinition/{id_}" if id_ else f"PlanDefinition {plan.url or '(inline)'}"


class _Builder:
    def __init__(self, plan: Plan, inputs: Inputs, model: Model) -> None:
        self.plan = plan
        self.inputs = inputs
        self.model = model
        self.data = inputs.subject
        self.langs = inputs.languages
        self.resources: dict[str, dict[str, Any]] = {}
        self.order: list[str] = []
        self.holders: list[dict[str, Any]] = []
        self.goal_ids: dict[str, str] = {}
        self.activity_entries: list[dict[str, Any]] = []
        self.plan_resource: dict[str, Any] = {}
        self.first_phase: dict[str, Any] | None = None
        self.evidence_refs: list[tuple[str, str]] = []  # (type, reference)
        # the pathway code rides on every generated resource (reasonCode), so that security
        # labels follow it (a depression pathway's tasks are labelled like the pathway)
        self.pathway = [
            {"coding": [c]}
            for topic in plan.resource.get("topic") or ()
            for c in (topic.get("coding") or ())
            if c.get("system") == CARE_PATHWAY
        ][:1]

    def ref(self, local: str) -> dict[str, Any]:
        """A reference to a resource of the result, resolved when the result is rendered."""
        holder: dict[str, Any] = {"reference": Ref(local)}
        self.holders.append(holder)
        return holder

    def add(self, local: str, resource: dict[str, Any], first: bool = False) -> None:
        self.resources[local] = resource
        if first:
            self.order.insert(0, local)
        else:
            self.order.append(local)

    # -- goals -------------------------------------------------------------------------------------

    def goals(self) -> None:
        for i, goal in enumerate(self.plan.resource.get("goal") or ()):
            if not isinstance(goal, dict):
                continue
            local = f"goal-{i + 1}"
            description = dict(goal.get("description") or {"text": "Goal"})
            text = localized(description, "text", self.langs)
            if text:
                description["text"] = text
            description.pop("_text", None)
            resource: dict[str, Any] = {
                "resourceType": "Goal",
                "lifecycleStatus": "proposed",
                "description": description,
                "subject": {"reference": self.data.reference},
                "startDate": self.data.today.isoformat(),
            }
            for key in ("category", "priority"):
                if goal.get(key):
                    resource[key] = goal[key]
            if self.pathway:  # the pathway code, so that security labels follow it
                resource["category"] = [*resource.get("category", []), *self.pathway]
            targets = []
            for target in goal.get("target") or ():
                due = target.get("due") if isinstance(target, dict) else None
                if isinstance(due, dict):
                    targets.append({"dueDate": shift(self.data.today, due).isoformat()})
            if targets:
                resource["target"] = targets
            self.add(local, resource)
            if isinstance(goal.get("id"), str):
                self.goal_ids[goal["id"]] = local

    # -- the action tree ---------------------------------------------------------------------------

    def actions(
        self,
        actions: list[Action],
        included: set[int],
        spans: dict[int, Span | None],
        activities: dict[str, Activity],
        phase: dict[str, Any] | None,
    ) -> list[dict[str, Any]]:
        out = []
        for action in actions:
            if not _emitted(action, included):
                continue  # R4 rqg-1: a RequestGroup action has a resource or actions
            raw = action.raw
            own_phase = next(
                (c for cc in raw.get("code") or () if (c := _coding(cc, LOSS_PHASE))), None
            )
            current_phase = own_phase or phase
            if own_phase and self.first_phase is None:
                self.first_phase = own_phase
            item: dict[str, Any] = {}
            if action.id:
                item["id"] = action.id
            title = localized(raw, "title", self.langs)
            if title:
                item["title"] = title
            description = localized(raw, "description", self.langs)
            if description:
                item["description"] = description
            if raw.get("textEquivalent"):
                item["textEquivalent"] = localized(raw, "textEquivalent", self.langs)
            if raw.get("code"):
                item["code"] = raw["code"]
            if raw.get("documentation"):
                item["documentation"] = raw["documentation"]
            related = []
            for r in action.related:
                target = self.plan.by_id.get(r.get("actionId"))
                if target is not None and _emitted(target, included):
                    related.append({k: v for k, v in r.items() if k != "_location"})
            if related:
                item["relatedAction"] = related
            span = spans.get(id(action))
            if span is not None:
                for key, value in span.as_timing().items():
                    item["timing" + key] = value
            for key in GROUP_KEYS:
                if raw.get(key) is not None:
                    item[key] = raw[key]
            for evidence in raw.get("input") or ():
                self._evidence(evidence)
            if action.definition:
                local = self.request(action, activities[action.definition], span, current_phase)
                item["resource"] = self.ref(local)
            if action.children:
                children = self.actions(action.children, included, spans, activities, current_phase)
                if children:
                    item["action"] = children
            out.append(item)
        return out

    def _evidence(self, requirement: Any) -> None:
        """A top-level action's input (DataRequirement) names the data the plan rests on."""
        if not isinstance(requirement, dict):
            return
        type_ = requirement.get("type")
        filters = requirement.get("codeFilter") or []
        pool = [
            r
            for resources in self.data.evidence.values()
            for r in resources
            if r.get("resourceType") == type_
        ]
        for resource in pool:
            if all(_matches_filter(resource, f) for f in filters if isinstance(f, dict)):
                ref = f"{type_}/{resource.get('id')}"
                if (type_, ref) not in self.evidence_refs:
                    self.evidence_refs.append((type_, ref))

    # -- requests ----------------------------------------------------------------------------------

    def request(
        self,
        action: Action,
        activity: Activity,
        span: Span | None,
        phase: dict[str, Any] | None,
    ) -> str:
        raw = action.raw
        resource = apply_activity(activity, self.inputs, span, self.model, action=action)
        local = f"{len(self.order):02d}-{_safe(action.id or activity.url or 'request')}"[:64]
        title = localized(raw, "title", self.langs) or localized(
            activity.resource, "title", self.langs
        )
        domains = [c for c in raw.get("code") or () if _coding(c, NEED_DOMAIN)]
        if not domains and activity.resource.get("topic"):
            domains = [c for c in activity.resource["topic"] if _coding(c, NEED_DOMAIN)]
        kind = resource["resourceType"]
        if kind == "ServiceRequest" and domains:
            resource["category"] = [d for d in domains] + resource.get("category", [])
        extensions = []
        for domain in domains:
            extensions.append({"url": EXT_NEED_DOMAIN, "valueCodeableConcept": domain})
        if phase is not None:
            extensions.append({"url": EXT_LOSS_PHASE, "valueCodeableConcept": {"coding": [phase]}})
        if kind in ("Task", "ServiceRequest") and extensions:
            resource["extension"] = list(extensions) + resource.get("extension", [])
        goal_refs = [self.goal_ids[g] for g in raw.get("goalId") or () if g in self.goal_ids]
        for goal in goal_refs:
            resource.setdefault("extension", []).append(
                {"url": PERTAINS_TO_GOAL, "valueReference": self.ref(goal)}
            )
        resource["basedOn"] = [self.ref(CAREPLAN)]
        if self.pathway and kind == "ServiceRequest":
            resource["reasonCode"] = self.pathway
        elif self.pathway and kind == "Task":
            resource["reasonCode"] = self.pathway[0]
        for path, expr in action.dynamic:
            _set_path(resource, path, _evaluate(expr, self.data, "dynamic value"), self.model, expr)
        self.add(local, resource)
        entry: dict[str, Any] = {}
        if extensions:
            entry["extension"] = extensions
        entry["reference"] = self.ref(local)
        if title:
            entry["reference"]["display"] = title
        self.activity_entries.append(entry)
        return local

    # -- the CarePlan ------------------------------------------------------------------------------

    def careplan(self, applicable: list[Action], spans: dict[int, Span | None]) -> None:
        plan = self.plan
        data = self.data
        inputs = self.inputs
        categories = [
            {"coding": [c]}
            for topic in plan.resource.get("topic") or ()
            for c in (topic.get("coding") or ())
            if c.get("system") in (CARE_PATHWAY, LOSS_SCENARIO)
        ]
        resource: dict[str, Any] = {"resourceType": "CarePlan"}
        author = inputs.practitioner or inputs.organization
        if (
            inputs.claim_profile
            and any(_coding(c, CARE_PATHWAY) for c in categories)
            and (author is None or author.startswith(("PractitionerRole/", "Organization/")))
        ):
            resource["meta"] = {"profile": [CAREPLAN_PROFILE]}
        if self.first_phase is not None:
            resource["extension"] = [
                {
                    "url": EXT_LOSS_PHASE,
                    "valueCodeableConcept": {"coding": [self.first_phase]},
                }
            ]
        if plan.canonical:
            resource["instantiatesCanonical"] = [plan.canonical]
        resource["status"] = "draft"
        resource["intent"] = "proposal"
        if categories:
            resource["category"] = categories
        title = localized(plan.resource, "title", self.langs)
        if title:
            resource["title"] = title
        description = localized(plan.resource, "description", self.langs)
        if description:
            resource["description"] = description
        resource["subject"] = {"reference": data.reference}
        if inputs.encounter:
            resource["encounter"] = {"reference": inputs.encounter}
        days = [s.start for a in applicable if (s := spans.get(id(a))) is not None]
        start = min([*days, data.today]) if days else data.today
        resource["period"] = {"start": start.isoformat()}
        resource["created"] = inputs.now
        author = inputs.practitioner or inputs.organization
        if author:
            resource["author"] = {"reference": author}
        teams = [
            {"reference": f"CareTeam/{t['id']}"}
            for t in data.variables.get("careTeams") or ()
            if isinstance(t, dict) and t.get("id")
        ]
        if teams:
            resource["careTeam"] = teams
        addresses = [{"reference": r} for t, r in self.evidence_refs if t == "Condition"]
        if addresses:
            resource["addresses"] = addresses
        supporting = [{"reference": r} for t, r in self.evidence_refs if t != "Condition"]
        if supporting:
            resource["supportingInfo"] = supporting
        goals = [local for local in self.order if local.startswith("goal-")]
        if goals:
            resource["goal"] = [self.ref(g) for g in goals]
        resource["activity"] = [{"reference": self.ref("rg")}, *self.activity_entries]
        if "severity" in plan.variables and data.variables.get("severityBasis") == "scores":
            scores = ", ".join(
                f"{s['instrument']} {s['value']}" for s in data.variables.get("scores") or ()
            )
            resource["note"] = [
                {
                    "text": f"Severity '{data.variables['severity']}' was derived from the "
                    f"screening scores ({scores}); confirm it with a clinical assessment."
                }
            ]
        self.plan_resource = resource


# -- apply an ActivityDefinition


def apply_activity(
    activity: Activity,
    inputs: Inputs,
    span: Span | None,
    model: Model,
    action: Action | None = None,
) -> dict[str, Any]:
    """The request an ActivityDefinition describes, for the subject (R4 ActivityDefinition
    ``$apply``); with ``action``, the PlanDefinition action's title, performers, timing and
    priority override the definition's."""
    if activity.issues:
        first = activity.issues[0]
        raise FhirError(
            422, first.code, first.diagnostics, first.expression, issues=activity.issues
        )
    ad = activity.resource
    data = inputs.subject
    langs = inputs.languages
    kind = activity.kind or "Task"
    raw = action.raw if action is not None else {}
    title = localized(raw, "title", langs) or localized(ad, "title", langs)
    description = localized(raw, "description", langs) or localized(ad, "description", langs)
    code = dict(ad["code"]) if isinstance(ad.get("code"), dict) else None
    if code is not None and title:
        code["text"] = title
    roles = [
        p["role"]
        for p in (raw.get("participant") or ad.get("participant") or ())
        if isinstance(p, dict)
        and isinstance(p.get("role"), dict)
        and p.get("type", "practitioner") == "practitioner"
    ]
    priority = raw.get("priority") or ad.get("priority")
    if span is None and action is None:
        span = _own_timing(ad, data.today)
    author = inputs.practitioner or inputs.organization
    resource: dict[str, Any] = {"resourceType": kind}
    if kind == "ServiceRequest":
        if activity.canonical:
            resource["instantiatesCanonical"] = [activity.canonical]
        resource["status"] = "draft"
        resource["intent"] = "proposal"
        if priority:
            resource["priority"] = priority
        resource["code"] = code or {"text": title or "Service"}
        resource["subject"] = {"reference": data.reference}
        if inputs.encounter:
            resource["encounter"] = {"reference": inputs.encounter}
        if span is not None:
            for key, value in span.as_timing().items():
                resource["occurrence" + key] = value
        resource["authoredOn"] = inputs.now
        if author:
            resource["requester"] = {"reference": author}
        if roles:
            resource["performerType"] = roles[0]
        if description:
            resource["note"] = [{"text": description}]
    elif kind == "CommunicationRequest":
        resource["status"] = "draft"
        if priority:
            resource["priority"] = priority
        resource["subject"] = {"reference": data.reference}
        if inputs.encounter:
            resource["encounter"] = {"reference": inputs.encounter}
        resource["payload"] = [{"contentString": description or title or "Message"}]
        if span is not None:
            for key, value in span.as_timing().items():
                resource["occurrence" + key] = value
        resource["authoredOn"] = inputs.now
        if author:
            resource["requester"] = {"reference": author}
    else:  # Task
        if activity.canonical:
            resource["instantiatesCanonical"] = activity.canonical
        resource["status"] = "draft"
        resource["intent"] = "proposal"
        if priority:
            resource["priority"] = priority
        if code is not None:
            resource["code"] = code
        text = title or "Task"
        if description and description != title:
            text = f"{text}: {description}"
        resource["description"] = text
        resource["for"] = {"reference": data.reference}
        if inputs.encounter:
            resource["encounter"] = {"reference": inputs.encounter}
        resource["authoredOn"] = inputs.now
        if author:
            resource["requester"] = {"reference": author}
        if roles:
            resource["performerType"] = roles
        if span is not None:
            resource["restriction"] = {"period": span.as_period()}
    for path, expr in activity.dynamic:
        _set_path(resource, path, _evaluate(expr, data, "dynamic value"), model, expr)
    return resource


def _emitted(action: Action, included: set[int]) -> bool:
    """Whether an applicable action goes into the RequestGroup: it asks for something (a
    request) or groups actions that do. A milestone without either (the loss event the other
    actions are timed from) has done its work once their dates are computed: R4's rqg-1 allows
    no RequestGroup action without a resource or actions."""
    if id(action) not in included:
        return False
    return bool(action.definition) or any(_emitted(c, included) for c in action.children)


def _own_timing(ad: dict[str, Any], today: date) -> Span | None:
    if isinstance(ad.get("timingDateTime"), str):
        day = parse_date(ad["timingDateTime"])
        return Span(day, day) if day else None
    duration = ad.get("timingDuration")
    if isinstance(duration, dict):
        return Span(today, shift(today, duration))
    return None


# -- helpers


def _coding(concept: Any, system: str) -> dict[str, Any] | None:
    if not isinstance(concept, dict):
        return None
    for coding in concept.get("coding") or ():
        if isinstance(coding, dict) and coding.get("system") == system:
            return coding
    return None


def _matches_filter(resource: dict[str, Any], code_filter: dict[str, Any]) -> bool:
    path = code_filter.get("path")
    wanted = {(c.get("system"), c.get("code")) for c in code_filter.get("code") or ()}
    if not isinstance(path, str) or not wanted:
        return True
    value = resource.get(path)
    concepts = value if isinstance(value, list) else [value]
    for concept in concepts:
        for coding in (concept or {}).get("coding", ()) if isinstance(concept, dict) else ():
            if (coding.get("system"), coding.get("code")) in wanted:
                return True
    if code_filter.get("path") == "value":
        return _matches_filter(resource, {**code_filter, "path": "valueCodeableConcept"})
    return False


def _safe(text: str) -> str:
    out = "".join(ch if ch.isalnum() or ch in "-." else "-" for ch in text.rsplit("/", 1)[-1])
    return out.strip("-") or "request"


def _set_path(
    resource: dict[str, Any], path: str, values: list[Any], model: Model, expr: Expr
) -> None:
    """R4 dynamicValue: put the expression's values at ``path`` of the generated resource."""
    type_ = resource["resourceType"]
    parts = path.split(".")
    target: Any = resource
    for depth, part in enumerate(parts):
        element = model.element_at(".".join([type_, *parts[: depth + 1]]))
        if element is None:
            raise unprocessable(
                f"the dynamic value at {expr.location} sets {path}, which {type_} does not have",
                "processing",
                expr.location,
            )
        last = depth == len(parts) - 1
        if last:
            if not values:
                return
            target[part] = list(values) if element.repeats else values[0]
            return
        # copy on write: parts of the result may be shared with the (cached) definitions
        child = target.get(part)
        if element.repeats:
            items = list(child) if isinstance(child, list) and child else [{}]
            items[0] = dict(items[0]) if isinstance(items[0], dict) else {}
            target[part] = items
            target = items[0]
        else:
            child = dict(child) if isinstance(child, dict) else {}
            target[part] = child
            target = child
