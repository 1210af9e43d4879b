"""Write the social-map terminology additions (run once; the output files are committed).

New CodeSystems (+ their all-codes ValueSets) in terminology/bib: bib-service-cost,
bib-referral-requirement, bib-social-map-status; two illustrative Flemish eerstelijnszones in
bib-region; the ConceptMap municipality -> eerstelijnszone in mappings/.
"""

from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIB = ROOT / "terminology" / "bib"
BASE = "https://borninbelgiumpro.be/fhir"
HEAD = {
    "language": "en",
    "version": "0.1.0",
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
}
JURISDICTION = [
    {"coding": [{"system": "urn:iso:std:iso:3166", "code": "BE", "display": "Belgium"}]}
]
BASIS = {
    "code": "basis",
    "type": "code",
    "description": "How the concept is grounded. 'seed' = the concept is stated in the BiB "
    "programme seed documents (S000-S004; the code itself is a proposal); 'external' = taken "
    "from public reference data outside the seeds (e.g. Statbel, Brussels care-zone websites); "
    "'proposal' = modelling proposal of the terminology authors, not stated as such in the "
    "seeds; 'gap' = placeholder for content the seeds announce but do not provide.",
}
SEED_REF = {
    "code": "seed-ref",
    "type": "string",
    "description": "Reference to the seed passage(s) supporting the concept, as "
    "'S00n:line[-line]' (raw line numbers of the seed files, see terminology/README.md).",
}


def concept(code, en, nl, fr, de, definition, basis="proposal", seed_ref=None, extra=()):
    out = {
        "code": code,
        "display": en,
        "definition": definition,
        "designation": [
            {"language": "nl-BE", "value": nl},
            {"language": "fr-BE", "value": fr},
            {"language": "en", "value": en},
            {"language": "de", "value": de},
        ],
        "property": [{"code": "basis", "valueCode": basis}],
    }
    if seed_ref:
        out["property"].append({"code": "seed-ref", "valueString": seed_ref})
    out["property"].extend(extra)
    return out


def code_system(id_, name, title, description, concepts):
    return {
        "resourceType": "CodeSystem",
        "id": id_,
        "url": f"{BASE}/CodeSystem/{id_}",
        "name": name,
        "title": title,
        **HEAD,
        "description": description,
        "jurisdiction": JURISDICTION,
        "caseSensitive": True,
        "valueSet": f"{BASE}/ValueSet/{id_}",
        "content": "complete",
        "count": len(concepts),
        "property": [BASIS, SEED_REF],
        "concept": concepts,
    }


def value_set(cs):
    return {
        "resourceType": "ValueSet",
        "id": cs["id"],
        "url": f"{BASE}/ValueSet/{cs['id']}",
        "name": cs["name"],
        "title": cs["title"],
        **HEAD,
        "description": f"All codes of CodeSystem {cs['id']} ({cs['title']}).",
        "jurisdiction": JURISDICTION,
        "compose": {"include": [{"system": cs["url"]}]},
    }


def ordered(resource):
    keys = [
        "resourceType",
        "id",
        "language",
        "url",
        "version",
        "name",
        "title",
        "status",
        "experimental",
        "date",
        "publisher",
        "contact",
        "description",
        "jurisdiction",
    ]
    return {**{k: resource[k] for k in keys if k in resource}, **resource}


COST = code_system(
    "bib-service-cost",
    "BiBServiceCost",
    "BiB social-map service cost",
    "What a family pays for a social-map service (the seeds ask for cost, reimbursement and "
    "low-threshold offers: S000:478-482, 545-546; S002:2911-2917, 3044-3072, 5610-5614).",
    [
        concept(
            "free",
            "Free of charge",
            "Gratis",
            "Gratuit",
            "Kostenlos",
            "The family pays nothing.",
            "seed",
            "S002:2911-2917",
        ),
        concept(
            "reimbursed",
            "Reimbursed by health insurance",
            "Terugbetaald door het ziekenfonds",
            "Remboursé par la mutuelle",
            "Von der Krankenkasse erstattet",
            "Covered by the compulsory health insurance (RIZIV/INAMI nomenclature), possibly "
            "with a personal contribution (remgeld / ticket modérateur).",
            "seed",
            "S002:3044-3072",
        ),
        concept(
            "income-related",
            "Income-related contribution",
            "Bijdrage volgens inkomen",
            "Contribution selon les revenus",
            "Einkommensabhängiger Beitrag",
            "The family pays a contribution that depends on its income.",
            "proposal",
        ),
        concept(
            "paying",
            "Paid by the family",
            "Betalend",
            "Payant",
            "Kostenpflichtig",
            "The family pays the full price (possibly partly refunded by a mutuality's "
            "supplementary insurance).",
            "seed",
            "S002:2911-2917",
        ),
    ],
)
REFERRAL = code_system(
    "bib-referral-requirement",
    "BiBReferralRequirement",
    "BiB social-map referral requirement",
    "Whether a family can go to a service directly or needs a referral "
    "(S002:2880-2897: some services need a physician's referral).",
    [
        concept(
            "self-referral",
            "No referral needed",
            "Vrij toegankelijk",
            "Accès libre (sans orientation)",
            "Ohne Überweisung zugänglich",
            "Families may contact the service themselves.",
            "seed",
            "S002:2880-2897",
        ),
        concept(
            "professional-referral",
            "Referral by a professional",
            "Verwijzing door een hulpverlener",
            "Orientation par un professionnel",
            "Überweisung durch eine Fachkraft",
            "A referral by a care or welfare professional is needed.",
            "seed",
            "S002:2880-2897",
        ),
        concept(
            "physician-referral",
            "Physician's referral",
            "Verwijzing door een arts",
            "Prescription d'un médecin",
            "Ärztliche Überweisung",
            "A referral or prescription by a physician is needed.",
            "seed",
            "S002:2882-2884",
        ),
    ],
)
STATUS = code_system(
    "bib-social-map-status",
    "BiBSocialMapStatus",
    "BiB social-map entry status",
    "How current a social-map entry is (S002:6873-6878, S001:101: social maps are not kept up "
    "to date). 'stale' is computed by the server when the entry was not verified for a "
    "configurable time; 'missing-from-source' is set by an import of a full export that no "
    "longer contains the entry.",
    [
        concept(
            "verified",
            "Verified",
            "Geverifieerd",
            "Vérifié",
            "Überprüft",
            "The entry was checked against its source or by its provider recently.",
            "seed",
            "S002:6873-6878",
        ),
        concept(
            "stale",
            "Not verified recently",
            "Niet recent geverifieerd",
            "Non vérifié récemment",
            "Nicht kürzlich überprüft",
            "The entry was not verified for longer than the configured time (default 12 "
            "months), or its source no longer lists it: check before referring.",
            "seed",
            "S001:101",
        ),
        concept(
            "missing-from-source",
            "No longer in its source",
            "Niet meer in de bron",
            "Absent de la source",
            "Nicht mehr in der Quelle",
            "A full export of the source database no longer contains the entry; it is "
            "kept (referrals point at it) but marked stale.",
            "proposal",
        ),
    ],
)

ELZ = {
    "province-vlaams-brabant": (
        "elz-leuven",
        "Primary care zone Leuven (illustrative)",
        "Eerstelijnszone Leuven (illustratief)",
        "Zone de première ligne Louvain (illustrative)",
        "Erstversorgungszone Löwen (illustrativ)",
        {
            "24062": "Leuven",
            "24009": "Bertem",
            "24038": "Herent",
            "24055": "Kortenberg",
            "24086": "Oud-Heverlee",
        },
    ),
    "province-antwerpen": (
        "elz-mechelen-katelijne",
        "Primary care zone Mechelen-Katelijne (illustrative)",
        "Eerstelijnszone Mechelen-Katelijne (illustratief)",
        "Zone de première ligne Malines-Katelijne (illustrative)",
        "Erstversorgungszone Mecheln-Katelijne (illustrativ)",
        {"12025": "Mechelen", "12035": "Sint-Katelijne-Waver", "12005": "Bonheiden"},
    ),
}


def main() -> None:
    for cs in (COST, REFERRAL, STATUS):
        (BIB / f"CodeSystem-{cs['id']}.json").write_text(
            json.dumps(ordered(cs), indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
        )
        (BIB / f"ValueSet-{cs['id']}.json").write_text(
            json.dumps(ordered(value_set(cs)), indent=2, ensure_ascii=False) + "\n",
            encoding="utf-8",
        )
    region_path = BIB / "CodeSystem-bib-region.json"
    region = json.loads(region_path.read_text(encoding="utf-8"))
    flanders = next(c for c in region["concept"] if c["code"] == "region-flanders")
    elements = []
    for province in flanders["concept"]:
        if province["code"] not in ELZ:
            continue
        code, en, nl, fr, de, municipalities = ELZ[province["code"]]
        children = [c for c in province.get("concept", []) if c["code"] != code]
        children.append(
            concept(
                code,
                en,
                nl,
                fr,
                de,
                "A Flemish eerstelijnszone (primary care zone) run by its zorgraad. ILLUSTRATIVE: "
                "the municipality list in ConceptMap bib-nis-municipality-to-eerstelijnszone is "
                "not the authoritative 2025 cut (departementzorg.be).",
                "external",
            )
        )
        province["concept"] = children
        for nis, name in municipalities.items():
            elements.append(
                {
                    "code": nis,
                    "display": name,
                    "target": [{"code": code, "display": en, "equivalence": "wider"}],
                }
            )
    count = 0

    def walk(items):
        nonlocal count
        for c in items:
            count += 1
            walk(c.get("concept", []))

    walk(region["concept"])
    region["count"] = count
    region_path.write_text(json.dumps(region, indent=2, ensure_ascii=False) + "\n", "utf-8")
    concept_map = {
        "resourceType": "ConceptMap",
        "id": "bib-nis-municipality-to-eerstelijnszone",
        "language": "en",
        "url": f"{BASE}/ConceptMap/bib-nis-municipality-to-eerstelijnszone",
        "version": "0.1.0",
        "name": "BiBNisMunicipalityToEerstelijnszone",
        "title": "NIS municipality to Flemish eerstelijnszone (illustrative)",
        "status": "draft",
        "experimental": False,
        "date": "2026-12-03",
        "publisher": "Born in Belgium Professionals",
        "contact": HEAD["contact"],
        "description": "Maps Statbel NIS municipality codes to the Flemish eerstelijnszone "
        "(primary care zone, bib-region) they belong to. ILLUSTRATIVE, NOT AUTHORITATIVE: two "
        "zones with plausible municipality lists for the demo social map; the official cut "
        "(60 zones since 1 January 2025) is published by the Departement Zorg. The social-map "
        "search resolves a municipality to its zones through this map and "
        "bib-nis-municipality-to-region.",
        "jurisdiction": JURISDICTION,
        "targetCanonical": f"{BASE}/ValueSet/bib-region",
        "group": [
            {
                "source": "https://statbel.fgov.be/fhir/CodeSystem/nis-municipality",
                "target": f"{BASE}/CodeSystem/bib-region",
                "element": elements,
            }
        ],
    }
    (ROOT / "mappings" / "ConceptMap-bib-nis-municipality-to-eerstelijnszone.json").write_text(
        json.dumps(concept_map, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )


if __name__ == "__main__":
    main()
