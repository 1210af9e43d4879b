"""The official FHIRPath R4 test suite (``suite/tests-fhir-r4.xml``, copied from
FHIR/fhir-test-cases r4/fhirpath with JSON renderings of its inputs): loading the cases and
judging an engine's answer. Used by ``test_suite.py`` and ``bench/fhirpath_bench.py``."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any

SUITE = Path(__file__).parent / "suite"


@dataclass(frozen=True)
class Case:
    group: str
    name: str
    expression: str
    inputfile: str | None
    invalid: str | None  # syntax | semantic | execution | true
    outputs: tuple[tuple[str | None, str], ...]  # (type, text)
    predicate: bool = False
    ordered: bool = True
    mode: str | None = None
    extra: dict[str, str] = field(default_factory=dict, compare=False)

    @property
    def id(self) -> str:
        return f"{self.group}/{self.name}"


@cache
def cases() -> tuple[Case, ...]:
    root = ET.parse(SUITE / "tests-fhir-r4.xml").getroot()
    out: list[Case] = []
    seen: dict[str, int] = {}
    for group in root.iter("group"):
        for test in group.findall("test"):
            expression = test.find("expression")
            assert expression is not None
            name = test.get("name", "")
            count = seen.get(f"{group.get('name')}/{name}", 0)
            seen[f"{group.get('name')}/{name}"] = count + 1
            if count:
                name = f"{name}#{count + 1}"
            out.append(
                Case(
                    group=group.get("name", ""),
                    name=name,
                    expression=expression.text or "",
                    inputfile=test.get("inputfile"),
                    invalid=expression.get("invalid"),
                    outputs=tuple((o.get("type"), o.text or "") for o in test.findall("output")),
                    predicate=test.get("predicate") == "true",
                    ordered=test.get("ordered") != "false",
                    mode=test.get("mode") or expression.get("mode"),
                )
            )
    return tuple(out)


@cache
def _input(name: str) -> str:
    path = SUITE / "inputs" / name.replace(".xml", ".json")
    return path.read_text()


def load_input(name: str | None) -> dict[str, Any] | None:
    """A fresh copy of the case's input resource (decimals as ``Decimal``, as the server
    parses them)."""
    if name is None:
        return None
    return json.loads(_input(name), parse_float=Decimal)


# -- judging answers -----------------------------------------------------------------------------

_TYPE_ALIASES = {
    "Boolean": "boolean",
    "String": "string",
    "Integer": "integer",
    "Decimal": "decimal",
    "Date": "date",
    "DateTime": "dateTime",
    "Time": "time",
    "Quantity": "Quantity",
}


def render(item: Any) -> tuple[str, str]:
    """(type, text) of an engine item, in the suite's notation."""
    from fhir_server.fhirpath.engine import to_system, type_of
    from fhir_server.fhirpath.values import Quantity, Temporal, format_decimal

    namespace, name = type_of(item)
    type_name = _TYPE_ALIASES.get(name, name) if namespace == "System" else name
    value = to_system(item)
    if value is True or value is False:
        return type_name, "true" if value else "false"
    if isinstance(value, Decimal):
        return type_name, format_decimal(value)
    if isinstance(value, Temporal):
        return type_name, ("@T" if value.kind == "time" else "@") + str(value)
    if isinstance(value, Quantity):
        return type_name, str(value)
    if isinstance(value, (int, str)):
        return type_name, str(value)
    return type_name, json.dumps(value, sort_keys=True, default=str)


_COMPATIBLE = {
    "code": {"string", "code"},
    "id": {"string", "id"},
    "string": {"string", "code", "id", "uri", "markdown"},
    "dateTime": {"dateTime", "instant"},
}


def same(
    expected: tuple[tuple[str | None, str], ...], got: list[tuple[str, str]], ordered: bool
) -> bool:
    if len(expected) != len(got):
        return False
    pairs_expected = list(expected)
    pairs_got = list(got)
    if not ordered:
        pairs_expected.sort(key=lambda p: p[1])
        pairs_got.sort(key=lambda p: p[1])
    for (etype, etext), (gtype, gtext) in zip(pairs_expected, pairs_got, strict=True):
        if etext.strip() != gtext and not (etype == "decimal" and _same_number(etext, gtext)):
            return False
        if etype is not None and gtype != etype and gtype not in _COMPATIBLE.get(etype, ()):
            return False
    return True


def _same_number(a: str, b: str) -> bool:
    try:
        return Decimal(a) == Decimal(b)
    except ArithmeticError:
        return False
