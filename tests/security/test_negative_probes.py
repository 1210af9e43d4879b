"""Negative probes: every way in that must stay shut, against the real server.

Each probe is one request (or one step of a flow) that must be refused (4xx) or, for searches
and history, answered without a single resource the caller may not see. Every probe must also be
in the audit trail: the test reads the AuditEvent of its X-Request-Id back through the API (as an
auditor) and checks its outcome. Groups: bearer tokens (ours and the external eHealth-style IdP),
scopes, cross-patient access through every search feature (patient-context token and user-level
token), Role B and security labels, care relationships and consent, type rules (audit trail,
provenance, conformance, restricted types), and the authorization server (PKCE, codes,
redirects, audience, launches, client assertions, refresh, introspection).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import OctKey

from tests.security.conftest import INDICATOR, REDIRECT, SecureServer, b64url
from tests.security.smart_helpers import (
    assertion,
    backend_token_request,
    client,
    config,
    form_fields,
    new_verifier,
    query_of,
    register_launch,
    standalone_code,
)

Run = Callable[[SecureServer], httpx.Response]


@dataclass
class Probe:
    name: str
    run: Run
    refused: tuple[int, ...] | None  # expected refusal statuses; None: a filtered 200 answer
    leak: Callable[[httpx.Response], bool] | None = None  # True if forbidden data came back


PROBES: list[Probe] = []


def probe(
    name: str,
    run: Run,
    refused: tuple[int, ...] | None = (403, 404),
    leak: Callable[[httpx.Response], bool] | None = None,
) -> None:
    PROBES.append(Probe(name, run, refused, leak))


# -- tokens (minted lazily per server) ----------------------------------------------------------

_TOKENS: dict[tuple[int, str], str] = {}

TOKEN_KINDS: dict[str, dict[str, Any]] = {
    "ctx": {"scope": "patient/*.cruds", "patient": "p1"},  # patient context p1, user mw-1
    "mw1": {"scope": "user/*.cruds"},  # Role A, care relationships: p1, p5 (p4 denied by consent)
    "sw1": {
        "scope": "user/*.cruds",
        "role": "B",
        "practitioner": "Practitioner/sw-1",
        "organization": "Organization/cpas-1",
    },  # Role B: p1 (care team); p3's accepted referral shares her Patient and o3-weight
    "mw1_ro": {"scope": "user/*.rs"},
    "mw1_v1read": {"scope": "user/*.read"},
    "obs_only": {"scope": "patient/Observation.rs", "patient": "p1"},
    "lab_only": {
        "scope": "user/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory"
    },
    "lab_create": {
        "scope": "user/Observation.c?category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory"
    },
    "no_patient_ctx": {"scope": "patient/*.rs"},
    "malformed": {"scope": "user/Observation.rsc user/Patient.xyz"},
    "openid_only": {"scope": "openid fhirUser"},
    "norole": {"scope": "user/*.cruds", "role": None, "practitioner": "Practitioner/mw-2"},
    "dir": {
        "kind": "system",
        "scope": "system/*.rs",
        "client_id": "directory-sync",
        "subject": "directory-sync",
        "patient_data": False,
    },
    "admin": {
        "kind": "system",
        "scope": "system/*.cruds",
        "client_id": "auditor",
        "subject": "auditor",
        "admin": True,
        "patient_data": False,
    },
}


def tok(server: SecureServer, kind: str) -> str:
    key = (id(server), kind)
    if key not in _TOKENS:
        _TOKENS[key] = server.mint(**TOKEN_KINDS[kind])
    return _TOKENS[key]


def get(path: str, kind: str, **kw: Any) -> Run:
    return lambda s: s.request("GET", path, tok(s, kind), **kw)


def send(method: str, path: str, kind: str, body: Any = None, **options: Any) -> Run:
    def run(s: SecureServer) -> httpx.Response:
        kw = dict(options)
        headers = dict(kw.pop("headers", {}))
        if body is not None and "content" not in kw:
            headers.setdefault("Content-Type", "application/fhir+json")
            return s.request(method, path, tok(s, kind), json=body, headers=headers, **kw)
        return s.request(method, path, tok(s, kind), headers=headers, **kw)

    return run


def raw(path: str, authorization: str | None, **headers: str) -> Run:
    def run(s: SecureServer) -> httpx.Response:
        h = dict(headers)
        if authorization is not None:
            h["Authorization"] = authorization
        return s.request("GET", path, None, headers=h)

    return run


def with_token(path: str, make: Callable[[SecureServer], str], method: str = "GET") -> Run:
    return lambda s: s.request(method, path, make(s))


# -- leak detectors -----------------------------------------------------------------------------


def keys_in(response: httpx.Response) -> set[str]:
    """Type/id of every resource in a Bundle (search, history, batch/transaction responses), and
    the patients they reference."""
    out: set[str] = set()
    try:
        bundle = response.json()
    except ValueError:
        return out
    for entry in bundle.get("entry", ()):
        resource = entry.get("resource") or {}
        if resource.get("resourceType") == "Bundle":
            for inner in resource.get("entry", ()):
                res = inner.get("resource") or {}
                out.add(f"{res.get('resourceType')}/{res.get('id')}")
        elif "resourceType" in resource:
            out.add(f"{resource['resourceType']}/{resource.get('id')}")
            subject = resource.get("subject") or resource.get("patient") or {}
            if isinstance(subject, dict) and "reference" in subject:
                out.add(subject["reference"])
    return out


def leaks(*forbidden: str) -> Callable[[httpx.Response], bool]:
    def check(response: httpx.Response) -> bool:
        if response.status_code >= 400:
            return False
        return bool(keys_in(response) & set(forbidden))

    return check


P2 = (
    "Patient/p2",
    "Observation/o2-weight",
    "Observation/o2-dep",
    "Observation/o2-only",
    "Observation/o2-enc",
    "Encounter/e2",
    "CarePlan/cp2",
    "QuestionnaireResponse/qr2",
)
LABELLED = (
    "Observation/o1-dep",
    "QuestionnaireResponse/qr1",
    "Condition/c1-sub",
    "Observation/o2-dep",
    "Observation/o5-dep",
)


def obs_body(
    patient: str,
    code: tuple[str, str] = ("http://loinc.org", "29463-7"),
    id_: str | None = None,
    category: str = "vital-signs",
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "resourceType": "Observation",
        "status": "final",
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                        "code": category,
                    }
                ]
            }
        ],
        "code": {"coding": [{"system": code[0], "code": code[1]}]},
        "subject": {"reference": f"Patient/{patient}"},
        "valueBoolean": True,
    }
    if id_:
        body["id"] = id_
    return body


def bundle(kind: str, *entries: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": kind, "entry": list(entries)}


def get_entry(url: str) -> dict[str, Any]:
    return {"request": {"method": "GET", "url": url}}


def entries_refused(response: httpx.Response) -> bool:
    """A batch/transaction answer that returned a forbidden resource or search hit."""
    if response.status_code >= 400:
        return False
    for entry in response.json().get("entry", ()):
        status = entry.get("response", {}).get("status", "")
        resource = entry.get("resource") or {}
        if status.startswith("2") and resource.get("resourceType") not in (None, "Bundle"):
            return True
    return bool(keys_in(response) & (set(P2) | set(LABELLED)))


# -- 1. bearer tokens ---------------------------------------------------------------------------


def forged(mutate: Callable[[dict[str, Any]], None], **sign: Any) -> Callable[[SecureServer], str]:
    def make(s: SecureServer) -> str:
        claims = s.claims()
        mutate(claims)
        return s.sign(claims, **sign)

    return make


def unsigned(s: SecureServer) -> str:
    header = b64url(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    return f"{header}.{b64url(json.dumps(s.claims()).encode())}."


def idp_unsigned(s: SecureServer) -> str:
    payload = s.idp_token().split(".")[1]
    return f"{b64url(json.dumps({'alg': 'none', 'kid': 'idp-1'}).encode())}.{payload}."


def hs256_confusion(s: SecureServer) -> str:
    """alg confusion: HS256 keyed with the server's public key."""
    public = json.dumps(s.key.public_jwk).encode()
    return jwt.encode(
        {"alg": "HS256", "kid": s.key.kid},
        s.claims(),
        OctKey.import_key(public),
        algorithms=["HS256"],
    )


def tampered_payload(s: SecureServer) -> str:
    token = s.mint(role="B", practitioner="Practitioner/sw-1")
    head, _payload, sig = token.split(".")
    claims = s.claims()  # role A: an escalation attempt
    return f"{head}.{b64url(json.dumps(claims).encode())}.{sig}"


def tampered_signature(s: SecureServer) -> str:
    head, payload, sig = s.mint().split(".")
    flipped = sig[:-4] + ("AAAA" if sig[-4:] != "AAAA" else "BBBB")
    return f"{head}.{payload}.{flipped}"


def other_key(s: SecureServer) -> str:
    return s.sign(s.claims(), key=s.keys.attacker)


def id_token_as_access(s: SecureServer) -> str:
    claims = s.claims()
    claims.pop("bib_token")
    return s.sign(claims)


def revoked_access(s: SecureServer) -> str:
    app = client(s, "app-symmetric", "launch/patient patient/*.rs", client_secret="s3cret-app")
    verifier = new_verifier()
    location, _ = standalone_code(s, app, verifier)
    token = app.fetch_token(
        config(s)["token_endpoint"], authorization_response=location, code_verifier=verifier
    )["access_token"]
    httpx.post(
        config(s)["revocation_endpoint"],
        data={"token": token},
        auth=("app-symmetric", "s3cret-app"),
    )
    return token


NOW = lambda: int(time.time())  # noqa: E731

probe("token: no Authorization header", raw("/Patient/p1", None), (401,))
probe("token: Basic credentials", raw("/Patient/p1", "Basic YWxpY2U6c2VjcmV0"), (401,))
probe("token: empty Bearer", raw("/Patient/p1", "Bearer"), (401,))
probe("token: garbage", raw("/Patient/p1", "Bearer not-a-jwt"), (401,))
probe("token: two segments", raw("/Patient/p1", "Bearer aaa.bbb"), (401,))
probe(
    "token: expired",
    with_token(
        "/Patient/p1",
        forged(lambda c: c.update(exp=NOW() - 3600, iat=NOW() - 7200, nbf=NOW() - 7200)),
    ),
    (401,),
)
probe(
    "token: not yet valid (nbf)",
    with_token("/Patient/p1", forged(lambda c: c.update(nbf=NOW() + 3600))),
    (401,),
)
probe(
    "token: issued in the future (iat)",
    with_token("/Patient/p1", forged(lambda c: c.update(iat=NOW() + 3600, nbf=None))),
    (401,),
)
probe("token: no expiry", with_token("/Patient/p1", forged(lambda c: c.pop("exp"))), (401,))
probe(
    "token: wrong aud",
    with_token("/Patient/p1", forged(lambda c: c.update(aud="https://evil.example/fhir"))),
    (401,),
)
probe(
    "token: aud list without us",
    with_token("/Patient/p1", forged(lambda c: c.update(aud=["a", "b"]))),
    (401,),
)
probe("token: no aud", with_token("/Patient/p1", forged(lambda c: c.pop("aud"))), (401,))
probe(
    "token: wrong iss",
    with_token("/Patient/p1", forged(lambda c: c.update(iss="https://evil.example"))),
    (401,),
)
probe("token: no iss", with_token("/Patient/p1", forged(lambda c: c.pop("iss"))), (401,))
probe("token: alg none", with_token("/Patient/p1", unsigned), (401,))
probe(
    "token: HS256 with our public key (alg confusion)",
    with_token("/Patient/p1", hs256_confusion),
    (401,),
)
probe("token: tampered payload (role B -> A)", with_token("/Patient/p1", tampered_payload), (401,))
probe("token: tampered signature", with_token("/Patient/p1", tampered_signature), (401,))
probe("token: signed by another key with our kid", with_token("/Patient/p1", other_key), (401,))
probe(
    "token: not an access token (id token shape)",
    with_token("/Patient/p1", id_token_as_access),
    (401,),
)
probe("token: revoked", with_token("/Patient/p1", revoked_access), (401,))
probe("token: unknown profession (no role)", get("/Patient/p1", "norole"), (403,))
probe(
    "token: expired on a search",
    with_token("/Observation", forged(lambda c: c.update(exp=NOW() - 999))),
    (401,),
)
probe(
    "token: wrong aud on a write",
    with_token("/Observation", forged(lambda c: c.update(aud="x")), "POST"),
    (401,),
)

# external identity provider (eHealth I.AM Connect style)
probe("idp: expired", with_token("/Patient/p1", lambda s: s.idp_token(exp=NOW() - 3600)), (401,))
probe(
    "idp: not yet valid", with_token("/Patient/p1", lambda s: s.idp_token(nbf=NOW() + 3600)), (401,)
)
probe("idp: wrong aud", with_token("/Patient/p1", lambda s: s.idp_token(aud=["other-api"])), (401,))
probe(
    "idp: wrong issuer",
    with_token("/Patient/p1", lambda s: s.idp_token(iss="https://idp.evil.example")),
    (401,),
)
probe(
    "idp: signed by an unknown key",
    with_token("/Patient/p1", lambda s: s.idp_token(key=s.keys.attacker)),
    (401,),
)
probe("idp: alg none", with_token("/Patient/p1", idp_unsigned), (401,))
probe(
    "idp: profession not recognised",
    with_token(
        "/Patient/p1",
        lambda s: s.idp_token(
            userProfile={"ssin": "1", "physician": {"recognised": False, "nihii11": "10000000001"}}
        ),
    ),
    (403,),
)
probe(
    "idp: administrative staff only",
    with_token(
        "/Patient/p1",
        lambda s: s.idp_token(userProfile={"ssin": "1", "administrative": {"recognised": True}}),
    ),
    (403,),
)
probe(
    "idp: recognised physician without relationship to p2",
    with_token("/Patient/p2", lambda s: s.idp_token()),
    (404,),
)

# break-the-glass misuse
probe(
    "break-glass: Role B",
    get("/Patient/p2", "sw1", headers={"X-Break-Glass": "emergency at delivery ward"}),
    (403,),
)
probe(
    "break-glass: reason too short",
    get("/Patient/p2", "mw1", headers={"X-Break-Glass": "now"}),
    (400,),
)
probe(
    "break-glass: system client",
    get("/Patient/p2", "dir", headers={"X-Break-Glass": "emergency at delivery ward"}),
    (403,),
)

# -- 2. scopes -----------------------------------------------------------------------------------

probe("scope: Observation-only token reads Patient", get("/Patient/p1", "obs_only"), (403,))
probe("scope: Observation-only token searches Patient", get("/Patient", "obs_only"), (403,))
probe(
    "scope: read-only token creates",
    send("POST", "/Observation", "obs_only", obs_body("p1")),
    (403,),
)
probe("scope: user/*.rs creates", send("POST", "/Observation", "mw1_ro", obs_body("p1")), (403,))
probe(
    "scope: user/*.rs updates",
    send("PUT", "/Observation/o1-weight", "mw1_ro", obs_body("p1", id_="o1-weight")),
    (403,),
)
probe("scope: user/*.rs deletes", send("DELETE", "/Observation/o1-weight", "mw1_ro"), (403,))
probe(
    "scope: user/*.rs patches",
    send(
        "PATCH",
        "/Observation/o1-weight",
        "mw1_ro",
        [{"op": "replace", "path": "/status", "value": "amended"}],
        headers={"Content-Type": "application/json-patch+json"},
    ),
    (403,),
)
probe("scope: v1 .read writes", send("POST", "/Observation", "mw1_v1read", obs_body("p1")), (403,))
probe(
    "scope: malformed v2 scopes grant nothing", get("/Observation/o1-weight", "malformed"), (403,)
)
probe("scope: malformed v2 scopes (search)", get("/Patient", "malformed"), (403,))
probe("scope: identity scopes only", get("/Patient/p1", "openid_only"), (403,))
probe(
    "scope: identity scopes only (transaction)",
    send("POST", "", "openid_only", bundle("transaction", get_entry("Patient/p1"))),
    (403,),
)
probe(
    "scope: granular lab-only reads vital signs", get("/Observation/o1-weight", "lab_only"), (404,)
)
probe(
    "scope: granular lab-only searches vital signs",
    get("/Observation?category=vital-signs", "lab_only"),
    None,
    leaks("Observation/o1-weight"),
)
probe(
    "scope: granular lab-only searches everything",
    get("/Observation?_count=100", "lab_only"),
    None,
    leaks("Observation/o1-weight", "Observation/o1-dep"),
)
probe("scope: granular lab-only reads Patient", get("/Patient/p1", "lab_only"), (403,))
probe(
    "scope: granular lab-only create of vital signs",
    send("POST", "/Observation", "lab_create", obs_body("p1")),
    (403,),
)
probe("scope: patient/ scope without patient context", get("/Patient/p1", "no_patient_ctx"), (404,))
probe(
    "scope: patient/ scope without patient context (search)",
    get("/Observation", "no_patient_ctx"),
    None,
    leaks("Observation/o1-weight", *P2),
)
probe(
    "scope: backend token beyond its scopes (write)",
    lambda s: s.request(
        "POST",
        "/Observation",
        backend_token_request(s, "backend", s.keys.es384, scope="system/Observation.rs").json()[
            "access_token"
        ],
        json=obs_body("p1"),
    ),
    (403,),
)

# -- 3. cross-patient access through every search feature ----------------------------------------


def cross_patient(kind: str) -> None:
    p = f"cross-patient[{kind}]"
    probe(f"{p}: read Patient/p2", get("/Patient/p2", kind), (404,))
    probe(f"{p}: read Observation of p2", get("/Observation/o2-weight", kind), (404,))
    probe(f"{p}: vread Observation of p2", get("/Observation/o2-weight/_history/1", kind), (404,))
    probe(
        f"{p}: instance history of p2's Observation",
        get("/Observation/o2-weight/_history", kind),
        (404,),
    )
    probe(f"{p}: instance history of Patient/p2", get("/Patient/p2/_history", kind), (404,))
    probe(f"{p}: read Encounter of p2", get("/Encounter/e2", kind), (404,))
    probe(f"{p}: read CarePlan of p2", get("/CarePlan/cp2", kind), (404,))
    probe(f"{p}: read QuestionnaireResponse of p2", get("/QuestionnaireResponse/qr2", kind), (404,))
    probe(
        f"{p}: search subject=Patient/p2",
        get("/Observation?subject=Patient/p2", kind),
        None,
        leaks(*P2),
    )
    probe(f"{p}: search patient=p2", get("/Observation?patient=p2", kind), None, leaks(*P2))
    probe(
        f"{p}: chained search subject:Patient.family",
        get("/Observation?subject:Patient.family=Bravo", kind),
        None,
        leaks(*P2),
    )
    probe(
        f"{p}: _has reverse chain",
        get("/Patient?_has:Observation:subject:code=9999-9", kind),
        None,
        leaks(*P2),
    )
    probe(f"{p}: search Patient by name", get("/Patient?family=Bravo", kind), None, leaks(*P2))
    probe(f"{p}: search Patient _id", get("/Patient?_id=p2", kind), None, leaks(*P2))
    probe(
        f"{p}: search Observation _id",
        get("/Observation?_id=o2-weight,o2-dep", kind),
        None,
        leaks(*P2),
    )
    probe(
        f"{p}: _include of a p2 resource",
        get("/Observation?_id=o1-link&_include=Observation:has-member", kind),
        None,
        leaks(*P2),
    )
    probe(
        f"{p}: _include:iterate",
        get(
            "/Observation?_id=o1-link&_include:iterate=Observation:has-member&_include=Observation:subject",
            kind,
        ),
        None,
        leaks(*P2),
    )
    probe(
        f"{p}: _revinclude of a p2 resource",
        get("/Encounter?_id=e1&_revinclude=Observation:encounter", kind),
        None,
        leaks(*P2),
    )
    probe(
        f"{p}: _revinclude from Patient",
        get("/Patient?_id=p1,p2&_revinclude=Observation:subject", kind),
        None,
        leaks(*P2),
    )
    probe(
        f"{p}: compartment search Patient/p2/Observation",
        get("/Patient/p2/Observation", kind),
        None,
        leaks(*P2),
    )
    probe(
        f"{p}: compartment search Patient/p2/CarePlan",
        get("/Patient/p2/CarePlan", kind),
        None,
        leaks(*P2),
    )
    probe(
        f"{p}: system search with _type",
        get("/?_type=Observation&code=9999-9", kind),
        None,
        leaks(*P2),
    )
    probe(f"{p}: type history", get("/Observation/_history?_count=1000", kind), None, leaks(*P2))
    probe(f"{p}: system history", get("/_history?_count=1000", kind), None, leaks(*P2))
    probe(
        f"{p}: _total=accurate",
        get("/Observation?subject=Patient/p2&_total=accurate", kind),
        None,
        lambda r: r.status_code == 200 and r.json().get("total", 0) != 0,
    )
    probe(
        f"{p}: _summary=count",
        get("/Observation?patient=p2&_summary=count", kind),
        None,
        lambda r: r.status_code == 200 and r.json().get("total", 0) != 0,
    )
    probe(
        f"{p}: _sort and _elements",
        get("/Observation?subject=Patient/p2&_sort=-_lastUpdated&_elements=code", kind),
        None,
        leaks(*P2),
    )
    probe(
        f"{p}: POST _search",
        send(
            "POST",
            "/Observation/_search",
            kind,
            None,
            content="subject=Patient%2Fp2",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        ),
        None,
        leaks(*P2),
    )
    probe(
        f"{p}: search by identifier of p2",
        get(
            "/Patient?identifier=https://www.ehealth.fgov.be/standards/fhir/core/NamingSystem/ssin|90010111100",
            kind,
        ),
        None,
        leaks(*P2),
    )
    probe(
        f"{p}: transaction GET",
        send("POST", "", kind, bundle("transaction", get_entry("Patient/p2"))),
        (403, 404),
        entries_refused,
    )
    probe(
        f"{p}: batch GET read",
        send("POST", "", kind, bundle("batch", get_entry("Observation/o2-weight"))),
        None,
        entries_refused,
    )
    probe(
        f"{p}: batch GET search",
        send("POST", "", kind, bundle("batch", get_entry("Observation?subject=Patient/p2"))),
        None,
        entries_refused,
    )
    probe(
        f"{p}: create into p2's record", send("POST", "/Observation", kind, obs_body("p2")), (403,)
    )
    probe(
        f"{p}: update p2's Observation",
        send("PUT", "/Observation/o2-weight", kind, obs_body("p2", id_="o2-weight")),
        (403, 404),
    )
    probe(
        f"{p}: move own Observation to p2",
        send(
            "PUT",
            "/Observation/o1-lab",
            kind,
            obs_body("p2", ("http://loinc.org", "2345-7"), "o1-lab", "laboratory"),
        ),
        (403,),
    )
    probe(
        f"{p}: patch p2's Observation",
        send(
            "PATCH",
            "/Observation/o2-weight",
            kind,
            [{"op": "replace", "path": "/status", "value": "amended"}],
            headers={"Content-Type": "application/json-patch+json"},
        ),
        (403, 404),
    )
    probe(
        f"{p}: delete p2's Observation",
        send("DELETE", "/Observation/o2-weight", kind),
        (204,),  # answered exactly like a delete of a missing resource; nothing is deleted
    )
    probe(
        f"{p}: conditional update matching p2 data",
        send(
            "PUT", "/Observation?code=9999-9", kind, obs_body("p2", ("http://loinc.org", "9999-9"))
        ),
        (403,),
    )
    probe(
        f"{p}: conditional create into p2",
        send(
            "POST",
            "/Observation",
            kind,
            obs_body("p2", ("http://loinc.org", "9999-9")),
            headers={"If-None-Exist": "code=9999-9"},
        ),
        (403,),
    )
    probe(
        f"{p}: conditional patch of p2 data",
        send(
            "PATCH",
            "/Observation?code=9999-9",
            kind,
            [{"op": "replace", "path": "/status", "value": "amended"}],
            headers={"Content-Type": "application/json-patch+json"},
        ),
        (403, 404),
    )
    probe(f"{p}: conditional delete of p2 data", conditional_delete_p2(kind), None)
    probe(
        f"{p}: transaction writing into p2",
        send(
            "POST",
            "",
            kind,
            bundle(
                "transaction",
                {"resource": obs_body("p2"), "request": {"method": "POST", "url": "Observation"}},
            ),
        ),
        (403,),
    )
    probe(f"{p}: $validate on p2's Patient", get("/Patient/p2/$validate", kind), (403, 404, 405))
    probe(
        f"{p}: Provenance of p2's data",
        get("/Provenance?target=Observation/o2-weight", kind),
        None,
        leaks(*P2),
    )
    probe(f"{p}: AuditEvent search", get("/AuditEvent?patient=p2", kind), (403,))


def conditional_delete_p2(kind: str) -> Run:
    """DELETE Observation?code=<a code only p2 has>: nothing visible matches, nothing is deleted."""

    def run(s: SecureServer) -> httpx.Response:
        response = s.request("DELETE", "/Observation?code=9999-9", tok(s, kind))
        backend = backend_token_request(s, "backend", s.keys.es384, scope="system/Observation.rs")
        still = s.request("GET", "/Observation/o2-only", backend.json()["access_token"])
        assert still.status_code == 200, "a conditional delete removed data the caller cannot see"
        return response

    return run


cross_patient("ctx")
cross_patient("mw1")

# -- 4. Role B and security labels ---------------------------------------------------------------

B = "sw1"
probe("role B: read labelled Observation", get("/Observation/o1-dep", B), (404,))
probe("role B: vread labelled Observation", get("/Observation/o1-dep/_history/1", B), (404,))
probe("role B: history of labelled Observation", get("/Observation/o1-dep/_history", B), (404,))
probe(
    "role B: read QuestionnaireResponse (raw answers)", get("/QuestionnaireResponse/qr1", B), (404,)
)
probe("role B: read substance-use Condition", get("/Condition/c1-sub", B), (404,))
probe(
    "role B: search by sensitive code",
    get(f"/Observation?code={INDICATOR}|depression", B),
    None,
    leaks(*LABELLED),
)
probe("role B: search by _security", get("/Observation?_security=R", B), None, leaks(*LABELLED))
probe(
    "role B: search patient's Observations",
    get("/Observation?subject=Patient/p1", B),
    None,
    leaks(*LABELLED),
)
probe(
    "role B: search QuestionnaireResponse", get("/QuestionnaireResponse", B), None, leaks(*LABELLED)
)
probe("role B: search Condition", get("/Condition", B), None, leaks(*LABELLED))
probe(
    "role B: _revinclude labelled",
    get("/Patient?_id=p1&_revinclude=Observation:subject", B),
    None,
    leaks(*LABELLED),
)
probe(
    "role B: _revinclude Condition and QuestionnaireResponse",
    get(
        "/Patient?_id=p1&_revinclude=Condition:subject&_revinclude=QuestionnaireResponse:subject", B
    ),
    None,
    leaks(*LABELLED),
)
probe(
    "role B: _has on a labelled Observation reveals the patient",
    get(f"/Patient?_has:Observation:subject:code={INDICATOR}|depression", B),
    None,
    leaks("Patient/p1"),
)
probe(
    "role B: chain into labelled data",
    get(f"/Encounter?_has:Observation:encounter:code={INDICATOR}|depression", B),
    None,
    leaks("Encounter/e1"),
)
probe("role B: compartment search", get("/Patient/p1/Observation", B), None, leaks(*LABELLED))
probe("role B: type history", get("/Observation/_history?_count=1000", B), None, leaks(*LABELLED))
probe("role B: system history", get("/_history?_count=1000", B), None, leaks(*LABELLED))
probe(
    "role B: _elements on labelled",
    get("/Observation?_id=o1-dep&_elements=id", B),
    None,
    leaks(*LABELLED),
)
probe(
    "role B: transaction GET labelled",
    send("POST", "", B, bundle("transaction", get_entry("Observation/o1-dep"))),
    (403, 404),
    entries_refused,
)
probe(
    "role B: batch GET QuestionnaireResponse",
    send("POST", "", B, bundle("batch", get_entry("QuestionnaireResponse/qr1"))),
    None,
    entries_refused,
)
probe(
    "role B: create sensitive Observation",
    send("POST", "/Observation", B, obs_body("p1", (INDICATOR, "violence"), category="survey")),
    (403,),
)
probe(
    "role B: make an Observation sensitive",
    send(
        "PUT",
        "/Observation/o1-weight",
        B,
        obs_body("p1", (INDICATOR, "substance-use"), "o1-weight"),
    ),
    (403,),
)
probe(
    "role B: overwrite labelled Observation",
    send("PUT", "/Observation/o1-dep", B, obs_body("p1", id_="o1-dep")),
    (403,),
)
probe(
    "role B: delete labelled Observation",
    send("DELETE", "/Observation/o1-dep", B),
    (204,),  # like a missing resource: nothing is deleted
)
probe(
    "role B: patch labelled Observation",
    send(
        "PATCH",
        "/Observation/o1-dep",
        B,
        [{"op": "remove", "path": "/meta/security"}],
        headers={"Content-Type": "application/json-patch+json"},
    ),
    (403, 404),
)
probe(
    "role B: create QuestionnaireResponse",
    send(
        "POST",
        "/QuestionnaireResponse",
        B,
        {
            "resourceType": "QuestionnaireResponse",
            "status": "completed",
            "subject": {"reference": "Patient/p1"},
        },
    ),
    (403,),
)
probe(
    "role B: write Consent",
    send(
        "POST",
        "/Consent",
        B,
        {
            "resourceType": "Consent",
            "status": "active",
            "scope": {"text": "x"},
            "category": [{"text": "x"}],
            "patient": {"reference": "Patient/p1"},
            "policyRule": {"text": "x"},
        },
    ),
    (403,),
)
probe("role B: $validate labelled", get("/Observation/o1-dep/$validate", B), (403, 404, 405))
probe(
    "role B: label in IdP token mapping (bib-role-b downgrade)",
    with_token(
        "/Observation/o1-dep",
        lambda s: s.idp_token(resource_access={"bib-pro-fhir": {"roles": ["bib-role-b"]}}),
    ),
    (404,),
)

# -- 5. care relationships and consent -----------------------------------------------------------

probe("relationship: no relationship (p3)", get("/Patient/p3", "mw1"), (404,))
probe("relationship: data without relationship (p3)", get("/Observation/o3-weight", "mw1"), (404,))
probe(
    "relationship: search without relationship",
    get("/Patient?family=Charlie", "mw1"),
    None,
    leaks("Patient/p3"),
)
probe("consent: denied professional reads the patient", get("/Patient/p4", "mw1"), (404,))
probe("consent: denied professional reads her data", get("/Observation/o4-weight", "mw1"), (404,))
probe(
    "consent: denied professional searches",
    get("/Observation?subject=Patient/p4", "mw1"),
    None,
    leaks("Observation/o4-weight", "Patient/p4"),
)
probe(
    "consent: denied professional via _has",
    get("/Patient?_has:CareTeam:patient:participant=Practitioner/mw-1", "mw1"),
    None,
    leaks("Patient/p4"),
)
probe(
    "consent: denied professional writes",
    send("POST", "/Observation", "mw1", obs_body("p4")),
    (403,),
)
probe("consent: label denied to everyone (read)", get("/Observation/o5-dep", "mw1"), (404,))
probe(
    "consent: label denied to everyone (search)",
    get("/Observation?subject=Patient/p5", "mw1"),
    None,
    leaks("Observation/o5-dep"),
)
probe("relationship: Role B outside referral", get("/Patient/p2", "sw1"), (404,))
probe(
    "relationship: orphan patient data cannot be created",
    send(
        "POST",
        "/Observation",
        "mw1",
        {"resourceType": "Observation", "status": "final", "code": {"text": "no subject"}},
    ),
    (403,),
)

# -- 6. type rules -------------------------------------------------------------------------------

probe(
    "type: AuditEvent read by a professional",
    lambda s: s.request("GET", "/AuditEvent", tok(s, "mw1")),
    (403,),
)
probe("type: AuditEvent search by a system client", get("/AuditEvent", "dir"), (403,))
probe(
    "type: AuditEvent create by admin",
    send(
        "POST",
        "/AuditEvent",
        "admin",
        {
            "resourceType": "AuditEvent",
            "type": {"code": "rest"},
            "recorded": "2026-01-01T00:00:00Z",
            "agent": [{"requestor": True}],
            "source": {"observer": {"display": "x"}},
        },
    ),
    (403,),
)
probe(
    "type: AuditEvent update by admin",
    lambda s: s.request(
        "PUT", f"/AuditEvent/{_some_audit_id(s)}", tok(s, "admin"), json=_some_audit(s)
    ),
    (403,),
)
probe(
    "type: AuditEvent delete by admin",
    lambda s: s.request("DELETE", f"/AuditEvent/{_some_audit_id(s)}", tok(s, "admin")),
    (403,),
)
probe(
    "type: AuditEvent deleted in a transaction",
    lambda s: s.request(
        "POST",
        "",
        tok(s, "admin"),
        json=bundle(
            "transaction",
            {"request": {"method": "DELETE", "url": f"AuditEvent/{_some_audit_id(s)}"}},
        ),
    ),
    (403,),
)


def provenance_update(s: SecureServer) -> httpx.Response:
    provenance = _some_provenance(s)
    provenance["activity"] = {"text": "rewritten history"}
    return s.request("PUT", f"/Provenance/{provenance['id']}", tok(s, "mw1"), json=provenance)


probe("type: Provenance update", provenance_update, (403,))
probe(
    "type: Provenance delete",
    lambda s: s.request("DELETE", f"/Provenance/{_some_provenance_id(s)}", tok(s, "mw1")),
    (403,),
)
probe(
    "type: SearchParameter create by a professional",
    send(
        "POST",
        "/SearchParameter",
        "mw1",
        {
            "resourceType": "SearchParameter",
            "url": "http://x/sp",
            "name": "x",
            "status": "active",
            "description": "x",
            "code": "x",
            "base": ["Patient"],
            "type": "token",
            "expression": "Patient.id",
        },
    ),
    (403,),
)
probe(
    "type: Questionnaire create by a professional",
    send("POST", "/Questionnaire", "mw1", {"resourceType": "Questionnaire", "status": "draft"}),
    (403,),
)
probe(
    "type: ValueSet update by a professional",
    send("PUT", "/ValueSet/x", "mw1", {"resourceType": "ValueSet", "id": "x", "status": "draft"}),
    (403,),
)
probe("type: Binary read by a professional", get("/Binary/bin1", "mw1"), (403,))
probe("type: Binary search by a professional", get("/Binary", "mw1"), (403,))
probe("type: $reindex by a professional", get("/SearchParameter/x/$reindex", "mw1"), (403,))
probe("type: directory client reads Patient", get("/Patient/p1", "dir"), (403,))
probe("type: directory client searches Observation", get("/Observation", "dir"), (403,))
probe("type: search without _type (all types) by a professional", get("/?name=x", "mw1"), (403,))
probe(
    "type: _type mixing patient data and directory",
    get("/?_type=Patient,Organization", "mw1"),
    (403,),
)
probe("type: admin reads patient data", get("/Patient/p1", "admin"), (403,))


def _some_audit(s: SecureServer) -> dict[str, Any]:
    page = s.http.get(
        f"{s.base}/AuditEvent?_count=1", headers={"Authorization": f"Bearer {s.auditor}"}
    )
    return page.json()["entry"][0]["resource"]


def _some_audit_id(s: SecureServer) -> str:
    return _some_audit(s)["id"]


def _some_provenance(s: SecureServer) -> dict[str, Any]:
    created = s.request("POST", "/Observation", tok(s, "mw1"), json=obs_body("p1"))
    assert created.status_code == 201, created.text
    page = s.http.get(
        f"{s.base}/Provenance?target=Observation/{created.json()['id']}",
        headers={"Authorization": f"Bearer {tok(s, 'mw1')}"},
    )
    return page.json()["entry"][0]["resource"]


def _some_provenance_id(s: SecureServer) -> str:
    return _some_provenance(s)["id"]


# -- 7. the authorization server ----------------------------------------------------------------


def as_request(method: str, url_of: Callable[[SecureServer], str], **kw: Any) -> Run:
    def run(s: SecureServer) -> httpx.Response:
        rid = "as-" + uuid.uuid4().hex
        headers = {"X-Request-Id": rid, **kw.pop("headers", {})}
        response = httpx.request(
            method, url_of(s), headers=headers, follow_redirects=False, timeout=10, **kw
        )
        response.request_id = rid  # type: ignore[attr-defined]
        return response

    return run


def token_post(data_of: Callable[[SecureServer], dict[str, str]], auth: Any = None) -> Run:
    def run(s: SecureServer) -> httpx.Response:
        rid = "as-" + uuid.uuid4().hex
        response = httpx.post(
            config(s)["token_endpoint"],
            data=data_of(s),
            auth=auth,
            headers={"X-Request-Id": rid},
            timeout=10,
        )
        response.request_id = rid  # type: ignore[attr-defined]
        return response

    return run


def code_exchange(
    mutate: Callable[[dict[str, str]], None],
    scope: str = "launch/patient patient/*.rs",
    reuse: bool = False,
    client_id: str = "app-public",
) -> Callable[[SecureServer], dict[str, str]]:
    def data(s: SecureServer) -> dict[str, str]:
        app = client(s, client_id, scope)
        verifier = new_verifier()
        location, _ = standalone_code(s, app, verifier)
        body = {
            "grant_type": "authorization_code",
            "code": query_of(location)["code"],
            "redirect_uri": REDIRECT,
            "client_id": client_id,
            "code_verifier": verifier,
        }
        if reuse:
            first = httpx.post(config(s)["token_endpoint"], data=body)
            assert first.status_code == 200, first.text
        mutate(body)
        return body

    return data


def authorize_with(
    mutate: Callable[[dict[str, str]], None],
    client_id: str = "app-public",
    scope: str = "launch/patient patient/*.rs",
) -> Callable[[SecureServer], str]:
    def url(s: SecureServer) -> str:
        from authlib.oauth2.rfc7636 import create_s256_code_challenge

        verifier = new_verifier()
        params = {
            "response_type": "code",
            "client_id": client_id,
            "redirect_uri": REDIRECT,
            "scope": scope,
            "state": uuid.uuid4().hex,
            "aud": s.base,
            "code_challenge": create_s256_code_challenge(verifier),
            "code_challenge_method": "S256",
        }
        mutate(params)
        return str(
            httpx.URL(
                config(s)["authorization_endpoint"],
                params={k: v for k, v in params.items() if v is not None},
            )
        )

    return url


def redirected_error(response: httpx.Response) -> bool:
    """An authorization answer that did *not* hand out a code."""
    if response.status_code == 302:
        return "code" in query_of(response.headers["location"])
    return response.status_code < 400


def drop(*names: str) -> Callable[[dict[str, str]], None]:
    def mutate(data: dict[str, str]) -> None:
        for name in names:
            data.pop(name, None)

    return mutate


def set_(**values: Any) -> Callable[[dict[str, str]], None]:
    return lambda data: data.update(values)


probe(
    "AS: reused authorization code", token_post(code_exchange(lambda d: None, reuse=True)), (400,)
)
probe("AS: missing code_verifier", token_post(code_exchange(drop("code_verifier"))), (400,))
probe("AS: wrong code_verifier", token_post(code_exchange(set_(code_verifier="x" * 64))), (400,))
probe(
    "AS: wrong redirect_uri at token",
    token_post(code_exchange(set_(redirect_uri="http://localhost:9999/other"))),
    (400,),
)
probe(
    "AS: code presented by another client",
    token_post(code_exchange(set_(client_id="app-asymmetric"))),
    (400, 401),
)
probe(
    "AS: unknown code",
    token_post(
        lambda s: {
            "grant_type": "authorization_code",
            "code": "nope",
            "client_id": "app-public",
            "redirect_uri": REDIRECT,
            "code_verifier": "v" * 50,
        }
    ),
    (400,),
)
probe(
    "AS: authorize without PKCE",
    as_request("GET", authorize_with(drop("code_challenge", "code_challenge_method"))),
    (302, 400),
    redirected_error,
)
probe(
    "AS: authorize with plain PKCE",
    as_request("GET", authorize_with(set_(code_challenge="a" * 50, code_challenge_method="plain"))),
    (302, 400),
    redirected_error,
)
probe(
    "AS: authorize with PKCE method missing",
    as_request("GET", authorize_with(drop("code_challenge_method"))),
    (302, 400),
    redirected_error,
)
probe(
    "AS: authorize with wrong aud",
    as_request("GET", authorize_with(set_(aud="https://evil.example/fhir"))),
    (302, 400),
    redirected_error,
)
probe(
    "AS: authorize without aud",
    as_request("GET", authorize_with(drop("aud"))),
    (302, 400),
    redirected_error,
)
probe(
    "AS: authorize with unregistered redirect_uri",
    as_request("GET", authorize_with(set_(redirect_uri="https://evil.example/cb"))),
    (400,),
)
probe(  # found by fuzzing: authlib's error for a non-ASCII value was a 500
    "AS: authorize with a non-ASCII response_type",
    as_request("GET", authorize_with(set_(response_type="codé"))),
    (400,),
)
probe(
    "AS: authorize with a non-ASCII redirect_uri",
    as_request("GET", authorize_with(set_(redirect_uri="http://localhost:9999/é"))),
    (400,),
)
probe(
    "AS: authorize for unknown client",
    as_request("GET", authorize_with(set_(client_id="nobody"))),
    (400,),
)
probe(
    "AS: authorize with response_type token",
    as_request("GET", authorize_with(set_(response_type="token"))),
    (302, 400),
    redirected_error,
)
probe(
    "AS: launch scope without launch",
    as_request("GET", authorize_with(set_(scope="launch patient/*.rs"))),
    (302, 400),
    redirected_error,
)
probe(
    "AS: unknown launch id",
    as_request("GET", authorize_with(set_(scope="launch patient/*.rs", launch="forged-launch"))),
    (302, 400),
    redirected_error,
)
probe(
    "AS: launch registered for another app",
    as_request(
        "GET",
        lambda s: authorize_with(
            set_(scope="launch patient/*.rs", launch=register_launch(s, client_id="app-symmetric"))
        )(s),
    ),
    (302, 400),
    redirected_error,
)
probe(
    "AS: launch registration without credentials",
    as_request(
        "POST",
        lambda s: f"{s.origin}/auth/launch",
        json={"patient": "p1", "user": {"id": "x", "professions": ["persmidwife"]}},
    ),
    (401,),
)
probe(
    "AS: launch registration with a wrong secret",
    as_request(
        "POST",
        lambda s: f"{s.origin}/auth/launch",
        json={"patient": "p1", "user": {"id": "x", "professions": ["persmidwife"]}},
        auth=("epd", "wrong"),
    ),
    (401,),
)
probe(
    "AS: launch registration by a non-registrar client",
    as_request(
        "POST",
        lambda s: f"{s.origin}/auth/launch",
        json={"patient": "p1", "user": {"id": "x", "professions": ["persmidwife"]}},
        auth=("not-registrar", "nr-secret-123"),
    ),
    (403,),
)
probe(
    "AS: launch registration for a user without a role",
    as_request(
        "POST",
        lambda s: f"{s.origin}/auth/launch",
        json={"patient": "p1", "user": {"id": "x", "professions": ["persadministrative"]}},
        auth=("epd", "epd-secret-123"),
    ),
    (422,),
)
probe(
    "AS: launch registration for an unknown patient",
    as_request(
        "POST",
        lambda s: f"{s.origin}/auth/launch",
        json={"patient": "nobody", "user": {"id": "x", "professions": ["persmidwife"]}},
        auth=("epd", "epd-secret-123"),
    ),
    (422,),
)


def login_run(username: str, password: str, patient: str | None = None) -> Run:
    def run(s: SecureServer) -> httpx.Response:
        rid = "as-" + uuid.uuid4().hex
        url = authorize_with(lambda d: None)(s)
        http = httpx.Client(follow_redirects=False, timeout=10)
        page = http.get(url)
        fields = dict([*form_fields(page.text), ("username", username), ("password", password)])
        answer = http.post(
            f"{s.origin}/auth/authorize/login", data=fields, headers={"X-Request-Id": rid}
        )
        if patient is not None:
            rid = "as-" + uuid.uuid4().hex
            data = dict(form_fields(answer.text))
            data.update({"decision": "allow", "patient": patient})
            answer = http.post(
                f"{s.origin}/auth/authorize/confirm", data=data, headers={"X-Request-Id": rid}
            )
        answer.request_id = rid  # type: ignore[attr-defined]
        return answer

    return run


probe("AS: login with a wrong password", login_run("midwife", "wrong"), (401,))
probe("AS: login of an unknown user", login_run("mallory", "x"), (401,))
probe(
    "AS: login of a user without a BiB role",
    login_run("clerk", "clerk-pw"),
    (302,),
    redirected_error,
)
probe(
    "AS: picking a patient without relationship",
    login_run("midwife", "midwife-pw", patient="p2"),
    (302,),
    redirected_error,
)
probe(
    "AS: picking a consent-denied patient",
    login_run("midwife", "midwife-pw", patient="p4"),
    (302,),
    redirected_error,
)


def refresh_data(
    scope: str | None, client_id: str = "app-public"
) -> Callable[[SecureServer], dict[str, str]]:
    def data(s: SecureServer) -> dict[str, str]:
        body = code_exchange(
            lambda d: None, scope="launch/patient offline_access patient/Observation.rs"
        )(s)
        token = httpx.post(config(s)["token_endpoint"], data=body).json()
        out = {
            "grant_type": "refresh_token",
            "refresh_token": token["refresh_token"],
            "client_id": client_id,
        }
        if scope:
            out["scope"] = scope
        return out

    return data


probe("AS: refresh with scope escalation", token_post(refresh_data("patient/*.cruds")), (400,))
probe(
    "AS: refresh with a user scope added",
    token_post(refresh_data("patient/Observation.rs user/*.cruds")),
    (400,),
)
probe(
    "AS: refresh token of another client",
    token_post(refresh_data(None, client_id="app-asymmetric")),
    (400, 401),
)
probe(
    "AS: unknown refresh token",
    token_post(
        lambda s: {
            "grant_type": "refresh_token",
            "refresh_token": "nope",
            "client_id": "app-public",
        }
    ),
    (400,),
)
probe(
    "AS: symmetric client with a wrong secret",
    token_post(
        code_exchange(drop("client_id"), client_id="app-symmetric"), auth=("app-symmetric", "wrong")
    ),
    (401,),
)
probe(
    "AS: public client asks client_credentials",
    token_post(
        lambda s: {
            "grant_type": "client_credentials",
            "client_id": "app-public",
            "scope": "system/*.rs",
        }
    ),
    (400, 401),
)
probe(
    "AS: unsupported grant_type",
    token_post(
        lambda s: {
            "grant_type": "password",
            "username": "midwife",
            "password": "midwife-pw",
            "client_id": "app-public",
        }
    ),
    (400,),
)


def backend(alg: str = "ES384", key: str = "es384", client_id: str = "backend", **kw: Any) -> Run:
    def run(s: SecureServer) -> httpx.Response:
        response = backend_token_request(s, client_id, getattr(s.keys, key), alg, **kw)
        response.request_id = response.request.headers["X-Request-Id"]  # type: ignore[attr-defined]
        return response

    return run


def replayed(s: SecureServer) -> httpx.Response:
    token = assertion(s, "backend", s.keys.es384, "ES384")
    first = backend_token_request(s, "backend", s.keys.es384, client_assertion=token)
    assert first.status_code == 200, first.text
    second = backend_token_request(s, "backend", s.keys.es384, client_assertion=token)
    second.request_id = second.request.headers["X-Request-Id"]  # type: ignore[attr-defined]
    return second


def hs256_assertion(s: SecureServer) -> httpx.Response:
    now = int(time.time())
    token = jwt.encode(
        {"alg": "HS256"},
        {
            "iss": "backend",
            "sub": "backend",
            "aud": config(s)["token_endpoint"],
            "exp": now + 60,
            "jti": uuid.uuid4().hex,
        },
        OctKey.import_key(b"k" * 32),
        algorithms=["HS256"],
    )
    response = backend_token_request(s, "backend", s.keys.es384, client_assertion=token)
    response.request_id = response.request.headers["X-Request-Id"]  # type: ignore[attr-defined]
    return response


probe("backend: RS256 assertion (not RS384/ES384)", backend("RS256", "rs384"), (400, 401))
probe("backend: HS256 assertion", hs256_assertion, (400, 401))
probe("backend: assertion signed by an unknown key", backend("RS384", "attacker"), (400, 401))
probe("backend: replayed jti", replayed, (400, 401))
probe("backend: expired assertion", backend(claims={"exp": int(time.time()) - 600}), (400, 401))
probe(
    "backend: assertion lives more than 5 minutes",
    backend(claims={"exp": int(time.time()) + 3600}),
    (400, 401),
)
probe("backend: wrong aud", backend(claims={"aud": "https://evil.example/token"}), (400, 401))
probe("backend: iss differs from sub", backend(claims={"iss": "someone-else"}), (400, 401))
probe("backend: unknown client", backend(client_id="nobody"), (400, 401))
probe("backend: no jti", backend(claims={"jti": None}), (400, 401))
probe(
    "backend: jku not the registered JWKS URL",
    backend(
        "RS384",
        "jku_key",
        "backend-jku",
        scope="system/Organization.rs",
        header={"jku": "https://evil.example/jwks.json"},
    ),
    (400, 401),
)
probe("backend: only non-system scopes", backend(scope="user/*.rs patient/*.rs"), (400,))
probe("backend: invalid grant type", backend(grant_type="not_a_grant"), (400,))
probe("backend: invalid client_assertion_type", backend(client_assertion_type="bogus"), (400, 401))
probe(
    "backend: client not registered for client_credentials",
    backend("RS384", "rs384", "app-asymmetric"),
    (400, 401),
)


def introspect_other(s: SecureServer) -> httpx.Response:
    body = code_exchange(lambda d: None)(s)
    token = httpx.post(config(s)["token_endpoint"], data=body).json()["access_token"]
    rid = "as-" + uuid.uuid4().hex
    response = httpx.post(
        config(s)["introspection_endpoint"],
        data={"token": token},
        auth=("not-registrar", "nr-secret-123"),
        headers={"X-Request-Id": rid},
    )
    response.request_id = rid  # type: ignore[attr-defined]
    return response


probe(
    "AS: introspection of another client's token",
    introspect_other,
    None,
    lambda r: r.json().get("active") is not False,
)


# -- the test -----------------------------------------------------------------------------------


def test_there_are_enough_probes() -> None:
    assert len(PROBES) >= 200, len(PROBES)
    assert len({p.name for p in PROBES}) == len(PROBES)


@pytest.mark.parametrize("item", PROBES, ids=[p.name for p in PROBES])
def test_probe_is_refused_and_audited(secure: SecureServer, item: Probe) -> None:
    response = item.run(secure)
    if item.refused is not None:
        assert response.status_code in item.refused, (response.status_code, response.text[:500])
    else:
        assert response.status_code < 500, response.text[:500]
    if item.leak is not None:
        assert not item.leak(response), response.text[:1000]
    if item.refused is None and response.status_code < 400:
        assert not (keys_in(response) & (set(P2) if "cross" in item.name else set())), (
            response.text[:500]
        )
    event = secure.audit_event(response.request_id)  # type: ignore[attr-defined]
    if item.refused is not None:
        assert event["outcome"] == "4", event  # recorded as a refusal
    else:
        assert event["outcome"] == "0", event  # a filtered answer, recorded as such
