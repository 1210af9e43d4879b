"""The security layer's view of a caller: a Principal with what the guard needs precomputed.

``SecurePrincipal`` extends the service layer's ``Principal`` (which stays the contract other
modules see) with the caller kind (user or system), the admin flag, professions and the compiled
scopes. One object is built per verified token and cached with it, so per-request work is a dict
lookup. ``SecureContext`` extends the request context with what the audit trail records.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fhir_server.security.scopes import ScopeSet
from fhir_server.service.context import Principal, RequestContext


@dataclass(slots=True)
class SecurePrincipal(Principal):
    kind: str = "user"  # user (a professional) | system (a backend client, no user)
    admin: bool = False  # may read AuditEvents, write conformance resources, run $reindex
    patient_data: bool = True  # system clients: whether they may reach patient data at all
    professions: tuple[str, ...] = ()  # CD-HCPARTY codes / eHealth quality keys held
    token_id: str | None = None  # jti (for revocation)
    expires: float = 0.0  # epoch seconds
    source: str = "smart"  # smart (built-in authorization server) | idp (external) | demo
    name: str | None = None  # display name (audit)
    fhir_user: str | None = None  # relative reference of the user (Practitioner/x)
    encounter: str | None = None
    scope_set: ScopeSet = field(default_factory=lambda: ScopeSet.parse(""))

    @property
    def user_refs(self) -> tuple[str, ...]:
        """References that identify the caller in care relationships (CareTeam participant,
        ServiceRequest performer, Task owner, Patient.generalPractitioner...)."""
        refs = [r for r in (self.practitioner, self.organization) if r]
        extra = self.claims.get("bib_practitioner_roles")
        if isinstance(extra, list):
            refs.extend(r for r in extra if isinstance(r, str))
        return tuple(dict.fromkeys(refs))


@dataclass(slots=True)
class SecureContext(RequestContext):
    method: str = ""
    path: str = ""  # path under the FHIR base
    query: str = ""  # raw query string (audit: BALP query entity)
    break_glass_reason: str | None = None
    refusal: str | None = None  # why the guard refused (audit outcomeDesc)
    extra: dict[str, Any] = field(default_factory=dict)
