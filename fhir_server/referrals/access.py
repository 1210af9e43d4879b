"""Access follows the referral: what a referral shares with its parties (docs/referrals.md).

A grant provider of the care-relationship index (security/relationships.py ``SharedRecord``):
for a professional, it finds the referrals her organisation receives (Tasks it owns, through the
organisation itself, its PractitionerRoles or its HealthcareServices) and sends (ServiceRequests
and Tasks it requested), and for each woman she has no care relationship with it lists exactly
the resources the referral shares, by the tier ``mappings/referral-workflow.json`` gives the
Task's status:

- *offered* (requested, received): the request, the Task and the thread, so that the receiving
  organisation can ask questions, accept or reject; it may update the Task and add messages;
- *shared* (accepted, in-progress, on-hold): also the woman's Patient resource and the
  request's ``supportingInfo``; it may add a back-referral (a ServiceRequest that refers to this
  one, with its Task);
- *closed* (completed, failed, rejected, cancelled): the record of the referral only (request,
  Task, thread); the Patient and the shared data are no longer reachable;
- *own-request*: a referral sent by an organisation without a care relationship of its own (a
  back-referral): its request, Task and thread.

This replaces the former broader grant ("an active ServiceRequest naming the professional as
performer, or a Task she owns, gave her the woman's whole record").
"""

from __future__ import annotations

from typing import Any

from fhir_server.json_codec import loads_trusted
from fhir_server.referrals.parties import party_aliases, ref_of, search_refs
from fhir_server.referrals.rules import Tier, Workflow, workflow
from fhir_server.security.relationships import SharedRecord


class ReferralGrants:
    """``RelationshipIndex`` provider: shared records from referrals."""

    types = frozenset(
        {"Task", "ServiceRequest", "Communication", "PractitionerRole", "HealthcareService"}
    )

    def __init__(self, svc: Any, rules: Workflow | None = None) -> None:
        self.svc = svc
        self.rules = rules or workflow()

    async def _search(self, type_: str, param: str, refs: list[str]) -> list[dict]:
        return await search_refs(self.svc.store, type_, param, refs)

    async def shared(
        self, principal: Any, related: frozenset[str] = frozenset()
    ) -> tuple[dict[str, SharedRecord], frozenset[str]]:
        base = self.svc.settings.public_url
        aliases = await party_aliases(self.svc.store, principal)
        mine = sorted(aliases)

        def unrelated(resource: dict, element: str) -> bool:
            # a woman she already cares for: her whole record is open, nothing to share
            patient = ref_of(resource.get(element), base) or ""
            return patient.partition("/")[2] not in related

        owned = [t for t in await self._search("Task", "owner", mine) if unrelated(t, "for")]
        requested_tasks = [
            t for t in await self._search("Task", "requester", mine) if unrelated(t, "for")
        ]
        requested = [
            r
            for r in await self._search("ServiceRequest", "requester", mine)
            if unrelated(r, "subject")
        ]
        requests: dict[str, dict] = {f"ServiceRequest/{r['id']}": r for r in requested}
        wanted = set()
        for task in owned + requested_tasks:
            focus = ref_of(task.get("focus"), base)
            if focus and focus.partition("/")[0] in self.rules.focus_types:
                wanted.add(focus)
        missing = sorted(wanted - set(requests))
        if missing:
            keys = [tuple(ref.split("/", 1)) for ref in missing]
            for version in await self.svc.store.read_many(keys, None):  # type: ignore[arg-type]
                if version.body is not None:
                    requests[f"{version.type}/{version.id}"] = loads_trusted(version.body)
        requests = {ref: r for ref, r in requests.items() if unrelated(r, "subject")}
        tasks: dict[str, list[dict]] = {ref: [] for ref in requests}
        for task in await self._search("Task", "focus", sorted(requests)):
            focus = ref_of(task.get("focus"), base)
            if focus in tasks:
                tasks[focus].append(task)
        anchors = sorted(set(requests) | {f"Task/{t['id']}" for ts in tasks.values() for t in ts})
        threads: dict[str, set[str]] = {}
        for param in self.rules.thread_params:
            for message in await self._search("Communication", param, anchors):
                key = f"Communication/{message['id']}"
                for link in _links(message, base):
                    threads.setdefault(link, set()).add(key)
        out: dict[str, SharedRecord] = {}
        for ref, request in requests.items():
            patient = ref_of(request.get("subject"), base)
            if not patient or not patient.startswith("Patient/"):
                continue
            pid = patient.split("/", 1)[1]
            record = SharedRecord()
            request_mine = ref_of(request.get("requester"), base) in aliases
            if not tasks[ref] and request_mine:
                tier = self.rules.tier("requester", "draft")
                if tier is not None:
                    record = record.merge(self._record(tier, ref, None, request, threads, base))
            for task in tasks[ref]:
                status = task.get("status")
                roles = []
                if ref_of(task.get("owner"), base) in aliases:
                    roles.append("owner")
                if request_mine or ref_of(task.get("requester"), base) in aliases:
                    roles.append("requester")
                for role in roles:
                    tier = self.rules.tier(role, status)
                    if tier is not None:
                        record = record.merge(self._record(tier, ref, task, request, threads, base))
            if record.read or record.write or record.create:
                out[pid] = out[pid].merge(record) if pid in out else record
        return out, aliases

    @staticmethod
    def _record(
        tier: Tier,
        request_ref: str,
        task: dict | None,
        request: dict,
        threads: dict[str, set[str]],
        base: str,
    ) -> SharedRecord:
        task_ref = f"Task/{task['id']}" if task is not None else None
        read: set[str] = set()
        if "ServiceRequest" in tier.read:
            read.add(request_ref)
        if "Task" in tier.read and task_ref:
            read.add(task_ref)
        if "thread" in tier.read:
            read |= threads.get(request_ref, set())
            if task_ref:
                read |= threads.get(task_ref, set())
        if "Patient" in tier.read:
            patient = ref_of(request.get("subject"), base)
            if patient:
                read.add(patient)
        if "supportingInfo" in tier.read:
            for item in request.get("supportingInfo", ()) or ():
                found = ref_of(item, base)
                if found:
                    read.add(found)
        write = {task_ref} if task_ref and "Task" in tier.write else set()
        anchors = {request_ref} | ({task_ref} if task_ref else set())
        return SharedRecord(
            frozenset(read),
            frozenset(write),
            frozenset(anchors) if tier.create else frozenset(),
            tier.create,
        )


def _links(resource: dict, base: str) -> set[str]:
    out = set()
    for key in ("basedOn", "partOf"):
        for item in resource.get(key, ()) or ():
            found = ref_of(item, base)
            if found:
                out.add(found)
    return out
