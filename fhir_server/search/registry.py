"""The search parameter registry: the 1,378 R4 SearchParameters plus those stored on the server.

Each parameter's FHIRPath expression is split per resource type (the R4 expressions are unions over
many types, e.g. ``Account.subject | AdverseEvent.subject | ...``) and compiled once, so extracting
index values for a Patient only evaluates the Patient part.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cache

from fhir_server.definitions import load_r4
from fhir_server.fhirpath import PathEvaluator, compile_expression
from fhir_server.model.structure import PRIMITIVE_TYPES, Element, Model, r4_model

TABLE_OF_TYPE = {
    "string": "strings",
    "token": "tokens",
    "reference": "references",
    "date": "dates",
    "number": "numbers",
    "quantity": "quantities",
    "uri": "uris",
}


@dataclass(slots=True)
class Component:
    code: str  # "<composite code>$<index>"
    type: str
    evaluator: PathEvaluator
    # JSON keys of the composite's node one of which the component needs to have a value (a
    # superset); None = always evaluate. Observation's code-value-string, -date and -concept
    # then cost nothing on an Observation with a valueQuantity.
    keys: frozenset[str] | None = None


@dataclass(slots=True)
class SearchParam:
    code: str
    type: str  # string | token | reference | date | number | quantity | uri | composite | special
    resource_type: str
    url: str
    expression: str | None
    evaluator: PathEvaluator | None
    targets: tuple[str, ...] = ()
    components: tuple[Component, ...] = ()
    modifiers: tuple[str, ...] = ()
    status: str = "active"  # active | indexing (a stored SearchParameter being back-filled)
    definition: dict = field(default_factory=dict, repr=False)
    # JSON keys of the resource the expression can start from; None = any (always evaluate).
    # Lets extraction skip a parameter at once when the resource lacks all of them.
    roots: frozenset[str] | None = None
    # One level deeper, when every term goes through the same single object (e.g. meta): that
    # member and the keys inside it the expression can reach. Most resources carry a meta with
    # only versionId and lastUpdated, so _profile, _tag, _security and _source skip at once.
    probe: tuple[str, frozenset[str]] | None = None

    @property
    def table(self) -> str:
        return TABLE_OF_TYPE.get(self.type, "")


def split_union_for_type(expression: str, resource_type: str, model: Model) -> str | None:
    """Keep the top-level union terms of ``expression`` that apply to ``resource_type``."""
    kept = [t for t in _top_level_terms(expression) if _applies(t, resource_type, model)]
    return " | ".join(kept) if kept else None


_ROOT_TERM = re.compile(r"^\(*\s*(\w+)\.(\w+)")
_MEMBER_PATH = re.compile(r"(\w+)\.([a-z]\w*)\.([a-z]\w*)(\.[a-z]\w*)*")


def _term_heads(
    expression: str, resource_type: str, model: Model, pattern: re.Pattern[str], whole: bool
) -> list[tuple[re.Match[str], Element]] | None:
    """Per top-level term: the pattern's match and the element of the resource it starts with;
    None when some term does not start with a member of this resource type."""
    structure = model.types.get(resource_type)
    if structure is None:
        return None
    heads: list[tuple[re.Match[str], Element]] = []
    for term in _top_level_terms(expression):
        match = pattern.fullmatch(term) if whole else pattern.match(term)
        if not match or match.group(1) not in (resource_type, "Resource", "DomainResource"):
            return None
        element = structure.elements.get(match.group(2))
        if element is None:
            return None
        heads.append((match, element))
    return heads


def _roots(expression: str, resource_type: str, model: Model) -> frozenset[str] | None:
    heads = _term_heads(expression, resource_type, model, _ROOT_TERM, whole=False)
    if heads is None:
        return None
    structure = model.types[resource_type]
    keys: set[str] = set()
    for match, element in heads:
        names = structure.json_keys_of(element)
        typed = _OF_TYPE_TERM.fullmatch(match.string)
        if typed and element.choice:  # value.ofType(Quantity): only the keys of that type
            wanted = set(_types_of(typed.group(1), element.types, model))
            names = [element.name + t[:1].upper() + t[1:] for t in element.types if t in wanted]
        for key in names:
            keys.update((key, "_" + key))
    return frozenset(keys)


_OF_TYPE_TERM = re.compile(r"\(*\s*\w+\.\w+\.ofType\((\w+)\)\s*\)*")


def _types_of(type_name: str, type_codes: list[str], model: Model) -> list[str]:
    """The type codes ``ofType(type_name)`` can select (a superset): the type, its
    specialisations and, for a primitive or System type name, every primitive (aliases such
    as DateTime -> dateTime; a code is a string to some readers)."""
    loose = type_name.lower() in _PRIMITIVE_NAMES or type_name not in model.kinds
    return [
        code
        for code in type_codes
        if code.lower() == type_name.lower()
        or model.is_a(code, type_name)
        or (loose and code in PRIMITIVE_TYPES)
    ]


def _probe(expression: str, resource_type: str, model: Model) -> tuple[str, frozenset[str]] | None:
    heads = _term_heads(expression, resource_type, model, _MEMBER_PATH, whole=True)
    if not heads:
        return None
    member: str | None = None
    keys: set[str] = set()
    for match, element in heads:
        if element.choice or element.max != 1 or len(element.types) != 1:
            return None
        inner = element.children or model.types.get(element.types[0])
        child = inner.elements.get(match.group(3)) if inner is not None else None
        if child is None or member not in (None, element.name):
            return None
        member = element.name
        for key in inner.json_keys_of(child):
            keys.update((key, "_" + key))
    return (member, frozenset(keys)) if member else None


_MEMBER = re.compile(r"([a-z]\w*)")
_MEMBER_OF_TYPE = re.compile(r"([a-z]\w*)\.ofType\((\w+)\)")


def component_keys(expression: str, model: Model) -> frozenset[str] | None:
    """The JSON keys (a superset) a node must have one of for a composite component
    (``code``, ``value.ofType(Quantity) | value.ofType(Range)``) to yield anything; None when
    the expression has another form. A member ``value`` can be any ``value[x]`` key; an
    ``ofType(T)`` only those of T, its specialisations and, for a primitive or System type,
    every primitive (aliases such as DateTime -> dateTime)."""
    type_codes = [name for name in model.kinds if name[:1].isalpha()]
    keys: set[str] = set()
    for term in _top_level_terms(expression):
        term = term.strip()
        plain = _MEMBER.fullmatch(term)
        typed = _MEMBER_OF_TYPE.fullmatch(term)
        if plain:
            name, wanted = plain.group(1), type_codes
        elif typed:
            name, wanted = typed.group(1), _types_of(typed.group(2), type_codes, model)
        else:
            return None
        keys.update((name, "_" + name))
        for code in wanted:
            key = name + code[:1].upper() + code[1:]
            keys.update((key, "_" + key))
    return frozenset(keys)


_PRIMITIVE_NAMES = frozenset(
    {t.lower() for t in PRIMITIVE_TYPES}
    | {"boolean", "string", "integer", "decimal", "date"}
    | {"datetime", "time"}
)


def _top_level_terms(expression: str) -> list[str]:
    terms: list[str] = []
    depth = 0
    start = 0
    in_string = False
    for index, char in enumerate(expression):
        if char == "'" and (index == 0 or expression[index - 1] != "\\"):
            in_string = not in_string
        elif in_string:
            continue
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif char == "|" and depth == 0:
            terms.append(expression[start:index].strip())
            start = index + 1
    terms.append(expression[start:].strip())
    return terms


def _applies(term: str, resource_type: str, model: Model) -> bool:
    head = term.lstrip("(").split(".", 1)[0].split(" ", 1)[0].strip()
    if head in ("Resource", "DomainResource"):
        return True
    if model.kinds.get(head) == "resource":
        return head == resource_type
    return True  # a relative expression (no type prefix)


class Registry:
    """Search parameters by resource type and code."""

    def __init__(self, model: Model) -> None:
        self.model = model
        self._by_type: dict[str, dict[str, SearchParam]] = {}
        self._by_url: dict[str, dict] = {}
        self._indexed: dict[str, tuple[SearchParam, ...]] = {}

    def add_definition(self, definition: dict, status: str = "active") -> list[SearchParam]:
        """Register a SearchParameter resource for each of its base types."""
        self._indexed.clear()
        added: list[SearchParam] = []
        bases: list[str] = []
        for base in definition.get("base", ()):
            if base in ("Resource", "DomainResource"):
                bases.extend(
                    t
                    for t in self.model.resource_types
                    if base == "Resource" or self.model.is_a(t, "DomainResource")
                )
            else:
                bases.append(base)
        self._by_url[definition.get("url", "")] = definition
        for resource_type in bases:
            param = self._build(definition, resource_type, status)
            if param is not None:
                self._by_type.setdefault(resource_type, {})[param.code] = param
                added.append(param)
        return added

    def remove_definition(self, url: str) -> None:
        definition = self._by_url.pop(url, None)
        if not definition:
            return
        self._indexed.clear()
        base = _r4_base()
        for resource_type, params in self._by_type.items():
            for code, param in list(params.items()):
                if param.url == url:
                    del params[code]
                    core = base.get(resource_type, code)
                    if core is not None and core.url != url:
                        params[code] = core  # a stored parameter had replaced a core one

    def _build(self, definition: dict, resource_type: str, status: str) -> SearchParam | None:
        expression = definition.get("expression")
        evaluator = None
        if expression:
            expression = split_union_for_type(expression, resource_type, self.model)
            if expression is None:
                return None
            evaluator = compile_expression(expression, self.model)
        components = tuple(
            Component(
                code=f"{definition['code']}${index}",
                type=self._component_type(component.get("definition", "")),
                evaluator=compile_expression(component["expression"], self.model),
                keys=component_keys(component["expression"], self.model),
            )
            for index, component in enumerate(definition.get("component", ()))
        )
        return SearchParam(
            roots=_roots(expression, resource_type, self.model) if expression else None,
            probe=_probe(expression, resource_type, self.model) if expression else None,
            code=definition["code"],
            type=definition["type"],
            resource_type=resource_type,
            url=definition.get("url", ""),
            expression=expression,
            evaluator=evaluator,
            targets=tuple(definition.get("target", ())),
            components=components,
            modifiers=tuple(definition.get("modifier", ())),
            status=status,
            definition=definition,
        )

    def _component_type(self, url: str) -> str:
        definition = self._by_url.get(url)
        if definition is None:
            definition = _r4_by_url().get(url)
        return definition["type"] if definition else "token"

    # -- queries --------------------------------------------------------------------------

    def params_for(self, resource_type: str) -> dict[str, SearchParam]:
        return self._by_type.get(resource_type, {})

    def indexed_params(self, resource_type: str) -> tuple[SearchParam, ...]:
        """The parameters whose values a resource of this type is indexed by (those with an
        expression, except _id, which is the store's own key); kept until the set changes."""
        found = self._indexed.get(resource_type)
        if found is None:
            found = self._indexed[resource_type] = tuple(
                p
                for p in self.params_for(resource_type).values()
                if p.evaluator is not None and p.code != "_id"
            )
        return found

    def keep_only(self, resource_type: str, codes: frozenset[str]) -> None:
        """Drop every parameter of ``resource_type`` but ``codes``: what is not indexed must not
        be searchable either (it is then an unknown parameter, reported as such)."""
        params = self._by_type.get(resource_type, {})
        for code in [c for c in params if c not in codes]:
            del params[code]
        self._indexed.pop(resource_type, None)

    # -- free text ------------------------------------------------------------------------------

    def enable_text(self, resource_type: str, status: str = "active") -> None:
        """Index ``_content`` and ``_text`` of this type (search/text.py). Other types keep the
        R4 definitions without an expression, so their writes pay nothing for free text."""
        params = self._by_type.setdefault(resource_type, {})
        for code, evaluator, roots in (
            ("_content", _whole_resource(resource_type), None),
            ("_text", _narrative, frozenset({"text"})),
        ):
            base = params.get(code)
            params[code] = SearchParam(
                code=code,
                type="special",
                resource_type=resource_type,
                url=base.url if base is not None else "",
                expression=None,
                evaluator=evaluator,  # type: ignore[arg-type]
                status=status,
                definition=base.definition if base is not None else {},
                roots=roots,
            )
        self._indexed.clear()

    def text_enabled(self, resource_type: str) -> bool:
        param = self.get(resource_type, "_content")
        return param is not None and param.evaluator is not None

    def get(self, resource_type: str, code: str) -> SearchParam | None:
        return self._by_type.get(resource_type, {}).get(code)

    def definition(self, url: str) -> dict | None:
        return self._by_url.get(url)


def _whole_resource(resource_type: str):
    from fhir_server.fhirpath import Node

    def evaluate(resource: dict) -> list:
        return [Node(resource, resource_type)]

    return evaluate


def _narrative(resource: dict) -> list:
    from fhir_server.fhirpath import Node

    text = resource.get("text")
    div = text.get("div") if isinstance(text, dict) else None
    return [Node(div, "xhtml")] if isinstance(div, str) else []


@cache
def _r4_by_url() -> dict[str, dict]:
    return {d["url"]: d for d in load_r4("search-parameters")}


@cache
def _r4_base() -> Registry:
    model = r4_model()
    registry = Registry(model)
    definitions = load_r4("search-parameters")
    for definition in definitions:  # components refer to other parameters by URL
        registry._by_url[definition["url"]] = definition
    for definition in definitions:
        registry.add_definition(definition)
    return registry


def build_r4_registry(model: Model | None = None) -> Registry:
    """A registry with the R4 parameters; compiled once per process, copied per service so that
    stored SearchParameters added to one server never leak into another."""
    base = _r4_base()
    registry = Registry(model or base.model)
    registry._by_type = {t: dict(params) for t, params in base._by_type.items()}
    registry._by_url = dict(base._by_url)
    return registry
