"""The CarePlan lifecycle, enforced on every write path.

A write hook (``before`` runs inside the unit of work of every create, update, patch and
transaction entry, with the stored version) checks the new CarePlan against the rules in
``mappings/careplan-lifecycle.json``: which statuses a plan may be created in, which status
transitions are allowed, which statuses are final (the content no longer changes), which intents
an active plan may have, and which elements never change. A refused change is a 422
(business-rule) naming the rule, and nothing is written.

``after`` applies the cascades of the same file in the same unit of work: activating a plan
turns its drafted requests (the ServiceRequests and Tasks its activities reference and that are
``basedOn`` it) into active / requested ones, revoking it withdraws the unstarted ones (a Task
it cancels gets the rule's ``statusReason``, "care plan revoked"). Every cascaded change is a new
version checked by the guard with the caller's context, so it is authorised, versioned and
audited like the plan itself; a request the caller may not change, or that another plug-in's
rules would refuse (a write hook's ``allows``: a referral under way, or one another
organisation sent), is left as it is.
"""

from __future__ import annotations

import copy
import json
import logging
from functools import cache
from importlib import resources
from typing import Any

from fhir_server.errors import FhirError
from fhir_server.json_codec import loads_trusted
from fhir_server.service.context import RequestContext
from fhir_server.service.core import Access, FhirService
from fhir_server.store.protocol import StoredVersion, UnitOfWork

log = logging.getLogger(__name__)


@cache
def rules() -> dict[str, Any]:
    raw = (resources.files("fhir_server.content.mappings") / "careplan-lifecycle.json").read_bytes()
    return json.loads(raw)


def refuse(text: str, where: str = "CarePlan.status") -> FhirError:
    return FhirError(422, "business-rule", text, where)


def check(new: dict[str, Any], old: dict[str, Any] | None) -> None:
    """Raise if ``new`` may not follow ``old`` (None: a create)."""
    r = rules()
    status = new.get("status")
    intent = new.get("intent")
    name = f"CarePlan/{new.get('id')}"
    allowed_intents = r["intent"].get(status)
    if isinstance(allowed_intents, list) and intent not in allowed_intents:
        raise refuse(
            f"{name}: a plan with status {status} must have intent "
            f"{' or '.join(allowed_intents)}, not {intent} (a proposal is made a plan when it is "
            "agreed)",
            "CarePlan.intent",
        )
    if old is None:
        if status not in r["create"]:
            raise refuse(
                f"{name}: a CarePlan cannot be created with status {status} (allowed: "
                f"{', '.join(r['create'])})"
            )
        return
    before = old.get("status")
    if before in r["frozen"]["statuses"] and status == before and _content(new) != _content(old):
        raise refuse(
            f"{name} is {before}: a finished plan no longer changes (only a move to "
            "entered-in-error is allowed)"
        )
    allowed = r["transitions"].get(before)
    if allowed is not None and status not in allowed:
        raise refuse(
            f"{name}: status {before} -> {status} is not allowed ({before} allows: "
            f"{', '.join(allowed) if allowed else 'no further change'})"
        )
    old_intent = old.get("intent")
    changes = r["intentChanges"].get(old_intent)
    if changes is not None and intent not in changes:
        raise refuse(f"{name}: intent {old_intent} -> {intent} is not allowed", "CarePlan.intent")
    for element in r["immutable"]:
        if new.get(element) != old.get(element):
            raise refuse(
                f"{name}: {element} cannot change once the plan exists (make a new plan)",
                f"CarePlan.{element}",
            )


def _content(resource: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in resource.items() if k not in ("meta", "text")}


def _cascade_for(old_status: str | None, new_status: str | None) -> dict[str, Any] | None:
    if old_status == new_status:
        return None
    for rule in rules()["cascade"]:
        if rule["to"] != new_status:
            continue
        if "from" in rule and old_status not in rule["from"]:
            continue
        return rule
    return None


class CarePlanLifecycle:
    """WriteHook for CarePlan (service.write_hooks)."""

    def __init__(self, svc: FhirService) -> None:
        self.svc = svc

    async def _refusal(
        self, ctx: RequestContext, uow: UnitOfWork, resource: dict, current: StoredVersion
    ) -> str | None:
        """Why another plug-in's rules would refuse a cascaded change (write hooks that can
        tell beforehand: ``allows``), so that the cascade leaves it as it is instead of failing
        the plan's own change (a referral already under way, or one the caller's organisation
        did not send, follows its own workflow)."""
        for hook in self.svc.write_hooks:
            allows = getattr(hook, "allows", None)
            if allows is None or hook is self:
                continue
            refusal = await allows(ctx, uow, resource, current)
            if refusal is not None:
                return str(refusal)
        return None

    async def before(
        self, ctx: RequestContext, resource: dict, current: StoredVersion | None
    ) -> None:
        if resource.get("resourceType") != "CarePlan":
            return
        old = None
        if current is not None and not current.deleted and current.body is not None:
            old = loads_trusted(current.body)
        check(resource, old)

    async def after(
        self,
        ctx: RequestContext,
        uow: UnitOfWork,
        written: StoredVersion,
        previous: StoredVersion | None,
    ) -> None:
        if written.type != "CarePlan" or written.deleted or written.body is None:
            return
        new = loads_trusted(written.body)
        old_status = None
        if previous is not None and not previous.deleted and previous.body is not None:
            old_status = loads_trusted(previous.body).get("status")
        else:
            return  # a new plan's requests are created with it, in the state it wants
        rule = _cascade_for(old_status, new.get("status"))
        if rule is None:
            return
        plan_ref = f"CarePlan/{written.id}"
        refs = [
            ref
            for activity in new.get("activity") or ()
            if isinstance(ref := ((activity or {}).get("reference") or {}).get("reference"), str)
        ]
        # Tasks first: a request whose status follows its Task (a referral) has moved with it
        refs.sort(key=lambda r: not r.startswith("Task/"))
        for ref in refs:
            type_, _, id_ = ref.partition("/")
            mapping = rule.get(type_)
            if not isinstance(mapping, dict) or not id_ or "/" in id_:
                continue
            current = await uow.current(type_, id_)
            if current is None or current.deleted or current.body is None:
                continue
            request = loads_trusted(current.body)
            if plan_ref not in [b.get("reference") for b in request.get("basedOn") or ()]:
                continue  # not one of this plan's own requests
            target = mapping.get(request.get("status"))
            if target is None:
                continue
            request["status"] = target
            intent = (rule.get("intent") or {}).get(request.get("intent"))
            if intent is not None:
                request["intent"] = intent
            reason = (rule.get("statusReason") or {}).get(type_)
            if isinstance(reason, dict) and not request.get("statusReason"):
                # why it moved (a referral Task requires a reason to be cancelled)
                request["statusReason"] = copy.deepcopy(reason)
            access = Access("update", type_, id_, resource=request, current=current)
            try:
                await self.svc.guard.check(ctx, access)
            except FhirError:
                log.info("a CarePlan cascade skipped a %s the caller may not change", type_)
                continue
            refusal = await self._refusal(ctx, uow, request, current)
            if refusal is not None:
                log.info("a CarePlan cascade left %s as it is: %s", ref, refusal)
                continue
            ctx.accesses.append(access)
            await self.svc.store_version(ctx, uow, request, current, "PUT")
