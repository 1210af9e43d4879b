"""Social-map resources on the way out: names and descriptions in the caller's language, and
services not verified recently marked stale.

Plugged in with ``service.add_output_hook(type, hook)`` (a generic hook of the service layer,
called for reads and search entries of the registered types only), so the core knows nothing of
languages or staleness.

Language: ``Accept-Language`` (nl, fr, en, with q-values; ``terminology/languages.py`` parses it)
picks, per resource, the first requested language the resource has: its own ``language`` or a
``translation`` extension on ``name`` (HealthcareService, Organization, Location). The chosen
text becomes the element's value, the text it replaces moves into a translation (nothing is lost),
``Resource.language`` says which language the resource now speaks, and the response carries
``Content-Language`` (the languages used) and ``Vary: Accept-Language``.
"""

from __future__ import annotations

from typing import Any

from fhir_server.service.context import RequestContext
from fhir_server.socialmap import model
from fhir_server.socialmap.search import StaleHandler
from fhir_server.terminology.languages import parse_accept_language

TRANSLATED = {
    "HealthcareService": ("name", "comment", "extraDetails"),
    "Organization": ("name",),
    "Location": ("name", "description"),
}
STALE_TAG = {
    "system": model.CS_STATUS,
    "code": "stale",
    "display": "Not verified recently",
}


def _primary(tag: str) -> str:
    return tag.split("-", 1)[0].lower()


def translations(resource: dict[str, Any], element: str) -> dict[str, tuple[int, str]]:
    """lang (primary subtag) -> (index in the extension list, text)."""
    found: dict[str, tuple[int, str]] = {}
    shadow = resource.get("_" + element)
    if not isinstance(shadow, dict):
        return found
    for index, extension in enumerate(shadow.get("extension") or ()):
        if not isinstance(extension, dict) or extension.get("url") != model.TRANSLATION:
            continue
        lang = content = None
        for part in extension.get("extension") or ():
            if part.get("url") == "lang":
                lang = part.get("valueCode")
            elif part.get("url") == "content":
                content = part.get("valueString") or part.get("valueMarkdown")
        if isinstance(lang, str) and isinstance(content, str):
            found.setdefault(_primary(lang), (index, content))
    return found


def translated(resource: dict[str, Any], element: str, lang: str) -> str | None:
    """The text of ``element`` in ``lang`` (its value or a translation), for clients and tests."""
    own = resource.get("language")
    if isinstance(own, str) and _primary(own) == lang:
        return resource.get(element)
    hit = translations(resource, element).get(lang)
    return hit[1] if hit else None


def switch_language(resource: dict[str, Any], fields: tuple[str, ...], lang: str) -> bool:
    """Make ``lang`` the language of the resource's translatable fields; False when it has no
    text in that language."""
    own = resource.get("language")
    own_primary = _primary(own) if isinstance(own, str) else None
    if own_primary == lang:
        return True
    available = [f for f in fields if lang in translations(resource, f)]
    if not available:
        return False
    for element in available:
        index, text = translations(resource, element)[lang]
        shadow = resource["_" + element]
        old = resource.get(element)
        if isinstance(old, str) and own_primary:
            content_key = "valueMarkdown" if element == "extraDetails" else "valueString"
            shadow["extension"][index] = {
                "url": model.TRANSLATION,
                "extension": [
                    {"url": "lang", "valueCode": own},
                    {"url": "content", content_key: old},
                ],
            }
        else:
            del shadow["extension"][index]
        resource[element] = text
    resource["language"] = lang
    return True


class OutputHook:
    def __init__(self, stale: StaleHandler) -> None:
        self.stale = stale

    def __call__(self, ctx: RequestContext, resource: dict[str, Any]) -> bool:
        changed = False
        fields = TRANSLATED.get(resource.get("resourceType", ""), ())
        wanted = [
            _primary(tag)
            for tag in parse_accept_language(ctx.accept_language)
            if _primary(tag) in model.LANGUAGES
        ]
        if fields and wanted:
            ctx.response_headers["Vary"] = "Accept-Language"
            for lang in wanted:
                before = resource.get("language")
                if switch_language(resource, fields, lang):
                    changed = changed or resource.get("language") != before
                    used = ctx.response_headers.get("Content-Language", "")
                    langs = [x for x in used.split(", ") if x]
                    if lang not in langs:
                        langs.append(lang)
                    ctx.response_headers["Content-Language"] = ", ".join(langs)
                    break
        if resource.get("resourceType") == "HealthcareService" and self._is_stale(resource):
            meta = resource.setdefault("meta", {})
            tags = meta.setdefault("tag", [])
            if not any(t.get("system") == model.CS_STATUS for t in tags):
                tags.append(dict(STALE_TAG))
                changed = True
        return changed

    def _is_stale(self, resource: dict[str, Any]) -> bool:
        last = status = None
        for extension in resource.get("extension") or ():
            if extension.get("url") == model.EXT_VERIFICATION:
                for part in extension.get("extension") or ():
                    if part.get("url") == "lastVerified":
                        last = part.get("valueDate")
                    elif part.get("url") == "status":
                        status = part.get("valueCode")
        return self.stale.is_stale(last, status)


class StripComputedTags:
    """The stale tag is computed on the way out; a client that writes it back does not store it."""

    async def before(self, ctx: Any, resource: dict, current: Any) -> None:
        if resource.get("resourceType") != "HealthcareService":
            return
        meta = resource.get("meta")
        if isinstance(meta, dict) and isinstance(meta.get("tag"), list):
            meta["tag"] = [t for t in meta["tag"] if t.get("system") != model.CS_STATUS]
            if not meta["tag"]:
                del meta["tag"]

    async def after(self, ctx: Any, uow: Any, written: Any, previous: Any) -> None:
        return None
