"""Compile a store-neutral search Query into SQLite SQL.

Every index predicate becomes a sub-select of resource row ids valid at the snapshot sequence
number; the outer query joins the version valid at the snapshot, applies the keyset position and
sorts. Chains and ``_has`` nest the same compilation.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from fhir_server.store.keys import param_key
from fhir_server.store.query import (
    ANY_SYSTEM,
    NO_SYSTEM,
    ChainPred,
    CompositePred,
    DatePred,
    HasPred,
    IdPred,
    InPred,
    MissingPred,
    NotPred,
    NumberPred,
    Pred,
    QuantityPred,
    Query,
    ReferencePred,
    SortKey,
    StringPred,
    TokenPred,
    UriPred,
)
from fhir_server.store.sqlite.schema import INDEX_TABLES

TEXT_MAX = "\U0010ffff"
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
    """Compiles queries valid "as of" one snapshot sequence number."""

    def __init__(self, snapshot: int) -> None:
        self.snapshot = snapshot

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
            f"SELECT x.rid FROM ix_reference x JOIN resources t ON t.id = x.ref_id "
            f"AND t.type = x.ref_type WHERE x.{pid_sql} AND {valid} AND t.rid IN ({inner.text})",
            [*pid_params, *valid_params, *inner.params],
        )

    def _HasPred(self, pred: HasPred, types, with_group) -> Sql:
        inner = self.matching(pred.query)
        valid, valid_params = self._valid("x")
        type_marks = ",".join("?" * len(types))
        return Sql(
            f"SELECT r.rid FROM ix_reference x JOIN resources r ON r.id = x.ref_id "
            f"AND r.type = x.ref_type WHERE x.pid = ? AND {valid} AND r.type IN ({type_marks}) "
            f"AND x.rid IN ({inner.text})",
            [param_key(pred.source_type, pred.param), *valid_params, *types, *inner.params],
        )

    # -- whole queries ------------------------------------------------------------------------

    def universe(self, types: tuple[str, ...]) -> Sql:
        marks = ",".join("?" * len(types))
        return Sql(
            f"SELECT rid FROM resources WHERE type IN ({marks}) AND created_seq <= ?",
            [*types, self.snapshot],
        )

    def matching(self, query: Query) -> Sql:
        """All row ids matching the query's predicates (no paging), live at the snapshot."""
        text = (
            "SELECT r.rid FROM resources r JOIN versions v ON v.rid = r.rid "
            "AND v.seq <= ? AND v.until_seq > ? AND v.deleted = 0 "
            f"WHERE r.type IN ({','.join('?' * len(query.types))})"
        )
        params: list[Any] = [self.snapshot, self.snapshot, *query.types]
        for clause in query.where:
            text, params = self._and_clause(text, params, clause, query.types)
        return Sql(text, params)

    def _and_clause(
        self, text: str, params: list[Any], clause: tuple[Pred, ...], types: tuple[str, ...]
    ) -> tuple[str, list[Any]]:
        alternatives = [self.rids(p, types) for p in clause]
        text += " AND (" + " OR ".join(f"r.rid IN ({a.text})" for a in alternatives) + ")"
        for alternative in alternatives:
            params.extend(alternative.params)
        return text, params

    def page(self, query: Query) -> Sql:
        sort_exprs, sort_params = self._sort_expressions(query)
        sort_cols = "".join(f", {expr} AS s{i}" for i, (expr, _) in enumerate(sort_exprs))
        text = (
            f"SELECT r.rid AS rid, r.type AS type, r.id AS id, v.body AS body{sort_cols} "
            "FROM resources r JOIN versions v ON v.rid = r.rid AND v.seq <= ? "
            "AND v.until_seq > ? AND v.deleted = 0 "
            f"WHERE r.type IN ({','.join('?' * len(query.types))})"
        )
        params: list[Any] = [*sort_params, self.snapshot, self.snapshot, *query.types]
        for clause in query.where:
            text, params = self._and_clause(text, params, clause, query.types)
        order_terms = [(f"s{i}", desc) for i, (_, desc) in enumerate(sort_exprs)]
        order_terms.append(("rid", False))
        if query.reverse:
            order_terms = [(name, not desc) for name, desc in order_terms]
        if query.after is not None:
            condition, after_params = _keyset_condition(order_terms, list(query.after))
            text = f"SELECT * FROM ({text}) WHERE {condition}"
            params.extend(after_params)
        order = ", ".join(f"{name} {'DESC' if desc else 'ASC'}" for name, desc in order_terms)
        text += f" ORDER BY {order} LIMIT ?"
        params.append(query.count + 1)
        return Sql(text, params)

    def count(self, query: Query) -> Sql:
        inner = self.matching(query)
        return Sql(f"SELECT count(*) FROM ({inner.text})", inner.params)

    def _sort_expressions(self, query: Query) -> tuple[list[tuple[str, bool]], list[Any]]:
        exprs: list[tuple[str, bool]] = []
        params: list[Any] = []
        for key in query.sort:
            expr, key_params = self._sort_expression(key, query.types)
            exprs.append((expr, key.descending))
            params.extend(key_params)
        return exprs, params

    def _sort_expression(self, key: SortKey, types: tuple[str, ...]) -> tuple[str, list[Any]]:
        if key.param == "_id":
            return "r.id", []
        if key.param == "_lastUpdated":
            return "v.last_updated", []
        table, _columns = INDEX_TABLES[key.table]
        column = {
            "ix_string": "norm",
            "ix_token": "code",
            "ix_reference": "ref_id",
            "ix_date": "hi" if key.descending else "lo",
            "ix_number": "value",
            "ix_quantity": "value",
            "ix_uri": "uri",
        }[table]
        aggregate = "max" if key.descending else "min"
        numeric = table in ("ix_date", "ix_number", "ix_quantity")
        if key.descending:
            sentinel = -NULL_LAST_NUM_ASC if numeric else ""
        else:
            sentinel = NULL_LAST_NUM_ASC if numeric else NULL_LAST_TEXT_ASC
        pid_sql, pid_params = _pids(types, key.param)
        valid, valid_params = self._valid()
        return (
            f"COALESCE((SELECT {aggregate}({column}) FROM {table} WHERE rid = r.rid AND {pid_sql} "
            f"AND {valid}), ?)",
            [*pid_params, *valid_params, sentinel],
        )


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
    if prefix == "eq":
        return "lo >= ? AND hi <= ?", [low, high]
    if prefix == "ne":
        return "NOT (lo >= ? AND hi <= ?)", [low, high]
    if prefix == "gt":
        return "hi > ?", [high]
    if prefix == "lt":
        return "lo < ?", [low]
    if prefix == "ge":
        return "(hi > ? OR (lo >= ? AND hi <= ?))", [high, low, high]
    if prefix == "le":
        return "(lo < ? OR (lo >= ? AND hi <= ?))", [low, low, high]
    if prefix == "sa":
        return "lo > ?", [high]
    if prefix == "eb":
        return "hi < ?", [low]
    # ap: overlap with the value widened by 10% of its distance from now (at least a day)
    now = int(time.time() * 1_000_000)
    margin = max(DAY_US, abs(now - low) // 10)
    return "hi >= ? AND lo <= ?", [low - margin, high + margin]


def number_condition(prefix: str, low: float, high: float, value: float) -> tuple[str, list[Any]]:
    if prefix == "eq":
        return "value >= ? AND value < ?", [low, high]
    if prefix == "ne":
        return "NOT (value >= ? AND value < ?)", [low, high]
    if prefix in ("gt", "sa"):
        return "value > ?", [value]
    if prefix in ("lt", "eb"):
        return "value < ?", [value]
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
