"""The referral workflow as data: ``mappings/referral-workflow.json`` read into one object.

Nothing about which status may follow which, who may set it, what a status requires or what a
referral shares with the receiving organisation is written in code; the table says it, and the
programme can change it without a release (docs/referrals.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import orjson

MAPPINGS = "fhir_server.content.mappings"
CREATE = "(create)"


@dataclass(slots=True, frozen=True)
class Tier:
    """What a referral shares with one of its parties (docs/referrals.md "Access")."""

    name: str
    read: frozenset[str]  # ServiceRequest, Task, thread, Patient, supportingInfo
    write: frozenset[str]  # resource types of the referral the party may update (its Task)
    create: frozenset[str]  # resource types the party may add to the referral (thread, back-ref)


@dataclass(slots=True, frozen=True)
class Workflow:
    focus_types: frozenset[str]
    create: dict[str, frozenset[str]]  # status -> roles that may create a Task in it
    transitions: dict[str, dict[str, frozenset[str]]]  # from -> to -> roles
    final: frozenset[str]
    edit: dict[str, frozenset[str]]  # status -> roles that may change a Task and keep the status
    immutable: tuple[str, ...]
    owner_change_statuses: frozenset[str]
    owner_change_by: frozenset[str]
    owner_required: frozenset[str]
    reason_required: frozenset[str]
    outcome_required: frozenset[str]
    outcome_system: str
    outcome_type: dict[str, Any]
    delete_statuses: frozenset[str]
    delete_by: frozenset[str]
    request_status: dict[str, str]  # Task status -> ServiceRequest status
    access: dict[str, dict[str, Tier]]  # role -> Task status -> tier
    thread_params: tuple[str, ...]

    def next_statuses(self, status: str | None) -> list[str]:
        if status is None:
            return sorted(self.create)
        return sorted(self.transitions.get(status, {}))

    def roles_for(self, old: str | None, new: str) -> frozenset[str] | None:
        """Who may move a Task from ``old`` (None: a create) to ``new``; None: not allowed."""
        if old is None:
            return self.create.get(new)
        return self.transitions.get(old, {}).get(new)

    def tier(self, role: str, status: str | None) -> Tier | None:
        return self.access.get(role, {}).get(status or "")


def _roles(values: Any) -> frozenset[str]:
    return frozenset(v for v in values or () if isinstance(v, str))


def parse(data: dict[str, Any]) -> Workflow:
    access = data["access"]
    tiers = {
        name: Tier(name, _roles(t.get("read")), _roles(t.get("write")), _roles(t.get("create")))
        for name, t in access["tiers"].items()
    }
    by_role: dict[str, dict[str, Tier]] = {}
    for role in ("owner", "requester"):
        by_role[role] = {status: tiers[name] for status, name in access.get(role, {}).items()}
    return Workflow(
        focus_types=_roles(data["referralTask"]["focusTypes"]),
        create={status: _roles(roles) for status, roles in data["create"].items()},
        transitions={
            old: {new: _roles(roles) for new, roles in targets.items()}
            for old, targets in data["transitions"].items()
        },
        final=_roles(data["final"]["statuses"]),
        edit={k: _roles(v) for k, v in data["edit"].items() if k != "why"},
        immutable=tuple(data["immutable"]["elements"]),
        owner_change_statuses=_roles(data["ownerChange"]["statuses"]),
        owner_change_by=_roles(data["ownerChange"]["by"]),
        owner_required=_roles(data["ownerRequiredFrom"]["statuses"]),
        reason_required=_roles(data["statusReasonRequired"]["statuses"]),
        outcome_required=_roles(data["outcome"]["requiredFor"]),
        outcome_system=data["outcome"]["system"],
        outcome_type=dict(data["outcome"].get("outputType") or {"text": "Referral outcome"}),
        delete_statuses=_roles(data["delete"]["statuses"]),
        delete_by=_roles(data["delete"]["by"]),
        request_status={k: v for k, v in data["serviceRequestStatus"].items() if k != "why"},
        access=by_role,
        thread_params=tuple(access["thread"]["searchParameters"]),
    )


@cache
def workflow() -> Workflow:
    raw = (resources.files(MAPPINGS) / "referral-workflow.json").read_bytes()
    return parse(orjson.loads(raw))
