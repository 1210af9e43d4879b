"""State of the built-in authorization server, kept in the FHIR store (``store.records``,
store/records.py) so that every server process on one store shares it (docs/security.md, "Shared
authorization state"):

- ``revoked``: access-token ``jti``s; ``grant:<id>``: revoked grants (every token of one
  authorization: a replayed code, a reused or revoked refresh token); ``refresh:<hash>``: spent
  refresh tokens;
- ``code``: authorization codes, one-time (``claim``), kept past their expiry so that a replay is
  recognised; ``nonce``: OpenID Connect nonces used (``<client>|<nonce>``);
- ``refresh``: refresh tokens by SHA-256, rotated on use (``claim``): a second use is a reuse;
- ``launch``: EHR launch ids registered by the EPD, one-time; ``launch-rel``: EPD launches as care
  relationships (subject ``sub:..`` / ``ref:..``);
- ``ticket``: patient-picker tickets, one-time; ``form``: sign-in form tokens (login CSRF),
  one-time; ``login-fail``: failed sign-ins (subject: the user name; lock-out);
- ``assertion``: client-assertion ``jti``s seen (``<client>|<jti>``, replay protection).

Refresh tokens, codes and tickets are secrets: refresh tokens are stored as SHA-256 hashes; codes,
launch ids, tickets and form tokens live minutes and are useless once claimed.
"""

from __future__ import annotations

import hashlib
import logging
import sqlite3
import time
import uuid
from pathlib import Path
from typing import Any

import orjson

from fhir_server.store.records import Claimed, Records

log = logging.getLogger("fhir_server.security.auth")

REVOKED = "revoked"
CODE = "code"
NONCE = "nonce"
REFRESH = "refresh"
LAUNCH = "launch"
LAUNCH_REL = "launch-rel"
TICKET = "ticket"
FORM = "form"
LOGIN_FAIL = "login-fail"
ASSERTION = "assertion"


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def grant_of_code(code: str) -> str:
    """The id of the grant an authorization code starts: every token issued from it (and from
    the refresh tokens that follow) carries it, so one revocation reaches them all."""
    return hashlib.sha256(b"grant\x00" + code.encode()).hexdigest()[:32]


class AuthStore:
    def __init__(self, store: Any) -> None:
        self.store = store  # the FHIR store; its records exist once it is open

    @property
    def records(self) -> Records:
        return self.store.records

    # -- revocation ------------------------------------------------------------------------------

    async def revoke_access(self, jti: str, expires: float) -> None:
        await self.records.put(REVOKED, jti, {}, max(expires, time.time()) + 60)

    async def revoke_grant(self, grant_id: str, until: float) -> None:
        await self.records.put(REVOKED, f"grant:{grant_id}", {}, until)

    async def is_revoked(self, jti: str | None, grant_id: str | None) -> bool:
        keys = [k for k in (jti, grant_id and f"grant:{grant_id}") if k]
        return bool(keys) and bool(await self.records.get(REVOKED, keys))

    # -- authorization codes and nonces ----------------------------------------------------------

    async def save_code(self, code: str, data: dict[str, Any], keep_until: float) -> None:
        await self.records.put(CODE, code, data, keep_until)
        nonce = data.get("nonce")
        if nonce:
            await self.records.put(NONCE, f"{data['client_id']}|{nonce}", {}, keep_until)

    async def claim_code(self, code: str) -> Claimed | None:
        return await self.records.claim(CODE, code)

    async def nonce_used(self, client_id: str, nonce: str) -> bool:
        return bool(await self.records.get(NONCE, [f"{client_id}|{nonce}"]))

    # -- refresh tokens --------------------------------------------------------------------------

    async def save_refresh(
        self,
        token: str,
        client_id: str,
        scope: str,
        grant: dict[str, Any],
        grant_id: str,
        expires: float,
    ) -> None:
        data = {
            "client_id": client_id,
            "scope": scope,
            "grant": grant,
            "grant_id": grant_id,
            "issued": time.time(),
            "expires": expires,
        }
        await self.records.put(REFRESH, token_hash(token), data, expires)

    async def get_refresh(self, token: str) -> dict[str, Any] | None:
        """The record with ``revoked`` set if the token was used or its grant revoked."""
        key = token_hash(token)
        found = await self.records.get(REFRESH, [key])
        if key not in found:
            return None
        record = dict(found[key])
        # spent (rotated or revoked: a marker written when it was) or its whole grant revoked
        marks = await self.records.get(
            REVOKED, [f"refresh:{key}", f"grant:{record.get('grant_id')}"]
        )
        record["revoked"] = bool(marks)
        return record

    async def claim_refresh(self, token: str) -> Claimed | None:
        key = token_hash(token)
        claimed = await self.records.claim(REFRESH, key)
        if claimed is not None and claimed.first:
            await self.records.put(
                REVOKED, f"refresh:{key}", {}, float(claimed.value.get("expires", 0)) + 60
            )
        return claimed

    async def spend_refresh(self, token: str) -> None:
        """Revoke one refresh token (RFC 7009) whether or not it was used."""
        key = token_hash(token)
        await self.records.claim(REFRESH, key)
        found = await self.records.get(REFRESH, [key])
        expires = float(found[key].get("expires", 0)) if key in found else time.time()
        await self.records.put(REVOKED, f"refresh:{key}", {}, expires + 60)

    # -- one-time records ------------------------------------------------------------------------

    async def put_once(self, kind: str, key: str, data: dict[str, Any], expires: float) -> bool:
        return await self.records.put(kind, key, data, expires)

    async def take(self, kind: str, key: str) -> dict[str, Any] | None:
        """The record, to its first taker only (None for every later one, in any process)."""
        if not key:
            return None
        claimed = await self.records.claim(kind, key)
        return claimed.value if claimed is not None and claimed.first else None

    # -- sign-in failures ------------------------------------------------------------------------

    async def login_failed(self, username: str, lock_seconds: float) -> None:
        now = time.time()
        await self.records.put(
            LOGIN_FAIL, uuid.uuid4().hex, {"at": now}, now + lock_seconds, subject=username
        )

    async def login_failures(self, username: str) -> int:
        return len(await self.records.by_subject(LOGIN_FAIL, username))

    async def login_succeeded(self, username: str) -> None:
        await self.records.drop_subject(LOGIN_FAIL, username)

    # -- EPD launch relationships ----------------------------------------------------------------

    async def add_launch(self, user_key: str, patient: str, expires: float) -> None:
        await self.records.put(
            LAUNCH_REL, uuid.uuid4().hex, {"patient": patient}, expires, subject=user_key
        )

    async def launched(self, user_keys: tuple[str, ...]) -> set[str]:
        out: set[str] = set()
        for key in user_keys:
            out.update(item["patient"] for item in await self.records.by_subject(LAUNCH_REL, key))
        return out

    async def prune(self) -> int:
        return await self.records.prune()

    # -- the per-process file of earlier versions ------------------------------------------------

    async def migrate_file(self, path: Path) -> None:
        """Move what an earlier version kept in ``<data dir>/auth/auth.db`` (revoked token ids,
        refresh tokens, launch relationships) into the store, once, and rename the file."""
        if not path.exists():
            return
        now = time.time()
        db = sqlite3.connect(path)
        try:
            for jti, expires in db.execute(
                "SELECT jti, expires FROM revoked_tokens WHERE expires > ?", (now,)
            ):
                await self.revoke_access(jti, expires)
            for row in db.execute(
                "SELECT token_hash, client_id, scope, grant_data, issued, expires FROM "
                "refresh_tokens WHERE expires > ? AND revoked = 0",
                (now,),
            ):
                data = {
                    "client_id": row[1],
                    "scope": row[2],
                    "grant": orjson.loads(row[3]),
                    "grant_id": row[0][:32],
                    "issued": row[4],
                    "expires": row[5],
                }
                await self.records.put(REFRESH, row[0], data, row[5])
            for user_key, patient, expires in db.execute(
                "SELECT user_key, patient, expires FROM launch_relationships WHERE expires > ?",
                (now,),
            ):
                await self.add_launch(user_key, patient, expires)
        except sqlite3.Error as exc:
            log.warning("could not read the old authorization state %s: %s", path, exc)
            return
        finally:
            db.close()
        path.rename(path.with_name(path.name + ".migrated"))
        log.info("moved the authorization state of %s into the store", path)
