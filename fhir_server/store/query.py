"""The search query the search layer hands to a store: a small, store-neutral tree.

search/parse.py turns URL parameters into this; each store compiles it (SQL for SQLite, an
aggregation pipeline for MongoDB). Keeping FHIR's parsing rules out of the stores means both stores
share one interpretation of every modifier and prefix, and the contract tests prove it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

ANY_SYSTEM = "\x00any"  # token predicate without a system constraint
NO_SYSTEM = ""  # token predicate "|code": the value must have no system

Comparator = Literal["eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap"]


@dataclass(slots=True, frozen=True)
class StringPred:
    param: str
    op: Literal["prefix", "exact", "contains", "exact-key"]
    value: str  # normalized for prefix/contains, verbatim for exact, the key for exact-key


@dataclass(slots=True, frozen=True)
class TokenPred:
    param: str
    system: str  # ANY_SYSTEM, NO_SYSTEM or a system URI
    code: str | None  # None: "system|" (any code in the system)


@dataclass(slots=True, frozen=True)
class TokenInPred:
    """``code:in=[value set]``: the token is one of ``codes``, the expansion of a value set
    (``:not-in`` is a NotPred of this). ``system`` "" matches values indexed without a system."""

    param: str
    codes: tuple[tuple[str, str], ...]  # (system, code), sorted, no duplicates


@dataclass(slots=True, frozen=True)
class ReferencePred:
    param: str
    target_type: str | None  # None: any type
    target_id: str | None
    version: str | None = None
    url: str | None = None  # absolute / canonical reference instead of type+id


@dataclass(slots=True, frozen=True)
class DatePred:
    param: str
    prefix: Comparator
    low: int  # µs, inclusive bounds of the searched value's precision range
    high: int


@dataclass(slots=True, frozen=True)
class NumberPred:
    param: str
    prefix: Comparator
    low: float  # precision range of the searched value
    high: float
    value: float


@dataclass(slots=True, frozen=True)
class QuantityPred:
    param: str
    prefix: Comparator
    low: float
    high: float
    value: float
    system: str | None  # None: any
    code: str | None  # code or unit; None: any


@dataclass(slots=True, frozen=True)
class UriPred:
    param: str
    op: Literal["eq", "above", "below"]
    value: str


@dataclass(slots=True, frozen=True)
class MissingPred:
    param: str
    table: str  # strings | tokens | references | dates | numbers | quantities | uris
    missing: bool


@dataclass(slots=True, frozen=True)
class IdPred:
    ids: tuple[str, ...]


@dataclass(slots=True, frozen=True)
class CompositePred:
    param: str
    components: tuple[Pred, ...]  # each names a component sub-parameter "param$i"


@dataclass(slots=True, frozen=True)
class ChainPred:
    """``subject:Patient.name=x``: the reference param points at a resource matching ``query``."""

    param: str
    query: Query


@dataclass(slots=True, frozen=True)
class HasPred:
    """``_has:Observation:patient:code=x``: some source resource refers here and matches."""

    source_type: str
    param: str  # the reference parameter on the source type
    query: Query


@dataclass(slots=True, frozen=True)
class TextPred:
    """Free text (``_content``, ``_text``): every word matches one of the resource's terms; a
    word is an OR of forms (search/text.py), a form ending in ``*`` is a prefix."""

    param: str  # "_content" or "_text"
    words: tuple[tuple[str, ...], ...]


@dataclass(slots=True, frozen=True)
class NearPred:
    """A position within ``km`` of (lat, lon) (Location ``near``; search/geo.py)."""

    param: str
    lat: float
    lon: float
    km: float


@dataclass(slots=True, frozen=True)
class NotPred:
    """No value matches any of ``preds`` (resources without any value match too)."""

    preds: tuple[Pred, ...]


@dataclass(slots=True, frozen=True)
class InPred:
    """Membership of the resource id in a precomputed set (compartments, security filters)."""

    keys: tuple[tuple[str, str], ...]  # (type, id)


Pred = (
    StringPred
    | TokenPred
    | TokenInPred
    | ReferencePred
    | DatePred
    | NumberPred
    | QuantityPred
    | UriPred
    | MissingPred
    | IdPred
    | CompositePred
    | ChainPred
    | HasPred
    | NotPred
    | InPred
    | TextPred
    | NearPred
)

# predicates on one parameter's index values (the others combine or nest queries)
INDEX_PREDS = (
    StringPred,
    TokenPred,
    TokenInPred,
    ReferencePred,
    DatePred,
    NumberPred,
    QuantityPred,
    UriPred,
)


@dataclass(slots=True, frozen=True)
class SortKey:
    param: str  # "_id", "_lastUpdated" or a search parameter code
    table: str  # index table holding the sort values ("" for _id/_lastUpdated)
    descending: bool = False
    # distance order (table "geo"): the searched point and radius of the near predicate; the
    # value is the squared chord to the nearest position within the radius (search/geo.py),
    # of the resource itself or, with ``via`` (a reference parameter), of the resources it
    # refers to through it (HealthcareService?location.near=...)
    near: NearPred | None = None
    via: str | None = None
    via_types: tuple[str, ...] = ()  # the types the ``via`` references lead to


@dataclass(slots=True)
class Query:
    types: tuple[str, ...]
    where: list[tuple[Pred, ...]] = field(default_factory=list)  # AND of ORs
    sort: tuple[SortKey, ...] = ()
    count: int = 20
    snapshot: int | None = None  # sequence number to search "as of"; None = now
    after: tuple | None = None  # keyset position: the sort values of the last row seen
    reverse: bool = False  # walk the order backwards (for "previous" links)
    order_hint: str | None = None  # the store's order of the first page, from the cursor
    total: Literal["none", "estimate", "accurate"] = "none"


@dataclass(slots=True)
class Hit:
    type: str
    id: str
    body: bytes
    sort_values: tuple


@dataclass(slots=True)
class SearchPage:
    hits: list[Hit]
    snapshot: int
    has_more: bool
    total: int | None = None
    order: str | None = None  # how the store ordered this page (kept in the cursor)
