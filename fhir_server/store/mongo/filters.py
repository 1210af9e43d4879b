"""Search predicates (store/query.py) -> MongoDB query filters on the version documents.

Every index predicate is one ``$elemMatch`` on the ``x`` entries (documents.py), so all
conditions apply to the same value and the multikey index ``x.p, x.a, x.b, u`` bounds the scan.
The semantics are those of the SQLite store (sqlite/search_sql.py): the contract suite runs the
same tables of queries against both. Chains and ``_has`` are resolved in stages by search.py and
arrive here as ready-made filters.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

from fhir_server.search.geo import bounding_box
from fhir_server.search.normalize import normalize
from fhir_server.store.keys import param_key
from fhir_server.store.mongo.documents import (
    CONTAINS_CODES,
    POINT_US,
    end_key,
    trigram_key,
    trigrams,
    wide_key,
)
from fhir_server.store.query import (
    ANY_SYSTEM,
    INDEX_PREDS,
    NO_SYSTEM,
    CompositePred,
    DatePred,
    IdPred,
    InPred,
    MissingPred,
    NearPred,
    NotPred,
    NumberPred,
    Pred,
    QuantityPred,
    ReferencePred,
    StringPred,
    TextPred,
    TokenInPred,
    TokenPred,
    UriPred,
)
from fhir_server.store.sqlite.search_sql import uri_prefixes  # one definition of :above

TEXT_MAX = "\U0010ffff"  # sorts after every other character (UTF-8 byte order = code points)
DAY_US = 86_400_000_000
NOTHING: dict[str, Any] = {"t": {"$in": []}}  # a filter no document matches

Filter = dict[str, Any]
Staged = Callable[[Pred], Filter]  # the filter of a chain or _has, resolved beforehand


def one_or_in(values: list[Any] | tuple[Any, ...]) -> Any:
    return values[0] if len(values) == 1 else {"$in": list(values)}


def param_keys(types: tuple[str, ...], code: str) -> Any:
    return one_or_in([param_key(t, code) for t in types])


def snapshot_filter(types: tuple[str, ...], snapshot: int) -> Filter:
    """Versions that were the live version of their resource at sequence number ``snapshot``."""
    return {"t": one_or_in(types), "s": {"$lte": snapshot}, "u": {"$gt": snapshot}, "d": False}


def matches_nothing(match: Filter) -> bool:
    """A filter that ANDs in NOTHING: no query needs to run (and none is sent)."""
    return match.get("t") == NOTHING["t"] or any(c == NOTHING for c in match.get("$and", ()))


def all_of(conditions: list[Filter]) -> Filter:
    """AND conditions into one document, with ``$and`` only where keys would collide."""
    merged: Filter = {}
    rest: list[Filter] = []
    for condition in conditions:
        if any(key in merged for key in condition):
            rest.append(condition)
        else:
            merged.update(condition)
    if rest:
        merged.setdefault("$and", []).extend(rest)
    return merged


def any_of(conditions: list[Filter]) -> Filter:
    if not conditions:
        return NOTHING
    return conditions[0] if len(conditions) == 1 else {"$or": conditions}


# -- conditions on one entry ------------------------------------------------------------------


def _prefixed(condition: Filter, prefix: str) -> Filter:
    """Put a component's conditions under its ``c0.``/``c1.`` sub-document."""
    if not prefix:
        return condition
    out: Filter = {}
    for key, value in condition.items():
        if key in ("$or", "$nor", "$and"):
            out[key] = [_prefixed(c, prefix) for c in value]
        else:
            out[prefix + key] = value
    return out


def entry_condition(pred: Pred) -> Filter:
    """The conditions an ``x`` entry must meet (without its parameter key)."""
    if isinstance(pred, StringPred):
        if pred.op == "exact-key":  # the indexed value is a computed key (phonetic)
            return {"a": pred.value}
        if pred.op == "exact":
            return {"a": normalize(pred.value), "b": pred.value}
        if pred.op == "contains":
            return {"a": {"$regex": re.escape(pred.value)}}
        return {"a": {"$gte": pred.value, "$lt": pred.value + TEXT_MAX}}
    if isinstance(pred, TokenPred):
        if pred.code is None:
            return {"b": pred.system}
        if pred.system == ANY_SYSTEM:
            return {"a": pred.code}
        return {"a": pred.code, "b": "" if pred.system == NO_SYSTEM else pred.system}
    if isinstance(pred, TokenInPred):  # a value set expansion: one $in of codes per system
        by_system: dict[str, list[str]] = {}
        for system, code in pred.codes:
            by_system.setdefault(system, []).append(code)
        return any_of([{"a": one_or_in(codes), "b": system} for system, codes in by_system.items()])
    if isinstance(pred, ReferencePred):
        if pred.url is not None:
            condition: Filter = {"a": pred.url, "b": ""}
        else:
            condition = {"a": pred.target_id}
            if pred.target_type:
                condition["b"] = pred.target_type
        if pred.version is not None:
            condition["v"] = pred.version
        return condition
    if isinstance(pred, DatePred):
        return date_condition(pred.prefix, pred.low, pred.high)
    if isinstance(pred, NumberPred):
        return number_condition("a", pred.prefix, pred.low, pred.high, pred.value)
    if isinstance(pred, QuantityPred):
        condition = number_condition("a", pred.prefix, pred.low, pred.high, pred.value)
        if pred.code is not None:
            condition = all_of([condition, {"b": pred.code}])
        if pred.system is not None:
            condition = all_of([condition, {"c": pred.system}])
        return condition
    if isinstance(pred, UriPred):
        if pred.op == "below":
            base = pred.value.rstrip("/")
            return {"$or": [{"a": base}, {"a": {"$gte": base + "/", "$lt": base + "/" + TEXT_MAX}}]}
        if pred.op == "above":
            return {"a": {"$in": uri_prefixes(pred.value)}}
        return {"a": pred.value}
    raise TypeError(f"not an index predicate: {pred!r}")


def date_condition(prefix: str, low: int, high: int) -> Filter:
    """A stored range [a, b] against the searched value's precision range [low, high] (µs)."""
    inside = {"a": {"$gte": low}, "b": {"$lte": high}}
    if prefix == "eq":
        return inside
    if prefix == "ne":
        return {"$nor": [inside]}
    if prefix == "gt":
        return {"b": {"$gt": high}}
    if prefix == "lt":
        return {"a": {"$lt": low}}
    if prefix == "ge":
        return {"$or": [{"b": {"$gt": high}}, inside]}
    if prefix == "le":
        return {"$or": [{"a": {"$lt": low}}, inside]}
    if prefix == "sa":
        return {"a": {"$gt": high}}
    if prefix == "eb":
        return {"b": {"$lt": low}}
    # ap: overlap with the value widened by 10% of its distance from now (at least a day)
    now = int(time.time() * 1_000_000)
    margin = max(DAY_US, abs(now - low) // 10)
    return {"b": {"$gte": low - margin}, "a": {"$lte": high + margin}}


def number_condition(field: str, prefix: str, low: float, high: float, value: float) -> Filter:
    if prefix == "eq":
        return {field: {"$gte": low, "$lt": high}}
    if prefix == "ne":  # outside the precision range: two ranges (an $or), each bounded
        return {"$or": [{field: {"$lt": low}}, {field: {"$gte": high}}]}
    if prefix == "gt":
        return {field: {"$gt": value}}
    if prefix == "lt":
        return {field: {"$lt": value}}
    if prefix == "sa":  # entirely after the searched value's precision range
        return {field: {"$gte": high}}
    if prefix == "eb":
        return {field: {"$lt": low}}
    if prefix == "ge":
        return {field: {"$gte": value}}
    if prefix == "le":
        return {field: {"$lte": value}}
    margin = abs(value) * 0.1
    return {field: {"$gte": value - margin, "$lte": value + margin}}


# -- predicates -> document filters -----------------------------------------------------------


def _elem(keys: Any, condition: Filter) -> Filter:
    """Entries of ``keys`` meeting ``condition``; an ``$or`` at the top of the condition becomes
    an ``$or`` of entry conditions, so that each branch bounds the index by itself."""
    if "$or" in condition:
        rest = {k: v for k, v in condition.items() if k != "$or"}
        return any_of([_elem(keys, all_of([rest, branch])) for branch in condition["$or"]])
    return {"x": {"$elemMatch": {"p": keys, **condition}}}


def date_filter(pred: DatePred, types: tuple[str, ...]) -> Filter:
    """A date predicate over point and wide entries (documents.py), every branch bounded on
    ``a``. Stored range [a, b], searched range [low, high]; points have b < a + POINT_US."""
    point = param_keys(types, pred.param)
    wide = one_or_in([wide_key(t, pred.param) for t in types])
    end = one_or_in([end_key(t, pred.param) for t in types])
    low, high, w = pred.low, pred.high, POINT_US
    inside = {"a": {"$gte": low, "$lte": high}, "b": {"$lte": high}}
    after = {"a": {"$gt": high - w}, "b": {"$gt": high}}  # ends after the searched range
    branches: list[tuple[Any, Filter]]
    prefix = pred.prefix
    if prefix == "eq":  # a wide value never fits inside a searched range (a year at most)
        branches = [(point, inside)]
    elif prefix == "ne":
        branches = [
            (point, {"a": {"$lt": low}}),
            (point, after),
            (wide, {"a": {"$lt": low}}),
            (end, {"a": {"$gt": high}}),
        ]
    elif prefix == "gt":
        branches = [(point, after), (end, {"a": {"$gt": high}})]
    elif prefix == "lt":
        branches = [(point, {"a": {"$lt": low}}), (wide, {"a": {"$lt": low}})]
    elif prefix == "ge":
        branches = [(point, after), (point, inside), (end, {"a": {"$gt": high}})]
    elif prefix == "le":
        branches = [(point, {"a": {"$lt": low}}), (point, inside), (wide, {"a": {"$lt": low}})]
    elif prefix == "sa":
        branches = [(point, {"a": {"$gt": high}}), (wide, {"a": {"$gt": high}})]
    elif prefix == "eb":
        branches = [(point, {"a": {"$lt": low}, "b": {"$lt": low}}), (end, {"a": {"$lt": low}})]
    else:  # ap: overlap with the value widened by 10% of its distance from now (a day at least)
        now = int(time.time() * 1_000_000)
        margin = max(DAY_US, abs(now - low) // 10)
        first, last = low - margin, high + margin
        branches = [
            (point, {"a": {"$gt": first - w, "$lte": last}, "b": {"$gte": first}}),
            (wide, {"a": {"$lte": last}, "b": {"$gte": first}}),
        ]
    return any_of([{"x": {"$elemMatch": {"p": keys, **cond}}} for keys, cond in branches])


def contains_filter(pred: StringPred, types: tuple[str, ...]) -> Filter:
    """``:contains``: the substring on the value's entry; for names and addresses also a
    trigram entry (or, for one or two characters, a prefix of one), which bounds the index."""
    check = {"x": {"$elemMatch": {"p": param_keys(types, pred.param), **entry_condition(pred)}}}
    if pred.param not in CONTAINS_CODES or not pred.value:
        return check
    keys = one_or_in([trigram_key(t, pred.param) for t in types])
    text = pred.value
    if len(text) >= 3:
        grams = sorted(trigrams(text))
        picked = {grams[0], grams[len(grams) // 2], grams[-1]}
        bounds = [{"x": {"$elemMatch": {"p": keys, "a": g}}} for g in sorted(picked)]
    else:
        bounds = [{"x": {"$elemMatch": {"p": keys, "a": {"$gte": text, "$lt": text + TEXT_MAX}}}}]
    return {"$and": [*bounds, check]}


def pred_filter(pred: Pred, types: tuple[str, ...], staged: Staged) -> Filter:
    if isinstance(pred, DatePred):
        return date_filter(pred, types)
    if isinstance(pred, StringPred) and pred.op == "contains":
        return contains_filter(pred, types)
    if isinstance(pred, INDEX_PREDS):
        return _elem(param_keys(types, pred.param), entry_condition(pred))
    if isinstance(pred, CompositePred):
        parts = []
        for component in pred.components:
            position = component.param.rpartition("$")[2]
            prefix = "" if position == "0" else f"c{position}."
            parts.append(_prefixed(entry_condition(component), prefix))
        match = all_of([{"p": param_keys(types, pred.param)}, *parts])
        return {"x": {"$elemMatch": match}}
    if isinstance(pred, TextPred):
        return text_filter(pred, types)
    if isinstance(pred, NearPred):  # the box; search.py checks the exact distance
        lat_low, lat_high, lon_low, lon_high = bounding_box(pred.lat, pred.lon, pred.km)
        return {
            "x": {
                "$elemMatch": {
                    "p": param_keys(types, pred.param),
                    "a": {"$gte": lat_low, "$lte": lat_high},
                    "b": {"$gte": lon_low, "$lte": lon_high},
                }
            }
        }
    if isinstance(pred, MissingPred):
        keys = [param_key(t, pred.param) for t in types]
        if pred.table == "dates":  # wide values have keys of their own
            keys += [wide_key(t, pred.param) for t in types]
        present = {"x": {"$elemMatch": {"p": one_or_in(keys)}}}
        return {"$nor": [present]} if pred.missing else present
    if isinstance(pred, IdPred):
        return {"i": one_or_in(pred.ids)} if pred.ids else NOTHING
    if isinstance(pred, InPred):
        return keys_filter(pred.keys, types)
    if isinstance(pred, NotPred):
        return {"$nor": [pred_filter(p, types, staged) for p in pred.preds]}
    return staged(pred)  # ChainPred, HasPred


def text_filter(pred: TextPred, types: tuple[str, ...]) -> Filter:
    """Every word of the text is one of the resource's term entries (any of its forms)."""
    keys = param_keys(types, pred.param)
    words: list[Filter] = []
    for forms in pred.words:
        exact = [f for f in forms if not f.endswith("*")]
        options: list[Filter] = [{"a": one_or_in(exact)}] if exact else []
        for form in forms:
            if form.endswith("*"):
                options.append({"a": {"$gte": form[:-1], "$lt": form[:-1] + TEXT_MAX}})
        condition = options[0] if len(options) == 1 else {"$or": options}
        words.append({"x": {"$elemMatch": {"p": keys, **condition}}})
    return all_of(words)


def keys_filter(keys: tuple[tuple[str, str], ...] | list[tuple[str, str]], types: tuple) -> Filter:
    """Documents of the given (type, id) keys, grouped by type so each group is one index range."""
    by_type: dict[str, list[str]] = {}
    for type_, id_ in keys:
        if type_ in types:
            by_type.setdefault(type_, []).append(id_)
    return any_of([{"t": t, "i": one_or_in(ids)} for t, ids in by_type.items()])


def any_keys_filter(keys: list[tuple[str, str]] | tuple[tuple[str, str], ...]) -> Filter:
    """Documents of the given (type, id) keys, whatever the type."""
    types = tuple(dict.fromkeys(t for t, _ in keys))
    return keys_filter(keys, types)


def clause_filter(clause: tuple[Pred, ...], types: tuple[str, ...], staged: Staged) -> Filter:
    """One AND-ed clause: an OR of predicates. References to one parameter and target type
    (a _revinclude over a whole page, a compartment) are merged into one ``$in``."""
    merged: dict[tuple[str, str | None], list[str]] = {}
    others: list[Filter] = []
    for pred in clause:
        if (
            isinstance(pred, ReferencePred)
            and pred.url is None
            and pred.version is None
            and pred.target_id is not None
        ):
            merged.setdefault((pred.param, pred.target_type), []).append(pred.target_id)
        else:
            others.append(pred_filter(pred, types, staged))
    for (code, target_type), ids in merged.items():
        match: Filter = {"p": param_keys(types, code), "a": one_or_in(list(dict.fromkeys(ids)))}
        if target_type:
            match["b"] = target_type
        others.append({"x": {"$elemMatch": match}})
    return any_of(others)
