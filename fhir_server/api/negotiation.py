"""Content negotiation: Accept, _format, Content-Type and Prefer, as FHIR clients send them."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from fhir_server.errors import FhirError

FHIR_JSON = "application/fhir+json"
JSON_TYPES = frozenset(
    {
        "application/fhir+json",
        "application/json",
        "application/json+fhir",
        "text/json",
    }
)
BODY_TYPES = JSON_TYPES | {"application/json-patch+json", "application/merge-patch+json"}
FORM = "application/x-www-form-urlencoded"
XML_HINTS = ("xml",)
FORMAT_ALIASES = frozenset(
    {
        "json",
        "fhir+json",
        "application/json",
        "application/fhir+json",
        "application/json+fhir",
        "text/json",
    }
)


def _media_type(value: str) -> tuple[str, dict[str, str]]:
    main, *params = value.split(";")
    parsed: dict[str, str] = {}
    for param in params:
        key, _, val = param.partition("=")
        parsed[key.strip().lower()] = val.strip().strip('"')
    return main.strip().lower(), parsed


def _check_fhir_version(params: dict[str, str]) -> None:
    version = params.get("fhirversion")
    if version is not None and not version.startswith("4.0"):
        raise FhirError(
            406, "not-supported", f"this server speaks FHIR 4.0 (R4), not fhirVersion={version}"
        )


@lru_cache(maxsize=256)
def check_accept(accept: str | None, format_param: str | None) -> None:
    """Raise 406 unless the client accepts JSON (the only format this server writes)."""
    if format_param is not None:
        lowered = format_param.strip().lower().replace(" ", "+")
        if any(h in lowered for h in XML_HINTS):
            raise FhirError(
                406,
                "not-supported",
                "XML is not supported; use _format=json or application/fhir+json",
            )
        if (
            lowered not in FORMAT_ALIASES
            and not lowered.startswith("html")
            and (lowered != "text/html")
        ):
            raise FhirError(406, "not-supported", f"unsupported _format {format_param!r}")
        return
    if not accept:
        return
    acceptable = False
    for item in accept.split(","):
        media, params = _media_type(item)
        if params.get("q") in ("0", "0.0", "0.00", "0.000"):
            continue
        if media in JSON_TYPES:
            _check_fhir_version(params)
            acceptable = True
        elif media in ("*/*", "application/*", "text/html", "text/*", "application/fhir"):
            acceptable = True
    if not acceptable:
        raise FhirError(
            406,
            "not-supported",
            "this server answers in JSON only (application/fhir+json); "
            f"the Accept header {accept[:100]!r} allows none of that",
        )


def body_type(content_type: str | None) -> str:
    """The media type of a request body, or 415 if it is not one the server reads."""
    if not content_type:
        return FHIR_JSON
    media, params = _media_type(content_type)
    if media in BODY_TYPES:
        _check_fhir_version(params)
        charset = params.get("charset")
        if charset and charset.lower().replace("-", "") not in ("utf8",):
            raise FhirError(415, "not-supported", "request bodies must be UTF-8")
        return media
    if media == FORM:
        return media
    if "xml" in media:
        raise FhirError(415, "not-supported", "XML is not supported; send application/fhir+json")
    raise FhirError(415, "not-supported", f"unsupported Content-Type {media!r}")


@dataclass(slots=True, frozen=True)
class Preferences:
    return_: str = "representation"
    handling: str = "lenient"


@lru_cache(maxsize=64)
def parse_prefer(header: str | None) -> Preferences:
    return_, handling = "representation", "lenient"
    for item in (header or "").split(","):
        for token in item.split(";"):
            key, _, value = token.strip().partition("=")
            value = value.strip().strip('"')
            if key.lower() == "return" and value in (
                "minimal",
                "representation",
                "OperationOutcome",
            ):
                return_ = value
            elif key.lower() == "handling" and value in ("strict", "lenient"):
                handling = value
    return Preferences(return_, handling)
