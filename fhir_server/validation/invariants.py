"""Invariants (``ElementDefinition.constraint``) for the profile validator.

Which invariants run (see docs/validation.md):

* every invariant a profile chain adds beyond the R4 base definitions (be-core, BiB, stored
  profiles, extension definitions);
* the R4 base invariants of the profiled resource's own elements (``pat-1``, ``que-1``..``que-13``,
  ``cpl-3``, ``inv-1``...), which are few and cheap because they only run where their element
  occurs;
* not the generic ``ele-1``/``dom-*``/``ext-1``/``txt-*`` invariants (the structural validator
  checks what matters of them on every write) nor the invariants of data types (``per-1``,
  ``ref-1``...).

Expressions are evaluated by the server's FHIRPath engine (``fhir_server.fhirpath``), each
compiled once per expression and context type into closures over the JSON (a few µs per
evaluation). A few invariants have a native implementation that replaces their expression: the
be-core identifier invariants (``be-inv-SSIN``, ``be-inv-NIHDI``, ``be-inv-CBE``) only check
digit patterns, the native versions also check the check digits (``identifiers.py``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from fhir_server.definitions import load_r4
from fhir_server.fhirpath import CompiledExpression, FhirPathError
from fhir_server.fhirpath import compile as compile_fhirpath
from fhir_server.fhirpath.engine import ENGINE_ERRORS, Ctx, Env
from fhir_server.model.structure import r4_model
from fhir_server.validation import identifiers

log = logging.getLogger(__name__)

GENERIC_PREFIXES = ("ele-", "dom-", "ext-", "txt-")


@cache
def base_constraint_keys() -> frozenset[str]:
    """Every constraint key defined by the R4 base resources and data types."""
    keys: set[str] = set()
    for name in ("profiles-types", "profiles-resources"):
        for sd in load_r4(name):
            for element in sd.get("snapshot", {}).get("element", ()):
                for constraint in element.get("constraint", ()):
                    keys.add(constraint["key"])
    return frozenset(keys)


_ENV: Env | None = None
_NONE: list = []


def _environment() -> Env:
    """memberOf() and subsumes() in invariants use the packaged terminology."""
    global _ENV
    if _ENV is None:
        from fhir_server.fhirpath.hooks import terminology_hook

        _ENV = Env(terminology=terminology_hook())
    return _ENV


@cache
def _context_node(type_path: str) -> tuple[str, Any]:
    """(type code, structure) of an invariant's context: a type name or an element path."""
    model = r4_model()
    if type_path in model.types:
        return type_path, model.types[type_path]
    element = model.element_at(type_path) if "." in type_path else None
    if element is not None:
        code = element.types[0] if element.types else ""
        return code, element.children or model.types.get(code)
    return type_path, None


def _holder(resource: Any) -> list:
    """``%resource`` / ``%rootResource`` as engine items."""
    if not isinstance(resource, dict):
        return []
    resource_type = resource.get("resourceType")
    return [(resource, resource_type, r4_model().types.get(resource_type), None, None, None)]


def compile_invariant(expression: str, type_path: str) -> CompiledExpression:
    """The compiled expression of an invariant on elements of ``type_path`` (cached by the
    engine); raises ``FhirPathError``."""
    return compile_fhirpath(expression, type_path or None)


NativeCheck = Callable[[Any], "str | None"]


def _identifier_check(systems: frozenset[str]) -> NativeCheck:
    def check(value: Any) -> str | None:
        return identifiers.check_identifier(value, systems)

    return check


NATIVE: dict[str, NativeCheck] = {
    "be-inv-SSIN": _identifier_check(identifiers.SSIN_SYSTEMS),
    "be-inv-NIHDI": _identifier_check(identifiers.NIHDI_SYSTEMS),
    "be-inv-CBE": _identifier_check(identifiers.CBE_SYSTEMS),
}


@dataclass(slots=True)
class Invariant:
    key: str
    severity: str  # error | warning
    human: str
    expression: str
    native: NativeCheck | None = None
    broken: str | None = None  # why the expression cannot be evaluated
    _compiled: dict[str, tuple[Any, str, Any, bool]] = field(default_factory=dict, repr=False)

    def evaluate(
        self, value: Any, type_path: str, partner: Any, resource: Any, root: Any
    ) -> str | None:
        """None when the invariant holds, otherwise what is wrong."""
        if self.native is not None:
            return self.native(value)
        if self.broken is not None:
            return None
        entry = self._compiled.get(type_path)
        if entry is None:
            try:
                compiled = compile_invariant(self.expression, type_path)
            except FhirPathError as exc:
                self.broken = f"the expression does not compile: {exc}"
                log.warning("invariant %s cannot be compiled: %s", self.key, exc)
                return None
            code, structure = _context_node(type_path)
            entry = (compiled.fn, code, structure, compiled.needs_resource)
            self._compiled[type_path] = entry
        fn, code, structure, needs_resource = entry
        if partner is not None:
            item = (value, code, structure, {"_v": partner}, "v", None)
        else:
            item = (value, code, structure, None, None, None)
        if needs_resource:
            ctx = Ctx([item], _holder(resource), _holder(root), _ENV or _environment())
        else:
            ctx = Ctx([item], _NONE, _NONE, _ENV or _environment())
        try:
            result = fn(ctx)
        except ENGINE_ERRORS as exc:  # a type error, a collection where one value is needed...
            return f"could not be evaluated ({exc})"
        if not result:
            return self.human
        for found in result:
            if found is not True and (type(found) is not tuple or found[0] is not True):
                return self.human
        return None

    # the engine is the reference now; kept for callers of the former two-engine interface
    evaluate_full = evaluate


def select_invariants(
    constraints: list[dict[str, Any]], profiled_type: str, base_keys: frozenset[str]
) -> list[Invariant]:
    """The invariants of one element that the profile validator evaluates."""
    out = []
    for constraint in constraints:
        key = constraint.get("key", "")
        expression = constraint.get("expression")
        if key in NATIVE:
            out.append(
                Invariant(
                    key,
                    constraint.get("severity", "error"),
                    constraint.get("human", ""),
                    expression or "",
                    native=NATIVE[key],
                )
            )
            continue
        if not expression or key.startswith(GENERIC_PREFIXES):
            continue
        if key in base_keys and not _own_base_invariant(constraint, profiled_type):
            continue
        out.append(
            Invariant(
                key,
                constraint.get("severity", "error"),
                constraint.get("human", ""),
                expression,
            )
        )
    return out


def _own_base_invariant(constraint: dict[str, Any], profiled_type: str) -> bool:
    """An R4 invariant defined by the profiled resource type itself (not a data type's)."""
    source = constraint.get("source") or ""
    if source:
        return source.rsplit("/", 1)[-1] == profiled_type
    return True
