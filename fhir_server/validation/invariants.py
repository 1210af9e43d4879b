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

Expressions are evaluated with fhirpathpy, each compiled once per process. A few invariants have
a native implementation that replaces their expression: the be-core identifier invariants
(``be-inv-SSIN``, ``be-inv-NIHDI``, ``be-inv-CBE``) only check digit patterns, the native
versions also check the check digits (``identifiers.py``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

import fhirpathpy
from fhirpathpy.engine.nodes import ResourceNode

from fhir_server.definitions import load_r4
from fhir_server.fhirpath import R4_MODEL
from fhir_server.validation import identifiers
from fhir_server.validation.fastpath import Fallback, Unsupported, compile_invariant

log = logging.getLogger(__name__)

GENERIC_PREFIXES = ("ele-", "dom-", "ext-", "txt-")


def _has_value(inputs: list[Any]) -> bool:
    return len(inputs) == 1 and inputs[0] is not None and not isinstance(inputs[0], dict)


# Functions the R4 invariants use that fhirpathpy does not implement (or implements noisily).
USER_FUNCTIONS = {
    "hasValue": {"fn": _has_value, "arity": {0: []}},
    "htmlChecks": {"fn": lambda inputs: True, "arity": {0: []}},
    "trace": {"fn": lambda inputs, name=None: inputs, "arity": {1: ["String"]}},
}


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


@cache
def _fast(expression: str) -> Callable[..., list[Any]] | None:
    try:
        return compile_invariant(expression)
    except Unsupported:
        return None


@cache
def _compiled(expression: str) -> Callable[..., list[Any]]:
    return fhirpathpy.compile(
        expression, model=R4_MODEL, options={"userInvocationTable": USER_FUNCTIONS}
    )


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
    _fn: Callable[..., list[Any]] | None = None
    broken: str | None = None  # why the expression cannot be evaluated
    fast: Callable[..., list[Any]] | None = None
    use_fast: bool = True

    def evaluate(
        self, value: Any, type_path: str, partner: Any, resource: Any, root: Any
    ) -> str | None:
        """None when the invariant holds, otherwise what is wrong."""
        if self.native is not None:
            return self.native(value)
        if self.use_fast and self.fast is not None:
            env = {"resource": resource, "root": root, "type": type_path, "this": value}
            try:
                result = self.fast([] if value is None else [value], env)
            except Fallback:
                pass
            else:
                return None if result and all(item is True for item in result) else self.human
        return self.evaluate_full(value, type_path, partner, resource, root)

    def evaluate_full(
        self, value: Any, type_path: str, partner: Any, resource: Any, root: Any
    ) -> str | None:
        """Evaluate with fhirpathpy (also what the fast path is tested against)."""
        if self.broken is not None:
            return None
        if self._fn is None:
            try:
                self._fn = _compiled(self.expression)
            except Exception as exc:  # fhirpathpy raises plain Exceptions on syntax errors
                self.broken = f"the expression does not compile: {exc}"
                log.warning("invariant %s cannot be compiled: %s", self.key, exc)
                return None
        node = ResourceNode.create_node(value, type_path, partner)
        context = {"resource": resource, "rootResource": root}
        try:
            result = self._fn(node, context)
        except Exception as exc:  # unsupported function, type error...
            return f"could not be evaluated ({exc})"
        if result and all(item is True for item in result):
            return None
        return self.human


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
                fast=_fast(expression),
            )
        )
    return out


def _own_base_invariant(constraint: dict[str, Any], profiled_type: str) -> bool:
    """An R4 invariant defined by the profiled resource type itself (not a data type's)."""
    source = constraint.get("source") or ""
    if source:
        return source.rsplit("/", 1)[-1] == profiled_type
    return True
