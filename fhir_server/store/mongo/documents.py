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
quantities code or unit ("")       value                     c: system ("")
uris       uri
geo        latitude                longitude
texts      one entry per term (search/text.py): free text as a multikey "token array"
composite  ``c0``, ``c1``...: the component entries (without ``p``) of one repetition
========== ======================= ========================= =================

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

SCHEMA_VERSION = 1
OPEN_END = 9223372036854775807  # "not superseded": the largest BSON int64
VERSIONS = "versions"
COUNTERS = "counters"
META = "meta"
SEQUENCE_ID = "seq"  # counters document: n = last committed sequence number, w = writer turns


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
        out.append((code, group, {"a": low, "b": high}, low, high))
    for code, number, group in index.numbers:
        out.append((code, group, {"a": number}, number, number))
    for code, system, unit, number, group in index.quantities:
        entry = {"a": unit or "", "b": number, "c": system or ""}
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
    for code, group, entry, low, high in _entries_of(index):
        name, dollar, position = code.rpartition("$")
        if group and dollar and position.isdigit():
            parts = groups.setdefault((group, name), {})
            parts.setdefault(int(position), []).append(entry)
            continue
        key = param_key(type_, code)
        _append(entries, seen, {"p": key, **entry})
        if ":" in code:  # modifier values (":text", ":identifier"...) are never sorted on
            continue
        slot = sort_values.setdefault(sort_field(key), {"l": low, "h": high})
        if low < slot["l"]:
            slot["l"] = low
        if high > slot["h"]:
            slot["h"] = high
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


def version_indexes(unique_versions: bool = True) -> list[IndexModel]:
    """Indexes of the versions collection.

    ``unique_versions`` is False on a sharded cluster: a unique index there must start with the
    shard key, and the recommended shard key hashes the id (docs/deploy.md); version numbers stay
    unique because writers are serialised by the sequence counter (see store.py).
    """
    return [
        # current / vread / instance history; the unique key also stops two creates of one id
        IndexModel(
            [("t", ASCENDING), ("i", ASCENDING), ("v", DESCENDING)],
            name="t_i_v",
            unique=unique_versions,
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
    ]
