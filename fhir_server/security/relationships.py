"""Care relationships and consent: which patients a professional may see.

A professional (Role A or B) sees a woman's data only with a care relationship (docs/security.md):

- CareTeam membership: an active CareTeam of the patient lists them, their PractitionerRole or
  their organisation as participant (participant period not ended);
- the patient record names them: Patient.generalPractitioner or Patient.managingOrganization;
- an EPD launch for that patient (registered by a trusted EPD backend, valid for a configured time);

and no active Consent of the patient denies it (a ``deny`` provision naming them, their
organisation, or nobody at all; a deny provision that names security labels hides only resources
carrying those labels).

Narrower than a care relationship, a *shared record* (``SharedRecord``) lets a professional reach
only some resources of a woman's record: what a referral to her organisation shares (its request,
Task and thread; once accepted, the woman's Patient resource and the request's supportingInfo).
Grant providers (``RelationshipIndex.providers``, e.g. fhir_server/referrals/access.py) compute
them; the guard consults them resource by resource. The same consent rules apply.

The result is computed once per principal and cached, with the store sequence number it
reflects. Commits that touch CareTeam, Patient, Consent or a type a grant provider depends on
invalidate the entries they may affect, except the types a provider keeps current itself
(``GrantProvider.incremental``: the referrals' ServiceRequests, Tasks and Communications): an
entry they concern is marked behind, and its next use replays the store's log from its sequence
number (``Store.log``), letting the provider update what it shares for the referrals those
versions touch. A fresh judgement (``hold``, ``forget``) replays the log up to the newest commit,
so it also sees other processes' commits.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from fhir_server.json_codec import loads_trusted
from fhir_server.search.dates import date_range
from fhir_server.security.labels import collect_codings
from fhir_server.security.principal import SecurePrincipal
from fhir_server.store.protocol import StoredVersion
from fhir_server.store.query import Query, ReferencePred

log = logging.getLogger("fhir_server.security")

RELEVANT_TYPES = frozenset({"CareTeam", "Patient", "Consent"})
MAX_PATIENTS = 20_000  # per professional; beyond this, the list is cut (and logged)
REPLAY_LIMIT = 2_000  # versions per type replayed into a cached entry; beyond, it is recomputed
CONSENT_LOOKUP_CHUNK = 400  # patients per Consent query (an OR of references)


def _now_us() -> int:
    return int(time.time() * 1_000_000)


def _period_active(period: Any, now: int) -> bool:
    """Whether ``now`` (µs) falls in a Period, compared as instants (zone offsets and partial
    dates included: a period that ends "2026-12-03" lasts the whole day). A bound that is not a
    valid date closes the period (fail closed)."""
    if not isinstance(period, dict):
        return True
    start, end = period.get("start"), period.get("end")
    if start is not None:
        bounds = date_range(start) if isinstance(start, str) else None
        if bounds is None or bounds[0] > now:
            return False
    if end is not None:
        bounds = date_range(end) if isinstance(end, str) else None
        if bounds is None or bounds[1] < now:
            return False
    return True


def _ref_id(ref: Any, type_: str, base_url: str) -> str | None:
    """The id of a ``{"reference": ...}`` to a ``type_`` resource of this server (relative, or
    absolute under its base URL, with or without ``_history``); None for anything else: another
    server's ``.../Patient/x`` is not our patient x."""
    value = ref.get("reference") if isinstance(ref, dict) else None
    local = local_ref(value, base_url)
    if local is None:
        return None
    found_type, _, found_id = local.partition("/")
    return found_id if found_type == type_ and found_id else None


def _type_and_id(ref: str) -> str:
    """``Type/id`` of a reference, relative or absolute, with or without ``_history``: what the
    cache compares. (An absolute reference to another server with the same type and id may drop
    a cache entry for nothing; that costs one recomputation, never a stale answer.)"""
    parts = ref.split("?", 1)[0].split("/")
    if len(parts) >= 4 and parts[-2] == "_history":
        parts = parts[:-2]
    return "/".join(parts[-2:]) if len(parts) >= 2 else ref


def local_ref(ref: Any, base_url: str) -> str | None:
    """``Type/id`` of a reference to this server (relative, or absolute under its base URL),
    None for anything else: another server's Practitioner is nobody here, in a CareTeam as in a
    Consent's actor."""
    if not isinstance(ref, str):
        return None
    base = base_url.rstrip("/") + "/"
    if ref.startswith(base):
        ref = ref[len(base) :]
    elif "://" in ref:
        return None
    return _type_and_id(ref) if ref.count("/") in (1, 3) else None


def _refs(value: Any) -> set[str]:
    """Every reference inside ``value``, as ``Type/id``."""
    found: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            ref = node.get("reference")
            if isinstance(ref, str):
                found.add(_type_and_id(ref))
            for child in node.values():
                if isinstance(child, (dict, list)):
                    walk(child)
        elif isinstance(node, list):
            for child in node:
                walk(child)

    walk(value)
    return found


@dataclass(slots=True, frozen=True)
class SharedRecord:
    """What one woman's record shares with a professional who has no care relationship with her
    (a referral to her organisation): resources by ``Type/id``, no more."""

    read: frozenset[str] = frozenset()  # may be read (and found by search)
    write: frozenset[str] = frozenset()  # may be updated (e.g. the referral's Task)
    anchors: frozenset[str] = frozenset()  # a new resource may refer to one of these...
    create: frozenset[str] = frozenset()  # ...if it is of one of these types (a reply, a Task)

    def merge(self, other: SharedRecord) -> SharedRecord:
        return SharedRecord(
            self.read | other.read,
            self.write | other.write,
            self.anchors | other.anchors,
            self.create | other.create,
        )


class GrantProvider(Protocol):
    """Computes shared records for a professional (fhir_server/referrals/access.py)."""

    types: frozenset[str]  # resource types whose commits may change what it grants

    async def shared(
        self, principal: SecurePrincipal, related: frozenset[str]
    ) -> tuple[dict[str, SharedRecord], frozenset[str]]:
        """Shared records by patient id, and the references that also identify the
        professional's party (her organisation's roles and services) for cache invalidation.
        ``related``: the patients she already has a care relationship with (their whole record:
        a provider may skip them)."""
        ...


class IncrementalProvider(GrantProvider, Protocol):
    """A provider that keeps a per-professional view current from committed versions of its
    ``incremental`` types (fhir_server/referrals/access.py)."""

    incremental: frozenset[str]

    async def view(self, principal: SecurePrincipal, related: frozenset[str]) -> Any:
        """Its state for one professional: ``.records()`` (patient id -> SharedRecord),
        ``.record(patient)``, ``.aliases``."""
        ...

    def concerns(self, view: Any, version: StoredVersion) -> bool:
        """Whether a committed version may change what the view shares (in memory)."""
        ...

    async def update(self, view: Any, versions: list[StoredVersion]) -> set[str]:
        """Apply committed versions (oldest first); the patients whose record may change."""
        ...


@dataclass(slots=True)
class Relations:
    patients: frozenset[str]  # patient ids the professional may see
    label_denies: dict[str, frozenset[tuple[str, str]]] = field(default_factory=dict)
    computed: float = 0.0
    shared: dict[str, SharedRecord] = field(default_factory=dict)  # patient id -> shared record
    aliases: frozenset[str] = frozenset()  # more references that identify the professional


@dataclass(slots=True)
class _Entry:
    relations: Relations
    refs: frozenset[str]
    expires: float
    seq: int = 0  # the relations reflect every commit up to this sequence number
    behind: int = 0  # a commit up to here may concern them: replay the log before use
    views: list[Any] = field(default_factory=list)  # per provider: its view, or None
    launched: frozenset[str] = frozenset()  # EPD launches when computed


def _knows_launch(entry: _Entry, principal: SecurePrincipal) -> bool:
    """A professional's token from an EPD launch names its patient; the launch may have been
    recorded by another server process after this one cached the professional's relations:
    then they are computed again (once: the launch is in the store by then)."""
    patient = principal.patient
    return patient is None or principal.role is None or patient in entry.relations.patients


class RelationshipIndex:
    def __init__(self, svc: Any, launches: Any, ttl: float = 60.0) -> None:
        self.svc = svc
        self.launches = launches  # the authorization server's EPD launch relationships
        self.ttl = ttl
        self._cache: dict[tuple, _Entry] = {}
        self._epoch = 0
        self._locks: dict[tuple, asyncio.Lock] = {}
        self.providers: list[GrantProvider] = []  # plug-ins granting shared records
        self.relevant_types = RELEVANT_TYPES
        # types whose commits the providers apply themselves (replayed, not recomputed)
        self.incremental_types: frozenset[str] = frozenset()
        self._heard = 0  # the newest commit of an incremental type this process heard of
        # held relations of one principal object (id -> relations, None until first used)
        self._held: dict[int, Relations | None] = {}

    def add_provider(self, provider: GrantProvider) -> None:
        self.providers.append(provider)
        self.relevant_types = self.relevant_types | provider.types
        # replayed only when every provider keeps itself current
        if all(hasattr(p, "update") for p in self.providers):
            types: set[str] = set()
            for p in self.providers:
                types |= getattr(p, "incremental", frozenset())
            self.incremental_types = frozenset(types - RELEVANT_TYPES)
        else:
            self.incremental_types = frozenset()
        self.invalidate_all()

    def _local(self, ref: Any) -> str | None:
        return local_ref(ref, self.svc.settings.public_url)

    @staticmethod
    def key(principal: SecurePrincipal) -> tuple:
        return (principal.subject, principal.practitioner, principal.organization)

    def hold(self, principal: SecurePrincipal) -> None:
        """Until ``release``: judge this principal object (not others of the same person) on
        relations brought up to date (every commit, of any process) at its first check, whatever
        commits follow. For a reader that judges a batch of changes it has already read, each
        against the state after it (the subscriptions matcher and deliverer): one refresh per
        batch, not one per change."""
        self._held[id(principal)] = None

    def release(self, principal: SecurePrincipal) -> None:
        self._held.pop(id(principal), None)

    async def relations(self, principal: SecurePrincipal) -> Relations:
        if id(principal) in self._held:
            found = self._held[id(principal)]
            if found is None:
                found = self._held[id(principal)] = await self._get(principal, fresh=True)
            return found
        entry = self._cache.get(self.key(principal))
        if entry is not None and self._usable(entry) and _knows_launch(entry, principal):
            return entry.relations
        return await self._get(principal, fresh=False)

    @staticmethod
    def _usable(entry: _Entry) -> bool:
        return entry.expires > time.monotonic() and entry.behind <= entry.seq

    async def _get(self, principal: SecurePrincipal, fresh: bool) -> Relations:
        """The relations from the cache, brought up to date (all commits when ``fresh``, else
        the ones this process heard of), or computed anew."""
        key = self.key(principal)
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:  # one computation or refresh of an entry at a time
            entry = self._cache.get(key)
            if (
                entry is not None
                and entry.expires > time.monotonic()
                and _knows_launch(entry, principal)
            ):
                if not fresh and entry.behind <= entry.seq:
                    return entry.relations
                try:
                    relations = await self._refresh(entry, principal)
                except Exception:
                    self._cache.pop(key, None)
                    raise
                if relations is not None:
                    return relations
                if self._cache.get(key) is entry:
                    self._cache.pop(key, None)
            epoch = self._epoch
            seq = await self.svc.store.latest_seq()
            launched = frozenset(await self.launches.launched_patients(principal))
            relations, views = await self._compute(principal, launched)
            if epoch == self._epoch:  # nothing relevant changed while computing
                if len(self._cache) > 50_000:
                    self._cache.clear()
                    self._locks = {key: lock}
                self._cache[key] = _Entry(
                    relations,
                    frozenset(principal.user_refs) | relations.aliases,
                    time.monotonic() + self.ttl,
                    seq,
                    # a commit heard of during the computation may postdate its reads
                    self._heard if self._heard > seq else 0,
                    views,
                    launched,
                )
        return relations

    async def _refresh(self, entry: _Entry, principal: SecurePrincipal) -> Relations | None:
        """Bring a cached entry up to the newest commit by replaying the store's log after its
        sequence number; None when it must be computed anew (a change of care relationships,
        consent or the party, an EPD launch, or too much to replay)."""
        store = self.svc.store
        entry.behind = 0
        latest = await store.latest_seq()
        if frozenset(await self.launches.launched_patients(principal)) != entry.launched:
            return None
        if latest <= entry.seq:
            return entry.relations
        versions: list[StoredVersion] = []
        for type_ in sorted(self.relevant_types):
            found = await store.log(type_, entry.seq, REPLAY_LIMIT + 1)
            if len(found) > REPLAY_LIMIT:
                return None
            versions.extend(found)
        versions.sort(key=lambda v: v.seq)
        others = [v for v in versions if v.type not in self.incremental_types]
        if others:
            touched = _touched(others)
            if touched is None or _hits(entry, *touched):
                return None
        replay = [v for v in versions if v.type in self.incremental_types]
        if replay:
            entry.relations = await self._apply(entry, principal, replay)
        entry.seq = max(entry.seq, latest)
        return entry.relations

    async def _apply(
        self, entry: _Entry, principal: SecurePrincipal, versions: list[StoredVersion]
    ) -> Relations:
        """Let the providers apply committed versions; the relations with the shared records of
        the women whose records changed (a woman newly shared: her consents checked first)."""
        changed: set[str] = set()
        for provider, view in zip(self.providers, entry.views, strict=True):
            mine = [v for v in versions if v.type in provider.types]
            if mine:
                changed |= await provider.update(view, mine)  # type: ignore[attr-defined]
        old = entry.relations
        if not changed:
            return old
        shared = dict(old.shared)
        denies = dict(old.label_denies)
        pending: dict[str, SharedRecord] = {}
        for pid in changed:
            if pid in old.patients:
                continue  # her whole record is open anyway
            record: SharedRecord | None = None
            for view in entry.views:
                found = view.record(pid)
                if found is not None:
                    record = found if record is None else record.merge(found)
            if record is None or not (record.read or record.write or record.create):
                shared.pop(pid, None)
                denies.pop(pid, None)
            elif pid in old.shared:
                shared[pid] = record  # her consents were checked when she was first shared
            else:
                pending[pid] = record
        if pending:
            now = _now_us()
            base = self.svc.settings.public_url
            mine = set(principal.user_refs)
            denied: set[str] = set()
            for pid in pending:
                denies.pop(pid, None)
            for consent in await self._consents(sorted(pending)):
                patient = _ref_id(consent.get("patient"), "Patient", base)
                if not patient or consent.get("status") != "active":
                    continue
                verdict = _consent_verdict(consent.get("provision"), mine, now, base)
                if verdict is True:
                    denied.add(patient)
                elif verdict:
                    denies[patient] = denies.get(patient, frozenset()) | verdict
            for pid, record in pending.items():
                if pid in denied:
                    denies.pop(pid, None)
                else:
                    shared[pid] = record
        return Relations(old.patients, denies, old.computed, shared, old.aliases)

    def forget(self, principal: SecurePrincipal) -> None:
        """Make the next check of one professional bring her relations up to the newest commit
        (replaying the store's log). For a reader that must judge a commit it has read but this
        index may not have heard of yet (its listener runs after the commit is visible; another
        process's commits never reach it): the subscriptions matcher. A computation under way is
        not cached either."""
        self._epoch += 1
        entry = self._cache.get(self.key(principal))
        if entry is not None:
            entry.behind = max(entry.behind, entry.seq + 1)
        if id(principal) in self._held:
            self._held[id(principal)] = None

    def invalidate_all(self) -> None:
        self._epoch += 1
        self._cache.clear()

    def committed(self, versions: list[StoredVersion]) -> None:
        """Store listener: drop the cached relations a commit may have changed; mark the ones
        that commits of incremental types concern as behind (replayed at their next use)."""
        replay: list[tuple[StoredVersion, dict | None]] = []
        others: list[StoredVersion] = []
        for version in versions:
            if version.type in self.incremental_types:
                body = loads_trusted(version.body) if version.body is not None else None
                replay.append((version, body))
            elif version.type in self.relevant_types:
                others.append(version)
        if replay:
            newest = max(v.seq for v, _ in replay)
            self._heard = max(self._heard, newest)
            for entry in list(self._cache.values()):
                if entry.behind >= newest:
                    continue
                if any(
                    provider.concerns(view, version, body)  # type: ignore[attr-defined]
                    for version, body in replay
                    for provider, view in zip(self.providers, entry.views, strict=True)
                    if version.type in provider.types
                ):
                    entry.behind = newest
        if not others:
            return
        touched = _touched(others)
        if touched is None:  # a delete: we cannot tell whom it concerned
            self.invalidate_all()
            return
        self._epoch += 1
        for key, entry in list(self._cache.items()):
            if _hits(entry, *touched):
                self._cache.pop(key, None)

    # -- computing -------------------------------------------------------------------------------

    async def _search(self, type_: str, where: list[tuple]) -> list[dict]:
        page = await self.svc.store.search(Query(types=(type_,), where=where, count=MAX_PATIENTS))
        if page.has_more:
            log.warning("care relationship lookup on %s truncated at %d", type_, MAX_PATIENTS)
        return [loads_trusted(hit.body) for hit in page.hits]

    def _ref_preds(self, param: str, refs: tuple[str, ...]) -> tuple:
        preds = []
        for ref in refs:
            type_, _, id_ = ref.partition("/")
            if type_ and id_:
                preds.append(ReferencePred(param, type_, id_))
        return tuple(preds)

    async def _compute(
        self, principal: SecurePrincipal, launched: frozenset[str] | None = None
    ) -> tuple[Relations, list[Any]]:
        refs = principal.user_refs
        mine = set(refs)
        now = _now_us()
        base = self.svc.settings.public_url
        patients: set[str] = set()
        if refs:
            for team in await self._search("CareTeam", [self._ref_preds("participant", refs)]):
                if team.get("status") in ("inactive", "entered-in-error"):
                    continue
                if not _period_active(team.get("period"), now):
                    continue
                member = any(
                    isinstance(p, dict)
                    and self._local((p.get("member") or {}).get("reference")) in mine
                    and _period_active(p.get("period"), now)
                    for p in team.get("participant", ())
                )
                patient = _ref_id(team.get("subject"), "Patient", base)
                if member and patient:
                    patients.add(patient)
            gp = self._ref_preds("general-practitioner", refs)
            org = self._ref_preds(
                "organization", tuple(r for r in refs if r.startswith("Organization/"))
            )
            for preds in (gp, org):
                if preds:
                    for patient in await self._search("Patient", [preds]):
                        if patient.get("active", True) is not False:
                            patients.add(patient["id"])
        if launched is None:
            launched = frozenset(await self.launches.launched_patients(principal))
        patients |= launched
        shared: dict[str, SharedRecord] = {}
        aliases: frozenset[str] = frozenset()
        related = frozenset(patients)
        views: list[Any] = []
        for provider in self.providers:
            if self.incremental_types:
                view = await provider.view(principal, related)  # type: ignore[attr-defined]
                views.append(view)
                found, more = view.records(), view.aliases
            else:
                found, more = await provider.shared(principal, related)
                views.append(None)
            aliases |= more
            for patient, record in found.items():
                if patient not in patients:
                    shared[patient] = shared[patient].merge(record) if patient in shared else record
        label_denies: dict[str, frozenset[tuple[str, str]]] = {}
        for consent in await self._consents(sorted(patients | set(shared))):
            patient = _ref_id(consent.get("patient"), "Patient", base)
            if not patient or consent.get("status") != "active":
                continue
            verdict = _consent_verdict(
                consent.get("provision"), mine, now, self.svc.settings.public_url
            )
            if verdict is True:
                patients.discard(patient)
                shared.pop(patient, None)
            elif verdict:
                label_denies[patient] = label_denies.get(patient, frozenset()) | verdict
        relations = Relations(frozenset(patients), label_denies, time.time(), shared, aliases)
        return relations, views

    async def consent_denies(self, principal: SecurePrincipal, patient: str) -> bool:
        """Whether an active Consent of this patient denies the professional her whole record."""
        now = _now_us()
        base = self.svc.settings.public_url
        mine = set(principal.user_refs)
        for consent in await self._consents([patient]):
            if consent.get("status") != "active":
                continue
            if _consent_verdict(consent.get("provision"), mine, now, base) is True:
                return True
        return False

    async def _consents(self, patients: list[str]) -> list[dict]:
        """The Consents of these patients, by their ``patient`` reference alone: a consent still
        applies when the Patient resource is deleted (the rest of her record is not), so the
        lookup must not go through the Patient (a chained search would skip it)."""
        found = []
        for start in range(0, len(patients), CONSENT_LOOKUP_CHUNK):
            chunk = patients[start : start + CONSENT_LOOKUP_CHUNK]
            refs = tuple(ReferencePred("patient", "Patient", pid) for pid in chunk)
            found += await self._search("Consent", [refs])
        return found


def _touched(versions: list[StoredVersion]) -> tuple[set[str], set[str]] | None:
    """The references and patients committed versions name (None: a delete, whom it concerned
    cannot be told)."""
    touched_refs: set[str] = set()
    touched_patients: set[str] = set()
    for version in versions:
        if version.body is None:
            return None
        refs = _refs(loads_trusted(version.body))
        touched_refs |= refs
        if version.type == "Patient":
            touched_patients.add(version.id)
        touched_patients |= {r.split("/", 1)[1] for r in refs if r.startswith("Patient/")}
    return touched_refs, touched_patients


def _hits(entry: _Entry, refs: set[str], patients: set[str]) -> bool:
    """Whether changes naming these references and patients may change a cached entry."""
    relations = entry.relations
    return bool(
        entry.refs & refs
        or relations.patients & patients
        or not patients.isdisjoint(relations.shared)
    )


def consent_restricts(consent: dict, refs: set[str], base_url: str) -> bool:
    """Whether an active Consent denies these references anything (the record, or labels)."""
    if consent.get("status") != "active":
        return False
    verdict = _consent_verdict(consent.get("provision"), refs, _now_us(), base_url)
    return verdict is not None


def _consent_verdict(
    provision: Any, mine: set[str], now: int, base_url: str = ""
) -> bool | frozenset | None:
    """True: the whole record is denied to this professional; a set: these security labels are
    denied; None: nothing denied. A nested provision is an exception to its parent: of the
    whole-record provisions that apply to the caller, the deepest decides (deny wins a tie)."""
    if not isinstance(provision, dict):
        return None
    labels: set[tuple[str, str]] = set()
    decisions: list[tuple[int, str]] = []

    def applies(node: dict) -> bool:
        actors = node.get("actor")
        if not isinstance(actors, list) or not actors:
            return True  # no actor: applies to everyone
        return any(
            isinstance(a, dict)
            and local_ref((a.get("reference") or {}).get("reference"), base_url) in mine
            for a in actors
        )

    def visit(node: dict, depth: int) -> None:
        if not _period_active(node.get("period"), now):
            return
        kind = node.get("type")
        if kind in ("deny", "permit") and applies(node):
            security = node.get("securityLabel")
            if isinstance(security, list) and security:
                if kind == "deny":
                    found: set[tuple[str, str]] = set()
                    collect_codings(security, found)
                    labels.update(found)
            elif not node.get("class") and not node.get("code") and not node.get("data"):
                decisions.append((depth, kind))
        children = node.get("provision")
        for child in children if isinstance(children, list) else ():
            if isinstance(child, dict):
                visit(child, depth + 1)

    visit(provision, 0)
    if decisions:
        deepest = max(d for d, _ in decisions)
        if any(kind == "deny" for d, kind in decisions if d == deepest):
            return True
    return frozenset(labels) if labels else None
