"""Opaque tokens the server hands out (search and history paging cursors): sealed and bound to
the caller.

A paging cursor carries the snapshot a search began at and its keyset position. Unsealed, a
client could lower the snapshot to read versions from before a security label was added, or
replay another caller's link. So every cursor is HMAC-SHA256-sealed with a key kept in the store
(``init_meta``: created once, atomically, and shared by every server process on that store) and
bound to the caller (token subject and client). A tampered, foreign or malformed cursor is a 400.
The payload stays readable (base64url JSON): it holds positions, never patient data.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from typing import Any

import orjson

from fhir_server.errors import bad_request
from fhir_server.service.context import RequestContext

META_KEY = "paging-key"
MAC_BYTES = 16
# what a sealed token is made of; anything else a client appends is dropped before checking
# (fhirpy adds a "?" to a relative URL that already has a query: "..._cursor=X?"). The MAC still
# decides, so this tolerance lets nothing through.
ALPHABET = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def binding(ctx: RequestContext | None) -> bytes:
    principal = ctx.principal if ctx is not None else None
    if principal is None:
        return b""
    return f"{principal.subject}\0{principal.client_id or ''}".encode()


class Sealer:
    def __init__(self) -> None:
        self.key = os.urandom(32)  # replaced by the store's key at start-up

    async def load(self, store: Any) -> None:
        self.key = _unb64(await store.init_meta(META_KEY, _b64(os.urandom(32))))

    def _mac(self, body: str, ctx: RequestContext | None) -> bytes:
        message = body.encode() + b"." + binding(ctx)
        return hmac.new(self.key, message, hashlib.sha256).digest()[:MAC_BYTES]

    def seal(self, payload: dict[str, Any], ctx: RequestContext | None) -> str:
        body = _b64(orjson.dumps(payload))
        return f"{body}.{_b64(self._mac(body, ctx))}"

    def open(self, token: str, ctx: RequestContext | None, what: str = "paging link") -> dict:
        """The payload of a token this server sealed for this caller, else a 400."""
        token = "".join(c for c in token[:4096] if c in ALPHABET)
        body, _, mac = token.partition(".")
        try:
            valid = hmac.compare_digest(_unb64(mac), self._mac(body, ctx))
            payload = orjson.loads(_unb64(body)) if valid else None
        except (ValueError, TypeError):
            payload = None
        if not isinstance(payload, dict):
            raise bad_request(
                f"this {what} is not valid (changed, or made for another user); start again"
            )
        return payload
