"""Turning service Results and errors into HTTP responses (status, headers, JSON body)."""

from __future__ import annotations

from typing import Any

import orjson

from fhir_server.errors import FhirError, Issue, operation_outcome
from fhir_server.json_codec import dumps, loads_trusted
from fhir_server.model.structure import Model
from fhir_server.service.result import Result
from fhir_server.service.subsetting import subset
from fhir_server.service.versioning import etag, http_date

CONTENT_TYPE = (b"content-type", b"application/fhir+json; charset=utf-8")
# health data must not be kept by browsers or shared caches, nor sniffed as another type
HARDENING = ((b"cache-control", b"no-store"), (b"x-content-type-options", b"nosniff"))


class Response:
    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    async def send(self, send: Any, head: bool = False) -> None:
        """Send with a Content-Length (not chunked; some integration engines and HTTP/1.0
        proxies need it), also on HEAD, where the body itself is left out."""
        headers = [*self.headers, *HARDENING]
        if self.status not in (204, 304):  # no body, and no length to announce
            headers.append((b"content-length", b"%d" % len(self.body)))
        await send({"type": "http.response.start", "status": self.status, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if head else self.body})


def _pretty(body: bytes) -> bytes:
    return orjson.dumps(
        loads_trusted(body),
        option=orjson.OPT_INDENT_2,
        default=lambda d: orjson.Fragment(str(d).encode()),
    )


def render(
    result: Result,
    *,
    prefer_return: str,
    pretty: bool,
    is_write: bool,
    model: Model | None = None,
    summary: str | None = None,
    elements: tuple[str, ...] = (),
    extra_headers: list[tuple[bytes, bytes]] = (),
) -> Response:
    headers: list[tuple[bytes, bytes]] = [CONTENT_TYPE, *extra_headers]
    version = result.version
    if version is not None:
        headers.append((b"etag", etag(version.version).encode()))
        headers.append((b"last-modified", http_date(version.last_updated).encode()))
    if result.location:
        headers.append((b"location", result.location.encode()))
        if is_write:
            headers.append((b"content-location", result.location.encode()))
    for key, value in result.headers.items():
        headers.append((key.lower().encode(), value.encode()))
    body = b""
    if result.status == 204 or result.status == 304 or (is_write and prefer_return == "minimal"):
        pass
    elif is_write and prefer_return == "OperationOutcome":
        body = dumps(
            operation_outcome([Issue("information", "informational", "the interaction succeeded")]),
            pretty,
        )
    elif result.raw is not None:
        body = result.raw
        if model is not None and (summary or elements):
            body = dumps(subset(loads_trusted(body), model, summary, elements), pretty)
        elif pretty:
            body = _pretty(body)
    elif result.resource is not None:
        body = dumps(result.resource, pretty)
    if not body:
        headers = [h for h in headers if h[0] != b"content-type"]
    return Response(result.status, headers, body)


def render_error(error: FhirError, pretty: bool = False) -> Response:
    headers: list[tuple[bytes, bytes]] = [CONTENT_TYPE]
    for key, value in error.headers.items():
        headers.append((key.lower().encode(), value.encode()))
    return Response(error.status, headers, dumps(error.outcome(), pretty))


INTERNAL_ERROR = FhirError(
    500, "exception", "the server could not process the request; the error was logged"
)
