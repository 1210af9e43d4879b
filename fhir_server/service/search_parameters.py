"""Stored SearchParameter resources: the registry follows them, and existing data is back-filled.

Creating or updating a SearchParameter registers it at once for new writes (status ``indexing``);
a background job then indexes the existing resources of its base types in batches, each batch in
a unit of work (so it cannot race with concurrent writes), and finally marks it ``active``: from
then on searches may use it and ``/metadata`` lists it. Until then a search on it gets an
OperationOutcome saying so (and a 400 with ``Prefer: handling=strict``). Progress is visible with
``GET [base]/SearchParameter/[id]/$reindex``, and survives restarts (jobs resume on start-up).
Deleting a SearchParameter unregisters it and drops its index rows.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from fhir_server.errors import Issue
from fhir_server.fhirpath import compile_expression
from fhir_server.json_codec import loads_trusted
from fhir_server.store.protocol import StoredVersion

log = logging.getLogger(__name__)
SEARCH_TYPES = frozenset(
    {"number", "date", "string", "token", "reference", "composite", "quantity", "uri", "special"}
)
BATCH = 500
META_PREFIX = "searchparameter-status:"
BUILTIN_PREFIX = "builtin-index:"


@dataclass(slots=True)
class ReindexJob:
    url: str
    code: str
    types: tuple[str, ...]
    total: int = 0
    done: int = 0
    state: str = "queued"  # queued | running | completed | failed
    error: str | None = None

    def as_parameters(self) -> dict[str, Any]:
        percent = (
            100
            if self.state == "completed"
            else (int(self.done * 100 / self.total) if self.total else 0)
        )
        parameters = [
            {"name": "url", "valueUri": self.url},
            {"name": "status", "valueCode": self.state},
            {"name": "indexed", "valueInteger": self.done},
            {"name": "total", "valueInteger": self.total},
            {"name": "percent", "valueInteger": percent},
        ]
        if self.error:
            parameters.append({"name": "error", "valueString": self.error})
        return {"resourceType": "Parameters", "parameter": parameters}


class SearchParameterManager:
    def __init__(self, service: Any) -> None:
        self.svc = service
        self.jobs: dict[str, ReindexJob] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._by_resource: dict[str, str] = {}  # SearchParameter id -> url
        self.on_change: list[Any] = []  # callbacks when the usable parameters change

    # -- validation (runs before the write) ----------------------------------------------------

    def validate(self, resource: dict, resource_type: str) -> list[Issue]:
        if resource_type != "SearchParameter":
            return []
        issues: list[Issue] = []
        model = self.svc.model
        kind = resource.get("type")
        if kind not in SEARCH_TYPES:
            issues.append(
                Issue(
                    "error",
                    "value",
                    f"unknown search parameter type {kind!r}",
                    "SearchParameter.type",
                )
            )
        for index, base in enumerate(resource.get("base", ())):
            if base not in ("Resource", "DomainResource") and not model.is_resource(base):
                issues.append(
                    Issue(
                        "error",
                        "value",
                        f"unknown base resource type {base!r}",
                        f"SearchParameter.base[{index}]",
                    )
                )
        expression = resource.get("expression")
        if kind not in ("special", None) and not expression:
            issues.append(
                Issue(
                    "error",
                    "required",
                    "a searchable parameter needs an expression",
                    "SearchParameter.expression",
                )
            )
        if expression:
            try:
                evaluator = compile_expression(expression, model)
                for base in resource.get("base", ()):  # fhirpathpy reports some errors late
                    if model.is_resource(base):
                        evaluator({"resourceType": base, "id": "probe"})
            except Exception as exc:  # fhirpathpy raises various parser errors
                issues.append(
                    Issue(
                        "error",
                        "invariant",
                        f"the expression does not compile: {exc}",
                        "SearchParameter.expression",
                    )
                )
        for index, component in enumerate(resource.get("component", ())):
            if self.svc.registry.definition(component.get("definition", "")) is None:
                issues.append(
                    Issue(
                        "error",
                        "not-found",
                        f"component definition {component.get('definition')!r} is "
                        "not a known SearchParameter",
                        f"SearchParameter.component[{index}].definition",
                    )
                )
        return issues

    # -- start-up ------------------------------------------------------------------------------

    async def load(self) -> None:
        after = None
        while True:
            versions, after = await self.svc.store.current_versions(
                ("SearchParameter",), after, BATCH
            )
            for version in versions:
                definition = loads_trusted(version.body)
                status = await self.svc.store.get_meta(META_PREFIX + definition.get("url", ""))
                self._register(version.id, definition, active=status == "active")
            if after is None:
                break

    # -- changes (after commit) ----------------------------------------------------------------

    def committed(self, versions: list[StoredVersion]) -> None:
        for version in versions:
            if version.type != "SearchParameter":
                continue
            old_url = self._by_resource.pop(version.id, None)
            if old_url:
                self._unregister(old_url)
            if not version.deleted and version.body is not None:
                self._register(version.id, loads_trusted(version.body), active=False)

    def _register(self, resource_id: str, definition: dict, active: bool) -> None:
        url = definition.get("url")
        if not url or definition.get("status") == "retired":
            return
        self._by_resource[resource_id] = url
        params = self.svc.registry.add_definition(
            definition, status="active" if active else "indexing"
        )
        if not active and params:
            job = ReindexJob(url, definition["code"], tuple(p.resource_type for p in params))
            self.jobs[url] = job
            self._start(job)
        elif active:
            self.jobs[url] = ReindexJob(url, definition.get("code", ""), (), state="completed")
        self._changed()

    def _unregister(self, url: str) -> None:
        params = [(p.resource_type, p.code) for p in self._params_of(url)]
        self.svc.registry.remove_definition(url)
        self.jobs.pop(url, None)
        if params:
            self._spawn(self._drop(url, params))
        self._changed()

    def _params_of(self, url: str) -> list[Any]:
        out = []
        for resource_type in self.svc.model.resource_types:
            for param in self.svc.registry.params_for(resource_type).values():
                if param.url == url:
                    out.append(param)
        return out

    async def _drop(self, url: str, params: list[tuple[str, str]]) -> None:
        codes = set()
        for resource_type, code in params:
            codes.add((resource_type, code))
            for suffix in (":text", ":of-type", ":identifier"):
                codes.add((resource_type, code + suffix))
        await self.svc.store.drop_index_rows(sorted(codes))
        await self.svc.store.set_meta(META_PREFIX + url, None)

    def _changed(self) -> None:
        for callback in self.on_change:
            callback()

    # -- the back-fill job ---------------------------------------------------------------------

    def _start(self, job: ReindexJob) -> None:
        self._spawn(self._run(job))

    def _spawn(self, coroutine: Any) -> None:
        try:
            task = asyncio.get_running_loop().create_task(coroutine)
        except RuntimeError:  # no loop (e.g. synchronous start-up): run at the next start
            coroutine.close()
            return
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, job: ReindexJob) -> None:
        svc = self.svc
        try:
            job.state = "running"
            job.total = await svc.store.count_current(job.types)
            after = None
            while True:
                versions, after = await svc.store.current_versions(job.types, after, BATCH)
                if self.jobs.get(job.url) is not job:
                    return  # superseded by an update or deleted
                async with svc.store.unit_of_work() as uow:
                    for version in versions:
                        resource = loads_trusted(version.body)
                        rows = svc.extractor.extract(resource, only={job.code})
                        await uow.add_index_rows(version, rows)
                job.done += len(versions)
                if after is None:
                    break
                await asyncio.sleep(0)  # let requests through between batches
            for param in self._params_of(job.url):
                param.status = "active"
            await svc.store.set_meta(META_PREFIX + job.url, "active")
            job.state = "completed"
            job.done = job.total
            log.info("search parameter %s is indexed (%d resources)", job.code, job.total)
            self._changed()
        except Exception as exc:  # keep the server up; the status says what happened
            job.state = "failed"
            job.error = type(exc).__name__
            log.exception("indexing search parameter %s failed", job.code)

    # -- built-in indexes added by a release (free text of a type, positions) ------------------

    async def backfill_builtin(self) -> None:
        """Index resources stored before an index existed: free text of the types that have it
        (``_content``, ``_text``) and positions (``near``). Until done, searches on them say
        they are being indexed, never return partial results silently."""
        registry = self.svc.registry
        wanted: list[tuple[str, tuple[str, ...], str]] = []
        for resource_type in self.svc.model.resource_types:
            if registry.text_enabled(resource_type):
                wanted.append((f"text:{resource_type}", ("_content", "_text"), resource_type))
            near = registry.get(resource_type, "near")
            if near is not None and near.evaluator is not None and near.type == "special":
                wanted.append((f"geo:{resource_type}", ("near",), resource_type))
        for name, codes, resource_type in wanted:
            key = BUILTIN_PREFIX + name
            if await self.svc.store.get_meta(key) == "active":
                continue
            if await self.svc.store.count_current((resource_type,)) == 0:
                await self.svc.store.set_meta(key, "active")
                continue
            params = [registry.get(resource_type, code) for code in codes]
            for param in params:
                if param is not None:
                    param.status = "indexing"
            job = ReindexJob(key, codes[0], (resource_type,))
            self.jobs[key] = job
            self._spawn(self._run_builtin(job, set(codes), key))

    async def _run_builtin(self, job: ReindexJob, codes: set[str], key: str) -> None:
        svc = self.svc
        try:
            job.state = "running"
            job.total = await svc.store.count_current(job.types)
            after = None
            while True:
                versions, after = await svc.store.current_versions(job.types, after, BATCH)
                async with svc.store.unit_of_work() as uow:
                    for version in versions:
                        rows = svc.extractor.extract(loads_trusted(version.body), only=codes)
                        await uow.add_index_rows(version, rows)
                job.done += len(versions)
                if after is None:
                    break
                await asyncio.sleep(0)
            for resource_type in job.types:
                for code in codes:
                    param = svc.registry.get(resource_type, code)
                    if param is not None:
                        param.status = "active"
            await svc.store.set_meta(key, "active")
            job.state = "completed"
            job.done = job.total
            log.info("built-in index %s is complete (%d resources)", key, job.total)
            self._changed()
        except Exception as exc:
            job.state = "failed"
            job.error = type(exc).__name__
            log.exception("indexing %s failed", key)

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def wait_idle(self) -> None:
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def status_for(self, resource_id: str) -> ReindexJob | None:
        url = self._by_resource.get(resource_id)
        return self.jobs.get(url) if url else None

    def pending_message(self, code: str) -> str | None:
        for job in self.jobs.values():
            if job.code == code and job.state != "completed":
                return (
                    f"search parameter {code!r} is still being indexed "
                    f"({job.done} of {job.total} resources); try again soon"
                )
        return None
