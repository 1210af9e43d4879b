"""The shared short-lived records (store/records.py) of the MongoDB store: the ``auth``
collection, outside the FHIR data's units of work and its writer turn. Each operation is one
single-document command (atomic on its own, on the primary, majority-acknowledged like every
write of the store) or one query by ``_id`` / ``k, s`` (index-bounded). A TTL index on ``exp``
lets MongoDB delete expired records (its monitor runs every 60 s); every read also ignores them,
so an expired record is never honoured in the meantime.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pymongo import ASCENDING, IndexModel, ReadPreference
from pymongo.errors import DuplicateKeyError

from fhir_server.store.records import Claimed

AUTH = "auth"


def auth_indexes() -> list[IndexModel]:
    return [
        IndexModel([("exp", ASCENDING)], name="exp_ttl", expireAfterSeconds=0),
        IndexModel([("k", ASCENDING), ("s", ASCENDING), ("exp", ASCENDING)], name="k_s_exp"),
    ]


def _when(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC).replace(tzinfo=None)  # BSON dates are UTC


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _id(kind: str, key: str) -> str:
    return f"{kind}\x1f{key}"


class MongoRecords:
    def __init__(self, db: Any) -> None:
        self.coll = db.get_collection(AUTH, read_preference=ReadPreference.PRIMARY)

    async def prepare(self) -> None:
        await self.coll.create_indexes(auth_indexes())

    async def put(
        self, kind: str, key: str, value: dict[str, Any], expires: float, subject: str = ""
    ) -> bool:
        # an upsert that matches only an expired record: a live one makes it insert a second
        # document with the same _id, which the unique _id refuses
        try:
            await self.coll.update_one(
                {"_id": _id(kind, key), "exp": {"$lte": _now()}},
                {"$set": {"k": kind, "s": subject, "v": value, "exp": _when(expires), "u": False}},
                upsert=True,
            )
        except DuplicateKeyError:
            return False
        return True

    async def get(self, kind: str, keys: list[str]) -> dict[str, dict[str, Any]]:
        if not keys:
            return {}
        ids = {_id(kind, key): key for key in keys}
        cursor = self.coll.find({"_id": {"$in": list(ids)}, "exp": {"$gt": _now()}})
        return {ids[doc["_id"]]: doc["v"] for doc in await cursor.to_list(None)}

    async def claim(self, kind: str, key: str) -> Claimed | None:
        now = _now()
        doc = await self.coll.find_one_and_update(
            {"_id": _id(kind, key), "exp": {"$gt": now}, "u": False}, {"$set": {"u": True}}
        )
        if doc is not None:
            return Claimed(True, doc["v"])
        doc = await self.coll.find_one({"_id": _id(kind, key), "exp": {"$gt": now}})
        return Claimed(False, doc["v"]) if doc is not None else None

    async def by_subject(self, kind: str, subject: str) -> list[dict[str, Any]]:
        cursor = self.coll.find({"k": kind, "s": subject, "exp": {"$gt": _now()}})
        return [doc["v"] for doc in await cursor.to_list(None)]

    async def drop_subject(self, kind: str, subject: str) -> None:
        await self.coll.delete_many({"k": kind, "s": subject})

    async def prune(self) -> int:
        result = await self.coll.delete_many({"exp": {"$lte": _now()}})
        return int(result.deleted_count)
