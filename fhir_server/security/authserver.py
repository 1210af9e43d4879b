"""The built-in SMART App Launch 2.x authorization server, on authlib's OAuth 2.0 machinery.

authlib provides the protocol: authorization-code grant (RFC 6749) with PKCE (RFC 7636, narrowed
here to ``S256`` and required for every client), refresh tokens, client credentials with
``private_key_jwt`` client authentication (RFC 7523), revocation (RFC 7009), introspection
(RFC 7662) and OpenID Connect id tokens. This module supplies what authlib leaves to the
application: clients (registered by configuration), storage of codes and refresh tokens, the SMART
launch context (EHR launch ids registered by a trusted EPD backend, the patient picked in a
standalone launch), SMART scopes (narrowed to what the client may ask), JWT access tokens carrying
scopes and launch context, ``fhirUser`` id tokens, and RS384/ES384-only client assertions with
``jti`` replay protection and ``jku`` allow-listing.

authlib's server classes are synchronous, and the server's state (codes, refresh tokens,
revocations, nonces, assertion ``jti``s) is in the store (authstore.py), which is asynchronous:
web.py runs each authlib call in a worker thread, and the hooks here wait for the store
operations they need on the event loop (``BibAuthorizationServer.wait``). JWKS of clients
registered by URL are fetched beforehand, asynchronously, by web.py.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import secrets
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson
from authlib.oauth2 import AuthorizationServer, OAuth2Request
from authlib.oauth2.rfc6749 import (
    AuthorizationCodeMixin,
    ClientMixin,
    InvalidClientError,
    InvalidRequestError,
    InvalidScopeError,
    TokenMixin,
    grants,
)
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7523 import JWTBearerClientAssertion
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oauth2.rfc7662 import IntrospectionEndpoint
from authlib.oidc.core.grants import OpenIDCode
from joserfc import jws, jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from fhir_server.security.authstore import ASSERTION, AuthStore, grant_of_code
from fhir_server.security.policy import professions
from fhir_server.security.scopes import ScopeSet, narrow
from fhir_server.security.tokens import SigningKey, TokenError, TokenVerifier, new_jti

log = logging.getLogger("fhir_server.security.auth")

ASSERTION_ALGS = ["RS384", "ES384"]
MAX_ASSERTION_LIFETIME = 300
CLIENT_KINDS = ("public", "confidential-symmetric", "confidential-asymmetric")
AUTH_METHODS = {
    "public": ("none",),
    "confidential-symmetric": ("client_secret_basic", "client_secret_post"),
    "confidential-asymmetric": ("private_key_jwt",),
}
ALL_METHODS = ["client_secret_basic", "client_secret_post", "private_key_jwt", "none"]


# -- secrets ------------------------------------------------------------------------------------


def hash_secret(secret: str, salt: bytes | None = None) -> str:
    """``scrypt$<salt hex>$<hash hex>``: the form to store client secrets and user passwords in."""
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.scrypt(secret.encode(), salt=salt, n=2**14, r=8, p=1, dklen=32)
    return f"scrypt${salt.hex()}${digest.hex()}"


def check_secret(secret: str, stored_hash: str | None, stored_plain: str | None) -> bool:
    if stored_hash:
        try:
            scheme, salt, _digest = stored_hash.split("$")
        except ValueError:
            return False
        if scheme != "scrypt":
            return False
        return hmac.compare_digest(hash_secret(secret, bytes.fromhex(salt)), stored_hash)
    if stored_plain:
        return hmac.compare_digest(secret.encode(), stored_plain.encode())
    return False


# -- registrations ------------------------------------------------------------------------------


class Client(ClientMixin):
    def __init__(self, data: dict[str, Any]) -> None:
        self.client_id: str = data["client_id"]
        self.kind: str = data.get("type", "public")
        if self.kind not in CLIENT_KINDS:
            raise ValueError(f"client {self.client_id}: type must be one of {CLIENT_KINDS}")
        self.name: str = data.get("name", self.client_id)
        self.redirect_uris: list[str] = list(data.get("redirect_uris", ()))
        self.scope: str = data.get("scope", "")
        self.grant_types: list[str] = list(
            data.get("grant_types")
            or (
                ["client_credentials"]
                if self.kind == "confidential-asymmetric" and not self.redirect_uris
                else ["authorization_code", "refresh_token"]
            )
        )
        self.secret: str | None = data.get("client_secret")
        self.secret_hash: str | None = data.get("client_secret_hash")
        self.jwks: dict | None = data.get("jwks")
        self.jwks_uri: str | None = data.get("jwks_uri")
        self.launch_registrar: bool = bool(data.get("launch_registrar", False))
        self.introspect_any: bool = bool(data.get("introspect", False))
        self.patient_data: bool = bool(data.get("patient_data", False))
        self.role: str | None = data.get("role")
        self.admin: bool = bool(data.get("admin", False))
        self.fetched_keys: KeySet | None = None
        self.fetched_at = 0.0
        if self.kind == "confidential-asymmetric" and not (self.jwks or self.jwks_uri):
            raise ValueError(
                f"client {self.client_id}: an asymmetric client needs jwks or jwks_uri"
            )
        if self.kind == "confidential-symmetric" and not (self.secret or self.secret_hash):
            raise ValueError(f"client {self.client_id}: a symmetric client needs a secret")

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str | None:
        return self.redirect_uris[0] if len(self.redirect_uris) == 1 else None

    def get_allowed_scope(self, scope: str | None) -> str:
        return narrow(scope or "", self.scope)

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri in self.redirect_uris

    def check_client_secret(self, client_secret: str) -> bool:
        return check_secret(client_secret, self.secret_hash, self.secret)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method in AUTH_METHODS[self.kind]

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code" and "authorization_code" in self.grant_types

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in self.grant_types

    def keyset(self) -> KeySet:
        if self.jwks is not None:
            return KeySet.import_key_set(self.jwks)
        if self.fetched_keys is not None:
            return self.fetched_keys
        raise InvalidClientError(description="the client's JWKS could not be retrieved")


@dataclass(slots=True)
class LocalUser:
    username: str
    password: str | None = None
    password_hash: str | None = None
    practitioner: str | None = None
    organization: str | None = None
    professions: list[str] = field(default_factory=list)
    name: str | None = None
    admin: bool = False


def load_registrations(path: str | None) -> tuple[dict[str, Client], dict[str, LocalUser]]:
    """Clients and local users from a JSON or TOML file (docs/security.md "Clients")."""
    if not path:
        return {}, {}
    raw = Path(path).read_bytes()
    if path.endswith(".toml"):
        import tomllib

        data = tomllib.loads(raw.decode("utf-8"))
    else:
        data = orjson.loads(raw)
    clients = {c["client_id"]: Client(c) for c in data.get("clients", ())}
    users = {}
    for item in data.get("users", ()):
        user = LocalUser(**{k: v for k, v in item.items() if k in LocalUser.__dataclass_fields__})
        users[user.username] = user
    return clients, users


# -- the user behind a grant --------------------------------------------------------------------


@dataclass(slots=True)
class GrantUser:
    """Who authorised the grant and in which launch context."""

    subject: str
    practitioner: str | None = None
    organization: str | None = None
    professions: list[str] = field(default_factory=list)
    name: str | None = None
    admin: bool = False
    context: dict[str, Any] = field(default_factory=dict)  # patient, encounter, fhirContext...
    origin_code: str | None = None
    auth_time: int = 0
    grant_id: str | None = None  # the authorization these tokens belong to (revoked as one)

    @property
    def role(self) -> str | None:
        return professions().role_of(self.professions, [], [])

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("origin_code", None)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GrantUser:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})

    def get_user_id(self) -> str:
        return self.subject


@dataclass(slots=True)
class AuthCode(AuthorizationCodeMixin):
    code: str
    client_id: str
    redirect_uri: str
    scope: str
    user: GrantUser
    code_challenge: str | None
    code_challenge_method: str | None
    nonce: str | None
    expires: float

    def get_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope

    def get_nonce(self) -> str | None:
        return self.nonce

    def get_auth_time(self) -> int:
        return self.user.auth_time

    def get_acr(self) -> None:
        return None

    def get_amr(self) -> None:
        return None


class TokenRecord(TokenMixin):
    """An access token (JWT claims) or a refresh token (stored record), for introspection and
    revocation."""

    def __init__(self, kind: str, token: str, data: dict[str, Any]) -> None:
        self.kind = kind
        self.token = token
        self.data = data

    @property
    def client_id(self) -> str | None:
        return self.data.get("client_id")

    def check_client(self, client: Client) -> bool:
        return client.client_id == self.client_id

    def get_scope(self) -> str:
        return self.data.get("scope", "")

    def get_expires_in(self) -> int:
        return int(self.expires_at - time.time())

    @property
    def expires_at(self) -> float:
        return float(self.data.get("exp") or self.data.get("expires") or 0)

    def is_expired(self) -> bool:
        return self.expires_at < time.time()

    def is_revoked(self) -> bool:
        return bool(self.data.get("revoked"))

    def get_user(self) -> Any:
        return None

    def get_client(self) -> Any:
        return None


# -- authlib integration ------------------------------------------------------------------------


class FormRequest(OAuth2Request):
    """An authlib request from already-parsed parameters (query string and/or form body)."""

    def __init__(
        self,
        method: str,
        uri: str,
        headers: Any,
        args: list[tuple[str, str]],
        form: list[tuple[str, str]],
    ) -> None:
        super().__init__(method, uri, headers=headers)
        self._args = _first(args)
        self._form = _first(form)
        merged = [*args, *form]
        datalist: dict[str, list[str]] = {}
        for key, value in merged:
            datalist.setdefault(key, []).append(value)
        from authlib.oauth2.rfc6749.requests import BasicOAuth2Payload

        payload = BasicOAuth2Payload(_first(merged))
        payload._datalist = datalist  # keeps repeated parameters visible to authlib's checks
        self.payload = payload

    @property
    def args(self) -> dict[str, str]:
        return self._args

    @property
    def form(self) -> dict[str, str]:
        return self._form


def _first(pairs: list[tuple[str, str]]) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in pairs:
        out.setdefault(key, value)
    return out


class S256Only(CodeChallenge):
    """PKCE as SMART requires it: ``S256`` only (``plain`` refused), for every client."""

    DEFAULT_CODE_CHALLENGE_METHOD = "S256"
    SUPPORTED_CODE_CHALLENGE_METHOD = ["S256"]
    CODE_CHALLENGE_METHODS = {"S256": CodeChallenge.CODE_CHALLENGE_METHODS["S256"]}

    def validate_code_challenge(self, grant: Any, redirect_uri: str) -> None:
        data = grant.request.payload.data
        if not data.get("code_challenge"):
            raise InvalidRequestError("PKCE is required: send code_challenge (S256)")
        if data.get("code_challenge_method") != "S256":
            raise InvalidRequestError("code_challenge_method must be S256 (plain is not accepted)")
        super().validate_code_challenge(grant, redirect_uri)

    def validate_code_verifier(self, grant: Any, result: Any) -> None:
        if not grant.request.form.get("code_verifier"):
            raise InvalidRequestError("Missing 'code_verifier' (PKCE is required)")
        super().validate_code_verifier(grant, result)


class PrivateKeyJwt(JWTBearerClientAssertion):
    """``private_key_jwt`` (SMART asymmetric client authentication): RS384 or ES384, ``iss`` =
    ``sub`` = client id, ``aud`` = token endpoint, ``exp`` at most 5 minutes ahead, ``jti`` never
    seen before, ``jku`` (if sent) equal to the registered JWKS URL."""

    CLIENT_AUTH_METHOD = "private_key_jwt"

    def __init__(self, server: BibAuthorizationServer) -> None:
        super().__init__(validate_jti=True, leeway=60)
        self.server = server

    def get_audiences(self) -> list[str]:
        return [self.server.token_endpoint]

    def validate_jti(self, claims: dict[str, Any], jti: Any) -> bool:
        if not isinstance(jti, str) or not jti:
            return False
        now = time.time()
        exp = claims.get("exp", now)
        until = (float(exp) if isinstance(exp, (int, float)) else now) + self.leeway
        key = f"{claims.get('sub')}|{jti}"
        # first sight in any process on the store wins; a replay finds the record
        return self.server.wait(self.server.store.put_once(ASSERTION, key, {}, until))

    def resolve_client_public_key(self, client: Client) -> KeySet:
        return client.keyset()

    def __call__(self, query_client: Any, request: FormRequest) -> Client | None:
        data = request.form
        if data.get("client_assertion_type") is None and data.get("client_assertion") is None:
            return None
        if data.get("client_assertion_type") != self.CLIENT_ASSERTION_TYPE:
            raise InvalidClientError(description="client_assertion_type is not jwt-bearer")
        assertion = data.get("client_assertion")
        if not assertion:
            raise InvalidClientError(description="client_assertion is missing")
        headers, claims = self.extract_assertion(assertion)
        client_id = claims.get("sub")
        if not isinstance(client_id, str):
            raise InvalidClientError(description="the client assertion has no 'sub'")
        client = query_client(client_id)
        if client is None:
            raise InvalidClientError(description="The client does not exist on this server.")
        if headers.get("alg") not in ASSERTION_ALGS:
            raise InvalidClientError(description="client assertions must be signed RS384 or ES384")
        jku = headers.get("jku")
        if jku is not None and jku != client.jwks_uri:
            raise InvalidClientError(
                description="the assertion's jku is not the registered JWKS URL"
            )
        try:
            token = jwt.decode(assertion, client.keyset(), algorithms=ASSERTION_ALGS)
        except JoseError as exc:
            raise InvalidClientError(
                description="the client assertion signature is not valid"
            ) from exc
        self.verify_claims(token.claims)
        exp = token.claims.get("exp")
        if (
            isinstance(exp, (int, float))
            and exp > time.time() + MAX_ASSERTION_LIFETIME + self.leeway
        ):
            raise InvalidClientError(
                description="the client assertion expires too far ahead (> 5 min)"
            )
        request.client = client
        return self.authenticate_client(client)


class AuthorizationCodeGrant(grants.AuthorizationCodeGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = ALL_METHODS

    def save_authorization_code(self, code: str, request: FormRequest) -> None:
        data = request.payload.data
        user: GrantUser = request.user
        server: BibAuthorizationServer = self.server
        expires = time.time() + server.settings.auth_code_seconds
        record = {
            "client_id": request.client.client_id,
            "redirect_uri": data.get("redirect_uri") or request.client.get_default_redirect_uri(),
            "scope": request.scope,
            "user": user.to_dict(),
            "code_challenge": data.get("code_challenge"),
            "code_challenge_method": data.get("code_challenge_method"),
            "nonce": data.get("nonce"),
            "expires": expires,
        }
        # kept as long as a token of its first exchange lives, so that a replay is recognised
        keep = expires + server.settings.access_token_seconds
        server.wait(server.store.save_code(code, record, keep))

    def query_authorization_code(self, code: str, client: Client) -> AuthCode | None:
        server: BibAuthorizationServer = self.server
        claimed = server.wait(server.store.claim_code(code))  # one taker across all processes
        if claimed is None:
            return None
        if not claimed.first:  # a replay: revoke what the first exchange produced
            server.wait(server.store.revoke_grant(grant_of_code(code), server.grant_lifetime()))
            log.warning("an authorization code was used twice; its tokens were revoked")
            return None
        item = claimed.value
        if item["client_id"] != client.client_id or item["expires"] < time.time():
            return None
        return AuthCode(
            code=code,
            client_id=item["client_id"],
            redirect_uri=item["redirect_uri"],
            scope=item["scope"],
            user=GrantUser.from_dict(item["user"]),
            code_challenge=item.get("code_challenge"),
            code_challenge_method=item.get("code_challenge_method"),
            nonce=item.get("nonce"),
            expires=item["expires"],
        )

    def delete_authorization_code(self, authorization_code: AuthCode) -> None:
        return None  # claimed when it was looked up

    def authenticate_user(self, authorization_code: AuthCode) -> GrantUser:
        user = authorization_code.user
        user.origin_code = authorization_code.code
        user.grant_id = grant_of_code(authorization_code.code)
        return user


class RefreshTokenGrant(grants.RefreshTokenGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = ALL_METHODS
    INCLUDE_NEW_REFRESH_TOKEN = True  # rotate

    def authenticate_refresh_token(self, refresh_token: str) -> TokenRecord | None:
        server: BibAuthorizationServer = self.server
        store = server.store
        record = server.wait(store.get_refresh(refresh_token))
        if record is None or record["expires"] < time.time():
            return None
        client = self.request.client
        if client is not None and record["client_id"] != client.client_id:
            return None  # another client's token: refused without spending it
        claimed = server.wait(store.claim_refresh(refresh_token))  # one taker, all processes
        if claimed is None:
            return None
        if not claimed.first:  # reuse of a rotated refresh token: the grant is compromised
            server.wait(store.revoke_grant(record["grant_id"], server.grant_lifetime()))
            log.warning("a refresh token was used twice; every token of its grant was revoked")
            return None
        if record["revoked"]:  # its grant was revoked (claimed just now, spent anyway)
            return None
        return TokenRecord("refresh", refresh_token, record)

    def authenticate_user(self, refresh_token: TokenRecord) -> GrantUser:
        user = GrantUser.from_dict(refresh_token.data["grant"])
        user.grant_id = refresh_token.data.get("grant_id")
        return user

    def revoke_old_credential(self, refresh_token: TokenRecord) -> None:
        return None  # spent when it was claimed


class ClientCredentialsGrant(grants.ClientCredentialsGrant):
    """SMART Backend Services: asymmetric client authentication, ``system/`` scopes, short-lived
    tokens, no refresh token."""

    TOKEN_ENDPOINT_AUTH_METHODS = ["private_key_jwt"]

    def create_token_response(self) -> tuple[int, Any, Any]:
        client: Client = self.request.client
        requested = self.request.payload.scope or ""
        granted = " ".join(
            s for s in client.get_allowed_scope(requested).split() if s.startswith("system/")
        )
        if not granted:
            raise InvalidScopeError("none of the requested scopes is allowed for this client")
        token = self.generate_token(scope=granted, include_refresh_token=False)
        self.save_token(token)
        return 200, token, self.TOKEN_RESPONSE_HEADER


class SmartOpenIdCode(OpenIDCode):
    """``openid fhirUser``: an id token signed with the server key, ``fhirUser`` the absolute URL
    of the user's Practitioner."""

    def __init__(self, server: BibAuthorizationServer) -> None:
        super().__init__(require_nonce=False)
        self.server = server

    def exists_nonce(self, nonce: str, request: Any) -> bool:
        client_id = request.payload.client_id or ""
        return self.server.wait(self.server.store.nonce_used(client_id, nonce))

    def resolve_client_private_key(self, client: Client) -> Any:
        return self.server.key.key

    def get_client_algorithm(self, client: Client) -> str:
        return self.server.key.alg

    def get_encode_header(self, client: Client) -> dict[str, str]:
        return {"alg": self.server.key.alg, "kid": self.server.key.kid, "typ": "JWT"}

    def get_client_claims(self, client: Client) -> dict[str, Any]:
        return {
            "iss": self.server.issuer,
            "aud": [client.client_id],
            "exp": int(time.time()) + self.server.settings.access_token_seconds,
        }

    def generate_user_info(self, user: GrantUser, scope: str) -> dict[str, Any]:
        info: dict[str, Any] = {"sub": user.subject}
        scopes = scope.split()
        if "fhirUser" in scopes and user.practitioner:
            info["fhirUser"] = f"{self.server.fhir_base}/{user.practitioner}"
        if ("profile" in scopes or "fhirUser" in scopes) and user.name:
            info["name"] = user.name
        return info


class BibIntrospection(IntrospectionEndpoint):
    CLIENT_AUTH_METHODS = ALL_METHODS

    def query_token(self, token_string: str, token_type_hint: str | None) -> TokenRecord | None:
        return self.server.find_token(token_string, token_type_hint)

    def check_permission(self, token: TokenRecord, client: Client, request: Any) -> bool:
        return client.introspect_any or token.client_id == client.client_id

    def introspect_token(self, token: TokenRecord) -> dict[str, Any]:
        return self.server.introspection(token)


class BibRevocation(RevocationEndpoint):
    CLIENT_AUTH_METHODS = ALL_METHODS

    def query_token(self, token_string: str, token_type_hint: str | None) -> TokenRecord | None:
        return self.server.find_token(token_string, token_type_hint, include_expired=True)

    def revoke_token(self, token: TokenRecord, request: Any) -> None:
        self.server.revoke(token)


class BibAuthorizationServer(AuthorizationServer):
    def __init__(
        self,
        settings: Any,
        key: SigningKey,
        store: AuthStore,
        verifier: TokenVerifier,
        clients: dict[str, Client],
        users: dict[str, LocalUser],
    ) -> None:
        super().__init__()
        self.settings = settings
        self.key = key
        self.store = store
        self.verifier = verifier
        self.clients = clients
        self.users = users
        self.issuer = settings.auth_issuer
        self.fhir_base = settings.public_url
        self.token_endpoint = f"{self.issuer}/auth/token"
        self.loop: asyncio.AbstractEventLoop | None = None
        self.register_token_generator("default", self.generate)
        self.register_client_auth_method("private_key_jwt", PrivateKeyJwt(self))
        self.register_grant(
            AuthorizationCodeGrant, [S256Only(required=True), SmartOpenIdCode(self)]
        )
        self.register_grant(RefreshTokenGrant)
        self.register_grant(ClientCredentialsGrant)
        self.register_endpoint(BibIntrospection)
        self.register_endpoint(BibRevocation)

    # -- the store, from authlib's synchronous hooks ----------------------------------------------

    async def call(self, fn: Any, *args: Any) -> Any:
        """Run an authlib entry point in a worker thread; its hooks reach the store through
        ``wait`` on this event loop."""
        self.loop = asyncio.get_running_loop()
        return await asyncio.to_thread(fn, *args)

    def wait(self, coro: Any) -> Any:
        loop = self.loop
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if loop is None or running is not None:
            coro.close()
            raise RuntimeError("authlib calls touching the store must run through call()")
        return asyncio.run_coroutine_threadsafe(coro, loop).result(timeout=30)

    def grant_lifetime(self) -> float:
        """How long a grant revocation must be remembered: past the expiry of every refresh
        token (its rotations need the grant alive) and access token issued before it."""
        settings = self.settings
        return time.time() + settings.refresh_token_seconds + settings.access_token_seconds + 60

    # -- authlib hooks ---------------------------------------------------------------------------

    def query_client(self, client_id: str) -> Client | None:
        return self.clients.get(client_id)

    def save_token(self, token: dict[str, Any], request: Any) -> None:
        return None  # access tokens are self-contained; refresh tokens are saved in generate()

    def create_oauth2_request(self, request: Any) -> FormRequest:
        return request

    def create_json_request(self, request: Any) -> Any:
        raise NotImplementedError

    def handle_response(self, status: int, body: Any, headers: Any) -> tuple[int, Any, list]:
        return status, body, list(headers)

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        return None

    def validate_requested_scope(self, scope: str) -> None:
        return None  # requested scopes are narrowed to the client's registration instead

    # -- tokens ----------------------------------------------------------------------------------

    def generate(
        self,
        grant_type: str,
        client: Client,
        user: GrantUser | None = None,
        scope: str | None = None,
        expires_in: int | None = None,
        include_refresh_token: bool = True,
    ) -> dict[str, Any]:
        now = int(time.time())
        scope = scope or ""
        if grant_type == "client_credentials" or user is None:
            lifetime = self.settings.backend_token_seconds
            claims = access_claims(
                self.settings,
                subject=client.client_id,
                client_id=client.client_id,
                scope=scope,
                lifetime=lifetime,
                kind="system",
                role=client.role,
                admin=client.admin,
                patient_data=client.patient_data,
                name=client.name,
            )
            return {
                "access_token": self.key.sign(claims, typ="at+jwt"),
                "token_type": "Bearer",
                "expires_in": lifetime,
                "scope": scope,
            }
        context = user.context
        granted = ScopeSet.parse(scope)
        if "patient" not in context:  # no patient context: patient/ scopes cannot be honoured
            scope = " ".join(s for s in scope.split() if not s.startswith("patient/"))
        lifetime = self.settings.access_token_seconds
        claims = access_claims(
            self.settings,
            subject=user.subject,
            client_id=client.client_id,
            scope=scope,
            lifetime=lifetime,
            kind="user",
            role=user.role,
            admin=user.admin,
            practitioner=user.practitioner,
            organization=user.organization,
            professions=user.professions,
            name=user.name,
            patient=context.get("patient"),
            encounter=context.get("encounter"),
            fhir_context=context.get("fhirContext"),
        )
        if user.grant_id:
            claims["bib_grant"] = user.grant_id
        token: dict[str, Any] = {
            "access_token": self.key.sign(claims, typ="at+jwt"),
            "token_type": "Bearer",
            "expires_in": lifetime,
            "scope": scope,
        }
        for name in ("patient", "encounter", "fhirContext", "need_patient_banner", "intent"):
            if name in context:
                token[name] = context[name]
        if "patient" in context:
            token.setdefault("need_patient_banner", True)
        wants_refresh = bool({"offline_access", "online_access"} & granted.other)
        if include_refresh_token and wants_refresh and client.check_grant_type("refresh_token"):
            refresh = secrets.token_urlsafe(48)
            self.wait(
                self.store.save_refresh(
                    refresh,
                    client.client_id,
                    scope,
                    user.to_dict(),
                    user.grant_id or secrets.token_hex(16),
                    now + self.settings.refresh_token_seconds,
                )
            )
            token["refresh_token"] = refresh
        return token

    def find_token(
        self, token: str, hint: str | None, include_expired: bool = False
    ) -> TokenRecord | None:
        if hint != "refresh_token" and token.count(".") == 2:
            try:
                principal = self.verifier.verify_own(token, check_expiry=False)
            except TokenError:
                principal = None
            if principal is not None:
                claims = dict(principal.claims)
                claims["revoked"] = self.wait(
                    self.store.is_revoked(principal.token_id, claims.get("bib_grant"))
                )
                return TokenRecord("access", token, claims)
        record = self.wait(self.store.get_refresh(token))
        if record is not None:
            return TokenRecord("refresh", token, record)
        return None

    def revoke(self, token: TokenRecord) -> None:
        if token.kind == "access":
            jti = token.data.get("jti")
            if jti:
                self.wait(self.store.revoke_access(jti, token.expires_at))
                self.verifier.forget(jti)
        else:
            # RFC 7009 2.1: revoking a refresh token revokes the access tokens of its grant too
            self.wait(self.store.spend_refresh(token.token))
            grant_id = token.data.get("grant_id")
            if grant_id:
                self.wait(self.store.revoke_grant(grant_id, self.grant_lifetime()))

    def introspection(self, token: TokenRecord) -> dict[str, Any]:
        data = token.data
        if token.kind == "refresh":
            return {
                "active": True,
                "token_type": "refresh_token",
                "scope": data.get("scope", ""),
                "client_id": data.get("client_id"),
                "exp": int(data.get("expires", 0)),
            }
        out: dict[str, Any] = {
            "active": True,
            "token_type": "Bearer",
            "scope": data.get("scope", ""),
            "client_id": data.get("client_id"),
            "exp": data.get("exp"),
            "iat": data.get("iat"),
            "sub": data.get("sub"),
            "iss": data.get("iss"),
            "aud": data.get("aud"),
        }
        for name in ("patient", "encounter", "fhirContext"):
            if name in data:
                out[name] = data[name]
        if data.get("bib_fhir_user"):
            out["fhirUser"] = f"{self.fhir_base}/{data['bib_fhir_user']}"
        return out


def access_claims(
    settings: Any,
    *,
    subject: str,
    client_id: str,
    scope: str,
    lifetime: int,
    kind: str = "user",
    role: str | None = None,
    admin: bool = False,
    patient_data: bool = True,
    practitioner: str | None = None,
    organization: str | None = None,
    professions: list[str] | None = None,
    name: str | None = None,
    patient: str | None = None,
    encounter: str | None = None,
    fhir_context: Any = None,
    source: str = "smart",
) -> dict[str, Any]:
    """The claims of one of our JWT access tokens (shared with ``fhir-server demo-token``)."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": settings.auth_issuer,
        "aud": settings.public_url,
        "sub": subject,
        "client_id": client_id,
        "scope": scope,
        "iat": now,
        "nbf": now,
        "exp": now + lifetime,
        "jti": new_jti(),
        "bib_token": "access",
        "bib_kind": kind,
        "bib_source": source,
        "bib_admin": admin,
    }
    if kind == "system":
        claims["bib_patient_data"] = patient_data
    if role:
        claims["bib_role"] = role
    if practitioner:
        claims["bib_practitioner"] = practitioner
        claims["bib_fhir_user"] = practitioner
    if organization:
        claims["bib_organization"] = organization
    if professions:
        claims["bib_professions"] = list(professions)
    if name:
        claims["bib_name"] = name
    if patient:
        claims["patient"] = patient
    if encounter:
        claims["encounter"] = encounter
    if fhir_context:
        claims["fhirContext"] = fhir_context
    return claims


def peek_assertion_subject(assertion: str) -> str | None:
    try:
        obj = jws.extract_compact(assertion.encode("ascii"))
        claims = orjson.loads(obj.payload)
    except (JoseError, ValueError, UnicodeEncodeError):
        return None
    sub = claims.get("sub") if isinstance(claims, dict) else None
    return sub if isinstance(sub, str) else None
