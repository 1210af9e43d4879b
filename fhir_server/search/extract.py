"""Search index values of a resource, computed at write time for every applicable parameter.

The conversion rules follow the R4 search page: which parts of a Coding, Identifier, HumanName,
Address, Period, Quantity... each parameter type matches on. Values for modifiers that need their
own index (token ``:text``, ``:of-type``, reference ``:identifier``) are stored under the parameter
code with the modifier appended, so stores need no FHIR knowledge.
"""

from __future__ import annotations

import itertools
import math
import sys
from decimal import Decimal
from typing import Any

from fhir_server.fhirpath import Node
from fhir_server.model.structure import Model
from fhir_server.search.dates import MAX_US, MIN_US, date_range
from fhir_server.search.geo import unit_vector
from fhir_server.search.normalize import MAX_INDEXED_CHARS, normalize, phonetic
from fhir_server.search.registry import Registry, SearchParam
from fhir_server.search.text import narrative_text, strings_of, terms_of
from fhir_server.store.protocol import IndexRows

QUANTITY_TYPES = frozenset(
    {"Quantity", "Age", "Count", "Distance", "Duration", "SimpleQuantity", "MoneyQuantity"}
)
STRING_PARTS = {
    "HumanName": ("family", "given", "prefix", "suffix", "text"),
    "Address": ("line", "city", "district", "state", "postalCode", "country", "text"),
}
CURRENCY_SYSTEM = "urn:iso:std:iso:4217"
DATE_STRING_TYPES = frozenset({"date", "dateTime", "instant"})
URI_TYPES = frozenset({"uri", "url", "canonical", "oid", "uuid"})
TEXT_SUFFIX = ":text"
LAST_UPDATED_URL = "http://hl7.org/fhir/SearchParameter/Resource-lastUpdated"
OF_TYPE_SUFFIX = ":of-type"
IDENTIFIER_SUFFIX = ":identifier"


def _finite(value: int | float | Decimal) -> float:
    """A number as an indexable float: beyond the float range (FHIR decimals may reach 9e308)
    it is clamped to the largest float, as stores cannot carry infinity (JSON has none)."""
    number = float(value)
    if number in (math.inf, -math.inf):
        return math.copysign(sys.float_info.max, number)
    return number


class Extractor:
    def __init__(self, registry: Registry, base_url: str) -> None:
        self.registry = registry
        self.model: Model = registry.model
        self.base_url = base_url.rstrip("/")

    def extract(
        self, resource: dict, only: set[str] | None = None, last_updated: int | None = None
    ) -> IndexRows:
        """Index rows of every parameter of the resource's type (or only the named ones).

        ``last_updated`` (µs), when the caller knows it, saves parsing meta.lastUpdated back.
        """
        rows = IndexRows()
        resource_type = resource["resourceType"]
        group_counter = itertools.count(1)
        components: dict[tuple[str, int], list[Node]] = {}  # see _composite
        for param in self.registry.indexed_params(resource_type):
            if only is not None and param.code not in only:
                continue
            if (
                last_updated is not None
                and param.code == "_lastUpdated"
                and (param.url == LAST_UPDATED_URL)
            ):  # millisecond precision, as written by stamp_meta
                rows.dates.append(("_lastUpdated", last_updated, last_updated + 999, 0))
                continue
            roots = param.roots
            if roots is not None and roots.isdisjoint(resource):
                continue
            probe = param.probe
            if probe is not None:
                inner = resource.get(probe[0])
                if isinstance(inner, dict) and probe[1].isdisjoint(inner):
                    continue
            if (  # the node is the resource itself: a component it cannot have skips it
                param.type == "composite"
                and param.expression == resource_type
                and any(
                    c.keys is not None and c.keys.isdisjoint(resource) for c in param.components
                )
            ):
                continue
            try:
                nodes = param.evaluator(resource)  # type: ignore[misc]
            except Exception:  # a faulty custom expression must not block writes
                continue
            if not nodes:
                continue
            if param.type == "composite":
                self._composite(param, nodes, resource, rows, group_counter, components)
            elif param.code == "phonetic" and param.type == "string":
                self._phonetic(param.code, nodes, rows)
            else:
                self._add(param.type, param.code, nodes, rows, 0, resource)
        return rows

    def _composite(
        self,
        param: SearchParam,
        nodes: list[Node],
        resource: dict,
        rows: IndexRows,
        group_counter: itertools.count,
        memo: dict[tuple[str, int], list[Node]],
    ) -> None:
        for node in nodes:
            value = node.value
            if isinstance(value, dict) and any(
                c.keys is not None and c.keys.isdisjoint(value) for c in param.components
            ):
                continue  # a component this node cannot have: no combination
            values = []
            for component in param.components:
                # composites share components (Observation's code-value-* all read `code` of
                # the same node): each is evaluated once per node and resource
                key = (component.evaluator.expression, id(node.value))
                found = memo.get(key)
                if found is None:
                    found = memo[key] = component.evaluator.evaluate_on([node], resource)
                values.append(found)
            if not all(values):
                continue
            for combination in itertools.product(*values):
                group = next(group_counter)
                for component, value in zip(param.components, combination, strict=True):
                    self._add(component.type, component.code, [value], rows, group, resource)

    # -- per parameter type ---------------------------------------------------------------

    def _add(
        self, kind: str, code: str, nodes: list[Node], rows: IndexRows, group: int, resource: dict
    ) -> None:
        adder = getattr(self, "_" + kind, None)
        if adder is None:
            return
        for node in nodes:
            if node.value is not None:
                adder(code, node, rows, group, resource)

    def _string(self, code: str, node: Node, rows: IndexRows, group: int, _r: dict) -> None:
        value = node.value
        if isinstance(value, str):
            rows.strings.append((code, normalize(value), value[:MAX_INDEXED_CHARS], group))
            return
        if not isinstance(value, dict):
            return
        for part in STRING_PARTS.get(node.type, ()):
            item = value.get(part)
            for text in item if isinstance(item, list) else (item,):
                if isinstance(text, str):
                    rows.strings.append((code, normalize(text), text[:MAX_INDEXED_CHARS], group))
        if node.type in ("CodeableConcept", "Coding") and isinstance(value.get("text"), str):
            rows.strings.append(
                (code, normalize(value["text"]), value["text"][:MAX_INDEXED_CHARS], group)
            )

    def _phonetic(self, code: str, nodes: list[Node], rows: IndexRows) -> None:
        """Names indexed by their phonetic key (each name part on its own)."""
        for node in nodes:
            value = node.value
            parts: list[str] = []
            if isinstance(value, str):
                parts.append(value)
            elif isinstance(value, dict):
                for part in ("family", "given", "text"):
                    item = value.get(part)
                    parts.extend(
                        p
                        for p in (item if isinstance(item, list) else [item])
                        if isinstance(p, str)
                    )
            for text in parts:
                key = phonetic(text)
                if key:
                    rows.strings.append((code, key, text[:MAX_INDEXED_CHARS], 0))

    def _token(self, code: str, node: Node, rows: IndexRows, group: int, _r: dict) -> None:
        value = node.value
        kind = node.type
        tokens = rows.tokens
        if isinstance(value, bool):
            tokens.append((code, "", "true" if value else "false", group))
        elif isinstance(value, str):
            tokens.append((code, "", value, group))
        elif not isinstance(value, dict):
            return
        elif kind == "CodeableConcept":
            for coding in value.get("coding", ()):
                self._coding(code, coding, rows, group)
            if isinstance(value.get("text"), str):
                self._text(code, value["text"], rows, group)
        elif kind == "Coding":
            self._coding(code, value, rows, group)
        elif kind == "Identifier":
            identifier_value = value.get("value")
            if isinstance(identifier_value, str):
                tokens.append((code, value.get("system") or "", identifier_value, group))
                id_type = value.get("type") or {}
                for coding in id_type.get("coding", ()):
                    if coding.get("code"):
                        tokens.append(
                            (
                                code + OF_TYPE_SUFFIX,
                                coding.get("system") or "",
                                f"{coding['code']}|{identifier_value}",
                                group,
                            )
                        )
            if isinstance((value.get("type") or {}).get("text"), str):
                self._text(code, value["type"]["text"], rows, group)
        elif kind == "ContactPoint":
            if isinstance(value.get("value"), str):
                tokens.append((code, value.get("system") or "", value["value"], group))
        elif kind == "Reference":
            ref = value.get("reference")
            if isinstance(ref, str):
                tokens.append((code, "", ref, group))

    def _coding(self, code: str, coding: Any, rows: IndexRows, group: int) -> None:
        if not isinstance(coding, dict):
            return
        if isinstance(coding.get("code"), str):
            rows.tokens.append((code, coding.get("system") or "", coding["code"], group))
        elif coding.get("system"):
            rows.tokens.append((code, coding["system"], "", group))
        if isinstance(coding.get("display"), str):
            self._text(code, coding["display"], rows, group)

    def _text(self, code: str, text: str, rows: IndexRows, group: int) -> None:
        rows.strings.append((code + TEXT_SUFFIX, normalize(text), text[:MAX_INDEXED_CHARS], group))

    def _reference(self, code: str, node: Node, rows: IndexRows, group: int, r: dict) -> None:
        value = node.value
        if isinstance(value, str):  # canonical / uri typed reference parameters
            self._canonical(code, value, rows, group)
            return
        if not isinstance(value, dict):
            return
        ref = value.get("reference")
        parsed = self.parse_reference(ref, r) if isinstance(ref, str) else None
        # a reference by identifier, to a contained resource or by display only still counts
        # as a value (for :missing), so it gets a row that matches no id
        rows.references.append((code, *(parsed or (None, None, None, None)), group))
        identifier = value.get("identifier")
        if isinstance(identifier, dict) and isinstance(identifier.get("value"), str):
            rows.tokens.append(
                (
                    code + IDENTIFIER_SUFFIX,
                    identifier.get("system") or "",
                    identifier["value"],
                    group,
                )
            )

    def _canonical(self, code: str, text: str, rows: IndexRows, group: int) -> None:
        url, _, version = text.partition("|")
        local = self.parse_reference(url, None)
        if local is not None and local[3] is None:
            rows.references.append((code, local[0], local[1], version or None, None, group))
        rows.references.append((code, None, None, version or None, url, group))

    def parse_reference(
        self, ref: str, resource: dict | None
    ) -> tuple[str | None, str | None, str | None, str | None] | None:
        """(type, id, version, absolute url) of a literal reference, or None if not indexable."""
        if ref.startswith("#") or ref.startswith("urn:"):
            return None
        absolute = "://" in ref
        if absolute and self.base_url and ref.startswith(self.base_url + "/"):
            ref = ref[len(self.base_url) + 1 :]
            absolute = False
        parts = ref.split("?", 1)[0].split("/")
        version = None
        if len(parts) >= 4 and parts[-2] == "_history":
            version = parts[-1]
            parts = parts[:-2]
        if absolute:  # another server's resource: only its URL identifies it
            return None, None, version, ref
        if len(parts) == 2 and self.model.is_resource(parts[0]):
            return parts[0], parts[1], version, None
        return None

    def _date(self, code: str, node: Node, rows: IndexRows, group: int, _r: dict) -> None:
        value = node.value
        if isinstance(value, str):
            bounds = date_range(value)
            if bounds:
                rows.dates.append((code, bounds[0], bounds[1], group))
            return
        if not isinstance(value, dict):
            return
        if node.type == "Period":
            start = date_range(value["start"]) if isinstance(value.get("start"), str) else None
            end = date_range(value["end"]) if isinstance(value.get("end"), str) else None
            if start or end:
                rows.dates.append(
                    (code, start[0] if start else MIN_US, end[1] if end else MAX_US, group)
                )
        elif node.type == "Timing":
            bounds = [date_range(e) for e in value.get("event", ()) if isinstance(e, str)]
            bounds = [b for b in bounds if b]
            if bounds:
                rows.dates.append(
                    (code, min(b[0] for b in bounds), max(b[1] for b in bounds), group)
                )

    def _number(self, code: str, node: Node, rows: IndexRows, group: int, _r: dict) -> None:
        value = node.value
        if isinstance(value, (int, float, Decimal)) and not isinstance(value, bool):
            rows.numbers.append((code, _finite(value), group))

    def _quantity(self, code: str, node: Node, rows: IndexRows, group: int, _r: dict) -> None:
        value = node.value
        if not isinstance(value, dict):
            return
        if node.type in QUANTITY_TYPES:
            amount = value.get("value")
            if isinstance(amount, (int, float, Decimal)) and not isinstance(amount, bool):
                system = value.get("system")
                unit_code = value.get("code")
                rows.quantities.append(
                    (code, system, unit_code or value.get("unit"), _finite(amount), group)
                )
                if unit_code and value.get("unit") and value["unit"] != unit_code:
                    rows.quantities.append((code, None, value["unit"], _finite(amount), group))
        elif node.type == "Money":
            amount = value.get("value")
            if isinstance(amount, (int, float, Decimal)) and not isinstance(amount, bool):
                rows.quantities.append(
                    (code, CURRENCY_SYSTEM, value.get("currency"), _finite(amount), group)
                )
        elif node.type == "Range":
            for bound in ("low", "high"):
                item = value.get(bound)
                if isinstance(item, dict):
                    self._quantity(code, Node(item, "Quantity"), rows, group, _r)

    def _special(self, code: str, node: Node, rows: IndexRows, group: int, _r: dict) -> None:
        """Free text (``_content``: every string of the resource; ``_text``: the narrative) and
        positions (a ``near`` parameter on an element with latitude and longitude)."""
        value = node.value
        if code == "_content":
            texts: list[str] = []
            strings_of(value, texts)
            terms = terms_of(texts)
            if terms:
                rows.texts.append((code, terms))
        elif code == "_text":
            if isinstance(value, str):
                terms = terms_of([narrative_text(value)])
                if terms:
                    rows.texts.append((code, terms))
        elif isinstance(value, dict):
            lat, lon = value.get("latitude"), value.get("longitude")
            if (
                isinstance(lat, (int, float, Decimal))
                and isinstance(lon, (int, float, Decimal))
                and not isinstance(lat, bool)
                and not isinstance(lon, bool)
                and -90 <= lat <= 90
                and -180 <= lon <= 180
            ):
                lat_f, lon_f = float(lat), float(lon)
                rows.geo.append((code, lat_f, lon_f, *unit_vector(lat_f, lon_f), group))

    def _uri(self, code: str, node: Node, rows: IndexRows, group: int, _r: dict) -> None:
        if isinstance(node.value, str):
            rows.uris.append((code, node.value, group))
