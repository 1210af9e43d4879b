"""Stable numeric keys for (resource type, search parameter) pairs, shared by all stores."""

from __future__ import annotations

from functools import lru_cache
from hashlib import blake2b


@lru_cache(maxsize=65536)
def param_key(resource_type: str, code: str) -> int:
    """A signed 64-bit key; a hash, so every process and every store agrees without a table."""
    digest = blake2b(f"{resource_type}\x00{code}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)
