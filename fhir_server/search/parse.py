"""FHIR search parameters (URL form) to a store Query, following the R4 search page."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation

from fhir_server.errors import FhirError, Issue, bad_request
from fhir_server.search.dates import date_range
from fhir_server.search.extract import IDENTIFIER_SUFFIX, OF_TYPE_SUFFIX, TEXT_SUFFIX
from fhir_server.search.geo import DEFAULT_DISTANCE_KM, MAX_DISTANCE_KM, UNITS_KM
from fhir_server.search.normalize import normalize, phonetic
from fhir_server.search.registry import TABLE_OF_TYPE, Registry, SearchParam
from fhir_server.search.text import query_terms
from fhir_server.store.query import (
    ANY_SYSTEM,
    NO_SYSTEM,
    ChainPred,
    CompositePred,
    DatePred,
    HasPred,
    IdPred,
    MissingPred,
    NearPred,
    NotPred,
    NumberPred,
    Pred,
    QuantityPred,
    Query,
    ReferencePred,
    SortKey,
    StringPred,
    TextPred,
    TokenInPred,
    TokenPred,
    UriPred,
)

PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")
RESULT_PARAMS = frozenset(
    {
        "_count",
        "_sort",
        "_include",
        "_revinclude",
        "_summary",
        "_elements",
        "_total",
        "_contained",
        "_containedType",
        "_format",
        "_pretty",
        "_cursor",
        "_type",
    }
)
IGNORED_PARAMS = frozenset({"_totalMethod"})  # sent by fhirpy; harmless
UNSUPPORTED_SPECIAL = frozenset({"_list", "_query", "_filter"})
TEXT_PARAMS = ("_content", "_text")
# A plug-in's own meaning for a parameter (by SearchParameter URL): (param, modifier, value) ->
# the predicates of the clause (ORed), e.g. a token value expanded through a ConceptMap.
ParamHandler = Callable[[SearchParam, str, str], tuple[Pred, ...]]
MAX_CHAIN_DEPTH = 4
_SPLIT_COMMA = re.compile(r"(?<!\\),")
_NUMBER = re.compile(r"^-?(\d+)(?:\.(\d+))?(?:[eE]([-+]?\d+))?$")


@dataclass(slots=True)
class Include:
    source_type: str  # "*" allowed
    param: str  # "*" allowed
    target_type: str | None
    iterate: bool
    reverse: bool


@dataclass(slots=True)
class ParsedSearch:
    query: Query
    includes: list[Include] = field(default_factory=list)
    summary: str | None = None
    elements: tuple[str, ...] = ()
    warnings: list[Issue] = field(default_factory=list)
    used: list[tuple[str, str]] = field(default_factory=list)  # for the self link
    cursor: str | None = None
    total_only: bool = False


def split_values(value: str) -> list[str]:
    return [v.replace("\\,", ",") for v in _SPLIT_COMMA.split(value)]


def unescape(value: str) -> str:
    return value.replace("\\|", "|").replace("\\$", "$").replace("\\\\", "\\")


def _split_unescaped(value: str, separator: str) -> list[str]:
    parts = re.split(r"(?<!\\)" + re.escape(separator), value)
    return parts


class SearchParser:
    def __init__(
        self, registry: Registry, base_url: str, default_count: int, max_count: int
    ) -> None:
        self.registry = registry
        self.model = registry.model
        self.base_url = base_url.rstrip("/")
        self.default_count = default_count
        self.max_count = max_count
        self.pending_message = lambda code: None  # set by the SearchParameter manager
        # value set reference -> its codes, for :in / :not-in (set by the terminology services;
        # without them, canonical URLs of the packaged terminology are expanded)
        self.value_set_codes: Callable[[str], frozenset[tuple[str, str]]] | None = None
        self.handlers: dict[str, ParamHandler] = {}  # SearchParameter URL -> plug-in handler

    def parse(
        self, types: tuple[str, ...], params: list[tuple[str, str]], strict: bool
    ) -> ParsedSearch:
        parsed = ParsedSearch(Query(types=types, count=self.default_count))
        problems: list[str] = []
        for name, value in params:
            if name in IGNORED_PARAMS:
                continue
            if name in RESULT_PARAMS or name.split(":", 1)[0] in ("_include", "_revinclude"):
                self._result_param(parsed, name, value, types)
                continue
            if name.split(":", 1)[0] in UNSUPPORTED_SPECIAL:
                problems.append(f"search parameter {name!r} is not supported by this server")
                continue
            try:
                clause = self._clause(types, name, value, depth=0)
            except _Unknown as exc:
                problems.append(str(exc))
                continue
            parsed.query.where.append(clause)
            parsed.used.append((name, value))
        if problems:
            if strict:
                raise FhirError(400, "not-supported", "; ".join(problems))
            parsed.warnings.extend(Issue("warning", "not-supported", p) for p in problems)
        if not parsed.query.sort:
            parsed.query.sort = _distance_sort(parsed.query)
        return parsed

    # -- result parameters ----------------------------------------------------------------

    def _result_param(
        self, parsed: ParsedSearch, name: str, value: str, types: tuple[str, ...]
    ) -> None:
        base = name.split(":", 1)[0]
        if base == "_count":
            if not value.isdigit():
                raise bad_request(f"_count must be a non-negative integer, got {value!r}")
            count = int(value)
            parsed.total_only = count == 0
            parsed.query.count = max(1, min(count, self.max_count))
            if count > self.max_count:
                parsed.warnings.append(
                    Issue(
                        "information",
                        "informational",
                        f"_count reduced to the server maximum of {self.max_count}",
                    )
                )
            parsed.used.append((name, value))
        elif base == "_sort":
            parsed.query.sort = tuple(self._sort_key(types, key) for key in value.split(",") if key)
            parsed.used.append((name, value))
        elif base == "_total":
            if value not in ("none", "estimate", "accurate"):
                raise bad_request(f"_total must be none, estimate or accurate, got {value!r}")
            parsed.query.total = value  # type: ignore[assignment]
            parsed.used.append((name, value))
        elif base == "_summary":
            if value not in ("true", "false", "text", "data", "count"):
                raise bad_request(
                    f"_summary must be true, false, text, data or count, got {value!r}"
                )
            parsed.summary = None if value == "false" else value
            if value == "count":
                parsed.total_only = True
                parsed.query.total = "accurate"
            parsed.used.append((name, value))
        elif base == "_elements":
            parsed.elements = tuple(e.strip() for e in value.split(",") if e.strip())
            parsed.used.append((name, value))
        elif base in ("_include", "_revinclude"):
            parsed.includes.append(self._include(name, value, reverse=base == "_revinclude"))
            parsed.used.append((name, value))
        elif base == "_cursor":
            parsed.cursor = value
        elif base == "_contained" and value != "false":
            parsed.warnings.append(
                Issue(
                    "warning",
                    "not-supported",
                    "_contained searches are not supported; contained resources are not searched",
                )
            )

    def _sort_key(self, types: tuple[str, ...], key: str) -> SortKey:
        descending = key.startswith("-")
        code = key.lstrip("-")
        if code in ("_id", "_lastUpdated"):
            return SortKey(code, "", descending)
        param = self._param(types, code)
        if param is None or not param.table:
            raise bad_request(
                f"cannot sort on {code!r}: not a sortable search parameter of {', '.join(types)}"
            )
        return SortKey(code, param.table, descending)

    def _include(self, name: str, value: str, reverse: bool) -> Include:
        iterate = name.endswith(":iterate") or name.endswith(":recurse")
        if value == "*":
            return Include("*", "*", None, iterate, reverse)
        parts = value.split(":")
        if len(parts) < 2 or len(parts) > 3:
            raise bad_request(f"invalid {name} value {value!r}; expected Type:param[:TargetType]")
        source_type, param = parts[0], parts[1]
        target = parts[2] if len(parts) == 3 else None
        if not self.model.is_resource(source_type):
            raise bad_request(f"unknown resource type {source_type!r} in {name}")
        if param != "*":
            definition = self.registry.get(source_type, param)
            if definition is None or definition.type != "reference":
                raise bad_request(f"{source_type}:{param} is not a reference search parameter")
        if target is not None and not self.model.is_resource(target):
            raise bad_request(f"unknown target type {target!r} in {name}")
        return Include(source_type, param, target, iterate, reverse)

    # -- filter parameters ----------------------------------------------------------------

    def _param(self, types: tuple[str, ...], code: str) -> SearchParam | None:
        for resource_type in types:
            param = self.registry.get(resource_type, code)
            if param is not None:
                return param
        return None

    def _clause(
        self, types: tuple[str, ...], name: str, value: str, depth: int
    ) -> tuple[Pred, ...]:
        if depth > MAX_CHAIN_DEPTH:
            raise bad_request("chains and _has are limited to 4 levels")
        if name.startswith("_has:"):
            return (self._has(types, name, value, depth),)
        if "." in name:
            return (self._chain(types, name, value, depth),)
        code, _, modifier = name.partition(":")
        if code in TEXT_PARAMS:
            return self._text(types, code, modifier, value)
        if code == "_id":
            ids = tuple(unescape(v) for v in split_values(value) if v)
            if modifier == "not":
                return (NotPred((IdPred(ids),)),)
            if modifier:
                raise bad_request(f"modifier :{modifier} is not valid on _id")
            return (IdPred(ids),)
        param = self._param(types, code)
        if param is None:
            raise _Unknown(f"unknown search parameter {code!r} for {', '.join(types)}")
        if param.status != "active":
            raise _Unknown(
                f"search parameter {code!r} is still being indexed and cannot be used yet"
            )
        handler = self.handlers.get(param.url) if param.url else None
        if handler is not None:
            return handler(param, modifier, value)
        if modifier == "missing":
            if value not in ("true", "false"):
                raise bad_request(f":missing takes true or false, got {value!r}")
            table = param.table or "tokens"
            return (MissingPred(param.code, table, value == "true"),)
        values = split_values(value)
        if modifier == "not" and param.type == "token":  # none of the values may match
            return (NotPred(tuple(self._value(param, "", v) for v in values)),)
        if modifier == "not-in" and param.type == "token":  # in none of the value sets
            return (NotPred(tuple(self._value(param, "in", v) for v in values)),)
        return tuple(self._value(param, modifier, v) for v in values)

    def _value(self, param: SearchParam, modifier: str, raw: str) -> Pred:
        handler = getattr(self, "_v_" + param.type, None)
        if handler is None:
            raise _Unknown(f"search parameter {param.code!r} of type {param.type} is not supported")
        return handler(param, modifier, raw)

    def _v_string(self, param: SearchParam, modifier: str, raw: str) -> Pred:
        text = unescape(raw)
        if param.code == "phonetic" and not modifier:  # sounds like: equal phonetic keys
            return StringPred(param.code, "exact-key", phonetic(text))
        if modifier == "exact":
            return StringPred(param.code, "exact", text)
        if modifier == "contains":
            return StringPred(param.code, "contains", normalize(text))
        if modifier:
            raise bad_request(
                f"modifier :{modifier} is not valid on string parameter {param.code!r}"
            )
        return StringPred(param.code, "prefix", normalize(text))

    def _v_token(self, param: SearchParam, modifier: str, raw: str) -> Pred:
        if modifier == "text":
            return StringPred(param.code + TEXT_SUFFIX, "prefix", normalize(unescape(raw)))
        if modifier == "of-type":
            parts = _split_unescaped(raw, "|")
            if len(parts) != 3 or not all(parts):
                raise bad_request(":of-type needs system|code|value")
            system, code, value = (unescape(p) for p in parts)
            return TokenPred(param.code + OF_TYPE_SUFFIX, system, f"{code}|{value}")
        if modifier == "in":
            return TokenInPred(param.code, self._in_value_set(unescape(raw)))
        if modifier in ("above", "below"):
            raise _Unknown(
                f"modifier :{modifier} on token parameters (subsumption) is not supported; "
                "use :in with a value set"
            )
        if modifier and modifier != "not":
            raise bad_request(
                f"modifier :{modifier} is not valid on token parameter {param.code!r}"
            )
        parts = _split_unescaped(raw, "|")
        if len(parts) == 1:
            return TokenPred(param.code, ANY_SYSTEM, unescape(parts[0]))
        if len(parts) == 2:
            system, code = unescape(parts[0]), unescape(parts[1])
            if not system:
                return TokenPred(param.code, NO_SYSTEM, code)
            return TokenPred(param.code, system, code or None)
        raise bad_request(f"invalid token value {raw!r}")

    def _in_value_set(self, reference: str) -> tuple[tuple[str, str], ...]:
        """The (system, code) pairs of a value set's expansion, plus ("", code) for values
        indexed without a system (``code`` elements, whose system the binding implies).
        An unknown or unexpandable value set is a 400, never an empty match."""
        resolve = self.value_set_codes
        if resolve is None:
            from fhir_server.terminology.search import packaged_value_set_codes

            resolve = packaged_value_set_codes
        codes = resolve(reference)
        return tuple(sorted(codes | {("", code) for _, code in codes}))

    def _v_reference(self, param: SearchParam, modifier: str, raw: str) -> Pred:
        value = unescape(raw)
        if modifier == "identifier":
            parts = _split_unescaped(raw, "|")
            code = param.code + IDENTIFIER_SUFFIX
            if len(parts) == 1:
                return TokenPred(code, ANY_SYSTEM, unescape(parts[0]))
            system = unescape(parts[0])
            return TokenPred(code, system or NO_SYSTEM, unescape(parts[1]) or None)
        type_filter = None
        if modifier:
            if not self.model.is_resource(modifier):
                raise bad_request(
                    f"modifier :{modifier} is not valid on reference parameter {param.code!r}"
                )
            type_filter = modifier
        if value.startswith(self.base_url + "/"):
            value = value[len(self.base_url) + 1 :]
        if "://" in value or value.startswith("urn:"):
            url, _, version = value.partition("|")
            return ReferencePred(param.code, None, None, version or None, url)
        parts = value.split("/")
        version = None
        if len(parts) == 4 and parts[2] == "_history":
            version = parts[3]
            parts = parts[:2]
        if len(parts) == 2:
            if not self.model.is_resource(parts[0]):
                raise bad_request(f"invalid reference {value!r}")
            if type_filter and type_filter != parts[0]:
                raise bad_request(f"reference {value!r} contradicts modifier :{type_filter}")
            return ReferencePred(param.code, parts[0], parts[1], version)
        if len(parts) == 1 and parts[0]:
            canonical, _, canonical_version = value.partition("|")
            if canonical_version:
                return ReferencePred(param.code, None, None, canonical_version, canonical)
            return ReferencePred(param.code, type_filter, value, None)
        raise bad_request(f"invalid reference {value!r}")

    def _v_date(self, param: SearchParam, modifier: str, raw: str) -> Pred:
        if modifier:
            raise bad_request(f"modifier :{modifier} is not valid on date parameter {param.code!r}")
        prefix, text = _prefix(raw)
        bounds = date_range(text)
        if bounds is None:
            raise bad_request(f"invalid date {text!r} for {param.code}")
        return DatePred(param.code, prefix, bounds[0], bounds[1])  # type: ignore[arg-type]

    def _v_number(self, param: SearchParam, modifier: str, raw: str) -> Pred:
        if modifier:
            raise bad_request(
                f"modifier :{modifier} is not valid on number parameter {param.code!r}"
            )
        prefix, text = _prefix(raw)
        value, low, high = _number_range(text, param.code)
        return NumberPred(param.code, prefix, low, high, value)  # type: ignore[arg-type]

    def _v_quantity(self, param: SearchParam, modifier: str, raw: str) -> Pred:
        if modifier:
            raise bad_request(
                f"modifier :{modifier} is not valid on quantity parameter {param.code!r}"
            )
        parts = _split_unescaped(raw, "|")
        prefix, text = _prefix(parts[0])
        value, low, high = _number_range(text, param.code)
        system = unescape(parts[1]) if len(parts) > 1 and parts[1] else None
        code = unescape(parts[2]) if len(parts) > 2 and parts[2] else None
        if len(parts) > 3:
            raise bad_request(f"invalid quantity {raw!r}")
        return QuantityPred(
            param.code,
            prefix,
            low,
            high,
            value,
            system,  # type: ignore[arg-type]
            code,
        )

    def _v_uri(self, param: SearchParam, modifier: str, raw: str) -> Pred:
        if modifier not in ("", "above", "below"):
            raise bad_request(f"modifier :{modifier} is not valid on uri parameter {param.code!r}")
        return UriPred(param.code, modifier or "eq", unescape(raw))  # type: ignore[arg-type]

    def _v_composite(self, param: SearchParam, modifier: str, raw: str) -> Pred:
        if modifier:
            raise bad_request(
                f"modifier :{modifier} is not valid on composite parameter {param.code!r}"
            )
        parts = _split_unescaped(raw, "$")
        if len(parts) != len(param.components):
            raise bad_request(f"{param.code} needs {len(param.components)} values joined by $")
        preds = []
        for component, part in zip(param.components, parts, strict=True):
            sub = SearchParam(
                code=component.code,
                type=component.type,
                resource_type=param.resource_type,
                url="",
                expression=None,
                evaluator=None,
            )
            preds.append(self._value(sub, "", part))
        return CompositePred(param.code, tuple(preds))

    def _v_special(self, param: SearchParam, modifier: str, raw: str) -> Pred:
        if param.code == "near" and param.evaluator is not None:
            return self._near(param, modifier, raw)
        raise _Unknown(f"special search parameter {param.code!r} is not supported")

    def _near(self, param: SearchParam, modifier: str, raw: str) -> Pred:
        """``near=latitude|longitude|distance|units`` (R4: units default km; without a
        distance the server chooses, here DEFAULT_DISTANCE_KM)."""
        if modifier:
            raise bad_request(f"modifier :{modifier} is not valid on {param.code!r}")
        parts = unescape(raw).split("|")
        if len(parts) < 2 or len(parts) > 4:
            raise bad_request(f"{param.code} takes latitude|longitude|distance|units, got {raw!r}")
        try:
            lat, lon = float(parts[0]), float(parts[1])
            distance = float(parts[2]) if len(parts) > 2 and parts[2] else DEFAULT_DISTANCE_KM
        except ValueError as exc:
            raise bad_request(
                f"{param.code}: latitude, longitude and distance must be numbers, got {raw!r}"
            ) from exc
        unit = parts[3] if len(parts) > 3 and parts[3] else "km"
        factor = UNITS_KM.get(unit)
        if factor is None:
            raise bad_request(
                f"{param.code}: unknown distance unit {unit!r} (use {', '.join(UNITS_KM)})"
            )
        km = distance * factor
        if not (-90 <= lat <= 90 and -180 <= lon <= 180):
            raise bad_request(f"{param.code}: latitude must be -90..90 and longitude -180..180")
        if not (0 < km <= MAX_DISTANCE_KM) or km != km:
            raise bad_request(
                f"{param.code}: the distance must be above 0 and at most {MAX_DISTANCE_KM:g} km"
            )
        return NearPred(param.code, lat, lon, km)

    def _text(
        self, types: tuple[str, ...], code: str, modifier: str, value: str
    ) -> tuple[Pred, ...]:
        """``_content`` / ``_text``: free text over the types' text index (search/text.py)."""
        if modifier:
            raise bad_request(f"modifier :{modifier} is not valid on {code}")
        missing = [t for t in types if not self.registry.text_enabled(t)]
        if missing:
            raise _Unknown(
                f"{code} is not supported for {', '.join(missing[:5])}"
                f"{'...' if len(missing) > 5 else ''}: free text is indexed only for the types "
                "in FHIR_TEXT_SEARCH_TYPES"
            )
        for resource_type in types:
            param = self.registry.get(resource_type, code)
            if param is not None and param.status != "active":
                raise _Unknown(
                    f"{code} on {resource_type} is still being indexed and cannot be used yet"
                )
        preds = []
        for text in split_values(value):
            try:
                preds.append(TextPred(code, query_terms(text)))
            except ValueError as exc:
                raise bad_request(f"{code}: {exc}") from exc
        return tuple(preds)

    # -- chains -------------------------------------------------------------------------------

    def _chain(self, types: tuple[str, ...], name: str, value: str, depth: int) -> Pred:
        head, _, rest = name.partition(".")
        code, _, type_modifier = head.partition(":")
        param = self._param(types, code)
        if param is None or param.type != "reference":
            raise _Unknown(
                f"{code!r} is not a reference search parameter of "
                f"{', '.join(types)}, so it cannot be chained"
            )
        if type_modifier:
            if not self.model.is_resource(type_modifier):
                raise bad_request(f"unknown resource type {type_modifier!r} in chain {name!r}")
            targets: tuple[str, ...] = (type_modifier,)
        else:
            targets = tuple(
                t for t in (param.targets or self.model.resource_types) if t != "Resource"
            )
        next_code = rest.split(".", 1)[0].split(":", 1)[0]
        candidates = tuple(
            t
            for t in targets
            if next_code in ("_id", "_lastUpdated")
            or next_code.startswith("_has")
            or self.registry.get(t, next_code)
        )
        if not candidates:
            raise _Unknown(
                f"none of the targets of {code!r} ({', '.join(targets)}) has a "
                f"search parameter {next_code!r}"
            )
        inner = Query(types=candidates)
        inner.where.append(self._clause(candidates, rest, value, depth + 1))
        return ChainPred(param.code, inner)

    def _has(self, types: tuple[str, ...], name: str, value: str, depth: int) -> Pred:
        parts = name.split(":", 3)
        if len(parts) != 4:
            raise bad_request(
                f"invalid _has parameter {name!r}; expected _has:Type:reference-param:search-param"
            )
        _, source_type, ref_code, rest = parts
        if not self.model.is_resource(source_type):
            raise bad_request(f"unknown resource type {source_type!r} in {name!r}")
        ref_param = self.registry.get(source_type, ref_code)
        if ref_param is None or ref_param.type != "reference":
            raise bad_request(f"{source_type}:{ref_code} is not a reference search parameter")
        inner = Query(types=(source_type,))
        inner.where.append(self._clause((source_type,), rest, value, depth + 1))
        return HasPred(source_type, ref_code, inner)


def _distance_sort(query: Query) -> tuple[SortKey, ...]:
    """Results of a ``near`` search come nearest first unless ``_sort`` says otherwise: on the
    resource's own position, or on its nearest referenced resource for a chained near
    (``HealthcareService?location.near=...``)."""
    for clause in query.where:
        if len(clause) != 1:
            continue
        pred = clause[0]
        if isinstance(pred, NearPred):
            return (SortKey(pred.param, "geo", False, near=pred),)
        if isinstance(pred, ChainPred):
            for inner in pred.query.where:
                if len(inner) == 1 and isinstance(inner[0], NearPred):
                    return (
                        SortKey(
                            inner[0].param,
                            "geo",
                            False,
                            near=inner[0],
                            via=pred.param,
                            via_types=pred.query.types,
                        ),
                    )
    return ()


class _Unknown(Exception):
    """A parameter the server does not know or support (ignored unless handling=strict)."""


def _prefix(raw: str) -> tuple[str, str]:
    if len(raw) > 2 and raw[:2] in PREFIXES and not raw[2].isalpha():
        return raw[:2], raw[2:]
    return "eq", raw


def _number_range(text: str, code: str) -> tuple[float, float, float]:
    match = _NUMBER.match(text)
    if not match:
        raise bad_request(f"invalid number {text!r} for {code}")
    try:
        value = Decimal(text)
    except InvalidOperation as exc:
        raise bad_request(f"invalid number {text!r} for {code}") from exc
    exponent = value.as_tuple().exponent
    assert isinstance(exponent, int)
    half = Decimal(5) * Decimal(10) ** (exponent - 1)
    return float(value), float(value - half), float(value + half)


__all__ = ["TABLE_OF_TYPE", "Include", "ParsedSearch", "SearchParser"]
