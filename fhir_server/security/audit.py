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
from collections.abc import Awaitable
from typing import Any
from urllib.parse import parse_qsl

from fhir_server.json_codec import dumps
from fhir_server.search.dates import date_range, format_instant
from fhir_server.search.extract import IDENTIFIER_SUFFIX, TEXT_SUFFIX
from fhir_server.search.normalize import MAX_INDEXED_CHARS, normalize
from fhir_server.service.context import RequestContext
from fhir_server.service.core import Done
from fhir_server.service.versioning import new_id, now_us, stamp_meta
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
                await self.flush()

    async def flush(self) -> int:
        """Write everything queued in one unit of work; wake its requests when durable."""
        if not self.buffer:
            return 0
        entries, self.buffer = self.buffer, []
        waiters, self._waiters = self._waiters, []
        try:
            items = [self._version(self.build(entry)) for entry in entries]
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

    def _version(self, event: dict[str, Any]) -> tuple[StoredVersion, IndexRows]:
        """One AuditEvent, ready for the store's bulk path. Audit events bypass the write hooks
        (no labels, no Provenance) and are indexed by ``audit_index`` (the same rows the generic
        extractor produces, at a fraction of the cost: this runs once per FHIR request)."""
        when = now_us()
        stamp_meta(event, 1, when)
        index = audit_index(self.svc, event)
        return StoredVersion("AuditEvent", event["id"], 1, when, False, "POST", dumps(event)), index

    # -- AuditEvent ------------------------------------------------------------------------------

    def build(self, entry: tuple) -> dict[str, Any]:
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
        action = ACTION.get(interaction, "E")
        outcome = "0" if status < 400 else "4" if status < 500 else "8"
        if refusal and outcome == "0" and interaction in ACTION:
            # answered as if the resource did not exist (a delete of a hidden resource is a
            # 204), but refused all the same: the audit trail says so
            outcome = "4"
        description = f"HTTP {status}"
        if refusal:
            description += f": {refusal}"
        if interaction.startswith("auth:"):  # an authorization-server event
            event_type = {"system": DCM, "code": "110114"}  # User Authenticated
            subtype = {"system": AUTH_EVENT_SYSTEM, "code": interaction[5:]}
        else:
            event_type = {  # RESTful Operation
                "system": "http://terminology.hl7.org/CodeSystem/audit-event-type",
                "code": "rest",
            }
            subtype = {"system": SUBTYPE_SYSTEM, "code": interaction}
        event: dict[str, Any] = {
            "resourceType": "AuditEvent",
            "id": new_id(),
            "type": event_type,
            "subtype": [subtype],
            "action": action,
            "recorded": format_instant(when),
            "outcome": outcome,
            "outcomeDesc": description,
            "agent": self._agents(principal, client_ip, break_glass, reason),
            "source": {
                "site": self.site,
                "observer": {"display": "BiB FHIR server"},
                "type": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/security-source-type",
                        "code": "4",
                        "display": "Application Server",
                    }
                ],
            },
        }
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
                    "type": {"system": ENTITY_TYPE, "code": "1"},  # Person
                    "role": {"system": OBJECT_ROLE, "code": "1"},  # Patient
                }
            )
        seen: set[str] = set()
        for _interaction, type_, id_, operation in accesses:
            if type_ and id_ and f"{type_}/{id_}" not in seen and len(seen) < MAX_ENTITIES:
                seen.add(f"{type_}/{id_}")
                entity: dict[str, Any] = {
                    "what": {"reference": f"{type_}/{id_}"},
                    "type": {"system": ENTITY_TYPE, "code": "2"},  # System Object
                    "role": {"system": OBJECT_ROLE, "code": "4"},  # Domain Resource
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
        return event

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


def _nodes(event: dict[str, Any]) -> dict[str, list[tuple[Any, str]]]:
    """The values of each AuditEvent search parameter, read straight from the events this module
    builds (what the compiled FHIRPath expressions would return for them), as (value, type)."""
    agents = event.get("agent", ())
    entities = event.get("entity", ())
    source = event.get("source", {})
    meta = event.get("meta", {})
    return {
        "_lastUpdated": [(meta["lastUpdated"], "instant")] if "lastUpdated" in meta else [],
        "_profile": [(v, "canonical") for v in meta.get("profile", ())],
        "_security": [(v, "Coding") for v in meta.get("security", ())],
        "_source": [(meta["source"], "uri")] if "source" in meta else [],
        "_tag": [(v, "Coding") for v in meta.get("tag", ())],
        "action": [(event["action"], "code")] if "action" in event else [],
        "address": [
            (a["network"]["address"], "string") for a in agents if "address" in a.get("network", {})
        ],
        "agent": [(a["who"], "Reference") for a in agents if "who" in a],
        "agent-name": [(a["name"], "string") for a in agents if "name" in a],
        "agent-role": [(r, "CodeableConcept") for a in agents for r in a.get("role", ())],
        "altid": [(a["altId"], "string") for a in agents if "altId" in a],
        "date": [(event["recorded"], "instant")] if "recorded" in event else [],
        "entity": [(e["what"], "Reference") for e in entities if "what" in e],
        "entity-name": [(e["name"], "string") for e in entities if "name" in e],
        "entity-role": [(e["role"], "Coding") for e in entities if "role" in e],
        "entity-type": [(e["type"], "Coding") for e in entities if "type" in e],
        "outcome": [(event["outcome"], "code")] if "outcome" in event else [],
        "patient": _union(  # FHIRPath's | removes equal values
            (item[key], "Reference")
            for key, items in (("who", agents), ("what", entities))
            for item in items
            if str(item.get(key, {}).get("reference", "")).startswith("Patient/")
        ),
        "policy": [(p, "uri") for a in agents for p in a.get("policy", ())],
        "site": [(source["site"], "string")] if "site" in source else [],
        "source": [(source["observer"], "Reference")] if "observer" in source else [],
        "subtype": [(c, "Coding") for c in event.get("subtype", ())],
        "type": [(event["type"], "Coding")] if "type" in event else [],
    }


def _union(values: Any) -> list[tuple[Any, str]]:
    out: list[tuple[Any, str]] = []
    for value in values:
        if value not in out:
            out.append(value)
    return out


KNOWN_PARAMS = frozenset({"_id", "_content", "_query", "_text", *_nodes({}).keys()})


def audit_index(svc: Any, event: dict[str, Any]) -> IndexRows:
    """Index rows of one of our AuditEvents: the rows the generic extractor would produce (a
    test compares both on every kind of event), without evaluating FHIRPath; this runs once per
    FHIR request. Falls back to the extractor if AuditEvent search parameters were added."""
    params = svc.registry.params_for("AuditEvent")
    if not params.keys() <= KNOWN_PARAMS:
        return svc.extractor.extract(event)
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

    for code, values in _nodes(event).items():
        param = params.get(code)
        if not values or param is None or param.evaluator is None:
            continue
        kind = param.type
        for value, type_ in values:
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
        await self.svc.store_version(ctx, uow, provenance, None, "POST")
