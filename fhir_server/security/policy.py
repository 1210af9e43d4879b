"""The security policy data, from ``mappings/`` (installed as ``fhir_server.content.mappings``).

Nothing about *which* profession gets which role, *which* resource types are admin-only or *which*
codes make a resource sensitive lives in code: it is read from three files that governance
(RIZIV/INAMI, the BiB programme) can change without a release:

- ``security-professions.csv``: CD-HCPARTY code / eHealth quality -> Role A, B or none;
- ``security-access-policy.json``: type-level rules (audit trail, append-only, admin-only types);
- ``security-labels.json``: the label policy (which content gets which ``meta.security``).
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import orjson

MAPPINGS = "fhir_server.content.mappings"
TERMINOLOGY = "fhir_server.content.terminology"


def _read(package: str, name: str) -> bytes:
    node = resources.files(package)
    for part in name.split("/"):
        node = node / part
    return node.read_bytes()


# -- professions -> roles -----------------------------------------------------------------------


@dataclass(slots=True, frozen=True)
class ProfessionTable:
    by_code: dict[str, str]  # CD-HCPARTY code -> "A" | "B" | "none"
    by_quality: dict[str, str]  # eHealth quality key -> role

    def role_of(self, codes: list[str], qualities: list[str], app_roles: list[str]) -> str | None:
        """The BiB role: A if a recognised health-care profession is held, else B if a listed
        non-health-care profession is held (or the organisation administrator granted
        ``bib-role-b``); the administrator can downgrade A to B, never upgrade. ``None`` means
        no access (unknown professions, administrative staff)."""
        roles = {self.by_code.get(c.lower()) for c in codes}
        roles |= {self.by_quality.get(q.lower()) for q in qualities}
        if "bib-role-b" in app_roles:
            roles.add("B")
        if "A" in roles and "bib-role-b" not in app_roles:
            return "A"
        if "B" in roles or ("A" in roles and "bib-role-b" in app_roles):
            return "B"
        return None


@cache
def professions() -> ProfessionTable:
    text = _read(MAPPINGS, "security-professions.csv").decode("utf-8")
    lines = [line for line in text.splitlines() if line.strip() and not line.startswith("#")]
    by_code: dict[str, str] = {}
    by_quality: dict[str, str] = {}
    for row in csv.DictReader(io.StringIO("\n".join(lines))):
        role = (row.get("role") or "").strip()
        if role not in ("A", "B", "none"):
            raise ValueError(f"security-professions.csv: bad role {role!r}")
        code = (row.get("cd_hcparty") or "").strip().lower()
        if code:
            by_code[code] = role
        for quality in (row.get("ehealth_quality") or "").split():
            by_quality.setdefault(quality.lower(), role)
    return ProfessionTable(by_code, by_quality)


# -- type-level access policy -------------------------------------------------------------------


@dataclass(slots=True, frozen=True)
class AccessPolicy:
    no_api_write: frozenset[str]
    append_only: frozenset[str]
    admin_read: frozenset[str]
    admin_write: frozenset[str]
    restricted: frozenset[str]
    role_b_no_write: frozenset[str]
    operations: dict[str, str]
    identity_elements: dict[str, tuple[str, ...]]  # type -> elements only administrators write


@cache
def access_policy() -> AccessPolicy:
    data = orjson.loads(_read(MAPPINGS, "security-access-policy.json"))

    def types(key: str) -> frozenset[str]:
        return frozenset(data.get(key, {}).get("types", ()))

    return AccessPolicy(
        types("no_api_write_types"),
        types("append_only_types"),
        types("admin_read_types"),
        types("admin_write_types"),
        types("restricted_types"),
        types("role_b_no_write_types"),
        dict(data.get("operations", {})),
        {
            type_: tuple(elements)
            for type_, elements in data.get("identity_elements", {}).get("types", {}).items()
        },
    )


# -- label policy -------------------------------------------------------------------------------

Label = tuple[str, str]  # (system, code)


@dataclass(slots=True, frozen=True)
class LabelPolicy:
    labels: dict[str, dict[str, str]]  # short name -> Coding
    restricted: frozenset[Label]  # labels that need clearance
    clearance: dict[str, frozenset[Label] | None]  # role -> readable restricted labels (None: all)
    by_type: dict[str, tuple[str, ...]]  # resource type -> label names
    by_code: dict[Label, tuple[str, ...]]  # (system, code) of any Coding -> label names
    resolve_questionnaires: bool
    by_link_id: dict[str, dict[str, tuple[str, ...]]]  # questionnaire url -> linkId -> labels

    def coding(self, name: str) -> dict[str, str]:
        return self.labels[name]

    def key(self, name: str) -> Label:
        coding = self.labels[name]
        return coding["system"], coding["code"]


def _code_system_rules(rule: dict[str, Any], by_code: dict[Label, list[str]], names: dict) -> None:
    system = orjson.loads(_read(TERMINOLOGY, rule["file"]))
    url = system["url"]
    when = rule.get("when", {})
    sensitive_indicators: dict[str, list[str]] = {}
    if "indicatorOf" in when:  # inherit from the codes the indicator property points at
        sensitive_indicators = {
            code: labels for (sys, code), labels in by_code.items() if sys == when["indicatorOf"]
        }

    def visit(concepts: list[dict]) -> None:
        for concept in concepts:
            props = {p["code"]: p for p in concept.get("property", ())}
            labels: list[str] = []
            if "value" in when:
                prop = props.get(when["property"])
                if prop is not None and prop.get("valueCode") == when["value"]:
                    labels = list(rule.get("labels", ()))
                    policy = props.get(rule.get("policyProperty", ""), {}).get("valueCoding")
                    if policy:
                        name = _label_name(names, policy)
                        if name:
                            labels.append(name)
            elif "indicatorOf" in when:
                prop = props.get(when["property"])
                target = (prop or {}).get("valueCoding", {}).get("code")
                if target in sensitive_indicators:
                    labels = [*rule.get("labels", ()), *sensitive_indicators[target]]
            if labels:
                by_code.setdefault((url, concept["code"]), []).extend(labels)
            visit(concept.get("concept", ()))

    visit(system.get("concept", ()))


def _label_name(names: dict[str, dict[str, str]], coding: dict[str, str]) -> str | None:
    for name, label in names.items():
        if label["system"] == coding.get("system") and label["code"] == coding.get("code"):
            return name
    return None


@cache
def label_policy() -> LabelPolicy:
    data = orjson.loads(_read(MAPPINGS, "security-labels.json"))
    names: dict[str, dict[str, str]] = data["labels"]
    by_code: dict[Label, list[str]] = {}
    for rule in data.get("codeSystems", ()):
        _code_system_rules(rule, by_code, names)
    for rule in data.get("codes", ()):
        by_code.setdefault((rule["system"], rule["code"]), []).extend(rule["labels"])
    by_type = {r["resourceType"]: tuple(r["labels"]) for r in data.get("types", ())}

    def key(name: str) -> Label:
        return names[name]["system"], names[name]["code"]

    clearance: dict[str, frozenset[Label] | None] = {}
    for role, allowed in data.get("clearance", {}).items():
        clearance[role] = None if "*" in allowed else frozenset(key(n) for n in allowed)
    questionnaire = data.get("questionnaireItems", {})
    return LabelPolicy(
        names,
        frozenset(key(n) for n in data.get("restricted", ())),
        clearance,
        by_type,
        {k: tuple(dict.fromkeys(v)) for k, v in by_code.items()},
        bool(questionnaire.get("resolve", False)),
        {
            url: {link: tuple(labels) for link, labels in items.items()}
            for url, items in questionnaire.get("byLinkId", {}).items()
        },
    )
