"""Subscription topics as data: R4 ``Basic`` resources in the shape of the Subscriptions R5
Backport IG (cross-version ``extension-SubscriptionTopic.*`` extensions), shipped in
``content/subscriptions/`` (docs/subscriptions.md).

A topic is a resource type, a trigger and filters: which interactions (create, update, delete),
search-style tests on the current and previous version (``queryCriteria``), a FHIRPath test with
``%current`` and ``%previous`` (``fhirPathCriteria``), the parameters a subscriber may filter on
(``canFilterBy``) and what a notification includes (``notificationShape``). One BiB extension,
``bib-subscription-audience``, names the references (a FHIRPath on the resource) that must
designate the subscriber's party (herself, her roles, her organisation or its roles and
services) for an event to be hers: a new referral is news for its receiving organisation, not
for everyone who may read it. What a subscriber may read is checked besides, always.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fhir_server.content.shipped import library_resources

TOPIC_EXT = "extension-SubscriptionTopic."
AUDIENCE = "https://borninbelgiumpro.be/fhir/StructureDefinition/bib-subscription-audience"
FHIR_TYPES = "http://hl7.org/fhir/fhir-types"
CORE_SD = "http://hl7.org/fhir/StructureDefinition/"


@dataclass(slots=True, frozen=True)
class Trigger:
    resource: str  # resource type
    interactions: frozenset[str]  # create | update | delete
    current: str | None = None  # search-style test on the new version
    previous: str | None = None  # ...on the version before
    result_for_create: str = "test-passes"  # what "previous" gives when there is none
    result_for_delete: str = "test-fails"  # what "current" gives for a delete
    require_both: bool = False
    fhirpath: str | None = None
    audience: str | None = None  # FHIRPath: references that must name the subscriber's party
    description: str = ""


@dataclass(slots=True, frozen=True)
class Topic:
    url: str
    title: str
    description: str
    status: str
    triggers: tuple[Trigger, ...]
    filters: dict[str, frozenset[str]] = field(default_factory=dict)  # type -> parameters
    includes: dict[str, tuple[str, ...]] = field(default_factory=dict)  # type -> Type:param

    @property
    def types(self) -> frozenset[str]:
        return frozenset(t.resource for t in self.triggers)


def _suffix(url: Any) -> str | None:
    if isinstance(url, str) and TOPIC_EXT in url:
        return url.split(TOPIC_EXT, 1)[1]
    return None


def _value(ext: dict[str, Any]) -> Any:
    for key, value in ext.items():
        if key.startswith("value"):
            return value
    return None


def _type_name(value: Any) -> str:
    text = str(value or "")
    return text[len(CORE_SD) :] if text.startswith(CORE_SD) else text


def _subs(ext: dict[str, Any]) -> list[tuple[str, Any, dict[str, Any]]]:
    out = []
    for sub in ext.get("extension", ()) or ():
        if isinstance(sub, dict) and isinstance(sub.get("url"), str):
            out.append((sub["url"], _value(sub), sub))
    return out


def parse_topic(basic: dict[str, Any]) -> Topic | None:
    """The topic of a Basic-wrapped SubscriptionTopic, or None if it is not one."""
    codes = ((basic.get("code") or {}).get("coding") or ()) if isinstance(basic, dict) else ()
    if not any(c.get("code") == "SubscriptionTopic" for c in codes if isinstance(c, dict)):
        return None
    url = title = description = ""
    status = "active"
    triggers: list[Trigger] = []
    filters: dict[str, set[str]] = {}
    includes: dict[str, list[str]] = {}
    for ext in basic.get("modifierExtension", ()) or ():
        if _suffix(ext.get("url")) == "status":
            status = str(_value(ext))
    for ext in basic.get("extension", ()) or ():
        name = _suffix(ext.get("url")) if isinstance(ext, dict) else None
        if name == "url":
            url = str(_value(ext))
        elif name == "title":
            title = str(_value(ext))
        elif name == "description":
            description = str(_value(ext))
        elif name == "status":
            status = str(_value(ext))
        elif name == "resourceTrigger":
            triggers.append(_trigger(ext))
        elif name == "canFilterBy":
            parts = {key: value for key, value, _ in _subs(ext)}
            resource = _type_name(parts.get("resource"))
            if resource and parts.get("filterParameter"):
                filters.setdefault(resource, set()).add(str(parts["filterParameter"]))
        elif name == "notificationShape":
            resource = ""
            found: list[str] = []
            for key, value, _ in _subs(ext):
                if key == "resource":
                    resource = _type_name(value)
                elif key == "include" and isinstance(value, str):
                    found.append(value)
            if resource:
                includes.setdefault(resource, []).extend(found)
    if not url or not triggers:
        return None
    return Topic(
        url,
        title,
        description,
        status,
        tuple(triggers),
        {k: frozenset(v) for k, v in filters.items()},
        {k: tuple(v) for k, v in includes.items()},
    )


def _trigger(ext: dict[str, Any]) -> Trigger:
    resource = ""
    interactions: set[str] = set()
    values: dict[str, Any] = {}
    for key, value, sub in _subs(ext):
        if key == "resource":
            resource = _type_name(value)
        elif key == "supportedInteraction":
            interactions.add(str(value))
        elif key == "queryCriteria":
            for inner, inner_value, _ in _subs(sub):
                values[inner] = inner_value
        elif key == "fhirPathCriteria":
            values["fhirpath"] = value
        elif key == AUDIENCE:
            values["audience"] = value
        elif key == "description":
            values["description"] = value
    return Trigger(
        resource=resource,
        interactions=frozenset(interactions or {"create", "update", "delete"}),
        current=values.get("current"),
        previous=values.get("previous"),
        result_for_create=values.get("resultForCreate") or "test-passes",
        result_for_delete=values.get("resultForDelete") or "test-fails",
        require_both=bool(values.get("requireBoth")),
        fhirpath=values.get("fhirpath"),
        audience=values.get("audience"),
        description=str(values.get("description") or ""),
    )


def shipped_topics() -> dict[str, Topic]:
    """The topics in ``content/subscriptions/`` by canonical URL."""
    out: dict[str, Topic] = {}
    for resource in library_resources("subscriptions", ("Basic",)):
        topic = parse_topic(resource)
        if topic is not None and topic.status != "retired":
            out[topic.url] = topic
    return out
