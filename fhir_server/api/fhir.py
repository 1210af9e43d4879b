"""The FHIR REST API as a plain ASGI application.

URL -> interaction dispatch, negotiation and error rendering; the work itself happens in the
service layer. Every failure becomes an OperationOutcome with the right status; unexpected
exceptions become a 500 OperationOutcome without any detail, and are logged without personal data.
"""

from __future__ import annotations

import itertools
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl, urlencode

from fhir_server.api.access_log import AccessLog
from fhir_server.api.http import Request
from fhir_server.api.negotiation import FORM, body_type, check_accept, parse_prefer
from fhir_server.api.render import INTERNAL_ERROR, Response, render, render_error
from fhir_server.errors import FhirError, bad_request
from fhir_server.json_codec import parse
from fhir_server.service import crud, history, search, transaction
from fhir_server.service.capabilities import capability_statement
from fhir_server.service.context import RequestContext
from fhir_server.service.core import FhirService
from fhir_server.service.result import Result
from fhir_server.service.versioning import parse_etag, parse_http_date

_PROCESS_TAG = uuid.uuid4().hex[:8]
_REQUEST_IDS = itertools.count(1)
error_log = logging.getLogger("fhir_server.errors")

Operation = Callable[[FhirService, RequestContext, Request, dict[str, Any]], Awaitable[Result]]
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
AUDIT_UNAVAILABLE = FhirError(
    503,
    "transient",
    "the server could not record this request in its audit trail, so it does not answer it; "
    "try again later (a write that was part of it may have been stored: check before repeating "
    "it, or repeat it conditionally)",
)


class FhirApi:
    def __init__(self, service: FhirService) -> None:
        self.svc = service
        self.settings = service.settings
        self.base_path = service.settings.base_path
        self.operations: dict[str, Operation] = {}
        self._capabilities: bytes | None = None
        self.context_factory: Callable[[Request], Awaitable[RequestContext]] | None = None
        self.access_log = AccessLog()  # made at start-up, when logging is configured

    def capabilities_changed(self) -> None:
        self._capabilities = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        started = time.perf_counter()
        path = scope["path"][len(self.base_path) :]
        request = Request(scope, receive, path)
        method = request.method
        pretty = False
        template = "?"
        ctx: RequestContext | None = None
        try:
            pretty = request.param("_pretty") == "true"
            ctx = await self._context(request)  # first: every refusal below is audited
            self._preferences(request, ctx)
            check_accept(request.header("accept"), request.param("_format"))
            response, template = await self._dispatch(request, ctx, pretty)
            if ctx.response_headers:  # set by output hooks (e.g. Content-Language)
                response.headers.extend(
                    (k.lower().encode(), v.encode()) for k, v in ctx.response_headers.items()
                )
        except FhirError as exc:
            response = render_error(exc, pretty)
            if ctx is None and exc.audited is not None:  # refused before a context existed
                response = await self._audited(exc.audited, response, method, template)
        except Exception:  # never leak a stack trace to the client
            error_log.exception("unhandled error on %s %s", method, template)
            response = render_error(INTERNAL_ERROR)
        if ctx is not None and ctx.accesses:
            # no answer leaves before its AuditEvent is durable (group-committed with the
            # other writes: docs/security.md "Audit trail")
            response = await self._audited(
                self.svc.audit.record(ctx, response.status), response, method, template
            )
        await response.send(send, head=method == "HEAD")
        self.access_log.request(method, template, response.status, started)

    async def _audited(
        self, recorded: Awaitable[None], response: Response, method: str, template: str
    ) -> Response:
        """``response``, once its audit record is durable; if the audit trail cannot be
        written, a 503 instead (the request is not answered unaudited)."""
        try:
            await recorded
        except Exception:
            error_log.exception("audit record failed for %s %s", method, template)
            return render_error(AUDIT_UNAVAILABLE)
        return response

    async def _context(self, request: Request) -> RequestContext:
        if self.context_factory is not None:
            ctx = await self.context_factory(request)
        else:
            ctx = RequestContext(base_url=self.settings.public_url)
        ctx.request_id = request.header("x-request-id") or f"{_PROCESS_TAG}-{next(_REQUEST_IDS)}"
        ctx.accept_language = request.header("accept-language")
        return ctx

    @staticmethod
    def _preferences(request: Request, ctx: RequestContext) -> None:
        prefs = parse_prefer(request.header("prefer"))
        ctx.prefer_return = prefs.return_
        ctx.prefer_handling = prefs.handling

    # -- dispatch -------------------------------------------------------------------------------

    async def _dispatch(
        self, request: Request, ctx: RequestContext, pretty: bool
    ) -> tuple[Response, str]:
        parts = [p for p in request.path.split("/") if p]
        method = "GET" if request.method == "HEAD" else request.method
        n = len(parts)
        svc = self.svc
        if n == 0:
            if method == "POST":
                body = await self._json_body(request)
                result = await transaction.process_bundle(svc, ctx, body)
                return self._render(result, ctx, pretty, False), "/"
            if method == "GET":
                return await self._search(request, ctx, pretty, None, None), "/?"
            raise _method_not_allowed(method, "/", "GET, POST")
        head = parts[0]
        if head == "metadata" and n == 1:
            if method != "GET":
                raise _method_not_allowed(method, "metadata", "GET")
            return self._metadata(pretty), "/metadata"
        if head == "_history" and n == 1:
            _only(method, "GET", "_history")
            result = await history.history(
                svc, ctx, None, None, request.params, ctx.url("_history")
            )
            return self._render(result, ctx, pretty, False), "/_history"
        if head == "_search" and n == 1 and method == "POST":
            return await self._search(request, ctx, pretty, None, None, post=True), "/_search"
        if head.startswith("$"):
            return await self._operation(request, ctx, pretty, head[1:], {}), f"/{head}"
        type_ = head
        if n == 1:
            return await self._type_level(request, ctx, pretty, type_), f"/{type_}"
        second = parts[1]
        if n == 2 and second == "_search":
            if method != "POST":
                raise _method_not_allowed(method, f"{type_}/_search", "POST")
            return (
                await self._search(request, ctx, pretty, type_, None, post=True),
                f"/{type_}/_search",
            )
        if n == 2 and second == "_history":
            _only(method, "GET", f"{type_}/_history")
            svc.require_type(type_)
            result = await history.history(
                svc, ctx, type_, None, request.params, ctx.url(type_, "_history")
            )
            return self._render(result, ctx, pretty, False), f"/{type_}/_history"
        if n == 2 and second.startswith("$"):
            svc.require_type(type_)
            return (
                await self._operation(request, ctx, pretty, second[1:], {"type": type_}),
                f"/{type_}/{second}",
            )
        id_ = second
        if n == 2:
            return await self._instance(request, ctx, pretty, type_, id_), f"/{type_}/{{id}}"
        third = parts[2]
        if third == "_history" and n == 3:
            _only(method, "GET", f"{type_}/{{id}}/_history")
            svc.require_type(type_)
            result = await history.history(
                svc, ctx, type_, id_, request.params, ctx.url(type_, id_, "_history")
            )
            return self._render(result, ctx, pretty, False), f"/{type_}/{{id}}/_history"
        if third == "_history" and n == 4:
            if method != "GET":
                raise _method_not_allowed(method, "vread", "GET")
            result = await crud.vread(svc, ctx, type_, id_, parts[3])
            return self._read_response(
                request, ctx, result, pretty
            ), f"/{type_}/{{id}}/_history/{{vid}}"
        if third.startswith("$") and n == 3:
            svc.require_type(type_)
            return (
                await self._operation(request, ctx, pretty, third[1:], {"type": type_, "id": id_}),
                f"/{type_}/{{id}}/{third}",
            )
        if n == 3 and method == "GET":  # compartment search: Patient/123/Observation
            svc.require_type(type_)
            if third == "*":
                raise FhirError(
                    400,
                    "not-supported",
                    "compartment search across all types (*) is not supported; "
                    "name a resource type",
                )
            return (
                await self._search(request, ctx, pretty, third, (type_, id_)),
                f"/{type_}/{{id}}/{third}",
            )
        raise FhirError(404, "not-found", "no FHIR interaction matches this URL")

    async def _type_level(
        self, request: Request, ctx: RequestContext, pretty: bool, type_: str
    ) -> Response:
        method = "GET" if request.method == "HEAD" else request.method
        svc = self.svc
        if method == "GET":
            return await self._search(request, ctx, pretty, type_, None)
        if method == "POST":
            body = await self._json_body(request)
            if_none_exist = request.header("if-none-exist")
            if (
                if_none_exist is None
                and request.raw_query
                and not request.param("_format")
                and (not request.param("_pretty"))
            ):
                if_none_exist = request.query_string  # fhirpy: POST /Type?identifier=x
            result = await crud.create(svc, ctx, type_, body, if_none_exist)
            return self._render(result, ctx, pretty, True)
        if method == "PUT":
            if not _condition(request):
                raise bad_request("a conditional update needs search parameters in the URL")
            body = await self._json_body(request)
            result = await crud.conditional_update(
                svc, ctx, type_, _condition(request), body, request.header("if-match")
            )
            return self._render(result, ctx, pretty, True)
        if method == "DELETE":
            if not _condition(request):
                raise bad_request("a conditional delete needs search parameters in the URL")
            result = await crud.conditional_delete(svc, ctx, type_, _condition(request))
            return self._render(result, ctx, pretty, True)
        if method == "PATCH":
            content_type = body_type(request.header("content-type"))
            body = await self._json_body(request)
            result = await crud.patch(
                svc,
                ctx,
                type_,
                None,
                _condition(request),
                body,
                content_type,
                request.header("if-match"),
            )
            return self._render(result, ctx, pretty, True)
        raise _method_not_allowed(method, type_, "GET, POST, PUT, PATCH, DELETE")

    async def _instance(
        self, request: Request, ctx: RequestContext, pretty: bool, type_: str, id_: str
    ) -> Response:
        method = "GET" if request.method == "HEAD" else request.method
        svc = self.svc
        if method == "GET":
            result = await crud.read(svc, ctx, type_, id_)
            return self._read_response(request, ctx, result, pretty)
        if method == "PUT":
            body = await self._json_body(request)
            result = await crud.update(
                svc,
                ctx,
                type_,
                id_,
                body,
                request.header("if-match"),
                request.header("if-none-match"),
            )
            return self._render(result, ctx, pretty, True)
        if method == "PATCH":
            content_type = body_type(request.header("content-type"))
            body = await self._json_body(request)
            result = await crud.patch(
                svc, ctx, type_, id_, None, body, content_type, request.header("if-match")
            )
            return self._render(result, ctx, pretty, True)
        if method == "DELETE":
            result = await crud.delete(svc, ctx, type_, id_, request.header("if-match"))
            return self._render(result, ctx, pretty, True)
        raise _method_not_allowed(method, f"{type_}/{{id}}", "GET, PUT, PATCH, DELETE")

    # -- helpers ---------------------------------------------------------------------------------

    async def _json_body(self, request: Request) -> Any:
        media = body_type(request.header("content-type"))
        if media == FORM:
            raise FhirError(415, "not-supported", "form bodies are only accepted by _search")
        raw = await request.body(self.settings.max_body_bytes)
        if not raw.strip():
            raise bad_request("the request body is empty", code="required")
        return parse(raw)

    async def _search(
        self,
        request: Request,
        ctx: RequestContext,
        pretty: bool,
        type_: str | None,
        compartment: tuple[str, str] | None,
        post: bool = False,
    ) -> Response:
        params = list(request.params)
        if post:
            media = body_type(request.header("content-type") or FORM)
            if media != FORM:
                raise FhirError(
                    415,
                    "not-supported",
                    "_search takes application/x-www-form-urlencoded parameters",
                )
            raw = await request.body(self.settings.max_body_bytes)
            try:
                params += parse_qsl(
                    raw.decode("utf-8"), keep_blank_values=True, max_num_fields=1000
                )
            except (UnicodeDecodeError, ValueError) as exc:
                raise bad_request("the _search form body is not valid") from exc
        params = [(k, v) for k, v in params if k not in ("_format", "_pretty")]
        if type_ is None:
            types_param = [v for k, v in params if k == "_type"]
            types = tuple(t for value in types_param for t in value.split(",") if t)
            if not types:
                types = tuple(self.svc.model.resource_types)
            link_base = ctx.base_url
        else:
            types = (type_,)
            link_base = ctx.url(*compartment, type_) if compartment else ctx.url(type_)
        result = await search.search(self.svc, ctx, types, params, link_base, compartment)
        return self._render(result, ctx, pretty, False)

    def _read_response(
        self, request: Request, ctx: RequestContext, result: Result, pretty: bool
    ) -> Response:
        version = result.version
        assert version is not None
        if_none_match = request.header("if-none-match")
        if if_none_match is not None:
            try:
                if if_none_match.strip() == "*" or parse_etag(if_none_match) == version.version:
                    return render(
                        Result(304, version=version),
                        prefer_return="representation",
                        pretty=False,
                        is_write=False,
                    )
            except FhirError:
                pass
        modified_since = request.header("if-modified-since")
        if modified_since is not None and if_none_match is None:
            since = parse_http_date(modified_since)
            if since is not None and version.last_updated // 1_000_000 <= since // 1_000_000:
                return render(
                    Result(304, version=version),
                    prefer_return="representation",
                    pretty=False,
                    is_write=False,
                )
        summary = request.param("_summary")
        elements = request.param("_elements")
        return render(
            result,
            prefer_return="representation",
            pretty=pretty,
            is_write=False,
            model=self.svc.model,
            summary=summary if summary not in (None, "false") else None,
            elements=tuple(e for e in (elements or "").split(",") if e),
        )

    def _render(
        self, result: Result, ctx: RequestContext, pretty: bool, is_write: bool
    ) -> Response:
        return render(result, prefer_return=ctx.prefer_return, pretty=pretty, is_write=is_write)

    def _metadata(self, pretty: bool) -> Response:
        if self._capabilities is None:
            from fhir_server.json_codec import dumps

            self._capabilities = dumps(
                capability_statement(self.svc, self.svc.capability_extras or None)
            )
        return render(
            Result(200, raw=self._capabilities),
            prefer_return="representation",
            pretty=pretty,
            is_write=False,
        )

    async def _operation(
        self, request: Request, ctx: RequestContext, pretty: bool, name: str, target: dict[str, Any]
    ) -> Response:
        handler = self.operations.get(name)
        if handler is None:
            raise FhirError(404, "not-supported", f"operation ${name} is not supported here")
        result = await handler(self.svc, ctx, request, target)
        return self._render(result, ctx, pretty, False)


def _condition(request: Request) -> str:
    """The search part of a conditional URL (without the formatting parameters)."""
    return urlencode([(k, v) for k, v in request.params if k not in ("_format", "_pretty")])


def _method_not_allowed(method: str, where: str, allowed: str) -> FhirError:
    return FhirError(
        405, "not-supported", f"{method} is not supported on {where}", headers={"Allow": allowed}
    )


def _only(method: str, allowed: str, where: str) -> None:
    if method != allowed:
        raise _method_not_allowed(method, where, allowed)
