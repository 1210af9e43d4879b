"""MongoDB store (PyMongo's async API) for several stateless server processes: see store.py for
units of work and sequence numbers, documents.py for the document design, search.py and
filters.py for search, docs/architecture.md and docs/deploy.md for the why and the how."""

from __future__ import annotations

from fhir_server.store.mongo.store import MongoStore, MongoUnavailable

__all__ = ["MongoStore", "MongoUnavailable"]
