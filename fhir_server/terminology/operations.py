"""The terminology operations on the FHIR API (plug-in: ``install(app)``).

``ValueSet/$expand``, ``ValueSet/$validate-code``, ``CodeSystem/$validate-code``,
``CodeSystem/$lookup``, ``CodeSystem/$subsumes`` and ``ConceptMap/$translate``, each at type level
(the resource named by ``url`` or given inline) and at instance level (a stored resource), with
GET (query parameters) or POST (a Parameters resource; query parameters are added to it).
Displays follow ``displayLanguage`` or else ``Accept-Language``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fhir_server.errors import FhirError, bad_request, gone, not_found
from fhir_server.json_codec import loads_trusted, parse
from fhir_server.service.context import RequestContext
from fhir_server.service.core import Access, FhirService
from fhir_server.service.result import Result
from fhir_server.terminology import engine
from fhir_server.terminology.catalog import CodeSystemInfo
from fhir_server.terminology.engine import Coding, ExpandOptions, split_url
from fhir_server.terminology.languages import requested_languages
from fhir_server.terminology.manager import Terminology, attach

# name -> kind of value; "resource" parameters are only possible in POST bodies
EXPAND_PARAMS = {
    "url": "uri",
    "valueSet": "resource",
    "valueSetVersion": "string",
    "filter": "string",
    "offset": "integer",
    "count": "integer",
    "includeDesignations": "boolean",
    "designation": "string",
    "includeDefinition": "boolean",
    "activeOnly": "boolean",
    "excludeNested": "boolean",
    "excludeNotForUI": "boolean",
    "excludePostCoordinated": "boolean",
    "displayLanguage": "code",
    "exclude-system": "canonical",
    "system-version": "canonical",
    "check-system-version": "canonical",
    "force-system-version": "canonical",
    "context": "uri",
    "contextDirection": "code",
    "date": "dateTime",
    "limitedExpansion": "boolean",
}
VALIDATE_VS_PARAMS = {
    "url": "uri",
    "context": "uri",
    "valueSet": "resource",
    "valueSetVersion": "string",
    "code": "code",
    "system": "uri",
    "systemVersion": "string",
    "display": "string",
    "coding": "Coding",
    "codeableConcept": "CodeableConcept",
    "date": "dateTime",
    "abstract": "boolean",
    "displayLanguage": "code",
}
VALIDATE_CS_PARAMS = {
    "url": "uri",
    "codeSystem": "resource",
    "code": "code",
    "version": "string",
    "display": "string",
    "coding": "Coding",
    "codeableConcept": "CodeableConcept",
    "date": "dateTime",
    "abstract": "boolean",
    "displayLanguage": "code",
}
LOOKUP_PARAMS = {
    "code": "code",
    "system": "uri",
    "version": "string",
    "coding": "Coding",
    "date": "dateTime",
    "displayLanguage": "code",
    "property": "code",
}
SUBSUMES_PARAMS = {
    "codeA": "code",
    "codeB": "code",
    "system": "uri",
    "version": "string",
    "codingA": "Coding",
    "codingB": "Coding",
}
TRANSLATE_PARAMS = {
    "url": "uri",
    "conceptMap": "resource",
    "conceptMapVersion": "string",
    "code": "code",
    "system": "uri",
    "version": "string",
    "source": "uri",
    "coding": "Coding",
    "codeableConcept": "CodeableConcept",
    "target": "uri",
    "targetsystem": "uri",
    "dependency": "part",
    "reverse": "boolean",
    "displayLanguage": "code",
}
# accepted by R4 but with no effect on what this server can answer: refused, not ignored
UNSUPPORTED = {
    "context": "value set contexts are not supported",
    "contextDirection": "value set contexts are not supported",
    "date": "the server holds one version of each resource; 'date' is not supported",
    "dependency": "ConceptMap dependencies (dependsOn) are not supported",
}
_VALUE_KEYS = {
    "uri": ("valueUri", "valueCanonical", "valueUrl", "valueString"),
    "canonical": ("valueCanonical", "valueUri", "valueString"),
    "string": ("valueString",),
    "code": ("valueCode", "valueString"),
    "integer": ("valueInteger", "valueUnsignedInt", "valuePositiveInt"),
    "boolean": ("valueBoolean",),
    "dateTime": ("valueDateTime", "valueDate", "valueInstant"),
    "Coding": ("valueCoding",),
    "CodeableConcept": ("valueCodeableConcept",),
}


_PYTHON_TYPES: dict[str, type | tuple[type, ...]] = {
    "integer": int,
    "boolean": bool,
    "Coding": dict,
    "CodeableConcept": dict,
}


class OperationParams:
    """The parameters of one call, from the query string and (POST) a Parameters body."""

    def __init__(self, operation: str, spec: dict[str, str]) -> None:
        self.operation = operation
        self.spec = spec
        self.values: dict[str, list[Any]] = {}

    @classmethod
    async def read(
        cls, svc: FhirService, request: Any, operation: str, spec: dict[str, str]
    ) -> OperationParams:
        params = cls(operation, spec)
        for name, value in request.params:
            if name.startswith("_"):
                continue  # _format, _pretty...
            params._add_text(name, value)
        if request.method == "POST":
            raw = await request.body(svc.settings.max_body_bytes)
            if raw.strip():
                params._add_body(parse(raw))
        elif request.method not in ("GET", "HEAD"):
            raise FhirError(
                405,
                "not-supported",
                f"${operation} takes GET or POST",
                headers={"Allow": "GET, POST"},
            )
        for name in params.values:
            if name in UNSUPPORTED:
                raise FhirError(400, "not-supported", f"${operation}: {UNSUPPORTED[name]}")
        return params

    def _kind(self, name: str) -> str:
        kind = self.spec.get(name)
        if kind is None:
            raise bad_request(
                f"unknown parameter {name!r} for ${self.operation}; known: "
                + ", ".join(sorted(self.spec))
            )
        return kind

    def _add_text(self, name: str, value: str) -> None:
        kind = self._kind(name)
        if kind == "resource":
            raise bad_request(f"{name} is a resource: send it in a POST Parameters body")
        if kind == "Coding":  # GET form: system|code
            system, bar, code = value.rpartition("|")
            if not bar or not code:
                raise bad_request(f"{name} in a URL is written system|code, got {value!r}")
            self.values.setdefault(name, []).append({"system": system or None, "code": code})
            return
        if kind in ("CodeableConcept", "part"):
            raise bad_request(f"{name} can only be given in a POST Parameters body")
        self.values.setdefault(name, []).append(_convert(name, kind, value))

    def _add_body(self, body: Any) -> None:
        if not isinstance(body, dict) or body.get("resourceType") != "Parameters":
            raise bad_request(
                f"the body of POST ${self.operation} must be a Parameters resource",
                code="structure",
            )
        for index, parameter in enumerate(body.get("parameter", ())):
            name = parameter.get("name") if isinstance(parameter, dict) else None
            if not isinstance(name, str):
                raise bad_request(
                    "every parameter needs a name", expression=f"Parameters.parameter[{index}]"
                )
            kind = self._kind(name)
            if kind == "resource":
                value = parameter.get("resource")
                if not isinstance(value, dict):
                    raise bad_request(f"parameter {name} needs a resource")
            elif kind == "part":
                value = parameter.get("part")
            else:
                value = None
                for key in _VALUE_KEYS[kind]:
                    if key in parameter:
                        value = parameter[key]
                        break
                if value is None:
                    raise bad_request(
                        f"parameter {name} needs a {_VALUE_KEYS[kind][0]}",
                        expression=f"Parameters.parameter[{index}]",
                    )
                if isinstance(value, str) and kind in ("integer", "boolean"):
                    value = _convert(name, kind, value)
                expected = _PYTHON_TYPES.get(kind, str)
                if not isinstance(value, expected) or (
                    kind == "integer" and isinstance(value, bool)
                ):
                    raise bad_request(
                        f"parameter {name} has a value of the wrong type",
                        expression=f"Parameters.parameter[{index}]",
                    )
            self.values.setdefault(name, []).append(value)

    def get(self, name: str) -> Any:
        values = self.values.get(name)
        if not values:
            return None
        if len(values) > 1:
            raise bad_request(f"${self.operation} takes one {name}, got {len(values)}")
        return values[0]

    def all(self, name: str) -> list[Any]:
        return list(self.values.get(name, ()))

    def flag(self, name: str, default: bool = False) -> bool:
        value = self.get(name)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise bad_request(f"{name} must be true or false")
        return value

    def integer(self, name: str) -> int | None:
        value = self.get(name)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise bad_request(f"{name} must be a non-negative integer")
        return value

    def echo(self, names: tuple[str, ...]) -> list[dict[str, Any]]:
        """expansion.parameter: the parameters that shaped the expansion."""
        out = []
        for name in names:
            kind = self.spec[name]
            for value in self.values.get(name, ()):
                key = {
                    "integer": "valueInteger",
                    "boolean": "valueBoolean",
                    "code": "valueCode",
                    "uri": "valueUri",
                    "canonical": "valueUri",
                }.get(kind, "valueString")
                out.append({"name": name, key: value})
        return out


def _convert(name: str, kind: str, value: str) -> Any:
    if kind == "boolean":
        if value not in ("true", "false"):
            raise bad_request(f"{name} must be true or false, got {value!r}")
        return value == "true"
    if kind == "integer":
        if not value.isdigit():
            raise bad_request(f"{name} must be a non-negative integer, got {value!r}")
        return int(value)
    return value


# -- shared helpers -------------------------------------------------------------------------------


def _languages(request: Any, params: OperationParams) -> list[str]:
    return requested_languages(params.get("displayLanguage"), request.header("accept-language"))


async def _authorize(
    svc: FhirService, ctx: RequestContext, target: dict[str, Any], operation: str
) -> None:
    await svc.authorize(
        ctx, Access("operation", target.get("type"), target.get("id"), operation=operation)
    )


async def _stored(svc: FhirService, type_: str, id_: str) -> dict[str, Any]:
    current = await svc.store.current(type_, id_)
    if current is None:
        raise not_found(f"{type_}/{id_} is not known")
    if current.deleted or current.body is None:
        raise gone(f"{type_}/{id_} has been deleted")
    return loads_trusted(current.body)


def _require_type(target: dict[str, Any], operation: str, *types: str) -> str:
    type_ = target.get("type")
    if type_ not in types:
        where = " or ".join(f"{t}/$" + operation for t in types)
        raise FhirError(404, "not-supported", f"${operation} is available as {where}")
    return type_


def _check_version(resource: dict[str, Any], wanted: str | None, what: str) -> None:
    held = resource.get("version")
    if wanted and held and held != wanted:
        raise not_found(f"version {wanted} of {what} is not available (this server holds {held})")


def _coding(value: Any, name: str) -> Coding:
    if not isinstance(value, dict) or not isinstance(value.get("code"), str):
        raise bad_request(f"{name} needs a code")
    return Coding(value.get("system"), value["code"], value.get("version"), value.get("display"))


def _codings(params: OperationParams, system_param: str, version_param: str) -> list[Coding]:
    """The code(s) to check: code (+system/version/display), coding, or codeableConcept."""
    given = [n for n in ("code", "coding", "codeableConcept") if params.get(n) is not None]
    if len(given) != 1:
        raise bad_request("give exactly one of code, coding or codeableConcept")
    if given[0] == "code":
        return [
            Coding(
                params.get(system_param),
                params.get("code"),
                params.get(version_param),
                params.get("display"),
            )
        ]
    if given[0] == "coding":
        coding = _coding(params.get("coding"), "coding")
        if params.get("display") is not None and coding.display is None:
            coding.display = params.get("display")
        return [coding]
    concept = params.get("codeableConcept")
    listed = concept.get("coding") if isinstance(concept, dict) else None
    codings = [_coding(c, "codeableConcept.coding") for c in listed or ()]
    if not codings:
        raise bad_request("codeableConcept has no coding")
    return codings


def _terminology(svc: FhirService) -> Terminology:
    return attach(svc)


# -- $expand --------------------------------------------------------------------------------------


async def expand(
    svc: FhirService, ctx: RequestContext, request: Any, target: dict[str, Any]
) -> Result:
    _require_type(target, "expand", "ValueSet")
    await _authorize(svc, ctx, target, "expand")
    params = await OperationParams.read(svc, request, "expand", EXPAND_PARAMS)
    terminology = _terminology(svc)
    value_set = await _value_set(svc, terminology, target, params)
    _check_version(value_set, params.get("valueSetVersion"), value_set.get("url", "the value set"))
    catalog = terminology.catalog
    for name in ("check-system-version", "force-system-version", "system-version"):
        for canonical in params.all(name):
            system, version = split_url(canonical)
            held = catalog.code_systems.get(system)
            if version and held is not None and held.resource.get("version") not in (None, version):
                raise not_found(
                    f"version {version} of {system} is not available "
                    f"(this server holds {held.resource.get('version')})"
                )
    options = ExpandOptions(
        filter=params.get("filter"),
        offset=params.integer("offset") or 0,
        count=params.integer("count"),
        languages=_languages(request, params),
        include_designations=params.flag("includeDesignations"),
        designation_languages=params.all("designation"),
        include_definition=params.flag("includeDefinition"),
        active_only=params.flag("activeOnly"),
        exclude_not_for_ui=params.flag("excludeNotForUI"),
        exclude_systems=params.all("exclude-system"),
        echo=params.echo(
            (
                "filter",
                "offset",
                "count",
                "displayLanguage",
                "includeDesignations",
                "designation",
                "activeOnly",
                "excludeNotForUI",
                "exclude-system",
            )
        ),
    )
    return Result(200, resource=engine.expand(catalog, value_set, options))


async def _value_set(
    svc: FhirService, terminology: Terminology, target: dict[str, Any], params: OperationParams
) -> dict[str, Any]:
    if "id" in target:
        if params.get("url") is not None or params.get("valueSet") is not None:
            raise bad_request("an instance-level call names its value set; drop url / valueSet")
        return await _stored(svc, "ValueSet", target["id"])
    given = [n for n in ("url", "valueSet") if params.get(n) is not None]
    if len(given) != 1:
        raise bad_request("give the value set: exactly one of url or valueSet")
    if given[0] == "valueSet":
        value_set = params.get("valueSet")
        if value_set.get("resourceType") != "ValueSet":
            raise bad_request("valueSet must be a ValueSet resource")
        return value_set
    url, version = split_url(params.get("url"))
    value_set = terminology.catalog.value_sets.get(url)
    if value_set is None:
        raise not_found(f"the value set {url} is not known to this server")
    _check_version(value_set, version, url)
    return value_set


# -- $validate-code -------------------------------------------------------------------------------


async def validate_code(
    svc: FhirService, ctx: RequestContext, request: Any, target: dict[str, Any]
) -> Result:
    type_ = _require_type(target, "validate-code", "ValueSet", "CodeSystem")
    await _authorize(svc, ctx, target, "validate-code")
    terminology = _terminology(svc)
    catalog = terminology.catalog
    if type_ == "ValueSet":
        params = await OperationParams.read(svc, request, "validate-code", VALIDATE_VS_PARAMS)
        value_set = await _value_set(svc, terminology, target, params)
        _check_version(value_set, params.get("valueSetVersion"), value_set.get("url", "value set"))
        codings = _codings(params, "system", "systemVersion")
        answer = engine.validate_in_value_set(
            catalog, value_set, codings, params.flag("abstract"), _languages(request, params)
        )
        return Result(200, resource=answer)
    params = await OperationParams.read(svc, request, "validate-code", VALIDATE_CS_PARAMS)
    codings = _codings(params, "url", "version")
    info, system = await _code_system_for(svc, terminology, target, params, codings)
    answer = engine.validate_in_code_system(
        catalog, info, system, codings, params.flag("abstract"), _languages(request, params)
    )
    return Result(200, resource=answer)


async def _code_system_for(
    svc: FhirService,
    terminology: Terminology,
    target: dict[str, Any],
    params: OperationParams,
    codings: list[Coding],
) -> tuple[CodeSystemInfo | None, str]:
    """The code system of a CodeSystem/$validate-code call (None: not held here)."""
    catalog = terminology.catalog
    if "id" in target:
        resource = await _stored(svc, "CodeSystem", target["id"])
        return _info(terminology, resource), resource.get("url", "")
    if params.get("codeSystem") is not None:
        resource = params.get("codeSystem")
        if resource.get("resourceType") != "CodeSystem":
            raise bad_request("codeSystem must be a CodeSystem resource")
        return _info(terminology, resource), resource.get("url", "")
    system = params.get("url") or next((c.system for c in codings if c.system), None)
    if not system:
        raise bad_request("give the code system: url, codeSystem, or coding.system")
    system, version = split_url(system)
    if version:
        for coding in codings:
            coding.version = coding.version or version
    return catalog.code_systems.get(system), system


def _info(terminology: Terminology, resource: dict[str, Any]) -> CodeSystemInfo:
    """A CodeSystem resource as the catalog sees it (with its supplements merged)."""
    catalog = terminology.catalog
    url = resource.get("url")
    if resource.get("content") == "supplement":
        raise bad_request("a CodeSystem supplement has no codes of its own")
    held = catalog.code_systems.get(url) if url else None
    if held is not None and held.resource == resource:
        return held
    scratch = catalog.copy()
    scratch.add({**resource, "url": url or "urn:bib:inline-code-system"})
    return scratch.code_systems[url or "urn:bib:inline-code-system"]


# -- $lookup / $subsumes --------------------------------------------------------------------------


async def _code_system_target(
    svc: FhirService,
    terminology: Terminology,
    target: dict[str, Any],
    system: str | None,
    operation: str,
) -> CodeSystemInfo:
    if "id" in target:
        resource = await _stored(svc, "CodeSystem", target["id"])
        if system and split_url(system)[0] != resource.get("url"):
            raise bad_request(f"system {system} is not the url of CodeSystem/{target['id']}")
        return _info(terminology, resource)
    if not system:
        raise bad_request(f"${operation} needs the system of the code")
    url = split_url(system)[0]
    info = engine.held(terminology.catalog.code_systems.get(url))
    if info is None:
        raise FhirError(
            404,
            "not-found",
            f"the code system {url} is not available on this server (large external code "
            "systems such as SNOMED CT and LOINC are not held here)",
        )
    return info


async def lookup(
    svc: FhirService, ctx: RequestContext, request: Any, target: dict[str, Any]
) -> Result:
    _require_type(target, "lookup", "CodeSystem")
    await _authorize(svc, ctx, target, "lookup")
    params = await OperationParams.read(svc, request, "lookup", LOOKUP_PARAMS)
    if params.get("coding") is not None:
        if params.get("code") is not None:
            raise bad_request("give either code (with system) or coding, not both")
        coding = _coding(params.get("coding"), "coding")
    elif params.get("code") is not None:
        coding = Coding(params.get("system"), params.get("code"), params.get("version"))
    else:
        raise bad_request("$lookup needs a code (with system) or a coding")
    terminology = _terminology(svc)
    info = await _code_system_target(svc, terminology, target, coding.system, "lookup")
    if coding.system and "|" in coding.system:
        coding.system, coding.version = split_url(coding.system)
    answer = engine.lookup(info, coding, _languages(request, params), params.all("property"))
    return Result(200, resource=answer)


async def subsumes(
    svc: FhirService, ctx: RequestContext, request: Any, target: dict[str, Any]
) -> Result:
    _require_type(target, "subsumes", "CodeSystem")
    await _authorize(svc, ctx, target, "subsumes")
    params = await OperationParams.read(svc, request, "subsumes", SUBSUMES_PARAMS)
    codes: list[str] = []
    systems = [params.get("system")] if params.get("system") else []
    for code_name, coding_name in (("codeA", "codingA"), ("codeB", "codingB")):
        code, coding = params.get(code_name), params.get(coding_name)
        if (code is None) == (coding is None):
            raise bad_request(f"give exactly one of {code_name} or {coding_name}")
        if coding is not None:
            parsed = _coding(coding, coding_name)
            code = parsed.code
            if parsed.system:
                systems.append(parsed.system)
        codes.append(code)
    distinct = {split_url(s)[0] for s in systems}
    if len(distinct) > 1:
        raise bad_request("codeA and codeB must be from the same code system")
    terminology = _terminology(svc)
    info = await _code_system_target(
        svc, terminology, target, next(iter(distinct), None), "subsumes"
    )
    _check_version(info.resource, params.get("version"), info.url)
    return Result(200, resource=engine.subsumes(info, codes[0], codes[1]))


# -- $translate -----------------------------------------------------------------------------------


async def translate(
    svc: FhirService, ctx: RequestContext, request: Any, target: dict[str, Any]
) -> Result:
    _require_type(target, "translate", "ConceptMap")
    await _authorize(svc, ctx, target, "translate")
    params = await OperationParams.read(svc, request, "translate", TRANSLATE_PARAMS)
    terminology = _terminology(svc)
    catalog = terminology.catalog
    if "id" in target:
        maps = [await _stored(svc, "ConceptMap", target["id"])]
    elif params.get("conceptMap") is not None:
        concept_map = params.get("conceptMap")
        if concept_map.get("resourceType") != "ConceptMap":
            raise bad_request("conceptMap must be a ConceptMap resource")
        maps = [concept_map]
    elif params.get("url") is not None:
        url, version = split_url(params.get("url"))
        concept_map = catalog.concept_maps.get(url)
        if concept_map is None:
            raise not_found(f"the concept map {url} is not known to this server")
        _check_version(concept_map, version, url)
        maps = [concept_map]
    else:
        maps = engine.candidate_maps(catalog, params.get("source"), params.get("target"))
    if len(maps) == 1:
        _check_version(maps[0], params.get("conceptMapVersion"), "the concept map")
    codings = _codings(params, "system", "version")
    languages = _languages(request, params)
    answer = engine.translate(
        catalog, maps, codings, params.get("targetsystem"), params.flag("reverse"), languages
    )
    return Result(200, resource=answer)


Handler = Callable[[FhirService, RequestContext, Any, dict[str, Any]], Awaitable[Result]]
OPERATIONS: dict[str, Handler] = {
    "expand": expand,
    "validate-code": validate_code,
    "lookup": lookup,
    "subsumes": subsumes,
    "translate": translate,
}


def install(app: Any) -> None:
    terminology = attach(app.service)
    app.fhir.operations.update(OPERATIONS)
    app.service.start_hooks.append(terminology.start)
