"""``$status`` and ``$events`` of the Subscriptions R5 Backport IG, for the Subscription's owner.

- ``GET|POST Subscription/[id]/$status``: a searchset Bundle with the subscription's status
  (a ``Parameters`` of type ``query-status``: status, events since the start, the error that
  turned it to ``error``); at type level, ``Subscription/$status?id=..&status=..`` for every
  Subscription of the caller;
- ``GET|POST Subscription/[id]/$events?eventsSinceNumber=&eventsUntilNumber=&content=``: a
  notification Bundle of type ``query-event`` with those events (at most 100 per call); each
  focus is shown only if the caller may read it now.
"""

from __future__ import annotations

import uuid
from typing import Any

from fhir_server.errors import FhirError, bad_request, unknown
from fhir_server.json_codec import loads_trusted
from fhir_server.search.dates import format_instant
from fhir_server.service.bundles import bundle
from fhir_server.service.context import RequestContext
from fhir_server.service.core import Access, FhirService
from fhir_server.service.result import Result
from fhir_server.service.versioning import now_us
from fhir_server.store.query import IdPred, Query, TokenPred
from fhir_server.subscriptions.engine import STATUS_PROFILE, Engine, notification
from fhir_server.subscriptions.records import EVENT, STATE, data_of, event_id
from fhir_server.terminology.operations import OperationParams

STATUS_PARAMS = {"id": "string", "status": "code"}
EVENTS_PARAMS = {"eventsSinceNumber": "string", "eventsUntilNumber": "string", "content": "code"}
MAX_EVENTS = 100
STATUS_DEFINITION = "https://borninbelgiumpro.be/fhir/OperationDefinition/subscription-status"
EVENTS_DEFINITION = "https://borninbelgiumpro.be/fhir/OperationDefinition/subscription-events"


def _status_parameters(
    base: str, sid: str, resource: dict[str, Any], state: dict[str, Any] | None, topic: Any
) -> dict[str, Any]:
    state = state or {}
    status = resource.get("status") or state.get("status") or "requested"
    parameters: list[dict[str, Any]] = [
        {"name": "subscription", "valueReference": {"reference": f"{base}/Subscription/{sid}"}}
    ]
    if topic is not None:
        parameters.append({"name": "topic", "valueCanonical": topic})
    parameters += [
        {"name": "status", "valueCode": status},
        {"name": "type", "valueCode": "query-status"},
        {"name": "events-since-subscription-start", "valueString": str(state.get("events", 0))},
    ]
    error = resource.get("error") or state.get("error")
    if error and status == "error":
        parameters.append({"name": "error", "valueCodeableConcept": {"text": str(error)}})
    return {
        "resourceType": "Parameters",
        "meta": {"profile": [STATUS_PROFILE]},
        "parameter": parameters,
    }


def handlers(engine: Engine) -> dict[str, Any]:
    async def status(
        svc: FhirService, ctx: RequestContext, request: Any, target: dict[str, Any]
    ) -> Result:
        if target.get("type") != "Subscription":
            raise FhirError(404, "not-supported", "$status is an operation on Subscription")
        sid = target.get("id")
        await svc.authorize(ctx, Access("operation", "Subscription", sid, operation="status"))
        params = await OperationParams.read(svc, request, "status", STATUS_PARAMS)
        base = svc.settings.public_url
        if sid is not None:
            ids = [sid]
        else:
            query = Query(("Subscription",), count=1000)
            wanted = params.all("id")
            if wanted:
                query.where.append((IdPred(tuple(wanted)),))
            codes = params.all("status")
            if codes:
                query.where.append(tuple(TokenPred("status", "\x00any", c) for c in codes))
            query.where.extend(await svc.search_filter(ctx, ("Subscription",)))
            page = await svc.store.search(query)
            ids = [hit.id for hit in page.hits]
        entries = []
        for found in ids:
            current = await svc.store.current("Subscription", found)
            if current is None or current.deleted or current.body is None:
                if sid is not None:
                    raise unknown("Subscription", found)
                continue
            resource = loads_trusted(current.body)
            state = data_of(await svc.store.current(STATE, found))
            topic = resource.get("criteria") if resource.get("criteria") in engine.topics else None
            entries.append(
                {
                    "fullUrl": f"urn:uuid:{uuid.uuid4()}",
                    "resource": _status_parameters(base, found, resource, state, topic),
                    "search": {"mode": "match"},
                }
            )
        result = bundle("searchset", entries, [], len(entries), timestamp=format_instant(now_us()))
        return Result(200, resource=result)

    async def events(
        svc: FhirService, ctx: RequestContext, request: Any, target: dict[str, Any]
    ) -> Result:
        sid = target.get("id")
        if target.get("type") != "Subscription" or not sid:
            raise FhirError(
                404, "not-supported", "$events runs on one Subscription: Subscription/[id]/$events"
            )
        await svc.authorize(ctx, Access("operation", "Subscription", sid, operation="events"))
        params = await OperationParams.read(svc, request, "events", EVENTS_PARAMS)
        current = await svc.store.current("Subscription", sid)
        if current is None or current.deleted or current.body is None:
            raise unknown("Subscription", sid)
        resource = loads_trusted(current.body)
        state = data_of(await svc.store.current(STATE, sid)) or {}
        last = int(state.get("events", 0))
        since = _number(params.get("eventsSinceNumber"), "eventsSinceNumber", 1)
        until = _number(params.get("eventsUntilNumber"), "eventsUntilNumber", last)
        content = params.get("content")
        if content is not None and content not in ("empty", "id-only", "full-resource"):
            raise bad_request("content is empty, id-only or full-resource")
        until = min(until, last)
        if until - since + 1 > MAX_EVENTS:
            since = until - MAX_EVENTS + 1
        try:
            spec = engine.spec_of(resource)
        except FhirError as exc:
            raise FhirError(
                409, "conflict", f"the Subscription is not usable: {exc.issues[0].diagnostics}"
            ) from None
        found = []
        for number in range(max(1, since), until + 1):
            event = data_of(await svc.store.current(EVENT, event_id(sid, number)))
            if event is not None:
                found.append(event)
        body = await notification(
            engine,
            sid,
            spec,
            state,
            "query-event",
            found,
            ctx.principal,
            content or spec.content,
        )
        return Result(200, resource=body)

    return {"status": status, "events": events}


def _number(value: Any, name: str, default: int) -> int:
    if value is None:
        return default
    text = str(value).strip()
    if not text.isdigit():
        raise bad_request(f"{name} is an event number (a whole number)")
    return int(text)
