"""Opaque paging cursors: a small JSON payload, base64url-encoded without padding."""

from __future__ import annotations

import base64
from typing import Any

import orjson


def encode(payload: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(payload)).decode().rstrip("=")


def decode(cursor: str) -> dict[str, Any]:
    """The payload, or ValueError for anything that is not a cursor this server made."""
    try:
        data = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, TypeError) as exc:
        raise ValueError("invalid cursor") from exc
    if not isinstance(data, dict):
        raise ValueError("invalid cursor")
    return data


def encode_history(seq: int) -> str:
    return encode({"seq": seq})


def decode_history(cursor: str) -> int:
    value = decode(cursor).get("seq")
    if not isinstance(value, int):
        raise ValueError("invalid history cursor")
    return value
