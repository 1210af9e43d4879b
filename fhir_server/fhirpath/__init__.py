"""FHIRPath for the server: one engine (``lexer`` -> ``parser`` -> ``engine``) behind every use.

* ``evaluate(expression, focus, variables)`` -> plain values (SDC calculatedExpression,
  $populate, $extract, PlanDefinition conditions...), with optional hooks for ``resolve()``,
  ``memberOf()``/``subsumes()`` and ``conformsTo()``; ``check(expression)`` raises
  ``FhirPathError`` for an expression that does not parse or cannot be valid.
* ``compile_expression(expression, model)`` -> typed ``Node``s for search value extraction and
  FHIRPath Patch.
* ``compile(expression, context_type=...)`` -> a ``CompiledExpression`` with all three
  evaluators (``values``, ``nodes``, ``test`` for invariants).

Every expression is compiled once per context type and cached. See docs/fhirpath.md.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from functools import lru_cache
from typing import Any, Protocol

from fhir_server.fhirpath import aggregates as _aggregates  # noqa: F401  (registers functions)
from fhir_server.fhirpath import functions as _functions  # noqa: F401  (registers functions)
from fhir_server.fhirpath.engine import (
    ENGINE_ERRORS,
    NO_ENV,
    Compiler,
    Ctx,
    Env,
    Node,
    SemanticError,
    node_of,
    system_value,
    to_json,
    to_system,
    type_of,
)
from fhir_server.fhirpath.parser import ParseError, needs_resource, parse
from fhir_server.fhirpath.values import Quantity, Temporal
from fhir_server.model.structure import Model, r4_model

__all__ = [
    "CompiledExpression",
    "CompiledPath",
    "Env",
    "FhirPathError",
    "Node",
    "Nodes",
    "PathEvaluator",
    "Terminology",
    "check",
    "compile",
    "compile_expression",
    "evaluate",
    "evaluate_async",
]


class FhirPathError(ValueError):
    """An expression that does not parse, cannot be valid for its context, or fails when
    evaluated (the message says which and where)."""


class Terminology(Protocol):
    """What ``memberOf()`` and ``subsumes()`` need (``terminology.catalog.Catalog`` has it)."""

    def expand(self, url: str) -> Iterable[tuple[str, str]] | None: ...


Resolver = Callable[[str], "dict[str, Any] | None"]
Validator = Callable[[Any, str], bool]


Nodes = list[Node]

_SYSTEM_TO_FHIR = {
    "Boolean": "boolean",
    "String": "string",
    "Integer": "integer",
    "Decimal": "decimal",
    "Date": "date",
    "DateTime": "dateTime",
    "Time": "time",
    "Quantity": "Quantity",
}


def _to_node(item: Any) -> Node:
    if type(item) is tuple:
        value, code, structure, parent, key, index = item
        return Node(value, code, structure, None if parent is None else (parent, key, index))
    _, name = type_of(item)
    return Node(to_json(item), _SYSTEM_TO_FHIR.get(name, name))


def _items(value: Any, model: Model) -> list:
    if value is None:
        return []
    if isinstance(value, list):
        return [node_of(v, model) for v in value if v is not None]
    if isinstance(value, (Temporal, Quantity)):
        return [value]
    if isinstance(value, Node):
        return [(value.value, value.type, value.structure, None, None, None)]
    return [node_of(value, model)]


_ERRORS = ENGINE_ERRORS


class CompiledExpression:
    """One expression compiled for one context type; thread-safe, reusable."""

    __slots__ = (
        "_direct",
        "_start",
        "context_type",
        "expression",
        "fn",
        "model",
        "needs_resource",
    )

    def __init__(
        self, expression: str, fn: Callable[[Ctx], list], model: Model, context_type: str | None
    ) -> None:
        self.expression = expression
        self.fn = fn
        self.model = model
        self.context_type = context_type
        # a plain member path from the focus walks the JSON without an evaluation context
        fuse = getattr(fn, "fuse", None)
        self._direct = getattr(fn, "direct", None) if fuse else None
        self._start = fuse[0] if fuse and self._direct is not None else None
        self.needs_resource = True  # whether %resource / %rootResource / resolve() occur

    def __repr__(self) -> str:
        return f"CompiledExpression({self.expression!r}, context={self.context_type!r})"

    def context(
        self,
        focus: list,
        resource: Any = None,
        root: Any = None,
        variables: dict[str, Any] | None = None,
        resolver: Resolver | None = None,
        terminology: Terminology | None = None,
        validator: Validator | None = None,
        trace: Callable[[str, list], None] | None = None,
    ) -> Ctx:
        model = self.model
        resource_items = focus if resource is None else _items(resource, model)
        root_items = resource_items if root is None else _items(root, model)
        converted: dict[str, list] = {}
        context_items = None
        for name, value in (variables or {}).items():
            items = _items(value, model)
            if name == "resource":
                resource_items = items
            elif name == "rootResource":
                root_items = items
            elif name == "context":
                context_items = items
            else:
                converted[name] = items
        env = Env(converted, resolver, terminology, validator, trace)
        ctx = Ctx(focus, resource_items, root_items, env)
        if context_items is not None:
            ctx.context = context_items
        return ctx

    def run(self, ctx: Ctx) -> list:
        try:
            return self.fn(ctx)
        except _ERRORS as exc:
            raise FhirPathError(f"FHIRPath expression {self.expression!r} failed: {exc}") from exc
        except RecursionError as exc:
            raise FhirPathError(f"FHIRPath expression {self.expression!r} is too deep") from exc

    # -- the three evaluators -------------------------------------------------------------

    def values(self, focus: Any, variables: dict[str, Any] | None = None, **hooks: Any) -> list:
        """Plain values: dicts for complex types, Python primitives (``Decimal`` for decimals),
        ISO strings for dates and times, FHIR Quantity dicts for quantities."""
        items = self._focus(focus, hooks.pop("focus_type", None))
        return [
            to_json(item) for item in self.run(self.context(items, None, None, variables, **hooks))
        ]

    def items(self, focus: Any, variables: dict[str, Any] | None = None, **hooks: Any) -> list:
        """The engine's own items (System values and FHIR node tuples)."""
        items = self._focus(focus, hooks.pop("focus_type", None))
        return self.run(self.context(items, None, None, variables, **hooks))

    def nodes(self, resource: dict, env: Env = NO_ENV) -> Nodes:
        """Typed nodes of the expression on a resource (search values, patch targets)."""
        resource_type = resource.get("resourceType")
        structure = self.model.types.get(resource_type)  # type: ignore[arg-type]
        if structure is not None and structure is self._start:
            return self._direct(resource)  # type: ignore[misc]
        else:
            root = [(resource, resource_type, structure, None, None, None)]
            try:
                items = self.fn(Ctx(root, root, root, env))
            except _ERRORS as exc:
                message = f"FHIRPath expression {self.expression!r} failed: {exc}"
                raise FhirPathError(message) from exc
        return [
            Node(i[0], i[1], i[2], None if i[3] is None else (i[3], i[4], i[5]))
            if type(i) is tuple
            else _to_node(i)
            for i in items
            if type(i) is not tuple or i[0] is not None
        ]

    def nodes_on(
        self, nodes: Nodes, resource: dict, resolver: Resolver | Env | None = None
    ) -> Nodes:
        """Typed nodes relative to given focus nodes (composite search parameter components)."""
        focus = [(n.value, n.type, n.structure, *(n.loc or (None, None, None))) for n in nodes]
        if isinstance(resolver, Env):  # (CompiledPath hands in its environment)
            env = resolver
        else:
            env = NO_ENV if resolver is None else Env(None, resolver)
        # %resource is made only for an expression that reads it (or resolve()s)
        root = [node_of(resource, self.model)] if self.needs_resource else focus
        return [_to_node(item) for item in self.run(Ctx(focus, root, root, env))]

    def test(self, ctx: Ctx) -> bool:
        """An invariant: true when the result is not empty and every item is true."""
        result = self.run(ctx)
        if not result:
            return False
        return all(not (item is not True and to_system(item) is not True) for item in result)

    def _focus(self, focus: Any, focus_type: str | None) -> list:
        if focus_type is not None and not isinstance(focus, list):
            return [node_of(focus, self.model, focus_type)]
        return _items(focus, self.model)


# -- compilation and its cache --------------------------------------------------------------------


def _compile_uncached(
    expression: str, context_type: str | None, strict: bool, model: Model
) -> CompiledExpression:
    try:
        tree = parse(expression)
    except ParseError as exc:
        raise FhirPathError(f"FHIRPath expression {expression!r} is not valid: {exc}") from exc
    compiler = _compiler(model, strict)
    stype = compiler.stype(context_type) if context_type else None
    try:
        fn, _ = compiler.compile(tree, stype)
    except SemanticError as exc:
        raise FhirPathError(f"FHIRPath expression {expression!r} is not valid: {exc}") from exc
    except RecursionError as exc:
        raise FhirPathError(f"FHIRPath expression {expression!r} is too deep") from exc
    compiled = CompiledExpression(expression, fn, model, context_type)
    compiled.needs_resource = needs_resource(tree)
    return compiled


_COMPILERS: dict[tuple[int, bool], Compiler] = {}


def _compiler(model: Model, strict: bool) -> Compiler:
    key = (id(model), strict)
    compiler = _COMPILERS.get(key)
    if compiler is None:
        compiler = _COMPILERS[key] = Compiler(model, strict)
    return compiler


@lru_cache(maxsize=8192)
def _cached(
    expression: str, context_type: str | None, strict: bool, model_id: int
) -> CompiledExpression | FhirPathError:
    model = _MODELS[model_id]
    try:
        return _compile_uncached(expression, context_type, strict, model)
    except FhirPathError as exc:  # remembered too: invalid expressions are not recompiled
        return exc


_MODELS: dict[int, Model] = {}


def compile(
    expression: str,
    context_type: str | None = None,
    *,
    strict: bool = True,
    model: Model | None = None,
) -> CompiledExpression:
    """Compile ``expression`` for a context of ``context_type`` (a resource or data type name, or
    an element path such as ``Patient.contact``; None when unknown). Cached.

    ``strict`` (the default) rejects element names the context type does not have, including
    the JSON names of choice elements (``valueQuantity``: FHIRPath says ``value`` or
    ``value.ofType(Quantity)``); ``strict=False`` accepts those and yields nothing for names
    that do not exist."""
    if not isinstance(expression, str):
        raise FhirPathError("a FHIRPath expression must be a string")
    model = model or r4_model()
    _MODELS.setdefault(id(model), model)
    compiled = _cached(expression, context_type, strict, id(model))
    if isinstance(compiled, FhirPathError):
        raise FhirPathError(str(compiled))
    return compiled


def check(expression: str, context_type: str | None = None, *, strict: bool = True) -> None:
    """Raise ``FhirPathError`` if ``expression`` does not parse, uses an unknown function or a
    wrong number of arguments, or (with ``context_type``) names elements the type does not
    have."""
    compile(expression, context_type, strict=strict)


def evaluate(
    expression: str,
    focus: Any,
    variables: dict[str, Any] | None = None,
    *,
    resolver: Resolver | None = None,
    terminology: Terminology | None = None,
    validator: Validator | None = None,
    trace: Callable[[str, list], None] | None = None,
    focus_type: str | None = None,
    strict: bool = True,
) -> list[Any]:
    """The values of ``expression`` on ``focus`` (a resource, an element, or a list of them).

    ``variables`` are the ``%name`` environment variables (JSON values; ``%resource``,
    ``%rootResource`` and ``%context`` default to ``focus``). Hooks: ``resolver(reference) ->
    resource | None`` for ``resolve()`` beyond contained resources and Bundle entries (pass one
    that goes through the guard), ``terminology`` (``expand(url)`` -> (system, code) pairs, e.g.
    ``terminology.catalog.Catalog``) for ``memberOf()``, ``validator(value, profile_url) ->
    bool`` for ``conformsTo()``, ``trace(name, values)`` for ``trace()``. ``focus_type`` types a
    focus that is not a resource (``"Questionnaire.item"``, ``"Coding"``)."""
    context_type = focus_type
    if context_type is None and isinstance(focus, dict):
        resource_type = focus.get("resourceType")
        context_type = resource_type if isinstance(resource_type, str) else None
    compiled = compile(expression, context_type, strict=strict)
    return compiled.values(
        focus,
        variables,
        resolver=resolver,
        terminology=terminology,
        validator=validator,
        trace=trace,
        focus_type=focus_type,
    )


async def evaluate_async(
    expression: str,
    focus: Any,
    variables: dict[str, Any] | None = None,
    *,
    resolver: Callable[[str], Any] | None = None,
    **options: Any,
) -> list[Any]:
    """``evaluate`` with an async ``resolver`` (e.g. a guarded store read): the expression runs
    in a worker thread and each ``resolve()`` waits for the resolver on the event loop."""
    import asyncio

    loop = asyncio.get_running_loop()
    sync_resolver: Resolver | None = None
    if resolver is not None:

        def sync_resolver(reference: str) -> dict[str, Any] | None:
            result = resolver(reference)
            if asyncio.iscoroutine(result):
                return asyncio.run_coroutine_threadsafe(result, loop).result()
            return result

    return await asyncio.to_thread(
        evaluate, expression, focus, variables, resolver=sync_resolver, **options
    )


# -- typed nodes for search extraction and FHIRPath Patch -----------------------------------------


def reference_type(reference: Any, model: Model) -> str | None:
    """The resource type a literal reference points at, as far as its text tells."""
    if not isinstance(reference, str) or not reference or reference.startswith("#"):
        return None
    parts = reference.split("?", 1)[0].split("/")
    for index in range(len(parts) - 2, -1, -1):
        if model.is_resource(parts[index]):
            return parts[index]
    return None


class CompiledPath:
    """A compiled expression for search extraction and patch: call it with a resource to get
    typed nodes. It is compiled for each resource type it meets (member names checked against
    that type, JSON keys looked up once). ``resolve()`` needs no store here: it yields the
    contained resource, or a stub of the type the reference names (enough for
    ``where(resolve() is Patient)``)."""

    __slots__ = ("_by_type", "_env", "_generic", "_model", "expression")

    def __init__(self, expression: str, model: Model) -> None:
        self.expression = expression
        self._model = model
        self._generic = compile(expression, None, model=model)  # raises for invalid syntax
        self._by_type: dict[str, CompiledExpression] = {}

        def stub(reference: str) -> dict[str, Any] | None:
            target = reference_type(reference, model)
            return {"resourceType": target} if target else None

        self._env = Env(resolver=stub)

    def _for(self, resource: dict) -> CompiledExpression:
        resource_type = resource.get("resourceType")
        compiled = self._by_type.get(resource_type)  # type: ignore[arg-type]
        if compiled is None:
            compiled = self._generic
            if isinstance(resource_type, str) and resource_type in self._model.types:
                # raises (every time, from the cache) for names this type does not have
                compiled = compile(self.expression, resource_type, model=self._model)
            self._by_type[resource_type] = compiled  # type: ignore[index]
        return compiled

    def __call__(self, resource: dict) -> Nodes:
        compiled = self._by_type.get(resource.get("resourceType"))  # type: ignore[arg-type]
        if compiled is None:
            compiled = self._for(resource)
        return compiled.nodes(resource, self._env)

    def evaluate_on(self, nodes: Nodes, resource: dict) -> Nodes:
        return self._generic.nodes_on(nodes, resource, self._env)


PathEvaluator = CompiledPath


def compile_expression(expression: str, model: Model) -> CompiledPath:
    """Compile a search parameter or patch path; raises ``FhirPathError``."""
    return CompiledPath(expression, model)


def items_of(value: Any, model: Model | None = None) -> list:
    """Values as engine items (for callers that build a context themselves)."""
    return _items(value, model or r4_model())


__all__ += ["items_of", "system_value"]
