"""Writing what the server generates from a response, inside the response's unit of work.

Every generated resource (extracted Observations and Consent, protocol Tasks, the safety alert's
Flag, Task and Communication) is validated like a client's write, authorized by the guard with
the caller's context (so it lands only where the caller may write: the patient's record, with
the labels the policy gives it), indexed and stored in the same unit of work as the response:
everything commits or nothing does. One Provenance per response write covers them all:
``target`` every generated version, ``entity`` the response (role ``source``), agents the
caller (author) and this server (assembler), as SDC asks of extracted resources.

Who is "the responsible professional" (owner of Tasks, recipient of alerts) is decided from the
data, in this order: the response's ``author`` when it is a Practitioner or PractitionerRole
(the professional who did the screening follows it up); else a Practitioner or PractitionerRole
participant of an active CareTeam of the patient; else the Patient's first
``generalPractitioner``; else the caller's own Practitioner.
"""

from __future__ import annotations

from typing import Any

from fhir_server.errors import FhirError, Issue
from fhir_server.json_codec import loads_trusted
from fhir_server.search.dates import format_instant
from fhir_server.service.context import RequestContext
from fhir_server.service.core import Access, FhirService
from fhir_server.service.versioning import new_id, now_us
from fhir_server.store.protocol import StoredVersion, UnitOfWork

PROFESSIONAL_TYPES = ("Practitioner", "PractitionerRole")
SERVER_AGENT = "https://borninbelgiumpro.be/fhir/Device/bib-fhir-server"


def reference_type(reference: Any) -> str | None:
    if isinstance(reference, dict) and isinstance(reference.get("reference"), str):
        parts = reference["reference"].split("/")
        if len(parts) >= 2:
            return parts[-2]
    return None


def patient_id(response: dict[str, Any]) -> str | None:
    subject = response.get("subject")
    if reference_type(subject) == "Patient":
        return subject["reference"].split("/")[-1]
    return None


async def search_unit(
    svc: FhirService,
    ctx: RequestContext,
    uow: UnitOfWork,
    type_: str,
    params: list[tuple[str, str]],
    limit: int = 50,
) -> list[dict[str, Any]]:
    """A search of what is committed, narrowed to what the caller may see; each hit is read
    again through the unit of work (which sees the unit's own changes to it).

    Committed data, not the unit's own writes: a query through the unit of work would make the
    SQLite store apply its open batch first (and wait for the batch in flight), which costs a
    screening more than all its other writes. What this misses (resources written earlier in
    the same unit) the callers track themselves."""
    from fhir_server.service.search import restrict

    parsed = svc.parser.parse((type_,), params, strict=True)
    parsed.query.count = limit
    await restrict(svc, ctx, parsed.query)
    page = await svc.store.search(parsed.query)
    out = []
    for hit in page.hits:
        version = await uow.current(hit.type, hit.id)
        if version is not None and version.body is not None and not version.deleted:
            out.append(loads_trusted(version.body))
    return out


async def responsible_professional(
    svc: FhirService, ctx: RequestContext, uow: UnitOfWork, response: dict[str, Any]
) -> tuple[dict[str, Any] | None, str]:
    author = response.get("author")
    if reference_type(author) in PROFESSIONAL_TYPES:
        return {"reference": author["reference"]}, "the author of the screening"
    pid = patient_id(response)
    if pid is not None:
        teams = await search_unit(
            svc, ctx, uow, "CareTeam", [("patient", f"Patient/{pid}"), ("status", "active")], 10
        )
        for team in teams:
            for participant in team.get("participant", ()) or ():
                member = participant.get("member") if isinstance(participant, dict) else None
                if reference_type(member) in PROFESSIONAL_TYPES:
                    return {"reference": member["reference"]}, "the patient's care team"
        stored = await uow.current("Patient", pid)
        live = stored is not None and stored.body is not None and not stored.deleted
        if live and await svc.visible(ctx, stored):
            patient = loads_trusted(stored.body)
            for gp in patient.get("generalPractitioner", ()) or ():
                if reference_type(gp) in PROFESSIONAL_TYPES:
                    return {"reference": gp["reference"]}, "the patient's general practitioner"
    principal = ctx.principal
    practitioner = getattr(principal, "practitioner", None) if principal is not None else None
    if practitioner:
        return {"reference": practitioner}, "the professional who submitted the screening"
    return None, "nobody (no author, care team, general practitioner or signed-in professional)"


class Writer:
    """Writes generated resources in a unit of work and records them for one Provenance."""

    def __init__(self, svc: FhirService, ctx: RequestContext, uow: UnitOfWork) -> None:
        self.svc = svc
        self.ctx = ctx
        self.uow = uow
        # the per-write Provenance of the security layer is replaced by one covering all
        # generated resources (see ``provenance``): the writes go through a context without a
        # principal; authorization uses the caller's context
        self.quiet = RequestContext(
            base_url=ctx.base_url,
            request_id=ctx.request_id,
            in_transaction=True,
            break_glass=ctx.break_glass,
        )
        self.written: list[StoredVersion] = []

    async def create(self, resource: dict[str, Any]) -> StoredVersion:
        type_ = resource["resourceType"]
        resource.setdefault("id", new_id())  # a fresh UUIDv7, or one assigned just before
        self._validate(resource)
        await self.svc.authorize(
            self.ctx, Access("create", type_, resource["id"], resource=resource)
        )
        stored = await self.svc.store_version(
            self.quiet, self.uow, resource, None, "POST", fresh=True
        )
        self.written.append(stored)
        return stored

    async def update(self, resource: dict[str, Any], current: StoredVersion) -> StoredVersion:
        type_ = resource["resourceType"]
        self._validate(resource)
        await self.svc.authorize(
            self.ctx, Access("update", type_, resource["id"], resource=resource, current=current)
        )
        stored = await self.svc.store_version(self.quiet, self.uow, resource, current, "PUT")
        self.written.append(stored)
        return stored

    def _validate(self, resource: dict[str, Any]) -> None:
        """A generated resource that does not validate is a fault of the Questionnaire or the
        protocol (their data made it): 422, naming what was generated."""
        try:
            self.svc.validate(resource, resource["resourceType"])
        except FhirError as exc:
            issues = [
                Issue(
                    i.severity,
                    i.code,
                    f"the {resource['resourceType']} the server derives from this response "
                    f"would not be valid (check the Questionnaire's extraction or the "
                    f"protocol): {i.diagnostics}",
                    i.expression,
                )
                for i in exc.issues
            ]
            raise FhirError(422, "processing", issues[0].diagnostics, issues=issues) from exc

    async def provenance(self, source: StoredVersion) -> None:
        """One Provenance for everything generated from ``source``. Written also without
        security (``--insecure-open``, which writes no per-write Provenance): it is the
        lineage of derived data (SDC), and it is how an amended response finds what its
        earlier versions yielded."""
        if not self.written:
            return
        principal = self.ctx.principal
        agents: list[dict[str, Any]] = []
        if principal is not None:
            author: dict[str, Any] = {
                "type": _participant("author"),
                "who": {"reference": principal.practitioner}
                if principal.practitioner
                else {
                    "identifier": {"system": "urn:bib:token-subject", "value": principal.subject}
                },
            }
            if principal.organization:
                author["onBehalfOf"] = {"reference": principal.organization}
            agents.append(author)
        agents.append(
            {
                "type": _participant("assembler"),
                "who": {
                    "identifier": {"system": "urn:ietf:rfc:3986", "value": SERVER_AGENT},
                    "display": "BiB FHIR server (screening)",
                },
            }
        )
        provenance: dict[str, Any] = {
            "resourceType": "Provenance",
            "id": new_id(),
            "target": [
                {"reference": f"{w.type}/{w.id}/_history/{w.version}"} for w in self.written
            ],
            "recorded": format_instant(now_us()),
            "activity": {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/v3-DataOperation",
                        "code": "CREATE",
                    }
                ],
                "text": "derived by the server from a screening response (SDC extraction, "
                "stepped protocol, safety alert)",
            },
            "agent": agents,
            "entity": [
                {
                    "role": "source",
                    "what": {"reference": f"{source.type}/{source.id}/_history/{source.version}"},
                }
            ],
        }
        # written like the security layer's own per-write Provenance: by the server, without
        # a guard check of its own (each target's write was authorized above; the guard's
        # Provenance rule looks at committed targets, which these are not yet)
        await self.svc.store_version(self.ctx, self.uow, provenance, None, "POST", fresh=True)


def _participant(code: str) -> dict[str, Any]:
    return {
        "coding": [
            {
                "system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type",
                "code": code,
            }
        ]
    }
