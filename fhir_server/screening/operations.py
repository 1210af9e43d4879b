"""``Questionnaire/$populate`` and ``QuestionnaireResponse/$extract`` (SDC), on the FHIR API.

Both go through the service layer: the operation itself is authorized by the guard, and every
resource they read (the Questionnaire, the subject, launch contexts, x-fhir-query searches, the
stored response) is read with the caller's context, so they see exactly what the caller may see.
Neither writes anything ($extract returns the transaction Bundle a client may post; the server
extracts on its own when a Questionnaire asks for extraction on completion).
"""

from __future__ import annotations

import copy
from typing import Any

from fhir_server.errors import FhirError, Issue, bad_request, not_found, operation_outcome
from fhir_server.json_codec import loads_trusted, parse
from fhir_server.screening import responses as R
from fhir_server.screening.extraction import extract
from fhir_server.screening.form import Form, compile_form
from fhir_server.screening.hook import ScreeningState, refuse
from fhir_server.screening.population import Populator, read_reference
from fhir_server.service import crud
from fhir_server.service.context import RequestContext
from fhir_server.service.core import Access, FhirService
from fhir_server.service.result import Result

BASE = "https://borninbelgiumpro.be/fhir/OperationDefinition/"
POPULATE_DEFINITION = BASE + "bib-questionnaire-populate"
EXTRACT_DEFINITION = BASE + "bib-questionnaireresponse-extract"


async def _parameters(svc: FhirService, request: Any) -> list[dict[str, Any]]:
    """The parameters of a call: the query string (name=value as valueString) and, for POST, a
    Parameters body (or a bare resource, returned as ``{"resource": ...}``)."""
    out: list[dict[str, Any]] = []
    for name, value in request.params:
        if not name.startswith("_"):
            out.append({"name": name, "valueString": value})
    if request.method == "POST":
        raw = await request.body(svc.settings.max_body_bytes)
        if raw.strip():
            body = parse(raw)
            if not isinstance(body, dict):
                raise bad_request("the body must be a Parameters resource", code="structure")
            if body.get("resourceType") == "Parameters":
                for index, parameter in enumerate(body.get("parameter", ()) or ()):
                    if not isinstance(parameter, dict) or not isinstance(
                        parameter.get("name"), str
                    ):
                        raise bad_request(
                            "every parameter needs a name",
                            expression=f"Parameters.parameter[{index}]",
                        )
                    out.append(parameter)
            else:
                out.append({"name": "", "resource": body})
    elif request.method not in ("GET", "HEAD"):
        raise FhirError(405, "not-supported", "this operation takes GET or POST")
    return out


def _value(parameter: dict[str, Any]) -> Any:
    for key, value in parameter.items():
        if key.startswith("value") or key == "resource":
            return value
    return None


def _one(parameters: list[dict[str, Any]], name: str) -> Any:
    found = [p for p in parameters if p.get("name") == name]
    if len(found) > 1:
        raise bad_request(f"the parameter {name} may be given once")
    return _value(found[0]) if found else None


def _reference_text(value: Any, name: str) -> str:
    if isinstance(value, dict) and isinstance(value.get("reference"), str):
        return value["reference"]
    if isinstance(value, str) and value:
        return value
    raise bad_request(f"{name} must be a Reference (e.g. Patient/123)", expression=name)


# -- $populate --------------------------------------------------------------------------------


async def _questionnaire(
    state: ScreeningState,
    svc: FhirService,
    ctx: RequestContext,
    target: dict[str, Any],
    parameters: list[dict[str, Any]],
) -> Form:
    if target.get("id"):
        result = await crud.read(svc, ctx, "Questionnaire", target["id"])
        return compile_form(loads_trusted(result.raw))
    given = _one(parameters, "questionnaire")
    if isinstance(given, dict) and given.get("resourceType") == "Questionnaire":
        form = compile_form(given)
        if form.issues:
            raise refuse(form.issues)
        return form
    canonical = None
    if isinstance(given, str):
        canonical = given
    elif isinstance(given, dict) and isinstance(given.get("reference"), str):
        canonical = given["reference"]
    if canonical is None:
        raise bad_request(
            "$populate needs the Questionnaire: call it on Questionnaire/[id]/$populate or give "
            "the questionnaire parameter (canonical URL, Reference or resource)",
            expression="questionnaire",
        )
    form = await state.forms.resolve(canonical)
    if form is None:
        raise not_found(f"the Questionnaire {canonical} is not known to this server")
    return form


async def populate(
    state: ScreeningState,
    svc: FhirService,
    ctx: RequestContext,
    request: Any,
    target: dict[str, Any],
) -> Result:
    await svc.authorize(
        ctx, Access("operation", "Questionnaire", target.get("id"), operation="populate")
    )
    parameters = await _parameters(svc, request)
    for parameter in parameters:
        if parameter.get("name") in ("identifier", "dataEndpoint", "data"):
            raise FhirError(
                400,
                "not-supported",
                f"$populate: the parameter {parameter['name']} is not supported by this server "
                "(give the questionnaire, the subject and context resources)",
            )
    form = await _questionnaire(state, svc, ctx, target, parameters)
    subject_value = _one(parameters, "subject")
    if subject_value is None:
        raise bad_request("$populate needs the subject (e.g. Patient/123)", expression="subject")
    subject_ref = _reference_text(subject_value, "subject")
    subject = await read_reference(svc, ctx, subject_ref)
    if subject is None:
        raise not_found(f"{subject_ref} is not known")
    contexts: dict[str, list[dict[str, Any]]] = {}
    for parameter in parameters:
        if parameter.get("name") != "context":
            continue
        name, contents = None, []
        for part in parameter.get("part", ()) or ():
            if not isinstance(part, dict):
                continue
            if part.get("name") == "name":
                name = _value(part)
            elif part.get("name") == "content":
                value = _value(part)
                if isinstance(value, dict) and "resourceType" in value:
                    contents.append(value)
                elif isinstance(value, dict) and isinstance(value.get("reference"), str):
                    found = await read_reference(svc, ctx, value["reference"])
                    if found is None:
                        raise not_found(f"the context {value['reference']} is not known")
                    contents.append(found)
        if not isinstance(name, str) or not contents:
            raise bad_request(
                "a context parameter needs a name and a content", expression="context"
            )
        contexts[name] = contents
    populator = Populator(
        svc, ctx, form, {"reference": f"{subject['resourceType']}/{subject['id']}"}, contexts
    )
    response = await populator.run()
    out: dict[str, Any] = {
        "resourceType": "Parameters",
        "parameter": [{"name": "response", "resource": response}],
    }
    if populator.issues:
        out["parameter"].append({"name": "issues", "resource": operation_outcome(populator.issues)})
    return Result(200, resource=out)


# -- $extract ---------------------------------------------------------------------------------


async def extract_operation(
    state: ScreeningState,
    svc: FhirService,
    ctx: RequestContext,
    request: Any,
    target: dict[str, Any],
) -> Result:
    await svc.authorize(
        ctx, Access("operation", "QuestionnaireResponse", target.get("id"), operation="extract")
    )
    parameters = await _parameters(svc, request)
    if target.get("id"):
        result = await crud.read(svc, ctx, "QuestionnaireResponse", target["id"])
        response = loads_trusted(result.raw)
        source: dict[str, Any] | None = {"reference": f"QuestionnaireResponse/{target['id']}"}
    else:
        response = _one(parameters, "questionnaire-response")
        if response is None:
            response = _one(parameters, "")
        if (
            not isinstance(response, dict)
            or response.get("resourceType") != "QuestionnaireResponse"
        ):
            raise bad_request(
                "$extract needs the QuestionnaireResponse: call it on "
                "QuestionnaireResponse/[id]/$extract or POST it (questionnaire-response)",
                expression="questionnaire-response",
            )
        svc.validate(response, "QuestionnaireResponse")
        source = (
            {"reference": f"QuestionnaireResponse/{response['id']}"}
            if isinstance(response.get("id"), str)
            else None
        )
    given = _one(parameters, "questionnaire")
    if isinstance(given, dict) and given.get("resourceType") == "Questionnaire":
        form = compile_form(given)
        if form.issues:
            raise refuse(form.issues)
    else:
        canonical = response.get("questionnaire")
        if not isinstance(canonical, str):
            raise bad_request(
                "the QuestionnaireResponse names no questionnaire; give it as the questionnaire "
                "parameter",
                expression="QuestionnaireResponse.questionnaire",
            )
        form = await state.forms.resolve(canonical)
        if form is None:
            raise FhirError(
                422, "not-found", f"the Questionnaire {canonical} is not known to this server"
            )
    response = copy.deepcopy(response)
    issues, enablement, evaluator = R.validate(form, response, state.value_set_codes)
    if any(i.severity in ("error", "fatal") for i in issues):
        raise refuse(issues)
    notes: list[Issue] = [i for i in issues if i.severity not in ("error", "fatal")]
    if response.get("status") in R.COMPLETED:
        scoring = R.score(form, response, enablement, evaluator)
        if scoring:
            raise refuse(scoring)
    else:
        notes.append(
            Issue(
                "warning",
                "incomplete",
                f"the response is {response.get('status')}, not completed: what it yields may "
                "be partial, and calculated values were not computed",
            )
        )
    outcome = extract(
        form,
        response,
        svc.model,
        profile_type=lambda url: _profile_type(svc, url),
        source=source,
    )
    errors = [i for i in outcome.issues if i.severity in ("error", "fatal")]
    if errors:
        raise refuse(errors)
    notes += outcome.issues
    if not outcome.entries:
        notes.append(
            Issue("information", "informational", "the Questionnaire marks nothing to extract")
        )
    bundle = outcome.bundle()
    if not notes:
        return Result(200, resource=bundle)
    return Result(
        200,
        resource={
            "resourceType": "Parameters",
            "parameter": [
                {"name": "return", "resource": bundle},
                {"name": "issues", "resource": operation_outcome(notes)},
            ],
        },
    )


def _profile_type(svc: FhirService, url: str) -> str | None:
    validator = getattr(svc, "profile_validator", None)
    compiled = validator.compiled(url) if validator is not None else None
    return getattr(compiled, "type", None) if compiled is not None else None


def handlers(state: ScreeningState) -> dict[str, Any]:
    async def populate_handler(
        svc: FhirService, ctx: RequestContext, request: Any, target: dict[str, Any]
    ) -> Result:
        if target.get("type") != "Questionnaire":
            raise FhirError(
                404,
                "not-supported",
                "$populate is available as Questionnaire/$populate and "
                "Questionnaire/[id]/$populate",
            )
        return await populate(state, svc, ctx, request, target)

    async def extract_handler(
        svc: FhirService, ctx: RequestContext, request: Any, target: dict[str, Any]
    ) -> Result:
        if target.get("type") != "QuestionnaireResponse":
            raise FhirError(
                404,
                "not-supported",
                "$extract is available as QuestionnaireResponse/$extract and "
                "QuestionnaireResponse/[id]/$extract",
            )
        return await extract_operation(state, svc, ctx, request, target)

    return {"populate": populate_handler, "extract": extract_handler}
