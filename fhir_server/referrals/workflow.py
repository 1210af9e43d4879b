"""The referral workflow, enforced on every write path (a write hook; docs/referrals.md).

``before`` runs inside the unit of work before a Task is stored: it stamps ``lastModified`` and
copies a completed referral's outcome into ``businessStatus``. ``after`` runs in the same unit
once the new version is written, with the stored version before it, and refuses (so that nothing
is written) a referral Task that:

- is created in another status than the table allows, or by someone who is not its requester
  (a forged requester), or about another woman or referrer than its ServiceRequest;
- skips states or comes back from a final state (409, naming the statuses allowed next);
- is moved by the wrong party (the requester creates, cancels and edits its side; the owner's
  organisation receives, accepts, rejects, starts, holds, completes and fails it; 403);
- lacks a ``statusReason`` (rejected, cancelled, on-hold, failed) or an outcome (completed), or
  changes what never changes (the woman, the request, the requester; the owner once accepted).

It then makes the ServiceRequest's status follow the Task, in the same unit of work. A client
write of a referral's ServiceRequest must come from the requester's side and keep the status the
Task dictates. Deleting a sent referral is refused: it is cancelled or marked entered-in-error.

Without a principal (the server runs open, or an operator loads data) the state machine and its
rules apply, but there is nobody to check the party of. A backend (system) client acts for the
organisation its token names; a backend token without one (the built-in authorization server
issues none) may act for either party: it is a registered integration trusted with the data,
and still cannot skip a state or break a rule.
"""

from __future__ import annotations

import contextvars
from functools import cache
from importlib import resources
from typing import Any

import orjson

from fhir_server.errors import FhirError
from fhir_server.json_codec import loads_trusted
from fhir_server.referrals.parties import (
    Reader,
    acts_for,
    is_caller,
    ref_of,
    side_of,
    unit_reader,
)
from fhir_server.referrals.rules import Workflow, workflow
from fhir_server.search.dates import format_instant
from fhir_server.service.versioning import now_us
from fhir_server.store.protocol import StoredVersion, UnitOfWork
from fhir_server.store.query import Query, ReferencePred

# set while the server itself writes a ServiceRequest's status after its Task changed
_CASCADE: contextvars.ContextVar[bool] = contextvars.ContextVar("referral_cascade", default=False)
ROLE_NAMES = {
    "requester": "the referrer (requester)",
    "owner": "the receiving organisation (owner)",
}


@cache
def outcome_codes(system: str) -> frozenset[str]:
    """The codes of the referral outcome CodeSystem shipped in terminology/bib."""
    name = "CodeSystem-" + system.rstrip("/").rsplit("/", 1)[-1] + ".json"
    try:
        raw = (resources.files("fhir_server.content.terminology") / "bib" / name).read_bytes()
    except FileNotFoundError:  # pragma: no cover - the CodeSystem ships with the server
        return frozenset()
    return frozenset(c["code"] for c in orjson.loads(raw).get("concept", ()))


def conflict(text: str, expression: str = "Task.status") -> FhirError:
    return FhirError(409, "conflict", text, expression)


def rule(text: str, expression: str) -> FhirError:
    return FhirError(422, "business-rule", text, expression)


def forbidden(text: str) -> FhirError:
    return FhirError(403, "forbidden", text)


def focus_of(task: dict[str, Any] | None, rules: Workflow, base_url: str) -> str | None:
    """``ServiceRequest/id`` when the Task is a referral Task, else None."""
    if not isinstance(task, dict):
        return None
    ref = ref_of(task.get("focus"), base_url)
    if ref and ref.partition("/")[0] in rules.focus_types:
        return ref
    return None


def outcome_of(task: dict[str, Any], system: str) -> str | None:
    for output in task.get("output", ()) or ():
        value = output.get("valueCodeableConcept") if isinstance(output, dict) else None
        for coding in (value or {}).get("coding", ()) if isinstance(value, dict) else ():
            if isinstance(coding, dict) and coding.get("system") == system:
                code = coding.get("code")
                if isinstance(code, str):
                    return code
    return None


def _has_reason(task: dict[str, Any]) -> bool:
    reason = task.get("statusReason")
    if not isinstance(reason, dict):
        return False
    if isinstance(reason.get("text"), str) and reason["text"].strip():
        return True
    return any(isinstance(c, dict) and c.get("code") for c in reason.get("coding", ()) or ())


def _allowed(rules: Workflow, status: str | None) -> str:
    nexts = rules.next_statuses(status)
    return ", ".join(nexts) if nexts else "none (a final state)"


class ReferralHook:
    """WriteHook: the referral state machine, its rules and the ServiceRequest cascade."""

    def __init__(self, svc: Any, rules: Workflow | None = None) -> None:
        self.svc = svc
        self.rules = rules or workflow()

    @property
    def base(self) -> str:
        return self.svc.settings.public_url

    # -- before: what the server fills in ------------------------------------------------------

    async def before(self, ctx: Any, resource: dict, current: StoredVersion | None) -> None:
        if resource.get("resourceType") != "Task":
            return
        if focus_of(resource, self.rules, self.base) is None:
            return
        resource["lastModified"] = format_instant(now_us())
        system = self.rules.outcome_system
        if resource.get("status") in self.rules.outcome_required and not resource.get(
            "businessStatus"
        ):
            code = outcome_of(resource, system)
            if code is not None:
                resource["businessStatus"] = {"coding": [{"system": system, "code": code}]}

    # -- after: the rules, with the stored version and the unit of work ----------------------

    async def after(
        self,
        ctx: Any,
        uow: UnitOfWork,
        written: StoredVersion,
        previous: StoredVersion | None,
    ) -> None:
        if written.type == "Task":
            await self._task(ctx, uow, written, previous)
        elif written.type == "ServiceRequest" and not _CASCADE.get():
            await self._request(ctx, uow, written, previous)

    async def _task(
        self, ctx: Any, uow: UnitOfWork, written: StoredVersion, previous: StoredVersion | None
    ) -> None:
        rules, base = self.rules, self.base
        read = unit_reader(uow)
        old = (
            loads_trusted(previous.body)
            if previous is not None and not previous.deleted and previous.body is not None
            else None
        )
        old_focus = focus_of(old, rules, base)
        if written.deleted:
            if old is not None and old_focus is not None:
                await self._delete(ctx, read, old)
            return
        new = loads_trusted(written.body or b"{}")
        new_focus = focus_of(new, rules, base)
        if old_focus is None and new_focus is None:
            return  # not a referral Task (a screening alert, a pathway to-do...)
        if old is None or old_focus is None:
            await self._create(ctx, read, new, new_focus)
        else:
            await self._update(ctx, read, old, new)
        await self._cascade(ctx, uow, new, new_focus or old_focus)

    async def _create(self, ctx: Any, read: Reader, new: dict, focus: str | None) -> None:
        rules, base = self.rules, self.base
        status = new.get("status")
        roles = rules.roles_for(None, status)
        if roles is None:
            raise conflict(
                f"a referral Task is created as {_allowed(rules, None)}, not {status}; the "
                "receiving organisation moves it on from there"
            )
        requester = ref_of(new.get("requester"), base)
        principal = ctx.principal
        if (
            principal is not None
            and "requester" in roles
            and self._checks_party(principal)
            and not await is_caller(read, principal, requester, base)
        ):
            raise forbidden(
                "the requester of a referral you send must be you, one of your roles or "
                "your organisation (Task.requester)"
            )
        assert focus is not None
        request = await read(*focus.split("/", 1))
        if request is None:
            raise rule(f"the referral Task's focus {focus} does not exist", "Task.focus")
        patient = ref_of(new.get("for"), base)
        subject = ref_of(request.get("subject"), base)
        if patient is None or patient != subject:
            raise rule(
                "a referral Task is about the woman its ServiceRequest is about (Task.for = "
                "ServiceRequest.subject)",
                "Task.for",
            )
        referrer = ref_of(request.get("requester"), base)
        if referrer is not None and requester is not None:
            task_side = await side_of(read, requester, base)
            request_side = await side_of(read, referrer, base)
            if not task_side & request_side:
                raise rule(
                    "a referral Task's requester is its ServiceRequest's requester (or her "
                    "organisation)",
                    "Task.requester",
                )
        self._status_rules(new)

    async def _update(self, ctx: Any, read: Reader, old: dict, new: dict) -> None:
        rules = self.rules
        for element in rules.immutable:
            if old.get(element) != new.get(element):
                raise rule(
                    f"Task.{element} of a referral does not change (a new referral is a new Task)",
                    f"Task.{element}",
                )
        old_status, status = old.get("status"), new.get("status")
        if old_status == status:
            if old_status in rules.final:
                raise conflict(
                    f"a {old_status} referral Task no longer changes; allowed next statuses: "
                    f"{_allowed(rules, old_status)}"
                )
            roles = rules.edit.get(status or "")
            if roles is None:
                raise conflict(f"a {status} referral Task cannot be changed")
            action = f"change a {status} referral"
        else:
            roles = rules.roles_for(old_status, status or "")
            if roles is None:
                raise conflict(
                    f"a referral Task cannot go from {old_status} to {status}; allowed next "
                    f"statuses: {_allowed(rules, old_status)}"
                )
            action = f"move a referral from {old_status} to {status}"
        await self._require(ctx, read, old, roles, action)
        old_owner, new_owner = old.get("owner"), new.get("owner")
        if old_owner != new_owner:
            if old_status not in rules.owner_change_statuses:
                raise conflict(
                    f"the owner of a {old_status} referral no longer changes (it is changed "
                    f"only while {', '.join(sorted(rules.owner_change_statuses))})",
                    "Task.owner",
                )
            await self._require(ctx, read, old, rules.owner_change_by, "redirect a referral")
        self._status_rules(new)

    async def _delete(self, ctx: Any, read: Reader, old: dict) -> None:
        rules = self.rules
        status = old.get("status")
        if status not in rules.delete_statuses:
            raise conflict(
                f"a {status} referral Task is not deleted: it is a record of the referral; "
                f"allowed next statuses: {_allowed(rules, status)}"
            )
        await self._require(ctx, read, old, rules.delete_by, "delete a draft referral")

    def _status_rules(self, task: dict) -> None:
        rules = self.rules
        status = task.get("status")
        if status in rules.owner_required and ref_of(task.get("owner"), self.base) is None:
            raise rule(
                f"a {status} referral names the receiving organisation, its service or role as "
                "owner",
                "Task.owner",
            )
        if status in rules.reason_required and not _has_reason(task):
            raise rule(
                f"a {status} referral says why: statusReason (text or a code) is required",
                "Task.statusReason",
            )
        if status in rules.outcome_required:
            codes = outcome_codes(rules.outcome_system)
            code = outcome_of(task, rules.outcome_system)
            if code is None or (codes and code not in codes):
                raise rule(
                    f"a {status} referral records its outcome: an output whose "
                    f"valueCodeableConcept has a {rules.outcome_system} code ("
                    + ", ".join(sorted(codes))
                    + ")",
                    "Task.output",
                )
            business = task.get("businessStatus")
            for coding in (business or {}).get("coding", ()) if isinstance(business, dict) else ():
                if (
                    isinstance(coding, dict)
                    and coding.get("system") == rules.outcome_system
                    and coding.get("code") != code
                ):
                    raise rule(
                        "businessStatus and the outcome output of a completed referral differ",
                        "Task.businessStatus",
                    )

    @staticmethod
    def _checks_party(principal: Any) -> bool:
        """Whether the caller's party is checked: every professional; a backend client only
        when its token names an organisation (docs/referrals.md "Backend clients")."""
        if getattr(principal, "kind", "user") == "system":
            return bool(principal.organization)
        return True

    async def _require(
        self, ctx: Any, read: Reader, task: dict, roles: frozenset[str], action: str
    ) -> None:
        principal = ctx.principal
        if principal is None or not self._checks_party(principal):
            return
        for role in sorted(roles):
            side = await side_of(read, ref_of(task.get(role), self.base), self.base)
            if side and await acts_for(read, principal, side, self.base):
                return
        who = " or ".join(ROLE_NAMES.get(r, r) for r in sorted(roles)) or "nobody"
        raise forbidden(f"only {who} may {action}")

    async def _cascade(self, ctx: Any, uow: UnitOfWork, task: dict, focus: str | None) -> None:
        """The ServiceRequest's status follows its Task (same unit of work)."""
        if focus is None:
            return
        want = self.rules.request_status.get(task.get("status") or "")
        type_, _, id_ = focus.partition("/")
        current = await uow.current(type_, id_)
        if want is None or current is None or current.deleted or current.body is None:
            return
        request = loads_trusted(current.body)
        if request.get("status") == want:
            return
        request["status"] = want
        token = _CASCADE.set(True)
        try:
            await self.svc.store_version(ctx, uow, request, current, "PUT")
        finally:
            _CASCADE.reset(token)

    # -- the referral's ServiceRequest --------------------------------------------------------

    async def _request(
        self, ctx: Any, uow: UnitOfWork, written: StoredVersion, previous: StoredVersion | None
    ) -> None:
        if previous is None or previous.deleted:
            return  # a new request: its Task comes next
        tasks = await self._tasks_of(written.id)
        if not tasks:
            return
        if written.deleted:
            raise conflict(
                "the ServiceRequest of a referral is not deleted: cancel its Task or mark it "
                "entered-in-error",
                "ServiceRequest",
            )
        old = loads_trusted(previous.body or b"{}")
        new = loads_trusted(written.body or b"{}")
        await self._request_rules(ctx, unit_reader(uow), old, new, tasks)

    async def allows(
        self, ctx: Any, uow: UnitOfWork, resource: dict, current: StoredVersion | None
    ) -> str | None:
        """Why this update would be refused (None: it would not), without writing anything:
        for another plug-in's cascade (the CarePlan lifecycle) that leaves alone what may not
        change rather than failing its whole write."""
        old = (
            loads_trusted(current.body)
            if current is not None and not current.deleted and current.body is not None
            else None
        )
        read = unit_reader(uow)
        try:
            if resource.get("resourceType") == "Task":
                old_focus = focus_of(old, self.rules, self.base)
                new_focus = focus_of(resource, self.rules, self.base)
                if old is None or old_focus is None:
                    if new_focus is not None:
                        await self._create(ctx, read, resource, new_focus)
                else:
                    await self._update(ctx, read, old, resource)
            elif resource.get("resourceType") == "ServiceRequest" and old is not None:
                tasks = await self._tasks_of(str(resource.get("id")))
                if tasks:
                    await self._request_rules(ctx, read, old, resource, tasks)
        except FhirError as exc:
            return exc.issues[0].diagnostics if exc.issues else str(exc)
        return None

    async def _request_rules(
        self, ctx: Any, read: Reader, old: dict, new: dict, tasks: list[dict]
    ) -> None:
        principal = ctx.principal
        if principal is not None and self._checks_party(principal):
            side = await side_of(read, ref_of(old.get("requester"), self.base), self.base)
            if not side or not await acts_for(read, principal, side, self.base):
                raise forbidden(
                    "the ServiceRequest of a referral is changed by its requester; the "
                    "receiving organisation answers through the Task and the thread"
                )
        task = tasks[0]
        want = self.rules.request_status.get(task.get("status") or "")
        if want is not None and new.get("status") != want:
            raise conflict(
                f"the status of a referral's ServiceRequest follows its Task ({task.get('status')}"
                f" -> {want}); change the Task instead",
                "ServiceRequest.status",
            )

    async def _tasks_of(self, request_id: str) -> list[dict]:
        """The referral Tasks of a ServiceRequest, newest first (committed ones)."""
        query = Query(
            ("Task",),
            where=[(ReferencePred("focus", "ServiceRequest", request_id),)],
            count=20,
        )
        page = await self.svc.store.search(query)
        tasks = [loads_trusted(hit.body) for hit in page.hits]
        tasks = [t for t in tasks if t.get("status") != "entered-in-error"]
        tasks.sort(key=lambda t: (t.get("meta") or {}).get("lastUpdated", ""), reverse=True)
        return tasks
