"""Functions beyond R4 FHIRPath that questionnaire content written with other SDC tools uses:
the FHIRPath 2.0 aggregates ``sum()``, ``min()``, ``max()``, ``avg()`` and SDC's ``weight()``
(formerly ``ordinal()``), the score of a coded answer.

They are registered in the one function library (``engine.FUNCTIONS``) when the package is
imported; R4 expressions never name them, so the official R4 suite is unaffected.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from fhir_server.fhirpath.engine import (
    Compiler,
    Ctx,
    Fn,
    Item,
    SType,
    arithmetic,
    compare,
    function,
    to_system,
)

ITEM_WEIGHT = "http://hl7.org/fhir/StructureDefinition/itemWeight"
ORDINAL_VALUE = "http://hl7.org/fhir/StructureDefinition/ordinalValue"  # its R4 predecessor
WEIGHT_URLS = (ITEM_WEIGHT, ORDINAL_VALUE)
NUMBERS = (int, Decimal)


def _total(items: list) -> Any:
    total: Any = None
    for item in items:
        value = to_system(item)
        total = value if total is None else arithmetic("+", total, value)
    return total


@function("sum", 0, 0)
def _sum(c: Compiler, base: Fn, base_st: SType, args: tuple, st: SType) -> tuple:
    def fn(ctx: Ctx) -> list:
        total = _total(base(ctx))
        return [0 if total is None else total]  # the sum of nothing is 0

    return fn, None


@function("avg", 0, 0)
def _avg(c: Compiler, base: Fn, base_st: SType, args: tuple, st: SType) -> tuple:
    def fn(ctx: Ctx) -> list:
        items = base(ctx)
        total = _total(items)
        if total is None:
            return []
        return [arithmetic("/", total, len(items))]

    return fn, None


def _extreme(sign: int) -> Any:
    def builder(c: Compiler, base: Fn, base_st: SType, args: tuple, st: SType) -> tuple:
        def fn(ctx: Ctx) -> list:
            best: Item = None
            for item in base(ctx):
                order = None if best is None else compare(item, best)
                if best is None or (order is not None and order * sign > 0):
                    best = item
            return [] if best is None else [to_system(best)]

        return fn, None

    return builder


function("min", 0, 0)(_extreme(-1))
function("max", 0, 0)(_extreme(1))


def _weight_extension(element: Any) -> Any:
    if type(element) is not dict:
        return None
    for extension in element.get("extension", ()):
        if type(extension) is dict and extension.get("url") in WEIGHT_URLS:
            value = extension.get("valueDecimal", extension.get("valueInteger"))
            if isinstance(value, (int, float, Decimal)) and not isinstance(value, bool):
                return Decimal(str(value)) if isinstance(value, float) else value
    return None


def _options(items: Any) -> Any:
    """Every answerOption of a Questionnaire's items, nested ones included."""
    for item in items if type(items) is list else ():
        if type(item) is not dict:
            continue
        yield from (o for o in item.get("answerOption", ()) if type(o) is dict)
        yield from _options(item.get("item"))


def _same_coding(a: dict, b: Any) -> bool:
    if type(b) is not dict or a.get("code") != b.get("code"):
        return False
    return not (a.get("system") and b.get("system")) or a.get("system") == b.get("system")


def weight_of(value: Any, questionnaires: list) -> Any:
    """SDC weight(): the itemWeight (or ordinalValue) on the Coding itself, else on the
    answerOption of %questionnaire offering that Coding (option or its valueCoding)."""
    found = _weight_extension(value)
    if found is not None or type(value) is not dict or "code" not in value:
        return found
    for questionnaire in questionnaires:
        source = questionnaire[0] if type(questionnaire) is tuple else questionnaire
        if type(source) is not dict:
            continue
        for option in _options(source.get("item")):
            if _same_coding(value, option.get("valueCoding")):
                found = _weight_extension(option)
                if found is None:
                    found = _weight_extension(option["valueCoding"])
                if found is not None:
                    return found
    return None


def _weight(c: Compiler, base: Fn, base_st: SType, args: tuple, st: SType) -> tuple:
    def fn(ctx: Ctx) -> list:
        questionnaires = ctx.env.variables.get("questionnaire", ())
        out = []
        for item in base(ctx):
            value = item[0] if type(item) is tuple else item
            if isinstance(value, NUMBERS) and not isinstance(value, bool):
                out.append(value)  # an answer that is already a number weighs itself
                continue
            weight = weight_of(value, questionnaires)
            if weight is not None:  # none found: nothing, as FHIRPath does for missing values
                out.append(weight)
        return out

    return fn, None


function("weight", 0, 0)(_weight)
function("ordinal", 0, 0)(_weight)  # its name in SDC 3.0
