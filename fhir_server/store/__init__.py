"""Stores: the storage protocol and its implementations (embedded SQLite, MongoDB)."""

from __future__ import annotations

from fhir_server.store.protocol import Store


def open_store(url: str, **options: object) -> Store:
    """Create the store for a URL: ``sqlite:///path/to/file.db`` or ``mongodb://...``."""
    if url.startswith("sqlite:"):
        from fhir_server.store.sqlite import SqliteStore

        return SqliteStore(url, **options)  # type: ignore[arg-type]
    if url.startswith(("mongodb:", "mongodb+srv:")):
        from fhir_server.store.mongo import MongoStore

        return MongoStore(url, **options)  # type: ignore[arg-type]
    raise ValueError(f"unsupported store URL {url!r} (use sqlite:///path or mongodb://host)")
