"""Shared constants and readers for the terminology tests."""

from __future__ import annotations

from typing import Any

import httpx

BIB = "https://borninbelgiumpro.be/fhir"
CARE_LINE_CS = f"{BIB}/CodeSystem/bib-care-line"
CARE_LINE_VS = f"{BIB}/ValueSet/bib-care-line"
CARE_LEVEL_VS = f"{BIB}/ValueSet/bib-care-level"
PRACTITIONER_CS = f"{BIB}/CodeSystem/bib-practitioner-type"
PRACTITIONER_VS = f"{BIB}/ValueSet/bib-practitioner-type"
PATHWAY_CS = f"{BIB}/CodeSystem/bib-care-pathway"
PATHWAY_VS = f"{BIB}/ValueSet/bib-care-pathway"
REGION_CS = f"{BIB}/CodeSystem/bib-region"
PRACTITIONER_MAP = f"{BIB}/ConceptMap/bib-practitioner-type-to-cd-hcparty"
NIS_MAP = f"{BIB}/ConceptMap/bib-nis-municipality-to-region"
BE_CORE = "https://www.ehealth.fgov.be/standards/fhir/core"
CD_HCPARTY = f"{BE_CORE}/CodeSystem/cd-hcparty"
CONTACT_PERSON_CS = f"{BE_CORE}/CodeSystem/cd-contact-person"
CONTACT_PERSON_VS = f"{BE_CORE}/ValueSet/be-contactperson"
NIS_MUNICIPALITY = "https://statbel.fgov.be/fhir/CodeSystem/nis-municipality"
SNOMED = "http://snomed.info/sct"
LOINC_VS = "http://hl7.org/fhir/ValueSet/observation-codes"  # needs LOINC
GENDER_VS = "http://hl7.org/fhir/ValueSet/administrative-gender"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"

# bib-care-line#line-1 in the four languages
LINE_1 = {"nl-BE": "Eerste lijn", "fr-BE": "Première ligne", "en": "Line 1 (primary care)",
          "de": "Erste Linie"}  # fmt: skip
CARE_LINE_ORDER = ["basic", "line-0", "line-1", "specialised", "line-2", "line-3"]


def parameters(*items: tuple[str, str, Any]) -> dict[str, Any]:
    """A Parameters resource from (name, value key, value) triples."""
    out = []
    for name, key, value in items:
        out.append({"name": name, key: value})
    return {"resourceType": "Parameters", "parameter": out}


def param(body: dict[str, Any], name: str) -> Any:
    """The value of the (first) parameter ``name`` of a Parameters resource."""
    for parameter in body.get("parameter", ()):
        if parameter["name"] == name:
            for key, value in parameter.items():
                if key.startswith("value"):
                    return value
            return parameter.get("part")
    return None


def params_named(body: dict[str, Any], name: str) -> list[dict[str, Any]]:
    return [p for p in body.get("parameter", ()) if p["name"] == name]


def parts(parameter: dict[str, Any]) -> dict[str, Any]:
    """name -> value of the parts of one parameter (last one wins)."""
    out: dict[str, Any] = {}
    for part in parameter.get("part", ()):
        for key, value in part.items():
            if key.startswith("value"):
                out[part["name"]] = value
    return out


def contains(expansion: dict[str, Any]) -> list[dict[str, Any]]:
    return expansion["expansion"].get("contains", [])


def codes(expansion: dict[str, Any]) -> list[str]:
    return [c["code"] for c in contains(expansion)]


def displays(expansion: dict[str, Any]) -> dict[str, str]:
    return {c["code"]: c.get("display") for c in contains(expansion)}


async def ok(response_coro: Any) -> dict[str, Any]:
    response: httpx.Response = await response_coro
    assert response.status_code == 200, response.text[:800]
    return response.json()
