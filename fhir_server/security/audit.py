"""The audit trail: one AuditEvent per FHIR request (IHE Basic Audit Log Patterns), and one
Provenance per write.

An answered request has a durable AuditEvent: ``record`` returns once the event is committed,
and the API answers only then (``AuditLog``: one writer task group-commits everything queued, in
one unit of work that joins the store's group commit). Refused requests are audited the same way,
including requests refused before any identity was known (bad or missing token).

AuditEvent shape (BALP): type ``rest``, subtype the RESTful interaction, action C/R/U/D/E, outcome
0/4/8, agents for the client application (DCM 110150, OAuth client id, network address) and the
user (IRCP, Practitioner reference or token subject, requestor, token id as policy), source =
this server, entities for each patient concerned, the resource (type/id), the query (base64) and
the X-Request-Id.
"""

from __future__ import annotations

import asyncio
import base64
import calendar
import contextlib
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl

from fhir_server.json_codec import dumps
from fhir_server.search.dates import date_range, format_instant
from fhir_server.search.extract import IDENTIFIER_SUFFIX, TEXT_SUFFIX
from fhir_server.search.normalize import MAX_INDEXED_CHARS, normalize
from fhir_server.service.context import RequestContext
from fhir_server.service.core import Done
from fhir_server.service.versioning import new_id, now_us
from fhir_server.store.protocol import IndexRows, StoredVersion

log = logging.getLogger("fhir_server.security.audit")


_DONE = Done()  # entries queued outside an event loop (tests building events)

MAX_ENTITIES = 50

SUBTYPE_SYSTEM = "http://hl7.org/fhir/restful-interaction"
AUTH_EVENT_SYSTEM = "https://borninbelgiumpro.be/fhir/auth-event"  # authorize, token:<grant>...
ACTION = {
    "create": "C",
    "read": "R",
    "vread": "R",
    "history-instance": "R",
    "update": "U",
    "patch": "U",
    "delete": "D",
}
DCM = "http://dicom.nema.org/resources/ontology/DCM"
PARTICIPATION = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
ENTITY_TYPE = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
OBJECT_ROLE = "http://terminology.hl7.org/CodeSystem/object-role"
ACT_REASON = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
CLIENT_ID = "urn:ietf:params:oauth:client-id"
BALP_ENTITY = "https://profiles.ihe.net/ITI/BALP/CodeSystem/BasicAuditEntityType"
PATIENT_PARAMS = ("patient", "subject", "beneficiary", "for")
# what IHE BALP's audit queries search by (patient, agent, entity, type and subtype, outcome,
# date) and little more: the only AuditEvent parameters indexed, so each audited request writes
# about a dozen index rows instead of thirty (the others are unknown parameters, reported so)
BALP_PARAMS = frozenset(
    {
        "_id",
        "_lastUpdated",
        "date",
        "patient",
        "agent",
        "entity",
        "type",
        "subtype",
        "outcome",
        "action",
    }
)


def interaction_of(method: str, path: str) -> str:
    """A best guess of the interaction from the URL (for requests refused before dispatch)."""
    parts = [p for p in path.split("/") if p]
    if method == "POST" and not parts:
        return "transaction"
    if parts == ["metadata"]:
        return "capabilities"
    if any(p.startswith("$") for p in parts):
        return "operation"
    if "_history" in parts:
        return "vread" if parts[-1] != "_history" else "history-instance"
    if method in ("GET", "HEAD"):
        if len(parts) == 2 and parts[1] != "_search":
            return "read"
        return "search-type" if parts else "search-system"
    return {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}.get(
        method, "unknown"
    )


REST_EVENT_TYPE = {
    "system": "http://terminology.hl7.org/CodeSystem/audit-event-type",
    "code": "rest",
}
PERSON = {"system": ENTITY_TYPE, "code": "1"}
PATIENT_ROLE = {"system": OBJECT_ROLE, "code": "1"}
SYSTEM_OBJECT = {"system": ENTITY_TYPE, "code": "2"}
DOMAIN_RESOURCE = {"system": OBJECT_ROLE, "code": "4"}
# interaction -> (type, subtype list, action): shared by every event of that interaction
_KINDS: dict[str, tuple[dict[str, str], list[dict[str, str]], str]] = {}
_NO_REFERENCE = (None, None, None, None)


class _Template:
    """One caller's agents (at one network address) and, per (interaction, outcome), the index
    rows of every member of an event that does not change from request to request."""

    __slots__ = ("agent_patients", "agents", "rows")

    def __init__(self, agents: list[dict[str, Any]], agent_patients: bool) -> None:
        self.agents = agents
        self.agent_patients = agent_patients  # a Patient agent: indexed the long way
        self.rows: dict[tuple[str, str], IndexRows] = {}


UNITS_IN_FLIGHT = 2  # audit units of work being written at once (see AuditLog._run)


class AuditUnavailable(Exception):
    """The audit trail could not be written (the store failed): the request is not answered."""


class AuditLog:
    """The ``Auditor`` of the service layer (service/core.py).

    Durable before the answer: ``record`` (and ``refused``) queue an entry and return once the
    AuditEvent is committed; the API sends the response only then, so a crash never leaves an
    answered request without its AuditEvent. Group commit: one writer task takes everything
    queued, writes it in one unit of work (which joins the store's own group commit, next to
    the other writes) and wakes the waiting requests when it is durable; what arrives meanwhile
    goes into the next unit. ``audit_flush_ms`` (default 0) lets the writer linger for more
    entries before writing."""

    def __init__(self, svc: Any, flush_ms: int = 0) -> None:
        self.svc = svc
        self.linger = max(flush_ms, 0) / 1000
        self.site = svc.settings.public_url
        self.buffer: list[tuple] = []
        self._waiters: list[asyncio.Future[None]] = []
        self._task: asyncio.Task | None = None
        self._wake: asyncio.Event | None = None
        self._stopping = False
        self._writing: set[asyncio.Task[int]] = set()
        self._source: dict[str, Any] = {
            "site": self.site,
            "observer": {"display": "BiB FHIR server"},
            "type": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/security-source-type",
                    "code": "4",
                    "display": "Application Server",
                }
            ],
        }
        self._templates: dict[tuple, _Template] = {}  # the agents of each caller
        self._refs: dict[str, tuple] = {}  # parsed entity references
        self._plan_of: Any = None  # the AuditEvent parameter table the fast plan is for
        self._fast: tuple | None = None
        self.written = 0
        self.units = 0  # units of work written (fewer than events: group commit)
        self.failures = 0

    # -- Auditor.record --------------------------------------------------------------------------

    async def record(self, ctx: RequestContext, status: int) -> None:
        accesses = tuple(
            (a.interaction, a.resource_type, a.resource_id, a.operation)
            for a in ctx.accesses
            if a.interaction != "request"  # the context factory's marker
        )
        if not accesses:  # refused or failed before the service authorized anything
            method, path = getattr(ctx, "method", ""), getattr(ctx, "path", "")
            accesses = ((interaction_of(method, path), *_target(path), None),)
        await self._append(
            (
                now_us(),
                ctx.principal,
                accesses,
                status,
                tuple(ctx.patients),
                ctx.client_ip,
                ctx.request_id,
                getattr(ctx, "method", ""),
                getattr(ctx, "path", ""),
                getattr(ctx, "query", ""),
                ctx.break_glass,
                getattr(ctx, "break_glass_reason", None),
                getattr(ctx, "refusal", None),
            )
        )

    def refused(
        self,
        method: str,
        path: str,
        query: str,
        client_ip: str | None,
        request_id: str,
        status: int,
        reason: str,
        principal: Any = None,
    ) -> Awaitable[None]:
        """A request refused before a request context existed (missing or invalid token, a head
        too large...); the refusal is answered once the returned awaitable is done."""
        interaction = interaction_of(method, path)
        type_, id_ = _target(path)
        return self._append(
            (
                now_us(),
                principal,
                ((interaction, type_, id_, None),),
                status,
                (),
                client_ip,
                request_id,
                method,
                path,
                query,
                False,
                None,
                reason,
            )
        )

    def _append(self, entry: tuple) -> Awaitable[None]:
        """Queue one entry; the returned future is done when its AuditEvent is durable."""
        self.buffer.append(entry)
        try:
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        except RuntimeError:  # no event loop (tests building events): written at shutdown
            return _DONE
        self._waiters.append(waiter)
        self._ensure_task()
        if self._wake is not None:
            self._wake.set()
        return waiter

    # -- the writer ------------------------------------------------------------------------------

    def _ensure_task(self) -> None:
        if self._task is None and not self._stopping:
            loop = asyncio.get_running_loop()
            self._wake = asyncio.Event()
            self._task = loop.create_task(self._run())

    async def start(self) -> None:
        self._stopping = False
        self._ensure_task()

    async def stop(self) -> None:
        """Write what is queued and stop (graceful shutdown loses nothing)."""
        self._stopping = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.flush()

    async def _run(self) -> None:
        assert self._wake is not None
        while True:
            await self._wake.wait()
            self._wake.clear()
            if self.linger:
                await asyncio.sleep(self.linger)
            while self.buffer:
                if len(self._writing) >= UNITS_IN_FLIGHT:
                    await asyncio.wait(self._writing, return_when=asyncio.FIRST_COMPLETED)
                    continue
                # two units in flight: the next one is built (CPU) while the last one commits
                # (fsync), and joins the store's next group commit
                task = asyncio.get_running_loop().create_task(self._write(*self._take()))
                self._writing.add(task)
                task.add_done_callback(self._writing.discard)

    def _take(self) -> tuple[list[tuple], list[asyncio.Future[None]]]:
        entries, self.buffer = self.buffer, []
        waiters, self._waiters = self._waiters, []
        return entries, waiters

    async def flush(self) -> int:
        """Write everything queued in one unit of work; wake its requests when durable."""
        if self._writing:  # units already on their way first (stop() must not outrun them)
            await asyncio.wait(set(self._writing))
        if not self.buffer:
            return 0
        return await self._write(*self._take())

    async def _write(self, entries: list[tuple], waiters: list[asyncio.Future[None]]) -> int:
        try:
            items = [self._version(entry) for entry in entries]
            async with self.svc.store.unit_of_work() as uow:
                await uow.create_many(items)
        except Exception as exc:
            self.failures += 1
            log.error(
                "could not write %d audit events (%s); their requests are refused",
                len(entries),
                type(exc).__name__,
            )
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_exception(AuditUnavailable(type(exc).__name__))
                    waiter.exception()  # retrieved by its request; never "never retrieved"
            return 0
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)
        self.written += len(entries)
        self.units += 1
        return len(entries)

    def _version(self, entry: tuple) -> tuple[StoredVersion, IndexRows]:
        """One AuditEvent, ready for the store's bulk path. Audit events bypass the write hooks
        (no labels, no Provenance) and are indexed without FHIRPath: this runs once per FHIR
        request. The parts that depend on the caller (agents) and the interaction (type,
        subtype, action, outcome) are built and indexed once per principal and interaction and
        reused (``_Template``); only the dates and entities are indexed per event. A test
        compares these rows with ``audit_index`` and with the generic extractor."""
        when = now_us()
        event, template, interaction, outcome = self._event(entry, when)
        rows = self._rows(event, template, interaction, outcome, when, entry[0])
        return StoredVersion("AuditEvent", event["id"], 1, when, False, "POST", dumps(event)), rows

    def _rows(
        self,
        event: dict[str, Any],
        template: _Template | None,
        interaction: str,
        outcome: str,
        when: int,
        recorded: int,
    ) -> IndexRows:
        svc = self.svc
        params = svc.registry.params_for("AuditEvent")
        plan = _plan(params)
        if plan is None or template is None or template.agent_patients:
            return audit_index(svc, event)
        if self._plan_of is not params:  # parameters added or removed: forget the rows
            self._plan_of = params
            self._fast = _fast_plan(plan)
            self._templates.clear()
            self._refs.clear()
        fast = self._fast
        if fast is None:
            return audit_index(svc, event)
        constant_plan, last_updated, date, entity, patient = fast
        key = (interaction, outcome)
        constant = template.rows.get(key)
        if constant is None:
            partial = {
                "resourceType": "AuditEvent",
                "type": event["type"],
                "subtype": event["subtype"],
                "action": event["action"],
                "outcome": outcome,
                "agent": event["agent"],
            }
            constant = _index(svc, partial, constant_plan)
            template.rows[key] = constant
        rows = IndexRows(
            strings=list(constant.strings),
            tokens=list(constant.tokens),
            references=list(constant.references),
            dates=list(constant.dates),
            uris=list(constant.uris),
        )
        if last_updated:
            low = when // 1000 * 1000
            rows.dates.append((last_updated, low, low + 999, 0))
        if date:
            low = recorded // 1000 * 1000
            rows.dates.append((date, low, low + 999, 0))
        if entity or patient:
            references, tokens = rows.references, rows.tokens
            refs = self._refs
            if len(refs) > 20_000:
                refs.clear()
            parse = svc.extractor.parse_reference
            seen: set[str] = set()
            for item in event.get("entity", ()):
                what = item.get("what")
                if what is None:
                    continue
                ref = what.get("reference")
                parsed = _NO_REFERENCE
                if isinstance(ref, str):
                    parsed = refs.get(ref)
                    if parsed is None:
                        parsed = refs[ref] = parse(ref, event) or _NO_REFERENCE
                if entity:
                    references.append((entity, *parsed, 0))
                    identifier = what.get("identifier")
                    if isinstance(identifier, dict) and isinstance(identifier.get("value"), str):
                        tokens.append(
                            (
                                entity + IDENTIFIER_SUFFIX,
                                identifier.get("system") or "",
                                identifier["value"],
                                0,
                            )
                        )
                if patient and isinstance(ref, str) and ref.startswith("Patient/"):
                    if len(what) != 1:  # not one of our shapes: the long way
                        return audit_index(svc, event)
                    if ref not in seen:  # {"reference": r}: equal dicts, equal references
                        seen.add(ref)
                        references.append((patient, *parsed, 0))
        return rows

    # -- AuditEvent ------------------------------------------------------------------------------

    def build(self, entry: tuple) -> dict[str, Any]:
        """The AuditEvent of one queued entry (without meta). Its agents, type, subtype and
        source are shared with other events of the same caller and interaction: serialise it,
        do not change it."""
        return self._event(entry, None)[0]

    def _event(
        self, entry: tuple, stamped: int | None
    ) -> tuple[dict[str, Any], _Template | None, str, str]:
        """(event, the caller's template or None, interaction, outcome); with ``stamped``, the
        event carries its meta (version 1, lastUpdated ``stamped``) as ``stamp_meta`` puts it."""
        (
            when,
            principal,
            accesses,
            status,
            patients,
            client_ip,
            request_id,
            method,
            path,
            query,
            break_glass,
            reason,
            refusal,
        ) = entry
        interaction = accesses[0][0] if accesses else "unknown"  # a Bundle: transaction/batch
        outcome = "0" if status < 400 else "4" if status < 500 else "8"
        if refusal and outcome == "0" and interaction in ACTION:
            # answered as if the resource did not exist (a delete of a hidden resource is a
            # 204), but refused all the same: the audit trail says so
            outcome = "4"
        description = f"HTTP {status}"
        if refusal:
            description += f": {refusal}"
        kind = _KINDS.get(interaction)
        if kind is None:
            if interaction.startswith("auth:"):  # an authorization-server event
                event_type = {"system": DCM, "code": "110114"}  # User Authenticated
                subtype = {"system": AUTH_EVENT_SYSTEM, "code": interaction[5:]}
            else:
                event_type = REST_EVENT_TYPE  # RESTful Operation
                subtype = {"system": SUBTYPE_SYSTEM, "code": interaction}
            kind = (event_type, [subtype], ACTION.get(interaction, "E"))
            if len(_KINDS) < 1000:
                _KINDS[interaction] = kind
        template = self._template(principal, client_ip, break_glass, reason)
        event: dict[str, Any] = {"resourceType": "AuditEvent", "id": new_id()}
        if stamped is not None:
            event["meta"] = {"versionId": "1", "lastUpdated": format_instant(stamped)}
        event["type"] = kind[0]
        event["subtype"] = kind[1]
        event["action"] = kind[2]
        event["recorded"] = format_instant(when)
        event["outcome"] = outcome
        event["outcomeDesc"] = description
        event["agent"] = (
            template.agents
            if template is not None
            else self._agents(principal, client_ip, break_glass, reason)
        )
        event["source"] = self._source
        if break_glass:
            event["purposeOfEvent"] = [_break_glass_reason(reason)]
        entities: list[dict[str, Any]] = []
        all_patients = dict.fromkeys(patients)
        for pid in _patients_in_request(path, query):
            all_patients.setdefault(pid)
        for pid in list(all_patients)[:MAX_ENTITIES]:
            entities.append(
                {
                    "what": {"reference": f"Patient/{pid}"},
                    "type": PERSON,
                    "role": PATIENT_ROLE,
                }
            )
        seen: set[str] = set()
        for _interaction, type_, id_, operation in accesses:
            if type_ and id_ and f"{type_}/{id_}" not in seen and len(seen) < MAX_ENTITIES:
                seen.add(f"{type_}/{id_}")
                entity: dict[str, Any] = {
                    "what": {"reference": f"{type_}/{id_}"},
                    "type": SYSTEM_OBJECT,
                    "role": DOMAIN_RESOURCE,
                }
                if operation:
                    entity["name"] = f"${operation}"
                entities.append(entity)
        if query or interaction.startswith("search"):
            entities.append(
                {
                    "type": {"system": ENTITY_TYPE, "code": "2"},  # System Object
                    "role": {"system": OBJECT_ROLE, "code": "24"},  # Query
                    "description": f"{method} {path}"[:200],
                    "query": base64.b64encode(query.encode("utf-8", "replace")).decode(),
                }
            )
        if request_id:
            entities.append(
                {
                    "what": {"identifier": {"value": request_id}},
                    "type": {"system": BALP_ENTITY, "code": "XrequestId"},
                }
            )
        if entities:
            event["entity"] = entities
        return event, template, interaction, outcome

    def _template(
        self, principal: Any, client_ip: str | None, break_glass: bool, reason: str | None
    ) -> _Template | None:
        """The agents of this caller at this address, built once (None under break-the-glass,
        whose reason is part of the agent)."""
        if break_glass:
            return None
        if principal is None:
            key: tuple = (None, client_ip)
        else:
            key = (
                getattr(principal, "client_id", None),
                getattr(principal, "kind", "user"),
                principal.practitioner,
                principal.subject,
                getattr(principal, "name", None),
                principal.role,
                getattr(principal, "token_id", None),
                client_ip,
            )
        templates = self._templates
        template = templates.get(key)
        if template is None:
            if len(templates) >= 10_000:
                templates.clear()
            agents = self._agents(principal, client_ip, False, None)
            template = templates[key] = _Template(agents, bool(_patient_refs({"agent": agents})))
        return template

    def _agents(
        self, principal: Any, client_ip: str | None, break_glass: bool, reason: str | None
    ) -> list[dict[str, Any]]:
        network = {"address": client_ip, "type": "2"} if client_ip else None
        if principal is None:
            agent: dict[str, Any] = {
                "type": {"coding": [{"system": PARTICIPATION, "code": "IRCP"}]},
                "who": {"display": "unauthenticated caller"},
                "requestor": True,
            }
            if network:
                agent["network"] = network
            return [agent]
        agents: list[dict[str, Any]] = []
        client_id = getattr(principal, "client_id", None)
        kind = getattr(principal, "kind", "user")
        if client_id:
            client: dict[str, Any] = {
                "type": {"coding": [{"system": DCM, "code": "110150", "display": "Application"}]},
                "who": {"identifier": {"system": CLIENT_ID, "value": client_id}},
                "requestor": kind == "system",
            }
            if network:
                client["network"] = network
            agents.append(client)
        if kind == "user" or not client_id:
            who: dict[str, Any]
            if principal.practitioner:
                who = {"reference": principal.practitioner}
            else:
                who = {
                    "identifier": {"system": "urn:bib:token-subject", "value": principal.subject}
                }
            name = getattr(principal, "name", None)
            if name:
                who["display"] = name
            user: dict[str, Any] = {
                "type": {
                    "coding": [
                        {
                            "system": PARTICIPATION,
                            "code": "IRCP",
                            "display": "information recipient",
                        }
                    ]
                },
                "who": who,
                "requestor": True,
            }
            role = principal.role
            if role:
                user["role"] = [{"text": f"BiB role {role}"}]
            token_id = getattr(principal, "token_id", None)
            if token_id:
                user["policy"] = [f"urn:bib:token:{token_id}"]
            if break_glass:
                user["purposeOfUse"] = [_break_glass_reason(reason)]
            if network and not client_id:
                user["network"] = network
            agents.append(user)
        return agents


def _patient_refs(event: dict[str, Any]) -> list[tuple[Any, str]]:
    return _union(  # FHIRPath's | removes equal values
        (item[key], "Reference")
        for key, items in (("who", event.get("agent", ())), ("what", event.get("entity", ())))
        for item in items
        if str(item.get(key, {}).get("reference", "")).startswith("Patient/")
    )


Reader = Callable[[dict[str, Any]], list[tuple[Any, str]]]

# The values of each AuditEvent search parameter, read straight from the events this module
# builds (what the compiled FHIRPath expressions would return for them), as (value, type).
# One reader per parameter, so that only the indexed parameters are read.
READERS: dict[str, Reader] = {
    "_lastUpdated": lambda e: (
        [(e["meta"]["lastUpdated"], "instant")] if "lastUpdated" in e.get("meta", {}) else []
    ),
    "_profile": lambda e: [(v, "canonical") for v in e.get("meta", {}).get("profile", ())],
    "_security": lambda e: [(v, "Coding") for v in e.get("meta", {}).get("security", ())],
    "_source": lambda e: [(e["meta"]["source"], "uri")] if "source" in e.get("meta", {}) else [],
    "_tag": lambda e: [(v, "Coding") for v in e.get("meta", {}).get("tag", ())],
    "action": lambda e: [(e["action"], "code")] if "action" in e else [],
    "address": lambda e: [
        (a["network"]["address"], "string")
        for a in e.get("agent", ())
        if "address" in a.get("network", {})
    ],
    "agent": lambda e: [(a["who"], "Reference") for a in e.get("agent", ()) if "who" in a],
    "agent-name": lambda e: [(a["name"], "string") for a in e.get("agent", ()) if "name" in a],
    "agent-role": lambda e: [
        (r, "CodeableConcept") for a in e.get("agent", ()) for r in a.get("role", ())
    ],
    "altid": lambda e: [(a["altId"], "string") for a in e.get("agent", ()) if "altId" in a],
    "date": lambda e: [(e["recorded"], "instant")] if "recorded" in e else [],
    "entity": lambda e: [(x["what"], "Reference") for x in e.get("entity", ()) if "what" in x],
    "entity-name": lambda e: [(x["name"], "string") for x in e.get("entity", ()) if "name" in x],
    "entity-role": lambda e: [(x["role"], "Coding") for x in e.get("entity", ()) if "role" in x],
    "entity-type": lambda e: [(x["type"], "Coding") for x in e.get("entity", ()) if "type" in x],
    "outcome": lambda e: [(e["outcome"], "code")] if "outcome" in e else [],
    "patient": _patient_refs,
    "policy": lambda e: [(p, "uri") for a in e.get("agent", ()) for p in a.get("policy", ())],
    "site": lambda e: [(e["source"]["site"], "string")] if "site" in e.get("source", {}) else [],
    "source": lambda e: (
        [(e["source"]["observer"], "Reference")] if "observer" in e.get("source", {}) else []
    ),
    "subtype": lambda e: [(c, "Coding") for c in e.get("subtype", ())],
    "type": lambda e: [(e["type"], "Coding")] if "type" in e else [],
}


def _nodes(event: dict[str, Any]) -> dict[str, list[tuple[Any, str]]]:
    """Every parameter's values (the readers' whole answer: for tests and the fallback check)."""
    return {code: read(event) for code, read in READERS.items()}


def _union(values: Any) -> list[tuple[Any, str]]:
    out: list[tuple[Any, str]] = []
    for value in values:
        if value not in out:
            out.append(value)
    return out


KNOWN_PARAMS = frozenset({"_id", "_content", "_query", "_text", *READERS})

# the registry's AuditEvent parameters -> (code, kind, reader) of the ones indexed; rebuilt when
# the registry hands out another parameter table (a parameter added or removed)
_plans: dict[int, tuple[Any, list[tuple[str, str, Reader]] | None]] = {}


def _plan(params: dict[str, Any]) -> list[tuple[str, str, Reader]] | None:
    cached = _plans.get(id(params))
    if cached is not None and cached[0] is params:
        return cached[1]
    plan: list[tuple[str, str, Reader]] | None = None
    if params.keys() <= KNOWN_PARAMS:
        plan = [
            (code, param.type, READERS[code])
            for code, param in params.items()
            if code in READERS and param.evaluator is not None
        ]
    _plans.clear()
    _plans[id(params)] = (params, plan)
    return plan


def audit_index(svc: Any, event: dict[str, Any]) -> IndexRows:
    """Index rows of one of our AuditEvents: the rows the generic extractor would produce (a
    test compares both on every kind of event), without evaluating FHIRPath; this runs once per
    FHIR request. Falls back to the extractor if AuditEvent search parameters were added."""
    plan = _plan(svc.registry.params_for("AuditEvent"))
    if plan is None:
        return svc.extractor.extract(event)
    return _index(svc, event, plan)


# the parameters ``AuditLog._rows`` indexes itself, with their kinds: the members that change per
# event (dates, entities and the patients among them) and those shared by a caller's events
_PER_EVENT = {"_lastUpdated": "date", "date": "date", "entity": "reference", "patient": "reference"}
_CONSTANT = {"action": "token", "outcome": "token", "type": "token", "subtype": "token"}
_CONSTANT["agent"] = "reference"


def _fast_plan(plan: list[tuple[str, str, Reader]]) -> tuple | None:
    """(the plan of the shared members, and the codes of _lastUpdated, date, entity and patient
    or '' when not indexed), or None when the plan holds a parameter ``_rows`` does not know."""
    codes = {code: kind for code, kind, _read in plan}
    for code, kind in codes.items():
        if _PER_EVENT.get(code, _CONSTANT.get(code)) != kind:
            return None
    constant = [step for step in plan if step[0] in _CONSTANT]
    return (constant, *(code if code in codes else "" for code in _PER_EVENT))


def _index(svc: Any, event: dict[str, Any], plan: list[tuple[str, str, Reader]]) -> IndexRows:
    rows = IndexRows()
    strings, tokens, references, dates, uris = (
        rows.strings,
        rows.tokens,
        rows.references,
        rows.dates,
        rows.uris,
    )
    parse = svc.extractor.parse_reference

    def text(code: str, value: str) -> None:
        strings.append((code + TEXT_SUFFIX, normalize(value), value[:MAX_INDEXED_CHARS], 0))

    def coding(code: str, value: dict) -> None:
        if isinstance(value.get("code"), str):
            tokens.append((code, value.get("system") or "", value["code"], 0))
        elif value.get("system"):
            tokens.append((code, value["system"], "", 0))
        if isinstance(value.get("display"), str):
            text(code, value["display"])

    for code, kind, read in plan:
        for value, type_ in read(event):
            if kind == "token":
                if isinstance(value, str):
                    tokens.append((code, "", value, 0))
                elif type_ == "Coding":
                    coding(code, value)
                elif type_ == "CodeableConcept":
                    for item in value.get("coding", ()):
                        coding(code, item)
                    if isinstance(value.get("text"), str):
                        text(code, value["text"])
            elif kind == "reference":
                ref = value.get("reference")
                parsed = parse(ref, event) if isinstance(ref, str) else None
                references.append((code, *(parsed or (None, None, None, None)), 0))
                identifier = value.get("identifier")
                if isinstance(identifier, dict) and isinstance(identifier.get("value"), str):
                    tokens.append(
                        (
                            code + IDENTIFIER_SUFFIX,
                            identifier.get("system") or "",
                            identifier["value"],
                            0,
                        )
                    )
            elif kind == "date":
                bounds = _instant_range(value)
                if bounds:
                    dates.append((code, bounds[0], bounds[1], 0))
            elif kind == "string":
                strings.append((code, normalize(value), value[:MAX_INDEXED_CHARS], 0))
            elif kind == "uri":
                uris.append((code, value, 0))
    return rows


def _instant_range(value: str) -> tuple[int, int] | None:
    """``date_range`` of the millisecond UTC instants this module writes, without the regex and
    datetime work (any other form goes through ``date_range``)."""
    if len(value) == 24 and value[23] == "Z" and value[19] == ".":
        try:
            seconds = calendar.timegm(
                (
                    int(value[0:4]),
                    int(value[5:7]),
                    int(value[8:10]),
                    int(value[11:13]),
                    int(value[14:16]),
                    int(value[17:19]),
                    0,
                    0,
                    0,
                )
            )
            low = seconds * 1_000_000 + int(value[20:23]) * 1000
        except ValueError:
            return date_range(value)
        return low, low + 999
    return date_range(value)


def _target(path: str) -> tuple[str | None, str | None]:
    parts = [p for p in path.split("/") if p]
    type_ = parts[0] if parts and parts[0][:1].isupper() else None
    id_ = parts[1] if type_ and len(parts) > 1 and not parts[1].startswith(("_", "$")) else None
    return type_, id_


def _break_glass_reason(reason: str | None) -> dict[str, Any]:
    concept: dict[str, Any] = {
        "coding": [
            {"system": ACT_REASON, "code": "BTG", "display": "break the glass"},
            {"system": ACT_REASON, "code": "ETREAT", "display": "Emergency Treatment"},
        ]
    }
    if reason:
        concept["text"] = reason[:500]
    return concept


def _patients_in_request(path: str, query: str) -> list[str]:
    """Patients named in the URL: Patient/x, Patient/x/Type (compartment) and patient-like
    search parameters (patient=, subject=Patient/x...)."""
    found: list[str] = []
    parts = [p for p in path.split("/") if p]
    if len(parts) >= 2 and parts[0] == "Patient" and not parts[1].startswith(("_", "$")):
        found.append(parts[1])
    if query:
        for name, value in parse_qsl(query, keep_blank_values=False):
            base = name.split(":", 1)[0]
            if base in PATIENT_PARAMS or (base == "_id" and parts[:1] == ["Patient"]):
                for item in value.split(","):
                    item = item.strip()
                    if item.startswith("Patient/"):
                        found.append(item[8:])
                    elif "/" not in item and item and base in ("patient", "_id"):
                        found.append(item)
    return found


class ProvenanceHook:
    """WriteHook: a Provenance for every write made with a token, in the same unit of work."""

    def __init__(self, svc: Any) -> None:
        self.svc = svc
        self._plan_of: Any = None
        self._plan: tuple | None = None
        self._agents: dict[bytes, IndexRows] = {}  # the agent list's JSON -> its rows

    async def before(self, ctx: Any, resource: dict, current: Any) -> None:
        return None

    async def after(self, ctx: Any, uow: Any, written: Any, previous: Any) -> None:
        principal = ctx.principal
        if principal is None or written.type in ("Provenance", "AuditEvent"):
            return
        activity = "DELETE" if written.deleted else "UPDATE" if previous is not None else "CREATE"
        author: dict[str, Any] = {
            "type": {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type",
                        "code": "author",
                    }
                ]
            },
        }
        client_id = getattr(principal, "client_id", None)
        if principal.practitioner:
            author["who"] = {"reference": principal.practitioner}
        elif getattr(principal, "kind", "user") == "system" and client_id:
            author["who"] = {"identifier": {"system": CLIENT_ID, "value": client_id}}
        else:
            author["who"] = {
                "identifier": {"system": "urn:bib:token-subject", "value": principal.subject}
            }
        if getattr(principal, "name", None):
            author["who"]["display"] = principal.name
        if principal.organization:
            author["onBehalfOf"] = {"reference": principal.organization}
        agents = [author]
        if client_id and getattr(principal, "kind", "user") == "user":
            agents.append(
                {
                    "type": {
                        "coding": [
                            {
                                "system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type",
                                "code": "enterer",
                            }
                        ]
                    },
                    "who": {"identifier": {"system": CLIENT_ID, "value": client_id}},
                }
            )
        provenance: dict[str, Any] = {
            "resourceType": "Provenance",
            "id": new_id(),
            "target": [{"reference": f"{written.type}/{written.id}/_history/{written.version}"}],
            "recorded": format_instant(written.last_updated),
            "activity": {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/v3-DataOperation",
                        "code": activity,
                    }
                ]
            },
            "agent": agents,
        }
        if ctx.break_glass:
            provenance["reason"] = [_break_glass_reason(getattr(ctx, "break_glass_reason", None))]
        await self.svc.store_version(ctx, uow, provenance, None, "POST", indexer=self.index)

    def index(self, provenance: dict[str, Any], last_updated: int) -> IndexRows:
        """Index rows of one of our Provenances (after the write hooks, so whatever they did is
        indexed): the rows of its agents once per distinct agent list, the target and dates per
        Provenance, no FHIRPath; anything not shaped as ours goes to the generic extractor. A
        test compares both."""
        svc = self.svc
        params = svc.registry.params_for("Provenance")
        if self._plan_of is not params:  # parameters added or removed
            self._plan_of = params
            self._plan = _provenance_plan(params)
            self._agents.clear()
        plan = self._plan
        if (
            plan is None
            or not provenance.keys() <= _PROVENANCE_KEYS
            or not provenance.get("meta", {}).keys() <= _META_KEYS
            or any(
                not _OUR_TARGET.fullmatch(str(t.get("reference")))
                for t in provenance.get("target", ())
            )
        ):
            return svc.extractor.extract(provenance, last_updated=last_updated)
        agents = provenance.get("agent")
        key = dumps(agents)
        constant = self._agents.get(key)
        if constant is None:
            constant = _index(svc, {"resourceType": "Provenance", "agent": agents}, plan[0])
            if len(self._agents) >= 10_000:
                self._agents.clear()
            self._agents[key] = constant
        rows = _index(svc, provenance, plan[1])
        rows.tokens.extend(constant.tokens)
        rows.references.extend(constant.references)
        rows.strings.extend(constant.strings)
        rows.uris.extend(constant.uris)
        rows.dates.extend(constant.dates)
        if plan[2]:  # as the extractor writes it from the stamp
            rows.dates.append(("_lastUpdated", last_updated, last_updated + 999, 0))
        return rows


# Provenance: the values of each search parameter of the Provenances ``ProvenanceHook`` writes
# (target ``Type/id/_history/n``, recorded, activity, agents, reason), as ``READERS`` above
_OUR_TARGET = re.compile(r"[A-Z][A-Za-z]+/[A-Za-z0-9\-.]{1,64}/_history/[0-9]+")
_PROVENANCE_KEYS = frozenset(
    {"resourceType", "id", "meta", "target", "recorded", "activity", "agent", "reason"}
)
_META_KEYS = frozenset({"versionId", "lastUpdated"})
_CORE = "http://hl7.org/fhir/SearchParameter/"
_AGENT_READERS: dict[str, Reader] = {
    "agent": lambda e: [(a["who"], "Reference") for a in e.get("agent", ()) if "who" in a],
    "agent-role": lambda e: [
        (r, "CodeableConcept") for a in e.get("agent", ()) for r in a.get("role", ())
    ],
    "agent-type": lambda e: [
        (a["type"], "CodeableConcept") for a in e.get("agent", ()) if "type" in a
    ],
}
_PROVENANCE_READERS: dict[str, Reader] = {
    "target": lambda e: [(t, "Reference") for t in e.get("target", ())],
    "patient": lambda e: [
        (t, "Reference")
        for t in e.get("target", ())
        if str(t.get("reference", "")).startswith("Patient/")
    ],
    "recorded": lambda e: [(e["recorded"], "instant")] if "recorded" in e else [],
}
# parameters that read what our Provenances never carry (meta is only versionId and lastUpdated)
_PROVENANCE_ABSENT = frozenset(
    {"_profile", "_security", "_source", "_tag", "entity", "location", "signature-type", "when"}
)


def _provenance_plan(params: dict[str, Any]) -> tuple | None:
    """(the agents' plan, the per-Provenance plan, whether _lastUpdated is indexed), or None
    when a parameter is not one this module knows how to read."""
    agents: list[tuple[str, str, Reader]] = []
    rest: list[tuple[str, str, Reader]] = []
    last_updated = False
    for code, param in params.items():
        if param.evaluator is None or code == "_id":
            continue
        if not param.url.startswith(_CORE):  # a stored SearchParameter: the long way
            return None
        if code in _PROVENANCE_ABSENT:
            continue
        if code == "_lastUpdated":
            last_updated = True
        elif code in _AGENT_READERS:
            agents.append((code, param.type, _AGENT_READERS[code]))
        elif code in _PROVENANCE_READERS:
            rest.append((code, param.type, _PROVENANCE_READERS[code]))
        else:
            return None
    return agents, rest, last_updated
