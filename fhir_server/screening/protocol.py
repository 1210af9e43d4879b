"""The stepped screening protocol, as data: PlanDefinitions evaluated on every completed response.

A protocol is a PlanDefinition (``content/screening/PlanDefinition-bib-stepped-screening.json``
ships the Flemish protocol of standards.md 1.3). Each of its actions that has a ``trigger`` of
type ``data-added`` on a QuestionnaireResponse, with a ``codeFilter`` on the path
``questionnaire`` (system ``urn:ietf:rfc:3986``, code = the Questionnaire's canonical URL), is a
*step*: when a response to that Questionnaire is completed (or amended), the step's
``condition``s of kind ``applicability`` (FHIRPath, with ``%resource`` = the response and
``%questionnaire``) are evaluated; if all hold, each of its sub-actions (or the action itself)
becomes a Task: ``definitionCanonical`` is the Questionnaire to fill in (Task.focus and the SDC
``questionnaire`` input), ``code`` the kind of step, ``reason`` the Task's reasonCode (which also
drives its security labels), ``priority``, and ``timingDuration`` the time until it is due
(Task.restriction.period.end). The Task is owned by the responsible professional
(``workflow.responsible_professional``) and points back at the response (reasonReference) and at
the action (``instantiatesUri`` = ``<PlanDefinition url>#<action id>``). An open Task from the
same action for the same patient and Questionnaire is not duplicated.

Moving this onto ``PlanDefinition/$apply`` later: the same actions are valid input for $apply
(conditions in FHIRPath, definitionCanonical to Questionnaires), so an $apply engine that fires
on the same trigger would produce the same RequestGroup actions; this evaluator only needs the
small subset above and writes Tasks directly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from fhir_server import fhirpath
from fhir_server.errors import Issue
from fhir_server.json_codec import loads_trusted
from fhir_server.screening import constants as C
from fhir_server.store.protocol import StoredVersion

URI_SYSTEM = "urn:ietf:rfc:3986"
DURATION_UNITS = {
    "s": 1,
    "min": 60,
    "h": 3600,
    "d": 86400,
    "wk": 7 * 86400,
    "mo": 30 * 86400,
    "a": 365 * 86400,
}


@dataclass(slots=True)
class Target:
    definition: str | None
    action: dict[str, Any]


@dataclass(slots=True)
class Step:
    plan_url: str
    plan_title: str
    action: dict[str, Any]
    action_id: str
    questionnaire: str
    conditions: list[tuple[str, str]]  # (expression, location)
    targets: list[Target] = field(default_factory=list)

    @property
    def uri(self) -> str:
        return f"{self.plan_url}#{self.action_id}"


def _trigger_questionnaires(action: dict[str, Any]) -> list[str]:
    out = []
    for trigger in action.get("trigger", ()) or ():
        if not isinstance(trigger, dict) or trigger.get("type") != "data-added":
            continue
        for data in trigger.get("data", ()) or ():
            if not isinstance(data, dict) or data.get("type") != "QuestionnaireResponse":
                continue
            for code_filter in data.get("codeFilter", ()) or ():
                if not isinstance(code_filter, dict) or code_filter.get("path") != "questionnaire":
                    continue
                for coding in code_filter.get("code", ()) or ():
                    if (
                        isinstance(coding, dict)
                        and coding.get("system") == URI_SYSTEM
                        and isinstance(coding.get("code"), str)
                    ):
                        out.append(coding["code"].split("|", 1)[0])
    return out


def steps_of(plan: dict[str, Any]) -> tuple[list[Step], list[Issue]]:
    """The triggered steps of a PlanDefinition, and the problems found in them."""
    steps: list[Step] = []
    issues: list[Issue] = []
    url = (
        plan.get("url") if isinstance(plan.get("url"), str) else f"PlanDefinition/{plan.get('id')}"
    )
    title = plan.get("title") or plan.get("name") or url

    def walk(actions: Any, path: str) -> None:
        for index, action in enumerate(actions if isinstance(actions, list) else ()):
            if not isinstance(action, dict):
                continue
            where = f"{path}.action[{index}]"
            questionnaires = _trigger_questionnaires(action)
            if questionnaires:
                conditions = []
                for c_index, condition in enumerate(action.get("condition", ()) or ()):
                    expression = (
                        (condition.get("expression") or {}) if isinstance(condition, dict) else {}
                    )
                    text = expression.get("expression")
                    language = expression.get("language", C.FHIRPATH)
                    c_where = f"{where}.condition[{c_index}].expression.expression"
                    if condition.get("kind") != "applicability":
                        continue
                    if language != C.FHIRPATH or not isinstance(text, str):
                        issues.append(
                            Issue("error", "not-supported", "conditions must be FHIRPath", c_where)
                        )
                        continue
                    try:
                        fhirpath.check(text, strict=False)
                    except fhirpath.FhirPathError as exc:
                        issues.append(
                            Issue("error", "invalid", f"invalid FHIRPath: {exc}", c_where)
                        )
                        continue
                    conditions.append((text, c_where))
                children = [a for a in action.get("action", ()) or () if isinstance(a, dict)]
                targets = [Target(a.get("definitionCanonical"), a) for a in children] or [
                    Target(action.get("definitionCanonical"), action)
                ]
                for questionnaire in questionnaires:
                    steps.append(
                        Step(
                            url,
                            str(title),
                            action,
                            str(action.get("id") or f"action-{index}"),
                            questionnaire,
                            conditions,
                            targets,
                        )
                    )
            else:
                walk(action.get("action"), where)

    walk(plan.get("action"), "PlanDefinition")
    return steps, issues


class Protocols:
    """The active PlanDefinitions with triggered steps, indexed by Questionnaire URL, followed
    through the store's commits."""

    def __init__(self, svc: Any) -> None:
        self.svc = svc
        self._plans: dict[str, list[Step]] = {}  # PlanDefinition id -> steps
        self._by_questionnaire: dict[str, list[Step]] = {}

    async def load(self) -> None:
        after = None
        while True:
            versions, after = await self.svc.store.current_versions(("PlanDefinition",), after, 500)
            for version in versions:
                self._put(version)
            if after is None:
                break
        self._reindex()

    def committed(self, versions: list[StoredVersion]) -> None:
        changed = False
        for version in versions:
            if version.type == "PlanDefinition":
                self._put(version)
                changed = True
        if changed:
            self._reindex()

    def _put(self, version: StoredVersion) -> None:
        self._plans.pop(version.id, None)
        if version.deleted or version.body is None:
            return
        plan = loads_trusted(version.body)
        if plan.get("status") != "active":
            return
        steps, _issues = steps_of(plan)
        if steps:
            self._plans[version.id] = steps

    def _reindex(self) -> None:
        index: dict[str, list[Step]] = {}
        for steps in self._plans.values():
            for step in steps:
                index.setdefault(step.questionnaire, []).append(step)
        self._by_questionnaire = index

    def steps_for(self, questionnaire_url: str) -> list[Step]:
        return self._by_questionnaire.get(questionnaire_url.split("|", 1)[0], [])


def applies(step: Step, response: dict[str, Any], questionnaire: dict[str, Any]) -> bool:
    env = {"resource": response, "questionnaire": questionnaire}
    for expression, _location in step.conditions:
        try:
            result = fhirpath.evaluate(expression, response, env, strict=False)
        except fhirpath.FhirPathError:
            return False
        if result != [True]:
            return False
    return True


def due_date(action: dict[str, Any], start: datetime) -> str | None:
    duration = action.get("timingDuration")
    if not isinstance(duration, dict):
        return None
    value = duration.get("value")
    unit = duration.get("code") or duration.get("unit")
    seconds = DURATION_UNITS.get(str(unit))
    if seconds is None or not isinstance(value, (int, float)) or isinstance(value, bool):
        try:
            value = float(value)  # Decimal
        except (TypeError, ValueError):
            return None
        if seconds is None:
            return None
    moment = start + timedelta(seconds=float(value) * seconds)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def now() -> datetime:
    return datetime.now(UTC)
