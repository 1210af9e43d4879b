"""Version documents of the MongoDB store: shape, index entries, sort values, indexes."""

from __future__ import annotations

import mongomock
import pytest
from pymongo.errors import DuplicateKeyError

from fhir_server.store.keys import param_key
from fhir_server.store.mongo.documents import (
    OPEN_END,
    SCHEMA_VERSION,
    index_entries,
    sort_field,
    stored_version,
    version_document,
    version_indexes,
)
from fhir_server.store.protocol import IndexRows, StoredVersion

ROWS = IndexRows(
    strings=[("family", "peeters", "Peeters", 0), ("family", "janssens", "Janssens", 0)],
    tokens=[
        ("gender", "", "female", 0),
        ("identifier", "urn:x", "1", 0),
        ("code:text", "", "bp", 0),
        ("combo$0", "http://loinc.org", "8480-6", 1),
        ("combo$0", "urn:local", "sys", 1),
        ("combo$0", "http://loinc.org", "8462-4", 2),
    ],
    references=[
        ("subject", "Patient", "p1", None, None, 0),
        ("subject", "Patient", "p1", None, None, 0),  # duplicates are stored once
        ("instantiates", None, None, "2", "http://x.org/Q", 0),
    ],
    dates=[("birthdate", 10, 20, 0), ("birthdate", 5, 7, 0)],
    numbers=[("probability", 0.25, 0)],
    quantities=[
        ("combo$1", "http://unitsofmeasure.org", "mm[Hg]", 120.0, 1),
        ("combo$1", "http://unitsofmeasure.org", "mm[Hg]", 80.0, 2),
    ],
    uris=[("url", "http://x.org/a", 0)],
)


def key(code: str) -> int:
    return param_key("Observation", code)


def test_entries_per_value_type():
    entries, _ = index_entries("Observation", ROWS)
    by_param: dict[int, list[dict]] = {}
    for entry in entries:
        by_param.setdefault(entry["p"], []).append(entry)
    assert by_param[key("family")] == [
        {"p": key("family"), "a": "peeters", "b": "Peeters"},
        {"p": key("family"), "a": "janssens", "b": "Janssens"},
    ]
    assert by_param[key("gender")] == [{"p": key("gender"), "a": "female", "b": ""}]
    assert by_param[key("subject")] == [{"p": key("subject"), "a": "p1", "b": "Patient"}]
    assert by_param[key("instantiates")] == [
        {"p": key("instantiates"), "a": "http://x.org/Q", "b": "", "v": "2"}
    ]
    assert by_param[key("birthdate")][1] == {"p": key("birthdate"), "a": 5, "b": 7}
    assert by_param[key("probability")] == [{"p": key("probability"), "a": 0.25}]
    assert by_param[key("url")] == [{"p": key("url"), "a": "http://x.org/a"}]


def test_long_and_open_dates_are_wide_entries_with_their_end_beside():
    year = 366 * 86_400_000_000
    rows = IndexRows(dates=[("date", 0, year, 0), ("date", 0, 2 * year, 0)])
    entries, sort_values = index_entries("Observation", rows)
    wide = param_key("Observation", "date\x00wide")
    end = param_key("Observation", "date\x00end")
    assert {"p": key("date"), "a": 0, "b": year} in entries  # a year is a point
    assert {"p": wide, "a": 0, "b": 2 * year} in entries
    assert {"p": end, "a": 2 * year} in entries
    assert sort_values[sort_field(key("date"))] == {"l": 0, "h": 2 * year}


def test_names_and_addresses_get_trigram_entries():
    rows = IndexRows(strings=[("family", "janssens", "Janssens", 0), ("text", "abcd", "abcd", 0)])
    entries, _ = index_entries("Patient", rows)
    tri = param_key("Patient", "family\x00tri")
    assert {e["a"] for e in entries if e["p"] == tri} == {"jan", "ans", "nss", "sse", "sen", "ens"}
    assert not [e for e in entries if e["p"] == param_key("Patient", "text\x00tri")]


def test_composite_components_are_combined_per_repetition():
    entries, _ = index_entries("Observation", ROWS)
    combos = [e for e in entries if e["p"] == key("combo")]
    # the first component's values are the entry's own (so the index bounds on the code)
    assert {(c["a"], c["c1"]["a"]) for c in combos} == {
        ("8480-6", 120.0),
        ("sys", 120.0),  # every code of the first repetition with its value
        ("8462-4", 80.0),
    }
    assert not any(e["p"] in (key("combo$0"), key("combo$1")) for e in entries)


def test_sort_values_are_the_lowest_and_highest_value():
    _, sort_values = index_entries("Observation", ROWS)
    assert sort_values[sort_field(key("family"))] == {"l": "janssens", "h": "peeters"}
    assert sort_values[sort_field(key("birthdate"))] == {"l": 5, "h": 20}  # low and high bounds
    assert sort_field(key("code:text")) not in sort_values  # modifier values are not sorted on


def test_version_document_round_trip():
    version = StoredVersion("Observation", "o1", 3, 1_700_000_000_000_000, False, "PUT", b"{}")
    doc = version_document(version, 42, ROWS)
    assert doc["sv"] == SCHEMA_VERSION and doc["s"] == 42
    assert doc["u"] == OPEN_END and doc["ut"] == OPEN_END
    assert doc["x"] and doc["o"]
    expected = StoredVersion("Observation", "o1", 3, 1_700_000_000_000_000, False, "PUT", b"{}", 42)
    assert stored_version(doc) == expected
    tombstone = StoredVersion("Observation", "o1", 4, 1, True, "DELETE", None)
    assert "x" not in version_document(tombstone, 43, ROWS)  # a deleted version matches nothing


def test_indexes_are_accepted_and_version_numbers_unique():
    collection = mongomock.MongoClient().db.versions
    for model in version_indexes():
        spec = dict(model.document)
        collection.create_index(list(spec.pop("key").items()), **spec)
    assert {"t_i_v", "x_p_a_b_u", "s", "t_s", "t_lu_i", "t_u_i", "u_superseded"} <= set(
        collection.index_information()
    )
    version = StoredVersion("Patient", "p", 1, 1, False, "PUT", b"{}")
    collection.insert_one(version_document(version, 1, None))
    with pytest.raises(DuplicateKeyError):  # on every topology (docs/deploy.md, "Sharding")
        collection.insert_one(version_document(version, 2, None))
