"""Document design of the MongoDB store: one document per resource version, index entries inside.

Collection ``versions``, one document per version (field names are short: they repeat in every
document and in the indexes)::

    {_id: ObjectId, sv: 1,                  # schema version, for future migrations
     t: "Patient", i: "123", v: 2,          # type, id, version number
     s: 57, u: 9223372036854775807,         # valid for sequence numbers s <= n < u (u: superseded)
     lu: <µs>, ut: <µs>,                    # lastUpdated, and when it was superseded
     d: false, m: "PUT", b: <JSON bytes>,   # tombstone flag, method, the resource as written
     x: [{p: <param key>, a: ..., b: ..., c: ...}, ...],  # search index entries
     o: {"<param key hex>": {l: <lowest>, h: <highest>}}}  # sort values per parameter

The body stays the exact JSON bytes the server wrote (decimals such as 1.50 keep their
precision; no re-serialisation on read). Only ``x`` and ``o`` are queried. A version and its index
entries are one document, so writing a version writes its index in the same operation and search
never needs a second collection; superseding a version only sets its ``u``/``ut``.

Entry layout per value type (``p`` = store/keys.py param_key(type, code); one multikey index on
``x.p, x.a, x.b, u`` serves every type, equality first, then the range field):

========== ======================= ========================= =================
table      a                       b                         c / v
========== ======================= ========================= =================
strings    normalised text         exact text
tokens     code                    system ("" for none)
references target id, or the URL   target type ("" if none)  v: version
dates      low bound µs            high bound µs (inclusive)
numbers    value
quantities value                   code or unit ("")         c: system ("")
uris       uri
geo        latitude                longitude
texts      one entry per term (search/text.py): free text as a multikey "token array"
composite  the first component's a, b, c; ``c1``, ``c2``...: the other components' entries
========== ======================= ========================= =================

Every search condition is written so that the index bounds ``x.a``, the first range field
(tests/contract/bounds.py checks it on every query of the contract suite):

- dates: a value whose range is shorter than POINT_US (any date, dateTime, instant, and periods
  up to 400 days) is a *point* entry: its end ``b`` is below ``a + POINT_US``, so a condition on
  the end becomes a bounded range on ``a``. A longer or open period is a *wide* entry under
  its own key (``wide_key``), with a second entry holding its end in ``a`` (``end_key``), so
  "ends after X" is a range on ``a`` too;
- quantities: the value first, so a search without a unit is still a range on ``a``;
- composites: the first component's values are the entry's own ``a``/``b`` (a code, usually);
- ``:contains`` on names and addresses (CONTAINS_CODES): the value's trigrams are entries of
  ``trigram_key``; a search takes one of its trigrams (or, under three characters, a prefix of
  them) as the index bound and checks the substring on the value's own entry.

Free text is deliberately not a MongoDB ``$text`` index: a collection has one text index only,
``$text`` cannot sit inside ``$elemMatch``, ``$or`` or ``$nor`` with other conditions as this
store builds them, it stems each document in one language (our resources are bilingual), it
knows nothing of the snapshot bound ``u``, and mongomock (the test engine) does not run it. Terms
as ordinary entries use the same multikey index as every other parameter: each word of a query is
an ``$elemMatch`` with equality (or a prefix range) on ``x.a``, bounded by the index.
Positions are entries too: the latitude/longitude box of a ``near`` search is an index range;
the exact distance is checked in search.py (staged, like chains).
"""

from __future__ import annotations

import itertools
from typing import Any

from pymongo import ASCENDING, DESCENDING, IndexModel

from fhir_server.store.keys import param_key
from fhir_server.store.protocol import IndexRows, StoredVersion

SCHEMA_VERSION = 2  # 2: dates split in point / wide entries, quantities value-first,
#                    composites with their first component inline, trigrams (docs/deploy.md)
OPEN_END = 9223372036854775807  # "not superseded": the largest BSON int64
VERSIONS = "versions"
COUNTERS = "counters"
META = "meta"
SEQUENCE_ID = "seq"  # counters: n = last sequence number given out, f = append-only ranges in
#                      flight, c / ce = a process's claim on the next turn (store.py)
STATS_ID = "stats"  # counters: live resources per type (_total=estimate)


POINT_US = 400 * 86_400_000_000  # dates shorter than this are points (a year is 366 days)
# string parameters whose :contains is index-bounded by trigram entries (names and addresses)
CONTAINS_CODES = frozenset(
    {
        "name",
        "family",
        "given",
        "address",
        "address-city",
        "address-country",
        "address-postalcode",
        "address-state",
    }
)


# (type, parameter) pairs a whole type is often listed by: each gets two partial indexes on its
# sort values (lowest for ascending, highest for descending), so a page sorted by it is an index
# walk (search.py) instead of a sort of every live version of the type. Others sort their matches.
SORT_INDEXES = (
    ("Patient", "family"),
    ("Patient", "given"),
    ("Patient", "birthdate"),
    ("Observation", "date"),
    ("Encounter", "date"),
    ("AuditEvent", "date"),
    ("CarePlan", "date"),
    ("QuestionnaireResponse", "authored"),
    ("Task", "modified"),
    ("HealthcareService", "name"),
    ("Organization", "name"),
    ("Practitioner", "family"),
)


def sort_value_field(type_: str, code: str, descending: bool) -> str:
    return f"o.{sort_field(param_key(type_, code))}.{'h' if descending else 'l'}"


def wide_key(type_: str, code: str) -> int:
    """The key of a date parameter's entries that span POINT_US or more (open periods)."""
    return param_key(type_, code + "\x00wide")


def end_key(type_: str, code: str) -> int:
    """The key of the entries that hold a wide date's end in ``a``."""
    return param_key(type_, code + "\x00end")


def trigram_key(type_: str, code: str) -> int:
    return param_key(type_, code + "\x00tri")


def trigrams(text: str) -> set[str]:
    """The three-character substrings of a normalised string (the string itself if shorter)."""
    if len(text) < 3:
        return {text} if text else set()
    return {text[i : i + 3] for i in range(len(text) - 2)}


def sort_field(key: int) -> str:
    """The ``o`` sub-document name of a parameter key (unsigned hex: a plain field name)."""
    return f"{key & 0xFFFFFFFFFFFFFFFF:x}"


def version_document(version: StoredVersion, seq: int, index: IndexRows | None) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "sv": SCHEMA_VERSION,
        "t": version.type,
        "i": version.id,
        "v": version.version,
        "s": seq,
        "u": OPEN_END,
        "lu": version.last_updated,
        "ut": OPEN_END,
        "d": version.deleted,
        "m": version.method,
        "b": version.body,
    }
    if index is not None and not version.deleted:
        entries, sort_values = index_entries(version.type, index)
        if entries:
            doc["x"] = entries
            doc["o"] = sort_values
    return doc


def stored_version(doc: dict[str, Any]) -> StoredVersion:
    return StoredVersion(
        type=doc["t"],
        id=doc["i"],
        version=doc["v"],
        last_updated=doc["lu"],
        deleted=doc["d"],
        method=doc["m"],
        body=doc.get("b"),
        seq=doc["s"],
    )


# -- index entries ----------------------------------------------------------------------------


def _entries_of(index: IndexRows) -> list[tuple[str, int, dict[str, Any], Any, Any]]:
    """(code, group, entry without p, sort value low, sort value high) for every row."""
    out: list[tuple[str, int, dict[str, Any], Any, Any]] = []
    for code, norm, exact, group in index.strings:
        out.append((code, group, {"a": norm, "b": exact}, norm, norm))
    for code, system, value, group in index.tokens:
        out.append((code, group, {"a": value, "b": system or ""}, value, value))
    for code, ref_type, ref_id, ref_version, url, group in index.references:
        entry: dict[str, Any] = {"a": ref_id or url or "", "b": ref_type or ""}
        if ref_version:
            entry["v"] = ref_version
        out.append((code, group, entry, entry["a"], entry["a"]))
    for code, low, high, group in index.dates:
        out.append((code, group, {"a": low, "b": high}, low, high))  # split in index_entries
    for code, number, group in index.numbers:
        out.append((code, group, {"a": number}, number, number))
    for code, system, unit, number, group in index.quantities:
        entry = {"a": number, "b": unit or "", "c": system or ""}
        out.append((code, group, entry, number, number))
    for code, uri, group in index.uris:
        out.append((code, group, {"a": uri}, uri, uri))
    return out


def index_entries(type_: str, index: IndexRows) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The ``x`` entries and ``o`` sort values of a version's index rows.

    Composite components (codes ``name$0``, ``name$1``... with a group number > 0) become one
    entry per combination of their values within the group, so that one ``$elemMatch`` finds the
    components of the same repetition together.
    """
    entries: list[dict[str, Any]] = []
    seen: set[tuple] = set()
    sort_values: dict[str, dict[str, Any]] = {}
    groups: dict[tuple[int, str], dict[int, list[dict[str, Any]]]] = {}
    dates = {(code, low, high) for code, low, high, _ in index.dates}
    for code, group, entry, low, high in _entries_of(index):
        name, dollar, position = code.rpartition("$")
        if group and dollar and position.isdigit():
            parts = groups.setdefault((group, name), {})
            parts.setdefault(int(position), []).append(entry)
            continue
        key = param_key(type_, code)
        if (code, low, high) in dates and entry["b"] - entry["a"] >= POINT_US:
            _append(entries, seen, {"p": wide_key(type_, code), **entry})
            _append(entries, seen, {"p": end_key(type_, code), "a": entry["b"]})
        else:
            _append(entries, seen, {"p": key, **entry})
        if ":" in code:  # modifier values (":text", ":identifier"...) are never sorted on
            continue
        slot = sort_values.setdefault(sort_field(key), {"l": low, "h": high})
        if low < slot["l"]:
            slot["l"] = low
        if high > slot["h"]:
            slot["h"] = high
    for code, norm, _exact, _group in index.strings:
        if code in CONTAINS_CODES:
            tri = trigram_key(type_, code)
            for gram in sorted(trigrams(norm)):
                _append(entries, seen, {"p": tri, "a": gram})
    for code, terms in index.texts:
        key = param_key(type_, code)
        for term in terms.split():
            entries.append({"p": key, "a": term})
    for code, lat, lon, _x, _y, _z, _group in index.geo:
        _append(entries, seen, {"p": param_key(type_, code), "a": lat, "b": lon})
    for (_, name), parts in groups.items():
        positions = sorted(parts)
        key = param_key(type_, name)
        for combination in itertools.product(*(parts[p] for p in positions)):
            composite: dict[str, Any] = {"p": key}
            for position, entry in zip(positions, combination, strict=True):
                if position == 0:
                    composite.update(entry)  # the first component bounds the index
                else:
                    composite[f"c{position}"] = entry
            _append(entries, seen, composite)
    return entries, sort_values


def _append(entries: list[dict[str, Any]], seen: set[tuple], entry: dict[str, Any]) -> None:
    marker = _freeze(entry)
    if marker not in seen:
        seen.add(marker)
        entries.append(entry)


def _freeze(value: Any) -> Any:
    if isinstance(value, dict):
        return tuple(sorted((k, _freeze(v)) for k, v in value.items()))
    return (type(value).__name__, value)


# -- indexes (created at start-up; create_indexes is idempotent for identical definitions) -------


def version_indexes() -> list[IndexModel]:
    """Indexes of the versions collection, the same on every topology.

    ``t_i_v`` is unique on a sharded cluster too: MongoDB allows a unique index whose prefix is
    the shard key's fields, and the shard key ``{t: 1, i: "hashed"}`` has the fields ``t, i``
    (docs/deploy.md, "Sharding"). Identical definitions everywhere also mean that a database
    moved from a replica set to a sharded cluster starts without an index options conflict.
    """
    return [
        # current / vread / instance history; the unique key also stops two creates of one id
        IndexModel(
            [("t", ASCENDING), ("i", ASCENDING), ("v", DESCENDING)], name="t_i_v", unique=True
        ),
        # search: one multikey index for every parameter type; u last so that old versions
        # are skipped inside the index instead of being fetched
        IndexModel(
            [("x.p", ASCENDING), ("x.a", ASCENDING), ("x.b", ASCENDING), ("u", ASCENDING)],
            name="x_p_a_b_u",
        ),
        # system and type history, newest first, and the snapshot bound of searches
        IndexModel([("s", DESCENDING)], name="s"),
        IndexModel([("t", ASCENDING), ("s", DESCENDING)], name="t_s"),
        # _sort=_lastUpdated (id breaks ties) and type scans of current versions
        IndexModel([("t", ASCENDING), ("lu", ASCENDING), ("i", ASCENDING)], name="t_lu_i"),
        IndexModel([("t", ASCENDING), ("u", ASCENDING), ("i", ASCENDING)], name="t_u_i"),
        # superseded versions that still carry index entries: what snapshot pruning visits
        IndexModel(
            [("u", ASCENDING)],
            name="u_superseded",
            partialFilterExpression={"u": {"$lt": OPEN_END}, "x": {"$exists": True}},
        ),
        *sort_indexes(),
    ]


def sort_indexes() -> list[IndexModel]:
    """Two small partial indexes per SORT_INDEXES pair: the versions of that type that have a
    value, in value order (then id)."""
    out = []
    for type_, code in SORT_INDEXES:
        for descending in (False, True):
            field = sort_value_field(type_, code, descending)
            out.append(
                IndexModel(
                    [("t", ASCENDING), (field, ASCENDING), ("i", ASCENDING)],
                    name=f"sort_{type_}_{code}_{'h' if descending else 'l'}",
                    partialFilterExpression={"t": type_, field: {"$exists": True}},
                )
            )
    return out
