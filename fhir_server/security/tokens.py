"""Access tokens: signing (built-in authorization server) and verification (ours and an external
eHealth-style identity provider), with a verified-token cache.

Our tokens are RS256 JWTs (RFC 9068 ``at+jwt``) signed with a key generated on first start and kept
in the data folder. Verification checks the algorithm (never ``none`` or HMAC), signature, ``iss``,
``aud`` (the FHIR base URL, or the configured audience of the external issuer), ``exp``, ``nbf`` and
``iat`` (60 s leeway), and revocation. A verified token is cached by its exact text until it
expires, so the FHIR hot path pays one dict lookup per request.
"""

from __future__ import annotations

import json
import logging
import os
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from joserfc import jws, jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet, RSAKey

from fhir_server.security.policy import professions
from fhir_server.security.principal import SecurePrincipal
from fhir_server.security.scopes import ScopeSet

log = logging.getLogger("fhir_server.security")

ALLOWED_ALGS = ("RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "PS256", "PS384", "PS512")
LEEWAY = 60
CACHE_MAX = 50_000


class TokenError(Exception):
    """The bearer token is not acceptable (the message is safe to show: no personal data)."""


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


RING_META = "signing-keys"  # the store's key ring, shared by every server process
REFRESH_S = 5.0  # at most one reload of the ring per this many seconds on an unknown kid


class SigningKey:
    """The authorization server's RSA signing key.

    Every server process on one store signs and verifies with the same keys: the *key ring* is
    kept in the store (``init_meta``, created once atomically: the first process's key wins,
    seeded from ``<data dir>/auth/signing-key.pem`` when that file exists, so tokens issued
    before keep working). Each process keeps a copy of the current key in its data folder for
    ``fhir-server demo-token``. ``rotate_signing_key`` adds a new current key and keeps the old
    ones for verification until the tokens they signed have expired; a process reloads the ring
    when a token names a key it does not know and every minute (docs/deploy.md, "Keys and
    secrets"). With ``FHIR_SIGNING_KEY_FILE`` the file is the key (a secret mounted into every
    replica) and the store holds none."""

    alg = "RS256"

    def __init__(self, path: Path) -> None:
        self.path = path
        self.store: Any = None
        self._asked = -REFRESH_S
        if path.exists():
            key = RSAKey.import_key(path.read_bytes())
        else:
            key = RSAKey.generate_key(2048, private=True)
            _write_private(path, key)
            log.info("generated a new token signing key")
        self._install(key, [key])

    def _install(self, current: RSAKey, ring: list[RSAKey]) -> None:
        self.key = current
        self.kid = current.thumbprint()
        self.public_jwks: list[dict[str, Any]] = []
        for key in ring:
            public = key.as_dict(private=False)
            public.update({"kid": key.thumbprint(), "use": "sig", "alg": self.alg})
            self.public_jwks.append(public)
        self.public_jwk = next(j for j in self.public_jwks if j["kid"] == self.kid)
        self.keyset = KeySet([RSAKey.import_key(j) for j in self.public_jwks])

    def knows(self, kid: Any) -> bool:
        return any(j["kid"] == kid for j in self.public_jwks)

    async def share(self, store: Any) -> None:
        """Use the store's key ring (creating it from this key if there is none)."""
        self.store = store
        seed = {"current": self.kid, "keys": [_entry(self.key)]}
        await store.init_meta(RING_META, json.dumps(seed))
        await self.refresh(force=True)

    async def refresh(self, force: bool = False) -> bool:
        """Reload the ring from the store (rate-limited unless ``force``); True if it changed."""
        if self.store is None:
            return False
        if not force:  # on demand (an unknown kid): at most once per REFRESH_S
            if time.monotonic() - self._asked < REFRESH_S:
                return False
            self._asked = time.monotonic()
        raw = await self.store.get_meta(RING_META)
        if raw is None:
            return False
        current, ring = _parse_ring(raw)
        if current.thumbprint() == self.kid and len(ring) == len(self.public_jwks):
            return False
        self._install(current, ring)
        pem = current.as_pem(private=True)
        if not self.path.exists() or self.path.read_bytes() != pem:
            _write_private(self.path, current)
        return True

    def jwks(self) -> dict[str, Any]:
        return {"keys": list(self.public_jwks)}

    def sign(self, claims: dict[str, Any], typ: str = "JWT") -> str:
        return jwt.encode({"alg": self.alg, "kid": self.kid, "typ": typ}, claims, self.key)


def _entry(key: RSAKey, until: float | None = None) -> dict[str, Any]:
    return {"kid": key.thumbprint(), "pem": key.as_pem(private=True).decode(), "until": until}


def _parse_ring(raw: str) -> tuple[RSAKey, list[RSAKey]]:
    data = json.loads(raw)
    now = time.time()
    ring = [
        RSAKey.import_key(e["pem"].encode())
        for e in data["keys"]
        if e.get("until") is None or e["until"] > now
    ]
    current = next(k for k in ring if k.thumbprint() == data["current"])
    return current, ring


async def rotate_signing_key(store: Any, keep_seconds: float) -> str:
    """Make a new key current; the previous ones verify for ``keep_seconds`` more (the longest
    token lifetime). Returns the new key id."""
    raw = await store.get_meta(RING_META)
    data = json.loads(raw) if raw else {"keys": []}
    now = time.time()
    new = RSAKey.generate_key(2048, private=True)
    kept = []
    for entry in data["keys"]:
        if entry.get("until") is None:
            entry["until"] = now + keep_seconds
        if entry["until"] > now:
            kept.append(entry)
    data = {"current": new.thumbprint(), "keys": [_entry(new), *kept]}
    await store.set_meta(RING_META, json.dumps(data))
    return new.thumbprint()


def _write_private(path: Path, key: RSAKey) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key.as_pem(private=True))
    os.replace(tmp, path)


def unverified(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Header and claims of a JWT *before* verification (only to pick the key and issuer)."""
    try:
        obj = jws.extract_compact(token.encode("ascii"))
        import orjson

        claims = orjson.loads(obj.payload)
    except (JoseError, ValueError, UnicodeEncodeError) as exc:
        raise TokenError("the access token is not a well-formed JWT") from exc
    if not isinstance(claims, dict):
        raise TokenError("the access token is not a well-formed JWT")
    return obj.headers(), claims


def check_times(claims: dict[str, Any], now: float) -> None:
    exp = claims.get("exp")
    if not isinstance(exp, (int, float)):
        raise TokenError("the access token has no expiry (exp)")
    if exp + LEEWAY < now:
        raise TokenError("the access token has expired")
    nbf = claims.get("nbf")
    if nbf is not None and (not isinstance(nbf, (int, float)) or nbf - LEEWAY > now):
        raise TokenError("the access token is not valid yet (nbf)")
    iat = claims.get("iat")
    if iat is not None and (not isinstance(iat, (int, float)) or iat - LEEWAY > now):
        raise TokenError("the access token was issued in the future (iat)")


def audiences(claims: dict[str, Any]) -> list[str]:
    aud = claims.get("aud")
    if isinstance(aud, str):
        return [aud]
    if isinstance(aud, list):
        return [a for a in aud if isinstance(a, str)]
    return []


def principal_from_claims(claims: dict[str, Any], source: str = "smart") -> SecurePrincipal:
    """The principal of one of our own tokens (everything the guard needs is in the claims)."""
    kind = claims.get("bib_kind", "user")
    scope = claims.get("scope", "")
    return SecurePrincipal(
        subject=str(claims.get("sub", "")),
        client_id=claims.get("client_id"),
        scopes=frozenset(scope.split()) if isinstance(scope, str) else frozenset(),
        role=claims.get("bib_role"),
        practitioner=claims.get("bib_practitioner"),
        organization=claims.get("bib_organization"),
        patient=claims.get("patient"),
        claims=claims,
        kind=kind if kind in ("user", "system") else "user",
        admin=bool(claims.get("bib_admin")),
        patient_data=bool(claims.get("bib_patient_data", kind != "system")),
        professions=tuple(claims.get("bib_professions", ()) or ()),
        token_id=claims.get("jti"),
        expires=float(claims.get("exp", 0)),
        source=claims.get("bib_source", source),
        name=claims.get("bib_name"),
        fhir_user=claims.get("bib_fhir_user"),
        encounter=claims.get("encounter"),
        scope_set=ScopeSet.parse(scope if isinstance(scope, str) else ""),
    )


class ExternalIdp:
    """An external OpenID provider in the eHealth I.AM Connect style (Keycloak): bearer JWTs with
    the professional's SSIN, NIHDI number and recognised qualities (belgium.md 2.3)."""

    def __init__(self, settings: Any, svc: Any) -> None:
        self.issuer = settings.idp_issuer.rstrip("/")
        self.audience = settings.idp_audience
        self.client_id = settings.idp_client_id or settings.idp_audience
        self.default_scopes = settings.idp_default_scopes
        self.org_claim = settings.idp_organization_claim
        self.jwks_url = settings.idp_jwks_url
        self.svc = svc
        self.keyset: KeySet | None = None
        self._fetched = 0.0
        if settings.idp_jwks_file:
            import orjson

            self.keyset = KeySet.import_key_set(
                orjson.loads(Path(settings.idp_jwks_file).read_bytes())
            )

    async def _keys(self, kid: str | None) -> KeySet:
        known = self.keyset is not None and (
            kid is None or any(k.kid == kid for k in self.keyset.keys)
        )
        stale = time.monotonic() - self._fetched > 600
        if self.jwks_url and (not known or stale) and time.monotonic() - self._fetched > 10:
            import httpx

            try:
                async with httpx.AsyncClient(timeout=5) as http:
                    response = await http.get(self.jwks_url)
                    response.raise_for_status()
                    self.keyset = KeySet.import_key_set(response.json())
                    self._fetched = time.monotonic()
            except Exception as exc:  # keep the old keys; report without details
                log.warning("could not fetch the identity provider JWKS: %s", type(exc).__name__)
        if self.keyset is None:
            raise TokenError("the identity provider's keys are not available")
        return self.keyset

    async def verify(self, token: str, header: dict[str, Any]) -> SecurePrincipal:
        keys = await self._keys(header.get("kid"))
        try:
            verified = jwt.decode(token, keys, algorithms=list(ALLOWED_ALGS))
        except JoseError as exc:
            raise TokenError("the access token signature is not valid") from exc
        claims = verified.claims
        if claims.get("iss") != self.issuer:
            raise TokenError("the access token was issued by an unknown issuer")
        if self.audience and self.audience not in audiences(claims):
            raise TokenError("the access token is not meant for this server (aud)")
        check_times(claims, time.time())
        return await self.principal(claims)

    async def principal(self, claims: dict[str, Any]) -> SecurePrincipal:
        profile = claims.get("userProfile") if isinstance(claims.get("userProfile"), dict) else {}
        qualities: list[str] = []
        nihii: str | None = None
        for key, value in profile.items():
            if isinstance(value, dict) and value.get("recognised") is True:
                qualities.append(key)
                nihii = nihii or value.get("nihii11")
        codes = [c for c in claims.get("bib_professions", ()) if isinstance(c, str)]
        access = (
            claims.get("resource_access") if isinstance(claims.get("resource_access"), dict) else {}
        )
        app_roles = list((access.get(self.client_id) or {}).get("roles", ()) or ())
        role = professions().role_of(codes, qualities, app_roles)
        ssin = profile.get("ssin") or claims.get("ssin")
        practitioner = await self._practitioner(nihii, ssin)
        organization = await self._organization(claims.get(self.org_claim))
        scope = claims.get("scope", "")
        smart = " ".join(s for s in str(scope).split() if "/" in s)
        scope_text = smart or self.default_scopes
        name = " ".join(
            str(p) for p in (profile.get("firstName"), profile.get("lastName")) if p
        ) or claims.get("name")
        return SecurePrincipal(
            subject=f"{self.issuer}#{claims.get('sub', '')}",
            client_id=claims.get("azp") or claims.get("client_id"),
            scopes=frozenset(scope_text.split()),
            role=role,
            practitioner=practitioner,
            organization=organization,
            patient=None,
            claims={"iss": claims.get("iss"), "sub": claims.get("sub"), "nihii": nihii},
            kind="user",
            admin="bib-admin" in app_roles,
            professions=tuple([*codes, *qualities]),
            token_id=claims.get("jti"),
            expires=float(claims["exp"]),
            source="idp",
            name=name if isinstance(name, str) else None,
            fhir_user=practitioner,
            scope_set=ScopeSet.parse(scope_text),
        )

    async def _find(self, type_: str, system: str, value: str) -> str | None:
        from fhir_server.store.query import Query, TokenPred

        page = await self.svc.store.search(
            Query(types=(type_,), where=[(TokenPred("identifier", system, value),)], count=2)
        )
        if len(page.hits) == 1:
            return f"{type_}/{page.hits[0].id}"
        return None

    async def _practitioner(self, nihii: str | None, ssin: str | None) -> str | None:
        base = "https://www.ehealth.fgov.be/standards/fhir/core/NamingSystem/"
        if nihii:
            found = await self._find("Practitioner", base + "nihdi-professional", str(nihii))
            if found:
                return found
        if ssin:
            return await self._find("Practitioner", base + "ssin", str(ssin))
        return None

    async def _organization(self, value: Any) -> str | None:
        if not isinstance(value, str) or not value:
            return None
        if value.startswith("Organization/"):
            return value
        if "|" in value:
            system, _, code = value.partition("|")
            return await self._find("Organization", system, code)
        if value.startswith("cbe-"):  # eHealth M2M client id cbe-<KBO number>
            return await self._find(
                "Organization",
                "https://www.ehealth.fgov.be/standards/fhir/core/NamingSystem/cbe",
                value[4:],
            )
        return None


class TokenVerifier:
    def __init__(self, settings: Any, key: SigningKey, store: Any, idp: ExternalIdp | None):
        self.issuer = settings.auth_issuer
        self.audience = settings.public_url
        self.key = key
        self.store = store  # AuthStore: revocations, shared by every process on the store
        self.idp = idp
        self._cache: dict[str, SecurePrincipal] = {}

    def cached(self, token: str) -> SecurePrincipal | None:
        """A verified, unexpired token seen before (not checked for revocation: ``verify``)."""
        principal = self._cache.get(token)
        if principal is None:
            return None
        if principal.expires + LEEWAY < time.time():
            self._cache.pop(token, None)
            return None
        return principal

    async def verify(self, token: str) -> SecurePrincipal:
        principal = self.cached(token)
        if principal is None:
            principal = await self._verify(token)
        # every time, cached or not: a revocation made through any process on the store counts
        # from the next request on (one primary-key lookup in the store)
        if await self.store.is_revoked(principal.token_id, principal.claims.get("bib_grant")):
            self._cache.pop(token, None)
            raise TokenError("the access token was revoked")
        return principal

    async def _verify(self, token: str) -> SecurePrincipal:
        header, claims = unverified(token)
        alg = header.get("alg")
        if alg not in ALLOWED_ALGS:
            raise TokenError(f"the access token algorithm {str(alg)[:10]!r} is not accepted")
        issuer = claims.get("iss")
        if issuer == self.issuer:
            if not self.key.knows(header.get("kid")):  # rotated by another process?
                await self.key.refresh()
            principal = self.verify_own(token)
        elif self.idp is not None and issuer == self.idp.issuer:
            principal = await self.idp.verify(token, header)
        else:
            raise TokenError("the access token was issued by an unknown issuer")
        if len(self._cache) >= CACHE_MAX:
            now = time.time()
            for key in [k for k, p in self._cache.items() if p.expires < now]:
                del self._cache[key]
            if len(self._cache) >= CACHE_MAX:
                self._cache.clear()
        self._cache[token] = principal
        return principal

    def verify_own(self, token: str, check_expiry: bool = True) -> SecurePrincipal:
        try:
            verified = jwt.decode(token, self.key.keyset, algorithms=[self.key.alg])
        except JoseError as exc:
            raise TokenError("the access token signature is not valid") from exc
        claims = verified.claims
        if claims.get("iss") != self.issuer:
            raise TokenError("the access token was issued by an unknown issuer")
        if self.audience not in audiences(claims):
            raise TokenError("the access token is not meant for this server (aud)")
        if claims.get("bib_token") != "access":
            raise TokenError("this is not an access token")
        if check_expiry:
            check_times(claims, time.time())
        return principal_from_claims(claims)

    def forget(self, jti: str) -> None:
        for key in [k for k, p in self._cache.items() if p.token_id == jti]:
            del self._cache[key]


def new_jti() -> str:
    return uuid.uuid4().hex
