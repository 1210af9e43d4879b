"""CORS for the FHIR API (browser SMART apps): preflight answers and response headers.

The web application (discovery, token, introspection, revocation) uses Starlette's CORS
middleware; the FHIR API is a plain ASGI app and gets this small wrapper. Requests without an
``Origin`` header (servers, benchmarks) pass straight through. Bearer tokens are not cookies, so
allowing any origin (the default) exposes nothing a script could not already send.
"""

from __future__ import annotations

from typing import Any

EXPOSE = b"Location, Content-Location, ETag, Last-Modified, WWW-Authenticate, X-Request-Id"
METHODS = b"GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"
HEADERS = (
    b"Authorization, Content-Type, Accept, Prefer, If-Match, If-None-Match, If-None-Exist, "
    b"If-Modified-Since, X-Request-Id, X-Break-Glass"
)


class FhirCors:
    def __init__(self, inner: Any, origins: str) -> None:
        self.inner = inner
        items = [o.strip() for o in origins.split(",") if o.strip()]
        self.any = "*" in items
        self.allowed = frozenset(o.encode() for o in items)

    def __getattr__(self, name: str) -> Any:  # the wrapped FhirApi stays reachable
        return getattr(self.inner, name)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        origin = None
        preflight = False
        for key, value in scope["headers"]:
            if key == b"origin":
                origin = value
            elif key == b"access-control-request-method":
                preflight = True
        if origin is None or not (self.any or origin in self.allowed):
            await self.inner(scope, receive, send)
            return
        allow = b"*" if self.any else origin
        if scope["method"] == "OPTIONS" and preflight:
            headers = [
                (b"access-control-allow-origin", allow),
                (b"access-control-allow-methods", METHODS),
                (b"access-control-allow-headers", HEADERS),
                (b"access-control-max-age", b"600"),
                (b"vary", b"Origin"),
                (b"content-length", b"0"),
            ]
            await send({"type": "http.response.start", "status": 204, "headers": headers})
            await send({"type": "http.response.body", "body": b""})
            return

        async def send_with_cors(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [
                    *message.get("headers", ()),
                    (b"access-control-allow-origin", allow),
                    (b"access-control-expose-headers", EXPOSE),
                    (b"vary", b"Origin"),
                ]
            await send(message)

        await self.inner(scope, receive, send_with_cors)
