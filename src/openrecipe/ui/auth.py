"""Who may use the workbench: hashed tokens and passwords, expiring sessions, CSRF and Origin checks.

On 127.0.0.1 with no credentials configured everyone local gets a session automatically; CSRF and Origin
checks apply either way, so another web page open in the same browser cannot drive the workbench.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from openrecipe.ui.store import Store

SESSION_COOKIE = "openrecipe_session"
CSRF_HEADER = "x-csrf-token"
_SCRYPT = {"n": 2**14, "r": 8, "p": 1, "dklen": 32}


def hash_secret(secret: str, salt: bytes | None = None) -> str:
    """scrypt with a random salt; the stored string carries its own parameters."""
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.scrypt(secret.encode(), salt=salt, **_SCRYPT)
    return f"scrypt${_SCRYPT['n']}${salt.hex()}${digest.hex()}"


def verify_secret(secret: str, stored: str) -> bool:
    try:
        scheme, n, salt, digest = stored.split("$")
    except ValueError:
        return False
    if scheme != "scrypt":
        return False
    computed = hashlib.scrypt(secret.encode(), salt=bytes.fromhex(salt), n=int(n), r=8, p=1, dklen=32)
    return hmac.compare_digest(computed.hex(), digest)


def add_credential(store: Store, name: str, kind: str, secret: str) -> None:
    assert kind in ("token", "password")
    with store.transaction() as db:
        db.execute(
            "INSERT INTO credentials (name, kind, hash, created) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (name, kind) DO UPDATE SET hash = excluded.hash, created = excluded.created",
            (name, kind, hash_secret(secret), time.time()),
        )


def new_token(store: Store, name: str) -> str:
    """A random token, stored only as its hash: shown to the user once."""
    token = "or-" + secrets.token_urlsafe(24)
    add_credential(store, name, "token", token)
    return token


def auth_configured(store: Store) -> bool:
    return bool(store.query("SELECT 1 FROM credentials LIMIT 1"))


def check_login(store: Store, *, token: str = "", user: str = "", password: str = "") -> str | None:
    """The user name a valid token or user/password belongs to, else None."""
    if token:
        for row in store.query("SELECT name, hash FROM credentials WHERE kind = 'token'"):
            if verify_secret(token, row["hash"]):
                return row["name"]
        return None
    if user and password:
        rows = store.query("SELECT hash FROM credentials WHERE kind = 'password' AND name = ?", (user,))
        if rows and verify_secret(password, rows[0]["hash"]):
            return user
    return None


@dataclass
class Session:
    user: str
    csrf: str
    expires: float


def _key(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


def create_session(store: Store, user: str, lifetime_s: float) -> tuple[str, Session]:
    session_id = secrets.token_urlsafe(32)
    session = Session(user=user, csrf=secrets.token_urlsafe(24), expires=time.time() + lifetime_s)
    with store.transaction() as db:
        db.execute("DELETE FROM sessions WHERE expires < ?", (time.time(),))
        db.execute(
            "INSERT INTO sessions (id_hash, user, csrf, created, expires) VALUES (?, ?, ?, ?, ?)",
            (_key(session_id), user, session.csrf, time.time(), session.expires),
        )
    return session_id, session


def load_session(store: Store, session_id: str | None) -> Session | None:
    if not session_id:
        return None
    rows = store.query("SELECT user, csrf, expires FROM sessions WHERE id_hash = ?", (_key(session_id),))
    if not rows or rows[0]["expires"] < time.time():
        return None
    return Session(**rows[0])


def end_session(store: Store, session_id: str | None) -> None:
    if session_id:
        with store.transaction() as db:
            db.execute("DELETE FROM sessions WHERE id_hash = ?", (_key(session_id),))


def same_origin(origin: str | None, host: str | None) -> bool:
    """A browser's Origin (or Referer) must name the host the page was served from."""
    if not origin:
        return True
    if origin == "null" or not host:
        return False
    return urlsplit(origin).netloc.lower() == host.lower()
