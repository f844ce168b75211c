"""Partners' API keys (the province, neighbouring communes): created once and shown once, stored as sha256, scoped to communes and
kinds, and rate limited per minute in the database so that every gateway counts the same calls."""

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from zoneinfo import ZoneInfo

import psycopg

from services.errors import Forbidden, InvalidInput, NotFound, RateLimited, Unauthorized
from services.models import KINDS
from services.registry_file import ID_RE

KEY_PREFIX = "ioc_"
# Characters of the key shown in lists and the audit log: enough to tell keys apart, far too
# few to guess the remaining 256 bits.
VISIBLE = len(KEY_PREFIX) + 8
DEFAULT_RATE_PER_MIN = 600
_RATE_RE = re.compile(r"\s*(\d+)\s*(?:/\s*(s|sec|min|m|h|hour))?\s*")


@dataclass(frozen=True)
class ApiKey:
    id: int
    name: str
    prefix: str
    communes: tuple[str, ...] | None  # None: every commune
    kinds: tuple[str, ...] | None  # None: every kind
    rate_per_min: int
    expires_at: datetime | None
    created_at: datetime
    revoked_at: datetime | None

    def check_commune(self, commune_id: str | None) -> None:
        """Asking for a commune outside the key's scope is forbidden (not an empty answer)."""
        if commune_id is not None and self.communes is not None and commune_id not in self.communes:
            raise Forbidden(f"this key has no access to commune {commune_id}")

    def check_kind(self, kind: str | None) -> None:
        if kind is not None and self.kinds is not None and kind not in self.kinds:
            raise Forbidden(f"this key has no access to devices of kind {kind}")

    def allows(self, commune_id: str, kind: str) -> bool:
        return (self.communes is None or commune_id in self.communes) and (
            self.kinds is None or kind in self.kinds
        )


def key_hash(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def parse_rate(text: str) -> int:
    """`600/min`, `10/s`, `3000/h` or a bare number (per minute) -> calls per minute."""
    m = _RATE_RE.fullmatch(text)
    if not m:
        raise InvalidInput(f"rate {text!r} is not like 600/min")
    n, unit = int(m.group(1)), m.group(2) or "min"
    per_min = n * 60 if unit in ("s", "sec") else -(-n // 60) if unit in ("h", "hour") else n
    if not 1 <= per_min <= 1_000_000:
        raise InvalidInput(f"rate {text!r} must be between 1/min and 1000000/min")
    return per_min


def parse_expiry(text: str, tz: str = "Asia/Ho_Chi_Minh") -> datetime:
    """A date (the key stops working at the start of that day, local time) or an ISO 8601 time."""
    try:
        if len(text) == 10:
            return datetime.combine(date.fromisoformat(text), time(), ZoneInfo(tz)).astimezone(UTC)
        dt = datetime.fromisoformat(text)
    except ValueError as err:
        raise InvalidInput(f"expiry {text!r} is not a date (YYYY-MM-DD) or an ISO 8601 time") from err
    return (dt if dt.tzinfo else dt.replace(tzinfo=ZoneInfo(tz))).astimezone(UTC)


_COLUMNS = "id, name, prefix, communes, kinds, rate_per_min, expires_at, created_at, revoked_at"
_INSERT = (
    "INSERT INTO api_keys (name, prefix, key_hash, communes, kinds, rate_per_min, expires_at)"
    " VALUES (%s, %s, %s, %s, %s, %s, %s)"
    " RETURNING id, name, prefix, communes, kinds, rate_per_min, expires_at, created_at, revoked_at"
)
_REVOKE = (
    "UPDATE api_keys SET revoked_at = now() WHERE id = %s AND revoked_at IS NULL"
    " RETURNING id, name, prefix, communes, kinds, rate_per_min, expires_at, created_at, revoked_at"
)


def _key(row: tuple) -> ApiKey:  # type: ignore[type-arg]
    return ApiKey(
        row[0],
        row[1],
        row[2],
        tuple(row[3]) if row[3] is not None else None,
        tuple(row[4]) if row[4] is not None else None,
        row[5],
        row[6],
        row[7],
        row[8],
    )


def unknown_communes(conn: psycopg.Connection, communes: list[str]) -> list[str]:
    """The given commune ids that the registry does not hold, in the order given."""
    rows = conn.execute("SELECT id FROM communes WHERE id = ANY(%s)", (communes,)).fetchall()
    known = {r[0] for r in rows}
    return [c for c in dict.fromkeys(communes) if c not in known]


def create(
    conn: psycopg.Connection,
    name: str,
    communes: list[str] | None,
    kinds: list[str] | None = None,
    rate_per_min: int = DEFAULT_RATE_PER_MIN,
    expires_at: datetime | None = None,
) -> tuple[ApiKey, str]:
    """A new key; returns it and the secret, which is never stored and cannot be shown again."""
    name = name.strip()
    if not name or len(name) > 200:
        raise InvalidInput("a key needs a name (up to 200 characters)")
    if communes is not None:
        if not communes:
            raise InvalidInput("give at least one commune, or --all-communes")
        bad = [c for c in communes if not ID_RE.fullmatch(c)]
        if bad:
            raise InvalidInput(f"commune id(s) {', '.join(bad)} do not match [a-z0-9][a-z0-9-]{{0,62}}")
        missing = unknown_communes(conn, communes)
        if missing:
            raise InvalidInput(
                f"no commune {', '.join(missing)} in the registry (import it first: ioc devices import FILE)"
            )
    if kinds is not None:
        bad = [k for k in kinds if k not in KINDS]
        if bad or not kinds:
            raise InvalidInput(f"kinds must be among {', '.join(KINDS)}")
    if expires_at is not None and expires_at <= datetime.now(UTC):
        raise InvalidInput("the expiry is in the past")
    secret = KEY_PREFIX + secrets.token_urlsafe(32)
    row = conn.execute(
        _INSERT,
        (
            name,
            secret[:VISIBLE],
            key_hash(secret),
            sorted(set(communes)) if communes is not None else None,
            sorted(set(kinds)) if kinds is not None else None,
            rate_per_min,
            expires_at,
        ),
    ).fetchone()
    assert row is not None
    return _key(row), secret


def list_keys(conn: psycopg.Connection) -> list[ApiKey]:
    return [_key(r) for r in conn.execute(f"SELECT {_COLUMNS} FROM api_keys ORDER BY id")]  # noqa: S608


def revoke(conn: psycopg.Connection, key_id: int) -> ApiKey:
    row = conn.execute(
        _REVOKE,
        (key_id,),
    ).fetchone()
    if row is None:
        exists = conn.execute("SELECT 1 FROM api_keys WHERE id = %s", (key_id,)).fetchone()
        raise NotFound(f"key {key_id} is already revoked" if exists else f"no key {key_id}")
    return _key(row)


def authenticate(conn: psycopg.Connection, secret: str) -> ApiKey:
    """The key a caller presents; 401 when unknown, revoked or expired."""
    row = conn.execute(
        f"SELECT {_COLUMNS} FROM api_keys WHERE key_hash = %s",  # noqa: S608
        (key_hash(secret),),
    ).fetchone()
    if row is None:
        raise Unauthorized("unknown API key")
    key = _key(row)
    if key.revoked_at is not None:
        raise Unauthorized("this API key was revoked")
    if key.expires_at is not None and key.expires_at <= datetime.now(UTC):
        raise Unauthorized("this API key has expired")
    return key


def hit(conn: psycopg.Connection, key: ApiKey) -> None:
    """Count one call in the key's current minute; 429 with the seconds to wait when over its rate.

    The caller commits right after, so the count holds even when the call then fails.
    """
    row = conn.execute(
        "INSERT INTO rate_windows (key_id, window_start, count) VALUES (%s, date_trunc('minute', now()), 1)"
        " ON CONFLICT (key_id, window_start) DO UPDATE SET count = rate_windows.count + 1"
        " RETURNING count, extract(epoch FROM date_trunc('minute', now()) + interval '1 minute' - now())",
        (key.id,),
    ).fetchone()
    assert row is not None
    count, left_s = int(row[0]), float(row[1])
    if count > key.rate_per_min:
        raise RateLimited(
            f"this key may make {key.rate_per_min} calls a minute; wait for the next minute",
            retry_after_s=max(1, int(left_s + 0.999)),
        )


def forget_windows(conn: psycopg.Connection) -> int:
    """Drop rate windows older than an hour (housekeeping)."""
    return conn.execute("DELETE FROM rate_windows WHERE window_start < now() - interval '1 hour'").rowcount
