"""Does an index of the MongoDB store bound this query? The check explain() makes on a real server
(IXSCAN with bounds rather than COLLSCAN), done on the index definitions of
fhir_server/store/mongo/documents.py, for the filters and pipelines the store generated while the
contract suite ran on mongomock (tests/mongomock_async.py records them).

A query is *bounded* when

* some condition of it (besides the snapshot conditions every search carries: type, ``s``,
  ``u``, ``d``, which only say "the live versions of this type") gives the first range field of
  an index a bound: for the search index ``x.p, x.a, x.b, u`` an entry condition with the
  parameter key *and* a value condition on ``a``; a resource id with its type; a sequence range;
  a lastUpdated range; superseded versions for pruning; or every branch of a top-level ``$or``
  is bounded that way; or
* it is an *ordered walk*: it has a limit and its sort is an index's order after an equality
  prefix, so the server reads index keys in result order and stops after one page (a type
  listed by id, history newest first, ``_sort=_lastUpdated``...). A negation (``:not``,
  ``:missing=true``) is paged that way: it costs the page size divided by the share of matches.

Counts get no ordered-walk allowance. What is left is reported with the reason, and
``known_limit`` names the shapes that are documented limits (docs/architecture.md, "Search on
MongoDB"): the test fails on any other.
"""

from __future__ import annotations

from typing import Any

from fhir_server.store.mongo.documents import version_indexes

SNAPSHOT = {"t", "s", "u", "d"}
RANGE_OPS = {"$gt", "$gte", "$lt", "$lte"}


def indexes() -> list[tuple[str, list[tuple[str, int]], dict | None]]:
    out = []
    for model in version_indexes():
        doc = model.document
        out.append((doc["name"], list(doc["key"].items()), doc.get("partialFilterExpression")))
    return out


INDEXES = indexes()


def _conjuncts(filter_: dict[str, Any]) -> list[tuple[str, Any]]:
    """(field or operator, condition) pairs of an AND, with nested ``$and`` flattened."""
    out: list[tuple[str, Any]] = []
    for key, value in filter_.items():
        if key == "$and":
            for part in value:
                out.extend(_conjuncts(part))
        else:
            out.append((key, value))
    return out


def _equality(cond: Any) -> bool:
    if isinstance(cond, dict):
        return set(cond) == {"$in"} or set(cond) == {"$eq"}
    return True


def _bounded_value(cond: Any) -> bool:
    """An equality, an ``$in`` or a range with at least one finite side."""
    if not isinstance(cond, dict):
        return True
    keys = set(cond)
    if keys & {"$in", "$eq"}:
        return True
    return bool(keys & RANGE_OPS)


def _entry_bounded(match: dict[str, Any]) -> bool:
    """An ``$elemMatch`` on index entries: the parameter key and a value condition on ``a``."""
    if "p" not in match or not _equality(match["p"]):
        return False
    if "a" in match and _bounded_value(match["a"]):
        return True
    # a top-level $or inside the entry condition: every branch bounds a
    ors = match.get("$or")
    return bool(ors) and all("a" in b and _bounded_value(b["a"]) for b in ors)


def bounded_filter(filter_: dict[str, Any]) -> bool:
    conj = _conjuncts(filter_)
    fields = dict((k, v) for k, v in conj if not k.startswith("$"))
    for key, cond in conj:
        if key == "x" and isinstance(cond, dict) and "$elemMatch" in cond:
            if _entry_bounded(cond["$elemMatch"]):
                return True
        elif key == "$or":
            if all(bounded_filter({**_plain(fields), **branch}) for branch in cond):
                return True
        elif key == "i" and _equality(cond) and "t" in fields:
            return True  # t_i_v
        elif key == "_id" and _equality(cond):
            return True
        elif key == "s" and isinstance(cond, dict) and set(cond) & {"$gt", "$gte"}:
            return True  # versions after a sequence number (index s)
        elif key == "lu" and _bounded_value(cond) and "t" in fields:
            return True  # t_lu_i
        elif key == "u" and isinstance(cond, dict) and cond.get("$lt") is not None:
            return True  # superseded versions (u_superseded)
        elif key == "u" and "x" in fields and set(cond) & {"$gt", "$lte"} == {"$gt", "$lte"}:
            return True  # pruning: a window of superseded versions (u_superseded)
    return False


def _plain(fields: dict[str, Any]) -> dict[str, Any]:
    """The conditions an ``$or`` branch shares with its siblings (not the ``$or`` itself)."""
    return {k: v for k, v in fields.items() if k in SNAPSHOT}


def _positive(filter_: dict[str, Any]) -> bool:
    """Whether the filter has a positive condition on index entries (outside any ``$nor``)."""
    for key, cond in _conjuncts(filter_):
        if key == "x":  # an entry condition with more than the parameter key (not presence)
            match = cond.get("$elemMatch", {}) if isinstance(cond, dict) else {}
            if set(match) - {"p"}:
                return True
        if key == "$or" and any(_positive(branch) for branch in cond):
            return True
    return False


def ordered_walk(filter_: dict[str, Any], sort: list[tuple[str, int]] | None, limit: int) -> bool:
    """A page read in index order. Only for queries without positive entry conditions (a type
    listed, negations): a positive condition must bound the scan itself."""
    if not sort or not limit or _positive(filter_):
        return False
    fields = dict(_conjuncts(filter_))
    for _name, keys, partial in INDEXES:
        if partial and not all(k in fields for k in partial):
            continue
        position = 0
        # the equality prefix (a sort may also start with an $in field walked in order)
        while position < len(keys) and keys[position][0] in fields:
            name = keys[position][0]
            if not _equality(fields[name]) or name == sort[0][0]:
                break
            position += 1
        rest = keys[position : position + len(sort)]
        if len(rest) < len(sort):
            continue
        same = all(f == s for (f, _), (s, _) in zip(rest, sort, strict=True))
        if not same:
            continue
        directions = {d * s for (_, d), (_, s) in zip(rest, sort, strict=True)}
        if len(directions) == 1:  # walked forwards or backwards
            return True
    return False


def check(query: dict[str, Any]) -> str | None:
    """None if an index bounds the query, else why not."""
    if query.get("collection") != "versions":
        return None  # counters and meta: single documents by _id
    if "pipeline" in query:
        pipeline = query["pipeline"]
        if not pipeline or "$documents" in pipeline[0]:
            return None  # a unit's unwritten versions, not the collection
        first = pipeline[0].get("$match", {})
        sort = next((list(s["$sort"].items()) for s in pipeline if "$sort" in s), None)
        limit = next((s["$limit"] for s in pipeline if "$limit" in s), 0)
        computed = any("$addFields" in s for s in pipeline)
        count = any("$count" in s for s in pipeline)
        if bounded_filter(first):
            return None
        if not count and not computed and ordered_walk(first, sort, limit):
            return None
        if count:
            return "count of an unbounded match"
        if computed:
            return "sort on a parameter value of an unbounded match"
        return "no index bounds the match and its order is not an index order"
    filter_ = query.get("filter", {})
    if bounded_filter(filter_):
        return None
    if not query.get("count") and ordered_walk(filter_, query.get("sort"), query.get("limit", 0)):
        return None
    return "count of an unbounded match" if query.get("count") else "unbounded find"


def known_limit(query: dict[str, Any]) -> str | None:
    """The documented limit an unbounded query falls under, if any."""
    pipeline = query.get("pipeline") or [{"$match": query.get("filter", {})}]
    match = pipeline[0].get("$match", {})
    conj = _conjuncts(match)
    plain = {k for k, _ in conj}
    if any("$addFields" in s for s in pipeline) and not _positive(match):
        # a whole type (or a presence test) sorted by a parameter value: a top-k sort of every
        # live version of the type; no sort index per parameter (each would cost every write)
        return "parameter sort over a whole type"
    if (query.get("count") or any("$count" in s for s in pipeline)) and plain <= SNAPSHOT:
        return "exact count of a whole type"  # _total=accurate / _summary=count: COUNT of t
    for key, cond in conj:
        if key == "x" and isinstance(cond, dict):
            entry = cond.get("$elemMatch", {})
            if set(entry) == {"p", "b"} and isinstance(entry["b"], str):
                # token "system|" without a code: reads the parameter's index keys (the system
                # is in the key, no document is fetched)
                return "token system without a code"
    return None
