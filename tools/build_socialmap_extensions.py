"""Write the differentials of the social-map extensions into profiles/bib (then run
tools/build_profiles.py to generate their snapshots). Run once; the output is committed."""

from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BASE = "https://borninbelgiumpro.be/fhir"

EXTENSIONS = {
    "bib-ext-contact-person": (
        "BibExtContactPerson",
        "BiB social-map contact person",
        "A contact person of a social-map service: who to call for which need (the seeds ask "
        "for 'contact persons per service, suited to specific needs', S000:393, 495-496).",
        [
            ("name", "string", 1, "1", "Name of the contact person"),
            ("role", "string", 0, "1", "Role or function (e.g. intake, social worker)"),
            ("phone", "string", 0, "*", "Phone number"),
            ("email", "string", 0, "*", "E-mail address"),
            ("need", "CodeableConcept", 0, "*", "Needs this person is the contact for"),
            ("language", "code", 0, "*", "Languages this person speaks (BCP-47)"),
        ],
    ),
    "bib-ext-eligibility": (
        "BibExtEligibility",
        "BiB social-map eligibility windows",
        "Who a service is for, in time: perinatal periods and age ranges (S002:7204-7206, "
        "5944, 4576, 2686, 5850, 4031).",
        [
            (
                "perinatalPeriod",
                "CodeableConcept",
                0,
                "*",
                "Perinatal period (bib-perinatal-period)",
            ),
            ("clientAge", "Range", 0, "1", "Age of the parent (years)"),
            ("childAge", "Range", 0, "1", "Age of the child (months)"),
        ],
    ),
    "bib-ext-cost": (
        "BibExtCost",
        "BiB social-map cost and reimbursement",
        "What the service costs the family and how it is reimbursed (S000:478-482, 545-546; "
        "S002:2911-2917, 3044-3072, 5610-5614).",
        [
            ("category", "Coding", 1, "1", "Cost category (bib-service-cost)"),
            ("nomenclature", "Coding", 0, "*", "RIZIV/INAMI nomenclature code(s)"),
            ("reimbursedSessions", "positiveInt", 0, "1", "Number of reimbursed sessions"),
            ("note", "string", 0, "1", "Details (personal contribution, conditions)"),
        ],
    ),
    "bib-ext-access": (
        "BibExtAccess",
        "BiB social-map access conditions",
        "How a family gets in: referral requirement, waiting list and priority for pregnant "
        "women, 24/7 and on-call availability (S002:2880-2897, 5589-5591, 5818-5832; "
        "S003:1126-1131).",
        [
            ("referral", "Coding", 0, "1", "Referral requirement (bib-referral-requirement)"),
            ("waitingWeeks", "decimal", 0, "1", "Usual waiting time in weeks (0: none)"),
            ("priorityPregnant", "boolean", 0, "1", "Pregnant women get priority"),
            ("available24x7", "boolean", 0, "1", "Reachable day and night, every day"),
            ("onCall", "boolean", 0, "1", "An on-call service exists outside opening hours"),
        ],
    ),
    "bib-ext-verification": (
        "BibExtVerification",
        "BiB social-map verification",
        "When a social-map entry was last verified, against which source record, and its "
        "status (S002:6873-6878; S001:101: entries must be kept up to date).",
        [
            ("lastVerified", "date", 1, "1", "When the entry was last checked"),
            ("status", "code", 0, "1", "verified | missing-from-source (bib-social-map-status)"),
            ("sourceRecord", "uri", 0, "1", "The record in the source database"),
        ],
    ),
}


def differential(url: str, parts: list) -> list[dict]:
    elements: list[dict] = [
        {"id": "Extension", "path": "Extension"},
        {
            "id": "Extension.extension",
            "path": "Extension.extension",
            "slicing": {"discriminator": [{"type": "value", "path": "url"}], "rules": "open"},
            "min": 1,
        },
    ]
    for name, type_, low, high, short in parts:
        base = f"Extension.extension:{name}"
        elements += [
            {
                "id": base,
                "path": "Extension.extension",
                "sliceName": name,
                "short": short,
                "min": low,
                "max": high,
            },
            {"id": f"{base}.extension", "path": "Extension.extension.extension", "max": "0"},
            {"id": f"{base}.url", "path": "Extension.extension.url", "fixedUri": name},
            {
                "id": f"{base}.value[x]",
                "path": "Extension.extension.value[x]",
                "min": 1,
                "type": [{"code": type_}],
            },
        ]
    elements += [
        {"id": "Extension.url", "path": "Extension.url", "fixedUri": url},
        {"id": "Extension.value[x]", "path": "Extension.value[x]", "max": "0"},
    ]
    return elements


def main() -> None:
    for id_, (name, title, description, parts) in EXTENSIONS.items():
        url = f"{BASE}/StructureDefinition/{id_}"
        sd = {
            "resourceType": "StructureDefinition",
            "id": id_,
            "url": url,
            "version": "0.1.0",
            "name": name,
            "title": title,
            "status": "draft",
            "experimental": False,
            "date": "2026-12-03",
            "publisher": "Born in Belgium Professionals",
            "contact": [
                {
                    "name": "Born in Belgium Professionals",
                    "telecom": [{"system": "url", "value": "https://borninbelgiumpro.be"}],
                }
            ],
            "description": description,
            "jurisdiction": [{"coding": [{"system": "urn:iso:std:iso:3166", "code": "BE"}]}],
            "fhirVersion": "4.0.1",
            "kind": "complex-type",
            "abstract": False,
            "context": [{"type": "element", "expression": "HealthcareService"}],
            "type": "Extension",
            "baseDefinition": "http://hl7.org/fhir/StructureDefinition/Extension",
            "derivation": "constraint",
            "differential": {"element": differential(url, parts)},
        }
        path = ROOT / "profiles" / "bib" / f"StructureDefinition-{id_}.json"
        path.write_text(json.dumps(sd, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
