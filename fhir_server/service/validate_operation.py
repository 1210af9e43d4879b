"""Profile validation in the server: ``$validate``, validation on write, stored profiles.

Installed by ``plugins.py``:

* a ``ProfileValidator`` joins ``FhirService.profile_validators``, so every create, update, patch
  and transaction entry that claims a profile in ``meta.profile`` (or whose type has a required
  profile, setting ``required_profiles``) is validated against it; errors reject the write with
  422 and the OperationOutcome, nothing is written;
* a write hook checks, inside the unit of work, that referenced stored resources conform to the
  reference's target profiles (e.g. ``ServiceRequest.subject`` must be a BiB Patient);
* ``[base]/[type]/$validate`` and ``[base]/[type]/[id]/$validate`` (``resource``, ``mode``
  create | update | delete, ``profile``) return an OperationOutcome (200) listing every issue
  with its FHIRPath location;
* stored StructureDefinitions become usable for validation as soon as they are committed (and
  at start-up).
"""

from __future__ import annotations

import logging
from typing import Any

from fhir_server.errors import FhirError, Issue, bad_request, is_hidden, operation_outcome, unknown
from fhir_server.json_codec import loads_trusted, parse
from fhir_server.service.context import RequestContext
from fhir_server.service.core import Access, FhirService
from fhir_server.service.result import Result
from fhir_server.store.protocol import StoredVersion
from fhir_server.validation.profiles import ProfileValidator, parse_required_profiles

log = logging.getLogger(__name__)

MODES = ("create", "update", "delete")
MAX_RESOLVED = 100  # referenced resources read for one validation


# -- $validate ------------------------------------------------------------------------------------


async def validate_operation(
    svc: FhirService, ctx: RequestContext, request: Any, target: dict[str, Any]
) -> Result:
    type_ = target.get("type")
    id_ = target.get("id")
    if type_ is None:
        raise FhirError(
            404,
            "not-supported",
            "$validate is available at type level ([type]/$validate) "
            "and instance level ([type]/[id]/$validate)",
        )
    validator = profile_validator(svc)
    resource, mode, profiles = await _arguments(svc, request)
    if mode is not None and mode not in MODES:
        raise bad_request(f"unknown mode {mode!r} (create, update or delete)", "mode")
    if mode in ("update", "delete") and id_ is None:
        raise bad_request(f"mode {mode} needs the instance level: {type_}/[id]/$validate", "mode")
    hidden = False
    try:
        await svc.authorize(ctx, Access("operation", type_, id_, operation="validate"))
    except FhirError as exc:
        if not is_hidden(exc):
            raise
        hidden = True  # validated exactly as against a missing resource
    for url in profiles:
        if not validator.knows(url):
            raise FhirError(
                400,
                "not-supported",
                f"the profile {url} is not known to this server, so it cannot validate against it",
                "profile",
            )
    issues: list[Issue] = []
    current = await svc.store.current(type_, id_) if id_ and not hidden else None
    if current is not None and current.deleted:
        current = None
    if mode == "delete":
        issues += await _check_delete(svc, ctx, type_, id_, current)
        return _outcome(issues)
    if resource is None:
        if id_ is None or request.method != "GET":
            raise bad_request("the resource to validate is missing", "resource", code="required")
        if current is None:
            raise unknown(type_, id_)
        resource = loads_trusted(current.body)
    if not isinstance(resource, dict):
        raise bad_request("the resource to validate must be a JSON object", "resource")
    if resource.get("resourceType") != type_:
        issues.append(
            Issue(
                "error",
                "invalid",
                f"resourceType {resource.get('resourceType')!r} does not match {type_}/$validate",
                "resourceType",
            )
        )
        return _outcome(issues)
    # best-practice invariants (dom-6, con-3) too: warnings, which only $validate shows
    issues += svc.validator.validate(resource, type_, best_practice=True)  # type: ignore[call-arg]
    for other in svc.profile_validators:
        if other is not validator:
            issues += other.validate(resource, type_)
    urls = validator.profiles_for(resource, type_)
    urls += [u for u in profiles if u not in urls]
    resolved = await _resolve_references(svc, ctx, resource) if urls else {}
    # always: extensions are checked by URL and nested resources against their claims
    issues += validator.validate_against(resource, urls, resolver=resolved.get)
    if mode in ("create", "update"):
        issues += await _check_write(svc, ctx, mode, type_, id_, resource, current)
    return _outcome(issues)


def _outcome(issues: list[Issue]) -> Result:
    if not issues:
        issues = [Issue("information", "informational", "No issues found: the content is valid")]
    return Result(200, resource=operation_outcome(issues))


async def _arguments(svc: FhirService, request: Any) -> tuple[Any, str | None, list[str]]:
    mode = request.param("mode")
    profiles = [v for k, v in request.params if k == "profile"]
    resource = None
    if request.method == "POST":
        raw = await request.body(svc.settings.max_body_bytes)
        body = parse(raw) if raw.strip() else None
        if isinstance(body, dict) and body.get("resourceType") == "Parameters":
            for parameter in body.get("parameter", ()) or ():
                name = parameter.get("name") if isinstance(parameter, dict) else None
                if name == "resource":
                    resource = parameter.get("resource")
                elif name == "mode":
                    mode = parameter.get("valueCode") or parameter.get("valueString")
                elif name == "profile":
                    url = (
                        parameter.get("valueUri")
                        or parameter.get("valueCanonical")
                        or parameter.get("valueString")
                    )
                    if url:
                        profiles.append(url)
        else:
            resource = body
    return resource, mode, profiles


async def _check_delete(
    svc: FhirService,
    ctx: RequestContext,
    type_: str,
    id_: str | None,
    current: StoredVersion | None,
) -> list[Issue]:
    if current is None:
        return [
            Issue(
                "warning",
                "not-found",
                f"{type_}/{id_} does not exist (a delete would change nothing)",
            )
        ]
    try:
        await svc.guard.check(ctx, Access("delete", type_, id_, current=current))
    except FhirError as exc:
        return [Issue("error", "forbidden", exc.issues[0].diagnostics)]
    return []


async def _check_write(
    svc: FhirService,
    ctx: RequestContext,
    mode: str,
    type_: str,
    id_: str | None,
    resource: dict[str, Any],
    current: StoredVersion | None,
) -> list[Issue]:
    issues: list[Issue] = []
    if mode == "update":
        if resource.get("id") != id_:
            issues.append(
                Issue(
                    "error",
                    "invalid",
                    f"the resource id {resource.get('id')!r} does not match {type_}/{id_}",
                    f"{type_}.id",
                )
            )
        if current is None and not svc.settings.allow_update_create:
            issues.append(
                Issue(
                    "error",
                    "not-found",
                    f"{type_}/{id_} does not exist and this server does not create on update",
                )
            )
    access = Access(mode, type_, id_, resource=resource, current=current)
    try:
        await svc.guard.check(ctx, access)
    except FhirError as exc:
        issues.append(Issue("error", "forbidden", exc.issues[0].diagnostics))
    return issues


# -- referenced resources ------------------------------------------------------------------------


def _references(value: Any, out: set[str]) -> None:
    if isinstance(value, dict):
        reference = value.get("reference")
        if isinstance(reference, str) and not reference.startswith(("#", "urn:")):
            out.add(reference)
        for item in value.values():
            if isinstance(item, (dict, list)):
                _references(item, out)
    elif isinstance(value, list):
        for item in value:
            _references(item, out)


async def _resolve_references(
    svc: FhirService, ctx: RequestContext | None, resource: dict[str, Any]
) -> dict[str, dict[str, Any]]:
    """The stored resources ``resource`` references (relative or on this server's base)."""
    found: set[str] = set()
    _references({k: v for k, v in resource.items() if k != "contained"}, found)
    base = svc.settings.public_url.rstrip("/") + "/"
    out: dict[str, dict[str, Any]] = {}
    for reference in sorted(found)[:MAX_RESOLVED]:
        local = reference[len(base) :] if reference.startswith(base) else reference
        parts = local.split("/")
        if len(parts) != 2 or not svc.model.is_resource(parts[0]):
            continue
        version = await svc.store.current(parts[0], parts[1])
        if version is None or version.deleted or version.body is None:
            continue
        if ctx is not None and not await svc.visible(ctx, version):
            continue
        out[reference] = loads_trusted(version.body)
    return out


class ReferenceTargetHook:
    """Write hook: referenced stored resources must conform to the target profiles."""

    def __init__(self, svc: FhirService, validator: ProfileValidator) -> None:
        self.svc = svc
        self.validator = validator

    async def before(
        self, ctx: RequestContext, resource: dict, current: StoredVersion | None
    ) -> None:
        urls = self.validator.profiles_for(resource, str(resource.get("resourceType", "")))
        if not urls or not self.validator.has_target_profiles(urls):
            return
        resolved = await _resolve_references(self.svc, None, resource)
        if not resolved:
            return
        problems = self.validator.reference_problems(resource, urls, resolved.get)
        if problems:
            first = problems[0]
            raise FhirError(422, first.code, first.diagnostics, issues=problems)

    async def after(self, ctx: RequestContext, uow: Any, written: Any, previous: Any) -> None:
        return None


# -- stored StructureDefinitions --------------------------------------------------------------


class StoredDefinitions:
    def __init__(self, svc: FhirService, validator: ProfileValidator) -> None:
        self.svc = svc
        self.validator = validator

    async def load(self) -> None:
        after = None
        while True:
            versions, after = await self.svc.store.current_versions(
                ("StructureDefinition",), after, 500
            )
            for version in versions:
                self._add(version)
            if after is None:
                break

    def committed(self, versions: list[StoredVersion]) -> None:
        for version in versions:
            if version.type != "StructureDefinition":
                continue
            if version.deleted or version.body is None:
                self.validator.registry.remove_stored(version.id)
            else:
                self._add(version)

    def _add(self, version: StoredVersion) -> None:
        problem = self.validator.registry.add_stored(version.id, loads_trusted(version.body))
        if problem:
            log.info("StructureDefinition/%s is not used for validation: %s", version.id, problem)


# -- installation -------------------------------------------------------------------------------


def profile_validator(svc: FhirService) -> ProfileValidator:
    validator = getattr(svc, "profile_validator", None)
    if validator is None:
        raise FhirError(500, "exception", "profile validation is not installed")
    return validator


def install(app: Any) -> None:
    svc: FhirService = app.service
    settings = svc.settings
    validator = ProfileValidator(
        required=parse_required_profiles(getattr(settings, "required_profiles", "")),
        reject_unknown=bool(getattr(settings, "reject_unknown_profiles", False)),
        model=svc.model,
    )
    for resource_type, urls in validator.required.items():
        if not svc.model.is_resource(resource_type):
            raise ValueError(f"required_profiles: {resource_type!r} is not a resource type")
        for url in urls:
            profile = validator.compiled(url)
            if profile is None or profile.type != resource_type:
                raise ValueError(f"required_profiles: {url} is not a known {resource_type} profile")
    svc.profile_validator = validator  # type: ignore[attr-defined]
    svc.profile_validators.append(validator)
    svc.write_hooks.append(ReferenceTargetHook(svc, validator))
    stored = StoredDefinitions(svc, validator)
    svc.store.add_listener(stored.committed)
    start_hooks = getattr(svc, "start_hooks", None)
    if start_hooks is not None:
        start_hooks.append(stored.load)
    app.fhir.operations["validate"] = validate_operation
