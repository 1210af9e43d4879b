"""MongoDB store (PyMongo async API): see the MongoDB issue; not implemented yet."""

from __future__ import annotations


class MongoStore:
    name = "mongodb"
    supports_transactions = True

    def __init__(self, url: str, **options: object) -> None:
        raise NotImplementedError("the MongoDB store is not available yet; use sqlite:///path")
