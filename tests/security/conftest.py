"""A secured server (real uvicorn process, ``fhir-server serve`` without ``--insecure-open``)
with registered SMART clients, local users, an external identity provider and seeded data; token
minting with the server's own key (as ``fhir-server demo-token`` does) and with attacker keys; and
an audit-trail reader (an administrator's system token) to prove every probe was audited."""

from __future__ import annotations

import base64
import http.server
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import ECKey, RSAKey

from fhir_server.config import Settings
from fhir_server.security.authserver import access_claims, hash_secret
from fhir_server.security.tokens import SigningKey
from tests.conftest import LiveServer

IDP_ISSUER = "https://api-acpt.ehealth.fgov.be/auth/realms/healthcare"
IDP_AUDIENCE = "bib-pro-fhir"
REDIRECT = "http://localhost:9999/callback"
SSIN = "https://www.ehealth.fgov.be/standards/fhir/core/NamingSystem/ssin"
NIHDI = "https://www.ehealth.fgov.be/standards/fhir/core/NamingSystem/nihdi-professional"
INDICATOR = "https://borninbelgiumpro.be/fhir/CodeSystem/bib-vulnerability-indicator"
OBS_CAT = "http://terminology.hl7.org/CodeSystem/observation-category"


def ref(value: str) -> dict[str, str]:
    return {"reference": value}


def observation(
    id_: str, patient: str, code: tuple[str, str], category: str = "survey", **extra: Any
) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": id_,
        "status": "final",
        "category": [{"coding": [{"system": OBS_CAT, "code": category}]}],
        "code": {"coding": [{"system": code[0], "code": code[1]}]},
        "subject": ref(f"Patient/{patient}"),
        "valueBoolean": True,
        **extra,
    }


def seed_resources() -> list[dict[str, Any]]:
    """p1: care team mw-1 + sw-1 (the main patient); p2: someone else's patient (mw-2 only);
    p3: referred to cpas-1 (sw-1's organisation); p4: mw-1's care team, but a Consent denies mw-1;
    p5: mw-1's care team, a Consent denies the restricted label R to everyone."""
    out: list[dict[str, Any]] = [
        {"resourceType": "Organization", "id": "hosp-1", "name": "Hospital (test)"},
        {"resourceType": "Organization", "id": "cpas-1", "name": "CPAS (test)"},
        {"resourceType": "Organization", "id": "other-org", "name": "Other (test)"},
        {
            "resourceType": "Practitioner",
            "id": "mw-1",
            "identifier": [{"system": NIHDI, "value": "40012345001"}],
        },
        {"resourceType": "Practitioner", "id": "sw-1"},
        {"resourceType": "Practitioner", "id": "mw-2"},
        {
            "resourceType": "Practitioner",
            "id": "dr-ext",
            "identifier": [{"system": NIHDI, "value": "10000000001"}],
        },
        {
            "resourceType": "Practitioner",
            "id": "sw-ext",
            "identifier": [{"system": SSIN, "value": "85010100111"}],
        },
    ]
    names = {"p1": "Alpha", "p2": "Bravo", "p3": "Charlie", "p4": "Delta", "p5": "Echo"}
    for pid, family in names.items():
        out.append(
            {
                "resourceType": "Patient",
                "id": pid,
                "name": [{"family": family, "given": ["Test"]}],
                "identifier": [{"system": SSIN, "value": f"9001011{list(names).index(pid)}00"}],
                "birthDate": "1990-01-01",
                "gender": "female",
            }
        )
    teams = {
        "p1": ["mw-1", "sw-1", "dr-ext", "sw-ext"],
        "p2": ["mw-2"],
        "p4": ["mw-1"],
        "p5": ["mw-1"],
    }
    for pid, members in teams.items():
        out.append(
            {
                "resourceType": "CareTeam",
                "id": f"team-{pid}",
                "status": "active",
                "subject": ref(f"Patient/{pid}"),
                "participant": [{"member": ref(f"Practitioner/{m}")} for m in members],
            }
        )
    # p3 is referred to cpas-1 (sw-1's organisation): a referral accepted by cpas-1 shares the
    # woman's Patient resource and the request's supportingInfo (o3-weight), no more; since the
    # referral workflow (fhir_server/referrals), a referral is no longer a care relationship with
    # her whole record. The Task is created as requested and accepted in a second step
    # (seed_progress), as the workflow demands.
    out.append(
        {
            "resourceType": "ServiceRequest",
            "id": "ref-p3",
            "status": "active",
            "intent": "order",
            "subject": ref("Patient/p3"),
            "requester": ref("Organization/other-org"),
            "performer": [ref("Organization/cpas-1")],
            "supportingInfo": [ref("Observation/o3-weight")],
        }
    )
    out.append(referral_task_p3("requested"))
    out.append(
        {
            "resourceType": "Consent",
            "id": "consent-p4",
            "status": "active",
            "scope": {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/consentscope",
                        "code": "patient-privacy",
                    }
                ]
            },
            "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
            "patient": ref("Patient/p4"),
            "policyRule": {
                "coding": [
                    {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTIN"}
                ]
            },
            "provision": {
                "type": "permit",
                "provision": [
                    {
                        "type": "deny",
                        "actor": [
                            {"role": {"text": "excluded"}, "reference": ref("Practitioner/mw-1")}
                        ],
                    }
                ],
            },
        }
    )
    out.append(
        {
            "resourceType": "Consent",
            "id": "consent-p5",
            "status": "active",
            "scope": {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/consentscope",
                        "code": "patient-privacy",
                    }
                ]
            },
            "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
            "patient": ref("Patient/p5"),
            "policyRule": {
                "coding": [
                    {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTIN"}
                ]
            },
            "provision": {
                "type": "permit",
                "provision": [
                    {
                        "type": "deny",
                        "securityLabel": [
                            {
                                "system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality",
                                "code": "R",
                            }
                        ],
                    }
                ],
            },
        }
    )
    weight = ("http://loinc.org", "29463-7")
    lab = ("http://loinc.org", "2345-7")
    out += [
        observation("o1-weight", "p1", weight, "vital-signs"),
        observation("o1-lab", "p1", lab, "laboratory"),
        observation("o1-dep", "p1", (INDICATOR, "depression")),
        observation(
            "o1-link", "p1", ("http://loinc.org", "1111-1"), hasMember=[ref("Observation/o2-dep")]
        ),
        observation("o2-weight", "p2", weight, "vital-signs"),
        observation("o2-dep", "p2", (INDICATOR, "depression")),
        observation("o2-only", "p2", ("http://loinc.org", "9999-9")),
        observation("o2-enc", "p2", ("http://loinc.org", "8888-8"), encounter=ref("Encounter/e1")),
        observation("o3-weight", "p3", weight, "vital-signs"),
        observation("o4-weight", "p4", weight, "vital-signs"),
        observation("o5-weight", "p5", weight, "vital-signs"),
        observation("o5-dep", "p5", (INDICATOR, "depression")),
        {
            "resourceType": "Encounter",
            "id": "e1",
            "status": "finished",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
            "subject": ref("Patient/p1"),
        },
        {
            "resourceType": "Encounter",
            "id": "e2",
            "status": "finished",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
            "subject": ref("Patient/p2"),
        },
        {
            "resourceType": "Condition",
            "id": "c1-sub",
            "subject": ref("Patient/p1"),
            "code": {"coding": [{"system": INDICATOR, "code": "substance-use"}]},
        },
        {
            "resourceType": "QuestionnaireResponse",
            "id": "qr1",
            "status": "completed",
            "subject": ref("Patient/p1"),
            "item": [{"linkId": "1", "answer": [{"valueBoolean": True}]}],
        },
        {
            "resourceType": "QuestionnaireResponse",
            "id": "qr2",
            "status": "completed",
            "subject": ref("Patient/p2"),
            "item": [{"linkId": "1", "answer": [{"valueBoolean": True}]}],
        },
        {
            "resourceType": "CarePlan",
            "id": "cp2",
            "status": "active",
            "intent": "plan",
            "subject": ref("Patient/p2"),
        },
        {"resourceType": "Binary", "id": "bin1", "contentType": "text/plain", "data": "aGVsbG8="},
    ]
    return out


def referral_task_p3(status: str) -> dict[str, Any]:
    return {
        "resourceType": "Task",
        "id": "task-p3",
        "status": status,
        "intent": "order",
        "code": {
            "coding": [{"system": "http://hl7.org/fhir/CodeSystem/task-code", "code": "fulfill"}]
        },
        "focus": ref("ServiceRequest/ref-p3"),
        "for": ref("Patient/p3"),
        "requester": ref("Organization/other-org"),
        "owner": ref("Organization/cpas-1"),
    }


def seed_progress() -> dict[str, Any]:
    """The second step of the seed: cpas-1 accepted the referral of p3."""
    task = referral_task_p3("accepted")
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [{"resource": task, "request": {"method": "PUT", "url": "Task/task-p3"}}],
    }


def seed_bundle() -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}}
            for r in seed_resources()
        ],
    }


@dataclass
class ClientKeys:
    es384: ECKey = field(
        default_factory=lambda: ECKey.generate_key(
            "P-384", private=True, parameters={"kid": "es384-1"}
        )
    )
    rs384: RSAKey = field(
        default_factory=lambda: RSAKey.generate_key(
            2048, private=True, parameters={"kid": "rs384-1"}
        )
    )
    jku_key: RSAKey = field(
        default_factory=lambda: RSAKey.generate_key(2048, private=True, parameters={"kid": "jku-1"})
    )
    idp: RSAKey = field(
        default_factory=lambda: RSAKey.generate_key(2048, private=True, parameters={"kid": "idp-1"})
    )
    attacker: RSAKey = field(
        default_factory=lambda: RSAKey.generate_key(
            2048, private=True, parameters={"kid": "rs384-1"}
        )
    )


def public_jwks(*keys: Any) -> dict[str, Any]:
    out = []
    for key in keys:
        data = key.as_dict(private=False)
        data["kid"] = key.kid
        out.append(data)
    return {"keys": out}


class JwksServer:
    """Serves a JWKS over HTTP (for clients registered by jwks_uri)."""

    def __init__(self, jwks: dict[str, Any]) -> None:
        body = json.dumps(jwks).encode()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                return None

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/jwks.json"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def midwife_user() -> dict[str, Any]:
    """The local user of the sign-in page: midwife mw-1 of hosp-1 (Role A), password midwife-pw."""
    return {
        "username": "midwife",
        "password_hash": hash_secret("midwife-pw"),
        "practitioner": "Practitioner/mw-1",
        "organization": "Organization/hosp-1",
        "professions": ["persmidwife"],
        "name": "Midwife One",
    }


def registrations(keys: ClientKeys, jwks_url: str) -> dict[str, Any]:
    user_scopes = (
        "launch launch/patient openid fhirUser profile offline_access online_access "
        "patient/*.cruds patient/*.rs user/*.cruds user/*.rs patient/Observation.rs "
        "user/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory"
    )
    return {
        "clients": [
            {
                "client_id": "app-public",
                "type": "public",
                "redirect_uris": [REDIRECT],
                "scope": user_scopes,
            },
            {
                "client_id": "app-symmetric",
                "type": "confidential-symmetric",
                "redirect_uris": [REDIRECT],
                "scope": user_scopes,
                "client_secret_hash": hash_secret("s3cret-app"),
            },
            {
                "client_id": "app-asymmetric",
                "type": "confidential-asymmetric",
                "redirect_uris": [REDIRECT],
                "scope": user_scopes,
                "jwks": public_jwks(keys.rs384),
                "grant_types": ["authorization_code", "refresh_token"],
            },
            {
                "client_id": "backend",
                "type": "confidential-asymmetric",
                "jwks": public_jwks(keys.es384, keys.rs384),
                "grant_types": ["client_credentials"],
                "scope": "system/*.rs system/Observation.cruds",
                "patient_data": True,
                "role": "A",
            },
            {
                "client_id": "backend-jku",
                "type": "confidential-asymmetric",
                "jwks_uri": jwks_url,
                "grant_types": ["client_credentials"],
                "scope": "system/Organization.rs",
            },
            {
                "client_id": "directory-sync",
                "type": "confidential-asymmetric",
                "jwks": public_jwks(keys.es384),
                "grant_types": ["client_credentials"],
                "scope": "system/*.rs",
                "patient_data": False,
            },
            {
                "client_id": "epd",
                "type": "confidential-symmetric",
                "client_secret": "epd-secret-123",
                "launch_registrar": True,
                "grant_types": [],
                "scope": "",
            },
            {
                "client_id": "not-registrar",
                "type": "confidential-symmetric",
                "client_secret": "nr-secret-123",
                "grant_types": [],
                "scope": "",
            },
        ],
        "users": [
            midwife_user(),
            {
                "username": "social",
                "password": "social-pw",
                "practitioner": "Practitioner/sw-1",
                "organization": "Organization/cpas-1",
                "professions": ["perssocialworker"],
                "name": "Social One",
            },
            {
                "username": "clerk",
                "password": "clerk-pw",
                "practitioner": "Practitioner/mw-2",
                "professions": ["persadministrative"],
                "name": "Clerk",
            },
        ],
    }


_SEEDED: list[Path] = []  # the data folder seeded once per test process (see load_seed)


def load_seed(root: Path, data: Path) -> None:
    """Load the security seed (patients p1-p5, their care teams, consents and data) into a data
    folder with ``fhir-server load``, as an operator would.

    The load (shipped content, then the two seed Bundles: about 9 s of CPU) runs once per test
    process; later servers get a copy of the folder it produced."""
    bundles = (("seed.json", seed_bundle()), ("seed-progress.json", seed_progress()))
    for name, bundle in bundles:
        (root / name).write_text(json.dumps(bundle))
    if not _SEEDED:
        template = Path(tempfile.mkdtemp(prefix="fhir-security-seed-")) / "data"
        template.mkdir()
        for name, _ in bundles:
            subprocess.run(
                [sys.executable, "-m", "fhir_server", "load", str(root / name), "--data-dir",
                 str(template)],
                check=True,
                capture_output=True,
            )  # fmt: skip
        _SEEDED.append(template)
    shutil.copytree(_SEEDED[0], data, dirs_exist_ok=True)


class SecureServer:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.keys = ClientKeys()
        self.jwks_server = JwksServer(public_jwks(self.keys.jku_key))
        data = root / "data"
        data.mkdir(parents=True)
        clients = root / "clients.json"
        clients.write_text(json.dumps(registrations(self.keys, self.jwks_server.url)))
        idp_jwks = root / "idp-jwks.json"
        idp_jwks.write_text(json.dumps(public_jwks(self.keys.idp)))
        load_seed(root, data)
        self.live = LiveServer(
            data,
            [
                "--no-demo",
                "--clients",
                str(clients),
                "--idp-issuer",
                IDP_ISSUER,
                "--idp-jwks-file",
                str(idp_jwks),
                "--idp-audience",
                IDP_AUDIENCE,
            ],
            env={"FHIR_AUDIT_FLUSH_MS": "5", "FHIR_LOAD_TERMINOLOGY": "false"},
            secure=True,
        )
        self.live.start()
        self.base = self.live.base
        self.origin = self.base[: -len("/fhir")]
        self.settings = Settings(data_dir=data, public_url=self.base)
        self.key = SigningKey(data / "auth" / "signing-key.pem")
        self.http = httpx.Client(timeout=10)
        self.audit_seen: dict[str, dict[str, Any]] = {}
        self.auditor = self.mint(
            kind="system", admin=True, scope="system/*.rs", client_id="auditor", subject="auditor"
        )

    def close(self) -> None:
        self.http.close()
        self.live.stop()
        self.jwks_server.close()

    # -- tokens ----------------------------------------------------------------------------------

    def claims(self, **kw: Any) -> dict[str, Any]:
        kind = kw.pop("kind", "user")
        defaults: dict[str, Any] = {
            "subject": kw.pop("subject", "test-user"),
            "client_id": kw.pop("client_id", "app-public"),
            "scope": kw.pop("scope", "user/*.cruds"),
            "lifetime": kw.pop("lifetime", 600),
            "kind": kind,
        }
        if kind == "user":
            defaults["role"] = kw.pop("role", "A")
            defaults["practitioner"] = kw.pop("practitioner", "Practitioner/mw-1")
            defaults["organization"] = kw.pop("organization", "Organization/hosp-1")
        return access_claims(self.settings, **defaults, **kw)

    def mint(self, **kw: Any) -> str:
        return self.key.sign(self.claims(**kw), typ="at+jwt")

    def sign(
        self,
        claims: dict[str, Any],
        key: Any = None,
        alg: str = "RS256",
        header: dict[str, Any] | None = None,
    ) -> str:
        key = key or self.key.key
        head = {"alg": alg, "kid": self.key.kid, **(header or {})}
        return jwt.encode(head, claims, key, algorithms=[alg])

    def idp_token(
        self, key: Any = None, header: dict[str, Any] | None = None, **claims: Any
    ) -> str:
        now = int(time.time())
        body: dict[str, Any] = {
            "iss": IDP_ISSUER,
            "aud": [IDP_AUDIENCE],
            "sub": "ehealth-user-1",
            "azp": "epd-frontend",
            "iat": now,
            "exp": now + 300,
            "jti": uuid.uuid4().hex,
            "userProfile": {
                "ssin": "80222700153",
                "firstName": "Dirk",
                "lastName": "Ext",
                "physician": {"recognised": True, "nihii11": "10000000001"},
            },
        }
        body.update(claims)
        head = {"alg": "RS256", "kid": "idp-1", **(header or {})}
        return jwt.encode(head, body, key or self.keys.idp)

    # -- requests --------------------------------------------------------------------------------

    def request(
        self, method: str, path: str, token: str | None = None, **kw: Any
    ) -> httpx.Response:
        headers = dict(kw.pop("headers", {}) or {})
        headers.setdefault("X-Request-Id", "probe-" + uuid.uuid4().hex)
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        url = path if path.startswith("http") else f"{self.base}{path}"
        response = self.http.request(method, url, headers=headers, **kw)
        response.request_id = headers["X-Request-Id"]  # type: ignore[attr-defined]
        return response

    def audit_event(self, request_id: str, timeout: float = 5.0) -> dict[str, Any]:
        """The AuditEvent recorded for a request (read back through the API by an auditor)."""
        deadline = time.monotonic() + timeout
        while True:
            if request_id in self.audit_seen:
                return self.audit_seen[request_id]
            page = self.http.get(
                f"{self.base}/AuditEvent",
                params={"_sort": "-_lastUpdated", "_count": "200"},
                headers={"Authorization": f"Bearer {self.auditor}", "X-Request-Id": "audit-reader"},
            )
            assert page.status_code == 200, page.text
            for entry in page.json().get("entry", ()):
                event = entry["resource"]
                for entity in event.get("entity", ()):
                    rid = entity.get("what", {}).get("identifier", {}).get("value")
                    if rid and rid != "audit-reader":
                        self.audit_seen.setdefault(rid, event)
            if request_id in self.audit_seen:
                return self.audit_seen[request_id]
            if time.monotonic() > deadline:
                raise AssertionError(f"no AuditEvent for request {request_id}")
            time.sleep(0.02)


@pytest.fixture(scope="package")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureServer]:
    server = SecureServer(tmp_path_factory.mktemp("secure"))
    try:
        yield server
    finally:
        server.close()


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()
