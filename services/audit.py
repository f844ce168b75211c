"""The audit log: what operators did and every call the district made with an API key."""

from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from services import paging

ACTOR_KINDS = ("user", "key", "system")
_COLUMNS = "id, at, actor_kind, actor, key_id, action, params, status, rows"


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
) -> None:
    """Append one entry (in the caller's transaction)."""
    conn.execute(
        "INSERT INTO audit_log (actor_kind, actor, action, params, status, rows, key_id)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s)",
        (actor_kind, actor, action, Jsonb(params or {}), status, rows, key_id),
    )


def entries(
    conn: psycopg.Connection,
    *,
    limit: int,
    cursor: str | None = None,
    actor_kind: str | None = None,
    actor: str | None = None,
    key_id: int | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> tuple[list[dict[str, Any]], str | None]:
    """A page of entries, newest first."""
    where, args = ["true"], []  # type: ignore[var-annotated]
    if cursor:
        (last_id,) = paging.decode(cursor, [int])
        where.append("id < %s")
        args.append(last_id)
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
