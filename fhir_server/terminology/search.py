"""Value sets for the token search modifiers ``:in`` and ``:not-in``.

R4: "the search parameter is a URI (relative or absolute) that identifies a value set". A
canonical URL (optionally ``|version``) is looked up in the catalog; ``ValueSet/[id]`` (or the
server's own absolute URL for it) names a stored ValueSet. The answer is the set of (system, code)
pairs of the expansion. A value set that is unknown or cannot be expanded here (it needs SNOMED CT,
LOINC...) is a 400: an empty result would silently claim that nothing matches.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fhir_server.errors import FhirError, bad_request
from fhir_server.terminology.catalog import Catalog, Codes, default_catalog
from fhir_server.terminology.engine import codes_of, expansion_problem, split_url

MAX_SEARCH_CODES = 20_000


def value_set_codes(
    catalog: Catalog,
    reference: str,
    base_url: str = "",
    stored: Callable[[str], dict[str, Any] | None] | None = None,
) -> Codes:
    reference = reference.strip()
    if not reference:
        raise bad_request(":in / :not-in need a value set URL")
    local = reference
    if base_url and reference.startswith(base_url.rstrip("/") + "/"):
        local = reference[len(base_url.rstrip("/")) + 1 :]
    if local.startswith("ValueSet/") and "://" not in local:
        id_ = local.split("/")[1]
        value_set = stored(id_) if stored is not None else None
        if value_set is None:
            raise bad_request(f"{local} in :in / :not-in is not a ValueSet on this server")
        label = f"ValueSet/{id_}"
    else:
        url, version = split_url(reference)
        value_set = catalog.value_sets.get(url)
        if value_set is None:
            raise bad_request(f"the value set {url} in :in / :not-in is not known to this server")
        if version and value_set.get("version") and value_set["version"] != version:
            raise bad_request(
                f"version {version} of the value set {url} is not available "
                f"(this server holds version {value_set['version']})"
            )
        label = url
    codes = codes_of(catalog, value_set)
    if codes is None:
        raise FhirError(
            400,
            "not-supported",
            f"the value set {label} cannot be expanded for :in / :not-in: "
            f"{expansion_problem(catalog, value_set)}",
        )
    if len(codes) > MAX_SEARCH_CODES:
        raise FhirError(
            400,
            "too-costly",
            f"the value set {label} has {len(codes)} codes; :in / :not-in accept value sets "
            f"of up to {MAX_SEARCH_CODES}",
        )
    return codes


def packaged_value_set_codes(reference: str) -> Codes:
    """The resolver used when no terminology service is attached to the search parser: the
    packaged R4 core and shipped terminology, canonical URLs only."""
    return value_set_codes(default_catalog(), reference)
