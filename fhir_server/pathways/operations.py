"""``PlanDefinition/$apply`` and ``ActivityDefinition/$apply`` (R4), type and instance level, GET
and POST.

Inputs (R4 names): ``planDefinition`` / ``activityDefinition`` (type level, inline), ``subject``
(one Patient reference), ``encounter``, ``practitioner``, ``organization``, ``userType``,
``userLanguage``, ``userTaskContext``, ``setting``, ``settingContext``; and, as this server's
additions (docs/pathways.md): ``url`` (+``version``) to name a stored definition at type level,
the anchor dates ``dueDate``, ``lossDate``, ``birthDate`` (otherwise read from the patient's data),
and ``output`` = ``careplan`` (default: the CarePlan with everything contained, as R4 returns it)
or ``transaction`` (a transaction Bundle that stores the plan with its RequestGroup, goals and
requests in one POST to the base).

The operation reads and writes nothing outside the caller's permissions: the subject, encounter,
practitioner and organization are read through the guard (a patient without a care relationship
answers 404, like one that does not exist), and so is every piece of data a condition uses.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from fhir_server.errors import FhirError, bad_request, gone, not_found
from fhir_server.json_codec import loads_trusted
from fhir_server.pathways import engine, subject
from fhir_server.pathways.definitions import (
    PATIENT_PROFILE,
    Activity,
    Plan,
    compile_activity,
    compile_plan,
)
from fhir_server.pathways.library import DefinitionIndex
from fhir_server.pathways.timing import parse_date
from fhir_server.search.dates import format_instant
from fhir_server.service import crud
from fhir_server.service.context import RequestContext
from fhir_server.service.core import Access, FhirService
from fhir_server.service.result import Result
from fhir_server.service.versioning import now_us
from fhir_server.terminology.languages import requested_languages
from fhir_server.terminology.operations import OperationParams

COMMON = {
    "subject": "string",
    "encounter": "string",
    "practitioner": "string",
    "organization": "string",
    "userType": "string",
    "userLanguage": "string",
    "userTaskContext": "string",
    "setting": "string",
    "settingContext": "string",
    "dueDate": "dateTime",
    "lossDate": "dateTime",
    "birthDate": "dateTime",
    "url": "canonical",
    "version": "string",
}
PLAN_PARAMS = {**COMMON, "planDefinition": "resource", "output": "code"}
ACTIVITY_PARAMS = {**COMMON, "activityDefinition": "resource"}
OUTPUTS = ("careplan", "transaction")
CONTEXT_TYPES = {
    "encounter": ("Encounter",),
    "practitioner": ("Practitioner", "PractitionerRole"),
    "organization": ("Organization",),
}


def index_of(svc: FhirService) -> DefinitionIndex:
    index = getattr(svc, "pathway_definitions", None)
    if index is None:
        raise FhirError(500, "exception", "the pathway engine is not installed")
    return index


async def apply_operation(
    svc: FhirService, ctx: RequestContext, request: Any, target: dict[str, Any]
) -> Result:
    type_ = target.get("type")
    if type_ not in ("PlanDefinition", "ActivityDefinition"):
        raise FhirError(
            404,
            "not-supported",
            "$apply is available as PlanDefinition/$apply, PlanDefinition/[id]/$apply, "
            "ActivityDefinition/$apply and ActivityDefinition/[id]/$apply",
        )
    await svc.authorize(ctx, Access("operation", type_, target.get("id"), operation="apply"))
    spec = PLAN_PARAMS if type_ == "PlanDefinition" else ACTIVITY_PARAMS
    params = await OperationParams.read(svc, request, "apply", spec)
    definition = await _definition(svc, ctx, type_, target.get("id"), params)
    values = _values(params)
    languages = requested_languages(None, request.header("accept-language"))
    if values.get("userLanguage"):
        languages = [values["userLanguage"], *languages]
    inputs = await prepare(svc, ctx, definition, values, languages)
    index = index_of(svc)

    async def resolve(canonical: str) -> Activity:
        return await resolve_activity(svc, ctx, index, canonical)

    if isinstance(definition, Plan):
        output = values.get("output") or "careplan"
        if output not in OUTPUTS:
            raise bad_request(
                f"output must be one of {', '.join(OUTPUTS)}, got {output!r}", "output"
            )
        applied = await engine.apply_plan(definition, inputs, resolve, svc.model)
        resource = applied.transaction() if output == "transaction" else applied.contained()
        return Result(200, resource=resource)
    resource = engine.apply_activity(definition, inputs, None, svc.model)
    return Result(200, resource=resource)


async def _definition(
    svc: FhirService,
    ctx: RequestContext,
    type_: str,
    id_: str | None,
    params: OperationParams,
) -> Plan | Activity:
    inline_name = "planDefinition" if type_ == "PlanDefinition" else "activityDefinition"
    inline = params.get(inline_name)
    url = params.get("url")
    index = index_of(svc)
    if id_ is not None:
        if inline is not None or url is not None:
            raise bad_request(
                f"{inline_name} and url are only allowed at type level ({type_}/$apply); "
                f"{type_}/{id_}/$apply applies the stored one"
            )
        current = await svc.store.current(type_, id_)
        if current is None:
            raise not_found(f"{type_}/{id_} is not known")
        if current.deleted or current.body is None:
            raise gone(f"{type_}/{id_} has been deleted")
        return index.entry_for(current).compiled
    if inline is not None:
        if url is not None:
            raise bad_request(f"give either {inline_name} or url, not both")
        resource = svc.validate(inline, type_)
        return compile_plan(resource) if type_ == "PlanDefinition" else compile_activity(resource)
    if url is None:
        raise bad_request(
            f"{type_}/$apply needs the definition: {inline_name} (a resource, POST) or url; "
            f"or apply a stored one with {type_}/[id]/$apply",
            code="required",
        )
    canonical = url if not params.get("version") else f"{url}|{params.get('version')}"
    entry = index.find(type_, canonical)
    if entry is None:
        raise not_found(f"no {type_} with url {canonical} is known to this server")
    return entry.compiled


def _values(params: OperationParams) -> dict[str, Any]:
    out: dict[str, Any] = {}
    subjects = params.all("subject")
    if not subjects:
        raise bad_request(
            "$apply needs a subject (e.g. subject=Patient/123)", "subject", code="required"
        )
    if len(subjects) > 1:
        raise bad_request("this server applies a definition to one subject at a time", "subject")
    out["subject"] = subjects[0]
    for name in (
        "encounter",
        "practitioner",
        "organization",
        "userType",
        "userLanguage",
        "userTaskContext",
        "setting",
        "settingContext",
        "output",
    ):
        value = params.get(name)
        if value is not None:
            out[name] = value
    for name in ("dueDate", "lossDate", "birthDate"):
        value = params.get(name)
        if value is None:
            continue
        day = parse_date(value) if isinstance(value, str) and len(value) >= 10 else None
        if day is None:
            raise bad_request(f"{name} must be a date (YYYY-MM-DD), got {value!r}", name)
        out[name] = day.isoformat()
    return out


def _local(svc: FhirService, reference: Any, name: str, types: tuple[str, ...]) -> tuple[str, str]:
    if not isinstance(reference, str) or not reference:
        raise bad_request(f"{name} must be a reference such as {types[0]}/123", name)
    base = svc.settings.public_url.rstrip("/") + "/"
    local = reference[len(base) :] if reference.startswith(base) else reference
    parts = local.split("/")
    if len(parts) != 2 or not parts[1]:
        raise bad_request(
            f"{name} {reference!r} is not a reference to a resource of this server "
            f"(expected {types[0]}/[id])",
            name,
        )
    if parts[0] not in types:
        raise FhirError(
            400,
            "not-supported",
            f"{name} must reference a {' or '.join(types)}, not a {parts[0]}",
            name,
        )
    crud.check_id(parts[1])
    return parts[0], parts[1]


async def _read(svc: FhirService, ctx: RequestContext, type_: str, id_: str) -> dict[str, Any]:
    result = await crud.read(svc, ctx, type_, id_)
    assert result.version is not None and result.version.body is not None
    return loads_trusted(result.version.body)


async def prepare(
    svc: FhirService,
    ctx: RequestContext,
    definition: Plan | Activity,
    values: dict[str, Any],
    languages: list[str],
    extra: list[dict[str, Any]] | None = None,
    uow: Any = None,
    patient: dict[str, Any] | None = None,
) -> engine.Inputs:
    """Read the subject and context resources and prepare the variables the definition uses."""
    if patient is None:
        _, pid = _local(svc, values["subject"], "subject", ("Patient",))
        patient = await _read(svc, ctx, "Patient", pid)
    context_refs: dict[str, str] = {}
    for name, types in CONTEXT_TYPES.items():
        if name not in values:
            continue
        type_, id_ = _local(svc, values[name], name, types)
        resource = await _read(svc, ctx, type_, id_)
        if name == "encounter":
            ref = (resource.get("subject") or {}).get("reference")
            if ref not in (f"Patient/{patient['id']}", f"{ctx.base_url}/Patient/{patient['id']}"):
                raise bad_request(f"Encounter/{id_} is not an encounter of the subject", name)
        context_refs[name] = f"{type_}/{id_}"
    wanted = set(definition.variables) | {"careTeams"}
    if isinstance(definition, Plan):
        index = index_of(svc)
        for action in definition.walk():
            if action.definition:
                entry = index.find("ActivityDefinition", action.definition)
                if entry is not None:
                    wanted |= entry.compiled.variables
    today = datetime.now(ZoneInfo(svc.settings.timezone)).date()
    data = await subject.load(
        svc, ctx, patient, wanted, today, {**values, **context_refs}, uow=uow, extra=extra
    )
    validator = getattr(svc, "profile_validator", None)
    claim = bool(validator is not None and validator.conforms(patient, PATIENT_PROFILE))
    return engine.Inputs(
        subject=data,
        languages=languages,
        now=format_instant(now_us()),
        encounter=context_refs.get("encounter"),
        practitioner=context_refs.get("practitioner"),
        organization=context_refs.get("organization"),
        claim_profile=claim,
    )


async def resolve_activity(
    svc: FhirService, ctx: RequestContext, index: DefinitionIndex, canonical: str
) -> Activity:
    entry = index.find("ActivityDefinition", canonical)
    if entry is None:
        # another process may have written it: look in the store before giving up
        url, _, version = canonical.partition("|")
        params = [("url", url)] + ([("version", version)] if version else [])
        found = await subject.find(svc, ctx, "ActivityDefinition", params, limit=5)
        if found:
            current = await svc.store.current("ActivityDefinition", found[0]["id"])
            if current is not None and not current.deleted:
                entry = index.entry_for(current)
    if entry is None:
        raise FhirError(
            422,
            "not-found",
            f"the ActivityDefinition {canonical} that the plan names is not known to this server",
        )
    assert isinstance(entry.compiled, Activity)
    return entry.compiled


__all__ = ["apply_operation", "prepare", "resolve_activity"]
