"""Write the social map's SearchParameters and OperationDefinition into content/socialmap/.
Run once; the output is committed (the programme may edit the JSON afterwards)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fhir_server.socialmap import model  # noqa: E402

OUT = ROOT / "content" / "socialmap"
HS = "HealthcareService"


def ext(url: str, part: str | None = None) -> str:
    path = f"{HS}.extension('{url}')"
    return f"{path}.extension('{part}').value" if part else f"{path}.value"


def where(element: str, system: str) -> str:
    return f"{HS}.{element}.where(coding.system = '{system}')"


PARAMS = [
    (
        "language",
        "token",
        f"{HS}.communication",
        "Language the service is offered in (BCP-47, e.g. nl, fr, ar).",
    ),
    (
        "target-group",
        "token",
        where("characteristic", model.CS_TARGET_GROUP),
        "Target group or specific need served (bib-target-group: pregnancy-or-infant-loss, "
        "language-barrier, substance-use, undocumented...).",
    ),
    (
        "delivery-mode",
        "token",
        where("characteristic", model.CS_DELIVERY),
        "How the service is delivered (bib-service-delivery-mode: home-visit, group, telephone, "
        "outreach...).",
    ),
    (
        "care-line",
        "token",
        where("category", model.CS_CARE_LINE),
        "Care line or level (bib-care-line: line-0..line-3, basic, specialised).",
    ),
    (
        "module",
        "token",
        where("category", model.CS_MODULE),
        "Perinatal mental-health module type (bib-pmh-module).",
    ),
    (
        "perinatal-period",
        "token",
        ext(model.EXT_ELIGIBILITY, "perinatalPeriod"),
        "Perinatal period the service is for (bib-perinatal-period).",
    ),
    (
        "cost",
        "token",
        ext(model.EXT_COST, "category"),
        "What the family pays (bib-service-cost: free, reimbursed, income-related, paying).",
    ),
    (
        "referral",
        "token",
        ext(model.EXT_ACCESS, "referral"),
        "Referral requirement (bib-referral-requirement: self-referral, professional-referral, "
        "physician-referral).",
    ),
    (
        "priority-pregnant",
        "token",
        ext(model.EXT_ACCESS, "priorityPregnant"),
        "true: pregnant women get priority on the waiting list.",
    ),
    (
        "available-24x7",
        "token",
        ext(model.EXT_ACCESS, "available24x7"),
        "true: reachable day and night, every day.",
    ),
    (
        "coverage",
        "token",
        f"{HS}.coverageArea.identifier",
        "Area covered: a NIS municipality code (e.g. 21009) or a bib-region code (care zone, "
        "eerstelijnszone, province, region). Matches services covering that area or any wider "
        "area containing it (a municipality is resolved to its zones through the ConceptMaps in "
        "mappings/).",
    ),
    (
        "last-verified",
        "date",
        ext(model.EXT_VERIFICATION, "lastVerified"),
        "When the entry was last verified.",
    ),
    (
        "verification-status",
        "token",
        ext(model.EXT_VERIFICATION, "status"),
        "verified | missing-from-source (bib-social-map-status).",
    ),
    (
        "stale",
        "special",
        None,
        "true: not verified for longer than FHIR_SOCIALMAP_STALE_MONTHS (default 12) or no longer "
        "in its source; false: the others.",
    ),
    (
        "source",
        "token",
        ext(model.EXT_SOURCE),
        "Source database of the entry (bib-social-map-source).",
    ),
    (
        "contact",
        "string",
        ext(model.EXT_CONTACT, "name"),
        "Name of a contact person of the service.",
    ),
]


def search_parameter(code: str, type_: str, expression: str | None, description: str) -> dict:
    id_ = f"bib-hcs-{code}"
    out = {
        "resourceType": "SearchParameter",
        "id": id_,
        "url": f"{model.BASE}/SearchParameter/{id_}",
        "version": "0.1.0",
        "name": "BiBHcs" + "".join(p.capitalize() for p in code.replace("x7", "X7").split("-")),
        "status": "active",
        "experimental": False,
        "date": "2026-12-03",
        "publisher": "Born in Belgium Professionals",
        "description": description,
        "code": code,
        "base": [HS],
        "type": type_,
    }
    if expression:
        out["expression"] = expression
        out["xpathUsage"] = "normal"
    return out


OPERATION = {
    "resourceType": "OperationDefinition",
    "id": "socialmap-import",
    "url": f"{model.BASE}/OperationDefinition/socialmap-import",
    "version": "0.1.0",
    "name": "SocialMapImport",
    "title": "Import social-map records",
    "status": "active",
    "kind": "operation",
    "experimental": False,
    "date": "2026-12-03",
    "publisher": "Born in Belgium Professionals",
    "description": "Imports a De Sociale Kaart export, Bruxelles Social organisations or an Open "
    "Referral HSDS 3.0 file into the social map (administrators only). Every record is validated "
    "with its JSON Schema first; records are matched on their source id (idempotent); with "
    "full=true, services of that source missing from the file are marked stale. Batches are "
    "atomic. Returns the report (created, updated, unchanged, marked stale, rejected with "
    "reasons).",
    "code": "socialmap-import",
    "system": True,
    "type": False,
    "instance": False,
    "parameter": [
        {
            "name": "format",
            "use": "in",
            "min": 1,
            "max": "1",
            "type": "code",
            "documentation": "sociale-kaart | bruxelles-social | hsds",
        },
        {
            "name": "data",
            "use": "in",
            "min": 1,
            "max": "1",
            "type": "Attachment",
            "documentation": "The file (JSON), as base64 data; or valueString with the JSON text",
        },
        {
            "name": "dryRun",
            "use": "in",
            "min": 0,
            "max": "1",
            "type": "boolean",
            "documentation": "Report what would change; write nothing",
        },
        {
            "name": "full",
            "use": "in",
            "min": 0,
            "max": "1",
            "type": "boolean",
            "documentation": "The file is a full export: mark services missing from it stale",
        },
        {
            "name": "report",
            "use": "out",
            "min": 1,
            "max": "1",
            "type": "Parameters",
            "documentation": "Counts per outcome and each rejected record with its reason",
        },
    ],
}


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for code, type_, expression, description in PARAMS:
        resource = search_parameter(code, type_, expression, description)
        path = OUT / f"SearchParameter-{resource['id']}.json"
        path.write_text(json.dumps(resource, indent=2, ensure_ascii=False) + "\n", "utf-8")
    (OUT / "OperationDefinition-socialmap-import.json").write_text(
        json.dumps(OPERATION, indent=2, ensure_ascii=False) + "\n", "utf-8"
    )


if __name__ == "__main__":
    main()
