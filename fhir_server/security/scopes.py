"""SMART App Launch scopes, v1 and v2 (http://hl7.org/fhir/smart-app-launch/scopes-and-launch-context.html).

``(patient|user|system)/(Type|*).(c?r?u?d?s?)[?param=value&...]`` (v2) and ``.read`` / ``.write`` /
``.*`` (v1, mapped to ``rs`` / ``cud`` / ``cruds``). A scope with a query (v2 "granular" scope) only
grants what matches the query; the guard turns the query into search predicates and applies them to
every read, search and write. Scopes are an upper bound: role, care relationship, consent and
labels still apply.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import parse_qsl

V1_PERMS = {"read": "rs", "write": "cud", "*": "cruds"}
ORDER = "cruds"
CONTEXTS = ("patient", "user", "system")
# interaction -> permission letter
PERMISSION = {
    "read": "r",
    "vread": "r",
    "history-instance": "r",
    "search-type": "s",
    "search-system": "s",
    "history-type": "s",
    "history-system": "s",
    "create": "c",
    "update": "u",
    "patch": "u",
    "delete": "d",
    "operation": "r",
}


@dataclass(slots=True, frozen=True)
class ScopeRule:
    context: str  # patient | user | system
    type: str  # a resource type or "*"
    perms: frozenset[str]
    query: tuple[tuple[str, str], ...] = ()  # v2 granular restriction
    text: str = ""

    def covers(self, other: ScopeRule) -> bool:
        """Whether this (allowed) scope includes everything ``other`` (requested) asks for."""
        return (
            self.context == other.context
            and self.type in ("*", other.type)
            and other.perms <= self.perms
            and (not self.query or self.query == other.query)
        )


def parse_rule(text: str) -> ScopeRule | None:
    """A resource scope, or None if ``text`` is not one (or is malformed)."""
    if "/" not in text:
        return None
    context, _, rest = text.partition("/")
    if context not in CONTEXTS or "." not in rest:
        return None
    type_, _, perm_part = rest.partition(".")
    if not type_ or not (type_ == "*" or (type_[0].isupper() and type_.isalnum())):
        return None
    perm_text, mark, query_text = perm_part.partition("?")
    if mark and not query_text:
        return None
    if perm_text in V1_PERMS:
        if query_text:
            return None
        perms = V1_PERMS[perm_text]
    else:
        perms = perm_text
        if not perms or any(p not in ORDER for p in perms):
            return None
        positions = [ORDER.index(p) for p in perms]
        if positions != sorted(set(positions)):  # v2 letters must be unique and in order
            return None
    query: tuple[tuple[str, str], ...] = ()
    if query_text:
        try:
            query = tuple(parse_qsl(query_text, keep_blank_values=False, strict_parsing=True))
        except ValueError:
            return None
        if not query:
            return None
    return ScopeRule(context, type_, frozenset(perms), query, text)


@dataclass(slots=True)
class ScopeSet:
    rules: tuple[ScopeRule, ...]
    other: frozenset[str]  # launch, openid, fhirUser, offline_access, launch/patient...
    _grants: dict[tuple[str, str], tuple[ScopeRule, ...]] = field(default_factory=dict)

    @classmethod
    def parse(cls, scope: str | None) -> ScopeSet:
        rules: list[ScopeRule] = []
        other: set[str] = set()
        for text in (scope or "").split():
            rule = parse_rule(text)
            if rule is not None:
                rules.append(rule)
            elif "/" not in text or text.startswith("launch/"):
                other.add(text)
            # anything else (a malformed resource scope) grants nothing
        return cls(tuple(rules), frozenset(other))

    def grants(self, type_: str, perm: str) -> tuple[ScopeRule, ...]:
        """The rules that grant ``perm`` on ``type_`` (cached: called on every request)."""
        key = (type_, perm)
        found = self._grants.get(key)
        if found is None:
            found = tuple(r for r in self.rules if perm in r.perms and r.type in ("*", type_))
            self._grants[key] = found
        return found

    def any_grant(self, perm: str) -> bool:
        return any(perm in r.perms for r in self.rules)

    def contexts(self) -> frozenset[str]:
        return frozenset(r.context for r in self.rules)

    def text(self) -> str:
        return " ".join([*(r.text for r in self.rules), *sorted(self.other)])


def narrow(requested: str, allowed: str) -> str:
    """The part of ``requested`` that ``allowed`` (a client's registered scopes) permits."""
    allowed_set = ScopeSet.parse(allowed)
    granted: list[str] = []
    for text in dict.fromkeys(requested.split()):
        rule = parse_rule(text)
        if rule is None:
            if text in allowed_set.other:
                granted.append(text)
            continue
        if any(a.covers(rule) for a in allowed_set.rules):
            granted.append(text)
    return " ".join(granted)
