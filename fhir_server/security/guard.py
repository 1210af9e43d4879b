"""The authorization guard of the service layer (service/core.py ``Guard``).

Every interaction calls ``check`` once per attempted access; every search (and chained / ``_has``
sub-query, ``_revinclude`` and conditional-operation search) is narrowed by ``search_filter``;
``_include`` results and history entries pass ``visible``. The decision, in order:

1. type rules (mappings/security-access-policy.json): the audit trail is read by administrators
   and never written through the API, Provenance is append-only, conformance resources are
   written by administrators only, some types are outside the Patient compartment but may hold
   patient data (administrators and registered system clients only);
2. scopes (SMART v1/v2): the token must grant the permission (c r u d s) on the type, in the
   patient, user or system context; v2 query restrictions become search predicates;
3. patient data (types of the Patient compartment): a ``patient/`` scope reaches only the token's
   patient; a professional (``user``) reaches only patients with a care relationship and without a
   denying Consent (relationships.py), unless break-the-glass was claimed; a system client only if
   registered for patient data;
4. security labels: resources labelled restricted (mappings/security-labels.json) are hidden from
   callers without clearance (Role B).

A refused read looks exactly like a missing resource (404); a refused write or a missing scope is a
403. With no principal (the server runs ``--insecure-open``, or an internal caller such as the demo
loader) every method returns at once.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from fhir_server.errors import FhirError, unknown
from fhir_server.json_codec import loads_trusted
from fhir_server.search.registry import Registry
from fhir_server.security.labels import Labeller, label_keys, restricted_label_preds
from fhir_server.security.policy import Label, access_policy, label_policy
from fhir_server.security.principal import SecurePrincipal
from fhir_server.security.relationships import (
    RelationshipIndex,
    SharedRecord,
    consent_restricts,
    local_ref,
)
from fhir_server.security.scopes import PERMISSION, ScopeRule, ScopeSet
from fhir_server.service.context import Principal, RequestContext
from fhir_server.service.core import Access
from fhir_server.service.search import patient_compartment
from fhir_server.store.protocol import StoredVersion
from fhir_server.store.query import (
    ANY_SYSTEM,
    NO_SYSTEM,
    ChainPred,
    IdPred,
    InPred,
    NotPred,
    Pred,
    Query,
    ReferencePred,
    TokenPred,
    UriPred,
)

log = logging.getLogger("fhir_server.security")

WRITES = frozenset({"create", "update", "patch", "delete"})
NOTHING = (InPred(()),)  # a clause no resource matches
READS_MAX = 20_000
FACTS_MAX = 100_000


@dataclass(slots=True, frozen=True)
class Facts:
    patients: frozenset[str]  # patients whose compartment holds the resource
    labels: frozenset[Label]  # meta.security (system, code)


@dataclass(slots=True, frozen=True)
class Share:
    """One access to one resource, as a shared record judges it: read or write ``key``, or
    create ``key`` of ``type`` referring to ``links``."""

    kind: str  # read | write | create
    key: str  # Type/id
    type: str = ""
    links: frozenset[str] = frozenset()


class Refused(FhirError):
    pass


class NotVisible(Refused):
    """The stored resource must look to the caller exactly like a missing one. Interactions
    catch it (``hides_resource``) and answer as they answer for a missing resource (404, 204 for
    a delete, 412 for an If-Match...); its own message is the one a read of a missing resource
    gets."""

    hides_resource = True


def hidden(type_: str, id_: str | None) -> FhirError:
    """A refusal that cannot be told apart from a missing resource."""
    return NotVisible(404, "not-found", unknown(type_, id_ or "").issues[0].diagnostics)


def forbidden(message: str) -> FhirError:
    return Refused(403, "forbidden", message)


def as_secure(principal: Principal) -> SecurePrincipal:
    """Principals built outside the security layer (tests, internal callers) get the same rules."""
    if isinstance(principal, SecurePrincipal):
        return principal
    scope = " ".join(sorted(principal.scopes))
    return SecurePrincipal(
        subject=principal.subject,
        client_id=principal.client_id,
        scopes=principal.scopes,
        role=principal.role,
        practitioner=principal.practitioner,
        organization=principal.organization,
        patient=principal.patient,
        claims=principal.claims,
        kind=str(principal.claims.get("bib_kind", "user")),
        admin=bool(principal.claims.get("bib_admin")),
        patient_data=bool(principal.claims.get("bib_patient_data", True)),
        scope_set=ScopeSet.parse(scope),
    )


class SecurityGuard:
    def __init__(self, svc: Any, relationships: RelationshipIndex, labeller: Labeller) -> None:
        self.svc = svc
        self.rel = relationships
        self.labeller = labeller
        self.policy = access_policy()
        self.labels = label_policy()
        self.compartment = {t: p for t, p in patient_compartment().items() if p}
        self.patient_types = frozenset(self.compartment) | {"Patient"}
        self._facts: dict[tuple[str, str, int], Facts] = {}
        self._scope_clauses: dict[tuple[str, tuple], list[tuple[Pred, ...]] | None] = {}
        self._label_clause: dict[str | None, tuple | None] = {}
        # (principal id, type, id, version, lastUpdated) -> (principal, relations, patients):
        # reads allowed before (_check_read)
        self._reads: dict[tuple, tuple[SecurePrincipal, Any, frozenset[str]]] = {}

    @property
    def registry(self) -> Registry:
        return self.svc.registry

    # -- facts about a resource ------------------------------------------------------------------

    def patients_of(self, type_: str, resource: dict) -> frozenset[str]:
        if type_ == "Patient":
            id_ = resource.get("id")
            return frozenset((id_,)) if isinstance(id_, str) else frozenset()
        params = self.compartment.get(type_)
        if not params:
            return frozenset()
        rows = self.svc.extractor.extract(resource, only=set(params))
        return frozenset(r[2] for r in rows.references if r[1] == "Patient" and r[2])

    def facts_of_resource(self, type_: str, resource: dict) -> Facts:
        return Facts(self.patients_of(type_, resource), label_keys(resource))

    async def facts_of(self, version: StoredVersion) -> Facts:
        key = (version.type, version.id, version.version)
        facts = self._facts.get(key) if version.version else None
        if facts is not None:
            return facts
        body = version.body
        if body is None:  # a tombstone: judge by the version before it
            before = (
                await self.svc.store.version(version.type, version.id, version.version - 1)
                if version.version > 1
                else None
            )
            facts = (
                await self.facts_of(before)
                if before is not None
                else Facts(frozenset(), frozenset())
            )
        else:
            facts = self.facts_of_resource(version.type, loads_trusted(body))
        if version.version:
            if len(self._facts) >= FACTS_MAX:
                self._facts.clear()
            self._facts[key] = facts
        return facts

    # -- Guard.check -----------------------------------------------------------------------------

    async def check(self, ctx: RequestContext, access: Access) -> None:
        principal = ctx.principal
        if principal is None:
            return
        p = as_secure(principal)
        try:
            await self._check(ctx, p, access)
        except Refused as exc:
            if hasattr(ctx, "refusal") and not getattr(ctx, "refusal", None):
                ctx.refusal = exc.issues[0].diagnostics  # type: ignore[attr-defined]
            raise

    async def _check(self, ctx: RequestContext, p: SecurePrincipal, access: Access) -> None:
        interaction = access.interaction
        type_ = access.resource_type
        if interaction in ("transaction", "batch"):
            if not p.scope_set.rules:
                raise forbidden("the granted scopes do not allow any FHIR interaction")
            return  # every entry is checked on its own
        if interaction == "operation":
            await self._check_operation(ctx, p, access)
            return
        if interaction in ("search-system", "history-system"):
            if not p.scope_set.any_grant("s"):
                raise forbidden(f"the granted scopes do not allow {interaction}")
            return  # search_filter / visible narrow the results
        assert type_ is not None
        self._type_rules(p, interaction, type_)
        perm = PERMISSION[interaction]
        current = access.current
        live = current is not None and not current.deleted
        grants = p.scope_set.grants(type_, perm)
        if interaction in ("update", "patch") and not live:
            grants = grants + p.scope_set.grants(type_, "c")  # update as create
        if not grants:
            raise forbidden(f"the granted scopes do not allow {interaction} on {type_}")
        self._data_type_rules(p, type_)  # a type-level rule: same answer whatever is stored
        if interaction in ("search-type", "history-type"):
            return
        # Everything above depends on the type and the token only, so it answers the same for
        # a missing and a hidden resource. From here on the stored data is judged: first
        # whether the caller may know it exists at all, before anything could reveal it.
        id_ = access.resource_id
        if interaction == "read" and current is not None:
            await self._check_read(ctx, p, current, grants, type_, id_)
        elif interaction in ("read", "vread"):
            await self._check_stored(ctx, p, current, grants, type_, id_, hide=True)
        elif interaction == "history-instance":
            stored = await self.svc.store.current(type_, id_ or "")
            await self._check_stored(ctx, p, stored, grants, type_, id_, hide=True)
        elif interaction == "create":
            assert access.resource is not None
            await self._check_new(ctx, p, type_, access.resource, grants, creating=True)
            await self._check_identity_change(p, type_, access.resource, None)
        elif interaction in ("update", "patch"):
            if current is not None and not await self._can_see(ctx, p, current, perm):
                if access.resource is not None:  # judged exactly as the write of a missing id
                    await self._check_new(ctx, p, type_, access.resource, grants, creating=True)
                await self._hide(ctx, current)
            if current is not None:
                # a live resource, or a deleted one being re-created: authorised like an update
                # of the record it replaces (its patients must be writable too)
                await self._check_stored(ctx, p, current, grants, type_, id_, write=True)
                if live:
                    self._check_consent_change(p, type_, current)
            if access.resource is not None:
                await self._check_new(
                    ctx, p, type_, access.resource, grants, creating=current is None
                )
                await self._check_identity_change(p, type_, access.resource, current)
        elif interaction == "delete" and current is not None:
            if not await self._can_see(ctx, p, current, perm):
                await self._hide(ctx, current)
            if live:
                await self._check_stored(ctx, p, current, grants, type_, id_, write=True)
                self._check_consent_change(p, type_, current)
                await self._check_identity_change(p, type_, None, current)

    async def _check_read(
        self,
        ctx: RequestContext,
        p: SecurePrincipal,
        current: StoredVersion,
        grants: tuple[ScopeRule, ...],
        type_: str,
        id_: str | None,
    ) -> None:
        """A read of the current version, judged once per caller, version and care
        relationships: a professional reading the same record again is allowed at once if
        nothing the verdict depends on has changed. The verdict depends on the token (the same
        principal object: scopes, role, patient context), the version (its patients and labels),
        it being the current one, and the caller's relationships, consent and shared records:
        the relationship index hands out a new object whenever a commit touches them (or its
        cache expires), which is a miss here. Break-the-glass, patients created in this request
        and granular scope queries are judged the long way every time."""
        if (
            p.kind != "user"
            or ctx.break_glass
            or ctx.new_patients
            or type_ == "Provenance"
            or all(g.query for g in grants)
        ):
            await self._check_stored(ctx, p, current, grants, type_, id_, hide=True)
            return
        key = (id(p), type_, current.id, current.version, current.last_updated)
        relations = await self.rel.relations(p)
        seen = self._reads.get(key)
        if (
            seen is not None
            and seen[0] is p
            and seen[1] is relations
            and await self._current_if_older(current) is None
        ):
            ctx.patients.update(seen[2])
            return
        await self._check_stored(ctx, p, current, grants, type_, id_, hide=True)
        if await self.rel.relations(p) is not relations:
            return  # changed while judging: not remembered
        if await self._current_if_older(current) is not None:
            return  # judged by a newer version too: not remembered
        patients = (
            (await self.facts_of(current)).patients
            if type_ in self.patient_types and not self._audit_reader(p, type_)
            else frozenset()
        )
        if len(self._reads) >= READS_MAX:
            self._reads.clear()
        self._reads[key] = (p, relations, patients)

    async def _hide(self, ctx: RequestContext, current: StoredVersion) -> None:
        """Refuse as if ``current`` did not exist; the audit trail still names its patients."""
        ctx.patients.update((await self.facts_of(current)).patients)
        self._note(ctx, "the resource is not visible to the caller")
        raise hidden(current.type, current.id)

    async def _can_see(
        self, ctx: RequestContext, p: SecurePrincipal, version: StoredVersion, perm: str
    ) -> bool:
        """Whether the caller may know that this stored resource exists: judged with every grant
        that could let them act on it (read, search or the interaction's own permission)."""
        type_ = version.type
        grants = (
            p.scope_set.grants(type_, "r")
            + p.scope_set.grants(type_, "s")
            + p.scope_set.grants(type_, perm)
        )
        if not grants:
            return False
        try:
            await self._check_stored(_Silent(ctx), p, version, grants, type_, version.id, hide=True)
        except Refused:
            return False
        return True

    async def hides(self, ctx: RequestContext, version: StoredVersion) -> bool:
        principal = ctx.principal
        if principal is None:
            return False
        return not await self._can_see(ctx, as_secure(principal), version, "r")

    async def _check_identity_change(
        self,
        p: SecurePrincipal,
        type_: str,
        resource: dict | None,
        current: StoredVersion | None,
    ) -> None:
        """Directory elements that decide how a token resolves to a person (identifiers of
        Practitioners and Organizations, mappings/security-access-policy.json) are written by
        administrators only: nobody may make someone else's token resolve to them."""
        elements = self.policy.identity_elements.get(type_)
        if not elements or p.admin:
            return
        before = loads_trusted(current.body) if current is not None and current.body else {}
        after = resource or {}
        if any(before.get(e) != after.get(e) for e in elements):
            raise forbidden(
                f"{', '.join(elements)} of a {type_} decide whose identity a token resolves to: "
                "only an administrator may change them"
            )

    def _check_consent_change(
        self, p: SecurePrincipal, type_: str, current: StoredVersion | None
    ) -> None:
        """A professional may not change or delete a Consent that restricts them (break-the-glass
        does not help either): someone it does not restrict, or an administrator, must."""
        if type_ != "Consent" or p.kind != "user" or p.admin or current is None:
            return
        consent = loads_trusted(current.body) if current.body is not None else None
        if isinstance(consent, dict) and consent_restricts(
            consent, set(p.user_refs), self.svc.settings.public_url
        ):
            raise forbidden(
                "this Consent restricts you: it can be changed by someone it does not restrict "
                "or by an administrator"
            )

    def _type_rules(self, p: SecurePrincipal, interaction: str, type_: str) -> None:
        policy = self.policy
        write = interaction in WRITES
        if write and type_ in policy.no_api_write:
            raise forbidden(f"{type_} resources are written by the server only")
        if interaction in ("update", "patch", "delete") and type_ in policy.append_only:
            raise forbidden(f"{type_} resources cannot be changed or deleted")
        if type_ in policy.admin_read and not p.admin:
            raise forbidden(f"{type_} resources are available to administrators only")
        if write and type_ in policy.admin_write and not p.admin:
            raise forbidden(f"{type_} resources are written by administrators only")
        if write and type_ in policy.role_b_no_write and p.role != "A" and p.kind == "user":
            raise forbidden(f"{type_} resources are written by Role A professionals only")

    def _audit_reader(self, p: SecurePrincipal, type_: str) -> bool:
        """Administrators read the whole audit trail: it is not patient data to them."""
        return p.admin and type_ in self.policy.admin_read

    def _data_type_rules(self, p: SecurePrincipal, type_: str) -> None:
        if self._audit_reader(p, type_):
            return
        if type_ in self.policy.restricted and not self._unrestricted_system(p) and not p.admin:
            raise forbidden(f"{type_} resources are available to administrators only")
        if type_ in self.patient_types:
            if p.kind == "system" and not p.patient_data:
                raise forbidden("this client is not registered for patient data")
            if p.kind == "user" and p.role is None:
                raise forbidden("no BiB role: the professional's profession gives no access")

    @staticmethod
    def _unrestricted_system(p: SecurePrincipal) -> bool:
        return p.kind == "system" and p.patient_data and p.role == "A"

    async def _check_operation(
        self, ctx: RequestContext, p: SecurePrincipal, access: Access
    ) -> None:
        rule = self.policy.operations.get(access.operation or "")
        if rule == "admin" and not p.admin:
            raise forbidden(f"${access.operation} is available to administrators only")
        type_ = access.resource_type
        if type_ is None:
            if not p.scope_set.rules:
                raise forbidden("the granted scopes do not allow any FHIR interaction")
            return
        grants = p.scope_set.grants(type_, "r") or p.scope_set.grants(type_, "s")
        if not grants:
            raise forbidden(f"the granted scopes do not allow operations on {type_}")
        self._data_type_rules(p, type_)
        if access.resource_id:
            stored = await self.svc.store.current(type_, access.resource_id)
            await self._check_stored(ctx, p, stored, grants, type_, access.resource_id, hide=True)
        else:
            self._data_type_rules(p, type_)

    async def _check_stored(
        self,
        ctx: RequestContext,
        p: SecurePrincipal,
        version: StoredVersion | None,
        grants: tuple[ScopeRule, ...],
        type_: str,
        id_: str | None,
        hide: bool = False,
        write: bool = False,
    ) -> None:
        """Judge a stored version: ``hide`` answers a refusal as "not known"; ``write`` needs
        every patient of the resource to be writable by the caller (not just one)."""
        if version is None:
            return  # the interaction reports "not found" itself
        deny = (
            (lambda: hidden(type_, id_))
            if hide
            else (lambda: forbidden(f"you may not change {type_}/{id_}"))
        )
        if type_ == "Provenance" and p.kind == "user":
            if not await self._provenance_visible(ctx, p, version):
                self._note(ctx, "none of the Provenance targets is visible to the caller")
                raise deny()
            return
        facts = await self.facts_of(version)
        share = Share("write" if write else "read", f"{type_}/{version.id}")
        await self._judge(ctx, p, type_, facts, grants, deny, every_patient=write, share=share)
        # a version that is not the current one is also judged by the current one's patients,
        # labels and consent: a label added later hides the versions before it (most
        # restrictive wins)
        current = await self._current_if_older(version)
        if current is not None:
            await self._judge(
                ctx,
                p,
                type_,
                await self.facts_of(current),
                grants,
                deny,
                every_patient=write,
                share=share,
            )
        if any(not g.query for g in grants):
            return
        resource = loads_trusted(version.body) if version.body is not None else None
        if resource is None or not await self._matches_scope(type_, resource, grants, version):
            self._note(ctx, "outside the granted scope's query")
            raise deny()

    async def _current_if_older(self, version: StoredVersion) -> StoredVersion | None:
        current = await self.svc.store.current(version.type, version.id)
        if current is None or current.version == version.version:
            return None
        return current

    async def _check_new(
        self,
        ctx: RequestContext,
        p: SecurePrincipal,
        type_: str,
        resource: dict,
        grants: tuple[ScopeRule, ...],
        creating: bool,
    ) -> None:
        def deny() -> FhirError:
            return forbidden(f"you may not write this {type_}")

        if type_ == "Provenance" and p.kind == "user":
            self._check_provenance_agents(p, resource)
            for target in resource.get("target", ()):
                ref = target.get("reference") if isinstance(target, dict) else None
                local = self.local_ref(ref)
                stored = await self.svc.store.current(*local.split("/", 1)) if local else None
                if stored is None or not await self.visible(ctx, stored):
                    raise forbidden("a Provenance may only target resources the caller can see")
            return
        labels = await self.labeller.labels_for(resource)
        facts = Facts(self.patients_of(type_, resource), labels)

        if type_ == "Patient" and creating:
            # a new patient record: no care relationship can exist yet; it comes from
            # managingOrganization / generalPractitioner, a CareTeam or an EPD launch
            if all(g.context == "patient" for g in grants):
                raise forbidden("a patient-context token cannot create other patients")
            self._data_type_rules(p, type_)
            self._judge_labels(ctx, p, facts, deny)
        else:
            if type_ in self.patient_types and not facts.patients:
                raise forbidden(
                    f"a {type_} must reference the patient it is about (Patient compartment)"
                )
            key = f"{type_}/{resource.get('id')}"
            share = (
                Share("create", key, type_, self._links(resource))
                if creating
                else Share("write", key)
            )
            await self._judge(ctx, p, type_, facts, grants, deny, every_patient=True, share=share)
        if any(not g.query for g in grants):
            return
        if not await self._matches_scope(type_, resource, grants, None):
            raise forbidden(f"this {type_} is outside the granted scope's query")

    def local_ref(self, ref: Any) -> str | None:
        """``Type/id`` of a reference to this server (relative, or absolute under its base URL);
        None for another server's resource or anything that is not a literal reference. The one
        way references are resolved for access decisions."""
        return local_ref(ref, self.svc.settings.public_url)

    def _links(self, resource: dict) -> frozenset[str]:
        """Every reference of a new resource to this server, as ``Type/id``."""
        found: set[str] = set()
        stack: list[Any] = [resource]
        while stack:
            node = stack.pop()
            if isinstance(node, dict):
                ref = node.get("reference")
                if isinstance(ref, str):
                    local = self.local_ref(ref)
                    if local:
                        found.add(local)
                stack.extend(v for v in node.values() if isinstance(v, (dict, list)))
            elif isinstance(node, list):
                stack.extend(v for v in node if isinstance(v, (dict, list)))
        return frozenset(found)

    @staticmethod
    def _shares(ctx: Any, record: SharedRecord | None, share: Share | None) -> bool:
        """Whether a shared record (relationships.SharedRecord: what a referral shares with a
        professional without a care relationship) allows this access to one resource. A new
        resource of an allowed type that refers to an anchor (the referral's request or Task)
        becomes an anchor itself for the rest of the request (a back-referral's Task may
        follow its ServiceRequest in one transaction)."""
        if record is None or share is None:
            return False
        if share.kind == "read":
            return share.key in record.read
        if share.kind == "write":
            return share.key in record.write
        if share.type not in record.create:
            return False
        extra = getattr(ctx, "extra", None)
        anchors = extra.get("shared_anchors", set()) if isinstance(extra, dict) else set()
        if share.links & record.anchors or share.links & anchors:
            if isinstance(extra, dict):
                extra.setdefault("shared_anchors", set()).add(share.key)
            return True
        return False

    def _check_provenance_agents(self, p: SecurePrincipal, resource: dict) -> None:
        """A professional's Provenance names the professional (or their organisation, or one of
        their roles) as every agent: nobody may attribute a write to someone else."""
        mine = set(p.user_refs)
        for agent in resource.get("agent", ()):
            if not isinstance(agent, dict):
                continue
            for key in ("who", "onBehalfOf"):
                value = agent.get(key)
                if value is None:
                    continue
                ref = value.get("reference") if isinstance(value, dict) else None
                if self.local_ref(ref) not in mine:
                    raise forbidden(
                        "a Provenance you write may only name you, your role or your "
                        f"organisation as agent ({key})"
                    )

    def _note(self, ctx: Any, reason: str) -> None:
        if isinstance(ctx, _Silent):
            return
        if hasattr(ctx, "refusal") and not getattr(ctx, "refusal", None):
            ctx.refusal = reason  # type: ignore[attr-defined]

    async def _judge(
        self,
        ctx: RequestContext,
        p: SecurePrincipal,
        type_: str,
        facts: Facts,
        grants: tuple[ScopeRule, ...],
        deny: Any,
        every_patient: bool = False,
        share: Share | None = None,
    ) -> None:
        """Type rules, patient context, care relationships, consent and labels. A read needs
        one of the resource's patients to be reachable; a write (``every_patient``) needs all
        of them: data may not be placed in, or point into, a record the caller cannot write.
        A patient without a care relationship is reachable for this one resource when her
        record shares it with the caller (``share``: a referral)."""
        if self._audit_reader(p, type_):
            return
        self._data_type_rules(p, type_)
        if type_ in self.patient_types:
            patients = facts.patients
            if not patients:
                self._note(ctx, "not in any patient's compartment")
                raise deny()
            ctx.patients.update(patients)
            if all(g.context == "patient" for g in grants):
                if p.patient is None or p.patient not in patients:
                    self._note(ctx, "outside the token's patient context")
                    raise deny()
                if every_patient and patients != {p.patient}:
                    self._note(ctx, "refers to patients outside the token's patient context")
                    raise deny()
                patients = frozenset((p.patient,))
            if p.kind == "user" and not ctx.break_glass:
                relations = await self.rel.relations(p)
                reachable = patients & (relations.patients | ctx.new_patients)
                if relations.shared and reachable != patients:
                    reachable |= {
                        pid
                        for pid in patients - reachable
                        if self._shares(ctx, relations.shared.get(pid), share)
                    }
                if not reachable or (every_patient and reachable != patients):
                    self._note(ctx, "no care relationship with the patient (or consent denies it)")
                    raise deny()
                denied = [
                    relations.label_denies.get(pid, frozenset()) & facts.labels for pid in reachable
                ]
                if facts.labels and (any(denied) if every_patient else all(denied)):
                    self._note(ctx, "the patient's consent denies these labelled data")
                    raise deny()
        self._judge_labels(ctx, p, facts, deny)

    def _judge_labels(
        self, ctx: RequestContext, p: SecurePrincipal, facts: Facts, deny: Any
    ) -> None:
        restricted = facts.labels & self.labels.restricted
        if not restricted:
            return
        readable = self._readable(p)
        if readable is not None and restricted - readable:
            self._note(ctx, "restricted security labels (no clearance)")
            raise deny()

    def _readable(self, p: SecurePrincipal) -> frozenset[Label] | None:
        """Restricted labels this caller may read (None: all)."""
        return self.labels.clearance.get(p.role or "", frozenset())

    # -- scope query restrictions (SMART v2 granular scopes) -------------------------------------

    def scope_clauses(self, type_: str, rule: ScopeRule) -> list[tuple[Pred, ...]] | None:
        key = (type_, rule.query)
        if key not in self._scope_clauses:
            try:
                parsed = self.svc.parser.parse((type_,), list(rule.query), strict=True)
                clauses = list(parsed.query.where)
            except FhirError:
                log.warning(  # parameter names only: values may identify a patient
                    "a %s scope query uses parameters this server cannot apply (%s)",
                    type_,
                    ", ".join(sorted({name for name, _ in rule.query})),
                )
                clauses = None
            self._scope_clauses[key] = clauses
        return self._scope_clauses[key]

    async def _matches_scope(
        self,
        type_: str,
        resource: dict,
        grants: tuple[ScopeRule, ...],
        version: StoredVersion | None,
    ) -> bool:
        for rule in grants:
            clauses = self.scope_clauses(type_, rule)
            if clauses is None:
                continue
            local = self._match_local(type_, resource, clauses)
            if local is True:
                return True
            if local is None and version is not None:
                current = await self.svc.store.current(type_, version.id)
                if current is not None and current.version == version.version:
                    query = Query((type_,), where=[(IdPred((version.id,)),), *clauses], count=1)
                    if (await self.svc.store.search(query)).hits:
                        return True
        return False

    def _match_local(
        self, type_: str, resource: dict, clauses: list[tuple[Pred, ...]]
    ) -> bool | None:
        """Whether the resource matches every clause; None if a predicate cannot be judged here."""
        codes = {getattr(pred, "param", None) for clause in clauses for pred in clause}
        rows = self.svc.extractor.extract(resource, only={c for c in codes if c})
        for clause in clauses:
            result: bool | None = False
            for pred in clause:
                if isinstance(pred, TokenPred):
                    hit = any(
                        row[0] == pred.param
                        and (pred.code is None or row[2] == pred.code)
                        and (
                            pred.system == ANY_SYSTEM
                            or (pred.system == NO_SYSTEM and not row[1])
                            or row[1] == pred.system
                        )
                        for row in rows.tokens
                    )
                elif isinstance(pred, ReferencePred) and pred.url is None:
                    hit = any(
                        row[0] == pred.param
                        and row[2] == pred.target_id
                        and (pred.target_type is None or row[1] == pred.target_type)
                        for row in rows.references
                    )
                elif isinstance(pred, UriPred) and pred.op == "eq":
                    hit = any(row[0] == pred.param and row[1] == pred.value for row in rows.uris)
                else:
                    result = None
                    continue
                if hit:
                    result = True
                    break
            if result is not True:
                return result
        return True

    # -- Guard.search_filter ---------------------------------------------------------------------

    async def search_filter(self, ctx: RequestContext, types: tuple[str, ...]) -> list[Any]:
        principal = ctx.principal
        if principal is None:
            return []
        p = as_secure(principal)
        try:
            return await self._search_filter(ctx, p, types)
        except Refused as exc:
            self._note(ctx, exc.issues[0].diagnostics)
            raise

    async def _search_filter(
        self, ctx: RequestContext, p: SecurePrincipal, types: tuple[str, ...]
    ) -> list[Any]:
        single = len(types) == 1
        grants = {t: p.scope_set.grants(t, "s") for t in types}
        refused = [t for t in types if not grants[t]]
        if not refused:
            for type_ in types:
                try:
                    if type_ in self.policy.admin_read and not p.admin:
                        raise forbidden(f"{type_} resources are available to administrators only")
                    self._data_type_rules(p, type_)
                except Refused:
                    refused.append(type_)
        admin_only = [t for t in types if t in self.policy.admin_read and not p.admin]
        if admin_only:
            # the audit trail tells who accessed whom: even a chain, _has or _revinclude into it
            # (from a search or a conditional interaction) needs an administrator
            raise forbidden(f"{admin_only[0]} resources are available to administrators only")
        if refused:
            if single:
                return [NOTHING]  # e.g. a _revinclude or chain into a type the caller may not see
            raise forbidden(
                "the caller may not search "
                + ", ".join(sorted(refused)[:5])
                + (" ..." if len(refused) > 5 else "")
                + "; name the resource types with _type"
            )
        clauses: list[Any] = []
        patient_types = [
            t for t in types if t in self.patient_types and not self._audit_reader(p, t)
        ]
        if patient_types:
            if len(patient_types) != len(types):
                needs = await self._allowed_patients(ctx, p, grants, patient_types)
                if needs is not None:
                    raise forbidden(
                        "search patient data and other resource types separately (_type)"
                    )
            else:
                allowed = await self._allowed_patients(ctx, p, grants, patient_types)
                if allowed is not None:
                    patient_only = any(
                        all(g.context == "patient" for g in grants[t]) for t in patient_types
                    )
                    relations = await self.rel.relations(p) if p.kind == "user" else None
                    shared: tuple[tuple[str, str], ...] = ()
                    if relations is not None and not patient_only and relations.shared:
                        shared = self._shared_keys(types, relations)
                    clauses.append(
                        self._compartment_clause(
                            p, types, allowed, own_provenance=not patient_only, shared=shared
                        )
                    )
                    if relations is not None and not ctx.break_glass:
                        reach = allowed | frozenset(relations.shared) if shared else allowed
                        clauses.extend(self._consent_label_clauses(types, reach, relations))
        label_clause = None
        if not all(self._audit_reader(p, t) for t in types):
            label_clause = self._label_clause_for(p)
        if label_clause is not None:
            clauses.append(label_clause)
        if single:
            restricted = [g for g in grants[types[0]]]
            if all(g.query for g in restricted):
                clauses.append(self._scope_clause(types[0], restricted))
        elif any(g.query for t in types for g in grants[t]) and not all(
            any(not g.query for g in grants[t]) for t in types
        ):
            raise forbidden("granular (query) scopes apply to single-type searches only")
        return clauses

    async def _allowed_patients(
        self,
        ctx: RequestContext,
        p: SecurePrincipal,
        grants: dict[str, tuple[ScopeRule, ...]],
        types: list[str],
    ) -> frozenset[str] | None:
        """The patients whose data a search may return; None: no restriction."""
        patient_only = any(all(g.context == "patient" for g in grants[t]) for t in types)
        if patient_only:
            if p.patient is None:
                return frozenset()
            if p.kind == "user" and not ctx.break_glass:
                relations = await self.rel.relations(p)
                return frozenset((p.patient,)) & relations.patients
            return frozenset((p.patient,))
        if p.kind == "system":
            return None  # patient_data checked in _data_type_rules
        if ctx.break_glass:
            return None
        return (await self.rel.relations(p)).patients

    @staticmethod
    def _shared_keys(types: tuple[str, ...], relations: Any) -> tuple[tuple[str, str], ...]:
        """The resources of these types that shared records let the caller read."""
        wanted = set(types)
        keys = {
            tuple(key.split("/", 1))
            for record in relations.shared.values()
            for key in record.read
            if key.split("/", 1)[0] in wanted
        }
        return tuple(sorted(keys))  # type: ignore[arg-type]

    def _compartment_clause(
        self,
        p: SecurePrincipal,
        types: tuple[str, ...],
        allowed: frozenset[str],
        own_provenance: bool = False,
        shared: tuple[tuple[str, str], ...] = (),
    ) -> tuple:
        own: list[Pred] = (
            [ReferencePred("agent", *ref.split("/", 1)) for ref in p.user_refs]
            if own_provenance and "Provenance" in types and p.kind == "user"
            else []
        )
        if shared:  # what referrals share with the caller, resource by resource
            own.append(InPred(shared))
        if not allowed:
            return tuple(own) or NOTHING
        ids = tuple(sorted(allowed))
        preds: list[Pred] = []
        if "Patient" in types:
            preds.append(
                IdPred(ids) if len(types) == 1 else InPred(tuple(("Patient", i) for i in ids))
            )
        inner = Query(("Patient",), where=[(IdPred(ids),)], count=len(ids))
        params: list[str] = []
        for type_ in types:
            for param in self.compartment.get(type_, ()) if type_ != "Patient" else ():
                if param not in params and self.registry.get(type_, param) is not None:
                    params.append(param)
        preds.extend(ChainPred(param, inner) for param in params)
        preds.extend(own)  # a professional sees the Provenance of their own writes
        return tuple(preds) or NOTHING

    def _consent_label_clauses(
        self, types: tuple[str, ...], allowed: frozenset[str], relations: Any
    ) -> list:
        """For each patient whose consent denies some labels to this caller: not (that patient's
        data and those labels)."""
        clauses = []
        for patient, labels in relations.label_denies.items():
            if patient not in allowed or not labels:
                continue
            mine = self._compartment_clause_plain(types, patient)
            label_preds = tuple(
                TokenPred("_security", system or ANY_SYSTEM, code)
                for system, code in sorted(labels)
            )
            clauses.append((NotPred(mine), NotPred(label_preds)))
        return clauses

    def _compartment_clause_plain(self, types: tuple[str, ...], patient: str) -> tuple:
        preds: list[Pred] = []
        if "Patient" in types:
            preds.append(InPred((("Patient", patient),)))
        for type_ in types:
            for param in self.compartment.get(type_, ()) if type_ != "Patient" else ():
                if self.registry.get(type_, param) is not None:
                    preds.append(ReferencePred(param, "Patient", patient))
        return tuple(dict.fromkeys(preds))

    def _label_clause_for(self, p: SecurePrincipal) -> tuple | None:
        key = p.role
        if key not in self._label_clause:
            readable = self._readable(p)
            preds = restricted_label_preds(self.labels, readable) if readable is not None else ()
            self._label_clause[key] = (NotPred(preds),) if preds else None
        return self._label_clause[key]

    def _scope_clause(self, type_: str, grants: list[ScopeRule]) -> tuple:
        alternatives: list[Pred] = []
        for rule in grants:
            clauses = self.scope_clauses(type_, rule)
            if not clauses:
                continue
            if len(clauses) == 1:
                alternatives.extend(clauses[0])
            else:  # AND of clauses = not (any clause fails)
                alternatives.append(NotPred(tuple(NotPred(c) for c in clauses)))
        return tuple(alternatives) or NOTHING

    # -- Guard.visible ---------------------------------------------------------------------------

    async def visible(self, ctx: RequestContext, version: StoredVersion) -> bool:
        principal = ctx.principal
        if principal is None:
            return True
        p = as_secure(principal)
        type_ = version.type
        grants = p.scope_set.grants(type_, "r") or p.scope_set.grants(type_, "s")
        if not grants:
            return False
        try:
            self._type_rules(p, "read", type_)
            await self._check_stored(_Silent(ctx), p, version, grants, type_, version.id, hide=True)
        except Refused:
            return False
        if type_ != "Provenance":
            ctx.patients.update((await self.facts_of(version)).patients)
        return True

    async def _provenance_visible(
        self, ctx: RequestContext, p: SecurePrincipal, version: StoredVersion
    ) -> bool:
        """A Provenance is visible when one of its targets is."""
        if version.body is None:
            return False
        provenance = loads_trusted(version.body)
        for target in provenance.get("target", ()):
            local = self.local_ref(target.get("reference") if isinstance(target, dict) else None)
            if local is None:
                continue
            stored = await self.svc.store.current(*local.split("/", 1))
            if (
                stored is not None
                and stored.type != "Provenance"
                and await self.visible(ctx, stored)
            ):
                return True
        return False


class _Silent:
    """A context proxy for visibility checks: the same caller, but it records neither patients
    nor a refusal reason (a hidden include is not a refused request)."""

    __slots__ = ("_ctx",)

    def __init__(self, ctx: Any) -> None:
        self._ctx = ctx._ctx if isinstance(ctx, _Silent) else ctx

    @property
    def patients(self) -> set[str]:
        return set()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ctx, name)
