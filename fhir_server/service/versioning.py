"""Version bookkeeping: meta stamping, ETags, HTTP dates, and the server clock."""

from __future__ import annotations

import os
import time
from email.utils import formatdate, parsedate_to_datetime
from functools import lru_cache

from fhir_server.errors import bad_request
from fhir_server.search.dates import format_instant, to_us

_last_now = 0


def now_us() -> int:
    """Wall clock in whole milliseconds (as µs), never going backwards within the process."""
    global _last_now
    now = time.time_ns() // 1_000_000 * 1000
    if now <= _last_now:
        now = _last_now + 1000
    _last_now = now
    return now


def new_id() -> str:
    """A UUIDv7 (RFC 9562): random, yet ordered by creation time, so that the store's indexes
    grow at their end instead of being written at random places. 48 bits of milliseconds, the
    version 7, 12 random bits, the variant 10 and 62 random bits, built as text (what
    ``str(uuid.UUID(int=...))`` gives for the same bits, at a fraction of the cost)."""
    ms = f"{time.time_ns() // 1_000_000:012x}"
    r = os.urandom(10).hex()  # 80 random bits; the first nibble gives way to the version
    variant = _VARIANT[r[4]]  # 10xx: the RFC 4122 variant, two random bits kept
    return f"{ms[:8]}-{ms[8:12]}-7{r[1:4]}-{variant}{r[5:8]}-{r[8:20]}"


_VARIANT = {f"{n:x}": "89ab"[n & 3] for n in range(16)}


def stamp_meta(resource: dict, version: int, last_updated: int) -> None:
    """Set the server-owned meta elements (right after id); keep profile, tag, security, source."""
    old = resource.get("meta")
    meta = {"versionId": str(version), "lastUpdated": format_instant(last_updated)}
    if isinstance(old, dict):
        meta.update((k, v) for k, v in old.items() if k not in ("versionId", "lastUpdated"))
    items = [(k, v) for k, v in resource.items() if k not in ("resourceType", "id", "meta")]
    head = {"resourceType": resource.get("resourceType"), "id": resource.get("id"), "meta": meta}
    resource.clear()
    resource.update(head)
    resource.update(items)


def etag(version: int) -> str:
    return f'W/"{version}"'


def parse_etag(value: str) -> int:
    """Accept W/"3", "3" and 3 (clients send all three)."""
    text = value.strip()
    if text.startswith(("W/", "w/")):
        text = text[2:]
    text = text.strip('"')
    if not text.isdigit():
        raise bad_request(f"invalid version in ETag header: {value[:40]!r}")
    return int(text)


@lru_cache(maxsize=4096)
def http_date(value_us: int) -> str:
    return _http_date_of_second(value_us // 1_000_000)


@lru_cache(maxsize=1024)  # versions written in the same second share the text
def _http_date_of_second(second: int) -> str:
    return formatdate(second, usegmt=True)


def parse_http_date(value: str) -> int | None:
    try:
        return to_us(parsedate_to_datetime(value))
    except (TypeError, ValueError, IndexError):
        return None
