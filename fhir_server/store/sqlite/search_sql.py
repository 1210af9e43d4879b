"""Compile a store-neutral search Query into SQLite SQL.

Every index predicate becomes a sub-select of resource row ids valid at the snapshot sequence
number; the outer query joins the version valid at the snapshot, applies the keyset position and
sorts. Chains and ``_has`` nest the same compilation.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from fhir_server.search.geo import bounding_box, chord2_limit, unit_vector
from fhir_server.store.keys import param_key
from fhir_server.store.query import (
    ANY_SYSTEM,
    INDEX_PREDS,
    NO_SYSTEM,
    ChainPred,
    CompositePred,
    DatePred,
    HasPred,
    IdPred,
    InPred,
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
from fhir_server.store.sqlite.schema import INDEX_TABLES, TEXT_COLUMNS, facet_term, geo_band

TEXT_MAX = "\U0010ffff"
DRIVER_CAP = 2000  # a clause matching fewer rows may drive the query; otherwise scan in order
SCAN_SHARE = 0.05  # ...unless its matches are more than this share of the type: then scan
SCAN_MIN_ROWS = 100
WALK_FACTOR = 4  # walk an unsorted query's driving clause when it matches 4+ pages
STATS_CAP = 50_000  # a value's rows counted (and remembered) up to this, to plan near searches
RING_SMALL = 1_500  # a clause this small drives a near search over the whole radius at once
RING_MARGIN = 3  # ...as does one smaller than 3x the candidates the rings would read
NULL_LAST_TEXT_ASC = TEXT_MAX * 4
NULL_LAST_NUM_ASC = 1e308
DAY_US = 86_400_000_000


@dataclass(slots=True)
class Sql:
    text: str
    params: list[Any] = field(default_factory=list)


@dataclass(slots=True, frozen=True)
class FacetedText(TextPred):
    """A text predicate with code clauses folded in (Compiler.fold_codes): ``facets`` is an AND
    of ORs of facet terms (schema.facet_term), matched in the same FTS5 query as the words."""

    facets: tuple[tuple[str, ...], ...] = ()


def _pids(types: tuple[str, ...], code: str) -> tuple[str, list[int]]:
    keys = [param_key(t, code) for t in types]
    if len(keys) == 1:
        return "pid = ?", keys
    return f"pid IN ({','.join('?' * len(keys))})", keys


def _escape_like(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


class Compiler:
    """Compiles queries valid "as of" one snapshot sequence number.

    ``estimate(sql, cap)`` counts the rows of a row-id query up to ``cap``; the store supplies it,
    so the compiler can pick the most selective clause to drive a query (a small cost-based
    planner: SQLite's own planner cannot see how selective one parameter value is).
    """

    def __init__(
        self,
        snapshot: int,
        estimate: Callable[..., int] | None = None,
        type_count: Callable[[tuple[str, ...]], int] | None = None,
    ) -> None:
        self.snapshot = snapshot
        # estimate(sql, cap, key=None): rows of a row-id query up to cap; with a key, the
        # store may count further and remember the count (values of small domains)
        self.estimate = estimate or (lambda sql, cap, key=None: cap)
        self.forced_driver: int | None = None  # a driver the caller chose (near plans)
        self.type_count = type_count or (lambda types: 1)
        self.sort_scanned: SortKey | None = None
        self.order_used: str | None = None  # the order a page was read in (for the cursor)
        self.near_bound = True  # whether a page was read from a position's circle

    def _valid(self, alias: str = "") -> tuple[str, list[int]]:
        prefix = f"{alias}." if alias else ""
        return f"{prefix}lo_seq <= ? AND {prefix}hi_seq > ?", [self.snapshot, self.snapshot]

    # -- predicates -> "SELECT rid ..." -----------------------------------------------------

    def rids(self, pred: Pred, types: tuple[str, ...], with_group: bool = False) -> Sql:
        method = getattr(self, "_" + type(pred).__name__)
        return method(pred, types, with_group)

    def _index_select(
        self,
        table: str,
        types: tuple[str, ...],
        code: str,
        condition: str,
        params: list[Any],
        with_group: bool,
    ) -> Sql:
        pid_sql, pid_params = _pids(types, code)
        valid, valid_params = self._valid()
        columns = "rid, grp" if with_group else "rid"
        return Sql(
            f"SELECT {columns} FROM {table} WHERE {pid_sql} AND {condition} AND {valid}",
            [*pid_params, *params, *valid_params],
        )

    def _StringPred(self, pred: StringPred, types, with_group) -> Sql:
        if pred.op == "exact-key":  # the indexed value is a computed key (phonetic)
            return self._index_select(
                "ix_string", types, pred.param, "norm = ?", [pred.value], with_group
            )
        if pred.op == "exact":
            from fhir_server.search.normalize import normalize

            return self._index_select(
                "ix_string",
                types,
                pred.param,
                "norm = ? AND exact = ?",
                [normalize(pred.value), pred.value],
                with_group,
            )
        if pred.op == "contains":
            return self._index_select(
                "ix_string",
                types,
                pred.param,
                "norm LIKE ? ESCAPE '\\'",
                [f"%{_escape_like(pred.value)}%"],
                with_group,
            )
        return self._index_select(
            "ix_string",
            types,
            pred.param,
            "norm >= ? AND norm < ?",
            [pred.value, pred.value + TEXT_MAX],
            with_group,
        )

    def _TokenPred(self, pred: TokenPred, types, with_group) -> Sql:
        if pred.code is None:
            return self._index_select(
                "ix_token", types, pred.param, "system = ?", [pred.system], with_group
            )
        if pred.system == ANY_SYSTEM:
            return self._index_select(
                "ix_token", types, pred.param, "code = ?", [pred.code], with_group
            )
        system = "" if pred.system == NO_SYSTEM else pred.system
        return self._index_select(
            "ix_token",
            types,
            pred.param,
            "code = ? AND system = ?",
            [pred.code, system],
            with_group,
        )

    def _TokenInPred(self, pred: TokenInPred, types, with_group) -> Sql:
        # one JSON parameter whatever the size of the expansion (no bound-variable limit);
        # SQLite looks each (code, system) pair up in the primary key
        return self._index_select(
            "ix_token",
            types,
            pred.param,
            "(code, system) IN (SELECT json_extract(value, '$[1]'), "
            "json_extract(value, '$[0]') FROM json_each(?))",
            [orjson.dumps(pred.codes).decode()],
            with_group,
        )

    def _ReferencePred(self, pred: ReferencePred, types, with_group) -> Sql:
        if pred.url is not None:
            condition, params = "url = ? AND url != ''", [pred.url]
        else:
            condition, params = "ref_id = ?", [pred.target_id]
            if pred.target_type:
                condition += " AND ref_type = ?"
                params.append(pred.target_type)
        if pred.version is not None:
            condition += " AND ref_version = ?"
            params.append(pred.version)
        return self._index_select("ix_reference", types, pred.param, condition, params, with_group)

    def _DatePred(self, pred: DatePred, types, with_group) -> Sql:
        condition, params = date_condition(pred.prefix, pred.low, pred.high)
        return self._index_select("ix_date", types, pred.param, condition, params, with_group)

    def _NumberPred(self, pred: NumberPred, types, with_group) -> Sql:
        condition, params = number_condition(pred.prefix, pred.low, pred.high, pred.value)
        return self._index_select("ix_number", types, pred.param, condition, params, with_group)

    def _QuantityPred(self, pred: QuantityPred, types, with_group) -> Sql:
        condition, params = number_condition(pred.prefix, pred.low, pred.high, pred.value)
        if pred.code is not None:
            condition += " AND code = ?"
            params.append(pred.code)
        if pred.system is not None:
            condition += " AND system = ?"
            params.append(pred.system)
        return self._index_select("ix_quantity", types, pred.param, condition, params, with_group)

    def _UriPred(self, pred: UriPred, types, with_group) -> Sql:
        if pred.op == "below":
            base = pred.value.rstrip("/")
            return self._index_select(
                "ix_uri",
                types,
                pred.param,
                "(uri = ? OR (uri >= ? AND uri < ?))",
                [base, base + "/", base + "/" + TEXT_MAX],
                with_group,
            )
        if pred.op == "above":
            prefixes = uri_prefixes(pred.value)
            marks = ",".join("?" * len(prefixes))
            return self._index_select(
                "ix_uri", types, pred.param, f"uri IN ({marks})", prefixes, with_group
            )
        return self._index_select("ix_uri", types, pred.param, "uri = ?", [pred.value], with_group)

    def _MissingPred(self, pred: MissingPred, types, with_group) -> Sql:
        table = INDEX_TABLES[pred.table][0]
        present = self._index_select(table, types, pred.param, "1", [], False)
        if not pred.missing:
            return present
        universe = self.universe(types)
        return Sql(
            f"{universe.text} AND rid NOT IN ({present.text})", [*universe.params, *present.params]
        )

    def _IdPred(self, pred: IdPred, types, with_group) -> Sql:
        type_marks = ",".join("?" * len(types))
        id_marks = ",".join("?" * len(pred.ids))
        return Sql(
            f"SELECT rid FROM resources WHERE type IN ({type_marks}) AND id IN ({id_marks})",
            [*types, *pred.ids],
        )

    def _InPred(self, pred: InPred, types, with_group) -> Sql:
        if not pred.keys:
            return Sql("SELECT rid FROM resources WHERE 0", [])
        values = ",".join("(?,?)" for _ in pred.keys)
        params = [v for key in pred.keys for v in key]
        # joined, not `(type, id) IN (VALUES ...)`: the join seeks the unique index per key
        return Sql(
            f"SELECT r.rid FROM (VALUES {values}) k "
            "JOIN resources r ON r.type = k.column1 AND r.id = k.column2",
            params,
        )

    def _NotPred(self, pred: NotPred, types, with_group) -> Sql:
        inners = [self.rids(p, types) for p in pred.preds]
        universe = self.universe(types)
        text = universe.text + "".join(f" AND rid NOT IN ({i.text})" for i in inners)
        return Sql(text, [*universe.params, *(p for i in inners for p in i.params)])

    def _TextPred(self, pred: TextPred, types, with_group) -> Sql:
        marks = ",".join("?" * len(types))
        columns = "v.rid AS rid, 0 AS grp" if with_group else "v.rid AS rid"
        return Sql(
            f"SELECT {columns} FROM ix_text t CROSS JOIN versions v ON v.seq = t.rowid "
            f"WHERE ix_text MATCH ? AND v.type IN ({marks}) AND v.seq <= ? AND v.until_seq > ?",
            [fts_match(pred), *types, self.snapshot, self.snapshot],
        )

    def _FacetedText(self, pred: FacetedText, types, with_group) -> Sql:
        return self._TextPred(pred, types, with_group)

    def fold_codes(self, query: Query) -> Query:
        """A search with words and codes (``_content=deuil&language=fr&target-group=x``): the
        code clauses become facet terms of the text predicate, so FTS5 intersects the word and
        code lists itself (C, ~0.05 µs a posting) instead of SQLite probing each candidate
        (~3 µs). A code with a system stays a probe too (the facet holds the code alone)."""
        text = next(
            (i for i, c in enumerate(query.where) if len(c) == 1 and type(c[0]) is TextPred),
            None,
        )
        if text is None:
            return query
        facets: list[tuple[str, ...]] = []
        kept: list[tuple[Pred, ...]] = []
        for index, clause in enumerate(query.where):
            if index == text:
                continue
            if clause and all(isinstance(p, TokenPred) and p.code is not None for p in clause):
                facets.append(
                    tuple(
                        dict.fromkeys(
                            facet_term(param_key(t, p.param), p.code)  # type: ignore[attr-defined]
                            for p in clause
                            for t in query.types
                        )
                    )
                )
                if all(p.system == ANY_SYSTEM for p in clause):  # type: ignore[attr-defined]
                    continue
            kept.append(clause)
        if not facets:
            return query
        words = query.where[text][0]
        folded = FacetedText(words.param, words.words, tuple(facets))  # type: ignore[attr-defined]
        return dataclasses.replace(query, where=[(folded,), *kept])

    def _text_probe(
        self, pred: TextPred, types: tuple[str, ...], outer: str, version: Sql | None = None
    ) -> Sql:
        """A row matches when its version's text row does: ``version IN (FTS5 row ids)`` when
        the outer query has the version row at hand (its sequence number is the text row's id:
        no validity or type check needed, and the list is read from FTS5 alone, ~0.1 µs a
        match); ``outer IN (matching row ids)`` otherwise (the matches joined to their versions).
        SQLite computes either (non-correlated) list once per query and probes it per row; a
        correlated FTS5 lookup per row re-runs the full-text query for every candidate
        (~40 µs each). The ``+`` keeps SQLite from turning the list into the driving loop (the
        planner chose the driver: reading every match to find one page is what it avoids)."""
        if version is not None:
            return Sql(
                f"+{version.text} IN (SELECT rowid FROM ix_text WHERE ix_text MATCH ?)",
                [*version.params, fts_match(pred)],
            )
        inner = self._TextPred(pred, types, False)
        return Sql(f"{outer} IN ({inner.text})", inner.params)

    def _NearPred(self, pred: NearPred, types, with_group) -> Sql:
        condition, params = near_condition(pred, "")
        return self._index_select("ix_geo", types, pred.param, condition, params, with_group)

    def _CompositePred(self, pred: CompositePred, types, with_group) -> Sql:
        parts = [self.rids(c, types, with_group=True) for c in pred.components]
        text = f"SELECT c0.rid FROM ({parts[0].text}) c0"
        params = list(parts[0].params)
        for index, part in enumerate(parts[1:], start=1):
            text += (
                f" JOIN ({part.text}) c{index} ON c{index}.rid = c0.rid AND c{index}.grp = c0.grp"
            )
            params.extend(part.params)
        return Sql(text, params)

    def _ChainPred(self, pred: ChainPred, types, with_group) -> Sql:
        inner = self.matching(pred.query, "r.rid AS rid, r.id AS id, r.type AS type")
        pid_sql, pid_params = _pids(types, pred.param)
        valid, valid_params = self._valid("x")
        return Sql(
            f"SELECT x.rid FROM ({inner.text}) m "
            f"CROSS JOIN ix_reference x ON x.{pid_sql} AND x.ref_id = m.id "
            f"AND x.ref_type = m.type WHERE {valid}",
            [*inner.params, *pid_params, *valid_params],
        )

    def _HasPred(self, pred: HasPred, types, with_group) -> Sql:
        inner = self.matching(pred.query)
        valid, valid_params = self._valid("x")
        type_marks = ",".join("?" * len(types))
        return Sql(
            f"SELECT r.rid FROM ({inner.text}) m CROSS JOIN ix_reference x INDEXED BY "
            f"ix_reference_r ON x.rid = m.rid CROSS JOIN resources r ON r.id = x.ref_id "
            f"AND r.type = x.ref_type WHERE x.pid = ? AND {valid} AND r.type IN ({type_marks})",
            [*inner.params, param_key(pred.source_type, pred.param), *valid_params, *types],
        )

    # -- probes: "does row r match?" -----------------------------------------------------------

    def probe(
        self,
        pred: Pred,
        types: tuple[str, ...],
        outer: str = "r.rid",
        version: Sql | None = None,
    ) -> Sql:
        """A condition on the outer row (``outer`` is its row id, ``version`` the sequence
        number of its version valid at the snapshot, when the query has it): index predicates
        become an EXISTS on the by-resource index, chains and _has correlated sub-queries,
        everything else ``outer IN (...)``."""
        if isinstance(pred, TextPred):
            return self._text_probe(pred, types, outer, version)
        if isinstance(pred, (*INDEX_PREDS, NearPred)):
            inner = self.rids(pred, types)
            table = inner.text.split(" FROM ", 1)[1].split(" ", 1)[0]
            text = inner.text.replace(
                f"SELECT rid FROM {table}", f"SELECT 1 FROM {table} INDEXED BY {table}_r", 1
            )
            return Sql(f"EXISTS ({text} AND rid = {outer})", inner.params)
        if isinstance(pred, ChainPred):
            return self._chain_probe(pred, types, outer)
        if isinstance(pred, HasPred):
            return self._has_probe(pred, types, outer)
        inner = self.rids(pred, types)
        return Sql(f"{outer} IN ({inner.text})", inner.params)

    def _inner_probes(self, query: Query, outer: str) -> Sql:
        parts = [self.clause_probe(clause, query.types, outer) for clause in query.where]
        return Sql(" AND ".join(p.text for p in parts) or "1", [x for p in parts for x in p.params])

    def _chain_probe(self, pred: ChainPred, types: tuple[str, ...], outer: str) -> Sql:
        pid_sql, pid_params = _pids(types, pred.param)
        valid, valid_params = self._valid("x")
        level = f"t{id(pred) % 100000}"
        inner = self._inner_probes(pred.query, f"{level}.rid")
        target_types = ",".join("?" * len(pred.query.types))
        return Sql(
            f"EXISTS (SELECT 1 FROM ix_reference x INDEXED BY ix_reference_r "
            f"JOIN resources {level} ON {level}.type = x.ref_type AND {level}.id = x.ref_id "
            f"WHERE x.rid = {outer} AND x.{pid_sql} AND {valid} "
            f"AND {level}.type IN ({target_types}) AND {inner.text})",
            [*pid_params, *valid_params, *pred.query.types, *inner.params],
        )

    def _has_probe(self, pred: HasPred, types: tuple[str, ...], outer: str) -> Sql:
        valid, valid_params = self._valid("x")
        level = f"h{id(pred) % 100000}"
        inner = self._inner_probes(pred.query, "x.rid")
        return Sql(
            f"EXISTS (SELECT 1 FROM resources {level} JOIN ix_reference x "
            f"ON x.pid = ? AND x.ref_id = {level}.id AND x.ref_type = {level}.type "
            f"WHERE {level}.rid = {outer} AND {valid} AND {inner.text})",
            [param_key(pred.source_type, pred.param), *valid_params, *inner.params],
        )

    def clause_probe(
        self,
        clause: tuple[Pred, ...],
        types: tuple[str, ...],
        outer: str = "r.rid",
        version: Sql | None = None,
    ) -> Sql:
        parts = [self.probe(p, types, outer, version) for p in clause]
        return Sql(
            "(" + " OR ".join(p.text for p in parts) + ")", [x for p in parts for x in p.params]
        )

    def clause_rids(self, clause: tuple[Pred, ...], types: tuple[str, ...]) -> Sql:
        parts = [self.rids(p, types) for p in clause]
        return Sql(" UNION ".join(p.text for p in parts), [x for p in parts for x in p.params])

    # -- whole queries ------------------------------------------------------------------------

    def universe(self, types: tuple[str, ...]) -> Sql:
        marks = ",".join("?" * len(types))
        return Sql(
            f"SELECT rid FROM resources WHERE type IN ({marks}) AND created_seq <= ?",
            [*types, self.snapshot],
        )

    def _version_seq(self) -> Sql:
        """The sequence number of r's version valid at the snapshot, from r alone (no read of
        the version row: rows that fail a probe never touch the versions table)."""
        return Sql(
            "(CASE WHEN r.seq <= ? THEN r.seq ELSE (SELECT max(v2.seq) FROM versions v2 "
            "WHERE v2.rid = r.rid AND v2.seq <= ?) END)",
            [self.snapshot, self.snapshot],
        )

    def _version_join(self) -> Sql:
        """The version of r that was current at the snapshot, if it was live then."""
        return Sql(
            "JOIN versions v ON v.seq = (CASE WHEN r.seq <= ? THEN r.seq ELSE "
            "(SELECT max(v2.seq) FROM versions v2 WHERE v2.rid = r.rid AND v2.seq <= ?) END) "
            "AND v.deleted = 0",
            [self.snapshot, self.snapshot],
        )

    def choose_driver(self, query: Query, cap: int | None = None) -> tuple[int | None, int]:
        """The most selective clause and its (capped) size. Clauses that pin one value are
        estimated first so that the others are counted only up to that size."""
        best, best_count = None, cap or DRIVER_CAP
        order = sorted(range(len(query.where)), key=lambda i: _cost_rank(query.where[i]))
        for index in order:
            sql = self.clause_estimate(query.where[index], query.types)
            estimate = self.estimate(sql, best_count)
            if estimate < best_count:
                best, best_count = index, estimate
            if best_count <= 20:
                break
        return best, best_count

    def clause_estimate(self, clause: tuple[Pred, ...], types: tuple[str, ...]) -> Sql:
        """Rows whose count estimates the size of a clause (at least its size, cheaply)."""
        parts = [self._estimate_rows(p, types) for p in clause]
        return Sql(" UNION ALL ".join(p.text for p in parts), [x for p in parts for x in p.params])

    def _estimate_rows(self, pred: Pred, types: tuple[str, ...]) -> Sql:
        if isinstance(pred, TextPred):
            # the FTS5 matches of every version and type: no join, ~0.1 µs a match
            return Sql("SELECT rowid FROM ix_text WHERE ix_text MATCH ?", [fts_match(pred)])
        if isinstance(pred, ChainPred) and pred.query.where:
            ids = _pinned_ids(pred.query)
            if ids:
                # targets named by id (the caller's narrowing: the women in her care): count
                # the references to them; one woman may have thousands of Observations, so
                # "one reference per target" would make this clause the driver and
                # materialise all of them for one page
                pid_sql, pid_params = _pids(types, pred.param)
                marks = ",".join("?" * len(ids))
                return Sql(
                    f"SELECT rid FROM ix_reference WHERE {pid_sql} AND ref_id IN ({marks})",
                    [*pid_params, *ids],
                )
            # about one reference per target: the size of the target query's most pinning
            # clause (a position's box, a code...) without running the whole chain
            inner = min(pred.query.where, key=_cost_rank)
            return self.clause_estimate(inner, pred.query.types)
        return self.rids(pred, types)

    def near_plan(self, query: Query) -> tuple[bool, int | None]:
        """(rings?, the smallest other clause) for a search nearest first.

        Rings read a small circle first, then a wider one: worth it when the other clauses
        together keep many of the positions, so a page is found in a small circle. When one of
        them is small, or all of them together keep few (so the rings would go wide, reading
        many positions for little), reading that clause over the whole radius is cheaper. The
        sizes of token and text clauses are counted once and remembered for a while (a
        value's share changes slowly); the expected candidates assume independent clauses."""
        query = self.fold_codes(query)
        near = next((i for i, c in enumerate(query.where) if any(map(_is_near, c))), None)
        total = max(1, self.type_count(query.types))
        share, best, best_size = 1.0, None, None
        for index, clause in enumerate(query.where):
            if index == near:
                continue
            key = _stats_key(clause, query.types)
            sql = self.clause_estimate(clause, query.types)
            size = self.estimate(sql, STATS_CAP if key else DRIVER_CAP, key)
            share *= min(1.0, size / total)
            if best_size is None or size < best_size:
                best, best_size = index, size
        if best is None or best_size is None:
            return True, None
        expected = (query.count + 1) / max(share, 1e-9)
        rings = best_size > RING_SMALL and RING_MARGIN * expected < best_size
        return rings, best

    def fallback_driver(self, query: Query) -> int:
        """When no clause is small: the one to read anyway rather than every resource of the
        type (a position's box first: rings keep it small, search/nearest)."""
        return min(range(len(query.where)), key=lambda i: _cost_rank(query.where[i]))

    def _plan(self, query: Query) -> tuple[int | None, SortKey | None, int | None]:
        """(driver, sorted walk, clause walk).

        Drive from the smallest clause (materialise, probe the rest, sort) unless the matches are
        a large share of the type: then walk the result order and probe every clause, stopping
        after one page. With ``_sort`` the walk follows the sort parameter's index; without it,
        the walk follows the index of the most pinning clause (its own matching values, so only
        matches are read), and that choice is kept in the paging cursor (``order``), because
        the order of results without ``_sort`` is then that clause's value order."""
        if self.forced_driver is not None:
            self.order_used = None if query.sort else "rid"
            return self.forced_driver, None, None
        hint = query.order_hint
        if hint is not None and hint.startswith("w") and not query.sort:
            index = int(hint[1:]) if hint[1:].isdigit() else -1
            if 0 <= index < len(query.where) and _walkable(query.where[index]):
                self.order_used = hint
                return None, None, index
        may_walk = not query.sort and hint != "rid" and any(map(_walkable, query.where))
        # an unsorted query that can walk only needs to know whether a clause is under a few
        # pages: counting further would cost more than the walk
        cap = WALK_FACTOR * (query.count + 1) + 1 if may_walk else None
        driver, estimate = self.choose_driver(query, cap) if query.where else (None, 0)
        if driver is None and query.where and query.sort and query.sort[0].near is not None:
            # every match must be read to sort by distance: read the smallest clause rather
            # than every resource of the type
            driver = self.fallback_driver(query)
        sortable = len(query.sort) == 1 and bool(query.sort[0].table) and query.sort[0].near is None
        if driver is not None and estimate > SCAN_MIN_ROWS:
            share = estimate / max(1, self.type_count(query.types))
            if share > SCAN_SHARE and (sortable or not query.sort):
                driver = None
        scan = query.sort[0] if driver is None and sortable else None
        walk = None
        if (
            driver is not None
            and not query.sort
            and hint != "rid"
            and _walkable(query.where[driver])
            and estimate > WALK_FACTOR * (query.count + 1)
        ):
            # reading one page of the driver's own index in order beats materialising all its
            # matches when they are many times a page
            driver, walk = None, driver
        elif driver is None and not query.sort and hint != "rid":
            walkable = [i for i, clause in enumerate(query.where) if _walkable(clause)]
            if walkable:
                walk = min(walkable, key=lambda i: _cost_rank(query.where[i]))
        self.order_used = f"w{walk}" if walk is not None else (None if query.sort else "rid")
        return driver, scan, walk

    def _walk_source(self, pred: Pred, types: tuple[str, ...]) -> Sql:
        """The rows of one predicate's index in (value, row id) order, each resource taken once,
        at its lowest matching value."""
        inner = self.rids(pred, types)
        table = inner.text.split(" FROM ", 1)[1].split(" ", 1)[0]
        condition = inner.text.split(" WHERE ", 1)[1]
        column = _walk_column(pred)
        ties = _TIE_COLUMNS[table]
        listed = ", ".join(ties)
        mine = ", ".join(f"s.{c}" for c in ties)
        theirs = ", ".join(f"s2.{c}" for c in ties)
        # the date index by upper bound serves ranges that start from the upper bound
        via = " INDEXED BY ix_date_hi" if table == "ix_date" and column == "hi" else ""
        return Sql(
            f"(SELECT rid, pid, {column} AS sv, {listed} FROM {table}{via} WHERE {condition}) s "
            f"JOIN resources r ON r.rid = s.rid AND NOT EXISTS (SELECT 1 FROM {table} s2 "
            f"INDEXED BY {table}_r WHERE s2.rid = s.rid AND s2.pid = s.pid AND {condition} "
            f"AND (s2.{column} < s.sv OR (s2.{column} = s.sv AND ({theirs}) < ({mine}))))",
            [*inner.params, *inner.params],
        )

    def matching(self, query: Query, columns: str = "r.rid") -> Sql:
        """All row ids matching the query (no order, no paging), live at the snapshot
        (``columns``: of the resource row ``r``)."""
        query = self.fold_codes(query)
        driver = self.choose_driver(query)[0] if query.where else None
        if driver is None and query.where:  # every match is read: through an index, not a scan
            driver = self.fallback_driver(query)
        marks = ",".join("?" * len(query.types))
        version: Sql
        if driver is not None and _live_rows(query.where[driver]):
            # index rows valid at the snapshot belong to a live version: no version row needed
            source = self.clause_rids(query.where[driver], query.types)
            text = (
                f"SELECT {columns} FROM (SELECT DISTINCT rid FROM ({source.text})) m "
                f"JOIN resources r ON r.rid = m.rid WHERE r.type IN ({marks})"
            )
            params = [*source.params, *query.types]
            version = self._version_seq()
        else:
            join = self._version_join()
            if driver is not None:
                source = self.clause_rids(query.where[driver], query.types)
                text = (
                    f"SELECT {columns} FROM (SELECT DISTINCT rid FROM ({source.text})) m "
                    f"JOIN resources r ON r.rid = m.rid {join.text} WHERE r.type IN ({marks})"
                )
                params = [*source.params, *join.params, *query.types]
            else:
                text = f"SELECT {columns} FROM resources r {join.text} WHERE r.type IN ({marks})"
                params = [*join.params, *query.types]
            version = Sql("v.seq")
        for index in _probe_order(query, (driver,)):
            probe = self.clause_probe(query.where[index], query.types, version=version)
            text += f" AND {probe.text}"
            params.extend(probe.params)
        return Sql(text, params)

    def page(self, query: Query) -> Sql:
        """One page in the query's order after the keyset position.

        Two levels: the inner query finds the page's row ids and sort values (probing and
        sorting candidates without reading their version rows when its source is index rows,
        which only live versions have); the outer one reads the page's bodies."""
        query = self.fold_codes(query)
        driver, sort_scan, walk = self._plan(query)
        self.sort_scanned = sort_scan
        self.near_bound = driver is not None and _is_near(query.where[driver][0])
        # a near clause whose distance is the sort value needs no probe of its own (see
        # _covered_by_distance); when another clause drives, the distances of its candidates
        # come from one join grouped by candidate (``joined``) rather than a correlated
        # subquery each: the same index seeks at about half the cost
        covered = None
        if sort_scan is None and walk is None:
            covered = _covered_by_distance(query, (driver,))
        joined = covered is not None and driver is not None
        if walk is not None:
            sort_exprs, sort_params = [("s.sv", False)], []
        else:
            sort_exprs, sort_params = self._sort_expressions(query, sort_scan, skip_first=joined)
        sort_cols = "".join(f", {expr} AS s{i}" for i, (expr, _) in enumerate(sort_exprs))
        marks = ",".join("?" * len(query.types))
        live = (
            sort_scan is not None
            or walk is not None
            or (driver is not None and _live_rows(query.where[driver]))
        ) and not any(key.param == "_lastUpdated" for key in query.sort)
        # on a sorted walk the row id comes from the walked index, so its order is the index's
        rid_source = "s.rid" if sort_scan is not None or walk is not None else "r.rid"
        select = f"SELECT {rid_source} AS rid{sort_cols}"
        params: list[Any] = list(sort_params)
        if joined:
            source = self.clause_rids(query.where[driver], query.types)  # type: ignore[index]
            distances = self._distance_join(query.sort[0], query.types, source)
            text = f"{select} FROM ({distances.text}) m JOIN resources r ON r.rid = m.rid"
            params += distances.params
        elif driver is not None:
            source = self.clause_rids(query.where[driver], query.types)
            text = (
                f"{select} FROM (SELECT DISTINCT rid FROM ({source.text})) m "
                f"JOIN resources r ON r.rid = m.rid"
            )
            params += source.params
        elif sort_scan is not None:
            scan = self._sort_scan_source(sort_scan, query.types)
            text = f"{select} FROM {scan.text}"
            params += scan.params
        elif walk is not None:
            scan = self._walk_source(query.where[walk][0], query.types)
            text = f"{select} FROM {scan.text}"
            params += scan.params
        else:
            text = f"{select} FROM resources r"
        version: Sql
        if live:
            version = self._version_seq()
            text += f" WHERE r.type IN ({marks})"
            params += query.types
        else:
            join = self._version_join()
            version = Sql("v.seq")
            text += f" {join.text} WHERE r.type IN ({marks})"
            params += [*join.params, *query.types]
        # without a driver, the distance (the sentinel when no position lies in the circle)
        # filters: one chain walk per candidate instead of two
        outer_conditions: list[str] = []
        if covered is not None and not joined:
            outer_conditions.append("s0 < ?")
        for index in _probe_order(query, (driver, walk, covered)):
            probe = self.clause_probe(query.where[index], query.types, version=version)
            text += f" AND {probe.text}"
            params += probe.params
        if outer_conditions:
            # LIMIT -1 keeps SQLite from flattening the subquery, which would compute the
            # distance twice (in the condition and as the column)
            text = f"SELECT * FROM ({text} LIMIT -1) WHERE {' AND '.join(outer_conditions)}"
            params.append(sort_sentinel(query.sort[0]))
        order_terms = [(f"s{i}", desc) for i, (_, desc) in enumerate(sort_exprs)]
        # the row id breaks ties in the direction of the first sort key, so that walking a sort
        # parameter's index (value, row id) needs no extra sort in either direction
        order_terms.append(("rid", bool(query.sort) and query.sort[0].descending))
        if query.reverse:
            order_terms = [(name, not desc) for name, desc in order_terms]
        if query.after is not None:
            condition, after_params = _keyset_condition(order_terms, list(query.after))
            text = f"SELECT * FROM ({text}) WHERE {condition}"
            params += after_params
        order = ", ".join(f"{name} {'DESC' if desc else 'ASC'}" for name, desc in order_terms)
        text += f" ORDER BY {order} LIMIT ?"
        params.append(query.count + 1)
        # then the bodies of the page's rows only
        join = self._version_join()
        columns = "".join(f", p.s{i}" for i in range(len(sort_exprs)))
        outer = ", ".join(f"p.{name} {'DESC' if desc else 'ASC'}" for name, desc in order_terms)
        return Sql(
            f"SELECT p.rid AS rid, r.type AS type, r.id AS id, v.body AS body{columns} "
            f"FROM ({text}) p JOIN resources r ON r.rid = p.rid {join.text} ORDER BY {outer}",
            [*params, *join.params],
        )

    def _sort_scan_source(self, key: SortKey, types: tuple[str, ...]) -> Sql:
        """Walk the sort parameter's index in order; each resource is taken at its first value
        (the lowest when ascending, the highest when descending), so it appears once."""
        table = INDEX_TABLES[key.table][0]
        column = _sort_column(table, key.descending)
        pid_sql, pid_params = _pids(types, key.param)
        valid, valid_params = self._valid("s")
        valid2, valid2_params = self._valid("s2")
        better = "<" if not key.descending else ">"
        ties = ", ".join(f"{{}}.{c}" for c in _TIE_COLUMNS[table])
        return Sql(
            f"{table} s JOIN resources r ON r.rid = s.rid AND s.{pid_sql} AND {valid} "
            f"AND NOT EXISTS (SELECT 1 FROM {table} s2 INDEXED BY {table}_r "
            f"WHERE s2.rid = s.rid AND s2.pid = s.pid AND {valid2} "
            f"AND (s2.{column} {better} s.{column} OR (s2.{column} = s.{column} "
            f"AND ({ties.format(*['s2'] * len(_TIE_COLUMNS[table]))}) < "
            f"({ties.format(*['s'] * len(_TIE_COLUMNS[table]))}))))",
            [*pid_params, *valid_params, *valid2_params],
        )

    def count(self, query: Query) -> Sql:
        inner = self.matching(query)
        return Sql(f"SELECT count(*) FROM ({inner.text})", inner.params)

    def _sort_expressions(
        self, query: Query, scanned: SortKey | None = None, skip_first: bool = False
    ) -> tuple[list[tuple[str, bool]], list[Any]]:
        exprs: list[tuple[str, bool]] = []
        params: list[Any] = []
        for index, key in enumerate(query.sort):
            if index == 0 and skip_first:  # the distance column of _distance_join
                exprs.append(("m.d", key.descending))
                continue
            if key is scanned:  # the value comes straight from the walked index row
                column = _sort_column(INDEX_TABLES[key.table][0], key.descending)
                exprs.append((f"s.{column}", key.descending))
                continue
            expr, key_params = self._sort_expression(key, query.types)
            exprs.append((expr, key.descending))
            params.extend(key_params)
        return exprs, params

    def _sort_expression(self, key: SortKey, types: tuple[str, ...]) -> tuple[str, list[Any]]:
        if key.param == "_id":
            return "r.id", []
        if key.param == "_lastUpdated":
            return "v.last_updated", []
        if key.near is not None:
            return self._distance_expression(key, types)
        table = INDEX_TABLES[key.table][0]
        column = _sort_column(table, key.descending)
        aggregate = "max" if key.descending else "min"
        sentinel = sort_sentinel(key)
        pid_sql, pid_params = _pids(types, key.param)
        valid, valid_params = self._valid()
        return (
            f"COALESCE((SELECT {aggregate}({column}) FROM {table} INDEXED BY {table}_r "
            f"WHERE rid = r.rid AND {pid_sql} AND {valid}), ?)",
            [*pid_params, *valid_params, sentinel],
        )

    def _distance_join(self, key: SortKey, types: tuple[str, ...], source: Sql) -> Sql:
        """``(rid, d)`` for each row id of ``source`` with a position in the circle (its own, or
        with ``via`` that of a resource it refers to), ``d`` the squared chord to the nearest:
        a join grouped by row id, so candidates without a position in the circle drop out."""
        assert key.near is not None
        near = key.near
        condition, params = near_condition(near, "g.")
        distance, distance_params = _chord2_sql(near, "g.")
        valid_g, valid_g_params = self._valid("g")
        candidates = f"(SELECT DISTINCT rid FROM ({source.text})) c"
        if key.via is None:
            pid_sql, pid_params = _pids(types, near.param)
            return Sql(
                f"SELECT c.rid AS rid, min({distance}) AS d FROM {candidates} "
                f"CROSS JOIN ix_geo g INDEXED BY ix_geo_r ON g.rid = c.rid AND g.{pid_sql} "
                f"AND {valid_g} AND {condition} GROUP BY c.rid",
                [*distance_params, *source.params, *pid_params, *valid_g_params, *params],
            )
        ref_sql, ref_params = _pids(types, key.via)
        geo_sql, geo_params = _pids(key.via_types, near.param)
        valid_x, valid_x_params = self._valid("x")
        return Sql(
            f"SELECT c.rid AS rid, min({distance}) AS d FROM {candidates} "
            f"CROSS JOIN ix_reference x INDEXED BY ix_reference_r ON x.rid = c.rid "
            f"AND x.{ref_sql} AND {valid_x} "
            "CROSS JOIN resources t ON t.type = x.ref_type AND t.id = x.ref_id "
            f"CROSS JOIN ix_geo g INDEXED BY ix_geo_r ON g.rid = t.rid AND g.{geo_sql} "
            f"AND {valid_g} AND {condition} GROUP BY c.rid",
            [
                *distance_params,
                *source.params,
                *ref_params,
                *valid_x_params,
                *geo_params,
                *valid_g_params,
                *params,
            ],
        )

    def _distance_expression(self, key: SortKey, types: tuple[str, ...]) -> tuple[str, list[Any]]:
        """The squared chord to the nearest position within the radius: the resource's own, or
        (``via``) that of the resources it refers to through a reference parameter."""
        assert key.near is not None
        near = key.near
        condition, params = near_condition(near, "g.")
        distance, distance_params = _chord2_sql(near, "g.")
        valid_g, valid_g_params = self._valid("g")
        sentinel = sort_sentinel(key)
        if key.via is None:
            pid_sql, pid_params = _pids(types, near.param)
            return (
                f"COALESCE((SELECT min({distance}) FROM ix_geo g INDEXED BY ix_geo_r "
                f"WHERE g.rid = r.rid AND g.{pid_sql} AND {valid_g} AND {condition}), ?)",
                [*distance_params, *pid_params, *valid_g_params, *params, sentinel],
            )
        ref_sql, ref_params = _pids(types, key.via)
        geo_sql, geo_params = _pids(key.via_types, near.param)
        valid_x, valid_x_params = self._valid("x")
        return (
            f"COALESCE((SELECT min({distance}) FROM ix_reference x INDEXED BY ix_reference_r "
            "JOIN resources t ON t.type = x.ref_type AND t.id = x.ref_id "
            "JOIN ix_geo g INDEXED BY ix_geo_r ON g.rid = t.rid "
            f"WHERE x.rid = r.rid AND x.{ref_sql} AND {valid_x} AND g.{geo_sql} AND {valid_g} "
            f"AND {condition}), ?)",
            [
                *distance_params,
                *ref_params,
                *valid_x_params,
                *geo_params,
                *valid_g_params,
                *params,
                sentinel,
            ],
        )


def fts_match(pred: TextPred) -> str:
    """The FTS5 query of a text predicate: its column, every word, any of a word's forms."""
    words = []
    for forms in pred.words:
        alternatives = [
            f'"{form[:-1]}" *' if form.endswith("*") else f'"{form}"'
            for form in forms
            if form.strip("*")
        ]
        words.append("(" + " OR ".join(alternatives) + ")")
    match = "{" + TEXT_COLUMNS[pred.param] + "} : (" + " AND ".join(words) + ")"
    for terms in getattr(pred, "facets", ()):
        match += " AND {facets} : (" + " OR ".join(f'"{t}"' for t in terms) + ")"
    return match


def _chord2_sql(near: NearPred, prefix: str) -> tuple[str, list[Any]]:
    x0, y0, z0 = unit_vector(near.lat, near.lon)
    return (
        f"(({prefix}x - ?) * ({prefix}x - ?) + ({prefix}y - ?) * ({prefix}y - ?) "
        f"+ ({prefix}z - ?) * ({prefix}z - ?))",
        [x0, x0, y0, y0, z0, z0],
    )


MAX_BAND_SEEKS = 400  # a box taller than this many latitude bands is read band range by range


def near_condition(near: NearPred, prefix: str) -> tuple[str, list[Any]]:
    """Inside the latitude/longitude box, then within the exact distance. The box is read as
    one longitude range per latitude band it covers (``band IN (...)``: a seek each), so the
    index scan stays inside the box in both dimensions."""
    lat_low, lat_high, lon_low, lon_high = bounding_box(near.lat, near.lon, near.km)
    distance, params = _chord2_sql(near, prefix)
    first, last = geo_band(lat_low), geo_band(lat_high)
    if last - first < MAX_BAND_SEEKS:
        bands = list(range(first, last + 1))
        band_sql = f"{prefix}band IN ({','.join('?' * len(bands))})"
    else:
        bands = [first, last]
        band_sql = f"{prefix}band >= ? AND {prefix}band <= ?"
    return (
        f"{band_sql} AND {prefix}lon >= ? AND {prefix}lon <= ? AND {prefix}lat >= ? "
        f"AND {prefix}lat <= ? AND {distance} <= ?",
        [*bands, lon_low, lon_high, lat_low, lat_high, *params, chord2_limit(near.km)],
    )


_SORT_COLUMN = {
    "ix_string": "norm",
    "ix_token": "code",
    "ix_reference": "ref_id",
    "ix_date": "lo",
    "ix_number": "value",
    "ix_quantity": "value",
    "ix_uri": "uri",
}


def _pinned_ids(query: Query) -> tuple[str, ...] | None:
    """The ids a query is pinned to by an ``_id`` clause (any other clauses only narrow it)."""
    for clause in query.where:
        if len(clause) == 1 and isinstance(clause[0], IdPred):
            return clause[0].ids
    return None


def _cost_rank(clause: tuple[Pred, ...]) -> int:
    """Equality-like predicates first: they are usually the most selective and cheap to count;
    positions before them (a near search reads rings around its point: small ones first)."""
    pred = clause[0]
    if isinstance(pred, (IdPred, InPred)):
        return 0
    if _is_near(pred):
        return 1
    if isinstance(pred, (TokenPred, ReferencePred, UriPred)) or (
        isinstance(pred, StringPred) and pred.op == "exact"
    ):
        return 2
    if isinstance(pred, (StringPred, CompositePred, ChainPred, HasPred)):
        return 3
    return 4


def _stats_key(clause: tuple[Pred, ...], types: tuple[str, ...]) -> str | None:
    """A key under which a clause's size may be remembered: codes and words (small domains,
    asked again and again), not ranges, positions or chains."""
    if all(isinstance(p, (TokenPred, TokenInPred, TextPred)) for p in clause):
        return repr((clause, types))
    return None


def _probe_order(query: Query, skip: tuple[int | None, ...]) -> list[int]:
    """The clauses to probe, cheapest first (SQLite checks them in the order written): words
    (a list read once), then index lookups, then chains and _has."""

    def rank(index: int) -> int:
        pred = query.where[index][0]
        if isinstance(pred, TextPred):
            return 0
        if isinstance(pred, INDEX_PREDS):
            return 1
        if isinstance(pred, (ChainPred, HasPred)):
            return 3
        return 2

    return sorted((i for i in range(len(query.where)) if i not in skip), key=rank)


def _covered_by_distance(query: Query, skip: tuple[int | None, ...]) -> int | None:
    """The clause that a distance sort (the first sort key) checks by itself: the near
    predicate it was made from, alone in its clause, or the chain holding only that predicate
    (``location.near=...``), when that clause is not in ``skip`` (it drives the query)."""
    if not query.sort or query.sort[0].near is None or query.sort[0].descending:
        return None
    key = query.sort[0]
    for index, clause in enumerate(query.where):
        if index in skip or len(clause) != 1:
            continue
        pred = clause[0]
        if key.via is None and pred == key.near:
            return index
        if (
            key.via is not None
            and isinstance(pred, ChainPred)
            and pred.param == key.via
            and pred.query.types == key.via_types
            and len(pred.query.where) == 1
            and pred.query.where[0] == (key.near,)
        ):
            return index
    return None


def _live_rows(clause: tuple[Pred, ...]) -> bool:
    """Whether a clause's row ids come from index rows valid at the snapshot (or text rows of
    versions valid then): only live versions have them (a delete closes its resource's rows),
    so the rows found need no check against their version."""
    for pred in clause:
        if isinstance(pred, MissingPred):
            if pred.missing:
                return False
        elif not isinstance(pred, (*INDEX_PREDS, NearPred, TextPred, ChainPred, CompositePred)):
            return False
    return True


def _is_near(pred: Pred) -> bool:
    """A position in a circle, or a chain to resources with one (location.near=...)."""
    if isinstance(pred, NearPred):
        return True
    return isinstance(pred, ChainPred) and any(
        len(c) == 1 and _is_near(c[0]) for c in pred.query.where
    )


def _walkable(clause: tuple[Pred, ...]) -> bool:
    """A clause whose index can be walked in (value, row id) order with its own condition as
    the range: one predicate whose table's key is (parameter, value, row id, ...)."""
    if len(clause) != 1:
        return False
    pred = clause[0]
    if isinstance(pred, StringPred):
        return pred.op in ("prefix", "exact", "exact-key")
    if isinstance(pred, (DatePred, NumberPred)):
        return pred.prefix != "ne"
    if isinstance(pred, QuantityPred):
        return pred.prefix != "ne" and pred.code is not None
    if isinstance(pred, TokenPred):
        return pred.code is not None
    return isinstance(pred, UriPred) and pred.op != "above"


def _walk_column(pred: Pred) -> str:
    """The value column a walk follows: the one the predicate's range is on, so the index used
    for the condition also gives the order."""
    if isinstance(pred, DatePred):
        return "hi" if pred.prefix in ("gt", "ge", "eb") else "lo"
    columns = {
        StringPred: "norm",
        TokenPred: "code",
        NumberPred: "value",
        QuantityPred: "value",
        UriPred: "uri",
    }
    return columns[type(pred)]


def sort_sentinel(key: SortKey) -> Any:
    """The sort value of a resource without the parameter: it sorts last either way."""
    numeric = INDEX_TABLES[key.table][0] in ("ix_date", "ix_number", "ix_quantity", "ix_geo")
    if key.descending:
        return -NULL_LAST_NUM_ASC if numeric else ""
    return NULL_LAST_NUM_ASC if numeric else NULL_LAST_TEXT_ASC


# Columns that, after the sort value and the row id, tell two index rows apart (the rest of the
# primary key): a resource with two equal values is still taken once by a sorted walk.
_TIE_COLUMNS = {
    "ix_string": ("exact", "grp", "lo_seq"),
    "ix_token": ("system", "grp", "lo_seq"),
    "ix_reference": ("ref_type", "url", "ref_version", "grp", "lo_seq"),
    "ix_date": ("lo", "hi", "grp", "lo_seq"),
    "ix_number": ("grp", "lo_seq"),
    "ix_quantity": ("code", "system", "grp", "lo_seq"),
    "ix_uri": ("grp", "lo_seq"),
}


def _sort_column(table: str, descending: bool) -> str:
    if table == "ix_date":
        return "hi" if descending else "lo"
    return _SORT_COLUMN[table]


def _keyset_condition(
    order_terms: list[tuple[str, bool]], values: list[Any]
) -> tuple[str, list[Any]]:
    """Rows strictly after ``values`` in the given (mixed-direction) order."""
    ors: list[str] = []
    params: list[Any] = []
    for index, (name, descending) in enumerate(order_terms):
        parts = [f"{order_terms[j][0]} = ?" for j in range(index)]
        params.extend(values[:index])
        parts.append(f"{name} {'<' if descending else '>'} ?")
        params.append(values[index])
        ors.append("(" + " AND ".join(parts) + ")")
    return "(" + " OR ".join(ors) + ")", params


def date_condition(prefix: str, low: int, high: int) -> tuple[str, list[Any]]:
    """Target range [lo, hi] against the searched range [low, high] (R4 search, date prefixes).

    Each condition starts with a plain range on lo or hi, implied by the exact rule that follows,
    so SQLite can walk an index instead of scanning every value of the parameter.
    """
    if prefix == "eq":
        return "lo >= ? AND lo <= ? AND hi <= ?", [low, high, high]
    if prefix == "ne":
        return "NOT (lo >= ? AND hi <= ?)", [low, high]
    if prefix == "gt":
        return "hi > ?", [high]
    if prefix == "lt":
        return "lo < ?", [low]
    if prefix == "ge":
        return "hi >= ? AND (hi > ? OR (lo >= ? AND hi <= ?))", [low, high, low, high]
    if prefix == "le":
        return "lo <= ? AND (lo < ? OR (lo >= ? AND hi <= ?))", [high, low, low, high]
    if prefix == "sa":
        return "lo > ?", [high]
    if prefix == "eb":
        return "hi < ?", [low]
    # ap: overlap with the value widened by 10% of its distance from now (at least a day)
    now = int(time.time() * 1_000_000)
    margin = max(DAY_US, abs(now - low) // 10)
    return "lo <= ? AND hi >= ?", [high + margin, low - margin]


def number_condition(prefix: str, low: float, high: float, value: float) -> tuple[str, list[Any]]:
    if prefix == "eq":
        return "value >= ? AND value < ?", [low, high]
    if prefix == "ne":
        return "NOT (value >= ? AND value < ?)", [low, high]
    if prefix == "gt":
        return "value > ?", [value]
    if prefix == "lt":
        return "value < ?", [value]
    if prefix == "sa":  # entirely after the searched value's precision range
        return "value >= ?", [high]
    if prefix == "eb":
        return "value < ?", [low]
    if prefix == "ge":
        return "value >= ?", [value]
    if prefix == "le":
        return "value <= ?", [value]
    margin = abs(value) * 0.1
    return "value >= ? AND value <= ?", [value - margin, value + margin]


def uri_prefixes(value: str) -> list[str]:
    """``:above``: the value itself and every parent path of it."""
    prefixes = [value]
    head = value
    while "/" in head.rstrip("/"):
        head = head.rstrip("/").rsplit("/", 1)[0]
        if head.endswith(":/") or head.endswith(":"):
            break
        prefixes.append(head)
    return prefixes
