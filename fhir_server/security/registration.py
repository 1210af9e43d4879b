"""How a professional comes to have a care relationship with a patient they register or identify
(the eHealth "therapeutic relationship", docs/security.md "Care relationships").

- **Registration.** Creating a Patient gives the creator's organisation (or, without one, the
  creator) a care relationship with the new record: a CareTeam (category
  ``bib-care-relationship#registration``) written by the server in the same unit of work. In the
  same request the creator may already write the new patient's data (``ctx.new_patients``), so
  one transaction can create a woman and her first observations.
- **Identification.** A professional who identifies a woman by her SSIN, BIS or BiB programme
  number (she presents it in person: eID, ISI+ card, her programme card) gets a care relationship
  with the existing record: a CareTeam (category ``identification``), audited like every write.
  It happens through ``Patient/$identify`` and through a conditional create
  (``If-None-Exist: identifier=<system>|<value>``) by one of these identifiers, the usual way an
  EPD registers a patient. A Consent of hers that denies the professional still wins.

Neither path lets anyone grant access to someone else or to a record they cannot name: the
CareTeam names the caller's own organisation, and only a full identifier of the woman opens an
existing record.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

from fhir_server.errors import FhirError, bad_request, not_found
from fhir_server.json_codec import parse
from fhir_server.search.dates import format_instant
from fhir_server.security.principal import SecurePrincipal
from fhir_server.service.context import RequestContext
from fhir_server.service.core import Access
from fhir_server.service.result import Result
from fhir_server.service.versioning import new_id, now_us
from fhir_server.store.protocol import StoredVersion, UnitOfWork
from fhir_server.store.query import Query, TokenPred

CARE_RELATIONSHIP = "https://borninbelgiumpro.be/fhir/CodeSystem/bib-care-relationship"
NAMING = "https://www.ehealth.fgov.be/standards/fhir/core/NamingSystem/"
# identifiers a woman presents in person, which identify her beyond doubt
IDENTIFYING_SYSTEMS = frozenset(
    {
        NAMING + "ssin",
        NAMING + "bis",
        "https://borninbelgiumpro.be/fhir/NamingSystem/bib-alternative-patient-number",
    }
)
DISPLAY = {"registration": "Registration of the patient", "identification": "Identification"}


def _professional(ctx: Any) -> SecurePrincipal | None:
    """The caller if a professional who may register and identify patients: a user with a BiB
    role, an organisation or practitioner, and a user-level (not patient-context) grant on
    Patient."""
    principal = ctx.principal
    if not isinstance(principal, SecurePrincipal) or principal.kind != "user":
        return None
    if principal.role is None or not (principal.organization or principal.practitioner):
        return None
    grants = principal.scope_set.grants("Patient", "r") + principal.scope_set.grants("Patient", "c")
    if not any(g.context == "user" and not g.query for g in grants):
        return None
    return principal


def care_team(patient_id: str, principal: SecurePrincipal, basis: str) -> dict[str, Any]:
    now = format_instant(now_us())
    member = principal.organization or principal.practitioner
    return {
        "resourceType": "CareTeam",
        "id": new_id(),
        "status": "active",
        "category": [
            {"coding": [{"system": CARE_RELATIONSHIP, "code": basis, "display": DISPLAY[basis]}]}
        ],
        "name": DISPLAY[basis],
        "subject": {"reference": f"Patient/{patient_id}"},
        "period": {"start": now},
        "participant": [{"member": {"reference": member}, "period": {"start": now}}],
    }


class RegistrationHook:
    """Write hook: a new Patient record gets its creator's care relationship."""

    def __init__(self, svc: Any) -> None:
        self.svc = svc

    async def before(self, ctx: Any, resource: dict, current: Any) -> None:
        return None

    async def after(
        self,
        ctx: Any,
        uow: UnitOfWork,
        written: StoredVersion,
        previous: StoredVersion | None,
    ) -> None:
        if written.type != "Patient" or previous is not None or written.deleted:
            return  # only a record that never existed (a re-created id keeps its relationships)
        principal = _professional(ctx)
        if principal is None:
            return
        await self.svc.store_version(
            ctx, uow, care_team(written.id, principal, "registration"), None, "POST", fresh=True
        )
        ctx.new_patients.add(written.id)


class Identification:
    """Identification of an existing woman by an identifier she presents in person."""

    def __init__(self, svc: Any, relationships: Any) -> None:
        self.svc = svc
        self.rel = relationships

    @staticmethod
    def identifier_of(params: list[tuple[str, str]]) -> tuple[str, str] | None:
        """(system, value) when the condition is exactly one identifying identifier."""
        if len(params) != 1 or params[0][0] != "identifier":
            return None
        system, sep, value = params[0][1].partition("|")
        if not sep or system not in IDENTIFYING_SYSTEMS or not value:
            return None
        return system, value

    async def conditional(
        self, ctx: RequestContext, uow: UnitOfWork, type_: str, query: str
    ) -> list[tuple[str, str]]:
        """The service's identification hook: a conditional interaction on Patient by an
        identifying identifier finds the woman even without a relationship yet, and records
        the identification. Anything else: no match from here."""
        if type_ != "Patient":
            return []
        found = self.identifier_of(parse_qsl(query.split("?", 1)[-1], keep_blank_values=True))
        if found is None or _professional(ctx) is None:
            return []
        patient = await self._find(uow, *found)
        if patient is None:
            return []
        await self._link(ctx, uow, patient)
        return [("Patient", patient.id)]

    async def _find(self, uow: UnitOfWork, system: str, value: str) -> StoredVersion | None:
        query = Query(("Patient",), where=[(TokenPred("identifier", system, value),)], count=2)
        keys = await uow.search_ids(query, limit=2)
        if len(keys) != 1:
            return None  # unknown, or ambiguous: identification needs exactly one record
        version = await uow.current(*keys[0])
        return version if version is not None and not version.deleted else None

    async def _link(self, ctx: RequestContext, uow: UnitOfWork, patient: StoredVersion) -> None:
        principal = _professional(ctx)
        assert principal is not None
        relations = await self.rel.relations(principal)
        ctx.patients.add(patient.id)
        if patient.id in relations.patients or patient.id in ctx.new_patients:
            return  # already in her care
        if await self.rel.consent_denies(principal, patient.id):
            raise FhirError(
                403,
                "forbidden",
                "the patient's consent does not allow you access to her record",
            )
        await self.svc.store_version(
            ctx, uow, care_team(patient.id, principal, "identification"), None, "POST", fresh=True
        )
        ctx.new_patients.add(patient.id)

    async def operation(self, svc: Any, ctx: RequestContext, request: Any, target: dict) -> Result:
        """``POST Patient/$identify`` (Parameters ``identifier``, or GET ``?identifier=s|v``):
        the Patient with that identifying identifier, with a care relationship recorded."""
        if target.get("id") is not None:
            raise bad_request("$identify runs on the Patient type: POST Patient/$identify")
        await svc.authorize(ctx, Access("operation", "Patient", operation="identify"))
        identifier = await _identifier_argument(svc, request)
        if _professional(ctx) is None:
            raise FhirError(
                403,
                "forbidden",
                "identification is for professionals with a BiB role and an organisation",
            )
        system, value = identifier
        if system not in IDENTIFYING_SYSTEMS:
            raise bad_request(
                "identify a patient by her SSIN, BIS or BiB programme number (identifier "
                "system " + ", ".join(sorted(IDENTIFYING_SYSTEMS)) + ")"
            )
        async with svc.store.unit_of_work() as uow:
            patient = await self._find(uow, system, value)
            if patient is None:
                raise not_found("no patient with this identifier is known here")
            await self._link(ctx, uow, patient)
        return Result(200, raw=patient.body, version=patient)


async def _identifier_argument(svc: Any, request: Any) -> tuple[str, str]:
    text: str | None = None
    if request.method == "POST":
        raw = await request.body(svc.settings.max_body_bytes)
        body = parse(raw) if raw.strip() else None
        for param in (body or {}).get("parameter", ()) if isinstance(body, dict) else ():
            if isinstance(param, dict) and param.get("name") == "identifier":
                ident = param.get("valueIdentifier")
                if isinstance(ident, dict):
                    text = f"{ident.get('system', '')}|{ident.get('value', '')}"
    if text is None:
        text = request.param("identifier")
    if not text or "|" not in text:
        raise bad_request(
            "$identify needs an identifier (system|value), e.g. the SSIN the woman presents"
        )
    system, _, value = text.partition("|")
    return system, value
