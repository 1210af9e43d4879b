"""Security: SMART App Launch authorization server, bearer-token authentication (ours and an
external eHealth-style identity provider), the authorization guard (scopes, patient context, care
relationships, consent, security labels, break-the-glass), security labels on write, Provenance and
the AuditEvent trail. See docs/security.md.

``install(app)`` (fhir_server/plugins.py) wires it into the server. With ``--insecure-open``
(setting ``auth = "open"``) nothing is installed except CORS: the server behaves as it did before
authentication existed, and says so loudly in the log and in ``/metadata``.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

from fhir_server.security.principal import SecurePrincipal

log = logging.getLogger("fhir_server.security")

OPEN_WARNING = (
    "AUTHENTICATION IS DISABLED (--insecure-open): anyone who can reach this server can read and "
    "change every record, nothing is audited. For local development only."
)
PRUNE_SECONDS = 600
OAUTH_URIS = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"


def signing_key_path(settings: Any) -> Path:
    if settings.signing_key_file:
        return Path(settings.signing_key_file)
    return Path(settings.data_dir) / "auth" / "signing-key.pem"


class LaunchRelations:
    """EPD launches as care relationships (RelationshipIndex asks this object)."""

    def __init__(self, store: Any) -> None:
        self.store = store

    @staticmethod
    def keys(subject: str, practitioner: str | None) -> tuple[str, ...]:
        return tuple(k for k in (f"sub:{subject}", practitioner and f"ref:{practitioner}") if k)

    async def launched_patients(self, principal: SecurePrincipal) -> set[str]:
        return await self.store.launched(self.keys(principal.subject, principal.practitioner))


class SecurityState:
    """Everything the security layer keeps for one server."""

    def __init__(self, app: Any) -> None:
        from fhir_server.security.audit import AuditLog
        from fhir_server.security.authserver import BibAuthorizationServer, load_registrations
        from fhir_server.security.authstore import AuthStore
        from fhir_server.security.context import ContextFactory
        from fhir_server.security.guard import SecurityGuard
        from fhir_server.security.labels import Labeller
        from fhir_server.security.relationships import RelationshipIndex
        from fhir_server.security.tokens import ExternalIdp, SigningKey, TokenVerifier
        from fhir_server.security.web import AuthWeb

        self.app = app
        self.svc = app.service
        self.settings = settings = app.settings
        self.key = SigningKey(signing_key_path(settings))
        self.store = AuthStore(app.service.store)  # shared by every process on the store
        self.idp = ExternalIdp(settings, self.svc) if settings.idp_issuer else None
        self.verifier = TokenVerifier(settings, self.key, self.store, self.idp)
        self.clients, self.users = load_registrations(settings.clients_file or None)
        self.server = BibAuthorizationServer(
            settings, self.key, self.store, self.verifier, self.clients, self.users
        )
        self.audit = AuditLog(self.svc, settings.audit_flush_ms)
        self.launch_relations = LaunchRelations(self.store)
        self.relationships = RelationshipIndex(
            self.svc, self.launch_relations, settings.relationship_cache_seconds
        )
        self.labeller = Labeller(self.svc)
        self.guard = SecurityGuard(self.svc, self.relationships, self.labeller)
        self.context_factory = ContextFactory(settings, self.verifier, self.audit)
        self.web = AuthWeb(self)

    def user_principal(self, user: Any) -> SecurePrincipal:
        return SecurePrincipal(
            subject=user.subject,
            role=user.role,
            practitioner=user.practitioner,
            organization=user.organization,
            name=user.name,
            kind="user",
        )

    async def record_launch(self, user: Any) -> None:
        """An EPD launch for a patient is a care relationship (for a configured time)."""
        import time

        patient = user.context.get("patient")
        if not patient:
            return
        expires = time.time() + self.settings.epd_relationship_seconds
        for key in LaunchRelations.keys(user.subject, user.practitioner):
            await self.store.add_launch(key, patient, expires)
        self.relationships.invalidate_all()

    async def patients_for(self, user: Any) -> list[tuple[str, str]]:
        """Patients the user may pick in a standalone launch, with a display label."""
        from fhir_server.json_codec import loads_trusted

        relations = await self.relationships.relations(self.user_principal(user))
        out: list[tuple[str, str]] = []
        for pid in sorted(relations.patients)[:200]:
            stored = await self.svc.store.current("Patient", pid)
            if stored is None or stored.body is None:
                continue
            patient = loads_trusted(stored.body)
            name = (patient.get("name") or [{}])[0]
            text = (
                name.get("text")
                or " ".join([*name.get("given", ()), name.get("family", "")]).strip()
            )
            out.append((pid, f"{text or pid} ({patient.get('birthDate', '?')})"))
        return out

    def capability_security(self) -> dict[str, Any]:
        issuer = self.settings.auth_issuer
        return {
            "cors": True,
            "service": [
                {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                            "code": "SMART-on-FHIR",
                        }
                    ],
                    "text": "OAuth2 using SMART-on-FHIR profile (see http://docs.smarthealthit.org)",
                }
            ],
            "extension": [
                {
                    "url": OAUTH_URIS,
                    "extension": [
                        {"url": "authorize", "valueUri": f"{issuer}/auth/authorize"},
                        {"url": "token", "valueUri": f"{issuer}/auth/token"},
                        {"url": "introspect", "valueUri": f"{issuer}/auth/introspect"},
                        {"url": "revoke", "valueUri": f"{issuer}/auth/revoke"},
                    ],
                }
            ],
            "description": (
                "Bearer tokens (SMART App Launch 2.x; discovery at "
                f"{self.settings.public_url}/.well-known/smart-configuration) are required for "
                "every interaction except /metadata. Access follows the BiB roles, care "
                "relationships, consent and security labels; every access is audited."
            ),
        }

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        if not self.settings.signing_key_file:  # one key ring for every process on the store
            await self.key.share(self.svc.store)
            self._key_refresh = loop.create_task(self._refresh_keys())
        await self.store.migrate_file(Path(self.settings.data_dir) / "auth" / "auth.db")
        self._pruner = loop.create_task(self._prune())
        await self.audit.start()

    async def _refresh_keys(self) -> None:
        """Pick up a rotation made by another process (signing moves to the new key)."""
        while True:
            await asyncio.sleep(60)
            try:
                await self.key.refresh(force=True)
            except Exception:  # the next round tries again
                log.exception("could not reload the signing keys")

    async def _prune(self) -> None:
        """Delete expired authorization records (every read ignores them already)."""
        while True:
            try:
                await self.store.prune()
            except Exception:  # the next round tries again
                log.exception("could not prune the authorization records")
            await asyncio.sleep(PRUNE_SECONDS)

    async def stop(self) -> None:
        for name in ("_key_refresh", "_pruner"):
            task = getattr(self, name, None)
            if task is not None:
                task.cancel()
        await self.audit.stop()


def install(app: Any) -> None:
    from fhir_server.security.cors import FhirCors

    settings = app.settings
    extras = getattr(app.service, "capability_extras", None)
    if settings.auth == "open":
        log.warning(OPEN_WARNING)
        if extras is not None:
            extras["security"] = {"cors": True, "description": "WARNING: " + OPEN_WARNING}
        if hasattr(app, "fhir_handler"):
            app.fhir_handler = FhirCors(app.fhir_handler, settings.cors_origins)
        return
    if settings.auth != "required":
        raise ValueError(f"auth must be 'required' or 'open', not {settings.auth!r}")
    from fastapi.middleware.cors import CORSMiddleware

    # authlib logs issued tokens and client details at DEBUG: never let them reach the log
    logging.getLogger("authlib").setLevel(max(logging.INFO, logging.getLogger("authlib").level))
    state = SecurityState(app)
    app.security = state
    app.fhir.context_factory = state.context_factory
    app.service.guard = state.guard
    app.service.audit = state.audit
    from fhir_server.security.audit import BALP_PARAMS

    app.service.registry.keep_only("AuditEvent", BALP_PARAMS)
    from fhir_server.security.audit import ProvenanceHook
    from fhir_server.security.labels import LabelHook
    from fhir_server.security.registration import Identification, RegistrationHook

    app.service.write_hooks.extend(
        [LabelHook(state.labeller), ProvenanceHook(app.service), RegistrationHook(app.service)]
    )
    identification = Identification(app.service, state.relationships)
    app.service.conditional_resolvers.append(identification.conditional)
    app.fhir.operations["identify"] = identification.operation
    app.store.add_listener(state.relationships.committed)
    if extras is not None:
        extras["security"] = state.capability_security()
    base = settings.base_path
    state.web.routes(app.web, base)
    app.web.add_middleware(
        CORSMiddleware,
        allow_origins=[o.strip() for o in settings.cors_origins.split(",") if o.strip()],
        allow_methods=["GET", "POST"],
        allow_headers=["Authorization", "Content-Type", "Accept"],
    )
    if hasattr(app, "fhir_web_paths"):
        app.fhir_web_paths.update(
            {f"{base}/.well-known/smart-configuration", f"{base}/.well-known/openid-configuration"}
        )
    if hasattr(app, "fhir_handler"):
        app.fhir_handler = FhirCors(app.fhir_handler, settings.cors_origins)
    if hasattr(app, "startup_hooks"):
        app.startup_hooks.append(state.start)
    if hasattr(app, "shutdown_hooks"):
        app.shutdown_hooks.append(state.stop)
