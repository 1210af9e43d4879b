"""Which language a terminology answer shows its displays in.

The ``displayLanguage`` parameter wins; otherwise the ``Accept-Language`` header (RFC 9110, with
q-values) is used. A requested tag matches a designation of the same tag (``nl-BE``) or of the same
primary language (``nl`` matches ``nl-BE``, ``de-BE`` matches ``de``, ``en-GB`` matches ``en``).
The BiB and be-core content has designations in nl-BE, fr-BE, en and de; when none of the requested
languages has a designation, the CodeSystem display is used.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from fhir_server.errors import bad_request

SNOMED = "http://snomed.info/sct"
SYNONYM = "900000000000013009"  # SNOMED CT designation use "Synonym"
MAX_TAGS = 20


def parse_accept_language(header: str | None) -> list[str]:
    """Tags in order of preference (``*`` and q=0 dropped); malformed parts are ignored."""
    if not header:
        return []
    ranked: list[tuple[float, int, str]] = []
    for position, part in enumerate(header.split(",")[:MAX_TAGS]):
        tag, *params = (p.strip() for p in part.split(";"))
        if not tag or tag == "*" or not _valid_tag(tag):
            continue
        quality = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if quality > 0:
            ranked.append((-quality, position, tag))
    return [tag for _, _, tag in sorted(ranked)]


def _valid_tag(tag: str) -> bool:
    parts = tag.split("-")
    return all(0 < len(p) <= 8 and p.isalnum() for p in parts) and parts[0].isalpha()


def requested_languages(display_language: str | None, accept_language: str | None) -> list[str]:
    """The preference list for one request: ``displayLanguage`` alone if given, else the
    header's tags."""
    if display_language is not None:
        tag = display_language.strip()
        if not _valid_tag(tag):
            raise bad_request(f"displayLanguage {display_language!r} is not a language tag")
        return [tag]
    return parse_accept_language(accept_language)


def matches(designation_language: str | None, tag: str) -> int:
    """2: same tag, 1: same primary language, 0: no match."""
    if not designation_language:
        return 0
    have, want = designation_language.lower(), tag.lower()
    if have == want:
        return 2
    return 1 if have.split("-", 1)[0] == want.split("-", 1)[0] else 0


def _use_rank(designation: dict[str, Any]) -> int:
    use = designation.get("use")
    if not use:
        return 0
    if use.get("system") == SNOMED and use.get("code") == SYNONYM:
        return 2
    return 1


def designation_for(designations: Iterable[dict[str, Any]], tag: str) -> dict[str, Any] | None:
    """The designation to show for ``tag``: an exact tag beats a primary-language match, and a
    designation without ``use`` (the preferred term) beats one marked as a synonym."""
    best: tuple[int, int] | None = None
    chosen = None
    for designation in designations:
        score = matches(designation.get("language"), tag)
        if not score or not designation.get("value"):
            continue
        key = (-score, _use_rank(designation))
        if best is None or key < best:
            best, chosen = key, designation
    return chosen


def pick_display(
    designations: Sequence[dict[str, Any]],
    display: str | None,
    languages: Sequence[str],
    display_language: str | None = None,
) -> str | None:
    """The display for the first requested language that has one; else ``display``.

    ``display_language`` is the language ``display`` itself is in (the CodeSystem's
    ``language``), so a request for that language is answered with the display.
    """
    for tag in languages:
        designation = designation_for(designations, tag)
        if designation is not None:
            return designation["value"]
        if display and display_language and matches(display_language, tag):
            return display
    return display
