"""Shared harness for the FHIR R4 search contract tests (``test_search_*.py``).

The search tests drive :func:`fhir_server.service.search.search` through the contract suite's
``service`` fixture, so every store implementation runs them. Each test module declares a small
dataset with fixed ids and tables of ``(query, expected ids)`` cases; the helpers here load the
dataset, run a search and read the searchset Bundle back (entries may hold ``orjson.Fragment``
bodies, so the Bundle is serialised and parsed again, as a client would see it).

Queries in the tables are written as they appear in a URL but *without* percent-encoding, so they
read like the spec: ``q("phone=+32 2 555 01 01&_count=2")``. The split is on ``&`` and the first
``=`` only; no value in the tables contains either.

The tests at the bottom check the harness itself and the basic shape of a searchset Bundle.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import orjson
import pytest

from fhir_server.errors import FhirError
from fhir_server.json_codec import dumps
from fhir_server.service import crud, search
from fhir_server.service.context import RequestContext
from fhir_server.service.core import FhirService

BASE = "http://testserver/fhir"
SUBSETTED_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-ObservationValue"


def make_ctx(**overrides: Any) -> RequestContext:
    return RequestContext(base_url=BASE, **overrides)


def q(query: str) -> list[tuple[str, str]]:
    """``"a=1&b:exact=x|y"`` -> ``[("a", "1"), ("b:exact", "x|y")]`` (no percent-decoding)."""
    params: list[tuple[str, str]] = []
    for part in query.split("&"):
        if not part:
            continue
        name, _, value = part.partition("=")
        params.append((name, value))
    return params


async def put(service: FhirService, resource: dict[str, Any]) -> dict[str, Any]:
    """Create or update ``resource`` under its own id; return it as stored (with meta)."""
    body = orjson.loads(orjson.dumps(resource))  # the service may mutate what it is given
    result = await crud.update(
        service, make_ctx(), body["resourceType"], body["id"], body, None, None
    )
    raw = result.raw if result.raw is not None else dumps(result.resource)
    return orjson.loads(raw)


async def load(service: FhirService, resources: Iterable[dict[str, Any]]) -> list[dict]:
    return [await put(service, resource) for resource in resources]


async def delete(service: FhirService, type_: str, id_: str) -> None:
    await crud.delete(service, make_ctx(), type_, id_)


@dataclass
class Found:
    """A searchset Bundle, read back as a client sees it."""

    bundle: dict[str, Any]
    matches: list[str] = field(default_factory=list)  # "Type/id" of search.mode=match, in order
    included: list[str] = field(default_factory=list)  # "Type/id" of search.mode=include
    resources: dict[str, dict] = field(default_factory=dict)  # "Type/id" -> resource
    issues: list[dict] = field(default_factory=list)  # issues of search.mode=outcome entries

    @property
    def ids(self) -> list[str]:
        """Ids of the matches (without type), in Bundle order."""
        return [key.split("/", 1)[1] for key in self.matches]

    @property
    def total(self) -> int | None:
        return self.bundle.get("total")

    @property
    def links(self) -> dict[str, str]:
        return {link["relation"]: link["url"] for link in self.bundle.get("link", ())}

    def resource(self, key: str) -> dict:
        return self.resources[key]


def read_bundle(bundle: dict[str, Any]) -> Found:
    found = Found(bundle)
    for entry in bundle.get("entry", ()):
        resource = entry.get("resource") or {}
        mode = (entry.get("search") or {}).get("mode")
        if mode == "outcome":
            found.issues.extend(resource.get("issue", ()))
            continue
        key = f"{resource.get('resourceType')}/{resource.get('id')}"
        assert entry.get("fullUrl") == f"{BASE}/{key}", entry.get("fullUrl")
        found.resources[key] = resource
        if mode == "match":
            found.matches.append(key)
        elif mode == "include":
            found.included.append(key)
        else:
            raise AssertionError(f"entry {key} has search.mode {mode!r}")
    return found


async def run(
    service: FhirService,
    types: str | Sequence[str],
    params: str | list[tuple[str, str]],
    *,
    compartment: tuple[str, str] | None = None,
    ctx: RequestContext | None = None,
) -> Found:
    """Run a search and return the Bundle as a client would read it."""
    types = (types,) if isinstance(types, str) else tuple(types)
    params = q(params) if isinstance(params, str) else list(params)
    link_base = f"{BASE}/{types[0]}" if len(types) == 1 else BASE
    result = await search.search(
        service, ctx or make_ctx(), types, params, link_base, compartment=compartment
    )
    assert result.status == 200
    bundle = orjson.loads(dumps(result.resource))
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "searchset"
    return read_bundle(bundle)


def link_params(url: str) -> list[tuple[str, str]]:
    return parse_qsl(urlsplit(url).query, keep_blank_values=True)


def cursor_of(url: str) -> str:
    cursors = [value for name, value in link_params(url) if name == "_cursor"]
    assert len(cursors) == 1, url
    return cursors[0]


async def follow(
    service: FhirService,
    types: str | Sequence[str],
    url: str,
    *,
    compartment: tuple[str, str] | None = None,
    ctx: RequestContext | None = None,
) -> Found:
    """Fetch a paging link: the parameters of the link, including its ``_cursor``."""
    return await run(service, types, link_params(url), compartment=compartment, ctx=ctx)


async def all_pages(
    service: FhirService, types: str | Sequence[str], params: str, limit: int = 100
) -> list[Found]:
    pages = [await run(service, types, params)]
    while "next" in pages[-1].links:
        assert len(pages) < limit, "paging does not end"
        pages.append(await follow(service, types, pages[-1].links["next"]))
    return pages


async def search_error(
    service: FhirService,
    types: str | Sequence[str],
    params: str | list[tuple[str, str]],
    ctx: RequestContext | None = None,
) -> FhirError:
    with pytest.raises(FhirError) as info:
        await run(service, types, params, ctx=ctx)
    return info.value


def assert_ids(found: Found, expected: Iterable[str], query: Any = "") -> None:
    """The matches are exactly ``expected`` (a set of ids, or "Type/id" keys), each once."""
    expected = set(expected)
    query = str(query) if len(str(query)) <= 120 else f"{str(query)[:100]}...({len(query)})"
    typed = any("/" in e for e in expected)
    got = found.matches if typed else found.ids
    assert len(got) == len(set(got)), f"{query}: duplicate matches {got}"
    assert set(got) == expected, (
        f"{query}: expected {sorted(expected)}, got {sorted(got)}; "
        f"missing {sorted(expected - set(got))}, unexpected {sorted(set(got) - expected)}"
    )


def case_id(query: str) -> str:
    return query.replace(" ", "_")


def cases(table: Iterable[tuple]) -> list:
    """Table rows ``(query, expected, *rest)`` -> pytest params with the query as the test id."""
    return [pytest.param(*row, id=case_id(row[0])) for row in table]


def has_subsetted_tag(resource: dict) -> bool:
    return any(
        tag.get("system") == SUBSETTED_SYSTEM and tag.get("code") == "SUBSETTED"
        for tag in (resource.get("meta") or {}).get("tag", ())
    )


# -- the harness itself ---------------------------------------------------------------------------

PEOPLE = [
    {"resourceType": "Patient", "id": "h1", "name": [{"family": "Harness"}]},
    {"resourceType": "Patient", "id": "h2", "name": [{"family": "Other"}]},
]


def test_query_table_syntax_keeps_plus_and_pipes():
    assert q("phone=+32 2&identifier=urn:x|1&_has:Observation:patient:code=a") == [
        ("phone", "+32 2"),
        ("identifier", "urn:x|1"),
        ("_has:Observation:patient:code", "a"),
    ]


async def test_searchset_bundle_shape(service: FhirService):
    await load(service, PEOPLE)
    found = await run(service, "Patient", "family=harness")
    assert found.matches == ["Patient/h1"]
    assert found.resource("Patient/h1")["name"][0]["family"] == "Harness"
    assert found.bundle["type"] == "searchset"
    assert found.links["self"].startswith(f"{BASE}/Patient?")
    assert ("family", "harness") in link_params(found.links["self"])
    assert found.total == 1  # a complete first page: the total is known
    assert found.issues == []


async def test_search_without_parameters_returns_every_resource_of_the_type(
    service: FhirService,
):
    await load(service, PEOPLE)
    found = await run(service, "Patient", "")
    assert_ids(found, {"h1", "h2"})


async def test_errors_are_fhir_errors(service: FhirService):
    error = await search_error(service, "Patient", "birthdate=not-a-date")
    assert error.status == 400
    assert error.issues and error.issues[0].severity in ("error", "fatal")
