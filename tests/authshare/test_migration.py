"""An ``<data dir>/auth/auth.db`` left by an earlier version (revocations, refresh tokens and
EPD launches kept per process) moves into the store at start-up: a token revoked before the
upgrade stays revoked, a refresh token keeps working, and the file is renamed."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from pathlib import Path

from fhir_server.app import ServerApp
from tests.conftest import make_settings

OLD_SCHEMA = """
CREATE TABLE refresh_tokens (token_hash TEXT PRIMARY KEY, client_id TEXT NOT NULL,
    scope TEXT NOT NULL, grant_data BLOB NOT NULL, issued REAL NOT NULL, expires REAL NOT NULL,
    revoked INTEGER NOT NULL DEFAULT 0);
CREATE TABLE revoked_tokens (jti TEXT PRIMARY KEY, expires REAL NOT NULL);
CREATE TABLE launch_relationships (user_key TEXT NOT NULL, patient TEXT NOT NULL,
    expires REAL NOT NULL, PRIMARY KEY (user_key, patient));
"""


async def test_the_old_per_process_file_moves_into_the_store(tmp_path: Path):
    old = tmp_path / "auth" / "auth.db"
    old.parent.mkdir()
    now = time.time()
    db = sqlite3.connect(old)
    db.executescript(OLD_SCHEMA)
    db.execute("INSERT INTO revoked_tokens VALUES ('jti-revoked', ?)", (now + 600,))
    db.execute("INSERT INTO revoked_tokens VALUES ('jti-expired', ?)", (now - 600,))
    grant = json.dumps({"subject": "local:midwife", "professions": ["persmidwife"]}).encode()
    token_hash = hashlib.sha256(b"old-refresh").hexdigest()
    db.execute(
        "INSERT INTO refresh_tokens VALUES (?, 'app-public', 'openid', ?, ?, ?, 0)",
        (token_hash, grant, now - 10, now + 3600),
    )
    db.execute("INSERT INTO launch_relationships VALUES ('sub:u1', 'p1', ?)", (now + 600,))
    db.commit()
    db.close()
    app = ServerApp(make_settings(tmp_path, auth="required"))
    await app.startup()
    try:
        auth = app.security.store
        assert await auth.is_revoked("jti-revoked", None)
        assert not await auth.is_revoked("jti-expired", None)
        record = await auth.get_refresh("old-refresh")
        assert record is not None and not record["revoked"]
        assert record["client_id"] == "app-public"
        assert await auth.launched(("sub:u1",)) == {"p1"}
    finally:
        await app.shutdown()
    assert not old.exists() and old.with_name("auth.db.migrated").exists()
