"""Importing social-map records: De Sociale Kaart, Bruxelles Social, Open Referral HSDS 3.0.

1. The file is parsed (a malformed file is refused as a whole, with the line and column).
2. Every record is validated against its format's JSON Schema (schemas/), checked for a
   duplicate source id, and mapped (formats.py, with the tables in mappings/); a record that
   fails is *rejected* with its reason and JSON pointer, and the others go on.
3. Records are matched on their source id: the resources of a record have ids derived from it
   (build.py), so a re-import finds them. A resource whose content is unchanged is not written
   (no new version). ``lastVerified`` comes from the record's own date; without one, an
   unchanged record keeps the date it has.
4. Changes are written in batches of ``batch_size`` records (default 100, in file order), each
   batch one transaction Bundle through the service's write path (validation, write hooks,
   guard, Provenance and audit with the caller's context): a batch is written whole or not at
   all, and a failed batch is reported with its records. Updates carry ``If-Match``, so a service
   edited by someone during the import fails its batch instead of being overwritten unseen.
5. With ``full``, the file is a full export of its source: services of that source whose source
   id is not in the file (rejected records count as present) are marked
   ``missing-from-source``: stale, never deleted (referrals point at them).
``dry_run`` does steps 1-3 and 5 and writes nothing.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from fhir_server.errors import FhirError
from fhir_server.json_codec import dumps, loads_trusted
from fhir_server.service.context import RequestContext
from fhir_server.socialmap import model
from fhir_server.socialmap.importer.build import build
from fhir_server.socialmap.importer.formats import FORMATS, Rejected
from fhir_server.store.protocol import StoredVersion
from fhir_server.store.query import Query, TokenPred

DEFAULT_BATCH = 100
log = logging.getLogger(__name__)


@dataclass
class Report:
    format: str
    dry_run: bool
    full: bool
    records: int = 0
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)
    rejected: list[dict[str, str]] = field(default_factory=list)
    failed: list[dict[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    written: int = 0  # resource versions written
    # resources written (or being written) by this import's batches: a later batch reads them
    # through its unit of work, which sees them before they are committed
    touched: set[tuple[str, str]] = field(default_factory=set, repr=False)

    def counts(self) -> dict[str, int]:
        return {
            "created": len(self.created),
            "updated": len(self.updated),
            "unchanged": len(self.unchanged),
            "marked stale": len(self.stale),
            "rejected": len(self.rejected),
            "failed": len(self.failed),
        }

    def rate(self) -> float:
        return self.records / self.seconds if self.seconds > 0 else 0.0

    def as_parameters(self) -> dict[str, Any]:
        parameters: list[dict[str, Any]] = [
            {"name": "format", "valueCode": self.format},
            {"name": "dryRun", "valueBoolean": self.dry_run},
            {"name": "full", "valueBoolean": self.full},
            {"name": "records", "valueInteger": self.records},
        ]
        parameters += [
            {"name": name.replace(" ", "-"), "valueInteger": count}
            for name, count in self.counts().items()
        ]
        for outcome, ids in (
            ("created", self.created),
            ("updated", self.updated),
            ("stale", self.stale),
        ):
            parameters += [
                {"name": f"{outcome}-service", "valueString": f"HealthcareService/{i}"} for i in ids
            ]
        for item in self.rejected + self.failed:
            parts = [{"name": k, "valueString": v} for k, v in item.items() if v]
            parameters.append({"name": "rejected-record", "part": parts})
        return {"resourceType": "Parameters", "parameter": parameters}


@dataclass
class _Planned:
    source_id: str
    pointer: str
    resources: list[dict[str, Any]]
    own_date: bool


def _strip(resource: dict[str, Any]) -> dict[str, Any]:
    out = dict(resource)
    meta = out.pop("meta", None) or {}
    if meta.get("profile"):
        out["meta"] = {"profile": meta["profile"]}
    return out


def _verification(resource: dict[str, Any]) -> dict[str, Any] | None:
    for extension in resource.get("extension") or ():
        if extension.get("url") == model.EXT_VERIFICATION:
            return extension
    return None


def _part(extension: dict[str, Any] | None, name: str) -> dict[str, Any] | None:
    for part in (extension or {}).get("extension") or ():
        if part.get("url") == name:
            return part
    return None


def parse_file(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise FhirError(
            400,
            "invalid",
            f"the file is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
        ) from exc


async def run_import(
    svc: Any,
    ctx: RequestContext,
    format_name: str,
    raw: bytes,
    *,
    dry_run: bool = False,
    full: bool = False,
    batch_size: int = DEFAULT_BATCH,
    verified_on: str | None = None,
    options: dict[str, Any] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Report:
    started = time.perf_counter()
    fmt = FORMATS.get(format_name)
    if fmt is None:
        raise FhirError(400, "invalid", f"unknown format {format_name!r}; use {', '.join(FORMATS)}")
    options = options or {}
    verified_on = verified_on or dt.date.today().isoformat()
    report = Report(format_name, dry_run, full)
    data = parse_file(raw)
    try:
        records = fmt.records(data)
    except Rejected as exc:
        raise FhirError(400, "invalid", exc.reason) from exc
    report.records = len(records)
    seen: dict[str, str] = {}
    planned: list[_Planned] = []
    source = None
    system = None
    for pointer, record in records:
        source_id = None
        try:
            fmt.validate(record)
            source_id = fmt.source_id(record)
            if source_id in seen:
                raise Rejected(f"duplicate source id {source_id!r} (first at {seen[source_id]})")
            seen[source_id] = pointer or "/"
            mapped = fmt.map(record, options)
            source, system = mapped.source, mapped.identifier_system
            planned.append(
                _Planned(
                    source_id, pointer, build(mapped, verified_on), mapped.last_verified is not None
                )
            )
        except Rejected as exc:
            report.rejected.append(
                {
                    "record": pointer or "/",
                    "pointer": (pointer + exc.pointer) or "/",
                    "sourceId": source_id or "",
                    "reason": exc.reason,
                }
            )
        except (KeyError, TypeError, ValueError) as exc:  # a shape the schema let through
            report.rejected.append(
                {
                    "record": pointer or "/",
                    "pointer": pointer or "/",
                    "sourceId": source_id or "",
                    "reason": f"cannot map the record ({type(exc).__name__}: {exc})",
                }
            )
    if planned and not dry_run:
        from fhir_server.service.core import Access

        # what a transaction Bundle asks of the guard; each write is then checked on its own
        await svc.authorize(ctx, Access("transaction"))
    done = len(records) - len(planned)
    if progress is not None:
        progress(done, len(records))
    # one batch is prepared and validated while the one before it commits (the store makes it
    # durable on its own thread): at most two in flight, finishing in file order
    size = max(1, batch_size)
    pending: tuple[asyncio.Future[None], int] | None = None
    for start in range(0, len(planned), size):
        batch = planned[start : start + size]
        task = asyncio.ensure_future(
            _write_batch(svc, ctx, batch, report, dry_run, start // size + 1)
        )
        if pending is not None:
            await pending[0]
            done += pending[1]
            if progress is not None:
                progress(done, len(records))
        pending = (task, len(batch))
    if pending is not None:
        await pending[0]
        done += pending[1]
        if progress is not None:
            progress(done, len(records))
    if full and source is not None and system is not None:
        await _mark_missing(svc, ctx, report, source, system, set(seen), dry_run, batch_size)
    report.seconds = time.perf_counter() - started
    return report


async def _write_batch(
    svc: Any,
    ctx: RequestContext,
    batch: list[_Planned],
    report: Report,
    dry_run: bool,
    number: int,
) -> None:
    """Match a batch's records with what is stored and write the changes in one unit of work.

    Matching reads inside the unit (its own view: what the batch before wrote is seen even
    before it is on disk), so a resource shared by records of two batches (an Organization
    offering several services) compares with its newest version."""
    if dry_run:
        lookup = await _prefetch(svc, batch, svc.store.current, set())
        changes, outcomes = await _match(batch, lookup)
        _count(report, outcomes)
        return
    try:
        async with svc.store.unit_of_work() as uow:
            lookup = await _prefetch(svc, batch, uow.current, report.touched)
            changes, outcomes = await _match(batch, lookup)
            report.touched.update((r["resourceType"], r["id"]) for r, _ in changes)
            await write_in(svc, ctx, uow, changes)
    except Exception as exc:  # FhirError, or a commit the store could not make durable
        if not isinstance(exc, FhirError):
            log.error("import batch %d failed: %s", number, type(exc).__name__)
        for item in batch:
            report.failed.append(
                {
                    "record": item.pointer or "/",
                    "pointer": item.pointer or "/",
                    "sourceId": item.source_id,
                    "reason": f"batch {number} was not written (nothing of it): {exc}",
                }
            )
        return
    report.written += len(changes)
    _count(report, outcomes)


async def _prefetch(
    svc: Any,
    batch: list[_Planned],
    current: Callable[[str, str], Awaitable[StoredVersion | None]],
    touched: set[tuple[str, str]],
) -> Callable[[str, str], Awaitable[StoredVersion | None]]:
    """The stored versions of a batch's resources, read in one query (``read_many``: one
    statement on SQLite, one ``find`` on MongoDB) instead of one read per resource. Resources
    an earlier batch of this import wrote may not be committed yet: those are read through the
    unit (``current``), which sees them. A resource changed by someone else after this read
    still fails its batch: each write carries the version read here (If-Match)."""
    keys = list(
        dict.fromkeys(
            (resource["resourceType"], resource["id"])
            for item in batch
            for resource in item.resources
            if (resource["resourceType"], resource["id"]) not in touched
        )
    )
    found = {(v.type, v.id): v for v in await svc.store.read_many(keys, None)}

    async def lookup(type_: str, id_: str) -> StoredVersion | None:
        if (type_, id_) in touched:
            return await current(type_, id_)
        return found.get((type_, id_))

    return lookup


def _count(report: Report, outcomes: list[tuple[str, str]]) -> None:
    for outcome, service_id in outcomes:
        getattr(report, outcome).append(service_id)


async def _match(
    batch: list[_Planned], current: Callable[[str, str], Awaitable[StoredVersion | None]]
) -> tuple[list[tuple[dict[str, Any], int]], list[tuple[str, str]]]:
    """(changed resources with the version they must still be at, outcome per record)."""
    changes: dict[tuple[str, str], tuple[dict[str, Any], int]] = {}
    outcomes: list[tuple[str, str]] = []
    for item in batch:
        changed = created = False
        for resource in item.resources:
            key = (resource["resourceType"], resource["id"])
            if key in changes:  # shared by two records of the batch: the later one wins
                changes[key] = (resource, changes[key][1])
                changed = True
                continue
            stored = await current(*key)
            if stored is not None and stored.body is not None:
                # as the store gives it back (decimals as Decimal), so equal content compares equal
                resource = loads_trusted(dumps(resource))
                old = loads_trusted(stored.body)
                if resource["resourceType"] == "HealthcareService" and not item.own_date:
                    # no date of its own: an unchanged record keeps its verification date
                    new_date = _part(_verification(resource), "lastVerified")
                    old_date = _part(_verification(old), "lastVerified")
                    if new_date is not None and old_date is not None:
                        candidate = loads_trusted(dumps(resource))
                        _part(_verification(candidate), "lastVerified")["valueDate"] = old_date[
                            "valueDate"
                        ]
                        if _strip(candidate) == _strip(old):
                            continue
                if _strip(resource) == _strip(old):
                    continue
                changes[key] = (resource, stored.version)
            else:
                changes[key] = (resource, 0)
                created = created or resource["resourceType"] == "HealthcareService"
            changed = True
        service_id = item.resources[-1]["id"]
        outcome = "created" if created else ("updated" if changed else "unchanged")
        outcomes.append((outcome, service_id))
    return list(changes.values()), outcomes


async def write_unit(
    svc: Any, ctx: RequestContext, changes: list[tuple[dict[str, Any], int]]
) -> None:
    """Write resources in one unit of work of their own (see write_in)."""
    _require_transactions(svc)
    async with svc.store.unit_of_work() as uow:
        await write_in(svc, ctx, uow, changes)


def _require_transactions(svc: Any) -> None:
    if not svc.store.supports_transactions:
        raise FhirError(
            400,
            "not-supported",
            "this store cannot write a batch atomically (MongoDB needs a replica set)",
        )


async def write_in(
    svc: Any, ctx: RequestContext, uow: Any, changes: list[tuple[dict[str, Any], int]]
) -> None:
    """Write resources in a unit of work: all commit together or none does.

    Each goes through the service's write path, as a PUT of a transaction would: validation
    (structure and profiles), the guard, write hooks (security labels, Provenance, ...), the
    search index. ``version`` is the version the resource must still be at (``If-Match``), 0 for
    one that must not exist yet (``If-None-Match: *``): a resource someone changed since it was
    read fails the unit instead of being overwritten unseen. (A transaction Bundle would cost
    more: it is validated whole before its entries are, and its references are rewritten.)
    """
    from fhir_server.service import crud

    _require_transactions(svc)
    for resource, version in changes:
        try:
            svc.validate(resource, resource["resourceType"])
            await crud.update_in(
                svc,
                ctx,
                uow,
                resource,
                f'W/"{version}"' if version else None,
                None if version else "*",
            )
        except FhirError as exc:
            where = f"{resource['resourceType']}/{resource.get('id')}"
            raise FhirError(
                exc.status, exc.issues[0].code, f"{where}: {exc}", issues=exc.issues
            ) from exc


async def _mark_missing(
    svc: Any,
    ctx: RequestContext,
    report: Report,
    source: str,
    system: str,
    present: set[str],
    dry_run: bool,
    batch_size: int,
) -> None:
    """Services of this source that the full export no longer lists become stale."""
    from fhir_server.service.core import Access
    from fhir_server.service.search import restrict

    await svc.authorize(ctx, Access("search-type", "HealthcareService"))
    query = Query(
        types=("HealthcareService",),
        where=[(TokenPred("source", model.CS_SOURCE, source),)],
        count=500,
    )
    await restrict(svc, ctx, query)
    missing: list[dict[str, Any]] = []
    while True:
        page = await svc.store.search(query)
        for hit in page.hits:
            resource = loads_trusted(hit.body)
            ids = [
                i.get("value")
                for i in resource.get("identifier") or ()
                if i.get("system") == system
            ]
            if not ids or ids[0] in present:
                continue
            verification = _verification(resource)
            status = _part(verification, "status")
            if status is not None and status.get("valueCode") == "missing-from-source":
                continue
            if verification is None:
                verification = {"url": model.EXT_VERIFICATION, "extension": []}
                resource.setdefault("extension", []).append(verification)
            if status is None:
                verification["extension"].append({"url": "status", "valueCode": ""})
                status = verification["extension"][-1]
            status["valueCode"] = "missing-from-source"
            version = int((resource.get("meta") or {}).get("versionId", "0") or 0)
            missing.append((resource, version))  # type: ignore[arg-type]
        if not page.has_more or not page.hits:
            break
        query.after = tuple(page.hits[-1].sort_values)
        query.snapshot = page.snapshot
        query.order_hint = page.order
    for start in range(0, len(missing), max(1, batch_size)):
        chunk = missing[start : start + batch_size]
        entries = [(_strip(r), v) for r, v in chunk]  # type: ignore[misc]
        if not dry_run:
            try:
                await write_unit(svc, ctx, entries)
            except FhirError as exc:
                report.failed += [
                    {
                        "record": "",
                        "pointer": "",
                        "sourceId": r["id"],
                        "reason": f"could not mark stale: {exc}",
                    }
                    for r, _ in chunk  # type: ignore[misc]
                ]
                continue
            report.written += len(entries)
        report.stale += [r["id"] for r, _ in chunk]  # type: ignore[misc]
