"""Running a search Query on the versions collection: staged chains, keyset pages, totals.

Chains and ``_has`` run in stages (like Firely Server's MongoDB engine, unlike ``$lookup``): the
inner query runs first, as of the same snapshot, and its result becomes an ``$in`` on reference
entries (chain) or on resource ids (``_has``) of the outer query. Each stage is one indexed query,
the outer query keeps using the multikey index and MongoDB's own planner, and it works the same on
a sharded cluster (``$lookup`` into a sharded collection is slow or, before 5.1, impossible). A
stage that would collect more than ``staged_limit`` keys is refused as too costly.

A page is one aggregation: ``$match`` (snapshot + predicates + keyset position when the sort is
on stored fields), ``$addFields`` for parameter sort values (taken from ``o``, with the sentinel
that puts resources without a value last), ``$sort``, ``$limit``. Ties are broken by type and
id, so the order is total and the keyset position of the last hit is enough to continue.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from pymongo.errors import ExecutionTimeout

from fhir_server.errors import FhirError
from fhir_server.search.geo import chord2, chord2_limit, unit_vector
from fhir_server.store.keys import param_key
from fhir_server.store.mongo.documents import SORT_INDEXES, sort_field, sort_value_field
from fhir_server.store.mongo.filters import (
    NOTHING,
    Filter,
    all_of,
    any_keys_filter,
    any_of,
    clause_filter,
    keys_filter,
    matches_nothing,
    one_or_in,
    param_keys,
    snapshot_filter,
)
from fhir_server.store.query import (
    ChainPred,
    HasPred,
    Hit,
    NearPred,
    Pred,
    Query,
    SearchPage,
    SortKey,
)
from fhir_server.store.sqlite.search_sql import sort_sentinel  # same "missing sorts last" rule

_FIELD_OF = {"_id": "i", "_lastUpdated": "lu"}
ESTIMATE_CAP = 1_000  # _total=estimate counts exactly up to this many matches


def timed_out(max_time_ms: int, what: str = "the search") -> FhirError:
    return FhirError(
        400,
        "too-costly",
        f"{what} did not finish within {max_time_ms / 1000:g} s; add criteria that narrow it "
        "(a patient, a code, a date range) and try again",
    )


class Searcher:
    """Searches as of one snapshot sequence number, optionally inside a session (a snapshot
    session, or a transaction). ``overlay``: version documents of a unit of work not yet
    written, which searches see in place of the stored versions of the same resources (they are
    evaluated by the server with ``$documents``, with the very same filters)."""

    def __init__(
        self,
        versions: Any,
        snapshot: int,
        staged_limit: int,
        session: Any = None,
        *,
        max_time_ms: int = 15_000,
        overlay: list[dict[str, Any]] | None = None,
        database: Any = None,
        type_counts: Callable[[], Awaitable[dict[str, int]]] | None = None,
    ) -> None:
        self.versions = versions
        self.snapshot = snapshot
        self.staged_limit = staged_limit
        self.session = session
        self.max_time_ms = max_time_ms
        self.overlay = overlay or None
        self.database = database
        self.type_counts = type_counts
        self.hidden: Filter | None = None
        if self.overlay:
            self.hidden = {"$nor": [any_keys_filter([(d["t"], d["i"]) for d in self.overlay])]}
        # exact distances (squared chords) found by near stages, per predicate and resource
        self.distances: dict[NearPred, dict[tuple[str, str], float]] = {}

    # -- filters ------------------------------------------------------------------------------

    async def where(
        self, query: Query, exact_near: bool = True, since: int | None = None
    ) -> Filter:
        """The whole filter of a query: snapshot validity and every clause.

        ``near`` clauses are staged: the index finds the resources inside the searched box
        (with every other clause), their exact distances are computed here, and those within
        the distance become an ``$in`` of ids (``exact_near`` False: the box alone)."""
        near_keys = await self._near_matches(query) if exact_near and _near_clauses(query) else None
        staged: dict[int, Filter] = {}
        for clause in query.where:
            for pred in clause:
                if isinstance(pred, (ChainPred, HasPred)):
                    staged[id(pred)] = await self._stage(pred, query.types)

        def resolved(pred: Pred) -> Filter:
            return staged[id(pred)]

        clauses = [
            clause_filter(clause, query.types, resolved)
            for clause in query.where
            if near_keys is None or not _is_near_clause(clause)
        ]
        if near_keys is not None:
            clauses.append(keys_filter(near_keys, query.types) if near_keys else NOTHING)
        if since is not None:  # only versions committed after ``since`` (commit-time checks)
            clauses.append({"s": {"$gt": since}})
        return all_of([snapshot_filter(query.types, self.snapshot), *clauses])

    async def _near_matches(self, query: Query) -> list[tuple[str, str]]:
        """Resources of the query within the distance of every near clause (and their
        distances, kept for sorting)."""
        clauses = _near_clauses(query)
        codes = {pred.param for clause in clauses for pred in clause}
        keys = [param_key(t, code) for t in query.types for code in codes]
        docs = await self._aggregate(
            [
                {"$match": await self.where(query, exact_near=False)},
                {"$limit": self.staged_limit + 1},
                {"$project": {"_id": 0, "t": 1, "i": 1, "g": _entries_of(keys)}},
            ]
        )
        self._check_limit(len(docs), "the near search")
        found: list[tuple[str, str]] = []
        for doc in docs:
            key = (doc["t"], doc["i"])
            entries = doc.get("g") or ()
            # every pred of a clause is evaluated (its distance is kept), any one satisfies it
            if all(any([self._within(p, key, entries) for p in clause]) for clause in clauses):
                found.append(key)
        return found

    def _within(self, pred: NearPred, key: tuple[str, str], entries: Any) -> bool:
        point = unit_vector(pred.lat, pred.lon)
        limit = chord2_limit(pred.km)
        param = param_key(key[0], pred.param)
        best = None
        for entry in entries:
            if entry.get("p") != param:
                continue
            lat, lon = entry.get("a"), entry.get("b")
            if not isinstance(lat, (int, float)) or not isinstance(lon, (int, float)):
                continue
            distance = chord2(point, unit_vector(lat, lon))
            if distance <= limit and (best is None or distance < best):
                best = distance
        if best is not None:
            self.distances.setdefault(pred, {})[key] = best
        return best is not None

    async def _stage(self, pred: ChainPred | HasPred, types: tuple[str, ...]) -> Filter:
        if isinstance(pred, ChainPred):
            targets = await self.keys(pred.query, self.staged_limit + 1)
            self._check_limit(len(targets), f"the chain on {pred.param!r}")
            by_type: dict[str, list[str]] = {}
            for type_, id_ in targets:
                by_type.setdefault(type_, []).append(id_)
            if not by_type:
                return NOTHING
            keys = param_keys(types, pred.param)
            return any_of(
                [
                    {"x": {"$elemMatch": {"p": keys, "b": t, "a": one_or_in(ids)}}}
                    for t, ids in by_type.items()
                ]
            )
        # _has: the resources the matching source resources refer to through pred.param
        key = param_key(pred.source_type, pred.param)
        sources = await self._aggregate(
            [
                {"$match": await self.where(pred.query)},
                {"$limit": self.staged_limit + 1},
                {
                    "$project": {
                        "_id": 0,
                        "r": {
                            "$filter": {"input": "$x", "as": "e", "cond": {"$eq": ["$$e.p", key]}}
                        },
                    }
                },
            ]
        )
        self._check_limit(len(sources), f"_has:{pred.source_type}:{pred.param}")
        targets = {(e["b"], e["a"]) for doc in sources for e in doc.get("r") or () if e.get("b")}
        return keys_filter(sorted(targets), types) if targets else NOTHING

    def _check_limit(self, found: int, what: str) -> None:
        if found > self.staged_limit:
            raise FhirError(
                400,
                "too-costly",
                f"{what} matches more than {self.staged_limit} resources; add criteria to the "
                "chained or _has part of the search",
            )

    # -- queries ------------------------------------------------------------------------------

    async def keys(
        self, query: Query, limit: int, since: int | None = None
    ) -> list[tuple[str, str]]:
        """(type, id) of matching resources, in no particular order."""
        docs = await self._aggregate(
            [
                {"$match": await self.where(query, since=since)},
                {"$limit": limit},
                {"$project": {"_id": 0, "t": 1, "i": 1}},
            ]
        )
        return [(doc["t"], doc["i"]) for doc in docs]

    async def page(self, query: Query) -> SearchPage:
        if query.sort and query.sort[0].near is not None:
            return await self._distance_page(query)
        if _indexed_sort(query) and self.overlay is None:
            return await self._indexed_sort_page(query)
        match = await self.where(query)
        terms, computed = _order(query)
        if query.reverse:
            terms = [(name, not descending) for name, descending in terms]
        pipeline: list[dict[str, Any]] = []
        after = None
        if query.after is not None:
            if len(query.after) != len(terms):
                raise FhirError(400, "invalid", "the paging cursor does not fit this search")
            after = _keyset(terms, list(query.after))
        if computed:
            pipeline.append({"$match": match})
            pipeline.append({"$addFields": computed})
            if after is not None:
                pipeline.append({"$match": after})
        else:  # sort on stored fields only: the keyset bound can use an index
            pipeline.append({"$match": all_of([match, after]) if after else match})
        pipeline.append({"$sort": {name: -1 if descending else 1 for name, descending in terms}})
        pipeline.append({"$limit": query.count + 1})
        pipeline.append(
            {"$project": {"_id": 0, "t": 1, "i": 1, "b": 1, **{n: 1 for n, _ in terms}}}
        )
        docs = await self._aggregate(pipeline, terms)
        has_more = len(docs) > query.count
        docs = docs[: query.count]
        if query.reverse:
            docs.reverse()
        hits = [
            Hit(doc["t"], doc["i"], doc["b"], tuple(doc.get(name) for name, _ in terms))
            for doc in docs
        ]
        total = None
        if query.total == "accurate":
            total = await self._count(match)
        elif query.total == "estimate":
            total = await self._estimate(query, match)
        return SearchPage(hits=hits, snapshot=self.snapshot, has_more=has_more, total=total)

    async def _estimate(self, query: Query, match: Filter) -> int:
        """``_total=estimate``: without criteria, the live count of the types from the store's
        statistics (no scan); with criteria, an exact count when it stays below
        ESTIMATE_CAP, else the statistics again (an upper bound, which is what is cheap)."""
        counts = await self.type_counts() if self.type_counts and not self.overlay else None
        if counts is not None and not query.where:
            return sum(max(0, counts.get(t, 0)) for t in query.types)
        found = await self._count(match, limit=ESTIMATE_CAP + 1)
        if found <= ESTIMATE_CAP or counts is None:
            return found
        return max(found, sum(max(0, counts.get(t, 0)) for t in query.types))

    async def _indexed_sort_page(self, query: Query) -> SearchPage:
        """A page sorted by a parameter with a sort index (documents.SORT_INDEXES): the versions
        with a value walk the index in value order, then those without one follow in id
        order (their sort value is the sentinel that puts them last); a previous page walks
        both backwards. Each part is an index walk that stops after the page."""
        key = query.sort[0]
        field = sort_value_field(query.types[0], key.param, key.descending)
        sentinel = sort_sentinel(key)
        forward = not query.reverse
        direction = (-1 if key.descending else 1) * (1 if forward else -1)
        match = await self.where(query)
        after = list(query.after) if query.after is not None else None
        if after is not None and len(after) != 2:
            raise FhirError(400, "invalid", "the paging cursor does not fit this search")
        want = query.count + 1

        def beyond(value: Any, id_: str) -> Filter:  # strictly after (value, id) in walk order
            op = "$gt" if direction == 1 else "$lt"
            return {"$or": [{field: {op: value}}, {field: value, "i": {op: id_}}]}

        async def present(bound: Filter | None, limit: int) -> list[dict[str, Any]]:
            parts = [match, {field: {"$exists": True}}]
            if bound is not None:
                parts.append(bound)
            return await self._aggregate(
                [
                    {"$match": all_of(parts)},
                    {"$sort": {field: direction, "i": direction}},
                    {"$limit": limit},
                    {"$project": {"_id": 0, "t": 1, "i": 1, "b": 1, "k": f"${field}"}},
                ]
            )

        async def missing(after_id: str | None, limit: int) -> list[dict[str, Any]]:
            parts = [match, {field: {"$exists": False}}]
            if after_id is not None:
                parts.append({"i": {"$gt" if direction == 1 else "$lt": after_id}})
            docs = await self._aggregate(
                [
                    {"$match": all_of(parts)},
                    {"$sort": {"i": direction}},
                    {"$limit": limit},
                    {"$project": {"_id": 0, "t": 1, "i": 1, "b": 1}},
                ]
            )
            for doc in docs:
                doc["k"] = sentinel
            return docs

        in_missing = after is not None and after[0] == sentinel
        docs: list[dict[str, Any]] = []
        if forward:  # values first, then the resources without one
            if not in_missing:
                bound = beyond(after[0], after[1]) if after is not None else None
                docs = await present(bound, want)
            if len(docs) < want:
                docs += await missing(after[1] if in_missing else None, want - len(docs))
        else:  # backwards: the resources without a value (from the end), then the values
            if after is None or in_missing:
                docs = await missing(after[1] if in_missing else None, want)
                if len(docs) < want:
                    docs += await present(None, want - len(docs))
            else:
                docs = await present(beyond(after[0], after[1]), want)
        has_more = len(docs) > query.count
        docs = docs[: query.count]
        if query.reverse:
            docs.reverse()
        hits = [Hit(d["t"], d["i"], d["b"], (d["k"], d["i"])) for d in docs]
        total = None
        if query.total == "accurate":
            total = await self._count(match)
        elif query.total == "estimate":
            total = await self._estimate(query, match)
        return SearchPage(hits=hits, snapshot=self.snapshot, has_more=has_more, total=total)

    async def _distance_page(self, query: Query) -> SearchPage:
        """Nearest first: the matches (at most ``staged_limit``, like a stage) are ordered by
        the distance their near stage found, of the resource itself or of the nearest resource
        it refers to (``via``); ties by type and id. The page's bodies are read afterwards."""
        key = query.sort[0]
        near = key.near
        assert near is not None
        match = await self.where(query)
        projection: dict[str, Any] = {"_id": 0, "t": 1, "i": 1}
        if key.via is not None:
            projection["r"] = _entries_of([param_key(t, key.via) for t in query.types])
        docs = await self._aggregate(
            [{"$match": match}, {"$limit": self.staged_limit + 1}, {"$project": projection}]
        )
        self._check_limit(len(docs), "the search sorted by distance")
        distances = self.distances.get(near, {})
        sentinel = sort_sentinel(key)
        multi = len(query.types) > 1
        rows: list[tuple] = []
        for doc in docs:
            if key.via is None:
                value = distances.get((doc["t"], doc["i"]), sentinel)
            else:
                found = [
                    distances[(e.get("b"), e.get("a"))]
                    for e in doc.get("r") or ()
                    if (e.get("b"), e.get("a")) in distances
                ]
                value = min(found) if found else sentinel
            rows.append((value, doc["t"], doc["i"]) if multi else (value, doc["i"]))
        rows.sort(reverse=query.reverse)
        if query.after is not None:
            after = tuple(query.after)
            if rows and len(after) != len(rows[0]):
                raise FhirError(400, "invalid", "the paging cursor does not fit this search")
            rows = [r for r in rows if (r < after if query.reverse else r > after)]
        chosen = rows[: query.count + 1]
        has_more = len(chosen) > query.count
        chosen = chosen[: query.count]
        if query.reverse:
            chosen.reverse()
        type_of = (lambda r: r[1]) if multi else (lambda r: query.types[0])
        wanted = [(type_of(r), r[-1]) for r in chosen]
        bodies: dict[tuple[str, str], bytes] = {}
        if wanted:
            found = await self._aggregate(
                [
                    {
                        "$match": all_of(
                            [
                                snapshot_filter(query.types, self.snapshot),
                                keys_filter(wanted, query.types),
                            ]
                        )
                    },
                    {"$project": {"_id": 0, "t": 1, "i": 1, "b": 1}},
                ]
            )
            bodies = {(d["t"], d["i"]): d["b"] for d in found}
        hits = [Hit(k[0], k[1], bodies[k], tuple(r)) for k, r in zip(wanted, chosen, strict=True)]
        total = len(docs) if query.total in ("accurate", "estimate") else None
        return SearchPage(hits=hits, snapshot=self.snapshot, has_more=has_more, total=total)

    async def _aggregate(
        self, pipeline: list[dict[str, Any]], terms: list[tuple[str, bool]] | None = None
    ) -> list[dict[str, Any]]:
        """Run a pipeline that starts with ``$match`` (and ends with its own sort and limit),
        on the stored versions and, with an overlay, on the unit's unwritten versions too."""
        if matches_nothing(pipeline[0]["$match"]):
            return []
        try:
            if self.hidden is None:
                cursor = await self.versions.aggregate(
                    pipeline, session=self.session, allowDiskUse=True, maxTimeMS=self.max_time_ms
                )
                return await cursor.to_list(None)
            first, rest = pipeline[0]["$match"], pipeline[1:]
            stored = await self.versions.aggregate(
                [{"$match": all_of([first, self.hidden])}, *rest],
                session=self.session,
                allowDiskUse=True,
                maxTimeMS=self.max_time_ms,
            )
            docs = await stored.to_list(None)
            unwritten = await self.database.aggregate(
                [{"$documents": self.overlay}, *pipeline], session=self.session
            )
            docs += await unwritten.to_list(None)
        except ExecutionTimeout as exc:
            raise timed_out(self.max_time_ms) from exc
        if terms:
            docs.sort(key=lambda d: _order_key(d, terms))
        limits = [stage["$limit"] for stage in pipeline if "$limit" in stage]
        return docs[: limits[-1]] if limits else docs

    async def _count(self, match: Filter, limit: int | None = None) -> int:
        if matches_nothing(match):
            return 0
        pipeline: list[dict[str, Any]] = [{"$match": match}]
        if limit is not None:
            pipeline.append({"$limit": limit})
        pipeline.append({"$count": "n"})
        if self.hidden is None:
            try:
                cursor = await self.versions.aggregate(
                    pipeline, session=self.session, maxTimeMS=self.max_time_ms
                )
                docs = await cursor.to_list(None)
            except ExecutionTimeout as exc:
                raise timed_out(self.max_time_ms, "counting the matches") from exc
            return docs[0]["n"] if docs else 0
        return len(await self._aggregate([{"$match": match}, {"$project": {"_id": 0, "i": 1}}]))


def _bson_rank(value: Any) -> tuple[int, Any]:
    """MongoDB's order of mixed values: null, numbers, strings, then the rest."""
    if value is None:
        return (0, 0)
    if isinstance(value, bool):
        return (4, value)
    if isinstance(value, (int, float)):
        return (1, value)
    if isinstance(value, str):
        return (2, value)
    return (3, str(value))


class _Desc:
    __slots__ = ("key",)

    def __init__(self, key: tuple) -> None:
        self.key = key

    def __lt__(self, other: _Desc) -> bool:
        return other.key < self.key

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Desc) and other.key == self.key


def _order_key(doc: dict[str, Any], terms: list[tuple[str, bool]]) -> tuple:
    return tuple(
        _Desc(_bson_rank(doc.get(name))) if descending else _bson_rank(doc.get(name))
        for name, descending in terms
    )


def _indexed_sort(query: Query) -> bool:
    """A single-type search sorted by one parameter that has a sort index."""
    if len(query.types) != 1 or len(query.sort) != 1:
        return False
    key = query.sort[0]
    return key.near is None and (query.types[0], key.param) in SORT_INDEXES


def _near_clauses(query: Query) -> list[tuple[NearPred, ...]]:
    return [clause for clause in query.where if _is_near_clause(clause)]  # type: ignore[misc]


def _is_near_clause(clause: tuple[Pred, ...]) -> bool:
    return bool(clause) and all(isinstance(pred, NearPred) for pred in clause)


def _entries_of(keys: list[int]) -> dict[str, Any]:
    """The ``x`` entries of some parameter keys (a projection expression)."""
    return {"$filter": {"input": "$x", "as": "e", "cond": {"$in": ["$$e.p", keys]}}}


def _order(query: Query) -> tuple[list[tuple[str, bool]], dict[str, Any]]:
    """The sort terms (field, descending), ending with the (type, id) tie-breakers, and the
    computed sort fields for parameters.

    The tie-breakers follow the direction of the first key and leave out the type when there is
    only one, so that ``_id`` and ``_lastUpdated`` orders are index orders (``t_i_v``, ``t_lu_i``,
    walked forwards or backwards) instead of in-memory sorts."""
    terms: list[tuple[str, bool]] = []
    computed: dict[str, Any] = {}
    for position, key in enumerate(query.sort):
        field = _FIELD_OF.get(key.param)
        if field is None:
            field = f"k{position}"
            computed[field] = _sort_value(key, query.types)
        if all(name != field for name, _ in terms):
            terms.append((field, key.descending))
    descending = bool(query.sort) and query.sort[0].descending
    for field in ("t", "i") if len(query.types) > 1 else ("i",):
        if all(name != field for name, _ in terms):
            terms.append((field, descending))
    return terms, computed


def _sort_value(key: SortKey, types: tuple[str, ...]) -> Any:
    """The lowest value (ascending) or the highest (descending) of the parameter, or the sentinel.
    Keys are per type, so a search over several types tries each type's key in turn."""
    bound = "h" if key.descending else "l"
    value: Any = sort_sentinel(key)
    for type_ in reversed(types):
        value = {"$ifNull": [f"$o.{sort_field(param_key(type_, key.param))}.{bound}", value]}
    return value


def _keyset(terms: list[tuple[str, bool]], values: list[Any]) -> Filter:
    """Documents strictly after ``values`` in the (mixed-direction) order of ``terms``."""
    ors: list[Filter] = []
    for index, (name, descending) in enumerate(terms):
        condition: Filter = {terms[j][0]: values[j] for j in range(index)}
        condition[name] = {"$lt" if descending else "$gt": values[index]}
        ors.append(condition)
    return {"$or": ors}
