"""Unit tests of the policy pieces: SMART scope grammar, the profession -> role table, consent
provisions, the label policy, and the audit buffer (flushed on shutdown, backpressure)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from fhir_server.app import ServerApp
from fhir_server.search.dates import date_range
from fhir_server.security.authserver import access_claims, check_secret, hash_secret
from fhir_server.security.policy import access_policy, label_policy, professions
from fhir_server.security.relationships import _consent_verdict, _period_active
from fhir_server.security.scopes import ScopeSet, narrow, parse_rule
from fhir_server.service.context import RequestContext
from fhir_server.service.core import Access, Done
from tests.conftest import make_settings


@pytest.mark.parametrize(
    ("text", "context", "type_", "perms"),
    [
        ("patient/Observation.rs", "patient", "Observation", "rs"),
        ("user/*.cruds", "user", "*", "cruds"),
        ("system/Patient.read", "system", "Patient", "rs"),
        ("user/Observation.write", "user", "Observation", "cud"),
        ("patient/*.*", "patient", "*", "cruds"),
        ("user/Encounter.c", "user", "Encounter", "c"),
    ],
)
def test_scope_grammar(text: str, context: str, type_: str, perms: str) -> None:
    rule = parse_rule(text)
    assert rule is not None
    assert (rule.context, rule.type, rule.perms) == (context, type_, frozenset(perms))


@pytest.mark.parametrize(
    "text",
    [
        "user/Observation.rc",
        "user/Observation.rrs",
        "user/Observation.x",
        "admin/*.rs",
        "user/.rs",
        "user/observation.rs",
        "user/Observation.read?code=x",
        "user/Observation",
        "user/Observation.rs?",
    ],
)
def test_malformed_scopes_grant_nothing(text: str) -> None:
    assert parse_rule(text) is None
    assert not ScopeSet.parse(text).rules


def test_granular_scope_query() -> None:
    rule = parse_rule("patient/Observation.rs?category=http://x|laboratory&status=final")
    assert rule is not None and rule.query == (
        ("category", "http://x|laboratory"),
        ("status", "final"),
    )


def test_grants_and_narrowing() -> None:
    scopes = ScopeSet.parse("launch openid patient/Observation.rs user/*.r")
    assert [r.text for r in scopes.grants("Observation", "s")] == ["patient/Observation.rs"]
    assert len(scopes.grants("Observation", "r")) == 2
    assert scopes.grants("Patient", "c") == ()
    assert scopes.other == {"launch", "openid"}
    allowed = "launch/patient openid patient/*.rs user/Observation.rs?category=lab"
    assert narrow("patient/Observation.rs patient/Observation.cruds openid fhirUser", allowed) == (
        "patient/Observation.rs openid"
    )
    assert narrow("user/Observation.rs?category=lab user/Observation.rs", allowed) == (
        "user/Observation.rs?category=lab"
    )


def test_profession_table() -> None:
    table = professions()
    assert table.role_of(["persmidwife"], [], []) == "A"
    assert table.role_of([], ["physician"], []) == "A"
    assert table.role_of(["perssocialworker"], [], []) == "B"
    assert table.role_of(["persadministrative"], [], []) is None
    assert table.role_of(["persunknown"], [], []) is None
    assert table.role_of([], [], []) is None
    assert table.role_of(["persmidwife"], [], ["bib-role-b"]) == "B"  # admin downgrade
    assert table.role_of([], [], ["bib-role-b"]) == "B"  # admin grant of Role B
    assert table.role_of(["perssocialworker"], [], ["bib-role-a"]) == "B"  # never an upgrade


def test_consent_verdicts() -> None:
    me = {"Practitioner/x"}
    now = date_range("2026-06-01T00:00:00Z")[0]
    deny_me = {
        "type": "permit",
        "provision": [{"type": "deny", "actor": [{"reference": {"reference": "Practitioner/x"}}]}],
    }
    assert _consent_verdict(deny_me, me, now) is True
    assert _consent_verdict(deny_me, {"Practitioner/y"}, now) is None
    assert _consent_verdict({"type": "deny"}, me, now) is True  # opted out of sharing
    exception = {
        "type": "deny",
        "provision": [
            {"type": "permit", "actor": [{"reference": {"reference": "Practitioner/x"}}]}
        ],
    }
    assert _consent_verdict(exception, me, now) is None  # deny everyone except me
    expired = {"type": "permit", "provision": [{"type": "deny", "period": {"end": "2020-01-01"}}]}
    assert _consent_verdict(expired, me, now) is None
    labels = {
        "type": "permit",
        "provision": [
            {
                "type": "deny",
                "securityLabel": [
                    {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "SDV"}
                ],
            }
        ],
    }
    assert _consent_verdict(labels, me, now) == frozenset(
        {("http://terminology.hl7.org/CodeSystem/v3-ActCode", "SDV")}
    )


def test_consent_actors_by_absolute_url_count_only_for_this_server() -> None:
    me = {"Practitioner/x"}
    now = date_range("2026-06-01T00:00:00Z")[0]
    base = "https://bib.example/fhir"

    def deny(actor: str) -> dict:
        return {
            "type": "permit",
            "provision": [{"type": "deny", "actor": [{"reference": {"reference": actor}}]}],
        }

    assert _consent_verdict(deny(f"{base}/Practitioner/x"), me, now, base) is True
    assert _consent_verdict(deny(f"{base}/Practitioner/x/_history/2"), me, now, base) is True
    assert (
        _consent_verdict(deny("https://other.example/fhir/Practitioner/x"), me, now, base) is None
    )
    # another server's practitioner cannot be the exception to "deny everyone"
    foreign_exception = {
        "type": "deny",
        "provision": [
            {
                "type": "permit",
                "actor": [{"reference": {"reference": "https://other.example/Practitioner/x"}}],
            }
        ],
    }
    assert _consent_verdict(foreign_exception, me, now, base) is True


def test_label_policy_comes_from_the_codesystem() -> None:
    policy = label_policy()
    indicator = "https://borninbelgiumpro.be/fhir/CodeSystem/bib-vulnerability-indicator"
    sensitive = {code for (system, code) in policy.by_code if system == indicator}
    assert sensitive == {"anxiety", "depression", "substance-use", "violence", "residence-status"}
    assert policy.by_code[(indicator, "violence")] == ("R", "SDV")
    assert policy.by_code[(indicator, "residence-status")] == ("R",)
    assert policy.clearance["A"] is None and policy.clearance["B"] == frozenset()
    assert "AuditEvent" in access_policy().no_api_write


def test_secrets_are_hashed() -> None:
    stored = hash_secret("pw")
    assert stored.startswith("scrypt$") and "pw" not in stored
    assert check_secret("pw", stored, None) and not check_secret("px", stored, None)
    assert check_secret("plain", None, "plain") and not check_secret("x", None, None)


async def test_audit_events_are_durable_when_record_returns(tmp_path: Path) -> None:
    """``record`` returns once the AuditEvent is committed (the API answers only then); many
    requests at once share units of work (group commit)."""
    app = ServerApp(make_settings(tmp_path, auth="required"))
    await app.startup()
    try:
        audit = app.security.audit
        ctx = RequestContext(base_url=app.settings.public_url, request_id="r-1")
        ctx.accesses.append(Access("read", "Patient", "x"))
        for n in range(1, 4):
            await audit.record(ctx, 404)
            assert await app.store.count_current(("AuditEvent",)) == n
        units = audit.units
        await asyncio.wait_for(asyncio.gather(*(audit.record(ctx, 200) for _ in range(200))), 10)
        assert await app.store.count_current(("AuditEvent",)) == 203
        assert audit.units - units < 50, audit.units - units  # grouped, not one unit each
        assert not audit.buffer
    finally:
        await app.shutdown()


async def test_a_request_is_not_answered_when_its_audit_event_cannot_be_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fhir_server.security.audit import AuditUnavailable

    app = ServerApp(make_settings(tmp_path, auth="required"))
    await app.startup()
    try:
        ctx = RequestContext(base_url=app.settings.public_url, request_id="r-2")
        ctx.accesses.append(Access("read", "Patient", "x"))

        def broken() -> None:
            raise OSError("disk full")

        monkeypatch.setattr(app.store, "unit_of_work", broken)
        with pytest.raises(AuditUnavailable):
            await asyncio.wait_for(app.security.audit.record(ctx, 200), 5)
        token = app.security.key.sign(
            access_claims(
                app.settings,
                subject="x",
                client_id="c",
                scope="user/*.rs",
                lifetime=60,
                role="A",
                practitioner="Practitioner/x",
            ),
            typ="at+jwt",
        )
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=app.settings.public_url) as c:
            response = await c.get("/Patient", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 503
        assert "audit trail" in response.json()["issue"][0]["diagnostics"]
    finally:
        monkeypatch.undo()
        await app.shutdown()


def test_insecure_open_says_so(tmp_path: Path) -> None:
    app = ServerApp(make_settings(tmp_path))  # the test settings run open
    assert app.fhir.context_factory is None
    assert app.service.capability_extras["security"]["description"].startswith("WARNING")


async def test_fast_audit_index_matches_the_extractor(tmp_path: Path) -> None:
    """The hand-written AuditEvent indexer produces exactly the generic extractor's rows."""
    from fhir_server.security.audit import audit_index
    from fhir_server.security.principal import SecureContext, SecurePrincipal
    from fhir_server.service.versioning import stamp_meta

    app = ServerApp(make_settings(tmp_path, auth="required"))
    audit = app.security.audit
    user = SecurePrincipal(
        subject="s",
        client_id="app",
        role="A",
        practitioner="Practitioner/x",
        organization="Organization/y",
        token_id="t1",
        name="N",
    )
    system = SecurePrincipal(subject="b", client_id="backend", kind="system")
    captured: list[tuple] = []

    def capture(entry: tuple) -> Done:
        captured.append(entry)
        return Done()

    audit._append = capture  # type: ignore[method-assign]
    contexts = []
    for principal, patients, path, query, glass in (
        (user, ("p1", "p2"), "/Observation", "subject=Patient/p1&code=x", False),
        (system, (), "/Patient/p1", "", False),
        (None, (), "/Patient/p9", "", False),
        (user, ("p3",), "/Patient/p3", "", True),
    ):
        ctx = SecureContext(
            base_url="http://testserver/fhir",
            principal=principal,
            client_ip="10.0.0.1",
            request_id="rid-1",
            method="GET",
            path=path,
            query=query,
        )
        ctx.patients.update(patients)
        ctx.break_glass = glass
        ctx.break_glass_reason = "emergency reason" if glass else None
        ctx.accesses.append(Access("read", "Patient", "p1"))
        contexts.append(ctx)
    for ctx in contexts:
        await audit.record(ctx, 200)
    audit.refused("GET", "/Patient/p1", "", "1.2.3.4", "r2", 401, "no token")
    audit._append(
        (
            0,
            system,
            (("auth:token:client_credentials", None, None, None),),
            400,
            (),
            None,
            "r3",
            "POST",
            "/auth/token",
            "",
            False,
            None,
            "invalid_client",
        )
    )
    assert len(captured) == 6
    for entry in captured:
        event = audit.build(entry)
        stamp_meta(event, 1, 1_700_000_000_000_000)
        fast = audit_index(app.service, event)
        slow = app.service.extractor.extract(event)
        for table in ("strings", "tokens", "references", "dates", "numbers", "quantities", "uris"):
            assert sorted(map(repr, getattr(fast, table))) == sorted(
                map(repr, getattr(slow, table))
            ), table
    audit.buffer.clear()


async def test_external_idp_keys_from_a_jwks_url(tmp_path: Path) -> None:
    """The identity provider's JWKS is fetched by URL (and re-fetched for an unknown kid)."""
    import time as _time

    from joserfc import jwt
    from joserfc.jwk import RSAKey

    from fhir_server.security.tokens import ExternalIdp, TokenError
    from tests.security.conftest import JwksServer, public_jwks

    key = RSAKey.generate_key(2048, private=True, parameters={"kid": "k1"})
    jwks = JwksServer(public_jwks(key))
    try:
        settings = make_settings(
            tmp_path,
            auth="required",
            idp_issuer="https://idp.example/realms/healthcare",
            idp_jwks_url=jwks.url,
            idp_audience="bib-pro-fhir",
        )
        app = ServerApp(settings)
        await app.startup()
        try:
            idp = ExternalIdp(settings, app.service)
            now = int(_time.time())
            claims = {
                "iss": "https://idp.example/realms/healthcare",
                "aud": "bib-pro-fhir",
                "sub": "u",
                "exp": now + 60,
                "iat": now,
                "userProfile": {"midwife": {"recognised": True, "nihii11": "1"}},
            }
            token = jwt.encode({"alg": "RS256", "kid": "k1"}, claims, key)
            principal = await idp.verify(token, {"kid": "k1"})
            assert principal.role == "A" and principal.source == "idp"
            forged = jwt.encode(
                {"alg": "RS256", "kid": "k2"},
                claims,
                RSAKey.generate_key(2048, private=True, parameters={"kid": "k2"}),
            )
            with pytest.raises(TokenError):
                await idp.verify(forged, {"kid": "k2"})
        finally:
            await app.shutdown()
    finally:
        jwks.close()


def test_periods_are_compared_as_instants() -> None:
    """Zone offsets and partial dates count: a period that ended at 15:00+01:00 is over at
    14:30Z, one that ends on a date lasts that whole day, one that starts this second has
    started (the text comparison of earlier versions got all three wrong)."""
    now = date_range("2026-12-03T14:30:00Z")[0]
    assert not _period_active({"end": "2026-12-03T15:00:00+01:00"}, now)
    assert _period_active({"end": "2026-12-03T16:00:00+01:00"}, now)
    assert _period_active({"end": "2026-12-03"}, now)
    assert not _period_active({"end": "2026-12-02"}, now)
    assert _period_active({"start": "2026-12-03T14:30:00.000Z"}, now)
    assert not _period_active({"start": "2026-12-03T15:31:00+01:00"}, now)
    assert not _period_active({"start": "not a date"}, now)
