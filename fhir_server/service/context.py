"""The request context every interaction receives: who is calling, how, and what they prefer.

Authorization, consent and audit (the security issue) read and extend this object in the service
layer; routes never look at identities themselves.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class Principal:
    """An authenticated caller. ``None`` on the context means the server runs open."""

    subject: str  # stable id of the user or client
    client_id: str | None = None
    scopes: frozenset[str] = frozenset()
    role: str | None = None  # BiB access role: "A" (full) or "B" (limited)
    practitioner: str | None = None  # "Practitioner/<id>" reference
    organization: str | None = None
    patient: str | None = None  # launch / token patient context (id)
    claims: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class RequestContext:
    base_url: str  # absolute FHIR base URL for links, fullUrls and Location headers
    principal: Principal | None = None
    request_id: str = ""
    prefer_return: str = "representation"  # minimal | representation | OperationOutcome
    prefer_handling: str = "lenient"  # lenient | strict
    client_ip: str | None = None
    user_agent: str | None = None
    in_transaction: bool = False
    accesses: list[Any] = field(default_factory=list)  # what was attempted (for the audit trail)
    patients: set[str] = field(default_factory=set)  # patients whose data was touched (audit)
    break_glass: bool = False  # emergency access was claimed (audited, see docs/security.md)
    # patient records this request created (or, in a transaction, is creating): their creator
    # may write their data in the same request, before the care relationship is committed
    new_patients: set[str] = field(default_factory=set)
    accept_language: str | None = None  # the Accept-Language header (output hooks use it)
    response_headers: dict[str, str] = field(default_factory=dict)  # added to the response

    def url(self, *parts: str) -> str:
        return "/".join((self.base_url, *parts))
