"""R4 search: number, quantity, composite and uri parameters (spec checklist).

number (3.1.1.4.2): the precision of the search value sets an implicit range: ``100`` means
[99.5, 100.5), ``100.0`` [99.95, 100.05), ``100.00`` [99.995, 100.005). ``gt/lt/ge/le`` compare
with the exact value; ``sa``/``eb`` use the general prefix rule: no overlap with the search range;
``ap`` is about 10%.

quantity (3.1.1.4.9): ``[prefix]value|system|code``; ``value||code`` matches the code *or* the
stated unit; ``value|system|code`` needs both.

composite (3.1.1.4.12): ``a$b``; both parts must match values from the *same* repeating element
(e.g. the same Observation.component).

uri (3.1.1.4.13): exact match by default; ``:below`` matches the uri and uris under it (path);
``:above`` matches the uri and the uris it is under.
"""

from __future__ import annotations

import pytest

from fhir_server.service.core import FhirService
from tests.contract.test_search_harness import assert_ids, cases, load, run, search_error

UCUM = "http://unitsofmeasure.org"
LOINC = "http://loinc.org"
SCT = "http://snomed.info/sct"
PATIENT = {"reference": "Patient/x"}


def risk(id_: str, *probabilities: float) -> dict:
    resource = {"resourceType": "RiskAssessment", "id": id_, "status": "final", "subject": PATIENT}
    if probabilities:
        resource["prediction"] = [{"probabilityDecimal": p} for p in probabilities]
    return resource


def sequence(id_: str, *starts: int) -> dict:
    resource = {"resourceType": "MolecularSequence", "id": id_, "coordinateSystem": 0}
    if starts:
        resource["variant"] = [{"start": s} for s in starts]
    return resource


def obs(id_: str, **extra: object) -> dict:
    return {
        "resourceType": "Observation",
        "id": id_,
        "status": "final",
        "code": {"text": "value"},
        **extra,
    }


def ucum(value: float, code: str) -> dict:
    return {"value": value, "unit": code, "system": UCUM, "code": code}


def loinc(code: str) -> dict:
    return {"coding": [{"system": LOINC, "code": code}]}


NUMBERS = [
    risk("ra1", 99.4),
    risk("ra2", 99.5),
    risk("ra3", 99.52),
    risk("ra4", 99.96),
    risk("ra5", 100),
    risk("ra6", 0.25),
    risk("ra7"),  # no prediction
    risk("ra8", 10, 60),  # two values
    risk("ra9", 99.48),
    sequence("ms1", 100),
    sequence("ms2", 150, 200),
    sequence("ms3"),
]

QUANTITIES = [
    obs("q1", valueQuantity=ucum(5.4, "mg")),
    obs("q2", valueQuantity=ucum(5.4, "g")),
    obs("q3", valueQuantity=ucum(5.44, "mg")),
    obs("q4", valueQuantity=ucum(5.45, "mg")),
    obs("q5", valueQuantity={"value": 100, "unit": "kg"}),  # a unit, no system/code
    obs("q6", valueQuantity={"value": 72, "unit": "beats/minute", "system": UCUM, "code": "/min"}),
    obs("q7", valueString="n/a"),
    # composites: code + value on the resource, or on each component
    obs("c1", code=loinc("8480-6"), valueQuantity=ucum(120, "mm[Hg]")),
    obs("c2", code=loinc("8480-6"), valueQuantity=ucum(150, "mm[Hg]")),
    obs(
        "bp1",
        code=loinc("85354-9"),
        component=[
            {"code": loinc("8480-6"), "valueQuantity": ucum(120, "mm[Hg]")},
            {"code": loinc("8462-4"), "valueQuantity": ucum(80, "mm[Hg]")},
        ],
    ),
    obs(
        "bp2",
        code=loinc("85354-9"),
        component=[  # the same values, swapped between codes
            {"code": loinc("8480-6"), "valueQuantity": ucum(80, "mm[Hg]")},
            {"code": loinc("8462-4"), "valueQuantity": ucum(120, "mm[Hg]")},
        ],
    ),
    # composites over the other value types
    obs("c3", code=loinc("1111-1"), valueDateTime="2024-01-15"),
    obs(
        "c4",
        code=loinc("2222-2"),
        valueCodeableConcept={"coding": [{"system": SCT, "code": "pos"}]},
    ),
    obs("c5", code=loinc("3333-3"), valueString="Positive result"),
]

AMB = {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"}
ENCOUNTERS = [  # Encounter.length is a Duration
    {
        "resourceType": "Encounter",
        "id": "e1",
        "status": "finished",
        "class": AMB,
        "length": {"value": 90, "unit": "minutes", "system": UCUM, "code": "min"},
    },
    {
        "resourceType": "Encounter",
        "id": "e2",
        "status": "finished",
        "class": AMB,
        "length": {"value": 2, "unit": "hours", "system": UCUM, "code": "h"},
    },
    {"resourceType": "Encounter", "id": "e3", "status": "planned", "class": AMB},
]

VALUE_SETS = [
    {
        "resourceType": "ValueSet",
        "id": "vs1",
        "status": "active",
        "url": "http://acme.org/fhir/ValueSet/123",
    },
    {
        "resourceType": "ValueSet",
        "id": "vs2",
        "status": "active",
        "url": "http://acme.org/fhir/ValueSet/1234",
    },
    {
        "resourceType": "ValueSet",
        "id": "vs3",
        "status": "active",
        "url": "http://acme.org/fhir/ValueSet/123/v2",
    },
    {"resourceType": "ValueSet", "id": "vs4", "status": "active", "url": "urn:oid:1.2.3.4"},
    {"resourceType": "ValueSet", "id": "vs5", "status": "draft"},
]


@pytest.fixture
async def svc(service: FhirService) -> FhirService:
    await load(service, NUMBERS + QUANTITIES + ENCOUNTERS + VALUE_SETS)
    return service


# -- number ---------------------------------------------------------------------------------------

PROBABILITY_CASES = [
    ("probability=100", {"ra2", "ra3", "ra4", "ra5"}),  # [99.5, 100.5)
    ("probability=100.0", {"ra4", "ra5"}),  # [99.95, 100.05)
    ("probability=100.00", {"ra5"}),  # [99.995, 100.005)
    ("probability=99", {"ra1", "ra9"}),  # [98.5, 99.5): 99.5 is outside
    ("probability=99.5", {"ra2", "ra3", "ra9"}),  # [99.45, 99.55)
    ("probability=99.50", {"ra2"}),  # [99.495, 99.505)
    ("probability=eq99.50", {"ra2"}),
    ("probability=0.25", {"ra6"}),
    ("probability=60", {"ra8"}),
    ("probability=gt99.5", {"ra3", "ra4", "ra5"}),  # gt/lt/ge/le: the exact value
    ("probability=ge99.5", {"ra2", "ra3", "ra4", "ra5"}),
    ("probability=lt99.5", {"ra1", "ra6", "ra8", "ra9"}),
    ("probability=le99.5", {"ra1", "ra2", "ra6", "ra8", "ra9"}),
    ("probability=ne100", {"ra1", "ra6", "ra8", "ra9"}),  # ra7 has no value
    ("probability=sa99.5", {"ra4", "ra5"}),  # 99.52 overlaps [99.45, 99.55): not "after"
    ("probability=eb99.5", {"ra1", "ra6", "ra8"}),  # 99.48 overlaps: not "before"
    ("probability=ap100", {"ra1", "ra2", "ra3", "ra4", "ra5", "ra9"}),  # 90..110
    ("probability=10,99", {"ra1", "ra8", "ra9"}),
    ("probability=10&probability=60", {"ra8"}),  # AND: both values on one resource
    ("probability=gt50&probability=lt99", {"ra8"}),
    ("probability:missing=true", {"ra7"}),
]


@pytest.mark.parametrize("query, expected", cases(PROBABILITY_CASES))
async def test_number_decimal(svc: FhirService, query: str, expected: set[str]):
    assert_ids(await run(svc, "RiskAssessment", query), expected, query)


VARIANT_CASES = [
    ("variant-start=100", {"ms1"}),
    ("variant-start=150", {"ms2"}),
    ("variant-start=200", {"ms2"}),  # any of the repeats
    ("variant-start=100.5", set()),
    ("variant-start=100.0", {"ms1"}),
    ("variant-start=99.6", set()),
    ("variant-start=gt150", {"ms2"}),
    ("variant-start=lt150", {"ms1"}),
    ("variant-start=ge150", {"ms2"}),
    ("variant-start=le100", {"ms1"}),
    ("variant-start=ne150", {"ms1", "ms2"}),  # ms2's 200 is not 150
    ("variant-start=100,200", {"ms1", "ms2"}),
    ("variant-start:missing=true", {"ms3"}),
    ("variant-start:missing=false", {"ms1", "ms2"}),
]


@pytest.mark.parametrize("query, expected", cases(VARIANT_CASES))
async def test_number_integer(svc: FhirService, query: str, expected: set[str]):
    assert_ids(await run(svc, "MolecularSequence", query), expected, query)


async def test_invalid_number_is_a_400(svc: FhirService):
    for query in ("probability=abc", "probability=gt", "variant-start=1,x"):
        error = await search_error(
            svc, "RiskAssessment" if "prob" in query else "MolecularSequence", query
        )
        assert error.status == 400, query


# -- quantity -------------------------------------------------------------------------------------

QUANTITY_CASES = [
    ("value-quantity=5.4", {"q1", "q2", "q3"}),  # [5.35, 5.45), any unit
    (f"value-quantity=5.4|{UCUM}|mg", {"q1", "q3"}),
    ("value-quantity=5.4||mg", {"q1", "q3"}),
    ("value-quantity=5.4||g", {"q2"}),
    ("value-quantity=5.40||mg", {"q1"}),  # [5.395, 5.405)
    ("value-quantity=5.4|http://example.org/units|mg", set()),
    (f"value-quantity=gt5.4|{UCUM}|mg", {"q3", "q4"}),
    ("value-quantity=lt5.45||mg", {"q1", "q3"}),
    ("value-quantity=le5.4", {"q1", "q2"}),
    ("value-quantity=ge100", {"q5", "c1", "c2"}),
    ("value-quantity=100||kg", {"q5"}),  # matched on the stated unit
    (f"value-quantity=100|{UCUM}|kg", set()),  # q5 has no system
    ("value-quantity=72||beats/minute", {"q6"}),  # the unit ...
    ("value-quantity=72||/min", {"q6"}),  # ... or the code
    (f"value-quantity=72|{UCUM}|/min", {"q6"}),
    (f"value-quantity=72|{UCUM}|beats/minute", set()),  # with a system: the code only
    ("value-quantity=ne5.4", {"q4", "q5", "q6", "c1", "c2"}),
    ("value-quantity=ap5", {"q1", "q2", "q3", "q4"}),  # 4.5..5.5
    ("value-quantity=sa5.5", {"q5", "q6", "c1", "c2"}),
    ("value-quantity=eb5.44", {"q1", "q2"}),
    (f"value-quantity=5.4|{UCUM}|mg,100||kg", {"q1", "q3", "q5"}),
    ("value-quantity=gt5&value-quantity=lt5.42", {"q1", "q2"}),
    ("value-quantity:missing=true", {"q7", "bp1", "bp2", "c3", "c4", "c5"}),
]


@pytest.mark.parametrize("query, expected", cases(QUANTITY_CASES))
async def test_quantity(svc: FhirService, query: str, expected: set[str]):
    assert_ids(await run(svc, "Observation", query), expected, query)


LENGTH_CASES = [
    ("length=90", {"e1"}),
    (f"length=90|{UCUM}|min", {"e1"}),
    ("length=90||minutes", {"e1"}),
    ("length=2||h", {"e2"}),
    ("length=gt60", {"e1"}),
    ("length=le2", {"e2"}),
    ("length=ne90", {"e2"}),
    ("length:missing=true", {"e3"}),
]


@pytest.mark.parametrize("query, expected", cases(LENGTH_CASES))
async def test_quantity_duration(svc: FhirService, query: str, expected: set[str]):
    assert_ids(await run(svc, "Encounter", query), expected, query)


# -- composite ------------------------------------------------------------------------------------

COMPOSITE_CASES = [
    (f"code-value-quantity={LOINC}|8480-6$120", {"c1"}),
    ("code-value-quantity=8480-6$gt130", {"c2"}),
    ("code-value-quantity=8480-6$120,8480-6$150", {"c1", "c2"}),
    (f"code-value-quantity=8480-6$120|{UCUM}|mm[Hg]", {"c1"}),
    ("code-value-quantity=8480-6$120||kg", set()),
    ("code-value-quantity=85354-9$120", set()),  # the panel has no value of its own
    ("code-value-quantity=8462-4$80", set()),  # component values are not Observation.value
    # component-*: code and value from the SAME component
    (f"component-code-value-quantity={LOINC}|8480-6$120", {"bp1"}),
    ("component-code-value-quantity=8480-6$lt100", {"bp2"}),
    ("component-code-value-quantity=8462-4$lt100", {"bp1"}),
    ("component-code-value-quantity=8462-4$120", {"bp2"}),
    ("component-code-value-quantity=8480-6$120&component-code-value-quantity=8462-4$80", {"bp1"}),
    ("component-code-value-quantity=8480-6$80&component-code-value-quantity=8462-4$80", set()),
    # the uncorrelated parameters match either panel
    ("component-code=8480-6&component-value-quantity=80", {"bp1", "bp2"}),
    # combo-*: Observation.code+value or a component's code+value
    ("combo-code-value-quantity=8480-6$120", {"c1", "bp1"}),
    ("combo-code-value-quantity=8480-6$80", {"bp2"}),
    # token$date, token$token, token$string
    ("code-value-date=1111-1$2024-01", {"c3"}),
    ("code-value-date=1111-1$2024-01-15", {"c3"}),
    ("code-value-date=1111-1$gt2024-02", set()),
    ("code-value-date=1111-1$lt2024-02", {"c3"}),
    ("code-value-date=2222-2$2024-01", set()),
    (f"code-value-concept={LOINC}|2222-2${SCT}|pos", {"c4"}),
    ("code-value-concept=2222-2$pos", {"c4"}),
    ("code-value-concept=2222-2$neg", set()),
    ("code-value-concept=1111-1$pos", set()),
    ("code-value-string=3333-3$positive", {"c5"}),  # string: starts-with
    ("code-value-string=3333-3$result", set()),
]


@pytest.mark.parametrize("query, expected", cases(COMPOSITE_CASES))
async def test_composite(svc: FhirService, query: str, expected: set[str]):
    assert_ids(await run(svc, "Observation", query), expected, query)


async def test_composite_needs_every_part(svc: FhirService):
    error = await search_error(svc, "Observation", "code-value-quantity=8480-6")
    assert error.status == 400


# -- uri ------------------------------------------------------------------------------------------

URI_CASES = [
    ("url=http://acme.org/fhir/ValueSet/123", {"vs1"}),
    ("url=http://acme.org/fhir/ValueSet/12", set()),  # no prefix matching on uri
    ("url=http://acme.org/fhir/ValueSet/123/", set()),
    ("url=urn:oid:1.2.3.4", {"vs4"}),
    ("url=http://acme.org/fhir/ValueSet/123,urn:oid:1.2.3.4", {"vs1", "vs4"}),
    ("url:below=http://acme.org/fhir", {"vs1", "vs2", "vs3"}),
    ("url:below=http://acme.org/fhir/ValueSet/123/v2", {"vs3"}),
    ("url:below=http://other.org/fhir", set()),
    ("url:above=http://acme.org/fhir/ValueSet/123/v2/extra", {"vs1", "vs3"}),
    ("url:above=http://acme.org/fhir/ValueSet/123", {"vs1"}),
    ("url:above=http://acme.org/fhir/ValueSet/1234/x", {"vs2"}),
    ("url:missing=true", {"vs5"}),
    ("url:missing=false", {"vs1", "vs2", "vs3", "vs4"}),
]


@pytest.mark.parametrize("query, expected", cases(URI_CASES))
async def test_uri(svc: FhirService, query: str, expected: set[str]):
    assert_ids(await run(svc, "ValueSet", query), expected, query)


# -- _sort on number and uri parameters -----------------------------------------------------------

SORT_CASES = [
    # several values: the lowest sorts ascending, the highest descending
    (
        "RiskAssessment",
        "_sort=probability&probability:missing=false",
        ["ra6", "ra8", "ra1", "ra9", "ra2", "ra3", "ra4", "ra5"],
    ),
    (
        "RiskAssessment",
        "_sort=-probability&probability:missing=false",
        ["ra5", "ra4", "ra3", "ra2", "ra9", "ra1", "ra8", "ra6"],
    ),
    ("MolecularSequence", "_sort=-variant-start&variant-start:missing=false", ["ms2", "ms1"]),
    ("ValueSet", "_sort=url&url:missing=false", ["vs1", "vs3", "vs2", "vs4"]),
    ("ValueSet", "_sort=-url&url:missing=false", ["vs4", "vs2", "vs3", "vs1"]),
]


@pytest.mark.parametrize(
    "type_, query, expected", [pytest.param(*row, id=f"{row[0]}?{row[1]}") for row in SORT_CASES]
)
async def test_sort_on_number_and_uri(svc: FhirService, type_: str, query: str, expected):
    assert (await run(svc, type_, query)).ids == expected
