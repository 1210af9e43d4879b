"""Compile a store-neutral search Query into SQLite SQL.

Every index predicate becomes a sub-select of resource row ids valid at the snapshot sequence
number; the outer query joins the version valid at the snapshot, applies the keyset position and
sorts. Chains and ``_has`` nest the same compilation.
"""

from __future__ import annotations

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
from fhir_server.store.sqlite.schema import INDEX_TABLES, TEXT_COLUMNS

TEXT_MAX = "\U0010ffff"
DRIVER_CAP = 2000  # a clause matching fewer rows may drive the query; otherwise scan in order
SCAN_SHARE = 0.05  # ...unless its matches are more than this share of the type: then scan
SCAN_MIN_ROWS = 100
WALK_FACTOR = 4  # walk an unsorted query's driving clause when it matches 4+ pages
NULL_LAST_TEXT_ASC = TEXT_MAX * 4
NULL_LAST_NUM_ASC = 1e308
DAY_US = 86_400_000_000


@dataclass(slots=True)
class Sql:
    text: str
    params: list[Any] = field(default_factory=list)


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
        estimate: Callable[[Sql, int], int] | None = None,
        type_count: Callable[[tuple[str, ...]], int] | None = None,
    ) -> None:
        self.snapshot = snapshot
        self.estimate = estimate or (lambda sql, cap: cap)
        self.type_count = type_count or (lambda types: 1)
        self.sort_scanned: SortKey | None = None
        self.order_used: str | None = None  # the order a page was read in (for the cursor)

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
        return Sql(f"SELECT rid FROM resources WHERE (type, id) IN (VALUES {values})", params)

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

    def _text_probe(self, pred: TextPred, types: tuple[str, ...], outer: str) -> Sql:
        """``outer IN (matches)``: SQLite computes the (non-correlated) match list once per query
        and probes it per row. A correlated FTS5 lookup per row re-runs the full-text query for
        every candidate (seconds at 10k resources)."""
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
        inner = self.matching(pred.query)
        pid_sql, pid_params = _pids(types, pred.param)
        valid, valid_params = self._valid("x")
        return Sql(
            f"SELECT x.rid FROM ({inner.text}) m CROSS JOIN resources t ON t.rid = m.rid "
            f"CROSS JOIN ix_reference x ON x.{pid_sql} AND x.ref_id = t.id "
            f"AND x.ref_type = t.type WHERE {valid}",
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

    def probe(self, pred: Pred, types: tuple[str, ...], outer: str = "r.rid") -> Sql:
        """A condition on the outer row (``outer`` is its row id): index predicates become an
        EXISTS on the by-resource index, chains and _has correlated sub-queries, everything
        else ``outer IN (...)``."""
        if isinstance(pred, TextPred):
            return self._text_probe(pred, types, outer)
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
        self, clause: tuple[Pred, ...], types: tuple[str, ...], outer: str = "r.rid"
    ) -> Sql:
        parts = [self.probe(p, types, outer) for p in clause]
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
            estimate = self.estimate(self.clause_rids(query.where[index], query.types), best_count)
            if estimate < best_count:
                best, best_count = index, estimate
            if best_count <= 20:
                break
        return best, best_count

    def _plan(self, query: Query) -> tuple[int | None, SortKey | None, int | None]:
        """(driver, sorted walk, clause walk).

        Drive from the smallest clause (materialise, probe the rest, sort) unless the matches are
        a large share of the type: then walk the result order and probe every clause, stopping
        after one page. With ``_sort`` the walk follows the sort parameter's index; without it,
        the walk follows the index of the most pinning clause (its own matching values, so only
        matches are read), and that choice is kept in the paging cursor (``order``), because
        the order of results without ``_sort`` is then that clause's value order."""
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

    def matching(self, query: Query) -> Sql:
        """All row ids matching the query (no order, no paging), live at the snapshot."""
        driver = self.choose_driver(query)[0] if query.where else None
        marks = ",".join("?" * len(query.types))
        version = self._version_join()
        if driver is not None:
            source = self.clause_rids(query.where[driver], query.types)
            text = (
                f"SELECT r.rid FROM (SELECT DISTINCT rid FROM ({source.text})) m "
                f"JOIN resources r ON r.rid = m.rid {version.text} WHERE r.type IN ({marks})"
            )
            params = [*source.params, *version.params, *query.types]
        else:
            text = f"SELECT r.rid FROM resources r {version.text} WHERE r.type IN ({marks})"
            params = [*version.params, *query.types]
        for index, clause in enumerate(query.where):
            if index != driver:
                probe = self.clause_probe(clause, query.types)
                text += f" AND {probe.text}"
                params.extend(probe.params)
        return Sql(text, params)

    def page(self, query: Query) -> Sql:
        """One page in the query's order after the keyset position."""
        driver, sort_scan, walk = self._plan(query)
        self.sort_scanned = sort_scan
        if walk is not None:
            sort_exprs, sort_params = [("s.sv", False)], []
        else:
            sort_exprs, sort_params = self._sort_expressions(query, sort_scan)
        sort_cols = "".join(f", {expr} AS s{i}" for i, (expr, _) in enumerate(sort_exprs))
        marks = ",".join("?" * len(query.types))
        version = self._version_join()
        # on a sorted walk the row id comes from the walked index, so its order is the index's
        rid_source = "s.rid" if sort_scan is not None or walk is not None else "r.rid"
        select = (
            f"SELECT {rid_source} AS rid, r.type AS type, r.id AS id, v.body AS body{sort_cols}"
        )
        params: list[Any] = list(sort_params)
        if driver is not None:
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
        text += f" {version.text} WHERE r.type IN ({marks})"
        params += [*version.params, *query.types]
        for index, clause in enumerate(query.where):
            if index not in (driver, walk):
                probe = self.clause_probe(clause, query.types)
                text += f" AND {probe.text}"
                params += probe.params
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
        return Sql(text, params)

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
        self, query: Query, scanned: SortKey | None = None
    ) -> tuple[list[tuple[str, bool]], list[Any]]:
        exprs: list[tuple[str, bool]] = []
        params: list[Any] = []
        for key in query.sort:
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
    return "{" + TEXT_COLUMNS[pred.param] + "} : (" + " AND ".join(words) + ")"


def _chord2_sql(near: NearPred, prefix: str) -> tuple[str, list[Any]]:
    x0, y0, z0 = unit_vector(near.lat, near.lon)
    return (
        f"(({prefix}x - ?) * ({prefix}x - ?) + ({prefix}y - ?) * ({prefix}y - ?) "
        f"+ ({prefix}z - ?) * ({prefix}z - ?))",
        [x0, x0, y0, y0, z0, z0],
    )


def near_condition(near: NearPred, prefix: str) -> tuple[str, list[Any]]:
    """Inside the latitude/longitude box (an index range), then within the exact distance."""
    lat_low, lat_high, lon_low, lon_high = bounding_box(near.lat, near.lon, near.km)
    distance, params = _chord2_sql(near, prefix)
    return (
        f"{prefix}lat >= ? AND {prefix}lat <= ? AND {prefix}lon >= ? AND {prefix}lon <= ? "
        f"AND {distance} <= ?",
        [lat_low, lat_high, lon_low, lon_high, *params, chord2_limit(near.km)],
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


def _cost_rank(clause: tuple[Pred, ...]) -> int:
    """Equality-like predicates first: they are usually the most selective and cheap to count."""
    pred = clause[0]
    if isinstance(pred, (IdPred, InPred)):
        return 0
    if isinstance(pred, (TokenPred, ReferencePred, UriPred)) or (
        isinstance(pred, StringPred) and pred.op == "exact"
    ):
        return 1
    if isinstance(pred, (StringPred, CompositePred, ChainPred, HasPred)):
        return 2
    return 3


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
