"""The MongoDB store's settings, read from the store URL.

Everything in the URL goes to PyMongo as it is (hosts, ``replicaSet``, ``tls*``, ``authSource``,
``w``, timeouts...), except the few options that belong to this server, which are taken out
first so the driver does not warn about unknown options:

- ``database``: the database name (default: the URL's path, else ``fhir``);
- ``staged_limit``: the most keys a chained search or ``_has`` may collect in one stage
  (default 20,000; above it the search is refused as too costly instead of running for minutes);
- ``max_time_ms``: the longest a search, count or history page may run on MongoDB (``maxTimeMS``,
  default 15,000); a search that trips it is refused with an OperationOutcome (400 too-costly);
- ``write_deadline_ms``: how long a unit of work may wait for its turn, retries of transient
  errors included (default 20,000); then it fails with 503 and nothing is written;
- ``drop_on_close``: drop the database when the store closes (tests only).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import parse_qsl, unquote, urlsplit

DEFAULT_DATABASE = "fhir"
DEFAULT_STAGED_LIMIT = 20_000
DEFAULT_SERVER_SELECTION_MS = 10_000  # a clear start-up error instead of PyMongo's 30 s wait
DEFAULT_MAX_TIME_MS = 15_000
DEFAULT_WRITE_DEADLINE_MS = 20_000
_OWN_OPTIONS = frozenset(
    {"database", "staged_limit", "drop_on_close", "max_time_ms", "write_deadline_ms"}
)
_TRUE = frozenset({"1", "true", "yes", "on"})
_CREDENTIALS = re.compile(r"(?<=://)([^/@]*)@")


@dataclass(frozen=True, slots=True)
class MongoConfig:
    uri: str  # for the driver: the store URL without this server's own options
    database: str
    staged_limit: int = DEFAULT_STAGED_LIMIT
    drop_on_close: bool = False
    max_time_ms: int = DEFAULT_MAX_TIME_MS
    write_deadline_ms: int = DEFAULT_WRITE_DEADLINE_MS
    driver_options: tuple[tuple[str, object], ...] = ()  # defaults the URL did not set

    @property
    def deadline_s(self) -> float:
        return self.write_deadline_ms / 1000

    @property
    def display(self) -> str:
        """The URL for messages and logs: without the password."""
        return redact(self.uri)


def parse_url(url: str) -> MongoConfig:
    split = urlsplit(url)
    if split.scheme not in ("mongodb", "mongodb+srv"):
        raise ValueError(f"not a MongoDB URL: {redact(url)!r}")
    own: dict[str, str] = {}
    kept: list[str] = []
    for part in split.query.split("&") if split.query else ():
        name = unquote(part.split("=", 1)[0])
        if name in _OWN_OPTIONS:
            own.update(parse_qsl(part, keep_blank_values=True))
        else:
            kept.append(part)  # untouched: the driver decodes its own options
    database = own.get("database") or unquote(split.path.lstrip("/")) or DEFAULT_DATABASE
    if any(c in database for c in '/\\. "$') or len(database) > 63:
        raise ValueError(f"invalid MongoDB database name {database!r}")
    numbers: dict[str, int] = {}
    for name, default in (
        ("staged_limit", DEFAULT_STAGED_LIMIT),
        ("max_time_ms", DEFAULT_MAX_TIME_MS),
        ("write_deadline_ms", DEFAULT_WRITE_DEADLINE_MS),
    ):
        try:
            numbers[name] = max(1, int(own.get(name, default)))
        except ValueError as exc:
            raise ValueError(f"{name} must be an integer") from exc
    base = url.split("?", 1)[0].split("#", 1)[0]
    uri = base + ("?" + "&".join(kept) if kept else "")
    names = {unquote(p.split("=", 1)[0]).lower() for p in kept}
    defaults: list[tuple[str, object]] = []
    if "appname" not in names:
        defaults.append(("appname", "bib-fhir-server"))
    if "serverselectiontimeoutms" not in names:
        defaults.append(("serverSelectionTimeoutMS", DEFAULT_SERVER_SELECTION_MS))
    return MongoConfig(
        uri=uri,
        database=database,
        staged_limit=numbers["staged_limit"],
        drop_on_close=own.get("drop_on_close", "").lower() in _TRUE,
        max_time_ms=numbers["max_time_ms"],
        write_deadline_ms=numbers["write_deadline_ms"],
        driver_options=tuple(defaults),
    )


def redact(url: str) -> str:
    """``mongodb://user:secret@host`` -> ``mongodb://user:***@host``."""

    def hide(match: re.Match[str]) -> str:
        user = match.group(1).split(":", 1)[0]
        return f"{user}:***@" if ":" in match.group(1) else f"{user}@"

    return _CREDENTIALS.sub(hide, url, count=1)
