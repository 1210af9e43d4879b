"""The terminology operations on a Catalog, without HTTP: $expand, $validate-code, $lookup,
$subsumes and $translate (FHIR R4 4.0.1). Each returns the FHIR resource the operation answers
with (a ValueSet or a Parameters resource) or raises FhirError.

Displays are chosen with ``languages`` (see ``languages.py``). What the server cannot know
(codes of SNOMED CT, LOINC and other code systems it does not hold) is said, never guessed:
an expansion that needs them is a ``not-supported`` error, and a code that cannot be checked
gets ``result = false`` with a message saying why.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from fhir_server.errors import FhirError, bad_request, not_found
from fhir_server.search.normalize import normalize
from fhir_server.terminology.catalog import Catalog, Codes, CodeSystemInfo, Concept
from fhir_server.terminology.languages import matches, pick_display

MAX_EXPANSION = 10_000  # contains entries in one $expand answer
NOT_SELECTABLE = ("notSelectable", "http://hl7.org/fhir/concept-properties#notSelectable")
INACTIVE_STATUS = frozenset({"retired", "inactive"})
HIERARCHIES_WITH_SUBSUMPTION = (None, "is-a")
REVERSE_EQUIVALENCE = {
    "wider": "narrower",
    "narrower": "wider",
    "subsumes": "specializes",
    "specializes": "subsumes",
}
NO_MATCH = frozenset({"unmatched", "disjoint"})
_WORD = re.compile(r"[^\w]+")


@dataclass(slots=True)
class Coding:
    system: str | None
    code: str
    version: str | None = None
    display: str | None = None


def held(code_system: CodeSystemInfo | None) -> CodeSystemInfo | None:
    """The code system if the server holds any of its concepts (R4 core ships SNOMED CT, LOINC
    and others as ``content = not-present`` stubs: those are not held)."""
    if code_system is None or code_system.resource.get("content") == "not-present":
        return None
    return code_system


def split_url(url: str) -> tuple[str, str | None]:
    base, _, version = url.partition("|")
    return base, version or None


def now_instant() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


# -- value sets -----------------------------------------------------------------------------------


def codes_of(catalog: Catalog, value_set: dict[str, Any]) -> Codes | None:
    """The codes of a ValueSet resource (from the catalog, a stored copy or given inline)."""
    url = value_set.get("url")
    if url and catalog.value_sets.get(url) == value_set:
        return catalog.expand(url)  # cached
    if "compose" in value_set:
        return catalog.expand_compose(value_set["compose"])
    if "expansion" in value_set:
        return frozenset(
            (c.get("system", ""), c["code"])
            for c in _flatten(value_set["expansion"].get("contains", ()))
        )
    return None


def expansion_problem(catalog: Catalog, value_set: dict[str, Any]) -> str:
    compose = value_set.get("compose")
    if compose:
        problem = catalog.compose_problem(compose)
        if problem:
            return problem
    if not compose and "expansion" not in value_set:
        return "the value set has neither a compose nor an expansion"
    return "the value set cannot be expanded here"


def expand_or_fail(catalog: Catalog, value_set: dict[str, Any]) -> Codes:
    codes = codes_of(catalog, value_set)
    if codes is None:
        raise FhirError(
            400,
            "not-supported",
            f"the value set {value_set.get('url') or value_set.get('id', '(inline)')} cannot "
            f"be expanded: {expansion_problem(catalog, value_set)}",
        )
    return codes


@dataclass(slots=True)
class _Listed:
    """What a ValueSet says about one of its concepts (compose.include.concept)."""

    display: str | None
    designations: list[dict[str, Any]]


def _walk_compose(
    catalog: Catalog,
    value_set: dict[str, Any],
    rank: dict[tuple[str, str], int],
    listed: dict[tuple[str, str], _Listed],
    seen: set[str],
) -> None:
    """Order of the concepts as the compose gives them, and the displays/designations the
    value set itself lists."""
    compose = value_set.get("compose") or {}
    for part in compose.get("include", ()):
        for imported in part.get("valueSet", ()):
            url = split_url(imported)[0]
            if url not in seen and url in catalog.value_sets:
                seen.add(url)
                _walk_compose(catalog, catalog.value_sets[url], rank, listed, seen)
        system = part.get("system")
        if not system:
            continue
        for concept in part.get("concept", ()):
            key = (system, concept.get("code", ""))
            rank.setdefault(key, len(rank))
            if concept.get("display") or concept.get("designation"):
                listed[key] = _Listed(concept.get("display"), list(concept.get("designation", ())))
        code_system = catalog.code_systems.get(system)
        if code_system is not None and not part.get("concept"):
            for code in code_system.concepts:
                rank.setdefault((system, code), len(rank))
    for item in _flatten((value_set.get("expansion") or {}).get("contains", ())):
        key = (item.get("system", ""), item["code"])
        rank.setdefault(key, len(rank))
        if item.get("display") or item.get("designation"):
            listed.setdefault(key, _Listed(item.get("display"), list(item.get("designation", ()))))


def is_abstract(concept: Concept | None) -> bool:
    if concept is None:
        return False
    return any(concept.properties.get(name) is True for name in NOT_SELECTABLE) or (
        concept.properties.get("abstract") is True
    )


def is_inactive(concept: Concept | None) -> bool:
    if concept is None:
        return False
    status = concept.properties.get("status")
    return concept.properties.get("inactive") is True or (
        isinstance(status, str) and status in INACTIVE_STATUS
    )


def _folded_words(texts: Sequence[str]) -> list[str]:
    words: list[str] = []
    for text in texts:
        words.extend(w for w in _WORD.split(normalize(text)) if w)
    return words


def _filter_matches(filter_words: list[str], texts: Sequence[str]) -> bool:
    """Every word of the filter starts a word of the code, display or a designation (case and
    accents ignored): 'sage-fem' finds 'Sage-femme', 'kine' finds 'Kinésithérapeute'."""
    words = _folded_words(texts)
    return all(any(w.startswith(f) for w in words) for f in filter_words)


@dataclass(slots=True)
class ExpandOptions:
    filter: str | None = None
    offset: int = 0
    count: int | None = None
    languages: Sequence[str] = ()
    include_designations: bool = False
    designation_languages: Sequence[str] = ()
    include_definition: bool = False
    active_only: bool = False
    exclude_not_for_ui: bool = False
    exclude_systems: Sequence[str] = ()
    echo: Sequence[dict[str, Any]] = ()  # expansion.parameter: the parameters as given


def expand(catalog: Catalog, value_set: dict[str, Any], options: ExpandOptions) -> dict[str, Any]:
    codes = expand_or_fail(catalog, value_set)
    rank: dict[tuple[str, str], int] = {}
    listed: dict[tuple[str, str], _Listed] = {}
    _walk_compose(catalog, value_set, rank, listed, {value_set.get("url", "")})
    ordered = sorted(codes, key=lambda key: (rank.get(key, len(rank)), key))
    filter_words = _folded_words([options.filter]) if options.filter else []
    excluded = {split_url(s)[0] for s in options.exclude_systems}
    entries: list[dict[str, Any]] = []
    for system, code in ordered:
        if system in excluded:
            continue
        code_system = catalog.code_systems.get(system)
        concept = code_system.concepts.get(code) if code_system else None
        if options.active_only and is_inactive(concept):
            continue
        abstract = is_abstract(concept)
        if options.exclude_not_for_ui and abstract:
            continue
        own = listed.get((system, code))
        designations = [
            *(own.designations if own else ()),
            *(concept.designations if concept else ()),
        ]
        base_display = (own.display if own and own.display else None) or (
            concept.display if concept else None
        )
        if filter_words:
            texts = [code, base_display or "", *(d.get("value", "") for d in designations)]
            if not _filter_matches(filter_words, texts):
                continue
        entry: dict[str, Any] = {"system": system}
        version = code_system.resource.get("version") if code_system else None
        if version:
            entry["version"] = version
        if abstract:
            entry["abstract"] = True
        if is_inactive(concept):
            entry["inactive"] = True
        entry["code"] = code
        display = pick_display(
            designations, base_display, options.languages, _language_of(code_system)
        )
        if display:
            entry["display"] = display
        if options.include_designations and designations:
            wanted = [
                d
                for d in designations
                if not options.designation_languages
                or any(matches(d.get("language"), t) for t in options.designation_languages)
            ]
            unique = []
            for d in wanted:
                if d not in unique:
                    unique.append(d)
            if unique:
                entry["designation"] = unique
        entries.append(entry)
    total = len(entries)
    offset = options.offset
    if options.count is None and total - offset > MAX_EXPANSION:
        raise FhirError(
            400,
            "too-costly",
            f"the expansion has {total} concepts; ask for pages with count and offset "
            f"(at most {MAX_EXPANSION} per answer)",
        )
    count = min(options.count, MAX_EXPANSION) if options.count is not None else None
    page = entries[offset : offset + count] if count is not None else entries[offset:]
    out: dict[str, Any] = {"resourceType": "ValueSet"}
    for key, value in value_set.items():
        if key in ("resourceType", "meta", "text", "expansion"):
            continue
        if key == "compose" and not options.include_definition:
            continue
        out[key] = value
    expansion: dict[str, Any] = {
        "identifier": f"urn:uuid:{uuid.uuid4()}",
        "timestamp": now_instant(),
        "total": total,
    }
    if options.offset or options.count is not None:
        expansion["offset"] = offset
    if options.echo:
        expansion["parameter"] = list(options.echo)
    if page:
        expansion["contains"] = page
    out["expansion"] = expansion
    return out


def _language_of(code_system: CodeSystemInfo | None) -> str | None:
    return code_system.resource.get("language") if code_system else None


def _flatten(contains: Any) -> list[dict[str, Any]]:
    out = []
    for item in contains or ():
        if "code" in item:
            out.append(item)
        out.extend(_flatten(item.get("contains", ())))
    return out


# -- $validate-code -------------------------------------------------------------------------------


def find_concept(code_system: CodeSystemInfo, code: str) -> Concept | None:
    concept = code_system.concepts.get(code)
    if concept is None and code_system.resource.get("caseSensitive") is False:
        folded = code.casefold()
        concept = next((c for k, c in code_system.concepts.items() if k.casefold() == folded), None)
    return concept


def _displays(concept: Concept | None, extra: _Listed | None) -> list[str]:
    values = []
    if concept is not None:
        if concept.display:
            values.append(concept.display)
        values.extend(d.get("value", "") for d in concept.designations)
    if extra is not None:
        if extra.display:
            values.append(extra.display)
        values.extend(d.get("value", "") for d in extra.designations)
    return [v for v in values if v]


def _same_text(a: str, b: str) -> bool:
    return " ".join(a.split()).casefold() == " ".join(b.split()).casefold()


@dataclass(slots=True)
class Verdict:
    result: bool
    messages: list[str]
    display: str | None = None


def _check_concept(
    coding: Coding,
    concept: Concept | None,
    code_system: CodeSystemInfo | None,
    listed: _Listed | None,
    abstract_ok: bool,
    languages: Sequence[str],
) -> Verdict:
    """Display, abstract and status checks for a code already known to be a member."""
    messages: list[str] = []
    result = True
    designations = [
        *(listed.designations if listed else ()),
        *(concept.designations if concept else ()),
    ]
    base = (listed.display if listed and listed.display else None) or (
        concept.display if concept else None
    )
    display = pick_display(designations, base, languages, _language_of(code_system))
    label = f"{coding.system}#{coding.code}"
    if coding.display is not None:
        known = _displays(concept, listed)
        if known and not any(_same_text(coding.display, k) for k in known):
            result = False
            messages.append(
                f"the display {coding.display!r} is not a display of {label} "
                f"(expected {display or known[0]!r})"
            )
        elif not known:
            messages.append(
                f"the display of {label} cannot be checked: the server has no display for it"
            )
    if is_abstract(concept) and not abstract_ok:
        result = False
        messages.append(f"{label} is abstract (not selectable) and cannot be used here")
    if is_inactive(concept):
        messages.append(f"{label} is inactive")
    return Verdict(result, messages, display)


def validate_in_value_set(
    catalog: Catalog,
    value_set: dict[str, Any],
    codings: Sequence[Coding],
    abstract_ok: bool,
    languages: Sequence[str],
) -> dict[str, Any]:
    label = value_set.get("url") or f"ValueSet/{value_set.get('id', '(inline)')}"
    codes = codes_of(catalog, value_set)
    if codes is None:
        return parameters_result(
            False,
            [
                f"the codes cannot be validated against {label}: "
                f"{expansion_problem(catalog, value_set)}"
            ],
        )
    rank: dict[tuple[str, str], int] = {}
    listed: dict[tuple[str, str], _Listed] = {}
    _walk_compose(catalog, value_set, rank, listed, {value_set.get("url", "")})
    verdicts: list[Verdict] = []
    for coding in codings:
        verdicts.append(
            _member_verdict(catalog, codes, listed, coding, label, abstract_ok, languages)
        )
    return _combine(verdicts)


def _member_verdict(
    catalog: Catalog,
    codes: Codes,
    listed: dict[tuple[str, str], _Listed],
    coding: Coding,
    label: str,
    abstract_ok: bool,
    languages: Sequence[str],
) -> Verdict:
    system = coding.system
    if system is None:
        systems = sorted({s for s, c in codes if c == coding.code})
        if len(systems) > 1:
            return Verdict(
                False,
                [
                    f"the code {coding.code!r} is in {label} in several systems "
                    f"({', '.join(systems)}); give the system"
                ],
            )
        if not systems:
            return Verdict(False, [f"the code {coding.code!r} is not in {label}"])
        system = systems[0]
        coding = Coding(system, coding.code, coding.version, coding.display)
    code_system = catalog.code_systems.get(system)
    code = coding.code
    if (system, code) not in codes and code_system is not None:
        concept = find_concept(code_system, code)
        if concept is not None and concept.code != code:
            code = concept.code  # a case-insensitive code system
    if (system, code) not in codes:
        return Verdict(False, [f"{system}#{coding.code} is not in {label}"])
    problem = _version_problem(code_system, coding)
    if problem:
        return Verdict(False, [problem])
    concept = code_system.concepts.get(code) if code_system else None
    return _check_concept(
        coding, concept, code_system, listed.get((system, code)), abstract_ok, languages
    )


def _version_problem(code_system: CodeSystemInfo | None, coding: Coding) -> str | None:
    if code_system is None or not coding.version:
        return None
    held = code_system.resource.get("version")
    if held and held != coding.version:
        return (
            f"version {coding.version} of {coding.system} is not available "
            f"(this server holds version {held})"
        )
    return None


def validate_in_code_system(
    catalog: Catalog,
    code_system: CodeSystemInfo | None,
    system: str,
    codings: Sequence[Coding],
    abstract_ok: bool,
    languages: Sequence[str],
) -> dict[str, Any]:
    verdicts = []
    code_system = held(code_system)
    for coding in codings:
        if coding.system is not None and coding.system != system:
            verdicts.append(
                Verdict(False, [f"the coding's system {coding.system} is not {system}"])
            )
            continue
        coding = Coding(system, coding.code, coding.version, coding.display)
        if code_system is None:
            verdicts.append(
                Verdict(
                    False,
                    [
                        f"the code system {system} is not available on this server, so "
                        f"{coding.code!r} cannot be checked (large external code systems such "
                        "as SNOMED CT and LOINC are not held here)"
                    ],
                )
            )
            continue
        problem = _version_problem(code_system, coding)
        if problem:
            verdicts.append(Verdict(False, [problem]))
            continue
        concept = find_concept(code_system, coding.code)
        if concept is None:
            content = code_system.resource.get("content")
            text = f"{coding.code!r} is not a code of {system}"
            if content != "complete":
                text += f" (this server holds only a {content} of it, so this is not final)"
            verdicts.append(Verdict(False, [text]))
            continue
        verdicts.append(_check_concept(coding, concept, code_system, None, abstract_ok, languages))
    return _combine(verdicts)


def _combine(verdicts: Sequence[Verdict]) -> dict[str, Any]:
    """A CodeableConcept is valid when one of its codings is."""
    good = [v for v in verdicts if v.result]
    chosen = good[0] if good else (verdicts[0] if verdicts else Verdict(False, []))
    messages = chosen.messages if good else [m for v in verdicts for m in v.messages]
    return parameters_result(bool(good), messages, chosen.display)


def parameters_result(
    result: bool, messages: Sequence[str], display: str | None = None
) -> dict[str, Any]:
    parameters: list[dict[str, Any]] = [{"name": "result", "valueBoolean": result}]
    if messages:
        parameters.append({"name": "message", "valueString": "; ".join(messages)})
    if display:
        parameters.append({"name": "display", "valueString": display})
    return {"resourceType": "Parameters", "parameter": parameters}


# -- $lookup --------------------------------------------------------------------------------------


def lookup(
    code_system: CodeSystemInfo,
    coding: Coding,
    languages: Sequence[str],
    wanted: Sequence[str] = (),
) -> dict[str, Any]:
    problem = _version_problem(code_system, coding)
    if problem:
        raise not_found(problem)
    concept = find_concept(code_system, coding.code)
    if concept is None:
        raise not_found(f"{coding.code!r} is not a code of {code_system.url}")
    resource = code_system.resource
    parameters: list[dict[str, Any]] = [
        {"name": "name", "valueString": resource.get("title") or resource.get("name") or ""}
    ]
    if resource.get("version"):
        parameters.append({"name": "version", "valueString": resource["version"]})
    display = pick_display(
        concept.designations, concept.display, languages, _language_of(code_system)
    )
    parameters.append({"name": "display", "valueString": display or concept.code})

    def want(name: str) -> bool:
        return not wanted or name in wanted

    if concept.definition and want("definition"):
        parameters.append(_property("definition", {"valueString": concept.definition}))
    if want("designation"):
        for designation in concept.designations:
            parts: list[dict[str, Any]] = []
            if designation.get("language"):
                parts.append({"name": "language", "valueCode": designation["language"]})
            if designation.get("use"):
                parts.append({"name": "use", "valueCoding": designation["use"]})
            parts.append({"name": "value", "valueString": designation.get("value", "")})
            parameters.append({"name": "designation", "part": parts})
    for prop in concept.property_values:
        code = prop.get("code")
        value = {k: v for k, v in prop.items() if k.startswith("value")}
        if code and value and want(code):
            parameters.append(_property(code, value, _property_description(code_system, code)))
    if concept.parent and want("parent"):
        parameters.append(_property("parent", {"valueCode": concept.parent}))
    if want("child"):
        for child in concept.children:
            parameters.append(_property("child", {"valueCode": child}))
    if want("inactive"):
        parameters.append(_property("inactive", {"valueBoolean": is_inactive(concept)}))
    return {"resourceType": "Parameters", "parameter": parameters}


def _property(code: str, value: dict[str, Any], description: str | None = None) -> dict[str, Any]:
    parts: list[dict[str, Any]] = [{"name": "code", "valueCode": code}]
    parts.append({"name": "value", **value})
    if description:
        parts.append({"name": "description", "valueString": description})
    return {"name": "property", "part": parts}


def _property_description(code_system: CodeSystemInfo, code: str) -> str | None:
    for declared in code_system.resource.get("property", ()):
        if declared.get("code") == code:
            return declared.get("description")
    return None


# -- $subsumes ------------------------------------------------------------------------------------


def subsumes(code_system: CodeSystemInfo, code_a: str, code_b: str) -> dict[str, Any]:
    meaning = code_system.resource.get("hierarchyMeaning")
    if meaning not in HIERARCHIES_WITH_SUBSUMPTION:
        raise FhirError(
            400,
            "not-supported",
            f"the hierarchy of {code_system.url} means {meaning!r}, not 'is-a', so "
            "subsumption is not defined for it",
        )
    concepts = []
    for code in (code_a, code_b):
        concept = find_concept(code_system, code)
        if concept is None:
            raise not_found(f"{code!r} is not a code of {code_system.url}")
        concepts.append(concept.code)
    a, b = concepts
    if a == b:
        outcome = "equivalent"
    elif b in code_system.descendants(a):
        outcome = "subsumes"
    elif a in code_system.descendants(b):
        outcome = "subsumed-by"
    else:
        outcome = "not-subsumed"
    return {"resourceType": "Parameters", "parameter": [{"name": "outcome", "valueCode": outcome}]}


# -- $translate -----------------------------------------------------------------------------------


def _map_source(concept_map: dict[str, Any]) -> str | None:
    return concept_map.get("sourceUri") or concept_map.get("sourceCanonical")


def _map_target(concept_map: dict[str, Any]) -> str | None:
    return concept_map.get("targetUri") or concept_map.get("targetCanonical")


def candidate_maps(
    catalog: Catalog, source: str | None, target: str | None
) -> list[dict[str, Any]]:
    """Every ConceptMap in the catalog whose source / target value sets fit (when given)."""
    out = []
    for concept_map in catalog.concept_maps.values():
        if source and split_url(_map_source(concept_map) or "")[0] != split_url(source)[0]:
            continue
        if target and split_url(_map_target(concept_map) or "")[0] != split_url(target)[0]:
            continue
        out.append(concept_map)
    return out


def translate(
    catalog: Catalog,
    maps: Sequence[dict[str, Any]],
    codings: Sequence[Coding],
    target_system: str | None,
    reverse: bool,
    languages: Sequence[str],
) -> dict[str, Any]:
    """Translate a code (or each coding of a CodeableConcept) with the given maps."""
    matches_found: list[dict[str, Any]] = []
    for coding in codings:
        if not coding.system:
            raise bad_request("$translate needs the system of the code (system or coding.system)")
        for concept_map in maps:
            _translate_map(
                catalog, concept_map, coding, target_system, reverse, languages, matches_found, 0
            )
    result = any(m["equivalence"] not in NO_MATCH for m in matches_found)
    parameters: list[dict[str, Any]] = [{"name": "result", "valueBoolean": result}]
    if not result:
        where = f" to {target_system}" if target_system else ""
        reason = "no mapping" if not matches_found else "only unmatched/disjoint mappings"
        what = ", ".join(f"{c.system}#{c.code}" for c in codings)
        parameters.append(
            {
                "name": "message",
                "valueString": f"{reason} for {what}{where} in {len(maps)} concept map(s)",
            }
        )
    for match in matches_found:
        parts: list[dict[str, Any]] = [{"name": "equivalence", "valueCode": match["equivalence"]}]
        if match.get("concept"):
            parts.append({"name": "concept", "valueCoding": match["concept"]})
        for product in match.get("product", ()):
            parts.append({"name": "product", "part": product})
        parts.append({"name": "source", "valueUri": match["source"]})
        parameters.append({"name": "match", "part": parts})
    return {"resourceType": "Parameters", "parameter": parameters}


def _translate_map(
    catalog: Catalog,
    concept_map: dict[str, Any],
    coding: Coding,
    target_system: str | None,
    reverse: bool,
    languages: Sequence[str],
    out: list[dict[str, Any]],
    depth: int,
) -> None:
    source_url = concept_map.get("url") or f"ConceptMap/{concept_map.get('id', '')}"
    for group in concept_map.get("group", ()):
        from_system = group.get("target") if reverse else group.get("source")
        to_system = group.get("source") if reverse else group.get("target")
        if from_system != coding.system:
            continue
        if target_system and to_system != target_system:
            continue
        from_version = group.get("targetVersion") if reverse else group.get("sourceVersion")
        if coding.version and from_version and coding.version != from_version:
            continue
        found = False
        for element in group.get("element", ()):
            if reverse:
                for target in element.get("target", ()):
                    if target.get("code") == coding.code:
                        found = True
                        equivalence = target.get("equivalence", "equivalent")
                        out.append(
                            _match(
                                catalog,
                                to_system,
                                element.get("code"),
                                element.get("display"),
                                REVERSE_EQUIVALENCE.get(equivalence, equivalence),
                                source_url,
                                languages,
                            )
                        )
            elif element.get("code") == coding.code:
                found = True
                for target in element.get("target", ()):
                    match = _match(
                        catalog,
                        to_system,
                        target.get("code"),
                        target.get("display"),
                        target.get("equivalence", "equivalent"),
                        source_url,
                        languages,
                    )
                    products = [_product(p) for p in target.get("product", ()) if p.get("value")]
                    if products:
                        match["product"] = products
                    out.append(match)
        if not found and not reverse:
            _unmapped(catalog, group, coding, target_system, languages, out, depth, source_url)


def _unmapped(
    catalog: Catalog,
    group: dict[str, Any],
    coding: Coding,
    target_system: str | None,
    languages: Sequence[str],
    out: list[dict[str, Any]],
    depth: int,
    source_url: str,
) -> None:
    unmapped = group.get("unmapped") or {}
    mode = unmapped.get("mode")
    to_system = group.get("target")
    if mode == "provided":
        out.append(_match(catalog, to_system, coding.code, None, "equal", source_url, languages))
    elif mode == "fixed" and unmapped.get("code"):
        out.append(
            _match(
                catalog,
                to_system,
                unmapped["code"],
                unmapped.get("display"),
                "inexact",
                source_url,
                languages,
            )
        )
    elif mode == "other-map" and unmapped.get("url") and depth < 3:
        other = catalog.concept_maps.get(split_url(unmapped["url"])[0])
        if other is not None:
            _translate_map(catalog, other, coding, target_system, False, languages, out, depth + 1)


def _match(
    catalog: Catalog,
    system: str | None,
    code: str | None,
    display: str | None,
    equivalence: str,
    source: str,
    languages: Sequence[str],
) -> dict[str, Any]:
    match: dict[str, Any] = {"equivalence": equivalence, "source": source}
    if code:
        concept_coding: dict[str, Any] = {"system": system, "code": code}
        concept = catalog.concept(system or "", code)
        if concept is not None:
            code_system = catalog.code_systems.get(system or "")
            display = pick_display(
                concept.designations, concept.display, languages, _language_of(code_system)
            )
        if display:
            concept_coding["display"] = display
        match["concept"] = concept_coding
    return match


def _product(product: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {"name": "element", "valueUri": product.get("property", "")},
        {
            "name": "concept",
            "valueCoding": {
                k: v
                for k, v in (
                    ("system", product.get("system")),
                    ("code", product.get("value")),
                    ("display", product.get("display")),
                )
                if v
            },
        },
    ]
