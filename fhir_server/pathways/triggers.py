"""Pathways that start from an event: recording a pregnancy loss suggests the matching pathway.

A PlanDefinition says which events start it with R4 ``action.trigger`` (type ``data-added`` /
``data-modified`` and a DataRequirement: resource type and code filter). The loss pathways are
triggered by a Condition whose ``code``, or an EpisodeOfCare whose ``type``, is their
bib-pregnancy-loss-scenario code; nothing triggers on a screening (QuestionnaireResponse or
indicator Observation), because a loss cannot be screened for.

When such a resource is written, this write hook applies the pathway in the same unit of work and
stores the result as a **suggestion**: a CarePlan with status ``draft`` and intent ``proposal``,
its RequestGroup, goals and drafted requests. The professional confirms it by activating the plan
(status ``active``, intent ``plan``: the lifecycle cascade makes its requests actionable) or
declines it by revoking it; the server never makes a plan active by itself. A patient who already
has a draft, active or on-hold plan of that pathway gets no second suggestion.

The suggestion is written with the caller's context: it must be something the caller could have
created (scopes, care relationship, labels); otherwise no suggestion is made and the loss is
recorded as asked. Reads for the suggestion go through the guard like any other.
"""

from __future__ import annotations

import logging
from typing import Any

from fhir_server.errors import FhirError
from fhir_server.json_codec import loads_trusted
from fhir_server.pathways import engine
from fhir_server.pathways.definitions import Plan
from fhir_server.pathways.library import DefinitionIndex
from fhir_server.pathways.subject import find
from fhir_server.service.context import RequestContext
from fhir_server.service.core import Access, FhirService
from fhir_server.store.protocol import StoredVersion, UnitOfWork

log = logging.getLogger(__name__)
OPEN_STATUSES = ("draft", "active", "on-hold")


def _matches(resource: dict[str, Any], requirement: dict[str, Any]) -> bool:
    if requirement.get("type") != resource.get("resourceType"):
        return False
    for code_filter in requirement.get("codeFilter") or ():
        path = code_filter.get("path")
        wanted = {(c.get("system"), c.get("code")) for c in code_filter.get("code") or ()}
        value = resource.get(path) if isinstance(path, str) else None
        concepts = value if isinstance(value, list) else [value]
        found = {
            (c.get("system"), c.get("code"))
            for concept in concepts
            if isinstance(concept, dict)
            for c in concept.get("coding") or ()
            if isinstance(c, dict)
        }
        if wanted and not wanted & found:
            return False
    return True


def triggered_by(plan: Plan, resource: dict[str, Any], kind: str) -> bool:
    """Whether a top-level action of ``plan`` has a trigger of ``kind`` matching ``resource``."""
    for action in plan.actions:
        for trigger in action.raw.get("trigger") or ():
            if not isinstance(trigger, dict) or trigger.get("type") != kind:
                continue
            if any(_matches(resource, d) for d in trigger.get("data") or () if isinstance(d, dict)):
                return True
    return False


def _patient_of(resource: dict[str, Any]) -> str | None:
    ref = (resource.get("subject") or resource.get("patient") or {}).get("reference")
    if isinstance(ref, str) and ref.startswith("Patient/") and ref.count("/") == 1:
        return ref[len("Patient/") :]
    return None


def _refuted(resource: dict[str, Any]) -> bool:
    codes = {
        c.get("code")
        for c in (resource.get("verificationStatus") or {}).get("coding") or ()
        if isinstance(c, dict)
    }
    return bool(codes & {"refuted", "entered-in-error"}) or resource.get("status") in (
        "entered-in-error",
        "cancelled",
    )


class PathwayTriggers:
    """WriteHook: suggest the pathways a written resource triggers (service.write_hooks)."""

    TYPES = frozenset({"Condition", "EpisodeOfCare"})

    def __init__(self, svc: FhirService, index: DefinitionIndex) -> None:
        self.svc = svc
        self.index = index

    async def before(
        self, ctx: RequestContext, resource: dict, current: StoredVersion | None
    ) -> None:
        return None

    async def after(
        self,
        ctx: RequestContext,
        uow: UnitOfWork,
        written: StoredVersion,
        previous: StoredVersion | None,
    ) -> None:
        if written.type not in self.TYPES or written.deleted or written.body is None:
            return
        resource = loads_trusted(written.body)
        if _refuted(resource):
            return
        before = None
        if previous is not None and not previous.deleted and previous.body is not None:
            before = loads_trusted(previous.body)
        kind = "data-modified" if before is not None else "data-added"
        plans = []
        for entry in self.index.plans():
            plan = entry.compiled
            if not isinstance(plan, Plan) or plan.issues or entry.status == "retired":
                continue
            if not triggered_by(plan, resource, kind):
                continue
            if before is not None and triggered_by(plan, before, "data-modified"):
                continue  # it matched already: an unrelated change
            plans.append(plan)
        if not plans:
            return
        pid = _patient_of(resource)
        if pid is None:
            return
        for plan in plans:
            try:
                await self._suggest(ctx, uow, plan, pid, resource)
            except FhirError as exc:
                log.info(
                    "no pathway suggestion for a %s: %s", written.type, exc.issues[0].diagnostics
                )

    async def _suggest(
        self,
        ctx: RequestContext,
        uow: UnitOfWork,
        plan: Plan,
        pid: str,
        event: dict[str, Any],
    ) -> None:
        from fhir_server.pathways.operations import prepare, resolve_activity

        svc = self.svc
        stored = await uow.current("Patient", pid)
        if stored is None or stored.deleted or stored.body is None:
            return
        if not await svc.visible(ctx, stored):
            return
        open_plans = await find(
            svc,
            ctx,
            "CarePlan",
            [("patient", f"Patient/{pid}"), ("status", ",".join(OPEN_STATUSES))],
            uow=uow,
        )
        for existing in open_plans:
            for canonical in existing.get("instantiatesCanonical") or ():
                if isinstance(canonical, str) and canonical.split("|")[0] == plan.url:
                    return
        patient = loads_trusted(stored.body)
        values: dict[str, Any] = {"subject": f"Patient/{pid}"}
        inputs = await prepare(svc, ctx, plan, values, [], extra=[event], uow=uow, patient=patient)
        if not _has_date(inputs, event):
            inputs.subject.variables["lossDate"] = inputs.subject.today.isoformat()

        async def resolve(canonical: str) -> Any:
            return await resolve_activity(svc, ctx, self.index, canonical)

        applied = await engine.apply_plan(plan, inputs, resolve, svc.model)
        applied.careplan["note"] = [
            *applied.careplan.get("note", []),
            {
                "text": "Suggested by the server when the loss was recorded "
                f"({event['resourceType']}/{event.get('id')}). Confirm it with the parents by "
                "activating the plan (status active, intent plan), adapt it, or revoke it."
            },
        ]
        resources = applied.with_ids()
        for resource in resources:
            svc.validate(resource, resource["resourceType"])
        accesses = [Access("create", r["resourceType"], r["id"], resource=r) for r in resources]
        for access in accesses:
            await svc.guard.check(ctx, access)  # a refusal: no suggestion at all
        for access, resource in zip(accesses, resources, strict=True):
            ctx.accesses.append(access)
            await svc.store_version(ctx, uow, resource, None, "POST", fresh=True)


def _has_date(inputs: engine.Inputs, event: dict[str, Any]) -> bool:
    ref = f"{event['resourceType']}/{event.get('id')}"
    for item in inputs.subject.variables.get("lossEvents") or ():
        if item.get("reference") == ref:
            return bool(item.get("date"))
    return True
