"""Subscriptions: R4 rest-hook subscriptions and the topic-based shape of the Subscriptions R5
Backport IG for R4, with a durable outbox and at-least-once, in-order delivery
(docs/subscriptions.md).

``install(app)`` (listed in ``fhir_server/plugins.py``) plugs it in:

* the write hook (hook.py): the outbox record of every change of a watched type, in the change's
  own unit of work; Subscriptions checked (endpoint, criteria, topic) and owned;
* the owner rule on Subscriptions, wrapped around the security guard (guard.py);
* the matcher and the deliverers (engine.py), started and stopped with the server;
* ``$status`` and ``$events`` (operations.py), listed in ``/metadata`` with their
  OperationDefinitions, the topics as ``subscriptiontopic-canonical`` extensions;
* the shipped topics and OperationDefinitions (``content/subscriptions/``).
"""

from __future__ import annotations

from typing import Any

from fhir_server.subscriptions.engine import Engine
from fhir_server.subscriptions.guard import OwnerGuard
from fhir_server.subscriptions.hook import SubscriptionHook
from fhir_server.subscriptions.operations import EVENTS_DEFINITION, STATUS_DEFINITION, handlers

TOPIC_CANONICAL = (
    "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/"
    "capabilitystatement-subscriptiontopic-canonical"
)
BACKPORT_SERVER = (
    "http://hl7.org/fhir/uv/subscriptions-backport/CapabilityStatement/"
    "backport-subscription-server-r4"
)


def install(app: Any) -> None:
    svc = app.service
    engine = Engine(svc)
    svc.subscriptions = engine
    svc.write_hooks.append(SubscriptionHook(engine))
    if getattr(app, "security", None) is not None:
        svc.guard = OwnerGuard(svc.guard, svc)
        engine.relationships = app.security.relationships
    svc.store.add_listener(engine.committed)
    svc.shipped.add_library("subscriptions", "subscriptions")
    app.fhir.operations.update(handlers(engine))

    svc.capability_operations.extend(
        [
            {"name": "status", "definition": STATUS_DEFINITION, "types": ("Subscription",)},
            {"name": "events", "definition": EVENTS_DEFINITION, "types": ("Subscription",)},
        ]
    )

    def capabilities(statement: dict[str, Any]) -> None:
        for resource in statement["rest"][0]["resource"]:
            if resource["type"] == "Subscription":
                resource["extension"] = [
                    {"url": TOPIC_CANONICAL, "valueCanonical": url} for url in sorted(engine.topics)
                ]
                resource["documentation"] = (
                    "rest-hook subscriptions: classic R4 criteria or a topic of the Subscriptions "
                    "R5 Backport IG (filter criteria, payload content empty / id-only / "
                    "full-resource, heartbeat, handshake, $status, $events); delivered at least "
                    "once, in order, with what the subscriber may read (docs/subscriptions.md)"
                )
        instantiates = statement.setdefault("instantiates", [])
        if BACKPORT_SERVER not in instantiates:
            instantiates.append(BACKPORT_SERVER)

    svc.capability_hooks.append(capabilities)
    if hasattr(app, "startup_hooks"):
        app.startup_hooks.append(engine.start)
    if hasattr(app, "shutdown_hooks"):
        app.shutdown_hooks.insert(0, engine.stop)
