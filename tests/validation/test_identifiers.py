"""Belgian identifiers: INSZ/SSIN (national register and BIS numbers), NIHDI and CBE numbers."""

from __future__ import annotations

import pytest

from fhir_server.validation.identifiers import (
    PSEUDONYMIZATION,
    check_cbe,
    check_identifier,
    check_nihdi,
    check_ssin,
    ssin_kind,
)

NS = "https://www.ehealth.fgov.be/standards/fhir/core/NamingSystem/"


def with_check_digits(nine: str, born_2000_or_later: bool = False) -> str:
    base = int(nine) + (2_000_000_000 if born_2000_or_later else 0)
    return f"{nine}{97 - base % 97:02d}"


@pytest.mark.parametrize(
    "value",
    [
        "92031412451",  # woman born 14 March 1992
        "90010112395",  # the demo patient of 10-organisations-and-people.json
        "03051224606",  # born 2003: check digits computed with the '2' prefix
        "95470800245",  # BIS number, sex known (month + 40)
        "88231500106",  # BIS number, sex unknown (month + 20)
        with_check_digits("000000001"),  # unknown birth date (all zeroes), before 2000
        with_check_digits("100101002", born_2000_or_later=True),
    ],
)
def test_valid_ssin(value: str) -> None:
    assert check_ssin(value) is None


def test_the_post_2000_rule_is_what_makes_a_2003_number_valid() -> None:
    # the same nine digits with the pre-2000 check digits are a different (valid, 1903) number
    pre = with_check_digits("030512246")
    post = with_check_digits("030512246", born_2000_or_later=True)
    assert pre != post
    assert check_ssin(pre) is None and check_ssin(post) is None
    wrong = post[:9] + f"{(int(post[9:]) + 1) % 100:02d}"
    assert "check digits" in (check_ssin(wrong) or "")


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("92031412452", "check digits of the national register number"),
        ("95470800244", "check digits of the BIS number"),
        ("79121137740", "66 expected"),  # the be-core example SSIN: its check digits are wrong
        ("9203141245", "exactly 11 digits"),
        ("920314124511", "exactly 11 digits"),
        ("92.03.14-124.51", "exactly 11 digits"),
        ("9203141245a", "exactly 11 digits"),
        (92031412451, "exactly 11 digits"),
        ("92131412451", "month digits 13"),
        ("92331412451", "month digits 33"),
        ("92531412451", "month digits 53"),
        ("92033212451", "day digits 32"),
        (with_check_digits("920314000"), "sequence number 000"),
        (with_check_digits("920314999"), "sequence number 999"),
    ],
)
def test_invalid_ssin(value: object, fragment: str) -> None:
    problem = check_ssin(value)
    assert problem is not None and fragment in problem, problem


def test_ssin_kind() -> None:
    assert ssin_kind("92031412451") == "RRN"
    assert ssin_kind("95470800245") == "BIS"
    assert ssin_kind("88231500106") == "BIS"


@pytest.mark.parametrize(
    "value",
    ["18749704477", "10446108", "71032209000", "71000436", "41234502002", "10829059"],
)
def test_valid_nihdi(value: str) -> None:
    assert check_nihdi(value) is None


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("40012345001", "check digits of the NIHDI number"),  # 45 given, 02 expected
        ("99999999999", "check digits"),
        ("999999999", "must be 11 digits"),
        ("1874970447", "must be 11 digits"),
        ("1874-970-44-77", "must be 11 digits"),
    ],
)
def test_invalid_nihdi(value: str, fragment: str) -> None:
    problem = check_nihdi(value)
    assert problem is not None and fragment in problem, problem


@pytest.mark.parametrize("value", ["0412345614", "0876543270", "0201234517"])
def test_valid_cbe(value: str) -> None:
    assert check_cbe(value) is None


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("0425222333", "63 expected"),  # the be-core example CBE: its check digits are wrong
        ("2412345614", "starting with 0 or 1"),
        ("0412.345.614", "10 digits"),
        ("041234561", "10 digits"),
    ],
)
def test_invalid_cbe(value: str, fragment: str) -> None:
    problem = check_cbe(value)
    assert problem is not None and fragment in problem, problem


def test_identifier_dispatch_by_system_and_legacy_uris() -> None:
    assert check_identifier({"system": NS + "ssin", "value": "92031412452"})
    legacy = "https://www.ehealth.fgov.be/standards/fhir/NamingSystem/ssin"
    assert check_identifier({"system": legacy, "value": "92031412452"})
    assert check_identifier({"system": NS + "nihdi-professional", "value": "40012345001"})
    assert check_identifier({"system": NS + "cbe", "value": "0425222333"})
    assert check_identifier({"system": "http://example.org/mrn", "value": "x"}) is None
    assert check_identifier({"system": NS + "ssin"}) is None  # no value: cardinality's business


def test_pseudonymised_values_are_not_checked() -> None:
    identifier = {
        "system": NS + "ssin",
        "value": "cHNldWRvbnltaXNlZA==",
        "_value": {"extension": [{"url": PSEUDONYMIZATION, "valueBoolean": True}]},
    }
    assert check_identifier(identifier) is None
