"""A minimal HTTP request for the FHIR routes, read straight from the ASGI scope.

The FHIR API does not go through FastAPI's routing and dependency machinery: at tens of thousands of
requests per second that machinery costs more than the work itself. This object parses only what a
FHIR interaction needs, lazily.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

from fhir_server.errors import FhirError

MAX_QUERY_FIELDS = 1000
Send = Any
Receive = Any


class PayloadTooLarge(FhirError):
    def __init__(self, limit: int) -> None:
        super().__init__(413, "too-long", f"the request body is larger than {limit} bytes")


class Request:
    __slots__ = ("_body", "_headers", "_params", "method", "path", "raw_query", "receive", "scope")

    def __init__(self, scope: dict[str, Any], receive: Receive, path: str) -> None:
        self.scope = scope
        self.receive = receive
        self.method: str = scope["method"]
        self.path = path
        self.raw_query: bytes = scope.get("query_string", b"")
        self._headers: dict[str, str] | None = None
        self._params: list[tuple[str, str]] | None = None
        self._body: bytes | None = None

    @property
    def headers(self) -> dict[str, str]:
        if self._headers is None:
            headers: dict[str, str] = {}
            for key, value in self.scope["headers"]:
                name = key.decode("latin-1").lower()
                text = value.decode("latin-1")
                headers[name] = f"{headers[name]}, {text}" if name in headers else text
            self._headers = headers
        return self._headers

    def header(self, name: str) -> str | None:
        return self.headers.get(name)

    @property
    def params(self) -> list[tuple[str, str]]:
        if self._params is None:
            if not self.raw_query:  # most reads: skip urllib's parser (a few µs of a read)
                self._params = []
                return self._params
            query = self.raw_query.decode("latin-1")
            try:
                self._params = parse_qsl(
                    query, keep_blank_values=True, errors="strict", max_num_fields=MAX_QUERY_FIELDS
                )
            except UnicodeDecodeError as exc:
                raise FhirError(400, "invalid", "the query string is not valid UTF-8") from exc
            except ValueError as exc:
                raise FhirError(400, "too-costly", "the query has too many parameters") from exc
        return self._params

    def param(self, name: str) -> str | None:
        for key, value in self.params:
            if key == name:
                return value
        return None

    @property
    def query_string(self) -> str:
        return self.raw_query.decode("latin-1")

    async def body(self, limit: int) -> bytes:
        if self._body is not None:
            return self._body
        declared = self.header("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise PayloadTooLarge(limit)
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                raise FhirError(400, "incomplete", "the client disconnected")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(limit)
            chunks.append(chunk)
            more = message.get("more_body", False)
        self._body = b"".join(chunks)
        return self._body
