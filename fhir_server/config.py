"""Server settings: defaults, overridden by environment variables (FHIR_*), overridden by flags."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path


def default_data_dir() -> Path:
    return Path(os.environ.get("FHIR_DATA_DIR", "./data")).resolve()


@dataclass(slots=True)
class Settings:
    store: str = ""  # sqlite:///path/fhir.db (default: <data dir>/fhir.db) or mongodb://...
    data_dir: Path = field(default_factory=default_data_dir)
    host: str = "127.0.0.1"
    port: int = 8080
    base_path: str = "/fhir"  # where the FHIR API is mounted
    public_url: str = ""  # absolute base URL clients see (default: http://host:port/fhir)
    max_body_bytes: int = 16 * 1024 * 1024
    max_header_bytes: int = 32 * 1024  # request line + headers; larger requests get 431
    default_count: int = 20
    max_count: int = 1000
    include_limit: int = 1000  # included resources per page before an OperationOutcome warning
    allow_update_create: bool = True
    allow_multiple_delete: bool = False
    max_multiple_delete: int = 100
    timezone: str = "Europe/Brussels"  # zone for date values without one
    snapshot_retention_seconds: int = 24 * 3600  # how long search paging links stay valid
    load_terminology: bool = True  # write the shipped terminology into the store at start-up
    load_content: bool = True  # write the shipped domain content (content/) at start-up
    # profiles every write of a type must conform to: "Patient=url,PractitionerRole=url"
    required_profiles: str = ""
    reject_unknown_profiles: bool = False  # meta.profile unknown to the server: error, not warning
    log_level: str = "info"
    # resource types whose free text is indexed for _content / _text (comma-separated; plug-ins
    # add their own, e.g. the social map adds HealthcareService, Organization, Location)
    text_search_types: str = ""
    # -- security (docs/security.md) --------------------------------------------------------
    auth: str = "required"  # required | open ("open" = --insecure-open: no authentication at all)
    auth_issuer: str = ""  # issuer of the built-in authorization server (default: public origin)
    clients_file: str = ""  # JSON or TOML file with SMART client registrations and local users
    signing_key_file: str = ""  # PEM token-signing key (default: <data dir>/auth/signing-key.pem)
    access_token_seconds: int = 3600
    backend_token_seconds: int = 300  # SMART Backend Services tokens
    refresh_token_seconds: int = 30 * 24 * 3600
    auth_code_seconds: int = 60
    launch_seconds: int = 300  # how long a registered EHR launch id may be used
    epd_relationship_seconds: int = 24 * 3600  # an EPD launch is a care relationship this long
    idp_issuer: str = ""  # external identity provider (eHealth I.AM Connect style)
    idp_jwks_url: str = ""
    idp_jwks_file: str = ""
    idp_audience: str = ""  # the aud value external tokens must carry (e.g. bib-pro-fhir)
    idp_client_id: str = ""  # resource_access key of the BiB app roles (default: idp_audience)
    idp_default_scopes: str = "user/*.cruds"  # when an external token carries no SMART scopes
    idp_organization_claim: str = "bib_organization"
    break_glass: bool = True  # Role A may claim emergency access (X-Break-Glass, audited)
    cors_origins: str = "*"
    audit_flush_ms: int = 0  # the audit writer lingers this long for more entries (group commit)
    relationship_cache_seconds: int = 60
    # -- subscriptions and referrals (docs/subscriptions.md, docs/referrals.md) -------------
    # hosts (names, IPs or CIDR networks, optionally :port) a rest-hook may reach over plain
    # http or at a loopback / private / link-local address; everything else must be public https
    subscription_allowed_hosts: str = ""
    subscription_poll_ms: int = 250  # how often a process looks for work of other processes
    subscription_lease_seconds: int = 30  # a delivery / matching claim expires after this
    subscription_timeout_seconds: int = 10  # default time an endpoint has to answer
    subscription_max_failures: int = 8  # consecutive failed attempts before status error
    subscription_retry_ms: int = 500  # first retry delay (doubles, at most 60 s)
    subscription_dns_timeout_ms: int = 2000  # endpoint name resolution at write and delivery
    report_min_cell: int = 5  # aggregate counts below this are masked (0: never)

    def __post_init__(self) -> None:
        if not self.store:
            self.store = f"sqlite:///{self.data_dir / 'fhir.db'}"
        self.base_path = "/" + self.base_path.strip("/") if self.base_path.strip("/") else ""
        if not self.public_url:
            self.public_url = f"http://{self.host}:{self.port}{self.base_path}"
        self.public_url = self.public_url.rstrip("/")
        if not self.auth_issuer:
            from urllib.parse import urlsplit

            parts = urlsplit(self.public_url)
            self.auth_issuer = f"{parts.scheme}://{parts.netloc}"
        self.auth_issuer = self.auth_issuer.rstrip("/")

    @classmethod
    def from_env(cls, **overrides: object) -> Settings:
        values: dict[str, object] = {}
        for item in fields(cls):
            raw = os.environ.get("FHIR_" + item.name.upper())
            if raw is not None:
                values[item.name] = _coerce(raw, item.type)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)  # type: ignore[arg-type]


def _coerce(raw: str, type_name: object) -> object:
    name = str(type_name)
    if "bool" in name:
        return raw.strip().lower() in ("1", "true", "yes", "on")
    if "int" in name:
        return int(raw)
    if "Path" in name:
        return Path(raw).resolve()
    return raw
