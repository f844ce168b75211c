"""The audit log: what operators did and every call a partner (the province, a neighbouring commune) made with an API key.

Whatever a caller sends, the row is written: NUL characters and lone surrogates (which
PostgreSQL's text and jsonb refuse) are stored as the escapes `\\x00` / `\\udXXX`, long strings
are cut, and parameters that carry credentials are stored as `[redacted]`.
"""

import math
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from services import paging

ACTOR_KINDS = ("user", "key", "system")
_COLUMNS = "id, at, actor_kind, actor, key_id, action, params, status, rows, communes"
REDACTED = "[redacted]"
# Parameter names whose values are credentials (compared in lower case, `-` read as `_`).
SECRET_NAMES = frozenset(
    {
        "token",
        "access_token",
        "refresh_token",
        "id_token",
        "key",
        "api_key",
        "apikey",
        "sig",
        "signature",
        "password",
        "passwd",
        "pwd",
        "auth",
        "authorization",
        "secret",
        "client_secret",
    }
)
SECRET_SUFFIXES = ("_token", "_secret", "_password", "_key")
MAX_TEXT = 2000  # characters kept of one stored string


def is_secret(name: str) -> bool:
    """Whether a parameter of this name carries a credential."""
    n = name.strip().lower().replace("-", "_")
    return n in SECRET_NAMES or n.endswith(SECRET_SUFFIXES)


def clean_text(s: str, limit: int = MAX_TEXT) -> str:
    """Text PostgreSQL stores as it is: NUL and lone surrogates escaped, at most `limit` characters."""
    if "\x00" in s:
        s = s.replace("\x00", "\\x00")
    if any("\ud800" <= c <= "\udfff" for c in s):
        s = "".join(f"\\u{ord(c):04x}" if "\ud800" <= c <= "\udfff" else c for c in s)
    if len(s) > limit:
        s = f"{s[:limit]}…(+{len(s) - limit} characters)"
    return s


def clean_params(value: Any) -> Any:
    """Parameters as stored: every string cleaned (keys too), credentials redacted, at any depth."""
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, dict):
        return {
            clean_text(str(k), 200): REDACTED if is_secret(str(k)) else clean_params(v)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [clean_params(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # JSON has no NaN or Infinity
    if value is None or isinstance(value, bool | int | float):
        return value
    return clean_text(str(value))


def record(
    conn: psycopg.Connection,
    *,
    actor_kind: str,
    actor: str,
    action: str,
    params: dict[str, Any] | None = None,
    status: int | None = None,
    rows: int | None = None,
    key_id: int | None = None,
    communes: Sequence[str] | None = None,
) -> None:
    """Append one entry (in the caller's transaction); `communes` None: a deployment-wide entry."""
    conn.execute(
        "INSERT INTO audit_log (actor_kind, actor, action, params, status, rows, key_id, communes)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
        (
            actor_kind,
            clean_text(actor, 200),
            clean_text(action),
            Jsonb(clean_params(params or {})),
            status,
            rows,
            key_id,
            None if communes is None else sorted({clean_text(c, 200) for c in communes}),
        ),
    )


def entries(
    conn: psycopg.Connection,
    *,
    limit: int,
    cursor: str | None = None,
    communes: Sequence[str] | None = None,
    actor_kind: str | None = None,
    actor: str | None = None,
    key_id: int | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> tuple[list[dict[str, Any]], str | None]:
    """A page of entries, newest first; with `communes`, only entries that concern one of them
    (deployment-wide entries are for readers of every commune)."""
    where, args = ["true"], []  # type: ignore[var-annotated]
    if cursor:
        (last_id,) = paging.decode(cursor, [int])
        where.append("id < %s")
        args.append(last_id)
    if communes is not None:
        where.append("communes && %s::text[]")
        args.append(list(communes))
    for column, value in (("actor_kind", actor_kind), ("actor", actor), ("key_id", key_id)):
        if value is not None:
            where.append(f"{column} = %s")
            args.append(value)
    if since is not None:
        where.append("at >= %s")
        args.append(since)
    if until is not None:
        where.append("at < %s")
        args.append(until)
    args.append(limit + 1)
    with conn.cursor(row_factory=dict_row) as cur:
        sql = f"SELECT {_COLUMNS} FROM audit_log WHERE {' AND '.join(where)} ORDER BY id DESC LIMIT %s"  # noqa: S608
        rows = cur.execute(sql, args).fetchall()  # type: ignore[call-overload]
    return paging.page(rows, limit, lambda r: [r["id"]])
