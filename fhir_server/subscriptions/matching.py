"""Search-style tests on one version of one resource (subscription criteria, topic
``queryCriteria`` and filters).

The criteria are parsed by the server's own search parser, so they mean exactly what the same
search means. Plain tests (tokens, references, URIs, strings, ids, ``:missing``, ``:not``) are
judged on the version's index values in memory; anything else (chains, ``_has``, dates,
numbers...) runs as a store search for that one resource *as of* the version's sequence number
(the snapshot every search can be pinned to), narrowed by the guard for the subscriber, so a
chain cannot reach data the subscriber may not see.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from fhir_server.errors import FhirError
from fhir_server.service.search import restrict
from fhir_server.store.protocol import IndexRows
from fhir_server.store.query import (
    ANY_SYSTEM,
    NO_SYSTEM,
    IdPred,
    MissingPred,
    NotPred,
    Query,
    ReferencePred,
    StringPred,
    TokenPred,
    UriPred,
)


@dataclass(slots=True, frozen=True)
class Criteria:
    """A parsed ``Type?params`` search."""

    type: str
    raw: str
    clauses: tuple[tuple[Any, ...], ...]
    params: frozenset[str]  # parameter names used (without modifiers)


def parse_criteria(svc: Any, raw: str, allowed_types: frozenset[str] | None = None) -> Criteria:
    """Parse ``Type?params`` (or ``Type``) like a search; 422 with the reason if it does not."""
    if not isinstance(raw, str) or not raw.strip():
        raise FhirError(422, "invalid", "the criteria is empty", "Subscription.criteria")
    text = raw.strip()
    if "://" in text.partition("?")[0]:  # an absolute URL: [base]/Type?params of this server
        base = svc.settings.public_url.rstrip("/") + "/"
        if not text.startswith(base):
            raise FhirError(
                422, "invalid", f"the criteria {raw[:80]!r} is not a search of this server"
            )
        text = text[len(base) :]
    type_, _, query = text.partition("?")
    type_ = type_.strip("/")
    if not svc.model.is_resource(type_):
        raise FhirError(
            422,
            "invalid",
            f"the criteria {raw[:80]!r} does not parse: {type_!r} is not a resource type "
            "(write Type?parameter=value)",
            "Subscription.criteria",
        )
    if allowed_types is not None and type_ not in allowed_types:
        raise FhirError(
            422,
            "not-supported",
            f"changes of {type_} are not notified by this server (criteria may name "
            + ", ".join(sorted(allowed_types))
            + ")",
            "Subscription.criteria",
        )
    try:
        params = parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError:
        raise FhirError(
            422, "invalid", f"the criteria {raw[:80]!r} does not parse", "Subscription.criteria"
        ) from None
    for name, _ in params:
        if name.startswith("_") and name.split(":", 1)[0] not in ("_id", "_has", "_tag"):
            raise FhirError(
                422,
                "invalid",
                f"the criteria may only filter ({name} is a result or unsupported parameter)",
                "Subscription.criteria",
            )
    try:
        parsed = svc.parser.parse((type_,), params, strict=True)
    except FhirError as exc:
        raise FhirError(
            422,
            "invalid",
            f"the criteria {raw[:80]!r} does not parse: {exc.issues[0].diagnostics}",
            "Subscription.criteria",
        ) from None
    names = frozenset(name.split(":", 1)[0].split(".", 1)[0] for name, _ in params)
    return Criteria(type_, raw, tuple(parsed.query.where), names)


def _codes(clauses: Any, out: set[str]) -> None:
    for clause in clauses:
        for pred in clause:
            if isinstance(pred, NotPred):
                _codes((pred.preds,), out)
            else:
                code = getattr(pred, "param", None)
                if isinstance(code, str):
                    out.add(code)


def local_match(extractor: Any, resource: dict, clauses: Any) -> bool | None:
    """Whether the resource matches every clause; None when a test cannot be judged here."""
    if not clauses:
        return True
    codes: set[str] = set()
    _codes(clauses, codes)
    rows = extractor.extract(resource, only=codes)
    for clause in clauses:
        result: bool | None = False
        for pred in clause:
            hit = _pred(pred, rows, resource)
            if hit is None:
                return None
            if hit:
                result = True
                break
        if not result:
            return False
    return True


def _pred(pred: Any, rows: IndexRows, resource: dict) -> bool | None:
    if isinstance(pred, TokenPred):
        return any(
            row[0] == pred.param
            and (pred.code is None or row[2] == pred.code)
            and (
                pred.system == ANY_SYSTEM
                or (pred.system == NO_SYSTEM and not row[1])
                or row[1] == pred.system
            )
            for row in rows.tokens
        )
    if isinstance(pred, ReferencePred):
        if pred.url is not None:
            return any(row[0] == pred.param and row[4] == pred.url for row in rows.references)
        return any(
            row[0] == pred.param
            and row[2] == pred.target_id
            and (pred.target_type is None or row[1] == pred.target_type)
            and (pred.version is None or row[3] == pred.version)
            for row in rows.references
        )
    if isinstance(pred, UriPred) and pred.op == "eq":
        return any(row[0] == pred.param and row[1] == pred.value for row in rows.uris)
    if isinstance(pred, StringPred):
        for row in rows.strings:
            if row[0] != pred.param:
                continue
            if pred.op == "prefix" and row[1].startswith(pred.value):
                return True
            if pred.op == "contains" and pred.value in row[1]:
                return True
            if pred.op == "exact" and row[2] == pred.value:
                return True
            if pred.op == "exact-key" and row[1] == pred.value:  # a phonetic key
                return True
        return False
    if isinstance(pred, IdPred):
        return resource.get("id") in pred.ids
    if isinstance(pred, MissingPred):
        table = getattr(rows, pred.table, None)
        if table is None:
            return None
        present = any(row[0] == pred.param for row in table)
        return (not present) == pred.missing
    if isinstance(pred, NotPred):
        hits = [_pred(p, rows, resource) for p in pred.preds]
        if any(h is None for h in hits):
            return None
        return not any(hits)
    return None


async def matches(
    svc: Any,
    ctx: Any,
    criteria_clauses: Any,
    type_: str,
    resource: dict,
    seq: int,
) -> bool:
    """Whether this version (``resource``, written at ``seq``) matches the clauses."""
    local = local_match(svc.extractor, resource, criteria_clauses)
    if local is not None:
        return local
    query = Query((type_,), where=[(IdPred((resource["id"],)),), *criteria_clauses])
    query.count = 1
    query.snapshot = seq
    if ctx is not None:
        await restrict(svc, ctx, query)
    page = await svc.store.search(query)
    return bool(page.hits)
