"""Matching and delivery: from the outbox to the subscriber's endpoint, at least once, in order.

**The matcher** (one at a time in the whole deployment: it holds the ``BibSubscriptionMatcher``
lease) reads the outbox in commit order (``Store.log``) from its position, keeps a table of the
subscriptions as of that position (a Subscription's own change is in the outbox too, so it takes
effect exactly where it was committed), and for each change and each subscription on its type
decides whether it is an event of the subscription: the topic's trigger (interaction,
``queryCriteria`` on the current and previous version, ``fhirPathCriteria``), the subscriber's
filters, the topic's audience (the subscriber's party named by the resource), and what the
subscriber may read (the guard, with the subscriber's rights). Then, in one unit of work, it
numbers the events of each subscription (``BibSubscriptionState.events``), writes them
(``BibSubscriptionEvent``) and moves its position: a crash before the commit repeats the batch,
after it nothing is repeated; no event is numbered twice or skipped.

**The deliverer** of a subscription (one process at a time: it holds the subscription's lease)
sends the handshake when a subscription is requested, then its events from ``delivered + 1``
on, in order, up to ``maxCount`` per notification, records each acknowledged notification, and
sends a heartbeat when nothing was sent for the heartbeat period. A failed attempt is retried
after a back-off (``FHIR_SUBSCRIPTION_RETRY_MS``, doubling, at most a minute); after
``FHIR_SUBSCRIPTION_MAX_FAILURES`` consecutive failures (or at once for an endpoint that now
leads to a private address) the Subscription turns to ``error`` with the reason (``$status``
shows it) until its owner asks for ``requested`` again; its events wait, nothing is lost. What a
notification carries is checked again at delivery with the subscriber's rights.

Both wake at once when this process commits something for them (a store listener) and otherwise
look every ``FHIR_SUBSCRIPTION_POLL_MS`` for work committed by other processes, and after a
restart (state and position are in the store). Leases expire after
``FHIR_SUBSCRIPTION_LEASE_SECONDS``, so a process that died gives its work up.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import ssl
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson

from fhir_server.errors import FhirError
from fhir_server.fhirpath import FhirPathError, check, evaluate
from fhir_server.json_codec import loads_trusted
from fhir_server.referrals.parties import party_aliases, ref_of
from fhir_server.search.dates import format_instant
from fhir_server.service.context import RequestContext
from fhir_server.service.versioning import new_id, now_us
from fhir_server.store.protocol import StoredVersion, VersionConflict
from fhir_server.subscriptions.endpoints import EndpointPolicy, EndpointRefused
from fhir_server.subscriptions.hook import ServerContext
from fhir_server.subscriptions.matching import Criteria, matches, parse_criteria
from fhir_server.subscriptions.records import (
    EVENT,
    MATCHER,
    MATCHER_ID,
    OUTBOX,
    STATE,
    data_of,
    event_id,
    principal_from,
    put,
)
from fhir_server.subscriptions.spec import Spec, config, parse_spec
from fhir_server.subscriptions.topics import Topic, Trigger, shipped_topics

log = logging.getLogger("fhir_server.subscriptions")
BATCH = 500  # outbox records per matcher unit of work
LINGER = 0.5  # seconds an idle deliverer keeps its lease, waiting for the next event
ACK_EVERY = 0.1  # seconds between writes of a busy subscription's acknowledgements
STATUS_PROFILE = (
    "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/"
    "backport-subscription-status-r4"
)
NOTIFICATION_PROFILE = (
    "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/"
    "backport-subscription-notification-r4"
)
_METHOD = {"create": ("POST", "201"), "update": ("PUT", "200"), "delete": ("DELETE", "204")}


async def pause(event: asyncio.Event, seconds: float) -> None:
    """Wait until ``event`` is set or ``seconds`` pass. (``asyncio.timeout``, not ``wait_for``:
    on Python 3.11 a cancellation that arrives as the event is set can be lost in ``wait_for``,
    and a loop that should stop would run on.)"""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await event.wait()


@functools.cache
def tls_context() -> ssl.SSLContext:
    """The system's CA bundle, read once per process (about 30 ms each time it is read)."""
    return ssl.create_default_context()


class LeaseLost(Exception):
    """Another process holds the lease now: stop, it carries on."""


async def claim_lease(
    engine: Engine, type_: str, id_: str, blank: dict[str, Any] | None = None
) -> dict[str, Any] | None:
    """Take or renew this process's lease on a store record (the matcher's, a subscription's
    state): the record's data, or None when another process holds an unexpired lease or claimed
    it first. A lease this process holds with more than half its time left is used as it is
    (no write). Otherwise the record is read and written back in one unit of work; of two
    processes only one wins (SQLite serialises units; on MongoDB the loser's commit conflicts,
    a lost claim). ``blank``: the record to start from when there is none yet (else None)."""
    store = engine.svc.store
    holder, now = engine.instance, now_us()
    state = data_of(await store.current(type_, id_))
    if state is not None:
        owner, until = state.get("lease"), int(state.get("until", 0))
        if owner not in (None, holder) and until > now:
            return None
        if owner == holder and until - now > engine.lease_us // 2:
            return state
    elif blank is None:
        return None
    try:
        async with store.unit_of_work() as uow:
            current = await uow.current(type_, id_)
            state = data_of(current)
            if state is None:
                if blank is None:
                    return None
                state = dict(blank)
            if state.get("lease") not in (None, holder) and int(state.get("until", 0)) > now:
                return None
            state["lease"] = holder
            state["until"] = now + engine.lease_us
            await put(uow, type_, id_, state, current)
    except VersionConflict:  # another process claimed it first (optimistic stores)
        return None
    return state


@dataclass(slots=True)
class Watched:
    """A subscription as the matcher sees it."""

    spec: Spec
    principal: Any
    start: int


@dataclass(slots=True)
class Table:
    position: int
    subs: dict[str, Watched] = field(default_factory=dict)

    def on(self, type_: str) -> list[tuple[str, Watched]]:
        return [(sid, w) for sid, w in self.subs.items() if type_ in w.spec.types]


class Engine:
    """The subscriptions of one server process."""

    def __init__(self, svc: Any) -> None:
        self.svc = svc
        settings = svc.settings
        self.topics: dict[str, Topic] = shipped_topics()
        cfg = config()
        topic_types = frozenset(t for topic in self.topics.values() for t in topic.types)
        self.criteria_types = frozenset(cfg["criteriaTypes"])
        self.watched = self.criteria_types | topic_types | {"Subscription"}
        self.policy = EndpointPolicy(
            settings.subscription_allowed_hosts, settings.subscription_dns_timeout_ms / 1000
        )
        self.instance = uuid.uuid4().hex  # this process, as a lease holder
        self.poll = max(0.01, settings.subscription_poll_ms / 1000)
        self.lease_us = max(1, settings.subscription_lease_seconds) * 1_000_000
        self.matcher = Matcher(self)
        self.delivery = Delivery(self)
        self._tasks: list[asyncio.Task[None]] = []
        self.http: httpx.AsyncClient | None = None
        self._criteria: dict[tuple[str, str], Criteria] = {}
        self._aliases: dict[str, tuple[float, frozenset[str]]] = {}
        # the security layer's RelationshipIndex (set by install when security is on)
        self.relationships: Any = None
        for topic in list(self.topics.values()):
            problem = self.check_topic(topic)
            if problem:
                log.error("subscription topic %s is not usable: %s", topic.url, problem)
                self.topics.pop(topic.url)

    def check_topic(self, topic: Topic) -> str | None:
        """Why a topic cannot be used (its criteria or FHIRPath do not compile), or None."""
        for trigger in topic.triggers:
            if not self.svc.model.is_resource(trigger.resource):
                return f"{trigger.resource!r} is not a resource type"
            for text in (trigger.current, trigger.previous):
                if text:
                    try:
                        self.criteria(trigger.resource, text)
                    except FhirError as exc:
                        return exc.issues[0].diagnostics
            for expression in (trigger.fhirpath, trigger.audience):
                if expression:
                    try:
                        check(expression)
                    except FhirPathError as exc:
                        return str(exc)
        return None

    # -- lifecycle -------------------------------------------------------------------------

    def committed(self, versions: list[StoredVersion]) -> None:
        """Store listener: wake the matcher / the deliverers for what this process committed."""
        for version in versions:
            if version.type == OUTBOX:
                self.matcher.wake.set()
            elif version.type == EVENT:
                self.delivery.hint(version.id.rsplit(".", 1)[0])
            elif version.type == STATE:
                self.delivery.hint(version.id)

    async def start(self) -> None:
        if self._tasks:
            return
        self.http = httpx.AsyncClient(verify=tls_context(), follow_redirects=False, trust_env=False)
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self.matcher.loop(), name="subscriptions-matcher"),
            loop.create_task(self.delivery.loop(), name="subscriptions-delivery"),
        ]

    async def stop(self) -> None:
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.delivery.stop()
        with contextlib.suppress(Exception):
            await self.matcher.release()
        if self.http is not None:
            await self.http.aclose()
            self.http = None

    # -- helpers shared by matcher, deliverer and operations --------------------------------

    def context(self, principal: Any) -> RequestContext:
        return RequestContext(base_url=self.svc.settings.public_url, principal=principal)

    def spec_of(self, resource: dict[str, Any]) -> Spec:
        return parse_spec(self.svc, resource, self.topics, self.policy, self.watched)

    def criteria(self, type_: str, text: str) -> Criteria:
        key = (type_, text)
        found = self._criteria.get(key)
        if found is None:
            found = parse_criteria(self.svc, f"{type_}?{text}")
            self._criteria[key] = found
        return found

    async def aliases(self, principal: Any) -> frozenset[str]:
        key = f"{principal.subject}|{principal.practitioner}|{principal.organization}"
        cached = self._aliases.get(key)
        now = time.monotonic()
        if cached is not None and cached[0] > now:
            return cached[1]
        found = await party_aliases(self.svc.store, principal)
        if len(self._aliases) > 10_000:
            self._aliases.clear()
        self._aliases[key] = (now + 10.0, found)
        return found

    def hold(self, principals: list[Any]) -> None:
        if self.relationships is not None:
            for principal in principals:
                self.relationships.hold(principal)

    def release(self, principals: list[Any]) -> None:
        if self.relationships is not None:
            for principal in principals:
                self.relationships.release(principal)

    async def visible(self, principal: Any, version: StoredVersion) -> bool:
        if principal is None:
            return True
        if await self.svc.visible(self.context(principal), version):
            return True
        if self.relationships is None:
            return False
        # the subscriber's cached care relationships and shared records may predate this
        # commit (the cache hears of a commit only after it is visible in the store, and never
        # of another process's): judge a refusal once more with fresh ones
        self.relationships.forget(principal)
        return await self.svc.visible(self.context(principal), version)


# -- matching ---------------------------------------------------------------------------------


class Matcher:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.svc = engine.svc
        self.wake = asyncio.Event()
        self.table: Table | None = None

    async def loop(self) -> None:
        while True:
            self.wake.clear()
            try:
                busy = await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception:  # never let the loop die; the work is in the store
                log.exception("subscription matching failed; retrying")
                self.table = None
                busy = False
                await asyncio.sleep(1.0)
            if not busy:
                await pause(self.wake, self.engine.poll)

    async def _claim(self) -> dict[str, Any] | None:
        """Hold (take or renew) the matcher lease; the matcher's record, or None."""
        return await claim_lease(
            self.engine, MATCHER, MATCHER_ID, {"position": 0, "lease": None, "until": 0}
        )

    async def release(self) -> None:
        store, engine = self.svc.store, self.engine
        state = data_of(await store.current(MATCHER, MATCHER_ID))
        if state is None or state.get("lease") != engine.instance:
            return
        async with store.unit_of_work() as uow:
            current = await uow.current(MATCHER, MATCHER_ID)
            state = data_of(current)
            if state is not None and state.get("lease") == engine.instance:
                state["lease"], state["until"] = None, 0
                await put(uow, MATCHER, MATCHER_ID, state, current)

    async def run_once(self) -> bool:
        """Match one batch of the outbox; True if there may be more."""
        engine = self.engine
        # nothing to match: no lease taken, nothing written (a server nobody subscribes to, or
        # whose changes are all matched, writes no record of its own)
        seen = data_of(await self.svc.store.current(MATCHER, MATCHER_ID)) or {}
        if not await self.svc.store.log(OUTBOX, int(seen.get("position", 0)), 1):
            return False
        state = await self._claim()
        if state is None:
            self.table = None
            return False
        position = int(state.get("position", 0))
        if self.table is None or self.table.position != position:
            self.table = await self._load(position)
        table = self.table
        records = await self.svc.store.log(OUTBOX, position, BATCH)
        if not records:
            return False
        found: list[tuple[str, dict[str, Any]]] = []
        # every change of the batch is judged on the subscribers' relations as they are after
        # it (computed after the log was read), once per batch and subscriber
        held = [w.principal for w in table.subs.values() if w.principal is not None]
        engine.hold(held)
        try:
            for record in records:
                change = data_of(record)
                if change is None:
                    continue
                if change["t"] == "Subscription":
                    await self._reload(table, change)
                    continue
                for sid, watched in table.on(change["t"]):
                    if record.seq <= watched.start:
                        continue
                    try:
                        event = await self._match(watched, change)
                    except (FhirError, FhirPathError) as exc:
                        log.warning("subscription %s: a change could not be judged: %s", sid, exc)
                        continue
                    if event is not None:
                        found.append((sid, event))
            await self._commit(position, records[-1].seq, found)
        except BaseException:
            self.table = None  # it may be ahead of the stored position: rebuild it
            raise
        finally:
            engine.release(held)
        table.position = records[-1].seq
        return True

    async def _commit(self, position: int, upto: int, found: list[tuple[str, dict]]) -> None:
        engine = self.engine
        by_sub: dict[str, list[dict]] = {}
        for sid, event in found:
            by_sub.setdefault(sid, []).append(event)
        async with self.svc.store.unit_of_work() as uow:
            current = await uow.current(MATCHER, MATCHER_ID)
            state = data_of(current)
            if (
                state is None
                or state.get("lease") != engine.instance
                or int(state.get("position", 0)) != position
            ):
                raise LeaseLost()
            for sid, events in by_sub.items():
                state_version = await uow.current(STATE, sid)
                sub_state = data_of(state_version)
                if sub_state is None or sub_state.get("status") == "off":
                    continue
                for event in events:
                    sub_state["events"] = number = int(sub_state.get("events", 0)) + 1
                    event["n"] = number
                    await put(uow, EVENT, event_id(sid, number), event, None)
                await put(uow, STATE, sid, sub_state, state_version)
            state["position"] = upto
            state["until"] = now_us() + engine.lease_us
            await put(uow, MATCHER, MATCHER_ID, state, current)

    async def _load(self, position: int) -> Table:
        """The subscriptions as they were at ``position`` in the outbox."""
        store = self.svc.store
        table = Table(position)
        if position == 0:
            return table
        keys: list[tuple[str, str]] = []
        after = None
        while True:
            versions, after = await store.current_versions(("Subscription",), after, 500)
            keys.extend((v.type, v.id) for v in versions)
            if after is None:
                break
        for version in await store.read_many(keys, position):
            await self._register(table, version)
        return table

    async def _reload(self, table: Table, change: dict[str, Any]) -> None:
        version = await self.svc.store.version("Subscription", change["i"], change["v"])
        table.subs.pop(change["i"], None)
        if version is not None and not version.deleted:
            await self._register(table, version)

    async def _register(self, table: Table, version: StoredVersion) -> None:
        resource = data_of(version)
        if resource is None or resource.get("status") not in ("requested", "active", "error"):
            return
        state = data_of(await self.svc.store.current(STATE, version.id))
        if state is None:
            return
        try:
            spec = self.engine.spec_of(resource)
        except FhirError as exc:
            log.warning("subscription %s is not usable any more: %s", version.id, exc)
            return
        table.subs[version.id] = Watched(
            spec, principal_from(state.get("owner")), int(state.get("start", 0))
        )

    async def _match(self, watched: Watched, change: dict[str, Any]) -> dict[str, Any] | None:
        svc, engine = self.svc, self.engine
        type_, id_ = change["t"], change["i"]
        deleted = bool(change.get("d"))
        current = await svc.store.version(type_, id_, change["v"])
        previous = await svc.store.version(type_, id_, change["p"]) if change.get("p") else None
        now_res, before = data_of(current), data_of(previous)
        if current is None:
            return None
        spec = watched.spec
        ctx = engine.context(watched.principal) if watched.principal is not None else None
        interaction = "delete" if deleted else ("update" if before is not None else "create")
        if spec.topic is not None:
            hit = False
            for trigger in spec.topic.triggers:
                if trigger.resource == type_ and await self._trigger(
                    watched, trigger, interaction, now_res, before, current, previous
                ):
                    hit = True
                    break
            if not hit:
                return None
        else:
            criteria = spec.criteria
            if deleted or criteria is None or now_res is None:
                return None
            if not await matches(svc, ctx, criteria.clauses, type_, now_res, current.seq):
                return None
        focus_resource = now_res if now_res is not None else before
        focus_version = current if now_res is not None else previous
        if focus_resource is None or focus_version is None:
            return None
        for criteria in spec.filters:
            if criteria.type == type_ and not await matches(
                svc, ctx, criteria.clauses, type_, focus_resource, focus_version.seq
            ):
                return None
        if not await engine.visible(watched.principal, focus_version):
            return None  # the subscriber may not read it: no event at all
        return {
            "ts": int(change.get("ts") or current.last_updated),
            "focus": f"{type_}/{id_}/_history/{focus_version.version}",
            "i": interaction,
            "topic": spec.topic.url if spec.topic else None,
        }

    async def _trigger(
        self,
        watched: Watched,
        trigger: Trigger,
        interaction: str,
        now_res: dict | None,
        before: dict | None,
        current: StoredVersion,
        previous: StoredVersion | None,
    ) -> bool:
        engine, svc = self.engine, self.svc
        if interaction not in trigger.interactions:
            return False
        tests: list[bool] = []
        if trigger.current:
            if now_res is None:
                tests.append(trigger.result_for_delete == "test-passes")
            else:
                criteria = engine.criteria(trigger.resource, trigger.current)
                tests.append(
                    await matches(
                        svc, None, criteria.clauses, trigger.resource, now_res, current.seq
                    )
                )
        if trigger.previous:
            if before is None or previous is None:
                tests.append(trigger.result_for_create == "test-passes")
            else:
                criteria = engine.criteria(trigger.resource, trigger.previous)
                tests.append(
                    await matches(
                        svc, None, criteria.clauses, trigger.resource, before, previous.seq
                    )
                )
        if tests and not (all(tests) if trigger.require_both else any(tests)):
            return False
        focus = now_res if now_res is not None else before
        if trigger.fhirpath:
            result = evaluate(trigger.fhirpath, focus, {"current": now_res, "previous": before})
            if result != [True]:
                return False
        if trigger.audience and watched.principal is not None:
            base = svc.settings.public_url
            named = {
                ref_of(value, base)
                for value in evaluate(trigger.audience, focus)
                if isinstance(value, dict)
            }
            if not named & await engine.aliases(watched.principal):
                return False
        return True


# -- delivery -----------------------------------------------------------------------------


class Delivery:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.svc = engine.svc
        self.wake = asyncio.Event()
        self._hints: set[str] = set()
        self.workers: dict[str, asyncio.Task[None]] = {}
        self._linger: dict[str, asyncio.Event] = {}  # idle workers waiting for more work
        self._last_full = 0.0

    def hint(self, subscription: str) -> None:
        self._hints.add(subscription)
        self.wake.set()
        lingering = self._linger.get(subscription)
        if lingering is not None:
            lingering.set()

    async def loop(self) -> None:
        while True:
            self.wake.clear()
            try:
                await self.sweep()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("subscription delivery sweep failed; retrying")
                await asyncio.sleep(1.0)
            await pause(self.wake, self.engine.poll)

    async def stop(self) -> None:
        sids = list(self.workers)
        workers = list(self.workers.values())
        for task in workers:
            task.cancel()
        for task in workers:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self.workers.clear()
        for sid in sids:  # a clean shutdown gives the work up at once
            with contextlib.suppress(Exception):
                await self._release(sid, stopping=True)

    async def sweep(self) -> None:
        store = self.svc.store
        now = time.monotonic()
        candidates: list[StoredVersion] = []
        if now - self._last_full >= self.engine.poll:
            self._last_full = now
            self._hints.clear()
            after = None
            while True:
                versions, after = await store.current_versions((STATE,), after, 500)
                candidates.extend(versions)
                if after is None:
                    break
        else:
            hints, self._hints = self._hints, set()
            for sid in sorted(hints):
                version = await store.current(STATE, sid)
                if version is not None:
                    candidates.append(version)
        stamp = now_us()
        for version in candidates:
            sid = version.id
            if sid in self.workers:
                self._hints.add(sid)  # its worker ends soon; look again then
                continue
            state = data_of(version)
            if state is None or not self.due(state, stamp):
                continue
            if state.get("lease") not in (None, self.engine.instance) and state["until"] > stamp:
                continue
            self.workers[sid] = asyncio.get_running_loop().create_task(self._work(sid))

    @staticmethod
    def due(state: dict[str, Any], now: int) -> bool:
        status = state.get("status")
        end = state.get("end")
        if end and now > end and status != "off":
            return True
        if int(state.get("next", 0)) > now:
            return False
        if status == "requested":
            return bool(state.get("handshake"))
        if status != "active":
            return False
        if int(state.get("delivered", 0)) < int(state.get("events", 0)):
            return True
        heartbeat = state.get("heartbeat")
        return bool(heartbeat) and now - int(state.get("last", 0)) >= heartbeat * 1_000_000

    # -- one subscription ---------------------------------------------------------------------

    async def _claim(self, sid: str) -> dict[str, Any] | None:
        return await claim_lease(self.engine, STATE, sid)

    async def _update(
        self,
        sid: str,
        changes: dict[str, Any],
        *,
        release: bool = False,
        resource_status: str | None = None,
        error: str | None = None,
        generation: int | None = None,
    ) -> dict[str, Any]:
        """Record an outcome in the subscription's state (and its status on the Subscription)
        if this process still holds the lease."""
        for attempt in range(3):
            try:
                return await self._update_once(
                    sid,
                    dict(changes),
                    release=release,
                    resource_status=resource_status,
                    error=error,
                    generation=generation,
                )
            except VersionConflict:  # the state changed meanwhile (optimistic stores): again
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    async def _update_once(
        self,
        sid: str,
        changes: dict[str, Any],
        *,
        release: bool = False,
        resource_status: str | None = None,
        error: str | None = None,
        generation: int | None = None,
    ) -> dict[str, Any]:
        engine = self.engine
        async with self.svc.store.unit_of_work() as uow:
            current = await uow.current(STATE, sid)
            state = data_of(current)
            if state is None or state.get("lease") != engine.instance:
                raise LeaseLost()
            same = generation is None or int(state.get("gen", 0)) == generation
            if "delivered" in changes:
                changes["delivered"] = max(int(state.get("delivered", 0)), changes["delivered"])
            for key, value in changes.items():
                if key in ("status", "handshake") and not same:
                    continue  # the owner asked again meanwhile: her request stands
                state[key] = value
            if release:
                state["lease"], state["until"] = None, 0
            else:
                state["until"] = now_us() + engine.lease_us
            await put(uow, STATE, sid, state, current)
            if resource_status is not None and same:
                await self._set_status(uow, sid, resource_status, error)
        return state

    async def _set_status(self, uow: Any, sid: str, status: str, error: str | None) -> None:
        current = await uow.current("Subscription", sid)
        resource = data_of(current)
        if resource is None or resource.get("status") == "off":
            return
        if resource.get("status") == status and resource.get("error") == error:
            return
        resource["status"] = status
        if error:
            resource["error"] = error[:1000]
        else:
            resource.pop("error", None)
        ctx = ServerContext(base_url=self.svc.settings.public_url)
        await self.svc.store_version(ctx, uow, resource, current, "PUT")

    async def _work(self, sid: str) -> None:
        try:
            await self._deliver(sid)
        except LeaseLost:
            pass
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("delivery of subscription %s failed; it will be retried", sid)
            with contextlib.suppress(Exception):
                await self._update(
                    sid,
                    {"next": now_us() + 5_000_000},
                    release=True,
                )
        finally:
            self.workers.pop(sid, None)
            self.hint(sid)  # look again: more may have come meanwhile

    async def _deliver(self, sid: str) -> None:
        engine = self.engine
        state = await self._claim(sid)
        if state is None:
            return
        unsaved = False  # an acknowledged notification whose ``delivered`` is not written yet
        saved_at = time.monotonic()
        while True:
            generation = int(state.get("gen", 0))
            resource = data_of(await self.svc.store.current("Subscription", sid))
            if resource is None or resource.get("status") == "off":
                await self._update(sid, {"status": "off", "handshake": False}, release=True)
                return
            now = now_us()
            end = state.get("end")
            if end and now > end:
                await self._update(
                    sid,
                    {"status": "off", "handshake": False},
                    release=True,
                    resource_status="off",
                    generation=generation,
                )
                return
            try:
                spec = engine.spec_of(resource)
            except FhirError as exc:
                await self._fail(sid, state, exc.issues[0].diagnostics, generation, True)
                return
            if state.get("status") == "requested" and state.get("handshake"):
                ok, reason, _ = await self._send(sid, spec, state, "handshake", [])
                if not ok:
                    log.warning("subscription %s: handshake failed: %s", sid, reason)
                    await self._update(
                        sid,
                        {"status": "error", "handshake": False, "error": reason},
                        release=True,
                        resource_status="error",
                        error=f"handshake failed: {reason}",
                        generation=generation,
                    )
                    return
                state = await self._update(
                    sid,
                    {
                        "status": "active",
                        "handshake": False,
                        "error": None,
                        "failures": 0,
                        "next": 0,
                        "last": now_us(),
                    },
                    resource_status="active",
                    generation=generation,
                )
                continue
            if state.get("status") != "active" or int(state.get("next", 0)) > now:
                if unsaved:
                    state = await self._update(sid, _acked(state))
                    unsaved, saved_at = False, time.monotonic()
                    continue
                state = await self._idle_or_state(sid)
                if state is None:
                    return
                continue
            delivered, events = int(state.get("delivered", 0)), int(state.get("events", 0))
            heartbeat = state.get("heartbeat")
            if delivered < events:
                upto = min(events, delivered + spec.max_count)
                batch = []
                for number in range(delivered + 1, upto + 1):
                    event = data_of(await self.svc.store.current(EVENT, event_id(sid, number)))
                    batch.append(event or {"n": number, "ts": now})
                kind = "event-notification"
            elif heartbeat and now - int(state.get("last", 0)) >= heartbeat * 1_000_000:
                upto, batch, kind = delivered, [], "heartbeat"
            else:
                if unsaved:  # written before going idle: nothing is sent twice without a crash
                    state = await self._update(sid, _acked(state))
                    unsaved, saved_at = False, time.monotonic()
                    continue
                state = await self._idle_or_state(sid)
                if state is None:
                    return
                continue
            ok, reason, permanent = await self._send(sid, spec, state, kind, batch)
            if not ok:
                saved = {"delivered": int(state.get("delivered", 0))} if unsaved else {}
                await self._fail(sid, state, reason, generation, permanent, saved)
                return
            if time.monotonic() - saved_at < ACK_EVERY:
                # more may follow at once: send on, and write the acknowledgements together
                # (at most every ACK_EVERY seconds, and before going idle); a crash meanwhile
                # repeats those events, with their numbers (at least once, in order)
                fresh = data_of(await self.svc.store.current(STATE, sid))
                if fresh is None or fresh.get("lease") != engine.instance:
                    raise LeaseLost()
                fresh.update(_acked(state, upto, fresh))
                state, unsaved = fresh, True
                continue
            state = await self._update(sid, _acked(state, upto))
            unsaved, saved_at = False, time.monotonic()

    async def _idle_or_state(self, sid: str) -> dict[str, Any] | None:
        """The fresh state if work arrives within ``LINGER`` seconds, else None once the lease
        is released. A busy subscription's worker stays, holding its lease: no claim and no
        release written per notification, one write (the acknowledgement) per notification."""
        engine = self.engine
        deadline = time.monotonic() + min(LINGER, engine.lease_us / 4_000_000)
        try:
            while True:
                wake = self._linger.setdefault(sid, asyncio.Event())
                wake.clear()  # before reading: a hint from now on is not lost
                state = data_of(await self.svc.store.current(STATE, sid))
                if state is None or state.get("lease") != engine.instance:
                    return None
                if self.due(state, now_us()):
                    return await claim_lease(engine, STATE, sid)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                await pause(wake, remaining)
        finally:
            self._linger.pop(sid, None)
        return await self._release(sid)

    async def _release(self, sid: str, stopping: bool = False) -> dict[str, Any] | None:
        """Release this process's lease unless work arrived meanwhile (then: the fresh
        state, the lease renewed) and the process is not stopping."""
        engine = self.engine
        async with self.svc.store.unit_of_work() as uow:
            current = await uow.current(STATE, sid)
            state = data_of(current)
            if state is None or state.get("lease") != engine.instance:
                return None
            if not stopping and self.due(state, now_us()):
                state["until"] = now_us() + engine.lease_us
                await put(uow, STATE, sid, state, current)
                return state
            state["lease"], state["until"] = None, 0
            await put(uow, STATE, sid, state, current)
        return None

    async def _fail(
        self,
        sid: str,
        state: dict[str, Any],
        reason: str,
        generation: int,
        permanent: bool,
        saved: dict[str, Any] | None = None,
    ) -> None:
        settings = self.svc.settings
        failures = int(state.get("failures", 0)) + 1
        if permanent or failures >= settings.subscription_max_failures:
            log.warning("subscription %s turned to error: %s", sid, reason)
            await self._update(
                sid,
                {"status": "error", "failures": failures, "error": reason, "next": 0}
                | (saved or {}),
                release=True,
                resource_status="error",
                error=reason,
                generation=generation,
            )
            return
        delay_ms = min(60_000, settings.subscription_retry_ms * (2 ** (failures - 1)))
        await self._update(
            sid,
            {"failures": failures, "next": now_us() + delay_ms * 1000, "error": reason}
            | (saved or {}),
            release=True,
        )

    async def _send(
        self, sid: str, spec: Spec, state: dict[str, Any], kind: str, events: list[dict]
    ) -> tuple[bool, str, bool]:
        """POST one notification; (acknowledged, reason if not, whether retrying is pointless)."""
        engine = self.engine
        try:
            pinned = await engine.policy.pin(spec.endpoint)
        except EndpointRefused as exc:
            return False, exc.reason, True
        headers = {name: value for name, value in spec.headers}
        if spec.payload is None:
            body = b""
        else:
            bundle = await notification(engine, sid, spec, state, kind, events, None)
            body = orjson.dumps(bundle)
            headers["Content-Type"] = spec.payload
        endpoint = spec.endpoint
        default = 443 if endpoint.scheme == "https" else 80
        headers["Host"] = (
            endpoint.host
            if endpoint.port == default
            else (f"{_bracket(endpoint.host)}:{endpoint.port}")
        )
        url = httpx.URL(endpoint.url).copy_with(host=pinned.address)
        extensions = {"sni_hostname": endpoint.host} if endpoint.scheme == "https" else {}
        assert engine.http is not None
        try:
            response = await engine.http.post(
                url, content=body, headers=headers, timeout=spec.timeout, extensions=extensions
            )
        except httpx.HTTPError as exc:
            return False, f"the endpoint could not be reached ({type(exc).__name__})", False
        if 200 <= response.status_code < 300:
            return True, "", False
        return False, f"the endpoint answered HTTP {response.status_code}", False


def _acked(
    state: dict[str, Any], upto: int | None = None, fresh: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The state changes of an acknowledged notification (up to event ``upto``; None: the
    ones ``state`` holds already)."""
    delivered = int(state.get("delivered", 0)) if upto is None else upto
    if fresh is not None:
        delivered = max(delivered, int(fresh.get("delivered", 0)))
    return {"delivered": delivered, "failures": 0, "next": 0, "last": now_us(), "error": None}


def _bracket(host: str) -> str:
    return f"[{host}]" if ":" in host else host


async def notification(
    engine: Engine,
    sid: str,
    spec: Spec,
    state: dict[str, Any],
    kind: str,
    events: list[dict[str, Any]],
    reader: Any,
    content: str | None = None,
) -> dict[str, Any]:
    """A notification Bundle (Backport IG, R4 shape): a Parameters status entry first, then the
    focus resources the subscriber may read (``reader``: the principal judging it; None for the
    subscriber's own rights, as stored with the subscription)."""
    svc = engine.svc
    base = svc.settings.public_url
    content = content or spec.content
    principal = reader if reader is not None else principal_from(state.get("owner"))
    status = "requested" if kind == "handshake" else state.get("status") or "active"
    parameters: list[dict[str, Any]] = [
        {"name": "subscription", "valueReference": {"reference": f"{base}/Subscription/{sid}"}}
    ]
    if spec.topic is not None and content != "empty":
        parameters.append({"name": "topic", "valueCanonical": spec.topic.url})
    parameters += [
        {"name": "status", "valueCode": status},
        {"name": "type", "valueCode": kind},
        {"name": "events-since-subscription-start", "valueString": str(state.get("events", 0))},
    ]
    entries: list[dict[str, Any]] = []
    seen: set[str] = set()
    held = [principal] if principal is not None and events else []
    engine.hold(held)  # one judgement of her relations for the whole bundle
    try:
        for event in events:
            part: list[dict[str, Any]] = [
                {"name": "event-number", "valueString": str(event.get("n"))},
            ]
            if event.get("ts"):
                part.append({"name": "timestamp", "valueInstant": format_instant(int(event["ts"]))})
            focus = event.get("focus")
            version = None
            if isinstance(focus, str) and content != "empty":
                type_, id_, _, number = focus.split("/")
                version = await svc.store.version(type_, id_, int(number))
                if version is not None and version.deleted and version.version > 1:
                    version = await svc.store.version(type_, id_, version.version - 1)
                if version is not None and await engine.visible(principal, version):
                    part.append(
                        {"name": "focus", "valueReference": {"reference": f"{base}/{type_}/{id_}"}}
                    )
                    method, code = _METHOD.get(event.get("i") or "update", ("PUT", "200"))
                    entry: dict[str, Any] = {
                        "fullUrl": f"{base}/{type_}/{id_}",
                        "request": {
                            "method": method,
                            "url": type_ if method == "POST" else f"{type_}/{id_}",
                        },
                        "response": {"status": code},
                    }
                    if content == "full-resource" and event.get("i") != "delete" and version.body:
                        entry["resource"] = loads_trusted(version.body)
                    if entry["fullUrl"] not in seen:
                        seen.add(entry["fullUrl"])
                        entries.append(entry)
                    if spec.topic is not None:
                        for extra in await _included(
                            engine, spec, principal, version, content, seen
                        ):
                            part.append(
                                {
                                    "name": "additional-context",
                                    "valueReference": {"reference": extra["fullUrl"]},
                                }
                            )
                            entries.append(extra)
            parameters.append({"name": "notification-event", "part": part})
    finally:
        engine.release(held)
    if state.get("error") and kind != "handshake":
        parameters.append(
            {"name": "error", "valueCodeableConcept": {"text": str(state["error"])[:500]}}
        )
    status_entry = {
        "fullUrl": f"urn:uuid:{uuid.uuid4()}",
        "resource": {
            "resourceType": "Parameters",
            "id": new_id(),
            "meta": {"profile": [STATUS_PROFILE]},
            "parameter": parameters,
        },
        "request": {"method": "GET", "url": f"{base}/Subscription/{sid}/$status"},
        "response": {"status": "200"},
    }
    return {
        "resourceType": "Bundle",
        "id": new_id(),
        "meta": {"profile": [NOTIFICATION_PROFILE]},
        "type": "history",
        "timestamp": format_instant(now_us()),
        "entry": [status_entry, *entries],
    }


async def _included(
    engine: Engine,
    spec: Spec,
    principal: Any,
    version: StoredVersion,
    content: str,
    seen: set[str],
) -> list[dict[str, Any]]:
    """The topic's ``notificationShape`` includes (``Type:param``) the subscriber may read."""
    svc = engine.svc
    assert spec.topic is not None
    includes = spec.topic.includes.get(version.type, ())
    if not includes or version.body is None:
        return []
    resource = loads_trusted(version.body)
    base = svc.settings.public_url
    out = []
    for include in includes:
        type_, _, param = include.partition(":")
        if type_ != version.type or not param:
            continue
        rows = svc.extractor.extract(resource, only={param})
        for row in rows.references:
            if row[0] != param or not row[1] or not row[2]:
                continue
            url = f"{base}/{row[1]}/{row[2]}"
            if url in seen:
                continue
            stored = await svc.store.current(row[1], row[2])
            if stored is None or stored.deleted or not await engine.visible(principal, stored):
                continue
            seen.add(url)
            entry: dict[str, Any] = {
                "fullUrl": url,
                "request": {"method": "GET", "url": f"{row[1]}/{row[2]}"},
                "response": {"status": "200"},
            }
            if content == "full-resource" and stored.body:
                entry["resource"] = loads_trusted(stored.body)
            out.append(entry)
    return out
