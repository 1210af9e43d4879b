"""Building the FHIR resources of one social-map record (format-neutral).

A format (formats.py) turns its record into a ``ServiceRecord``; this module makes the
Organization, the Locations (BeAddress, with position) and the HealthcareService (BiB profile:
translations, contact persons, classification from the mapping tables, coverage, cost, access,
verification, a generated narrative). Ids are derived from the source id, so a record is always
written to the same resources (the import's matching key; the source id is also the service's
identifier).
"""

from __future__ import annotations

import hashlib
import html
import re
from dataclasses import dataclass, field
from typing import Any

from fhir_server.socialmap import model

_ID_SAFE = re.compile(r"[^A-Za-z0-9\-.]")


def fhir_id(prefix: str, *parts: str) -> str:
    raw = "-".join(str(p) for p in parts)
    safe = _ID_SAFE.sub("-", raw)
    if safe != raw or len(prefix) + 1 + len(safe) > 64:
        digest = hashlib.blake2b(raw.encode(), digest_size=6).hexdigest()
        safe = f"{safe[: 64 - len(prefix) - 14]}-{digest}"
    return f"{prefix}-{safe}"


@dataclass
class Place:
    street: str | None = None
    number: str | None = None
    box: str | None = None
    postal_code: str | None = None
    city: str | None = None
    nis: str | None = None
    lat: float | None = None
    lon: float | None = None
    language: str | None = None  # of the address text (BeAddress language extension)
    name: str | None = None


@dataclass
class Contact:
    name: str
    role: str | None = None
    phone: str | None = None
    email: str | None = None


@dataclass
class Classification:
    label: dict[str, str]
    care_line: str | None = None
    target_groups: list[str] = field(default_factory=list)
    delivery_modes: list[str] = field(default_factory=list)
    module: str | None = None
    cost: str | None = None


@dataclass
class ServiceRecord:
    source: str  # bib-social-map-source code
    prefix: str  # id prefix of the resources
    identifier_system: str
    source_id: str
    names: dict[str, str]  # lang -> text; the first is the primary language
    descriptions: dict[str, str] = field(default_factory=dict)
    organisation_id: str | None = None
    organisation_names: dict[str, str] = field(default_factory=dict)
    organisation_cbe: str | None = None
    places: list[Place] = field(default_factory=list)
    phones: list[str] = field(default_factory=list)
    emails: list[str] = field(default_factory=list)
    websites: list[str] = field(default_factory=list)
    contacts: list[Contact] = field(default_factory=list)
    languages: list[str] = field(default_factory=list)
    classes: list[Classification] = field(default_factory=list)
    coverage: list[tuple[str, str]] = field(default_factory=list)  # (system, code)
    active: bool = True
    last_verified: str | None = None  # YYYY-MM-DD from the record
    record_url: str | None = None
    eligibility_note: str | None = None
    client_age: tuple[int | None, int | None] | None = None
    cost: str | None = None
    cost_note: str | None = None
    availability_note: str | None = None
    pointer: str = ""


def _translatable(names: dict[str, str], key: str, markdown: bool = False) -> dict[str, Any]:
    """``{key: primary, _key: {extension: [translation...]}}`` for a dict lang -> text."""
    items = [(lang, text) for lang, text in names.items() if text]
    if not items:
        return {}
    out: dict[str, Any] = {key: items[0][1]}
    if len(items) > 1:
        content = "valueMarkdown" if markdown else "valueString"
        out["_" + key] = {
            "extension": [
                {
                    "url": model.TRANSLATION,
                    "extension": [
                        {"url": "lang", "valueCode": lang},
                        {"url": "content", content: text},
                    ],
                }
                for lang, text in items[1:]
            ]
        }
    return out


def _coding(system: str, code: str) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code}]}


def _address(place: Place) -> dict[str, Any]:
    address: dict[str, Any] = {"use": "work", "type": "physical", "country": "BE"}
    if place.language:
        address["extension"] = [
            {"url": "http://hl7.org/fhir/StructureDefinition/language", "valueCode": place.language}
        ]
    if place.street:
        line = " ".join(p for p in (place.street, place.number) if p)
        if place.box:
            line += f" bus {place.box}"
        parts = [
            {
                "url": "http://hl7.org/fhir/StructureDefinition/iso21090-ADXP-streetName",
                "valueString": place.street,
            }
        ]
        if place.number:
            parts.append(
                {
                    "url": "http://hl7.org/fhir/StructureDefinition/iso21090-ADXP-houseNumber",
                    "valueString": place.number,
                }
            )
        if place.box:
            parts.append(
                {
                    "url": "http://hl7.org/fhir/StructureDefinition/iso21090-ADXP-postBox",
                    "valueString": place.box,
                }
            )
        address["line"] = [line]
        address["_line"] = [{"extension": parts}]
    if place.city:
        address["city"] = place.city
    if place.postal_code:
        address["postalCode"] = place.postal_code
    return address


def _narrative(record: ServiceRecord) -> dict[str, Any]:
    parts = []
    for lang, name in record.names.items():
        parts.append(f'<p lang="{html.escape(lang)}"><b>{html.escape(name)}</b></p>')
        description = record.descriptions.get(lang)
        if description:
            parts.append(f'<p lang="{html.escape(lang)}">{html.escape(description)}</p>')
    for contact in record.contacts:
        who = ", ".join(p for p in (contact.name, contact.role) if p)
        parts.append(f"<p>{html.escape(who)}</p>")
    return {
        "status": "generated",
        "div": '<div xmlns="http://www.w3.org/1999/xhtml">' + "".join(parts) + "</div>",
    }


def build(record: ServiceRecord, verified_on: str) -> list[dict[str, Any]]:
    """[Organization, Location..., HealthcareService] of one record."""
    out: list[dict[str, Any]] = []
    org_key = record.organisation_id or record.source_id
    org_id = fhir_id(record.prefix + "-org", org_key)
    organization: dict[str, Any] = {
        "resourceType": "Organization",
        "id": org_id,
        "meta": {
            "profile": [
                "https://www.ehealth.fgov.be/standards/fhir/core/StructureDefinition/be-organization"
            ]
        },
        "extension": [
            {
                "url": model.EXT_SOURCE,
                "valueCoding": {"system": model.CS_SOURCE, "code": record.source},
            }
        ],
        "identifier": [
            {"system": record.identifier_system + "/organisation", "value": str(org_key)}
        ],
        "active": True,
    }
    if record.organisation_cbe:
        organization["identifier"].append({"system": model.CBE, "value": record.organisation_cbe})
    org_names = record.organisation_names or record.names
    primary_lang = next(iter(org_names))
    organization["language"] = primary_lang
    organization.update(_translatable(org_names, "name"))
    out.append(organization)
    location_refs = []
    for index, place in enumerate(record.places, start=1):
        location: dict[str, Any] = {
            "resourceType": "Location",
            "id": fhir_id(record.prefix + "-loc", record.source_id, str(index)),
            "meta": {
                "profile": [
                    "https://www.ehealth.fgov.be/standards/fhir/core/StructureDefinition/be-location"
                ]
            },
            "language": primary_lang,
            "status": "active" if record.active else "inactive",
            "name": place.name or org_names[primary_lang],
            "address": _address(place),
            "managingOrganization": {"reference": f"Organization/{org_id}"},
        }
        if place.nis:
            location["identifier"] = [{"system": model.NIS, "value": place.nis}]
        if place.lat is not None and place.lon is not None:
            location["position"] = {"latitude": place.lat, "longitude": place.lon}
        out.append(location)
        location_refs.append({"reference": f"Location/{location['id']}"})
    service: dict[str, Any] = {
        "resourceType": "HealthcareService",
        "id": fhir_id(record.prefix, record.source_id),
        "meta": {"profile": [model.PROFILE]},
        "language": next(iter(record.names)),
        "text": _narrative(record),
    }
    extensions: list[dict[str, Any]] = [
        {"url": model.EXT_SOURCE, "valueCoding": {"system": model.CS_SOURCE, "code": record.source}}
    ]
    for contact in record.contacts:
        parts: list[dict[str, Any]] = [{"url": "name", "valueString": contact.name}]
        if contact.role:
            parts.append({"url": "role", "valueString": contact.role})
        if contact.phone:
            parts.append({"url": "phone", "valueString": contact.phone})
        if contact.email:
            parts.append({"url": "email", "valueString": contact.email})
        extensions.append({"url": model.EXT_CONTACT, "extension": parts})
    if record.client_age:
        low, high = record.client_age
        age_range: dict[str, Any] = {}
        if low is not None:
            age_range["low"] = {
                "value": low,
                "unit": "a",
                "system": "http://unitsofmeasure.org",
                "code": "a",
            }
        if high is not None:
            age_range["high"] = {
                "value": high,
                "unit": "a",
                "system": "http://unitsofmeasure.org",
                "code": "a",
            }
        if age_range:
            extensions.append(
                {
                    "url": model.EXT_ELIGIBILITY,
                    "extension": [{"url": "clientAge", "valueRange": age_range}],
                }
            )
    cost = record.cost or next((c.cost for c in record.classes if c.cost), None)
    if cost:
        parts = [{"url": "category", "valueCoding": {"system": model.CS_COST, "code": cost}}]
        if record.cost_note:
            parts.append({"url": "note", "valueString": record.cost_note})
        extensions.append({"url": model.EXT_COST, "extension": parts})
    verification: list[dict[str, Any]] = [
        {"url": "lastVerified", "valueDate": record.last_verified or verified_on},
        {"url": "status", "valueCode": "verified"},
    ]
    if record.record_url:
        verification.append({"url": "sourceRecord", "valueUri": record.record_url})
    extensions.append({"url": model.EXT_VERIFICATION, "extension": verification})
    service["extension"] = extensions
    service["identifier"] = [{"system": record.identifier_system, "value": record.source_id}]
    service["active"] = record.active
    service["providedBy"] = {"reference": f"Organization/{org_id}"}
    categories = []
    for cls in record.classes:
        if cls.care_line:
            categories.append(_coding(model.CS_CARE_LINE, cls.care_line))
        if cls.module:
            categories.append(_coding(model.CS_MODULE, cls.module))
    if categories:
        service["category"] = _dedupe(categories)
    types = []
    for cls in record.classes:
        lang_order = list(record.names) + [x for x in cls.label if x not in record.names]
        text = next((cls.label[x] for x in lang_order if x in cls.label), None)
        if text:
            types.append({"text": text})
    if types:
        service["type"] = _dedupe(types)
    if location_refs:
        service["location"] = location_refs
    service.update(_translatable(record.names, "name"))
    if record.descriptions:
        ordered = {
            lang: record.descriptions[lang] for lang in record.names if lang in record.descriptions
        }
        ordered.update({k: v for k, v in record.descriptions.items() if k not in ordered})
        if next(iter(ordered)) == next(iter(record.names)):
            service.update(_translatable(ordered, "comment"))
        else:  # no description in the primary language: keep them as extra details
            service.update(_translatable(ordered, "extraDetails", markdown=True))
    telecom = (
        [{"system": "phone", "value": v, "use": "work"} for v in record.phones]
        + [{"system": "email", "value": v, "use": "work"} for v in record.emails]
        + [{"system": "url", "value": v} for v in record.websites]
    )
    if telecom:
        service["telecom"] = _dedupe(telecom)
    if record.coverage:
        service["coverageArea"] = [
            {"identifier": {"system": system, "value": code}, "display": code}
            for system, code in dict.fromkeys(record.coverage)
        ]
    if record.eligibility_note:
        service["eligibility"] = [{"comment": record.eligibility_note}]
    characteristics = []
    for cls in record.classes:
        characteristics += [_coding(model.CS_TARGET_GROUP, c) for c in cls.target_groups]
        characteristics += [_coding(model.CS_DELIVERY, c) for c in cls.delivery_modes]
    if characteristics:
        service["characteristic"] = _dedupe(characteristics)
    if record.languages:
        service["communication"] = [
            _coding(model.LANGUAGE, code) for code in dict.fromkeys(record.languages)
        ]
    if record.availability_note:
        service["availabilityExceptions"] = record.availability_note
    if not (service.get("telecom") or service.get("location")) and record.record_url:
        # bib-hcs-1: a way to reach the service; the organisation's record page
        service["telecom"] = [{"system": "url", "value": record.record_url}]
    out.append(service)
    return out


def _dedupe(items: list[Any]) -> list[Any]:
    seen: list[Any] = []
    for item in items:
        if item not in seen:
            seen.append(item)
    return seen
