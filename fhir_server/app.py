"""Assembling the server: settings -> store -> service -> ASGI application.

The FHIR API (under the base path, default ``/fhir``) is served by the plain ASGI app in
``api/fhir.py``; everything else (landing page, health, and later the authorization server) is a
FastAPI application. The store opens and closes with the ASGI lifespan.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse

from fhir_server import FHIR_VERSION, __version__
from fhir_server.api.access_log import AccessLog
from fhir_server.api.fhir import FhirApi
from fhir_server.api.limits import TOO_LARGE_MESSAGE, head_size, outcome_body
from fhir_server.api.render import HARDENING
from fhir_server.config import Settings
from fhir_server.plugins import install_all
from fhir_server.service.core import FhirService
from fhir_server.store import open_store

log = logging.getLogger("fhir_server")


class ServerApp:
    """The ASGI entry point."""

    def __init__(self, settings: Settings, load_demo: bool = False) -> None:
        self.settings = settings
        self.store = open_store(settings.store)
        self.service = FhirService(settings, self.store)
        self.fhir = FhirApi(self.service)
        self.service.search_parameters.on_change.append(self.fhir.capabilities_changed)
        self.web = build_web_app(self)
        self.load_demo = load_demo
        # plug-ins add start-up steps here; they run once the store is open and the demo
        # content (if any) is loaded, before the server reports ready
        self.startup_hooks: list[Callable[[], Awaitable[None]]] = []
        # ...and shut-down steps (run before the store closes, e.g. flushing the audit buffer)
        self.shutdown_hooks: list[Callable[[], Awaitable[None]]] = []
        # the ASGI callable for FHIR paths (plug-ins may wrap it, e.g. CORS), and paths under
        # the FHIR base that the web app serves instead (SMART discovery documents)
        self.fhir_handler: Any = self.fhir
        self.fhir_web_paths: set[str] = set()
        install_all(self)
        self.started = False
        base = settings.base_path
        self._prefix = base + "/"
        self._base = base

    async def startup(self) -> None:
        if self.started:
            return
        await self.store.open()
        # demo content goes only into a store that was empty before the shipped content
        empty = await self.store.latest_seq() == 0
        await self.service.start()
        self.started = True
        if self.load_demo and empty:
            from fhir_server.demo import load_demo_content

            loaded = await load_demo_content(self.service)
            if loaded:
                log.info("loaded %d demo resources", loaded)
        for hook in self.startup_hooks:
            await hook()
        self.fhir.access_log = AccessLog()  # logging is configured by now
        log.info("FHIR server ready at %s (store: %s)", self.settings.public_url, self.store.name)

    async def shutdown(self) -> None:
        self.fhir.access_log.flush()
        if self.started:
            for hook in self.shutdown_hooks:
                try:
                    await hook()
                except Exception:  # a failing plug-in must not keep the store open
                    log.exception("shut-down step failed")
            await self.service.stop()
            await self.store.close()
            self.started = False

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        kind = scope["type"]
        if kind == "http":
            if head_size(scope["headers"]) > self.settings.max_header_bytes:
                await self._too_large(scope, send)
                return
            path = scope["path"]
            if (path.startswith(self._prefix) or path == self._base) and (
                path not in self.fhir_web_paths
            ):
                await self.fhir_handler(scope, receive, send)
                return
            await self.web(scope, receive, send)
            return
        if kind == "lifespan":
            await self._lifespan(receive, send)
            return
        await self.web(scope, receive, send)

    async def _too_large(self, scope: dict[str, Any], send: Any) -> None:
        """431 for a request whose headers exceed the bound (fhir_server/api/limits.py)."""
        limit = self.settings.max_header_bytes
        message = TOO_LARGE_MESSAGE.format(limit=limit)
        client = scope.get("client")
        await self.service.audit.refused(
            scope.get("method", "?"),
            scope.get("path", "")[:200],
            "",
            client[0] if client else None,
            "",
            431,
            message,
        )
        body = outcome_body(message)
        await send(
            {
                "type": "http.response.start",
                "status": 431,
                "headers": [
                    (b"content-type", b"application/fhir+json"),
                    (b"content-length", b"%d" % len(body)),
                    *HARDENING,
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    def audit_oversized(self, client: str | None, url: str, limit: int) -> None:
        """The protocol-level bound's refusals (limits.BoundedHttpToolsProtocol) are audited."""
        path, _, query = url.partition("?")
        self.service.audit.refused(
            "?", path, query, client, "", 431, TOO_LARGE_MESSAGE.format(limit=limit)
        )

    async def _lifespan(self, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.startup()
                except Exception as exc:  # report a clear start-up failure to uvicorn
                    log.error("start-up failed: %s", exc)
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return


def build_web_app(server: ServerApp) -> FastAPI:
    web = FastAPI(title="BiB FHIR server", version=__version__, docs_url="/docs", redoc_url=None)

    @web.get("/")
    async def landing() -> dict[str, Any]:
        return {
            "name": "Born in Belgium Professionals FHIR server",
            "fhirVersion": FHIR_VERSION,
            "fhirBase": server.settings.public_url,
            "capabilities": f"{server.settings.public_url}/metadata",
            "health": "/health",
        }

    @web.get("/health")
    async def health() -> JSONResponse:
        try:
            status = await server.store.health()
        except Exception as exc:  # the store is down: say so, do not crash
            return JSONResponse(
                {"status": "unavailable", "store": server.store.name, "error": type(exc).__name__},
                status_code=503,
            )
        code = 200 if status.get("status") == "ok" else 503
        return JSONResponse(status, status_code=code)

    return web


def create_app(settings: Settings | None = None, load_demo: bool = False) -> ServerApp:
    return ServerApp(settings or Settings.from_env(), load_demo=load_demo)
