""" "Was the guidance realised?": the programme's evaluation as a MeasureReport, computed on the
server (docs/referrals.md "Evaluation").

``GET|POST Measure/bib-referral-outcomes/$evaluate-measure?periodStart=..&periodEnd=..`` (or
``Measure/$evaluate-measure?measure=<canonical>``) evaluates a referral Measure shipped in
``content/referrals/``: its populations and stratifiers are FHIRPath expressions (data) over
``%task`` (the referral Task), ``%request`` (its ServiceRequest), ``%careZone`` (the care zone
of the woman's home address, ``mappings/referral-care-zones.json``) and ``%month``. The report
is a summary: counts and proportions only, no patient, no reference to one; a count below
``FHIR_REPORT_MIN_CELL`` (default 5) is masked (``data-absent-reason`` ``masked``), so small
groups cannot be singled out. Administrators run it (the programme's data managers): it reads
every referral, which no professional may.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import orjson

from fhir_server.errors import FhirError, bad_request, not_found
from fhir_server.fhirpath import FhirPathError, evaluate
from fhir_server.json_codec import loads_trusted
from fhir_server.referrals.parties import ref_of
from fhir_server.referrals.rules import workflow
from fhir_server.search.dates import date_range, format_instant
from fhir_server.service.context import RequestContext
from fhir_server.service.core import Access, FhirService
from fhir_server.service.result import Result
from fhir_server.service.versioning import new_id, now_us
from fhir_server.store.query import Query, UriPred
from fhir_server.terminology.operations import OperationParams

PARAMS = {
    "periodStart": "dateTime",
    "periodEnd": "dateTime",
    "measure": "uri",
    "reportType": "code",
}
MEASURE_URL = "https://borninbelgiumpro.be/fhir/Measure/bib-referral-outcomes"
DEFINITION = "https://borninbelgiumpro.be/fhir/OperationDefinition/bib-referral-evaluate-measure"
ABSENT = "http://hl7.org/fhir/StructureDefinition/data-absent-reason"
POPULATIONS = ("initial-population", "denominator", "numerator")


@cache
def care_zones() -> tuple[dict[str, dict[str, str]], list[dict[str, Any]], str, dict[str, str]]:
    folder = resources.files("fhir_server.content.mappings")
    table = orjson.loads((folder / "referral-care-zones.json").read_bytes())
    concept_map = orjson.loads((folder / table["conceptMap"]).read_bytes())
    zones: dict[str, str] = {}
    for group in concept_map.get("group", ()):
        for element in group.get("element", ()):
            for target in element.get("target", ()):
                if str(target.get("code", "")).startswith("zorgzone-"):
                    zones.setdefault(element["code"], target["code"])
    return table["postalCodes"], table["ranges"], table["unknown"], zones


def care_zone(patient: dict[str, Any] | None) -> str:
    postal, ranges, unknown, zones = care_zones()
    addresses = (patient or {}).get("address") or []
    home = [a for a in addresses if isinstance(a, dict) and a.get("use") == "home"] or [
        a for a in addresses if isinstance(a, dict)
    ]
    for address in home:
        code = str(address.get("postalCode") or "").strip()
        if address.get("country") not in (None, "BE", "Belgium", "België", "Belgique"):
            continue
        entry = postal.get(code)
        if entry is not None:
            return entry.get("zone") or zones.get(entry.get("nis", ""), unknown)
        if code.isdigit():
            number = int(code)
            for item in ranges:
                if item["from"] <= number <= item["to"]:
                    return item["zone"]
    return unknown


@dataclass(slots=True)
class Referral:
    variables: dict[str, Any]


class Report:
    def __init__(self, svc: FhirService) -> None:
        self.svc = svc
        self.rules = workflow()

    async def operation(
        self, svc: FhirService, ctx: RequestContext, request: Any, target: dict[str, Any]
    ) -> Result:
        if target.get("type") != "Measure":
            raise FhirError(404, "not-supported", "$evaluate-measure is an operation on Measure")
        await svc.authorize(
            ctx, Access("operation", "Measure", target.get("id"), operation="evaluate-measure")
        )
        principal = ctx.principal
        if principal is not None and not getattr(principal, "admin", False):
            raise FhirError(
                403,
                "forbidden",
                "the programme's evaluation reads every referral: it is run by an administrator "
                "(a data manager), and only counts leave the server",
            )
        params = await OperationParams.read(svc, request, "evaluate-measure", PARAMS)
        measure = await self._measure(target.get("id"), params.get("measure"))
        report_type = params.get("reportType") or "summary"
        if report_type not in ("summary", "population"):
            raise bad_request("this server evaluates referral measures as summary reports only")
        start = _bound(params.get("periodStart"), 0, "periodStart")
        end = _bound(params.get("periodEnd"), 1, "periodEnd")
        if start is not None and end is not None and end < start:
            raise bad_request("periodEnd is before periodStart")
        referrals = await self._referrals(start, end)
        report = self._evaluate(measure, referrals, params)
        return Result(200, resource=report)

    async def _measure(self, id_: str | None, url: str | None) -> dict[str, Any]:
        store = self.svc.store
        if id_:
            current = await store.current("Measure", id_)
            if current is None or current.deleted or current.body is None:
                raise not_found(f"Measure/{id_} is not known")
            return loads_trusted(current.body)
        if not url:
            raise bad_request("name the Measure: Measure/[id]/$evaluate-measure or measure=url")
        page = await store.search(Query(("Measure",), where=[(UriPred("url", "eq", url),)]))
        if not page.hits:
            raise not_found(f"no Measure with url {url}")
        return loads_trusted(page.hits[0].body)

    async def _referrals(self, start: int | None, end: int | None) -> list[Referral]:
        svc, rules = self.svc, self.rules
        base = svc.settings.public_url
        tasks: list[dict[str, Any]] = []
        after = None
        while True:
            versions, after = await svc.store.current_versions(("Task",), after, 1000)
            for version in versions:
                if version.body is None:
                    continue
                task = loads_trusted(version.body)
                focus = ref_of(task.get("focus"), base)
                if not focus or focus.partition("/")[0] not in rules.focus_types:
                    continue
                when = task.get("authoredOn") or (task.get("meta") or {}).get("lastUpdated")
                bounds = date_range(when) if isinstance(when, str) else None
                if bounds is None:
                    continue
                if start is not None and bounds[1] < start:
                    continue
                if end is not None and bounds[0] > end:
                    continue
                task["_sent"] = when
                tasks.append(task)
            if after is None:
                break
        requests = await self._read([ref_of(t.get("focus"), base) for t in tasks])
        patients = await self._read([ref_of(t.get("for"), base) for t in tasks])
        out = []
        for task in tasks:
            when = str(task.pop("_sent"))
            request = requests.get(ref_of(task.get("focus"), base) or "") or {}
            patient = patients.get(ref_of(task.get("for"), base) or "")
            out.append(
                Referral(
                    {
                        "task": task,
                        "request": request,
                        "careZone": care_zone(patient),
                        "month": when[:7],
                    }
                )
            )
        return out

    async def _read(self, refs: list[str | None]) -> dict[str, dict[str, Any]]:
        keys = sorted({tuple(r.split("/", 1)) for r in refs if r and "/" in r})
        found: dict[str, dict[str, Any]] = {}
        for start in range(0, len(keys), 500):
            chunk = [(k[0], k[1]) for k in keys[start : start + 500]]
            for version in await self.svc.store.read_many(chunk, None):
                if version.body is not None:
                    found[f"{version.type}/{version.id}"] = loads_trusted(version.body)
        return found

    def _evaluate(
        self, measure: dict[str, Any], referrals: list[Referral], params: OperationParams
    ) -> dict[str, Any]:
        min_cell = self.svc.settings.report_min_cell
        groups_out = []
        for group in measure.get("group", ()) or ():
            populations = _populations(group)
            memberships = [
                {code: _true(expr, r.variables) for code, expr in populations.items()}
                for r in referrals
            ]
            # a denominator or numerator is within the initial population
            for member in memberships:
                for code in ("denominator", "numerator"):
                    if code in member and not member.get("initial-population", True):
                        member[code] = False
                if "numerator" in member and not member.get("denominator", True):
                    member["numerator"] = False
            group_out: dict[str, Any] = {
                "population": _population_counts(populations, memberships, min_cell)
            }
            score = _score(populations, memberships, min_cell)
            if score is not None:
                group_out["measureScore"] = {"value": score}
            stratifiers = []
            for stratifier in group.get("stratifier", ()) or ():
                stratifiers.append(
                    _stratify(stratifier, referrals, memberships, populations, min_cell)
                )
            if stratifiers:
                group_out["stratifier"] = stratifiers
            groups_out.append(group_out)
        period: dict[str, str] = {}
        if params.get("periodStart"):
            period["start"] = params.get("periodStart")
        if params.get("periodEnd"):
            period["end"] = params.get("periodEnd")
        if not period:
            period = {"end": format_instant(now_us())}
        report: dict[str, Any] = {
            "resourceType": "MeasureReport",
            "id": new_id(),
            "status": "complete",
            "type": "summary",
            "measure": measure.get("url", MEASURE_URL)
            + (f"|{measure['version']}" if measure.get("version") else ""),
            "date": format_instant(now_us()),
            "period": period,
            "group": groups_out,
        }
        if measure.get("improvementNotation"):
            report["improvementNotation"] = measure["improvementNotation"]
        return report


def _bound(value: Any, index: int, name: str) -> int | None:
    if value is None:
        return None
    bounds = date_range(str(value))
    if bounds is None:
        raise bad_request(f"{name} must be a date or dateTime, got {value!r}")
    return bounds[index]


def _populations(group: dict[str, Any]) -> dict[str, str]:
    out = {}
    for population in group.get("population", ()) or ():
        codes = ((population.get("code") or {}).get("coding") or [{}])[0].get("code")
        expression = (population.get("criteria") or {}).get("expression")
        if codes in POPULATIONS and isinstance(expression, str):
            out[codes] = expression
    return out


def _true(expression: str, variables: dict[str, Any]) -> bool:
    try:
        return evaluate(expression, variables["task"], variables) == [True]
    except FhirPathError as exc:
        raise FhirError(
            422, "processing", f"the Measure's expression {expression!r} failed: {exc}"
        ) from None


def _value(expression: str, variables: dict[str, Any]) -> str:
    try:
        values = evaluate(expression, variables["task"], variables)
    except FhirPathError as exc:
        raise FhirError(
            422, "processing", f"the Measure's expression {expression!r} failed: {exc}"
        ) from None
    return str(values[0]) if values and values[0] is not None else "unknown"


def _count(count: int, min_cell: int) -> dict[str, Any]:
    if 0 < count < min_cell:
        return {"extension": [{"url": ABSENT, "valueCode": "masked"}]}
    return {"count": count}


def _population_counts(
    populations: dict[str, str], memberships: list[dict[str, bool]], min_cell: int
) -> list[dict[str, Any]]:
    out = []
    for code in populations:
        count = sum(1 for m in memberships if m.get(code))
        item = {
            "code": {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/measure-population",
                        "code": code,
                    }
                ]
            }
        }
        item.update(_count(count, min_cell))
        out.append(item)
    return out


def _score(
    populations: dict[str, str], memberships: list[dict[str, bool]], min_cell: int
) -> float | None:
    if "denominator" not in populations or "numerator" not in populations:
        return None
    denominator = sum(1 for m in memberships if m.get("denominator"))
    numerator = sum(1 for m in memberships if m.get("numerator"))
    if denominator == 0 or 0 < denominator < min_cell or 0 < numerator < min_cell:
        return None
    return round(numerator / denominator, 4)


def _stratify(
    stratifier: dict[str, Any],
    referrals: list[Referral],
    memberships: list[dict[str, bool]],
    populations: dict[str, str],
    min_cell: int,
) -> dict[str, Any]:
    components = stratifier.get("component") or []
    keys: list[tuple[str, ...]] = []
    for referral in referrals:
        if components:
            keys.append(
                tuple(
                    _value((c.get("criteria") or {}).get("expression", ""), referral.variables)
                    for c in components
                )
            )
        else:
            expression = (stratifier.get("criteria") or {}).get("expression", "")
            keys.append((_value(expression, referral.variables),))
    strata: dict[tuple[str, ...], list[dict[str, bool]]] = {}
    for key, member in zip(keys, memberships, strict=True):
        if member.get("initial-population", True):
            strata.setdefault(key, []).append(member)
    out_strata = []
    for key in sorted(strata):
        members = strata[key]
        stratum: dict[str, Any] = {}
        if components:
            stratum["component"] = [
                {"code": c.get("code") or {"text": "component"}, "value": {"text": value}}
                for c, value in zip(components, key, strict=True)
            ]
        else:
            stratum["value"] = {"text": key[0]}
        stratum["population"] = _population_counts(populations, members, min_cell)
        score = _score(populations, members, min_cell)
        if score is not None:
            stratum["measureScore"] = {"value": score}
        out_strata.append(stratum)
    result: dict[str, Any] = {"stratum": out_strata}
    if stratifier.get("code"):
        result["code"] = [stratifier["code"]]
    elif components:  # R4 mea-1: a stratifier of components has no code of its own
        names = [_code_name(c.get("code") or {}) for c in components]
        result["code"] = [{"text": ", ".join(names)}]
    return result


def _code_name(code: dict[str, Any]) -> str:
    codings = code.get("coding") or [{}]
    return str(codings[0].get("code") or code.get("text") or "component")
