"""Content tests for the terminology shipped in ``terminology/`` and ``mappings/``.

Only the Python standard library and pytest are used. The tests check the structural rules
of the terminology package (file naming, canonical URLs, counts, designations in nl-BE,
fr-BE, en and de, ValueSet and ConceptMap references) rather than FHIR schema validity:
the BiB CodeSystems and ValueSets in ``terminology/bib``, the BiB ConceptMaps in ``mappings/``,
the be-core copies in ``terminology/be-core`` (unchanged upstream files) and the BiB
supplements in ``terminology/supplements`` that complete their designations. Every shipped
CodeSystem has nl-BE and fr-BE designations for every concept (supplements included).
"""

from __future__ import annotations

import hashlib
import json
import re
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIB_DIR = ROOT / "terminology" / "bib"
BE_CORE_DIR = ROOT / "terminology" / "be-core"
SUPPLEMENT_DIR = ROOT / "terminology" / "supplements"
MAPPINGS_DIR = ROOT / "mappings"
SHARED_BE_CORE = ROOT.parent / "shared" / "reference" / "be-artefacts" / "be-core"
BASE = "https://borninbelgiumpro.be/fhir"
VERSION = "0.1.0"
PUBLISHER = "Born in Belgium Professionals"

REQUIRED_LANGS = ("nl-BE", "fr-BE", "en", "de")
SNOMED = "http://snomed.info/sct"
SNOMED_SYNONYM = "900000000000013009"

# Translations that are truly identical to the English display (same word in that language).
IDENTICAL_OK = {
    ("bib-loss-management-option", "curettage", "nl-BE"),
    ("bib-practitioner-type", "doula", "nl-BE"),
    ("bib-practitioner-type", "doula", "fr-BE"),
    ("bib-referral-type", "triage", "nl-BE"),
    ("bib-referral-type", "triage", "fr-BE"),
    ("bib-vulnerability-indicator", "communication", "fr-BE"),
}

NIS_MUNICIPALITY = "https://statbel.fgov.be/fhir/CodeSystem/nis-municipality"
NIS_REFNIS = "https://statbel.fgov.be/fhir/CodeSystem/refnis"
CD_HCPARTY = "https://www.ehealth.fgov.be/standards/fhir/core/CodeSystem/cd-hcparty"
V3_ACTCODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
# Well-known systems that may be referenced without being shipped here.
EXTERNAL_SYSTEMS = {
    NIS_MUNICIPALITY,
    NIS_REFNIS,
    CD_HCPARTY,
    V3_ACTCODE,
    SNOMED,
    "http://loinc.org",
}

ID_RE = re.compile(r"^bib-[a-z0-9]+(-[a-z0-9]+)*$")
CODE_RE = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")
NAME_RE = re.compile(r"^[A-Z][A-Za-z0-9_]{0,254}$")

# R4 (4.0.1) top-level elements; anything else (e.g. R5-only elements) is rejected.
R4_COMMON = {
    "resourceType",
    "id",
    "meta",
    "implicitRules",
    "language",
    "text",
    "contained",
    "extension",
    "modifierExtension",
    "url",
    "identifier",
    "version",
    "name",
    "title",
    "status",
    "experimental",
    "date",
    "publisher",
    "contact",
    "description",
    "useContext",
    "jurisdiction",
    "purpose",
    "copyright",
}
R4_ELEMENTS = {
    "CodeSystem": R4_COMMON
    | {
        "caseSensitive",
        "valueSet",
        "hierarchyMeaning",
        "compositional",
        "versionNeeded",
        "content",
        "supplements",
        "count",
        "filter",
        "property",
        "concept",
    },
    "ValueSet": R4_COMMON | {"immutable", "compose", "expansion"},
    "ConceptMap": R4_COMMON
    | {"sourceUri", "sourceCanonical", "targetUri", "targetCanonical", "group"},
}
R4_EQUIVALENCE = {
    "relatedto",
    "equivalent",
    "equal",
    "wider",
    "subsumes",
    "narrower",
    "specializes",
    "inexact",
    "unmatched",
    "disjoint",
}
PROPERTY_VALUE_KEY = {
    "code": "valueCode",
    "Coding": "valueCoding",
    "string": "valueString",
    "integer": "valueInteger",
    "boolean": "valueBoolean",
    "dateTime": "valueDateTime",
    "decimal": "valueDecimal",
}

# Codes proposed in domain.md section 8.3 that must be kept exactly (item -> code system).
EXPECTED_CODES = {
    "bib-vulnerability-indicator": [
        "country-of-birth",
        "education",
        "anxiety",
        "employment-status",
        "partner-employment-status",
        "communication",
        "income",
        "social-support",
        "residence-status",
        "depression",
        "housing",
        "substance-use",
        "violence",
    ],
    "bib-care-pathway": [
        "pregnancy-loss",
        "pmh-screening-detection",
        "pmh-specialised",
        "substance-use-perinatal",
        "preconception",
        "postnatal-short-stay",
    ],
    "bib-pregnancy-loss-scenario": [
        "early-pregnancy-loss",
        "mors-in-utero",
        "congenital-anomaly-loss",
    ],
    "bib-pregnancy-loss-phase": [
        "suspicion",
        "diagnosis",
        "expulsion-delivery-termination",
        "follow-up",
    ],
    "bib-need-domain": ["medical", "psychosocial", "practical-organisational"],
    "bib-loss-management-option": [
        "expectant",
        "medication",
        "curettage",
        "await-spontaneous-delivery",
        "induced-delivery",
        "termination",
        "continue-pregnancy",
    ],
    "bib-loss-support-activity": [
        "medical-explanation",
        "bad-news-conversation",
        "ultrasound",
        "repeat-ultrasound",
        "prenatal-diagnostics-referral",
        "cause-discussion",
        "future-pregnancy-advice",
        "medical-follow-up",
        "midwife-continuous-presence",
        "emotional-acknowledgement",
        "shock-emotion-regulation-support",
        "see-fetus-option",
        "comfort-box",
        "keepsake-case",
        "grief-counselling",
        "peer-contact",
        "support-organisation-referral",
        "telephone-check-up",
        "remembrance-card",
        "annual-remembrance",
        "appointment-support",
        "sick-note",
        "work-leave-arrangement",
        "death-certificate",
        "birth-declaration",
        "leave",
        "legal-arrangements",
        "household-support",
        "home-needs-information",
        "case-manager-assignment",
        "trusted-person-assignment",
        "support-plan",
        "sibling-school-support",
        "partner-support",
        "long-term-support-referral",
        "kraamzorg-referral",
        "municipal-service-referral",
        "self-help-group-information",
        "psychological-help-decision-doubt",
        "psychological-help-post-top",
    ],
    "bib-care-line": ["line-0", "line-1", "line-2", "line-3", "basic", "specialised"],
    "bib-care-principle": ["stepped", "matched", "wraparound", "joint"],
    "bib-pmh-severity": ["mild", "moderate", "severe", "acute"],
    "bib-nccmh-pathway": [
        "preconception-counselling",
        "pmh-professional-assessment",
        "urgent-assessment",
        "psychological-interventions",
        "mother-baby-admission",
    ],
    "bib-pmh-module": [
        "outpatient",
        "outreach-home-treatment",
        "liaison",
        "day-treatment",
        "residential-mbu",
    ],
    "bib-pmh-intervention": [
        "consultative-triage",
        "consultative-professional-case-consultation",
        "consultative-multidisciplinary-case-consultation",
        "case-conference-participation",
        "specialist-clinical-assessment",
        "short-clinical-intervention",
        "focused-parent-infant-treatment",
        "intensive-group-treatment",
        "combipoli",
        "psychiatric-maternity-bed",
        "pimh-psychotherapy",
        "systemic-therapy",
    ],
    "bib-postnatal-activity": [
        "coordinator-assignment",
        "prenatal-postnatal-preparation",
        "postnatal-care-plan",
        "short-stay-eligibility",
        "hospital-stay-max-72h",
        "discharge-procedure",
        "discharge-notification-gp",
        "home-visit-24h",
        "home-visit-follow-up",
        "paediatric-check-d7-10",
        "midwife-24-7-line",
        "neonatal-screening-verification",
        "kraamhulp",
        "kg-one-home-visit",
        "gynaecological-check-6w",
        "readmission",
        "parent-group",
        "telephone-follow-up",
        "perinatal-buddy",
    ],
    "bib-screening-instrument": [
        "bib-pro-psychosocial",
        "pmg-protocol-anxiety-depression",
        "audit-pregnancy",
        "assist",
        "me-assist",
        "child-wish-question",
    ],
    "bib-screening-timepoint": [
        "preconception",
        "first-contact-le-16w",
        "gestation-20-21w",
        "repeated-during-pregnancy",
        "postpartum-0-6w",
        "postpartum-6w-2y",
    ],
    "bib-referral-type": [
        "warm-guidance",
        "warm-handover",
        "referral",
        "back-referral",
        "consultation-advice",
        "liaison-support",
        "triage",
        "care-conference",
        "waiting-list-registration",
    ],
    "bib-referral-outcome": [
        "realised",
        "not-realised",
        "declined-by-family",
        "waiting-list",
        "referred-back",
    ],
    "bib-access-role": ["role-a-kb78", "role-b-limited"],
    "bib-coordination-function": [
        "perinatal-care-coordinator",
        "trajectory-supporter",
        "case-manager",
        "trusted-person",
        "coordinating-provider",
        "regional-perinatal-coordinator",
        "anchor-figure-1g1p",
        "hospital-social-service-coordination",
    ],
    "bib-practitioner-type": [
        "midwife",
        "gynaecologist",
        "obstetrician-nl",
        "general-practitioner",
        "paediatrician",
        "neonatologist",
        "psychiatrist-perinatal",
        "fertility-physician",
        "specialist-physician",
        "psychologist",
        "first-line-psychologist",
        "psychotherapist",
        "grief-counsellor",
        "perinatal-coach",
        "doula",
        "physiotherapist",
        "pharmacist",
        "nurse",
        "social-worker",
        "welfare-worker",
        "early-childhood-specialist",
        "maternity-care-assistant",
        "childcare-worker",
        "lactation-consultant",
        "speech-therapist",
        "occupational-therapist",
        "psychomotor-therapist",
        "art-therapist",
        "orthopedagogue",
        "psychopedagogue",
        "family-support-worker",
        "kg-consultant",
        "youth-care-worker",
        "addiction-worker",
        "street-worker",
        "buddy",
        "peer-expert",
        "self-help-group-worker",
        "expertise-centre-worker",
        "staff-familiehulp",
        "teacher",
    ],
    "bib-organization-type": [
        "hospital",
        "maternity",
        "hospital-social-service",
        "welfare-organisation",
        "kind-en-gezin",
        "one",
        "dkf",
        "huis-van-het-kind",
        "maternity-care-centre",
        "maternity-expertise-centre",
        "community-health-centre",
        "midwife-practice",
        "gp-practice",
        "prenatal-consultation-office",
        "cgg",
        "mbu",
        "perinatal-psychiatry-centre",
        "pmht",
        "mobile-crisis-team",
        "paaz",
        "psychiatric-hospital",
        "fertility-centre-a",
        "fertility-centre-b",
        "nop-poli",
        "caw",
        "ckg",
        "cig",
        "ocj",
        "vk",
        "ocmw",
        "youth-care",
        "special-youth-care",
        "zorggarantie",
        "1g1p",
        "addiction-service",
        "childcare",
        "mutuality",
        "municipal-service",
        "perinatal-network",
        "school",
        "family-planning",
    ],
    "bib-service-delivery-mode": [
        "home-visit",
        "outreach",
        "ambulatory",
        "day-treatment",
        "residential",
        "group",
        "telephone",
        "online-self-help",
        "liaison-at-site",
    ],
    "bib-target-group": [
        "preterm",
        "single-mother",
        "pregnancy-or-infant-loss",
        "congenital-anomaly",
        "substance-use",
        "severe-psychiatric-disorder",
        "intellectual-disability",
        "teen-parent",
        "undocumented",
        "threatened-placement",
        "maternal-disability-deafness",
        "language-barrier",
        "fertility-treatment",
        "previous-loss",
    ],
    "bib-perinatal-period": [
        "preconception",
        "pregnancy-t1",
        "pregnancy-t2",
        "pregnancy-t3",
        "postpartum-0-6w",
        "postpartum-6w-1y",
        "child-1-2y",
    ],
    "bib-social-map-source": [
        "riziv",
        "sociaal-brussel",
        "sociale-kaart",
        "fares",
        "vrgt",
        "born-in-brussels",
        "bib-local",
    ],
    "bib-region": ["zorgzone-zuid-oost", "province-antwerpen", "region-brussels-capital"],
    "bib-pmh-provider-recognition": [
        "perinatal-mh-basic-provider",
        "specialised-perinatal-provider",
    ],
}

SENSITIVE_INDICATORS = {"anxiety", "depression", "substance-use", "violence", "residence-status"}
BRUSSELS_MUNICIPALITIES = {f"210{n:02d}" for n in range(1, 20)}
PROVINCE_NIS = {
    "10000": "province-antwerpen",
    "20001": "province-vlaams-brabant",
    "20002": "province-brabant-wallon",
    "30000": "province-west-vlaanderen",
    "40000": "province-oost-vlaanderen",
    "50000": "province-hainaut",
    "60000": "province-liege",
    "70000": "province-limburg",
    "80000": "province-luxembourg",
    "90000": "province-namur",
}


# --------------------------------------------------------------------------- helpers


def _files() -> list[Path]:
    """The BiB resources: CodeSystems and ValueSets in terminology/bib, ConceptMaps in
    mappings/."""
    return sorted(BIB_DIR.glob("*.json")) + sorted(MAPPINGS_DIR.glob("ConceptMap-*.json"))


@cache
def _load(path: Path) -> dict:
    with path.open(encoding="utf-8") as fh:
        return json.load(fh)


def _walk(concepts: list[dict]):
    for concept in concepts:
        yield concept
        yield from _walk(concept.get("concept", []))


@cache
def _resources(resource_type: str) -> dict[str, dict]:
    """url -> resource for all shipped resources of one type."""
    out = {}
    for path in _files():
        res = _load(path)
        if res.get("resourceType") == resource_type:
            out[res["url"]] = res
    return out


@cache
def _codes(cs_url: str) -> dict[str, dict]:
    cs = _resources("CodeSystem")[cs_url]
    return {c["code"]: c for c in _walk(cs.get("concept", []))}


def _cs_by_id(cs_id: str) -> dict:
    return _resources("CodeSystem")[f"{BASE}/CodeSystem/{cs_id}"]


def _ids(resource_type: str) -> list[str]:
    return [p.name for p in _files() if p.name.startswith(resource_type + "-")]


def _primary_designations(concept: dict) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for des in concept.get("designation", []):
        if "use" not in des:
            out.setdefault(des.get("language", ""), []).append(des.get("value", ""))
    return out


# --------------------------------------------------------------------------- all files


def test_terminology_directory_is_populated():
    names = [p.name for p in _files()]
    assert sum(n.startswith("CodeSystem-") for n in names) >= 28
    assert sum(n.startswith("ValueSet-") for n in names) >= 28
    assert "ConceptMap-bib-nis-municipality-to-region.json" in names
    assert "ConceptMap-bib-practitioner-type-to-cd-hcparty.json" in names
    bib_names = {p.name for p in BIB_DIR.iterdir() if p.is_file()}
    assert bib_names == {p.name for p in BIB_DIR.glob("*.json")}, (
        "only .json files belong in terminology/bib"
    )
    assert not any(n.startswith("ConceptMap-") for n in bib_names), (
        "ConceptMaps belong in mappings/"
    )


@pytest.mark.parametrize("path", _files(), ids=lambda p: p.name)
def test_identity_and_metadata(path: Path):
    res = _load(path)
    rtype = res.get("resourceType")
    assert rtype in R4_ELEMENTS, f"unexpected resourceType {rtype}"
    assert path.name == f"{rtype}-{res['id']}.json"
    assert ID_RE.match(res["id"]), res["id"]
    assert res["url"] == f"{BASE}/{rtype}/{res['id']}"
    assert res["version"] == VERSION
    assert res["status"] in {"active", "draft"}
    assert res["publisher"] == PUBLISHER
    assert res["experimental"] is False
    assert res["language"] == "en"
    assert NAME_RE.match(res["name"]), res["name"]
    assert res.get("title") and res.get("description")
    assert re.match(r"^\d{4}-\d{2}-\d{2}$", res["date"])
    unknown = set(res) - R4_ELEMENTS[rtype]
    assert not unknown, f"elements not in FHIR R4 {rtype}: {sorted(unknown)}"


def test_urls_are_unique():
    urls = [_load(p)["url"] for p in _files()]
    assert len(urls) == len(set(urls))


# --------------------------------------------------------------------------- CodeSystems


@pytest.mark.parametrize("name", _ids("CodeSystem"))
def test_codesystem_structure(name: str):
    cs = _load(BIB_DIR / name)
    assert cs["caseSensitive"] is True
    assert cs["content"] == "complete"
    concepts = list(_walk(cs["concept"]))
    codes = [c["code"] for c in concepts]
    assert len(codes) == len(set(codes)), "codes must be unique within a CodeSystem"
    assert cs["count"] == len(concepts)
    for c in concepts:
        assert CODE_RE.match(c["code"]), c["code"]
        assert c.get("display", "").strip(), c["code"]
        assert c.get("definition", "").strip(), c["code"]
    nested = any("concept" in c for c in cs["concept"])
    if nested:
        assert cs.get("hierarchyMeaning") in {"is-a", "part-of", "grouped-by", "classified-with"}
    # the all-codes ValueSet
    vs = _resources("ValueSet").get(cs["valueSet"])
    assert vs is not None, f"CodeSystem.valueSet {cs['valueSet']} is not shipped"
    assert vs["id"] == cs["id"]
    assert vs["status"] == cs["status"]
    assert vs["compose"]["include"] == [{"system": cs["url"]}]


@pytest.mark.parametrize("name", _ids("CodeSystem"))
def test_codesystem_designations(name: str):
    cs = _load(BIB_DIR / name)
    for c in _walk(cs["concept"]):
        primary = _primary_designations(c)
        for lang in REQUIRED_LANGS:
            values = primary.get(lang, [])
            assert len(values) == 1, f"{c['code']}: need exactly one {lang} designation"
            assert values[0].strip(), f"{c['code']}: empty {lang} designation"
        assert primary["en"][0] == c["display"]
        for lang in ("nl-BE", "fr-BE"):
            same = primary[lang][0].strip().casefold() == c["display"].strip().casefold()
            if same:
                assert (cs["id"], c["code"], lang) in IDENTICAL_OK, (
                    f"{c['code']}: {lang} designation equals the English display"
                )
        for des in c["designation"]:
            assert des.get("language") in REQUIRED_LANGS, des
            assert des.get("value", "").strip()
            if "use" in des:
                assert des["use"]["system"] == SNOMED
                assert des["use"]["code"] == SNOMED_SYNONYM


@pytest.mark.parametrize("name", _ids("CodeSystem"))
def test_codesystem_properties(name: str):
    cs = _load(BIB_DIR / name)
    declared = {p["code"]: p["type"] for p in cs.get("property", [])}
    assert "basis" in declared
    for c in _walk(cs["concept"]):
        props = c.get("property", [])
        basis = [p["valueCode"] for p in props if p["code"] == "basis"]
        assert basis and basis[0] in {"seed", "external", "proposal", "gap"}, c["code"]
        for p in props:
            assert p["code"] in declared, f"{c['code']}: undeclared property {p['code']}"
            value_keys = [k for k in p if k.startswith("value")]
            assert value_keys == [PROPERTY_VALUE_KEY[declared[p["code"]]]], p
            coding = p.get("valueCoding")
            if coding:
                system = coding["system"]
                if system.startswith(BASE + "/"):
                    assert coding["code"] in _codes(system), coding
                else:
                    assert system in EXTERNAL_SYSTEMS, coding


@pytest.mark.parametrize("cs_id", sorted(EXPECTED_CODES))
def test_proposed_codes_are_kept(cs_id: str):
    codes = {c["code"] for c in _walk(_cs_by_id(cs_id)["concept"])}
    missing = [c for c in EXPECTED_CODES[cs_id] if c not in codes]
    assert not missing, f"{cs_id} is missing codes {missing}"


def test_draft_where_seeds_leave_gaps():
    for cs in _resources("CodeSystem").values():
        has_gap = any(
            p["code"] == "basis" and p["valueCode"] == "gap"
            for c in _walk(cs["concept"])
            for p in c.get("property", [])
        )
        if has_gap:
            assert cs["status"] == "draft", f"{cs['id']} contains gap concepts"
    assert _cs_by_id("bib-access-role")["status"] == "draft"
    assert _cs_by_id("bib-region")["status"] == "draft"


def test_vulnerability_indicator_sensitivity():
    cs = _cs_by_id("bib-vulnerability-indicator")
    assert cs["count"] == 13
    declared = {p["code"] for p in cs["property"]}
    assert {"sensitivity", "sensitivity-policy"} <= declared
    sensitive = set()
    for c in cs["concept"]:
        values = [p["valueCode"] for p in c["property"] if p["code"] == "sensitivity"]
        assert len(values) == 1 and values[0] in {"sensitive", "normal"}, c["code"]
        if values[0] == "sensitive":
            sensitive.add(c["code"])
        policies = [p for p in c["property"] if p["code"] == "sensitivity-policy"]
        if values[0] == "normal":
            assert not policies, c["code"]
        for p in policies:
            assert p["valueCoding"]["system"] == V3_ACTCODE
    assert sensitive == SENSITIVE_INDICATORS
    vs = _resources("ValueSet")[f"{BASE}/ValueSet/bib-vulnerability-indicator-sensitive"]
    listed = {c["code"] for inc in vs["compose"]["include"] for c in inc["concept"]}
    assert listed == SENSITIVE_INDICATORS


def test_region_hierarchy_and_nis_codes():
    cs = _cs_by_id("bib-region")
    assert cs["hierarchyMeaning"] == "part-of"
    top = {c["code"]: c for c in cs["concept"]}
    assert set(top) == {"region-flanders", "region-wallonia", "region-brussels-capital"}
    zones = {c["code"] for c in top["region-brussels-capital"]["concept"]}
    assert len(zones) == 5 and "zorgzone-zuid-oost" in zones
    provinces = {
        c["code"] for r in ("region-flanders", "region-wallonia") for c in top[r]["concept"]
    }
    assert provinces == set(PROVINCE_NIS.values())
    codes = _codes(cs["url"])
    for nis, code in PROVINCE_NIS.items():
        values = [p["valueString"] for p in codes[code]["property"] if p["code"] == "nis-code"]
        assert values == [nis], code


# --------------------------------------------------------------------------- ValueSets


@pytest.mark.parametrize("name", _ids("ValueSet"))
def test_valueset_references(name: str):
    vs = _load(BIB_DIR / name)
    includes = vs["compose"]["include"]
    assert includes
    shipped = _resources("CodeSystem")
    for inc in includes:
        system = inc.get("system")
        assert system, "every include needs a system"
        assert system in shipped or system in EXTERNAL_SYSTEMS, system
        assert not ("concept" in inc and "filter" in inc)
        if system not in shipped:
            continue
        codes = _codes(system)
        for c in inc.get("concept", []):
            assert c["code"] in codes, f"{c['code']} not in {system}"
            if "display" in c:
                assert c["display"] == codes[c["code"]]["display"]
        for f in inc.get("filter", []):
            if f["property"] == "concept":
                assert f["value"] in codes, f


def test_every_codesystem_has_all_codes_valueset():
    vs_ids = {v["id"] for v in _resources("ValueSet").values()}
    for cs in _resources("CodeSystem").values():
        assert cs["id"] in vs_ids


# --------------------------------------------------------------------------- ConceptMaps


@pytest.mark.parametrize("name", _ids("ConceptMap"))
def test_conceptmap_codes_exist(name: str):
    cm = _load(MAPPINGS_DIR / name)
    shipped = _resources("CodeSystem")
    assert cm["group"]
    for group in cm["group"]:
        src, tgt = group["source"], group["target"]
        assert src in shipped or src in EXTERNAL_SYSTEMS, src
        assert tgt in shipped or tgt in EXTERNAL_SYSTEMS, tgt
        sources = [e["code"] for e in group["element"]]
        assert len(sources) == len(set(sources)), "duplicate source codes"
        for el in group["element"]:
            if src in shipped:
                assert el["code"] in _codes(src), el["code"]
            elif src in (NIS_MUNICIPALITY, NIS_REFNIS):
                assert re.match(r"^\d{5}$", el["code"]), el["code"]
            assert el["target"], el["code"]
            for t in el["target"]:
                assert t["equivalence"] in R4_EQUIVALENCE
                if t["equivalence"] in {"narrower", "inexact"}:
                    assert t.get("comment"), f"cmd-1: {el['code']} -> {t['code']}"
                if tgt in shipped:
                    assert t["code"] in _codes(tgt), t["code"]
                    if "display" in t:
                        assert t["display"] == _codes(tgt)[t["code"]]["display"]
                else:
                    assert t["code"].strip()


def test_nis_conceptmap_coverage():
    cm = _resources("ConceptMap")[f"{BASE}/ConceptMap/bib-nis-municipality-to-region"]
    region_cs = f"{BASE}/CodeSystem/bib-region"
    groups = {g["source"]: g for g in cm["group"]}
    assert set(groups) == {NIS_MUNICIPALITY, NIS_REFNIS}
    assert all(g["target"] == region_cs for g in cm["group"])
    zones = {
        c["code"]
        for c in _walk(_cs_by_id("bib-region")["concept"])
        if c["code"].startswith("zorgzone-")
    }

    muni = {e["code"]: e for e in groups[NIS_MUNICIPALITY]["element"]}
    assert set(muni) == BRUSSELS_MUNICIPALITIES
    for code, el in muni.items():
        targets = {t["code"]: t["equivalence"] for t in el["target"]}
        assert targets.get("region-brussels-capital") == "wider", code
        assert set(targets) - {"region-brussels-capital"} <= zones, code
        assert len(targets) >= 2, f"{code} has no care zone"

    refnis = {e["code"]: [t["code"] for t in e["target"]] for e in groups[NIS_REFNIS]["element"]}
    for nis, province in PROVINCE_NIS.items():
        assert refnis.get(nis) == [province], nis
    assert refnis.get("04000") == ["region-brussels-capital"]


def test_cd_hcparty_targets_exist_in_the_shipped_be_core_copy():
    hcparty = {
        c["code"] for c in _walk(_load(BE_CORE_DIR / "CodeSystem-cd-hcparty.json")["concept"])
    }
    for cm in _resources("ConceptMap").values():
        for group in cm["group"]:
            if group["target"] != CD_HCPARTY:
                continue
            for el in group["element"]:
                for t in el["target"]:
                    assert t["code"] in hcparty, f"{el['code']} -> {t['code']}"


# ------------------------------------------------------------------- be-core and supplements

# The be-core files are the upstream artefacts, unchanged (see terminology/be-core/README.md):
# the first 32 hex digits of their SHA-256.
BE_CORE_SHA256 = {
    "CodeSystem-be-cs-care-location.json": "21a1f51025e37d5aaf773ee6e623841e",
    "CodeSystem-cd-civilstate.json": "8a7f02faca9ca3e2e1ea0ff9eb4b9bf6",
    "CodeSystem-cd-contact-person.json": "28019cedc780f8c64d10c8daaea355ad",
    "CodeSystem-cd-fed-country.json": "2559e831fbff2420d9bc8596ea2a0118",
    "CodeSystem-cd-hcparty.json": "fc25a3d81d7a279ab850337670645eb5",
    "ValueSet-be-civilstate.json": "b06376d1cd88b9a934455d4d734b0d88",
    "ValueSet-be-contactperson.json": "b2e192b0567fb2569f6d8a9eb9b3b730",
    "ValueSet-be-vs-care-location.json": "f49129b748d381f20f9afca4a5efde60",
    "ValueSet-be-vs-cd-hcparty.json": "292262b70e4100a9a0a643df126b6cab",
    "ValueSet-be-vs-gender-at-birth.json": "e89d0b564bdf194030c453a7fee1f685",
    "ValueSet-be-vs-patient-relationship-type.json": "c4075fe57bf5b8fc8b5c5cc4c033fbe8",
}
BE_CORE_BASE = "https://www.ehealth.fgov.be/standards/fhir/core"
# code systems be-core value sets may use without them being shipped here (R4 core, SNOMED CT)
R4_CORE_SYSTEMS = {
    "http://terminology.hl7.org/CodeSystem/v3-MaritalStatus",
    "http://terminology.hl7.org/CodeSystem/v3-NullFlavor",
    "http://terminology.hl7.org/CodeSystem/v2-0131",
    "http://hl7.org/fhir/administrative-gender",
    SNOMED,
}


def _be_core_files() -> list[Path]:
    return sorted(BE_CORE_DIR.glob("*.json"))


def _supplement_files() -> list[Path]:
    return sorted(SUPPLEMENT_DIR.glob("*.json"))


def _all_code_systems() -> dict[str, dict]:
    """url -> CodeSystem for every shipped code system (BiB and be-core, not supplements)."""
    out = {}
    for path in [*BIB_DIR.glob("CodeSystem-*.json"), *BE_CORE_DIR.glob("CodeSystem-*.json")]:
        res = _load(path)
        out[res["url"]] = res
    return out


def test_be_core_files_are_the_unchanged_upstream_copies():
    names = {p.name for p in BE_CORE_DIR.iterdir() if p.is_file()}
    assert names == set(BE_CORE_SHA256) | {"README.md"}
    for name, digest in BE_CORE_SHA256.items():
        data = (BE_CORE_DIR / name).read_bytes()
        assert hashlib.sha256(data).hexdigest()[:32] == digest, f"{name} was changed"
        if SHARED_BE_CORE.is_dir():  # the reference copy, when this checkout has it
            assert data == (SHARED_BE_CORE / name).read_bytes(), name


@pytest.mark.parametrize("path", _be_core_files(), ids=lambda p: p.name)
def test_be_core_identity_and_references(path: Path):
    res = _load(path)
    assert path.name == f"{res['resourceType']}-{res['id']}.json"
    assert res["url"] == f"{BE_CORE_BASE}/{res['resourceType']}/{res['id']}"
    if res["resourceType"] == "ValueSet":
        shipped = _all_code_systems()
        for inc in res["compose"]["include"]:
            assert inc["system"] in shipped or inc["system"] in R4_CORE_SYSTEMS, inc["system"]
            if inc["system"] in shipped:
                codes = {c["code"] for c in _walk(shipped[inc["system"]]["concept"])}
                for c in inc.get("concept", []):
                    assert c["code"] in codes, c["code"]


@pytest.mark.parametrize("path", _supplement_files(), ids=lambda p: p.name)
def test_supplement_structure(path: Path):
    sup = _load(path)
    assert sup["resourceType"] == "CodeSystem"
    assert path.name == f"CodeSystem-{sup['id']}.json"
    assert ID_RE.match(sup["id"]) and sup["id"].startswith("bib-supplement-")
    assert sup["url"] == f"{BASE}/CodeSystem/{sup['id']}"
    assert sup["content"] == "supplement"
    assert sup["publisher"] == PUBLISHER and sup["version"] == VERSION
    assert set(sup) - R4_ELEMENTS["CodeSystem"] == set()
    target_url, _, target_version = sup["supplements"].partition("|")
    target = _all_code_systems().get(target_url)
    assert target is not None, f"{sup['supplements']} is not a shipped code system"
    assert target_version == target["version"]
    codes = {c["code"] for c in _walk(target["concept"])}
    concepts = list(_walk(sup["concept"]))
    assert sup["count"] == len(concepts)
    for c in concepts:
        assert c["code"] in codes, c["code"]
        assert set(c) <= {"code", "designation"}, "a supplement only adds designations here"
        languages = [d["language"] for d in c["designation"]]
        assert len(languages) == len(set(languages)), c["code"]
        for d in c["designation"]:
            assert d["language"] in REQUIRED_LANGS and d["value"].strip(), d


def _designations_with_supplements(cs: dict) -> dict[str, set[str]]:
    """code -> languages of its designations, from the code system and its supplements."""
    out = {c["code"]: {d.get("language") for d in c.get("designation", [])}
           for c in _walk(cs["concept"])}  # fmt: skip
    for path in _supplement_files():
        sup = _load(path)
        if sup["supplements"].partition("|")[0] == cs["url"]:
            for c in _walk(sup["concept"]):
                out[c["code"]] |= {d["language"] for d in c["designation"]}
    return out


@pytest.mark.parametrize("url", sorted(_all_code_systems()))
def test_every_shipped_code_system_has_dutch_and_french_for_every_concept(url: str):
    cs = _all_code_systems()[url]
    for code, languages in _designations_with_supplements(cs).items():
        missing = {"nl-BE", "fr-BE"} - languages
        assert not missing, f"{cs['id']}#{code} has no {sorted(missing)} designation"


def test_be_core_concepts_have_all_four_languages_with_supplements():
    """en may be the display itself (be-core displays are English)."""
    for path in BE_CORE_DIR.glob("CodeSystem-*.json"):
        cs = _load(path)
        displays = {c["code"]: c.get("display") for c in _walk(cs["concept"])}
        for code, languages in _designations_with_supplements(cs).items():
            if displays[code]:
                languages = languages | {"en"}
            assert set(REQUIRED_LANGS) <= languages, f"{cs['id']}#{code}: {sorted(languages)}"
