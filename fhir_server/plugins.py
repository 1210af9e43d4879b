"""Features that plug into the server at start: each module has ``install(app)`` and may register
operations on ``app.fhir.operations``, validators on ``app.service.profile_validators``, web
routes on ``app.web``, or replace ``app.service.guard`` / ``app.service.audit``.

Domain features (screening, pathways, social map, referrals) and security install themselves
this way, so the core never has special cases for them.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

INSTALLERS = [
    "fhir_server.service.operations",
    "fhir_server.terminology.operations",
    "fhir_server.service.validate_operation",
    "fhir_server.security",
    "fhir_server.socialmap",
    "fhir_server.service.everything",
    "fhir_server.pathways",
    "fhir_server.screening",  # after security: its write hook goes first (labels see scores)
    "fhir_server.referrals",  # after security: its grant provider joins the relationship index
    "fhir_server.subscriptions",  # after security: wraps the guard with the owner rule
]


def install_all(app: Any) -> None:
    for name in INSTALLERS:
        import_module(name).install(app)
