"""The subject's data a pathway is applied to, read with the caller's permissions.

Every read goes through the guard with the caller's ``RequestContext`` (``svc.authorize`` and
``search.restrict``), so a condition can only see what the caller may see: a Role B user's
``%flaggedIndicators`` never contains a restricted indicator, and a professional without a care
relationship gets nothing (the Patient read answers 404).

Only the variables a definition's expressions use are loaded (a plan about indicators does not
search for due dates). Where the anchor dates come from (docs/pathways.md, "Anchor dates"):

- loss events: Conditions whose ``code`` and EpisodeOfCares whose ``type`` is a
  bib-pregnancy-loss-scenario code; the date is the onset (or recordedDate) / period start;
- due date: the newest Observation LOINC 11778-8, 11779-6 or 11780-4 (value dateTime);
- birth date: the newest Procedure SNOMED CT 236973005 (delivery procedure) performed date or
  Observation LOINC 93857-1 (date and time of obstetric delivery);
- gestational age: from the due date, else from the newest Observation LOINC 11884-4 / 49051-6 /
  18185-9 projected to today;
- indicators: Observations coded with bib-vulnerability-indicator (the shape the screening
  extraction writes; ``flagged`` below);
- scores: the newest EPDS (99046-5), PHQ-9 (44261-6) and GAD-7 (70274-6) totals;
- severity: the newest Observation whose value is a bib-pmh-severity code, else the first rule
  of ``mappings/pmh-severity-rules.json`` that matches the scores.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date
from functools import cache
from importlib import resources
from typing import Any

from fhir_server import fhirpath
from fhir_server.errors import FhirError
from fhir_server.json_codec import loads_trusted
from fhir_server.pathways.definitions import INDICATOR, LOSS_SCENARIO, PMH_SEVERITY
from fhir_server.pathways.timing import parse_date
from fhir_server.service.context import RequestContext
from fhir_server.service.core import Access, FhirService
from fhir_server.service.search import restrict
from fhir_server.store.protocol import UnitOfWork

LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
DUE_DATE_CODES = ("11778-8", "11779-6", "11780-4")
DELIVERY_OBSERVATION = "93857-1"
DELIVERY_PROCEDURE = "236973005"
GESTATIONAL_AGE_CODES = ("11884-4", "49051-6", "18185-9")
SCORE_CODES = {"99046-5": "EPDS", "44261-6": "PHQ-9", "70274-6": "GAD-7"}
INTERPRETATION = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
FLAGGED_INTERPRETATIONS = frozenset({"POS", "A", "AA", "H", "HH"})
UNFLAGGED_INTERPRETATIONS = frozenset({"NEG", "N"})
IGNORED_STATUSES = frozenset({"entered-in-error", "cancelled"})
MAX_ROWS = 200

# which data each variable needs
NEEDS: dict[str, tuple[str, ...]] = {
    "lossEvents": ("loss",),
    "dueDate": ("due",),
    "gestationalAgeWeeks": ("due", "ga"),
    "birthDate": ("birth",),
    "indicators": ("indicators",),
    "flaggedIndicators": ("indicators",),
    "scores": ("scores",),
    "severity": ("scores", "severity"),
    "severityBasis": ("scores", "severity"),
    "conditions": ("conditions",),
    "careTeams": ("careTeams",),
    "relatedPersons": ("relatedPersons",),
}


@cache
def severity_rules() -> list[dict[str, Any]]:
    raw = (resources.files("fhir_server.content.mappings") / "pmh-severity-rules.json").read_bytes()
    rules = json.loads(raw)["rules"]
    for rule in rules:
        fhirpath.check(rule["expression"], strict=False)
    return rules


async def find(
    svc: FhirService,
    ctx: RequestContext,
    type_: str,
    params: list[tuple[str, str]],
    uow: UnitOfWork | None = None,
    limit: int = MAX_ROWS,
) -> list[dict[str, Any]]:
    """The resources of one search, as the caller may see them (guard filters applied)."""
    await svc.authorize(ctx, Access("search-type", type_))
    parsed = svc.parser.parse((type_,), [*params, ("_count", str(limit))], strict=True)
    await restrict(svc, ctx, parsed.query)
    if uow is not None:
        out = []
        for key in await uow.search_ids(parsed.query, limit=limit):
            version = await uow.current(*key)
            if version is not None and version.body is not None and not version.deleted:
                out.append(loads_trusted(version.body))
        return out
    page = await svc.store.search(parsed.query)
    return [loads_trusted(hit.body) for hit in page.hits]


def _effective(resource: dict[str, Any]) -> str:
    for key in ("effectiveDateTime", "effectiveInstant", "issued", "performedDateTime"):
        value = resource.get(key)
        if isinstance(value, str):
            return value
    for key in ("effectivePeriod", "performedPeriod"):
        value = resource.get(key)
        if isinstance(value, dict) and isinstance(value.get("start"), str):
            return value["start"]
    return str((resource.get("meta") or {}).get("lastUpdated", ""))


def _newest(resources_: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(resources_, key=_effective, reverse=True)


def _codes(concept: Any, system: str) -> list[str]:
    if not isinstance(concept, dict):
        return []
    return [
        c["code"]
        for c in concept.get("coding", ()) or ()
        if isinstance(c, dict) and c.get("system") == system and isinstance(c.get("code"), str)
    ]


def _live(resource: dict[str, Any]) -> bool:
    return resource.get("status") not in IGNORED_STATUSES


def flagged(observation: dict[str, Any]) -> bool | None:
    """Whether an indicator Observation says the indicator is present (docs/pathways.md): a
    ``valueBoolean``, else a component coded ``flagged`` with a boolean, else an interpretation
    (POS, A, AA, H, HH: flagged; NEG, N: not)."""
    value = observation.get("valueBoolean")
    if isinstance(value, bool):
        return value
    for component in observation.get("component", ()) or ():
        codes = [c.get("code") for c in (component.get("code") or {}).get("coding", ()) or ()]
        if "flagged" in codes and isinstance(component.get("valueBoolean"), bool):
            return component["valueBoolean"]
    for concept in observation.get("interpretation", ()) or ():
        for code in _codes(concept, INTERPRETATION):
            if code in FLAGGED_INTERPRETATIONS:
                return True
            if code in UNFLAGGED_INTERPRETATIONS:
                return False
    return None


def _number(observation: dict[str, Any]) -> float | int | None:
    for key in ("valueInteger", "valueDecimal"):
        value = observation.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return value
    quantity = observation.get("valueQuantity")
    if isinstance(quantity, dict) and isinstance(quantity.get("value"), (int, float)):
        return quantity["value"]
    return None


def _ref(resource: dict[str, Any]) -> str:
    return f"{resource['resourceType']}/{resource.get('id')}"


@dataclass(slots=True)
class SubjectData:
    patient: dict[str, Any]
    today: date
    variables: dict[str, Any] = field(default_factory=dict)
    evidence: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # type -> resources

    @property
    def reference(self) -> str:
        return f"Patient/{self.patient['id']}"


async def load(
    svc: FhirService,
    ctx: RequestContext,
    patient: dict[str, Any],
    wanted: set[str],
    today: date,
    params: dict[str, Any],
    uow: UnitOfWork | None = None,
    extra: list[dict[str, Any]] | None = None,
) -> SubjectData:
    """Prepare the variables in ``wanted`` (plus the always-present ones) for ``patient``.

    ``params`` holds the operation's inputs (encounter, practitioner, dueDate...); ``extra`` are
    resources being written in the same unit of work (a loss Condition that triggers a pathway).
    """
    data = SubjectData(patient, today)
    v = data.variables
    v["patient"] = patient
    v["subject"] = patient
    v["today"] = today.isoformat()
    for name in (
        "encounter",
        "practitioner",
        "organization",
        "userType",
        "userLanguage",
        "userTaskContext",
        "setting",
        "settingContext",
        "lossDate",
    ):
        value = params.get(name)
        v[name] = [] if value is None else value
    needs = {need for name in wanted for need in NEEDS.get(name, ())}
    pid = patient["id"]
    patient_param = ("patient", f"Patient/{pid}")
    extra = extra or []

    async def search(type_: str, params_: list[tuple[str, str]]) -> list[dict[str, Any]]:
        found = await find(svc, ctx, type_, [patient_param, *params_], uow)
        seen = {_ref(r) for r in found}
        for resource in extra:
            if resource.get("resourceType") == type_ and _ref(resource) not in seen:
                found.append(resource)
        return found

    if "loss" in needs or "conditions" in needs:
        conditions = [r for r in await search("Condition", []) if _live(r)]
        if "conditions" in needs:
            v["conditions"] = conditions
        if "loss" in needs:
            episodes = [
                r
                for r in await search("EpisodeOfCare", [("type", LOSS_SCENARIO + "|")])
                if _live(r)
            ]
            events = []
            for condition in conditions:
                for code in _codes(condition.get("code"), LOSS_SCENARIO):
                    onset = (
                        condition.get("onsetDateTime")
                        or (condition.get("onsetPeriod") or {}).get("start")
                        or condition.get("recordedDate")
                    )
                    status = _codes(
                        condition.get("verificationStatus"),
                        "http://terminology.hl7.org/CodeSystem/condition-ver-status",
                    )
                    events.append(
                        {
                            "scenario": code,
                            "date": (parse_date(onset) or today).isoformat() if onset else None,
                            "reference": _ref(condition),
                            "status": status[0] if status else None,
                            "resource": condition,
                        }
                    )
            for episode in episodes:
                for concept in episode.get("type", ()) or ():
                    for code in _codes(concept, LOSS_SCENARIO):
                        start = (episode.get("period") or {}).get("start")
                        events.append(
                            {
                                "scenario": code,
                                "date": parse_date(start).isoformat()
                                if parse_date(start)
                                else None,
                                "reference": _ref(episode),
                                "status": episode.get("status"),
                                "resource": episode,
                            }
                        )
            events.sort(key=lambda e: e["date"] or "", reverse=True)
            v["lossEvents"] = [
                {k: e[k] for k in ("scenario", "date", "reference", "status") if e[k] is not None}
                for e in events
            ]
            data.evidence["loss"] = [e["resource"] for e in events]
    due: date | None = parse_date(params.get("dueDate"))
    if "due" in needs:
        if due is None:
            found = _newest(
                [
                    r
                    for r in await search(
                        "Observation", [("code", ",".join(f"{LOINC}|{c}" for c in DUE_DATE_CODES))]
                    )
                    if _live(r)
                ]
            )
            for observation in found:
                due = parse_date(observation.get("valueDateTime"))
                if due is not None:
                    data.evidence.setdefault("due", []).append(observation)
                    break
        v["dueDate"] = due.isoformat() if due else []
    if "ga" in needs:
        weeks: int | None = None
        if due is not None:
            weeks = (280 - (due - today).days) // 7
        else:
            found = _newest(
                [
                    r
                    for r in await search(
                        "Observation",
                        [("code", ",".join(f"{LOINC}|{c}" for c in GESTATIONAL_AGE_CODES))],
                    )
                    if _live(r)
                ]
            )
            for observation in found:
                quantity = observation.get("valueQuantity") or {}
                value = quantity.get("value")
                unit = quantity.get("code") or quantity.get("unit")
                measured = parse_date(_effective(observation)) or today
                if isinstance(value, (int, float)) and unit in ("wk", "d"):
                    days = value * 7 if unit == "wk" else value
                    weeks = int((days + (today - measured).days) // 7)
                    break
        v["gestationalAgeWeeks"] = weeks if weeks is not None else []
    if "birth" in needs:
        birth = parse_date(params.get("birthDate"))
        if birth is None:
            candidates = [
                r
                for r in await search("Procedure", [("code", f"{SNOMED}|{DELIVERY_PROCEDURE}")])
                if r.get("status") == "completed"
            ]
            candidates += [
                r
                for r in await search("Observation", [("code", f"{LOINC}|{DELIVERY_OBSERVATION}")])
                if _live(r)
            ]
            for resource in _newest(candidates):
                value = (
                    resource.get("valueDateTime")
                    if resource["resourceType"] == "Observation"
                    else _effective(resource)
                )
                birth = parse_date(value)
                if birth is not None:
                    data.evidence.setdefault("birth", []).append(resource)
                    break
        v["birthDate"] = birth.isoformat() if birth else []
    if "indicators" in needs:
        latest: dict[str, dict[str, Any]] = {}
        for observation in _newest(
            [r for r in await search("Observation", [("code", INDICATOR + "|")]) if _live(r)]
        ):
            for code in _codes(observation.get("code"), INDICATOR):
                latest.setdefault(code, observation)
        v["indicators"] = list(latest.values())
        v["flaggedIndicators"] = sorted(c for c, o in latest.items() if flagged(o))
        data.evidence["indicators"] = list(latest.values())
    if "scores" in needs:
        scores: dict[str, dict[str, Any]] = {}
        found = await search(
            "Observation", [("code", ",".join(f"{LOINC}|{c}" for c in SCORE_CODES))]
        )
        for observation in _newest([r for r in found if _live(r)]):
            value = _number(observation)
            if value is None:
                continue
            for code in _codes(observation.get("code"), LOINC):
                if code in SCORE_CODES and code not in scores:
                    scores[code] = {
                        "code": code,
                        "instrument": SCORE_CODES[code],
                        "value": value,
                        "date": _effective(observation)[:10],
                        "reference": _ref(observation),
                        "resource": observation,
                    }
        v["scores"] = [{k: s[k] for k in s if k != "resource"} for s in scores.values()]
        data.evidence["scores"] = [s["resource"] for s in scores.values()]
    if "severity" in needs:
        severity = None
        basis = None
        assessed = _newest(
            [
                r
                for r in await search("Observation", [("value-concept", PMH_SEVERITY + "|")])
                if _live(r)
            ]
        )
        for observation in assessed:
            codes = _codes(observation.get("valueCodeableConcept"), PMH_SEVERITY)
            if codes:
                severity, basis = codes[0], "assessment"
                data.evidence["severity"] = [observation]
                break
        if severity is None:
            for rule in severity_rules():
                try:
                    result = fhirpath.evaluate(rule["expression"], patient, v, strict=False)
                except fhirpath.FhirPathError as exc:  # a broken rule file is a server error
                    raise FhirError(500, "exception", "the severity rules failed") from exc
                if result == [True]:
                    severity, basis = rule["severity"], "scores"
                    break
        v["severity"] = severity if severity is not None else []
        v["severityBasis"] = basis if basis is not None else []
    if "careTeams" in needs:
        v["careTeams"] = await search("CareTeam", [("status", "active")])
    if "relatedPersons" in needs:
        v["relatedPersons"] = await search("RelatedPerson", [])
    for name in (
        "lossEvents",
        "dueDate",
        "gestationalAgeWeeks",
        "birthDate",
        "indicators",
        "flaggedIndicators",
        "scores",
        "severity",
        "severityBasis",
        "conditions",
        "careTeams",
        "relatedPersons",
    ):
        v.setdefault(name, [])
    return data
