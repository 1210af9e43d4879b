"""FHIRPath for the server: compiled fast paths, with fhirpathpy for everything else."""

from __future__ import annotations

from typing import Any

import fhirpathpy
from fhirpathpy.models import models as _fhirpath_models

from fhir_server.fhirpath.compiler import CompiledPath, Node, Nodes, Unsupported, compile_path
from fhir_server.model.structure import Model

__all__ = ["R4_MODEL", "Node", "Nodes", "PathEvaluator", "compile_expression"]

R4_MODEL = _fhirpath_models["r4"]  # fhirpathpy needs the model to know choice types


class _FallbackPath:
    """fhirpathpy for expressions outside the compiled subset; types are inferred from shape."""

    __slots__ = ("_fn", "expression")

    def __init__(self, expression: str) -> None:
        self.expression = expression
        self._fn = fhirpathpy.compile(expression, model=R4_MODEL)

    def __call__(self, resource: dict) -> Nodes:
        return [Node(v, _infer_type(v)) for v in self._fn(resource)]

    def evaluate_on(self, nodes: Nodes, resource: dict) -> Nodes:
        out: Nodes = []
        for node in nodes:
            out.extend(
                Node(v, _infer_type(v)) for v in self._fn(node.value, {"resource": resource})
            )
        return out


def _infer_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, (float,)):
        return "decimal"
    if isinstance(value, str):
        return "string"
    if isinstance(value, dict):
        if "coding" in value or ("text" in value and len(value) == 1):
            return "CodeableConcept"
        if "reference" in value or ("identifier" in value and "display" in value):
            return "Reference"
        if "start" in value or "end" in value:
            return "Period"
        if "value" in value and ("unit" in value or "code" in value):
            return "Quantity"
        if "code" in value or ("system" in value and "value" not in value):
            return "Coding"
        if "value" in value and "system" in value:
            return "Identifier"
        if "family" in value or "given" in value:
            return "HumanName"
        if "line" in value or "city" in value or "postalCode" in value:
            return "Address"
        if "resourceType" in value:
            return value["resourceType"]
    return "Element"


PathEvaluator = CompiledPath | _FallbackPath


def compile_expression(expression: str, model: Model) -> PathEvaluator:
    try:
        return compile_path(expression, model)
    except Unsupported:
        return _FallbackPath(expression)


# -- full evaluation (SDC calculatedExpression, $populate, $apply conditions...) ---------------


class FhirPathError(ValueError):
    """An expression that does not parse, or fails when evaluated (the message says where)."""


_FULL_CACHE: dict[str, Any] = {}


def _syntax_check(expression: str) -> None:
    """Parse with the FHIRPath grammar and fail on the first syntax error: fhirpathpy's own
    parse() reports nothing (ANTLR's default error listener), so ``(((`` or an unclosed
    ``where(`` used to pass ``check``."""
    from antlr4 import CommonTokenStream, InputStream
    from antlr4.error.ErrorListener import ErrorListener
    from fhirpathpy.parser.generated.FHIRPathLexer import FHIRPathLexer
    from fhirpathpy.parser.generated.FHIRPathParser import FHIRPathParser

    class Strict(ErrorListener):
        def syntaxError(self, recognizer, offendingSymbol, line, column, msg, e):
            raise FhirPathError(
                f"FHIRPath expression {expression!r} is not valid: at character {column + 1}: {msg}"
            )

    listener = Strict()
    lexer = FHIRPathLexer(InputStream(expression))
    lexer.removeErrorListeners()
    lexer.addErrorListener(listener)
    parser = FHIRPathParser(CommonTokenStream(lexer))
    parser.removeErrorListeners()
    parser.addErrorListener(listener)
    parser.entireExpression()  # the whole text, up to EOF


def _compiled(expression: str) -> Any:
    fn = _FULL_CACHE.get(expression)
    if fn is None:
        _syntax_check(expression)
        try:
            fn = fhirpathpy.compile(expression, model=R4_MODEL)
        except Exception as exc:  # fhirpathpy raises assorted errors for bad syntax
            raise FhirPathError(f"FHIRPath expression {expression!r} is not valid: {exc}") from exc
        if len(_FULL_CACHE) > 4096:
            _FULL_CACHE.clear()
        _FULL_CACHE[expression] = fn
    return fn


def check(expression: str) -> None:
    """Raise FhirPathError if ``expression`` does not parse."""
    _compiled(expression)


def evaluate(expression: str, focus: Any, variables: dict[str, Any] | None = None) -> list[Any]:
    """The values (JSON: dicts for complex types, Python primitives) of ``expression`` on
    ``focus`` (a resource or element), with the ``%name`` environment ``variables``
    (``%resource`` and ``%context`` default to ``focus``). Compiled once per expression."""
    fn = _compiled(expression)
    env = {"resource": focus, "context": focus, "rootResource": focus, **(variables or {})}
    try:
        return list(fn(focus, env))
    except Exception as exc:
        raise FhirPathError(f"FHIRPath expression {expression!r} failed: {exc}") from exc
