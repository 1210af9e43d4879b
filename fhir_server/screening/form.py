"""A Questionnaire compiled once for the server's work on its responses.

``Form`` holds the item tree with everything validation, scoring, population and extraction need
(answer options and their weights, enableWhen, SDC expressions and variables, extraction
markers, safety alerts), indexed by linkId. Compiling also checks the Questionnaire: every
FHIRPath expression must parse (through ``fhir_server.fhirpath.check``), linkIds must be unique,
enableWhen must name an existing question. Those problems are the issues a Questionnaire write is
refused with (``QuestionnaireValidator``), each with its location.

The content is read defensively: a stored Questionnaire may be anything the R4 structure allows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from fhir_server import fhirpath
from fhir_server.errors import Issue
from fhir_server.screening import constants as C


@dataclass(slots=True)
class Expr:
    """An SDC Expression (FHIRPath or x-fhir-query) and where it sits in the Questionnaire."""

    expression: str
    language: str
    name: str | None
    location: str

    @property
    def is_fhirpath(self) -> bool:
        return self.language == C.FHIRPATH


@dataclass(slots=True)
class Option:
    key: str  # valueCoding, valueString...
    value: Any
    weight: Decimal | int | float | None


@dataclass(slots=True, eq=False)
class Item:
    link_id: str
    type: str
    path: str  # Questionnaire.item[0].item[2]
    text: str | None
    required: bool
    repeats: bool
    read_only: bool
    hidden: bool
    raw: dict[str, Any]
    parent: Item | None = None
    children: list[Item] = field(default_factory=list)
    options: list[Option] = field(default_factory=list)
    answer_value_set: str | None = None
    enable_when: list[dict[str, Any]] = field(default_factory=list)
    enable_behavior: str = "all"
    enable_when_expression: Expr | None = None
    calculated: Expr | None = None
    variables: list[Expr] = field(default_factory=list)
    initial: list[dict[str, Any]] = field(default_factory=list)
    initial_expression: Expr | None = None
    population_context: Expr | None = None
    codes: list[dict[str, Any]] = field(default_factory=list)
    observation_extract: bool | str | None = None  # own value (inherited at use)
    observation_categories: list[dict[str, Any]] = field(default_factory=list)
    definition: str | None = None
    definition_extracts: list[dict[str, Any]] = field(default_factory=list)
    definition_values: list[dict[str, Any]] = field(default_factory=list)
    allocate_ids: list[str] = field(default_factory=list)
    safety_alert: dict[str, Any] | None = None
    unit: dict[str, Any] | None = None
    max_length: int | None = None
    min_value: Any = None
    max_value: Any = None

    @property
    def is_question(self) -> bool:
        return self.type not in ("group", "display")

    def weight_of(self, coding: dict[str, Any]) -> Decimal | int | float | None:
        for option in self.options:
            if option.key == "valueCoding" and _same_coding(option.value, coding):
                return option.weight
        return None

    def ancestors(self) -> list[Item]:
        out = []
        node = self.parent
        while node is not None:
            out.append(node)
            node = node.parent
        return out


@dataclass(slots=True, eq=False)
class Form:
    """One compiled Questionnaire."""

    resource: dict[str, Any]
    url: str | None
    version: str | None
    id: str | None
    items: list[Item]
    by_link_id: dict[str, Item]
    variables: list[Expr]
    launch_contexts: list[dict[str, Any]]
    population_context: Expr | None
    observation_extract: bool | str | None
    observation_categories: list[dict[str, Any]]
    definition_extracts: list[dict[str, Any]]
    definition_values: list[dict[str, Any]]
    allocate_ids: list[str]
    extract_on_complete: bool
    issues: list[Issue]
    calculated_order: list[Item] = field(default_factory=list)
    all_items: list[Item] = field(default_factory=list)
    all_item_variables: list[Expr] | None = None

    @property
    def canonical(self) -> str:
        if self.url and self.version:
            return f"{self.url}|{self.version}"
        return self.url or f"Questionnaire/{self.id}"

    @property
    def scored(self) -> bool:
        return bool(self.calculated_order)

    def item_variables(self) -> list[Expr]:
        """The variables of every item, in document order (computed once)."""
        if self.all_item_variables is None:
            self.all_item_variables = [v for item in self.walk() for v in item.variables]
        return self.all_item_variables

    def walk(self) -> list[Item]:
        """Every item, in document order."""
        if self.all_items:
            return self.all_items
        out: list[Item] = []
        stack = list(reversed(self.items))
        while stack:
            item = stack.pop()
            out.append(item)
            stack.extend(reversed(item.children))
        return out


def _same_coding(a: Any, b: Any) -> bool:
    if not isinstance(a, dict) or not isinstance(b, dict):
        return False
    return a.get("code") == b.get("code") and (a.get("system") or None) == (b.get("system") or None)


def extensions(element: Any, url: str) -> list[dict[str, Any]]:
    if not isinstance(element, dict):
        return []
    exts = element.get("extension")
    if not isinstance(exts, list):
        return []
    return [e for e in exts if isinstance(e, dict) and e.get("url") == url]


def extension_value(element: Any, url: str) -> Any:
    for ext in extensions(element, url):
        for key, value in ext.items():
            if key.startswith("value"):
                return value
    return None


def sub_value(ext: dict[str, Any], name: str) -> Any:
    for sub in ext.get("extension", ()) if isinstance(ext.get("extension"), list) else ():
        if isinstance(sub, dict) and sub.get("url") == name:
            for key, value in sub.items():
                if key.startswith("value"):
                    return value
    return None


def _weight(option: dict[str, Any]) -> Decimal | int | float | None:
    """itemWeight (SDC) or ordinalValue (R4 core), on the option or on its Coding."""
    for holder in (option, option.get("valueCoding")):
        for url in (C.ITEM_WEIGHT, C.ORDINAL_VALUE):
            value = extension_value(holder, url)
            if isinstance(value, (int, float, Decimal)) and not isinstance(value, bool):
                return value
    return None


class _Compiler:
    def __init__(self, resource: dict[str, Any]) -> None:
        self.resource = resource
        self.issues: list[Issue] = []
        self.by_link_id: dict[str, Item] = {}

    def error(self, message: str, location: str, code: str = "invalid") -> None:
        self.issues.append(Issue("error", code, message, location))

    def expression(self, ext: dict[str, Any], location: str) -> Expr | None:
        value = ext.get("valueExpression")
        if not isinstance(value, dict):
            self.error(f"the extension {ext.get('url')} needs a valueExpression", location)
            return None
        text = value.get("expression")
        language = value.get("language") or C.FHIRPATH
        where = f"{location}.valueExpression.expression"
        if not isinstance(text, str) or not text.strip():
            self.error("the expression is empty", where)
            return None
        if language == C.FHIRPATH:
            try:
                fhirpath.check(text, strict=False)
            except fhirpath.FhirPathError as exc:
                self.error(f"invalid FHIRPath: {exc}", where)
                return None
        elif language != C.FHIR_QUERY:
            self.error(
                f"expression language {language!r} is not supported here (text/fhirpath or "
                "application/x-fhir-query)",
                f"{location}.valueExpression.language",
                code="not-supported",
            )
            return None
        name = value.get("name")
        return Expr(text, language, name if isinstance(name, str) else None, where)

    def expressions_of(self, element: dict[str, Any], location: str, url: str) -> list[Expr]:
        out = []
        exts = element.get("extension")
        if not isinstance(exts, list):
            return out
        for index, ext in enumerate(exts):
            if isinstance(ext, dict) and ext.get("url") == url:
                expr = self.expression(ext, f"{location}.extension[{index}]")
                if expr is not None:
                    out.append(expr)
        return out

    def one_expression(self, element: dict[str, Any], location: str, url: str) -> Expr | None:
        found = self.expressions_of(element, location, url)
        return found[0] if found else None

    def variables(self, element: dict[str, Any], location: str) -> list[Expr]:
        out = []
        for expr in self.expressions_of(element, location, C.VARIABLE):
            if not expr.name:
                self.error("a variable needs a name", expr.location.rsplit(".", 1)[0])
                continue
            out.append(expr)
        return out

    def definition_parts(self, element: dict[str, Any], location: str) -> tuple[list, list, list]:
        extracts: list[dict[str, Any]] = []
        values: list[dict[str, Any]] = []
        exts = element.get("extension")
        for index, ext in enumerate(exts if isinstance(exts, list) else ()):
            if not isinstance(ext, dict):
                continue
            where = f"{location}.extension[{index}]"
            url = ext.get("url")
            if url == C.DEFINITION_EXTRACT:
                definition = sub_value(ext, "definition")
                if not isinstance(definition, str):
                    self.error("definitionExtract needs a definition (canonical)", where)
                    continue
                extracts.append({"definition": definition, "ext": ext, "location": where})
                for name in ("fullUrl", "ifNoneExist", "ifMatch", "ifNoneMatch"):
                    text = sub_value(ext, name)
                    if isinstance(text, str):
                        self._check(text, f"{where}.extension('{name}')")
            elif url == C.ITEM_EXTRACTION_CONTEXT:
                code = ext.get("valueCode")
                if isinstance(code, str):
                    extracts.append(
                        {
                            "definition": f"http://hl7.org/fhir/StructureDefinition/{code}",
                            "ext": ext,
                            "location": where,
                        }
                    )
            elif url == C.DEFINITION_EXTRACT_VALUE:
                definition = sub_value(ext, "definition")
                if not isinstance(definition, str) or "#" not in definition:
                    self.error(
                        "definitionExtractValue needs a definition (profile#element path)", where
                    )
                    continue
                entry: dict[str, Any] = {"definition": definition, "location": where}
                for sub_index, sub in enumerate(ext.get("extension", ())):
                    if not isinstance(sub, dict):
                        continue
                    if sub.get("url") == "expression":
                        expr = self.expression(sub, f"{where}.extension[{sub_index}]")
                        if expr is not None:
                            entry["expression"] = expr
                    elif sub.get("url") == "fixed-value":
                        for key, value in sub.items():
                            if key.startswith("value"):
                                entry["fixed"] = (key, value)
                if "expression" in entry or "fixed" in entry:
                    values.append(entry)
        allocate = [
            v for v in (e.get("valueString") for e in extensions(element, C.ALLOCATE_ID)) if v
        ]
        return extracts, values, allocate

    def _check(self, text: str, where: str) -> None:
        try:
            fhirpath.check(text, strict=False)
        except fhirpath.FhirPathError as exc:
            self.error(f"invalid FHIRPath: {exc}", where)

    def items(self, raw_items: Any, location: str, parent: Item | None) -> list[Item]:
        out: list[Item] = []
        if not isinstance(raw_items, list):
            return out
        for index, raw in enumerate(raw_items):
            if not isinstance(raw, dict):
                continue
            out.append(self.item(raw, f"{location}.item[{index}]", parent))
        return out

    def item(self, raw: dict[str, Any], path: str, parent: Item | None) -> Item:
        link_id = raw.get("linkId") if isinstance(raw.get("linkId"), str) else ""
        type_ = raw.get("type") if isinstance(raw.get("type"), str) else "string"
        item = Item(
            link_id=link_id,
            type=type_,
            path=path,
            text=raw.get("text") if isinstance(raw.get("text"), str) else None,
            required=raw.get("required") is True,
            repeats=raw.get("repeats") is True,
            read_only=raw.get("readOnly") is True,
            hidden=extension_value(raw, C.HIDDEN) is True,
            raw=raw,
            parent=parent,
        )
        if link_id in self.by_link_id:
            self.error(f"linkId {link_id!r} is used twice in the Questionnaire", f"{path}.linkId")
        elif link_id:
            self.by_link_id[link_id] = item
        for index, option in enumerate(raw.get("answerOption", ()) or ()):
            if not isinstance(option, dict):
                continue
            key = next((k for k in C.OPTION_KEYS if k in option), None)
            if key is None:
                self.error("an answerOption needs a value", f"{path}.answerOption[{index}]")
                continue
            item.options.append(Option(key, option[key], _weight(option)))
        if isinstance(raw.get("answerValueSet"), str):
            item.answer_value_set = raw["answerValueSet"]
        enable_when = raw.get("enableWhen")
        if isinstance(enable_when, list):
            item.enable_when = [e for e in enable_when if isinstance(e, dict)]
        if raw.get("enableBehavior") in ("all", "any"):
            item.enable_behavior = raw["enableBehavior"]
        item.enable_when_expression = self.one_expression(raw, path, C.ENABLE_WHEN_EXPRESSION)
        item.calculated = self.one_expression(raw, path, C.CALCULATED)
        if item.calculated is not None and not item.is_question:
            self.error(
                f"a {type_} item cannot have a calculatedExpression",
                item.calculated.location,
            )
            item.calculated = None
        item.variables = self.variables(raw, path)
        item.initial = [i for i in raw.get("initial", ()) or () if isinstance(i, dict)]
        item.initial_expression = self.one_expression(raw, path, C.INITIAL_EXPRESSION)
        item.population_context = self.one_expression(raw, path, C.POPULATION_CONTEXT)
        item.codes = [c for c in raw.get("code", ()) or () if isinstance(c, dict)]
        extract = extension_value(raw, C.OBSERVATION_EXTRACT)
        if isinstance(extract, (bool, str)):
            item.observation_extract = extract
        item.observation_categories = [
            v
            for v in (
                e.get("valueCodeableConcept") for e in extensions(raw, C.OBSERVATION_CATEGORY)
            )
            if isinstance(v, dict)
        ]
        if isinstance(raw.get("definition"), str):
            item.definition = raw["definition"]
        item.definition_extracts, item.definition_values, item.allocate_ids = self.definition_parts(
            raw, path
        )
        alerts = extensions(raw, C.SAFETY_ALERT)
        if alerts:
            if type_ != "boolean" or not isinstance(sub_value(alerts[0], "code"), dict):
                self.error(
                    "questionnaire-safety-alert goes on a boolean item and needs a code "
                    "(valueCoding)",
                    path,
                )
            else:
                item.safety_alert = alerts[0]
        unit = extension_value(raw, C.UNIT)
        if isinstance(unit, dict):
            item.unit = unit
        if isinstance(raw.get("maxLength"), int):
            item.max_length = raw["maxLength"]
        item.min_value = extension_value(raw, C.MIN_VALUE)
        item.max_value = extension_value(raw, C.MAX_VALUE)
        item.children = self.items(raw.get("item"), path, item)
        return item

    def check_enable_when(self, items: list[Item]) -> None:
        for item in items:
            for index, condition in enumerate(item.enable_when):
                question = condition.get("question")
                where = f"{item.path}.enableWhen[{index}]"
                if not isinstance(question, str) or question not in self.by_link_id:
                    self.error(
                        f"enableWhen refers to {question!r}, which is not a linkId of this "
                        "Questionnaire",
                        f"{where}.question",
                    )
                elif not self.by_link_id[question].is_question:
                    self.error(f"enableWhen refers to {question!r}, which is not a question", where)
            self.check_enable_when(item.children)


def compile_form(resource: dict[str, Any]) -> Form:
    compiler = _Compiler(resource)
    variables = compiler.variables(resource, "Questionnaire")
    population_context = compiler.one_expression(resource, "Questionnaire", C.POPULATION_CONTEXT)
    extracts, values, allocate = compiler.definition_parts(resource, "Questionnaire")
    items = compiler.items(resource.get("item"), "Questionnaire", None)
    compiler.check_enable_when(items)
    extract = extension_value(resource, C.OBSERVATION_EXTRACT)
    form = Form(
        resource=resource,
        url=resource.get("url") if isinstance(resource.get("url"), str) else None,
        version=resource.get("version") if isinstance(resource.get("version"), str) else None,
        id=resource.get("id") if isinstance(resource.get("id"), str) else None,
        items=items,
        by_link_id=compiler.by_link_id,
        variables=variables,
        launch_contexts=extensions(resource, C.LAUNCH_CONTEXT),
        population_context=population_context,
        observation_extract=extract if isinstance(extract, (bool, str)) else None,
        observation_categories=[
            v
            for v in (
                e.get("valueCodeableConcept") for e in extensions(resource, C.OBSERVATION_CATEGORY)
            )
            if isinstance(v, dict)
        ],
        definition_extracts=extracts,
        definition_values=values,
        allocate_ids=allocate,
        extract_on_complete=extension_value(resource, C.EXTRACT_ON_COMPLETE) is True,
        issues=compiler.issues,
    )
    form.all_items = form.walk()
    form.calculated_order = _calculation_order(form)
    return form


def _dependency_text(form: Form, item: Item) -> str:
    """The expressions an item's calculation reads: its own and the variables in scope."""
    texts = [item.calculated.expression if item.calculated else ""]
    texts += [v.expression for v in form.variables]
    for node in (item, *item.ancestors()):
        texts += [v.expression for v in node.variables]
    return "\n".join(texts)


def _calculation_order(form: Form) -> list[Item]:
    """Calculated items in the order they are computed: document order, moved after any other
    calculated item whose linkId their expression names (a total after its sub-scores). A
    cycle keeps document order (the Questionnaire is then wrong; the result is still
    deterministic)."""
    calculated = [item for item in form.walk() if item.calculated is not None]
    ordered: list[Item] = []
    placed: set[int] = set()
    visiting: set[int] = set()

    def place(item: Item) -> None:
        if id(item) in placed or id(item) in visiting:
            return
        visiting.add(id(item))
        text = _dependency_text(form, item)
        for other in calculated:
            if other is not item and f"'{other.link_id}'" in text:
                place(other)
        visiting.discard(id(item))
        placed.add(id(item))
        ordered.append(item)

    for item in calculated:
        place(item)
    return ordered
