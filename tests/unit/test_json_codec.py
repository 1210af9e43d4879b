"""JSON in and out: hostile input is a 400, decimals keep their precision."""

from __future__ import annotations

from decimal import Decimal

import pytest

from fhir_server.errors import FhirError
from fhir_server.json_codec import dumps, loads_trusted, parse


@pytest.mark.parametrize("text", ["1.50", "0.10", "-2.000", "3.14159265358979323846", "100"])
def test_decimal_precision_survives_a_round_trip(text: str) -> None:
    body = f'{{"resourceType":"Observation","valueQuantity":{{"value":{text}}}}}'.encode()
    assert f'"value":{text}'.encode() in dumps(parse(body))


def test_decimals_become_decimal_objects_only_when_needed() -> None:
    assert parse(b'{"a": 1.5}') == {"a": Decimal("1.5")}
    assert parse(b'{"a": 1, "b": "1.50"}') == {"a": 1, "b": "1.50"}  # strings are not numbers


def test_time_strings_do_not_trigger_the_decimal_path() -> None:
    value = parse(b'{"t": "10:30:00.000Z", "d": "2024-01-01T00:00:00.123+01:00"}')
    assert value == {"t": "10:30:00.000Z", "d": "2024-01-01T00:00:00.123+01:00"}


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"{",
        b'{"a": }',
        b"[" * 3000 + b"]" * 3000,
        b'{"a": "\xff"}',
        b'{"a": 1e999}',
        b'{"a": NaN}',
        b"\x00",
        b'{"a": 1' + b"0" * 5000 + b".5}",
    ],
)
def test_hostile_or_malformed_json_is_a_400(body: bytes) -> None:
    with pytest.raises(FhirError) as info:
        parse(body)
    assert info.value.status == 400
    assert info.value.outcome()["issue"][0]["code"] == "structure"


def test_stored_json_reads_back_with_decimals() -> None:
    assert loads_trusted(b'{"v": 2.50}') == {"v": Decimal("2.50")}
