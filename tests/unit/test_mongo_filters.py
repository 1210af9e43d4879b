"""The MongoDB store's search filters, executed by mongomock and compared with the embedded store.

Date and number prefixes are checked differentially: the same stored values and searched ranges
go through the SQLite store's SQL conditions (run by SQLite) and through the MongoDB filters (run
by mongomock's query engine); the matches must be the same. So a wrong operator, a swapped bound
or a string comparison of dates fails here, not just a changed text.
"""

from __future__ import annotations

import itertools
import sqlite3

import mongomock
import pytest

from fhir_server.store.keys import param_key
from fhir_server.store.mongo.documents import trigram_key, trigrams
from fhir_server.store.mongo.filters import (
    date_condition,
    number_condition,
    pred_filter,
    snapshot_filter,
)
from fhir_server.store.query import (
    ANY_SYSTEM,
    NO_SYSTEM,
    CompositePred,
    DatePred,
    IdPred,
    MissingPred,
    NotPred,
    QuantityPred,
    StringPred,
    TokenPred,
    UriPred,
)
from fhir_server.store.sqlite import search_sql

PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb")
DAY = 86_400_000_000
Y2024 = 1_704_067_200_000_000  # 2024-01-01T00:00:00Z in µs


def _mongo(rows: list[tuple]) -> mongomock.Collection:
    collection = mongomock.MongoClient().db.versions
    collection.insert_many([{"n": n, "x": [{"p": 1, **entry}]} for n, entry in rows])
    return collection


def _matches(collection: mongomock.Collection, condition: dict) -> set[int]:
    return {d["n"] for d in collection.find({"x": {"$elemMatch": {"p": 1, **condition}}})}


# stored date ranges: days, a month, an instant, open-ended periods, ranges across the bounds
STORED_DATES = [
    (Y2024, Y2024 + DAY - 1),
    (Y2024 + DAY, Y2024 + 2 * DAY - 1),
    (Y2024 - DAY, Y2024 - 1),
    (Y2024, Y2024 + 31 * DAY - 1),
    (Y2024 + 12 * 3_600_000_000, Y2024 + 12 * 3_600_000_000),
    (-62_135_596_800_000_000, Y2024 + DAY // 2),
    (Y2024 + DAY // 2, 253_402_300_799_999_999),
    (Y2024 - 5 * DAY, Y2024 + 5 * DAY),
]
SEARCHED_DATES = [
    (Y2024, Y2024 + DAY - 1),  # 2024-01-01
    (Y2024, Y2024 + 31 * DAY - 1),  # 2024-01
    (Y2024 + DAY, Y2024 + DAY),  # an instant
    (Y2024 - 365 * DAY, Y2024 - 1),  # 2023
]


@pytest.mark.parametrize("prefix", PREFIXES)
@pytest.mark.parametrize("searched", SEARCHED_DATES)
def test_date_prefixes_match_the_embedded_store(prefix: str, searched: tuple[int, int]):
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE d (n INTEGER, lo INTEGER, hi INTEGER)")
    db.executemany("INSERT INTO d VALUES (?, ?, ?)", [(n, *r) for n, r in enumerate(STORED_DATES)])
    sql, params = search_sql.date_condition(prefix, *searched)
    expected = {row[0] for row in db.execute(f"SELECT n FROM d WHERE {sql}", params)}
    collection = _mongo([(n, {"a": lo, "b": hi}) for n, (lo, hi) in enumerate(STORED_DATES)])
    assert _matches(collection, date_condition(prefix, *searched)) == expected


def test_date_approximately_widens_the_range():
    collection = _mongo([(0, {"a": Y2024, "b": Y2024 + DAY - 1}), (1, {"a": 0, "b": DAY})])
    found = _matches(collection, date_condition("ap", Y2024 + 2 * DAY, Y2024 + 3 * DAY - 1))
    assert found == {0}  # two days away from a date more than a year back: within 10 %


STORED_NUMBERS = [99.4, 99.5, 99.96, 100.0, 100.04, 100.5, 100.6, -100.0, 0.0, 1e6]
SEARCHED_NUMBERS = [(100.0, 99.5, 100.5), (100.0, 99.95, 100.05), (0.0, -0.5, 0.5)]


@pytest.mark.parametrize("prefix", [*PREFIXES, "ap"])
@pytest.mark.parametrize("searched", SEARCHED_NUMBERS)
def test_number_prefixes_match_the_embedded_store(prefix: str, searched: tuple):
    value, low, high = searched
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE v (n INTEGER, value REAL)")
    db.executemany("INSERT INTO v VALUES (?, ?)", list(enumerate(STORED_NUMBERS)))
    sql, params = search_sql.number_condition(prefix, low, high, value)
    expected = {row[0] for row in db.execute(f"SELECT n FROM v WHERE {sql}", params)}
    collection = _mongo([(n, {"a": v}) for n, v in enumerate(STORED_NUMBERS)])
    assert _matches(collection, number_condition("a", prefix, low, high, value)) == expected


# -- whole documents ------------------------------------------------------------------------------

K = param_key


def _trigrams(code: str, text: str) -> list[dict]:
    return [{"p": trigram_key("Patient", code), "a": g} for g in sorted(trigrams(text))]


def _doc(n: int, type_: str = "Observation", *entries: dict, s: int = 1, u: int = 2**63 - 1):
    return {"n": n, "t": type_, "i": f"id{n}", "s": s, "u": u, "d": False, "x": list(entries)}


DOCS = [
    _doc(0, "Observation", {"p": K("Observation", "code"), "a": "8480-6", "b": "http://loinc.org"}),
    _doc(1, "Observation", {"p": K("Observation", "code"), "a": "8480-6", "b": ""}),
    _doc(2, "Observation", {"p": K("Observation", "status"), "a": "final", "b": ""}),
    _doc(
        3,
        "Patient",
        {"p": K("Patient", "family"), "a": "o'brien (jr.)", "b": "O'Brien (Jr.)"},
        *_trigrams("family", "o'brien (jr.)"),
    ),
    _doc(
        4,
        "Patient",
        {"p": K("Patient", "family"), "a": "obrien", "b": "Obrien"},
        *_trigrams("family", "obrien"),
    ),
    _doc(
        5,
        "Observation",
        {
            "p": K("Observation", "code-value-quantity"),
            "a": "8480-6",
            "b": "http://loinc.org",
            "c1": {"a": 120.0, "b": "mm[Hg]", "c": "http://unitsofmeasure.org"},
        },
        {
            "p": K("Observation", "code-value-quantity"),
            "a": "8462-4",
            "b": "http://loinc.org",
            "c1": {"a": 80.0, "b": "mm[Hg]", "c": "http://unitsofmeasure.org"},
        },
    ),
    _doc(6, "ValueSet", {"p": K("ValueSet", "url"), "a": "http://x.org/fhir/ValueSet/a"}),
    _doc(7, "ValueSet", {"p": K("ValueSet", "url"), "a": "http://x.org/fhir/ValueSet"}),
    _doc(8, "Observation", s=5),  # created after the snapshot below
    _doc(9, "Observation", u=3),  # superseded after the snapshot
    _doc(10, "Observation", u=1),  # superseded before the snapshot
]


def _find(types: tuple[str, ...], pred, snapshot: int = 2) -> set[int]:
    collection = mongomock.MongoClient().db.versions
    collection.insert_many([dict(d) for d in DOCS])
    query = {**snapshot_filter(types, snapshot), **pred_filter(pred, types, _no_stages)}
    return {d["n"] for d in collection.find(query)}


def _no_stages(pred):
    raise AssertionError(f"unexpected staged predicate {pred!r}")


OBS = ("Observation",)
CASES = [
    (OBS, TokenPred("code", ANY_SYSTEM, "8480-6"), {0, 1}),
    (OBS, TokenPred("code", "http://loinc.org", "8480-6"), {0}),
    (OBS, TokenPred("code", NO_SYSTEM, "8480-6"), {1}),
    (OBS, TokenPred("code", "http://loinc.org", None), {0}),
    (OBS, NotPred((TokenPred("code", ANY_SYSTEM, "8480-6"),)), {2, 5, 9}),
    (OBS, MissingPred("code", "tokens", True), {2, 5, 9}),
    (OBS, MissingPred("code", "tokens", False), {0, 1}),
    (("Patient",), StringPred("family", "prefix", "o'b"), {3}),
    (("Patient",), StringPred("family", "contains", "(jr.)"), {3}),  # regex characters
    (("Patient",), StringPred("family", "contains", "b.ien"), set()),  # "." is no wildcard
    (("Patient",), StringPred("family", "exact", "Obrien"), {4}),
    (("Patient",), StringPred("family", "exact", "obrien"), set()),
    (("ValueSet",), UriPred("url", "below", "http://x.org/fhir/ValueSet"), {6, 7}),
    (("ValueSet",), UriPred("url", "above", "http://x.org/fhir/ValueSet/a/b"), {6, 7}),
    (("ValueSet",), UriPred("url", "eq", "http://x.org/fhir/ValueSet"), {7}),
    (("Patient", "Observation"), IdPred(("id3", "id2")), {2, 3}),
]


@pytest.mark.parametrize("types, pred, expected", CASES)
def test_predicates_run_on_mongomock(types, pred, expected):
    assert _find(types, pred) == expected


def _quantity(prefix: str, value: float) -> QuantityPred:
    return QuantityPred(
        "code-value-quantity$1", prefix, value - 0.5, value + 0.5, value, None, None
    )


@pytest.mark.parametrize(
    "code, prefix, value, expected",
    [
        ("8480-6", "eq", 120, {5}),
        ("8480-6", "eq", 80, set()),  # 80 belongs to the other component pair
        ("8462-4", "eq", 80, {5}),
        ("8480-6", "ge", 120, {5}),  # ge is an $or: it must stay under its component
        ("8480-6", "ne", 120, set()),
        ("8462-4", "lt", 100, {5}),
    ],
)
def test_composite_components_come_from_one_repetition(code, prefix, value, expected):
    pred = CompositePred(
        "code-value-quantity",
        (TokenPred("code-value-quantity$0", ANY_SYSTEM, code), _quantity(prefix, value)),
    )
    assert _find(OBS, pred) == expected


def test_composite_with_two_alternatives_per_component():
    date = DatePred("x$1", "ge", Y2024, Y2024 + DAY - 1)
    pred = CompositePred("x", (DatePred("x$0", "le", Y2024, Y2024 + DAY - 1), date))
    entry = {"p": K("Observation", "x"), "a": 0, "b": 1, "c1": {"a": Y2024, "b": Y2024}}
    collection = mongomock.MongoClient().db.versions
    collection.insert_one({"n": 1, "x": [entry]})
    query = pred_filter(pred, OBS, _no_stages)
    assert "$and" in query["x"]["$elemMatch"]  # the two $or did not overwrite each other
    assert [d["n"] for d in collection.find(query)] == [1]


def test_every_prefix_has_a_filter():
    for prefix, field in itertools.product([*PREFIXES, "ap"], ["a", "b"]):
        assert number_condition(field, prefix, 1.0, 2.0, 1.5)
        assert date_condition(prefix, 1, 2)
