"""The screening's hooks into every write: the validator and the write hook.

``ScreeningValidator`` (a profile validator, so it runs in ``FhirService.validate`` for create,
update, patch and every transaction entry, and in ``$validate``):

* a Questionnaire is compiled: invalid FHIRPath, duplicate linkIds and enableWhen on unknown
  items are refused (422) with their location;
* a QuestionnaireResponse is checked against its Questionnaire (``responses.validate``) when the
  Questionnaire is in memory.

``ScreeningHook`` (a write hook: runs inside the unit of work of every write):

* ``before`` — a response whose Questionnaire the validator could not see (written by another
  process, or earlier in the same transaction) is found and validated here; a response to an
  unknown Questionnaire is refused; completed and amended responses are scored
  (``responses.score``): contradicting values are refused, missing ones filled in;
* ``after`` — for a completed or amended response: extraction (when the Questionnaire asks for
  it on completion), the safety alerts and the protocol's next steps, all written in the same
  unit of work with one Provenance.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from fhir_server.errors import FhirError, Issue
from fhir_server.json_codec import loads_trusted
from fhir_server.screening import constants as C
from fhir_server.screening import responses as R
from fhir_server.screening.extraction import extract
from fhir_server.screening.followup import alert_resources, protocol_task, triggered_alerts
from fhir_server.screening.form import Form, compile_form
from fhir_server.screening.protocol import Protocols, applies
from fhir_server.screening.registry import FormRegistry
from fhir_server.screening.workflow import (
    Writer,
    patient_id,
    reference_type,
    responsible_professional,
    search_unit,
)
from fhir_server.service.context import RequestContext
from fhir_server.service.core import FhirService
from fhir_server.service.versioning import new_id
from fhir_server.store.protocol import StoredVersion, UnitOfWork

log = logging.getLogger(__name__)
OPEN_TASK_STATUSES = "draft,requested,received,accepted,ready,in-progress,on-hold"


def refuse(issues: list[Issue]) -> FhirError:
    errors = [i for i in issues if i.severity in ("error", "fatal")]
    first = errors[0] if errors else issues[0]
    return FhirError(422, first.code, first.diagnostics, issues=issues)


class _Checked:
    """What the validator found for one resource object, handed to the write hook."""

    __slots__ = ("enablement", "evaluator", "form", "resource")

    def __init__(self, resource: dict, form: Form, enablement: Any, evaluator: Any) -> None:
        self.resource = resource
        self.form = form
        self.enablement = enablement
        self.evaluator = evaluator


class ScreeningState:
    def __init__(self, svc: FhirService) -> None:
        self.svc = svc
        self.forms = FormRegistry(svc)
        self.protocols = Protocols(svc)
        self.checked: dict[int, _Checked] = {}
        # Questionnaires written in a unit of work not committed yet, per request context
        self.in_flight: dict[int, tuple[RequestContext, float, dict[str, Form]]] = {}
        # Tasks planned in a unit of work not committed yet (a transaction with two responses)
        self.planned: dict[int, tuple[RequestContext, float, list[dict[str, Any]]]] = {}
        # responses between ``before`` and ``after`` of their write
        self.pending: dict[tuple[str, str], tuple[Form, Any, Any, dict]] = {}

    def value_set_codes(self, url: str) -> Any:
        terminology = getattr(self.svc, "terminology", None)
        return terminology.codes_for_search(url) if terminology is not None else None

    def remember(self, ctx: RequestContext, form: Form) -> None:
        now = time.monotonic()
        for key, (_ctx, when, _forms) in list(self.in_flight.items()):
            if now - when > 300:
                self.in_flight.pop(key, None)
        entry = self.in_flight.get(id(ctx))
        if entry is None or entry[0] is not ctx:
            entry = (ctx, now, {})
            self.in_flight[id(ctx)] = entry
        for key in filter(None, (form.url, form.canonical, f"Questionnaire/{form.id}")):
            entry[2][key] = form
        if form.url and form.version:
            entry[2][f"{form.url}|{form.version}"] = form

    def planned_tasks(self, ctx: RequestContext) -> list[dict[str, Any]]:
        """The Tasks planned so far in this request (its unit of work), to add to the
        committed ones when looking for duplicates."""
        now = time.monotonic()
        for key, (_ctx, when, _tasks) in list(self.planned.items()):
            if now - when > 300:
                self.planned.pop(key, None)
        entry = self.planned.get(id(ctx))
        if entry is None or entry[0] is not ctx:
            entry = (ctx, now, [])
            self.planned[id(ctx)] = entry
        return entry[2]

    def in_flight_form(self, ctx: RequestContext, canonical: str) -> Form | None:
        entry = self.in_flight.get(id(ctx))
        if entry is None or entry[0] is not ctx:
            return None
        return entry[2].get(canonical)


class ScreeningValidator:
    """``FhirService.profile_validators`` member for Questionnaire and QuestionnaireResponse."""

    def __init__(self, state: ScreeningState) -> None:
        self.state = state

    def validate(self, resource: dict, expected_type: str | None = None) -> list[Issue]:
        type_ = resource.get("resourceType")
        if type_ == "Questionnaire":
            return list(compile_form(resource).issues)
        if type_ != "QuestionnaireResponse":
            return []
        canonical = resource.get("questionnaire")
        if not isinstance(canonical, str):
            return []
        form = self.state.forms.get(canonical)
        if form is None:
            return [
                Issue(
                    "warning",
                    "not-found",
                    f"the Questionnaire {canonical} is not known to this server (yet); the "
                    "answers were not checked here",
                    "QuestionnaireResponse.questionnaire",
                )
            ]
        issues, enablement, evaluator = R.validate(form, resource, self.state.value_set_codes)
        if not any(i.severity in ("error", "fatal") for i in issues):
            checked = self.state.checked
            if len(checked) > 512:
                checked.clear()
            checked[id(resource)] = _Checked(resource, form, enablement, evaluator)
        return issues


class ScreeningHook:
    def __init__(self, state: ScreeningState) -> None:
        self.state = state
        self.svc = state.svc

    async def before(
        self, ctx: RequestContext, resource: dict, current: StoredVersion | None
    ) -> None:
        type_ = resource.get("resourceType")
        if type_ != "QuestionnaireResponse":
            return
        canonical = resource.get("questionnaire")
        if not isinstance(canonical, str):
            return
        state = self.state
        checked = state.checked.pop(id(resource), None)
        if checked is not None and checked.resource is resource:
            form, enablement, evaluator = checked.form, checked.enablement, checked.evaluator
        else:
            form = state.in_flight_form(ctx, canonical) or await state.forms.resolve(canonical)
            if form is None:
                raise refuse(
                    [
                        Issue(
                            "error",
                            "not-found",
                            f"the Questionnaire {canonical} is not known to this server: a "
                            "response can only be stored with its Questionnaire (write the "
                            "Questionnaire first)",
                            "QuestionnaireResponse.questionnaire",
                        )
                    ]
                )
            issues, enablement, evaluator = R.validate(form, resource, state.value_set_codes)
            if any(i.severity in ("error", "fatal") for i in issues):
                raise refuse(issues)
        if resource.get("status") in R.COMPLETED:
            issues = R.score(form, resource, enablement, evaluator)
            if issues:
                raise refuse(issues)
        if "id" in resource:
            if len(state.pending) > 1000:  # writes that failed after ``before``
                state.pending.clear()
            state.pending[("QuestionnaireResponse", resource["id"])] = (
                form,
                enablement,
                evaluator,
                resource,
            )

    async def after(
        self,
        ctx: RequestContext,
        uow: UnitOfWork,
        written: StoredVersion,
        previous: StoredVersion | None,
    ) -> None:
        if written.type == "Questionnaire" and not written.deleted and written.body is not None:
            self.state.remember(ctx, compile_form(loads_trusted(written.body)))
            return
        if written.type != "QuestionnaireResponse":
            return
        pending = self.state.pending.pop((written.type, written.id), None)
        if pending is None or written.deleted:
            return
        form, enablement, _evaluator, resource = pending
        if resource.get("status") not in R.COMPLETED:
            return
        writer = Writer(self.svc, ctx, uow)
        response = resource  # as stored (meta stamped in place)
        amended = previous is not None and not previous.deleted and _was_completed(previous)
        response_ref = {"reference": f"QuestionnaireResponse/{written.id}"}
        if form.extract_on_complete:
            await self._extract(form, response, response_ref, writer, amended)
        alerts = triggered_alerts(form, response, enablement)
        steps = [
            s
            for s in self.state.protocols.steps_for(form.url or "")
            if applies(s, response, form.resource)
        ]
        if alerts or steps:
            owner, why = await responsible_professional(self.svc, ctx, uow, response)
            requester = (
                {"reference": response["author"]["reference"]}
                if reference_type(response.get("author"))
                else owner
            )
            if alerts:
                await self._alerts(
                    form, alerts, response, response_ref, owner, why, requester, writer, amended
                )
            if steps:
                await self._steps(
                    ctx, uow, steps, response, response_ref, owner, why, requester, writer
                )
        await writer.provenance(written)

    async def _extract(
        self,
        form: Form,
        response: dict[str, Any],
        response_ref: dict[str, Any],
        writer: Writer,
        amended: bool,
    ) -> None:
        outcome = extract(
            form,
            response,
            self.svc.model,
            profile_type=self._profile_type,
            source=response_ref,
        )
        errors = [i for i in outcome.issues if i.severity in ("error", "fatal")]
        if errors:
            raise refuse(errors)
        previous: dict[tuple[str, str], list[dict[str, Any]]] = {}
        if amended:
            for old in await self._derived_before(response_ref, writer):
                previous.setdefault(_key(old), []).append(old)
        # ids first, so that references between extracted resources (hasMember, derivedFrom,
        # fullUrl variables) become plain references before anything is written
        plan: list[tuple[dict[str, Any], StoredVersion | None]] = []
        ids: dict[str, str] = {}
        for entry in outcome.entries:
            resource = entry.resource
            current = None
            olds = previous.get(_key(resource))
            if olds:
                old = olds.pop(0)
                current = await writer.uow.current(resource["resourceType"], old["id"])
            if current is not None:
                resource["id"] = current.id
                if resource["resourceType"] == "Observation":
                    resource["status"] = "amended"
            else:
                resource["id"] = new_id()
            ids[entry.full_url] = f"{resource['resourceType']}/{resource['id']}"
            plan.append((resource, current))
        for resource, current in plan:
            _rewrite_urns(resource, ids)
            if current is None:
                await writer.create(resource)
            elif not _same_content(current, resource):
                await writer.update(resource, current)
        for olds in previous.values():
            for old in olds:  # no longer in the amended response: withdrawn, never deleted
                if old["resourceType"] != "Observation":
                    continue
                current = await writer.uow.current("Observation", old["id"])
                if current is not None:
                    old["status"] = "cancelled"
                    old.pop("meta", None)
                    await writer.update(old, current)

    async def _derived_before(
        self, response_ref: dict[str, Any], writer: Writer
    ) -> list[dict[str, Any]]:
        """What earlier versions of the response yielded and is still current: the targets of
        the Provenances that name the response as their source, and the Observations derived
        from it (also without security, when no Provenance is written)."""
        found: dict[tuple[str, str], dict[str, Any]] = {}
        for old in await search_unit(
            self.svc, writer.ctx, writer.uow, "Observation",
            [("derived-from", response_ref["reference"])], 500,
        ):  # fmt: skip
            found[("Observation", old["id"])] = old
        for provenance in await search_unit(
            self.svc, writer.ctx, writer.uow, "Provenance",
            [("entity", response_ref["reference"])], 100,
        ):  # fmt: skip
            for target in provenance.get("target", ()) or ():
                parts = str((target or {}).get("reference", "")).split("/")
                if len(parts) < 2 or (parts[0], parts[1]) in found:
                    continue
                current = await writer.uow.current(parts[0], parts[1])
                if current is not None and current.body is not None and not current.deleted:
                    found[(parts[0], parts[1])] = loads_trusted(current.body)
        return [
            r
            for r in found.values()
            if r.get("resourceType") != "Observation" or r.get("status") in ("final", "amended")
        ]

    def _profile_type(self, url: str) -> str | None:
        validator = getattr(self.svc, "profile_validator", None)
        compiled = validator.compiled(url) if validator is not None else None
        return getattr(compiled, "type", None) if compiled is not None else None

    async def _alerts(
        self,
        form: Form,
        alerts: list[Any],
        response: dict[str, Any],
        response_ref: dict[str, Any],
        owner: dict[str, Any] | None,
        why: str,
        requester: dict[str, Any] | None,
        writer: Writer,
        amended: bool,
    ) -> None:
        pid = patient_id(response)
        active: list[dict[str, Any]] = []
        if amended and pid is not None:
            active = await search_unit(
                self.svc, writer.ctx, writer.uow, "Flag",
                [("patient", f"Patient/{pid}")], 500,
            )  # fmt: skip
            active = [f for f in active if f.get("status") == "active"]
        for item in alerts:
            flag, task, communication = alert_resources(
                form, item, response, response_ref, owner, why, requester
            )
            if any(_same_flag(old, flag) for old in active):
                continue
            stored_flag = await writer.create(flag)
            stored_task = await writer.create(task)
            communication["about"] = [
                response_ref,
                {"reference": f"Flag/{stored_flag.id}"},
                {"reference": f"Task/{stored_task.id}"},
            ]
            await writer.create(communication)

    async def _steps(
        self,
        ctx: RequestContext,
        uow: UnitOfWork,
        steps: list[Any],
        response: dict[str, Any],
        response_ref: dict[str, Any],
        owner: dict[str, Any] | None,
        why: str,
        requester: dict[str, Any] | None,
        writer: Writer,
    ) -> None:
        pid = patient_id(response)
        planned = self.state.planned_tasks(ctx)
        for step in steps:
            for index, target in enumerate(step.targets):
                focus = None
                if target.definition:
                    found = self.state.forms.resource_by_url(target.definition)
                    if found is not None:
                        id_, questionnaire = found
                        focus = {
                            "reference": f"Questionnaire/{id_}",
                            "display": questionnaire.get("title") or target.definition,
                        }
                task = protocol_task(
                    step, index, response, response_ref, focus, owner, why, requester
                )
                candidates = [t for t in planned if t.get("for") == response.get("subject")]
                if pid is not None:
                    # the open Tasks of this patient about the same Questionnaire (or, without
                    # one, of the same kind): a narrow search, whatever her record holds
                    params = [("patient", f"Patient/{pid}"), ("status", OPEN_TASK_STATUSES)]
                    codes = sorted(_step_codes(task))
                    if focus is not None:
                        params.append(("focus", focus["reference"]))
                    elif codes:
                        params.append(("code", ",".join(f"{C.STEP_SYSTEM}|{c}" for c in codes)))
                    candidates += await search_unit(self.svc, ctx, uow, "Task", params, 200)
                if any(_same_task(old, task) for old in candidates):
                    continue
                await writer.create(task)
                planned.append(task)


def _was_completed(version: StoredVersion) -> bool:
    if version.body is None:
        return False
    return loads_trusted(version.body).get("status") in R.COMPLETED


def _key(resource: dict[str, Any]) -> tuple[str, str]:
    """What makes an extracted resource "the same one" across versions of a response: its type
    and its codes (Observation.code; other types: code or category)."""
    type_ = str(resource.get("resourceType"))
    if isinstance(resource.get("code"), dict):
        return type_, _code_key(resource)
    categories = resource.get("category")
    if isinstance(categories, list) and categories and isinstance(categories[0], dict):
        return type_, _code_key({"code": categories[0]})
    return type_, ""


def _same_content(current: StoredVersion, resource: dict[str, Any]) -> bool:
    """Whether an update would change nothing but the status (amended) and meta."""
    if current.body is None:
        return False
    old = loads_trusted(current.body)
    ignore = ("meta", "status", "issued")
    return {k: v for k, v in old.items() if k not in ignore} == {
        k: v for k, v in resource.items() if k not in ignore
    }


def _code_key(resource: dict[str, Any]) -> str:
    codings = (resource.get("code") or {}).get("coding", ()) or ()
    return "|".join(
        sorted(f"{c.get('system')}#{c.get('code')}" for c in codings if isinstance(c, dict))
    )


def _same_flag(old: dict[str, Any], new: dict[str, Any]) -> bool:
    old_detail = [e.get("valueReference") for e in old.get("extension", ()) or ()]
    new_detail = [e.get("valueReference") for e in new.get("extension", ()) or ()]
    return _code_key(old) == _code_key(new) and old_detail == new_detail


def _step_codes(task: dict[str, Any]) -> set[str]:
    codings = (task.get("code") or {}).get("coding", ()) or ()
    return {
        c.get("code") for c in codings if isinstance(c, dict) and c.get("system") == C.STEP_SYSTEM
    }


def _same_task(old: dict[str, Any], new: dict[str, Any]) -> bool:
    """An open Task already plans this: the same kind of step on the same Questionnaire (from
    whichever action), or the same action when the step has no Questionnaire."""
    focus = (new.get("focus") or {}).get("reference")
    if focus:
        return (old.get("focus") or {}).get("reference") == focus and _step_codes(
            old
        ) == _step_codes(new)
    return old.get("instantiatesUri") == new.get("instantiatesUri")


def _rewrite_urns(value: Any, ids: dict[str, str]) -> None:
    if isinstance(value, dict):
        reference = value.get("reference")
        if isinstance(reference, str) and reference in ids:
            value["reference"] = ids[reference]
        for child in value.values():
            if isinstance(child, (dict, list)):
                _rewrite_urns(child, ids)
    elif isinstance(value, list):
        for child in value:
            _rewrite_urns(child, ids)
