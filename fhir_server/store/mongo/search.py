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

from typing import Any

from fhir_server.errors import FhirError
from fhir_server.search.geo import chord2, chord2_limit, unit_vector
from fhir_server.store.keys import param_key
from fhir_server.store.mongo.documents import sort_field
from fhir_server.store.mongo.filters import (
    NOTHING,
    Filter,
    all_of,
    any_of,
    clause_filter,
    keys_filter,
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


class Searcher:
    """Searches as of one snapshot sequence number, optionally inside a session (transaction)."""

    def __init__(
        self, versions: Any, snapshot: int, staged_limit: int, session: Any = None
    ) -> None:
        self.versions = versions
        self.snapshot = snapshot
        self.staged_limit = staged_limit
        self.session = session
        # exact distances (squared chords) found by near stages, per predicate and resource
        self.distances: dict[NearPred, dict[tuple[str, str], float]] = {}

    # -- filters ------------------------------------------------------------------------------

    async def where(self, query: Query, exact_near: bool = True) -> Filter:
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

    async def keys(self, query: Query, limit: int) -> list[tuple[str, str]]:
        """(type, id) of matching resources, in no particular order."""
        cursor = self.versions.find(
            await self.where(query), {"_id": 0, "t": 1, "i": 1}, session=self.session
        ).limit(limit)
        return [(doc["t"], doc["i"]) for doc in await cursor.to_list(None)]

    async def page(self, query: Query) -> SearchPage:
        if query.sort and query.sort[0].near is not None:
            return await self._distance_page(query)
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
        docs = await self._aggregate(pipeline)
        has_more = len(docs) > query.count
        docs = docs[: query.count]
        if query.reverse:
            docs.reverse()
        hits = [
            Hit(doc["t"], doc["i"], doc["b"], tuple(doc.get(name) for name, _ in terms))
            for doc in docs
        ]
        total = None
        if query.total in ("accurate", "estimate"):
            total = await self.versions.count_documents(match, session=self.session)
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
            cursor = self.versions.find(
                all_of(
                    [snapshot_filter(query.types, self.snapshot), keys_filter(wanted, query.types)]
                ),
                {"_id": 0, "t": 1, "i": 1, "b": 1},
                session=self.session,
            )
            bodies = {(d["t"], d["i"]): d["b"] for d in await cursor.to_list(None)}
        hits = [Hit(k[0], k[1], bodies[k], tuple(r)) for k, r in zip(wanted, chosen, strict=True)]
        total = len(docs) if query.total in ("accurate", "estimate") else None
        return SearchPage(hits=hits, snapshot=self.snapshot, has_more=has_more, total=total)

    async def _aggregate(self, pipeline: list[dict[str, Any]]) -> list[dict[str, Any]]:
        cursor = await self.versions.aggregate(pipeline, session=self.session, allowDiskUse=True)
        return await cursor.to_list(None)


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
