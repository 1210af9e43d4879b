"""A Subscription resource read into what the server does with it, and checked.

Two shapes are accepted (docs/subscriptions.md):

- **topic-based** (Subscriptions R5 Backport IG for R4): ``criteria`` is a topic's canonical URL,
  ``_criteria.extension`` ``backport-filter-criteria`` narrows it (``Type?param=value``, the
  parameters the topic's ``canFilterBy`` allows), ``_payload.extension``
  ``backport-payload-content`` is ``empty``, ``id-only`` or ``full-resource``, ``channel``
  extensions give the heartbeat period, the timeout and the maximum events per notification;
- **classic R4**: ``criteria`` is a search (``Task?owner=Organization/x``); every create or update
  of a resource that matches it is an event. Without ``channel.payload`` the notification is an
  empty POST; with one, a notification Bundle (``id-only`` unless the payload-content extension
  says otherwise).

Only ``rest-hook`` channels; endpoints are checked by ``endpoints.EndpointPolicy``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import orjson

from fhir_server.errors import FhirError
from fhir_server.search.dates import date_range
from fhir_server.subscriptions.endpoints import Endpoint, EndpointPolicy
from fhir_server.subscriptions.matching import Criteria, parse_criteria
from fhir_server.subscriptions.topics import Topic

BACKPORT = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/"
FILTER = BACKPORT + "backport-filter-criteria"
CONTENT = BACKPORT + "backport-payload-content"
HEARTBEAT = BACKPORT + "backport-heartbeat-period"
TIMEOUT = BACKPORT + "backport-timeout"
MAX_COUNT = BACKPORT + "backport-max-count"
CONTENTS = ("empty", "id-only", "full-resource")
CLIENT_STATUSES = ("requested", "active", "off")


@cache
def config() -> dict[str, Any]:
    raw = (resources.files("fhir_server.content.mappings") / "subscriptions.json").read_bytes()
    return orjson.loads(raw)


@dataclass(slots=True, frozen=True)
class Spec:
    id: str
    status: str
    topic: Topic | None
    criteria: Criteria | None  # classic subscriptions
    filters: tuple[Criteria, ...]
    endpoint: Endpoint
    headers: tuple[tuple[str, str], ...]
    payload: str | None  # MIME type; None: an empty POST (classic)
    content: str  # empty | id-only | full-resource
    heartbeat: int | None  # seconds
    timeout: float
    max_count: int
    end: int | None  # µs

    @property
    def types(self) -> frozenset[str]:
        if self.topic is not None:
            return self.topic.types
        return frozenset({self.criteria.type}) if self.criteria else frozenset()


def invalid(text: str, where: str = "Subscription") -> FhirError:
    return FhirError(422, "invalid", text, where)


def _extensions(element: Any) -> list[dict[str, Any]]:
    if not isinstance(element, dict):
        return []
    return [e for e in element.get("extension", ()) or () if isinstance(e, dict)]


def _ext_value(extensions: list[dict[str, Any]], url: str) -> Any:
    for ext in extensions:
        if ext.get("url") == url:
            for key, value in ext.items():
                if key.startswith("value"):
                    return value
    return None


def parse_spec(
    svc: Any,
    resource: dict[str, Any],
    topics: dict[str, Topic],
    policy: EndpointPolicy,
    watched: frozenset[str],
) -> Spec:
    """Check a Subscription and read it; a 422 OperationOutcome says what is wrong."""
    settings = svc.settings
    cfg = config()
    channel = resource.get("channel") if isinstance(resource.get("channel"), dict) else {}
    channel_type = channel.get("type")
    if channel_type not in cfg["channelTypes"]:
        raise FhirError(
            422,
            "not-supported",
            f"channel type {channel_type!r} is not supported; this server delivers "
            + ", ".join(cfg["channelTypes"]),
            "Subscription.channel.type",
        )
    endpoint = policy.parse(channel.get("endpoint"))
    headers = _headers(channel.get("header"), cfg)
    raw = resource.get("criteria")
    topic = topics.get(raw) if isinstance(raw, str) else None
    criteria: Criteria | None = None
    filters: list[Criteria] = []
    filter_texts = [
        e.get("valueString")
        for e in _extensions(resource.get("_criteria"))
        if e.get("url") == FILTER
    ]
    if topic is None:
        if isinstance(raw, str) and raw.startswith(("http://", "https://")) and "?" not in raw:
            raise invalid(
                f"unknown subscription topic {raw[:100]!r}; the topics this server supports "
                "are listed in its CapabilityStatement: " + ", ".join(sorted(topics)),
                "Subscription.criteria",
            )
        if filter_texts:
            raise invalid(
                "filter criteria narrow a topic; a classic subscription puts its search in "
                "criteria",
                "Subscription.criteria",
            )
        criteria = parse_criteria(svc, raw, watched)
    else:
        if topic.status not in ("active", "draft"):
            raise invalid(f"the topic {topic.url} is {topic.status}", "Subscription.criteria")
        for text in filter_texts:
            found = parse_criteria(svc, text)
            if found.type not in topic.types:
                raise invalid(
                    f"filter {text[:80]!r} is on {found.type}; topic {topic.url} is about "
                    + ", ".join(sorted(topic.types)),
                    "Subscription.criteria",
                )
            allowed = topic.filters.get(found.type, frozenset())
            extra = sorted(found.params - allowed)
            if extra:
                raise invalid(
                    f"topic {topic.url} cannot be filtered by {', '.join(extra)} (it allows "
                    + (", ".join(sorted(allowed)) or "no filters")
                    + ")",
                    "Subscription.criteria",
                )
            filters.append(found)
    payload = channel.get("payload")
    content_ext = _ext_value(_extensions(channel.get("_payload")), CONTENT)
    if payload is not None and payload not in cfg["payloadMimeTypes"]:
        raise invalid(
            f"payload {payload!r} is not supported (use "
            + " or ".join(cfg["payloadMimeTypes"])
            + ")",
            "Subscription.channel.payload",
        )
    if content_ext is not None and content_ext not in CONTENTS:
        raise invalid(
            f"payload content {content_ext!r} is not one of {', '.join(CONTENTS)}",
            "Subscription.channel.payload",
        )
    if topic is not None and payload is None:
        payload = "application/fhir+json"
    content = content_ext or ("id-only" if payload is not None else "empty")
    channel_ext = _extensions(channel)
    heartbeat = _number(_ext_value(channel_ext, HEARTBEAT), "heartbeat period")
    if heartbeat is not None and not (
        cfg["minHeartbeatSeconds"] <= heartbeat <= cfg["maxHeartbeatSeconds"]
    ):
        raise invalid(
            f"the heartbeat period is between {cfg['minHeartbeatSeconds']} and "
            f"{cfg['maxHeartbeatSeconds']} seconds",
            "Subscription.channel",
        )
    timeout = _number(_ext_value(channel_ext, TIMEOUT), "timeout")
    if timeout is not None and not 1 <= timeout <= cfg["maxTimeoutSeconds"]:
        raise invalid(
            f"the timeout is between 1 and {cfg['maxTimeoutSeconds']} seconds",
            "Subscription.channel",
        )
    max_count = _number(_ext_value(channel_ext, MAX_COUNT), "maximum count") or 1
    if not 1 <= max_count <= cfg["maxCount"]:
        raise invalid(
            f"the maximum count is between 1 and {cfg['maxCount']}", "Subscription.channel"
        )
    end = None
    if isinstance(resource.get("end"), str):
        bounds = date_range(resource["end"])
        end = bounds[1] if bounds else None
    return Spec(
        id=str(resource.get("id") or ""),
        status=str(resource.get("status") or ""),
        topic=topic,
        criteria=criteria,
        filters=tuple(filters),
        endpoint=endpoint,
        headers=headers,
        payload=payload,
        content=content,
        heartbeat=heartbeat,
        timeout=float(timeout or settings.subscription_timeout_seconds),
        max_count=max_count,
        end=end,
    )


def _number(value: Any, what: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise invalid(f"the {what} is a whole number", "Subscription.channel")
    return value


def _headers(values: Any, cfg: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    out: list[tuple[str, str]] = []
    for raw in values or ():
        if not isinstance(raw, str) or ":" not in raw:
            raise invalid(
                f"a channel header is 'Name: value', got {str(raw)[:60]!r}",
                "Subscription.channel.header",
            )
        name, _, value = raw.partition(":")
        name, value = name.strip(), value.strip()
        if (
            not name
            or any(c in raw for c in "\r\n\0")
            or not all(c.isalnum() or c in "-_" for c in name)
        ):
            raise invalid(
                f"the channel header {name[:40]!r} is not valid", "Subscription.channel.header"
            )
        if name.lower() in cfg["forbiddenHeaders"]:
            raise invalid(
                f"the channel header {name} is set by the server", "Subscription.channel.header"
            )
        out.append((name, value))
    if len(out) > cfg["maxHeaders"]:
        raise invalid(f"at most {cfg['maxHeaders']} channel headers", "Subscription.channel.header")
    return tuple(out)
