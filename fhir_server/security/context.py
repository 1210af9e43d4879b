"""The request-context factory of the FHIR API (``FhirApi.context_factory``): bearer token ->
Principal, on every request.

Missing or invalid tokens get a 401 OperationOutcome with ``WWW-Authenticate: Bearer`` (RFC 6750)
and are audited here, since they never reach the service layer. ``/metadata`` is public (SMART
discovery); it runs with an anonymous principal that the guard refuses everything.
Break-the-glass: a Role A professional may send ``X-Break-Glass: <reason>``; the reason is
required, recorded in the AuditEvent and the Provenance of every write, and logged loudly.
"""

from __future__ import annotations

import itertools
import logging
import uuid
from typing import Any

from fhir_server.errors import FhirError
from fhir_server.security.principal import SecureContext, SecurePrincipal
from fhir_server.security.tokens import TokenError
from fhir_server.service.core import Access

log = logging.getLogger("fhir_server.security")

_TAG = uuid.uuid4().hex[:8]
_IDS = itertools.count(1)
ANONYMOUS = SecurePrincipal(subject="anonymous", kind="system", patient_data=False)
# Every authenticated request carries this first "access", so the API audits it even when the
# service never authorizes anything (a conditional delete that matches nothing, a 400 on parsing).
REQUEST = Access("request")
MIN_REASON = 10


class ContextFactory:
    def __init__(self, settings: Any, verifier: Any, audit: Any) -> None:
        self.base_url = settings.public_url
        self.realm = f'Bearer realm="{settings.public_url}"'
        self.verifier = verifier
        self.audit = audit
        self.break_glass_allowed = settings.break_glass

    async def __call__(self, request: Any) -> SecureContext:
        headers = request.headers
        auth = headers.get("authorization")
        path = request.path
        if auth is None:
            if path == "/metadata" and request.method in ("GET", "HEAD"):
                return SecureContext(base_url=self.base_url, principal=ANONYMOUS)
            raise self._refuse(request, 401, "an access token is required", None)
        scheme, _, token = auth.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise self._refuse(
                request, 401, "use an Authorization: Bearer token", "invalid_request"
            )
        try:
            principal = await self.verifier.verify(token)  # cached, but revocation checked
        except TokenError as exc:
            raise self._refuse(request, 401, str(exc), "invalid_token") from None
        if principal.kind == "user" and principal.role is None and not principal.admin:
            raise self._refuse(
                request,
                403,
                "the professional's profession gives no access to BiB data",
                "insufficient_scope",
                principal,
            )
        client = request.scope.get("client")
        ctx = SecureContext(
            base_url=self.base_url,
            principal=principal,
            client_ip=client[0] if client else None,
            user_agent=headers.get("user-agent"),
            method=request.method,
            path=path,
            query=request.query_string,
        )
        ctx.accesses.append(REQUEST)
        reason = headers.get("x-break-glass")
        if reason is not None:
            reason = reason.strip()
            if not self.break_glass_allowed:
                raise self._refuse(request, 403, "break-the-glass is disabled", None, principal)
            if principal.kind != "user" or principal.role != "A":
                raise self._refuse(
                    request,
                    403,
                    "break-the-glass is reserved to Role A professionals",
                    None,
                    principal,
                )
            if len(reason) < MIN_REASON:
                raise self._refuse(
                    request,
                    400,
                    f"X-Break-Glass needs a reason (at least {MIN_REASON} characters)",
                    None,
                    principal,
                )
            ctx.break_glass = True
            ctx.break_glass_reason = reason[:500]
            log.warning(
                "BREAK-THE-GLASS access by a Role A user (request %s, audited)",
                headers.get("x-request-id") or "-",
            )
        return ctx

    def _refuse(
        self,
        request: Any,
        status: int,
        message: str,
        error: str | None,
        principal: SecurePrincipal | None = None,
    ) -> FhirError:
        client = request.scope.get("client")
        request_id = request.headers.get("x-request-id") or f"{_TAG}-a{next(_IDS)}"
        recorded = self.audit.refused(
            request.method,
            request.path,
            request.query_string,
            client[0] if client else None,
            request_id,
            status,
            message,
            principal,
        )
        challenge = self.realm
        if error:
            challenge += f', error="{error}", error_description="{message}"'
        code = "login" if status == 401 else "forbidden"
        refusal = FhirError(status, code, message, headers={"WWW-Authenticate": challenge})
        refusal.audited = recorded
        return refusal
