"""Operators' accounts and sessions: argon2 password hashes, opaque session tokens stored hashed."""

import hashlib
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import psycopg
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from services import paging
from services.errors import Conflict, InvalidInput, LockedOut, NotFound, Unauthorized
from services.models import ROLES
from services.registry_file import ID_RE

SESSION_TTL = timedelta(hours=12)
MAX_FAILED_LOGINS = 5
LOCKOUT = timedelta(minutes=5)
_hasher = PasswordHasher()
# Verified against when the user does not exist, so timing does not tell who exists.
_DUMMY_HASH = _hasher.hash("not a password")


@dataclass(frozen=True)
class User:
    id: int
    username: str
    role: str
    communes: tuple[str, ...] | None  # None: every commune


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def add_user(
    conn: psycopg.Connection, username: str, password: str, role: str, communes: list[str] | None = None
) -> int:
    if role not in ROLES:
        raise InvalidInput(f"role must be one of {', '.join(ROLES)}")
    if not ID_RE.fullmatch(username):
        raise InvalidInput("username must match [a-z0-9][a-z0-9-]{0,62}")
    if len(password) < 8:
        raise InvalidInput("password must be at least 8 characters")
    try:
        row = conn.execute(
            "INSERT INTO users (username, password_hash, role, communes) VALUES (%s, %s, %s, %s) RETURNING id",
            (username, _hasher.hash(password), role, communes),
        ).fetchone()
    except psycopg.errors.UniqueViolation as err:
        raise Conflict(f"user {username} exists") from err
    assert row is not None
    return int(row[0])


def set_password(conn: psycopg.Connection, username: str, password: str) -> None:
    if len(password) < 8:
        raise InvalidInput("password must be at least 8 characters")
    cur = conn.execute(
        "UPDATE users SET password_hash = %s, failed_logins = 0, locked_until = NULL WHERE username = %s",
        (_hasher.hash(password), username),
    )
    if cur.rowcount == 0:
        raise NotFound(f"no user {username}")


def list_users(
    conn: psycopg.Connection, *, communes: Iterable[str] | None, limit: int, cursor: str | None
) -> tuple[list[dict[str, object]], str | None]:
    """Active (not disabled) users by username: `username, role, communes` (None: every commune).

    `communes` None lists everyone; otherwise only users who share one of them or have every
    commune. Nothing secret (hashes, lockouts, sessions) is read."""
    after = paging.decode(cursor, [str])[0] if cursor else None
    scope = list(communes) if communes is not None else None
    rows = conn.execute(
        "SELECT username, role, communes FROM users WHERE disabled_at IS NULL"
        # NULL or an empty list: every commune (as session_user reads it)
        " AND (%(scope)s::text[] IS NULL OR coalesce(cardinality(communes), 0) = 0"
        "  OR communes && %(scope)s::text[])"
        " AND (%(after)s::text IS NULL OR username > %(after)s)"
        " ORDER BY username LIMIT %(n)s",
        {"scope": scope, "after": after, "n": limit + 1},
    ).fetchall()
    users = [{"username": r[0], "role": r[1], "communes": list(r[2]) if r[2] else None} for r in rows]
    return paging.page(users, limit, lambda u: [u["username"]])


def count_users(conn: psycopg.Connection) -> int:
    row = conn.execute("SELECT count(*) FROM users").fetchone()
    return int(row[0]) if row else 0


def login(conn: psycopg.Connection, username: str, password: str) -> tuple[str, User]:
    """Check a password and open a session; returns (token, user). Locks out after repeated failures."""
    now = datetime.now(UTC)
    row = conn.execute(
        "SELECT id, password_hash, role, communes, disabled_at, locked_until FROM users WHERE username = %s",
        (username,),
    ).fetchone()
    if row is None:
        _verify(_DUMMY_HASH, password)
        raise Unauthorized("wrong username or password")
    uid, phash, role, communes, disabled_at, locked_until = row
    if locked_until and locked_until > now:
        raise LockedOut("too many failed logins; try again in a few minutes")
    if not _verify(phash, password) or disabled_at is not None:
        conn.execute(
            "UPDATE users SET failed_logins = failed_logins + 1,"
            " locked_until = CASE WHEN failed_logins + 1 >= %s THEN now() + %s ELSE locked_until END"
            " WHERE id = %s",
            (MAX_FAILED_LOGINS, LOCKOUT, uid),
        )
        raise Unauthorized("wrong username or password")
    conn.execute("UPDATE users SET failed_logins = 0, locked_until = NULL WHERE id = %s", (uid,))
    if _hasher.check_needs_rehash(phash):
        conn.execute("UPDATE users SET password_hash = %s WHERE id = %s", (_hasher.hash(password), uid))
    token = secrets.token_urlsafe(32)
    conn.execute(
        "INSERT INTO sessions (token_hash, user_id, expires_at) VALUES (%s, %s, %s)",
        (token_hash(token), uid, now + SESSION_TTL),
    )
    return token, User(uid, username, role, tuple(communes) if communes else None)


def _verify(phash: str, password: str) -> bool:
    try:
        return _hasher.verify(phash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def session_user(conn: psycopg.Connection, token: str) -> User:
    row = conn.execute(
        "SELECT u.id, u.username, u.role, u.communes FROM sessions s JOIN users u ON u.id = s.user_id"
        " WHERE s.token_hash = %s AND s.expires_at > now() AND u.disabled_at IS NULL",
        (token_hash(token),),
    ).fetchone()
    if row is None:
        raise Unauthorized("session expired or unknown; sign in again")
    return User(row[0], row[1], row[2], tuple(row[3]) if row[3] else None)


def logout(conn: psycopg.Connection, token: str) -> None:
    conn.execute("DELETE FROM sessions WHERE token_hash = %s", (token_hash(token),))


async def live_sessions_async(conn: psycopg.AsyncConnection, hashes: list[bytes]) -> set[bytes]:
    """Which of these session token hashes still sign someone in (the live feed re-checks them)."""
    cur = await conn.execute(
        "SELECT s.token_hash FROM sessions s JOIN users u ON u.id = s.user_id"
        " WHERE s.token_hash = ANY(%s) AND s.expires_at > now() AND u.disabled_at IS NULL",
        (hashes,),
    )
    return {bytes(r[0]) for r in await cur.fetchall()}
