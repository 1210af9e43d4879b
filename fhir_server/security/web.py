"""Web routes of the authorization server (FastAPI): discovery, authorize (EHR and standalone
launch, with a minimal login and patient-picker page), token, introspection, revocation, JWKS, and
the EPD launch-context registration.
"""

from __future__ import annotations

import html
import logging
import secrets
import time
from typing import Any
from urllib.parse import parse_qsl

import httpx
import orjson
from authlib.oauth2.base import OAuth2Error
from authlib.oauth2.rfc6749 import AccessDeniedError, InvalidRequestError
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from fhir_server.security.authserver import (
    FormRequest,
    GrantUser,
    check_secret,
    peek_assertion_subject,
)
from fhir_server.security.authstore import FORM, LAUNCH, TICKET
from fhir_server.security.principal import SecurePrincipal
from fhir_server.security.tokens import TokenError

log = logging.getLogger("fhir_server.security.auth")

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
PAGE_HEADERS = {
    **NO_STORE,
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'"
    ),
    "Referrer-Policy": "no-referrer",
}
CAPABILITIES = [
    "launch-ehr",
    "launch-standalone",
    "authorize-post",
    "client-public",
    "client-confidential-symmetric",
    "client-confidential-asymmetric",
    "sso-openid-connect",
    "context-banner",
    "context-ehr-patient",
    "context-ehr-encounter",
    "context-standalone-patient",
    "permission-offline",
    "permission-online",
    "permission-patient",
    "permission-user",
    "permission-v1",
    "permission-v2",
]
SCOPES_SUPPORTED = [
    "openid",
    "fhirUser",
    "profile",
    "launch",
    "launch/patient",
    "offline_access",
    "online_access",
    "patient/*.cruds",
    "patient/*.rs",
    "user/*.cruds",
    "user/*.rs",
    "system/*.cruds",
    "system/*.rs",
    "patient/*.read",
    "user/*.read",
    "user/*.write",
    "system/*.read",
]
LOGIN_LOCK_AFTER = 5
LOGIN_LOCK_SECONDS = 300
CSRF_FIELD = "form_token"
CSRF_COOKIE = "bib_signin"
FORM_SECONDS = 900


def _norm(url: str | None) -> str:
    return (url or "").rstrip("/")


class AuthWeb:
    def __init__(self, state: Any) -> None:
        self.state = state
        self.settings = state.settings
        self.server = state.server
        self.issuer = self.settings.auth_issuer
        # launch ids, picker tickets, sign-in form tokens and failed sign-ins are in the store
        # (authstore.py), so each step of a flow may reach any server process
        self.auth = state.store

    # -- discovery -------------------------------------------------------------------------------

    def smart_configuration(self) -> dict[str, Any]:
        issuer = self.issuer
        return {
            "issuer": issuer,
            "jwks_uri": f"{issuer}/auth/jwks",
            "authorization_endpoint": f"{issuer}/auth/authorize",
            "token_endpoint": f"{issuer}/auth/token",
            "introspection_endpoint": f"{issuer}/auth/introspect",
            "revocation_endpoint": f"{issuer}/auth/revoke",
            "token_endpoint_auth_methods_supported": [
                "client_secret_basic",
                "client_secret_post",
                "private_key_jwt",
            ],
            "token_endpoint_auth_signing_alg_values_supported": ["RS384", "ES384"],
            "grant_types_supported": ["authorization_code", "client_credentials", "refresh_token"],
            "scopes_supported": SCOPES_SUPPORTED,
            "response_types_supported": ["code"],
            "code_challenge_methods_supported": ["S256"],
            "capabilities": CAPABILITIES,
        }

    def openid_configuration(self) -> dict[str, Any]:
        issuer = self.issuer
        return {
            "issuer": issuer,
            "authorization_endpoint": f"{issuer}/auth/authorize",
            "token_endpoint": f"{issuer}/auth/token",
            "jwks_uri": f"{issuer}/auth/jwks",
            "introspection_endpoint": f"{issuer}/auth/introspect",
            "revocation_endpoint": f"{issuer}/auth/revoke",
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": [self.state.key.alg],
            "scopes_supported": SCOPES_SUPPORTED,
            "token_endpoint_auth_methods_supported": [
                "client_secret_basic",
                "client_secret_post",
                "private_key_jwt",
            ],
            "grant_types_supported": ["authorization_code", "client_credentials", "refresh_token"],
            "claims_supported": ["sub", "iss", "aud", "exp", "iat", "nonce", "fhirUser", "name"],
            "code_challenge_methods_supported": ["S256"],
        }

    # -- helpers ---------------------------------------------------------------------------------

    @staticmethod
    async def _form(request: Request) -> list[tuple[str, str]]:
        body = await request.body()
        if len(body) > 64 * 1024:
            return []
        try:
            return parse_qsl(body.decode("utf-8"), keep_blank_values=True, max_num_fields=200)
        except (UnicodeDecodeError, ValueError):
            return []

    def _uri(self, request: Request) -> str:
        return f"{self.issuer}{request.url.path}"

    def _respond(self, result: tuple[int, Any, list]) -> Response:
        status, body, headers = result
        header_map = dict(headers)
        if status in (301, 302, 303, 307):
            return Response(
                status_code=302, headers={**NO_STORE, "Location": header_map["Location"]}
            )
        header_map.pop("Content-Type", None)
        header_map.update(NO_STORE)
        return JSONResponse(
            body if isinstance(body, dict) else {}, status_code=status, headers=header_map
        )

    async def _audit(
        self,
        event: str,
        status: int,
        reason: str | None,
        client_id: str | None,
        request: Request,
        principal: Any = None,
        patients: tuple = (),
    ) -> None:
        who = principal or SecurePrincipal(
            subject=client_id or "unknown client", client_id=client_id, kind="system"
        )
        client = request.client
        await self.state.audit._append(
            (
                time_us(),
                who,
                ((f"auth:{event}", None, None, None),),
                status,
                patients,
                client.host if client else None,
                request.headers.get("x-request-id") or secrets.token_hex(6),
                request.method,
                request.url.path,
                "",
                False,
                None,
                reason,
            )
        )

    def _page(self, title: str, body: str, status: int = 200) -> HTMLResponse:
        text = (
            "<!doctype html><html lang=en><head><meta charset=utf-8>"
            f"<title>{html.escape(title)}</title><style>body{{font-family:sans-serif;"
            "max-width:34em;margin:3em auto}label,input,button{display:block;margin:.4em 0}"
            f"</style></head><body><h1>{html.escape(title)}</h1>{body}</body></html>"
        )
        return HTMLResponse(text, status_code=status, headers=PAGE_HEADERS)

    @staticmethod
    def _hidden(params: list[tuple[str, str]]) -> str:
        return "".join(
            f'<input type=hidden name="{html.escape(k)}" value="{html.escape(v)}">'
            for k, v in params
            if k not in ("username", "password")
        )

    def _error_redirect(self, grant: Any, error: OAuth2Error) -> Response:
        error.redirect_uri = grant.redirect_uri
        error.state = grant.request.payload.state
        return self._respond(self.server.handle_error_response(grant.request, error))

    # -- authorize -------------------------------------------------------------------------------

    async def _grant(self, request: Request, params: list[tuple[str, str]]) -> tuple[Any, Any]:
        req = FormRequest("GET", self._uri(request), request.headers, params, [])
        try:
            grant = await self.server.call(lambda: self.server.get_consent_grant(request=req))
        except ValueError:  # authlib refuses to quote a non-ASCII request value in its error
            raise InvalidRequestError(
                "a request parameter has characters that OAuth 2.0 does not allow"
            ) from None
        return req, grant

    async def authorize(self, request: Request) -> Response:
        params = list(request.query_params.multi_items())
        if request.method == "POST":
            params += await self._form(request)
        client_id = dict(params).get("client_id")
        try:
            req, grant = await self._grant(request, params)
        except OAuth2Error as error:
            await self._audit(
                "authorize", 400, error.description or error.error, client_id, request
            )
            if error.redirect_uri:
                return self._respond(self.server.handle_error_response(None, error))
            return self._page(
                "Authorization error",
                f"<p>{html.escape(error.description or error.error)}</p>",
                400,
            )
        data = req.payload.data
        if _norm(data.get("aud")) != _norm(self.settings.public_url):
            await self._audit("authorize", 400, "aud is not this FHIR server", client_id, request)
            return self._error_redirect(
                grant, InvalidRequestError("aud must be the FHIR base URL of this server")
            )
        scopes = (req.scope or "").split()
        launch_id = data.get("launch")
        if launch_id:
            launch = await self.auth.take(LAUNCH, launch_id)  # one-time, in every process
            if (
                launch is None
                or launch["expires"] < time.time()
                or (launch.get("client_id") and launch["client_id"] != client_id)
            ):
                await self._audit("authorize", 400, "unknown or expired launch", client_id, request)
                return self._error_redirect(
                    grant, InvalidRequestError("the launch is unknown or expired")
                )
            user = GrantUser.from_dict(launch["user"])
            user.context = dict(launch["context"])
            user.auth_time = int(time.time())
            await self.state.record_launch(user)
            await self._audit(
                "authorize",
                302,
                None,
                client_id,
                request,
                self.state.user_principal(user),
                (user.context.get("patient"),),
            )
            return self._respond(
                await self.server.call(self.server.create_authorization_response, req, user, grant)
            )
        if "launch" in scopes:
            await self._audit("authorize", 400, "launch scope without a launch", client_id, request)
            return self._error_redirect(
                grant,
                InvalidRequestError("the 'launch' scope needs a 'launch' parameter (EHR launch)"),
            )
        await self._audit("authorize", 200, "sign-in page shown", client_id, request)
        return await self._login_page(params)

    async def _login_page(self, params: list[tuple[str, str]], message: str = "") -> Response:
        """The sign-in form. It carries a one-time token that must come back both in the form
        and in a same-site cookie (login CSRF: a page elsewhere cannot post it)."""
        note = f"<p role=alert>{html.escape(message)}</p>" if message else ""
        token = await self._new_form_token()
        fields = [(k, v) for k, v in params if k != CSRF_FIELD] + [(CSRF_FIELD, token)]
        body = (
            f"{note}<form method=post action=/auth/authorize/login>{self._hidden(fields)}"
            "<label>User name <input name=username autocomplete=username required></label>"
            "<label>Password <input name=password type=password "
            "autocomplete=current-password required></label>"
            "<button type=submit>Sign in</button></form>"
        )
        page = self._page("Sign in to BiB", body, 401 if message else 200)
        page.set_cookie(
            CSRF_COOKIE,
            token,
            max_age=FORM_SECONDS,
            path="/auth/authorize",
            httponly=True,
            samesite="strict",
            secure=self.issuer.startswith("https://"),
        )
        return page

    async def _new_form_token(self) -> str:
        token = secrets.token_urlsafe(24)
        await self.auth.put_once(FORM, token, {}, time.time() + FORM_SECONDS)
        return token

    async def _form_token_valid(self, request: Request, fields: dict[str, str]) -> bool:
        token = fields.get(CSRF_FIELD, "")
        cookie = request.cookies.get(CSRF_COOKIE, "")
        if not token or not secrets.compare_digest(cookie.encode(), token.encode()):
            return False
        return await self.auth.take(FORM, token) is not None

    async def _locked(self, username: str) -> bool:
        # failures of the last LOGIN_LOCK_SECONDS, counted over every server process
        return await self.auth.login_failures(username) >= LOGIN_LOCK_AFTER

    async def login(self, request: Request) -> Response:
        form = await self._form(request)
        fields = dict(form)
        params = [(k, v) for k, v in form if k not in ("username", "password", CSRF_FIELD)]
        client_id = fields.get("client_id")
        if not await self._form_token_valid(request, fields):
            await self._audit(
                "login", 403, "sign-in form token missing or invalid", client_id, request
            )
            return self._page(
                "Authorization error",
                "<p>This sign-in form has expired or was not sent from this server's sign-in "
                "page. Go back to the application and start again.</p>",
                403,
            )
        try:
            req, grant = await self._grant(request, params)
        except OAuth2Error as error:
            await self._audit("login", 400, error.description or error.error, client_id, request)
            return self._page(
                "Authorization error",
                f"<p>{html.escape(error.description or error.error)}</p>",
                400,
            )
        if _norm(req.payload.data.get("aud")) != _norm(self.settings.public_url):
            await self._audit("login", 400, "aud is not this FHIR server", client_id, request)
            return self._error_redirect(
                grant, InvalidRequestError("aud must be the FHIR base URL of this server")
            )
        username = fields.get("username", "")
        user_record = self.state.users.get(username)
        if (
            await self._locked(username)
            or user_record is None
            or not check_secret(
                fields.get("password", ""), user_record.password_hash, user_record.password
            )
        ):
            await self.auth.login_failed(username, LOGIN_LOCK_SECONDS)
            await self._audit("login", 401, "wrong user name or password", client_id, request)
            return await self._login_page(params, "Wrong user name or password.")
        await self.auth.login_succeeded(username)
        user = GrantUser(
            subject=f"local:{username}",
            practitioner=user_record.practitioner,
            organization=user_record.organization,
            professions=list(user_record.professions),
            name=user_record.name,
            admin=user_record.admin,
            auth_time=int(time.time()),
        )
        if user.role is None and not user.admin:
            await self._audit("login", 403, "no BiB role for this profession", client_id, request)
            return self._error_redirect(
                grant, AccessDeniedError("your profession gives no access to BiB")
            )
        scopes = (req.scope or "").split()
        needs_patient = "launch/patient" in scopes or any(s.startswith("patient/") for s in scopes)
        if not needs_patient:
            await self._audit(
                "login", 302, None, client_id, request, self.state.user_principal(user)
            )
            return self._respond(
                await self.server.call(self.server.create_authorization_response, req, user, grant)
            )
        ticket = secrets.token_urlsafe(24)
        await self.auth.put_once(
            TICKET, ticket, {"params": params, "user": user.to_dict()}, time.time() + 600
        )
        patients = await self.state.patients_for(user)
        # the picker lists names: a disclosure of those patients, audited as such
        await self._audit(
            "login",
            200,
            "signed in; patient picker shown",
            client_id,
            request,
            self.state.user_principal(user),
            tuple(pid for pid, _ in patients),
        )
        return self._picker(ticket, patients)

    def _picker(self, ticket: str, patients: list[tuple[str, str]]) -> Response:
        if not patients:
            options = "<p>You have no care relationship with any patient.</p>"
        else:
            options = "".join(
                f'<label><input type=radio name=patient value="{html.escape(pid)}"'
                f"{' checked' if i == 0 else ''}> {html.escape(label)}</label>"
                for i, (pid, label) in enumerate(patients)
            )
        body = (
            "<form method=post action=/auth/authorize/confirm>"
            f'<input type=hidden name="ticket" value="{html.escape(ticket)}">'
            f"<fieldset><legend>Choose the patient</legend>{options}</fieldset>"
            "<button name=decision value=allow type=submit>Allow</button>"
            "<button name=decision value=deny type=submit>Deny</button></form>"
        )
        return self._page("Select a patient", body)

    async def confirm(self, request: Request) -> Response:
        fields = dict(await self._form(request))
        ticket = await self.auth.take(TICKET, fields.get("ticket", ""))
        if ticket is None:
            await self._audit(
                "authorize", 400, "unknown, expired or replayed picker ticket", None, request
            )
            return self._page(
                "Authorization error", "<p>This page has expired; start again.</p>", 400
            )
        params = [(str(k), str(v)) for k, v in ticket["params"]]
        user = GrantUser.from_dict(ticket["user"])
        client_id = dict(params).get("client_id")
        try:
            req, grant = await self._grant(request, params)
        except OAuth2Error as error:
            await self._audit(
                "authorize", 400, error.description or error.error, client_id, request
            )
            return self._page(
                "Authorization error",
                f"<p>{html.escape(error.description or error.error)}</p>",
                400,
            )
        if fields.get("decision") != "allow":
            await self._audit("authorize", 302, "the user denied access", client_id, request)
            return self._respond(
                await self.server.call(self.server.create_authorization_response, req, None, grant)
            )
        allowed = {pid for pid, _ in await self.state.patients_for(user)}
        patient = fields.get("patient")
        if patient not in allowed:
            await self._audit("authorize", 403, "patient not selectable", client_id, request)
            return self._error_redirect(grant, AccessDeniedError("the patient cannot be selected"))
        user.context = {"patient": patient, "need_patient_banner": True}
        await self._audit(
            "authorize", 302, None, client_id, request, self.state.user_principal(user), (patient,)
        )
        return self._respond(
            await self.server.call(self.server.create_authorization_response, req, user, grant)
        )

    # -- token, introspection, revocation --------------------------------------------------------

    async def _prefetch_client_keys(self, form: dict[str, str]) -> None:
        assertion = form.get("client_assertion")
        if not assertion:
            return
        subject = peek_assertion_subject(assertion)
        client = self.state.clients.get(subject or "")
        if client is None or not client.jwks_uri or client.jwks is not None:
            return
        if client.fetched_keys is not None and time.monotonic() - client.fetched_at < 300:
            return
        try:
            async with httpx.AsyncClient(timeout=5) as http:
                response = await http.get(client.jwks_uri)
                response.raise_for_status()
                from joserfc.jwk import KeySet

                client.fetched_keys = KeySet.import_key_set(response.json())
                client.fetched_at = time.monotonic()
        except Exception as exc:
            log.warning(
                "could not fetch the JWKS of client %s: %s", client.client_id, type(exc).__name__
            )

    async def token(self, request: Request) -> Response:
        form = await self._form(request)
        fields = dict(form)
        await self._prefetch_client_keys(fields)
        req = FormRequest("POST", self._uri(request), request.headers, [], form)
        result = await self.server.call(self.server.create_token_response, req)
        status, body, _ = result
        client_id = (
            fields.get("client_id")
            or peek_assertion_subject(fields.get("client_assertion", ""))
            or getattr(getattr(req, "client", None), "client_id", None)
        )
        reason = None
        if status >= 400 and isinstance(body, dict):
            reason = f"{body.get('error')}: {body.get('error_description', '')}"[:300]
        await self._audit(
            f"token:{fields.get('grant_type', '?')}", status, reason, client_id, request
        )
        return self._respond(result)

    async def introspect(self, request: Request) -> Response:
        form = await self._form(request)
        auth = request.headers.get("authorization", "")
        if auth[:7].lower() == "bearer ":
            try:
                caller = await self.state.verifier.verify(auth[7:].strip())
            except TokenError:
                return JSONResponse({"error": "invalid_token"}, status_code=401, headers=NO_STORE)
            token = dict(form).get("token")
            if not token:
                return JSONResponse({"error": "invalid_request"}, status_code=400, headers=NO_STORE)
            record = await self.server.call(
                self.server.find_token, token, dict(form).get("token_type_hint")
            )
            await self._audit("introspect", 200, None, caller.client_id, request, caller)
            if (
                record is None
                or record.is_expired()
                or record.is_revoked()
                or not (caller.admin or record.client_id == caller.client_id)
            ):
                return JSONResponse({"active": False}, headers=NO_STORE)
            return JSONResponse(self.server.introspection(record), headers=NO_STORE)
        req = FormRequest("POST", self._uri(request), request.headers, [], form)
        result = await self.server.call(self.server.create_endpoint_response, "introspection", req)
        client = getattr(req, "client", None)
        await self._audit(
            "introspect", result[0], None, getattr(client, "client_id", None), request
        )
        return self._respond(result)

    async def revoke(self, request: Request) -> Response:
        form = await self._form(request)
        req = FormRequest("POST", self._uri(request), request.headers, [], form)
        result = await self.server.call(self.server.create_endpoint_response, "revocation", req)
        await self._audit("revoke", result[0], None, dict(form).get("client_id"), request)
        return self._respond(result)

    # -- EPD launch registration -----------------------------------------------------------------

    async def _registrar(self, request: Request) -> Any:
        auth = request.headers.get("authorization", "")
        scheme, _, value = auth.partition(" ")
        if scheme.lower() == "basic":
            from authlib.oauth2.rfc6749.util import extract_basic_authorization

            client_id, secret = extract_basic_authorization({"Authorization": auth})
            client = self.state.clients.get(client_id or "")
            if (
                client is not None
                and secret
                and check_secret(secret, client.secret_hash, client.secret)
            ):
                return client
            return None
        if scheme.lower() == "bearer":
            try:
                principal = await self.state.verifier.verify(value.strip())
            except TokenError:
                return None
            if principal.kind == "system":
                return self.state.clients.get(principal.client_id or "")
        return None

    async def register_launch(self, request: Request) -> Response:
        client = await self._registrar(request)
        if client is None:
            await self._audit(
                "launch", 401, "launch registration without valid client credentials", None, request
            )
            return JSONResponse(
                {"error": "invalid_client"},
                status_code=401,
                headers={**NO_STORE, "WWW-Authenticate": 'Basic realm="BiB launch"'},
            )
        if not client.launch_registrar:
            await self._audit(
                "launch", 403, "client may not register launches", client.client_id, request
            )
            return JSONResponse({"error": "unauthorized_client"}, status_code=403, headers=NO_STORE)
        try:
            body = orjson.loads(await request.body())
            assert isinstance(body, dict)
        except (orjson.JSONDecodeError, AssertionError):
            return JSONResponse(
                {"error": "invalid_request", "error_description": "JSON object expected"},
                status_code=400,
            )
        patient = body.get("patient")
        user = body.get("user") if isinstance(body.get("user"), dict) else {}
        if not isinstance(patient, str) or not user.get("id"):
            return JSONResponse(
                {
                    "error": "invalid_request",
                    "error_description": "patient and user.id are required",
                },
                status_code=400,
            )
        stored = await self.state.svc.store.current("Patient", patient)
        if stored is None or stored.deleted:
            await self._audit("launch", 422, "unknown patient", client.client_id, request)
            return JSONResponse(
                {"error": "invalid_request", "error_description": "unknown patient"},
                status_code=422,
            )
        grant_user = GrantUser(
            subject=f"{client.client_id}/{user['id']}",
            practitioner=user.get("practitioner"),
            organization=user.get("organization"),
            professions=[p for p in user.get("professions", ()) if isinstance(p, str)],
            name=user.get("name"),
        )
        if grant_user.role is None:
            await self._audit(
                "launch", 422, "no BiB role for the user's profession", client.client_id, request
            )
            return JSONResponse(
                {
                    "error": "invalid_request",
                    "error_description": "the user's profession gives no BiB role",
                },
                status_code=422,
            )
        context: dict[str, Any] = {"patient": patient}
        if isinstance(body.get("encounter"), str):
            context["encounter"] = body["encounter"]
        if isinstance(body.get("fhirContext"), list):
            context["fhirContext"] = body["fhirContext"]
        context["need_patient_banner"] = bool(body.get("need_patient_banner", False))
        if isinstance(body.get("intent"), str):
            context["intent"] = body["intent"]
        launch_id = secrets.token_urlsafe(24)
        expires = time.time() + self.settings.launch_seconds
        launch = {
            "user": grant_user.to_dict(),
            "context": context,
            "client_id": body.get("client_id"),
            "expires": expires,
            "registrar": client.client_id,
        }
        await self.auth.put_once(LAUNCH, launch_id, launch, expires)
        await self._audit("launch", 201, None, client.client_id, request, patients=(patient,))
        return JSONResponse(
            {"launch": launch_id, "expires_in": self.settings.launch_seconds},
            status_code=201,
            headers=NO_STORE,
        )

    # -- routes ----------------------------------------------------------------------------------

    def routes(self, web: FastAPI, fhir_base_path: str) -> None:
        async def smart(_request: Request) -> JSONResponse:
            return JSONResponse(self.smart_configuration())

        async def openid(_request: Request) -> JSONResponse:
            return JSONResponse(self.openid_configuration())

        for prefix in dict.fromkeys(("", fhir_base_path)):
            web.add_api_route(f"{prefix}/.well-known/smart-configuration", smart, methods=["GET"])
            web.add_api_route(f"{prefix}/.well-known/openid-configuration", openid, methods=["GET"])

        async def jwks(_request: Request) -> JSONResponse:
            return JSONResponse(self.state.key.jwks())

        web.add_api_route("/auth/jwks", jwks, methods=["GET"])
        web.add_api_route("/auth/authorize", self.authorize, methods=["GET", "POST"])
        web.add_api_route("/auth/authorize/login", self.login, methods=["POST"])
        web.add_api_route("/auth/authorize/confirm", self.confirm, methods=["POST"])
        web.add_api_route("/auth/token", self.token, methods=["POST"])
        web.add_api_route("/auth/introspect", self.introspect, methods=["POST"])
        web.add_api_route("/auth/revoke", self.revoke, methods=["POST"])
        web.add_api_route("/auth/launch", self.register_launch, methods=["POST"])


def time_us() -> int:
    return int(time.time() * 1_000_000)
