"""An upper bound on the size of a request's head (request line and headers).

uvicorn's default HTTP implementation (httptools) buffers a header of any size: a 20 MB header
is accepted and parsed. ``BoundedHttpToolsProtocol`` (passed to uvicorn as its ``http`` class by
``fhir-server serve``) counts the bytes received while the head is incomplete and, beyond
``max_head_bytes``, answers ``431 Request Header Fields Too Large`` with an OperationOutcome and
closes the connection, before anything reaches the application. Only reads that leave the head
incomplete are counted, so every counted byte is a head byte: a request within the bound is never
refused here. Only reads that leave the head
incomplete are counted, so every counted byte is a head byte: a request within the bound is never
refused here. The refusal is audited through
``on_refused`` (set by the server; the request had no identity yet). Memory stays bounded by the
limit plus one read from the socket.

``ServerApp`` checks the same bound on the headers it is given (other ASGI servers, tests over
ASGI), so the limit holds whatever serves the application.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

DEFAULT_MAX_HEAD_BYTES = 32 * 1024
TOO_LARGE_MESSAGE = "the request headers are too large (at most {limit} bytes)"

# (client address, partial URL, limit) -> None; set by the server to audit the refusal
on_refused: Callable[[str | None, str, int], None] | None = None


def outcome_body(message: str) -> bytes:
    return orjson.dumps(
        {
            "resourceType": "OperationOutcome",
            "issue": [{"severity": "error", "code": "too-long", "diagnostics": message}],
        }
    )


def head_size(headers: list[tuple[bytes, bytes]]) -> int:
    return sum(len(name) + len(value) + 4 for name, value in headers)


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    max_head_bytes = DEFAULT_MAX_HEAD_BYTES

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_head = True
        self._head_bytes = 0

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True
        self._head_bytes = 0

    def on_headers_complete(self) -> None:
        self._in_head = False
        super().on_headers_complete()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if not self._in_head or self.transport.is_closing():
            return
        self._head_bytes += len(data)
        if self._head_bytes > self.max_head_bytes:
            self._refuse()

    def _refuse(self) -> None:
        message = TOO_LARGE_MESSAGE.format(limit=self.max_head_bytes)
        body = outcome_body(message)
        head = (
            b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
            b"content-type: application/fhir+json\r\n"
            b"content-length: " + str(len(body)).encode() + b"\r\n"
            b"cache-control: no-store\r\n"
            b"x-content-type-options: nosniff\r\n"
            b"connection: close\r\n\r\n"
        )
        self.transport.write(head + body)
        self.transport.close()
        if on_refused is not None:
            client = self.client[0] if getattr(self, "client", None) else None
            try:
                url = self.url.decode("latin-1")[:200]
            except AttributeError:
                url = ""
            on_refused(client, url, self.max_head_bytes)
