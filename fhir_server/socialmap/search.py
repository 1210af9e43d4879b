"""The social map's own search semantics, plugged into the parser by SearchParameter URL.

- ``coverage``: an area code (a 5-digit NIS municipality, or a bib-region code: care zone,
  eerstelijnszone, province, region) matches services whose coverage lists the area itself or any
  wider area containing it. Municipality -> zones comes from the ConceptMaps in ``mappings/``
  (read from the live terminology, so an edited ConceptMap applies at once); zone -> province ->
  region from the ``part-of`` hierarchy of bib-region.
- ``stale``: ``true`` = not verified for longer than the configured time (default 12 months), or
  no longer in its source; ``false`` = the others. Turned into ``last-verified`` and
  ``verification-status`` predicates at query time, so nothing needs re-indexing as time passes.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from fhir_server.errors import bad_request
from fhir_server.search.dates import date_range
from fhir_server.search.registry import SearchParam
from fhir_server.socialmap import model
from fhir_server.store.query import ANY_SYSTEM, DatePred, MissingPred, NotPred, Pred, TokenPred


class CoverageResolver:
    def __init__(self, svc: Any) -> None:
        self.svc = svc

    def _catalog(self) -> Any:
        terminology = getattr(self.svc, "terminology", None)
        if terminology is not None:
            return terminology.catalog
        from fhir_server.terminology.catalog import default_catalog

        return default_catalog()

    def wider(self, system: str, code: str) -> set[tuple[str, str]]:
        """The area and every area containing it, as (system, code)."""
        catalog = self._catalog()
        found: set[tuple[str, str]] = {(system, code)}
        regions: list[str] = []
        if system == model.NIS:
            for url in model.COVERAGE_MAPS:
                concept_map = catalog.concept_maps.get(url)
                for group in (concept_map or {}).get("group", ()):
                    if group.get("source") != model.NIS:
                        continue
                    for element in group.get("element", ()):
                        if element.get("code") == code:
                            regions.extend(
                                t["code"]
                                for t in element.get("target", ())
                                if t.get("equivalence") in ("wider", "inexact", "equivalent")
                                and t.get("code")
                            )
        elif system == model.CS_REGION:
            regions.append(code)
        info = catalog.code_systems.get(model.CS_REGION)
        for region in regions:
            current: str | None = region
            while current:
                found.add((model.CS_REGION, current))
                concept = info.concepts.get(current) if info is not None else None
                current = concept.parent if concept is not None else None
        return found

    def handle(self, param: SearchParam, modifier: str, value: str) -> tuple[Pred, ...]:
        if modifier:
            raise bad_request(f"modifier :{modifier} is not valid on {param.code!r}")
        preds: list[Pred] = []
        for raw in value.split(","):
            system, bar, code = raw.rpartition("|")
            if not bar:
                code = raw
                system = model.NIS if code.isdigit() and len(code) == 5 else model.CS_REGION
            if not code:
                raise bad_request(f"{param.code}: give an area code, e.g. 21009 or zorgzone-zuid")
            for area_system, area in sorted(self.wider(system, code)):
                preds.append(TokenPred(param.code, area_system, area))
        return tuple(dict.fromkeys(preds))


class StaleHandler:
    def __init__(self, months: int) -> None:
        self.months = months

    def cutoff(self, today: dt.date | None = None) -> dt.date:
        today = today or dt.date.today()
        month = today.month - 1 - self.months
        year = today.year + month // 12
        month = month % 12 + 1
        day = min(today.day, 28)
        return dt.date(year, month, day)

    def is_stale(self, last_verified: str | None, status: str | None) -> bool:
        if status == "missing-from-source":
            return True
        if not last_verified:
            return True
        return last_verified[:10] < self.cutoff().isoformat()

    def handle(self, param: SearchParam, modifier: str, value: str) -> tuple[Pred, ...]:
        if modifier:
            raise bad_request(f"modifier :{modifier} is not valid on {param.code!r}")
        if value not in ("true", "false"):
            raise bad_request(f"{param.code} takes true or false, got {value!r}")
        bounds = date_range(self.cutoff().isoformat())
        assert bounds is not None
        old = DatePred("last-verified", "lt", bounds[0], bounds[1])
        gone = TokenPred("verification-status", ANY_SYSTEM, "missing-from-source")
        unknown = MissingPred("last-verified", "dates", True)
        if value == "true":
            return (old, gone, unknown)
        return (NotPred((old, gone, unknown)),)
