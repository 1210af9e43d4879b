"""A synthetic, deterministic BiB population: pregnant women with their Encounters, Observations,
screening QuestionnaireResponses and CarePlans (about 10 resources per woman)."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

FAMILIES = [
    "Peeters",
    "Janssens",
    "Maes",
    "Jacobs",
    "Mertens",
    "Willems",
    "Claes",
    "Goossens",
    "Wouters",
    "De Smet",
    "Dubois",
    "Lambert",
    "Dupont",
    "Martin",
    "Simon",
    "Laurent",
    "Lefebvre",
    "Leclercq",
    "Benali",
    "El Amrani",
    "Yilmaz",
    "Kaya",
    "Nowak",
    "Popescu",
]
GIVEN = [
    "Emma",
    "Louise",
    "Marie",
    "Elodie",
    "Sarah",
    "Yasmina",
    "Fatima",
    "Anna",
    "Lina",
    "Nora",
    "Julie",
    "Camille",
    "Ines",
    "Olivia",
    "Zeynep",
    "Amira",
    "Lotte",
    "Hanne",
]
CITIES = [
    ("Anderlecht", "1070"),
    ("Brussel", "1000"),
    ("Schaerbeek", "1030"),
    ("Gent", "9000"),
    ("Antwerpen", "2000"),
    ("Liège", "4000"),
    ("Charleroi", "6000"),
    ("Leuven", "3000"),
]
LOINC = [
    ("29463-7", "Body weight", "kg", 50, 110),
    ("8480-6", "Systolic blood pressure", "mm[Hg]", 95, 160),
    ("8462-4", "Diastolic blood pressure", "mm[Hg]", 55, 100),
    ("11884-4", "Gestational age", "wk", 4, 41),
    ("2339-0", "Glucose", "mg/dL", 60, 180),
]
# the 13 BiB vulnerability indicators, read from the shipped CodeSystem (one source of truth)
INDICATORS = [
    concept["code"]
    for concept in json.loads(
        (
            Path(__file__).resolve().parents[1]
            / "terminology"
            / "bib"
            / "CodeSystem-bib-vulnerability-indicator.json"
        ).read_text(encoding="utf-8")
    )["concept"]
]
BIB = "https://borninbelgiumpro.be/fhir"
SSIN = "https://www.ehealth.fgov.be/standards/fhir/core/NamingSystem/ssin"
START = date(2024, 1, 1)


def ssin(rng: random.Random, born: date) -> str:
    body = int(f"{born:%y%m%d}{rng.randint(1, 997):03d}")
    base = body if born.year < 2000 else int("2" + f"{body:09d}")
    return f"{body:09d}{97 - base % 97:02d}"


def woman(index: int, seed: int = 7) -> Iterator[dict]:
    """The resources of woman number ``index`` (ids are stable: p{index}, e{index}-0, ...)."""
    rng = random.Random(seed * 1_000_003 + index)
    pid = f"p{index}"
    born = date(1980, 1, 1) + timedelta(days=rng.randint(0, 8000))
    city, postal = rng.choice(CITIES)
    yield {
        "resourceType": "Patient",
        "id": pid,
        "active": True,
        "identifier": [{"system": SSIN, "value": ssin(rng, born)}],
        "name": [{"family": rng.choice(FAMILIES), "given": [rng.choice(GIVEN)]}],
        "gender": "female",
        "birthDate": born.isoformat(),
        "address": [{"city": city, "postalCode": postal, "country": "BE"}],
        "managingOrganization": {"reference": f"Organization/org{index % 50}"},
    }
    first_visit = START + timedelta(days=rng.randint(0, 700))
    for visit in range(2):
        when = first_visit + timedelta(days=visit * 60)
        yield {
            "resourceType": "Encounter",
            "id": f"e{index}-{visit}",
            "status": "finished",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
            "subject": {"reference": f"Patient/{pid}"},
            "period": {
                "start": f"{when.isoformat()}T09:00:00+01:00",
                "end": f"{when.isoformat()}T09:45:00+01:00",
            },
        }
    for number in range(5):
        code, display, unit, low, high = LOINC[number]
        when = first_visit + timedelta(days=number * 20)
        yield {
            "resourceType": "Observation",
            "id": f"o{index}-{number}",
            "status": "final",
            "category": [
                {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                            "code": "vital-signs",
                        }
                    ]
                }
            ],
            "code": {"coding": [{"system": "http://loinc.org", "code": code, "display": display}]},
            "subject": {"reference": f"Patient/{pid}"},
            "encounter": {"reference": f"Encounter/e{index}-{number % 2}"},
            "effectiveDateTime": f"{when.isoformat()}T10:00:00+01:00",
            "valueQuantity": {
                "value": rng.randint(low, high),
                "unit": unit,
                "system": "http://unitsofmeasure.org",
                "code": unit,
            },
        }
    positives = rng.sample(INDICATORS, rng.randint(0, 3))
    yield {
        "resourceType": "QuestionnaireResponse",
        "id": f"qr{index}",
        "status": "completed",
        "questionnaire": BENCH_QUESTIONNAIRE["url"],
        "subject": {"reference": f"Patient/{pid}"},
        "authored": f"{first_visit.isoformat()}T10:30:00+01:00",
        "item": [
            {"linkId": indicator, "answer": [{"valueBoolean": indicator in positives}]}
            for indicator in INDICATORS
        ],
    }
    yield {
        "resourceType": "CarePlan",
        "id": f"cp{index}",
        "status": "active",
        "intent": "plan",
        "instantiatesCanonical": [f"{BIB}/PlanDefinition/pd-pmh-screening-detection"],
        "subject": {"reference": f"Patient/{pid}"},
        "period": {"start": first_visit.isoformat()},
        "category": [
            {
                "coding": [
                    {
                        "system": f"{BIB}/CodeSystem/bib-care-pathway",
                        "code": "pmh-screening-detection",
                    }
                ]
            }
        ],
    }


# The responses answer one yes/no question per indicator. They name a Questionnaire of their own
# (not the shipped BiB screening, whose completed responses are scored and extracted on write,
# see bench/screening_bench.py): the server checks every response against its Questionnaire, so
# this one is written before the population.
BENCH_QUESTIONNAIRE = {
    "resourceType": "Questionnaire",
    "id": "bench-indicators",
    "url": f"{BIB}/Questionnaire/bench-indicators",
    "version": "1",
    "status": "active",
    "item": [
        {"linkId": indicator, "type": "boolean", "text": indicator} for indicator in INDICATORS
    ],
}


def organizations(count: int = 50) -> Iterator[dict]:
    for index in range(count):
        city, _ = CITIES[index % len(CITIES)]
        yield {
            "resourceType": "Organization",
            "id": f"org{index}",
            "active": True,
            "name": f"Perinatal partner {index} {city}",
        }


RESOURCES_PER_WOMAN = 10
