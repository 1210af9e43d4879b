"""Durable state of the built-in authorization server: refresh tokens, revoked access-token ids and
EPD-launch care relationships, in one small SQLite file (``<data dir>/auth/auth.db``).

Authorization codes, launch contexts, login tickets and client-assertion ``jti`` values are short
lived (seconds to minutes) and kept in memory only: a restart invalidates pending logins, which is
the safe direction. Refresh tokens are stored as SHA-256 hashes, never in clear.
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import orjson

SCHEMA = """
CREATE TABLE IF NOT EXISTS refresh_tokens (
    token_hash TEXT PRIMARY KEY,
    client_id TEXT NOT NULL,
    scope TEXT NOT NULL,
    grant_data BLOB NOT NULL,
    issued REAL NOT NULL,
    expires REAL NOT NULL,
    revoked INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS revoked_tokens (
    jti TEXT PRIMARY KEY,
    expires REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS launch_relationships (
    user_key TEXT NOT NULL,
    patient TEXT NOT NULL,
    expires REAL NOT NULL,
    PRIMARY KEY (user_key, patient)
);
"""


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class AuthStore:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(SCHEMA)
        now = time.time()
        self._db.execute("DELETE FROM revoked_tokens WHERE expires < ?", (now,))
        self._db.execute("DELETE FROM refresh_tokens WHERE expires < ?", (now,))
        self._db.execute("DELETE FROM launch_relationships WHERE expires < ?", (now,))
        self.revoked: dict[str, float] = dict(
            self._db.execute("SELECT jti, expires FROM revoked_tokens").fetchall()
        )
        self._launches: dict[str, dict[str, float]] = {}
        for user_key, patient, expires in self._db.execute(
            "SELECT user_key, patient, expires FROM launch_relationships"
        ):
            self._launches.setdefault(user_key, {})[patient] = expires

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- refresh tokens --------------------------------------------------------------------------

    def save_refresh(
        self, token: str, client_id: str, scope: str, grant: dict[str, Any], expires: float
    ) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO refresh_tokens VALUES (?, ?, ?, ?, ?, ?, 0)",
                (token_hash(token), client_id, scope, orjson.dumps(grant), time.time(), expires),
            )

    def get_refresh(self, token: str) -> dict[str, Any] | None:
        row = self._db.execute(
            "SELECT client_id, scope, grant_data, issued, expires, revoked FROM refresh_tokens "
            "WHERE token_hash = ?",
            (token_hash(token),),
        ).fetchone()
        if row is None:
            return None
        return {
            "client_id": row[0],
            "scope": row[1],
            "grant": orjson.loads(row[2]),
            "issued": row[3],
            "expires": row[4],
            "revoked": bool(row[5]),
        }

    def revoke_refresh(self, token: str) -> None:
        with self._lock:
            self._db.execute(
                "UPDATE refresh_tokens SET revoked = 1 WHERE token_hash = ?", (token_hash(token),)
            )

    # -- revoked access tokens -------------------------------------------------------------------

    def revoke_access(self, jti: str, expires: float) -> None:
        self.revoked[jti] = expires
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO revoked_tokens VALUES (?, ?)", (jti, expires))

    # -- EPD launch relationships ----------------------------------------------------------------

    def add_launch(self, user_key: str, patient: str, expires: float) -> None:
        self._launches.setdefault(user_key, {})[patient] = expires
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO launch_relationships VALUES (?, ?, ?)",
                (user_key, patient, expires),
            )

    def launched(self, user_keys: tuple[str, ...]) -> set[str]:
        now = time.time()
        out: set[str] = set()
        for key in user_keys:
            for patient, expires in self._launches.get(key, {}).items():
                if expires > now:
                    out.add(patient)
        return out
