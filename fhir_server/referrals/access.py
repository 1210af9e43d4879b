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

The provider keeps, per professional, a ``ReferralView``: each referral of her party (its
request, Tasks and thread) with what it shares. ``view`` builds it in one pass (a handful of
searches over every referral of her organisation); ``update`` brings it up to date from committed
versions of ServiceRequests, Tasks and Communications (the index replays them from the store's
log, docs/referrals.md "Keeping it current"): a version that concerns one of her referrals, or a
new one addressed to or sent by her party, re-derives *that referral alone* from the store (its
request, its Tasks, its thread), so a new referral costs a few reads, not one per referral the
organisation ever had. Both paths derive a referral's share with the same function.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fhir_server.json_codec import loads_trusted
from fhir_server.referrals.parties import party_aliases, ref_of, search_refs
from fhir_server.referrals.rules import Tier, Workflow, workflow
from fhir_server.security.relationships import SharedRecord
from fhir_server.store.protocol import StoredVersion


@dataclass(slots=True)
class Shared:
    """What one referral shares with the professional's party."""

    patient: str  # the woman's id
    record: SharedRecord
    anchors: frozenset[str]  # its request and Tasks (Type/id)
    messages: frozenset[str]  # its thread (Communication/id)


@dataclass(slots=True)
class ReferralView:
    """A professional's referrals (request ref -> what it shares), kept current by ``update``."""

    aliases: frozenset[str]
    related: frozenset[str]  # women she has a care relationship with: nothing to share
    referrals: dict[str, Shared] = field(default_factory=dict)
    by_anchor: dict[str, str] = field(default_factory=dict)  # request / Task ref -> request ref
    by_message: dict[str, set[str]] = field(default_factory=dict)  # Communication -> requests
    by_patient: dict[str, set[str]] = field(default_factory=dict)  # woman -> request refs

    def put(self, ref: str, shared: Shared | None) -> None:
        old = self.referrals.pop(ref, None)
        if old is not None:
            for anchor in old.anchors:
                if self.by_anchor.get(anchor) == ref:
                    del self.by_anchor[anchor]
            for message in old.messages:
                refs = self.by_message.get(message)
                if refs is not None:
                    refs.discard(ref)
                    if not refs:
                        del self.by_message[message]
            mine = self.by_patient.get(old.patient)
            if mine is not None:
                mine.discard(ref)
                if not mine:
                    del self.by_patient[old.patient]
        if shared is None:
            return
        self.referrals[ref] = shared
        for anchor in shared.anchors:
            self.by_anchor[anchor] = ref
        for message in shared.messages:
            self.by_message.setdefault(message, set()).add(ref)
        self.by_patient.setdefault(shared.patient, set()).add(ref)

    def record(self, patient: str) -> SharedRecord | None:
        """What all her referrals share of one woman (None: nothing)."""
        refs = self.by_patient.get(patient)
        if not refs:
            return None
        if len(refs) == 1:
            return self.referrals[next(iter(refs))].record
        read: set[str] = set()
        write: set[str] = set()
        anchors: set[str] = set()
        create: set[str] = set()
        for ref in refs:  # one union, not a merge per referral (a woman with many referrals)
            record = self.referrals[ref].record
            read |= record.read
            write |= record.write
            anchors |= record.anchors
            create |= record.create
        return SharedRecord(
            frozenset(read), frozenset(write), frozenset(anchors), frozenset(create)
        )

    def records(self) -> dict[str, SharedRecord]:
        out: dict[str, SharedRecord] = {}
        for patient in self.by_patient:
            record = self.record(patient)
            if record is not None:
                out[patient] = record
        return out


class ReferralGrants:
    """``RelationshipIndex`` provider: shared records from referrals."""

    types = frozenset(
        {"Task", "ServiceRequest", "Communication", "PractitionerRole", "HealthcareService"}
    )
    # the types whose committed versions ``update`` applies (the rest make the index recompute)
    incremental = frozenset({"Task", "ServiceRequest", "Communication"})

    def __init__(self, svc: Any, rules: Workflow | None = None) -> None:
        self.svc = svc
        self.rules = rules or workflow()

    async def _search(self, type_: str, param: str, refs: list[str]) -> list[dict]:
        return await search_refs(self.svc.store, type_, param, refs)

    async def shared(
        self, principal: Any, related: frozenset[str] = frozenset()
    ) -> tuple[dict[str, SharedRecord], frozenset[str]]:
        view = await self.view(principal, related)
        return view.records(), view.aliases

    async def view(self, principal: Any, related: frozenset[str] = frozenset()) -> ReferralView:
        """Every referral of the professional's party, in one pass."""
        base = self.svc.settings.public_url
        aliases = await party_aliases(self.svc.store, principal)
        view = ReferralView(aliases, related)
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
        threads = await self._threads(
            sorted(set(requests) | {f"Task/{t['id']}" for ts in tasks.values() for t in ts})
        )
        for ref, request in requests.items():
            view.put(ref, self._derive(view, ref, request, tasks[ref], threads))
        return view

    async def _threads(self, anchors: list[str]) -> dict[str, set[str]]:
        """The thread of each anchor: the Communications whose basedOn or partOf names it."""
        base = self.svc.settings.public_url
        threads: dict[str, set[str]] = {}
        for param in self.rules.thread_params:
            for message in await self._search("Communication", param, anchors):
                key = f"Communication/{message['id']}"
                for link in _links(message, base):
                    threads.setdefault(link, set()).add(key)
        return threads

    def _derive(
        self,
        view: ReferralView,
        ref: str,
        request: dict,
        tasks: list[dict],
        threads: dict[str, set[str]],
    ) -> Shared | None:
        """What one referral (its request, Tasks and thread) shares with the party."""
        base, aliases = self.svc.settings.public_url, view.aliases
        patient = ref_of(request.get("subject"), base)
        if not patient or not patient.startswith("Patient/"):
            return None
        pid = patient.split("/", 1)[1]
        if pid in view.related:
            return None
        record = SharedRecord()
        request_mine = ref_of(request.get("requester"), base) in aliases
        if not tasks and request_mine:
            tier = self.rules.tier("requester", "draft")
            if tier is not None:
                record = record.merge(self._record(tier, ref, None, request, threads, base))
        for task in tasks:
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
        if not (record.read or record.write or record.create):
            return None
        anchors = frozenset({ref} | {f"Task/{t['id']}" for t in tasks})
        messages = frozenset(m for anchor in anchors for m in threads.get(anchor, ()))
        return Shared(pid, record, anchors, messages)

    # -- keeping a view current ----------------------------------------------------------------

    def concerns(self, view: ReferralView, version: StoredVersion, body: dict | None) -> bool:
        """Whether a committed version (``body``: its content, None for a delete) may change
        what the view shares (cheap, in memory)."""
        return bool(self._touched(view, version, body))

    def _touched(self, view: ReferralView, version: StoredVersion, body: dict | None) -> set[str]:
        """The referrals (request refs) a version may change: one the view knows, or a new one
        addressed to or sent by the party."""
        base, aliases = self.svc.settings.public_url, view.aliases
        key = f"{version.type}/{version.id}"
        out: set[str] = set()
        if version.type == "Communication":
            out |= view.by_message.get(key, set())
            for link in _links(body, base) if body is not None else ():
                if link in view.by_anchor:
                    out.add(view.by_anchor[link])
            return out
        if key in view.by_anchor:
            out.add(view.by_anchor[key])
        if body is None:
            return out
        woman = ref_of(body.get("subject" if version.type == "ServiceRequest" else "for"), base)
        if woman and woman.partition("/")[2] in view.related:
            return out  # she cares for the woman: the whole record is open, nothing to share
        if version.type == "ServiceRequest":
            if ref_of(body.get("requester"), base) in aliases:
                out.add(key)
        elif version.type == "Task":
            focus = ref_of(body.get("focus"), base)
            if (
                focus
                and focus.partition("/")[0] in self.rules.focus_types
                and (
                    focus in view.referrals
                    or ref_of(body.get("owner"), base) in aliases
                    or ref_of(body.get("requester"), base) in aliases
                )
            ):
                out.add(focus)
        return out

    async def update(self, view: ReferralView, versions: list[StoredVersion]) -> set[str]:
        """Apply committed versions (oldest first) to the view: each referral they touch is
        derived again from the store, alone. Returns the women whose shared record may have
        changed."""
        touched: set[str] = set()
        for version in versions:
            if version.type in self.incremental:
                body = loads_trusted(version.body) if version.body is not None else None
                touched |= self._touched(view, version, body)
        changed: set[str] = set()
        for ref in sorted(touched):
            old = view.referrals.get(ref)
            new = await self._one(view, ref)
            view.put(ref, new)
            changed |= {s.patient for s in (old, new) if s is not None}
        return changed

    async def _one(self, view: ReferralView, ref: str) -> Shared | None:
        """One referral, derived from the store as it is now."""
        base, aliases = self.svc.settings.public_url, view.aliases
        type_, _, id_ = ref.partition("/")
        stored = await self.svc.store.current(type_, id_)
        if stored is None or stored.deleted or stored.body is None:
            return None
        request = loads_trusted(stored.body)
        woman = ref_of(request.get("subject"), base)
        if not woman or woman.partition("/")[2] in view.related:
            return None
        tasks = [
            t
            for t in await self._search("Task", "focus", [ref])
            if ref_of(t.get("focus"), base) == ref
        ]
        if ref_of(request.get("requester"), base) not in aliases and not any(
            ref_of(t.get("owner"), base) in aliases or ref_of(t.get("requester"), base) in aliases
            for t in tasks
        ):
            return None  # not (or no longer) a referral of her party
        threads = await self._threads(sorted({ref} | {f"Task/{t['id']}" for t in tasks}))
        return self._derive(view, ref, request, tasks, threads)

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
    out: set[str] = set()
    for key in ("basedOn", "partOf"):
        for item in resource.get(key, ()) or ():
            found = ref_of(item, base)
            if found:
                out.add(found)
    return out
