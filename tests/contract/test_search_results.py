"""R4 search: result parameters (3.1.1.5) and paging, spec checklist.

_sort on several keys (``-`` for descending), ties broken the same way every time; _count and the
next / previous / first / self links: following them never repeats or skips a resource, even while
other clients create, update and delete resources between page fetches (every resource that
existed when the search began appears exactly once); _total; _summary (true, text, data, count,
false) and _elements, with subsetted resources tagged SUBSETTED; unknown parameters are ignored
and reported in an OperationOutcome entry (search.mode = outcome), unless the client asked for
strict handling, which gives a 400.
"""

from __future__ import annotations

import asyncio

import pytest

from fhir_server.service.core import FhirService
from tests.contract.test_search_harness import (
    all_pages,
    delete,
    follow,
    has_subsetted_tag,
    link_params,
    load,
    make_ctx,
    put,
    run,
    search_error,
)


def person(id_: str, family: str, given: str, birth: str | None = None, **extra) -> dict:
    resource = {
        "resourceType": "Patient",
        "id": id_,
        "name": [{"family": family, "given": [given]}],
        **extra,
    }
    if birth:
        resource["birthDate"] = birth
    return resource


SORTABLE = [
    person("s1", "Adams", "Zoe", "1990-01-01"),
    person("s2", "Brown", "Anna", "1985-05-05"),
    person("s3", "Adams", "Bob", "1970-07-07"),
    person("s4", "Clark", "Carl", "1990-01-01"),
    person("s5", "Brown", "Zed"),
    person("s6", "Davis", "Anna", "2000"),
]


@pytest.fixture
async def sortable(service: FhirService) -> FhirService:
    await load(service, SORTABLE)
    return service


# -- _sort ----------------------------------------------------------------------------------------

SORT_CASES = [
    ("_sort=family,given", ["s3", "s1", "s2", "s5", "s4", "s6"]),
    ("_sort=family,-given", ["s1", "s3", "s5", "s2", "s4", "s6"]),
    ("_sort=-family,given", ["s6", "s4", "s2", "s5", "s3", "s1"]),
    ("_sort=-family,-given", ["s6", "s4", "s5", "s2", "s1", "s3"]),
    ("_sort=given,family", ["s2", "s6", "s3", "s4", "s5", "s1"]),
    ("_sort=_id", ["s1", "s2", "s3", "s4", "s5", "s6"]),
    ("_sort=-_id", ["s6", "s5", "s4", "s3", "s2", "s1"]),
    ("_sort=birthdate,family&birthdate:missing=false", ["s3", "s2", "s1", "s4", "s6"]),
    ("_sort=-birthdate,family&birthdate:missing=false", ["s6", "s1", "s4", "s2", "s3"]),
    ("_sort=-birthdate,-family&birthdate:missing=false", ["s6", "s4", "s1", "s2", "s3"]),
    ("_sort=family,given&family=adams,brown", ["s3", "s1", "s2", "s5"]),
]


@pytest.mark.parametrize("query, expected", [pytest.param(*row, id=row[0]) for row in SORT_CASES])
async def test_sort(sortable: FhirService, query: str, expected: list[str]):
    assert (await run(sortable, "Patient", query)).ids == expected


@pytest.mark.parametrize(
    "query", ["_sort=family", "_sort=birthdate", "_sort=-given", "_sort=_lastUpdated", ""]
)
async def test_sort_ties_are_broken_the_same_way_on_every_page(sortable: FhirService, query):
    whole = (await run(sortable, "Patient", query)).ids
    assert sorted(whole) == ["s1", "s2", "s3", "s4", "s5", "s6"]
    assert (await run(sortable, "Patient", query)).ids == whole  # the same order again
    paged = [
        i for page in await all_pages(sortable, "Patient", f"{query}&_count=1") for i in page.ids
    ]
    assert paged == whole
    if query == "_sort=family":
        families = [next(p for p in SORTABLE if p["id"] == i)["name"][0]["family"] for i in whole]
        assert families == sorted(families)


async def test_sort_on_last_updated(service: FhirService):
    for id_ in ("u3", "u1", "u2"):
        await put(service, {"resourceType": "Patient", "id": id_})
        await asyncio.sleep(0.002)
    assert (await run(service, "Patient", "_sort=_lastUpdated")).ids == ["u3", "u1", "u2"]
    assert (await run(service, "Patient", "_sort=-_lastUpdated")).ids == ["u2", "u1", "u3"]
    await put(service, {"resourceType": "Patient", "id": "u3", "active": True})
    assert (await run(service, "Patient", "_sort=_lastUpdated")).ids == ["u1", "u2", "u3"]


async def test_sort_on_an_unknown_parameter_is_refused(sortable: FhirService):
    error = await search_error(
        sortable, "Patient", "_sort=nonsense", ctx=make_ctx(prefer_handling="strict")
    )
    assert error.status == 400


# -- _count and paging links ----------------------------------------------------------------------

MANY = [person(f"pg{i:02d}", "Page", f"Given{i:02d}", f"19{50 + i}-01-01") for i in range(25)]
ALL_IDS = sorted(p["id"] for p in MANY)


@pytest.fixture
async def many(service: FhirService) -> FhirService:
    await load(service, MANY)
    return service


@pytest.mark.parametrize(
    "query",
    [
        "_count=4",
        "_count=4&_sort=-given",
        "_count=7&_sort=birthdate",
        "_count=5&_sort=family,-birthdate",
        "_count=25",
        "_count=1",
    ],
)
async def test_paging_visits_every_match_once(many: FhirService, query: str):
    count = int(dict(link_params("?" + query))["_count"])
    pages = await all_pages(many, "Patient", query)
    seen = [i for page in pages for i in page.ids]
    assert len(seen) == len(set(seen)), "a resource was returned twice"
    assert sorted(seen) == ALL_IDS, "a resource was skipped"
    assert [len(p.ids) for p in pages[:-1]] == [count] * (len(pages) - 1)
    assert 1 <= len(pages[-1].ids) <= count
    assert "next" not in pages[-1].links
    rest = query.split("&", 1)[1] if "&" in query else ""
    single = (await run(many, "Patient", f"_count=100&{rest}")).ids
    assert seen == single, "paging changed the order"


async def test_paging_links(many: FhirService):
    first = await run(many, "Patient", "_count=10&_sort=given")
    assert set(first.links) >= {"self", "next"}
    assert "previous" not in first.links
    assert first.ids == [f"pg{i:02d}" for i in range(10)]
    for relation in ("self", "next"):
        params = dict(link_params(first.links[relation]))
        assert params["_count"] == "10" and params["_sort"] == "given"
    second = await follow(many, "Patient", first.links["next"])
    assert second.ids == [f"pg{i:02d}" for i in range(10, 20)]
    assert "previous" in second.links and "next" in second.links
    third = await follow(many, "Patient", second.links["next"])
    assert third.ids == [f"pg{i:02d}" for i in range(20, 25)]
    assert "next" not in third.links
    # previous walks back page by page, with the same page contents
    back = await follow(many, "Patient", third.links["previous"])
    assert back.ids == second.ids
    assert (await follow(many, "Patient", back.links["previous"])).ids == first.ids
    # first goes back to the start; self repeats the page
    assert (await follow(many, "Patient", third.links["first"])).ids == first.ids
    assert (await follow(many, "Patient", second.links["self"])).ids == second.ids


async def test_previous_links_from_the_last_page_reach_the_first(many: FhirService):
    forward = await all_pages(many, "Patient", "_count=3&_sort=-birthdate")
    backward = [forward[-1]]
    while "previous" in backward[-1].links:
        assert len(backward) <= len(forward)
        backward.append(await follow(many, "Patient", backward[-1].links["previous"]))
    assert [p.ids for p in reversed(backward)] == [p.ids for p in forward]


async def test_invalid_count_is_a_400(many: FhirService):
    for query in ("_count=abc", "_count=-1"):
        assert (await search_error(many, "Patient", query)).status == 400, query


@pytest.mark.parametrize(
    "query",
    [
        "_count=4&_sort=given",
        "_count=4",
        "_count=3&_sort=-birthdate",
        "_count=4&_sort=_lastUpdated",
        "_count=2&family=page",
    ],
)
async def test_paging_while_others_write(many: FhirService, query: str):
    """Every resource that existed when the search began appears exactly once, whatever is
    created, updated (even so that it sorts elsewhere) or deleted between page fetches."""
    page = await run(many, "Patient", query)
    seen = list(page.ids)
    deleted: set[str] = set()
    step = 0
    while "next" in page.links:
        step += 1
        unseen = [i for i in ALL_IDS if i not in seen and i not in deleted]
        if unseen:
            # move an unseen resource to the front of the order, and one already seen to the end
            front = next(p for p in MANY if p["id"] == unseen[-1])
            await put(
                many,
                {
                    **front,
                    "name": [{"family": "Page", "given": ["Aaa"]}],
                    "birthDate": "2020-01-01",
                },
            )
            if len(unseen) > 2:
                await delete(many, "Patient", unseen[0])
                deleted.add(unseen[0])
        if seen and seen[0] not in deleted:
            back = next(p for p in MANY if p["id"] == seen[0])
            await put(
                many,
                {**back, "name": [{"family": "Page", "given": ["Zzz"]}], "birthDate": "1900-01-01"},
            )
        await put(many, person(f"new{step}", "Page", "Given00a", "1975-06-01"))
        page = await follow(many, "Patient", page.links["next"])
        seen.extend(page.ids)
        assert step < 40
    originals = [i for i in seen if not i.startswith("new")]
    assert len(originals) == len(set(originals)), "a resource was returned twice"
    assert sorted(originals) == ALL_IDS, f"skipped {sorted(set(ALL_IDS) - set(originals))}"


async def test_include_follows_paging(many: FhirService):
    await load(
        many,
        [
            {
                "resourceType": "Observation",
                "id": f"ob{i}",
                "status": "final",
                "code": {"text": "x"},
                "subject": {"reference": f"Patient/pg{i:02d}"},
            }
            for i in range(5)
        ],
    )
    pages = await all_pages(many, "Observation", "_count=2&_sort=_id&_include=Observation:subject")
    assert [p.ids for p in pages] == [["ob0", "ob1"], ["ob2", "ob3"], ["ob4"]]
    assert [sorted(p.included) for p in pages] == [
        ["Patient/pg00", "Patient/pg01"],
        ["Patient/pg02", "Patient/pg03"],
        ["Patient/pg04"],
    ]


# -- _total ---------------------------------------------------------------------------------------


async def test_total_accurate_on_every_page(many: FhirService):
    pages = await all_pages(many, "Patient", "_count=10&_total=accurate")
    assert [p.total for p in pages] == [25, 25, 25]
    filtered = await run(many, "Patient", "_count=2&_total=accurate&birthdate=lt1960")
    assert filtered.total == 10 and len(filtered.ids) == 2


async def test_total_none_and_estimate(many: FhirService):
    none = await run(many, "Patient", "_count=10&_total=none")
    assert none.total in (None, 25)  # not needed; but if given, it must be right
    estimate = await run(many, "Patient", "_count=10&_total=estimate")
    assert estimate.total is None or (isinstance(estimate.total, int) and estimate.total >= 0)
    default = await run(many, "Patient", "_count=10")
    assert default.total in (None, 25)
    complete = await run(many, "Patient", "_count=50&birthdate=lt1955")
    assert complete.total in (None, 5)


async def test_total_value_is_checked(many: FhirService):
    assert (await search_error(many, "Patient", "_total=maybe")).status == 400


# -- _summary and _elements -----------------------------------------------------------------------

RICH = {
    "resourceType": "Patient",
    "id": "rich",
    "text": {"status": "generated", "div": '<div xmlns="http://www.w3.org/1999/xhtml">Eve</div>'},
    "active": True,
    "name": [{"family": "Rich", "given": ["Eve"]}],
    "gender": "female",
    "birthDate": "1980-01-01",
    "address": [{"city": "Gent"}],
    "maritalStatus": {"text": "married"},
    "photo": [{"contentType": "image/png", "url": "http://example.org/eve.png"}],
    "contact": [{"name": {"family": "Rich", "given": ["Adam"]}}],
    "communication": [{"language": {"text": "Dutch"}}],
}


@pytest.fixture
async def rich(service: FhirService) -> FhirService:
    await load(service, [RICH, person("plain", "Plain", "Joe")])
    return service


SUMMARY_CASES = [
    # (query, keys that must be there, keys that must not)
    (
        "_summary=true",
        {"name", "gender", "birthDate", "active", "address"},
        {"text", "photo", "contact", "communication", "maritalStatus"},
    ),
    ("_summary=text", {"text"}, {"name", "gender", "birthDate", "photo", "contact", "address"}),
    (
        "_summary=data",
        {"name", "gender", "photo", "contact", "communication", "maritalStatus"},
        {"text"},
    ),
    (
        "_elements=name,birthDate",
        {"name", "birthDate"},
        {"gender", "address", "photo", "contact", "text", "maritalStatus"},
    ),
    ("_elements=photo", {"photo"}, {"name", "gender", "birthDate", "contact", "text"}),
]


@pytest.mark.parametrize(
    "query, present, absent", [pytest.param(*row, id=row[0]) for row in SUMMARY_CASES]
)
async def test_summary_and_elements(rich: FhirService, query: str, present: set, absent: set):
    found = await run(rich, "Patient", f"_id=rich&{query}")
    resource = found.resource("Patient/rich")
    assert resource["resourceType"] == "Patient" and resource["id"] == "rich"
    assert resource["meta"]["versionId"] == "1"
    assert present <= set(resource), f"{query}: missing {present - set(resource)}"
    assert not absent & set(resource), f"{query}: should not have {absent & set(resource)}"
    assert has_subsetted_tag(resource), f"{query}: not tagged SUBSETTED"


async def test_elements_and_summary_on_choice_elements(service: FhirService):
    await load(
        service,
        [
            {
                "resourceType": "Observation",
                "id": "ob",
                "status": "final",
                "code": {"text": "x"},
                "subject": {"reference": "Patient/x"},
                "note": [{"text": "a note"}],
                "valueQuantity": {"value": 1, "unit": "kg"},
                "effectiveDateTime": "2024-01-01",
            }
        ],
    )
    elements = (await run(service, "Observation", "_elements=value")).resource("Observation/ob")
    assert "valueQuantity" in elements  # value[x] is asked for as "value"
    assert not {"subject", "note", "effectiveDateTime"} & set(elements)
    assert {"status", "code"} <= set(elements)  # mandatory elements are always returned
    assert has_subsetted_tag(elements)
    summary = (await run(service, "Observation", "_summary=true")).resource("Observation/ob")
    assert {"status", "code", "subject", "valueQuantity", "effectiveDateTime"} <= set(summary)
    assert "note" not in summary and has_subsetted_tag(summary)


@pytest.mark.parametrize("query", ["", "_summary=false"])
async def test_full_resources_are_not_tagged(rich: FhirService, query: str):
    resource = (await run(rich, "Patient", f"_id=rich&{query}")).resource("Patient/rich")
    assert set(RICH) <= set(resource)
    assert not has_subsetted_tag(resource)


async def test_summary_count(rich: FhirService):
    found = await run(rich, "Patient", "_summary=count")
    assert found.total == 2
    assert found.matches == [] and found.included == []
    one = await run(rich, "Patient", "_summary=count&family=rich")
    assert one.total == 1 and one.matches == []


async def test_summary_value_is_checked(rich: FhirService):
    assert (await search_error(rich, "Patient", "_summary=everything")).status == 400


# -- unknown parameters: lenient (default) and strict handling ------------------------------------


@pytest.mark.parametrize(
    "query, expected",
    [
        ("foo=bar", {"s1", "s2", "s3", "s4", "s5", "s6"}),
        ("family=adams&foo=bar", {"s1", "s3"}),
        ("code=1234-5", {"s1", "s2", "s3", "s4", "s5", "s6"}),  # an Observation parameter
        ("family=adams&_nonsense=1", {"s1", "s3"}),
    ],
)
async def test_unknown_parameters_are_ignored_and_reported(
    sortable: FhirService, query: str, expected: set[str]
):
    found = await run(sortable, "Patient", query)
    assert set(found.ids) == expected
    assert found.issues, "no OperationOutcome entry (search.mode = outcome)"
    assert all(issue["severity"] in ("warning", "information") for issue in found.issues)
    unknown = query.split("&")[-1].split("=")[0]
    assert any(unknown in issue.get("diagnostics", "") for issue in found.issues)
    # the self link shows the parameters that were used, not the ignored one
    assert unknown not in dict(link_params(found.links["self"]))


@pytest.mark.parametrize("query", ["foo=bar", "family=adams&foo=bar", "code=1234-5"])
async def test_unknown_parameters_with_strict_handling_are_a_400(sortable: FhirService, query):
    error = await search_error(sortable, "Patient", query, ctx=make_ctx(prefer_handling="strict"))
    assert error.status == 400


async def test_known_parameters_give_no_outcome_entry(sortable: FhirService):
    found = await run(sortable, "Patient", "family=adams")
    assert found.issues == []


async def test_unknown_modifier_is_a_400(sortable: FhirService):
    error = await search_error(sortable, "Patient", "family:sideways=adams")
    assert error.status == 400
