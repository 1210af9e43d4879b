"""SDC extraction: a QuestionnaireResponse -> the resources its Questionnaire says it yields.

Two of SDC's mechanisms (SDC STU4 "Form data extraction"):

* **observation-based**: items (or groups) with ``code`` and ``observationExtract`` (inherited
  from the nearest ancestor or the root). A question gives one Observation per answer; a coded
  group gives an Observation without a value. A child whose ``observationExtract`` is the code
  ``component`` becomes a component of its parent's Observation, ``member`` a separate one the
  parent lists in ``hasMember``, ``derived`` a separate one ``derivedFrom`` the parent. Fields:
  status final, category (``observation-extract-category``), code (the item's codes), subject,
  encounter, effective and issued (``authored``), performer (``author``), basedOn, value from the
  answer (decimals as Quantity, with ``questionnaire-unit``), derivedFrom the response.
* **definition-based**: ``definitionExtract`` (or the deprecated ``itemExtractionContext``) on
  the root or an item starts a resource; items whose ``definition`` is
  ``<profile>#<element path>`` put their answers there, ``definitionExtractValue`` puts fixed
  values or FHIRPath results (with ``%resource``, ``%questionnaire``, ``%context``,
  ``extractAllocateId`` variables).

``extract`` returns ``(resource, fullUrl, request)`` entries; the $extract operation wraps them
in a transaction Bundle, the write hook writes them in the response's unit of work.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from fhir_server import fhirpath
from fhir_server.errors import Issue
from fhir_server.model.structure import Model
from fhir_server.screening import constants as C
from fhir_server.screening.form import Form, Item, sub_value
from fhir_server.screening.responses import Node, answer_value, response_nodes

CORE_SD = "http://hl7.org/fhir/StructureDefinition/"
PERFORMER_TYPES = ("Practitioner", "PractitionerRole", "Organization", "CareTeam", "Patient",
                   "RelatedPerson")  # fmt: skip
ANSWER_TYPES = {
    "valueBoolean": "boolean",
    "valueDecimal": "decimal",
    "valueInteger": "integer",
    "valueDate": "date",
    "valueDateTime": "dateTime",
    "valueTime": "time",
    "valueString": "string",
    "valueUri": "uri",
    "valueCoding": "Coding",
    "valueQuantity": "Quantity",
    "valueReference": "Reference",
    "valueAttachment": "Attachment",
}


@dataclass(slots=True)
class Extracted:
    resource: dict[str, Any]
    full_url: str
    request: dict[str, Any]


@dataclass(slots=True)
class Outcome:
    entries: list[Extracted] = field(default_factory=list)
    issues: list[Issue] = field(default_factory=list)

    def bundle(self) -> dict[str, Any]:
        return {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [
                {"fullUrl": e.full_url, "resource": e.resource, "request": e.request}
                for e in self.entries
            ],
        }


def new_urn() -> str:
    return f"urn:uuid:{uuid.uuid4()}"


def _reference_type(reference: Any) -> str | None:
    if isinstance(reference, dict) and isinstance(reference.get("reference"), str):
        parts = reference["reference"].split("/")
        if len(parts) >= 2:
            return parts[-2]
    return None


def _strip_weight(coding: dict[str, Any]) -> dict[str, Any]:
    out = dict(coding)
    exts = [
        e
        for e in out.get("extension", ()) or ()
        if not (isinstance(e, dict) and e.get("url") in (C.ITEM_WEIGHT, C.ORDINAL_VALUE))
    ]
    if exts:
        out["extension"] = exts
    else:
        out.pop("extension", None)
    return out


def _is_instant(value: Any) -> bool:
    return (
        isinstance(value, str)
        and len(value) > 19
        and "T" in value
        and (value.endswith("Z") or value[-6] in "+-")
    )


class _ObservationExtractor:
    def __init__(self, form: Form, response: dict[str, Any], source: dict[str, Any] | None) -> None:
        self.form = form
        self.response = response
        self.source = source
        self.outcome = Outcome()
        self.by_node: dict[int, list[Extracted]] = {}

    def flag(self, item: Item) -> bool | str | None:
        for node in (item, *item.ancestors()):
            if node.observation_extract is not None:
                return node.observation_extract
        return self.form.observation_extract

    def categories(self, item: Item) -> list[dict[str, Any]]:
        for node in (item, *item.ancestors()):
            if node.observation_categories:
                return node.observation_categories
        return self.form.observation_categories

    def codes(self, item: Item) -> list[dict[str, Any]]:
        tagged = [
            c
            for c in item.codes
            if any(
                isinstance(e, dict)
                and e.get("url") == C.OBSERVATION_EXTRACT
                and e.get("valueBoolean") is True
                for e in c.get("extension", ()) or ()
            )
        ]
        chosen = tagged or item.codes
        return [
            {k: v for k, v in c.items() if k in ("system", "version", "code", "display")}
            for c in chosen
            if c.get("code")
        ]

    def base(self, item: Item) -> dict[str, Any]:
        response = self.response
        observation: dict[str, Any] = {"resourceType": "Observation", "status": "final"}
        based_on = [
            r for r in response.get("basedOn", ()) or ()
            if _reference_type(r) in ("CarePlan", "ServiceRequest")
        ]  # fmt: skip
        if based_on:
            observation["basedOn"] = based_on
        part_of = [r for r in response.get("partOf", ()) or () if _reference_type(r) == "Procedure"]
        if part_of:
            observation["partOf"] = part_of
        categories = self.categories(item)
        if categories:
            observation["category"] = categories
        code: dict[str, Any] = {"coding": self.codes(item)}
        if item.text:
            code["text"] = item.text
        observation["code"] = code
        if isinstance(response.get("subject"), dict):
            observation["subject"] = response["subject"]
        if _reference_type(response.get("encounter")) == "Encounter":
            observation["encounter"] = response["encounter"]
        authored = response.get("authored")
        if isinstance(authored, str):
            observation["effectiveDateTime"] = authored
            if _is_instant(authored):
                observation["issued"] = authored
        if _reference_type(response.get("author")) in PERFORMER_TYPES:
            observation["performer"] = [response["author"]]
        if self.source is not None:
            observation["derivedFrom"] = [self.source]
        return observation

    def value(self, item: Item, answer: dict[str, Any]) -> tuple[str, Any] | None:
        found = answer_value(answer)
        if found is None:
            return None
        key, value = found
        if key == "valueCoding" and isinstance(value, dict):
            return "valueCodeableConcept", {"coding": [_strip_weight(value)]}
        if key in ("valueDecimal", "valueInteger") and (item.unit or key == "valueDecimal"):
            quantity: dict[str, Any] = {"value": value}
            if item.unit:
                quantity.update({k: item.unit[k] for k in ("system", "code") if k in item.unit})
                quantity["unit"] = item.unit.get("display") or item.unit.get("code")
            return "valueQuantity", quantity
        if key == "valueUri":
            return "valueString", value
        if key == "valueDate":
            return "valueDateTime", value
        if key in ("valueAttachment", "valueReference"):
            return None
        return key, value

    def run(self) -> Outcome:
        for node in response_nodes(self.form, self.response):
            self.node(node)
        return self.outcome

    def _parent_observations(self, node: Node) -> list[Extracted]:
        parent = node.parent
        while parent is not None:
            found = self.by_node.get(id(parent.qr))
            if found:
                return found
            parent = parent.parent
        return []

    def node(self, node: Node) -> None:
        item = node.item
        flag = self.flag(item)
        if not flag or not item.codes or not self.codes(item) or item.type == "display":
            return
        relationship = flag if isinstance(flag, str) else None
        parents = self._parent_observations(node) if relationship else []
        if item.type == "group":
            made = self._add(self.base(item), item)
            self.by_node[id(node.qr)] = [made]
            self._relate(made, parents, relationship)
            return
        answers = [a for a in node.qr.get("answer", ()) or () if isinstance(a, dict)]
        made_here: list[Extracted] = []
        for answer in answers:
            value = self.value(item, answer)
            if value is None:
                continue
            if relationship == "component" and parents:
                component = {"code": {"coding": self.codes(item)}, value[0]: value[1]}
                if item.text:
                    component["code"]["text"] = item.text
                parents[0].resource.setdefault("component", []).append(component)
                continue
            observation = self.base(item)
            observation[value[0]] = value[1]
            made = self._add(observation, item)
            made_here.append(made)
            self._relate(made, parents, relationship)
        if made_here:
            self.by_node[id(node.qr)] = made_here

    def _add(self, observation: dict[str, Any], item: Item) -> Extracted:
        made = Extracted(observation, new_urn(), {"method": "POST", "url": "Observation"})
        self.outcome.entries.append(made)
        return made

    def _relate(self, made: Extracted, parents: list[Extracted], relationship: str | None) -> None:
        if not parents or relationship in (None, "independent", "component"):
            return
        parent = parents[0]
        if relationship == "member":
            parent.resource.setdefault("hasMember", []).append({"reference": made.full_url})
        elif relationship == "derived":
            made.resource.setdefault("derivedFrom", []).append({"reference": parent.full_url})


# -- definition-based -----------------------------------------------------------------------------


STRINGY = frozenset(
    ("string", "code", "uri", "url", "canonical", "markdown", "id", "oid", "uuid", "date",
     "dateTime", "instant", "time")
)  # fmt: skip


def _convert(value: Any, from_type: str, to_type: str) -> Any:
    if from_type == to_type:
        return value
    if from_type == "Coding":
        if to_type == "CodeableConcept":
            return {"coding": [_strip_weight(value)]}
        if to_type in ("code", "string", "uri") and isinstance(value, dict):
            return value.get("code")
    if from_type in STRINGY and to_type in STRINGY:
        return str(value)
    if from_type == "string" and to_type == "CodeableConcept":
        return {"text": value}
    if from_type in ("decimal", "integer") and to_type == "Quantity":
        return {"value": value}
    if from_type == "date" and to_type == "dateTime":
        return value
    if from_type == "Reference" and to_type == "canonical" and isinstance(value, dict):
        return value.get("reference")
    return None


def _python_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, (float, Decimal)):
        return "decimal"
    if isinstance(value, str):
        return "string"
    if isinstance(value, dict):
        if "reference" in value:
            return "Reference"
        if "coding" in value or ("text" in value and len(value) == 1):
            return "CodeableConcept"
        if "code" in value:
            return "Coding"
        if "value" in value:
            return "Quantity"
    return "Element"


class _Builder:
    """Sets values into a resource by element path, following the R4 model."""

    def __init__(self, model: Model, resource_type: str) -> None:
        self.model = model
        self.resource: dict[str, Any] = {"resourceType": resource_type}
        self.type = resource_type

    def set(self, path: str, value: Any, value_type: str) -> str | None:
        """Set ``value`` at ``path`` (``Consent.provision.actor.reference``); returns a problem
        or None."""
        parts = path.split(".")
        if parts[0] != self.type:
            return f"{path} is not an element of {self.type}"
        holder: dict[str, Any] = self.resource
        structure = self.model.structure_of(self.type)
        for index, part in enumerate(parts[1:], start=1):
            last = index == len(parts) - 1
            if structure is None:
                return f"{path}: {'.'.join(parts[:index])} has no elements"
            explicit = None
            name = part.removesuffix("[x]")
            element = structure.elements.get(name)
            if element is None:  # valueQuantity-style explicit choice
                for candidate in structure.elements.values():
                    if candidate.choice and name.startswith(candidate.name):
                        suffix = name[len(candidate.name) :]
                        match = [t for t in candidate.types if t[:1].upper() + t[1:] == suffix]
                        if match:
                            element, explicit = candidate, match[0]
                            break
            if element is None:
                return f"{path}: {part} is not an element of {structure.name}"
            if element.choice:
                type_code = explicit or (value_type if last else None)
                if type_code is None or type_code not in element.types:
                    if last:
                        for candidate_type in element.types:
                            if _convert(value, value_type, candidate_type) is not None:
                                type_code = candidate_type
                                break
                    if type_code is None:
                        return f"{path}: cannot choose a type for {element.name}[x]"
                key = element.name + type_code[:1].upper() + type_code[1:]
            else:
                type_code = element.types[0] if element.types else "BackboneElement"
                key = element.name
            if last:
                converted = _convert(value, value_type, type_code)
                if converted is None:
                    return f"{path}: a {value_type} answer cannot go into a {type_code}"
                if element.repeats:
                    holder.setdefault(key, []).append(converted)
                else:
                    holder[key] = converted
                return None
            child: dict[str, Any]
            if element.repeats:
                existing = holder.setdefault(key, [])
                if not existing:
                    existing.append({})
                child = existing[-1]
            else:
                child = holder.setdefault(key, {})
            holder = child
            structure = element.children or self.model.structure_of(type_code)
        return None


class _DefinitionExtractor:
    def __init__(
        self,
        form: Form,
        response: dict[str, Any],
        model: Model,
        profile_type: Any,
        extra: dict[str, Any],
    ) -> None:
        self.form = form
        self.response = response
        self.model = model
        self.profile_type = profile_type
        self.extra = extra
        self.outcome = Outcome()

    def resource_type(self, definition: str) -> tuple[str | None, str | None]:
        canonical = definition.split("|", 1)[0]
        if canonical.startswith(CORE_SD):
            name = canonical[len(CORE_SD) :]
            return (name if self.model.is_resource(name) else None), None
        found = self.profile_type(canonical)
        return (found, definition) if found else (None, None)

    def run(self) -> Outcome:
        variables = {name: new_urn() for name in self.form.allocate_ids}
        nodes = response_nodes(self.form, self.response)
        for extract in self.form.definition_extracts:
            self.extract(extract, nodes, self.response, None, variables)
        for node in nodes:
            if node.item.definition_extracts and _node_answered(node):
                local = dict(variables)
                local.update({name: new_urn() for name in node.item.allocate_ids})
                scope = [n for n in nodes if _within(n, node)]
                for extract in node.item.definition_extracts:
                    self.extract(extract, scope, node.qr, node, local)
        return self.outcome

    def extract(
        self,
        extract: dict[str, Any],
        scope: list[Node],
        context: Any,
        owner: Node | None,
        variables: dict[str, Any],
    ) -> None:
        definition = extract["definition"]
        type_, profile = self.resource_type(definition)
        if type_ is None:
            self.outcome.issues.append(
                Issue(
                    "error",
                    "not-supported",
                    f"definitionExtract names {definition}, which is not a resource type or "
                    "profile this server knows",
                    extract["location"],
                )
            )
            return
        prefix = definition.split("|", 1)[0] + "#"
        builder = _Builder(self.model, type_)
        if profile:
            builder.resource["meta"] = {"profile": [profile.split("|", 1)[0]]}
        env = {
            "resource": self.response,
            "questionnaire": self.form.resource,
            **self.extra,
            **variables,
        }
        values = list(self.form.definition_values) if owner is None else []
        holders: list[tuple[list[dict[str, Any]], Any]] = [(values, context)]
        for node in scope:
            item = node.item
            if item.definition and item.definition.split("|", 1)[0].startswith(prefix):
                path = item.definition.split("#", 1)[1]
                for answer in node.qr.get("answer", ()) or ():
                    found = answer_value(answer)
                    if found is None:
                        continue
                    key, value = found
                    problem = builder.set(path, value, ANSWER_TYPES.get(key, "string"))
                    if problem:
                        self._problem(problem, f"{item.path}.definition")
            if item.definition_values:
                holders.append((item.definition_values, node.qr))
        for entries, holder_context in holders:
            for entry in entries:
                if not entry["definition"].split("|", 1)[0].startswith(prefix):
                    continue
                path = entry["definition"].split("#", 1)[1]
                if "fixed" in entry:
                    key, value = entry["fixed"]
                    results = [(value, ANSWER_TYPES.get(key) or _python_type(value))]
                else:
                    expr = entry["expression"]
                    try:
                        found = fhirpath.evaluate(
                            expr.expression,
                            holder_context,
                            {**env, "context": holder_context},
                            strict=False,
                        )
                    except fhirpath.FhirPathError as exc:
                        self._problem(f"extraction expression failed: {exc}", expr.location)
                        continue
                    results = [(v, _python_type(v)) for v in found]
                for value, value_type in results:
                    if isinstance(value, Decimal) and value == value.to_integral_value():
                        value, value_type = int(value), "integer"
                    problem = builder.set(path, value, value_type)
                    if problem:
                        self._problem(problem, entry["location"])
        ext = extract["ext"]
        full_url = self._text(sub_value(ext, "fullUrl"), context, env) or new_urn()
        request: dict[str, Any] = {"method": "POST", "url": type_}
        if isinstance(builder.resource.get("id"), str):
            request = {"method": "PUT", "url": f"{type_}/{builder.resource['id']}"}
        for name in ("ifNoneExist", "ifMatch", "ifNoneMatch"):
            text = self._text(sub_value(ext, name), context, env)
            if text:
                request[name] = text
        self.outcome.entries.append(Extracted(builder.resource, full_url, request))

    def _text(self, expression: Any, context: Any, env: dict[str, Any]) -> str | None:
        if not isinstance(expression, str):
            return None
        try:
            found = fhirpath.evaluate(
                expression, context, {**env, "context": context}, strict=False
            )
        except fhirpath.FhirPathError as exc:
            self._problem(f"extraction expression failed: {exc}", None)
            return None
        return str(found[0]) if found else None

    def _problem(self, message: str, location: str | None) -> None:
        self.outcome.issues.append(Issue("error", "processing", message, location))


def _within(node: Node, ancestor: Node) -> bool:
    current: Node | None = node
    while current is not None:
        if current is ancestor:
            return True
        current = current.parent
    return False


def _node_answered(node: Node) -> bool:
    if any(answer_value(a) for a in node.qr.get("answer", ()) or () if isinstance(a, dict)):
        return True
    return any(
        isinstance(child, dict) and (child.get("answer") or child.get("item"))
        for child in node.qr.get("item", ()) or ()
    )


def extract(
    form: Form,
    response: dict[str, Any],
    model: Model,
    profile_type: Any = lambda url: None,
    source: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> Outcome:
    """Every resource the response yields. ``source`` is the reference the extracted
    Observations put in ``derivedFrom`` (the stored response); ``profile_type`` maps a profile
    URL to its resource type."""
    observations = _ObservationExtractor(form, response, source).run()
    definitions = _DefinitionExtractor(form, response, model, profile_type, extra or {}).run()
    return Outcome(
        observations.entries + definitions.entries, observations.issues + definitions.issues
    )
