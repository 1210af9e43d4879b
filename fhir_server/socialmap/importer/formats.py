"""The three import formats: where the records are in a file, their JSON Schema, and how a
record becomes a ServiceRecord (build.py). Classification comes from the mapping tables in
``mappings/socialmap-*.json``.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Any

import jsonschema
import orjson

from fhir_server.socialmap import model
from fhir_server.socialmap.importer.build import Classification, Contact, Place, ServiceRecord


class Rejected(Exception):
    """A record that cannot be imported: the reason and where in the record."""

    def __init__(self, reason: str, pointer: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.pointer = pointer


@cache
def schema(name: str) -> jsonschema.protocols.Validator:
    raw = (resources.files(__package__) / "schemas" / name).read_bytes()
    document = orjson.loads(raw)
    validator_class = jsonschema.validators.validator_for(
        document, default=jsonschema.Draft202012Validator
    )
    return validator_class(document)


@cache
def table(name: str) -> dict[str, Any]:
    return orjson.loads((resources.files("fhir_server.content.mappings") / name).read_bytes())


def _classification(entry: dict[str, Any]) -> Classification:
    return Classification(
        label=dict(entry.get("label", {})),
        care_line=entry.get("careLine"),
        target_groups=list(entry.get("targetGroups", ())),
        delivery_modes=list(entry.get("deliveryModes", ())),
        module=entry.get("module"),
        cost=entry.get("cost"),
    )


def _date(value: Any) -> str | None:
    return value[:10] if isinstance(value, str) and len(value) >= 10 else None


def _coverage_code(code: str) -> tuple[str, str]:
    if code == "04000":
        return (model.CS_REGION, "region-brussels-capital")
    if code in ("02000", "03000"):
        return (model.CS_REGION, "region-flanders" if code == "02000" else "region-wallonia")
    return (model.NIS, code)


class Format:
    name = ""
    schema_file = ""
    records_key: tuple[str, ...] = ()

    def records(self, data: Any) -> list[tuple[str, Any]]:
        """(JSON pointer, record) of every record in a parsed file."""
        if isinstance(data, list):
            return [(f"/{i}", r) for i, r in enumerate(data)]
        if isinstance(data, dict):
            for key in self.records_key:
                if isinstance(data.get(key), list):
                    return [(f"/{key}/{i}", r) for i, r in enumerate(data[key])]
            return [("", data)]
        raise Rejected("the file holds neither a list of records nor a page of them")

    def validate(self, record: Any) -> None:
        errors = sorted(schema(self.schema_file).iter_errors(record), key=lambda e: list(e.path))
        if errors:
            first = errors[0]
            pointer = "".join(f"/{p}" for p in first.absolute_path)
            more = f" (and {len(errors) - 1} more problems)" if len(errors) > 1 else ""
            raise Rejected(f"{first.message}{more}", pointer)

    def source_id(self, record: Any) -> str:
        raise NotImplementedError

    def map(self, record: Any, options: dict[str, Any]) -> ServiceRecord:
        raise NotImplementedError


class SocialeKaart(Format):
    name = "sociale-kaart"
    schema_file = "sociale-kaart-health-offer.json"
    records_key = ("content",)

    def source_id(self, record: Any) -> str:
        return str(record["id"]["id"])

    def map(self, record: Any, options: dict[str, Any]) -> ServiceRecord:
        rubrics = table("socialmap-sociale-kaart-rubrics.json")["rubrics"]
        classes, unknown = [], []
        for index, rubric in enumerate(record.get("rubrics", ())):
            code = rubric["code"]
            match = max((k for k in rubrics if code.startswith(k)), key=len, default=None)
            if match is None:
                unknown.append((index, code))
            else:
                classes.append(_classification(rubrics[match]))
        if not classes:
            index, code = unknown[0]
            raise Rejected(
                f"unknown rubric {code!r}: add it to mappings/socialmap-sociale-kaart-rubrics.json",
                f"/rubrics/{index}/code",
            )
        legal = record["legalName"]["description"]
        name = (record.get("name") or {}).get("description") or legal
        description = (record.get("description") or {}).get("description")
        if not description:
            description = "; ".join(
                a["description"] for a in record.get("activities", ()) if a.get("description")
            )
        places = []
        coverage = [_coverage_code(c) for c in record.get("workingArea", ())]
        for address in record.get("addresses", ()):
            municipality = address.get("municipality") or {}
            position = address.get("location") or {}
            place = Place(
                street=((address.get("street") or {}).get("name") or {}).get("description"),
                number=address.get("number"),
                box=address.get("box"),
                postal_code=municipality.get("postalCode"),
                city=(municipality.get("name") or {}).get("description"),
                nis=municipality.get("nisCode"),
                lat=position.get("lat"),
                lon=position.get("lon"),
                language="nl-BE",
            )
            places.append(place)
            if place.nis and not record.get("workingArea"):
                coverage.append((model.NIS, place.nis))
        info = record.get("contactInfo") or {}

        def values(key: str) -> list[str]:
            items = sorted(info.get(key, ()), key=lambda v: not v.get("primary"))
            return [v["value"] for v in items]

        organisation = record.get("organisation") or {}
        source_id = self.source_id(record)
        return ServiceRecord(
            source="sociale-kaart",
            prefix="sk",
            identifier_system=model.ID_SOCIALE_KAART,
            source_id=source_id,
            names={"nl": name},
            descriptions={"nl": description} if description else {},
            organisation_id=str(organisation["id"]) if organisation.get("id") else None,
            organisation_names={"nl": (organisation.get("name") or {}).get("description") or legal},
            organisation_cbe=organisation.get("enterpriseNumber"),
            places=places,
            phones=values("phones"),
            emails=values("emails"),
            websites=values("websites"),
            contacts=[
                Contact(c["name"], c.get("function"), c.get("phone"), c.get("email"))
                for c in record.get("contactPersons", ())
            ],
            languages=list(record.get("languages", ())),
            classes=classes,
            coverage=coverage,
            active=record.get("state") == "ACTIVE",
            last_verified=_date(record.get("lastUpdated")),
            record_url=f"https://www.desocialekaart.be/fiche/{source_id}",
        )


class BruxellesSocial(Format):
    name = "bruxelles-social"
    schema_file = "bruxelles-social-organisation.json"
    records_key = ("organisations", "results")

    def source_id(self, record: Any) -> str:
        return str(record["id"])

    def map(self, record: Any, options: dict[str, Any]) -> ServiceRecord:
        categories = table("socialmap-bruxelles-social-categories.json")["categories"]
        classes, unknown = [], []
        for index, category in enumerate(record.get("categories", ())):
            entry = categories.get(str(category["id"]))
            if entry is None:
                unknown.append((index, category["id"]))
            else:
                classes.append(_classification(entry))
        if not classes:
            index, code = unknown[0]
            raise Rejected(
                f"unknown category {code}: add it to "
                "mappings/socialmap-bruxelles-social-categories.json",
                f"/categories/{index}/id",
            )
        names = {
            lang: record[key]
            for lang, key in (("fr", "nameOfficialFr"), ("nl", "nameOfficialNl"))
            if record.get(key)
        }
        descriptions = {
            lang: record[key]
            for lang, key in (("fr", "descriptionFr"), ("nl", "descriptionNl"))
            if record.get(key)
        }
        address = record.get("address") or {}
        places = []
        if address:
            places.append(
                Place(
                    street=address.get("streetFr") or address.get("streetNl"),
                    number=address.get("number"),
                    postal_code=address.get("postalCode"),
                    city=address.get("municipalityFr") or address.get("municipalityNl"),
                    nis=address.get("nis"),
                    lat=address.get("lat"),
                    lon=address.get("lon"),
                    language="fr-BE",
                )
            )
        coverage = [
            _coverage_code(zone["nis"]) for zone in record.get("actionZones", ()) if zone.get("nis")
        ]
        if not coverage and address.get("nis"):
            coverage.append((model.NIS, address["nis"]))
        emails = [record[k] for k in ("emailFr", "emailNl") if record.get(k)]
        source_id = self.source_id(record)
        permanency = record.get("permanencyFr") or record.get("permanencyNl")
        return ServiceRecord(
            source="sociaal-brussel",
            prefix="bs",
            identifier_system=model.ID_BRUXELLES_SOCIAL,
            source_id=source_id,
            names=names,
            descriptions=descriptions,
            organisation_id=source_id,
            organisation_names=names,
            organisation_cbe=record.get("enterpriseNumber"),
            places=places,
            phones=[record["phone"]] if record.get("phone") else [],
            emails=list(dict.fromkeys(emails)),
            websites=[record["website"]] if record.get("website") else [],
            contacts=[
                Contact(
                    c["name"],
                    c.get("functionFr") or c.get("functionNl"),
                    c.get("phone"),
                    c.get("email"),
                )
                for c in record.get("contacts", ())
            ],
            languages=list(record.get("languageOffer", ())),
            classes=classes,
            coverage=coverage,
            last_verified=_date(record.get("lastUpdate")),
            record_url=f"https://social.brussels/organisation/{source_id}",
            availability_note=permanency,
        )


class Hsds(Format):
    name = "hsds"
    schema_file = "hsds-3.0-service.json"
    records_key = ("contents", "services")

    def source_id(self, record: Any) -> str:
        return str(record["id"])

    def map(self, record: Any, options: dict[str, Any]) -> ServiceRecord:
        terms = table("socialmap-hsds-taxonomy.json")["terms"]
        lang = options.get("language") or "en"
        classes, unknown = [], []
        for index, attribute in enumerate(record.get("attributes") or ()):
            term = attribute.get("taxonomy_term") or {}
            code = term.get("code")
            if not code:
                continue
            if code in terms:
                classes.append(_classification(terms[code]))
            else:
                unknown.append((index, code))
        if not classes:
            if unknown:
                index, code = unknown[0]
                raise Rejected(
                    f"unknown taxonomy term {code!r}: add it to "
                    "mappings/socialmap-hsds-taxonomy.json",
                    f"/attributes/{index}/taxonomy_term/code",
                )
            classes.append(_classification(terms["default"]))
        organisation = record.get("organization") or {}
        places = []
        for at in record.get("service_at_locations") or ():
            location = at.get("location") or {}
            address = next(iter(location.get("addresses") or ()), {})
            places.append(
                Place(
                    street=address.get("address_1"),
                    postal_code=address.get("postal_code"),
                    city=address.get("city"),
                    lat=location.get("latitude"),
                    lon=location.get("longitude"),
                    name=location.get("name"),
                )
            )
        coverage = []
        for area in record.get("service_areas") or ():
            name = str(area.get("name") or "").strip()
            if name.isdigit() and len(name) == 5:
                coverage.append(_coverage_code(name))
            elif name.startswith(("zorgzone-", "elz-", "region-", "province-")):
                coverage.append((model.CS_REGION, name))
        contacts = [
            Contact(
                c.get("name") or "",
                c.get("title"),
                next((p.get("number") for p in c.get("phones") or () if p.get("number")), None),
                c.get("email"),
            )
            for c in record.get("contacts") or ()
            if c.get("name")
        ]
        free = any((o.get("amount") == 0) for o in record.get("cost_options") or ()) or str(
            record.get("fees_description") or ""
        ).strip().lower() in ("free", "gratis", "gratuit")
        descriptions = {lang: record["description"]} if record.get("description") else {}
        low, high = record.get("minimum_age"), record.get("maximum_age")
        return ServiceRecord(
            source=options.get("source") or "bib-local",
            prefix="or",
            identifier_system=model.ID_HSDS + (options.get("namespace") or "hsds"),
            source_id=self.source_id(record),
            names={lang: record["name"]},
            descriptions=descriptions,
            organisation_id=organisation.get("id") or record.get("organization_id"),
            organisation_names={lang: organisation["name"]} if organisation.get("name") else {},
            places=places,
            phones=[p["number"] for p in record.get("phones") or () if p.get("number")],
            emails=[record["email"]] if record.get("email") else [],
            websites=[record["url"]] if record.get("url") else [],
            contacts=contacts,
            languages=[x["code"] for x in record.get("languages") or () if x.get("code")],
            classes=classes,
            coverage=coverage,
            active=record.get("status") == "active",
            last_verified=_date(record.get("assured_date")) or _date(record.get("last_modified")),
            eligibility_note=record.get("eligibility_description"),
            client_age=(
                (int(low) if low is not None else None, int(high) if high is not None else None)
                if low is not None or high is not None
                else None
            ),
            cost="free" if free else None,
            cost_note=record.get("fees_description"),
        )


FORMATS: dict[str, Format] = {f.name: f for f in (SocialeKaart(), BruxellesSocial(), Hsds())}
