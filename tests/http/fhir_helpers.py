"""Shared helpers for the HTTP-level REST tests: resource builders and response assertions.

Everything here talks to the server only through HTTP (the ``client`` fixture), so the checks are
the ones a real FHIR client would notice: status codes, headers, bodies, and what a later search or
history says was (or was not) written.
"""

from __future__ import annotations

from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

BASE = "http://testserver/fhir"
FHIR_JSON = "application/fhir+json"
MRN = "http://example.org/mrn"

# http://hl7.org/fhir/R4/valueset-issue-type.html
ISSUE_TYPES = frozenset(
    {
        "invalid", "structure", "required", "value", "invariant", "security", "login", "unknown",
        "expired", "forbidden", "suppressed", "processing", "not-supported", "duplicate",
        "multiple-matches", "not-found", "deleted", "too-long", "code-invalid", "extension",
        "too-costly", "business-rule", "conflict", "transient", "lock-error", "no-store",
        "exception", "timeout", "incomplete", "throttled", "informational",
    }
)  # fmt: skip


# -- resource builders --------------------------------------------------------------------------


def patient(family: str = "Doe", *, mrn: str | None = None, **extra: Any) -> dict[str, Any]:
    """A small valid Patient; ``mrn`` adds an identifier in the MRN system."""
    resource: dict[str, Any] = {
        "resourceType": "Patient",
        "name": [{"family": family, "given": ["Jane"]}],
        "gender": "female",
        "birthDate": "1980-04-12",
    }
    if mrn is not None:
        resource["identifier"] = [{"system": MRN, "value": mrn}]
    resource.update(extra)
    return resource


def observation(subject: str | None = None, value: Any = 72, **extra: Any) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
        "valueQuantity": {"value": value, "unit": "/min", "system": "http://unitsofmeasure.org",
                          "code": "/min"},
    }  # fmt: skip
    if subject is not None:
        resource["subject"] = {"reference": subject}
    resource.update(extra)
    return resource


def identifier_query(mrn: str) -> str:
    return f"identifier={MRN}|{mrn}"


# -- interactions -------------------------------------------------------------------------------


async def create(client: httpx.AsyncClient, resource: dict[str, Any], **headers: str) -> dict:
    """POST a resource, insist on 201, and return the stored representation."""
    response = await client.post(f"/{resource['resourceType']}", json=resource, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()


async def put(
    client: httpx.AsyncClient, resource: dict[str, Any], **headers: str
) -> httpx.Response:
    return await client.put(
        f"/{resource['resourceType']}/{resource['id']}", json=resource, headers=headers
    )


async def search_ids(client: httpx.AsyncClient, type_: str, query: str = "") -> list[str]:
    """Ids of the current (not deleted) resources of a type matching ``query``."""
    url = f"/{type_}?_count=1000" + (f"&{query}" if query else "")
    response = await client.get(url)
    assert response.status_code == 200, response.text
    return [e["resource"]["id"] for e in response.json().get("entry", ())
            if e.get("search", {}).get("mode", "match") == "match"]  # fmt: skip


async def history_entries(client: httpx.AsyncClient, path: str = "/_history") -> list[dict]:
    """All entries of a history, following next links."""
    url: str | None = f"{path}?_count=1000" if "?" not in path else path
    entries: list[dict] = []
    while url:
        response = await client.get(url)
        assert response.status_code == 200, response.text
        bundle = response.json()
        assert bundle["resourceType"] == "Bundle" and bundle["type"] == "history"
        entries.extend(bundle.get("entry", ()))
        url = next_link(bundle)
    return entries


async def version_count(client: httpx.AsyncClient) -> int:
    """How many versions the server holds in total (system history)."""
    return len(await history_entries(client))


def next_link(bundle: dict) -> str | None:
    for link in bundle.get("link", ()):
        if link["relation"] == "next":
            return link["url"]
    return None


# -- assertions ---------------------------------------------------------------------------------


def assert_fhir_json(response: httpx.Response) -> None:
    media = response.headers.get("content-type", "").split(";")[0].strip()
    assert media == FHIR_JSON, f"content-type {response.headers.get('content-type')!r}"


def assert_outcome(response: httpx.Response, status: int, *codes: str) -> dict:
    """An error response: the status, a JSON OperationOutcome with an error issue, valid issue
    codes (one of ``codes`` if given), and no internals leaked."""
    assert response.status_code == status, f"{response.status_code}: {response.text[:500]}"
    assert_fhir_json(response)
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome", outcome
    issues = outcome.get("issue") or []
    assert issues, "an OperationOutcome needs at least one issue"
    for issue in issues:
        assert issue["code"] in ISSUE_TYPES, f"{issue['code']!r} is not an R4 IssueType code"
        assert issue["severity"] in ("fatal", "error", "warning", "information")
    assert any(i["severity"] in ("error", "fatal") for i in issues), issues
    if codes:
        assert any(i["code"] in codes for i in issues), (codes, issues)
    for marker in ("Traceback", 'File "/'):
        assert marker not in response.text, "stack trace leaked into the response"
    return outcome


def diagnostics(outcome: dict) -> str:
    return " ".join(
        f"{i.get('diagnostics', '')} {' '.join(i.get('expression', ()))}"
        for i in outcome.get("issue", ())
    )


def etag_of(response: httpx.Response) -> str:
    return response.headers["etag"]


def http_date(response: httpx.Response, header: str = "last-modified") -> datetime:
    return parsedate_to_datetime(response.headers[header])


def instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def strip_meta(resource: dict) -> dict:
    return {k: v for k, v in resource.items() if k not in ("meta", "id")}
