"""Seeded generators of odd-but-plausible FHIR requests for the fuzz tests.

Each generator takes a ``random.Random`` so that a failing case can be replayed from its seed
(the tests print it). Requests mix well-formed shapes (real types, ids, parameters, content types)
with hostile twists: wrong types, broken JSON, odd modifiers and prefixes, extreme numbers and
dates, headers with impossible values. The aim is to reach deep into the server (validation,
search, transactions, terminology) rather than to be refused at the door.
"""

from __future__ import annotations

import base64
import json
import random
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

TYPES = (
    "Patient", "Observation", "Encounter", "Questionnaire", "QuestionnaireResponse", "CarePlan",
    "ServiceRequest", "Task", "Organization", "Location", "HealthcareService", "Bundle",
    "SearchParameter", "Practitioner", "Basic", "Communication", "Consent", "AuditEvent",
    "ValueSet", "CodeSystem", "Binary", "Parameters", "OperationOutcome", "Nope", "patient",
)  # fmt: skip
ODD_STRINGS = (
    "", " ", "%00", "\u0000", "a" * 5000, "-1", "0", "1e309", "NaN", "2024-13-45", "2024",
    "2024-01-01T10:00:00+25:00", "2024-01-01T10:00:00-14:00", "http://x|y|z", "|", "||", "a|",
    "|b", "Patient/", "Patient/1/_history/x", "$", "*", "é", "../..", "1,2,,3", "9" * 400, "true",
    "1.5e400", "-0", "Patient:x", "{", "[]", "null", "%", "%zz", "jans", "female", "1990-02-03",
)  # fmt: skip
SEARCH_NAMES = (
    "_id", "_lastUpdated", "name", "family", "identifier", "birthdate", "gender", "subject",
    "patient", "code", "date", "status", "_count", "_sort", "_include", "_revinclude",
    "_summary", "_elements", "_total", "_has:Observation:subject:code", "subject:Patient.name",
    "_tag", "_profile", "value-quantity", "_since", "_at", "_format", "_pretty", "url",
    "_contained", "_text", "_filter", "near", "code-value-quantity", "_type", "_security",
    "address-city", "_list", "_content", "_query", "page", "_offset", "_cursor",
)  # fmt: skip
MODIFIERS = (
    "", ":exact", ":contains", ":missing", ":not", ":text", ":above", ":below", ":in", ":not-in",
    ":of-type", ":identifier", ":Patient", ":iterate", ":bogus", ":",
)  # fmt: skip
PREFIXES = ("", "eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap", "zz")
CONTENT_TYPES = (
    "application/fhir+json", "application/json", "application/json-patch+json",
    "application/merge-patch+json", "application/x-www-form-urlencoded", "application/fhir+xml",
    "text/plain", "", "application/fhir+json; charset=latin1",
    "application/fhir+json; fhirVersion=3.0",
)  # fmt: skip
ODD_HEADERS = {
    "if-match": ('W/"1"', '"2"', "x", "*", 'W/"99999999999999999999"'),
    "if-none-match": ("*", 'W/"1"', "x"),
    "if-none-exist": ("identifier=https://x|1", "name=", "x", "&&", "_id=1"),
    "if-modified-since": ("Mon, 01 Jan 2024 00:00:00 GMT", "x", "Tue, 99 Foo 2024"),
    "prefer": (
        "return=minimal", "return=representation", "return=OperationOutcome", "handling=strict",
        "handling=lenient", "respond-async", "return=",
    ),
    "accept": ("application/fhir+json", "application/fhir+xml", "*/*", "text/html", "x/y"),
}  # fmt: skip


@dataclass
class FuzzRequest:
    method: str
    url: str
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None

    def describe(self) -> str:
        body = (self.body or b"")[:300]
        return f"{self.method} {self.url[:300]} {self.headers} {body!r}"


def patient(rnd: random.Random, i: int = 0) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "identifier": [{"system": "http://example.org/mrn", "value": str(i)}],
        "name": [{"family": f"Fuzz{i}", "given": ["A"]}],
        "gender": rnd.choice(("female", "male", "other", "unknown")),
        "birthDate": f"19{50 + i % 50}-0{1 + i % 9}-1{i % 9}",
    }


def odd_json(rnd: random.Random, depth: int = 0) -> Any:
    roll = rnd.random()
    if depth > 4 or roll < 0.4:
        return rnd.choice(
            (None, True, False, 0, -1, 1.5, 10**30, 1e308, "x", "", "\u0000", "2024-01-01",
             {"reference": "Patient/1"}, {"reference": "urn:uuid:x"}, rnd.choice(ODD_STRINGS))
        )  # fmt: skip
    if roll < 0.7:
        keys = ("a", "id", "value", "url", "reference", "system", "code", "resourceType")
        return {rnd.choice(keys): odd_json(rnd, depth + 1) for _ in range(rnd.randint(0, 3))}
    return [odd_json(rnd, depth + 1) for _ in range(rnd.randint(0, 3))]


def mutate(rnd: random.Random, value: Any, depth: int = 0) -> Any:
    """One random change somewhere inside a JSON value (a copy)."""
    roll = rnd.random()
    if depth > 6:
        return value
    if isinstance(value, dict):
        value = dict(value)
        if value and roll < 0.3:
            key = rnd.choice(list(value))
            value[key] = mutate(rnd, value[key], depth + 1)
        elif value and roll < 0.45:
            del value[rnd.choice(list(value))]
        elif roll < 0.6:
            key = rnd.choice(
                ("id", "meta", "extension", "modifierExtension", "contained", "text",
                 "_birthDate", "resourceType", "name", "unknownX", "valueQuantity",
                 "implicitRules", "language", "fhir_comments", "", "@x")
            )  # fmt: skip
            value[key] = odd_json(rnd, depth + 1)
        return value
    if isinstance(value, list):
        if roll < 0.3:
            return []
        extra = [odd_json(rnd, depth + 1)] if roll < 0.5 else []
        return [mutate(rnd, item, depth + 1) for item in value] + extra
    return odd_json(rnd, depth + 1) if roll < 0.5 else value


def odd_body(rnd: random.Random) -> bytes:
    roll = rnd.random()
    if roll < 0.1:
        return rnd.choice(
            (b"", b"{", b"[]", b"null", b"\xff\xfe", b"{" * 2000, b"1" * 5000, b"\x00",
             b'{"resourceType":"Patient","a":1e999999}')
        )  # fmt: skip
    if roll < 0.35:
        value: Any = patient(rnd)
    elif roll < 0.6:
        value = bundle(rnd, [])
    elif roll < 0.75:
        value = [
            {
                "op": rnd.choice(("add", "replace", "remove", "test", "move", "copy", "x")),
                "path": rnd.choice(("/name/0/family", "/id", "/meta", "", "/x/y", "/name/-")),
                "value": odd_json(rnd),
                "from": "/name",
            }
        ]
    elif roll < 0.85:
        value = {"resourceType": "Parameters", "parameter": [{"name": "operation", "part": [
            {"name": "type", "valueCode": rnd.choice(("add", "replace", "delete", "move", "x"))},
            {"name": "path", "valueString": rnd.choice(("Patient", "Patient.name", "(", "x"))},
            {"name": "name", "valueString": "family"},
            {"name": "value", "valueString": "x"},
        ]}]}  # fmt: skip
    else:
        value = odd_json(rnd)
    for _ in range(rnd.randint(0, 3)):
        value = mutate(rnd, value)
    return json.dumps(value).encode()


def odd_query(rnd: random.Random) -> str:
    parts = []
    for _ in range(rnd.randint(0, 4)):
        name = rnd.choice(SEARCH_NAMES)
        if rnd.random() < 0.5:
            name += rnd.choice(MODIFIERS)
        value = rnd.choice(PREFIXES) + rnd.choice(ODD_STRINGS)
        parts.append(quote(name, safe=":._$") + "=" + quote(value, safe="|,:"))
    return "&".join(parts)


def rest_request(rnd: random.Random, ids: list[str], n: int) -> FuzzRequest:
    """Any interaction: 60 % on well-formed Patient URLs with a sensible content type."""
    if rnd.random() < 0.6:
        method = rnd.choice(("GET", "GET", "POST", "POST", "PUT", "PATCH", "DELETE", "HEAD"))
        pid = rnd.choice(ids)
        url = rnd.choice(
            {
                "GET": ("/Patient", f"/Patient/{pid}", f"/Patient/{pid}/_history", "/_history"),
                "HEAD": (f"/Patient/{pid}", "/Patient"),
                "POST": ("/Patient", "/", "/Patient/_search", f"/Patient/{pid}/$validate"),
                "PUT": (f"/Patient/{pid}", f"/Patient/new-{n}", "/Patient"),
                "PATCH": (f"/Patient/{pid}", "/Patient"),
                "DELETE": (f"/Patient/{pid}", "/Patient"),
            }[method]
        )
        content_type = "application/fhir+json"
        if method == "PATCH":
            content_type = rnd.choice(
                ("application/json-patch+json", "application/merge-patch+json", content_type)
            )
        headers = {"content-type": content_type}
        body = None
        if method in ("POST", "PUT", "PATCH"):
            body = odd_body(rnd)
            if method in ("POST", "PUT") and url != "/" and rnd.random() < 0.7:
                resource = patient(rnd, n)
                if method == "PUT":
                    resource["id"] = url.rsplit("/", 1)[-1]
                if rnd.random() < 0.7:
                    resource = mutate(rnd, resource)
                body = json.dumps(resource).encode()
    else:
        method = rnd.choice(("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "TRACE"))
        type_ = rnd.choice(TYPES)
        id_ = rnd.choice([*ids, "x", "1", "-", "a" * 70, "%00", ".."])
        url = rnd.choice(
            (f"/{type_}", f"/{type_}/{id_}", f"/{type_}/{id_}/_history",
             f"/{type_}/{id_}/_history/{rnd.choice(('1', '2', 'x', '0', '-1'))}",
             f"/{type_}/_history", "/_history", "/metadata", "/", f"/{type_}/_search",
             f"/{type_}/$validate", f"/{type_}/{id_}/$validate", f"/{type_}/$x", "/$meta",
             f"/{type_}/{id_}/x", f"/{type_}/{id_}/Observation")
        )  # fmt: skip
        headers = {}
        if rnd.random() < 0.8:
            headers["content-type"] = rnd.choice(CONTENT_TYPES)
        body = odd_body(rnd) if method in ("POST", "PUT", "PATCH") else None
    for name, values in ODD_HEADERS.items():
        if rnd.random() < 0.12:
            headers[name] = rnd.choice(values)
    if rnd.random() < 0.5:
        query = odd_query(rnd)
        url += ("?" + query) if query else ""
    return FuzzRequest(method, url, headers, body)


# -- search ---------------------------------------------------------------------------------------

SEARCH_VALUES = {
    "string": ("jans", "", "é", "%", "_", "a*", "O'Brien", "x" * 300, "a,b", "a\\,b", "\\"),
    "token": ("female", "http://loinc.org|1234-5", "|x", "x|", "|", "a,b", "\\|", "final"),
    "reference": ("Patient/1", "1", "Patient/1/_history/2", "http://other/fhir/Patient/1",
                  "Nope/1", "", "Patient/", "urn:uuid:1", "http://testserver/fhir/Patient/1"),
    "date": ("2024", "ge2024-01", "lt2024-01-01T10:00:00Z", "sa2024", "eb2024", "ap2024-05-05",
             "ne2024-02-29", "2024-02-30", "9999", "0001", "ge-1", "2024-01-01T10:00",
             "2024-01-01T10:00:00.123456789+14:00", "2024-01-01T10:00:00+14:30"),
    "number": ("1", "ge1.5", "1e3", "-0", "1e400", "ap100", "lt-99999999999999999999", "NaN"),
    "quantity": ("5.4|http://unitsofmeasure.org|mg", "gt5||mg", "5", "ap5|x|y|z", "5|", "|||"),
    "uri": ("http://x", "urn:oid:1", "http://x/", "", "http://x|1.0", "relative/path"),
    "composite": ("http://loinc.org|1234-5$5.4", "a$b$c", "$", "x$gt5", "1234-5$ge2024"),
    "special": ("1.0|2.0", "0:0", "50|4|10|km", "x"),
}  # fmt: skip
SEARCH_MODIFIERS = {
    "string": ("", ":exact", ":contains", ":missing", ":text", ":not"),
    "token": ("", ":not", ":text", ":missing", ":in", ":not-in", ":of-type", ":above", ":below"),
    "reference": ("", ":missing", ":Patient", ":identifier", ":above", ":Nope", ":text"),
    "uri": ("", ":above", ":below", ":missing", ":contains"),
}
RESULT_PARAMETERS = (
    ("_sort", ("name", "-birthdate", "_id", "-_lastUpdated", "nope", "", "name,-gender")),
    ("_count", ("0", "1", "-1", "x", "100000", "2")),
    ("_include", ("Observation:subject", "*", "Observation:*", "x", "Observation:subject:Nope")),
    ("_include:iterate", ("Observation:subject", "*")),
    ("_revinclude", ("Observation:subject", "*", "Provenance:target", "x:y")),
    ("_summary", ("true", "count", "data", "text", "false", "x")),
    ("_elements", ("name", "id,meta", "", "x.y", "subject")),
    ("_total", ("none", "estimate", "accurate", "x")),
    ("_has:Observation:subject:code", ("1234-5", "http://loinc.org|1234-5", "")),
    ("_has:Observation:patient:_has:AuditEvent:entity:type", ("x",)),
    ("_has:Nope:x:y", ("1",)),
    ("_type", ("Patient,Observation", "Nope", "")),
    ("_contained", ("true", "both", "x")),
    ("_tag", SEARCH_VALUES["token"]),
    ("_profile", SEARCH_VALUES["uri"]),
    ("_lastUpdated", SEARCH_VALUES["date"]),
    ("_text", ("x",)),
    ("_filter", ("name eq x",)),
)
SEARCH_TYPES = (
    "Patient", "Observation", "Encounter", "QuestionnaireResponse", "CarePlan", "ServiceRequest",
    "Task", "Organization", "Location", "HealthcareService", "PractitionerRole", "Communication",
    "Consent", "Condition", "Questionnaire", "PlanDefinition", "AuditEvent", "Provenance",
    "Group", "List", "DocumentReference", "Composition", "Bundle", "SearchParameter",
)  # fmt: skip


def search_request(rnd: random.Random, params_of: Any, ids: list[str]) -> FuzzRequest:
    """A search with real parameters of the type, odd values, chains, _has and result options."""
    type_ = rnd.choice(SEARCH_TYPES)
    params = list(params_of(type_).values())
    parts = []
    for _ in range(rnd.randint(1, 4)):
        if params and rnd.random() < 0.7:
            param = rnd.choice(params)
            modifier = rnd.choice(SEARCH_MODIFIERS.get(param.type, ("", ":missing")))
            value = rnd.choice(SEARCH_VALUES.get(param.type, ("x",)))
            if modifier == ":missing":
                value = rnd.choice(("true", "false", "x"))
            name = param.code + modifier
            if param.type == "reference" and rnd.random() < 0.3:
                name = param.code + rnd.choice(
                    (".name", ".identifier", ".subject.name", ":Patient.birthdate", ".nope")
                )
                value = rnd.choice(("jans", "http://x|1", "ge1990", "x"))
        else:
            name, values = rnd.choice(RESULT_PARAMETERS)
            value = rnd.choice((*values, *ids[:2])) if name == "_id" else rnd.choice(values)
        parts.append(quote(name, safe=":.-_") + "=" + quote(value, safe="|:,$*"))
    query = "&".join(parts)
    roll = rnd.random()
    if roll < 0.6:
        return FuzzRequest("GET", f"/{type_}?{query}")
    if roll < 0.8:
        form = {"content-type": "application/x-www-form-urlencoded"}
        return FuzzRequest("POST", f"/{type_}/_search", form, query.encode())
    return FuzzRequest("GET", f"/?{query}")


# -- transactions and batches -----------------------------------------------------------------

JSON_PATCH = [{"op": "replace", "path": "/gender", "value": "male"}]
PATCH_BODIES = (
    {"resourceType": "Binary", "contentType": "application/json-patch+json",
     "data": base64.b64encode(json.dumps(JSON_PATCH).encode()).decode()},
    {"resourceType": "Parameters", "parameter": [{"name": "operation", "part": [
        {"name": "type", "valueCode": "replace"},
        {"name": "path", "valueString": "Patient.gender"},
        {"name": "value", "valueCode": "male"},
    ]}]},
    {"resourceType": "Binary", "contentType": "application/json-patch+json", "data": "!!!"},
    {"resourceType": "Binary", "contentType": "application/json-patch+json", "data": 3},
    {"resourceType": "Parameters"},
)  # fmt: skip


def bundle_entry(rnd: random.Random, ids: list[str], full_urls: list[str]) -> dict[str, Any]:
    odd = rnd.random() < 0.15  # a hostile twist in this entry, else a well-formed one
    methods = ("POST", "POST", "PUT", "DELETE", "GET", "PATCH")
    method = rnd.choice((*methods, "HEAD", "")) if odd else rnd.choice(methods)
    i = rnd.randint(0, 20)
    some_id = rnd.choice(ids) if ids else "x"
    urn = f"urn:uuid:{uuid.UUID(int=rnd.getrandbits(128))}"
    entry: dict[str, Any] = {"fullUrl": urn}
    if odd:
        entry["fullUrl"] = rnd.choice(
            ("", "Patient/1", f"http://testserver/fhir/Patient/{some_id}", "urn:uuid:", [], 3)
        )
    resource: dict[str, Any] = patient(rnd, i)
    if method == "POST":
        if full_urls and rnd.random() < 0.5:
            subject = rnd.choice(
                (*full_urls, *full_urls, f"Patient?identifier=http://example.org/mrn|{i}",
                 f"Patient/{some_id}")
            )  # fmt: skip
            if odd:
                subject = rnd.choice(("Patient?name=", "Patient?x=y", "urn:uuid:missing", "#p"))
            resource = {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
                        "subject": {"reference": subject}}  # fmt: skip
            if rnd.random() < 0.2:
                resource["contained"] = [{**patient(rnd), "id": "p"}]
        entry["resource"] = resource
        url = rnd.choice(("P/1", "Nope", "")) if odd else resource["resourceType"]
        entry["request"] = {"method": "POST", "url": url}
        if rnd.random() < 0.3:
            entry["request"]["ifNoneExist"] = (
                rnd.choice(("", "x=y", "&&", 5))
                if odd
                else rnd.choice((f"identifier=http://example.org/mrn|{i}", f"name=Fuzz{i}"))
            )
        full_urls.append(entry["fullUrl"])
    elif method == "PUT":
        target = rnd.choice(("", "a/b", "x" * 80)) if odd else rnd.choice((some_id, f"new{i}"))
        resource["id"] = rnd.choice((target, "other")) if odd else target
        entry["resource"] = resource
        entry["request"] = {"method": "PUT", "url": rnd.choice(
            (f"Patient/{target}", f"Patient?identifier=http://example.org/mrn|{i}", "Patient?",
             f"Observation/{target}")
        )}  # fmt: skip
        if rnd.random() < 0.3:
            entry["request"]["ifMatch"] = rnd.choice(('W/"1"', 'W/"2"', "x", "*"))
    elif method == "DELETE":
        entry["request"] = {"method": "DELETE", "url": rnd.choice(
            (f"Patient/{some_id}", f"Patient?identifier=http://example.org/mrn|{i}", "Patient?",
             "Patient", "Patient?name=Fuzz")
        )}  # fmt: skip
    elif method == "GET":
        entry["request"] = {"method": "GET", "url": rnd.choice(
            (f"Patient/{some_id}", "Patient?name=Fuzz1", "Patient", "metadata",
             "Patient/x/_history", "Nope/1", "Patient?_count=-1")
        )}  # fmt: skip
    elif method == "PATCH":
        entry["resource"] = rnd.choice(PATCH_BODIES)
        entry["request"] = {"method": "PATCH", "url": rnd.choice(
            (f"Patient/{some_id}", f"Patient?identifier=http://example.org/mrn|{i}", "Patient/x")
        )}  # fmt: skip
    elif rnd.random() < 0.5:
        entry["request"] = {"method": method, "url": "Patient"}
    if odd and rnd.random() < 0.3:
        entry.pop("fullUrl")
    return entry


def bundle(rnd: random.Random, ids: list[str]) -> dict[str, Any]:
    full_urls: list[str] = []
    kind = rnd.choice(("transaction", "batch", "transaction", "collection"))
    entries = [bundle_entry(rnd, ids, full_urls) for _ in range(rnd.randint(0, 6))]
    if not entries and rnd.random() < 0.8:  # FHIR JSON has no empty arrays: mostly leave it out
        return {"resourceType": "Bundle", "type": kind}
    return {"resourceType": "Bundle", "type": kind, "entry": entries}


# -- operations -------------------------------------------------------------------------------

OPERATION_PARAMETERS = (
    "url", "code", "system", "version", "display", "coding", "valueSet", "filter", "count",
    "offset", "includeDesignations", "activeOnly", "displayLanguage", "property", "codeA",
    "codeB", "conceptMap", "source", "target", "targetsystem", "mode", "profile", "resource",
    "date", "abstract", "excludeNested", "system-version", "reverse", "x",
)  # fmt: skip
OPERATION_VALUES = (
    "http://loinc.org", "8867-4", "", "x", "-1", "0", "true", "false", "1e999",
    "http://hl7.org/fhir/ValueSet/administrative-gender", "http://hl7.org/fhir/ValueSet/nope",
    "female", "http://hl7.org/fhir/administrative-gender", "a" * 2000, "%", "|", "http://x|y",
    "nl-BE", "*", "create", "update", "http://hl7.org/fhir/StructureDefinition/Patient",
)  # fmt: skip
SENSIBLE_OPERATIONS = {
    "expand": ("/ValueSet", "url=http://hl7.org/fhir/ValueSet/administrative-gender"),
    "lookup": ("/CodeSystem", "system=http://hl7.org/fhir/administrative-gender&code=female"),
    "validate-code": (
        "/ValueSet",
        "url=http://hl7.org/fhir/ValueSet/administrative-gender"
        "&system=http://hl7.org/fhir/administrative-gender&code=female",
    ),
    "subsumes": (
        "/CodeSystem",
        "system=http://hl7.org/fhir/administrative-gender&codeA=female&codeB=male",
    ),
    "translate": ("/ConceptMap", "system=http://hl7.org/fhir/administrative-gender&code=female"),
    "status": ("/Subscription", "status=active"),  # the caller's subscriptions (none here)
    "everything": ("/Patient/{pid}", "_count=5"),
}


ODD_OPERATION_RESOURCES = (
    {"resourceType": "Patient", "gender": "x"},
    {"resourceType": "Nope"},
    {},
    {
        "resourceType": "ValueSet",
        "status": "active",
        "compose": {"include": [{"system": "http://loinc.org", "concept": [{"code": "x"}]}]},
    },
)


def _operation_value(rnd: random.Random) -> dict[str, Any]:
    kind = rnd.choice(
        ("valueString", "valueCode", "valueUri", "valueBoolean", "valueInteger", "valueCoding",
         "valueCodeableConcept", "resource", "valueDecimal", "part", "valueDateTime")
    )  # fmt: skip
    value = {
        "valueBoolean": rnd.choice((True, False, "x", None)),
        "valueInteger": rnd.choice((0, -1, 10**12, 1.5, "x")),
        "valueCoding": {"system": rnd.choice(OPERATION_VALUES), "code": "x"},
        "valueCodeableConcept": {"coding": [{"system": rnd.choice(OPERATION_VALUES)}]},
        "resource": rnd.choice(ODD_OPERATION_RESOURCES),
        "valueDecimal": rnd.choice((1.5, 1e308, -0.0)),
        "part": [{"name": rnd.choice(OPERATION_PARAMETERS), "valueString": "x"}],
        "valueDateTime": rnd.choice(("2024", "x", "2024-13")),
    }.get(kind, rnd.choice(OPERATION_VALUES))
    return {"name": rnd.choice(OPERATION_PARAMETERS), kind: value}


def operation_request(rnd: random.Random, operations: list[str], pid: str) -> FuzzRequest:
    name = rnd.choice([*operations, "nope"])
    sensible = SENSIBLE_OPERATIONS.get(name)
    extra = "&".join(
        quote(rnd.choice(OPERATION_PARAMETERS)) + "=" + quote(rnd.choice(OPERATION_VALUES), "|:")
        for _ in range(rnd.randint(0, 3))
    )
    if sensible and rnd.random() < 0.6:
        level, query = sensible
        level = level.format(pid=pid)
        return FuzzRequest("GET", f"{level}/${name}?{query}" + (f"&{extra}" if extra else ""))
    level = rnd.choice(
        ("", "/ValueSet", "/CodeSystem", "/ConceptMap", "/Patient", f"/Patient/{pid}",
         "/ValueSet/x", "/Nope", "/Patient/nope")
    )  # fmt: skip
    if rnd.random() < 0.5:
        return FuzzRequest("GET", f"{level}/${name}" + (f"?{extra}" if extra else ""))
    parameters = [_operation_value(rnd) for _ in range(rnd.randint(0, 4))]
    body = rnd.choice(
        ({"resourceType": "Parameters", "parameter": parameters},
         {"resourceType": "Parameters", "parameter": parameters},
         {"resourceType": "Patient", "gender": "female"},
         {"resourceType": "Parameters", "parameter": "x"}, [],
         {"resourceType": "Parameters", "parameter": [{}]})
    )  # fmt: skip
    headers = {"content-type": "application/fhir+json"}
    return FuzzRequest("POST", f"{level}/${name}", headers, json.dumps(body).encode())


# -- patches ----------------------------------------------------------------------------------

FHIRPATH_PATHS = (
    "Patient", "Patient.name", "Patient.name[0]", "Patient.name[5]", "Patient.name.given",
    "Patient.name[0].given[0]", "Patient.identifier", "Patient.birthDate", "Patient.gender",
    "Patient.telecom", "Patient.extension", "Patient.name.where(use='official')",
    "Patient.contact.name", "Patient.meta", "Patient.id", "Patient.x", "Patient.name.first()",
    "(Patient", "Patient.name[-1]", "Patient.deceased", "%resource", "",
)  # fmt: skip
FHIRPATH_NAMES = ("family", "given", "use", "system", "value", "text", "x", "", "url", "id")
FHIRPATH_VALUES = (
    {"valueString": "x"}, {"valueString": ""}, {"valueCode": "female"}, {"valueCode": "a b"},
    {"valueBoolean": True}, {"valueInteger": 5}, {"valueDate": "2024-13-01"},
    {"valueDate": "2020-01-01"}, {"valueHumanName": {"family": "Y"}},
    {"valueIdentifier": {"system": "http://x", "value": "1"}},
    {"valueContactPoint": {"system": "phone", "value": "1"}}, {"valueQuantity": {"value": 1}},
    {"part": [{"name": "system", "valueUri": "http://x"}, {"name": "value", "valueString": "1"}]},
    {}, {"valueDecimal": 1e308},
)  # fmt: skip
JSON_POINTERS = (
    "/name/0/family", "/name/0/given/0", "/name/-", "/name/0/given/-", "/gender", "/birthDate",
    "/id", "/resourceType", "/meta", "/meta/versionId", "/name/99", "/name/0/x", "/telecom",
    "/a~1b", "/a~0b", "", "/", "/name/01", "/name/-1", "/identifier/0",
)  # fmt: skip


def patch_request(rnd: random.Random, pid: str) -> FuzzRequest:
    """A FHIRPath Patch, JSON Patch or JSON merge-patch of a Patient, mostly well-formed."""
    roll = rnd.random()
    if roll < 0.5:
        operations = []
        for _ in range(rnd.randint(0, 4)):
            kind = rnd.choice(("add", "insert", "delete", "replace", "move", "x", ""))
            parts: list[dict[str, Any]] = [
                {"name": "type", "valueCode": kind},
                {"name": "path", "valueString": rnd.choice(FHIRPATH_PATHS)},
            ]
            if rnd.random() < 0.8:
                parts.append({"name": "name", "valueString": rnd.choice(FHIRPATH_NAMES)})
            if rnd.random() < 0.8:
                parts.append({"name": "value", **rnd.choice(FHIRPATH_VALUES)})
            for extra in ("index", "source", "destination"):
                if rnd.random() < 0.2:
                    parts.append({"name": extra, "valueInteger": rnd.choice((0, 1, -1, 99))})
            rnd.shuffle(parts)
            operations.append({"name": rnd.choice(("operation", "operation", "x")), "part": parts})
        body: Any = {"resourceType": "Parameters"}
        if operations:
            body["parameter"] = operations
        content_type = "application/fhir+json"
    elif roll < 0.85:
        body = [
            {
                "op": rnd.choice(("add", "remove", "replace", "move", "copy", "test", "x")),
                "path": rnd.choice(JSON_POINTERS),
                "value": rnd.choice(("x", 1, None, {"family": "Z"}, [], {}, True, "2020-01-01")),
                "from": rnd.choice(JSON_POINTERS),
            }
            for _ in range(rnd.randint(0, 4))
        ]
        content_type = "application/json-patch+json"
    else:
        key = rnd.choice(("name", "gender", "id", "resourceType", "x", "birthDate", "meta"))
        body = {key: rnd.choice((None, "x", [], {"a": 1}, [{"family": None}], "female"))}
        content_type = "application/merge-patch+json"
    return FuzzRequest(
        "PATCH", f"/Patient/{pid}", {"content-type": content_type}, json.dumps(body).encode()
    )
