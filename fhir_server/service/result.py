"""What an interaction returns to the API layer: status, body and headers, not yet encoded."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fhir_server.store.protocol import StoredVersion


@dataclass(slots=True)
class Result:
    status: int
    resource: dict[str, Any] | None = None  # a body to serialise
    raw: bytes | None = None  # an already serialised resource (stored versions)
    headers: dict[str, str] = field(default_factory=dict)
    version: StoredVersion | None = None  # the version this result is about (ETag etc.)
    outcome: dict[str, Any] | None = None  # for Prefer: return=OperationOutcome
    location: str | None = None  # Location header target (absolute)
    elements_filter: Any = None  # _summary / _elements to apply when encoding
