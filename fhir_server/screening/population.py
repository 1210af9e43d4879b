"""SDC $populate: an in-progress QuestionnaireResponse pre-filled from what the server knows.

Expression-based population (SDC "Population"): the Questionnaire's launch contexts
(``sdc-questionnaire-launchContext``: ``patient``, ``user``, ``encounter``...) are filled from the
``context`` parameters (a Reference the server reads, or a resource given inline), else
``patient`` = the subject and ``user`` = the caller's Practitioner. Root and item ``variable``s
(FHIRPath, or ``application/x-fhir-query`` with ``{{FHIRPath}}`` embedded, run as a search), item
``initial`` values, ``initialExpression`` and ``itemPopulationContext`` (one repetition of a
group per resource) fill the answers.

Every read and search runs with the caller's context: the guard decides what population may see,
so a $populate cannot reveal anything the caller could not read. A failing expression or query
is an ``issues`` warning, not a failure (population is a convenience; the professional reviews
the answers).
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl, quote

from fhir_server import fhirpath
from fhir_server.errors import FhirError, Issue
from fhir_server.json_codec import dumps, loads_trusted
from fhir_server.screening.form import Expr, Form, Item, sub_value
from fhir_server.service import crud
from fhir_server.service import search as search_service
from fhir_server.service.context import RequestContext
from fhir_server.service.core import FhirService

EMBEDDED = re.compile(r"\{\{(.+?)\}\}")
ANSWER_KEY = {
    "boolean": "valueBoolean",
    "decimal": "valueDecimal",
    "integer": "valueInteger",
    "date": "valueDate",
    "dateTime": "valueDateTime",
    "time": "valueTime",
    "string": "valueString",
    "text": "valueString",
    "url": "valueUri",
    "choice": "valueCoding",
    "open-choice": "valueCoding",
    "quantity": "valueQuantity",
    "reference": "valueReference",
    "attachment": "valueAttachment",
}


async def read_reference(
    svc: FhirService, ctx: RequestContext, reference: str
) -> dict[str, Any] | None:
    base = svc.settings.public_url.rstrip("/") + "/"
    local = reference[len(base) :] if reference.startswith(base) else reference
    parts = local.split("/")
    if len(parts) != 2 or not svc.model.is_resource(parts[0]):
        return None
    try:
        result = await crud.read(svc, ctx, parts[0], parts[1])
    except FhirError as exc:
        if exc.status in (404, 410):
            return None
        raise
    return loads_trusted(result.raw) if result.raw is not None else result.resource


class Populator:
    def __init__(
        self,
        svc: FhirService,
        ctx: RequestContext,
        form: Form,
        subject: dict[str, Any],
        contexts: dict[str, list[dict[str, Any]]],
    ) -> None:
        self.svc = svc
        self.ctx = ctx
        self.form = form
        self.subject = subject
        self.contexts = contexts
        self.issues: list[Issue] = []
        self.env: dict[str, Any] = {}
        self.response: dict[str, Any] = {}

    def warn(self, message: str, location: str | None = None) -> None:
        self.issues.append(Issue("warning", "processing", message, location))

    async def launch_contexts(self) -> None:
        for ext in self.form.launch_contexts:
            name = sub_value(ext, "name")
            code = name.get("code") if isinstance(name, dict) else name
            if not isinstance(code, str):
                continue
            given = self.contexts.get(code)
            if given is None:
                given = await self._default_context(code)
            if given:
                self.env[code] = given[0] if len(given) == 1 else given
        for name, values in self.contexts.items():
            self.env.setdefault(name, values[0] if len(values) == 1 else values)

    async def _default_context(self, code: str) -> list[dict[str, Any]] | None:
        reference = None
        if code == "patient" and isinstance(self.subject.get("reference"), str):
            if self.subject["reference"].split("/")[-2:-1] == ["Patient"]:
                reference = self.subject["reference"]
        elif code == "user" and self.ctx.principal is not None:
            reference = getattr(self.ctx.principal, "practitioner", None)
        if reference is None:
            return None
        found = await read_reference(self.svc, self.ctx, reference)
        return [found] if found is not None else None

    async def variable(self, expr: Expr, context: Any) -> Any:
        if expr.name and expr.name in self.contexts and not expr.is_fhirpath:
            given = self.contexts[expr.name]
            return given[0] if len(given) == 1 else given
        if expr.is_fhirpath:
            try:
                return fhirpath.evaluate(expr.expression, context, self._env(context), strict=False)
            except fhirpath.FhirPathError as exc:
                self.warn(f"variable {expr.name!r}: {exc}", expr.location)
                return []
        return await self.query(expr, context)

    def _env(self, context: Any) -> dict[str, Any]:
        return {
            "resource": self.response,
            "questionnaire": self.form.resource,
            "context": context,
            **self.env,
        }

    async def query(self, expr: Expr, context: Any) -> Any:
        """An x-fhir-query: ``Type?param={{FHIRPath}}&...``, searched with the caller's rights."""
        failed: list[str] = []

        def substitute(match: re.Match[str]) -> str:
            try:
                values = fhirpath.evaluate(
                    match.group(1), context, self._env(context), strict=False
                )
            except fhirpath.FhirPathError as exc:
                failed.append(str(exc))
                return ""
            return ",".join(quote(str(v), safe="") for v in values)

        text = EMBEDDED.sub(substitute, expr.expression)
        if failed:
            self.warn(f"query {expr.name!r}: {failed[0]}", expr.location)
            return []
        type_, _, query = text.partition("?")
        if not self.svc.model.is_resource(type_):
            self.warn(f"query {expr.name!r}: {type_!r} is not a resource type", expr.location)
            return []
        params = parse_qsl(query, keep_blank_values=True)
        try:
            result = await search_service.search(
                self.svc, self.ctx, (type_,), params, self.ctx.url(type_)
            )
        except FhirError as exc:
            self.warn(f"query {expr.name!r}: {exc.issues[0].diagnostics}", expr.location)
            return []
        return loads_trusted(dumps(result.resource))

    async def run(self) -> dict[str, Any]:
        form = self.form
        self.response = {
            "resourceType": "QuestionnaireResponse",
            "questionnaire": form.canonical,
            "status": "in-progress",
            "subject": self.subject,
        }
        await self.launch_contexts()
        for expr in form.variables:
            self.env[expr.name or ""] = await self.variable(expr, self.response)
        user = self.env.get("user")
        if isinstance(user, dict) and user.get("resourceType") in (
            "Practitioner",
            "PractitionerRole",
        ):
            self.response["author"] = {"reference": f"{user['resourceType']}/{user.get('id')}"}
        encounter = self.env.get("encounter")
        if isinstance(encounter, dict) and encounter.get("resourceType") == "Encounter":
            self.response["encounter"] = {"reference": f"Encounter/{encounter.get('id')}"}
        items = await self.items(form.items, self.response)
        if items:
            self.response["item"] = items
        return self.response

    async def items(self, items: list[Item], context: Any) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for item in items:
            out.extend(await self.item(item, context))
        return out

    async def item(self, item: Item, context: Any) -> list[dict[str, Any]]:
        saved = dict(self.env)
        try:
            repetitions: list[Any] = [None]
            if item.population_context is not None:
                value = await self.variable(item.population_context, context)
                values = _resources_of(value)
                name = item.population_context.name
                if item.type == "group" and item.repeats:
                    repetitions = values or []
                elif values:
                    repetitions = [values[0]]
                if not repetitions:
                    return []
                if name is None:
                    repetitions = [None]
            out = []
            for repetition in repetitions:
                if repetition is not None and item.population_context is not None:
                    self.env[item.population_context.name or ""] = repetition
                for expr in item.variables:
                    self.env[expr.name or ""] = await self.variable(expr, context)
                qr_item: dict[str, Any] = {"linkId": item.link_id}
                if item.text:
                    qr_item["text"] = item.text
                answers = await self.answers(item, context)
                children = await self.items(item.children, context)
                if item.is_question:
                    if answers:
                        if children:
                            answers[0]["item"] = children
                        qr_item["answer"] = answers
                elif children:
                    qr_item["item"] = children
                if "answer" in qr_item or "item" in qr_item:
                    out.append(qr_item)
            return out
        finally:
            self.env = saved

    async def answers(self, item: Item, context: Any) -> list[dict[str, Any]]:
        if not item.is_question or item.calculated is not None:
            return []
        key = ANSWER_KEY.get(item.type)
        if item.initial_expression is not None and key is not None:
            try:
                values = fhirpath.evaluate(
                    item.initial_expression.expression, context, self._env(context), strict=False
                )
            except fhirpath.FhirPathError as exc:
                self.warn(
                    f"initialExpression of {item.link_id!r}: {exc}",
                    item.initial_expression.location,
                )
                values = []
            answers = []
            for value in values[: None if item.repeats else 1]:
                converted = _convert(item, key, value)
                if converted is not None:
                    answers.append({key: converted})
            if answers:
                return answers
        out = []
        for initial in item.initial:
            for k, v in initial.items():
                if k.startswith("value"):
                    out.append({k: v})
        for option in item.raw.get("answerOption", ()) or ():
            if isinstance(option, dict) and option.get("initialSelected") is True:
                for k, v in option.items():
                    if k.startswith("value"):
                        out.append({k: v})
        return out


def _resources_of(value: Any) -> list[Any]:
    if isinstance(value, dict) and value.get("resourceType") == "Bundle":
        return [
            e.get("resource")
            for e in value.get("entry", ())
            if isinstance(e, dict)
            and e.get("resource")
            and (e.get("search") or {}).get("mode", "match") == "match"
        ]
    if isinstance(value, list):
        out = []
        for v in value:
            out.extend(_resources_of(v))
        return out
    return [value] if value is not None else []


def _convert(item: Item, key: str, value: Any) -> Any:
    if key == "valueBoolean":
        return value if isinstance(value, bool) else None
    if key in ("valueInteger", "valueDecimal"):
        if isinstance(value, bool) or not isinstance(value, (int, float, Decimal)):
            return None
        number = Decimal(str(value))
        if key == "valueInteger":
            return int(number) if number == number.to_integral_value() else None
        return number
    if key == "valueCoding":
        if isinstance(value, dict) and "coding" in value:
            value = (value.get("coding") or [None])[0]
        if isinstance(value, dict) and "code" in value:
            for option in item.options:
                if (
                    option.key == "valueCoding"
                    and isinstance(option.value, dict)
                    and option.value.get("code") == value.get("code")
                    and (option.value.get("system") or None) == (value.get("system") or None)
                ):
                    return option.value
            return value if not item.options else None
        return None
    if key in ("valueString", "valueUri", "valueDate", "valueDateTime", "valueTime"):
        return (
            str(value)
            if isinstance(value, (str, int, float, Decimal)) and not isinstance(value, bool)
            else None
        )
    if key in ("valueQuantity", "valueReference", "valueAttachment"):
        return value if isinstance(value, dict) else None
    return None
